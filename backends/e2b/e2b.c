/*
 * backends/e2b/e2b.c - the e2b backend: the workspace is /tmp/workspace in an
 *E2B cloud sandbox, reached through the E2B control plane and the sandbox's
 * daemon, envd (protocols/e2b.md).
 *
 * USAGE
 *	E2B_API_KEY=e2b_... omnifs --backend e2b [--template NAME] MNT
 *	struct omni_e2b_options e = OMNI_E2B_OPTIONS_INIT;
 *	e.template_name = "base"; e.timeout_s = 3600; e.request_timeout_s = 10;
 *	opts.backend = &e.head;
 *	omni_e2b_backend_new(&b, "myproject", &opts, NULL);
 *
 *	Environment, read when the backend is made, as the official SDKs do:
 *	E2B_API_KEY      the key (required unless E2B_DEBUG; never logged,
 *	                 never on a command line)
 *	E2B_DOMAIN       default e2b.app
 *	E2B_API_URL      default https://api.<domain>
 *	                 (http://localhost:3000 in debug mode)
 *	E2B_SANDBOX_URL  envd's base URL, used as given (tests point it at
 *	                 the local server)
 *	E2B_DEBUG=true   no control plane: envd at localhost:49983 (or
 *	                 E2B_SANDBOX_URL), sandbox id "debug_sandbox_id"
 *	OMNI_E2B_REQUEST_TIMEOUT  seconds a request may take when the
 *	                 request_timeout_s option is 0 (default 10);
 *	                 connecting has half of it, at most 5 s
 *	Options: template_name (default "base"), timeout_s (the sandbox's
 *	lifetime, default 3600) and request_timeout_s of struct
 *	omni_e2b_options; opts.env (the sandbox's envVars).
 *
 * Life of a session. start creates a sandbox (POST /sandboxes with
 * templateID, timeout, metadata {"project_id"}, envVars and secure:true,
 * as the SDK up to 2.50 does; the reply gives the sandbox id, envd's
 * access token and domain), makes /tmp/workspace, and starts a thread
 * that refreshes the sandbox's timeout (POST /sandboxes/{id}/timeout)
 * every third of it while the session runs. shutdown stops the threads
 * and kills the sandbox (DELETE /sandboxes/{id}; 404 means it is gone
 * already). A bad key (401) gives -EACCES, an unknown template (404)
 * -ENOENT, quota or rate limits (429) -EAGAIN, an unreachable API the
 * transport's errno, each with the server's message.
 *
 * The envd URL is E2B_SANDBOX_URL when set; otherwise
 * https://sandbox.<domain> for E2B's own domains (routed by the
 * E2b-Sandbox-Id header), else https://49983-<id>.<domain>.
 *
 * What each operation sends, and the ones done with commands or refused,
 * are in e2b_files.c and e2b_process.c; how requests are bounded and how
 * failures become errnos, in e2b_http.c. Every request is counted by
 * method; omni_vfs_stats() prints the counts.
 *
 * Locking: the keep-alive thread's state is under ka_lock; everything
 * set by start is read-only until shutdown, which runs with nothing else
 * in flight.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "e2b/e2b.h"
#include "core/http.h"
#include "base/error.h"
#include "omni/error.h"
#include "omni/log.h"
#include "core/registry.h"

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v && *v ? v : fallback;
}

static bool env_true(const char *name)
{
	const char *v = getenv(name);

	return v && strcasecmp(v, "true") == 0;
}

/* Drop a trailing '/' so paths can be appended. */
static void trim_slash(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && s[n - 1] == '/')
		s[--n] = '\0';
}

/* --- control plane -------------------------------------------------------- */

