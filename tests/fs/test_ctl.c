/*
 * tests/fs/test_ctl.c - the control server (fs/ctl.c) driven by the real
 * omni-exec binary, and by the client library where a raw exchange is
 * needed.
 *
 * Each test gets a private world: a temp directory, a runtime directory
 * (OMNI_RUNTIME_DIR, mode 0700) and a local backend on a unique project,
 * with omnifs_ctl_start() listening on <runtime>/<project>.sock and hooks
 * that count their calls. omni-exec finds it with --project, so no FUSE
 * mount is needed. Criterion runs each test in its own process, so the
 * environment variable and the statics below are per test.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "client.h"
#include "ctl.h"
#include "exec_helpers.h"
#include "helpers.h"
#include "omni/ipc.h"
#include "omni/session.h"

static struct omni_fixture fx;
static char run_dir[PATH_MAX];
static char sock_path[PATH_MAX];
static struct omnifs_ctl *ctl;

/* What the hooks saw. */
static atomic_int before_calls, after_calls, control_calls;
static atomic_bool refuse_exec, slow_after;
static atomic_llong after_done_ms;
static atomic_bool bad_payload;

static int hook_before(void *payload)
{
	/* No cr_assert here: hooks run on the server's threads. */
	if (payload != &fx)
		atomic_store(&bad_payload, true);
	atomic_fetch_add(&before_calls, 1);
	if (atomic_load(&refuse_exec))
		return omni_error_set(-EPERM,
		                      "commands are paused by the test");
	return 0;
}

static void hook_after(void *payload)
{
	if (payload != &fx)
		atomic_store(&bad_payload, true);
	if (atomic_load(&slow_after))
		usleep(200 * 1000);
	atomic_store(&after_done_ms, omni_test_now_ms());
	atomic_fetch_add(&after_calls, 1);
}

static int hook_control(const char *request, char **reply, void *payload)
{
	(void)payload;
	atomic_fetch_add(&control_calls, 1);
	if (strcmp(request, "stats") == 0) {
		*reply = strdup("hook: 42 things\n");
		return *reply ? 0 : -ENOMEM;
	}
	if (strncmp(request, "echo ", 5) == 0) {
		*reply = strdup(request + 5);
		return *reply ? 0 : -ENOMEM;
	}
	return -EINVAL;
}

static const struct omnifs_ctl_hooks hooks = {
	.before_exec = hook_before,
	.after_exec = hook_after,
	.control = hook_control,
	.payload = &fx,
};

static void start_server(void)
{
	omni_assert_ok(omnifs_ctl_start(&ctl, fx.b, sock_path, &hooks));
}

static void setup(void)
{
	omni_fixture_start(&fx);
	int n = snprintf(run_dir, sizeof(run_dir), "%s/run", fx.tmp);
	cr_assert(n > 0 && (size_t)n < sizeof(run_dir));
	cr_assert(mkdir(run_dir, 0700) == 0);
	cr_assert(setenv("OMNI_RUNTIME_DIR", run_dir, 1) == 0);
	omni_assert_ok(
	    omni_session_socket_path(fx.project, sock_path, sizeof(sock_path)));
	start_server();
}

static void teardown(void)
{
	cr_expect(!atomic_load(&bad_payload), "a hook got the wrong payload");
	omnifs_ctl_stop(ctl);
	ctl = NULL;
	omni_fixture_finish(&fx);
}

TestSuite(ctl, .init = setup, .fini = teardown, .timeout = 60);

static size_t len_or_0(const char *s)
{
	return s ? strlen(s) : 0;
}

/* Run omni-exec --project <ours> ARGS...; returns its status. */
#define OMNI_EXEC(in, out, err, ...)                                           \
	exec_test_omni_exec((in), len_or_0(in), (out), (err),                  \
	                    (const char *const[]){ "--project", fx.project,    \
	                                           __VA_ARGS__, NULL })

