/*
 * tests/docker/test_docker_agent.c - the docker backend's agent mode (suite
 * docker_agent): a named volume at /workspace, nothing bind-mounted,
 * omni-agent put in through the archive API, and every connection to the
 * agent a channel of one exec stream (docker_mux.c, exec/agent_mux.c).
 * Against the local daemon with the mode forced; against the second daemon
 * of scripts/dockerd-remote-start.sh (tcp:// with TLS, in a mount namespace
 * of its own that cannot see our data folders), named by its env file
 * ($OMNI_TEST_REMOTE_DOCKER_ENV, default /var/lib/omnifs-dockerd-remote/env;
 * the tests skip without it, and fail under CI=true); through a docker
 * context naming it; and through ssh:// to a local sshd the test starts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "docker/docker.h"
#include "docker_helpers.h"
#include "helpers.h"
#include "omni/session.h"

TestSuite(docker_agent, .init = dk_setup, .fini = dk_teardown, .timeout = 90);

static struct omni_backend *agent_start(int slot)
{
	struct omni_backend_options o;

	dk_default_opts(&o);
	dk_dopts.files = "agent";
	return dk_fx_start(slot, &o);
}

static struct omni_backend *agent_started(void)
{
	dk_require_docker();
	dk_fx_paths();
	return agent_start(0);
}

static bool volume_exists(const char *name)
{
	char path[256];

	omni_test_fmt(path, sizeof(path), "/volumes/%s", name);
	return dk("GET", path, NULL, NULL) == 200;
}

static void check_volume_and_mounts(struct omni_backend *b)
{
	cJSON *c = dk_inspect(dk_fx.name);
	const cJSON *m;
	int volumes = 0;

	cr_assert(c);
	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(c, "Mounts"))
	{
		const char *type = dk_str(m, "Type", NULL);
		cr_assert_str_neq(type, "bind", "a bind mount: %s",
		                  dk_str(m, "Source", NULL));
		if (strcmp(type, "volume") == 0) {
			cr_assert_str_eq(dk_str(m, "Name", NULL), dk_fx.name);
			cr_assert_str_eq(dk_str(m, "Destination", NULL),
			                 "/workspace");
			volumes++;
		}
	}
	cr_assert_eq(volumes, 1);
	cJSON_Delete(c);
	cr_assert(omni_vfs_caps(b) & OMNI_CAP_REMOTE);
	/* Nothing of the host's data folder was made or used. */
	struct stat st;
	cr_assert(stat(dk_fx.host, &st) < 0 && errno == ENOENT);
	/* The workspace is the caller's and writable. */
	char want[64];
	omni_test_fmt(want, sizeof(want), "%u:%u\n", (unsigned)getuid(),
	              (unsigned)getgid());
	dk_cmd_is(b, "stat -c %u:%g /workspace", want);
	dk_cmd_is(b, "echo hi > /workspace/f && cat /workspace/f", "hi\n");
	dk_cmd_is(b, "ls -l /omni-agent | cut -c1-10", "-rwxr-xr-x\n");
}

Test(docker_agent, container_has_a_volume_and_no_bind_mounts)
{
	check_volume_and_mounts(agent_started());
}

