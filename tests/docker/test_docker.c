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
#include "helpers.h"
#include "http_fake.h"
#include "mount_helpers.h"
#include "omni/session.h"

#define BUSYBOX "omnifs-test/busybox:latest"
#define DEBIAN  "omnifs-test/debian:bookworm"

struct dfx {
	char tmp[PATH_MAX];
	char data[PATH_MAX];
	char run[PATH_MAX];
	char host[PATH_MAX];
	char project[64];
	char name[128];
	struct omni_backend *b[3];
};

static struct dfx fx;
static struct mount_fx mfx;
static struct http_fake fake;
static char leftovers[4][160];
static int nleftovers;
static char agent_path[PATH_MAX];

/* --- the Engine API, for checking what the backend did -------------------- */

/* A request; returns the HTTP status, or -errno when the daemon could not
 * be reached. *out (may be NULL) gets the parsed reply. No assertion, so
 * .fini may use it. */
static long dk_try(const char *method, const char *path, const char *json,
                   cJSON **out)
{
	struct omni__docker_api api;
	struct omni_http_response resp;
	long st;

	if (out)
		*out = NULL;
	if (omni__docker_api_init(&api) < 0)
		return -EINVAL;
	int rc = omni__docker_request(&api, method, path, json, 30000, &resp);
	if (rc < 0) {
		omni_http_response_finish(&resp);
		return rc;
	}
	st = resp.status;
	if (out && resp.body)
		*out = cJSON_Parse(resp.body);
	omni_http_response_finish(&resp);
	return st;
}

static long dk(const char *method, const char *path, const char *json,
               cJSON **out)
{
	long st = dk_try(method, path, json, out);

	cr_assert(st > 0, "%s %s: %s", method, path, omni_error_last());
	return st;
}

static void dk_remove(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", name);
	dk_try("DELETE", path, NULL, NULL);
}

/* The container's inspect data (cJSON_Delete it), or NULL when there is
 * none. */
static cJSON *dk_inspect(const char *name)
{
	char path[256];
	cJSON *c = NULL;

	omni_test_fmt(path, sizeof(path), "/containers/%s/json", name);
	long st = dk("GET", path, NULL, &c);
	if (st == 404) {
		cJSON_Delete(c);
		return NULL;
	}
	cr_assert_eq(st, 200, "inspect %s: HTTP %ld", name, st);
	return c;
}

static void dk_id(const char *name, char *out, size_t size)
{
	cJSON *c = dk_inspect(name);

	cr_assert(c, "no container %s", name);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "Id");
	cr_assert(cJSON_IsString(id));
	omni_test_fmt(out, size, "%s", id->valuestring);
	cJSON_Delete(c);
}

static bool dk_exists(const char *name)
{
	cJSON *c = dk_inspect(name);

	cJSON_Delete(c);
	return c != NULL;
}

static double dk_num(const cJSON *c, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, a);

	x = cJSON_GetObjectItemCaseSensitive(x, b);
	cr_assert(cJSON_IsNumber(x), "%s.%s is not a number", a, b);
	return x->valuedouble;
}

/* c.a.b (or c.a when b is NULL) as a string, or NULL. */
static const char *dk_str(const cJSON *c, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, a);

	if (b)
		x = cJSON_GetObjectItemCaseSensitive(x, b);
	return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* --- prerequisites and fixtures ------------------------------------------- */

static bool in_ci(void)
{
	const char *ci = getenv("CI");

	return ci && strcmp(ci, "true") == 0;
}

#define missing(...)                                                           \
	do {                                                                   \
		if (in_ci())                                                   \
			cr_assert_fail(__VA_ARGS__);                           \
		cr_skip_test(__VA_ARGS__);                                     \
	} while (0)

static bool image_present(const char *image)
{
	char path[256];

	omni_test_fmt(path, sizeof(path), "/images/%s/json", image);
	return dk_try("GET", path, NULL, NULL) == 200;
}

