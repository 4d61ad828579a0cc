/*
 * tests/support/helpers.h - what every libomni test shares.
 *
 * omni_assert_ok() runs a libomni call and, when it fails, prints the
 * expression, the negative errno and omni_error_last() (in the spirit of
 * libgit2's cl_git_pass). omni_assert_err() expects a given -errno.
 *
 * struct omni_fixture is a private world for one test: a fresh directory
 * made with mkdtemp(3) under $TMPDIR (or /tmp), a data directory inside it
 * and a local backend on a project id unique to the test process, started.
 * Criterion forks every test and runs several at once, so nothing here
 * uses a fixed path or name. Tests put canary files in fx->tmp, next to
 * (outside of) the workspace, to prove that nothing escaped.
 *
 *	fx->tmp      /tmp/omni-test-XXXXXX
 *	fx->data     fx->tmp/data             (opts.data_path)
 *	fx->host     fx->data/<project>       (the workspace on the host)
 */
#ifndef OMNI_TESTS_HELPERS_H
#define OMNI_TESTS_HELPERS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/types.h>

#include <criterion/criterion.h>

#include "omni/omni.h"

/* Built with AddressSanitizer (gcc defines the first, clang has the
 * second)? */
#if defined(__SANITIZE_ADDRESS__)
#define OMNI_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OMNI_TEST_ASAN 1
#endif
#endif

#define omni_assert_ok(expr)                                                   \
	do {                                                                   \
		omni_error_clear();                                            \
		long long omni_rc_ = (long long)(expr);                        \
		cr_assert(omni_rc_ >= 0, "%s failed with %lld (%s): %s",       \
		          #expr, omni_rc_, strerror((int)-omni_rc_),           \
		          omni_error_last());                                  \
	} while (0)

#define omni_assert_err(expr, err)                                             \
	do {                                                                   \
		omni_error_clear();                                            \
		long long omni_rc_ = (long long)(expr);                        \
		cr_assert(omni_rc_ == (long long)(err),                        \
		          "%s gave %lld (%s), expected %s (%lld): %s", #expr,  \
		          omni_rc_,                                            \
		          omni_rc_ < 0 ? strerror((int)-omni_rc_) : "ok",      \
		          #err, (long long)(err), omni_error_last());          \
	} while (0)

struct omni_fixture {
	char tmp[PATH_MAX];
	char data[PATH_MAX];
	char host[PATH_MAX];
	char project[64];
	struct omni_backend *b;
};

/* mkdtemp a fresh directory (absolute) into out. Asserts on failure. */
void omni_test_mkdtemp(char *out, size_t size);

/* A project id unique to this process and call ("<prefix>-<pid>-<n>"). */
void omni_test_project_id(char *out, size_t size, const char *prefix);

/* snprintf into out, asserting that it fits (paths in tests). */
void omni_test_fmt(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Make fx->tmp and a local backend (not started) on fx->data. */
void omni_fixture_new(struct omni_fixture *fx);
/* omni_fixture_new() plus omni_backend_start(). */
void omni_fixture_start(struct omni_fixture *fx);
/* Free the backend and remove fx->tmp. Safe on a zeroed fixture. */
void omni_fixture_finish(struct omni_fixture *fx);

/* rm -rf path (nftw, depth first, not following symlinks). 0 or -errno;
 * a missing path is not an error. */
int omni_test_rm_rf(const char *path);

/* out = fx->host + "/" + rel (asserts when it does not fit). */
void omni_test_host_path(const struct omni_fixture *fx, const char *rel,
                         char *out, size_t size);

/* Host-side file helpers (no libomni involved); they assert on failure. */
void omni_test_write_host(const char *path, const void *data, size_t len);
/* Read a whole host file; returns a malloc'd buffer (NUL-terminated) or
 * NULL when it cannot be opened. */
char *omni_test_read_host(const char *path, size_t *len);
bool omni_test_host_exists(const char *path);

/*
 * Wait up to ms for process pid to be gone: kill(pid, 0) fails with ESRCH,
 * or it is a zombie (an orphan whose reaper has not run yet counts as
 * dead). Returns true when gone.
 */
bool omni_test_pid_gone(pid_t pid, int ms);

/*
 * Leak checking under ASan. Criterion's runner process leaks a small block
 * of its own at exit when several suites run (libcriterion.so.3+0x1a332,
 * seen with 2.4.1), which would make every ASan run exit non-zero; a
 * suppression cannot target it, since the only frame it has is the
 * libcriterion module, which is also on the stack of every test body.
 * So the test binary turns LeakSanitizer's at-exit check off
 * (__asan_default_options in helpers.c: leak_check_at_exit=0, still
 * overridable through ASAN_OPTIONS) and checks our code instead: this
 * function runs a leak check in the test's own process and aborts when
 * something leaked, which Criterion reports as "crashed during its setup
 * or teardown" and turns into a non-zero exit. Call it last in a .fini;
 * omni_fixture_finish() does. Without ASan it does nothing.
 */
void omni_test_leak_check(void);

/* Milliseconds on the monotonic clock. */
long long omni_test_now_ms(void);

/* The source tree root: $OMNI_SOURCE_DIR, else the first directory above
 * the test binary holding a Makefile and backends/. Asserts when found
 * nowhere. */
void omni_test_source_dir(char *out, size_t size);

#endif
