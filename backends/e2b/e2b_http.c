/*
 * backends/e2b/e2b_http.c - one request to the E2B control plane or to envd,
 * the Connect unary JSON calls on top, and how their failures become errnos.
 *
 * Design. Requests borrow a curl easy handle from the backend's pool
 * (core/http.h, struct omni__curl_pool) and give it back afterwards, so a
 * sandbox reached over TLS keeps its connections (a handle remembers its
 * connection across curl_easy_reset()); a request never shares a handle
 * with another one in flight, so no lock is held while it runs
 * (libcurl-thread(3)). The common options come from omni__curl_setup();
 * what is E2B's own (the headers, the breaker, writing /files bodies
 * straight into the caller's file, Last-Modified) stays here, as do
 * http.c's error mapping and message extraction, reused.
 *
 * Headers, as the official SDK sends them (protocols/e2b.md section 2):
 * envd requests carry E2b-Sandbox-Id, E2b-Sandbox-Port: 49983 and, when
 * the sandbox has one, X-Access-Token; Connect calls add
 * Connect-Protocol-Version: 1 and Authorization: Basic base64("user:")
 * (the RPCs' way of naming the user; /files takes ?username= instead).
 * Control-plane requests carry X-API-Key, which is never logged. No
 * Accept-Encoding is sent, so envd answers plain bodies with
 * Last-Modified and Range support.
 *
 * Timeouts. Every request has a connect timeout and a total one (the
 * request timeout, 10 s by default, OMNI_E2B_REQUEST_TIMEOUT in seconds).
 * Content transfers (/files) are bounded by progress instead: they fail
 * when no byte moved for the request timeout, counted from the request's
 * start (connecting included), so a large file may take its time but a
 * dead server cannot hold a caller longer than the request timeout. The
 * breaker: when envd stops answering (timeout, refused or reset connection),
 * the next envd requests fail at once with the same errno, except one probe a
 * second that is let through; the first answer closes the breaker again.
 * So with the server black-holed a FUSE call waits at most one request
 * timeout, and calls succeed again about a second after it returns.
 *
 * Errors. Connect replies carry {"code": "not_found", "message": ...};
 * omni__e2b_code_to_errno() maps the code (or the HTTP status when the
 * body is not a Connect error: envd's own {"code":401}, the proxy's 502)
 * to an errno. Transport failures come from omni__curl_to_errno().
 *
 * Locking: the pool has its own lock; counters are atomics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/fnv.h"
#include "e2b/e2b.h"
#include "core/http.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/omni.h"

/* Replies kept in memory (JSON, error texts). */
#define E2B_MAX_BODY (64u << 20)

static const char *const method_names[E2B_M_COUNT] = {
	[E2B_M_CREATE] = "create",
	[E2B_M_KILL] = "kill",
	[E2B_M_REFRESH] = "refresh",
	[E2B_M_STAT] = "Stat",
	[E2B_M_LISTDIR] = "ListDir",
	[E2B_M_MAKEDIR] = "MakeDir",
	[E2B_M_MOVE] = "Move",
	[E2B_M_REMOVE] = "Remove",
	[E2B_M_WATCHDIR] = "WatchDir",
	[E2B_M_FILES_GET] = "files.get",
	[E2B_M_FILES_POST] = "files.post",
	[E2B_M_START] = "Start",
	[E2B_M_SENDINPUT] = "SendInput",
	[E2B_M_SENDSIGNAL] = "SendSignal",
	[E2B_M_UPDATE] = "Update",
	[E2B_M_CLOSESTDIN] = "CloseStdin",
};

const char *omni__e2b_method_name(enum e2b_method m)
{
	return m < E2B_M_COUNT ? method_names[m] : "?";
}

int omni__e2b_abs(const char *rel, char *out, size_t size)
{
	int n = rel && rel[0] ? snprintf(out, size, "%s/%s", E2B_WORKDIR, rel)
	                      : snprintf(out, size, "%s", E2B_WORKDIR);

	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "e2b: path too long: %s",
		                      rel);
	return 0;
}

/* --- error mapping -------------------------------------------------------- */

