/*
 * tests/exec/test_omni_exec.c - omni-exec's command line (exec/options.c) as
 * units, and the built binary where no session is involved: outside any
 * mount, --version. The runs against a session are in test_ctl.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <criterion/criterion.h>

#include "exec_helpers.h"
#include "helpers.h"
#include "options.h"

static struct omni__exec_options o;

static void finish(void)
{
	omni__exec_options_finish(&o);
}

TestSuite(omni_exec, .fini = finish, .timeout = 30);

/* Parse a NULL-terminated list of words after "omni-exec". The vector
 * is static: o.argv points into it. */
static int parse(const char *const *words)
{
	static char *argv[32];
	int argc = 0;

	argv[argc++] = "omni-exec";
	for (; *words; words++)
		argv[argc++] = (char *)*words;
	argv[argc] = NULL;
	omni__exec_options_finish(&o);
	omni_error_clear();
	return omni__exec_options_parse(&o, argc, argv);
}

#define PARSE(...) parse((const char *const[]){ __VA_ARGS__, NULL })

Test(omni_exec, argv_command_keeps_its_own_options)
{
	omni_assert_ok(PARSE("ls", "-l", "--all"));
	cr_assert_eq(o.mode, OMNI_EXEC_MODE_RUN);
	cr_assert_null(o.shell);
	cr_assert_str_eq(o.argv[0], "ls");
	cr_assert_str_eq(o.argv[1], "-l");
	cr_assert_str_eq(o.argv[2], "--all");
	cr_assert_null(o.argv[3]);
	cr_assert(!o.tty && !o.no_stdin && o.timeout_ms == 0 && o.nenv == 0);
}

Test(omni_exec, every_option)
{
	omni_assert_ok(PARSE("-e", "A=1", "--env", "B=two words", "--timeout",
	                     "1.5", "-t", "-n", "--project", "p1", "--", "cmd",
	                     "--x"));
	cr_assert_eq(o.nenv, 2);
	cr_assert_str_eq(o.env[0], "A=1");
	cr_assert_str_eq(o.env[1], "B=two words");
	cr_assert_null(o.env[2]);
	cr_assert_eq(o.timeout_ms, 1500);
	cr_assert(o.tty && o.no_stdin);
	cr_assert_str_eq(o.project, "p1");
	cr_assert_null(o.mount_dir);
	cr_assert_str_eq(o.argv[0], "cmd");
	cr_assert_str_eq(o.argv[1], "--x");

	omni_assert_ok(PARSE("-C", "/some/dir", "--tty", "-c", "echo hi"));
	cr_assert_str_eq(o.mount_dir, "/some/dir");
	cr_assert_str_eq(o.shell, "echo hi");
	cr_assert_null(o.argv);
	omni_assert_ok(PARSE("--mount=/d", "true"));
	cr_assert_str_eq(o.mount_dir, "/d");
}

Test(omni_exec, timeouts_round_up)
{
	omni_assert_ok(PARSE("--timeout", "0.0001", "true"));
	cr_assert_eq(o.timeout_ms, 1);
	omni_assert_ok(PARSE("--timeout=2", "true"));
	cr_assert_eq(o.timeout_ms, 2000);
	omni_assert_ok(PARSE("--timeout", "0", "true"));
	cr_assert_eq(o.timeout_ms, 0);
}

Test(omni_exec, env_key_alone_copies_the_local_value)
{
	cr_assert(setenv("OMNI_TEST_COPY", "copied value", 1) == 0);
	unsetenv("OMNI_TEST_UNSET");
	omni_assert_ok(
	    PARSE("-e", "OMNI_TEST_COPY", "-e", "OMNI_TEST_UNSET", "true"));
	cr_assert_eq(o.nenv, 1);
	cr_assert_str_eq(o.env[0], "OMNI_TEST_COPY=copied value");
}

