/*
 * tests/base/test_mux.c - channels over one stream (backends/base/mux.c), the
 * engine of the docker backend's agent mode, without Docker: two muxes over
 * a socketpair, the acceptor handing each channel to the test.
 *
 *   bytes both ways on a channel, EOF (CLOSE) each way
 *   many channels at once
 *   credit: 8 MiB on a channel nobody reads does not stop another channel,
 *           and all of it arrives afterwards, in order
 *   a refused channel (accept fails) reads EOF on the opener's side
 *   the stream's end closes every channel and later opens fail
 *   malformed frames (unknown type, too long, OPEN at the opener, more
 *   data than the window) end the run with -EPROTO
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "base/mux.h"

struct side {
	int fd; /* its end of the stream */
	struct omni__mux *m;
	pthread_t t;
	int rc;
};

/* The acceptor's channels: the test's ends, in order of OPEN. */
static int far_ends[64];
static int nfar;
static pthread_mutex_t far_lock = PTHREAD_MUTEX_INITIALIZER;
static bool refuse;

static ssize_t s_recv(void *ctx, void *buf, size_t len)
{
	struct side *s = ctx;
	ssize_t n = recv(s->fd, buf, len, MSG_DONTWAIT);
	return n < 0 ? (errno == EAGAIN ? -EAGAIN : -errno) : n;
}

static ssize_t s_send(void *ctx, const void *buf, size_t len)
{
	struct side *s = ctx;
	ssize_t n = send(s->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n < 0 ? (errno == EAGAIN ? -EAGAIN : -errno) : n;
}

static int s_accept(void *ctx, uint32_t id)
{
	int sv[2];

	(void)ctx;
	(void)id;
	if (refuse)
		return -ECONNREFUSED;
	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	pthread_mutex_lock(&far_lock);
	far_ends[nfar++] = sv[1];
	pthread_mutex_unlock(&far_lock);
	return sv[0];
}

static void *run(void *arg)
{
	struct side *s = arg;
	s->rc = omni__mux_run(s->m);
	return NULL;
}

static struct side opener, acceptor;

static void start_side(struct side *s, int fd, bool accepts)
{
	struct omni__mux_io io = {
		.recv = s_recv,
		.send = s_send,
		.in_fd = fd,
		.out_fd = fd,
		.ctx = s,
		.accept = accepts ? s_accept : NULL,
	};
	s->fd = fd;
	cr_assert(omni__mux_new(&s->m, &io) == 0);
	cr_assert(pthread_create(&s->t, NULL, run, s) == 0);
}

static void setup(void)
{
	int sv[2];

	signal(SIGPIPE, SIG_IGN);
	nfar = 0;
	refuse = false;
	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	start_side(&opener, sv[0], false);
	start_side(&acceptor, sv[1], true);
}

static void stop_side(struct side *s)
{
	if (!s->m)
		return;
	omni__mux_stop(s->m);
	pthread_join(s->t, NULL);
	omni__mux_free(s->m);
	s->m = NULL;
	close(s->fd);
}

static void teardown(void)
{
	stop_side(&opener);
	stop_side(&acceptor);
	for (int i = 0; i < nfar; i++)
		close(far_ends[i]);
}

TestSuite(mux, .init = setup, .fini = teardown, .timeout = 30);

static int far_end(int i)
{
	for (int n = 0; n < 500; n++) {
		pthread_mutex_lock(&far_lock);
		int fd = i < nfar ? far_ends[i] : -1;
		pthread_mutex_unlock(&far_lock);
		if (fd >= 0)
			return fd;
		usleep(2000);
	}
	cr_assert_fail("channel %d was never accepted", i);
	return -1;
}

static void read_exact(int fd, char *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		cr_assert(n > 0, "read: %zd (%s) after %zu of %zu", n,
		          strerror(errno), got, len);
		got += (size_t)n;
	}
}

