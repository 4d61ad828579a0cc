/*
 * backends/core/http.c - one HTTP request through libcurl (see http.h).
 *
 * Design. The curl layer comes first: omni__curl_setup() sets what every
 * libomni transfer has (URL, headers, write callback, timeouts, Unix
 * socket, TLS files, no signals, an optional User-Agent), and a pool lends
 * out idle easy handles under a mutex; a lent handle belongs to one
 * request (libcurl-thread(3): one handle per thread at a time), so no lock
 * is held while it runs. A handle remembers its connections across
 * curl_easy_reset(), which is how a pooled endpoint keeps them alive; a
 * handle whose transfer failed may hold a broken connection and is closed
 * instead of kept.
 *
 * omni__http_request() takes a handle from the endpoint's pool (or a fresh
 * one when it has none: re-connecting costs a Unix socket connect, in
 * microseconds, for the Docker daemon), sets it up from the endpoint and
 * the request, performs it, and gives it back.
 *
 * The reply body is collected into a growing buffer capped at max_body, or
 * handed to on_data chunk by chunk when the status is 2xx (the status is
 * known by the time the first body byte arrives). Error replies are always
 * collected so that omni__http_check() can quote the server's message.
 *
 * Request bodies never come from stdin by accident: a POST without a body
 * sends an explicit empty one, and "Expect:" is cleared so that curl does
 * not wait for "100 Continue" before larger bodies.
 *
 * Locking: a pool's mutex guards its idle list; nothing else here outlives
 * a call.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "core/http.h"
#include "omni/error.h"

/* --- the curl layer ------------------------------------------------------ */

void omni__curl_pool_init(struct omni__curl_pool *pool)
{
	memset(pool, 0, sizeof(*pool));
	pthread_mutex_init(&pool->lock, NULL);
}

void omni__curl_pool_clear(struct omni__curl_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	while (pool->count > 0)
		curl_easy_cleanup(pool->idle[--pool->count]);
	pthread_mutex_unlock(&pool->lock);
}

void omni__curl_pool_destroy(struct omni__curl_pool *pool)
{
	omni__curl_pool_clear(pool);
	pthread_mutex_destroy(&pool->lock);
}

CURL *omni__curl_take(struct omni__curl_pool *pool)
{
	CURL *h = NULL;

	if (pool) {
		pthread_mutex_lock(&pool->lock);
		if (pool->count > 0)
			h = pool->idle[--pool->count];
		pthread_mutex_unlock(&pool->lock);
	}
	return h ? h : curl_easy_init();
}

void omni__curl_give(struct omni__curl_pool *pool, CURL *h, bool keep)
{
	if (!h)
		return;
	if (pool && keep) {
		/* Reset now: the options point into the finished request. */
		curl_easy_reset(h);
		pthread_mutex_lock(&pool->lock);
		if (pool->count < OMNI__CURL_POOL_SIZE) {
			pool->idle[pool->count++] = h;
			h = NULL;
		}
		pthread_mutex_unlock(&pool->lock);
	}
	if (h)
		curl_easy_cleanup(h);
}

/*
 * A new connection of an endpoint that dials: a Unix stream socket, and the
 * address curl connects it to changed to the dialer's socket (the option
 * allows the callback to change the address; curl's storage behind it is a
 * sockaddr_storage). libcurl 7.88 cannot be handed a connected socket: it
 * connects whatever this returns, CURL_SOCKOPT_ALREADY_CONNECTED or not.
 */
static curl_socket_t dial_open(void *clientp, curlsocktype purpose,
                               struct curl_sockaddr *address)
{
	const struct omni__http_endpoint *ep = clientp;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[sizeof(sa.sun_path)];

	(void)purpose;
	if (ep->dial(ep, path, sizeof(path)) < 0)
		return CURL_SOCKET_BAD;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return CURL_SOCKET_BAD;
	address->family = AF_UNIX;
	address->socktype = SOCK_STREAM;
	address->protocol = 0;
	address->addrlen = (unsigned int)sizeof(sa);
	memcpy(&address->addr, &sa, sizeof(sa));
	return fd;
}

