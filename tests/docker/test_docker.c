/*
 * tests/docker/test_docker.c - the docker backend against the real dockerd.
 *
 * Needs a daemon on /var/run/docker.sock (or DOCKER_HOST) with the test
 * images of scripts/make-test-images.sh (omnifs-test/busybox:latest, and
 * omnifs-test/debian:bookworm for the compiler test), and a static
 * omni-agent beside the test binary (or build/omni-agent). When one is
 * missing a test is skipped with the reason, or fails under CI=true.
 * scripts/run-tests.sh starts dockerd and builds the images.
 *
 * Every test has its own temp directory (data and OMNI_RUNTIME_DIR) and a
 * project id with the test process's pid, so the containers
 * (omniagents-<project>) never collide when Criterion runs tests in
 * parallel; .fini removes whatever a failed test left, by name.
 *
 * Also here, without a daemon: DOCKER_HOST parsing, image names, the pull
 * progress parser, and a fake daemon (tests/http_fake.c) for the version
 * check and for a daemon that is missing.
 *
 * The tests of the suite are in three files: without a daemon and the
 * container's life here, files and the omnifs mount in
 * test_docker_files.c, commands, isolation and limits in
 * test_docker_exec.c (the fixture and helpers in docker_helpers.c).
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

TestSuite(backend_docker, .init = dk_setup, .fini = dk_teardown, .timeout = 90);

/* --- without a daemon ----------------------------------------------------- */

Test(backend_docker, registered_by_name)
{
	struct omni_backend *b = NULL;
	bool found = false;

	for (const char *const *n = omni_backend_names(); *n; n++)
		found |= strcmp(*n, "docker") == 0;
	cr_assert(found);
	omni_assert_ok(omni_backend_new(&b, "docker", "p1", NULL, NULL));
	cr_assert_str_eq(omni_backend_name(b), "docker");
	cr_assert_str_eq(omni_backend_get_working_directory(b), "/workspace");
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_UNINITIALIZED);
	cr_assert(omni_vfs_caps(b) & OMNI_CAP_FILE_FD);
	cr_assert(omni_vfs_caps(b) & OMNI_CAP_TTY);
	omni_backend_free(b);
	omni_assert_err(omni_backend_new(&b, "docker", "bad/id", NULL, NULL),
	                -EINVAL);
}

Test(backend_docker, docker_host_forms)
{
	struct omni__docker_api api;
	char certs[PATH_MAX], f[PATH_MAX];

	unsetenv("DOCKER_TLS_VERIFY");
	unsetenv("DOCKER_TLS");
	unsetenv("DOCKER_API_VERSION");
	unsetenv("DOCKER_HOST");
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.ep.unix_socket, "/var/run/docker.sock");
	cr_assert_str_eq(api.host, "unix:///var/run/docker.sock");
	cr_assert_str_eq(api.version, "1.41");

	setenv("DOCKER_HOST", "unix:///tmp/d.sock", 1);
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.ep.unix_socket, "/tmp/d.sock");
	cr_assert_str_eq(api.ep.base_url, "http://localhost");

	setenv("DOCKER_HOST", "tcp://10.1.2.3", 1);
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.ep.unix_socket, "");
	cr_assert_str_eq(api.ep.base_url, "http://10.1.2.3:2375");

	setenv("DOCKER_HOST", "tcp://dock:1234/base/", 1);
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.ep.base_url, "http://dock:1234/base");
	cr_assert_str_eq(api.host, "tcp://dock:1234/base");

	setenv("DOCKER_HOST", "tcp://[::1]", 1);
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.ep.base_url, "http://[::1]:2375");

	/* TLS with verification: certificates from DOCKER_CERT_PATH, those
	 * present only. */
	omni_test_mkdtemp(certs, sizeof(certs));
	omni_test_fmt(f, sizeof(f), "%s/ca.pem", certs);
	omni_test_write_host(f, "x", 1);
	omni_test_fmt(f, sizeof(f), "%s/cert.pem", certs);
	omni_test_write_host(f, "x", 1);
	setenv("DOCKER_CERT_PATH", certs, 1);
	setenv("DOCKER_TLS_VERIFY", "1", 1);
	setenv("DOCKER_HOST", "tcp://dock:", 1);
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.ep.base_url, "https://dock:2376");
	omni_test_fmt(f, sizeof(f), "%s/ca.pem", certs);
	cr_assert_str_eq(api.ep.ca_file, f);
	omni_test_fmt(f, sizeof(f), "%s/cert.pem", certs);
	cr_assert_str_eq(api.ep.cert_file, f);
	cr_assert_str_eq(api.ep.key_file, "");
	cr_assert(!api.ep.insecure);
	/* DOCKER_TLS without DOCKER_TLS_VERIFY: TLS, not verified. */
	unsetenv("DOCKER_TLS_VERIFY");
	setenv("DOCKER_TLS", "1", 1);
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.ep.base_url, "https://dock:2376");
	cr_assert(api.ep.insecure);
	omni_test_rm_rf(certs);

	setenv("DOCKER_API_VERSION", "1.43", 1);
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.version, "1.43");
	cr_assert(api.version_pinned);
	setenv("DOCKER_API_VERSION", "latest", 1);
	omni_assert_err(omni__docker_api_init(&api), -EINVAL);
	unsetenv("DOCKER_API_VERSION");

	setenv("DOCKER_HOST", "ssh://me@host:2222", 1);
	omni_assert_ok(omni__docker_api_init(&api));
	cr_assert_str_eq(api.host, "ssh://me@host:2222");
	cr_assert(api.ep.dial);
	setenv("DOCKER_HOST", "ssh://-oProxyCommand=x", 1);
	omni_assert_err(omni__docker_api_init(&api), -EINVAL);
	setenv("DOCKER_HOST", "npipe:////./pipe/docker_engine", 1);
	omni_assert_err(omni__docker_api_init(&api), -EINVAL);
	cr_assert(strstr(omni_error_last(), "unix://, tcp:// or ssh://"));
	setenv("DOCKER_HOST", "unix://relative.sock", 1);
	omni_assert_err(omni__docker_api_init(&api), -EINVAL);
	unsetenv("DOCKER_HOST");
}

