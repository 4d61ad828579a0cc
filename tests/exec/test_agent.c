/*
 * tests/exec/test_agent.c - omni-agent run on the host as an ordinary process
 * (not PID 1): started on a temp socket, driven with the client library
 * (exec/client.c), stopped with SIGTERM.
 *
 * Outside a container the agent is a child subreaper and reaps every
 * child itself (reaper mode), so these tests also cover what makes it a
 * working init: statuses reach the right waiter, orphans are buried, and
 * SIGTERM ends everything at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "client.h"
#include "exec_helpers.h"
#include "helpers.h"
#include "omni/ipc.h"

static char tmp[PATH_MAX], ws[PATH_MAX], sock[PATH_MAX];
static struct exec_test_child agent = { .pid = -1 };

static void setup(void)
{
	char prog[PATH_MAX];

	omni_test_mkdtemp(tmp, sizeof(tmp));
	cr_assert((size_t)snprintf(ws, sizeof(ws), "%s/ws", tmp) < sizeof(ws));
	cr_assert((size_t)snprintf(sock, sizeof(sock), "%s/agent.sock", tmp) <
	          sizeof(sock));
	cr_assert(mkdir(ws, 0755) == 0);
	exec_test_program(prog, sizeof(prog), "omni-agent");
	char *argv[] = { prog, "--listen", sock, "--workdir", ws, NULL };
	exec_test_spawn_tied(&agent, argv);
	close(agent.in);
	agent.in = -1;

	/* Ready when it answers. */
	for (int i = 0; i < 500; i++) {
		int fd;

		if (omni__exec_client_connect(sock, &fd) == 0) {
			close(fd);
			return;
		}
		usleep(10 * 1000);
	}
	cr_assert_fail("omni-agent did not listen on %s", sock);
}

static void teardown(void)
{
	if (agent.pid > 0) {
		kill(agent.pid, SIGKILL);
		exec_test_wait(agent.pid, 5000);
	}
	exec_test_close(&agent);
	omni_test_rm_rf(tmp);
}

TestSuite(agent, .init = setup, .fini = teardown, .timeout = 60);

static int tmp_file(const char *content)
{
	char path[PATH_MAX];
	int fd;

	cr_assert((size_t)snprintf(path, sizeof(path), "%s/f-XXXXXX", tmp) <
	          sizeof(path));
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	unlink(path);
	if (content) {
		cr_assert_eq(write(fd, content, strlen(content)),
		             (ssize_t)strlen(content));
		lseek(fd, 0, SEEK_SET);
	}
	return fd;
}

static char *slurp(int fd)
{
	struct stat st;

	cr_assert(fstat(fd, &st) == 0);
	char *s = calloc(1, (size_t)st.st_size + 1);
	cr_assert(s);
	cr_assert_eq(pread(fd, s, (size_t)st.st_size, 0), st.st_size);
	return s;
}

struct run {
	struct omni__exec_client_result res;
	char *out, *err;
	int rc;
};

/* Run req on the agent; input (NULL: none) goes to stdin; sig_fd as in
 * struct omni__exec_client_io. */
static void run(struct run *r, struct omni_ipc_request *req, const char *input,
                int sig_fd)
{
	struct omni__exec_client_io io = OMNI_EXEC_CLIENT_IO_INIT;
	int fd;

	omni_assert_ok(omni__exec_client_connect(sock, &fd));
	io.out_fd = tmp_file(NULL);
	io.err_fd = tmp_file(NULL);
	io.sig_fd = sig_fd;
	if (input) {
		io.in_fd = tmp_file(input);
		req->want_stdin = true;
	}
	omni_error_clear();
	r->rc = omni__exec_client_run(fd, req, &io, &r->res);
	close(fd);
	r->out = slurp(io.out_fd);
	r->err = slurp(io.err_fd);
	close(io.out_fd);
	close(io.err_fd);
	if (io.in_fd >= 0)
		close(io.in_fd);
}