static void check_commands(struct omni_backend *b)
{
	struct omni_exec_status st;
	int code;

	char *out = dk_cmd(b, "echo out; echo err >&2; exit 7", &code);
	cr_assert_eq(code, 7);
	cr_assert(strstr(out, "out\n") && strstr(out, "err\n"), "%s", out);
	free(out);
	dk_cmd_is(b, "pwd", "/workspace\n");

	struct out *c = dk_out_new();
	const char *argv[] = { "sh", "-c", "wc -c; exit 3", NULL };
	struct omni_exec_request req = { .argv = argv, .want_stdin = true };
	omni_assert_ok(dk_run_req(b, &req, "hello world", 11, c, &st));
	cr_assert_eq(st.exit_code, 3);
	cr_assert_eq(strtol(c->o, NULL, 10), 11, "%.*s", (int)c->ol, c->o);
	free(c);

	const char *missing_cmd[] = { "no-such-program", NULL };
	struct omni_exec_request r2 = { .argv = missing_cmd };
	c = dk_out_new();
	omni_assert_ok(dk_run_req(b, &r2, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 127);
	free(c);

	/* A terminal, resized while the command runs, input through it;
	 * and a signal: the control frames travel on the channel too. */
	struct omni_exec_request tr = { .shell = "echo ready; read x; "
		                                 "stty size; echo got $x",
		                        .tty = true,
		                        .rows = 24,
		                        .cols = 80,
		                        .want_stdin = true };
	c = dk_out_new();
	c->trigger = "ready";
	c->rows = 40;
	c->cols = 120;
	c->input = "go\n";
	omni_assert_ok(dk_run_req(b, &tr, NULL, 0, c, &st));
	cr_assert(strstr(c->o, "40 120") && strstr(c->o, "got go"), "%s", c->o);
	free(c);
	struct omni_exec_request sr = { .shell = "echo ready; sleep 30" };
	c = dk_out_new();
	c->trigger = "ready";
	c->sig = SIGTERM;
	omni_assert_ok(dk_run_req(b, &sr, NULL, 0, c, &st));
	cr_assert(st.signal == SIGTERM || st.exit_code == 128 + SIGTERM,
	          "exit %d signal %d", st.exit_code, st.signal);
	free(c);

	/* A missing directory is the agent's ERROR, as in bind mode. */
	const char *pwd[] = { "pwd", NULL };
	struct omni_exec_request r3 = { .argv = pwd, .cwd = "nope" };
	struct omni_exec *e;
	cr_assert_eq(omni_vfs_exec_start(b, &r3, &e), -ENOENT);
}

Test(docker_agent, commands_exit_codes_and_stdin)
{
	check_commands(agent_started());
}

struct big {
	long long bytes;
	unsigned long long sum;
};

static int count_out(int stream, const void *data, size_t len, void *payload)
{
	struct big *g = payload;
	const unsigned char *p = data;

	(void)stream;
	g->bytes += (long long)len;
	for (size_t i = 0; i < len; i++)
		g->sum += p[i];
	return 0;
}

struct slow_arg {
	struct omni_backend *b;
	long long bytes;
	int rc;
};

/* 64 MiB through one channel while its reader is slow at first: the
 * others keep going (the per-channel window). */
static void *big_reader(void *arg)
{
	struct slow_arg *a = arg;
	struct omni_exec *e;
	struct omni_exec_status st;
	struct big g = { 0 };
	const char *argv[] = {
		"sh", "-c", "dd if=/dev/zero bs=1048576 count=64 2>/dev/null",
		NULL
	};
	struct omni_exec_request req = { .argv = argv };

	a->rc = omni_vfs_exec_start(a->b, &req, &e);
	if (a->rc < 0)
		return NULL;
	usleep(500 * 1000); /* nobody reads: the window fills */
	a->rc = omni_vfs_exec_wait(e, count_out, &g, &st);
	omni_vfs_exec_free(e);
	a->bytes = g.bytes;
	return NULL;
}

static void check_big_output(struct omni_backend *b)
{
	struct slow_arg a = { .b = b };
	pthread_t t;

	cr_assert(pthread_create(&t, NULL, big_reader, &a) == 0);
	usleep(100 * 1000);
	/* While the big output waits for its reader, commands still run. */
	for (int i = 0; i < 5; i++)
		dk_cmd_is(b, "echo ok", "ok\n");
	pthread_join(t, NULL);
	omni_assert_ok(a.rc);
	cr_assert_eq(a.bytes, 64LL << 20);
	struct omni__docker_backend *db = (struct omni__docker_backend *)b;
	cr_assert_eq(omni__docker_mux_streams(db), 1,
	             "one stream for every command");
}

Test(docker_agent, big_output_does_not_hold_up_other_channels)
{
	check_big_output(agent_started());
}

Test(docker_agent, a_dropped_stream_is_made_again)
{
	struct omni_backend *b = agent_started();
	struct omni__docker_backend *db = (struct omni__docker_backend *)b;

	dk_cmd_is(b, "echo one", "one\n");
	/* Kill the container's mux process: the stream ends. */
	char id[80], path[256];
	dk_id(dk_fx.name, id, sizeof(id));
	omni_test_fmt(path, sizeof(path), "/containers/%s/exec", id);
	cJSON *r = NULL;
	cr_assert_eq(dk("POST", path,
	                "{\"User\":\"0\",\"Cmd\":[\"sh\",\"-c\","
	                "\"for p in /proc/[0-9]*; do case \\\"$(tr '\\\\0' "
	                "' ' <$p/cmdline)\\\" in '/omni-agent mux '*) kill "
	                "${p#/proc/};; esac; done\"]}",
	                &r),
	             201);
	const char *eid = dk_str(r, "Id", NULL);
	omni_test_fmt(path, sizeof(path), "/exec/%s/start", eid);
	dk("POST", path, "{\"Detach\":true}", NULL);
	/* Until the kill has run. */
	omni_test_fmt(path, sizeof(path), "/exec/%s/json", eid);
	for (int i = 0; i < 250; i++) {
		cJSON *x = NULL;
		dk("GET", path, NULL, &x);
		bool running = cJSON_IsTrue(
		    cJSON_GetObjectItemCaseSensitive(x, "Running"));
		cJSON_Delete(x);
		if (!running)
			break;
		usleep(20 * 1000);
	}
	cJSON_Delete(r);
	/* The next command sees either the old stream go (and fails), or
	 * finds it gone and makes a new one; after a drop, one retry runs. */
	usleep(100 * 1000);
	int code = -1;
	struct omni_command_result res;
	int rc = omni_backend_execute_command(b, "echo two", 60, &res);
	if (rc == 0) {
		code = res.exit_code;
		free(res.output);
	}
	if (rc < 0 || code != 0)
		dk_cmd_is(b, "echo two", "two\n");
	cr_assert_geq(omni__docker_mux_streams(db), 2);
}

static void check_restart(struct omni_backend *b)
{
	char id1[80], id2[80], path[256];

	dk_cmd_is(b, "echo kept > /workspace/k; cat /workspace/k", "kept\n");
	dk_id(dk_fx.name, id1, sizeof(id1));
	/* A second session of the project while the container runs: found
	 * by name and reused, files and all. */
	b = agent_start(1);
	dk_id(dk_fx.name, id2, sizeof(id2));
	cr_assert_str_eq(id1, id2);
	dk_cmd_is(b, "cat /workspace/k", "kept\n");
	/* A stopped one is started again, with omni-agent put in anew. */
	omni_test_fmt(path, sizeof(path), "/containers/%s/stop?t=1", id1);
	dk("POST", path, NULL, NULL);
	b = agent_start(2);
	dk_id(dk_fx.name, id2, sizeof(id2));
	cr_assert_str_eq(id1, id2);
	dk_cmd_is(b, "cat /workspace/k", "kept\n");
	/* The container removed behind our back: a new one, same volume. */
	dk_remove(dk_fx.name);
	cr_assert(volume_exists(dk_fx.name));
	struct omni_backend_options o;
	dk_default_opts(&o);
	dk_dopts.files = "agent";
	omni_assert_ok(omni_docker_backend_new(&b, dk_fx.project, &o, NULL));
	omni_assert_ok(omni_backend_start(b));
	dk_id(dk_fx.name, id2, sizeof(id2));
	cr_assert_str_neq(id1, id2);
	dk_cmd_is(b, "cat /workspace/k", "kept\n");
	omni_backend_free(b);
}

Test(docker_agent, restart_reuses_the_container_and_its_volume)
{
	check_restart(agent_started());
}

static void check_shutdown(struct omni_backend *b)
{
	dk_cmd_is(b, "true", "");
	cr_assert(volume_exists(dk_fx.name));
	omni_assert_ok(omni_backend_shutdown(b));
	cr_assert_not(dk_exists(dk_fx.name));
	cr_assert_not(volume_exists(dk_fx.name));
}

Test(docker_agent, shutdown_removes_container_and_volume)
{
	check_shutdown(agent_started());
}

Test(docker_agent, a_bind_mode_container_is_replaced)
{
	dk_require_docker();
	dk_fx_paths();
	struct omni_backend *b = dk_fx_start(0, NULL);
	char id1[80], id2[80];

	dk_cmd_is(b, "true", "");
	dk_id(dk_fx.name, id1, sizeof(id1));
	omni_backend_free(dk_fx.b[0]);
	dk_fx.b[0] = NULL;
	b = agent_start(1);
	dk_id(dk_fx.name, id2, sizeof(id2));
	cr_assert_str_neq(id1, id2);
	dk_cmd_is(b, "echo agent", "agent\n");
}

/* --- choosing the mode ---------------------------------------------------- */

static unsigned files_of(struct omni_backend *b)
{
	return ((struct omni__docker_backend *)b)->files;
}

Test(docker_agent, probe_picks_bind_for_the_local_daemon)
{
	struct omni_backend_options o;
	struct omni_backend *b;

	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	dk_dopts.files = NULL;
	omni_assert_ok(omni_docker_backend_new(&b, dk_fx.project, &o, NULL));
	dk_fx.b[0] = b;
	cr_assert_eq(files_of(b), OMNI__DOCKER_FILES_BIND);
	cr_assert_not(omni_vfs_caps(b) & OMNI_CAP_REMOTE);
	/* The marker is gone again. */
	char cmd[PATH_MAX + 64];
	omni_test_fmt(cmd, sizeof(cmd), "ls -A %s | grep -c probe", dk_fx.data);
	FILE *f = popen(cmd, "r");
	char line[16] = "";
	cr_assert(f && fgets(line, sizeof(line), f));
	pclose(f);
	cr_assert_str_eq(line, "0\n");
	dk_dopts.files = "auto";
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[1], dk_fx.project, &o, NULL));
	cr_assert_eq(files_of(dk_fx.b[1]), OMNI__DOCKER_FILES_BIND);
}