/* Spawn omni-exec --project <ours> ARGS... with pipes. */
static void spawn_exec(struct exec_test_child *c, const char *const *args)
{
	char prog[PATH_MAX];
	char *argv[32];
	size_t n = 0;

	exec_test_program(prog, sizeof(prog), "omni-exec");
	argv[n++] = prog;
	argv[n++] = "--project";
	argv[n++] = fx.project;
	for (; *args; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	exec_test_spawn(c, NULL, argv);
}

/* --- exit statuses -------------------------------------------------------- */

Test(ctl, exit_zero_with_stdout_and_stderr_apart)
{
	struct exec_test_buf out = { 0 }, err = { 0 };
	int code = OMNI_EXEC(NULL, &out, &err, "-c",
	                     "echo to-out; echo to-err >&2; echo more-out");

	cr_assert_eq(code, 0, "stderr: %s", err.data);
	cr_assert_str_eq(out.data, "to-out\nmore-out\n");
	cr_assert_str_eq(err.data, "to-err\n");
	exec_test_buf_free(&out);
	exec_test_buf_free(&err);
}

Test(ctl, exit_status_of_the_command)
{
	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "-c", "exit 3"), 3);
	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "sh", "-c", "exit 42"), 42);
	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "false"), 1);
}

Test(ctl, killed_by_a_signal_is_128_plus_n)
{
	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "-c", "kill -9 $$"), 137);
	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "-c", "kill -TERM $$"), 143);
}

Test(ctl, timeout_is_124)
{
	struct exec_test_buf err = { 0 };
	long long t0 = omni_test_now_ms();
	int code =
	    OMNI_EXEC(NULL, NULL, &err, "--timeout", "0.5", "sleep", "10");
	long long took = omni_test_now_ms() - t0;

	cr_assert_eq(code, 124, "stderr: %s", err.data);
	cr_assert(took >= 450 && took < 5000, "took %lld ms", took);
	cr_assert(strstr(err.data, "timed out"), "stderr: %s", err.data);
	exec_test_buf_free(&err);
}

Test(ctl, missing_program_is_127)
{
	struct exec_test_buf err = { 0 };
	int code = OMNI_EXEC(NULL, NULL, &err, "no-such-program-omnifs");

	cr_assert_eq(code, 127);
	cr_assert(strstr(err.data, "no-such-program-omnifs"), "%s", err.data);
	cr_assert(strstr(err.data, "not found"), "%s", err.data);
	exec_test_buf_free(&err);
	/* A shell string gives the shell's own 127. */
	cr_assert_eq(
	    OMNI_EXEC(NULL, NULL, NULL, "-c", "no-such-program-omnifs"), 127);
}

Test(ctl, non_executable_file_is_126)
{
	char path[PATH_MAX];
	struct exec_test_buf err = { 0 };

	omni_test_host_path(&fx, "script.sh", path, sizeof(path));
	omni_test_write_host(path, "#!/bin/sh\necho hi\n", 18);
	cr_assert(chmod(path, 0644) == 0);
	cr_assert_eq(OMNI_EXEC(NULL, NULL, &err, "./script.sh"), 126,
	             "stderr: %s", err.data);
	exec_test_buf_free(&err);
}

Test(ctl, unknown_project_is_125)
{
	struct exec_test_buf err = { 0 };
	char other[64];

	omni_test_project_id(other, sizeof(other), "nobody");
	int code = exec_test_omni_exec(
	    NULL, 0, NULL, &err,
	    (const char *const[]){ "--project", other, "true", NULL });
	cr_assert_eq(code, 125);
	cr_assert(strstr(err.data, "omni-exec: ") && strstr(err.data, other),
	          "stderr: %s", err.data);
	exec_test_buf_free(&err);
}

