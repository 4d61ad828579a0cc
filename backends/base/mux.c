/*
 * backends/base/mux.c - channels over one stream with credit flow control
 * (see mux.h for the wire format and the rules).
 *
 * Design. One thread runs omni__mux_run(): a poll() loop over a wake pipe,
 * the stream and every channel's local descriptor, all non-blocking. The
 * stream is read on every turn until it has nothing more (TLS may hold
 * decrypted bytes poll() cannot see), and is always read: what arrives for
 * a channel is at most one window, kept in the channel's buffer until its
 * local end takes it. Outgoing frames go into one send queue of fixed
 * size whose front never moves while a send is pending (OpenSSL wants a
 * retried write at the same address); a channel's local end is read only
 * when the queue has room for a whole DATA frame and the channel has
 * credit. Control frames (OPEN, WINDOW, CLOSE) are made from the channels'
 * state by one pass per turn, so none is ever lost for want of room.
 *
 * Locking: m->lock guards the list of channels opened by other threads and
 * the ended flag; everything else belongs to the running thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/mux.h"

#define SQ_CAP     (1u << 20)
#define SQ_RESERVE (64u << 10) /* kept for control frames */
#define RQ_CHUNK   (256u << 10)
#define WINDOW_AT  (64u << 10) /* give credit back in steps this big */

struct chan {
	uint32_t id;
	int fd;
	uint8_t *out; /* received, not yet delivered to fd */
	size_t out_off, out_len, out_cap;
	size_t credit;    /* bytes we may still send */
	size_t delivered; /* to give back with WINDOW */
	bool open_sent;   /* opener: OPEN queued (acceptor: true) */
	bool eof_local;   /* fd gave EOF (or is gone): CLOSE owed */
	bool sent_close, got_close, shut_wr;
	bool dead; /* fd takes nothing more: drop what comes */
	struct chan *next;
};

struct omni__mux {
	struct omni__mux_io io;
	pthread_mutex_t lock;
	struct chan *adds; /* opened by omni__mux_open(), not yet run */
	bool ended, stop;
	uint32_t next_id;
	int wake[2];
	struct chan *chans;
	unsigned nchans, total;
	uint8_t *sq;
	size_t sq_off, sq_len;
	uint8_t *rq;
	size_t rq_len;
	struct pollfd *pfd;
	struct chan **pch;
	size_t pcap;
};

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

int omni__mux_new(struct omni__mux **out, const struct omni__mux_io *io)
{
	struct omni__mux *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (!m)
		return -ENOMEM;
	m->io = *io;
	m->sq = malloc(SQ_CAP);
	m->rq = malloc(RQ_CHUNK + OMNI__MUX_HEADER + OMNI__MUX_MAX_DATA);
	if (!m->sq || !m->rq) {
		free(m->sq);
		free(m->rq);
		free(m);
		return -ENOMEM;
	}
	if (pipe2(m->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		int rc = -errno;
		free(m->sq);
		free(m->rq);
		free(m);
		return rc;
	}
	pthread_mutex_init(&m->lock, NULL);
	*out = m;
	return 0;
}

static void chan_free(struct chan *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->out);
	free(c);
}

void omni__mux_free(struct omni__mux *m)
{
	if (!m)
		return;
	while (m->chans) {
		struct chan *c = m->chans;
		m->chans = c->next;
		chan_free(c);
	}
	while (m->adds) {
		struct chan *c = m->adds;
		m->adds = c->next;
		chan_free(c);
	}
	close(m->wake[0]);
	close(m->wake[1]);
	pthread_mutex_destroy(&m->lock);
	free(m->sq);
	free(m->rq);
	free(m->pfd);
	free(m->pch);
	free(m);
}

static void wake(struct omni__mux *m)
{
	char b = 1;
	ssize_t n = write(m->wake[1], &b, 1);
	(void)n; /* a full pipe wakes the loop all the same */
}

void omni__mux_stop(struct omni__mux *m)
{
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_mutex_unlock(&m->lock);
	wake(m);
}

void omni__mux_counts(struct omni__mux *m, unsigned *open, unsigned *total)
{
	pthread_mutex_lock(&m->lock);
	*open = m->nchans;
	*total = m->total;
	pthread_mutex_unlock(&m->lock);
}