Test(docker_agent, forced_modes_and_a_bad_one)
{
	struct omni_backend_options o;
	struct omni_backend *b = NULL;

	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	dk_dopts.files = "agent";
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[0], dk_fx.project, &o, NULL));
	cr_assert_eq(files_of(dk_fx.b[0]), OMNI__DOCKER_FILES_AGENT);
	dk_dopts.files = "bind";
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[1], dk_fx.project, &o, NULL));
	cr_assert_eq(files_of(dk_fx.b[1]), OMNI__DOCKER_FILES_BIND);
	dk_dopts.files = "nfs";
	cr_assert_eq(omni_docker_backend_new(&b, dk_fx.project, &o, NULL),
	             -EINVAL);
	cr_assert(strstr(omni_error_last(), "nfs"), "%s", omni_error_last());
}

/* --- a daemon on "another machine": the second dockerd (TLS) -------------- */

static struct omni_backend *remote_started(const char *files)
{
	struct omni_backend_options o;

	dk_remote_env();
	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	dk_dopts.files = files;
	return dk_fx_start(0, &o);
}

Test(docker_agent, remote_tls_probe_picks_agent_and_commands_run)
{
	struct omni_backend *b = remote_started(NULL);

	cr_assert_eq(files_of(b), OMNI__DOCKER_FILES_AGENT);
	check_volume_and_mounts(b);
	check_commands(b);
}

