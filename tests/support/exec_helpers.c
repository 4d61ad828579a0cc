/*
 * tests/support/exec_helpers.c - spawning the built programs with pipes or a
 * pseudo-terminal, and waiting with deadlines (see exec_helpers.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "exec_helpers.h"
#include "base/clock.h"

extern char **environ;

void exec_test_program(char *out, size_t size, const char *name)
{
	const char *dir = getenv("OMNI_BUILD_DIR");
	char self[PATH_MAX];
	int n;

	if (dir && *dir) {
		n = snprintf(out, size, "%s/%s", dir, name);
	} else {
		ssize_t len =
		    readlink("/proc/self/exe", self, sizeof(self) - 1);

		cr_assert(len > 0, "readlink /proc/self/exe: %s",
		          strerror(errno));
		self[len] = '\0';
		char *slash = strrchr(self, '/');
		cr_assert(slash);
		*slash = '\0';
		n = snprintf(out, size, "%s/%s", self, name);
	}
	cr_assert(n > 0 && (size_t)n < size);
	cr_assert(access(out, X_OK) == 0,
	          "%s is missing: build it first (make %s)", out, out);
}

/*
 * Children start with default signal dispositions and nothing blocked;
 * the test process itself ignores SIGPIPE, so that writing to a child that
 * has exited fails with EPIPE instead of killing the test.
 */
static void clean_attr(posix_spawnattr_t *attr, short extra_flags)
{
	sigset_t none, all;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_init(attr);
	posix_spawnattr_setsigmask(attr, &none);
	posix_spawnattr_setsigdefault(attr, &all);
	posix_spawnattr_setflags(attr,
	                         (short)(POSIX_SPAWN_SETSIGMASK |
	                                 POSIX_SPAWN_SETSIGDEF | extra_flags));
}

