/*
 * ctl.c - the omnifs daemon's control server (see ctl.h): the Unix socket
 * omni-exec connects to, speaking the exec wire protocol of omni/ipc.h.
 *
 * Design. One thread accepts connections; each connection gets a thread
 * of its own that checks the peer's uid (SO_PEERCRED), reads the first
 * frame and either answers a CONTROL request or runs one command:
 *
 *	conn thread                         reader thread (per command)
 *	-----------                         ---------------------------
 *	decode EXEC, normalise CWD
 *	hooks.before_exec
 *	omni_vfs_exec_start, STARTED  --->  STDIN  -> omni_vfs_exec_input
 *	omni_vfs_exec_wait                  SIGNAL -> omni_vfs_exec_signal
 *	  output cb -> STDOUT/STDERR        RESIZE -> omni_vfs_exec_resize
 *	                                    EOF before the end: the client
 *	                                    is gone -> SIGKILL the group
 *	shutdown(SHUT_RD), join reader
 *	hooks.after_exec, then EXIT
 *
 * So a client that has read EXIT also sees the command's changes through
 * the mount. The reader is stopped with shutdown(SHUT_RD), which makes its
 * blocked recv() return end-of-stream; the `finished` flag tells it that
 * this end is ours and not the client's.
 *
 * The socket is made mode 0600 before it exists: fchmod() on the socket
 * descriptor before bind() sets the mode the socket file is created with
 * (Linux), and bind() applies the umask on top, so it is never wider even
 * for a moment. umask() is process-wide and FUSE threads create files
 * concurrently, so it is not touched. A stale socket (nobody answers) is
 * replaced; a live one means another daemon serves it: -EADDRINUSE.
 *
 * Locking. ctl->lock guards the connection list, each connection's fd
 * number and exec pointer (so omnifs_ctl_stop() can shut sockets down
 * and kill commands without racing their threads' close and free), the
 * stopping flag and the counters. Each connection's send_lock serialises
 * frames written by the output callback and the conn thread. No other
 * lock is taken while ctl->lock is held, except inside
 * omni_vfs_exec_signal(), which only sends a signal.
 *
 * Threads end on their own and are joined lazily by the accept thread
 * (finished ones, before each new connection) or by omnifs_ctl_stop().
 * The helper threads block the usual asynchronous signals so that they
 * keep going to the daemon's main thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl.h"
#include "base/error.h"
#include "omni/error.h"
#include "omni/ipc.h"
#include "omni/log.h"
#include "omni/vfs.h"

/* More simultaneous connections than this are refused with -EAGAIN. */
#define CTL_MAX_CONNS 512

struct ctl_conn {
	struct omnifs_ctl *ctl;
	struct ctl_conn *next;
	pthread_t thread;
	int fd;                 /* under ctl->lock; -1 once closed */
	struct omni_exec *exec; /* under ctl->lock; the running command */
	bool done;              /* under ctl->lock; the thread may be joined */
	pthread_mutex_t send_lock;
	atomic_bool finished; /* the command ended: its reader may stop */
};

struct omnifs_ctl {
	struct omni_backend *b;
	struct omnifs_ctl_hooks hooks;
	char *path;
	dev_t sock_dev;
	ino_t sock_ino;
	int listen_fd;
	int wake[2]; /* wakes the accept thread for stop */
	pthread_t accept_thread;

	pthread_mutex_t lock;
	bool stopping;
	struct ctl_conn *conns;
	unsigned int nconns;
	unsigned long long commands, refused, failed;
	unsigned int running;
};

/* --- small helpers -------------------------------------------------------- */

static void block_async_signals(sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGPIPE);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGWINCH);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

static int conn_send(struct ctl_conn *c, uint8_t type, const void *a,
                     size_t alen, const void *b, size_t blen)
{
	int rc;

	pthread_mutex_lock(&c->send_lock);
	rc = omni_ipc_send2(c->fd, type, a, alen, b, blen);
	pthread_mutex_unlock(&c->send_lock);
	return rc;
}

static int conn_send_error(struct ctl_conn *c, int err, const char *msg)
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

static int conn_send_reply(struct ctl_conn *c, unsigned int status,
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
	struct ctl_conn *c = payload;
	uint8_t type =
	    stream == OMNI_EXEC_STDERR ? OMNI_IPC_STDERR : OMNI_IPC_STDOUT;

	/* A failed send means the client is gone: non-zero stops the pump,
	 * which kills the command. Chunks are at most 64 KiB, well under
	 * the frame limit. */
	return conn_send(c, type, data, len, NULL, 0) < 0;
}