Test(ctl, daemon_not_running_is_125)
{
	struct exec_test_buf err = { 0 };

	omnifs_ctl_stop(ctl);
	ctl = NULL;
	cr_assert(!omni_test_host_exists(sock_path), "socket left behind");
	cr_assert_eq(OMNI_EXEC(NULL, NULL, &err, "true"), 125);
	cr_assert(strstr(err.data, "no omnifs daemon"), "stderr: %s", err.data);
	exec_test_buf_free(&err);

	/* A stale socket: bound once, nobody listening. */
	int fd =
	    omni__unix_listen(sock_path, 0600, OMNI__UNIX_STALE_PROBE, NULL);
	cr_assert(fd >= 0, "%s", omni_error_last());
	close(fd);
	cr_assert_eq(OMNI_EXEC(NULL, NULL, &err, "true"), 125);
	cr_assert(strstr(err.data, "not running"), "stderr: %s", err.data);
	exec_test_buf_free(&err);

	/* And the server replaces the stale socket. */
	start_server();
	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "true"), 0);
}

Test(ctl, misuse_is_2)
{
	static const char *const cases[][4] = {
		{ NULL },
		{ "--bogus", "true", NULL },
		{ "-c", NULL },
		{ "--timeout", "soon", "true", NULL },
		{ "-c", "echo", "extra", NULL },
		{ "-e", "=x", "true", NULL },
		{ "--ping", "true", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct exec_test_buf out = { 0 }, err = { 0 };
		int code = exec_test_omni_exec(NULL, 0, &out, &err, cases[i]);

		cr_assert_eq(code, 2, "case %zu: %d, stderr %s", i, code,
		             err.data);
		cr_assert(strstr(err.data, "Usage: omni-exec"), "case %zu: %s",
		          i, err.data);
		cr_assert_str_eq(out.data, "");
		exec_test_buf_free(&out);
		exec_test_buf_free(&err);
	}
}

Test(ctl, help_lists_every_exit_code)
{
	struct exec_test_buf out = { 0 };
	int code = exec_test_omni_exec(NULL, 0, &out, NULL,
	                               (const char *const[]){ "--help", NULL });

	cr_assert_eq(code, 0);
	static const char *const want[] = {
		"Exit status", "128+N",     "124",       "125",      "126",
		"127",         "--project", "--timeout", "-t, --tty"
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_assert(strstr(out.data, want[i]), "no %s in: %s", want[i],
		          out.data);
	exec_test_buf_free(&out);
}

/* --- streams -------------------------------------------------------------- */

Test(ctl, output_streams_as_it_is_produced)
{
	struct exec_test_child c;
	struct exec_test_buf out = { 0 };
	long long t0 = omni_test_now_ms();

	spawn_exec(&c, (const char *const[]){
	                   "-c", "echo first; sleep 1; echo second", NULL });
	close(c.in);
	c.in = -1;
	cr_assert(exec_test_read_until(c.out, &out, "first\n", 5000));
	long long first = omni_test_now_ms() - t0;
	cr_assert(first < 900, "first line after %lld ms", first);
	cr_assert_eq(waitpid(c.pid, NULL, WNOHANG), 0,
	             "omni-exec ended before the second line");
	cr_assert(exec_test_read_until(c.out, &out, "second\n", 5000));
	cr_assert_str_eq(out.data, "first\nsecond\n");
	cr_assert_eq(exec_test_communicate(&c, NULL, 0, NULL, NULL, 5000), 0);
	exec_test_buf_free(&out);
}

Test(ctl, stdin_is_forwarded_with_eof)
{
	struct exec_test_buf out = { 0 };

	cr_assert_eq(OMNI_EXEC("hello\nworld\n", &out, NULL, "cat"), 0);
	cr_assert_str_eq(out.data, "hello\nworld\n");
	exec_test_buf_free(&out);

	/* EOF reaches a reader that counts lines. */
	cr_assert_eq(OMNI_EXEC("a\nb\nc\n", &out, NULL, "wc", "-l"), 0);
	cr_assert_eq(atoi(out.data), 3, "%s", out.data);
	exec_test_buf_free(&out);

	/* -n gives /dev/null. */
	cr_assert_eq(OMNI_EXEC("ignored\n", &out, NULL, "-n", "cat"), 0);
	cr_assert_str_eq(out.data, "");
	exec_test_buf_free(&out);
}

Test(ctl, binary_data_both_ways)
{
	size_t len = 256 * 1024;
	char *in = malloc(len);
	struct exec_test_buf out = { 0 };
	struct exec_test_child c;

	for (size_t i = 0; i < len; i++)
		in[i] = (char)(i % 256);
	spawn_exec(&c, (const char *const[]){ "cat", NULL });
	cr_assert_eq(exec_test_communicate(&c, in, len, &out, NULL, 20000), 0);
	cr_assert_eq(out.len, len);
	cr_assert(memcmp(out.data, in, len) == 0, "bytes differ");
	exec_test_buf_free(&out);
	free(in);
}

Test(ctl, environment_option)
{
	struct exec_test_buf out = { 0 };

	cr_assert_eq(OMNI_EXEC(NULL, &out, NULL, "-e", "FOO=bar", "-e",
	                       "BAZ=with space", "-c",
	                       "printf '%s|%s' \"$FOO\" \"$BAZ\""),
	             0);
	cr_assert_str_eq(out.data, "bar|with space");
	exec_test_buf_free(&out);
}

Test(ctl, closed_stdout_sends_sigpipe)
{
	struct exec_test_child c;
	struct exec_test_buf out = { 0 };

	spawn_exec(&c, (const char *const[]){ "yes", NULL });
	cr_assert(exec_test_read_until(c.out, &out, "y\ny\n", 5000));
	close(c.out);
	c.out = -1;
	/* As in a local pipeline: yes dies of SIGPIPE. */
	cr_assert_eq(exec_test_communicate(&c, NULL, 0, NULL, NULL, 10000),
	             141);
	exec_test_buf_free(&out);
}

/* --- signals -------------------------------------------------------------- */

static void signal_reaches_group(int sig, int want)
{
	struct exec_test_child c;
	struct exec_test_buf out = { 0 };

	/* A background sleep and the shell waiting for it: the signal must
	 * end the shell, and nothing of the group may stay. */
	spawn_exec(&c, (const char *const[]){
	                   "-c", "sleep 30 & echo pid=$!; wait", NULL });
	cr_assert(exec_test_read_until(c.out, &out, "\n", 5000), "got %s",
	          out.data);
	pid_t remote = (pid_t)atol(strstr(out.data, "pid=") + 4);
	cr_assert(remote > 0);
	usleep(100 * 1000); /* let the shell reach `wait` */

	long long t0 = omni_test_now_ms();
	cr_assert(kill(c.pid, sig) == 0);
	int code = exec_test_communicate(&c, NULL, 0, NULL, NULL, 5000);
	long long took = omni_test_now_ms() - t0;
	cr_assert_eq(code, want);
	cr_assert(took < 3000, "took %lld ms", took);
	cr_assert(omni_test_pid_gone(remote, 3000), "remote sleep survived");
	exec_test_buf_free(&out);
}

Test(ctl, sigint_reaches_the_remote_group)
{
	signal_reaches_group(SIGINT, 130);
}

Test(ctl, sigterm_reaches_the_remote_group)
{
	signal_reaches_group(SIGTERM, 143);
}

Test(ctl, sighup_reaches_the_remote_group)
{
	signal_reaches_group(SIGHUP, 129);
}

/* --- terminals ------------------------------------------------------------ */

static pid_t spawn_tty_shell(int *master, unsigned short rows,
                             unsigned short cols)
{
	char prog[PATH_MAX];

	exec_test_program(prog, sizeof(prog), "omni-exec");
	char *argv[] = { prog, "-t", "--project", fx.project, "sh", NULL };
	return exec_test_spawn_pty(master, rows, cols, argv);
}

static void pty_write(int master, const char *s)
{
	cr_assert_eq(write(master, s, strlen(s)), (ssize_t)strlen(s));
}

Test(ctl, tty_gives_a_terminal_of_the_callers_size)
{
	struct exec_test_buf out = { 0 };
	int master;
	pid_t pid = spawn_tty_shell(&master, 33, 101);

	pty_write(master, "stty size; tty; echo done-$((6*7)); exit 7\n");
	cr_assert(exec_test_read_until(master, &out, "done-42", 10000),
	          "output: %s", out.data);
	/* Read to the end (EIO at hang-up) so nothing blocks. */
	exec_test_read_until(master, &out, "\x01never\x01", 3000);
	cr_assert_eq(exec_test_wait(pid, 5000), 7, "output: %s", out.data);
	cr_assert(strstr(out.data, "33 101"), "output: %s", out.data);
	cr_assert(strstr(out.data, "/dev/pts/"), "output: %s", out.data);
	close(master);
	exec_test_buf_free(&out);
}

Test(ctl, tty_resize_is_passed_on)
{
	struct exec_test_buf out = { 0 };
	struct winsize ws = { .ws_row = 40, .ws_col = 120 };
	int master;
	pid_t pid = spawn_tty_shell(&master, 30, 90);

	pty_write(master, "stty size\n");
	cr_assert(exec_test_read_until(master, &out, "30 90", 10000),
	          "output: %s", out.data);
	/* The kernel signals SIGWINCH to omni-exec, the foreground job. */
	cr_assert(ioctl(master, TIOCSWINSZ, &ws) == 0);
	bool seen = false;
	for (int i = 0; i < 30 && !seen; i++) {
		pty_write(master, "stty size\n");
		seen = exec_test_read_until(master, &out, "40 120", 300);
	}
	cr_assert(seen, "output: %s", out.data);
	pty_write(master, "exit 0\n");
	exec_test_read_until(master, &out, "\x01never\x01", 3000);
	cr_assert_eq(exec_test_wait(pid, 5000), 0);
	close(master);
	exec_test_buf_free(&out);
}

Test(ctl, tty_ctrl_c_is_a_key)
{
	struct exec_test_buf out = { 0 };
	int master;
	pid_t pid = spawn_tty_shell(&master, 24, 80);

	/* ^C in raw mode travels as a byte; the remote terminal turns it
	 * into SIGINT for its foreground job (sleep), and the shell lives. */
	pty_write(master, "sleep 30; echo after-$((1+1))\n");
	usleep(300 * 1000);
	pty_write(master, "\x03");
	pty_write(master, "echo alive-$((2+2))\n");
	cr_assert(exec_test_read_until(master, &out, "alive-4", 5000),
	          "output: %s", out.data);
	pty_write(master, "exit 5\n");
	exec_test_read_until(master, &out, "\x01never\x01", 3000);
	cr_assert_eq(exec_test_wait(pid, 5000), 5);
	close(master);
	exec_test_buf_free(&out);
}

/* --- sessions ------------------------------------------------------------- */

Test(ctl, concurrent_commands_run_in_parallel)
{
	struct exec_test_child c[4];
	long long t0 = omni_test_now_ms();

	for (int i = 0; i < 4; i++)
		spawn_exec(&c[i], (const char *const[]){
		                      "-c", "sleep 1; echo done", NULL });
	for (int i = 0; i < 4; i++) {
		struct exec_test_buf out = { 0 };

		cr_assert_eq(
		    exec_test_communicate(&c[i], NULL, 0, &out, NULL, 10000),
		    0);
		cr_assert_str_eq(out.data, "done\n");
		exec_test_buf_free(&out);
	}
	long long took = omni_test_now_ms() - t0;
	cr_assert(took < 2500, "4 x 1 s took %lld ms", took);
}

Test(ctl, hooks_run_once_per_command_and_before_exit)
{
	atomic_store(&slow_after, true);
	long long t0 = omni_test_now_ms();
	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "true"), 0);
	long long exited = omni_test_now_ms();

	cr_assert_eq(atomic_load(&before_calls), 1);
	cr_assert_eq(atomic_load(&after_calls), 1);
	long long after = atomic_load(&after_done_ms);
	cr_assert(after > t0 && after <= exited,
	          "after_exec ended at +%lld ms, client exited at +%lld ms",
	          after - t0, exited - t0);
	cr_assert(exited - t0 >= 200);

	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "-c", "exit 9"), 9);
	cr_assert_eq(atomic_load(&before_calls), 2);
	cr_assert_eq(atomic_load(&after_calls), 2);
}