Test(backend_docker, image_names)
{
	char repo[128], tag[64];

	cr_assert(omni__docker_image_valid("ghcr.io/astral-sh/uv:debian"));
	cr_assert(omni__docker_image_valid("localhost:5000/a/b"));
	cr_assert(omni__docker_image_valid("busybox@sha256:0123abcd"));
	cr_assert(!omni__docker_image_valid(""));
	cr_assert(!omni__docker_image_valid("a b"));
	cr_assert(!omni__docker_image_valid("x?fromImage=y"));
	cr_assert(!omni__docker_image_valid("../../containers/x"));
	cr_assert(!omni__docker_image_valid("-rm"));

	omni_assert_ok(omni__docker_image_split("ghcr.io/astral-sh/uv:debian",
	                                        repo, sizeof(repo), tag,
	                                        sizeof(tag)));
	cr_assert_str_eq(repo, "ghcr.io/astral-sh/uv");
	cr_assert_str_eq(tag, "debian");
	omni_assert_ok(omni__docker_image_split(
	    "localhost:5000/img", repo, sizeof(repo), tag, sizeof(tag)));
	cr_assert_str_eq(repo, "localhost:5000/img");
	cr_assert_str_eq(tag, "latest");
	omni_assert_ok(omni__docker_image_split(
	    "busybox@sha256:0123", repo, sizeof(repo), tag, sizeof(tag)));
	cr_assert_str_eq(repo, "busybox@sha256:0123");
	cr_assert_str_eq(tag, "");
	omni_assert_err(omni__docker_image_split("averyveryverylongname:t",
	                                         repo, 8, tag, sizeof(tag)),
	                -ENAMETOOLONG);
}

