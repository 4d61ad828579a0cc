/*
 * tests/support/http_fake.h - a tiny HTTP/1.1 server for one test, on 127.0.0.1
 * (port 0, so tests never collide) or on a Unix socket.
 *
 * It serves canned replies from a table of routes (the first whose method
 * matches and whose path is a prefix of the request target), one
 * connection at a time on a thread of its own, "Connection: close" after
 * each reply, and records the last request (method, target, headers,
 * body) for the test to check. An unmatched request gets 404 with
 * {"message":"no route for METHOD TARGET"}.
 */
#ifndef OMNI_TESTS_HTTP_FAKE_H
#define OMNI_TESTS_HTTP_FAKE_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct http_fake_route {
	const char *method; /* NULL: any */
	const char *path;   /* prefix of the request target */
	int status;
	const char *body;         /* NULL: empty */
	const char *content_type; /* NULL: application/json */
	int delay_ms;             /* wait this long before answering */
	/* Send the body in two halves with split_ms between them (a stream
	 * cut across reads), and without Content-Length: the end of the
	 * body is the end of the connection. */
	bool split;
	int split_ms;
};

struct http_fake {
	int listen_fd;
	int stop_pipe[2];
	pthread_t thread;
	bool running;
	char url[128];       /* http://127.0.0.1:PORT, or http://localhost */
	char sock[PATH_MAX]; /* the Unix socket, or "" */
	const struct http_fake_route *routes;
	size_t nroutes;
	pthread_mutex_t lock;
	/* Under lock: */
	int requests;
	char last_method[16];
	char last_target[2048];
	char last_headers[4096];
	char last_body[8192];
	size_t last_body_len;
};

/* Start serving routes (borrowed; keep them alive) on a Unix socket at
 * unix_path, or on TCP loopback when it is NULL. Asserts on failure. */
void http_fake_start(struct http_fake *f, const char *unix_path,
                     const struct http_fake_route *routes, size_t nroutes);
void http_fake_stop(struct http_fake *f);

/* Copy the last request's target into out (under the lock). */
void http_fake_last_target(struct http_fake *f, char *out, size_t size);

#endif
