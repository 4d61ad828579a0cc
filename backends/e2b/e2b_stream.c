/*
 * backends/e2b/e2b_stream.c - Connect server streams over HTTP/1.1 (process
 * Start, filesystem WatchDir), read incrementally.
 *
 * Wire format (protocols/e2b.md section 4.2): the request is one envelope
 * [flags 0][length, 4 bytes big-endian][JSON]; the answer is HTTP 200 with
 * a sequence of envelopes, the last one flagged 0x02 (end of stream) whose
 * JSON carries {"error":{"code","message"}} when the call failed. A
 * non-200 answer is an error before the stream began (envd's token gate,
 * the proxy) and carries a JSON error body. Compressed envelopes (0x01)
 * are never asked for (no Connect-Accept-Encoding is sent) and are
 * refused.
 *
 * Design. Each stream has its own easy handle (set up by
 * omni__curl_setup(), like every libomni request, but never pooled: a
 * stream's connection ends with it) driven by its own multi handle, and only
 * inside omni__e2b_stream_next(): the caller's thread pumps the transfer,
 * parsed messages wait in a small queue, and a consumer that stops calling
 * stops the transfer (TCP then pushes back on the server), so memory stays
 * bounded without a thread per stream. Another thread may cancel: a flag plus
 * curl_multi_wakeup().
 *
 * Timeouts, our own clock: the first message (the start event) must come
 * within the handshake time, and afterwards some bytes within the idle
 * time; the server is asked for keepalive messages
 * (Keepalive-Ping-Interval) often enough that a live stream is never
 * idle that long. Connect-Timeout-Ms, when given, is the server's
 * deadline (for Start, the command's lifetime).
 *
 * Locking: a stream belongs to the thread that calls _next(); only the
 * cancel flag is touched by others.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2b/e2b.h"
#include "core/http.h"
#include "omni/error.h"
#include "omni/omni.h"

#define MAX_ENVELOPE (64u << 20)

/* --- envelopes ------------------------------------------------------------ */

static int parse_end(struct e2b_envelopes *p, const unsigned char *data,
                     size_t n)
{
	cJSON *root = cJSON_ParseWithLength((const char *)data, n);

	p->ended = true;
	if (!root)
		return omni_error_set(-EPROTO, "e2b: malformed end of stream");
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
	if (cJSON_IsObject(err)) {
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(err, "code");
		const cJSON *m =
		    cJSON_GetObjectItemCaseSensitive(err, "message");
		snprintf(p->end_code, sizeof(p->end_code), "%s",
		         cJSON_IsString(c) ? c->valuestring : "unknown");
		snprintf(p->end_msg, sizeof(p->end_msg), "%s",
		         cJSON_IsString(m) ? m->valuestring : "");
	}
	cJSON_Delete(root);
	return 0;
}

