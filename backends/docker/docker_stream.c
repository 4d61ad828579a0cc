/*
 * backends/docker/docker_stream.c - a hijacked Engine API connection (POST
 * /exec/{id}/start with "Upgrade: tcp") as a raw, two-way byte stream, over
 * every transport the API client has: unix://, tcp://, tcp:// with TLS and
 * ssh:// (see docker.h).
 *
 * How. libcurl connects (CURLOPT_CONNECT_ONLY: the TCP and TLS handshakes,
 * the Unix socket, or the ssh dial of docker_host.c through the
 * endpoint's dial hook), then the request is written by hand with
 * curl_easy_send() and the head read with curl_easy_recv() up to the blank
 * line, which is the only way libcurl 7.88 gives a writable stream after a
 * 101 (docker.md A.8). Bytes that came after the head are the first of the
 * stream and are handed out first. Afterwards recv and send never block:
 * they return -EAGAIN, and the caller polls omni__docker_stream_fd(). Under
 * TLS, OpenSSL may hold decrypted bytes poll() cannot see, so callers read
 * until -EAGAIN before they poll (base/mux.c does).
 *
 * No half-close: it cannot be done under TLS with libcurl 7.88, and the
 * mux never needs one (closing the stream ends it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "docker/docker.h"
#include "omni/error.h"

#define HEAD_MAX 16384

/* Wait for fd to be readable (out false) or writable until deadline. */
static int wait_fd(int fd, bool out, long long deadline)
{
	struct pollfd p = { .fd = fd, .events = out ? POLLOUT : POLLIN };
	long long left = deadline - omni__now_ms();

	if (left <= 0)
		return -ETIMEDOUT;
	int r = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
	if (r < 0 && errno != EINTR)
		return -errno;
	return 0;
}

