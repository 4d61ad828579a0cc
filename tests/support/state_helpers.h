/*
 * tests/support/state_helpers.h - what the git and gcs state manager suites
 * share: local test servers (Node scripts under tests/servers/, started on port
 * 0 and stopped by pid), small HTTP calls to their /_test hooks, and the table
 * of backends every manager is paired with.
 *
 * Pairings. state_pairings[] lists the backends a state manager is tried
 * with, each with its prerequisites and options; a suite runs its pairing
 * tests once per entry (ParameterizedTest over state_pairing_names()).
 * Adding a backend is one line in that table (state_helpers.c). A pairing
 * whose prerequisites are missing (no dockerd, no test image) is skipped
 * with the reason, or fails when CI=true.
 */
#ifndef OMNI_TESTS_STATE_HELPERS_H
#define OMNI_TESTS_STATE_HELPERS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <criterion/parameterized.h>

#include "omni/omni.h"

/* --- test servers ------------------------------------------------------------
 */

struct test_server {
	pid_t pid;
	int port;
	char dir[PATH_MAX]; /* its temp directory: port file and log */
	char url[64];       /* http://127.0.0.1:PORT */
};

/*
 * Start `node <source dir>/<script> ARGS... --port 0 --port-file F` with
 * its output in a log, and wait (10 s at most) for the port. Asserts.
 */
void test_server_start(struct test_server *s, const char *script,
                       const char *const *args);
/* SIGTERM (then SIGKILL) and reap; removes its directory. Safe to call
 * twice and on a zeroed struct. */
void test_server_stop(struct test_server *s);
/* The server's log so far (malloc'd), for failure messages. */
char *test_server_log(const struct test_server *s);

/* One HTTP request; returns the status (asserts that a reply came).
 * *body (may be NULL) gets the reply body (malloc'd). */
long test_http(const char *method, const char *url, const char *json,
               char **body);
/* The same with any body and content type. */
long test_http_data(const char *method, const char *url, const char *ctype,
                    const void *data, size_t len, char **body);

/* Put raw bytes into bucket of the GCS test server as object name (a
 * media upload). Asserts. */
void test_gcs_upload(const struct test_server *gcs, const char *bucket,
                     const char *name, const void *data, size_t len);

/* --- pairings ---------------------------------------------------------------
 */

struct state_pairing {
	const char *backend;
	/* NULL when the backend can run here, else why not. */
	const char *(*missing)(void);
	/* Options for this backend (data_path is set by the caller). */
	void (*options)(struct omni_backend_options *o);
	/* Extra omnifs arguments for a mount, NULL-terminated. */
	const char *const *mount_args;
};

extern const struct state_pairing state_pairings[];
extern const size_t state_pairing_count;

/* A Criterion parameter naming a pairing (inline storage: parameters are
 * copied into a re-executed test process, so no pointers). */
struct state_param {
	char backend[32];
};

/* ParameterizedTestParameters body: one parameter per pairing. */
struct criterion_test_params state_pairing_params(void);

/* Stop what pairings started (the E2B server); call it in .fini. */
void state_pairings_finish(void);

/* The entry of a backend name (asserts it is in the table). */
const struct state_pairing *state_pairing(const char *backend);

/* Skip (or fail under CI=true) when the pairing cannot run here; also
 * fails when the backend is not registered in libomni at all. */
void state_require(const struct state_pairing *p);

/* Skip, or fail under CI=true, with a reason. */
#define state_missing(...)                                                     \
	do {                                                                   \
		const char *ci_ = getenv("CI");                                \
		if (ci_ && strcmp(ci_, "true") == 0)                           \
			cr_assert_fail(__VA_ARGS__);                           \
		cr_skip_test(__VA_ARGS__);                                     \
	} while (0)

/* A started backend of the pairing for project on data, with manager st
 * (taken, even on failure). Asserts. */
struct omni_backend *state_backend_start(const struct state_pairing *p,
                                         const char *project, const char *data,
                                         struct omni_state *st);
/* The same, returning start's result instead of asserting it (*out is
 * set either way; free it). */
int state_backend_try(struct omni_backend **out, const struct state_pairing *p,
                      const char *project, const char *data,
                      struct omni_state *st);

/* --- files
 * -------------------------------------------------------------------- */

/* The workspace's content as text, one line per entry sorted by path:
 * "f 644 path md5" / "l path -> target" / "d path", leaving out paths
 * for which skip returns true (may be NULL). Through the backend, so it
 * works for every pairing. */
char *state_tree_text(struct omni_backend *b, bool (*skip)(const char *path));

/* n pseudo-random bytes (deterministic for a seed). */
void state_random_bytes(void *buf, size_t n, unsigned int seed);

#endif
