/*
 * backends/docker/docker_exec.c - the docker backend's commands: the exec
 *protocol of omni/ipc.h spoken to omni-agent, the container's init, over its
 *Unix socket in the host directory bound at /run/omni. No `docker exec`: a
 * command costs a connect, one frame each way and a fork and exec inside
 * the container, and it can be signalled and killed as a group.
 *
 * One command, one connection:
 *	exec_start  connect to <run_dir>/agent.sock, send EXEC (argv or
 *	            shell, CWD /workspace[/rel], the session's and the
 *	            request's environment, timeout, tty, stdin), wait for
 *	            STARTED, or ERROR (a bad directory: -ENOENT and the
 *	            agent's message).
 *	exec_wait   pump frames: STDOUT/STDERR to the callback, EXIT fills
 *	            the status; ERROR is -errno with the agent's message;
 *	            the connection closing first means the agent died with
 *	            the container: -EIO, "the container's agent went away",
 *	            with the container's state from the Engine API.
 *	exec_input  STDIN frames (an empty one is EOF), exec_signal SIGNAL,
 *	            exec_resize RESIZE.
 *	exec_free   close the socket; the agent kills a command whose client
 *	            went away.
 * Output the callback refuses (non-zero) ends the command with a SIGNAL
 * frame carrying SIGKILL; the rest is read and dropped up to EXIT. When a
 * timeout was asked for, the agent enforces it; should the agent itself
 * stop answering (a paused container), exec_wait gives up GRACE_MS after
 * that deadline with -ETIMEDOUT.
 *
 * Locking. exec_wait reads the socket on its thread alone. Writers
 * (exec_input, exec_signal, exec_resize, and exec_wait's SIGKILL) take
 * send_lock so that frames do not interleave. exec_signal must never
 * block (the control server calls it with its own lock held), so it only
 * tries the lock: a signal it cannot send at once is left in the
 * `pending` bit set, and whoever holds the lock sends pending signals
 * before and after releasing it (flush_unlock()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include <time.h>
#include <unistd.h>

#include "base/env.h"
#include "base/clock.h"
#include "docker/docker.h"
#include "base/error.h"
#include "omni/error.h"
#include "omni/ipc.h"

/* How long the agent may take to report that a command started. */
#define START_TIMEOUT_MS 30000
/* How long past a command's own timeout the agent may take to report. */
#define GRACE_MS 10000

struct docker_exec {
	struct omni_exec base;
	int fd;
	pthread_mutex_t send_lock;
	_Atomic unsigned long long pending; /* bit s-1: signal s to send */
	unsigned int timeout_ms;
	struct omni_ipc_buf buf;
};

static struct docker_exec *de_of(struct omni_exec *e)
{
	return (struct docker_exec *)e;
}

/* --- the agent's socket --------------------------------------------------- */

/* Is the process listening on fd the container's init? A pid that does not
 * match is looked up again once: the container may have been restarted
 * (by the daemon, or by a reuse) since we last asked. */
static int check_peer(struct omni__docker_backend *db, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int pid = atomic_load(&db->agent_pid);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return omni_error_set_errno(-errno, "SO_PEERCRED");
	if (pid > 0 && cred.pid == pid)
		return 0;
	int rc = omni__docker_init_pid(db, &pid);
	if (rc < 0)
		return rc;
	atomic_store(&db->agent_pid, pid);
	if (pid > 0 && cred.pid == pid)
		return 0;
	return omni_error_set(-EPERM,
	                      "%s/agent.sock is served by pid %d, not by the "
	                      "omni-agent of container %s (pid %d): something "
	                      "in the container replaced the socket; refusing "
	                      "to use it",
	                      db->run_dir, (int)cred.pid, db->name, pid);
}