Test(ctl, before_exec_can_refuse)
{
	struct exec_test_buf err = { 0 };
	char marker[PATH_MAX];

	omni_test_host_path(&fx, "marker", marker, sizeof(marker));
	atomic_store(&refuse_exec, true);
	cr_assert_eq(OMNI_EXEC(NULL, NULL, &err, "touch", "marker"), 125);
	cr_assert(strstr(err.data, "paused by the test"), "%s", err.data);
	cr_assert(!omni_test_host_exists(marker));
	cr_assert_eq(atomic_load(&after_calls), 0);
	exec_test_buf_free(&err);
}

Test(ctl, control_ping_save_stats)
{
	struct exec_test_buf out = { 0 }, err = { 0 };

	cr_assert_eq(OMNI_EXEC(NULL, &out, NULL, "--ping"), 0);
	cr_assert_str_eq(out.data, "pong\n");
	exec_test_buf_free(&out);

	/* The none state manager has nothing to save. */
	cr_assert_eq(OMNI_EXEC(NULL, &out, &err, "--save", "a message"), 0,
	             "%s", err.data);
	cr_assert_str_eq(out.data, "nothing to save\n");
	exec_test_buf_free(&out);
	exec_test_buf_free(&err);

	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "true"), 0);
	cr_assert_eq(OMNI_EXEC(NULL, &out, NULL, "--stats"), 0);
	cr_assert(strstr(out.data, "backend: local"), "%s", out.data);
	cr_assert(strstr(out.data, fx.project), "%s", out.data);
	cr_assert(strstr(out.data, "commands: 1 started"), "%s", out.data);
	cr_assert(strstr(out.data, "hook: 42 things"), "%s", out.data);
	exec_test_buf_free(&out);
}