Test(omni_exec, control_modes)
{
	omni_assert_ok(PARSE("--ping"));
	cr_assert_eq(o.mode, OMNI_EXEC_MODE_PING);
	omni_assert_ok(PARSE("--project", "p", "--stats"));
	cr_assert_eq(o.mode, OMNI_EXEC_MODE_STATS);
	omni_assert_ok(PARSE("--save"));
	cr_assert_eq(o.mode, OMNI_EXEC_MODE_SAVE);
	cr_assert_null(o.save_message);
	omni_assert_ok(PARSE("--save", "before", "the refactor"));
	cr_assert_str_eq(o.save_message, "before the refactor");
	omni_assert_ok(PARSE("--save=tagged"));
	cr_assert_str_eq(o.save_message, "tagged");
	omni_assert_ok(PARSE("--stats", "--help"));
	cr_assert_eq(o.mode, OMNI_EXEC_MODE_HELP);
	omni_assert_ok(PARSE("-V"));
	cr_assert_eq(o.mode, OMNI_EXEC_MODE_VERSION);
}

Test(omni_exec, checkpoint_modes)
{
	omni_assert_ok(PARSE("--checkpoint"));
	cr_assert_eq(o.mode, OMNI_EXEC_MODE_CHECKPOINT);
	cr_assert_null(o.save_message);
	omni_assert_ok(PARSE("--checkpoint", "tests", "pass"));
	cr_assert_str_eq(o.save_message, "tests pass");
	omni_assert_ok(PARSE("--checkpoint=one"));
	cr_assert_str_eq(o.save_message, "one");
	omni_assert_ok(PARSE("--project", "p", "--checkpoints"));
	cr_assert_eq(o.mode, OMNI_EXEC_MODE_CHECKPOINTS);
	omni_assert_ok(PARSE("--rollback", "abc123"));
	cr_assert_eq(o.mode, OMNI_EXEC_MODE_ROLLBACK);
	cr_assert_str_eq(o.rollback_id, "abc123");
	cr_assert_eq(PARSE("--rollback"), -EINVAL);
	cr_assert_eq(PARSE("--rollback", "a", "--save"), -EINVAL);
	cr_assert_eq(PARSE("--checkpoints", "x"), -EINVAL);
	cr_assert_eq(PARSE("--checkpoint", "-t"), -EINVAL);
}