struct reader_args {
	struct ctl_conn *conn;
	struct omni_exec *exec;
};

/* Takes STDIN, SIGNAL and RESIZE frames until the command ends or the
 * client goes away. */
static void *reader_main(void *arg)
{
	struct reader_args *ra = arg;
	struct ctl_conn *c = ra->conn;
	struct omni_exec *e = ra->exec;
	struct omni_ipc_buf buf = { 0 };
	bool stdin_open = true;
	uint8_t type;

	for (;;) {
		int rc = omni_ipc_recv(c->fd, &type, &buf);

		if (rc <= 0) {
			if (!atomic_load(&c->finished)) {
				omni_log(OMNI_LOG_DEBUG,
				         "control: client left before the "
				         "command ended; killing it");
				omni_vfs_exec_signal(e, SIGKILL);
			}
			break;
		}
		switch (type) {
		case OMNI_IPC_STDIN:
			if (!stdin_open)
				break;
			if (omni_vfs_exec_input(e, buf.data, buf.len) < 0 ||
			    buf.len == 0)
				stdin_open = false;
			break;
		case OMNI_IPC_SIGNAL:
			if (buf.len == 4) {
				uint32_t sig = omni_ipc_get_u32(buf.data);
				if (sig >= 1 && sig < 65)
					omni_vfs_exec_signal(e, (int)sig);
			}
			break;
		case OMNI_IPC_RESIZE:
			if (buf.len == 4)
				omni_vfs_exec_resize(
				    e, omni_ipc_get_u16(buf.data),
				    omni_ipc_get_u16(buf.data + 2));
			break;
		default:
			/* Unknown or misplaced frames are ignored, so that
			 * newer clients can add some. */
			break;
		}
	}
	omni_ipc_buf_finish(&buf);
	return NULL;
}

static void serve_exec(struct ctl_conn *c, const unsigned char *data,
                       size_t len)
{
	struct omnifs_ctl *ctl = c->ctl;
	struct omni_ipc_request ir;
	struct omni_exec_status st;
	struct omni_exec *e = NULL;
	struct reader_args ra;
	pthread_t reader;
	char cwd[PATH_MAX];
	bool killed = false;
	int rc;

	rc = omni_ipc_request_decode(&ir, data, len);
	if (rc < 0) {
		conn_send_error(c, rc, "malformed EXEC request");
		goto fail_count;
	}
	rc = omni_vfs_path(ctl->b, ir.cwd ? ir.cwd : "", cwd, sizeof(cwd));
	if (rc < 0) {
		conn_send_error(c, rc, omni_error_last());
		goto fail;
	}
	if (ctl->hooks.before_exec) {
		omni_error_clear();
		rc = ctl->hooks.before_exec(ctl->hooks.payload);
		if (rc < 0) {
			const char *why = omni_error_last();

			conn_send_error(
			    c, rc,
			    *why ? why : "the daemon refused the command");
			goto fail;
		}
	}

	struct omni_exec_request req = {
		.argv = (const char *const *)ir.argv,
		.shell = ir.shell,
		.cwd = cwd,
		.env = (const char *const *)ir.env,
		.timeout_ms = ir.timeout_ms,
		.tty = ir.tty,
		.rows = ir.rows,
		.cols = ir.cols,
		.want_stdin = ir.want_stdin,
	};
	omni_error_clear();
	rc = omni_vfs_exec_start(ctl->b, &req, &e);
	if (rc < 0) {
		conn_send_error(c, rc, omni_error_last());
		goto fail;
	}

	pthread_mutex_lock(&ctl->lock);
	c->exec = e;
	ctl->running++;
	ctl->commands++;
	killed = ctl->stopping;
	pthread_mutex_unlock(&ctl->lock);
	if (killed)
		omni_vfs_exec_signal(e, SIGKILL);

	/* The pid is not meaningful across backends; 0 is allowed. */
	pthread_mutex_lock(&c->send_lock);
	omni_ipc_send_u32(c->fd, OMNI_IPC_STARTED, 0);
	pthread_mutex_unlock(&c->send_lock);

	ra = (struct reader_args){ .conn = c, .exec = e };
	bool have_reader = pthread_create(&reader, NULL, reader_main, &ra) == 0;
	if (!have_reader) {
		/* Without a reader nobody would notice a vanished client. */
		omni_log(OMNI_LOG_ERROR, "control: cannot start a thread");
		omni_vfs_exec_signal(e, SIGKILL);
	}

	rc = omni_vfs_exec_wait(e, on_output, c, &st);
	struct omni__error_saved saved;
	omni__error_save(&saved);

	atomic_store(&c->finished, true);
	if (have_reader) {
		shutdown(c->fd, SHUT_RD);
		pthread_join(reader, NULL);
	}
	pthread_mutex_lock(&ctl->lock);
	c->exec = NULL;
	ctl->running--;
	pthread_mutex_unlock(&ctl->lock);
	omni_vfs_exec_free(e);

	/* Caches are dropped before the client learns the command ended. */
	if (ctl->hooks.after_exec)
		ctl->hooks.after_exec(ctl->hooks.payload);

	if (rc < 0) {
		conn_send_error(c, rc, saved.msg);
		goto fail;
	}
	pthread_mutex_lock(&c->send_lock);
	omni_ipc_send_exit(c->fd, st.exit_code, st.signal, st.timed_out);
	pthread_mutex_unlock(&c->send_lock);
	omni_ipc_request_finish(&ir);
	return;

fail:
	omni_ipc_request_finish(&ir);
fail_count:
	pthread_mutex_lock(&ctl->lock);
	ctl->failed++;
	pthread_mutex_unlock(&ctl->lock);
}

