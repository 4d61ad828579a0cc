/*
 * tests/docker/docker_helpers.c - the fixture and helpers of the
 * backend_docker suite, shared by its files (see docker_helpers.h): the
 * Engine API for checking what the backend did, the prerequisites, the
 * fixture, and running commands.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "docker/docker.h"
#include "docker_helpers.h"
#include "helpers.h"
#include "http_fake.h"
#include "mount_helpers.h"
#include "omni/session.h"

struct dfx dk_fx;
struct mount_fx dk_mfx;
struct http_fake dk_fake;
static char leftovers[4][160];
static int nleftovers;
char dk_agent_path[PATH_MAX];

/* --- the Engine API, for checking what the backend did -------------------- */

/* A request; returns the HTTP status, or -errno when the daemon could not
 * be reached. *out (may be NULL) gets the parsed reply. No assertion, so
 * .fini may use it. */
long dk_try(const char *method, const char *path, const char *json, cJSON **out)
{
	struct omni__docker_api api;
	struct omni__http_response resp;
	long st;

	if (out)
		*out = NULL;
	if (omni__docker_api_init(&api) < 0)
		return -EINVAL;
	int rc = omni__docker_request(&api, method, path, json, 30000, &resp);
	if (rc < 0) {
		omni__http_response_finish(&resp);
		return rc;
	}
	st = resp.status;
	if (out && resp.body)
		*out = cJSON_Parse(resp.body);
	omni__http_response_finish(&resp);
	return st;
}

long dk(const char *method, const char *path, const char *json, cJSON **out)
{
	long st = dk_try(method, path, json, out);

	cr_assert(st > 0, "%s %s: %s", method, path, omni_error_last());
	return st;
}

void dk_remove(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", name);
	dk_try("DELETE", path, NULL, NULL);
}

/* The container's inspect data (cJSON_Delete it), or NULL when there is
 * none. */
cJSON *dk_inspect(const char *name)
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

void dk_id(const char *name, char *out, size_t size)
{
	cJSON *c = dk_inspect(name);

	cr_assert(c, "no container %s", name);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "Id");
	cr_assert(cJSON_IsString(id));
	omni_test_fmt(out, size, "%s", id->valuestring);
	cJSON_Delete(c);
}

bool dk_exists(const char *name)
{
	cJSON *c = dk_inspect(name);

	cJSON_Delete(c);
	return c != NULL;
}

double dk_num(const cJSON *c, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, a);

	x = cJSON_GetObjectItemCaseSensitive(x, b);
	cr_assert(cJSON_IsNumber(x), "%s.%s is not a number", a, b);
	return x->valuedouble;
}

/* c.a.b (or c.a when b is NULL) as a string, or NULL. */
const char *dk_str(const cJSON *c, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, a);

	if (b)
		x = cJSON_GetObjectItemCaseSensitive(x, b);
	return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* --- prerequisites and fixtures ------------------------------------------- */

bool dk_in_ci(void)
{
	const char *ci = getenv("CI");

	return ci && strcmp(ci, "true") == 0;
}

bool dk_image_present(const char *image)
{
	char path[256];

	omni_test_fmt(path, sizeof(path), "/images/%s/json", image);
	return dk_try("GET", path, NULL, NULL) == 200;
}

/* A daemon that answers, the busybox image, and omni-agent. */
void dk_require_docker(void)
{
	struct omni__docker_api api;
	struct omni__http_request req = { .path = "/_ping",
		                          .timeout_ms = 5000 };
	struct omni__http_response resp;
	char exe[PATH_MAX], src[PATH_MAX];

	cr_assert(omni__docker_api_init(&api) == 0, "%s", omni_error_last());
	int rc = omni__http_request(&api.ep, &req, &resp);
	long st = resp.status;
	omni__http_response_finish(&resp);
	if (rc < 0 || st != 200)
		missing("no Docker daemon answers at %s (%s); "
		        "scripts/dockerd-start.sh starts one",
		        api.host, rc < 0 ? omni_error_last() : "bad reply");
	if (!dk_image_present(BUSYBOX))
		missing("image %s is missing; run scripts/make-test-images.sh",
		        BUSYBOX);

	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	cr_assert(n > 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	omni_test_fmt(dk_agent_path, sizeof(dk_agent_path), "%s/omni-agent",
	              exe);
	if (access(dk_agent_path, X_OK) != 0) {
		/* build-asan/ has no agent of its own: it is never
		 * sanitized, so the one in build/ is the same. */
		omni_test_source_dir(src, sizeof(src));
		omni_test_fmt(dk_agent_path, sizeof(dk_agent_path),
		              "%s/build/omni-agent", src);
		if (access(dk_agent_path, X_OK) != 0)
			missing(
			    "omni-agent is not built (make build/omni-agent)");
		setenv("OMNI_AGENT_PATH", dk_agent_path, 1);
	}
}

/* Point this test process at the second daemon of
 * scripts/dockerd-remote-start.sh (its env file: DOCKER_HOST,
 * DOCKER_TLS_VERIFY, DOCKER_CERT_PATH). */
void dk_remote_env(void)
{
	const char *file = getenv("OMNI_TEST_REMOTE_DOCKER_ENV");
	char line[PATH_MAX + 64];

	if (!file || !*file)
		file = "/var/lib/omnifs-dockerd-remote/env";
	FILE *f = fopen(file, "re");
	if (!f)
		missing("no second Docker daemon (%s is missing; "
		        "scripts/dockerd-remote-start.sh starts one)",
		        file);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		char *eq = strchr(line, '=');
		if (eq) {
			*eq = '\0';
			setenv(line, eq + 1, 1);
		}
	}
	fclose(f);
	if (dk_try("GET", "/version", NULL, NULL) != 200)
		missing("the second Docker daemon at %s does not answer",
		        getenv("DOCKER_HOST"));
}

