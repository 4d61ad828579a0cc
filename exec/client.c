/*
 * client.c - the client side of the exec wire protocol (see client.h).
 *
 * Design. omni__exec_client_run() sends the EXEC frame and then runs a poll
 * loop on the calling thread over the socket (frames from the server) and
 * the signal pipe. Output frames are written straight to the output
 * descriptors with write(2), no stdio buffering, so a line printed in the
 * sandbox shows at once, also through a pipe.
 *
 * stdin is read by a second thread, started when the STARTED frame comes
 * (a command that never starts does not eat its input): it polls the input
 * and a wake pipe, and sends each chunk as a STDIN frame; EOF sends the
 * empty STDIN frame. Sending stdin may block when the command does not
 * read it; the main loop must keep draining output meanwhile, or the two
 * ends would wait on each other, hence the thread. When stdin is a
 * terminal and omni-exec runs in the background, reading it fails with EIO
 * (main ignores SIGTTIN, so the process is not stopped); the thread then
 * waits and retries, so `omni-exec make &` keeps running and `fg` later
 * gives the command its input.
 *
 * Frames from both threads share one socket: send_lock serialises them.
 * A signal must never wait behind a stdin frame that cannot be delivered,
 * so the main thread only *tries* the lock: the signal is recorded in the
 * `pending` bit set and sent by whichever thread holds the lock next. If a
 * second terminating signal comes while an earlier one has been stuck for
 * a second, omni-exec gives up: it drops the connection (the server then
 * kills the command) and reports 128+N.
 *
 * Our stdout closing (EPIPE, as with `omni-exec yes | head`) is passed on
 * as SIGPIPE to the command's group, like a local pipeline; output that
 * still arrives is dropped, and if the command does not end within
 * PIPE_GRACE_MS the connection is dropped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/mountinfo.h"
#include "client.h"
#include "omni/backend.h"
#include "omni/error.h"
#include "omni/session.h"

#define STDIN_CHUNK   (64 * 1024)
#define PIPE_GRACE_MS 2000
/* How long past its timeout the server may take to report the end. */
#define TIMEOUT_GRACE_MS 10000
#define STUCK_SIGNAL_MS  1000

/* --- finding the session -------------------------------------------------- */

int omni__exec_client_resolve(struct omni_exec_target *out,
                              const char *mount_dir, const char *project)
{
	char mp[PATH_MAX], found[256], rel[PATH_MAX];
	int rc;

	memset(out, 0, sizeof(*out));
	if (mount_dir) {
		rc = omni_session_find(mount_dir, found, sizeof(found), mp,
		                       sizeof(mp), rel, sizeof(rel));
		if (rc < 0)
			return rc;
		snprintf(out->project, sizeof(out->project), "%s", found);
		snprintf(out->cwd, sizeof(out->cwd), "%s", rel);
	} else if (project) {
		if (!omni_project_id_valid(project))
			return omni_error_set(
			    -EINVAL, "invalid project id '%s'", project);
		snprintf(out->project, sizeof(out->project), "%s", project);
		/* The caller's directory counts only inside this project's
		 * own mount; anywhere else the command runs at the root. */
		if (omni__session_find_cwd(found, sizeof(found), mp, sizeof(mp),
		                           rel, sizeof(rel)) == 0 &&
		    strcmp(found, project) == 0)
			snprintf(out->cwd, sizeof(out->cwd), "%s", rel);
	} else {
		/* Said apart from "not in a mount": a directory removed (or
		 * invalidated) under the caller has no path. */
		rc = omni__session_find_cwd(found, sizeof(found), mp,
		                            sizeof(mp), rel, sizeof(rel));
		if (rc == -ENOENT)
			return omni_error_set(-ENOENT,
			                      "not inside an omnifs mount; use "
			                      "-C DIR or --project ID");
		if (rc < 0)
			return rc;
		snprintf(out->project, sizeof(out->project), "%s", found);
		snprintf(out->cwd, sizeof(out->cwd), "%s", rel);
	}
	omni_error_clear();
	rc = omni_session_socket_path(out->project, out->socket,
	                              sizeof(out->socket));
	if (rc == -ENOENT)
		return omni_error_set(-ENOENT,
		                      "no omnifs session for project '%s' "
		                      "(%s)",
		                      out->project, omni_error_last());
	return rc;
}