Test(backend_docker, pull_progress_is_parsed_across_chunks)
{
	static const char stream[] =
	    "{\"status\":\"Pulling from library/x\",\"id\":\"latest\"}\n"
	    "{\"status\":\"Pulling fs "
	    "layer\",\"progressDetail\":{},\"id\":\"aaa\"}\n"
	    "{\"status\":\"Pulling fs "
	    "layer\",\"progressDetail\":{},\"id\":\"bbb\"}\n"
	    "{\"status\":\"Already "
	    "exists\",\"progressDetail\":{},\"id\":\"ccc\"}\n"
	    "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":100,"
	    "\"total\":1000},\"progress\":\"[>  ]\",\"id\":\"aaa\"}\n"
	    "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":50,"
	    "\"total\":500},\"id\":\"bbb\"}\n"
	    "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":700,"
	    "\"total\":1000},\"id\":\"aaa\"}\n";
	static const char rest[] =
	    "{\"status\":\"Download "
	    "complete\",\"progressDetail\":{},\"id\":\"aaa\"}\n"
	    "{\"status\":\"Extracting\",\"progressDetail\":{\"current\":10,"
	    "\"total\":1000},\"id\":\"aaa\"}\n"
	    "{\"status\":\"Pull "
	    "complete\",\"progressDetail\":{},\"id\":\"aaa\"}\n"
	    "{\"status\":\"Digest: sha256:abc\"}\n"
	    "{\"status\":\"Status: Downloaded newer image for x:latest\"}\n";
	struct omni__docker_pull p = { .image = "x:latest" };
	long long done, total;
	size_t ld, la;

	/* Odd chunk sizes, so lines are split everywhere. */
	for (size_t off = 0; off < sizeof(stream) - 1; off += 7) {
		size_t n =
		    sizeof(stream) - 1 - off < 7 ? sizeof(stream) - 1 - off : 7;
		omni_assert_ok(omni__docker_pull_feed(&p, stream + off, n));
	}
	omni__docker_pull_totals(&p, &done, &total, &ld, &la);
	cr_assert_eq(la, 3);
	cr_assert_eq(ld, 1);
	cr_assert_eq(done, 750);
	cr_assert_eq(total, 1500);
	omni_assert_ok(omni__docker_pull_feed(&p, rest, sizeof(rest) - 1));
	omni__docker_pull_totals(&p, &done, &total, &ld, &la);
	cr_assert_eq(ld, 2);
	cr_assert_eq(done, 1050);
	cr_assert_str_eq(p.status,
	                 "Status: Downloaded newer image for x:latest");

	static const char bad[] =
	    "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":1,"
	    "\"total\":2},\"id\":\"bbb\"}\n"
	    "{\"errorDetail\":{\"message\":\"unauthorized: "
	    "denied\"},\"error\":\"unauthorized: denied\"}\n";
	omni_assert_err(omni__docker_pull_feed(&p, bad, sizeof(bad) - 1), -EIO);
	cr_assert(strstr(omni_error_last(), "cannot pull image x:latest"));
	cr_assert(strstr(omni_error_last(), "unauthorized: denied"));
	omni__docker_pull_finish(&p);
}

Test(backend_docker, missing_daemon_is_a_clear_error)
{
	struct omni_backend_options o;
	char host[PATH_MAX + 16];

	dk_fx_paths();
	dk_default_opts(&o);
	omni_test_fmt(host, sizeof(host), "unix://%s/no-docker.sock",
	              dk_fx.tmp);
	setenv("DOCKER_HOST", host, 1);
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[0], dk_fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(dk_fx.b[0]), -ENOENT);
	cr_assert(strstr(omni_error_last(),
	                 "cannot reach the Docker daemon at unix://"),
	          "%s", omni_error_last());
	cr_assert(strstr(omni_error_last(), "no-docker.sock"));
	cr_assert_neq(omni_backend_get_status(dk_fx.b[0]), OMNI_STATUS_RUNNING);
	unsetenv("DOCKER_HOST");
	dk_fx.name[0] = '\0';
}

Test(backend_docker, old_daemon_is_refused)
{
	static const struct http_fake_route routes[] = {
		{ "GET", "/version", 200,
		  "{\"Version\":\"19.03.15\",\"ApiVersion\":\"1.40\","
		  "\"MinAPIVersion\":\"1.12\"}",
		  NULL, 0, false, 0 },
	};
	struct omni_backend_options o;
	char sock[PATH_MAX], host[PATH_MAX + 16];

	dk_fx_paths();
	omni_test_fmt(sock, sizeof(sock), "%s/fake.sock", dk_fx.tmp);
	http_fake_start(&dk_fake, sock, routes, 1);
	omni_test_fmt(host, sizeof(host), "unix://%s", sock);
	setenv("DOCKER_HOST", host, 1);
	dk_default_opts(&o);
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[0], dk_fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(dk_fx.b[0]), -EPROTONOSUPPORT);
	cr_assert(strstr(omni_error_last(), "1.40") &&
	              strstr(omni_error_last(), "1.41") &&
	              strstr(omni_error_last(), "19.03.15"),
	          "%s", omni_error_last());
	unsetenv("DOCKER_HOST");
	dk_fx.name[0] = '\0';
}

