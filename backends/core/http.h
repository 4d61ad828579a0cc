/*
 * backends/core/http.h - a small libcurl helper for the HTTP APIs libomni talks
 * to (private): the Docker Engine API over a Unix socket or TCP+TLS today, the
 * E2B control plane and envd, and Google Cloud Storage later.
 *
 * One call, omni__http_request(), performs one request on a curl easy
 * handle (CURLOPT_NOSIGNAL, so any thread may call it at any time): a
 * fresh one, or one taken from the endpoint's handle pool. The endpoint
 * says where to connect (a base URL, optionally through a Unix socket,
 * optionally with client certificates); the request says what to send and
 * how to take the reply: collected into a capped buffer, or streamed chunk
 * by chunk to a callback (progress streams, large downloads).
 *
 * The curl layer under it is shared with the clients that drive curl
 * themselves (the e2b backend's requests and streams): omni__curl_setup()
 * gives a handle the options every libomni request has, and a handle pool
 * (struct omni__curl_pool) lends idle handles out, so that requests to a
 * TLS server keep their connections.
 *
 * Errors: omni__http_request() returns 0 as soon as a reply came back,
 * whatever its status; the caller looks at resp->status, or calls
 * omni__http_check() to turn a non-2xx reply into -errno plus a message
 * quoting the server's own text. Transport failures return -errno
 * (omni__curl_to_errno(), refined by the socket's errno when connecting
 * failed: -ENOENT for a missing Unix socket, -EACCES for one we may not
 * open, -ECONNREFUSED) with resp->error holding curl's text.
 */
#ifndef OMNI_HTTP_H
#define OMNI_HTTP_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "omni/omni.h"

/* Default cap of a collected reply body. */
#define OMNI_HTTP_MAX_BODY (16u << 20)

/* --- the curl layer --------------------------------------------------- */

/* What libomni calls itself where a server wants to know. */
#define OMNI__HTTP_USER_AGENT "omnifs/" OMNI_VERSION

/*
 * A pool of idle easy handles. A handle keeps its connections across
 * curl_easy_reset(), so a handle given back after a good transfer and
 * taken again talks to the same server without a new TCP and TLS
 * handshake. A handle is lent to one request at a time (libcurl-thread(3));
 * only taking and giving back lock. Plain storage: init before use,
 * destroy after the last request.
 */
#define OMNI__CURL_POOL_SIZE 16
struct omni__curl_pool {
	pthread_mutex_t lock;
	CURL *idle[OMNI__CURL_POOL_SIZE];
	size_t count;
};

void omni__curl_pool_init(struct omni__curl_pool *pool);
/* Close the idle handles (their connections go with them). */
void omni__curl_pool_clear(struct omni__curl_pool *pool);
/* clear, then release the pool itself. */
void omni__curl_pool_destroy(struct omni__curl_pool *pool);

/* An idle handle (reset to default options when it was given back) or a
 * new one; pool NULL always makes a new one. NULL when out of memory. */
CURL *omni__curl_take(struct omni__curl_pool *pool);
/* Give h back: kept when keep (its transfer went well, so its connection
 * is sound) and the pool has room, else cleaned up. pool NULL cleans up. */
void omni__curl_give(struct omni__curl_pool *pool, CURL *h, bool keep);

/*
 * The options every request of libomni sets. Zero means "none" for the
 * optional ones; the strings and the header list must outlive the
 * transfer.
 */
struct omni__curl_opts {
	const char *url;
	char *errbuf; /* CURL_ERROR_SIZE bytes for curl's text, or NULL */
	struct curl_slist *headers;
	curl_write_callback write;
	void *write_data;
	long connect_timeout_ms; /* 0: 10 s */
	long timeout_ms;         /* the whole request; 0: no limit */
	long low_speed_s; /* abort below 1 byte/s for this long; 0: never */
	const char *user_agent; /* e.g. OMNI__HTTP_USER_AGENT; NULL: none */
	/* Unix socket and TLS settings, or NULL (TCP, system CAs). */
	const struct omni__http_endpoint *ep;
};

/* Set o on h, with CURLOPT_NOSIGNAL (any thread may run a transfer).
 * Never sets Accept-Encoding: bodies come back as the server has them. */
void omni__curl_setup(CURL *h, const struct omni__curl_opts *o);

/* --- requests --------------------------------------------------------- */

/* Where requests go. Plain storage: fill it in and pass it by pointer. */
struct omni__http_endpoint {
	/* "http://localhost", "https://host:2376/base": no trailing '/'. */
	char base_url[1024];
	/* Connect to this Unix socket instead of the URL's host ("": TCP). */
	char unix_socket[PATH_MAX];
	/* TLS: CA bundle, client certificate and key ("": none / system
	 * default); insecure skips verifying the server. */
	char ca_file[PATH_MAX];
	char cert_file[PATH_MAX];
	char key_file[PATH_MAX];
	bool insecure;
	/* Connection set-up limit; 0 means 10 s. */
	long connect_timeout_ms;
	/* Make the connections yourself (the docker backend's ssh://: a
	 * tunnel through `docker system dial-stdio` on the far side). Called
	 * when curl opens a new connection (CURLOPT_OPENSOCKETFUNCTION, never
	 * for a kept one): write the path of a Unix socket to connect to,
	 * which takes exactly one connection, into path and return 0, or
	 * -errno. NULL: curl connects to the URL's host, which should be an
	 * address ("127.0.0.1") when dial is set, so that curl dials once.
	 * dial_arg is the callee's. */
	int (*dial)(const struct omni__http_endpoint *ep, char *path,
	            size_t size);
	char dial_arg[1024];
	/* Handles to reuse (keep-alive), or NULL: a fresh handle, and so a
	 * fresh connection, for every request. */
	struct omni__curl_pool *pool;
};

