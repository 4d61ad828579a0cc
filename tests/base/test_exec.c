/*
 * tests/base/test_exec.c - commands on the local backend.
 *
 *   execute_command   output (merged, binary, 50 MB, no trailing newline),
 *                     exit codes, signals (128+N), timeout (124) killing
 *                     the whole process group, background children killed
 *                     after a normal exit, the workspace as cwd
 *   streaming API     omni_vfs_exec_start/wait with callbacks: separate
 *                     stdout/stderr, argv with a missing (127) or non-
 *                     executable (126) program, stdin with EOF, signals,
 *                     a pseudo-terminal (tty, stty size, resize), cwd in a
 *                     subdirectory or escaping (-EACCES), extra env
 *
 * Process checks allow a short retry loop: an orphan killed with its group
 * is reaped by init a moment later (omni_test_pid_gone() counts a zombie as
 * gone).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"

static struct omni_fixture fx;

static void setup(void)
{
	omni_fixture_start(&fx);
}

static void teardown(void)
{
	omni_fixture_finish(&fx);
}

TestSuite(exec, .init = setup, .fini = teardown, .timeout = 30);

static const char *hp(const char *rel)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ % 4];

	omni_test_host_path(&fx, rel, p, PATH_MAX);
	return p;
}

static void run(const char *cmd, double timeout, struct omni_command_result *r)
{
	omni_assert_ok(omni_backend_execute_command(fx.b, cmd, timeout, r));
	cr_assert_not_null(r->output);
	cr_assert_eq(r->output[r->output_len], '\0');
}

/* Read the pid a command wrote to a file in the workspace; waits for the
 * file to be complete (up to 5 s). */