Test(backend_docker, newer_daemon_gets_its_minimum_version)
{
	static const struct http_fake_route routes[] = {
		{ "GET", "/version", 200,
		  "{\"Version\":\"29.0.0\",\"ApiVersion\":\"1.52\","
		  "\"MinAPIVersion\":\"1.44\"}",
		  NULL, 0, false, 0 },
		{ NULL, "/v1.44/", 500,
		  "{\"message\":\"the fake daemon stops here\"}", NULL, 0,
		  false, 0 },
	};
	struct omni_backend_options o;
	char sock[PATH_MAX], host[PATH_MAX + 16], target[256];

	dk_fx_paths();
	omni_test_fmt(sock, sizeof(sock), "%s/fake.sock", dk_fx.tmp);
	http_fake_start(&dk_fake, sock, routes, 2);
	omni_test_fmt(host, sizeof(host), "unix://%s", sock);
	setenv("DOCKER_HOST", host, 1);
	dk_default_opts(&o);
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[0], dk_fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(dk_fx.b[0]), -EIO);
	cr_assert(strstr(omni_error_last(), "the fake daemon stops here"), "%s",
	          omni_error_last());
	http_fake_last_target(&dk_fake, target, sizeof(target));
	cr_assert(strncmp(target, "/v1.44/containers/omniagents-", 29) == 0,
	          "%s", target);
	unsetenv("DOCKER_HOST");
	dk_fx.name[0] = '\0';
}

/* --- the container's life ------------------------------------------------- */

Test(backend_docker, lifecycle_create_reuse_restart_remove)
{
	struct omni_backend *b0 = dk_started();
	char id0[128], id[128], user[64];

	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_RUNNING);
	cJSON *c = dk_inspect(dk_fx.name);
	cr_assert(c);
	cr_assert_str_eq(dk_str(c, "Config", "Image"), BUSYBOX);
	snprintf(user, sizeof(user), "%u:%u", getuid(), getgid());
	cr_assert_str_eq(dk_str(c, "Config", "User"), user);
	cr_assert_str_eq(dk_str(c, "Config", "WorkingDir"), "/workspace");
	const cJSON *labels = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(c, "Config"), "Labels");
	const char *label = dk_str(labels, "org.omnifs.project", NULL);
	cr_assert(label && strcmp(label, dk_fx.project) == 0, "label %s",
	          label ? label : "missing");
	cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(c, "HostConfig"), "Init")));
	cJSON_Delete(c);
	dk_id(dk_fx.name, id0, sizeof(id0));

	/* A second session of the project finds the same container. */
	struct omni_backend *b1 = dk_fx_start(1, NULL);
	dk_id(dk_fx.name, id, sizeof(id));
	cr_assert_str_eq(id, id0);
	dk_cmd_is(b1, "echo reuse", "reuse\n");
	dk_cmd_is(b0, "echo still", "still\n");

	/* Stopped behind our back: noticed, then started again (as after a
	 * daemon restart, which stops every container). */
	omni_test_fmt(id, sizeof(id), "/containers/%s/stop?t=1", dk_fx.name);
	cr_assert_eq(dk("POST", id, NULL, NULL), 204);
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	struct omni_backend *b2 = dk_fx_start(2, NULL);
	dk_id(dk_fx.name, id, sizeof(id));
	cr_assert_str_eq(id, id0, "the stopped container was not reused");
	dk_cmd_is(b2, "echo again", "again\n");
	cr_assert_eq(omni_backend_get_status(b2), OMNI_STATUS_RUNNING);

	/* Shutdown removes the container; the others notice. */
	omni_assert_ok(omni_backend_shutdown(b2));
	cr_assert_eq(omni_backend_get_status(b2), OMNI_STATUS_STOPPED);
	cr_assert(!dk_exists(dk_fx.name), "the container is still there");
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	/* Their container is gone, but the workspace is on the host: the
	 * snapshot is saved from there and they shut down cleanly. */
	omni_assert_ok(omni_backend_shutdown(b1));
	omni_assert_ok(omni_backend_shutdown(b0));
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	/* The workspace stays; the runtime directory goes. */
	struct stat st;
	cr_assert(stat(dk_fx.host, &st) == 0 && S_ISDIR(st.st_mode));
	char rd[PATH_MAX];
	omni_test_fmt(rd, sizeof(rd), "%s/docker-%s", dk_fx.run, dk_fx.project);
	cr_assert(!omni_test_host_exists(rd), "%s is left", rd);
}

