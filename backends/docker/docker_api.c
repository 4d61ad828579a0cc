/*
 * backends/docker/docker_api.c - the docker backend's Docker Engine API client:
 *finding the daemon, the version check, JSON calls, image pulls with progress,
 * container logs for error messages (see docker.h).
 *
 * Transport. HTTP/1.1 through libcurl (http.c): over the Unix socket
 * /var/run/docker.sock (CURLOPT_UNIX_SOCKET_PATH; the URL's host is then
 * only a Host header the daemon ignores), or over TCP, with TLS client
 * certificates as the docker CLI reads them (DOCKER_TLS_VERIFY,
 * DOCKER_TLS, DOCKER_CERT_PATH), or through ssh (docker_host.c), or to
 * the daemon of the docker context in force (docker_host.c). One curl
 * handle per request; the session's endpoint lends them from a pool over
 * TCP and ssh, so connections are kept (docker.c).
 *
 * Endpoints called (all under /v1.41 unless the daemon's minimum is
 * higher; see omni__docker_api_negotiate()):
 *	GET    /version                       (unversioned) version check
 *	GET    /images/{name}/json            is the image there?
 *	POST   /images/create?fromImage=&tag= pull, JSON progress stream
 *	GET    /containers/{id}/logs          the tail, for error messages
 * and, for docker.c, containers/create, /json, /start, /stop, /unpause and
 * DELETE through omni__docker_call().
 *
 * Errors. A daemon that cannot be reached: "cannot reach the Docker daemon
 * at HOST: ..." with -ENOENT (no such socket), -EACCES (socket not ours),
 * -ECONNREFUSED, -ETIMEDOUT. Replies: omni__http_status_to_errno() with the
 * daemon's "message" quoted. A pull reports failure either as an HTTP
 * status before streaming (500 when no registry answers, 404 for an
 * unknown repository) or as an "errorDetail" line inside a 200 stream;
 * both become an error naming the image.
 *
 * Locking: none. struct omni__docker_api is filled at start and only read
 * afterwards; each request has its own curl handle.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "docker/docker.h"
#include "omni/error.h"
#include "omni/log.h"

#define VERSION_TIMEOUT_MS 10000L
#define INSPECT_TIMEOUT_MS 30000L
#define PULL_STALL_S       300L
#define MAX_LAYERS         512

/* --- finding the daemon --------------------------------------------------- */