/* A daemon that answers, the busybox image, and omni-agent. */
static void require_docker(void)
{
	struct omni__docker_api api;
	struct omni_http_request req = { .path = "/_ping", .timeout_ms = 5000 };
	struct omni_http_response resp;
	char exe[PATH_MAX], src[PATH_MAX];

	cr_assert(omni__docker_api_init(&api) == 0, "%s", omni_error_last());
	int rc = omni_http_request(&api.ep, &req, &resp);
	long st = resp.status;
	omni_http_response_finish(&resp);
	if (rc < 0 || st != 200)
		missing("no Docker daemon answers at %s (%s); "
		        "scripts/dockerd-start.sh starts one",
		        api.host, rc < 0 ? omni_error_last() : "bad reply");
	if (!image_present(BUSYBOX))
		missing("image %s is missing; run scripts/make-test-images.sh",
		        BUSYBOX);

	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert(n > 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	omni_test_fmt(agent_path, sizeof(agent_path), "%s/omni-agent", exe);
	if (access(agent_path, X_OK) != 0) {
		/* build-asan/ has no agent of its own: it is never
		 * sanitized, so the one in build/ is the same. */
		omni_test_source_dir(src, sizeof(src));
		omni_test_fmt(agent_path, sizeof(agent_path),
		              "%s/build/omni-agent", src);
		if (access(agent_path, X_OK) != 0)
			missing(
			    "omni-agent is not built (make build/omni-agent)");
		setenv("OMNI_AGENT_PATH", agent_path, 1);
	}
}

/* Paths and names of a fresh fixture (no backend yet). */
static void fx_paths(void)
{
	memset(&fx, 0, sizeof(fx));
	omni_test_mkdtemp(fx.tmp, sizeof(fx.tmp));
	omni_test_fmt(fx.data, sizeof(fx.data), "%s/data", fx.tmp);
	omni_test_fmt(fx.run, sizeof(fx.run), "%s/run", fx.tmp);
	omni_test_project_id(fx.project, sizeof(fx.project), "dk");
	omni_test_fmt(fx.host, sizeof(fx.host), "%s/%s", fx.data, fx.project);
	omni_test_fmt(fx.name, sizeof(fx.name), "omniagents-%s", fx.project);
	cr_assert(mkdir(fx.run, 0700) == 0);
	setenv("OMNI_RUNTIME_DIR", fx.run, 1);
}

/* The docker options default_opts() points at (a test changes them after
 * calling it). */
static struct omni_docker_options dopts;

static void default_opts(struct omni_backend_options *o)
{
	*o = (struct omni_backend_options)OMNI_BACKEND_OPTIONS_INIT;
	o->data_path = fx.data;
	dopts = (struct omni_docker_options)OMNI_DOCKER_OPTIONS_INIT;
	dopts.image = BUSYBOX;
	dopts.network = "none";
	o->backend = &dopts.head;
}

/* Backend slot i on the fixture's project, started. */
static struct omni_backend *fx_start(int i,
                                     const struct omni_backend_options *o)
{
	struct omni_backend_options d;

	if (!o) {
		default_opts(&d);
		o = &d;
	}
	omni_assert_ok(omni_docker_backend_new(&fx.b[i], fx.project, o, NULL));
	omni_assert_ok(omni_backend_start(fx.b[i]));
	return fx.b[i];
}

/* The usual start: daemon check, fixture, one started backend. */
static struct omni_backend *started(void)
{
	require_docker();
	fx_paths();
	return fx_start(0, NULL);
}

static void setup(void)
{
	cr_assert(omni_global_init() == 0);
}

static void teardown(void)
{
	for (int i = 0; i < 3; i++) {
		omni_backend_free(fx.b[i]);
		fx.b[i] = NULL;
	}
	if (fx.name[0])
		dk_remove(fx.name);
	for (int i = 0; i < nleftovers; i++)
		dk_remove(leftovers[i]);
	if (mfx.tmp[0]) {
		char name[160];
		snprintf(name, sizeof(name), "omniagents-%s", mfx.project);
		mount_down(&mfx);
		dk_remove(name);
	}
	http_fake_stop(&fake);
	if (fx.tmp[0])
		omni_test_rm_rf(fx.tmp);
	omni_global_shutdown();
	omni_test_leak_check();
}

TestSuite(backend_docker, .init = setup, .fini = teardown, .timeout = 90);

/* --- running commands ----------------------------------------------------- */

struct out {
	char o[1 << 16], e[1 << 16];
	size_t ol, el;
	/* When stdout first holds trigger: send sig, resize, then input. */
	const char *trigger;
	bool triggered;
	int sig;
	unsigned short rows, cols;
	const char *input;
	struct omni_exec *exec;
};

static int collect(int stream, const void *data, size_t len, void *payload)
{
	struct out *c = payload;
	char *buf = stream == OMNI_EXEC_STDOUT ? c->o : c->e;
	size_t *n = stream == OMNI_EXEC_STDOUT ? &c->ol : &c->el;

	if (*n + len >= sizeof(c->o))
		len = sizeof(c->o) - 1 - *n;
	memcpy(buf + *n, data, len);
	*n += len;
	buf[*n] = '\0';
	if (c->trigger && !c->triggered && strstr(c->o, c->trigger)) {
		c->triggered = true;
		if (c->sig)
			omni_vfs_exec_signal(c->exec, c->sig);
		if (c->rows)
			omni_vfs_exec_resize(c->exec, c->rows, c->cols);
		if (c->input)
			omni_vfs_exec_input(c->exec, c->input,
			                    strlen(c->input));
	}
	return 0;
}

static struct out *out_new(void)
{
	struct out *c = calloc(1, sizeof(*c));

	cr_assert(c);
	return c;
}

/* Start req, feed input (then EOF) when given, pump, free. */
static int run_req(struct omni_backend *b, const struct omni_exec_request *req,
                   const char *input, size_t inlen, struct out *c,
                   struct omni_exec_status *st)
{
	struct omni_exec *e;
	int rc = omni_vfs_exec_start(b, req, &e);

	if (rc < 0)
		return rc;
	c->exec = e;
	if (input) {
		omni_assert_ok(omni_vfs_exec_input(e, input, inlen));
		omni_assert_ok(omni_vfs_exec_input(e, NULL, 0));
	}
	rc = omni_vfs_exec_wait(e, collect, c, st);
	omni_vfs_exec_free(e);
	c->exec = NULL;
	return rc;
}

/* execute_command, asserting that it ran; returns the output (free it). */
static char *cmd(struct omni_backend *b, const char *command, int *code)
{
	struct omni_command_result r;

	omni_assert_ok(omni_backend_execute_command(b, command, 60, &r));
	if (code)
		*code = r.exit_code;
	return r.output;
}

static void cmd_is(struct omni_backend *b, const char *command,
                   const char *want)
{
	int code;
	char *got = cmd(b, command, &code);

	cr_assert_str_eq(got, want, "%s", command);
	cr_assert_eq(code, 0, "%s exited %d", command, code);
	free(got);
}

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

	setenv("DOCKER_HOST", "ssh://me@host", 1);
	omni_assert_err(omni__docker_api_init(&api), -EINVAL);
	cr_assert(strstr(omni_error_last(), "unix:// or tcp://"));
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

	fx_paths();
	default_opts(&o);
	omni_test_fmt(host, sizeof(host), "unix://%s/no-docker.sock", fx.tmp);
	setenv("DOCKER_HOST", host, 1);
	omni_assert_ok(omni_docker_backend_new(&fx.b[0], fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(fx.b[0]), -ENOENT);
	cr_assert(strstr(omni_error_last(),
	                 "cannot reach the Docker daemon at unix://"),
	          "%s", omni_error_last());
	cr_assert(strstr(omni_error_last(), "no-docker.sock"));
	cr_assert_neq(omni_backend_get_status(fx.b[0]), OMNI_STATUS_RUNNING);
	unsetenv("DOCKER_HOST");
	fx.name[0] = '\0';
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

	fx_paths();
	omni_test_fmt(sock, sizeof(sock), "%s/fake.sock", fx.tmp);
	http_fake_start(&fake, sock, routes, 1);
	omni_test_fmt(host, sizeof(host), "unix://%s", sock);
	setenv("DOCKER_HOST", host, 1);
	default_opts(&o);
	omni_assert_ok(omni_docker_backend_new(&fx.b[0], fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(fx.b[0]), -EPROTONOSUPPORT);
	cr_assert(strstr(omni_error_last(), "1.40") &&
	              strstr(omni_error_last(), "1.41") &&
	              strstr(omni_error_last(), "19.03.15"),
	          "%s", omni_error_last());
	unsetenv("DOCKER_HOST");
	fx.name[0] = '\0';
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

	fx_paths();
	omni_test_fmt(sock, sizeof(sock), "%s/fake.sock", fx.tmp);
	http_fake_start(&fake, sock, routes, 2);
	omni_test_fmt(host, sizeof(host), "unix://%s", sock);
	setenv("DOCKER_HOST", host, 1);
	default_opts(&o);
	omni_assert_ok(omni_docker_backend_new(&fx.b[0], fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(fx.b[0]), -EIO);
	cr_assert(strstr(omni_error_last(), "the fake daemon stops here"), "%s",
	          omni_error_last());
	http_fake_last_target(&fake, target, sizeof(target));
	cr_assert(strncmp(target, "/v1.44/containers/omniagents-", 29) == 0,
	          "%s", target);
	unsetenv("DOCKER_HOST");
	fx.name[0] = '\0';
}

/* --- the container's life ------------------------------------------------- */

Test(backend_docker, lifecycle_create_reuse_restart_remove)
{
	struct omni_backend *b0 = started();
	char id0[128], id[128], user[64];

	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_RUNNING);
	cJSON *c = dk_inspect(fx.name);
	cr_assert(c);
	cr_assert_str_eq(dk_str(c, "Config", "Image"), BUSYBOX);
	snprintf(user, sizeof(user), "%u:%u", getuid(), getgid());
	cr_assert_str_eq(dk_str(c, "Config", "User"), user);
	cr_assert_str_eq(dk_str(c, "Config", "WorkingDir"), "/workspace");
	const cJSON *labels = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(c, "Config"), "Labels");
	const char *label = dk_str(labels, "org.omnifs.project", NULL);
	cr_assert(label && strcmp(label, fx.project) == 0, "label %s",
	          label ? label : "missing");
	cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(c, "HostConfig"), "Init")));
	cJSON_Delete(c);
	dk_id(fx.name, id0, sizeof(id0));

	/* A second session of the project finds the same container. */
	struct omni_backend *b1 = fx_start(1, NULL);
	dk_id(fx.name, id, sizeof(id));
	cr_assert_str_eq(id, id0);
	cmd_is(b1, "echo reuse", "reuse\n");
	cmd_is(b0, "echo still", "still\n");

	/* Stopped behind our back: noticed, then started again (as after a
	 * daemon restart, which stops every container). */
	omni_test_fmt(id, sizeof(id), "/containers/%s/stop?t=1", fx.name);
	cr_assert_eq(dk("POST", id, NULL, NULL), 204);
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	struct omni_backend *b2 = fx_start(2, NULL);
	dk_id(fx.name, id, sizeof(id));
	cr_assert_str_eq(id, id0, "the stopped container was not reused");
	cmd_is(b2, "echo again", "again\n");
	cr_assert_eq(omni_backend_get_status(b2), OMNI_STATUS_RUNNING);

	/* Shutdown removes the container; the others notice. */
	omni_assert_ok(omni_backend_shutdown(b2));
	cr_assert_eq(omni_backend_get_status(b2), OMNI_STATUS_STOPPED);
	cr_assert(!dk_exists(fx.name), "the container is still there");
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	/* Their container is gone, but the workspace is on the host: the
	 * snapshot is saved from there and they shut down cleanly. */
	omni_assert_ok(omni_backend_shutdown(b1));
	omni_assert_ok(omni_backend_shutdown(b0));
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	/* The workspace stays; the runtime directory goes. */
	struct stat st;
	cr_assert(stat(fx.host, &st) == 0 && S_ISDIR(st.st_mode));
	char rd[PATH_MAX];
	omni_test_fmt(rd, sizeof(rd), "%s/docker-%s", fx.run, fx.project);
	cr_assert(!omni_test_host_exists(rd), "%s is left", rd);
}