/* A control-plane reply that is not a success, as the SDK explains it. */
static int api_error(struct e2b_backend *eb, const struct e2b_http_resp *resp,
                     const char *what)
{
	char text[512];
	int err;

	omni__http_error_text(resp->body, resp->len, text, sizeof(text));
	switch (resp->status) {
	case 401:
	case 403:
		return omni_error_set(-EACCES,
		                      "e2b: %s: the E2B API refused the key in "
		                      "E2B_API_KEY (HTTP %ld): %s",
		                      what, resp->status, text);
	case 429:
		return omni_error_set(-EAGAIN,
		                      "e2b: %s: sandbox quota or rate limit "
		                      "reached (HTTP 429): %s",
		                      what, text);
	case 404:
		if (strcmp(what, "create") == 0)
			return omni_error_set(-ENOENT,
			                      "e2b: create: unknown template "
			                      "'%s' (HTTP 404): %s",
			                      eb->template_id, text);
		break;
	default:
		break;
	}
	err = omni__http_status_to_errno(resp->status);
	return omni_error_set(err ? err : -EPROTO, "e2b: %s: HTTP %ld: %s",
	                      what, resp->status,
	                      text[0] ? text : "no message");
}

static int api_call(struct e2b_backend *eb, enum e2b_method m,
                    const char *method, const char *path, const cJSON *body,
                    long timeout_ms, struct e2b_http_resp *resp)
{
	char *json = body ? cJSON_PrintUnformatted(body) : NULL;
	int rc;

	if (body && !json)
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	struct e2b_http_req req = {
		.m = m,
		.method = method,
		.api = true,
		.path = path,
		.content_type = body ? "application/json" : NULL,
		.body = json,
		.body_len = json ? strlen(json) : 0,
		.in_fd = -1,
		.out_fd = -1,
		.timeout_ms = timeout_ms,
	};
	rc = omni__e2b_http(eb, &req, resp);
	free(json);
	if (rc < 0) {
		return omni_error_set(rc, "%s (is E2B_API_URL right?)",
		                      omni_error_last());
	}
	return 0;
}

static bool own_domain(const char *d)
{
	static const char *const shared[] = { "e2b.app", "e2b.dev", "e2b.pro",
		                              "e2b-staging.dev" };

	for (size_t i = 0; i < sizeof(shared) / sizeof(*shared); i++)
		if (strcmp(d, shared[i]) == 0)
			return true;
	return false;
}

static int set_envd_url(struct e2b_backend *eb, const char *domain)
{
	int n;

	if (eb->sandbox_url[0])
		n = snprintf(eb->envd_url, sizeof(eb->envd_url), "%s",
		             eb->sandbox_url);
	else if (eb->debug)
		n = snprintf(eb->envd_url, sizeof(eb->envd_url),
		             "http://localhost:%d", E2B_ENVD_PORT);
	else if (own_domain(domain))
		n = snprintf(eb->envd_url, sizeof(eb->envd_url),
		             "https://sandbox.%s", domain);
	else
		n = snprintf(eb->envd_url, sizeof(eb->envd_url),
		             "https://%d-%s.%s", E2B_ENVD_PORT, eb->sandbox_id,
		             domain);
	if (n < 0 || (size_t)n >= sizeof(eb->envd_url))
		return omni_error_set(-ENAMETOOLONG, "e2b: envd URL too long");
	trim_slash(eb->envd_url);
	return 0;
}

