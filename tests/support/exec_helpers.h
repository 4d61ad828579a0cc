/*
 * tests/support/exec_helpers.h - running the built programs (omni-exec,
 * omni-agent) from the omni-exec, control server and agent suites.
 *
 * Programs are found next to the test binary: $OMNI_BUILD_DIR when the
 * runner sets it, else the directory of /proc/self/exe (build/ or
 * build-asan/). Children get pipes for their three streams (or a
 * pseudo-terminal), and every wait has a deadline, after which the child
 * is killed and the test fails instead of hanging.
 */
#ifndef OMNI_TESTS_EXEC_HELPERS_H
#define OMNI_TESTS_EXEC_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* out = <build dir>/name; asserts that it is an executable. */
void exec_test_program(char *out, size_t size, const char *name);

struct exec_test_child {
	pid_t pid;
	int in, out, err; /* our ends of the pipes; -1 when closed */
};

/* Spawn argv (argv[0] a path) with piped stdin, stdout and stderr, in
 * directory cwd (NULL: ours). */
void exec_test_spawn(struct exec_test_child *c, const char *cwd,
                     char *const argv[]);

/*
 * The same, for long-lived servers (omni-agent): the child also gets
 * SIGKILL when the test process dies, so a test that crashes before its
 * teardown leaves nothing running.
 */
void exec_test_spawn_tied(struct exec_test_child *c, char *const argv[]);

/*
 * Spawn argv on a new pseudo-terminal of rows x cols as its controlling
 * terminal (stdin, stdout and stderr). *master gets our side.
 */
pid_t exec_test_spawn_pty(int *master, unsigned short rows, unsigned short cols,
                          char *const argv[]);

/* A growing NUL-terminated byte buffer. */
struct exec_test_buf {
	char *data;
	size_t len, cap;
};
void exec_test_buf_free(struct exec_test_buf *b);

/* Read fd into b until it holds needle (true), EOF or timeout (false). */
bool exec_test_read_until(int fd, struct exec_test_buf *b, const char *needle,
                          int timeout_ms);

/*
 * Write in (then close stdin), read stdout and stderr to EOF, and wait.
 * Returns the exit status (128+N for a signal). Fails the test after
 * timeout_ms.
 */
int exec_test_communicate(struct exec_test_child *c, const void *in,
                          size_t inlen, struct exec_test_buf *out,
                          struct exec_test_buf *err, int timeout_ms);

/* Wait for pid: its exit status, or 128+N. Kills it and fails the test
 * after timeout_ms. */
int exec_test_wait(pid_t pid, int timeout_ms);

/* Close the child's pipes that are still open. */
void exec_test_close(struct exec_test_child *c);

/*
 * Run <build>/omni-exec with args (NULL-terminated), stdin from in, and
 * return its status; out and err (may be NULL) get the output.
 */
int exec_test_omni_exec(const char *in, size_t inlen, struct exec_test_buf *out,
                        struct exec_test_buf *err, const char *const *args);

#endif