Test(backend_docker, foreign_container_of_our_name_is_refused)
{
	char path[256], body[256];
	struct omni_backend_options o;

	require_docker();
	fx_paths();
	omni_test_fmt(path, sizeof(path), "/containers/create?name=%s",
	              fx.name);
	omni_test_fmt(body, sizeof(body),
	              "{\"Image\":\"%s\",\"Cmd\":[\"sleep\",\"60\"]}", BUSYBOX);
	cr_assert_eq(dk("POST", path, body, NULL), 201);
	default_opts(&o);
	omni_assert_ok(omni_docker_backend_new(&fx.b[0], fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(fx.b[0]), -EEXIST);
	cr_assert(strstr(omni_error_last(), "not made by omnifs"), "%s",
	          omni_error_last());
	cr_assert(strstr(omni_error_last(), fx.name));
	/* Left alone. */
	cr_assert(dk_exists(fx.name));
}

Test(backend_docker, container_of_another_workspace_is_replaced)
{
	struct omni_backend *b0 = started();
	struct omni_backend_options o;
	char id0[128], id1[128], other[PATH_MAX];

	dk_id(fx.name, id0, sizeof(id0));
	default_opts(&o);
	omni_test_fmt(other, sizeof(other), "%s/other-data", fx.tmp);
	o.data_path = other;
	fx_start(1, &o);
	dk_id(fx.name, id1, sizeof(id1));
	cr_assert_str_neq(id0, id1);
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	cmd_is(fx.b[1], "echo x > here && echo ok", "ok\n");
	omni_test_fmt(other, sizeof(other), "%s/other-data/%s/here", fx.tmp,
	              fx.project);
	cr_assert(omni_test_host_exists(other));
}

Test(backend_docker, missing_image_that_cannot_be_pulled)
{
	struct omni_backend_options o;

	require_docker();
	fx_paths();
	default_opts(&o);
	dopts.image = "omnifs-test/does-not-exist:1";
	o.progress = true;
	omni_assert_ok(omni_docker_backend_new(&fx.b[0], fx.project, &o, NULL));
	long long t0 = omni_test_now_ms();
	int rc = omni_backend_start(fx.b[0]);
	cr_assert(rc < 0, "the start worked");
	cr_assert(strstr(omni_error_last(), "omnifs-test/does-not-exist:1") &&
	              strstr(omni_error_last(), "pull"),
	          "%s", omni_error_last());
	cr_assert(omni_test_now_ms() - t0 < 60000);
	cr_assert(!dk_exists(fx.name));
	char rd[PATH_MAX];
	omni_test_fmt(rd, sizeof(rd), "%s/docker-%s", fx.run, fx.project);
	cr_assert(!omni_test_host_exists(rd), "%s is left", rd);
	cr_assert_neq(omni_backend_get_status(fx.b[0]), OMNI_STATUS_RUNNING);
}

Test(backend_docker, bad_image_name_is_einval)
{
	struct omni_backend_options o;

	require_docker();
	fx_paths();
	default_opts(&o);
	dopts.image = "bad image?";
	omni_assert_ok(omni_docker_backend_new(&fx.b[0], fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(fx.b[0]), -EINVAL);
	cr_assert(!dk_exists(fx.name));
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
	struct omni_backend *b = started();
	struct omni_exec_request req = { .shell = "echo started; sleep 30" };
	struct omni_exec_status st;
	struct out *c = out_new();
	struct killer k = { .delay_ms = 300 };
	pthread_t t;

	omni_test_fmt(k.path, sizeof(k.path), "/containers/%s/kill", fx.name);
	cr_assert(pthread_create(&t, NULL, kill_later, &k) == 0);
	long long t0 = omni_test_now_ms();
	int rc = run_req(b, &req, NULL, 0, c, &st);
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
	cr_assert(strstr(omni_error_last(), fx.name), "%s", omni_error_last());
	free(c);
}

Test(backend_docker, removed_behind_our_back_reads_stopped)
{
	struct omni_backend *b = started();
	struct omni_command_result r;

	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_RUNNING);
	dk_remove(fx.name);
	cr_assert(!dk_exists(fx.name));
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

	require_docker();
	fx_paths();
	/* sockaddr_un holds 108 bytes: the agent's socket is then reached
	 * through the descriptor of its directory. */
	omni_test_fmt(deep, sizeof(deep),
	              "%s/a-runtime-directory-with-a-rather-long-name-to-make-"
	              "the-socket-path-too-long-for-sockaddr_un",
	              fx.tmp);
	cr_assert(mkdir(deep, 0700) == 0);
	setenv("OMNI_RUNTIME_DIR", deep, 1);
	omni_test_fmt(sock, sizeof(sock), "%s/docker-%s/agent.sock", deep,
	              fx.project);
	cr_assert(strlen(sock) >= 108);
	struct omni_backend *b = fx_start(0, NULL);
	cmd_is(b, "echo far", "far\n");
}

Test(backend_docker, paused_container_reads_stopped_and_is_unpaused)
{
	struct omni_backend *b0 = started();
	char path[256];

	omni_test_fmt(path, sizeof(path), "/containers/%s/pause", fx.name);
	cr_assert_eq(dk("POST", path, NULL, NULL), 204);
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_STOPPED);
	struct omni_backend *b1 = fx_start(1, NULL);
	cmd_is(b1, "echo awake", "awake\n");
	cr_assert_eq(omni_backend_get_status(b0), OMNI_STATUS_RUNNING);
}