/* Raw exchanges through the client library. */
static int connect_raw(void)
{
	int fd;

	omni_assert_ok(omni__exec_client_connect(sock_path, &fd));
	return fd;
}

Test(ctl, control_requests_through_the_library)
{
	unsigned int status;
	char *reply;
	int fd = connect_raw();

	omni_assert_ok(
	    omni__exec_client_control(fd, "echo hi there", &status, &reply));
	cr_assert_eq(status, 0);
	cr_assert_str_eq(reply, "hi there");
	free(reply);
	close(fd);

	fd = connect_raw();
	omni_assert_ok(
	    omni__exec_client_control(fd, "frobnicate", &status, &reply));
	cr_assert_eq(status, EINVAL);
	free(reply);
	close(fd);

	fd = connect_raw();
	omni_assert_ok(
	    omni__exec_client_control(fd, "invalidate", &status, &reply));
	cr_assert_eq(status, 0);
	cr_assert_eq(atomic_load(&after_calls), 1);
	free(reply);
	close(fd);
}

/* Run a shell string in cwd through the library; out gets stdout. */
static int run_in(const char *cwd, const char *shell, char *out, size_t size,
                  struct omni__exec_client_result *res)
{
	char path[PATH_MAX];
	struct omni__exec_client_io io = OMNI_EXEC_CLIENT_IO_INIT;
	struct omni_ipc_request req = { .shell = (char *)shell,
		                        .cwd = (char *)cwd };
	int fd = connect_raw(), rc;