Test(mux, bytes_both_ways_and_eof)
{
	int fd;
	char buf[16];

	cr_assert(omni__mux_open(opener.m, &fd) == 0);
	cr_assert(write(fd, "hello", 5) == 5);
	int far = far_end(0);
	read_exact(far, buf, 5);
	cr_assert(memcmp(buf, "hello", 5) == 0);
	cr_assert(write(far, "world!", 6) == 6);
	read_exact(fd, buf, 6);
	cr_assert(memcmp(buf, "world!", 6) == 0);
	/* Half-close each way: EOF arrives, the other way still works. */
	shutdown(fd, SHUT_WR);
	cr_assert_eq(read(far, buf, 1), 0);
	cr_assert(write(far, "x", 1) == 1);
	read_exact(fd, buf, 1);
	close(far);
	far_ends[0] = -1;
	cr_assert_eq(read(fd, buf, 1), 0);
	close(fd);
	/* Both sides forget the channel. */
	unsigned open_a = 1, open_b = 1, total;
	for (int i = 0; i < 200 && (open_a || open_b); i++) {
		usleep(5000);
		omni__mux_counts(opener.m, &open_a, &total);
		omni__mux_counts(acceptor.m, &open_b, &total);
	}
	cr_assert_eq(open_a, 0);
	cr_assert_eq(open_b, 0);
	cr_assert_eq(total, 1);
}

Test(mux, many_channels)
{
	int fds[20];
	char buf[8];

	for (int i = 0; i < 20; i++) {
		cr_assert(omni__mux_open(opener.m, &fds[i]) == 0);
		char c = (char)('a' + i);
		cr_assert(write(fds[i], &c, 1) == 1);
		/* Accepted in order of OPEN. */
		read_exact(far_end(i), buf, 1);
		cr_assert_eq(buf[0], c);
	}
	for (int i = 19; i >= 0; i--) {
		char c = (char)('A' + i);
		cr_assert(write(far_end(i), &c, 1) == 1);
		read_exact(fds[i], buf, 1);
		cr_assert_eq(buf[0], c);
		close(fds[i]);
	}
}

struct writer {
	int fd;
	size_t len;
};

static void *write_big(void *arg)
{
	struct writer *w = arg;
	char *buf = malloc(w->len);
	for (size_t i = 0; i < w->len; i++)
		buf[i] = (char)(i * 7);
	size_t off = 0;
	while (off < w->len) {
		ssize_t n = write(w->fd, buf + off, w->len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(buf);
	return NULL;
}

Test(mux, a_channel_nobody_reads_stops_only_itself)
{
	int slow, fast;
	char buf[8];
	pthread_t t;

	cr_assert(omni__mux_open(opener.m, &slow) == 0);
	cr_assert(write(slow, "s", 1) == 1);
	int far_slow = far_end(0);
	read_exact(far_slow, buf, 1);
	struct writer w = { .fd = far_slow, .len = 8u << 20 };
	cr_assert(pthread_create(&t, NULL, write_big, &w) == 0);
	usleep(200 * 1000); /* the window fills; nobody reads slow */
	cr_assert(omni__mux_open(opener.m, &fast) == 0);
	for (int i = 0; i < 50; i++) {
		cr_assert(write(fast, "p", 1) == 1);
		int far_fast = far_end(1);
		read_exact(far_fast, buf, 1);
		cr_assert(write(far_fast, "q", 1) == 1);
		read_exact(fast, buf, 1);
		cr_assert_eq(buf[0], 'q');
	}
	/* Now read it all, in order. */
	char *got = malloc(w.len);
	read_exact(slow, got, w.len);
	for (size_t i = 0; i < w.len; i++)
		if (got[i] != (char)(i * 7))
			cr_assert_fail("byte %zu differs", i);
	free(got);
	pthread_join(t, NULL);
	close(slow);
	close(fast);
}

Test(mux, a_refused_channel_reads_eof)
{
	int fd;
	char c;

	refuse = true;
	cr_assert(omni__mux_open(opener.m, &fd) == 0);
	cr_assert(write(fd, "x", 1) == 1);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 5000), 1);
	cr_assert_eq(read(fd, &c, 1), 0);
	close(fd);
}