static struct chan *chan_new(uint32_t id, int fd, bool open_sent)
{
	struct chan *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->id = id;
	c->fd = fd;
	c->credit = OMNI__MUX_WINDOW_SZ;
	c->open_sent = open_sent;
	return c;
}

int omni__mux_open(struct omni__mux *m, int *fd)
{
	int sv[2];

	*fd = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	int fl = fcntl(sv[0], F_GETFL);
	fcntl(sv[0], F_SETFL, fl | O_NONBLOCK);
	struct chan *c = chan_new(0, sv[0], false);
	if (!c) {
		close(sv[0]);
		close(sv[1]);
		return -ENOMEM;
	}
	pthread_mutex_lock(&m->lock);
	if (m->ended) {
		pthread_mutex_unlock(&m->lock);
		chan_free(c);
		close(sv[1]);
		return -ECONNRESET;
	}
	c->id = ++m->next_id;
	c->next = m->adds;
	m->adds = c;
	pthread_mutex_unlock(&m->lock);
	wake(m);
	*fd = sv[1];
	return 0;
}

/* --- the send queue ------------------------------------------------------- */

static size_t sq_room(const struct omni__mux *m)
{
	return SQ_CAP - m->sq_len;
}

static bool queue_ctrl(struct omni__mux *m, uint8_t type, uint32_t id,
                       const uint8_t *payload, uint32_t len)
{
	if (sq_room(m) < OMNI__MUX_HEADER + len)
		return false;
	uint8_t *p = m->sq + m->sq_len;
	p[0] = type;
	put_u32(p + 1, id);
	put_u32(p + 5, len);
	if (len)
		memcpy(p + OMNI__MUX_HEADER, payload, len);
	m->sq_len += OMNI__MUX_HEADER + len;
	return true;
}

/* Send what the queue holds; 0 (maybe not all sent) or -errno. */
static int flush(struct omni__mux *m)
{
	while (m->sq_off < m->sq_len) {
		ssize_t n = m->io.send(m->io.ctx, m->sq + m->sq_off,
		                       m->sq_len - m->sq_off);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EPIPE;
		m->sq_off += (size_t)n;
	}
	/* All sent: only now may the front move. */
	m->sq_off = m->sq_len = 0;
	return 0;
}

/* --- channels ------------------------------------------------------------- */

static struct chan *find(struct omni__mux *m, uint32_t id)
{
	for (struct chan *c = m->chans; c; c = c->next)
		if (c->id == id)
			return c;
	return NULL;
}

/* Deliver buffered bytes to the local end. */
static void deliver(struct chan *c)
{
	while (c->out_len > c->out_off && !c->dead) {
		ssize_t n = send(c->fd, c->out + c->out_off,
		                 c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			/* The local end is gone: credit back and drop. */
			c->delivered += c->out_len - c->out_off;
			c->dead = true;
			break;
		}
		c->out_off += (size_t)n;
		c->delivered += (size_t)n;
	}
	if (c->out_off == c->out_len || c->dead)
		c->out_off = c->out_len = 0;
	if (c->got_close && c->out_len == 0 && !c->shut_wr) {
		shutdown(c->fd, SHUT_WR);
		c->shut_wr = true;
	}
}

static int on_data(struct chan *c, const uint8_t *p, uint32_t len)
{
	if (c->got_close)
		return -EPROTO;
	if (c->dead) {
		c->delivered += len;
		return 0;
	}
	if (c->out_len - c->out_off + len > OMNI__MUX_WINDOW_SZ)
		return -EPROTO;
	if (c->out_len + len > c->out_cap) {
		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off,
			        c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
		}
		if (c->out_len + len > c->out_cap) {
			size_t cap = c->out_cap ? c->out_cap : 65536;
			while (cap < c->out_len + len)
				cap *= 2;
			uint8_t *n = realloc(c->out, cap);
			if (!n)
				return -ENOMEM;
			c->out = n;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, p, len);
	c->out_len += len;
	deliver(c);
	return 0;
}