Test(docker_agent, remote_tls_big_output)
{
	check_big_output(remote_started("agent"));
}

Test(docker_agent, remote_tls_restart_and_shutdown)
{
	check_restart(remote_started("agent"));
}

Test(docker_agent, remote_tls_shutdown_removes_container_and_volume)
{
	check_shutdown(remote_started("agent"));
}

Test(docker_agent, remote_bind_is_refused_with_the_daemons_reason)
{
	struct omni_backend_options o;
	struct omni_backend *b;

	dk_remote_env();
	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	omni_assert_ok(omni_docker_backend_new(&b, dk_fx.project, &o, NULL));
	dk_fx.b[0] = b;
	cr_assert_eq(omni_backend_start(b), -EINVAL);
	cr_assert(strstr(omni_error_last(), "bind source path does not exist"),
	          "%s", omni_error_last());
}

/* A wrong CA: the daemon's certificate is not trusted. */
Test(docker_agent, remote_tls_with_another_ca_fails)
{
	struct omni_backend_options o;
	struct omni_backend *b = NULL;
	char certs[PATH_MAX], cmd[PATH_MAX * 3];

	dk_remote_env();
	dk_require_docker();
	dk_fx_paths();
	omni_test_fmt(certs, sizeof(certs), "%s/certs", dk_fx.tmp);
	omni_test_fmt(cmd, sizeof(cmd),
	              "mkdir -p %s && cp %s/cert.pem %s/key.pem %s/ && "
	              "openssl req -x509 -newkey rsa:2048 -nodes -days 1 "
	              "-subj /CN=other -keyout %s/cak.pem -out %s/ca.pem "
	              "2>/dev/null",
	              certs, getenv("DOCKER_CERT_PATH"),
	              getenv("DOCKER_CERT_PATH"), certs, certs, certs);
	cr_assert_eq(system(cmd), 0);
	setenv("DOCKER_CERT_PATH", certs, 1);
	dk_default_opts(&o);
	dk_dopts.files = "agent";
	cr_assert_eq(omni_docker_backend_new(&b, dk_fx.project, &o, NULL), 0);
	dk_fx.b[0] = b;
	int rc = omni_backend_start(b);
	cr_assert(rc == -EACCES || rc == -ECONNREFUSED || rc == -EIO, "%d %s",
	          rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "cannot reach"), "%s",
	          omni_error_last());
}