int omni__exec_client_connect(const char *path, int *out)
{
	int rc = omni__unix_connect(path, out);

	if (rc == -ENOENT)
		return omni_error_set(-ENOENT,
		                      "no omnifs daemon listens at %s "
		                      "(is the workspace mounted?)",
		                      path);
	if (rc == -ECONNREFUSED)
		return omni_error_set(-ECONNREFUSED,
		                      "the omnifs daemon behind %s is "
		                      "not running (stale socket)",
		                      path);
	return rc;
}

/* --- small helpers -------------------------------------------------------- */

static int32_t get_i32(const unsigned char *p)
{
	return (int32_t)omni_ipc_get_u32(p);
}

/* An ERROR frame's payload as the calling thread's error. */
static int error_from_frame(const struct omni_ipc_buf *buf)
{
	int err = -EIO;
	const char *msg = "the daemon reported an error";
	char text[512];

	if (buf->len >= 4) {
		err = get_i32(buf->data);
		if (err >= 0 || err < -4095)
			err = -EIO;
		size_t n = buf->len - 4;
		if (n >= sizeof(text))
			n = sizeof(text) - 1;
		memcpy(text, buf->data + 4, n);
		text[n] = '\0';
		if (n)
			msg = text;
	}
	return omni_error_set(err, "%s", msg);
}

/* --- one command ---------------------------------------------------------- */

struct client {
	int fd;
	const struct omni__exec_client_io *io;
	pthread_mutex_t send_lock;
	atomic_uint_least64_t pending; /* signals to send: bit N = signal N */
	int wake[2];                   /* stops the stdin thread */
	atomic_bool stop;
	pthread_t stdin_thread;
	bool stdin_started;
};

/* With send_lock held: send the pending signals (and resizes). */
static void flush_pending(struct client *cl)
{
	uint64_t bits = atomic_exchange(&cl->pending, 0);

	for (int sig = 1; sig < 64 && bits; sig++) {
		uint64_t bit = (uint64_t)1 << sig;

		if (!(bits & bit))
			continue;
		bits &= ~bit;
		if (sig == SIGWINCH) {
			struct winsize ws;

			if (cl->io->tty_fd >= 0 &&
			    ioctl(cl->io->tty_fd, TIOCGWINSZ, &ws) == 0) {
				unsigned char b[4] = {
					(unsigned char)(ws.ws_row >> 8),
					(unsigned char)ws.ws_row,
					(unsigned char)(ws.ws_col >> 8),
					(unsigned char)ws.ws_col
				};
				omni_ipc_send(cl->fd, OMNI_IPC_RESIZE, b, 4);
			}
		} else {
			omni_ipc_send_u32(cl->fd, OMNI_IPC_SIGNAL,
			                  (uint32_t)sig);
		}
	}
}

/* Queue sig and send it unless another frame is being sent. Returns true
 * when it went out at once. */
static bool queue_signal(struct client *cl, int sig)
{
	if (sig <= 0 || sig >= 64)
		return true;
	atomic_fetch_or(&cl->pending, (uint64_t)1 << sig);
	if (pthread_mutex_trylock(&cl->send_lock) != 0)
		return false;
	flush_pending(cl);
	pthread_mutex_unlock(&cl->send_lock);
	return true;
}

/* Wait up to ms for the wake pipe; true when it fired. */
static bool wait_wake(struct client *cl, int ms)
{
	struct pollfd p = { .fd = cl->wake[0], .events = POLLIN };

	return poll(&p, 1, ms) > 0 || atomic_load(&cl->stop);
}