Test(backend_docker, dynamic_agent_is_refused)
{
	struct omni_backend_options o;

	require_docker();
	fx_paths();
	setenv("OMNI_AGENT_PATH", "/bin/sh", 1);
	default_opts(&o);
	omni_assert_ok(omni_docker_backend_new(&fx.b[0], fx.project, &o, NULL));
	omni_assert_err(omni_backend_start(fx.b[0]), -ENOEXEC);
	cr_assert(strstr(omni_error_last(), "dynamically linked"), "%s",
	          omni_error_last());
	cr_assert(!dk_exists(fx.name));
	setenv("OMNI_AGENT_PATH", "/nonexistent/omni-agent", 1);
	omni_assert_err(omni_backend_start(fx.b[0]), -ENOENT);
	cr_assert(strstr(omni_error_last(), "OMNI_AGENT_PATH"), "%s",
	          omni_error_last());
}

Test(backend_docker, agent_that_exits_at_once_is_reported)
{
	struct omni_backend_options o;
	struct stat st;

	require_docker();
	/* busybox-static (make-test-images.sh installs it) stands in for an
	 * agent that cannot serve: "busybox --listen ..." exits at once. */
	if (stat("/bin/busybox", &st) < 0)
		cr_skip_test("needs /bin/busybox (busybox-static)");
	fx_paths();
	setenv("OMNI_AGENT_PATH", "/bin/busybox", 1);
	default_opts(&o);
	omni_assert_ok(omni_docker_backend_new(&fx.b[0], fx.project, &o, NULL));
	long long t0 = omni_test_now_ms();
	int rc = omni_backend_start(fx.b[0]);
	if (rc == -ENOEXEC)
		cr_skip_test("/bin/busybox is not the static build");
	cr_assert_eq(rc, -EIO, "%d: %s", rc, omni_error_last());
	cr_assert(omni_test_now_ms() - t0 < 8000);
	cr_assert(strstr(omni_error_last(), "stopped at once") &&
	              strstr(omni_error_last(), "applet not found"),
	          "%s", omni_error_last());
	cr_assert(!dk_exists(fx.name), "the failed container was left");
}