static const struct {
	const char *code;
	int err;
} connect_codes[] = {
	{ "canceled", ECANCELED },
	{ "unknown", EIO },
	{ "invalid_argument", EINVAL },
	{ "deadline_exceeded", ETIMEDOUT },
	{ "not_found", ENOENT },
	{ "already_exists", EEXIST },
	{ "permission_denied", EACCES },
	{ "resource_exhausted", EAGAIN },
	{ "failed_precondition", EINVAL },
	{ "aborted", EAGAIN },
	{ "out_of_range", ERANGE },
	{ "unimplemented", ENOSYS },
	{ "internal", EIO },
	{ "unavailable", EAGAIN },
	{ "data_loss", EIO },
	{ "unauthenticated", EACCES },
};

int omni__e2b_code_to_errno(const char *code, long http_status)
{
	for (size_t i = 0;
	     code && i < sizeof(connect_codes) / sizeof(*connect_codes); i++) {
		if (strcmp(code, connect_codes[i].code) == 0)
			return -connect_codes[i].err;
	}
	/* The edge proxy's answer for a sandbox that is gone. */
	if (http_status == 502)
		return -ENOTCONN;
	return omni__http_status_to_errno(http_status);
}

int omni__e2b_reply_error(const struct e2b_http_resp *resp, const char *what)
{
	const char *code = NULL;
	char text[512] = "";
	cJSON *root = NULL;

	if (resp->body && resp->len) {
		root = cJSON_ParseWithLength(resp->body, resp->len);
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "code");
		if (cJSON_IsString(c))
			code = c->valuestring;
	}
	omni__http_error_text(resp->body, resp->len, text, sizeof(text));
	int err = omni__e2b_code_to_errno(code, resp->status);
	if (resp->status == 502 && !code)
		snprintf(text, sizeof(text), "the sandbox is not running");
	if (err == 0)
		err = -EPROTO;
	err = omni_error_set(err, "e2b: %s: %s%s%s (HTTP %ld)", what,
	                     code ? code : "", code && text[0] ? ": " : "",
	                     text, resp->status);
	cJSON_Delete(root);
	return err;
}

/* --- one request ---------------------------------------------------------- */

struct xfer {
	CURL *h;
	const struct e2b_http_req *req;
	struct e2b_http_resp *resp;
	size_t cap;
	off_t in_off;
	int err; /* set by a callback that aborted */
	/* Transfers: when a byte last moved (the request's start before
	 * the first), the counts then, and the idle bound. */
	long long moved_ms;
	curl_off_t moved_down, moved_up;
	long idle_ms;
};

/* A transfer fails when no byte moved for the request timeout, counted
 * from the request's start: connecting, sending and waiting for the
 * answer share one bound (libcurl's low-speed limit starts only after
 * the connection, so the two would add up). */
static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = userdata;
	long long now = omni__now_ms();

	(void)dltotal;
	(void)ultotal;
	if (dlnow != x->moved_down || ulnow != x->moved_up) {
		x->moved_down = dlnow;
		x->moved_up = ulnow;
		x->moved_ms = now;
		return 0;
	}
	if (now - x->moved_ms < x->idle_ms)
		return 0;
	x->err = -ETIMEDOUT;
	return 1;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	struct e2b_http_resp *r = x->resp;
	size_t n = size * nmemb;
	long status = 0;

	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
	if (x->req->out_fd >= 0 && status >= 200 && status < 300) {
		size_t done = 0;
		while (done < n) {
			ssize_t w = pwrite(x->req->out_fd, ptr + done, n - done,
			                   r->written);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				x->err = w < 0 ? -errno : -EIO;
				return 0;
			}
			done += (size_t)w;
			r->written += w;
		}
		return n;
	}
	if (r->len + n > E2B_MAX_BODY) {
		x->err = -EFBIG;
		return 0;
	}
	if (r->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 1024;
		while (cap < r->len + n + 1)
			cap *= 2;
		char *p = realloc(r->body, cap);
		if (!p) {
			x->err = -ENOMEM;
			return 0;
		}
		r->body = p;
		x->cap = cap;
	}
	memcpy(r->body + r->len, ptr, n);
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct xfer *x = userdata;
	size_t want = size * nitems;
	off_t left = x->req->in_size - x->in_off;

	if (left <= 0)
		return 0;
	if ((off_t)want > left)
		want = (size_t)left;
	for (;;) {
		ssize_t n = pread(x->req->in_fd, buf, want, x->in_off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			x->err = -errno;
			return CURL_READFUNC_ABORT;
		}
		if (n == 0) {
			/* The file shrank under us; what was announced cannot
			 * be sent. The caller keeps it dirty and retries. */
			x->err = -EAGAIN;
			return CURL_READFUNC_ABORT;
		}
		x->in_off += n;
		return (size_t)n;
	}
}

