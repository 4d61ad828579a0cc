/*
 * tests/support/http_fake.c - the canned-reply HTTP server of the http and
 * docker suites (see http_fake.h). Deliberately minimal: it reads a request
 * head up to the blank line and a Content-Length or chunked body, writes one
 * reply and closes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "http_fake.h"

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/* Read until the head is complete and the body (Content-Length, or a
 * chunked body up to its last chunk) has arrived. */
static size_t read_request(int fd, char *buf, size_t size, size_t *head_len)
{
	size_t len = 0;

	*head_len = 0;
	for (;;) {
		if (len + 1 >= size)
			break;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 5000) <= 0)
			break;
		ssize_t n = recv(fd, buf + len, size - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		*head_len = (size_t)(end - buf) + 4;
		const char *cl = strcasestr(buf, "\r\nContent-Length:");
		if (cl && cl < end) {
			size_t want = strtoul(cl + 17, NULL, 10);
			if (len >= *head_len + want)
				break;
			continue;
		}
		const char *te =
		    strcasestr(buf, "\r\nTransfer-Encoding: chunked");
		if (te && te < end) {
			if (strstr(buf + *head_len, "\r\n0\r\n\r\n") ||
			    strncmp(buf + *head_len, "0\r\n\r\n", 5) == 0)
				break;
			continue;
		}
		break;
	}
	buf[len] = '\0';
	return len;
}

/* Undo chunked transfer encoding in place; returns the new length. */
static size_t unchunk(char *body, size_t len)
{
	size_t in = 0, out = 0;

	while (in < len) {
		char *end;
		unsigned long n = strtoul(body + in, &end, 16);
		const char *crlf = strstr(end, "\r\n");
		if (!crlf || n == 0)
			break;
		in = (size_t)(crlf - body) + 2;
		if (in + n > len)
			n = len - in;
		memmove(body + out, body + in, n);
		out += n;
		in += n + 2;
	}
	return out;
}

static void serve(struct http_fake *f, int fd)
{
	const size_t req_size = 65536;
	char *req = malloc(req_size);
	char method[16] = "", target[2048] = "";
	char reply[1024];
	size_t head_len, len;

	if (!req)
		return;
	len = read_request(fd, req, req_size, &head_len);
	if (head_len == 0 || sscanf(req, "%15s %2047s", method, target) != 2) {
		free(req);
		return;
	}
	char *body = req + head_len;
	size_t body_len = len - head_len;
	const char *te = strcasestr(req, "\r\nTransfer-Encoding: chunked");
	if (te && te < req + head_len)
		body_len = unchunk(body, body_len);

	pthread_mutex_lock(&f->lock);
	f->requests++;
	snprintf(f->last_method, sizeof(f->last_method), "%s", method);
	snprintf(f->last_target, sizeof(f->last_target), "%s", target);
	snprintf(f->last_headers, sizeof(f->last_headers), "%.*s",
	         (int)head_len, req);
	f->last_body_len = body_len < sizeof(f->last_body) - 1
	                       ? body_len
	                       : sizeof(f->last_body) - 1;
	memcpy(f->last_body, body, f->last_body_len);
	f->last_body[f->last_body_len] = '\0';
	pthread_mutex_unlock(&f->lock);

	const struct http_fake_route *r = NULL;
	for (size_t i = 0; i < f->nroutes && !r; i++) {
		const struct http_fake_route *c = &f->routes[i];
		if ((!c->method || strcmp(c->method, method) == 0) &&
		    strncmp(target, c->path, strlen(c->path)) == 0)
			r = c;
	}
	char notfound[2200];
	struct http_fake_route nf = { .status = 404, .body = notfound };
	if (!r) {
		snprintf(notfound, sizeof(notfound),
		         "{\"message\":\"no route for %s %s\"}", method,
		         target);
		r = &nf;
	}
	if (r->delay_ms)
		sleep_ms(r->delay_ms);
	const char *rb = r->body ? r->body : "";
	size_t rlen = strlen(rb);
	int n;
	if (r->split)
		n = snprintf(reply, sizeof(reply),
		             "HTTP/1.1 %d Fake\r\nContent-Type: %s\r\n"
		             "X-Fake: yes\r\nConnection: close\r\n\r\n",
		             r->status,
		             r->content_type ? r->content_type
		                             : "application/json");
	else
		n = snprintf(reply, sizeof(reply),
		             "HTTP/1.1 %d Fake\r\nContent-Type: %s\r\n"
		             "Content-Length: %zu\r\nX-Fake: yes\r\n"
		             "Connection: close\r\n\r\n",
		             r->status,
		             r->content_type ? r->content_type
		                             : "application/json",
		             rlen);
	write_all(fd, reply, (size_t)n);
	if (strcmp(method, "HEAD") == 0) {
		/* No body. */
	} else if (r->split) {
		write_all(fd, rb, rlen / 2);
		sleep_ms(r->split_ms);
		write_all(fd, rb + rlen / 2, rlen - rlen / 2);
	} else {
		write_all(fd, rb, rlen);
	}
	free(req);
}

static void *server_main(void *arg)
{
	struct http_fake *f = arg;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = f->listen_fd, .events = POLLIN },
			{ .fd = f->stop_pipe[0], .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		int fd = accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve(f, fd);
		shutdown(fd, SHUT_WR);
		close(fd);
	}
	return NULL;
}

void http_fake_start(struct http_fake *f, const char *unix_path,
                     const struct http_fake_route *routes, size_t nroutes)
{
	memset(f, 0, sizeof(*f));
	f->routes = routes;
	f->nroutes = nroutes;
	pthread_mutex_init(&f->lock, NULL);
	cr_assert(pipe2(f->stop_pipe, O_CLOEXEC) == 0);
	if (unix_path) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		cr_assert(strlen(unix_path) < sizeof(sa.sun_path),
		          "socket path too long: %s", unix_path);
		memcpy(sa.sun_path, unix_path, strlen(unix_path) + 1);
		snprintf(f->sock, sizeof(f->sock), "%s", unix_path);
		f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert(f->listen_fd >= 0);
		cr_assert(
		    bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
		    "bind %s: %s", unix_path, strerror(errno));
		snprintf(f->url, sizeof(f->url), "http://localhost");
	} else {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t sl = sizeof(sa);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		cr_assert(f->listen_fd >= 0);
		cr_assert(bind(f->listen_fd, (struct sockaddr *)&sa,
		               sizeof(sa)) == 0);
		cr_assert(getsockname(f->listen_fd, (struct sockaddr *)&sa,
		                      &sl) == 0);
		snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%u",
		         (unsigned)ntohs(sa.sin_port));
	}
	cr_assert(listen(f->listen_fd, 16) == 0);
	cr_assert(pthread_create(&f->thread, NULL, server_main, f) == 0);
	f->running = true;
}

void http_fake_stop(struct http_fake *f)
{
	if (!f->running)
		return;
	if (write(f->stop_pipe[1], "x", 1) != 1) {
		/* The pipe cannot be full; nothing else to do. */
	}
	pthread_join(f->thread, NULL);
	close(f->listen_fd);
	close(f->stop_pipe[0]);
	close(f->stop_pipe[1]);
	if (f->sock[0])
		unlink(f->sock);
	pthread_mutex_destroy(&f->lock);
	f->running = false;
}

void http_fake_last_target(struct http_fake *f, char *out, size_t size)
{
	pthread_mutex_lock(&f->lock);
	snprintf(out, size, "%s", f->last_target);
	pthread_mutex_unlock(&f->lock);
}