/* --- a docker context ----------------------------------------------------- */

Test(docker_agent, docker_context_names_the_remote_daemon)
{
	char cfg[PATH_MAX], cmd[PATH_MAX * 4];
	/* sha256("omnitest-remote") */
	const char *name = "omnitest-remote";

	dk_remote_env();
	dk_require_docker();
	dk_fx_paths();
	char host[256], certs[PATH_MAX];
	omni_test_fmt(host, sizeof(host), "%s", getenv("DOCKER_HOST"));
	omni_test_fmt(certs, sizeof(certs), "%s", getenv("DOCKER_CERT_PATH"));
	omni_test_fmt(cfg, sizeof(cfg), "%s/dockercfg", dk_fx.tmp);
	omni_test_fmt(
	    cmd, sizeof(cmd),
	    "set -e; h=$(printf %%s %s | sha256sum | cut -d' ' -f1); "
	    "mkdir -p %s/contexts/meta/$h %s/contexts/tls/$h/docker; "
	    "printf '{\"Name\":\"%s\",\"Metadata\":{},\"Endpoints\":{"
	    "\"docker\":{\"Host\":\"%s\",\"SkipTLSVerify\":false}}}' "
	    ">%s/contexts/meta/$h/meta.json; "
	    "cp %s/ca.pem %s/cert.pem %s/key.pem %s/contexts/tls/$h/docker/; "
	    "printf '{\"currentContext\":\"%s\"}' >%s/config.json",
	    name, cfg, cfg, name, host, cfg, certs, certs, certs, cfg, name,
	    cfg);
	cr_assert_eq(system(cmd), 0);
	unsetenv("DOCKER_HOST");
	unsetenv("DOCKER_TLS_VERIFY");
	unsetenv("DOCKER_CERT_PATH");
	unsetenv("DOCKER_CONTEXT");
	setenv("DOCKER_CONFIG", cfg, 1);

	struct omni__docker_api api;
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.host, host);
	cr_assert(strstr(api.ep.ca_file, "/contexts/tls/"), "%s",
	          api.ep.ca_file);

	struct omni_backend_options o;
	dk_default_opts(&o);
	dk_dopts.files = NULL;
	struct omni_backend *b = dk_fx_start(0, &o);
	cr_assert_eq(files_of(b), OMNI__DOCKER_FILES_AGENT);
	dk_cmd_is(b, "echo via context", "via context\n");

	/* DOCKER_CONTEXT wins over currentContext; "default" is the local
	 * socket; a context that does not exist is an error. */
	setenv("DOCKER_CONTEXT", "default", 1);
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.host, "unix:///var/run/docker.sock");
	setenv("DOCKER_CONTEXT", "nosuch", 1);
	omni_assert_err(omni__docker_api_init(&api), -ENOENT);
	setenv("DOCKER_CONTEXT", name, 1);
}