static int create_sandbox(struct e2b_backend *eb)
{
	struct omni_backend *b = &eb->base;
	struct e2b_http_resp resp;
	cJSON *body = cJSON_CreateObject();
	cJSON *meta = cJSON_AddObjectToObject(body, "metadata");
	cJSON *envs = cJSON_AddObjectToObject(body, "envVars");
	bool ok =
	    meta && envs &&
	    cJSON_AddStringToObject(body, "templateID", eb->template_id) &&
	    cJSON_AddNumberToObject(body, "timeout", eb->timeout_s) &&
	    cJSON_AddBoolToObject(body, "secure", 1) &&
	    cJSON_AddBoolToObject(body, "allow_internet_access", 1) &&
	    cJSON_AddStringToObject(meta, "project_id", b->project_id);
	int rc;

	ok = ok && omni__e2b_env_to_json(envs, b->opts.env);
	if (!ok) {
		cJSON_Delete(body);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	/* Creating a sandbox may take a while on the real service. */
	rc = api_call(eb, E2B_M_CREATE, "POST", "/sandboxes", body, 60000,
	              &resp);
	cJSON_Delete(body);
	if (rc < 0)
		return rc;
	if (resp.status != 200 && resp.status != 201) {
		rc = api_error(eb, &resp, "create");
		omni__e2b_resp_finish(&resp);
		return rc;
	}
	cJSON *root =
	    cJSON_ParseWithLength(resp.body ? resp.body : "", resp.len);
	omni__e2b_resp_finish(&resp);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "sandboxID");
	const cJSON *tok =
	    cJSON_GetObjectItemCaseSensitive(root, "envdAccessToken");
	const cJSON *dom = cJSON_GetObjectItemCaseSensitive(root, "domain");
	const cJSON *ver =
	    cJSON_GetObjectItemCaseSensitive(root, "envdVersion");
	if (!cJSON_IsString(id) || !id->valuestring[0] ||
	    strlen(id->valuestring) >= sizeof(eb->sandbox_id) ||
	    strspn(id->valuestring, "abcdefghijklmnopqrstuvwxyz0123456789_") !=
	        strlen(id->valuestring)) {
		cJSON_Delete(root);
		return omni_error_set(-EPROTO,
		                      "e2b: create: the reply has no valid "
		                      "sandboxID");
	}
	snprintf(eb->sandbox_id, sizeof(eb->sandbox_id), "%s", id->valuestring);
	if (cJSON_IsString(tok))
		snprintf(eb->access_token, sizeof(eb->access_token), "%s",
		         tok->valuestring);
	if (cJSON_IsString(ver))
		snprintf(eb->envd_version, sizeof(eb->envd_version), "%s",
		         ver->valuestring);
	rc = set_envd_url(eb, cJSON_IsString(dom) && dom->valuestring[0]
	                          ? dom->valuestring
	                          : eb->domain);
	cJSON_Delete(root);
	return rc;
}

static int kill_sandbox(struct e2b_backend *eb)
{
	struct e2b_http_resp resp;
	char path[256];
	int rc;

	snprintf(path, sizeof(path), "/sandboxes/%s", eb->sandbox_id);
	rc = api_call(eb, E2B_M_KILL, "DELETE", path, NULL, 0, &resp);
	if (rc < 0)
		return rc;
	if (resp.status != 204 && resp.status != 200 && resp.status != 404)
		rc = api_error(eb, &resp, "kill");
	omni__e2b_resp_finish(&resp);
	return rc;
}