/* --- CONTROL requests ----------------------------------------------------- */

static char *ctl_stats_text(struct omnifs_ctl *ctl)
{
	unsigned long long commands, refused, failed;
	unsigned int running, conns;
	char *text = NULL;

	pthread_mutex_lock(&ctl->lock);
	commands = ctl->commands;
	refused = ctl->refused;
	failed = ctl->failed;
	running = ctl->running;
	conns = ctl->nconns;
	pthread_mutex_unlock(&ctl->lock);
	if (asprintf(&text,
	             "backend: %s\n"
	             "project: %s\n"
	             "status: %s\n"
	             "commands: %llu started, %u running, %llu failed\n"
	             "connections: %u open, %llu refused\n",
	             omni_backend_name(ctl->b), omni_backend_project_id(ctl->b),
	             omni_status_name(omni_backend_get_status(ctl->b)),
	             commands, running, failed, conns, refused) < 0)
		return NULL;
	return text;
}

static void serve_control(struct ctl_conn *c, const unsigned char *data,
                          size_t len)
{
	struct omnifs_ctl *ctl = c->ctl;
	char *text = malloc(len + 1);
	char *reply = NULL;
	int rc;

	if (!text) {
		conn_send_reply(c, ENOMEM, "out of memory");
		return;
	}
	memcpy(text, data, len);
	text[len] = '\0';

	if (strcmp(text, "ping") == 0) {
		conn_send_reply(c, 0, "pong");
	} else if (strcmp(text, "save") == 0 ||
	           strncmp(text, "save ", 5) == 0) {
		const char *message = text[4] ? text + 5 : NULL;
		char *id = NULL;

		omni_error_clear();
		rc = omni_backend_save_snapshot(ctl->b, message, &id);
		if (rc < 0)
			conn_send_reply(c, (unsigned int)-rc,
			                *omni_error_last() ? omni_error_last()
			                                   : strerror(-rc));
		else
			conn_send_reply(c, 0, id ? id : "nothing to save");
		free(id);
	} else if (strcmp(text, "invalidate") == 0) {
		if (ctl->hooks.after_exec)
			ctl->hooks.after_exec(ctl->hooks.payload);
		conn_send_reply(c, 0, "invalidated");
	} else if (strcmp(text, "stats") == 0) {
		/* The server's own counters, then the daemon's (hook). */
		char *own = ctl_stats_text(ctl), *all = NULL;

		if (ctl->hooks.control &&
		    ctl->hooks.control(text, &reply, ctl->hooks.payload) == 0 &&
		    reply && own && asprintf(&all, "%s%s", own, reply) >= 0) {
			free(own);
			own = all;
		}
		if (own)
			conn_send_reply(c, 0, own);
		else
			conn_send_reply(c, ENOMEM, "out of memory");
		free(own);
	} else if (ctl->hooks.control) {
		omni_error_clear();
		rc = ctl->hooks.control(text, &reply, ctl->hooks.payload);
		if (rc < 0) {
			char msg[600];
			if (*omni_error_last())
				snprintf(msg, sizeof(msg), "%s",
				         omni_error_last());
			else
				snprintf(msg, sizeof(msg), "%s: %.400s", text,
				         strerror(-rc));
			conn_send_reply(c, (unsigned int)-rc, msg);
		} else {
			conn_send_reply(c, 0, reply ? reply : "");
		}
	} else {
		char msg[600];
		snprintf(msg, sizeof(msg), "unknown control request: %.400s",
		         text);
		conn_send_reply(c, EINVAL, msg);
	}
	free(reply);
	free(text);
}