void omni__curl_setup(CURL *h, const struct omni__curl_opts *o)
{
	const struct omni__http_endpoint *ep = o->ep;

	curl_easy_setopt(h, CURLOPT_URL, o->url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (o->errbuf)
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, o->errbuf);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, o->headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, o->write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, o->write_data);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
	                 o->connect_timeout_ms > 0 ? o->connect_timeout_ms
	                                           : 10000L);
	if (o->timeout_ms > 0)
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	if (o->low_speed_s > 0) {
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->low_speed_s);
	}
	if (o->user_agent)
		curl_easy_setopt(h, CURLOPT_USERAGENT, o->user_agent);
	if (!ep)
		return;
	if (ep->unix_socket[0])
		curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, ep->unix_socket);
	if (ep->dial) {
		curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, dial_open);
		curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, (void *)ep);
	}
	if (ep->ca_file[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, ep->ca_file);
	if (ep->cert_file[0])
		curl_easy_setopt(h, CURLOPT_SSLCERT, ep->cert_file);
	if (ep->key_file[0])
		curl_easy_setopt(h, CURLOPT_SSLKEY, ep->key_file);
	if (ep->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

/* --- one request ---------------------------------------------------------- */

struct xfer {
	CURL *h;
	const struct omni__http_request *req;
	struct omni__http_response *resp;
	size_t cap, max;
	int cb_err; /* what on_data or read_body returned to abort */
	bool too_big;
	bool oom;
};

static bool is_2xx(long status)
{
	return status >= 200 && status < 300;
}

static int append(struct xfer *x, const char *data, size_t n)
{
	struct omni__http_response *r = x->resp;

	if (r->body_len + n > x->max) {
		x->too_big = true;
		return -1;
	}
	if (r->body_len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 1024;
		while (cap < r->body_len + n + 1)
			cap *= 2;
		char *p = realloc(r->body, cap);
		if (!p) {
			x->oom = true;
			return -1;
		}
		r->body = p;
		x->cap = cap;
	}
	memcpy(r->body + r->body_len, data, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb;
	long status = 0;

	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
	if (x->req->on_data && is_2xx(status)) {
		int rc = x->req->on_data(ptr, n, x->req->payload);
		if (rc < 0) {
			x->cb_err = rc;
			return 0;
		}
		return n;
	}
	return append(x, ptr, n) < 0 ? 0 : n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb;
	char line[1024];

	if (!x->req->on_header || n == 0)
		return n;
	size_t len = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
	memcpy(line, ptr, len);
	line[len] = '\0';
	char *colon = strchr(line, ':');
	if (!colon || strncmp(line, "HTTP/", 5) == 0)
		return n;
	*colon = '\0';
	char *value = colon + 1;
	while (*value == ' ' || *value == '\t')
		value++;
	char *end = value + strlen(value);
	while (end > value && isspace((unsigned char)end[-1]))
		*--end = '\0';
	x->req->on_header(line, value, x->req->payload);
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = x->req->read_body(buf, size * nitems, x->req->payload);

	if (n == (size_t)-1) {
		x->cb_err = -ECANCELED;
		return CURL_READFUNC_ABORT;
	}
	return n;
}

/* The method curl would use, for messages. */
static const char *method_of(const struct omni__http_request *req)
{
	if (req->method)
		return req->method;
	return req->body || req->read_body ? "POST" : "GET";
}

static int set_method(CURL *h, const struct omni__http_request *req,
                      struct xfer *x)
{
	const char *m = method_of(req);
	CURLcode cc = CURLE_OK;

	if (strcmp(m, "HEAD") == 0) {
		cc = curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (req->read_body) {
		/* UPLOAD sends PUT; CUSTOMREQUEST renames it. */
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, x);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
		                 (curl_off_t)req->body_size);
		if (strcmp(m, "PUT") != 0)
			cc = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
	} else if (req->body || strcmp(m, "POST") == 0 ||
	           strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0) {
		/* An explicit (maybe empty) body: without one, curl would
		 * read the body from stdin. */
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
		                 (curl_off_t)(req->body ? req->body_len : 0));
		curl_easy_setopt(h, CURLOPT_POSTFIELDS,
		                 req->body ? (const char *)req->body : "");
		if (strcmp(m, "POST") != 0)
			cc = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
	} else if (strcmp(m, "GET") != 0) {
		cc = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m);
	}
	return cc == CURLE_OK ? 0 : -ENOMEM;
}