static void run_shell(struct run *r, const char *shell)
{
	struct omni_ipc_request req = { .shell = (char *)shell };

	run(r, &req, NULL, -1);
	cr_assert_eq(r->rc, 0, "rc %d: %s", r->rc, omni_error_last());
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

Test(agent, output_and_exit_codes)
{
	struct run r;

	run_shell(&r, "echo out; echo err >&2; exit 3");
	cr_assert_eq(r.res.exit_code, 3);
	cr_assert_str_eq(r.out, "out\n");
	cr_assert_str_eq(r.err, "err\n");
	run_free(&r);

	run_shell(&r, "kill -9 $$");
	cr_assert_eq(r.res.exit_code, 137);
	cr_assert_eq(r.res.signal, 9);
	run_free(&r);

	struct omni_ipc_request req = {
		.argv = (char *[]){ "echo", "a b", "c", NULL },
	};
	run(&r, &req, NULL, -1);
	cr_assert_eq(r.rc, 0);
	cr_assert_eq(r.res.exit_code, 0);
	cr_assert_str_eq(r.out, "a b c\n");
	run_free(&r);

	req.argv = (char *[]){ "no-such-program-omnifs", NULL };
	run(&r, &req, NULL, -1);
	cr_assert_eq(r.res.exit_code, 127);
	cr_assert(strstr(r.err, "not found"), "%s", r.err);
	run_free(&r);

	char path[PATH_MAX];
	cr_assert((size_t)snprintf(path, sizeof(path), "%s/plain", ws) <
	          sizeof(path));
	omni_test_write_host(path, "echo hi\n", 8);
	req.argv = (char *[]){ path, NULL };
	run(&r, &req, NULL, -1);
	cr_assert_eq(r.res.exit_code, 126);
	run_free(&r);
}

Test(agent, stdin_with_eof)
{
	struct omni_ipc_request req = { .argv = (char *[]){ "cat", NULL } };
	struct run r;

	run(&r, &req, "line one\nline two\n", -1);
	cr_assert_eq(r.rc, 0, "%s", omni_error_last());
	cr_assert_eq(r.res.exit_code, 0);
	cr_assert_str_eq(r.out, "line one\nline two\n");
	run_free(&r);
}

Test(agent, environment_and_directories)
{
	struct omni_ipc_request req = {
		.shell = "printf '%s:' \"$GREETING\"; pwd",
		.env = (char *[]){ "GREETING=hello", NULL },
	};
	char sub[PATH_MAX], want[PATH_MAX + 16];
	struct run r;

	cr_assert((size_t)snprintf(sub, sizeof(sub), "%s/sub", ws) <
	          sizeof(sub));
	cr_assert(mkdir(sub, 0755) == 0);

	run(&r, &req, NULL, -1);
	snprintf(want, sizeof(want), "hello:%s\n", ws);
	cr_assert_str_eq(r.out, want);
	run_free(&r);

	req.cwd = "sub"; /* relative to --workdir */
	run(&r, &req, NULL, -1);
	snprintf(want, sizeof(want), "hello:%s\n", sub);
	cr_assert_str_eq(r.out, want);
	run_free(&r);

	req.cwd = tmp; /* absolute in the container */
	run(&r, &req, NULL, -1);
	snprintf(want, sizeof(want), "hello:%s\n", tmp);
	cr_assert_str_eq(r.out, want);
	run_free(&r);

	req.cwd = "missing";
	run(&r, &req, NULL, -1);
	cr_assert_eq(r.rc, -ENOENT, "rc %d", r.rc);
	cr_assert(strstr(omni_error_last(), "missing"), "%s",
	          omni_error_last());
	run_free(&r);
}

Test(agent, timeout_is_124)
{
	struct omni_ipc_request req = { .argv =
		                            (char *[]){ "sleep", "10", NULL },
		                        .timeout_ms = 300 };
	struct run r;
	long long t0 = omni_test_now_ms();

	run(&r, &req, NULL, -1);
	cr_assert_eq(r.rc, 0);
	cr_assert_eq(r.res.exit_code, 124);
	cr_assert(r.res.timed_out);
	cr_assert(omni_test_now_ms() - t0 < 3000);
	run_free(&r);
}

static void *send_sigint_later(void *arg)
{
	int fd = *(int *)arg;
	unsigned char sig = SIGINT;

	usleep(300 * 1000);
	cr_assert_eq(write(fd, &sig, 1), 1);
	return NULL;
}

Test(agent, forwarded_signal_ends_the_group)
{
	struct omni_ipc_request req = { .shell = "sleep 30 & wait" };
	struct run r;
	pthread_t t;
	int p[2];

	cr_assert(pipe(p) == 0);
	cr_assert(pthread_create(&t, NULL, send_sigint_later, &p[1]) == 0);
	long long t0 = omni_test_now_ms();
	run(&r, &req, NULL, p[0]);
	pthread_join(t, NULL);
	cr_assert_eq(r.rc, 0, "%s", omni_error_last());
	cr_assert_eq(r.res.exit_code, 130);
	cr_assert(omni_test_now_ms() - t0 < 3000);
	run_free(&r);
	close(p[0]);
	close(p[1]);
}

Test(agent, terminal_of_the_requested_size)
{
	struct omni_ipc_request req = {
		.shell = "stty size; tty", .tty = true, .rows = 20, .cols = 70
	};
	struct run r;

	run(&r, &req, NULL, -1);
	cr_assert_eq(r.rc, 0);
	cr_assert_eq(r.res.exit_code, 0);
	cr_assert(strstr(r.out, "20 70"), "%s", r.out);
	cr_assert(strstr(r.out, "/dev/pts/"), "%s", r.out);
	run_free(&r);
}

Test(agent, ping_and_concurrency)
{
	unsigned int status;
	char *reply;
	int fd;

	omni_assert_ok(omni__exec_client_connect(sock, &fd));
	omni_assert_ok(omni__exec_client_control(fd, "ping", &status, &reply));
	cr_assert_eq(status, 0);
	cr_assert_str_eq(reply, "pong");
	free(reply);
	close(fd);

	/* Four commands at once, through four omni-exec-like clients. */
	struct exec_test_child c[4];
	char prog[PATH_MAX], rt[PATH_MAX], link[PATH_MAX];

	/* omni-exec --project P finds <runtime>/P.sock: point one at the
	 * agent's socket. */
	cr_assert((size_t)snprintf(rt, sizeof(rt), "%s/run", tmp) < sizeof(rt));
	cr_assert(mkdir(rt, 0700) == 0);
	cr_assert((size_t)snprintf(link, sizeof(link), "%s/agent.sock", rt) <
	          sizeof(link));
	cr_assert(symlink(sock, link) == 0);
	cr_assert(setenv("OMNI_RUNTIME_DIR", rt, 1) == 0);
	exec_test_program(prog, sizeof(prog), "omni-exec");
	long long t0 = omni_test_now_ms();
	for (int i = 0; i < 4; i++) {
		char *argv[] = {
			prog, "--project", "agent", "sleep", "1", NULL
		};
		exec_test_spawn(&c[i], NULL, argv);
	}
	for (int i = 0; i < 4; i++)
		cr_assert_eq(
		    exec_test_communicate(&c[i], NULL, 0, NULL, NULL, 10000),
		    0);
	long long took = omni_test_now_ms() - t0;
	cr_assert(took < 2500, "took %lld ms", took);
}

static bool proc_exists(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%ld", (long)pid);
	return stat(path, &st) == 0;
}

Test(agent, orphans_are_reaped)
{
	struct run r;

	/* The background sleep outlives the shell; it is killed with the
	 * rest of the group and, orphaned, re-parented to the agent (a
	 * subreaper here, PID 1 in a container), which must bury it. */
	run_shell(&r, "sleep 5 & echo $!");
	pid_t orphan = (pid_t)atol(r.out);
	cr_assert(orphan > 0, "%s", r.out);
	bool gone = false;
	for (int i = 0; i < 300 && !gone; i++) {
		gone = !proc_exists(orphan);
		if (!gone)
			usleep(10 * 1000);
	}
	cr_assert(gone, "pid %ld is still there (a zombie?)", (long)orphan);
	run_free(&r);
}

Test(agent, sigterm_kills_commands_and_exits_zero_at_once)
{
	struct omni_ipc_request req = { .shell = "echo pid=$$; exec sleep 30" };
	struct omni_ipc_buf buf = { 0 };
	uint8_t type;
	pid_t remote = 0;
	int fd;

	omni_assert_ok(omni__exec_client_connect(sock, &fd));
	omni_assert_ok(omni_ipc_request_encode(&req, &buf));
	omni_assert_ok(omni_ipc_send(fd, OMNI_IPC_EXEC, buf.data, buf.len));
	while (remote == 0) {
		cr_assert_eq(omni_ipc_recv(fd, &type, &buf), 1);
		if (type == OMNI_IPC_STDOUT) {
			omni_ipc_buf_put_u8(&buf, 0);
			remote =
			    (pid_t)atol(strstr((char *)buf.data, "pid=") + 4);
		}
	}
	long long t0 = omni_test_now_ms();
	cr_assert(kill(agent.pid, SIGTERM) == 0);
	cr_assert_eq(exec_test_wait(agent.pid, 3000), 0);
	agent.pid = -1;
	cr_assert(omni_test_now_ms() - t0 < 1000);
	cr_assert(omni_test_pid_gone(remote, 2000), "the command survived");
	/* The connection ends without an EXIT. */
	cr_assert_leq(omni_ipc_recv(fd, &type, &buf), 0);
	cr_assert(!omni_test_host_exists(sock), "socket left behind");
	close(fd);
	omni_ipc_buf_finish(&buf);
}
