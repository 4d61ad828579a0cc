/*
 * tests/support/e2b_helpers.c - the local E2B server for one test (see
 * e2b_helpers.h). Requests to its test hooks go through libcurl; replies
 * are read with cJSON.
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

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <curl/curl.h>

#include "e2b_helpers.h"
#include "helpers.h"

extern char **environ;

static bool have_node(void)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	if (!path)
		path = "/usr/bin:/bin";
	for (const char *p = path; *p;) {
		const char *colon = strchr(p, ':');
		size_t n = colon ? (size_t)(colon - p) : strlen(p);
		if (n > 0 && n < sizeof(buf) - 8) {
			memcpy(buf, p, n);
			memcpy(buf + n, "/node", 6);
			if (access(buf, X_OK) == 0)
				return true;
		}
		p += n + (colon ? 1 : 0);
	}
	return false;
}

void e2b_test_require(void)
{
	const char *why = NULL;

	if (geteuid() != 0)
		why = "the E2B test server needs root (chroot sandboxes)";
	else if (!have_node())
		why = "the E2B test server needs node";
	else if (access("/dev/fuse", R_OK | W_OK) != 0)
		why = "no /dev/fuse";
	if (!why)
		return;
	const char *ci = getenv("CI");
	if (ci && strcmp(ci, "true") == 0)
		cr_assert_fail("%s (CI=true: not skipping)", why);
	cr_skip_test("%s", why);
}

void e2b_test_server_start(struct e2b_test_server *s, const char *const *extra)
{
	char src[PATH_MAX], script[PATH_MAX], state[PATH_MAX],
	    portfile[PATH_MAX];
	const char *argv[32];
	int argc = 0;

	memset(s, 0, sizeof(*s));
	omni_test_mkdtemp(s->dir, sizeof(s->dir));
	omni_test_source_dir(src, sizeof(src));
	omni_test_fmt(script, sizeof(script), "%s/tests/servers/e2b/server.js",
	              src);
	omni_test_fmt(state, sizeof(state), "%s/state", s->dir);
	omni_test_fmt(portfile, sizeof(portfile), "%s/port", s->dir);
	omni_test_fmt(s->log, sizeof(s->log), "%s/server.log", s->dir);
	argv[argc++] = "node";
	argv[argc++] = script;
	argv[argc++] = "--port";
	argv[argc++] = "0";
	argv[argc++] = "--port-file";
	argv[argc++] = portfile;
	argv[argc++] = "--state-dir";
	argv[argc++] = state;
	for (const char *const *e = extra; e && *e && argc < 30; e++)
		argv[argc++] = *e;
	argv[argc] = NULL;

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, s->log,
	                                 O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	int rc = posix_spawnp(&s->pid, "node", &fa, NULL, (char *const *)argv,
	                      environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert(rc == 0, "cannot start node: %s", strerror(rc));

	for (int i = 0; i < 1500; i++) {
		char *text = omni_test_read_host(portfile, NULL);
		long port = text ? strtol(text, NULL, 10) : 0;
		free(text);
		if (port > 0) {
			s->port = (int)port;
			break;
		}
		int st;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			char *log = omni_test_read_host(s->log, NULL);
			cr_assert_fail("the E2B test server exited: %s",
			               log ? log : "");
		}
		usleep(10000);
	}
	cr_assert(s->port > 0, "the E2B test server did not start in 15 s");
	omni_test_fmt(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
	setenv("E2B_API_KEY", "e2b_0123456789abcdef0123456789abcdef01234567",
	       1);
	setenv("E2B_API_URL", s->url, 1);
	setenv("E2B_SANDBOX_URL", s->url, 1);
	unsetenv("E2B_DEBUG");
	unsetenv("E2B_DOMAIN");
}

void e2b_test_server_stop(struct e2b_test_server *s)
{
	if (s->pid > 0) {
		int st;
		kill(s->pid, SIGTERM);
		for (int i = 0; i < 1500; i++) {
			if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
				s->pid = 0;
				break;
			}
			usleep(10000);
		}
		if (s->pid > 0) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			s->pid = 0;
		}
	}
	if (s->dir[0]) {
		omni_test_rm_rf(s->dir);
		s->dir[0] = '\0';
	}
}

struct body {
	char *data;
	size_t len;
};

static size_t on_body(char *ptr, size_t size, size_t n, void *userdata)
{
	struct body *b = userdata;
	char *p = realloc(b->data, b->len + size * n + 1);

	if (!p)
		return 0;
	memcpy(p + b->len, ptr, size * n);
	b->len += size * n;
	p[b->len] = '\0';
	b->data = p;
	return size * n;
}

char *e2b_test_http(struct e2b_test_server *s, const char *method,
                    const char *path, const char *json, long *status)
{
	char url[512];
	struct body b = { 0 };
	struct curl_slist *h = NULL;
	CURL *c = curl_easy_init();

	cr_assert(c);
	omni_test_fmt(url, sizeof(url), "%s%s", s->url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (json) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
	}
	CURLcode cc = curl_easy_perform(c);
	cr_assert(cc == CURLE_OK, "%s %s: %s", method, url,
	          curl_easy_strerror(cc));
	if (status)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (!b.data)
		b.data = strdup("");
	return b.data;
}

void e2b_test_reset(struct e2b_test_server *s)
{
	free(e2b_test_http(s, "POST", "/_test/reset", "{}", NULL));
}

static cJSON *stats_json(struct e2b_test_server *s)
{
	char *text = e2b_test_http(s, "GET", "/_test/stats", NULL, NULL);
	cJSON *root = cJSON_Parse(text);

	cr_assert(root, "bad stats: %s", text);
	free(text);
	return root;
}

long e2b_test_count(struct e2b_test_server *s, const char *key)
{
	cJSON *root = stats_json(s);
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(root, "requests");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, key);
	long n = cJSON_IsNumber(v) ? (long)v->valuedouble : 0;

	cJSON_Delete(root);
	return n;
}

long e2b_test_total(struct e2b_test_server *s)
{
	cJSON *root = stats_json(s);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "total");
	long n = cJSON_IsNumber(v) ? (long)v->valuedouble : 0;

	cJSON_Delete(root);
	return n;
}

char *e2b_test_counts(struct e2b_test_server *s)
{
	cJSON *root = stats_json(s);
	char *text = cJSON_PrintUnformatted(
	    cJSON_GetObjectItemCaseSensitive(root, "requests"));

	cJSON_Delete(root);
	return text;
}

void e2b_test_delay(struct e2b_test_server *s, int ms)
{
	char body[64];

	snprintf(body, sizeof(body), "{\"ms\":%d}", ms);
	free(e2b_test_http(s, "POST", "/_test/delay", body, NULL));
}

void e2b_test_fault(struct e2b_test_server *s, const char *mode, int status)
{
	char body[128];

	snprintf(body, sizeof(body), "{\"mode\":\"%s\",\"status\":%d}", mode,
	         status ? status : 503);
	free(e2b_test_http(s, "POST", "/_test/fault", body, NULL));
}

char *e2b_test_exec(struct e2b_test_server *s, const char *cmd, int *exit_code)
{
	cJSON *req = cJSON_CreateObject();
	long status = 0;

	cJSON_AddStringToObject(req, "cmd", cmd);
	char *json = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	char *text = e2b_test_http(s, "POST", "/_test/exec", json, &status);
	free(json);
	cr_assert(status == 200, "/_test/exec %s: %ld %s", cmd, status, text);
	cJSON *root = cJSON_Parse(text);
	cr_assert(root, "bad /_test/exec reply: %s", text);
	free(text);
	const cJSON *out = cJSON_GetObjectItemCaseSensitive(root, "stdout");
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(root, "exitCode");
	char *result = strdup(cJSON_IsString(out) ? out->valuestring : "");
	if (exit_code)
		*exit_code = cJSON_IsNumber(code) ? (int)code->valuedouble : -1;
	cJSON_Delete(root);
	return result;
}

int e2b_test_live_sandboxes(struct e2b_test_server *s)
{
	char *text = e2b_test_http(s, "GET", "/_test/sandboxes", NULL, NULL);
	cJSON *root = cJSON_Parse(text);
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "sandboxes");
	int n = cJSON_GetArraySize(list);

	free(text);
	cJSON_Delete(root);
	return n;
}