/* --- files ---------------------------------------------------------------- */

Test(backend_docker, files_cross_the_bind_mount_both_ways)
{
	struct omni_backend *b = started();
	char *data = NULL, p[PATH_MAX];
	size_t len;
	struct stat st;

	omni_assert_ok(omni_backend_write_file(b, "/workspace/notes/a.txt",
	                                       "from host", 9));
	cmd_is(b, "cat notes/a.txt", "from host");
	cmd_is(b,
	       "mkdir -p out && printf 'from container' > out/b.txt && "
	       "ln -s b.txt out/link && echo ok",
	       "ok\n");
	omni_assert_ok(omni_backend_read_file(b, "out/b.txt", &data, &len));
	cr_assert_str_eq(data, "from container");
	free(data);
	cr_assert_eq(omni_backend_file_exists(b, "out/link"),
	             OMNI_FILE_SYMLINK);
	cr_assert_eq(omni_backend_file_exists(b, "out"), OMNI_FILE_DIRECTORY);
	struct omni_dir_list l;
	omni_assert_ok(omni_backend_list_directory(b, "out", false, &l));
	cr_assert_eq(l.count, 2);
	omni_dir_list_finish(&l);
	/* On the host, and owned by the caller. */
	omni_test_fmt(p, sizeof(p), "%s/out/b.txt", fx.host);
	cr_assert(stat(p, &st) == 0);
	cr_assert_eq(st.st_uid, getuid());
	cr_assert_eq(st.st_gid, getgid());
	/* A symlink made in the container cannot lead a file operation out
	 * of the workspace. */
	cmd_is(b, "ln -s /etc escape && echo ok", "ok\n");
	omni_assert_err(omni_backend_read_file(b, "escape/passwd", &data, &len),
	                -EACCES);
	omni_assert_ok(omni_backend_delete_file(b, "notes/a.txt"));
	cmd_is(b, "test -e notes/a.txt || echo gone", "gone\n");
}