static int send_all(struct omni__docker_stream *s, const char *p, size_t len,
                    long long deadline)
{
	while (len > 0) {
		size_t n = 0;
		CURLcode c = curl_easy_send(s->h, p, len, &n);
		if (c == CURLE_AGAIN) {
			int rc = wait_fd(s->fd, true, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		if (c != CURLE_OK)
			return omni__curl_to_errno(c);
		p += n;
		len -= n;
	}
	return 0;
}

/* Read up to the blank line; the rest stays in s->pre. */
static int read_head(struct omni__docker_stream *s, char *head, size_t *hlen,
                     long long deadline)
{
	size_t len = 0;

	for (;;) {
		size_t n = 0;
		CURLcode c =
		    curl_easy_recv(s->h, head + len, HEAD_MAX - len, &n);
		if (c == CURLE_AGAIN) {
			int rc = wait_fd(s->fd, false, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		if (c != CURLE_OK)
			return omni__curl_to_errno(c);
		if (n == 0)
			return -ECONNRESET;
		len += n;
		head[len] = '\0';
		char *end = strstr(head, "\r\n\r\n");
		if (end) {
			size_t used = (size_t)(end + 4 - head);
			s->pre_len = len - used;
			if (s->pre_len) {
				s->pre = malloc(s->pre_len);
				if (!s->pre)
					return -ENOMEM;
				memcpy(s->pre, end + 4, s->pre_len);
			}
			*hlen = used;
			return 0;
		}
		if (len >= HEAD_MAX - 1)
			return -EPROTO;
	}
}

/* The base path of a tcp:// URL ("https://h:2376/base" -> "/base"). */
static const char *base_path(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? strchr(p + 3, '/') : NULL;
	return p ? p : "";
}

int omni__docker_stream_open(const struct omni__docker_api *api,
                             const char *path, const char *json,
                             long timeout_ms, struct omni__docker_stream *s)
{
	char url[1100], errbuf[CURL_ERROR_SIZE] = "";
	char head[HEAD_MAX + 1];
	char *req = NULL;
	long long deadline = omni__now_ms() + timeout_ms;
	size_t hlen = 0;
	int rc;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (!(s->h = curl_easy_init()))
		return omni_error_set(-ENOMEM, "docker: out of memory");
	snprintf(url, sizeof(url), "%s/", api->ep.base_url);
	struct omni__curl_opts o = {
		.url = url,
		.errbuf = errbuf,
		.connect_timeout_ms = api->ep.connect_timeout_ms,
		.ep = &api->ep,
	};
	omni__curl_setup(s->h, &o);
	curl_easy_setopt(s->h, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(s->h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(s->h, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(s->h, CURLOPT_TCP_KEEPINTVL, 10L);
	CURLcode c = curl_easy_perform(s->h);
	if (c != CURLE_OK) {
		rc = omni_error_set(omni__curl_to_errno(c),
		                    "cannot reach the Docker daemon at %s: %s",
		                    api->host,
		                    errbuf[0] ? errbuf : curl_easy_strerror(c));
		goto fail;
	}
	curl_socket_t sock = CURL_SOCKET_BAD;
	curl_easy_getinfo(s->h, CURLINFO_ACTIVESOCKET, &sock);
	s->fd = (int)sock;
	size_t blen = json ? strlen(json) : 0;
	if (asprintf(&req,
	             "POST %s/v%s%s HTTP/1.1\r\nHost: docker\r\n"
	             "User-Agent: " OMNI__HTTP_USER_AGENT "\r\n"
	             "Content-Type: application/json\r\n"
	             "Connection: Upgrade\r\nUpgrade: tcp\r\n"
	             "Content-Length: %zu\r\n\r\n%s",
	             base_path(api->ep.base_url), api->version, path, blen,
	             json ? json : "") < 0) {
		req = NULL;
		rc = omni_error_set(-ENOMEM, "docker: out of memory");
		goto fail;
	}
	if ((rc = send_all(s, req, strlen(req), deadline)) < 0 ||
	    (rc = read_head(s, head, &hlen, deadline)) < 0) {
		rc = omni_error_set_errno(rc, "docker: POST %s at %s", path,
		                          api->host);
		goto fail;
	}
	int status = 0;
	if (sscanf(head, "HTTP/1.%*d %d", &status) != 1)
		status = 0;
	if (status != 101 && status != 200) {
		char msg[512];
		omni__http_error_text(s->pre ? s->pre : "", s->pre_len, msg,
		                      sizeof(msg));
		rc = omni_error_set(status >= 400
		                        ? omni__http_status_to_errno(status)
		                        : -EPROTO,
		                    "docker: POST %s: %s (HTTP %d)", path,
		                    msg[0] ? msg : "no upgrade", status);
		goto fail;
	}
	free(req);
	return 0;
fail:
	free(req);
	omni__docker_stream_close(s);
	return rc;
}

ssize_t omni__docker_stream_recv(struct omni__docker_stream *s, void *buf,
                                 size_t len)
{
	if (s->pre_off < s->pre_len) {
		size_t n = s->pre_len - s->pre_off;
		if (n > len)
			n = len;
		memcpy(buf, s->pre + s->pre_off, n);
		s->pre_off += n;
		return (ssize_t)n;
	}
	size_t n = 0;
	CURLcode c = curl_easy_recv(s->h, buf, len, &n);
	if (c == CURLE_AGAIN)
		return -EAGAIN;
	if (c != CURLE_OK)
		return -ECONNRESET;
	return (ssize_t)n;
}

ssize_t omni__docker_stream_send(struct omni__docker_stream *s, const void *buf,
                                 size_t len)
{
	size_t n = 0;
	CURLcode c = curl_easy_send(s->h, buf, len, &n);

	if (c == CURLE_AGAIN)
		return -EAGAIN;
	if (c != CURLE_OK)
		return -ECONNRESET;
	return (ssize_t)n;
}

void omni__docker_stream_close(struct omni__docker_stream *s)
{
	if (s->h)
		curl_easy_cleanup(s->h);
	s->h = NULL;
	s->fd = -1;
	free(s->pre);
	s->pre = NULL;
	s->pre_len = s->pre_off = 0;
}
