/*
 * tests/support/state_helpers.c - test servers, HTTP calls and backend pairings
 * for the state manager suites (see state_helpers.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "e2b_helpers.h"
#include "core/hash.h"
#include "helpers.h"
#include "core/http.h"
#include "mount_helpers.h"
#include "state_helpers.h"

extern char **environ;

/* --- test servers ------------------------------------------------------------
 */

void test_server_start(struct test_server *s, const char *script,
                       const char *const *args)
{
	char src[PATH_MAX], path[PATH_MAX], port_file[PATH_MAX], log[PATH_MAX];
	const char *argv[48] = { "node" };
	int argc = 1;

	memset(s, 0, sizeof(*s));
	omni_test_source_dir(src, sizeof(src));
	omni_test_fmt(path, sizeof(path), "%s/%s", src, script);
	omni_test_mkdtemp(s->dir, sizeof(s->dir));
	omni_test_fmt(port_file, sizeof(port_file), "%s/port", s->dir);
	omni_test_fmt(log, sizeof(log), "%s/server.log", s->dir);
	argv[argc++] = path;
	for (const char *const *a = args; a && *a && argc < 40; a++)
		argv[argc++] = *a;
	argv[argc++] = "--port";
	argv[argc++] = "0";
	argv[argc++] = "--port-file";
	argv[argc++] = port_file;
	argv[argc] = NULL;

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log,
	                                 O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	int rc = posix_spawnp(&s->pid, "node", &fa, NULL, (char *const *)argv,
	                      environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert(rc == 0, "cannot start node %s: %s", script, strerror(rc));
	for (int i = 0; i < 1000; i++) {
		char *text = omni_test_read_host(port_file, NULL);
		if (text) {
			s->port = atoi(text);
			free(text);
			if (s->port > 0) {
				omni_test_fmt(s->url, sizeof(s->url),
				              "http://127.0.0.1:%d", s->port);
				return;
			}
		}
		int st;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			char *out = omni_test_read_host(log, NULL);
			cr_assert_fail("%s exited at start: %s", script,
			               out ? out : "");
		}
		usleep(10000);
	}
	cr_assert_fail("%s did not listen within 10 s", script);
}

void test_server_stop(struct test_server *s)
{
	if (s->pid > 0) {
		int st;
		kill(s->pid, SIGTERM);
		for (int i = 0; i < 300; i++) {
			if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
				s->pid = 0;
				break;
			}
			usleep(10000);
		}
		if (s->pid > 0) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
		}
	}
	s->pid = 0;
	if (s->dir[0])
		omni_test_rm_rf(s->dir);
	s->dir[0] = '\0';
}

char *test_server_log(const struct test_server *s)
{
	char log[PATH_MAX];

	omni_test_fmt(log, sizeof(log), "%s/server.log", s->dir);
	return omni_test_read_host(log, NULL);
}

void test_gcs_upload(const struct test_server *gcs, const char *bucket,
                     const char *name, const void *data, size_t len)
{
	char url[1024], enc[512];

	cr_assert(omni__http_escape(name, enc, sizeof(enc)) == 0);
	omni_test_fmt(url, sizeof(url),
	              "%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s",
	              gcs->url, bucket, enc);
	cr_assert_eq(
	    test_http_data("POST", url, "application/gzip", data, len, NULL),
	    200);
}

long test_http_data(const char *method, const char *url, const char *ctype,
                    const void *data, size_t len, char **body)
{
	struct omni__http_endpoint ep = { .connect_timeout_ms = 5000 };
	struct omni__http_request req = {
		.method = method,
		.path = url,
		.body = data,
		.body_len = len,
		.content_type = ctype,
		.timeout_ms = 30000,
	};
	struct omni__http_response resp;
	int rc = omni__http_request(&ep, &req, &resp);

	cr_assert(rc == 0, "%s %s: %s", method, url, omni_error_last());
	if (body) {
		*body = resp.body ? resp.body : strdup("");
		resp.body = NULL;
	}
	long status = resp.status;
	omni__http_response_finish(&resp);
	return status;
}