static int add_header(struct curl_slist **list, const char *h)
{
	struct curl_slist *n = curl_slist_append(*list, h);

	if (!n)
		return -ENOMEM;
	*list = n;
	return 0;
}

int omni__http_request(const struct omni__http_endpoint *ep,
                       const struct omni__http_request *req,
                       struct omni__http_response *resp)
{
	struct xfer x = { .req = req, .resp = resp };
	struct curl_slist *headers = NULL;
	char *url = NULL;
	CURL *h = NULL;
	CURLcode cc;
	int rc = 0;

	memset(resp, 0, sizeof(*resp));
	x.max = req->max_body ? req->max_body : OMNI_HTTP_MAX_BODY;
	const char *path = req->path ? req->path : "";
	bool full = strstr(path, "://") != NULL;
	size_t ulen = (full ? 0 : strlen(ep->base_url)) + strlen(path) + 1;
	url = malloc(ulen);
	h = omni__curl_take(ep->pool);
	if (!url || !h) {
		rc = omni_error_set(-ENOMEM, "http: out of memory");
		goto out;
	}
	snprintf(url, ulen, "%s%s", full ? "" : ep->base_url, path);
	x.h = h;

	char ctype[256];
	if (req->content_type) {
		snprintf(ctype, sizeof(ctype), "Content-Type: %s",
		         req->content_type);
		if (add_header(&headers, ctype) < 0)
			rc = -ENOMEM;
	}
	if (rc == 0)
		rc = add_header(&headers, "Expect:");
	for (const char *const *hd = req->headers; rc == 0 && hd && *hd; hd++)
		rc = add_header(&headers, *hd);
	if (rc == 0)
		rc = set_method(h, req, &x);
	if (rc < 0) {
		rc = omni_error_set(-ENOMEM, "http: out of memory");
		goto out;
	}

	omni__curl_setup(h, &(struct omni__curl_opts){
	                        .url = url,
	                        .errbuf = resp->error,
	                        .headers = headers,
	                        .write = on_write,
	                        .write_data = &x,
	                        .connect_timeout_ms = ep->connect_timeout_ms,
	                        .timeout_ms = req->timeout_ms,
	                        .low_speed_s = req->low_speed_s,
	                        .ep = ep,
	                    });
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);

	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	if (cc == CURLE_OK)
		goto out;

	if (x.cb_err < 0) {
		/* The callback has set its own message. */
		rc = x.cb_err;
		goto out;
	}
	if (x.oom) {
		rc = omni_error_set(-ENOMEM, "%s %s: out of memory",
		                    method_of(req), url);
		goto out;
	}
	if (x.too_big) {
		rc =
		    omni_error_set(-EFBIG, "%s %s: reply larger than %zu bytes",
		                   method_of(req), url, x.max);
		goto out;
	}
	if (!resp->error[0])
		snprintf(resp->error, sizeof(resp->error), "%s",
		         curl_easy_strerror(cc));
	rc = omni__curl_to_errno(cc);
	if (cc == CURLE_COULDNT_CONNECT) {
		/* The socket's own errno tells a missing Unix socket or one
		 * we may not open from a refused connection. */
		long os_errno = 0;
		curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
		if (os_errno == ENOENT || os_errno == EACCES ||
		    os_errno == ECONNREFUSED || os_errno == ENOTSOCK) {
			rc = -(int)os_errno;
			snprintf(resp->error, sizeof(resp->error), "%s",
			         strerror((int)os_errno));
		}
	}
	resp->status = 0;
	rc = omni_error_set(rc, "%s %s: %s", method_of(req), url, resp->error);