/* --- ssh:// through a local sshd ------------------------------------------ */

static pid_t sshd_pid;

static void sshd_stop(void)
{
	if (sshd_pid > 0) {
		kill(sshd_pid, SIGTERM);
		waitpid(sshd_pid, NULL, 0);
		sshd_pid = 0;
	}
}

/* sshd on 127.0.0.1:port with keys made here; returns the ssh options. */
static void sshd_start(const char *dir, int port, char *opts, size_t size)
{
	char cmd[PATH_MAX * 4], cfg[PATH_MAX];

	if (access("/usr/sbin/sshd", X_OK) != 0)
		missing("sshd is missing (apt-get install openssh-server; "
		        "scripts/install-deps.sh)");
	omni_test_fmt(cmd, sizeof(cmd),
	              "set -e; mkdir -p /run/sshd; cd %s; "
	              "ssh-keygen -q -t ed25519 -N '' -f host_key; "
	              "ssh-keygen -q -t ed25519 -N '' -f id; "
	              "cp id.pub authorized_keys; "
	              "printf 'Port %d\\nListenAddress 127.0.0.1\\n"
	              "HostKey %s/host_key\\nAuthorizedKeysFile "
	              "%s/authorized_keys\\nPermitRootLogin yes\\n"
	              "StrictModes no\\nUsePAM no\\nPidFile %s/sshd.pid\\n' "
	              ">sshd_config",
	              dir, port, dir, dir, dir);
	cr_assert_eq(system(cmd), 0);
	omni_test_fmt(cfg, sizeof(cfg), "%s/sshd_config", dir);
	sshd_pid = fork();
	cr_assert(sshd_pid >= 0);
	if (sshd_pid == 0) {
		char log[PATH_MAX];
		omni_test_fmt(log, sizeof(log), "%s/sshd.log", dir);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", cfg,
		      (char *)NULL);
		_exit(127);
	}
	omni_test_fmt(opts, size,
	              "-i %s/id -o StrictHostKeyChecking=no "
	              "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
	              dir);
	/* Wait until it accepts connections. */
	omni_test_fmt(cmd, sizeof(cmd),
	              "for i in $(seq 50); do ssh %s -p %d root@127.0.0.1 true "
	              "2>/dev/null && exit 0; sleep 0.1; done; exit 1",
	              opts, port);
	cr_assert_eq(system(cmd), 0, "sshd did not come up");
}

static void ssh_fini(void)
{
	dk_teardown();
	sshd_stop();
}

Test(docker_agent, ssh_host_runs_requests_and_the_stream, .fini = ssh_fini)
{
	char dir[PATH_MAX], opts[PATH_MAX * 2], host[64];
	int port = 22000 + getpid() % 10000;

	dk_require_docker();
	dk_fx_paths();
	omni_test_fmt(dir, sizeof(dir), "%s/ssh", dk_fx.tmp);
	cr_assert(mkdir(dir, 0700) == 0);
	sshd_start(dir, port, opts, sizeof(opts));
	omni_test_fmt(host, sizeof(host), "ssh://root@127.0.0.1:%d", port);
	setenv("DOCKER_HOST", host, 1);
	setenv("OMNI_DOCKER_SSH_OPTS", opts, 1);

	struct omni_backend_options o;
	dk_default_opts(&o);
	dk_dopts.files = NULL;
	struct omni_backend *b = dk_fx_start(0, &o);
	/* The daemon behind ssh is this machine's: the probe sees the data
	 * folder. */
	cr_assert_eq(files_of(b), OMNI__DOCKER_FILES_BIND);
	dk_cmd_is(b, "echo over ssh", "over ssh\n");
	omni_backend_free(b);
	dk_fx.b[0] = NULL;
	dk_dopts.files = "agent";
	b = dk_fx_start(1, &o);
	check_commands(b);
	omni_backend_free(b);
	dk_fx.b[1] = NULL;
}

/* The caller is not root: the new volume must still be the caller's (the
 * workspace/ entry of the archive PUT), with nothing run as root. Over TLS
 * (the local socket is root's), in a child that drops to uid:gid 4321. */