int omni__e2b_envelopes_feed(struct e2b_envelopes *p, const void *data,
                             size_t n, e2b_message_cb cb, void *payload)
{
	if (p->len + n > p->cap) {
		size_t cap = p->cap ? p->cap : 4096;
		while (cap < p->len + n)
			cap *= 2;
		unsigned char *b = realloc(p->buf, cap);
		if (!b)
			return omni_error_set(-ENOMEM, "e2b: out of memory");
		p->buf = b;
		p->cap = cap;
	}
	if (n > 0) {
		memcpy(p->buf + p->len, data, n);
		p->len += n;
	}

	size_t off = 0;
	int rc = 0;
	while (rc == 0 && p->len - off >= 5) {
		const unsigned char *h = p->buf + off;
		uint32_t len = (uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 |
		               (uint32_t)h[3] << 8 | h[4];
		if (len > MAX_ENVELOPE) {
			rc = omni_error_set(
			    -EPROTO, "e2b: stream envelope of %u bytes", len);
			break;
		}
		if (p->len - off - 5 < len)
			break;
		if (p->ended) {
			rc = omni_error_set(
			    -EPROTO, "e2b: data after the end of stream");
		} else if (h[0] & 0x02) {
			rc = parse_end(p, h + 5, len);
		} else if (h[0] & 0x01) {
			rc = omni_error_set(-EPROTO,
			                    "e2b: compressed stream message");
		} else {
			cJSON *msg =
			    cJSON_ParseWithLength((const char *)h + 5, len);
			if (!msg || !cJSON_IsObject(msg)) {
				cJSON_Delete(msg);
				rc = omni_error_set(
				    -EPROTO, "e2b: malformed stream message");
			} else {
				rc = cb(msg, payload);
			}
		}
		off += 5 + len;
	}
	if (off > 0) {
		memmove(p->buf, p->buf + off, p->len - off);
		p->len -= off;
	}
	return rc;
}

void omni__e2b_envelopes_finish(struct e2b_envelopes *p)
{
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

/* --- streams -------------------------------------------------------------- */

struct e2b_stream {
	struct e2b_backend *eb;
	enum e2b_method m;
	CURLM *multi;
	CURL *easy;
	struct curl_slist *headers;
	unsigned char *body;
	size_t body_len;
	char errbuf[CURL_ERROR_SIZE];

	struct e2b_envelopes env;
	cJSON **queue;
	size_t qhead, qlen, qcap;
	char *errbody; /* a non-200 answer's body */
	size_t errlen;
	int write_err;

	bool done;   /* the transfer is over */
	int end_err; /* how it ended (0 when cleanly) */
	char end_code[64];
	char end_msg[512];
	bool got_message;
	long long opened_ms, last_byte_ms;
	long handshake_ms, idle_ms;
	atomic_bool cancel;
};

static int enqueue(cJSON *msg, void *payload)
{
	struct e2b_stream *s = payload;

	if (s->qhead + s->qlen == s->qcap) {
		if (s->qhead > 0) {
			memmove(s->queue, s->queue + s->qhead,
			        s->qlen * sizeof(*s->queue));
			s->qhead = 0;
		} else {
			size_t cap = s->qcap ? s->qcap * 2 : 16;
			cJSON **q = realloc(s->queue, cap * sizeof(*q));
			if (!q) {
				cJSON_Delete(msg);
				return omni_error_set(-ENOMEM,
				                      "e2b: out of memory");
			}
			s->queue = q;
			s->qcap = cap;
		}
	}
	s->queue[s->qhead + s->qlen++] = msg;
	s->got_message = true;
	return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct e2b_stream *s = userdata;
	size_t n = size * nmemb;
	long status = 0;

	s->last_byte_ms = omni__now_ms();
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		if (s->errlen + n > 65536)
			return n; /* enough of an error text */
		char *b = realloc(s->errbody, s->errlen + n + 1);
		if (!b) {
			s->write_err = -ENOMEM;
			return 0;
		}
		memcpy(b + s->errlen, ptr, n);
		s->errlen += n;
		b[s->errlen] = '\0';
		s->errbody = b;
		return n;
	}
	int rc = omni__e2b_envelopes_feed(&s->env, ptr, n, enqueue, s);
	if (rc < 0) {
		s->write_err = rc;
		return 0;
	}
	return n;
}

int omni__e2b_stream_open(struct e2b_stream **out, struct e2b_backend *eb,
                          enum e2b_method m, const char *rpc_path,
                          const cJSON *msg, long handshake_ms, long idle_ms,
                          unsigned int timeout_ms)
{
	struct e2b_stream *s = calloc(1, sizeof(*s));
	char url[2048], line[512], b64[64];
	char *json = NULL;
	int rc = 0;

	*out = NULL;
	if (!s || !(json = cJSON_PrintUnformatted(msg))) {
		free(s);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	s->eb = eb;
	s->m = m;
	s->handshake_ms = handshake_ms;
	s->idle_ms = idle_ms;
	size_t jl = strlen(json);
	s->body = malloc(jl + 5);
	if (!s->body) {
		free(json);
		free(s);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	s->body[0] = 0;
	s->body[1] = (unsigned char)(jl >> 24);
	s->body[2] = (unsigned char)(jl >> 16);
	s->body[3] = (unsigned char)(jl >> 8);
	s->body[4] = (unsigned char)jl;
	memcpy(s->body + 5, json, jl);
	s->body_len = jl + 5;
	free(json);

	/* The breaker knows when the sandbox is unreachable. */
	if (atomic_load(&eb->down_since_ms) &&
	    omni__now_ms() < atomic_load(&eb->next_probe_ms)) {
		omni__e2b_stream_free(s);
		return omni__e2b_outage_error(eb, m);
	}

	const char *hdrs[8];
	size_t nh = 0;
	char h_id[256], h_tok[300], h_auth[128], h_keep[64], h_dl[64];
	snprintf(h_id, sizeof(h_id), "E2b-Sandbox-Id: %s", eb->sandbox_id);
	hdrs[nh++] = h_id;
	hdrs[nh++] = "E2b-Sandbox-Port: 49983";
	if (eb->access_token[0]) {
		snprintf(h_tok, sizeof(h_tok), "X-Access-Token: %s",
		         eb->access_token);
		hdrs[nh++] = h_tok;
	}
	omni__base64_encode(E2B_USER ":", strlen(E2B_USER ":"), false, b64,
	                    sizeof(b64));
	snprintf(h_auth, sizeof(h_auth), "Authorization: Basic %s", b64);
	hdrs[nh++] = h_auth;
	long keep = idle_ms / 3500;
	snprintf(h_keep, sizeof(h_keep), "Keepalive-Ping-Interval: %ld",
	         keep < 1 ? 1 : keep);
	hdrs[nh++] = h_keep;
	if (timeout_ms > 0) {
		snprintf(h_dl, sizeof(h_dl), "Connect-Timeout-Ms: %u",
		         timeout_ms);
		hdrs[nh++] = h_dl;
	}
	const char *fixed[] = { "Content-Type: application/connect+json",
		                "Connect-Protocol-Version: 1", "Expect:" };
	for (size_t i = 0; i < 3 && rc == 0; i++) {
		struct curl_slist *l = curl_slist_append(s->headers, fixed[i]);
		if (!l)
			rc = -ENOMEM;
		else
			s->headers = l;
	}
	for (size_t i = 0; i < nh && rc == 0; i++) {
		snprintf(line, sizeof(line), "%s", hdrs[i]);
		struct curl_slist *l = curl_slist_append(s->headers, line);
		if (!l)
			rc = -ENOMEM;
		else
			s->headers = l;
	}
	snprintf(url, sizeof(url), "%s%s", eb->envd_url, rpc_path);
	s->multi = curl_multi_init();
	s->easy = curl_easy_init();
	if (rc < 0 || !s->multi || !s->easy) {
		omni__e2b_stream_free(s);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	/* Our own clock bounds the stream (handshake and idle times), so
	 * curl gets only the connect timeout. */
	omni__curl_setup(s->easy, &(struct omni__curl_opts){
	                              .url = url,
	                              .errbuf = s->errbuf,
	                              .headers = s->headers,
	                              .write = on_write,
	                              .write_data = s,
	                              .connect_timeout_ms =
	                                  eb->connect_timeout_ms < handshake_ms
	                                      ? eb->connect_timeout_ms
	                                      : handshake_ms,
	                              .user_agent = OMNI__HTTP_USER_AGENT,
	                          });
	curl_easy_setopt(s->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, (char *)s->body);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE,
	                 (curl_off_t)s->body_len);
	curl_multi_add_handle(s->multi, s->easy);
	s->opened_ms = s->last_byte_ms = omni__now_ms();
	atomic_fetch_add(&eb->count[m], 1);
	*out = s;
	return 0;
}

/* The transfer finished: work out how. */
static void finish_transfer(struct e2b_stream *s, CURLcode cc)
{
	struct e2b_backend *eb = s->eb;
	const char *what = omni__e2b_method_name(s->m);
	long status = 0;

	s->done = true;
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	if (s->write_err < 0) {
		s->end_err = s->write_err;
		snprintf(s->end_msg, sizeof(s->end_msg), "%s",
		         omni_error_last());
		return;
	}
	if (cc != CURLE_OK) {
		s->end_err = omni__curl_to_errno(cc);
		snprintf(s->end_msg, sizeof(s->end_msg), "e2b: %s stream: %s",
		         what,
		         s->errbuf[0] ? s->errbuf : curl_easy_strerror(cc));
		if (s->end_err == -ETIMEDOUT || s->end_err == -ECONNREFUSED ||
		    s->end_err == -ECONNRESET) {
			long long zero = 0;
			atomic_store(&eb->down_err, s->end_err);
			atomic_store(&eb->next_probe_ms, omni__now_ms() + 1000);
			atomic_compare_exchange_strong(&eb->down_since_ms,
			                               &zero, omni__now_ms());
		}
		return;
	}
	atomic_store(&eb->down_since_ms, 0);
	if (status != 200) {
		struct e2b_http_resp r = { .status = status,
			                   .body = s->errbody,
			                   .len = s->errlen };
		s->end_err = omni__e2b_reply_error(&r, what);
		snprintf(s->end_msg, sizeof(s->end_msg), "%s",
		         omni_error_last());
		return;
	}
	if (!s->env.ended) {
		s->end_err = -EPROTO;
		snprintf(s->end_msg, sizeof(s->end_msg),
		         "e2b: %s stream ended without its end message", what);
		return;
	}
	if (s->env.end_code[0]) {
		snprintf(s->end_code, sizeof(s->end_code), "%s",
		         s->env.end_code);
		s->end_err = omni__e2b_code_to_errno(s->env.end_code, 0);
		if (s->end_err == 0 || s->end_err == -EPROTO)
			s->end_err = -EIO;
		snprintf(s->end_msg, sizeof(s->end_msg),
		         "e2b: %s: %.60s: %.400s", what, s->env.end_code,
		         s->env.end_msg);
	}
}

int omni__e2b_stream_next(struct e2b_stream *s, cJSON **msg, long wait_ms)
{
	long long start = omni__now_ms();
	const char *what = omni__e2b_method_name(s->m);

	*msg = NULL;
	for (;;) {
		if (s->qlen > 0) {
			*msg = s->queue[s->qhead++];
			s->qlen--;
			if (s->qlen == 0)
				s->qhead = 0;
			return 1;
		}
		if (s->done) {
			if (s->end_err < 0)
				omni_error_set(s->end_err, "%s", s->end_msg);
			return s->end_err == 0 || s->end_code[0] ? 0
			                                         : s->end_err;
		}
		if (atomic_load(&s->cancel))
			return omni_error_set(-ECANCELED, "e2b: %s: cancelled",
			                      what);
		long long now = omni__now_ms();
		if (!s->got_message && now - s->opened_ms > s->handshake_ms) {
			atomic_fetch_add(&s->eb->timeouts, 1);
			return omni_error_set(
			    -ETIMEDOUT,
			    "e2b: %s: no answer from the sandbox "
			    "within %ld ms",
			    what, s->handshake_ms);
		}
		if (s->got_message && now - s->last_byte_ms > s->idle_ms) {
			atomic_fetch_add(&s->eb->timeouts, 1);
			return omni_error_set(
			    -ETIMEDOUT,
			    "e2b: %s: the stream went silent for "
			    "%ld ms",
			    what, s->idle_ms);
		}
		if (wait_ms >= 0 && now - start >= wait_ms)
			return omni_error_set(-EAGAIN, "e2b: %s: nothing yet",
			                      what);

		int running = 0;
		CURLMcode mc = curl_multi_perform(s->multi, &running);
		if (mc != CURLM_OK)
			return omni_error_set(-EIO, "e2b: %s: %s", what,
			                      curl_multi_strerror(mc));
		CURLMsg *cm;
		int left;
		while ((cm = curl_multi_info_read(s->multi, &left))) {
			if (cm->msg == CURLMSG_DONE)
				finish_transfer(s, cm->data.result);
		}
		if (s->qlen > 0 || s->done)
			continue;
		int poll_ms = 200;
		if (wait_ms >= 0 && wait_ms - (now - start) < poll_ms)
			poll_ms = (int)(wait_ms - (now - start));
		if (poll_ms < 1)
			poll_ms = 1;
		curl_multi_poll(s->multi, NULL, 0, poll_ms, NULL);
	}
}

int omni__e2b_stream_end(const struct e2b_stream *s, const char **code,
                         const char **msg)
{
	if (code)
		*code = s->end_code;
	if (msg)
		*msg = s->end_msg;
	return s->end_err;
}

void omni__e2b_stream_cancel(struct e2b_stream *s)
{
	if (!s)
		return;
	atomic_store(&s->cancel, true);
	if (s->multi)
		curl_multi_wakeup(s->multi);
}

void omni__e2b_stream_free(struct e2b_stream *s)
{
	if (!s)
		return;
	if (s->multi && s->easy)
		curl_multi_remove_handle(s->multi, s->easy);
	if (s->easy)
		curl_easy_cleanup(s->easy);
	if (s->multi)
		curl_multi_cleanup(s->multi);
	curl_slist_free_all(s->headers);
	for (size_t i = 0; i < s->qlen; i++)
		cJSON_Delete(s->queue[s->qhead + i]);
	free(s->queue);
	free(s->errbody);
	free(s->body);
	omni__e2b_envelopes_finish(&s->env);
	free(s);
}
