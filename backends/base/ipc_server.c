/*
 * backends/base/ipc_server.c - the server side of the exec wire protocol
 * (see omni/ipc_server.h), shared by omni-agent and the omnifs daemon's
 * control server. libc only: omni-agent links it statically.
 *
 * Threads. One thread accepts; each connection gets a thread of its own,
 * which may check the peer (ops->check_peer), reads the first frame and
 * either answers a CONTROL request or runs one command:
 *
 *	conn thread                         reader thread (per command)
 *	-----------                         ---------------------------
 *	decode EXEC, ops->exec_start
 *	STARTED                       --->  STDIN  -> ops->exec_input
 *	ops->exec_wait                      SIGNAL -> ops->exec_signal
 *	  output cb -> STDOUT/STDERR        RESIZE -> ops->exec_resize
 *	                                    EOF before the end: the client
 *	                                    is gone -> SIGKILL the group
 *	shutdown(SHUT_RD), join reader
 *	ops->exec_free, ops->exec_done, then EXIT
 *
 * The reader is stopped with shutdown(SHUT_RD), which makes its blocked
 * recv() return end-of-stream; the `finished` flag tells it that this end
 * is ours and not the client's. Connection threads end on their own and
 * are joined lazily by the accept thread (finished ones, before each new
 * connection) or by omni__ipc_server_stop().
 *
 * Idle clients. A connection is `waiting` from accept until its first
 * frame has been read whole; that read has a deadline (SO_RCVTIMEO of
 * cfg.idle_ms), so a client that connects and says nothing, or says half a
 * frame, is closed. When a new connection would pass max_conns (or
 * max_conns_per_uid for its uid), the oldest waiting connection (of that
 * uid) is shut down to make room: a flood of idle connections from one
 * client then costs the others nothing, since a real client sends its
 * request the moment it connects.
 *
 * Locking. srv->lock guards the connection list, each connection's fd
 * number and command handle (so stop and kill_all can shut sockets down
 * and kill commands without racing their threads' close and free), the
 * stopping flag and the counters. Each connection's send_lock serialises
 * the frames written by the output callback and the connection thread.
 * No other lock is taken while srv->lock is held, except inside
 * ops->exec_signal, which only sends a signal.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "omni/error.h"
#include "omni/ipc_files.h"
#include "omni/ipc_server.h"
#include "omni/log.h"

struct omni__ipc_conn {
	struct omni__ipc_server *srv;
	struct omni__ipc_conn *next;
	pthread_t thread;
	int fd;                   /* under srv->lock; -1 once closed */
	struct omni_exec *handle; /* under srv->lock; the running command */
	bool done;    /* under srv->lock; the thread may be joined */
	bool waiting; /* under srv->lock; its first frame is not in yet */
	bool evicted; /* under srv->lock; shut down to make room */
	uid_t uid;    /* the peer's, from SO_PEERCRED ((uid_t)-1: unknown) */
	pthread_mutex_t send_lock;
	atomic_bool finished; /* the command ended: its reader may stop */
};

struct omni__ipc_server {
	struct omni__ipc_server_config cfg;
	const struct omni__ipc_server_ops *ops;
	int listen_fd;
	int wake[2]; /* wakes the accept thread for stop */
	pthread_t accept_thread;

	pthread_mutex_t lock;
	bool stopping;
	struct omni__ipc_conn *conns;
	unsigned int nconns, running;
	unsigned long long commands, failed;
	unsigned long long evicted; /* idle connections closed to make room */
};

/* --- sending -------------------------------------------------------------- */

static int conn_send(struct omni__ipc_conn *c, uint8_t type, const void *a,
                     size_t alen, const void *b, size_t blen)
{
	int rc;

	pthread_mutex_lock(&c->send_lock);
	rc = omni_ipc_send2(c->fd, type, a, alen, b, blen);
	pthread_mutex_unlock(&c->send_lock);
	return rc;
}

static int conn_send_u32(struct omni__ipc_conn *c, uint8_t type, uint32_t v)
{
	int rc;

	pthread_mutex_lock(&c->send_lock);
	rc = omni_ipc_send_u32(c->fd, type, v);
	pthread_mutex_unlock(&c->send_lock);
	return rc;
}

/* An ERROR frame; a missing errno or message gets a generic one. */
static int conn_send_error(struct omni__ipc_conn *c, int err, const char *msg)
{
	int rc;

	if (err >= 0)
		err = -EIO;
	if (!msg || !*msg)
		msg = strerror(-err);
	pthread_mutex_lock(&c->send_lock);
	rc = omni_ipc_send_error(c->fd, err, msg);
	pthread_mutex_unlock(&c->send_lock);
	return rc;
}

