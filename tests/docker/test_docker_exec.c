/*
 * tests/docker/test_docker_exec.c - commands in the docker backend's
 * container (suite backend_docker, see test_docker.c): isolation and
 * limits, exit codes and timeouts, output streams, stdin, signals,
 * terminals, concurrency, the working directory and environment.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "docker/docker.h"
#include "docker_helpers.h"
#include "helpers.h"
#include "http_fake.h"
#include "mount_helpers.h"
#include "omni/session.h"

/* --- isolation and limits ------------------------------------------------- */

Test(backend_docker, network_none_leaves_only_loopback)
{
	struct omni_backend *b = dk_started();
	int code;
	char *net = dk_cmd(b, "cat /proc/net/dev", &code);
	int ifaces = 0;

	cr_assert_eq(code, 0);
	for (char *l = strchr(net, '\n'); l; l = strchr(l + 1, '\n')) {
		const char *colon = strchr(l + 1, ':');
		const char *eol = strchr(l + 1, '\n');
		if (colon && (!eol || colon < eol))
			ifaces++;
	}
	cr_assert_eq(ifaces, 1, "%s", net);
	cr_assert(strstr(net, "lo:"), "%s", net);
	free(net);
	cJSON *c = dk_inspect(dk_fx.name);
	cr_assert_str_eq(dk_str(c, "HostConfig", "NetworkMode"), "none");
	cJSON_Delete(c);
}

Test(backend_docker, limits_reach_the_container)
{
	struct omni_backend_options o;

	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	dk_dopts.memory_bytes = 64LL << 20;
	dk_dopts.pids_limit = 64;
	dk_dopts.cpus = 0.5;
	struct omni_backend *b = dk_fx_start(0, &o);
	cJSON *c = dk_inspect(dk_fx.name);
	cr_assert_eq(dk_num(c, "HostConfig", "Memory"), 64.0 * 1024 * 1024);
	cr_assert_eq(dk_num(c, "HostConfig", "PidsLimit"), 64.0);
	cr_assert_eq(dk_num(c, "HostConfig", "NanoCpus"), 5e8);
	cJSON_Delete(c);
	/* cgroup v2 or v1, as the kernel has it. */
	dk_cmd_is(b,
	          "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
	          "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
	          "67108864\n");
	dk_cmd_is(b,
	          "cat /sys/fs/cgroup/pids.max 2>/dev/null || "
	          "cat /sys/fs/cgroup/pids/pids.max",
	          "64\n");
}

/* --- commands ------------------------------------------------------------- */

/* The documented DockerBackend example, call for call. */
Test(backend_docker, execute_command_hello)
{
	struct omni_backend_options o;
	struct omni_backend *b = NULL;
	struct omni_command_result res;

	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	omni_assert_ok(omni_docker_backend_new(&b, dk_fx.project, &o, NULL));
	dk_fx.b[0] = b;
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_UNINITIALIZED);
	omni_assert_ok(omni_backend_start(b));
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_RUNNING);
	omni_assert_ok(
	    omni_backend_execute_command(b, "echo 'Hello'", 30, &res));
	cr_assert_str_eq(res.output, "Hello\n");
	cr_assert_eq(res.output_len, 6);
	cr_assert_eq(res.exit_code, 0);
	omni_command_result_finish(&res);
	omni_assert_ok(omni_backend_shutdown(b));
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_STOPPED);
	cr_assert(!dk_exists(dk_fx.name));
}