/* Paths and names of a fresh fixture (no backend yet). */
void dk_fx_paths(void)
{
	memset(&dk_fx, 0, sizeof(dk_fx));
	omni_test_mkdtemp(dk_fx.tmp, sizeof(dk_fx.tmp));
	omni_test_fmt(dk_fx.data, sizeof(dk_fx.data), "%s/data", dk_fx.tmp);
	omni_test_fmt(dk_fx.run, sizeof(dk_fx.run), "%s/run", dk_fx.tmp);
	omni_test_project_id(dk_fx.project, sizeof(dk_fx.project), "dk");
	omni_test_fmt(dk_fx.host, sizeof(dk_fx.host), "%s/%s", dk_fx.data,
	              dk_fx.project);
	omni_test_fmt(dk_fx.name, sizeof(dk_fx.name), "omniagents-%s",
	              dk_fx.project);
	cr_assert(mkdir(dk_fx.run, 0700) == 0);
	setenv("OMNI_RUNTIME_DIR", dk_fx.run, 1);
}

struct omni_docker_options dk_dopts;

void dk_default_opts(struct omni_backend_options *o)
{
	*o = (struct omni_backend_options)OMNI_BACKEND_OPTIONS_INIT;
	o->data_path = dk_fx.data;
	dk_dopts = (struct omni_docker_options)OMNI_DOCKER_OPTIONS_INIT;
	dk_dopts.image = BUSYBOX;
	dk_dopts.network = "none";
	/* The probe (auto) has tests of its own. */
	dk_dopts.files = "bind";
	o->backend = &dk_dopts.head;
}

/* Backend slot i on the fixture's project, started. */
struct omni_backend *dk_fx_start(int i, const struct omni_backend_options *o)
{
	struct omni_backend_options d;

	if (!o) {
		dk_default_opts(&d);
		o = &d;
	}
	omni_assert_ok(
	    omni_docker_backend_new(&dk_fx.b[i], dk_fx.project, o, NULL));
	omni_assert_ok(omni_backend_start(dk_fx.b[i]));
	return dk_fx.b[i];
}

/* The usual start: daemon check, fixture, one started backend. */
struct omni_backend *dk_started(void)
{
	dk_require_docker();
	dk_fx_paths();
	return dk_fx_start(0, NULL);
}

void dk_setup(void)
{
	cr_assert(omni_global_init() == 0);
}

void dk_teardown(void)
{
	for (int i = 0; i < 3; i++) {
		omni_backend_free(dk_fx.b[i]);
		dk_fx.b[i] = NULL;
	}
	if (dk_fx.name[0]) {
		char vol[256];
		dk_remove(dk_fx.name);
		/* Agent mode's workspace volume, when a test left one. */
		snprintf(vol, sizeof(vol), "/volumes/%s", dk_fx.name);
		dk_try("DELETE", vol, NULL, NULL);
	}
	if (dk_fx.name2[0])
		dk_remove(dk_fx.name2);
	for (int i = 0; i < nleftovers; i++)
		dk_remove(leftovers[i]);
	if (dk_mfx.tmp[0]) {
		char name[160];
		snprintf(name, sizeof(name), "omniagents-%s", dk_mfx.project);
		mount_down(&dk_mfx);
		dk_remove(name);
	}
	http_fake_stop(&dk_fake);
	if (dk_fx.tmp[0])
		omni_test_rm_rf(dk_fx.tmp);
	omni_global_shutdown();
	omni_test_leak_check();
}

/* --- running commands ----------------------------------------------------- */

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

struct out *dk_out_new(void)
{
	struct out *c = calloc(1, sizeof(*c));

	cr_assert(c);
	return c;
}

/* Start req, feed input (then EOF) when given, pump, free. */
int dk_run_req(struct omni_backend *b, const struct omni_exec_request *req,
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
char *dk_cmd(struct omni_backend *b, const char *command, int *code)
{
	struct omni_command_result r;

	omni_assert_ok(omni_backend_execute_command(b, command, 60, &r));
	if (code)
		*code = r.exit_code;
	return r.output;
}

void dk_cmd_is(struct omni_backend *b, const char *command, const char *want)
{
	int code;
	char *got = dk_cmd(b, command, &code);

	cr_assert_str_eq(got, want, "%s", command);
	cr_assert_eq(code, 0, "%s exited %d", command, code);
	free(got);
}