int omni__ipc_conn_reply(struct omni__ipc_conn *c, unsigned int status,
                         const char *text)
{
	unsigned char st[4] = { (unsigned char)(status >> 24),
		                (unsigned char)(status >> 16),
		                (unsigned char)(status >> 8),
		                (unsigned char)status };

	return conn_send(c, OMNI_IPC_REPLY, st, sizeof(st), text,
	                 text ? strlen(text) : 0);
}

/* --- running a command ---------------------------------------------------- */

static int on_output(int stream, const void *data, size_t len, void *payload)
{
	struct omni__ipc_conn *c = payload;
	uint8_t type =
	    stream == OMNI_EXEC_STDERR ? OMNI_IPC_STDERR : OMNI_IPC_STDOUT;

	/* A failed send means the client is gone: non-zero stops the pump,
	 * which kills the command. Chunks are at most 64 KiB, well under
	 * the frame limit. */
	return conn_send(c, type, data, len, NULL, 0) < 0;
}

struct reader_args {
	struct omni__ipc_conn *conn;
	struct omni_exec *handle;
};

/* One frame from the client while the command runs. */
static void reader_take(struct omni__ipc_server *srv, struct omni_exec *h,
                        uint8_t type, const struct omni_ipc_buf *buf,
                        bool *stdin_open)
{
	switch (type) {
	case OMNI_IPC_STDIN:
		if (!*stdin_open)
			break;
		if (srv->ops->exec_input(h, buf->data, buf->len) < 0 ||
		    buf->len == 0)
			*stdin_open = false;
		break;
	case OMNI_IPC_SIGNAL:
		if (buf->len == 4) {
			uint32_t sig = omni_ipc_get_u32(buf->data);
			if (sig >= 1 && sig < 65)
				srv->ops->exec_signal(h, (int)sig);
		}
		break;
	case OMNI_IPC_RESIZE:
		if (buf->len == 4)
			srv->ops->exec_resize(h, omni_ipc_get_u16(buf->data),
			                      omni_ipc_get_u16(buf->data + 2));
		break;
	default:
		/* Unknown or misplaced frames are ignored, so that newer
		 * clients can add some. */
		break;
	}
}

/* Takes STDIN, SIGNAL and RESIZE frames until the command ends or the
 * client goes away. */
static void *reader_main(void *arg)
{
	struct reader_args *ra = arg;
	struct omni__ipc_conn *c = ra->conn;
	struct omni__ipc_server *srv = c->srv;
	struct omni_ipc_buf buf = { 0 };
	bool stdin_open = true;
	uint8_t type;

	while (omni_ipc_recv(c->fd, &type, &buf) > 0)
		reader_take(srv, ra->handle, type, &buf, &stdin_open);
	if (!atomic_load(&c->finished)) {
		omni_log(OMNI_LOG_DEBUG,
		         "%s: client left before the command ended; killing it",
		         srv->cfg.name);
		srv->ops->exec_signal(ra->handle, SIGKILL);
	}
	omni_ipc_buf_finish(&buf);
	return NULL;
}

/* Counted before the ERROR frame goes out, so that a client that asks
 * for the counters next sees it. */
static void count_failed(struct omni__ipc_server *srv)
{
	pthread_mutex_lock(&srv->lock);
	srv->failed++;
	pthread_mutex_unlock(&srv->lock);
}

/* Record the running command; kill it at once if the server stops. */
static void exec_register(struct omni__ipc_conn *c, struct omni_exec *h)
{
	struct omni__ipc_server *srv = c->srv;
	bool killed;

	pthread_mutex_lock(&srv->lock);
	c->handle = h;
	srv->running++;
	srv->commands++;
	killed = srv->stopping;
	pthread_mutex_unlock(&srv->lock);
	if (killed)
		srv->ops->exec_signal(h, SIGKILL);
}

static void exec_unregister(struct omni__ipc_conn *c)
{
	pthread_mutex_lock(&c->srv->lock);
	c->handle = NULL;
	c->srv->running--;
	pthread_mutex_unlock(&c->srv->lock);
}

/* Pump the started command h to its end, with a reader for the client's
 * frames; then free it and send EXIT, or ERROR. */