/* --- connections ---------------------------------------------------------- */

static void *conn_main(void *arg)
{
	struct ctl_conn *c = arg;
	struct omnifs_ctl *ctl = c->ctl;
	struct omni_ipc_buf buf = { 0 };
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	uint8_t type;
	int rc;

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
		conn_send_error(c, -errno, "cannot check the peer's identity");
		goto out;
	}
	if (cred.uid != geteuid()) {
		char msg[128];

		snprintf(msg, sizeof(msg), "connection from uid %u refused",
		         (unsigned int)cred.uid);
		omni_log(OMNI_LOG_WARN, "control socket %s: %s (pid %ld)",
		         ctl->path, msg, (long)cred.pid);
		pthread_mutex_lock(&ctl->lock);
		ctl->refused++;
		pthread_mutex_unlock(&ctl->lock);
		conn_send_error(c, -EACCES, msg);
		goto out;
	}

	rc = omni_ipc_recv(c->fd, &type, &buf);
	if (rc <= 0)
		goto out; /* gone, or garbage: nothing to answer */
	if (type == OMNI_IPC_EXEC)
		serve_exec(c, buf.data, buf.len);
	else if (type == OMNI_IPC_CONTROL)
		serve_control(c, buf.data, buf.len);
	else
		conn_send_error(c, -EPROTO,
		                "expected an EXEC or CONTROL frame");
out:
	omni_ipc_buf_finish(&buf);
	pthread_mutex_lock(&ctl->lock);
	close(c->fd);
	c->fd = -1;
	c->done = true;
	pthread_mutex_unlock(&ctl->lock);
	return NULL;
}

static void conn_free(struct ctl_conn *c)
{
	pthread_mutex_destroy(&c->send_lock);
	free(c);
}

/* Join and free the connections whose threads have ended. */
static void reap_done(struct omnifs_ctl *ctl)
{
	struct ctl_conn *done = NULL, **pp;

	pthread_mutex_lock(&ctl->lock);
	for (pp = &ctl->conns; *pp;) {
		struct ctl_conn *c = *pp;

		if (c->done) {
			*pp = c->next;
			c->next = done;
			done = c;
			ctl->nconns--;
		} else {
			pp = &c->next;
		}
	}
	pthread_mutex_unlock(&ctl->lock);
	while (done) {
		struct ctl_conn *next = done->next;

		pthread_join(done->thread, NULL);
		conn_free(done);
		done = next;
	}
}

static void accept_one(struct omnifs_ctl *ctl, int fd)
{
	struct ctl_conn *c;

	reap_done(ctl);
	pthread_mutex_lock(&ctl->lock);
	if (ctl->stopping || ctl->nconns >= CTL_MAX_CONNS) {
		bool busy = !ctl->stopping;

		pthread_mutex_unlock(&ctl->lock);
		omni_ipc_send_error(fd, busy ? -EAGAIN : -ESHUTDOWN,
		                    busy ? "too many commands at once"
		                         : "the session is shutting down");
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		pthread_mutex_unlock(&ctl->lock);
		omni_ipc_send_error(fd, -ENOMEM, "out of memory");
		close(fd);
		return;
	}
	c->ctl = ctl;
	c->fd = fd;
	pthread_mutex_init(&c->send_lock, NULL);
	atomic_init(&c->finished, false);
	if (pthread_create(&c->thread, NULL, conn_main, c) != 0) {
		pthread_mutex_unlock(&ctl->lock);
		omni_log(OMNI_LOG_ERROR, "control: cannot start a thread");
		omni_ipc_send_error(fd, -EAGAIN, "cannot start a thread");
		close(fd);
		conn_free(c);
		return;
	}
	c->next = ctl->conns;
	ctl->conns = c;
	ctl->nconns++;
	pthread_mutex_unlock(&ctl->lock);
}

static void *accept_main(void *arg)
{
	struct omnifs_ctl *ctl = arg;

	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = ctl->listen_fd, .events = POLLIN },
			{ .fd = ctl->wake[0], .events = POLLIN },
		};

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			omni_log(OMNI_LOG_ERROR, "control: poll: %s",
			         strerror(errno));
			break;
		}
		if (pfd[1].revents)
			break;
		if (!pfd[0].revents)
			continue;
		int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: let some close. */
				omni_log(OMNI_LOG_WARN, "control: accept: %s",
				         strerror(errno));
				reap_done(ctl);
				poll(NULL, 0, 100);
			}
			continue;
		}
		accept_one(ctl, fd);
	}
	return NULL;
}