Test(backend_docker, files_belong_to_a_non_root_caller)
{
	require_docker();
	fx_paths();
	if (geteuid() != 0) {
		/* Already not root: the ordinary path shows it. */
		struct omni_backend *b = fx_start(0, NULL);
		cmd_is(b, "echo x > mine.txt && echo ok", "ok\n");
		char p[PATH_MAX];
		struct stat st;
		omni_test_fmt(p, sizeof(p), "%s/mine.txt", fx.host);
		cr_assert(stat(p, &st) == 0 && st.st_uid == getuid());
		return;
	}
	const uid_t nobody = 65534;
	struct stat sst;
	struct omni__docker_api api;
	cr_assert(omni__docker_api_init(&api) == 0);
	if (!api.ep.unix_socket[0] || stat(api.ep.unix_socket, &sst) < 0)
		cr_skip_test("the daemon is not on a local Unix socket");
	cr_assert(chown(fx.tmp, nobody, nobody) == 0);
	cr_assert(chown(fx.run, nobody, nobody) == 0);

	int p[2];
	cr_assert(pipe(p) == 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		gid_t groups[1] = { sst.st_gid };
		close(p[0]);
		if (setgroups(1, groups) < 0 ||
		    setresgid(nobody, nobody, nobody) < 0 ||
		    setresuid(nobody, nobody, nobody) < 0) {
			dprintf(p[1], "cannot become uid %u: %s\n", nobody,
			        strerror(errno));
			_exit(20);
		}
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		setenv("OMNI_AGENT_PATH", agent_path, 1);
		struct omni_backend_options o;
		struct omni_backend *b = NULL;
		struct omni_command_result r;
		default_opts(&o);
		if (omni_docker_backend_new(&b, fx.project, &o, NULL) < 0 ||
		    omni_backend_start(b) < 0) {
			dprintf(p[1], "start: %s\n", omni_error_last());
			_exit(21);
		}
		if (omni_backend_execute_command(
		        b, "id -u; id -g; echo x > mine.txt; mkdir sub", 30,
		        &r) < 0) {
			dprintf(p[1], "exec: %s\n", omni_error_last());
			_exit(22);
		}
		dprintf(p[1], "%s", r.output);
		omni_command_result_finish(&r);
		if (omni_backend_shutdown(b) < 0) {
			dprintf(p[1], "shutdown: %s\n", omni_error_last());
			_exit(23);
		}
		omni_backend_free(b);
		_exit(0);
	}
	close(p[1]);
	char buf[4096];
	size_t n = 0;
	ssize_t r;
	while ((r = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(p[0]);
	int status;
	cr_assert(waitpid(pid, &status, 0) == pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	          "the child as uid 65534 failed: %s", buf);
	cr_assert_str_eq(buf, "65534\n65534\n");
	char f[PATH_MAX];
	struct stat st;
	omni_test_fmt(f, sizeof(f), "%s/mine.txt", fx.host);
	cr_assert(stat(f, &st) == 0);
	cr_assert_eq(st.st_uid, nobody);
	cr_assert_eq(st.st_gid, nobody);
	omni_test_fmt(f, sizeof(f), "%s/sub", fx.host);
	cr_assert(stat(f, &st) == 0 && S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_uid, nobody);
	cr_assert(!dk_exists(fx.name));
}

/* --- isolation and limits ------------------------------------------------- */

Test(backend_docker, network_none_leaves_only_loopback)
{
	struct omni_backend *b = started();
	int code;
	char *net = cmd(b, "cat /proc/net/dev", &code);
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
	cJSON *c = dk_inspect(fx.name);
	cr_assert_str_eq(dk_str(c, "HostConfig", "NetworkMode"), "none");
	cJSON_Delete(c);
}

Test(backend_docker, limits_reach_the_container)
{
	struct omni_backend_options o;

	require_docker();
	fx_paths();
	default_opts(&o);
	dopts.memory_bytes = 64LL << 20;
	dopts.pids_limit = 64;
	dopts.cpus = 0.5;
	struct omni_backend *b = fx_start(0, &o);
	cJSON *c = dk_inspect(fx.name);
	cr_assert_eq(dk_num(c, "HostConfig", "Memory"), 64.0 * 1024 * 1024);
	cr_assert_eq(dk_num(c, "HostConfig", "PidsLimit"), 64.0);
	cr_assert_eq(dk_num(c, "HostConfig", "NanoCpus"), 5e8);
	cJSON_Delete(c);
	/* cgroup v2 or v1, as the kernel has it. */
	cmd_is(b,
	       "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
	       "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
	       "67108864\n");
	cmd_is(b,
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

	require_docker();
	fx_paths();
	default_opts(&o);
	omni_assert_ok(omni_docker_backend_new(&b, fx.project, &o, NULL));
	fx.b[0] = b;
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
	cr_assert(!dk_exists(fx.name));
}

Test(backend_docker, exit_codes_and_timeouts)
{
	struct omni_backend *b = started();
	struct omni_command_result r;
	int code;
	char *o;

	o = cmd(b, "exit 3", &code);
	cr_assert_eq(code, 3);
	free(o);
	o = cmd(b, "kill -9 $$", &code);
	cr_assert_eq(code, 137);
	free(o);
	o = cmd(b, "echo $HOME; pwd; id -u", &code);
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
	struct out *c = out_new();
	omni_assert_ok(run_req(b, &req, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 127);
	cr_assert(strstr(c->e, "no-such-program-here"), "%s", c->e);
	/* Present but not executable: 126. */
	omni_assert_ok(omni_backend_write_file(b, "script.sh", "echo hi\n", 8));
	const char *argv2[] = { "./script.sh", NULL };
	struct omni_exec_request req2 = { .argv = argv2 };
	memset(c, 0, sizeof(*c));
	omni_assert_ok(run_req(b, &req2, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 126);
	free(c);
}

Test(backend_docker, stdout_and_stderr_stay_apart)
{
	struct omni_backend *b = started();
	struct omni_exec_request req = {
		.shell = "echo out1; echo err1 >&2; echo out2; echo err2 >&2"
	};
	struct omni_exec_status st;
	struct out *c = out_new();

	omni_assert_ok(run_req(b, &req, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 0);
	cr_assert_str_eq(c->o, "out1\nout2\n");
	cr_assert_str_eq(c->e, "err1\nerr2\n");
	free(c);
}

Test(backend_docker, stdin_reaches_the_command)
{
	struct omni_backend *b = started();
	struct omni_exec_request req = { .shell = "cat; echo done",
		                         .want_stdin = true };
	struct omni_exec_status st;
	struct out *c = out_new();

	omni_assert_ok(run_req(b, &req, "line1\nline2\n", 12, c, &st));
	cr_assert_eq(st.exit_code, 0);
	cr_assert_str_eq(c->o, "line1\nline2\ndone\n");

	/* More than a pipe and a socket buffer hold. */
	size_t big = 3 << 20;
	char *data = malloc(big);
	cr_assert(data);
	memset(data, 'x', big);
	struct omni_exec_request wc = { .shell = "wc -c", .want_stdin = true };
	memset(c, 0, sizeof(*c));
	omni_assert_ok(run_req(b, &wc, data, big, c, &st));
	cr_assert_eq(strtol(c->o, NULL, 10), (long)big, "%s", c->o);
	free(data);
	free(c);
}

Test(backend_docker, signal_reaches_the_whole_group)
{
	struct omni_backend *b = started();
	struct omni_exec_request req = {
		.shell = "trap 'echo main-TERM' TERM\n"
		         "( trap 'echo sub-TERM; exit 5' TERM; echo ready; "
		         "while :; do sleep 0.05; done ) &\n"
		         "wait $!\n"
		         "wait $!\n"
		         "echo end $?\n",
	};
	struct omni_exec_status st;
	struct out *c = out_new();

	c->trigger = "ready";
	c->sig = SIGTERM;
	long long t0 = omni_test_now_ms();
	omni_assert_ok(run_req(b, &req, NULL, 0, c, &st));
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
	omni_assert_ok(run_req(b, &kreq, NULL, 0, c, &st));
	cr_assert_eq(st.exit_code, 130);
	cr_assert_eq(st.signal, SIGINT);
	free(c);
}

Test(backend_docker, tty_commands_have_a_terminal)
{
	struct omni_backend *b = started();
	struct omni_exec_request req = {
		.shell = "tty; stty size", .tty = true, .rows = 30, .cols = 100
	};
	struct omni_exec_status st;
	struct out *c = out_new();

	omni_assert_ok(run_req(b, &req, NULL, 0, c, &st));
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
	omni_assert_ok(run_req(b, &rreq, NULL, 0, c, &st));
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
	struct omni_backend *b = started();
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

	require_docker();
	fx_paths();
	default_opts(&o);
	o.env = env;
	struct omni_backend *b = fx_start(0, &o);
	omni_assert_ok(omni_backend_create_directory(b, "src/deep", true));

	const char *argv[] = { "pwd", NULL };
	struct omni_exec_request req = { .argv = argv, .cwd = "src/deep" };
	struct omni_exec_status st;
	struct out *c = out_new();
	omni_assert_ok(run_req(b, &req, NULL, 0, c, &st));
	cr_assert_str_eq(c->o, "/workspace/src/deep\n");

	const char *renv[] = { "BAR=request", NULL };
	struct omni_exec_request ereq = { .shell = "echo $FOO $BAR $HOME",
		                          .env = renv };
	memset(c, 0, sizeof(*c));
	omni_assert_ok(run_req(b, &ereq, NULL, 0, c, &st));
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

	require_docker();
	if (!image_present(DEBIAN))
		missing("image %s is missing; run scripts/make-test-images.sh",
		        DEBIAN);
	fx_paths();
	default_opts(&o);
	dopts.image = DEBIAN;
	struct omni_backend *b = fx_start(0, &o);
	omni_assert_ok(omni_backend_write_file(
	    b, "hello.c",
	    "#include <stdio.h>\nint main(void){puts(\"compiled\");return "
	    "0;}\n",
	    62));
	int code;
	char *out = cmd(b,
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
	omni_test_fmt(p, sizeof(p), "%s/hello", fx.host);
	cr_assert(stat(p, &st) == 0 && (st.st_mode & S_IXUSR));
	cr_assert_eq(st.st_uid, getuid());
}

/* --- the whole thing: omnifs mounted on a container ----------------------- */

Test(backend_docker, fuse_mount_and_omni_exec)
{
	const char *extra[] = { "--backend", "docker", "--image", BUSYBOX,
		                "--network", "none",   NULL };
	char name[160], f[PATH_MAX], want[32];
	int status;

	require_docker();
	mount_up(&mfx, extra);
	omni_test_fmt(name, sizeof(name), "omniagents-%s", mfx.project);
	cr_assert(dk_exists(name));

	char *out =
	    sh_out(&status, mfx.mnt, "omni-exec -c 'echo hi > f; id -u'");
	snprintf(want, sizeof(want), "%u\n", getuid());
	cr_assert_eq(status, 0);
	cr_assert_str_eq(out, want);
	free(out);
	omni_test_fmt(f, sizeof(f), "%s/f", mfx.mnt);
	char *got = omni_test_read_host(f, NULL);
	cr_assert(got);
	cr_assert_str_eq(got, "hi\n");
	free(got);

	/* The reverse, and a subdirectory as the working directory. */
	cr_assert_eq(sh_in(mfx.mnt, "mkdir -p sub && echo from-mount > sub/g"),
	             0);
	omni_test_fmt(f, sizeof(f), "%s/sub", mfx.mnt);
	out = sh_out(&status, f, "omni-exec -c 'pwd; cat g'");
	cr_assert_eq(status, 0);
	cr_assert_str_eq(out, "/workspace/sub\nfrom-mount\n");
	free(out);
	cr_assert_eq(sh_in(mfx.mnt, "omni-exec -c 'exit 7'"), 7);

	mount_down(&mfx);
	cr_assert(!dk_exists(name), "the container outlived the mount");
}