static void *stdin_main(void *arg)
{
	struct client *cl = arg;
	int in = cl->io->in_fd;
	bool is_tty = isatty(in);
	char *chunk = malloc(STDIN_CHUNK);

	while (chunk && !atomic_load(&cl->stop)) {
		struct pollfd pfd[2] = {
			{ .fd = in, .events = POLLIN },
			{ .fd = cl->wake[0], .events = POLLIN },
		};

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents || atomic_load(&cl->stop))
			break;
		ssize_t n = read(in, chunk, STDIN_CHUNK);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0 && errno == EIO && is_tty) {
			/* A background job reading its terminal: wait to be
			 * brought to the foreground. */
			if (wait_wake(cl, 200))
				break;
			continue;
		}
		if (n < 0)
			n = 0; /* unreadable input ends like EOF */

		pthread_mutex_lock(&cl->send_lock);
		int rc =
		    omni_ipc_send(cl->fd, OMNI_IPC_STDIN, chunk, (size_t)n);
		flush_pending(cl);
		pthread_mutex_unlock(&cl->send_lock);
		if (rc < 0 || n == 0)
			break; /* sent EOF, or the server stopped reading */
	}
	free(chunk);
	return NULL;
}

static void stdin_stop(struct client *cl)
{
	ssize_t w;

	if (!cl->stdin_started)
		return;
	atomic_store(&cl->stop, true);
	do {
		w = write(cl->wake[1], "x", 1);
	} while (w < 0 && errno == EINTR);
	/* A send blocked on a full socket returns once it is shut. */
	shutdown(cl->fd, SHUT_RDWR);
	pthread_join(cl->stdin_thread, NULL);
	cl->stdin_started = false;
}

static bool is_terminating(int sig)
{
	return sig == SIGINT || sig == SIGTERM || sig == SIGHUP ||
	       sig == SIGQUIT;
}

/* One omni__exec_client_run() in progress. */
struct run {
	struct client cl;
	const struct omni_ipc_request *req;
	struct omni__exec_client_result *res;
	struct omni_ipc_buf buf;
	long long deadline, pipe_deadline, stuck_since;
	bool out_broken, done;
};

/* Give up waiting? Our stdout's reader left and the command goes on
 * writing, or the server let the command's timeout pass long ago. The
 * connection is then dropped, which ends the command. */
static bool run_gives_up(struct run *r, long long now)
{
	if (r->pipe_deadline && now >= r->pipe_deadline) {
		r->res->exit_code = 128 + SIGPIPE;
		r->res->signal = SIGPIPE;
		r->res->abandoned = true;
		return true;
	}
	if (r->deadline && now >= r->deadline) {
		r->res->exit_code = 124;
		r->res->timed_out = true;
		r->res->abandoned = true;
		return true;
	}
	return false;
}

/* How long poll() may wait: until a deadline, or a short while when a
 * signal waits to be sent. */
static int run_wait_ms(struct run *r, long long now)
{
	int wait = -1;

	if (r->pipe_deadline)
		wait = (int)(r->pipe_deadline - now);
	if (r->deadline && (wait < 0 || r->deadline - now < wait))
		wait = (int)(r->deadline - now);
	if (atomic_load(&r->cl.pending) && wait < 0)
		wait = 50; /* retry a queued signal */
	return wait;
}

/* Signals from the signal pipe: queued for the server, or, when an
 * earlier one has been stuck for STUCK_SIGNAL_MS and this one would end
 * the command, the end of waiting (r->done). */
static void run_take_signals(struct run *r)
{
	unsigned char sigs[32];
	ssize_t n = read(r->cl.io->sig_fd, sigs, sizeof(sigs));

	for (ssize_t i = 0; i < n; i++) {
		int sig = sigs[i];
		bool stuck = atomic_load(&r->cl.pending) && r->stuck_since &&
		             omni__now_ms() - r->stuck_since >= STUCK_SIGNAL_MS;

		if (stuck && is_terminating(sig)) {
			r->res->exit_code = 128 + sig;
			r->res->signal = sig;
			r->res->abandoned = true;
			r->done = true;
			return;
		}
		if (!queue_signal(&r->cl, sig) && !r->stuck_since)
			r->stuck_since = omni__now_ms();
	}
}

