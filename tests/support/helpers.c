/*
 * tests/support/helpers.c - fixtures and host-side helpers for the libomni
 * tests (see helpers.h): private temp directories, a started local backend,
 * recursive removal, process checks and finding the source tree.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "base/clock.h"

#ifdef OMNI_TEST_ASAN
#include <sanitizer/lsan_interface.h>

/* Read by ASan at start-up, before ASAN_OPTIONS (which may override it).
 * See omni_test_leak_check() in helpers.h for why. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "leak_check_at_exit=0";
}
#endif

void omni_test_leak_check(void)
{
#ifdef OMNI_TEST_ASAN
	if (__lsan_do_recoverable_leak_check()) {
		fprintf(stderr, "omni-tests: this test leaked memory (see the "
		                "LeakSanitizer report above)\n");
		abort();
	}
#endif
}

void omni_test_mkdtemp(char *out, size_t size)
{
	const char *base = getenv("TMPDIR");
	int n;

	if (!base || base[0] != '/')
		base = "/tmp";
	n = snprintf(out, size, "%s/omni-test-XXXXXX", base);
	cr_assert(n > 0 && (size_t)n < size, "temp path too long");
	cr_assert(mkdtemp(out) != NULL, "mkdtemp(%s): %s", out,
	          strerror(errno));
}

void omni_test_fmt(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	cr_assert(n >= 0 && (size_t)n < size, "formatted path too long");
}

void omni_test_project_id(char *out, size_t size, const char *prefix)
{
	static unsigned int counter;
	int n =
	    snprintf(out, size, "%s-%ld-%u", prefix, (long)getpid(), counter++);

	cr_assert(n > 0 && (size_t)n < size, "project id too long");
}

void omni_fixture_new(struct omni_fixture *fx)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	int n;

	memset(fx, 0, sizeof(*fx));
	omni_test_mkdtemp(fx->tmp, sizeof(fx->tmp));
	n = snprintf(fx->data, sizeof(fx->data), "%s/data", fx->tmp);
	cr_assert(n > 0 && (size_t)n < sizeof(fx->data));
	omni_test_project_id(fx->project, sizeof(fx->project), "t");
	n = snprintf(fx->host, sizeof(fx->host), "%s/%s", fx->data,
	             fx->project);
	cr_assert(n > 0 && (size_t)n < sizeof(fx->host));
	opts.data_path = fx->data;
	omni_assert_ok(
	    omni_backend_new(&fx->b, "local", fx->project, &opts, NULL));
}

void omni_fixture_start(struct omni_fixture *fx)
{
	omni_fixture_new(fx);
	omni_assert_ok(omni_backend_start(fx->b));
}

void omni_fixture_finish(struct omni_fixture *fx)
{
	omni_backend_free(fx->b);
	fx->b = NULL;
	if (fx->tmp[0])
		omni_test_rm_rf(fx->tmp);
	fx->tmp[0] = '\0';
	omni_test_leak_check();
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	if (flag == FTW_DNR) {
		/* An unreadable directory (a test chmod'ed it): open it up
		 * and try again. */
		chmod(path, 0700);
		return omni_test_rm_rf(path) < 0 ? -1 : 0;
	}
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int omni_test_rm_rf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return errno ? -errno : -EIO;
	return 0;
}

void omni_test_host_path(const struct omni_fixture *fx, const char *rel,
                         char *out, size_t size)
{
	int n = snprintf(out, size, "%s/%s", fx->host, rel);

	cr_assert(n > 0 && (size_t)n < size, "host path too long");
}

void omni_test_write_host(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t done = 0;

	cr_assert(fd >= 0, "open(%s): %s", path, strerror(errno));
	while (done < len) {
		ssize_t n = write(fd, (const char *)data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		cr_assert(n > 0, "write(%s): %s", path, strerror(errno));
		done += (size_t)n;
	}
	cr_assert(close(fd) == 0);
}

char *omni_test_read_host(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t used = 0, cap = 4096;
	char *buf;

	if (fd < 0)
		return NULL;
	buf = malloc(cap);
	cr_assert(buf);
	for (;;) {
		if (used + 1 >= cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert(buf);
		}
		ssize_t n = read(fd, buf + used, cap - used - 1);
		if (n < 0 && errno == EINTR)
			continue;
		cr_assert(n >= 0, "read(%s): %s", path, strerror(errno));
		if (n == 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	if (len)
		*len = used;
	return buf;
}

bool omni_test_host_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

long long omni_test_now_ms(void)
{
	return omni__now_ms();
}

/* Is pid a zombie (or already being torn down)? */
static bool is_zombie(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	bool zombie = false;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "r");
	if (!f)
		return true; /* gone between the two checks */
	if (fgets(buf, sizeof(buf), f)) {
		/* "pid (comm) S ...": the state follows the last ')'. */
		char *paren = strrchr(buf, ')');
		if (paren && paren[1] == ' ')
			zombie = paren[2] == 'Z' || paren[2] == 'X';
	}
	fclose(f);
	return zombie;
}

bool omni_test_pid_gone(pid_t pid, int ms)
{
	long long until = omni_test_now_ms() + ms;

	for (;;) {
		if (kill(pid, 0) < 0 && errno == ESRCH)
			return true;
		if (is_zombie(pid)) {
			/* Reap it if it happens to be ours. */
			waitpid(pid, NULL, WNOHANG);
			return true;
		}
		if (omni_test_now_ms() >= until)
			return false;
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static bool is_source_dir(const char *dir)
{
	char p[PATH_MAX];
	struct stat st;

	snprintf(p, sizeof(p), "%s/Makefile", dir);
	if (stat(p, &st) < 0 || !S_ISREG(st.st_mode))
		return false;
	snprintf(p, sizeof(p), "%s/backends/include/omni/backend.h", dir);
	return stat(p, &st) == 0;
}

void omni_test_source_dir(char *out, size_t size)
{
	const char *env = getenv("OMNI_SOURCE_DIR");
	char dir[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		cr_assert(strlen(env) < size);
		cr_assert(is_source_dir(env),
		          "OMNI_SOURCE_DIR=%s holds no Makefile and backends/",
		          env);
		strcpy(out, env);
		return;
	}
	n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	cr_assert(n > 0, "readlink(/proc/self/exe): %s", strerror(errno));
	dir[n] = '\0';
	for (;;) {
		char *slash = strrchr(dir, '/');
		if (!slash)
			break;
		if (slash == dir) {
			dir[1] = '\0';
		} else {
			*slash = '\0';
		}
		if (is_source_dir(dir)) {
			cr_assert(strlen(dir) < size);
			strcpy(out, dir);
			return;
		}
		if (slash == dir)
			break;
	}
	cr_assert_fail("cannot find the source tree above the test binary; "
	               "set OMNI_SOURCE_DIR");
}