out:
	curl_slist_free_all(headers);
	/* Only a transfer that went well leaves a sound connection. */
	omni__curl_give(ep->pool, h, rc == 0);
	free(url);
	return rc;
}

void omni__http_response_finish(struct omni__http_response *resp)
{
	if (!resp)
		return;
	free(resp->body);
	resp->body = NULL;
	resp->body_len = 0;
}

/* --- errors --------------------------------------------------------------- */

int omni__http_status_to_errno(long status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 400:
		return -EINVAL;
	case 401:
	case 403:
		return -EACCES;
	case 404:
	case 410:
		return -ENOENT;
	case 405:
	case 501:
		return -ENOSYS;
	case 408:
	case 504:
		return -ETIMEDOUT;
	case 409:
		return -EEXIST;
	case 413:
		return -EFBIG;
	case 429:
	case 503:
		return -EAGAIN;
	case 507:
		return -ENOSPC;
	}
	if (status >= 400 && status < 600)
		return -EIO;
	return -EPROTO;
}

int omni__curl_to_errno(CURLcode code)
{
	switch (code) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CIPHER:
		return -EACCES;
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_ABORTED_BY_CALLBACK:
	case CURLE_WRITE_ERROR:
	case CURLE_READ_ERROR:
		return -ECANCELED;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EINVAL;
	case CURLE_FILESIZE_EXCEEDED:
		return -EFBIG;
	default:
		return -EIO;
	}
}

static const char *json_message(const cJSON *root)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");

	if (cJSON_IsString(m) && m->valuestring[0])
		return m->valuestring;
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
	if (cJSON_IsString(e) && e->valuestring[0])
		return e->valuestring;
	if (cJSON_IsObject(e)) {
		m = cJSON_GetObjectItemCaseSensitive(e, "message");
		if (cJSON_IsString(m) && m->valuestring[0])
			return m->valuestring;
	}
	return NULL;
}

const char *omni__http_error_text(const char *body, size_t len, char *out,
                                  size_t size)
{
	if (size == 0)
		return out;
	out[0] = '\0';
	if (!body || len == 0)
		return out;
	cJSON *root = cJSON_ParseWithLength(body, len);
	const char *msg = root ? json_message(root) : NULL;
	if (msg) {
		snprintf(out, size, "%s", msg);
	} else {
		/* Plain text: its first non-empty line. */
		size_t i = 0, n = 0;
		while (i < len && isspace((unsigned char)body[i]))
			i++;
		while (i < len && body[i] != '\r' && body[i] != '\n' &&
		       n + 1 < size)
			out[n++] = body[i++];
		out[n] = '\0';
	}
	cJSON_Delete(root);
	/* Trailing white space only clutters a message. */
	size_t n = strlen(out);
	while (n > 0 && isspace((unsigned char)out[n - 1]))
		out[--n] = '\0';
	return out;
}

int omni__http_check(const struct omni__http_response *resp, const char *fmt,
                     ...)
{
	char prefix[512], text[512];
	va_list ap;
	int err = omni__http_status_to_errno(resp->status);

	if (err == 0)
		return 0;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	omni__http_error_text(resp->body, resp->body_len, text, sizeof(text));
	if (text[0])
		return omni_error_set(err, "%s: %s (HTTP %ld)", prefix, text,
		                      resp->status);
	return omni_error_set(err, "%s: HTTP %ld", prefix, resp->status);
}

int omni__http_escape(const char *s, char *out, size_t size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		             (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		             c == '_' || c == '~';
		if (n + (plain ? 1 : 3) >= size)
			return omni_error_set(-ENAMETOOLONG,
			                      "http: value too long to escape");
		if (plain) {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	if (n >= size)
		return omni_error_set(-ENAMETOOLONG,
		                      "http: value too long to escape");
	out[n] = '\0';
	return 0;
}