static void exec_run(struct omni__ipc_conn *c, struct omni_exec *h)
{
	struct omni__ipc_server *srv = c->srv;
	struct reader_args ra = { .conn = c, .handle = h };
	struct omni_exec_status st;
	pthread_t reader;
	struct omni__error_saved saved;
	int rc;

	bool have_reader = pthread_create(&reader, NULL, reader_main, &ra) == 0;
	if (!have_reader) {
		/* Without a reader nobody would notice a vanished client. */
		omni_log(OMNI_LOG_ERROR, "%s: cannot start a thread",
		         srv->cfg.name);
		srv->ops->exec_signal(h, SIGKILL);
	}

	omni_error_clear();
	rc = srv->ops->exec_wait(h, on_output, c, &st);
	omni__error_save(&saved);

	atomic_store(&c->finished, true);
	if (have_reader) {
		shutdown(c->fd, SHUT_RD);
		pthread_join(reader, NULL);
	}
	exec_unregister(c);
	srv->ops->exec_free(h);

	/* Caches are dropped before the client learns the command ended. */
	if (srv->ops->exec_done)
		srv->ops->exec_done(srv->cfg.payload);

	if (rc < 0) {
		count_failed(srv);
		conn_send_error(c, rc, saved.msg);
		return;
	}
	pthread_mutex_lock(&c->send_lock);
	omni_ipc_send_exit(c->fd, st.exit_code, st.signal, st.timed_out);
	pthread_mutex_unlock(&c->send_lock);
}

static void serve_exec(struct omni__ipc_conn *c, const unsigned char *data,
                       size_t len)
{
	struct omni__ipc_server *srv = c->srv;
	struct omni_ipc_request ir;
	struct omni_exec *h = NULL;
	uint32_t pid = 0;
	int rc;

	rc = omni_ipc_request_decode(&ir, data, len);
	if (rc < 0) {
		count_failed(srv);
		conn_send_error(c, rc, "malformed EXEC request");
		return;
	}
	struct omni_exec_request req = {
		.argv = (const char *const *)ir.argv,
		.shell = ir.shell,
		.cwd = ir.cwd,
		.env = (const char *const *)ir.env,
		.timeout_ms = ir.timeout_ms,
		.tty = ir.tty,
		.rows = ir.rows,
		.cols = ir.cols,
		.want_stdin = ir.want_stdin,
	};
	omni_error_clear();
	rc = srv->ops->exec_start(srv->cfg.payload, &req, &h, &pid);
	if (rc < 0) {
		count_failed(srv);
		conn_send_error(c, rc, omni_error_last());
		omni_ipc_request_finish(&ir);
		return;
	}
	exec_register(c, h);
	conn_send_u32(c, OMNI_IPC_STARTED, pid);
	exec_run(c, h);
	omni_ipc_request_finish(&ir);
}

/* --- CONTROL requests ----------------------------------------------------- */

static void serve_control(struct omni__ipc_conn *c, const unsigned char *data,
                          size_t len)
{
	struct omni__ipc_server *srv = c->srv;
	char *text = malloc(len + 1);

	if (!text) {
		omni__ipc_conn_reply(c, ENOMEM, "out of memory");
		return;
	}
	memcpy(text, data, len);
	text[len] = '\0';
	if (strcmp(text, "ping") == 0) {
		omni__ipc_conn_reply(c, 0, "pong");
	} else if (srv->ops->control) {
		srv->ops->control(srv->cfg.payload, c, text);
	} else {
		char msg[600];

		snprintf(msg, sizeof(msg), "unknown control request: %.400s",
		         text);
		omni__ipc_conn_reply(c, EINVAL, msg);
	}
	free(text);
}

/* --- connections ---------------------------------------------------------- */