Test(backend_docker, exit_codes_and_timeouts)
{
	struct omni_backend *b = dk_started();
	struct omni_command_result r;
	int code;
	char *o;

	o = dk_cmd(b, "exit 3", &code);
	cr_assert_eq(code, 3);
	free(o);
	o = dk_cmd(b, "kill -9 $$", &code);
	cr_assert_eq(code, 137);
	free(o);
	o = dk_cmd(b, "echo $HOME; pwd; id -u", &code);
	char want[64];
	snprintf(want, sizeof(want), "/workspace\n/workspace\n%u\n", getuid());
	cr_assert_str_eq(o, want);
	free(o);

	long long t0 = omni_test_now_ms();
	omni_assert_ok(
	    omni_backend_execute_command(b, "echo before; sleep 10", 0.5, &r));
	cr_assert_eq(r.exit_code, 124);
	cr_assert_str_eq(r.output, "before\n");
	cr_assert(omni_test_now_ms() - t0 < 3000);
	omni_command_result_finish(&r);

	/* A missing program by argv: 127, as a shell says it. */
	const char *argv[] = { "no-such-program-here", "x", NULL };
	struct omni_exec_request req = { .argv = argv };
	struct omni_exec_status st;
	struct out *c = dk_out_new();
	omni_assert_ok(dk_run_req(b, &req, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 127);
	cr_assert(strstr(c->e, "no-such-program-here"), "%s", c->e);
	/* Present but not executable: 126. */
	omni_assert_ok(omni_backend_write_file(b, "script.sh", "echo hi\n", 8));
	const char *argv2[] = { "./script.sh", NULL };
	struct omni_exec_request req2 = { .argv = argv2 };
	memset(c, 0, sizeof(*c));
	omni_assert_ok(dk_run_req(b, &req2, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 126);
	free(c);
}

Test(backend_docker, stdout_and_stderr_stay_apart)
{
	struct omni_backend *b = dk_started();
	struct omni_exec_request req = {
		.shell = "echo out1; echo err1 >&2; echo out2; echo err2 >&2"
	};
	struct omni_exec_status st;
	struct out *c = dk_out_new();

	omni_assert_ok(dk_run_req(b, &req, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 0);
	cr_assert_str_eq(c->o, "out1\nout2\n");
	cr_assert_str_eq(c->e, "err1\nerr2\n");
	free(c);
}

Test(backend_docker, stdin_reaches_the_command)
{
	struct omni_backend *b = dk_started();
	struct omni_exec_request req = { .shell = "cat; echo done",
		                         .want_stdin = true };
	struct omni_exec_status st;
	struct out *c = dk_out_new();

	omni_assert_ok(dk_run_req(b, &req, "line1\nline2\n", 12, c, &st));
	cr_assert_eq(st.exit_code, 0);
	cr_assert_str_eq(c->o, "line1\nline2\ndone\n");

	/* More than a pipe and a socket buffer hold. */
	size_t big = 3 << 20;
	char *data = malloc(big);
	cr_assert(data);
	memset(data, 'x', big);
	struct omni_exec_request wc = { .shell = "wc -c", .want_stdin = true };
	memset(c, 0, sizeof(*c));
	omni_assert_ok(dk_run_req(b, &wc, data, big, c, &st));
	cr_assert_eq(strtol(c->o, NULL, 10), (long)big, "%s", c->o);
	free(data);
	free(c);
}

Test(backend_docker, signal_reaches_the_whole_group)
{
	struct omni_backend *b = dk_started();
	struct omni_exec_request req = {
		.shell = "trap 'echo main-TERM' TERM\n"
		         "( trap 'echo sub-TERM; exit 5' TERM; echo ready; "
		         "while :; do sleep 0.05; done ) &\n"
		         "wait $!\n"
		         "wait $!\n"
		         "echo end $?\n",
	};
	struct omni_exec_status st;
	struct out *c = dk_out_new();

	c->trigger = "ready";
	c->sig = SIGTERM;
	long long t0 = omni_test_now_ms();
	omni_assert_ok(dk_run_req(b, &req, NULL, 0, c, &st));
	cr_assert(omni_test_now_ms() - t0 < 5000);
	cr_assert(strstr(c->o, "main-TERM") && strstr(c->o, "sub-TERM") &&
	              strstr(c->o, "end 5"),
	          "%s", c->o);
	cr_assert_eq(st.exit_code, 0);

	/* An untrapped signal ends the command with 128+N. */
	struct omni_exec_request kreq = { .shell = "echo ready; sleep 30" };
	memset(c, 0, sizeof(*c));
	c->trigger = "ready";
	c->sig = SIGINT;
	omni_assert_ok(dk_run_req(b, &kreq, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 130);
	cr_assert_eq(st.signal, SIGINT);
	free(c);
}

Test(backend_docker, tty_commands_have_a_terminal)
{
	struct omni_backend *b = dk_started();
	struct omni_exec_request req = {
		.shell = "tty; stty size", .tty = true, .rows = 30, .cols = 100
	};
	struct omni_exec_status st;
	struct out *c = dk_out_new();

	omni_assert_ok(dk_run_req(b, &req, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 0, "%s", c->o);
	cr_assert(strstr(c->o, "/dev/pts/") && strstr(c->o, "30 100"), "%s",
	          c->o);

	/* Resized while it runs; input through the terminal. */
	struct omni_exec_request rreq = { .shell = "echo ready; read x; "
		                                   "stty size; echo got $x",
		                          .tty = true,
		                          .rows = 24,
		                          .cols = 80,
		                          .want_stdin = true };
	memset(c, 0, sizeof(*c));
	c->trigger = "ready";
	c->rows = 40;
	c->cols = 120;
	c->input = "go\n";
	omni_assert_ok(dk_run_req(b, &rreq, NULL, 0, c, &st));
	cr_assert(strstr(c->o, "40 120") && strstr(c->o, "got go"), "%s", c->o);
	free(c);
}

struct par {
	struct omni_backend *b;
	int i;
	char want[32];
	char *got;
	int rc;
};

static void *par_main(void *arg)
{
	struct par *p = arg;
	struct omni_command_result r;
	char command[64];

	snprintf(command, sizeof(command), "sleep 0.5; echo job %d", p->i);
	snprintf(p->want, sizeof(p->want), "job %d\n", p->i);
	p->rc = omni_backend_execute_command(p->b, command, 30, &r);
	if (p->rc == 0)
		p->got = r.output;
	return NULL;
}

Test(backend_docker, concurrent_commands)
{
	struct omni_backend *b = dk_started();
	struct par p[6];
	pthread_t t[6];

	long long t0 = omni_test_now_ms();
	for (int i = 0; i < 6; i++) {
		p[i] = (struct par){ .b = b, .i = i };
		cr_assert(pthread_create(&t[i], NULL, par_main, &p[i]) == 0);
	}
	for (int i = 0; i < 6; i++)
		pthread_join(t[i], NULL);
	long long took = omni_test_now_ms() - t0;
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(p[i].rc, 0);
		cr_assert_str_eq(p[i].got, p[i].want);
		free(p[i].got);
	}
	cr_assert(took < 2500, "6 commands of 0.5 s took %lld ms", took);
}

Test(backend_docker, cwd_and_environment)
{
	struct omni_backend_options o;
	const char *env[] = { "FOO=session", "BAR=session", NULL };

	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	o.env = env;
	struct omni_backend *b = dk_fx_start(0, &o);
	omni_assert_ok(omni_backend_create_directory(b, "src/deep", true));

	const char *argv[] = { "pwd", NULL };
	struct omni_exec_request req = { .argv = argv, .cwd = "src/deep" };
	struct omni_exec_status st;
	struct out *c = dk_out_new();
	omni_assert_ok(dk_run_req(b, &req, NULL, 0, c, &st));
	cr_assert_str_eq(c->o, "/workspace/src/deep\n");

	const char *renv[] = { "BAR=request", NULL };
	struct omni_exec_request ereq = { .shell = "echo $FOO $BAR $HOME",
		                          .env = renv };
	memset(c, 0, sizeof(*c));
	omni_assert_ok(dk_run_req(b, &ereq, NULL, 0, c, &st));
	cr_assert_str_eq(c->o, "session request /workspace\n");

	struct omni_exec *e;
	struct omni_exec_request missing = { .shell = "true", .cwd = "nope" };
	omni_assert_err(omni_vfs_exec_start(b, &missing, &e), -ENOENT);
	omni_assert_ok(omni_vfs_symlink(b, "/etc", "out"));
	struct omni_exec_request out = { .shell = "true", .cwd = "out" };
	omni_assert_err(omni_vfs_exec_start(b, &out, &e), -EACCES);
	free(c);
}

Test(backend_docker, debian_image_has_git_and_a_compiler)
{
	struct omni_backend_options o;

	dk_require_docker();
	if (!dk_image_present(DEBIAN))
		missing("image %s is missing; run scripts/make-test-images.sh",
		        DEBIAN);
	dk_fx_paths();
	dk_default_opts(&o);
	dk_dopts.image = DEBIAN;
	struct omni_backend *b = dk_fx_start(0, &o);
	omni_assert_ok(omni_backend_write_file(
	    b, "hello.c",
	    "#include <stdio.h>\nint main(void){puts(\"compiled\");return "
	    "0;}\n",
	    62));
	int code;
	char *out = dk_cmd(b,
	                   "git --version && git init -q repo && cd repo && "
	                   "git -c user.email=a@b -c user.name=n commit -q "
	                   "--allow-empty -m x && echo committed && cd .. && "
	                   "gcc -o hello hello.c && ./hello",
	                   &code);
	cr_assert_eq(code, 0, "%s", out);
	cr_assert(strstr(out, "git version") && strstr(out, "committed") &&
	              strstr(out, "compiled"),
	          "%s", out);
	free(out);
	char p[PATH_MAX];
	struct stat st;
	omni_test_fmt(p, sizeof(p), "%s/hello", dk_fx.host);
	cr_assert(stat(p, &st) == 0 && (st.st_mode & S_IXUSR));
	cr_assert_eq(st.st_uid, getuid());
}