	cr_assert((size_t)snprintf(path, sizeof(path), "%s/out-XXXXXX",
	                           fx.tmp) < sizeof(path));
	io.out_fd = mkstemp(path);
	cr_assert(io.out_fd >= 0);
	rc = omni__exec_client_run(fd, &req, &io, res);
	close(fd);
	ssize_t n = pread(io.out_fd, out, size - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(io.out_fd);
	unlink(path);
	return rc;
}

Test(ctl, cwd_field_is_normalised_and_confined)
{
	struct omni__exec_client_result res;
	char dir[PATH_MAX], out[PATH_MAX + 16], want[PATH_MAX + 16];

	omni_test_host_path(&fx, "sub/deeper", dir, sizeof(dir));
	omni_test_host_path(&fx, "sub", out, sizeof(out));
	cr_assert(mkdir(out, 0755) == 0 && mkdir(dir, 0755) == 0);
	snprintf(want, sizeof(want), "%s\n", dir);

	omni_assert_ok(run_in("sub/deeper", "pwd", out, sizeof(out), &res));
	cr_assert_str_eq(out, want);
	omni_assert_ok(
	    run_in("/workspace/sub/deeper", "pwd", out, sizeof(out), &res));
	cr_assert_str_eq(out, want);
	omni_assert_ok(
	    run_in("sub/../sub/./deeper/", "pwd", out, sizeof(out), &res));
	cr_assert_str_eq(out, want);

	omni_assert_err(run_in("../outside", "pwd", out, sizeof(out), &res),
	                -EACCES);
	omni_assert_err(run_in("/etc", "pwd", out, sizeof(out), &res), -EACCES);
	omni_assert_err(run_in("missing", "pwd", out, sizeof(out), &res),
	                -ENOENT);
	cr_assert(strstr(omni_error_last(), "missing") ||
	              strstr(omni_error_last(), "No such"),
	          "%s", omni_error_last());
}

Test(ctl, client_leaving_kills_the_command)
{
	struct omni_ipc_request req = { .shell = "echo pid=$$; exec sleep 30" };
	struct omni_ipc_buf buf = { 0 };
	int fd = connect_raw();
	uint8_t type = 0;
	pid_t remote = 0;

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
	close(fd);
	cr_assert(omni_test_pid_gone(remote, 3000), "the command survived");
	omni_ipc_buf_finish(&buf);
}

Test(ctl, stop_ends_running_commands)
{
	struct exec_test_child c;
	struct exec_test_buf out = { 0 }, err = { 0 };

	spawn_exec(&c, (const char *const[]){
	                   "-c", "echo pid=$$; exec sleep 30", NULL });
	cr_assert(exec_test_read_until(c.out, &out, "\n", 5000));
	pid_t remote = (pid_t)atol(strstr(out.data, "pid=") + 4);
	long long t0 = omni_test_now_ms();
	omnifs_ctl_stop(ctl);
	ctl = NULL;
	cr_assert(omni_test_now_ms() - t0 < 3000);
	cr_assert(omni_test_pid_gone(remote, 3000));
	cr_assert_eq(exec_test_communicate(&c, NULL, 0, NULL, &err, 5000), 125);
	cr_assert(strstr(err.data, "lost"), "stderr: %s", err.data);
	exec_test_buf_free(&out);
	exec_test_buf_free(&err);
}

/* --- the socket ----------------------------------------------------------- */

Test(ctl, socket_is_private)
{
	struct stat st;

	cr_assert(lstat(sock_path, &st) == 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
}

Test(ctl, a_live_socket_is_not_taken_over)
{
	struct omnifs_ctl *second = NULL;

	omni_assert_err(omnifs_ctl_start(&second, fx.b, sock_path, &hooks),
	                -EADDRINUSE);
	cr_assert_null(second);
	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "true"), 0);
}