void exec_test_spawn(struct exec_test_child *c, const char *cwd,
                     char *const argv[])
{
	int in[2], out[2], err[2];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;

	clean_attr(&attr, 0);
	cr_assert(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 &&
	          pipe2(err, O_CLOEXEC) == 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_adddup2(&fa, err[1], 2);
	/* Nothing of the test runner's (its pipes to Criterion) leaks. */
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	if (cwd)
		posix_spawn_file_actions_addchdir_np(&fa, cwd);
	int rc = posix_spawn(&c->pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	cr_assert(rc == 0, "spawn %s: %s", argv[0], strerror(rc));
	close(in[0]);
	close(out[1]);
	close(err[1]);
	c->in = in[1];
	c->out = out[0];
	c->err = err[0];
}

void exec_test_spawn_tied(struct exec_test_child *c, char *const argv[])
{
	int in[2], out[2], err[2];
	pid_t parent = getpid();
	sigset_t none;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&none);
	cr_assert(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 &&
	          pipe2(err, O_CLOEXEC) == 0);
	c->pid = fork();
	cr_assert(c->pid >= 0, "fork: %s", strerror(errno));
	if (c->pid == 0) {
		/* Async-signal-safe calls only: the test may have threads. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(126);
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 ||
		    dup2(err[1], 2) < 0)
			_exit(126);
		syscall(SYS_close_range, 3, ~0u, 0);
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(argv[0], argv, environ);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	close(err[1]);
	c->in = in[1];
	c->out = out[0];
	c->err = err[0];
}

pid_t exec_test_spawn_pty(int *master, unsigned short rows, unsigned short cols,
                          char *const argv[])
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct winsize ws = { .ws_row = rows, .ws_col = cols };
	char slave[128];
	pid_t pid;
	int m, rc;

	m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	cr_assert(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0 &&
	              ptsname_r(m, slave, sizeof(slave)) == 0,
	          "pty: %s", strerror(errno));
	cr_assert(ioctl(m, TIOCSWINSZ, &ws) == 0);
	posix_spawn_file_actions_init(&fa);
	/* A new session: opening the slave makes it the controlling
	 * terminal, and the child is its foreground process group. */
	clean_attr(&attr, POSIX_SPAWN_SETSID);
	posix_spawn_file_actions_addopen(&fa, 0, slave, O_RDWR, 0);
	posix_spawn_file_actions_adddup2(&fa, 0, 1);
	posix_spawn_file_actions_adddup2(&fa, 0, 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	cr_assert(rc == 0, "spawn %s: %s", argv[0], strerror(rc));
	*master = m;
	return pid;
}

void exec_test_buf_free(struct exec_test_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static void buf_add(struct exec_test_buf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = realloc(b->data, cap);
		cr_assert(b->data);
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

/* Read once; false on EOF or error (EIO from a pty master at hang-up). */
static bool read_some(int fd, struct exec_test_buf *b)
{
	char chunk[65536];
	ssize_t n;

	do {
		n = read(fd, chunk, sizeof(chunk));
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		return false;
	buf_add(b, chunk, (size_t)n);
	return true;
}

bool exec_test_read_until(int fd, struct exec_test_buf *b, const char *needle,
                          int timeout_ms)
{
	long long end = omni__now_ms() + timeout_ms;

	if (!b->data)
		buf_add(b, "", 0);
	while (!strstr(b->data, needle)) {
		long long left = end - omni__now_ms();
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (left <= 0)
			return false;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		if (!read_some(fd, b))
			return strstr(b->data, needle) != NULL;
	}
	return true;
}

static int status_code(int st)
{
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

int exec_test_wait(pid_t pid, int timeout_ms)
{
	long long end = omni__now_ms() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return status_code(st);
		cr_assert(r == 0, "waitpid: %s", strerror(errno));
		if (omni__now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("process %ld still running after %d ms",
			               (long)pid, timeout_ms);
		}
		poll(NULL, 0, 5);
	}
}

void exec_test_close(struct exec_test_child *c)
{
	if (c->in >= 0)
		close(c->in);
	if (c->out >= 0)
		close(c->out);
	if (c->err >= 0)
		close(c->err);
	c->in = c->out = c->err = -1;
}

int exec_test_communicate(struct exec_test_child *c, const void *in,
                          size_t inlen, struct exec_test_buf *out,
                          struct exec_test_buf *err, int timeout_ms)
{
	struct exec_test_buf sink_out = { 0 }, sink_err = { 0 };
	long long end = omni__now_ms() + timeout_ms;
	size_t done = 0;

	if (!out)
		out = &sink_out;
	if (!err)
		err = &sink_err;
	buf_add(out, "", 0);
	buf_add(err, "", 0);
	if (c->in >= 0)
		fcntl(c->in, F_SETFL, O_NONBLOCK);
	if (c->in >= 0 && inlen == 0) {
		close(c->in);
		c->in = -1;
	}
	while (c->out >= 0 || c->err >= 0) {
		struct pollfd p[3];
		int n = 0, ii = -1, io = -1, ie = -1;
		long long left = end - omni__now_ms();

		if (left <= 0) {
			kill(c->pid, SIGKILL);
			exec_test_wait(c->pid, 5000);
			cr_assert_fail("child still writing after %d ms; "
			               "stdout so far: %s; stderr: %s",
			               timeout_ms, out->data, err->data);
		}
		if (c->in >= 0) {
			ii = n;
			p[n++] =
			    (struct pollfd){ .fd = c->in, .events = POLLOUT };
		}
		if (c->out >= 0) {
			io = n;
			p[n++] =
			    (struct pollfd){ .fd = c->out, .events = POLLIN };
		}
		if (c->err >= 0) {
			ie = n;
			p[n++] =
			    (struct pollfd){ .fd = c->err, .events = POLLIN };
		}
		if (poll(p, (nfds_t)n, (int)left) <= 0)
			continue;
		if (ii >= 0 && p[ii].revents) {
			ssize_t w =
			    write(c->in, (const char *)in + done, inlen - done);
			if (w > 0)
				done += (size_t)w;
			if ((w < 0 && errno != EAGAIN) || done == inlen) {
				close(c->in);
				c->in = -1;
			}
		}
		if (io >= 0 && p[io].revents && !read_some(c->out, out)) {
			close(c->out);
			c->out = -1;
		}
		if (ie >= 0 && p[ie].revents && !read_some(c->err, err)) {
			close(c->err);
			c->err = -1;
		}
	}
	exec_test_close(c);
	long long left = end - omni__now_ms();
	int code = exec_test_wait(c->pid, left > 0 ? (int)left : 1);
	exec_test_buf_free(&sink_out);
	exec_test_buf_free(&sink_err);
	return code;
}

int exec_test_omni_exec(const char *in, size_t inlen, struct exec_test_buf *out,
                        struct exec_test_buf *err, const char *const *args)
{
	char prog[PATH_MAX];
	char *argv[64];
	size_t n = 0;
	struct exec_test_child c;

	exec_test_program(prog, sizeof(prog), "omni-exec");
	argv[n++] = prog;
	for (; args && *args; args++) {
		cr_assert(n < 63);
		argv[n++] = (char *)*args;
	}
	argv[n] = NULL;
	exec_test_spawn(&c, NULL, argv);
	return exec_test_communicate(&c, in, inlen, out, err, 30000);
}