Test(backend_docker, foreign_container_of_our_name_is_refused)
{
	char path[256], body[256];
	struct omni_backend_options o;

	dk_require_docker();
	dk_fx_paths();
	omni_test_fmt(path, sizeof(path), "/containers/create?name=%s",
	              dk_fx.name);
	omni_test_fmt(body, sizeof(body),
	              "{\"Image\":\"%s\",\"Cmd\":[\"sleep\",\"60\"]}", BUSYBOX);
	cr_assert_eq(dk("POST", path, body, NULL), 201);
	dk_default_opts(&o);
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[0], dk_fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(dk_fx.b[0]), -EEXIST);
	cr_assert(strstr(omni_error_last(), "not made by omnifs"), "%s",
	          omni_error_last());
	cr_assert(strstr(omni_error_last(), dk_fx.name));
	/* Left alone. */
	cr_assert(dk_exists(dk_fx.name));
}

Test(backend_docker, container_of_another_workspace_is_replaced)
{
	struct omni_backend *b0 = dk_started();
	struct omni_backend_options o;
	char id0[128], id1[128], other[PATH_MAX];

	dk_id(dk_fx.name, id0, sizeof(id0));
	dk_default_opts(&o);
	omni_test_fmt(other, sizeof(other), "%s/other-data", dk_fx.tmp);
	o.data_path = other;
	dk_fx_start(1, &o);
	dk_id(dk_fx.name, id1, sizeof(id1));
	cr_assert_str_neq(id0, id1);
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	dk_cmd_is(dk_fx.b[1], "echo x > here && echo ok", "ok\n");
	omni_test_fmt(other, sizeof(other), "%s/other-data/%s/here", dk_fx.tmp,
	              dk_fx.project);
	cr_assert(omni_test_host_exists(other));
}

Test(backend_docker, missing_image_that_cannot_be_pulled)
{
	struct omni_backend_options o;

	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	dk_dopts.image = "omnifs-test/does-not-exist:1";
	o.progress = true;
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[0], dk_fx.project, &o, NULL));
	long long t0 = omni_test_now_ms();
	int rc = omni_backend_start(dk_fx.b[0]);
	cr_assert(rc < 0, "the start worked");
	cr_assert(strstr(omni_error_last(), "omnifs-test/does-not-exist:1") &&
	              strstr(omni_error_last(), "pull"),
	          "%s", omni_error_last());
	cr_assert(omni_test_now_ms() - t0 < 60000);
	cr_assert(!dk_exists(dk_fx.name));
	char rd[PATH_MAX];
	omni_test_fmt(rd, sizeof(rd), "%s/docker-%s", dk_fx.run, dk_fx.project);
	cr_assert(!omni_test_host_exists(rd), "%s is left", rd);
	cr_assert_neq(omni_backend_get_status(dk_fx.b[0]), OMNI_STATUS_RUNNING);
}

Test(backend_docker, bad_image_name_is_einval)
{
	struct omni_backend_options o;

	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	dk_dopts.image = "bad image?";
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[0], dk_fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(dk_fx.b[0]), -EINVAL);
	cr_assert(!dk_exists(dk_fx.name));
}

struct killer {
	char path[256];
	int delay_ms;
	long status;
};

static void *kill_later(void *arg)
{
	struct killer *k = arg;

	usleep((useconds_t)k->delay_ms * 1000);
	k->status = dk_try("POST", k->path, NULL, NULL);
	return NULL;
}

Test(backend_docker, container_killed_mid_command_fails_fast)
{
	struct omni_backend *b = dk_started();
	struct omni_exec_request req = { .shell = "echo started; sleep 30" };
	struct omni_exec_status st;
	struct out *c = dk_out_new();
	struct killer k = { .delay_ms = 300 };
	pthread_t t;

	omni_test_fmt(k.path, sizeof(k.path), "/containers/%s/kill",
	              dk_fx.name);
	cr_assert(pthread_create(&t, NULL, kill_later, &k) == 0);
	long long t0 = omni_test_now_ms();
	int rc = dk_run_req(b, &req, NULL, 0, c, &st);
	long long took = omni_test_now_ms() - t0;
	pthread_join(t, NULL);
	cr_assert_eq(k.status, 204, "kill: HTTP %ld", k.status);
	cr_assert_eq(rc, -EIO, "rc %d: %s", rc, omni_error_last());
	cr_assert(took < 5000, "exec_wait took %lld ms", took);
	cr_assert(strstr(omni_error_last(), "agent went away") &&
	              strstr(omni_error_last(), "137"),
	          "%s", omni_error_last());
	cr_assert_str_eq(c->o, "started\n");
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_STOPPED);

	/* The next command says why it cannot run. */
	struct omni_command_result r;
	rc = omni_backend_execute_command(b, "true", 5, &r);
	cr_assert(rc < 0);
	cr_assert(strstr(omni_error_last(), dk_fx.name), "%s",
	          omni_error_last());
	free(c);
}