static pid_t read_pidfile(const char *rel)
{
	long long until = omni_test_now_ms() + 5000;

	for (;;) {
		char *data = omni_test_read_host(hp(rel), NULL);
		if (data && strchr(data, '\n')) {
			long pid = strtol(data, NULL, 10);
			free(data);
			cr_assert_gt(pid, 1, "bad pid file %s", rel);
			return (pid_t)pid;
		}
		free(data);
		cr_assert_lt(omni_test_now_ms(), until, "no pid file %s", rel);
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

/* --- execute_command ------------------------------------------------------ */

Test(exec, echo_hello)
{
	struct omni_command_result r;

	run("echo 'Hello'", 30, &r);
	cr_assert_str_eq(r.output, "Hello\n");
	cr_assert_eq(r.output_len, 6);
	cr_assert_eq(r.exit_code, 0);
	omni_command_result_finish(&r);
	cr_assert_null(r.output);
	cr_assert_eq(r.output_len, 0);
}

Test(exec, no_output_and_no_timeout)
{
	struct omni_command_result r;

	run("true", 0, &r);
	cr_assert_eq(r.output_len, 0);
	cr_assert_str_eq(r.output, "");
	cr_assert_eq(r.exit_code, 0);
	omni_command_result_finish(&r);
	run("false", -1, &r);
	cr_assert_eq(r.exit_code, 1);
	omni_command_result_finish(&r);
}

Test(exec, exit_codes)
{
	struct omni_command_result r;

	run("exit 3", 10, &r);
	cr_assert_eq(r.exit_code, 3);
	omni_command_result_finish(&r);
	run("exit 255", 10, &r);
	cr_assert_eq(r.exit_code, 255);
	omni_command_result_finish(&r);
	run("kill -9 $$", 10, &r);
	cr_assert_eq(r.exit_code, 137);
	omni_command_result_finish(&r);
	run("kill -TERM $$", 10, &r);
	cr_assert_eq(r.exit_code, 143);
	omni_command_result_finish(&r);
	run("omni-no-such-command-xyz", 10, &r);
	cr_assert_eq(r.exit_code, 127);
	cr_assert_gt(r.output_len, 0, "the shell says why");
	omni_command_result_finish(&r);
}

Test(exec, stdout_and_stderr_merged)
{
	struct omni_command_result r;

	run("echo out; echo err >&2; echo out2", 10, &r);
	cr_assert_eq(r.output_len, 13, "output: %s", r.output);
	cr_assert_not_null(strstr(r.output, "out\n"));
	cr_assert_not_null(strstr(r.output, "err\n"));
	cr_assert_not_null(strstr(r.output, "out2\n"));
	omni_command_result_finish(&r);
}

Test(exec, no_trailing_newline)
{
	struct omni_command_result r;

	run("printf abc", 10, &r);
	cr_assert_eq(r.output_len, 3);
	cr_assert_str_eq(r.output, "abc");
	omni_command_result_finish(&r);
}

Test(exec, binary_output_intact)
{
	struct omni_command_result r;
	unsigned char bytes[256];

	for (int i = 0; i < 256; i++)
		bytes[i] = (unsigned char)i;
	omni_assert_ok(omni_backend_write_file(fx.b, "bytes.bin", bytes, 256));
	run("cat bytes.bin; head -c 256 bytes.bin", 10, &r);
	cr_assert_eq(r.output_len, 512);
	cr_assert_eq(memcmp(r.output, bytes, 256), 0);
	cr_assert_eq(memcmp(r.output + 256, bytes, 256), 0);
	omni_command_result_finish(&r);

	/* printf with octal escapes: NUL and high bytes too. */
	run("printf 'a\\000b\\377\\001c'", 10, &r);
	cr_assert_eq(r.output_len, 6);
	cr_assert_eq(memcmp(r.output, "a\0b\377\001c", 6), 0);
	omni_command_result_finish(&r);
}

Test(exec, fifty_megabytes)
{
	struct omni_command_result r;
	size_t n = 52428800;

	run("head -c 52428800 /dev/zero | tr '\\0' 'x'", 25, &r);
	cr_assert_eq(r.exit_code, 0);
	cr_assert_eq(r.output_len, n, "got %zu bytes", r.output_len);
	for (size_t i = 0; i < n; i++)
		if (r.output[i] != 'x')
			cr_assert_fail("byte %zu is %#x", i,
			               (unsigned char)r.output[i]);
	omni_command_result_finish(&r);
}

Test(exec, timeout)
{
	struct omni_command_result r;
	long long t0 = omni_test_now_ms();

	run("echo started; sleep 30", 0.5, &r);
	long long elapsed = omni_test_now_ms() - t0;
	cr_assert_eq(r.exit_code, 124);
	cr_assert_lt(elapsed, 5000, "took %lld ms", elapsed);
	cr_assert_geq(elapsed, 400, "took only %lld ms", elapsed);
	/* What was printed before the deadline is kept. */
	cr_assert_str_eq(r.output, "started\n");
	omni_command_result_finish(&r);
}

Test(exec, timeout_kills_the_process_group)
{
	struct omni_command_result r;
	long long t0 = omni_test_now_ms();

	run("sleep 60 & echo $! > pidfile; wait", 0.5, &r);
	cr_assert_eq(r.exit_code, 124);
	cr_assert_lt(omni_test_now_ms() - t0, 5000);
	pid_t pid = read_pidfile("pidfile");
	cr_assert(omni_test_pid_gone(pid, 3000), "background child %ld lives",
	          (long)pid);
	omni_command_result_finish(&r);
}

Test(exec, background_child_killed_after_exit)
{
	struct omni_command_result r;
	long long t0 = omni_test_now_ms();

	/* The child keeps stdout open: the call must still return. */
	run("sleep 60 & echo $! > pidfile; echo done", 20, &r);
	cr_assert_eq(r.exit_code, 0);
	cr_assert_str_eq(r.output, "done\n");
	cr_assert_lt(omni_test_now_ms() - t0, 5000);
	pid_t pid = read_pidfile("pidfile");
	cr_assert(omni_test_pid_gone(pid, 3000), "background child %ld lives",
	          (long)pid);
	omni_command_result_finish(&r);
}

Test(exec, background_child_with_closed_output)
{
	struct omni_command_result r;

	/* Not holding the pipes does not save it either. */
	run("sleep 60 >/dev/null 2>&1 & echo $! > pidfile", 20, &r);
	cr_assert_eq(r.exit_code, 0);
	pid_t pid = read_pidfile("pidfile");
	cr_assert(omni_test_pid_gone(pid, 3000), "background child %ld lives",
	          (long)pid);
	omni_command_result_finish(&r);
}

Test(exec, runs_in_the_workspace)
{
	struct omni_command_result r;
	char *real = realpath(fx.host, NULL), want[PATH_MAX];

	cr_assert_not_null(real);
	omni_test_fmt(want, sizeof(want), "%s\n", real);
	run("pwd -P", 10, &r);
	cr_assert_str_eq(r.output, want);
	omni_command_result_finish(&r);
	/* Files made by commands are workspace files. */
	run("echo made > by-cmd.txt", 10, &r);
	omni_command_result_finish(&r);
	char *data;
	omni_assert_ok(
	    omni_backend_read_file(fx.b, "/workspace/by-cmd.txt", &data, NULL));
	cr_assert_str_eq(data, "made\n");
	free(data);
	free(real);
}

Test(exec, null_command_is_einval)
{
	struct omni_command_result r;

	omni_assert_err(omni_backend_execute_command(fx.b, NULL, 1, &r),
	                -EINVAL);
	cr_assert_null(r.output);
}

/* --- the streaming API ---------------------------------------------------- */

struct streams {
	char out[4096], err[4096];
	size_t out_len, err_len;
	int calls;
	int stop_after; /* return 1 after this many calls (0: never) */
	int bad_stream;
};

static int collect(int stream, const void *data, size_t len, void *payload)
{
	struct streams *s = payload;
	char *buf;
	size_t *used;

	s->calls++;
	if (stream == OMNI_EXEC_STDOUT) {
		buf = s->out;
		used = &s->out_len;
	} else if (stream == OMNI_EXEC_STDERR) {
		buf = s->err;
		used = &s->err_len;
	} else {
		s->bad_stream++;
		return 0;
	}
	size_t room = sizeof(s->out) - 1 - *used;
	size_t n = len < room ? len : room;
	memcpy(buf + *used, data, n);
	*used += n;
	buf[*used] = '\0';
	return s->stop_after && s->calls >= s->stop_after;
}

/* Start req, pump it into s, return the status. */
static struct omni_exec_status run_req(const struct omni_exec_request *req,
                                       struct streams *s)
{
	struct omni_exec_status status;
	struct omni_exec *e;

	omni_assert_ok(omni_vfs_exec_start(fx.b, req, &e));
	cr_assert_not_null(e);
	omni_assert_ok(omni_vfs_exec_wait(e, collect, s, &status));
	omni_vfs_exec_free(e);
	return status;
}

Test(exec, stream_ids_are_separate)
{
	struct omni_exec_request req = {
		.shell = "echo out; echo err >&2; printf more; printf E >&2"
	};
	struct streams s = { .calls = 0 };
	struct omni_exec_status st = run_req(&req, &s);

	cr_assert_eq(st.exit_code, 0);
	cr_assert_eq(st.signal, 0);
	cr_assert_not(st.timed_out);
	cr_assert_str_eq(s.out, "out\nmore");
	cr_assert_str_eq(s.err, "err\nE");
	cr_assert_eq(s.bad_stream, 0);
}

Test(exec, argv_runs_without_a_shell)
{
	const char *argv[] = { "printf", "%s|%s", "a b", "$HOME", NULL };
	struct omni_exec_request req = { .argv = argv };
	struct streams s = { .calls = 0 };
	struct omni_exec_status st = run_req(&req, &s);

	cr_assert_eq(st.exit_code, 0);
	cr_assert_str_eq(s.out, "a b|$HOME");
}

Test(exec, argv_missing_program_is_127)
{
	const char *argv[] = { "omni-no-such-program-xyz", "arg", NULL };
	struct omni_exec_request req = { .argv = argv };
	struct streams s = { .calls = 0 };
	struct omni_exec_status st = run_req(&req, &s);

	cr_assert_eq(st.exit_code, 127);
	cr_assert_eq(s.out_len, 0);
	cr_assert_gt(s.err_len, 0);
	cr_assert_not_null(strstr(s.err, "omni-no-such-program-xyz"),
	                   "stderr: %s", s.err);

	/* Through execute_command the message is in the output. */
	struct omni_command_result r;
	run("./no-such-script", 5, &r);
	cr_assert_eq(r.exit_code, 127);
	omni_command_result_finish(&r);
}

Test(exec, non_executable_is_126)
{
	const char *argv[] = { "./script.sh", NULL };
	struct omni_exec_request req = { .argv = argv };
	struct streams s = { .calls = 0 };

	omni_assert_ok(omni_backend_write_file(fx.b, "script.sh",
	                                       "#!/bin/sh\necho ran\n", 19));
	cr_assert_eq(chmod(hp("script.sh"), 0644), 0);
	struct omni_exec_status st = run_req(&req, &s);
	cr_assert_eq(st.exit_code, 126);
	cr_assert_gt(s.err_len, 0);
	cr_assert_eq(s.out_len, 0);

	/* A directory cannot be run either. */
	const char *argv2[] = { "./dir", NULL };
	omni_assert_ok(omni_backend_create_directory(fx.b, "dir", false));
	req.argv = argv2;
	memset(&s, 0, sizeof(s));
	st = run_req(&req, &s);
	cr_assert_eq(st.exit_code, 126);

	/* Once executable it runs. */
	cr_assert_eq(chmod(hp("script.sh"), 0755), 0);
	req.argv = argv;
	memset(&s, 0, sizeof(s));
	st = run_req(&req, &s);
	cr_assert_eq(st.exit_code, 0);
	cr_assert_str_eq(s.out, "ran\n");
}

Test(exec, stdin_then_eof)
{
	const char *argv[] = { "cat", NULL };
	struct omni_exec_request req = { .argv = argv, .want_stdin = true };
	struct omni_exec_status st;
	struct streams s = { .calls = 0 };
	struct omni_exec *e;

	omni_assert_ok(omni_vfs_exec_start(fx.b, &req, &e));
	omni_assert_ok(omni_vfs_exec_input(e, "hello ", 6));
	omni_assert_ok(omni_vfs_exec_input(e, "stdin\n", 6));
	omni_assert_ok(omni_vfs_exec_input(e, NULL, 0));
	/* After EOF nothing more can be written. */
	omni_assert_err(omni_vfs_exec_input(e, "x", 1), -EPIPE);
	omni_assert_ok(omni_vfs_exec_wait(e, collect, &s, &st));
	omni_vfs_exec_free(e);
	cr_assert_eq(st.exit_code, 0);
	cr_assert_str_eq(s.out, "hello stdin\n");
}

Test(exec, without_want_stdin_reads_dev_null)
{
	const char *argv[] = { "cat", NULL };
	struct omni_exec_request req = { .argv = argv };
	struct omni_exec_status st;
	struct streams s = { .calls = 0 };
	struct omni_exec *e;

	omni_assert_ok(omni_vfs_exec_start(fx.b, &req, &e));
	omni_assert_err(omni_vfs_exec_input(e, "x", 1), -EPIPE);
	omni_assert_ok(omni_vfs_exec_wait(e, collect, &s, &st));
	omni_vfs_exec_free(e);
	cr_assert_eq(st.exit_code, 0);
	cr_assert_eq(s.out_len, 0);
}

struct delayed {
	struct omni_exec *e;
	int sig;
	int rc;
};

static void *signal_later(void *arg)
{
	struct delayed *d = arg;
	struct timespec ts = { 0, 200 * 1000000L };

	nanosleep(&ts, NULL);
	d->rc = omni_vfs_exec_signal(d->e, d->sig);
	return NULL;
}

Test(exec, signal_from_another_thread)
{
	struct omni_exec_request req = { .shell = "sleep 60" };
	struct omni_exec_status st;
	struct omni_exec *e;
	struct delayed d;
	pthread_t t;
	long long t0 = omni_test_now_ms();

	omni_assert_ok(omni_vfs_exec_start(fx.b, &req, &e));
	d = (struct delayed){ .e = e, .sig = SIGTERM };
	cr_assert_eq(pthread_create(&t, NULL, signal_later, &d), 0);
	omni_assert_ok(omni_vfs_exec_wait(e, NULL, NULL, &st));
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(d.rc, 0, "signal: %d", d.rc);
	cr_assert_eq(st.exit_code, 143);
	cr_assert_eq(st.signal, SIGTERM);
	cr_assert_not(st.timed_out);
	cr_assert_lt(omni_test_now_ms() - t0, 5000);
	/* The command has ended: nothing to signal. */
	omni_assert_err(omni_vfs_exec_signal(e, SIGTERM), -ESRCH);
	omni_vfs_exec_free(e);
}

Test(exec, stream_timeout_status)
{
	struct omni_exec_request req = { .shell = "sleep 30",
		                         .timeout_ms = 300 };
	struct streams s = { .calls = 0 };
	long long t0 = omni_test_now_ms();
	struct omni_exec_status st = run_req(&req, &s);

	cr_assert(st.timed_out);
	cr_assert_eq(st.exit_code, 124);
	cr_assert_lt(omni_test_now_ms() - t0, 5000);
}

Test(exec, callback_can_stop_the_command)
{
	struct omni_exec_request req = { .shell = "yes" };
	struct streams s = { .stop_after = 1 };
	long long t0 = omni_test_now_ms();
	struct omni_exec_status st = run_req(&req, &s);

	cr_assert_lt(omni_test_now_ms() - t0, 5000);
	cr_assert_eq(s.calls, 1, "called %d times after asking to stop",
	             s.calls);
	cr_assert_neq(st.exit_code, 0);
}

Test(exec, free_without_wait_kills)
{
	struct omni_exec_request req = {
		.shell = "sleep 60 & echo $! > pidfile; wait"
	};
	struct omni_exec *e;

	omni_assert_ok(omni_vfs_exec_start(fx.b, &req, &e));
	pid_t pid = read_pidfile("pidfile");
	omni_vfs_exec_free(e);
	cr_assert(omni_test_pid_gone(pid, 3000), "background child %ld lives",
	          (long)pid);
	omni_vfs_exec_free(NULL);
}

Test(exec, tty_mode)
{
	struct omni_exec_request req = { .shell = "tty; stty size; "
		                                  "echo err >&2",
		                         .tty = true,
		                         .rows = 33,
		                         .cols = 101 };
	struct streams s = { .calls = 0 };
	struct omni_exec_status st = run_req(&req, &s);

	cr_assert_eq(st.exit_code, 0, "output: %s", s.out);
	cr_assert_not_null(strstr(s.out, "/dev/pts/"), "output: %s", s.out);
	cr_assert_not_null(strstr(s.out, "33 101"), "output: %s", s.out);
	/* stderr shares the terminal. */
	cr_assert_not_null(strstr(s.out, "err"), "output: %s", s.out);
	cr_assert_eq(s.err_len, 0);
}

Test(exec, tty_resize)
{
	struct omni_exec_request req = { .shell = "sleep 0.5; stty size",
		                         .tty = true,
		                         .rows = 10,
		                         .cols = 20 };
	struct omni_exec_status st;
	struct streams s = { .calls = 0 };
	struct omni_exec *e;

	omni_assert_ok(omni_vfs_exec_start(fx.b, &req, &e));
	omni_assert_ok(omni_vfs_exec_resize(e, 40, 120));
	omni_assert_ok(omni_vfs_exec_wait(e, collect, &s, &st));
	omni_vfs_exec_free(e);
	cr_assert_eq(st.exit_code, 0);
	cr_assert_not_null(strstr(s.out, "40 120"), "output: %s", s.out);
}

Test(exec, tty_input_and_eof)
{
	const char *argv[] = { "cat", NULL };
	struct omni_exec_request req = { .argv = argv, .tty = true };
	struct omni_exec_status st;
	struct streams s = { .calls = 0 };
	struct omni_exec *e;

	omni_assert_ok(omni_vfs_exec_start(fx.b, &req, &e));
	omni_assert_ok(omni_vfs_exec_input(e, "typed\n", 6));
	/* EOF on a terminal is the EOF character. */
	omni_assert_ok(omni_vfs_exec_input(e, NULL, 0));
	omni_assert_ok(omni_vfs_exec_wait(e, collect, &s, &st));
	omni_vfs_exec_free(e);
	cr_assert_eq(st.exit_code, 0);
	cr_assert_not_null(strstr(s.out, "typed"), "output: %s", s.out);
}

Test(exec, resize_without_tty)
{
	struct omni_exec_request req = { .shell = "true" };
	struct omni_exec_status st;
	struct omni_exec *e;

	omni_assert_ok(omni_vfs_exec_start(fx.b, &req, &e));
	omni_assert_err(omni_vfs_exec_resize(e, 10, 10), -ENOTTY);
	omni_assert_ok(omni_vfs_exec_wait(e, NULL, NULL, &st));
	omni_vfs_exec_free(e);
}

Test(exec, cwd_in_a_subdirectory)
{
	struct omni_exec_request req = { .shell = "pwd -P; ls",
		                         .cwd = "sub/deeper" };
	struct streams s = { .calls = 0 };
	char *real, want[PATH_MAX];

	omni_assert_ok(
	    omni_backend_write_file(fx.b, "sub/deeper/here.txt", "", 0));
	real = realpath(hp("sub/deeper"), NULL);
	cr_assert_not_null(real);
	omni_test_fmt(want, sizeof(want), "%s\nhere.txt\n", real);
	struct omni_exec_status st = run_req(&req, &s);
	cr_assert_eq(st.exit_code, 0);
	cr_assert_str_eq(s.out, want);
	free(real);

	/* NULL and "" are the workspace root. */
	real = realpath(fx.host, NULL);
	omni_test_fmt(want, sizeof(want), "%s\n", real);
	req.shell = "pwd -P";
	req.cwd = NULL;
	memset(&s, 0, sizeof(s));
	run_req(&req, &s);
	cr_assert_str_eq(s.out, want);
	req.cwd = "";
	memset(&s, 0, sizeof(s));
	run_req(&req, &s);
	cr_assert_str_eq(s.out, want);
	free(real);
}

Test(exec, cwd_errors)
{
	struct omni_exec_request req = { .shell = "touch made" };
	struct omni_exec *e = (struct omni_exec *)&fx;

	req.cwd = "..";
	omni_assert_err(omni_vfs_exec_start(fx.b, &req, &e), -EACCES);
	cr_assert_null(e);
	req.cwd = "../..";
	omni_assert_err(omni_vfs_exec_start(fx.b, &req, &e), -EACCES);
	req.cwd = "/tmp";
	omni_assert_err(omni_vfs_exec_start(fx.b, &req, &e), -EACCES);
	req.cwd = "missing";
	omni_assert_err(omni_vfs_exec_start(fx.b, &req, &e), -ENOENT);
	omni_assert_ok(omni_backend_write_file(fx.b, "file", "", 0));
	req.cwd = "file";
	omni_assert_err(omni_vfs_exec_start(fx.b, &req, &e), -ENOTDIR);
	cr_assert_not(omni_test_host_exists(hp("made")));
}

Test(exec, no_command_is_einval)
{
	struct omni_exec_request req = { .cwd = "" };
	const char *empty[] = { NULL };
	struct omni_exec *e;

	omni_assert_err(omni_vfs_exec_start(fx.b, &req, &e), -EINVAL);
	req.argv = empty;
	omni_assert_err(omni_vfs_exec_start(fx.b, &req, &e), -EINVAL);
}

Test(exec, extra_environment)
{
	const char *env[] = { "FOO=bar", "OMNI_TEST_REPLACED=new", NULL };
	struct omni_exec_request req = {
		.shell = "echo \"$FOO\"; echo \"$OMNI_TEST_REPLACED\"; "
		         "env | grep -c '^OMNI_TEST_REPLACED='; "
		         "echo \"$OMNI_TEST_KEPT\"",
		.env = env
	};
	struct streams s = { .calls = 0 };

	setenv("OMNI_TEST_REPLACED", "old", 1);
	setenv("OMNI_TEST_KEPT", "kept", 1);
	struct omni_exec_status st = run_req(&req, &s);
	cr_assert_eq(st.exit_code, 0);
	cr_assert_str_eq(s.out, "bar\nnew\n1\nkept\n");
}

Test(exec, backend_env_option)
{
	/* opts.env reaches every command of the session; the request's env
	 * wins over it for the same name. */
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	const char *env[] = { "FROM_OPTS=1", "BOTH=opts", NULL };
	const char *req_env[] = { "BOTH=request", NULL };
	struct omni_exec_request req = { .shell = "echo $FROM_OPTS $BOTH",
		                         .env = req_env };
	struct omni_command_result r;
	struct omni_exec_status st;
	struct streams s = { .calls = 0 };
	struct omni_backend *b;
	struct omni_exec *e;
	char id[64];

	omni_test_project_id(id, sizeof(id), "envopt");
	opts.data_path = fx.data;
	opts.env = env;
	omni_assert_ok(omni_backend_new(&b, "local", id, &opts, NULL));
	omni_assert_ok(omni_backend_start(b));
	omni_assert_ok(
	    omni_backend_execute_command(b, "echo $FROM_OPTS $BOTH", 5, &r));
	cr_assert_str_eq(r.output, "1 opts\n");
	omni_command_result_finish(&r);
	omni_assert_ok(omni_vfs_exec_start(b, &req, &e));
	omni_assert_ok(omni_vfs_exec_wait(e, collect, &s, &st));
	omni_vfs_exec_free(e);
	cr_assert_str_eq(s.out, "1 request\n");
	omni_backend_free(b);
}

Test(exec, many_in_a_row)
{
	struct omni_command_result r[8];

	/* Sequential calls do not leak descriptors or children. */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 8; i++) {
			char cmd[64];
			snprintf(cmd, sizeof(cmd), "echo %d", i);
			run(cmd, 5, &r[i]);
		}
		for (int i = 0; i < 8; i++) {
			char want[16];
			snprintf(want, sizeof(want), "%d\n", i);
			cr_assert_str_eq(r[i].output, want);
			omni_command_result_finish(&r[i]);
		}
	}
}
