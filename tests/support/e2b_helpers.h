/*
 * tests/support/e2b_helpers.h - the local E2B-compatible server
 * (tests/servers/e2b) for one test: started on port 0 with a state directory of
 * its own, its test hooks (request counters, delay, faults, commands run behind
 * the mount's back), and the environment that points libomni at it.
 *
 * The server needs node and root (each sandbox is a chroot of bind
 * mounts). e2b_test_require() skips the test when either is missing, or
 * fails it under CI=true.
 */
#ifndef OMNI_TESTS_E2B_HELPERS_H
#define OMNI_TESTS_E2B_HELPERS_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

struct e2b_test_server {
	pid_t pid;
	int port;
	char url[64];
	char dir[PATH_MAX]; /* mkdtemp: state dir, port file, log */
	char log[PATH_MAX];
};

/* Skip (or fail under CI=true) when node or root is missing. */
void e2b_test_require(void);

/* Start the server and set E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL
 * for it. extra: more server arguments, NULL-terminated, or NULL. */
void e2b_test_server_start(struct e2b_test_server *s, const char *const *extra);
/* SIGTERM (the server kills its sandboxes and unmounts their roots),
 * wait, remove the directory. Safe on a zeroed struct. */
void e2b_test_server_stop(struct e2b_test_server *s);

/* A request to the server; returns the body (malloc'd) and the status. */
char *e2b_test_http(struct e2b_test_server *s, const char *method,
                    const char *path, const char *json, long *status);

/* Zero the request counters. */
void e2b_test_reset(struct e2b_test_server *s);
/* requests[key] ("filesystem.Filesystem/ListDir", "GET /files"...), and
 * the total of every counted request. */
long e2b_test_count(struct e2b_test_server *s, const char *key);
long e2b_test_total(struct e2b_test_server *s);
/* All counters as text, for failure messages (malloc'd). */
char *e2b_test_counts(struct e2b_test_server *s);

void e2b_test_delay(struct e2b_test_server *s, int ms);
/* mode "none", "hang" or "error" (with status). */
void e2b_test_fault(struct e2b_test_server *s, const char *mode, int status);

/* Run bash -c cmd in the only sandbox as root, behind the mount's back;
 * returns its stdout (malloc'd) and exit code. */
char *e2b_test_exec(struct e2b_test_server *s, const char *cmd, int *exit_code);

/* Number of sandboxes the server has that are not killed. */
int e2b_test_live_sandboxes(struct e2b_test_server *s);

#endif