int omni__docker_agent_connect(struct omni__docker_backend *db, int *fd)
{
	char path[64];
	struct stat st;
	int pfd, rc;

	*fd = -1;
	if (db->files == OMNI__DOCKER_FILES_AGENT)
		return omni__docker_mux_connect(db, fd);
	if (db->run_fd < 0)
		return omni_error_set(-ENOTCONN,
		                      "docker: the session is not started");
	pfd = openat(db->run_fd, "agent.sock", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0)
		return omni_error_set_errno(-errno,
		                            "cannot reach omni-agent at "
		                            "%s/agent.sock",
		                            db->run_dir);
	if (fstat(pfd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
		rc = S_ISLNK(st.st_mode) ? -ELOOP : -ENOTSOCK;
		close(pfd);
		return omni_error_set(
		    -EPERM,
		    "%s/agent.sock is %s, not omni-agent's "
		    "socket: something in the container "
		    "replaced it; refusing to follow it",
		    db->run_dir, rc == -ELOOP ? "a symlink" : "not a socket");
	}
	/* Connect to the inode just checked, not to whatever the name
	 * means by now. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", pfd);
	rc = omni__unix_connect(path, fd);
	close(pfd);
	if (rc < 0)
		return omni_error_set_errno(rc,
		                            "cannot reach omni-agent at "
		                            "%s/agent.sock",
		                            db->run_dir);
	if ((rc = check_peer(db, *fd)) < 0) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

/* Wait until fd is readable or ms passed (-1: forever). 1 readable, 0
 * timed out, -errno. */
static int wait_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (;;) {
		int r = poll(&p, 1, ms);
		if (r >= 0)
			return r;
		if (errno != EINTR)
			return -errno;
	}
}

int omni__docker_agent_ping(struct omni__docker_backend *db, int timeout_ms)
{
	struct omni_ipc_buf buf = { 0 };
	uint8_t type;
	int fd, rc;

	if ((rc = omni__docker_agent_connect(db, &fd)) < 0)
		return rc;
	rc = omni_ipc_send(fd, OMNI_IPC_CONTROL, "ping", 4);
	if (rc == 0 && (rc = wait_readable(fd, timeout_ms)) == 0)
		rc = -ETIMEDOUT;
	if (rc > 0) {
		rc = omni_ipc_recv(fd, &type, &buf);
		bool pong = rc > 0 && type == OMNI_IPC_REPLY && buf.len >= 4 &&
		            omni_ipc_get_u32(buf.data) == 0;
		if (rc > 0)
			rc = pong ? 0 : -EPROTO;
		else if (rc == 0)
			rc = -ECONNRESET;
	}
	omni_ipc_buf_finish(&buf);
	close(fd);
	if (rc < 0)
		return omni_error_set_errno(rc, "omni-agent in %s: ping",
		                            db->name);
	return 0;
}

/* --- sending -------------------------------------------------------------- */

static int send_signal_frame(struct docker_exec *de, int sig)
{
	return omni_ipc_send_u32(de->fd, OMNI_IPC_SIGNAL, (uint32_t)sig);
}

/* Send the pending signals, release send_lock, and do it again when one
 * was left pending meanwhile and the lock is free. */
static void flush_unlock(struct docker_exec *de)
{
	for (;;) {
		unsigned long long p = atomic_exchange(&de->pending, 0);
		for (int s = 1; s <= 64 && p; s++) {
			if (p & (1ULL << (s - 1)))
				send_signal_frame(de, s);
		}
		pthread_mutex_unlock(&de->send_lock);
		if (atomic_load(&de->pending) == 0 ||
		    pthread_mutex_trylock(&de->send_lock) != 0)
			return;
	}
}

/* --- the command's life --------------------------------------------------- */

/* After STARTED is awaited: the first frame says whether it runs. */
static int await_started(struct omni__docker_backend *db,
                         struct docker_exec *de)
{
	uint8_t type;
	int rc = wait_readable(de->fd, START_TIMEOUT_MS);

	if (rc == 0)
		return omni_error_set(-ETIMEDOUT,
		                      "docker: omni-agent in %s did not start "
		                      "the command within %d s (container "
		                      "paused?)",
		                      db->name, START_TIMEOUT_MS / 1000);
	if (rc > 0)
		rc = omni_ipc_recv(de->fd, &type, &de->buf);
	if (rc < 0 && rc != -ECONNRESET && rc != -EPIPE)
		return omni_error_set_errno(rc,
		                            "docker: reading from omni-agent");
	if (rc <= 0) {
		char state[256];
		omni__docker_describe_state(db, state, sizeof(state), 2000);
		return omni_error_set(-EIO,
		                      "the container's agent went away before "
		                      "the command started (%s)",
		                      state);
	}
	if (type == OMNI_IPC_STARTED)
		return 0;
	if (type == OMNI_IPC_ERROR && de->buf.len >= 4) {
		int err = (int)omni_ipc_get_u32(de->buf.data);
		return omni_error_set(err < 0 ? err : -EIO, "%.*s",
		                      (int)(de->buf.len - 4),
		                      (const char *)de->buf.data + 4);
	}
	return omni_error_set(-EPROTO,
	                      "docker: omni-agent answered EXEC with frame "
	                      "0x%02x",
	                      type);
}

/* A ".." component or an absolute path (agent mode's lexical check; the
 * container is the sandbox, so a symlink leading out stays in it). */
static bool rel_escapes(const char *rel)
{
	if (rel[0] == '/')
		return true;
	for (const char *p = rel; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return true;
		p += n;
		while (*p == '/')
			p++;
	}
	return false;
}

int omni__docker_exec_start(struct omni_backend *b,
                            const struct omni_exec_request *req,
                            struct omni_exec **out)
{
	struct omni__docker_backend *db = (struct omni__docker_backend *)b;
	const char *rel = req->cwd ? req->cwd : "";
	struct omni_ipc_buf payload = { 0 };
	struct docker_exec *de = NULL;
	const char **env = NULL;
	char cwd[PATH_MAX];
	int rc, dir_fd;

	/* The directory must exist in the workspace and stay in it, as
	 * with the local backend; checked on the host side of the bind. In
	 * agent mode the agent checks it (a missing one is an ERROR frame). */
	if (db->files == OMNI__DOCKER_FILES_AGENT) {
		if (rel_escapes(rel))
			return omni_error_set(-EACCES,
			                      "exec: %s: leads outside the "
			                      "workspace",
			                      rel);
		dir_fd = -1;
	} else {
		dir_fd = omni__confined_openat(&db->host.root, rel,
		                               O_PATH | O_DIRECTORY, 0);
	}
	if (dir_fd < 0 && db->files != OMNI__DOCKER_FILES_AGENT) {
		if (dir_fd == -EXDEV)
			return omni_error_set(-EACCES,
			                      "exec: %s: leads outside the "
			                      "workspace",
			                      rel);
		return omni_error_set_errno(
		    dir_fd, "exec: directory /workspace/%s", rel);
	}
	if (dir_fd >= 0)
		close(dir_fd);
	int n = snprintf(cwd, sizeof(cwd), "%s%s%s", OMNI_DOCKER_WORKDIR,
	                 *rel ? "/" : "", rel);
	if (n < 0 || (size_t)n >= sizeof(cwd))
		return omni_error_set(-ENAMETOOLONG,
		                      "exec: directory too long");

	if (b->opts.env && b->opts.env[0]) {
		/* The session's env= with the request's on top; the agent
		 * applies the list over its own environment. */
		env = omni__env_merge(b->opts.env, req->env);
		if (!env)
			return omni_error_set(-ENOMEM, "exec: out of memory");
	}
	struct omni_ipc_request ir = {
		.argv = (char **)req->argv,
		.shell = (char *)req->shell,
		.cwd = cwd,
		.env = (char **)(env ? env : req->env),
		.timeout_ms = req->timeout_ms,
		.tty = req->tty,
		.rows = req->rows,
		.cols = req->cols,
		.want_stdin = req->want_stdin,
	};
	rc = omni_ipc_request_encode(&ir, &payload);
	free(env);
	if (rc < 0) {
		omni_ipc_buf_finish(&payload);
		return omni_error_set_errno(rc, "exec: the request");
	}

	de = calloc(1, sizeof(*de));
	if (!de) {
		omni_ipc_buf_finish(&payload);
		return omni_error_set(-ENOMEM, "exec: out of memory");
	}
	de->base.backend = b;
	de->fd = -1;
	de->timeout_ms = req->timeout_ms;
	atomic_init(&de->pending, 0);
	pthread_mutex_init(&de->send_lock, NULL);

	if ((rc = omni__docker_agent_connect(db, &de->fd)) < 0) {
		struct omni__error_saved saved;
		char state[256];
		omni__error_save(&saved);
		omni__docker_describe_state(db, state, sizeof(state), 0);
		/* A socket we refused stays -EPERM: the session is not
		 * gone, something in it is hostile. */
		rc = omni_error_set(rc == -EPERM ? -EPERM : -ENOTCONN,
		                    "cannot run the command: %s (%s)", state,
		                    saved.msg);
		goto fail;
	}
	rc = omni_ipc_send(de->fd, OMNI_IPC_EXEC, payload.data, payload.len);
	if (rc < 0) {
		rc = omni_error_set_errno(rc, "exec: sending to omni-agent");
		goto fail;
	}
	if ((rc = await_started(db, de)) < 0)
		goto fail;
	omni_ipc_buf_finish(&payload);
	*out = &de->base;
	return 0;

fail:
	omni_ipc_buf_finish(&payload);
	omni__docker_exec_free(&de->base);
	return rc;
}

static int kill_now(struct docker_exec *de)
{
	atomic_fetch_or(&de->pending, 1ULL << (SIGKILL - 1));
	if (pthread_mutex_trylock(&de->send_lock) == 0)
		flush_unlock(de);
	return 0;
}

int omni__docker_exec_wait(struct omni_exec *e, omni_output_cb cb,
                           void *payload, struct omni_exec_status *status)
{
	struct docker_exec *de = de_of(e);
	struct omni__docker_backend *db =
	    (struct omni__docker_backend *)e->backend;
	long long deadline =
	    de->timeout_ms ? omni__now_ms() + de->timeout_ms + GRACE_MS : 0;
	bool stopped = false, killed_late = false;
	uint8_t type;
	int rc;

	memset(status, 0, sizeof(*status));
	for (;;) {
		int ms = -1;
		if (deadline) {
			long long left = deadline - omni__now_ms();
			ms = left > 0 ? (int)(left < INT_MAX ? left : INT_MAX)
			              : 0;
		}
		rc = wait_readable(de->fd, ms);
		if (rc == 0) {
			if (killed_late)
				return omni_error_set(
				    -ETIMEDOUT,
				    "docker: omni-agent in %s did not "
				    "report the end of the command "
				    "(container paused?)",
				    db->name);
			/* The agent should have ended it by now. */
			kill_now(de);
			killed_late = true;
			deadline = omni__now_ms() + 5000;
			continue;
		}
		if (rc > 0)
			rc = omni_ipc_recv(de->fd, &type, &de->buf);
		if (rc < 0 && rc != -ECONNRESET && rc != -EPIPE &&
		    rc != -EPROTO)
			return omni_error_set_errno(rc, "docker: reading from "
			                                "omni-agent");
		if (rc <= 0) {
			char state[256];
			omni__docker_describe_state(db, state, sizeof(state),
			                            2000);
			return omni_error_set(-EIO,
			                      "the container's agent went away "
			                      "before the command ended (%s)",
			                      state);
		}
		switch (type) {
		case OMNI_IPC_STDOUT:
		case OMNI_IPC_STDERR:
			if (stopped || !cb || de->buf.len == 0)
				break;
			if (cb(type == OMNI_IPC_STDOUT ? OMNI_EXEC_STDOUT
			                               : OMNI_EXEC_STDERR,
			       de->buf.data, de->buf.len, payload) != 0) {
				/* The consumer is gone: end the command. */
				stopped = true;
				kill_now(de);
			}
			break;
		case OMNI_IPC_EXIT:
			if (de->buf.len < 9)
				return omni_error_set(
				    -EPROTO, "docker: short EXIT frame "
				             "from omni-agent");
			status->exit_code = (int)omni_ipc_get_u32(de->buf.data);
			status->signal =
			    (int)omni_ipc_get_u32(de->buf.data + 4);
			status->timed_out = de->buf.data[8] != 0;
			return 0;
		case OMNI_IPC_ERROR: {
			if (de->buf.len < 4)
				return omni_error_set(
				    -EPROTO, "docker: short ERROR frame "
				             "from omni-agent");
			int err = (int)omni_ipc_get_u32(de->buf.data);
			return omni_error_set(err < 0 ? err : -EIO, "%.*s",
			                      (int)(de->buf.len - 4),
			                      (const char *)de->buf.data + 4);
		}
		default:
			/* STARTED again, or frames of a newer agent. */
			break;
		}
	}
}

int omni__docker_exec_input(struct omni_exec *e, const void *data, size_t len)
{
	struct docker_exec *de = de_of(e);
	const size_t chunk = OMNI_IPC_MAX_FRAME - 1;
	int rc = 0;

	pthread_mutex_lock(&de->send_lock);
	if (len == 0) {
		rc = omni_ipc_send(de->fd, OMNI_IPC_STDIN, NULL, 0);
	} else {
		for (size_t off = 0; off < len && rc == 0; off += chunk) {
			size_t n = len - off < chunk ? len - off : chunk;
			rc = omni_ipc_send(de->fd, OMNI_IPC_STDIN,
			                   (const char *)data + off, n);
		}
	}
	flush_unlock(de);
	if (rc < 0)
		return omni_error_set_errno(rc, "exec: stdin");
	return 0;
}

int omni__docker_exec_signal(struct omni_exec *e, int sig)
{
	struct docker_exec *de = de_of(e);

	if (sig < 1 || sig > 64)
		return omni_error_set(-EINVAL, "exec: bad signal %d", sig);
	atomic_fetch_or(&de->pending, 1ULL << (sig - 1));
	if (pthread_mutex_trylock(&de->send_lock) == 0)
		flush_unlock(de);
	return 0;
}

int omni__docker_exec_resize(struct omni_exec *e, unsigned short rows,
                             unsigned short cols)
{
	struct docker_exec *de = de_of(e);
	unsigned char sz[4] = { (unsigned char)(rows >> 8), (unsigned char)rows,
		                (unsigned char)(cols >> 8),
		                (unsigned char)cols };
	int rc;

	pthread_mutex_lock(&de->send_lock);
	rc = omni_ipc_send(de->fd, OMNI_IPC_RESIZE, sz, sizeof(sz));
	flush_unlock(de);
	if (rc < 0)
		return omni_error_set_errno(rc, "exec: resize");
	return 0;
}

void omni__docker_exec_free(struct omni_exec *e)
{
	struct docker_exec *de = de_of(e);

	if (!e)
		return;
	if (de->fd >= 0) {
		/* The agent kills a command whose client has gone. */
		shutdown(de->fd, SHUT_RDWR);
		close(de->fd);
	}
	pthread_mutex_destroy(&de->send_lock);
	omni_ipc_buf_finish(&de->buf);
	free(de);
}