Test(backend_docker, removed_behind_our_back_reads_stopped)
{
	struct omni_backend *b = dk_started();
	struct omni_command_result r;

	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_RUNNING);
	dk_remove(dk_fx.name);
	cr_assert(!dk_exists(dk_fx.name));
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_STOPPED);
	int rc = omni_backend_execute_command(b, "true", 5, &r);
	cr_assert(rc < 0);
	cr_assert(strstr(omni_error_last(), "removed"), "%s",
	          omni_error_last());
	/* Shutting down what is gone works, and the snapshot is still saved
	 * from the host side of the bind mount. */
	omni_assert_ok(omni_backend_shutdown(b));
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_STOPPED);
}

Test(backend_docker, runtime_dir_longer_than_a_socket_path)
{
	char deep[PATH_MAX], sock[PATH_MAX + 16];

	dk_require_docker();
	dk_fx_paths();
	/* sockaddr_un holds 108 bytes: the agent's socket is then reached
	 * through the descriptor of its directory. */
	omni_test_fmt(deep, sizeof(deep),
	              "%s/a-runtime-directory-with-a-rather-long-name-to-make-"
	              "the-socket-path-too-long-for-sockaddr_un",
	              dk_fx.tmp);
	cr_assert(mkdir(deep, 0700) == 0);
	setenv("OMNI_RUNTIME_DIR", deep, 1);
	omni_test_fmt(sock, sizeof(sock), "%s/docker-%s/agent.sock", deep,
	              dk_fx.project);
	cr_assert(strlen(sock) >= 108);
	struct omni_backend *b = dk_fx_start(0, NULL);
	dk_cmd_is(b, "echo far", "far\n");
}

Test(backend_docker, paused_container_reads_stopped_and_is_unpaused)
{
	struct omni_backend *b0 = dk_started();
	char path[256];

	omni_test_fmt(path, sizeof(path), "/containers/%s/pause", dk_fx.name);
	cr_assert_eq(dk("POST", path, NULL, NULL), 204);
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	struct omni_backend *b1 = dk_fx_start(1, NULL);
	dk_cmd_is(b1, "echo awake", "awake\n");
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_RUNNING);
}

Test(backend_docker, dynamic_agent_is_refused)
{
	struct omni_backend_options o;

	dk_require_docker();
	dk_fx_paths();
	setenv("OMNI_AGENT_PATH", "/bin/sh", 1);
	dk_default_opts(&o);
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[0], dk_fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(dk_fx.b[0]), -ENOEXEC);
	cr_assert(strstr(omni_error_last(), "dynamically linked"), "%s",
	          omni_error_last());
	cr_assert(!dk_exists(dk_fx.name));
	setenv("OMNI_AGENT_PATH", "/nonexistent/omni-agent", 1);
	omni_assert_err(omni_backend_start(dk_fx.b[0]), -ENOENT);
	cr_assert(strstr(omni_error_last(), "OMNI_AGENT_PATH"), "%s",
	          omni_error_last());
}

Test(backend_docker, agent_that_exits_at_once_is_reported)
{
	struct omni_backend_options o;
	struct stat st;

	dk_require_docker();
	/* busybox-static (make-test-images.sh installs it) stands in for an
	 * agent that cannot serve: "busybox --listen ..." exits at once. */
	if (stat("/bin/busybox", &st) < 0)
		cr_skip_test("needs /bin/busybox (busybox-static)");
	dk_fx_paths();
	setenv("OMNI_AGENT_PATH", "/bin/busybox", 1);
	dk_default_opts(&o);
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[0], dk_fx.project, &o, NULL));
	long long t0 = omni_test_now_ms();
	int rc = omni_backend_start(dk_fx.b[0]);
	if (rc == -ENOEXEC)
		cr_skip_test("/bin/busybox is not the static build");
	cr_assert_eq(rc, -EIO, "%d: %s", rc, omni_error_last());
	cr_assert(omni_test_now_ms() - t0 < 8000);
	cr_assert(strstr(omni_error_last(), "stopped at once") &&
	              strstr(omni_error_last(), "applet not found"),
	          "%s", omni_error_last());
	cr_assert(!dk_exists(dk_fx.name), "the failed container was left");
}