long test_http(const char *method, const char *url, const char *json,
               char **body)
{
	return test_http_data(method, url, json ? "application/json" : NULL,
	                      json, json ? strlen(json) : 0, body);
}

/* --- pairings ---------------------------------------------------------------
 */

static const char *local_missing(void)
{
	return NULL;
}

static void local_options(struct omni_backend_options *o)
{
	(void)o;
}

#define DOCKER_IMAGE "omnifs-test/busybox:latest"

static const char *docker_missing(void)
{
	static char why[256];
	char exe[PATH_MAX], agent[PATH_MAX], src[PATH_MAX];

	if (sh_in(NULL, "docker version --format '{{.Server.Version}}' "
	                ">/dev/null 2>&1") != 0)
		return "no Docker daemon answers (scripts/dockerd-start.sh "
		       "starts one)";
	if (sh_in(NULL, "docker image inspect %s >/dev/null 2>&1",
	          DOCKER_IMAGE) != 0)
		return "image " DOCKER_IMAGE " is missing (run "
		       "scripts/make-test-images.sh)";
	/* omni-agent goes into the container; build-asan/ has none of its
	 * own (it is never sanitized), so take build/'s. */
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return "cannot find the test binary";
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	omni_test_fmt(agent, sizeof(agent), "%s/omni-agent", exe);
	if (access(agent, X_OK) != 0) {
		omni_test_source_dir(src, sizeof(src));
		omni_test_fmt(agent, sizeof(agent), "%s/build/omni-agent", src);
		if (access(agent, X_OK) != 0) {
			snprintf(why, sizeof(why),
			         "omni-agent is not built "
			         "(make build/omni-agent)");
			return why;
		}
	}
	setenv("OMNI_AGENT_PATH", agent, 1);
	return NULL;
}

static void docker_options(struct omni_backend_options *o)
{
	static struct omni_docker_options d = OMNI_DOCKER_OPTIONS_INIT;

	d.image = DOCKER_IMAGE;
	d.network = "none";
	o->backend = &d.head;
}

static const char *const docker_mount_args[] = { "--backend", "docker",
	                                         "--image",   DOCKER_IMAGE,
	                                         "--network", "none",
	                                         NULL };
static const char *const local_mount_args[] = { "--backend", "local", NULL };

/* The local E2B server (tests/servers/e2b), started by the first e2b
 * pairing of a test and stopped by state_pairings_finish(). It sets
 * E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL, which omnifs inherits. */
static struct e2b_test_server e2b_server;

static const char *e2b_missing(void)
{
	e2b_test_require(); /* skips, or fails under CI=true */
	if (e2b_server.pid <= 0)
		e2b_test_server_start(&e2b_server, NULL);
	return NULL;
}

static void e2b_options(struct omni_backend_options *o)
{
	(void)o;
}

static const char *const e2b_mount_args[] = { "--backend", "e2b", NULL };

void state_pairings_finish(void)
{
	e2b_test_server_stop(&e2b_server);
}

/* Every backend a state manager is paired with; adding one is a line. */
const struct state_pairing state_pairings[] = {
	{ "local", local_missing, local_options, local_mount_args },
	{ "docker", docker_missing, docker_options, docker_mount_args },
	{ "e2b", e2b_missing, e2b_options, e2b_mount_args },
};
const size_t state_pairing_count =
    sizeof(state_pairings) / sizeof(state_pairings[0]);

struct criterion_test_params state_pairing_params(void)
{
	static struct state_param params[8];
	size_t n = 0;

	for (size_t i = 0; i < state_pairing_count && n < 8; i++)
		snprintf(params[n++].backend, sizeof(params[0].backend), "%s",
		         state_pairings[i].backend);
	return cr_make_param_array(struct state_param, params, n);
}