static int set_str(char *out, size_t size, const char *what, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

static int set_str(char *out, size_t size, const char *what, const char *fmt,
                   ...)
{
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(out, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "docker: %s too long",
		                      what);
	return 0;
}

/* Use DIR/name as a TLS file when it exists, as the docker CLI does. */
static int tls_file(char *out, size_t size, const char *dir, const char *name)
{
	char path[PATH_MAX];
	int rc =
	    set_str(path, sizeof(path), "DOCKER_CERT_PATH", "%s/%s", dir, name);

	if (rc < 0)
		return rc;
	if (access(path, R_OK) == 0)
		return set_str(out, size, "DOCKER_CERT_PATH", "%s", path);
	return 0;
}

/* TLS for tcp://: from the environment (ctx NULL) or a context. */
static int init_tcp(struct omni__docker_api *api, const char *rest,
                    const struct omni__docker_context *ctx)
{
	const char *verify = getenv("DOCKER_TLS_VERIFY");
	const char *tls_env = getenv("DOCKER_TLS");
	bool verify_on = ctx ? !ctx->skip_verify : verify && *verify;
	bool tls = ctx ? ctx->tls : verify_on || (tls_env && *tls_env);
	const char *slash = strchr(rest, '/');
	size_t hlen = slash ? (size_t)(slash - rest) : strlen(rest);
	char hostport[512], base[512] = "";
	int rc;

	if (hlen == 0 || hlen >= sizeof(hostport))
		return omni_error_set(
		    -EINVAL, "DOCKER_HOST=tcp://%s: no host or too long", rest);
	memcpy(hostport, rest, hlen);
	hostport[hlen] = '\0';
	if (slash &&
	    (rc = set_str(base, sizeof(base), "DOCKER_HOST", "%s", slash)) < 0)
		return rc;
	size_t bl = strlen(base);
	while (bl > 0 && base[bl - 1] == '/')
		base[--bl] = '\0';
	/* No port, or an empty one: 2375, or 2376 with TLS. A ']' closes
	 * an IPv6 address, whose colons are not a port. */
	const char *colon = strrchr(hostport, ':');
	const char *bracket = strrchr(hostport, ']');
	bool has_port = colon && (!bracket || colon > bracket);
	if (has_port && colon[1] == '\0')
		hostport[strlen(hostport) - 1] = '\0';
	if (!has_port || colon[1] == '\0') {
		size_t n = strlen(hostport);
		snprintf(hostport + n, sizeof(hostport) - n, ":%s",
		         tls ? "2376" : "2375");
	}
	if ((rc = set_str(api->ep.base_url, sizeof(api->ep.base_url),
	                  "DOCKER_HOST", "%s://%s%s", tls ? "https" : "http",
	                  hostport, base)) < 0 ||
	    (rc = set_str(api->host, sizeof(api->host), "DOCKER_HOST",
	                  "tcp://%s%s", hostport, base)) < 0)
		return rc;
	if (!tls)
		return 0;

	const char *dir = ctx ? ctx->tls_dir : getenv("DOCKER_CERT_PATH");
	char home_dir[PATH_MAX];
	if (!dir || !*dir) {
		const char *home = getenv("HOME");
		if ((rc = set_str(home_dir, sizeof(home_dir), "HOME",
		                  "%s/.docker", home && *home ? home : "")) < 0)
			return rc;
		dir = home_dir;
	}
	api->ep.insecure = !verify_on;
	if ((rc = tls_file(api->ep.ca_file, sizeof(api->ep.ca_file), dir,
	                   "ca.pem")) < 0 ||
	    (rc = tls_file(api->ep.cert_file, sizeof(api->ep.cert_file), dir,
	                   "cert.pem")) < 0 ||
	    (rc = tls_file(api->ep.key_file, sizeof(api->ep.key_file), dir,
	                   "key.pem")) < 0)
		return rc;
	return 0;
}

static bool version_valid(const char *v)
{
	bool dot = false;

	if (!*v)
		return false;
	for (; *v; v++) {
		if (*v == '.')
			dot = true;
		else if (*v < '0' || *v > '9')
			return false;
	}
	return dot;
}

int omni__docker_api_init(struct omni__docker_api *api)
{
	const char *host = getenv("DOCKER_HOST");
	const char *pin = getenv("DOCKER_API_VERSION");
	int rc;

	memset(api, 0, sizeof(*api));
	snprintf(api->version, sizeof(api->version), "%s",
	         OMNI_DOCKER_API_VERSION);
	api->ep.connect_timeout_ms = 5000;
	if (pin && *pin) {
		if (!version_valid(pin) || strlen(pin) >= sizeof(api->version))
			return omni_error_set(
			    -EINVAL,
			    "DOCKER_API_VERSION=%s: not a version like 1.41",
			    pin);
		snprintf(api->version, sizeof(api->version), "%s", pin);
		api->version_pinned = true;
	}
	struct omni__docker_context ctx;
	bool from_ctx = false;
	if (!host || !*host) {
		if ((rc = omni__docker_context(&ctx)) < 0)
			return rc;
		from_ctx = rc > 0;
		host = from_ctx ? ctx.host : "unix:///var/run/docker.sock";
	}
	if (strncmp(host, "unix://", 7) == 0) {
		const char *path = host + 7;
		if (path[0] != '/')
			return omni_error_set(
			    -EINVAL,
			    "DOCKER_HOST=%s: the socket path must be absolute",
			    host);
		if ((rc = set_str(api->ep.unix_socket,
		                  sizeof(api->ep.unix_socket), "DOCKER_HOST",
		                  "%s", path)) < 0 ||
		    (rc = set_str(api->host, sizeof(api->host), "DOCKER_HOST",
		                  "%s", host)) < 0)
			return rc;
		snprintf(api->ep.base_url, sizeof(api->ep.base_url),
		         "http://localhost");
		return 0;
	}
	if (strncmp(host, "tcp://", 6) == 0)
		return init_tcp(api, host + 6, from_ctx ? &ctx : NULL);
	if (strncmp(host, "ssh://", 6) == 0)
		return omni__docker_ssh_init(api, host);
	return omni_error_set(
	    -EINVAL,
	    "DOCKER_HOST=%s: omnifs reaches the Docker daemon "
	    "through unix://, tcp:// or ssh:// only",
	    host);
}

/* --- requests ------------------------------------------------------------- */

/* "1.41" -> 1041; -1 when malformed. */
static long version_num(const char *v)
{
	char *end;
	long major = strtol(v, &end, 10);

	if (end == v || *end != '.')
		return -1;
	const char *m = end + 1;
	long minor = strtol(m, &end, 10);
	if (end == m || major < 0 || minor < 0 || minor > 999)
		return -1;
	return major * 1000 + minor;
}

static int unreachable(const struct omni__docker_api *api, int rc,
                       const struct omni__http_response *resp)
{
	const char *hint = "";

	if (rc == -ENOENT || rc == -ECONNREFUSED)
		hint = " (is dockerd running? DOCKER_HOST names another "
		       "daemon)";
	else if (rc == -EACCES)
		hint = " (are you in the docker group?)";
	return omni_error_set(
	    rc, "cannot reach the Docker daemon at %s: %s%s", api->host,
	    resp->error[0] ? resp->error : strerror(-rc), hint);
}

int omni__docker_request(const struct omni__docker_api *api, const char *method,
                         const char *path, const char *json, long timeout_ms,
                         struct omni__http_response *resp)
{
	char full[2048];
	int rc = set_str(full, sizeof(full), "request path", "/v%s%s",
	                 api->version, path);

	if (rc < 0) {
		memset(resp, 0, sizeof(*resp));
		return rc;
	}
	struct omni__http_request req = {
		.method = method,
		.path = full,
		.body = json,
		.body_len = json ? strlen(json) : 0,
		.content_type = json ? "application/json" : NULL,
		.timeout_ms = timeout_ms,
	};
	rc = omni__http_request(&api->ep, &req, resp);
	if (rc < 0 && resp->status == 0 && rc != -ENOMEM)
		return unreachable(api, rc, resp);
	return rc;
}

int omni__docker_call(const struct omni__docker_api *api, const char *method,
                      const char *path, const char *json, long timeout_ms,
                      cJSON **out, const char *what)
{
	struct omni__http_response resp;
	int rc;

	if (out)
		*out = NULL;
	rc = omni__docker_request(api, method, path, json, timeout_ms, &resp);
	if (rc == 0)
		rc = omni__http_check(&resp, "docker: %s", what);
	if (rc == 0 && out && resp.body_len > 0) {
		*out = cJSON_ParseWithLength(resp.body, resp.body_len);
		if (!*out)
			rc = omni_error_set(-EPROTO,
			                    "docker: %s: the daemon's reply is "
			                    "not JSON",
			                    what);
	}
	omni__http_response_finish(&resp);
	return rc;
}

int omni__docker_api_negotiate(struct omni__docker_api *api)
{
	struct omni__http_request req = { .path = "/version",
		                          .timeout_ms = VERSION_TIMEOUT_MS };
	struct omni__http_response resp;
	cJSON *root = NULL;
	int rc;

	rc = omni__http_request(&api->ep, &req, &resp);
	if (rc < 0) {
		if (resp.status == 0 && rc != -ENOMEM)
			rc = unreachable(api, rc, &resp);
		goto out;
	}
	if ((rc = omni__http_check(&resp, "docker: GET %s/version",
	                           api->host)) < 0)
		goto out;
	root = cJSON_ParseWithLength(resp.body ? resp.body : "", resp.body_len);
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(root, "ApiVersion");
	const cJSON *min =
	    cJSON_GetObjectItemCaseSensitive(root, "MinAPIVersion");
	const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "Version");
	if (!cJSON_IsString(max) || version_num(max->valuestring) < 0) {
		rc = omni_error_set(-EPROTO,
		                    "docker: %s answered /version without an "
		                    "ApiVersion; is it a Docker daemon?",
		                    api->host);
		goto out;
	}
	const char *engine = cJSON_IsString(ver) ? ver->valuestring : "?";
	long want = version_num(OMNI_DOCKER_API_VERSION);
	long have_max = version_num(max->valuestring);
	long have_min =
	    cJSON_IsString(min) ? version_num(min->valuestring) : -1;
	if (api->version_pinned) {
		omni_log(OMNI_LOG_DEBUG, "docker: API version %s (pinned)",
		         api->version);
	} else if (have_max < want) {
		rc =
		    omni_error_set(-EPROTONOSUPPORT,
		                   "the Docker daemon at %s (Docker %s) speaks "
		                   "Engine API %s at most; omnifs needs %s "
		                   "(Docker 20.10) or newer",
		                   api->host, engine, max->valuestring,
		                   OMNI_DOCKER_API_VERSION);
		goto out;
	} else if (have_min > want &&
	           strlen(min->valuestring) < sizeof(api->version)) {
		/* A daemon that dropped 1.41: the calls we make are the same
		 * in the versions after it. */
		snprintf(api->version, sizeof(api->version), "%s",
		         min->valuestring);
	}
	omni_log(OMNI_LOG_DEBUG,
	         "docker: %s is Docker %s (API %s-%s), using %s", api->host,
	         engine, cJSON_IsString(min) ? min->valuestring : "?",
	         max->valuestring, api->version);
	rc = 0;
out:
	cJSON_Delete(root);
	omni__http_response_finish(&resp);
	return rc;
}