static int refresh_sandbox(struct e2b_backend *eb)
{
	struct e2b_http_resp resp;
	char path[256];
	cJSON *body = cJSON_CreateObject();
	int rc;

	if (!body || !cJSON_AddNumberToObject(body, "timeout", eb->timeout_s)) {
		cJSON_Delete(body);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	snprintf(path, sizeof(path), "/sandboxes/%s/timeout", eb->sandbox_id);
	rc = api_call(eb, E2B_M_REFRESH, "POST", path, body, 0, &resp);
	cJSON_Delete(body);
	if (rc < 0)
		return rc;
	if (resp.status != 204 && resp.status != 200)
		rc = api_error(eb, &resp, "keep-alive");
	omni__e2b_resp_finish(&resp);
	return rc;
}

/* Refresh the sandbox's timeout every third of it (retrying sooner after
 * a failure) until shutdown. */
static void *keepalive_main(void *arg)
{
	struct e2b_backend *eb = arg;
	long long period = (long long)eb->timeout_s * 1000 / 3;
	long long wait = period;

	if (period < 1000)
		period = wait = 1000;
	pthread_mutex_lock(&eb->ka_lock);
	while (!eb->ka_stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += wait / 1000;
		until.tv_nsec += (wait % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		int w = 0;
		while (!eb->ka_stop && w != ETIMEDOUT)
			w = pthread_cond_timedwait(&eb->ka_cond, &eb->ka_lock,
			                           &until);
		if (eb->ka_stop)
			break;
		pthread_mutex_unlock(&eb->ka_lock);
		int rc = refresh_sandbox(eb);
		if (rc < 0)
			omni_log(OMNI_LOG_WARN, "%s", omni_error_last());
		pthread_mutex_lock(&eb->ka_lock);
		wait = rc < 0 ? (period < 30000 ? period : 30000) : period;
	}
	pthread_mutex_unlock(&eb->ka_lock);
	return NULL;
}

static void keepalive_stop(struct e2b_backend *eb)
{
	pthread_mutex_lock(&eb->ka_lock);
	bool running = eb->ka_running;
	eb->ka_stop = true;
	eb->ka_running = false;
	pthread_cond_broadcast(&eb->ka_cond);
	pthread_mutex_unlock(&eb->ka_lock);
	if (running)
		pthread_join(eb->ka_thread, NULL);
}

/* --- the session ---------------------------------------------------------- */

static int e2b_start(struct omni_backend *b)
{
	struct e2b_backend *eb = e2b_of(b);
	int rc;

	if (!eb->debug && !eb->api_key)
		return omni_error_set(
		    -EACCES, "e2b: E2B_API_KEY is not set (get a key at "
		             "https://e2b.dev/docs/api-key)");
	if (eb->debug) {
		snprintf(eb->sandbox_id, sizeof(eb->sandbox_id),
		         "debug_sandbox_id");
		if ((rc = set_envd_url(eb, eb->domain)) < 0)
			return rc;
	} else if ((rc = create_sandbox(eb)) < 0) {
		return rc;
	}
	omni_log(OMNI_LOG_DEBUG, "e2b: sandbox %s (envd %s at %s)",
	         eb->sandbox_id, eb->envd_version, eb->envd_url);
	if ((rc = omni__e2b_make_workdir(eb)) < 0) {
		struct omni__error_saved saved;
		omni__error_save(&saved);
		if (!eb->debug)
			kill_sandbox(eb);
		return omni_error_set(rc, "e2b: making %s: %s", E2B_WORKDIR,
		                      saved.msg);
	}
	if (!eb->debug) {
		pthread_mutex_lock(&eb->ka_lock);
		eb->ka_stop = false;
		rc = pthread_create(&eb->ka_thread, NULL, keepalive_main, eb);
		eb->ka_running = rc == 0;
		pthread_mutex_unlock(&eb->ka_lock);
		if (rc != 0) {
			kill_sandbox(eb);
			return omni_error_set(-rc,
			                      "e2b: cannot start a thread");
		}
	}
	return 0;
}

static int e2b_shutdown(struct omni_backend *b)
{
	struct e2b_backend *eb = e2b_of(b);
	int rc = 0;

	omni__e2b_watch_stop(eb);
	keepalive_stop(eb);
	if (!eb->debug && eb->sandbox_id[0]) {
		rc = kill_sandbox(eb);
		if (rc < 0)
			omni_log(OMNI_LOG_WARN, "%s", omni_error_last());
	}
	eb->sandbox_id[0] = '\0';
	omni__curl_pool_clear(&eb->pool);
	return rc;
}

static void e2b_destroy(struct omni_backend *b)
{
	struct e2b_backend *eb = e2b_of(b);

	omni__e2b_watch_stop(eb);
	keepalive_stop(eb);
	omni__curl_pool_clear(&eb->pool);
	if (eb->api_key) {
		/* Do not leave the key in freed memory. */
		volatile char *p = eb->api_key;
		while (*p)
			*p++ = '\0';
		free(eb->api_key);
	}
	omni__curl_pool_destroy(&eb->pool);
	pthread_mutex_destroy(&eb->ka_lock);
	pthread_cond_destroy(&eb->ka_cond);
	pthread_mutex_destroy(&eb->watch_lock);
	pthread_mutex_destroy(&eb->statfs_lock);
	omni__backend_finish(b);
	free(eb);
}

static char *e2b_stats(struct omni_backend *b)
{
	struct e2b_backend *eb = e2b_of(b);
	size_t cap = 2048, len = 0;
	char *out = malloc(cap);
	unsigned long long total = 0;

	if (!out)
		return NULL;
	for (int i = 0; i < E2B_M_COUNT; i++)
		total += atomic_load(&eb->count[i]);
	len += (size_t)snprintf(
	    out + len, cap - len, "e2b.sandbox %s\ne2b.requests %llu\n",
	    eb->sandbox_id[0] ? eb->sandbox_id : "-", total);
	for (int i = 0; i < E2B_M_COUNT && len < cap; i++)
		len += (size_t)snprintf(
		    out + len, cap - len, "e2b.%s %llu\n",
		    omni__e2b_method_name(i),
		    (unsigned long long)atomic_load(&eb->count[i]));
	if (len < cap)
		snprintf(
		    out + len, cap - len,
		    "e2b.errors %llu\ne2b.timeouts %llu\n"
		    "e2b.fast_fails %llu\ne2b.helper_commands %llu\n"
		    "e2b.bytes_down %llu\ne2b.bytes_up %llu\n"
		    "e2b.watch_connected %d\ne2b.watch_events %llu\n"
		    "e2b.watch_reconnects %llu\n",
		    (unsigned long long)atomic_load(&eb->errors),
		    (unsigned long long)atomic_load(&eb->timeouts),
		    (unsigned long long)atomic_load(&eb->fast_fails),
		    (unsigned long long)atomic_load(&eb->helper_cmds),
		    (unsigned long long)atomic_load(&eb->bytes_down),
		    (unsigned long long)atomic_load(&eb->bytes_up),
		    atomic_load(&eb->watch_connected) ? 1 : 0,
		    (unsigned long long)atomic_load(&eb->watch_events),
		    (unsigned long long)atomic_load(&eb->watch_reconnects));
	return out;
}

static int e2b_link(struct omni_backend *b, const char *from, const char *to)
{
	(void)b;
	(void)to;
	return omni_error_set(-EPERM,
	                      "e2b: %s: hard links are not supported (no link "
	                      "counts travel through envd)",
	                      from);
}

static int e2b_chown(struct omni_backend *b, const char *path, uid_t uid,
                     gid_t gid)
{
	(void)b;
	(void)uid;
	(void)gid;
	return omni_error_set(
	    -EPERM,
	    "e2b: %s: commands and files belong to the sandbox "
	    "user; chown is not supported",
	    path);
}

static const struct omni_backend_ops e2b_ops = {
	.version = OMNI_BACKEND_OPS_VERSION,
	.name = "e2b",
	.caps = OMNI_CAP_REMOTE | OMNI_CAP_WATCH | OMNI_CAP_TTY |
	        OMNI_CAP_REMOVE_DIRS,
	.start = e2b_start,
	.shutdown = e2b_shutdown,
	.destroy = e2b_destroy,
	.stat = omni__e2b_stat,
	.readdir = omni__e2b_readdir,
	.mkdir = omni__e2b_mkdir,
	.rmdir = omni__e2b_rmdir,
	.unlink = omni__e2b_unlink,
	.rename = omni__e2b_rename,
	.symlink = omni__e2b_symlink,
	.readlink = omni__e2b_readlink,
	.link = e2b_link,
	.chmod = omni__e2b_chmod,
	.chown = e2b_chown,
	.utimens = omni__e2b_utimens,
	.truncate = omni__e2b_truncate,
	.statfs = omni__e2b_statfs,
	.open = omni__e2b_open,
	.read = omni__e2b_read,
	.write = omni__e2b_write,
	.fstat = omni__e2b_fstat,
	.ftruncate = omni__e2b_ftruncate,
	.flush = omni__e2b_flush,
	.fsync = omni__e2b_fsync,
	.fallocate = omni__e2b_fallocate,
	.file_fd = omni__e2b_file_fd,
	.release = omni__e2b_release,
	OMNI_BACKEND_EXEC_OPS(omni__e2b),
	.watch = omni__e2b_watch,
	.stats = e2b_stats,
};

/* The request timeout: the option, else $OMNI_E2B_REQUEST_TIMEOUT, else
 * 10 s; connecting has half of it, at most 5 s. */
static int set_request_timeout(struct e2b_backend *eb, double option)
{
	const char *t = getenv("OMNI_E2B_REQUEST_TIMEOUT");
	double s = 10;

	if (option != 0) {
		if (!(option > 0 && option <= 3600))
			return omni_error_set(
			    -EINVAL,
			    "e2b: the request timeout must be "
			    "seconds in (0, 3600], not %g",
			    option);
		s = option;
	} else if (t && *t) {
		char *end;
		s = strtod(t, &end);
		if (*end || s <= 0 || s > 3600)
			return omni_error_set(
			    -EINVAL,
			    "e2b: OMNI_E2B_REQUEST_TIMEOUT must "
			    "be seconds in (0, 3600], not '%s'",
			    t);
	}
	eb->req_timeout_ms = (long)(s * 1000);
	if (eb->req_timeout_ms < 100)
		eb->req_timeout_ms = 100;
	eb->connect_timeout_ms =
	    eb->req_timeout_ms / 2 < 5000 ? eb->req_timeout_ms / 2 : 5000;
	return 0;
}

/* Where the control plane and envd are, and the key. */
static int read_environment(struct e2b_backend *eb)
{
	eb->debug = env_true("E2B_DEBUG");
	snprintf(eb->domain, sizeof(eb->domain), "%s",
	         env_or("E2B_DOMAIN", "e2b.app"));
	const char *api = getenv("E2B_API_URL");
	if (api && *api)
		snprintf(eb->api_url, sizeof(eb->api_url), "%s", api);
	else if (eb->debug)
		snprintf(eb->api_url, sizeof(eb->api_url),
		         "http://localhost:3000");
	else
		snprintf(eb->api_url, sizeof(eb->api_url), "https://api.%s",
		         eb->domain);
	trim_slash(eb->api_url);
	snprintf(eb->sandbox_url, sizeof(eb->sandbox_url), "%s",
	         env_or("E2B_SANDBOX_URL", ""));
	trim_slash(eb->sandbox_url);
	const char *key = getenv("E2B_API_KEY");
	if (key && *key && !(eb->api_key = strdup(key)))
		return omni_error_set(-ENOMEM, "e2b backend: out of memory");
	return 0;
}

int omni__e2b_backend_open(struct omni_backend **out, const char *project_id,
                           const struct omni_backend_options *opts)
{
	struct omni_e2b_options defaults = OMNI_E2B_OPTIONS_INIT;
	const struct omni_backend_options_head *own;
	const struct omni_e2b_options *eo = &defaults;
	struct e2b_backend *eb;
	int rc;

	*out = NULL;
	if ((rc = omni__backend_own_options(
	         opts, "e2b", OMNI_E2B_OPTIONS_VERSION, &own)) < 0)
		return rc;
	if (own)
		eo = (const struct omni_e2b_options *)own;
	if (!(eb = calloc(1, sizeof(*eb))))
		return omni_error_set(-ENOMEM, "e2b backend: out of memory");
	rc = omni__backend_init(&eb->base, &e2b_ops, project_id, E2B_WORKDIR,
	                        opts);
	if (rc < 0) {
		free(eb);
		return rc;
	}
	omni__curl_pool_init(&eb->pool);
	pthread_mutex_init(&eb->ka_lock, NULL);
	pthread_cond_init(&eb->ka_cond, NULL);
	pthread_mutex_init(&eb->watch_lock, NULL);
	pthread_mutex_init(&eb->statfs_lock, NULL);
	snprintf(eb->template_id, sizeof(eb->template_id), "%s",
	         eo->template_name && *eo->template_name ? eo->template_name
	                                                 : "base");
	eb->timeout_s = eo->timeout_s ? eo->timeout_s : 3600;
	if ((rc = read_environment(eb)) < 0 ||
	    (rc = set_request_timeout(eb, eo->request_timeout_s)) < 0) {
		e2b_destroy(&eb->base);
		return rc;
	}
	*out = &eb->base;
	return 0;
}