/* An output frame to its descriptor. */
static void run_output(struct run *r, uint8_t type)
{
	const struct omni__exec_client_io *io = r->cl.io;

	if (type == OMNI_IPC_STDERR) {
		/* A closed stderr must not end the command. */
		omni_ipc_write_all(io->err_fd, r->buf.data, r->buf.len);
		return;
	}
	if (r->out_broken)
		return;
	/* EPIPE mostly; any failure ends our stdout. */
	if (omni_ipc_write_all(io->out_fd, r->buf.data, r->buf.len) < 0) {
		r->out_broken = true;
		r->pipe_deadline = omni__now_ms() + PIPE_GRACE_MS;
		queue_signal(&r->cl, SIGPIPE);
	}
}

/* Read and act on one frame from the server. 0 or -errno. */
static int run_take_frame(struct run *r)
{
	struct client *cl = &r->cl;
	uint8_t type;
	int rc = omni_ipc_recv(cl->fd, &type, &r->buf);

	if (rc <= 0)
		return omni_error_set(rc == -EPROTO ? -EPROTO : -ECONNRESET,
		                      "connection to the omnifs daemon lost "
		                      "before the command ended");
	switch (type) {
	case OMNI_IPC_STARTED:
		if (r->req->want_stdin && cl->io->in_fd >= 0 &&
		    !cl->stdin_started) {
			cl->stdin_started =
			    pthread_create(&cl->stdin_thread, NULL, stdin_main,
			                   cl) == 0;
		}
		break;
	case OMNI_IPC_STDOUT:
	case OMNI_IPC_STDERR:
		run_output(r, type);
		break;
	case OMNI_IPC_EXIT:
		if (r->buf.len < 9)
			return omni_error_set(-EPROTO, "malformed EXIT frame");
		r->res->exit_code = get_i32(r->buf.data);
		r->res->signal = get_i32(r->buf.data + 4);
		r->res->timed_out = r->buf.data[8] != 0;
		r->done = true;
		break;
	case OMNI_IPC_ERROR:
		return error_from_frame(&r->buf);
	default:
		/* Frames of a newer server are skipped. */
		break;
	}
	return 0;
}