static void set_rcvtimeo(int fd, unsigned int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
		              .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* The first frame, read whole within the idle deadline. 1 read, 0 gone
 * (or timed out, or evicted), -errno garbage. */
static int recv_first(struct omni__ipc_conn *c, uint8_t *type,
                      struct omni_ipc_buf *buf)
{
	struct omni__ipc_server *srv = c->srv;
	int rc;

	set_rcvtimeo(c->fd,
	             srv->cfg.idle_ms ? srv->cfg.idle_ms : OMNI_IPC_IDLE_MS);
	rc = omni_ipc_recv(c->fd, type, buf);
	set_rcvtimeo(c->fd, 0);
	pthread_mutex_lock(&srv->lock);
	c->waiting = false;
	if (c->evicted)
		rc = 0;
	pthread_mutex_unlock(&srv->lock);
	if (rc == -EAGAIN || rc == -EWOULDBLOCK) {
		omni_log(OMNI_LOG_DEBUG, "%s: a client sent no request in time",
		         srv->cfg.name);
		return 0;
	}
	return rc;
}

static void *conn_main(void *arg)
{
	struct omni__ipc_conn *c = arg;
	struct omni__ipc_server *srv = c->srv;
	struct omni_ipc_buf buf = { 0 };
	uint8_t type;
	int rc;

	if (srv->ops->check_peer) {
		omni_error_clear();
		rc = srv->ops->check_peer(srv->cfg.payload, c->fd);
		if (rc < 0) {
			conn_send_error(c, rc, omni_error_last());
			goto out;
		}
	}
	rc = recv_first(c, &type, &buf);
	if (rc <= 0)
		goto out; /* gone, idle, or garbage: nothing to answer */
	if (type == OMNI_IPC_EXEC)
		serve_exec(c, buf.data, buf.len);
	else if (type == OMNI_IPC_CONTROL)
		serve_control(c, buf.data, buf.len);
	else if (type == OMNI_IPC_FILES && srv->ops->files)
		srv->ops->files(srv->cfg.payload, c->fd, buf.data, buf.len);
	else
		conn_send_error(c, -EPROTO,
		                srv->ops->files
		                    ? "expected an EXEC, CONTROL or FILES frame"
		                    : "expected an EXEC or CONTROL frame");
out:
	omni_ipc_buf_finish(&buf);
	pthread_mutex_lock(&srv->lock);
	close(c->fd);
	c->fd = -1;
	c->done = true;
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

static void conn_free(struct omni__ipc_conn *c)
{
	pthread_mutex_destroy(&c->send_lock);
	free(c);
}

/* Join and free the connections whose threads have ended. */
static void reap_done(struct omni__ipc_server *srv)
{
	struct omni__ipc_conn *done = NULL, **pp;

	pthread_mutex_lock(&srv->lock);
	for (pp = &srv->conns; *pp;) {
		struct omni__ipc_conn *c = *pp;

		if (c->done) {
			*pp = c->next;
			c->next = done;
			done = c;
			srv->nconns--;
		} else {
			pp = &c->next;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	while (done) {
		struct omni__ipc_conn *next = done->next;

		pthread_join(done->thread, NULL);
		conn_free(done);
		done = next;
	}
}

/* Answer a connection that will not be served, and close it. */
static void refuse(int fd, int err, const char *msg)
{
	omni_ipc_send_error(fd, err, msg);
	close(fd);
}

static uid_t peer_uid(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return (uid_t)-1;
	return cred.uid;
}

/* Is there room for one more connection of uid? When not, shut down the
 * oldest connection still waiting for its request (of that uid, when the
 * uid's limit is what is reached) and count it out. Under srv->lock. */
static bool make_room(struct omni__ipc_server *srv, uid_t uid)
{
	unsigned int all = 0, mine = 0;
	struct omni__ipc_conn *oldest_any = NULL, *oldest_mine = NULL;

	/* The list is newest first: the last waiting one seen is oldest. */
	for (struct omni__ipc_conn *c = srv->conns; c; c = c->next) {
		if (c->done || c->evicted)
			continue;
		all++;
		if (c->uid == uid)
			mine++;
		if (c->waiting && c->fd >= 0) {
			oldest_any = c;
			if (c->uid == uid)
				oldest_mine = c;
		}
	}
	bool over_uid =
	    srv->cfg.max_conns_per_uid && mine >= srv->cfg.max_conns_per_uid;
	bool over_all = srv->cfg.max_conns && all >= srv->cfg.max_conns;
	if (!over_uid && !over_all)
		return true;
	struct omni__ipc_conn *victim = over_uid ? oldest_mine : oldest_any;
	if (over_uid && over_all && victim == NULL)
		victim = oldest_any;
	if (!victim || (over_all && over_uid && !oldest_mine))
		return false;
	victim->evicted = true;
	shutdown(victim->fd, SHUT_RDWR);
	srv->evicted++;
	return true;
}

static void accept_one(struct omni__ipc_server *srv, int fd)
{
	struct omni__ipc_conn *c;
	uid_t uid = peer_uid(fd);

	reap_done(srv);
	pthread_mutex_lock(&srv->lock);
	if (srv->stopping || !make_room(srv, uid)) {
		bool busy = !srv->stopping;

		pthread_mutex_unlock(&srv->lock);
		refuse(fd, busy ? -EAGAIN : -ESHUTDOWN,
		       busy ? "too many commands at once"
		            : "the session is shutting down");
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		pthread_mutex_unlock(&srv->lock);
		refuse(fd, -ENOMEM, "out of memory");
		return;
	}
	c->srv = srv;
	c->fd = fd;
	c->uid = uid;
	c->waiting = true;
	pthread_mutex_init(&c->send_lock, NULL);
	atomic_init(&c->finished, false);
	if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
		pthread_mutex_unlock(&srv->lock);
		omni_log(OMNI_LOG_ERROR, "%s: cannot start a thread",
		         srv->cfg.name);
		refuse(fd, -EAGAIN, "cannot start a thread");
		conn_free(c);
		return;
	}
	c->next = srv->conns;
	srv->conns = c;
	srv->nconns++;
	pthread_mutex_unlock(&srv->lock);
}

static void *accept_main(void *arg)
{
	struct omni__ipc_server *srv = arg;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = srv->listen_fd, .events = POLLIN },
			{ .fd = srv->wake[0], .events = POLLIN },
		};

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			omni_log(OMNI_LOG_ERROR, "%s: poll: %s", srv->cfg.name,
			         strerror(errno));
			break;
		}
		if (pfd[1].revents)
			break;
		if (!pfd[0].revents)
			continue;
		int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: let some close. */
				omni_log(OMNI_LOG_WARN, "%s: accept: %s",
				         srv->cfg.name, strerror(errno));
				reap_done(srv);
				poll(NULL, 0, 100);
			}
			continue;
		}
		accept_one(srv, fd);
	}
	return NULL;
}