/* Attack 9 of the sandbox issue: a client holds the control socket with
 * idle connections. omni-exec still runs at once; the oldest idle ones
 * were closed to make room. */
Test(ctl, a_thousand_idle_connections_lock_nobody_out)
{
	enum { N = 1000 };
	static int fds[N];
	struct exec_test_buf out = { 0 };

	for (int i = 0; i < N; i++)
		omni_assert_ok(omni__unix_connect(sock_path, &fds[i]));
	long long t0 = omni_test_now_ms();
	cr_assert_eq(OMNI_EXEC(NULL, &out, NULL, "echo", "through"), 0);
	cr_assert_str_eq(out.data, "through\n");
	cr_assert_lt(omni_test_now_ms() - t0, 5000, "omni-exec waited");
	exec_test_buf_free(&out);
	for (int i = 0; i < N; i++)
		close(fds[i]);
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[2048];

static void capture_log(enum omni_log_level level, const char *msg,
                        void *payload)
{
	(void)payload;
	if (level > OMNI_LOG_WARN)
		return;
	pthread_mutex_lock(&log_lock);
	size_t used = strlen(log_text);
	snprintf(log_text + used, sizeof(log_text) - used, "%s\n", msg);
	pthread_mutex_unlock(&log_lock);
}

Test(ctl, another_uid_is_refused_and_logged)
{
	if (geteuid() != 0) {
		const char *ci = getenv("CI");
		cr_assert(!(ci && strcmp(ci, "true") == 0),
		          "this test must run as root in CI");
		cr_skip_test("needs root to act as another user");
	}
	char marker[PATH_MAX];
	omni_test_host_path(&fx, "marker", marker, sizeof(marker));

	/* Let uid 65534 reach the socket at all; the uid check is what
	 * must refuse it. */
	cr_assert(chmod(fx.tmp, 0711) == 0 && chmod(run_dir, 0711) == 0 &&
	          chmod(sock_path, 0666) == 0);
	omni_log_set_sink(capture_log, NULL);

	/* Prepared before fork: the child only makes system calls (and
	 * omni__unix_connect() only formats a message when it fails). */
	struct omni_ipc_request req = { .argv = (char *[]){ "touch", marker,
		                                            NULL } };
	struct omni_ipc_buf enc = { 0 }, reply = { 0 };
	omni_assert_ok(omni_ipc_request_encode(&req, &enc));
	char pad[4096] = { 0 };
	omni_assert_ok(omni_ipc_buf_put(&reply, pad, sizeof(pad)));
	int p[2];
	cr_assert(pipe(p) == 0);

	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		uint8_t type = 0;
		int fd;

		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(10);
		if (omni__unix_connect(sock_path, &fd) < 0)
			_exit(11);
		omni_ipc_send(fd, OMNI_IPC_EXEC, enc.data, enc.len);
		if (omni_ipc_recv(fd, &type, &reply) != 1)
			_exit(12);
		ssize_t w = write(p[1], &type, 1);
		w += write(p[1], reply.data, reply.len);
		_exit(w > 0 ? 0 : 13);
	}
	close(p[1]);
	cr_assert_eq(exec_test_wait(pid, 10000), 0);
	unsigned char got[512];
	ssize_t n = read(p[0], got, sizeof(got) - 1);
	close(p[0]);
	cr_assert(n >= 5, "read %zd", n);
	got[n] = '\0';
	cr_assert_eq(got[0], OMNI_IPC_ERROR);
	cr_assert_eq((int32_t)omni_ipc_get_u32(got + 1), -EACCES);
	cr_assert(strstr((char *)got + 5, "uid 65534 refused"), "%s", got + 5);
	cr_assert(!omni_test_host_exists(marker), "the command ran");
	cr_assert_eq(atomic_load(&before_calls), 0);

	/* The refusal was logged (the thread logs before it answers). */
	pthread_mutex_lock(&log_lock);
	cr_assert(strstr(log_text, "uid 65534 refused"), "log: %s", log_text);
	pthread_mutex_unlock(&log_lock);
	omni_log_set_sink(NULL, NULL);

	/* The owner still gets in (omni-exec wants a private runtime
	 * directory again). */
	cr_assert(chmod(run_dir, 0700) == 0);
	cr_assert_eq(OMNI_EXEC(NULL, NULL, NULL, "true"), 0);
	omni_ipc_buf_finish(&enc);
	omni_ipc_buf_finish(&reply);
}