/* The poll loop, until EXIT, an error or giving up. 0 or -errno. */
static int run_loop(struct run *r)
{
	const struct omni__exec_client_io *io = r->cl.io;

	while (!r->done) {
		struct pollfd pfd[2] = {
			{ .fd = r->cl.fd, .events = POLLIN },
			{ .fd = io->sig_fd, .events = POLLIN },
		};
		int nfds = io->sig_fd >= 0 ? 2 : 1;
		long long now = omni__now_ms();

		if (run_gives_up(r, now))
			break;
		if (poll(pfd, (nfds_t)nfds, run_wait_ms(r, now)) < 0) {
			if (errno == EINTR)
				continue;
			return omni_error_set_errno(-errno, "poll");
		}
		if (nfds == 2 && pfd[1].revents) {
			run_take_signals(r);
			if (r->done)
				break;
		}
		if (atomic_load(&r->cl.pending) &&
		    pthread_mutex_trylock(&r->cl.send_lock) == 0) {
			flush_pending(&r->cl);
			pthread_mutex_unlock(&r->cl.send_lock);
		}
		if (!atomic_load(&r->cl.pending))
			r->stuck_since = 0;

		if (!pfd[0].revents)
			continue;
		int rc = run_take_frame(r);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int omni__exec_client_run(int fd, const struct omni_ipc_request *req,
                          const struct omni__exec_client_io *io,
                          struct omni__exec_client_result *res)
{
	struct run r = {
		.cl = { .fd = fd, .io = io, .wake = { -1, -1 } },
		.req = req,
		.res = res,
	};
	int rc;

	memset(res, 0, sizeof(*res));
	pthread_mutex_init(&r.cl.send_lock, NULL);
	atomic_init(&r.cl.pending, 0);
	atomic_init(&r.cl.stop, false);

	if (pipe2(r.cl.wake, O_CLOEXEC) < 0) {
		rc = omni_error_set_errno(-errno, "pipe");
		goto out;
	}
	rc = omni_ipc_request_encode(req, &r.buf);
	if (rc == 0)
		rc = omni_ipc_send(fd, OMNI_IPC_EXEC, r.buf.data, r.buf.len);
	if (rc < 0) {
		rc = omni_error_set_errno(rc, "cannot send the request");
		goto out;
	}
	if (req->timeout_ms)
		r.deadline =
		    omni__now_ms() + req->timeout_ms + TIMEOUT_GRACE_MS;
	rc = run_loop(&r);
out:
	stdin_stop(&r.cl);
	shutdown(fd, SHUT_RDWR);
	if (r.cl.wake[0] >= 0) {
		close(r.cl.wake[0]);
		close(r.cl.wake[1]);
	}
	pthread_mutex_destroy(&r.cl.send_lock);
	omni_ipc_buf_finish(&r.buf);
	return rc;
}

int omni__exec_client_control(int fd, const char *request, unsigned int *status,
                              char **reply)
{
	struct omni_ipc_buf buf = { 0 };
	uint8_t type;
	int rc;

	*status = 0;
	*reply = NULL;
	rc = omni_ipc_send(fd, OMNI_IPC_CONTROL, request, strlen(request));
	if (rc < 0)
		return omni_error_set_errno(rc, "cannot send the request");
	rc = omni_ipc_recv(fd, &type, &buf);
	if (rc <= 0) {
		rc = omni_error_set(-ECONNRESET,
		                    "the omnifs daemon closed the connection");
	} else if (type == OMNI_IPC_ERROR) {
		rc = error_from_frame(&buf);
	} else if (type != OMNI_IPC_REPLY || buf.len < 4) {
		rc = omni_error_set(-EPROTO, "unexpected answer (frame 0x%02x)",
		                    type);
	} else {
		*status = omni_ipc_get_u32(buf.data);
		*reply = strndup((const char *)buf.data + 4, buf.len - 4);
		rc = *reply ? 0 : omni_error_set(-ENOMEM, "out of memory");
	}
	omni_ipc_buf_finish(&buf);
	return rc;
}

/* --- signals and the terminal --------------------------------------------- */

static int signal_pipe_w = -1;

static void on_signal(int sig)
{
	int saved = errno;
	unsigned char b = (unsigned char)sig;
	ssize_t w = write(signal_pipe_w, &b, 1);

	(void)w;
	errno = saved;
}

int omni__exec_client_signals_install(bool winch, int *read_fd)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT,
		                    SIGWINCH };
	struct sigaction sa = { .sa_handler = on_signal,
		                .sa_flags = SA_RESTART };
	int p[2];

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return omni_error_set_errno(-errno, "pipe");
	signal_pipe_w = p[1];
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		if (sigs[i] == SIGWINCH && !winch)
			continue;
		if (sigaction(sigs[i], &sa, NULL) < 0)
			return omni_error_set_errno(-errno, "sigaction");
	}
	*read_fd = p[0];
	return 0;
}

int omni__exec_client_tty_raw(int fd, struct termios *saved)
{
	struct termios t;

	if (tcgetattr(fd, saved) < 0)
		return omni_error_set_errno(-errno, "terminal settings");
	t = *saved;
	/* What cfmakeraw() does, spelled out in POSIX terms: no line
	 * editing, echo, signal keys or output processing; 8-bit bytes. */
	t.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR |
	                         IGNCR | ICRNL | IXON);
	t.c_oflag &= ~(tcflag_t)OPOST;
	t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
	t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB);
	t.c_cflag |= CS8;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(fd, TCSADRAIN, &t) < 0)
		return omni_error_set_errno(-errno, "terminal settings");
	return 0;
}

int omni__exec_client_tty_restore(int fd, const struct termios *saved)
{
	if (tcsetattr(fd, TCSADRAIN, saved) < 0)
		return omni_error_set_errno(-errno, "terminal settings");
	return 0;
}