static int on_seek(void *userdata, curl_off_t offset, int origin)
{
	struct xfer *x = userdata;

	if (origin != SEEK_SET)
		return CURL_SEEKFUNC_CANTSEEK;
	x->in_off = (off_t)offset;
	return CURL_SEEKFUNC_OK;
}

static int add(struct curl_slist **list, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int add(struct curl_slist **list, const char *fmt, ...)
{
	char line[1536];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return -ENAMETOOLONG;
	struct curl_slist *l = curl_slist_append(*list, line);
	if (!l)
		return -ENOMEM;
	*list = l;
	return 0;
}

static int build_headers(struct e2b_backend *eb, const struct e2b_http_req *req,
                         struct curl_slist **out)
{
	struct curl_slist *l = NULL;
	int rc = 0;

	rc = add(&l, "Expect:");
	if (rc == 0 && req->content_type)
		rc = add(&l, "Content-Type: %s", req->content_type);
	if (req->api) {
		if (rc == 0 && eb->api_key)
			rc = add(&l, "X-API-Key: %s", eb->api_key);
	} else {
		if (rc == 0)
			rc = add(&l, "E2b-Sandbox-Id: %s", eb->sandbox_id);
		if (rc == 0)
			rc = add(&l, "E2b-Sandbox-Port: %d", E2B_ENVD_PORT);
		if (rc == 0 && eb->access_token[0])
			rc = add(&l, "X-Access-Token: %s", eb->access_token);
		if (rc == 0 && req->rpc) {
			char b64[64];
			omni__base64_encode(E2B_USER ":", strlen(E2B_USER ":"),
			                    false, b64, sizeof(b64));
			rc = add(&l, "Authorization: Basic %s", b64);
			if (rc == 0)
				rc = add(&l, "Connect-Protocol-Version: 1");
		}
	}
	if (rc < 0) {
		curl_slist_free_all(l);
		return omni_error_set(rc, "e2b: cannot build request headers");
	}
	*out = l;
	return 0;
}

static bool transport_failure(int err)
{
	return err == -ETIMEDOUT || err == -ECONNREFUSED ||
	       err == -ECONNRESET || err == -EHOSTUNREACH;
}

int omni__e2b_outage_error(struct e2b_backend *eb, enum e2b_method m)
{
	long long now = omni__now_ms();
	long long down = atomic_load(&eb->down_since_ms);
	long long next = atomic_load(&eb->next_probe_ms);
	long long wait_s = (next - now + 999) / 1000;
	int err = atomic_load(&eb->down_err);

	atomic_fetch_add(&eb->fast_fails, 1);
	return omni_error_set(
	    err ? err : -ETIMEDOUT,
	    "e2b: %s: the sandbox has not answered for %lld s (%s); not "
	    "retried: calls fail at once until it answers again (next probe "
	    "in %lld s)",
	    omni__e2b_method_name(m), down ? (now - down + 500) / 1000 : 0,
	    strerror(err ? -err : ETIMEDOUT), wait_s > 0 ? wait_s : 0);
}

/* The breaker's gate: 0 to go ahead, or -errno to fail at once. */
static int breaker_enter(struct e2b_backend *eb, const struct e2b_http_req *req,
                         bool *probe)
{
	*probe = false;
	if (req->api)
		return 0;
	long long down = atomic_load(&eb->down_since_ms);
	if (!down)
		return 0;
	long long now = omni__now_ms();
	long long next = atomic_load(&eb->next_probe_ms);
	if (now >= next &&
	    atomic_compare_exchange_strong(&eb->next_probe_ms, &next,
	                                   now + eb->req_timeout_ms + 1000)) {
		*probe = true;
		return 0;
	}
	return omni__e2b_outage_error(eb, req->m);
}

/* started: when the request began, so that an outage is dated from the
 * first request that got no answer, not from the end of its wait. */
static void breaker_leave(struct e2b_backend *eb,
                          const struct e2b_http_req *req, int rc,
                          long long started)
{
	if (req->api)
		return;
	if (rc == 0) {
		if (atomic_exchange(&eb->down_since_ms, 0) != 0)
			omni_log(OMNI_LOG_INFO, "e2b: sandbox %s answers again",
			         eb->sandbox_id);
		return;
	}
	if (!transport_failure(rc))
		return;
	long long now = omni__now_ms();
	long long zero = 0;
	atomic_store(&eb->down_err, rc);
	atomic_store(&eb->next_probe_ms, now + 1000);
	if (atomic_compare_exchange_strong(&eb->down_since_ms, &zero, started))
		omni_log(OMNI_LOG_WARN, "e2b: sandbox %s does not answer: %s",
		         eb->sandbox_id, omni_error_last());
}

int omni__e2b_http(struct e2b_backend *eb, const struct e2b_http_req *req,
                   struct e2b_http_resp *resp)
{
	struct xfer x = { .req = req, .resp = resp };
	struct curl_slist *headers = NULL;
	char url[4096], errbuf[CURL_ERROR_SIZE] = "";
	const char *base = req->api ? eb->api_url : eb->envd_url;
	long timeout =
	    req->timeout_ms > 0 ? req->timeout_ms : eb->req_timeout_ms;
	bool probe;
	CURL *h;
	int rc;

	long long started = omni__now_ms();

	memset(resp, 0, sizeof(*resp));
	resp->last_modified = -1;
	if ((rc = breaker_enter(eb, req, &probe)) < 0)
		return rc;
	int n = snprintf(url, sizeof(url), "%s%s", base, req->path);
	if (n < 0 || (size_t)n >= sizeof(url))
		return omni_error_set(-ENAMETOOLONG, "e2b: URL too long");
	if ((rc = build_headers(eb, req, &headers)) < 0)
		return rc;
	if (!(h = omni__curl_take(&eb->pool))) {
		curl_slist_free_all(headers);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	x.h = h;
	atomic_fetch_add(&eb->count[req->m], 1);

	/* Transfers are bounded by progress (on_progress), other requests
	 * by the request timeout as a whole. */
	omni__curl_setup(
	    h, &(struct omni__curl_opts){
	           .url = url,
	           .errbuf = errbuf,
	           .headers = headers,
	           .write = on_write,
	           .write_data = &x,
	           .connect_timeout_ms = eb->connect_timeout_ms < timeout
	                                     ? eb->connect_timeout_ms
	                                     : timeout,
	           .timeout_ms = req->transfer ? 0 : timeout,
	           .user_agent = OMNI__HTTP_USER_AGENT,
	       });
	if (req->transfer) {
		x.moved_ms = started;
		x.idle_ms = timeout;
		curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
		curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	}
	curl_easy_setopt(h, CURLOPT_FILETIME, 1L);
	if (strcmp(req->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		if (req->in_fd >= 0) {
			curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
			curl_easy_setopt(h, CURLOPT_READDATA, &x);
			curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
			curl_easy_setopt(h, CURLOPT_SEEKDATA, &x);
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
			                 (curl_off_t)req->in_size);
		} else {
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
			                 (curl_off_t)req->body_len);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS,
			                 req->body ? req->body : "");
		}
	} else if (strcmp(req->method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	}

	CURLcode cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	curl_off_t ft = -1;
	if (curl_easy_getinfo(h, CURLINFO_FILETIME_T, &ft) == CURLE_OK)
		resp->last_modified = (long long)ft;
	if (req->in_fd >= 0)
		atomic_fetch_add(&eb->bytes_up, (unsigned long long)x.in_off);
	if (resp->written > 0)
		atomic_fetch_add(&eb->bytes_down,
		                 (unsigned long long)resp->written);
	const char *what = omni__e2b_method_name(req->m);
	if (cc == CURLE_OK) {
		rc = 0;
	} else if (x.err == -ETIMEDOUT) {
		atomic_fetch_add(&eb->timeouts, 1);
		rc = omni_error_set(
		    x.err, "e2b: %s: sandbox %s: nothing moved for %ld ms",
		    what, base, timeout);
	} else if (x.err < 0) {
		rc = omni_error_set_errno(x.err, "e2b: %s %s", what,
		                          x.err == -EFBIG ? "reply too large"
		                                          : "transfer");
	} else {
		rc = omni__curl_to_errno(cc);
		if (rc == -ETIMEDOUT)
			atomic_fetch_add(&eb->timeouts, 1);
		rc =
		    omni_error_set(rc, "e2b: %s: %s %s: %s", what,
		                   req->api ? "E2B API" : "sandbox", base,
		                   errbuf[0] ? errbuf : curl_easy_strerror(cc));
		resp->status = 0;
	}
	if (rc < 0)
		atomic_fetch_add(&eb->errors, 1);
	(void)probe;
	breaker_leave(eb, req, rc, started);
	curl_slist_free_all(headers);
	/* A handle whose transfer failed may hold a broken connection. */
	omni__curl_give(&eb->pool, h, cc == CURLE_OK);
	return rc;
}

void omni__e2b_resp_finish(struct e2b_http_resp *resp)
{
	free(resp->body);
	resp->body = NULL;
	resp->len = 0;
}

int omni__e2b_rpc(struct e2b_backend *eb, enum e2b_method m,
                  const char *rpc_path, const cJSON *msg, const char *what,
                  cJSON **out)
{
	struct e2b_http_resp resp;
	char label[1200];
	char *body = cJSON_PrintUnformatted(msg);
	int rc;

	if (out)
		*out = NULL;
	if (!body)
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	struct e2b_http_req req = {
		.m = m,
		.method = "POST",
		.path = rpc_path,
		.content_type = "application/json",
		.rpc = true,
		.body = body,
		.body_len = strlen(body),
		.in_fd = -1,
		.out_fd = -1,
	};
	snprintf(label, sizeof(label), "%s %s", omni__e2b_method_name(m),
	         what ? what : "");
	rc = omni__e2b_http(eb, &req, &resp);
	free(body);
	if (rc < 0)
		return rc;
	if (resp.status != 200) {
		rc = omni__e2b_reply_error(&resp, label);
		omni__e2b_resp_finish(&resp);
		return rc;
	}
	if (out) {
		*out =
		    cJSON_ParseWithLength(resp.body ? resp.body : "", resp.len);
		if (!*out || !cJSON_IsObject(*out)) {
			cJSON_Delete(*out);
			*out = NULL;
			rc = omni_error_set(-EPROTO, "e2b: %s: malformed reply",
			                    label);
		}
	}
	omni__e2b_resp_finish(&resp);
	return rc;
}

/* --- JSON helpers --------------------------------------------------------- */

static int digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int omni__e2b_parse_time(const char *s, struct timespec *out)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, sec;
	long nsec = 0;

	if (!s || strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' ||
	    digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) ||
	    s[16] != ':' || digits(s + 17, 2, &sec))
		return omni_error_set(-EPROTO, "e2b: bad timestamp '%s'",
		                      s ? s : "");
	const char *p = s + 19;
	if (*p == '.') {
		int nd = 0;
		p++;
		while (*p >= '0' && *p <= '9') {
			if (nd < 9) {
				nsec = nsec * 10 + (*p - '0');
				nd++;
			}
			p++;
		}
		if (nd == 0)
			return omni_error_set(-EPROTO,
			                      "e2b: bad timestamp '%s'", s);
		while (nd++ < 9)
			nsec *= 10;
	}
	long offset = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int oh, om;
		if (digits(p + 1, 2, &oh) || digits(p + 4, 2, &om))
			return omni_error_set(-EPROTO,
			                      "e2b: bad timestamp '%s'", s);
		offset = (oh * 3600L + om * 60L) * (*p == '+' ? 1 : -1);
		p += 6;
	} else {
		return omni_error_set(-EPROTO, "e2b: bad timestamp '%s'", s);
	}
	if (*p)
		return omni_error_set(-EPROTO, "e2b: bad timestamp '%s'", s);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	out->tv_sec = timegm(&tm) - offset;
	out->tv_nsec = nsec;
	return 0;
}