/* --- starting and stopping ------------------------------------------------ */

int omni__ipc_server_start(struct omni__ipc_server **out, int listen_fd,
                           const struct omni__ipc_server_config *cfg)
{
	struct omni__ipc_server *srv;
	int rc;

	*out = NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv) {
		close(listen_fd);
		return omni_error_set(-ENOMEM, "%s: out of memory", cfg->name);
	}
	srv->cfg = *cfg;
	srv->ops = cfg->ops;
	srv->listen_fd = listen_fd;
	pthread_mutex_init(&srv->lock, NULL);
	if (pipe2(srv->wake, O_CLOEXEC) < 0) {
		rc = omni_error_set_errno(-errno, "%s: pipe", cfg->name);
		goto fail;
	}
	rc = pthread_create(&srv->accept_thread, NULL, accept_main, srv);
	if (rc != 0) {
		rc =
		    omni_error_set(-rc, "%s: cannot start a thread", cfg->name);
		close(srv->wake[0]);
		close(srv->wake[1]);
		goto fail;
	}
	*out = srv;
	return 0;
fail:
	close(listen_fd);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
	return rc;
}

void omni__ipc_server_kill_all(struct omni__ipc_server *srv)
{
	if (!srv)
		return;
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	for (struct omni__ipc_conn *c = srv->conns; c; c = c->next)
		if (c->handle)
			srv->ops->exec_signal(c->handle, SIGKILL);
	pthread_mutex_unlock(&srv->lock);
}

void omni__ipc_server_stop(struct omni__ipc_server *srv)
{
	struct omni__ipc_conn *c;
	struct stat st;
	ssize_t w;

	if (!srv)
		return;
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->lock);
	do {
		w = write(srv->wake[1], "x", 1);
	} while (w < 0 && errno == EINTR);
	pthread_join(srv->accept_thread, NULL);

	/* Remove the socket only if it is still ours. */
	if (srv->cfg.path && lstat(srv->cfg.path, &st) == 0 &&
	    st.st_dev == srv->cfg.path_dev && st.st_ino == srv->cfg.path_ino)
		unlink(srv->cfg.path);
	close(srv->listen_fd);

	/* End what runs: sockets shut (blocked reads and writes return),
	 * commands killed. Their threads then finish on their own. */
	pthread_mutex_lock(&srv->lock);
	for (c = srv->conns; c; c = c->next) {
		if (c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
		if (c->handle)
			srv->ops->exec_signal(c->handle, SIGKILL);
	}
	c = srv->conns;
	srv->conns = NULL;
	pthread_mutex_unlock(&srv->lock);
	while (c) {
		struct omni__ipc_conn *next = c->next;

		pthread_join(c->thread, NULL);
		conn_free(c);
		c = next;
	}
	close(srv->wake[0]);
	close(srv->wake[1]);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

void omni__ipc_server_stats(struct omni__ipc_server *srv,
                            struct omni__ipc_server_stats *out)
{
	pthread_mutex_lock(&srv->lock);
	out->commands = srv->commands;
	out->failed = srv->failed;
	out->running = srv->running;
	out->conns = srv->nconns;
	out->evicted = srv->evicted;
	pthread_mutex_unlock(&srv->lock);
}