static int on_open(struct omni__mux *m, uint32_t id)
{
	if (!m->io.accept || find(m, id))
		return -EPROTO;
	int fd = m->io.accept(m->io.ctx, id);
	struct chan *c = chan_new(id, fd, true);
	if (!c) {
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	if (fd < 0) {
		/* Refused: tell the peer at once; its data is dropped. */
		c->dead = c->eof_local = true;
	}
	c->next = m->chans;
	m->chans = c;
	m->nchans++;
	m->total++;
	return 0;
}

/* One complete frame from the peer. */
static int on_frame(struct omni__mux *m, uint8_t type, uint32_t id,
                    const uint8_t *p, uint32_t len)
{
	struct chan *c = type == OMNI__MUX_OPEN ? NULL : find(m, id);

	switch (type) {
	case OMNI__MUX_OPEN:
		return len ? -EPROTO : on_open(m, id);
	case OMNI__MUX_DATA:
		return c ? on_data(c, p, len) : 0;
	case OMNI__MUX_CLOSE:
		if (c) {
			c->got_close = true;
			deliver(c);
		}
		return 0;
	case OMNI__MUX_WINDOW:
		if (len != 4)
			return -EPROTO;
		if (c) {
			uint32_t n = get_u32(p);
			if (c->credit + n > OMNI__MUX_WINDOW_SZ)
				return -EPROTO;
			c->credit += n;
		}
		return 0;
	default:
		return -EPROTO;
	}
}

/* Read the stream until it has nothing more; parse whole frames. 1: go
 * on, 0: EOF, -errno. */
static int pump_in(struct omni__mux *m)
{
	for (;;) {
		ssize_t n = m->io.recv(m->io.ctx, m->rq + m->rq_len, RQ_CHUNK);
		if (n == -EAGAIN)
			return 1;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return 0;
		m->rq_len += (size_t)n;
		size_t off = 0;
		while (m->rq_len - off >= OMNI__MUX_HEADER) {
			const uint8_t *h = m->rq + off;
			uint32_t len = get_u32(h + 5);
			if (len > OMNI__MUX_MAX_DATA)
				return -EPROTO;
			if (m->rq_len - off < OMNI__MUX_HEADER + len)
				break;
			int rc = on_frame(m, h[0], get_u32(h + 1),
			                  h + OMNI__MUX_HEADER, len);
			if (rc < 0)
				return rc;
			off += OMNI__MUX_HEADER + len;
		}
		memmove(m->rq, m->rq + off, m->rq_len - off);
		m->rq_len -= off;
	}
}

/* Read the local end into a DATA frame (room and credit checked). */
static void pump_local(struct omni__mux *m, struct chan *c)
{
	size_t want =
	    c->credit < OMNI__MUX_MAX_DATA ? c->credit : OMNI__MUX_MAX_DATA;
	uint8_t *p = m->sq + m->sq_len;
	ssize_t n;

	do
		n = recv(c->fd, p + OMNI__MUX_HEADER, want, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		c->eof_local = true;
		return;
	}
	p[0] = OMNI__MUX_DATA;
	put_u32(p + 1, c->id);
	put_u32(p + 5, (uint32_t)n);
	m->sq_len += OMNI__MUX_HEADER + (size_t)n;
	c->credit -= (size_t)n;
}

static bool can_read(const struct omni__mux *m, const struct chan *c)
{
	return c->open_sent && !c->eof_local && c->credit > 0 &&
	       sq_room(m) >= OMNI__MUX_HEADER + OMNI__MUX_MAX_DATA + SQ_RESERVE;
}

/* Control frames owed by the channels, and the end of finished ones. */
static void settle(struct omni__mux *m)
{
	struct chan **pp = &m->chans;

	while (*pp) {
		struct chan *c = *pp;
		uint8_t w[4];
		if (!c->open_sent &&
		    queue_ctrl(m, OMNI__MUX_OPEN, c->id, NULL, 0))
			c->open_sent = true;
		if (c->delivered > 0 &&
		    (c->delivered >= WINDOW_AT || c->out_len == 0)) {
			put_u32(w, (uint32_t)c->delivered);
			if (queue_ctrl(m, OMNI__MUX_WINDOW, c->id, w, 4))
				c->delivered = 0;
		}
		if (c->open_sent && c->eof_local && !c->sent_close &&
		    queue_ctrl(m, OMNI__MUX_CLOSE, c->id, NULL, 0))
			c->sent_close = true;
		if (c->sent_close && c->got_close && c->out_len == 0) {
			*pp = c->next;
			m->nchans--;
			chan_free(c);
			continue;
		}
		pp = &c->next;
	}
}

/* Channels opened by other threads join the loop. */
static bool take_adds(struct omni__mux *m)
{
	pthread_mutex_lock(&m->lock);
	bool stop = m->stop;
	while (m->adds) {
		struct chan *c = m->adds;
		m->adds = c->next;
		c->next = m->chans;
		m->chans = c;
		m->nchans++;
		m->total++;
	}
	pthread_mutex_unlock(&m->lock);
	return stop;
}

static int poll_set(struct omni__mux *m, size_t *count)
{
	size_t need = m->nchans + 3, n = 0;

	if (need > m->pcap) {
		struct pollfd *p = realloc(m->pfd, need * sizeof(*p));
		if (!p)
			return -ENOMEM;
		m->pfd = p;
		struct chan **c = realloc(m->pch, need * sizeof(*c));
		if (!c)
			return -ENOMEM;
		m->pch = c;
		m->pcap = need;
	}
	m->pfd[n] = (struct pollfd){ .fd = m->wake[0], .events = POLLIN };
	m->pch[n++] = NULL;
	bool out = m->sq_off < m->sq_len;
	m->pfd[n] = (struct pollfd){ .fd = m->io.in_fd, .events = POLLIN };
	if (out && m->io.out_fd == m->io.in_fd)
		m->pfd[n].events |= POLLOUT;
	m->pch[n++] = NULL;
	if (out && m->io.out_fd != m->io.in_fd) {
		m->pfd[n] =
		    (struct pollfd){ .fd = m->io.out_fd, .events = POLLOUT };
		m->pch[n++] = NULL;
	}
	for (struct chan *c = m->chans; c; c = c->next) {
		short ev = 0;
		if (can_read(m, c))
			ev |= POLLIN;
		if (c->out_len > c->out_off && !c->dead)
			ev |= POLLOUT;
		/* A gone local end reports POLLHUP whatever is asked:
		 * leave it out unless there is something to read. */
		if (c->fd < 0 || (c->dead && !(ev & POLLIN)))
			continue;
		m->pfd[n] = (struct pollfd){ .fd = c->fd, .events = ev };
		m->pch[n++] = c;
	}
	*count = n;
	return 0;
}

static void on_ready(struct omni__mux *m, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		struct chan *c = m->pch[i];
		short re = m->pfd[i].revents;
		if (!c || !re)
			continue;
		if (re & POLLOUT)
			deliver(c);
		if ((re & (POLLIN | POLLHUP | POLLERR)) && can_read(m, c))
			pump_local(m, c);
		else if (re & (POLLHUP | POLLERR)) {
			/* Cannot read now and the end is gone. */
			deliver(c);
			if (!(m->pfd[i].events & POLLIN)) {
				c->delivered += c->out_len - c->out_off;
				c->out_off = c->out_len = 0;
				c->dead = true;
			}
		}
	}
	if (m->pfd[0].revents) {
		char buf[64];
		while (read(m->wake[0], buf, sizeof(buf)) > 0)
			;
	}
}

int omni__mux_run(struct omni__mux *m)
{
	int rc;

	for (;;) {
		if (take_adds(m)) {
			rc = 0;
			break;
		}
		if ((rc = pump_in(m)) <= 0)
			break;
		settle(m);
		if ((rc = flush(m)) < 0)
			break;
		size_t count;
		if ((rc = poll_set(m, &count)) < 0)
			break;
		if (poll(m->pfd, count, -1) < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		on_ready(m, count);
		if ((rc = flush(m)) < 0)
			break;
	}
	pthread_mutex_lock(&m->lock);
	m->ended = true;
	pthread_mutex_unlock(&m->lock);
	take_adds(m);
	while (m->chans) {
		struct chan *c = m->chans;
		m->chans = c->next;
		chan_free(c);
	}
	m->nchans = 0;
	return rc;
}
