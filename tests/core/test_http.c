/*
 * tests/core/test_http.c - backends/http.c: the two errno tables, the error
 * text extraction, escaping, and real requests against the loopback fake
 * server (http_fake.c) over TCP and over a Unix socket: bodies both ways,
 * headers, streaming, caps, timeouts, and the transport errors (missing
 * socket, refused connection); and the curl layer under it: the handle
 * pool (kept handles come back, failed ones and overflow are closed) and
 * omni__curl_setup()'s common options (User-Agent only when asked, never
 * Accept-Encoding).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "helpers.h"
#include "core/http.h"
#include "http_fake.h"

static struct http_fake fake;
static char tmp[PATH_MAX];

static void setup(void)
{
	cr_assert(omni_global_init() == 0);
}

static void teardown(void)
{
	http_fake_stop(&fake);
	if (tmp[0])
		omni_test_rm_rf(tmp);
	omni_global_shutdown();
	omni_test_leak_check();
}

TestSuite(http, .init = setup, .fini = teardown, .timeout = 30);

/* --- the tables ----------------------------------------------------------- */

struct status_case {
	long status;
	int err;
};

ParameterizedTestParameters(http, status_to_errno)
{
	static struct status_case cases[] = {
		{ 200, 0 },          { 201, 0 },       { 204, 0 },
		{ 0, -EPROTO },      { 101, -EPROTO }, { 304, -EPROTO },
		{ 400, -EINVAL },    { 401, -EACCES }, { 403, -EACCES },
		{ 404, -ENOENT },    { 405, -ENOSYS }, { 408, -ETIMEDOUT },
		{ 409, -EEXIST },    { 410, -ENOENT }, { 413, -EFBIG },
		{ 418, -EIO },       { 429, -EAGAIN }, { 500, -EIO },
		{ 501, -ENOSYS },    { 502, -EIO },    { 503, -EAGAIN },
		{ 504, -ETIMEDOUT }, { 507, -ENOSPC }, { 599, -EIO },
	};
	return cr_make_param_array(struct status_case, cases,
	                           sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct status_case *c, http, status_to_errno)
{
	cr_assert_eq(omni__http_status_to_errno(c->status), c->err,
	             "HTTP %ld gave %d, expected %d", c->status,
	             omni__http_status_to_errno(c->status), c->err);
}

struct curl_case {
	CURLcode code;
	int err;
};

ParameterizedTestParameters(http, curl_to_errno)
{
	static struct curl_case cases[] = {
		{ CURLE_OK, 0 },
		{ CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT },
		{ CURLE_COULDNT_CONNECT, -ECONNREFUSED },
		{ CURLE_OUT_OF_MEMORY, -ENOMEM },
		{ CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH },
		{ CURLE_COULDNT_RESOLVE_PROXY, -EHOSTUNREACH },
		{ CURLE_PEER_FAILED_VERIFICATION, -EACCES },
		{ CURLE_SSL_CONNECT_ERROR, -EACCES },
		{ CURLE_SSL_CERTPROBLEM, -EACCES },
		{ CURLE_GOT_NOTHING, -ECONNRESET },
		{ CURLE_RECV_ERROR, -ECONNRESET },
		{ CURLE_SEND_ERROR, -ECONNRESET },
		{ CURLE_PARTIAL_FILE, -ECONNRESET },
		{ CURLE_ABORTED_BY_CALLBACK, -ECANCELED },
		{ CURLE_WRITE_ERROR, -ECANCELED },
		{ CURLE_URL_MALFORMAT, -EINVAL },
		{ CURLE_UNSUPPORTED_PROTOCOL, -EINVAL },
		{ CURLE_FILESIZE_EXCEEDED, -EFBIG },
		{ CURLE_TOO_MANY_REDIRECTS, -EIO },
	};
	return cr_make_param_array(struct curl_case, cases,
	                           sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct curl_case *c, http, curl_to_errno)
{
	cr_assert_eq(omni__curl_to_errno(c->code), c->err,
	             "curl code %d (%s) gave %d, expected %d", (int)c->code,
	             curl_easy_strerror(c->code), omni__curl_to_errno(c->code),
	             c->err);
}

Test(http, error_text_from_json_and_plain_bodies)
{
	static const struct {
		const char *body, *want;
	} cases[] = {
		{ "{\"message\":\"No such image: x\"}", "No such image: x" },
		{ "{\"error\":{\"code\":404,\"message\":\"bucket gone\"}}",
		  "bucket gone" },
		{ "{\"error\":\"bad token\"}", "bad token" },
		{ "{\"message\":\"\",\"error\":\"second\"}", "second" },
		{ "plain failure\nsecond line", "plain failure" },
		{ "\n  padded text  \r\n", "padded text" },
		{ "{\"other\":1}", "{\"other\":1}" },
		{ "", "" },
	};
	char out[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		omni__http_error_text(cases[i].body, strlen(cases[i].body), out,
		                      sizeof(out));
		cr_assert_str_eq(out, cases[i].want, "case %zu", i);
	}
	omni__http_error_text(NULL, 0, out, sizeof(out));
	cr_assert_str_eq(out, "");
	/* Truncated to the buffer, still terminated. */
	omni__http_error_text("{\"message\":\"0123456789\"}", 24, out, 5);
	cr_assert_str_eq(out, "0123");
}

Test(http, check_quotes_the_server)
{
	struct omni__http_response r = { .status = 409 };
	char body[] = "{\"message\":\"name in use\"}";

	r.body = body;
	r.body_len = strlen(body);
	omni_assert_err(omni__http_check(&r, "creating %s", "x"), -EEXIST);
	cr_assert_str_eq(omni_error_last(),
	                 "creating x: name in use (HTTP 409)");
	r.status = 503;
	r.body = NULL;
	r.body_len = 0;
	omni_assert_err(omni__http_check(&r, "ping"), -EAGAIN);
	cr_assert_str_eq(omni_error_last(), "ping: HTTP 503");
	r.status = 204;
	omni_assert_ok(omni__http_check(&r, "ok"));
}

Test(http, escape)
{
	char out[64];

	omni_assert_ok(
	    omni__http_escape("ghcr.io/astral-sh/uv", out, sizeof(out)));
	cr_assert_str_eq(out, "ghcr.io%2Fastral-sh%2Fuv");
	omni_assert_ok(omni__http_escape("a b+c&d=e~_", out, sizeof(out)));
	cr_assert_str_eq(out, "a%20b%2Bc%26d%3De~_");
	omni_assert_ok(omni__http_escape("", out, sizeof(out)));
	cr_assert_str_eq(out, "");
	omni_assert_err(omni__http_escape("/////", out, 15), -ENAMETOOLONG);
	omni_assert_ok(omni__http_escape("/////", out, 16));
}

/* --- requests against the fake server ------------------------------------- */

static const struct http_fake_route routes[] = {
	{ "GET", "/hello", 200, "{\"hi\":1}", NULL, 0, false, 0 },
	{ "POST", "/echo", 201, "{\"Id\":\"abc\"}", NULL, 0, false, 0 },
	{ "PUT", "/upload", 200, "", NULL, 0, false, 0 },
	{ "DELETE", "/thing", 204, NULL, NULL, 0, false, 0 },
	{ "HEAD", "/head", 200, NULL, NULL, 0, false, 0 },
	{ "GET", "/missing", 404, "{\"message\":\"no such thing\"}", NULL, 0,
	  false, 0 },
	{ "GET", "/slow", 200, "late", "text/plain", 1500, false, 0 },
	{ "GET", "/stream", 200, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n", NULL, 0,
	  true, 100 },
	{ "GET", "/big", 200,
	  "0123456789012345678901234567890123456789012345678901234567890123",
	  "text/plain", 0, false, 0 },
};

static void endpoint(struct omni__http_endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	snprintf(ep->base_url, sizeof(ep->base_url), "%s", fake.url);
	if (fake.sock[0])
		snprintf(ep->unix_socket, sizeof(ep->unix_socket), "%s",
		         fake.sock);
}

static void start_tcp(void)
{
	http_fake_start(&fake, NULL, routes,
	                sizeof(routes) / sizeof(routes[0]));
}

Test(http, get_collects_the_body)
{
	struct omni__http_endpoint ep;
	struct omni__http_request req = { .path = "/hello?x=1" };
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	omni_assert_ok(omni__http_request(&ep, &req, &resp));
	cr_assert_eq(resp.status, 200);
	cr_assert_str_eq(resp.body, "{\"hi\":1}");
	cr_assert_eq(resp.body_len, 8);
	cr_assert_str_eq(fake.last_method, "GET");
	cr_assert_str_eq(fake.last_target, "/hello?x=1");
	omni__http_response_finish(&resp);
}

Test(http, post_sends_body_headers_and_content_type)
{
	struct omni__http_endpoint ep;
	const char *hdrs[] = { "X-Registry-Auth: e30=", NULL };
	struct omni__http_request req = {
		.path = "/echo",
		.body = "{\"Image\":\"x\"}",
		.body_len = 13,
		.content_type = "application/json",
		.headers = hdrs,
	};
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	omni_assert_ok(omni__http_request(&ep, &req, &resp));
	cr_assert_eq(resp.status, 201);
	cr_assert_str_eq(fake.last_method, "POST");
	cr_assert_str_eq(fake.last_body, "{\"Image\":\"x\"}");
	cr_assert(strcasestr(fake.last_headers,
	                     "Content-Type: application/json") != NULL,
	          "%s", fake.last_headers);
	cr_assert(strstr(fake.last_headers, "X-Registry-Auth: e30=") != NULL);
	cr_assert(strcasestr(fake.last_headers, "Expect:") == NULL);
	omni__http_response_finish(&resp);

	/* A POST with no body sends an empty one (not stdin). */
	struct omni__http_request empty = { .method = "POST", .path = "/echo" };
	omni_assert_ok(omni__http_request(&ep, &empty, &resp));
	cr_assert_eq(resp.status, 201);
	cr_assert_eq(fake.last_body_len, 0);
	cr_assert(strcasestr(fake.last_headers, "Content-Length: 0") != NULL);
	omni__http_response_finish(&resp);
}

static const char *upload_data = "streamed upload body";

static size_t read_body(void *buf, size_t size, void *payload)
{
	size_t *off = payload;
	size_t left = strlen(upload_data) - *off;
	size_t n = left < size ? left : size;

	if (n > 4)
		n = 4; /* several small reads */
	memcpy(buf, upload_data + *off, n);
	*off += n;
	return n;
}

Test(http, put_streams_a_body_of_unknown_size)
{
	struct omni__http_endpoint ep;
	size_t off = 0;
	struct omni__http_request req = {
		.method = "PUT",
		.path = "/upload",
		.read_body = read_body,
		.body_size = -1,
		.payload = &off,
	};
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	omni_assert_ok(omni__http_request(&ep, &req, &resp));
	cr_assert_eq(resp.status, 200);
	cr_assert_str_eq(fake.last_method, "PUT");
	cr_assert_str_eq(fake.last_body, upload_data);
	omni__http_response_finish(&resp);
}

Test(http, delete_and_head)
{
	struct omni__http_endpoint ep;
	struct omni__http_request del = { .method = "DELETE",
		                          .path = "/thing" };
	struct omni__http_request head = { .method = "HEAD", .path = "/head" };
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	omni_assert_ok(omni__http_request(&ep, &del, &resp));
	cr_assert_eq(resp.status, 204);
	cr_assert_str_eq(fake.last_method, "DELETE");
	omni__http_response_finish(&resp);
	omni_assert_ok(omni__http_request(&ep, &head, &resp));
	cr_assert_eq(resp.status, 200);
	cr_assert_str_eq(fake.last_method, "HEAD");
	omni__http_response_finish(&resp);
}

Test(http, error_status_is_a_reply_and_check_maps_it)
{
	struct omni__http_endpoint ep;
	struct omni__http_request req = { .path = "/missing" };
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	omni_assert_ok(omni__http_request(&ep, &req, &resp));
	cr_assert_eq(resp.status, 404);
	omni_assert_err(omni__http_check(&resp, "GET /missing"), -ENOENT);
	cr_assert_str_eq(omni_error_last(),
	                 "GET /missing: no such thing (HTTP 404)");
	omni__http_response_finish(&resp);
}

struct seen {
	char data[256];
	size_t len;
	int chunks;
	char header[64];
};

static int on_data(const void *data, size_t len, void *payload)
{
	struct seen *s = payload;

	cr_assert(s->len + len < sizeof(s->data));
	memcpy(s->data + s->len, data, len);
	s->len += len;
	s->chunks++;
	return 0;
}

static void on_header(const char *name, const char *value, void *payload)
{
	struct seen *s = payload;

	if (strcasecmp(name, "X-Fake") == 0)
		snprintf(s->header, sizeof(s->header), "%s", value);
}

Test(http, streams_a_body_to_the_callback)
{
	struct omni__http_endpoint ep;
	struct seen s = { 0 };
	struct omni__http_request req = {
		.path = "/stream",
		.on_data = on_data,
		.on_header = on_header,
		.payload = &s,
	};
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	omni_assert_ok(omni__http_request(&ep, &req, &resp));
	cr_assert_eq(resp.status, 200);
	cr_assert_null(resp.body);
	cr_assert_eq(s.len, strlen("{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"));
	cr_assert(s.chunks >= 2, "the body came in %d chunk(s)", s.chunks);
	cr_assert_str_eq(s.header, "yes");
	omni__http_response_finish(&resp);
}

static int refuse(const void *data, size_t len, void *payload)
{
	(void)data;
	(void)len;
	(void)payload;
	return omni_error_set(-EBADMSG, "the stream said no");
}

Test(http, callback_error_aborts_with_its_errno)
{
	struct omni__http_endpoint ep;
	struct omni__http_request req = { .path = "/stream",
		                          .on_data = refuse };
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	omni_assert_err(omni__http_request(&ep, &req, &resp), -EBADMSG);
	cr_assert_str_eq(omni_error_last(), "the stream said no");
	omni__http_response_finish(&resp);
}

Test(http, body_cap_gives_efbig)
{
	struct omni__http_endpoint ep;
	struct omni__http_request req = { .path = "/big", .max_body = 10 };
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	omni_assert_err(omni__http_request(&ep, &req, &resp), -EFBIG);
	omni__http_response_finish(&resp);
}

Test(http, timeout_gives_etimedout)
{
	struct omni__http_endpoint ep;
	struct omni__http_request req = { .path = "/slow", .timeout_ms = 200 };
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	long long t0 = omni_test_now_ms();
	omni_assert_err(omni__http_request(&ep, &req, &resp), -ETIMEDOUT);
	cr_assert(omni_test_now_ms() - t0 < 1200);
	cr_assert(strstr(omni_error_last(), "/slow") != NULL, "%s",
	          omni_error_last());
	cr_assert_eq(resp.status, 0);
	omni__http_response_finish(&resp);
}

Test(http, unix_socket)
{
	struct omni__http_endpoint ep;
	struct omni__http_request req = { .path = "/hello" };
	struct omni__http_response resp;
	char sock[PATH_MAX];

	omni_test_mkdtemp(tmp, sizeof(tmp));
	omni_test_fmt(sock, sizeof(sock), "%s/fake.sock", tmp);
	http_fake_start(&fake, sock, routes,
	                sizeof(routes) / sizeof(routes[0]));
	endpoint(&ep);
	omni_assert_ok(omni__http_request(&ep, &req, &resp));
	cr_assert_eq(resp.status, 200);
	cr_assert_str_eq(resp.body, "{\"hi\":1}");
	omni__http_response_finish(&resp);
}

Test(http, missing_unix_socket_is_enoent)
{
	struct omni__http_endpoint ep = { .base_url = "http://localhost" };
	struct omni__http_request req = { .path = "/_ping" };
	struct omni__http_response resp;

	omni_test_mkdtemp(tmp, sizeof(tmp));
	omni_test_fmt(ep.unix_socket, sizeof(ep.unix_socket), "%s/none.sock",
	              tmp);
	omni_assert_err(omni__http_request(&ep, &req, &resp), -ENOENT);
	cr_assert(strstr(omni_error_last(), "/_ping") != NULL, "%s",
	          omni_error_last());
	cr_assert(resp.error[0]);
	omni__http_response_finish(&resp);
}

Test(http, dead_unix_socket_is_econnrefused)
{
	struct omni__http_endpoint ep = { .base_url = "http://localhost" };
	struct omni__http_request req = { .path = "/_ping" };
	struct omni__http_response resp;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	/* A socket file nobody listens on, as a crashed daemon leaves. */
	omni_test_mkdtemp(tmp, sizeof(tmp));
	omni_test_fmt(sa.sun_path, sizeof(sa.sun_path), "%s/dead.sock", tmp);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	close(fd);
	snprintf(ep.unix_socket, sizeof(ep.unix_socket), "%s", sa.sun_path);
	omni_assert_err(omni__http_request(&ep, &req, &resp), -ECONNREFUSED);
	omni__http_response_finish(&resp);
}

Test(http, closed_tcp_port_is_econnrefused)
{
	struct omni__http_endpoint ep;
	struct omni__http_request req = { .path = "/" };
	struct omni__http_response resp;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	/* Take a free port, then let it go. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	close(fd);
	memset(&ep, 0, sizeof(ep));
	snprintf(ep.base_url, sizeof(ep.base_url), "http://127.0.0.1:%u",
	         (unsigned)ntohs(sa.sin_port));
	omni_assert_err(omni__http_request(&ep, &req, &resp), -ECONNREFUSED);
	omni__http_response_finish(&resp);
}

Test(http, full_url_overrides_the_base)
{
	struct omni__http_endpoint ep = { .base_url = "http://192.0.2.1:9" };
	char url[256];
	struct omni__http_response resp;

	start_tcp();
	omni_test_fmt(url, sizeof(url), "%s/hello", fake.url);
	struct omni__http_request req = { .path = url };
	omni_assert_ok(omni__http_request(&ep, &req, &resp));
	cr_assert_eq(resp.status, 200);
	omni__http_response_finish(&resp);
}

/* --- the curl layer ------------------------------------------------------- */

Test(http, pool_lends_kept_handles_back)
{
	struct omni__curl_pool pool;
	CURL *extra[OMNI__CURL_POOL_SIZE + 1];

	omni__curl_pool_init(&pool);
	CURL *a = omni__curl_take(&pool);
	cr_assert_not_null(a);
	omni__curl_give(&pool, a, true);
	cr_assert_eq(pool.count, 1);
	cr_assert_eq(omni__curl_take(&pool), a, "the idle handle comes back");
	cr_assert_eq(pool.count, 0);
	/* A handle whose transfer failed is not kept. */
	omni__curl_give(&pool, a, false);
	cr_assert_eq(pool.count, 0);
	/* The pool keeps OMNI__CURL_POOL_SIZE at most. */
	for (size_t i = 0; i < OMNI__CURL_POOL_SIZE + 1; i++)
		cr_assert_not_null(extra[i] = omni__curl_take(&pool));
	for (size_t i = 0; i < OMNI__CURL_POOL_SIZE + 1; i++)
		omni__curl_give(&pool, extra[i], true);
	cr_assert_eq(pool.count, OMNI__CURL_POOL_SIZE);
	omni__curl_pool_clear(&pool);
	cr_assert_eq(pool.count, 0);
	/* Without a pool: always a new handle, cleaned up on giving. */
	CURL *b = omni__curl_take(NULL);
	cr_assert_not_null(b);
	omni__curl_give(NULL, b, true);
	omni__curl_pool_destroy(&pool);
}

Test(http, pooled_endpoint_reuses_handles)
{
	struct omni__curl_pool pool;
	struct omni__http_endpoint ep;
	struct omni__http_request req = { .path = "/hello" };
	struct omni__http_response resp;

	start_tcp();
	endpoint(&ep);
	omni__curl_pool_init(&pool);
	ep.pool = &pool;
	for (int i = 0; i < 3; i++) {
		omni_assert_ok(omni__http_request(&ep, &req, &resp));
		cr_assert_eq(resp.status, 200);
		cr_assert_str_eq(resp.body, "{\"hi\":1}");
		omni__http_response_finish(&resp);
		cr_assert_eq(pool.count, 1, "one handle, given back each time");
	}
	/* No User-Agent unless asked for: the Docker API never had one. */
	cr_assert_null(strcasestr(fake.last_headers, "User-Agent:"));
	/* A transport failure closes the handle instead of keeping it. */
	http_fake_stop(&fake);
	omni_assert_err(omni__http_request(&ep, &req, &resp), -ECONNREFUSED);
	omni__http_response_finish(&resp);
	cr_assert_eq(pool.count, 0);
	omni__curl_pool_destroy(&pool);
}

static size_t sink(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void)ptr;
	(void)userdata;
	return size * nmemb;
}

Test(http, setup_sets_the_common_options)
{
	struct omni__http_endpoint ep;
	char url[256], errbuf[CURL_ERROR_SIZE] = "";
	long status = 0;

	start_tcp();
	endpoint(&ep);
	omni_test_fmt(url, sizeof(url), "%s/hello", fake.url);
	CURL *h = omni__curl_take(NULL);
	omni__curl_setup(h, &(struct omni__curl_opts){
	                        .url = url,
	                        .errbuf = errbuf,
	                        .write = sink,
	                        .timeout_ms = 5000,
	                        .user_agent = OMNI__HTTP_USER_AGENT,
	                        .ep = &ep,
	                    });
	cr_assert_eq(curl_easy_perform(h), CURLE_OK, "%s", errbuf);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	cr_assert_eq(status, 200);
	cr_assert_not_null(
	    strstr(fake.last_headers, "User-Agent: " OMNI__HTTP_USER_AGENT));
	/* No Accept-Encoding: e2b /files bodies must come back plain. */
	cr_assert_null(strcasestr(fake.last_headers, "Accept-Encoding"));
	omni__curl_give(NULL, h, true);
}