ino_t omni__e2b_ino(const char *abs_path)
{
	uint64_t h = omni__fnv1a64(OMNI__FNV64_SEED, abs_path);

	/* 0 and 1 mean "none" and "root" to some programs. */
	return (ino_t)(h < 2 ? h + 2 : h);
}

static uid_t owner_id(const char *name, bool group)
{
	char *end;

	if (!name || !*name)
		return 65534;
	if (strcmp(name, E2B_USER) == 0)
		return group ? getgid() : getuid();
	if (strcmp(name, "root") == 0)
		return 0;
	unsigned long v = strtoul(name, &end, 10);
	if (*end == '\0')
		return (uid_t)v;
	return 65534;
}

int omni__e2b_entry_to_stat(const cJSON *entry, struct stat *st)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(entry, "type");
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(entry, "path");
	const cJSON *size = cJSON_GetObjectItemCaseSensitive(entry, "size");
	const cJSON *mode = cJSON_GetObjectItemCaseSensitive(entry, "mode");
	const cJSON *perms =
	    cJSON_GetObjectItemCaseSensitive(entry, "permissions");
	const cJSON *owner = cJSON_GetObjectItemCaseSensitive(entry, "owner");
	const cJSON *group = cJSON_GetObjectItemCaseSensitive(entry, "group");
	const cJSON *mtime =
	    cJSON_GetObjectItemCaseSensitive(entry, "modifiedTime");
	const cJSON *target =
	    cJSON_GetObjectItemCaseSensitive(entry, "symlinkTarget");
	mode_t fmt = 0, extra = 0;

	memset(st, 0, sizeof(*st));
	if (!cJSON_IsObject(entry))
		return omni_error_set(-EPROTO, "e2b: entry is not an object");
	/* The Go FileMode text names the kind of the entry itself (type
	 * and mode describe a symlink's target). */
	if (cJSON_IsString(perms)) {
		const char *p = perms->valuestring;
		size_t len = strlen(p);
		/* Letters before the nine rwx ones: "drwxr-xr-x",
		 * "Lrwxrwxrwx", "-rwsr-xr-x" is "urwxr-xr-x" in Go. */
		size_t nprefix = len > 9 ? len - 9 : 0;
		for (size_t i = 0; i < nprefix; i++) {
			switch (p[i]) {
			case 'd':
				fmt = S_IFDIR;
				break;
			case 'L':
				fmt = S_IFLNK;
				break;
			case 'p':
				fmt = S_IFIFO;
				break;
			case 'S':
				fmt = S_IFSOCK;
				break;
			case 'D':
				if (!fmt)
					fmt = S_IFBLK;
				break;
			case 'c':
				fmt = S_IFCHR;
				break;
			case 'u':
				extra |= S_ISUID;
				break;
			case 'g':
				extra |= S_ISGID;
				break;
			case 't':
				extra |= S_ISVTX;
				break;
			default:
				break;
			}
		}
	}
	if (!fmt) {
		const char *t = cJSON_IsString(type) ? type->valuestring : "";
		if (strcmp(t, "FILE_TYPE_DIRECTORY") == 0)
			fmt = S_IFDIR;
		else if (strcmp(t, "FILE_TYPE_SYMLINK") == 0 ||
		         (!*t && cJSON_IsString(target)))
			fmt = S_IFLNK;
		else
			fmt = S_IFREG;
	}
	mode_t perm =
	    cJSON_IsNumber(mode) ? (mode_t)mode->valuedouble & 0777 : 0;
	if (fmt == S_IFLNK)
		perm = 0777;
	st->st_mode = fmt | extra | perm;
	if (cJSON_IsString(size)) {
		char *end;
		errno = 0;
		long long v = strtoll(size->valuestring, &end, 10);
		if (errno || *end || v < 0)
			return omni_error_set(-EPROTO, "e2b: bad size '%s'",
			                      size->valuestring);
		st->st_size = (off_t)v;
	} else if (cJSON_IsNumber(size)) {
		st->st_size = (off_t)size->valuedouble;
	}
	if (cJSON_IsString(mtime)) {
		int rc = omni__e2b_parse_time(mtime->valuestring, &st->st_mtim);
		if (rc < 0)
			return rc;
	}
	st->st_atim = st->st_mtim;
	st->st_ctim = st->st_mtim;
	st->st_uid =
	    owner_id(cJSON_IsString(owner) ? owner->valuestring : NULL, false);
	st->st_gid =
	    owner_id(cJSON_IsString(group) ? group->valuestring : NULL, true);
	/* No link counts come with an entry: 1 means "unknown" for
	 * directories too (find then skips its leaf optimisation). */
	st->st_nlink = 1;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_ino =
	    omni__e2b_ino(cJSON_IsString(path) ? path->valuestring : "");
	return 0;
}

bool omni__e2b_env_to_json(cJSON *obj, const char *const *env)
{
	bool ok = true;

	for (const char *const *x = env; ok && x && *x; x++) {
		const char *eq = strchr(*x, '=');
		char key[256];
		if (!eq || (size_t)(eq - *x) >= sizeof(key))
			continue;
		memcpy(key, *x, (size_t)(eq - *x));
		key[eq - *x] = '\0';
		cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
		ok = cJSON_AddStringToObject(obj, key, eq + 1) != NULL;
	}
	return ok;
}