Test(omni_exec, misuse_is_refused_with_a_reason)
{
	static const struct {
		const char *words[6];
		const char *reason;
	} cases[] = {
		{ { NULL }, "no command" },
		{ { "--bogus", "true" }, "--bogus" },
		{ { "-x", "true" }, "-x" },
		{ { "-c" }, "needs an argument" },
		{ { "--project" }, "needs an argument" },
		{ { "-c", "a", "b" }, "unexpected 'b'" },
		{ { "-c", "a", "-c", "b" }, "twice" },
		{ { "-e", "=v", "true" }, "KEY=VALUE" },
		{ { "--timeout", "-1", "true" }, "seconds" },
		{ { "--timeout", "1x", "true" }, "seconds" },
		{ { "--timeout", "inf", "true" }, "seconds" },
		{ { "--timeout", "1e12", "true" }, "too long" },
		{ { "-C", "d", "--project", "p", "true" }, "not both" },
		{ { "--ping", "--stats" }, "cannot be combined" },
		{ { "--stats", "extra" }, "no command" },
		{ { "--save", "-t" }, "no command options" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = parse(cases[i].words);

		cr_assert_eq(rc, -EINVAL, "case %zu gave %d", i, rc);
		cr_assert(strstr(omni_error_last(), cases[i].reason),
		          "case %zu: '%s' lacks '%s'", i, omni_error_last(),
		          cases[i].reason);
	}
}

Test(omni_exec, parsing_twice_starts_over)
{
	omni_assert_ok(PARSE("-t", "a"));
	omni_assert_ok(PARSE("b", "-t"));
	cr_assert(!o.tty);
	cr_assert_str_eq(o.argv[0], "b");
	cr_assert_str_eq(o.argv[1], "-t");
}

/* --- the binary ----------------------------------------------------------- */

/* Run omni-exec in cwd with a private, empty runtime directory. */
static int run_in(const char *cwd, struct exec_test_buf *out,
                  struct exec_test_buf *err, const char *const *args)
{
	char prog[PATH_MAX], run[PATH_MAX];
	char *argv[16];
	size_t n = 0;
	struct exec_test_child c;

	cr_assert((size_t)snprintf(run, sizeof(run), "%s/run", cwd) <
	          sizeof(run));
	mkdir(run, 0700);
	cr_assert(setenv("OMNI_RUNTIME_DIR", run, 1) == 0);
	exec_test_program(prog, sizeof(prog), "omni-exec");
	argv[n++] = prog;
	for (; *args; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	exec_test_spawn(&c, cwd, argv);
	return exec_test_communicate(&c, NULL, 0, out, err, 10000);
}

Test(omni_exec, outside_any_mount_is_125_with_advice)
{
	char tmp[PATH_MAX];
	struct exec_test_buf out = { 0 }, err = { 0 };

	omni_test_mkdtemp(tmp, sizeof(tmp));
	cr_assert_eq(
	    run_in(tmp, &out, &err, (const char *const[]){ "pwd", NULL }), 125);
	cr_assert_str_eq(out.data, "");
	cr_assert_str_eq(err.data, "omni-exec: not inside an omnifs mount; "
	                           "use -C DIR or --project ID\n");
	exec_test_buf_free(&out);
	exec_test_buf_free(&err);

	/* -C naming a directory outside any mount says which. */
	cr_assert_eq(run_in(tmp, &out, &err,
	                    (const char *const[]){ "-C", tmp, "pwd", NULL }),
	             125);
	cr_assert(strstr(err.data, "not inside an omnifs mount"), "%s",
	          err.data);
	cr_assert(strstr(err.data, tmp), "%s", err.data);
	exec_test_buf_free(&err);

	/* So do the control modes. */
	cr_assert_eq(
	    run_in(tmp, &out, &err, (const char *const[]){ "--ping", NULL }),
	    125);
	cr_assert(strstr(err.data, "not inside an omnifs mount"), "%s",
	          err.data);
	exec_test_buf_free(&err);
	exec_test_buf_free(&out);

	/* An invalid project id is a failure to find the session. */
	cr_assert_eq(
	    run_in(tmp, &out, &err,
	           (const char *const[]){ "--project", "../x", "true", NULL }),
	    125);
	cr_assert(strstr(err.data, "invalid project id"), "%s", err.data);
	exec_test_buf_free(&err);
	exec_test_buf_free(&out);
	omni_test_rm_rf(tmp);
}

Test(omni_exec, version_and_help_go_to_stdout)
{
	struct exec_test_buf out = { 0 }, err = { 0 };
	char tmp[PATH_MAX];

	omni_test_mkdtemp(tmp, sizeof(tmp));
	cr_assert_eq(
	    run_in(tmp, &out, &err, (const char *const[]){ "--version", NULL }),
	    0);
	cr_assert(strncmp(out.data, "omni-exec ", 10) == 0, "%s", out.data);
	cr_assert_str_eq(err.data, "");
	exec_test_buf_free(&out);
	exec_test_buf_free(&err);
	cr_assert_eq(
	    run_in(tmp, &out, &err, (const char *const[]){ "-h", NULL }), 0);
	cr_assert(strstr(out.data, "Exit status"), "%s", out.data);
	cr_assert_str_eq(err.data, "");
	exec_test_buf_free(&out);
	exec_test_buf_free(&err);
	omni_test_rm_rf(tmp);
}

/* --- the client loop against a fake server -------------------------------- */

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "omni/ipc.h"

enum fake_script {
	FAKE_STREAMS, /* output, an unknown frame, EXIT 5 */
	FAKE_ERROR,   /* ERROR -ENOENT */
	FAKE_HANG_UP, /* STARTED, then close */
	FAKE_SIGNAL,  /* wait for a SIGNAL frame, EXIT 128+N */
	FAKE_DEAF,    /* STARTED, then read nothing more */
};

struct fake {
	int fd;
	enum fake_script script;
	struct omni_ipc_request got; /* the decoded EXEC */
	int got_signal;
	bool got_request;
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct omni_ipc_buf buf = { 0 };
	uint8_t type;

	if (omni_ipc_recv(f->fd, &type, &buf) != 1 || type != OMNI_IPC_EXEC ||
	    omni_ipc_request_decode(&f->got, buf.data, buf.len) < 0)
		goto out;
	f->got_request = true;
	switch (f->script) {
	case FAKE_STREAMS:
		omni_ipc_send_u32(f->fd, OMNI_IPC_STARTED, 0);
		omni_ipc_send(f->fd, OMNI_IPC_STDOUT, "abc", 3);
		omni_ipc_send(f->fd, 0x99, "?", 1);
		omni_ipc_send(f->fd, OMNI_IPC_STDERR, "def", 3);
		omni_ipc_send(f->fd, OMNI_IPC_STDOUT, "ghi", 3);
		omni_ipc_send_exit(f->fd, 5, 0, false);
		break;
	case FAKE_ERROR:
		omni_ipc_send_error(f->fd, -ENOENT, "exec: directory gone");
		break;
	case FAKE_HANG_UP:
		omni_ipc_send_u32(f->fd, OMNI_IPC_STARTED, 0);
		break;
	case FAKE_SIGNAL:
		omni_ipc_send_u32(f->fd, OMNI_IPC_STARTED, 0);
		while (omni_ipc_recv(f->fd, &type, &buf) == 1) {
			if (type == OMNI_IPC_SIGNAL && buf.len == 4) {
				f->got_signal = (int)omni_ipc_get_u32(buf.data);
				omni_ipc_send_exit(f->fd, 128 + f->got_signal,
				                   f->got_signal, false);
				break;
			}
		}
		break;
	case FAKE_DEAF:
		omni_ipc_send_u32(f->fd, OMNI_IPC_STARTED, 0);
		/* Wait for the client to give up; read nothing. */
		while (recv(f->fd, &type, 0, MSG_PEEK) > 0 &&
		       send(f->fd, "", 0, MSG_NOSIGNAL) == 0)
			usleep(50 * 1000);
		break;
	}
out:
	omni_ipc_buf_finish(&buf);
	if (f->script != FAKE_DEAF)
		shutdown(f->fd, SHUT_RDWR);
	return NULL;
}

struct fake_run {
	struct fake f;
	pthread_t t;
	int client_fd;
};

static void fake_start(struct fake_run *r, enum fake_script script)
{
	int sv[2];

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	memset(r, 0, sizeof(*r));
	r->f.fd = sv[1];
	r->f.script = script;
	r->client_fd = sv[0];
	cr_assert(pthread_create(&r->t, NULL, fake_main, &r->f) == 0);
}

static void fake_finish(struct fake_run *r)
{
	close(r->client_fd);
	pthread_join(r->t, NULL);
	close(r->f.fd);
	omni_ipc_request_finish(&r->f.got);
}

static int memfile(void)
{
	char path[] = "/tmp/omni-exec-test-XXXXXX";
	int fd = mkstemp(path);

	cr_assert(fd >= 0);
	unlink(path);
	return fd;
}

static char *file_text(int fd)
{
	static char text[256];
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);

	text[n > 0 ? n : 0] = '\0';
	return text;
}

TestSuite(exec_client, .timeout = 30);

Test(exec_client, frames_reach_their_streams)
{
	struct fake_run r;
	struct omni__exec_client_io io = OMNI_EXEC_CLIENT_IO_INIT;
	struct omni__exec_client_result res;
	struct omni_ipc_request req = {
		.argv = (char *[]){ "prog", "arg", NULL },
		.cwd = "src",
		.env = (char *[]){ "K=V", NULL },
		.timeout_ms = 1234,
	};

	io.out_fd = memfile();
	io.err_fd = memfile();
	fake_start(&r, FAKE_STREAMS);
	omni_assert_ok(omni__exec_client_run(r.client_fd, &req, &io, &res));
	close(r.client_fd);
	pthread_join(r.t, NULL);
	cr_assert_eq(res.exit_code, 5);
	cr_assert(!res.timed_out && !res.abandoned);
	cr_assert_str_eq(file_text(io.out_fd), "abcghi");
	cr_assert_str_eq(file_text(io.err_fd), "def");
	cr_assert(r.f.got_request);
	cr_assert_str_eq(r.f.got.argv[1], "arg");
	cr_assert_str_eq(r.f.got.cwd, "src");
	cr_assert_str_eq(r.f.got.env[0], "K=V");
	cr_assert_eq(r.f.got.timeout_ms, 1234);
	cr_assert(!r.f.got.want_stdin);
	close(r.f.fd);
	omni_ipc_request_finish(&r.f.got);
	close(io.out_fd);
	close(io.err_fd);
}

Test(exec_client, error_frame_is_the_result)
{
	struct fake_run r;
	struct omni__exec_client_io io = OMNI_EXEC_CLIENT_IO_INIT;
	struct omni__exec_client_result res;
	struct omni_ipc_request req = { .shell = "true" };

	fake_start(&r, FAKE_ERROR);
	omni_assert_err(omni__exec_client_run(r.client_fd, &req, &io, &res),
	                -ENOENT);
	cr_assert_str_eq(omni_error_last(), "exec: directory gone");
	fake_finish(&r);
}

Test(exec_client, lost_connection_is_an_error)
{
	struct fake_run r;
	struct omni__exec_client_io io = OMNI_EXEC_CLIENT_IO_INIT;
	struct omni__exec_client_result res;
	struct omni_ipc_request req = { .shell = "true" };

	fake_start(&r, FAKE_HANG_UP);
	omni_assert_err(omni__exec_client_run(r.client_fd, &req, &io, &res),
	                -ECONNRESET);
	cr_assert(strstr(omni_error_last(), "lost"), "%s", omni_error_last());
	fake_finish(&r);
}

Test(exec_client, signals_are_forwarded)
{
	struct fake_run r;
	struct omni__exec_client_io io = OMNI_EXEC_CLIENT_IO_INIT;
	struct omni__exec_client_result res;
	struct omni_ipc_request req = { .shell = "sleep 30" };
	int p[2];
	unsigned char sig = SIGTERM;

	cr_assert(pipe(p) == 0);
	cr_assert_eq(write(p[1], &sig, 1), 1);
	io.sig_fd = p[0];
	fake_start(&r, FAKE_SIGNAL);
	omni_assert_ok(omni__exec_client_run(r.client_fd, &req, &io, &res));
	fake_finish(&r);
	cr_assert_eq(r.f.got_signal, SIGTERM);
	cr_assert_eq(res.exit_code, 143);
	cr_assert_eq(res.signal, SIGTERM);
	close(p[0]);
	close(p[1]);
}

struct later {
	int fd;
	int ms;
};

static void *signal_twice(void *arg)
{
	struct later *l = arg;
	unsigned char sig = SIGINT;

	usleep(200 * 1000);
	cr_assert_eq(write(l->fd, &sig, 1), 1);
	usleep((useconds_t)l->ms * 1000);
	cr_assert_eq(write(l->fd, &sig, 1), 1);
	return NULL;
}

Test(exec_client, undeliverable_signals_end_the_wait)
{
	struct fake_run r;
	struct omni__exec_client_io io = OMNI_EXEC_CLIENT_IO_INIT;
	struct omni__exec_client_result res;
	struct omni_ipc_request req = { .shell = "cat", .want_stdin = true };
	size_t big = 16 << 20;
	char *data = calloc(1, big);
	int p[2];
	pthread_t t;

	/* 16 MiB of stdin that nobody reads: the stdin thread blocks in
	 * send() holding the send lock, so a signal cannot go out. */
	io.in_fd = memfile();
	cr_assert_eq(write(io.in_fd, data, big), (ssize_t)big);
	lseek(io.in_fd, 0, SEEK_SET);
	free(data);
	cr_assert(pipe(p) == 0);
	io.sig_fd = p[0];
	struct later l = { .fd = p[1], .ms = 1300 };
	cr_assert(pthread_create(&t, NULL, signal_twice, &l) == 0);
	fake_start(&r, FAKE_DEAF);
	long long t0 = omni_test_now_ms();
	omni_assert_ok(omni__exec_client_run(r.client_fd, &req, &io, &res));
	long long took = omni_test_now_ms() - t0;
	pthread_join(t, NULL);
	fake_finish(&r);
	cr_assert(res.abandoned);
	cr_assert_eq(res.exit_code, 130);
	cr_assert(took >= 1400 && took < 5000, "took %lld ms", took);
	close(io.in_fd);
	close(p[0]);
	close(p[1]);
}