/* --- images --------------------------------------------------------------- */

bool omni__docker_image_valid(const char *image)
{
	size_t n = image ? strlen(image) : 0;

	if (n == 0 || n > 512 || strstr(image, "..") || image[0] == '/' ||
	    image[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = image[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		          c == '-' || c == '/' || c == ':' || c == '@';
		if (!ok)
			return false;
	}
	return true;
}

int omni__docker_image_split(const char *image, char *repo, size_t repo_size,
                             char *tag, size_t tag_size)
{
	const char *slash = strrchr(image, '/');
	const char *colon = strrchr(image, ':');
	size_t rlen = strlen(image);
	const char *t = "latest";

	if (strchr(image, '@')) {
		t = "";
	} else if (colon && (!slash || colon > slash)) {
		rlen = (size_t)(colon - image);
		t = colon + 1;
	}
	if (rlen >= repo_size || strlen(t) >= tag_size)
		return omni_error_set(-ENAMETOOLONG, "image name too long: %s",
		                      image);
	memcpy(repo, image, rlen);
	repo[rlen] = '\0';
	snprintf(tag, tag_size, "%s", t);
	return 0;
}

static void human(long long bytes, char *out, size_t size)
{
	if (bytes >= 1000LL * 1000 * 1000)
		snprintf(out, size, "%.2f GB", (double)bytes / 1e9);
	else if (bytes >= 1000LL * 1000)
		snprintf(out, size, "%.1f MB", (double)bytes / 1e6);
	else
		snprintf(out, size, "%.1f kB", (double)bytes / 1e3);
}

void omni__docker_pull_totals(const struct omni__docker_pull *p,
                              long long *done, long long *total,
                              size_t *layers_done, size_t *layers)
{
	*done = *total = 0;
	*layers_done = 0;
	*layers = p->nlayers;
	for (size_t i = 0; i < p->nlayers; i++) {
		*done += p->layers[i].current;
		*total += p->layers[i].total;
		if (p->layers[i].done)
			(*layers_done)++;
	}
}

/* One line of progress: redrawn in place on a terminal (at most ten times
 * a second), else printed when a layer completes. */
static void pull_draw(struct omni__docker_pull *p, bool layer_finished)
{
	long long done, total;
	size_t ldone, lall;
	char a[32], b[32];

	if (!p->out)
		return;
	long long now = omni__now_ms();
	if (p->tty ? (!layer_finished && now - p->last_draw_ms < 100)
	           : !layer_finished)
		return;
	p->last_draw_ms = now;
	omni__docker_pull_totals(p, &done, &total, &ldone, &lall);
	human(done, a, sizeof(a));
	human(total, b, sizeof(b));
	fprintf(p->out, "%somnifs: pulling %s: %zu/%zu layers, %s of %s%s",
	        p->tty ? "\r\033[K" : "", p->image, ldone, lall, a, b,
	        p->tty ? "" : "\n");
	fflush(p->out);
	p->drawn = p->tty;
}

static struct omni__docker_layer *layer_get(struct omni__docker_pull *p,
                                            const char *id)
{
	for (size_t i = 0; i < p->nlayers; i++)
		if (strcmp(p->layers[i].id, id) == 0)
			return &p->layers[i];
	if (p->nlayers >= MAX_LAYERS)
		return NULL;
	if (p->nlayers == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct omni__docker_layer *l =
		    realloc(p->layers, cap * sizeof(*l));
		if (!l)
			return NULL;
		p->layers = l;
		p->cap = cap;
	}
	struct omni__docker_layer *l = &p->layers[p->nlayers++];
	memset(l, 0, sizeof(*l));
	snprintf(l->id, sizeof(l->id), "%s", id);
	return l;
}

static bool status_is(const char *status, const char *what)
{
	return strcmp(status, what) == 0;
}

static int pull_line(struct omni__docker_pull *p, const char *line, size_t len)
{
	cJSON *j = cJSON_ParseWithLength(line, len);
	int rc = 0;

	if (!j)
		return 0; /* not JSON (a blank line): nothing to learn */
	const cJSON *detail =
	    cJSON_GetObjectItemCaseSensitive(j, "errorDetail");
	const cJSON *dmsg = cJSON_GetObjectItemCaseSensitive(detail, "message");
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
	if (cJSON_IsString(dmsg) || cJSON_IsString(err)) {
		rc = omni_error_set(-EIO, "cannot pull image %s: %s", p->image,
		                    cJSON_IsString(dmsg) ? dmsg->valuestring
		                                         : err->valuestring);
		goto out;
	}
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
	const cJSON *pd = cJSON_GetObjectItemCaseSensitive(j, "progressDetail");
	if (!cJSON_IsString(st))
		goto out;
	const char *s = st->valuestring;
	if (strncmp(s, "Status:", 7) == 0 || strncmp(s, "Digest:", 7) == 0) {
		if (strncmp(s, "Status:", 7) == 0)
			snprintf(p->status, sizeof(p->status), "%s", s);
		goto out;
	}
	bool layer_status =
	    status_is(s, "Pulling fs layer") || status_is(s, "Waiting") ||
	    status_is(s, "Downloading") || status_is(s, "Verifying Checksum") ||
	    status_is(s, "Download complete") || status_is(s, "Extracting") ||
	    status_is(s, "Pull complete") || status_is(s, "Already exists");
	if (!layer_status || !cJSON_IsString(id))
		goto out;
	struct omni__docker_layer *l = layer_get(p, id->valuestring);
	if (!l)
		goto out;
	bool finished = false;
	if (status_is(s, "Downloading")) {
		const cJSON *cur =
		    cJSON_GetObjectItemCaseSensitive(pd, "current");
		const cJSON *tot =
		    cJSON_GetObjectItemCaseSensitive(pd, "total");
		if (cJSON_IsNumber(cur))
			l->current = (long long)cur->valuedouble;
		if (cJSON_IsNumber(tot) && tot->valuedouble > 0)
			l->total = (long long)tot->valuedouble;
	} else if (status_is(s, "Verifying Checksum") ||
	           status_is(s, "Download complete")) {
		if (l->total > 0)
			l->current = l->total;
	} else if (status_is(s, "Pull complete") ||
	           status_is(s, "Already exists")) {
		if (l->total > 0)
			l->current = l->total;
		finished = !l->done;
		l->done = true;
	}
	pull_draw(p, finished);
out:
	cJSON_Delete(j);
	return rc;
}

int omni__docker_pull_feed(struct omni__docker_pull *p, const void *data,
                           size_t len)
{
	const char *d = data;

	while (len > 0) {
		const char *nl = memchr(d, '\n', len);
		size_t n = nl ? (size_t)(nl - d) : len;

		if (!nl || p->partial_len) {
			/* Carry the piece over (a line split across chunks). */
			if (p->partial_len + n > (1u << 20))
				return omni_error_set(
				    -EPROTO,
				    "cannot pull image %s: a "
				    "progress line is too long",
				    p->image);
			char *np = realloc(p->partial, p->partial_len + n + 1);
			if (!np)
				return omni_error_set(-ENOMEM,
				                      "docker: out of memory");
			p->partial = np;
			memcpy(p->partial + p->partial_len, d, n);
			p->partial_len += n;
			if (nl) {
				int rc =
				    pull_line(p, p->partial, p->partial_len);
				p->partial_len = 0;
				if (rc < 0)
					return rc;
			}
		} else {
			int rc = pull_line(p, d, n);
			if (rc < 0)
				return rc;
		}
		if (!nl)
			break;
		d = nl + 1;
		len -= n + 1;
	}
	return 0;
}

void omni__docker_pull_finish(struct omni__docker_pull *p)
{
	free(p->layers);
	free(p->partial);
	p->layers = NULL;
	p->partial = NULL;
	p->nlayers = p->cap = p->partial_len = 0;
}

static int pull_data(const void *data, size_t len, void *payload)
{
	return omni__docker_pull_feed(payload, data, len);
}

static int pull(const struct omni__docker_api *api, const char *image,
                bool progress)
{
	char repo[600], tag[200], erepo[1800], etag[600], path[2600];
	struct omni__docker_pull p = { .image = image };
	struct omni__http_response resp;
	int rc;

	if ((rc = omni__docker_image_split(image, repo, sizeof(repo), tag,
	                                   sizeof(tag))) < 0 ||
	    (rc = omni__http_escape(repo, erepo, sizeof(erepo))) < 0 ||
	    (rc = omni__http_escape(tag, etag, sizeof(etag))) < 0 ||
	    (rc = set_str(path, sizeof(path), "image name",
	                  "/v%s/images/create?fromImage=%s%s%s", api->version,
	                  erepo, tag[0] ? "&tag=" : "", etag)) < 0)
		return rc;
	if (progress) {
		p.out = stderr;
		p.tty = isatty(fileno(stderr));
		fprintf(stderr, "omnifs: image %s is not here; pulling it\n",
		        image);
	}
	struct omni__http_request req = {
		.method = "POST",
		.path = path,
		.low_speed_s = PULL_STALL_S,
		.on_data = pull_data,
		.payload = &p,
	};
	rc = omni__http_request(&api->ep, &req, &resp);
	if (rc < 0 && resp.status == 0 && rc != -ENOMEM)
		rc = unreachable(api, rc, &resp);
	if (rc == 0 && p.partial_len > 0) {
		/* A last line without its newline. */
		rc = pull_line(&p, p.partial, p.partial_len);
	}
	if (rc == 0 && resp.status == 404)
		rc = omni__http_check(&resp,
		                      "cannot pull image %s: the registry does "
		                      "not have it",
		                      image);
	else if (rc == 0)
		rc = omni__http_check(&resp,
		                      "cannot pull image %s (it is not in the "
		                      "Docker daemon, and pulling it failed)",
		                      image);
	if (p.out) {
		if (p.drawn)
			fputc('\n', p.out);
		if (rc == 0) {
			long long done, total;
			size_t ld, la;
			char a[32];
			omni__docker_pull_totals(&p, &done, &total, &ld, &la);
			human(total, a, sizeof(a));
			fprintf(p.out, "omnifs: pulled %s (%zu layers, %s)\n",
			        image, la, a);
		}
		fflush(p.out);
	}
	omni__docker_pull_finish(&p);
	omni__http_response_finish(&resp);
	return rc;
}

int omni__docker_ensure_image(const struct omni__docker_api *api,
                              const char *image, bool progress)
{
	struct omni__http_response resp;
	char path[700];
	int rc;

	if (!omni__docker_image_valid(image))
		return omni_error_set(-EINVAL, "invalid image name '%s'",
		                      image);
	if ((rc = set_str(path, sizeof(path), "image name", "/images/%s/json",
	                  image)) < 0)
		return rc;
	rc = omni__docker_request(api, "GET", path, NULL, INSPECT_TIMEOUT_MS,
	                          &resp);
	if (rc == 0 && resp.status != 404)
		rc = omni__http_check(&resp, "docker: inspecting image %s",
		                      image);
	long status = resp.status;
	omni__http_response_finish(&resp);
	if (rc < 0 || status != 404)
		return rc;

	if ((rc = pull(api, image, progress)) < 0)
		return rc;
	/* The pull said it worked; make sure the image is there now. */
	rc = omni__docker_request(api, "GET", path, NULL, INSPECT_TIMEOUT_MS,
	                          &resp);
	if (rc == 0)
		rc = omni__http_check(
		    &resp, "docker: image %s after pulling it", image);
	omni__http_response_finish(&resp);
	return rc;
}

/* --- container logs ------------------------------------------------------- */

static void append_text(char *out, size_t size, size_t *n, const char *s,
                        size_t len)
{
	for (size_t i = 0; i < len && *n + 1 < size; i++) {
		char c = s[i];
		if (c == '\r')
			continue;
		if (c == '\n') {
			if (*n > 0 && *n + 4 < size &&
			    strncmp(out + *n - 3, " | ", 3) != 0) {
				memcpy(out + *n, " | ", 3);
				*n += 3;
			}
			continue;
		}
		out[(*n)++] = c;
	}
	out[*n] = '\0';
}

void omni__docker_logs_tail(const struct omni__docker_api *api, const char *id,
                            char *out, size_t size)
{
	struct omni__http_response resp;
	char path[256];
	size_t n = 0;

	if (size == 0)
		return;
	out[0] = '\0';
	snprintf(path, sizeof(path),
	         "/containers/%s/logs?stdout=1&stderr=1&tail=10", id);
	if (omni__docker_request(api, "GET", path, NULL, INSPECT_TIMEOUT_MS,
	                         &resp) < 0 ||
	    resp.status != 200 || !resp.body) {
		omni__http_response_finish(&resp);
		omni_error_clear();
		return;
	}
	/* Without a TTY the stream is framed: a byte for the stream, three
	 * zero bytes, a big-endian u32 length, then the payload. */
	const unsigned char *b = (const unsigned char *)resp.body;
	size_t len = resp.body_len, off = 0;
	bool framed =
	    len >= 8 && b[0] <= 2 && b[1] == 0 && b[2] == 0 && b[3] == 0;
	if (!framed) {
		append_text(out, size, &n, resp.body, len);
	} else {
		while (off + 8 <= len) {
			size_t fl = ((size_t)b[off + 4] << 24) |
			            ((size_t)b[off + 5] << 16) |
			            ((size_t)b[off + 6] << 8) | b[off + 7];
			off += 8;
			if (fl > len - off)
				fl = len - off;
			append_text(out, size, &n, resp.body + off, fl);
			off += fl;
		}
	}
	while (n >= 3 && strcmp(out + n - 3, " | ") == 0)
		out[n -= 3] = '\0';
	omni__http_response_finish(&resp);
}