const struct state_pairing *state_pairing(const char *backend)
{
	for (size_t i = 0; i < state_pairing_count; i++)
		if (strcmp(state_pairings[i].backend, backend) == 0)
			return &state_pairings[i];
	cr_assert_fail("no pairing for backend '%s'", backend);
	return NULL;
}

void state_require(const struct state_pairing *p)
{
	const char *const *names = omni_backend_names();
	bool known = false;

	for (size_t i = 0; names[i]; i++)
		if (strcmp(names[i], p->backend) == 0)
			known = true;
	if (!known)
		state_missing("backend '%s' is not registered in libomni",
		              p->backend);
	const char *why = p->missing();
	if (why)
		state_missing("%s backend: %s", p->backend, why);
}

int state_backend_try(struct omni_backend **out, const struct state_pairing *p,
                      const char *project, const char *data,
                      struct omni_state *st)
{
	struct omni_backend_options o = OMNI_BACKEND_OPTIONS_INIT;

	*out = NULL;
	p->options(&o);
	o.data_path = data;
	omni_assert_ok(omni_backend_new(out, p->backend, project, &o, st));
	return omni_backend_start(*out);
}

struct omni_backend *state_backend_start(const struct state_pairing *p,
                                         const char *project, const char *data,
                                         struct omni_state *st)
{
	struct omni_backend *b;
	int rc = state_backend_try(&b, p, project, data, st);

	cr_assert(rc == 0, "%s backend start: %s", p->backend,
	          omni_error_last());
	return b;
}

/* --- files
 * -------------------------------------------------------------------- */

struct text {
	char *data;
	size_t len, cap;
};

static void text_add(struct text *t, const char *line)
{
	size_t n = strlen(line);

	if (t->len + n + 2 > t->cap) {
		t->cap = (t->len + n + 2) * 2;
		t->data = realloc(t->data, t->cap);
		cr_assert(t->data);
	}
	memcpy(t->data + t->len, line, n);
	t->len += n;
	t->data[t->len++] = '\n';
	t->data[t->len] = '\0';
}

char *state_tree_text(struct omni_backend *b, bool (*skip)(const char *path))
{
	struct omni_dir_list l;
	struct text t = { 0 };

	omni_assert_ok(omni_backend_list_directory(b, "", true, &l));
	for (size_t i = 0; i < l.count; i++) {
		const char *p = l.entries[i].path;
		char line[PATH_MAX + 128], target[PATH_MAX];
		struct stat st;

		if (skip && skip(p))
			continue;
		omni_assert_ok(omni_vfs_stat(b, p, &st));
		if (S_ISDIR(st.st_mode)) {
			snprintf(line, sizeof(line), "d %s", p);
		} else if (S_ISLNK(st.st_mode)) {
			ssize_t n =
			    omni_vfs_readlink(b, p, target, sizeof(target));
			cr_assert(n >= 0 && (size_t)n < sizeof(target));
			target[n] = '\0';
			snprintf(line, sizeof(line), "l %s -> %s", p, target);
		} else {
			char *data, hex[33];
			size_t len;
			unsigned char sum[16];
			struct omni__md5 m;
			omni_assert_ok(
			    omni_backend_read_file(b, p, &data, &len));
			cr_assert(omni__md5_init(&m) == 0);
			omni__md5_update(&m, data, len);
			omni__md5_final(&m, sum);
			omni__hex(sum, 16, hex);
			free(data);
			snprintf(line, sizeof(line), "f %o %s %s",
			         (unsigned)(st.st_mode & 0777), p, hex);
		}
		text_add(&t, line);
	}
	omni_dir_list_finish(&l);
	if (!t.data)
		t.data = strdup("");
	return t.data;
}

void state_random_bytes(void *buf, size_t n, unsigned int seed)
{
	unsigned char *p = buf;
	unsigned long long x = 0x9E3779B97F4A7C15ull ^ seed;

	for (size_t i = 0; i < n; i++) {
		/* xorshift64* */
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (unsigned char)((x * 0x2545F4914F6CDD1Dull) >> 56);
	}
}