Test(mux, the_streams_end_closes_channels)
{
	int fd, fd2;
	char c;

	cr_assert(omni__mux_open(opener.m, &fd) == 0);
	cr_assert(write(fd, "x", 1) == 1);
	far_end(0);
	stop_side(&acceptor); /* closes its end of the stream */
	pthread_join(opener.t, NULL);
	cr_assert_eq(opener.rc, 0, "EOF is a clean end: %d", opener.rc);
	cr_assert_eq(read(fd, &c, 1), 0);
	cr_assert_eq(omni__mux_open(opener.m, &fd2), -ECONNRESET);
	close(fd);
	omni__mux_free(opener.m);
	opener.m = NULL;
	close(opener.fd);
}

/* Write raw frames at the acceptor; its run must end with -EPROTO. */
static void expect_eproto(const uint8_t *frame, size_t len)
{
	stop_side(&opener); /* the test speaks for it */
	int sv[2];
	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	stop_side(&acceptor);
	start_side(&acceptor, sv[1], true);
	cr_assert(write(sv[0], frame, len) == (ssize_t)len);
	pthread_join(acceptor.t, NULL);
	cr_assert_eq(acceptor.rc, -EPROTO);
	omni__mux_free(acceptor.m);
	acceptor.m = NULL;
	close(acceptor.fd);
	close(sv[0]);
}

Test(mux, unknown_frame_type_is_eproto)
{
	const uint8_t f[] = { 9, 0, 0, 0, 1, 0, 0, 0, 0 };
	expect_eproto(f, sizeof(f));
}

Test(mux, oversized_frame_is_eproto)
{
	const uint8_t f[] = { OMNI__MUX_DATA, 0, 0, 0, 1, 0x7f, 0, 0, 0 };
	expect_eproto(f, sizeof(f));
}

Test(mux, bad_window_frame_is_eproto)
{
	/* Credit beyond the window: more back than was ever sent. */
	const uint8_t f[] = { OMNI__MUX_OPEN,
		              0,
		              0,
		              0,
		              1,
		              0,
		              0,
		              0,
		              0,
		              OMNI__MUX_WINDOW,
		              0,
		              0,
		              0,
		              1,
		              0,
		              0,
		              0,
		              4,
		              0,
		              0,
		              0,
		              2 };
	expect_eproto(f, sizeof(f));
}

Test(mux, more_than_the_window_is_eproto)
{
	/* OPEN, then DATA frames beyond 1 MiB while the test end of the
	 * channel is never read. */
	size_t n = 2 * OMNI__MUX_WINDOW_SZ / OMNI__MUX_MAX_DATA + 4;
	size_t len =
	    OMNI__MUX_HEADER + n * (OMNI__MUX_HEADER + OMNI__MUX_MAX_DATA);
	uint8_t *f = calloc(1, len);
	f[0] = OMNI__MUX_OPEN;
	f[4] = 1;
	for (size_t i = 0; i < n; i++) {
		uint8_t *h = f + OMNI__MUX_HEADER +
		             i * (OMNI__MUX_HEADER + OMNI__MUX_MAX_DATA);
		h[0] = OMNI__MUX_DATA;
		h[4] = 1;
		h[5] = (uint8_t)(OMNI__MUX_MAX_DATA >> 24);
		h[6] = (uint8_t)(OMNI__MUX_MAX_DATA >> 16);
		h[7] = (uint8_t)(OMNI__MUX_MAX_DATA >> 8);
		h[8] = (uint8_t)OMNI__MUX_MAX_DATA;
	}
	/* Keep the accepted end full: make its buffer small and never read. */
	stop_side(&opener);
	int sv[2];
	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	stop_side(&acceptor);
	start_side(&acceptor, sv[1], true);
	/* Until it stops reading (it has seen too much). */
	size_t off = 0;
	struct pollfd p = { .fd = sv[0], .events = POLLOUT };
	while (off < len && poll(&p, 1, 500) == 1) {
		ssize_t w = send(sv[0], f + off, len - off, MSG_DONTWAIT);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	pthread_join(acceptor.t, NULL);
	cr_assert_eq(acceptor.rc, -EPROTO);
	omni__mux_free(acceptor.m);
	acceptor.m = NULL;
	close(acceptor.fd);
	close(sv[0]);
	free(f);
}