/* A chunk of a 2xx reply body. Return 0 to go on, or a negative errno to
 * abort the transfer (omni__http_request() then returns it; set the message
 * yourself). */
typedef int (*omni__http_data_cb)(const void *data, size_t len, void *payload);

/* A reply header, split at the first ':' and trimmed. */
typedef void (*omni__http_header_cb)(const char *name, const char *value,
                                     void *payload);

/* Fill buf with up to size bytes of the request body; return the count, 0
 * at the end, or (size_t)-1 to abort. */
typedef size_t (*omni__http_read_cb)(void *buf, size_t size, void *payload);

struct omni__http_request {
	/* "GET", "POST", "PUT", "DELETE", "HEAD"...; NULL means GET, or
	 * POST when there is a body. */
	const char *method;
	/* Appended to the endpoint's base_url, or used as is when it holds
	 * "://". */
	const char *path;
	/* Extra "Name: value" headers, NULL-terminated, or NULL. */
	const char *const *headers;
	/* The body: bytes in memory, or read_body for a streamed one of
	 * body_size bytes (-1: unknown, sent chunked). */
	const void *body;
	size_t body_len;
	omni__http_read_cb read_body;
	long long body_size;
	const char *content_type; /* e.g. "application/json" */
	/* Limit on the whole request (0: none); for long streams use
	 * low_speed_s instead: abort when less than one byte a second came
	 * for that many seconds (0: never). */
	long timeout_ms;
	long low_speed_s;
	/* Optional: take a 2xx body chunk by chunk instead of collecting it
	 * (other statuses are always collected, for their error text). */
	omni__http_data_cb on_data;
	omni__http_header_cb on_header;
	void *payload;
	/* Cap of a collected body (0: OMNI_HTTP_MAX_BODY); -EFBIG past it. */
	size_t max_body;
};

struct omni__http_response {
	long status; /* HTTP status; 0 when no reply came */
	char *body;  /* collected body, NUL-terminated, or NULL */
	size_t body_len;
	/* curl's description of a transport failure, or "". */
	char error[CURL_ERROR_SIZE];
};

/*
 * Perform one request. *resp is reset first and must be released with
 * omni__http_response_finish() whatever the result. Returns 0 when a reply
 * arrived (any status), or -errno with a message "METHOD URL: what".
 */
int omni__http_request(const struct omni__http_endpoint *ep,
                       const struct omni__http_request *req,
                       struct omni__http_response *resp);
void omni__http_response_finish(struct omni__http_response *resp);

/*
 * 2xx gives 0. Otherwise -errno (omni__http_status_to_errno()) with the
 * message "<formatted prefix>: <server text> (HTTP <status>)".
 */
int omni__http_check(const struct omni__http_response *resp, const char *fmt,
                     ...) __attribute__((format(printf, 2, 3)));

/*
 * The server's explanation of an error reply, into out: the "message"
 * member of a JSON body ({"message": ..} as Docker and E2B send,
 * {"error": {"message": ..}} as Google APIs send, or {"error": ".."}),
 * else the body's first line. Always NUL-terminates; "" for an empty
 * body. Returns out.
 */
const char *omni__http_error_text(const char *body, size_t len, char *out,
                                  size_t size);

/*
 * Statuses to errnos: 2xx 0; 400 EINVAL; 401, 403 EACCES; 404, 410
 * ENOENT; 405, 501 ENOSYS; 408, 504 ETIMEDOUT; 409 EEXIST; 413 EFBIG;
 * 429, 503 EAGAIN; 507 ENOSPC; other 4xx and 5xx EIO; anything else
 * (no reply, 1xx, 3xx) EPROTO. Returned negative.
 */
int omni__http_status_to_errno(long status);

/*
 * curl results to errnos: OK 0; timeout ETIMEDOUT; cannot connect
 * ECONNREFUSED; out of memory ENOMEM; unresolvable host EHOSTUNREACH;
 * TLS failures EACCES; a connection cut or empty reply ECONNRESET; a
 * callback abort ECANCELED; a bad URL EINVAL; a too large file EFBIG;
 * anything else EIO. Returned negative.
 */
int omni__curl_to_errno(CURLcode code);

/*
 * Percent-encode s for a URL path segment or query value (everything but
 * A-Z a-z 0-9 - . _ ~). -ENAMETOOLONG when out is too small.
 */
int omni__http_escape(const char *s, char *out, size_t size);

#endif