/* --- the listening socket ------------------------------------------------- */

/* Bind a new socket at path, replacing a stale one. */
static int listen_at(struct omnifs_ctl *ctl, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return omni_error_set(-ENAMETOOLONG,
		                      "control socket path too long: %s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return omni_error_set(
			    -EEXIST, "%s exists and is not a socket", path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return omni_error_set_errno(-errno, "socket");
		rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (rc == 0)
			return omni_error_set(
			    -EADDRINUSE,
			    "%s: another omnifs daemon serves "
			    "this session",
			    path);
		if (unlink(path) < 0 && errno != ENOENT)
			return omni_error_set_errno(
			    -errno, "cannot remove stale %s", path);
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return omni_error_set_errno(-errno, "socket");
	/* The socket file takes this mode (minus the umask) at bind. */
	if (fchmod(fd, 0600) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = omni_error_set_errno(-errno, "cannot bind %s", path);
		close(fd);
		return rc;
	}
	if (lstat(path, &st) < 0 ||
	    ((st.st_mode & 077) && chmod(path, 0600) < 0) ||
	    listen(fd, 64) < 0) {
		rc = omni_error_set_errno(-errno, "cannot listen on %s", path);
		close(fd);
		unlink(path);
		return rc;
	}
	ctl->sock_dev = st.st_dev;
	ctl->sock_ino = st.st_ino;
	ctl->listen_fd = fd;
	return 0;
}

int omnifs_ctl_start(struct omnifs_ctl **out, struct omni_backend *b,
                     const char *socket_path,
                     const struct omnifs_ctl_hooks *hooks)
{
	struct omnifs_ctl *ctl;
	sigset_t old;
	int rc;

	*out = NULL;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return omni_error_set(-ENOMEM, "control server: out of memory");
	ctl->b = b;
	if (hooks)
		ctl->hooks = *hooks;
	ctl->listen_fd = ctl->wake[0] = ctl->wake[1] = -1;
	pthread_mutex_init(&ctl->lock, NULL);
	ctl->path = strdup(socket_path);
	if (!ctl->path) {
		rc = omni_error_set(-ENOMEM, "control server: out of memory");
		goto fail;
	}
	if (pipe2(ctl->wake, O_CLOEXEC) < 0) {
		rc = omni_error_set_errno(-errno, "control server: pipe");
		goto fail;
	}
	if ((rc = listen_at(ctl, socket_path)) < 0)
		goto fail;

	block_async_signals(&old);
	rc = pthread_create(&ctl->accept_thread, NULL, accept_main, ctl);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		rc = omni_error_set(-rc,
		                    "control server: cannot start a thread");
		close(ctl->listen_fd);
		ctl->listen_fd = -1;
		unlink(socket_path);
		goto fail;
	}
	*out = ctl;
	return 0;
fail:
	if (ctl->wake[0] >= 0) {
		close(ctl->wake[0]);
		close(ctl->wake[1]);
	}
	pthread_mutex_destroy(&ctl->lock);
	free(ctl->path);
	free(ctl);
	return rc;
}

void omnifs_ctl_stop(struct omnifs_ctl *ctl)
{
	struct ctl_conn *c;
	struct stat st;
	ssize_t w;

	if (!ctl)
		return;
	pthread_mutex_lock(&ctl->lock);
	ctl->stopping = true;
	pthread_mutex_unlock(&ctl->lock);
	do {
		w = write(ctl->wake[1], "x", 1);
	} while (w < 0 && errno == EINTR);
	pthread_join(ctl->accept_thread, NULL);

	/* Remove the socket only if it is still ours. */
	if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->sock_dev &&
	    st.st_ino == ctl->sock_ino)
		unlink(ctl->path);
	close(ctl->listen_fd);

	/* End what runs: sockets shut (blocked reads and writes return),
	 * commands killed. Their threads then finish on their own. */
	pthread_mutex_lock(&ctl->lock);
	for (c = ctl->conns; c; c = c->next) {
		if (c->fd >= 0)
			shutdown(c->fd, SHUT_RDWR);
		if (c->exec)
			omni_vfs_exec_signal(c->exec, SIGKILL);
	}
	c = ctl->conns;
	ctl->conns = NULL;
	pthread_mutex_unlock(&ctl->lock);
	while (c) {
		struct ctl_conn *next = c->next;

		pthread_join(c->thread, NULL);
		conn_free(c);
		c = next;
	}
	close(ctl->wake[0]);
	close(ctl->wake[1]);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl->path);
	free(ctl);
}