Test(docker_agent, remote_volume_belongs_to_a_non_root_caller)
{
	char run[PATH_MAX];

	dk_remote_env();
	dk_require_docker();
	dk_fx_paths();
	omni_test_fmt(run, sizeof(run), "%s/run4321", dk_fx.tmp);
	cr_assert(mkdir(run, 0700) == 0 && chown(run, 4321, 4321) == 0);
	cr_assert(chmod(dk_fx.tmp, 0755) == 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct omni_backend_options o;
		struct omni_backend *b = NULL;
		struct omni_command_result r = { 0 };
		int bad = 0;
		if (setgroups(0, NULL) < 0 || setgid(4321) < 0 ||
		    setuid(4321) < 0)
			_exit(10);
		setenv("OMNI_RUNTIME_DIR", run, 1);
		dk_default_opts(&o);
		dk_dopts.files = "agent";
		if (omni_docker_backend_new(&b, dk_fx.project, &o, NULL) < 0 ||
		    omni_backend_start(b) < 0) {
			fprintf(stderr, "%s\n", omni_error_last());
			_exit(11);
		}
		if (omni_backend_execute_command(
		        b,
		        "stat -c %u:%g /workspace; id -u; "
		        "echo x > /workspace/f && cat /workspace/f",
		        60, &r) < 0 ||
		    r.exit_code != 0 ||
		    strcmp(r.output, "4321:4321\n4321\nx\n") != 0) {
			fprintf(stderr, "got: %s\n", r.output ? r.output : "");
			bad = 12;
		}
		free(r.output);
		omni_backend_free(b);
		_exit(bad);
	}
	int status = 0;
	cr_assert(waitpid(pid, &status, 0) == pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	          "the child failed with %d", WEXITSTATUS(status));
}

/* --- plain tcp:// ----------------------------------------------------------
 */

static pid_t proxy_pid;

/* The backends go (through the proxy) before the proxy does. */
static void proxy_fini(void)
{
	dk_teardown();
	if (proxy_pid > 0) {
		kill(proxy_pid, SIGTERM);
		waitpid(proxy_pid, NULL, 0);
		proxy_pid = 0;
	}
}

/* The local daemon as a plain tcp:// one (tests/support/delay_proxy.py in
 * front of its socket): requests and the exec stream without TLS. */
Test(docker_agent, plain_tcp_host, .fini = proxy_fini)
{
	char src[PATH_MAX], script[PATH_MAX], pfile[PATH_MAX], host[64];

	dk_require_docker();
	dk_fx_paths();
	omni_test_source_dir(src, sizeof(src));
	omni_test_fmt(script, sizeof(script), "%s/tests/support/delay_proxy.py",
	              src);
	omni_test_fmt(pfile, sizeof(pfile), "%s/port", dk_fx.tmp);
	proxy_pid = fork();
	cr_assert(proxy_pid >= 0);
	if (proxy_pid == 0) {
		execlp("python3", "python3", script, "--target",
		       "unix:/var/run/docker.sock", "--port-file", pfile,
		       (char *)NULL);
		_exit(127);
	}
	FILE *f = NULL;
	int port = 0;
	for (int i = 0; i < 100 && port <= 0; i++) {
		usleep(50 * 1000);
		if ((f = fopen(pfile, "re"))) {
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
		}
	}
	cr_assert(port > 0, "the proxy did not start");
	omni_test_fmt(host, sizeof(host), "tcp://127.0.0.1:%d", port);
	setenv("DOCKER_HOST", host, 1);
	unsetenv("DOCKER_TLS_VERIFY");
	unsetenv("DOCKER_TLS");

	struct omni_backend_options o;
	dk_default_opts(&o);
	dk_dopts.files = NULL;
	struct omni_backend *b = dk_fx_start(0, &o);
	cr_assert_eq(files_of(b), OMNI__DOCKER_FILES_BIND);
	dk_cmd_is(b, "echo plain", "plain\n");
	omni_backend_free(b);
	dk_fx.b[0] = NULL;
	dk_dopts.files = "agent";
	check_commands(dk_fx_start(1, &o));
}
