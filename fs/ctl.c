/*
 * ctl.c - the omnifs daemon's control server (see ctl.h): the Unix socket
 * omni-exec connects to, speaking the exec wire protocol of omni/ipc.h.
 *
 * Design. The server itself (threads, framing, stdin, signals, resize,
 * clients that leave mid-command, stopping) is the one of
 * omni/ipc_server.h, which omni-agent shares; this file gives it what is
 * the daemon's own:
 *
 *	check_peer   the peer's uid (SO_PEERCRED) must be the daemon's;
 *	             others are refused with -EACCES, logged and counted
 *	exec_start   CWD normalised and confined by omni_vfs_path(), then
 *	             hooks.before_exec (it may refuse), omni_vfs_exec_start
 *	exec_*       omni_vfs_exec_wait, _input, _signal, _resize, _free,
 *	             as they are (the server's handles are backend commands)
 *	exec_done    hooks.after_exec, before the EXIT frame is sent
 *	control      "save", "invalidate", "stats", the checkpoints
 *	             ("checkpoint [MESSAGE]", "checkpoints", "rollback ID":
 *	             state/checkpoint.h) and the daemon's hook
 *
 * So a client that has read EXIT also sees the command's changes through
 * the mount.
 *
 * A rollback runs with no command: it is refused while one runs, and
 * commands that come during it are refused (-EBUSY); after it the
 * daemon's and the kernel's caches are dropped (hooks.after_exec), as
 * after a command.
 *
 * The socket is made mode 0600 before it exists (omni__unix_listen()), in
 * the private runtime directory. A stale socket (nobody answers) is
 * replaced; a live one means another daemon serves it: -EADDRINUSE. At
 * stop it is removed only if it is still ours.
 *
 * Threads. The server's threads inherit the mask omnifs_ctl_start() sets
 * while it starts them: they block the usual asynchronous signals, so that
 * those keep going to the daemon's main thread. The hooks run on them,
 * possibly several at once. More than CTL_MAX_CONNS connections at once
 * are refused with -EAGAIN.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl.h"
#include "omni/error.h"
#include "omni/ipc.h"
#include "omni/ipc_server.h"
#include "omni/log.h"
#include "omni/vfs.h"
#include "state/checkpoint.h"

/* More simultaneous connections than this are refused with -EAGAIN. */
#define CTL_MAX_CONNS 512
/* One uid may hold at most this many; with the idle deadline and the
 * eviction of connections that have not spoken (omni/ipc_server.h), a
 * client that floods the socket with idle connections locks nobody out. */
#define CTL_MAX_CONNS_PER_UID 256

struct omnifs_ctl {
	struct omni_backend *b;
	struct omnifs_ctl_hooks hooks;
	char *path;
	struct omni__ipc_server *server;
	atomic_ullong refused; /* peers of another uid */
	atomic_bool rolling_back;
};

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

/* --- the peer ------------------------------------------------------------- */

/* Only the daemon's own user may run commands. */
static int ctl_check_peer(void *payload, int fd)
{
	struct omnifs_ctl *ctl = payload;
	struct ucred cred;
	socklen_t clen = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0)
		return omni_error_set(-errno,
		                      "cannot check the peer's identity");
	if (cred.uid != geteuid()) {
		char msg[128];

		snprintf(msg, sizeof(msg), "connection from uid %u refused",
		         (unsigned int)cred.uid);
		omni_log(OMNI_LOG_WARN, "control socket %s: %s (pid %ld)",
		         ctl->path, msg, (long)cred.pid);
		atomic_fetch_add(&ctl->refused, 1);
		return omni_error_set(-EACCES, "%s", msg);
	}
	return 0;
}

/* --- running a command through the backend -------------------------------- */

static int ctl_exec_start(void *payload, const struct omni_exec_request *req,
                          struct omni_exec **handle, uint32_t *pid)
{
	struct omnifs_ctl *ctl = payload;
	struct omni_exec_request confined = *req;
	char cwd[PATH_MAX];
	int rc;

	(void)pid; /* not meaningful across backends: it stays 0 */
	if (atomic_load(&ctl->rolling_back))
		return omni_error_set(-EBUSY, "a rollback of the workspace is "
		                              "running: try again after it");
	rc = omni_vfs_path(ctl->b, req->cwd ? req->cwd : "", cwd, sizeof(cwd));
	if (rc < 0)
		return rc;
	if (ctl->hooks.before_exec) {
		omni_error_clear();
		rc = ctl->hooks.before_exec(ctl->hooks.payload);
		if (rc < 0)
			return *omni_error_last()
			           ? rc
			           : omni_error_set(
			                 rc, "the daemon refused the command");
	}
	confined.cwd = cwd;
	omni_error_clear();
	return omni_vfs_exec_start(ctl->b, &confined, handle);
}

/* Caches are dropped before the client learns the command ended. */
static void ctl_exec_done(void *payload)
{
	struct omnifs_ctl *ctl = payload;

	if (ctl->hooks.after_exec)
		ctl->hooks.after_exec(ctl->hooks.payload);
}

/* --- CONTROL requests ----------------------------------------------------- */

static char *ctl_stats_text(struct omnifs_ctl *ctl)
{
	struct omni__ipc_server_stats st;
	char *text = NULL;

	omni__ipc_server_stats(ctl->server, &st);
	if (asprintf(&text,
	             "backend: %s\n"
	             "project: %s\n"
	             "status: %s\n"
	             "commands: %llu started, %u running, %llu failed\n"
	             "connections: %u open, %llu refused\n",
	             omni_backend_name(ctl->b), omni_backend_project_id(ctl->b),
	             omni_status_name(omni_backend_get_status(ctl->b)),
	             st.commands, st.running, st.failed, st.conns,
	             (unsigned long long)atomic_load(&ctl->refused)) < 0)
		return NULL;
	return text;
}

/* An error (with its message) or text (freed), to the client. */
static void reply_result(struct omni__ipc_conn *conn, int rc, char *text)
{
	if (rc < 0)
		omni__ipc_conn_reply(conn, (unsigned int)-rc,
		                     *omni_error_last() ? omni_error_last()
		                                        : strerror(-rc));
	else
		omni__ipc_conn_reply(conn, 0, text ? text : "");
	free(text);
}

static void ctl_save(struct omnifs_ctl *ctl, struct omni__ipc_conn *conn,
                     const char *message)
{
	char *id = NULL;
	int rc;

	omni_error_clear();
	rc = omni_backend_save_snapshot(ctl->b, message, &id);
	if (rc == 0 && id && ctl->hooks.after_save)
		ctl->hooks.after_save(id, ctl->hooks.payload);
	if (rc == 0 && !id)
		id = strdup("nothing to save");
	reply_result(conn, rc, id);
}

/* The server's own counters, then the daemon's (hook). */
static void ctl_stats(struct omnifs_ctl *ctl, struct omni__ipc_conn *conn,
                      const char *text)
{
	char *own = ctl_stats_text(ctl), *all = NULL, *reply = NULL;

	if (ctl->hooks.control &&
	    ctl->hooks.control(text, &reply, ctl->hooks.payload) == 0 &&
	    reply && own && asprintf(&all, "%s%s", own, reply) >= 0) {
		free(own);
		own = all;
	}
	if (own)
		omni__ipc_conn_reply(conn, 0, own);
	else
		omni__ipc_conn_reply(conn, ENOMEM, "out of memory");
	free(own);
	free(reply);
}

/* A request the daemon answers (hook), or an unknown one. */
static void ctl_other(struct omnifs_ctl *ctl, struct omni__ipc_conn *conn,
                      const char *text)
{
	char msg[600], *reply = NULL;
	int rc;

	if (!ctl->hooks.control) {
		snprintf(msg, sizeof(msg), "unknown control request: %.400s",
		         text);
		omni__ipc_conn_reply(conn, EINVAL, msg);
		return;
	}
	omni_error_clear();
	rc = ctl->hooks.control(text, &reply, ctl->hooks.payload);
	if (rc < 0) {
		if (*omni_error_last())
			snprintf(msg, sizeof(msg), "%s", omni_error_last());
		else
			snprintf(msg, sizeof(msg), "%s: %.400s", text,
			         strerror(-rc));
		omni__ipc_conn_reply(conn, (unsigned int)-rc, msg);
	} else {
		omni__ipc_conn_reply(conn, 0, reply ? reply : "");
	}
	free(reply);
}

static void ctl_added(const char *path, void *payload)
{
	struct omnifs_ctl *ctl = payload;

	if (ctl->hooks.invalidate_path)
		ctl->hooks.invalidate_path(path, ctl->hooks.payload);
}

/* No command runs during a rollback: refused while one runs, and new
 * ones are refused until it is over. Then the caches go. */
static int ctl_rollback(struct omnifs_ctl *ctl, const char *id, char **text)
{
	struct omni__ipc_server_stats st;
	bool idle = false;
	int rc;

	if (!atomic_compare_exchange_strong(&ctl->rolling_back, &idle, true))
		return omni_error_set(-EBUSY, "another rollback is running");
	omni__ipc_server_stats(ctl->server, &st);
	if (st.running > 0) {
		atomic_store(&ctl->rolling_back, false);
		return omni_error_set(-EBUSY,
		                      "%u command%s running: rollback refused "
		                      "(wait for %s to end)",
		                      st.running, st.running == 1 ? "" : "s",
		                      st.running == 1 ? "it" : "them");
	}
	rc = omni__checkpoint_rollback_cb(ctl->b, id, ctl_added, ctl, text);
	if (ctl->hooks.after_exec)
		ctl->hooks.after_exec(ctl->hooks.payload);
	atomic_store(&ctl->rolling_back, false);
	return rc;
}

/* "checkpoint [MESSAGE]", "checkpoints", "rollback ID"; false for
 * another request. */
static bool ctl_checkpoints(struct omnifs_ctl *ctl, struct omni__ipc_conn *conn,
                            const char *text)
{
	char *out = NULL;
	int rc;

	omni_error_clear();
	if (strcmp(text, "checkpoint") == 0 ||
	    strncmp(text, "checkpoint ", 11) == 0)
		rc = omni__checkpoint_create(ctl->b,
		                             text[10] ? text + 11 : NULL, &out);
	else if (strcmp(text, "checkpoints") == 0)
		rc = omni__checkpoint_list(ctl->b, &out);
	else if (strncmp(text, "rollback ", 9) == 0)
		rc = ctl_rollback(ctl, text + 9, &out);
	else
		return false;
	reply_result(conn, rc, out);
	return true;
}

/* Everything but "ping", which the server answers. */
static void ctl_control(void *payload, struct omni__ipc_conn *conn,
                        const char *text)
{
	struct omnifs_ctl *ctl = payload;

	if (strcmp(text, "save") == 0 || strncmp(text, "save ", 5) == 0) {
		ctl_save(ctl, conn, text[4] ? text + 5 : NULL);
	} else if (strcmp(text, "invalidate") == 0) {
		if (ctl->hooks.after_exec)
			ctl->hooks.after_exec(ctl->hooks.payload);
		omni__ipc_conn_reply(conn, 0, "invalidated");
	} else if (strcmp(text, "stats") == 0) {
		ctl_stats(ctl, conn, text);
	} else if (!ctl_checkpoints(ctl, conn, text)) {
		ctl_other(ctl, conn, text);
	}
}

static const struct omni__ipc_server_ops ctl_ops = {
	.check_peer = ctl_check_peer,
	.exec_start = ctl_exec_start,
	.exec_wait = omni_vfs_exec_wait,
	.exec_input = omni_vfs_exec_input,
	.exec_signal = omni_vfs_exec_signal,
	.exec_resize = omni_vfs_exec_resize,
	.exec_free = omni_vfs_exec_free,
	.exec_done = ctl_exec_done,
	.control = ctl_control,
};

/* --- starting and stopping ------------------------------------------------ */

int omnifs_ctl_start(struct omnifs_ctl **out, struct omni_backend *b,
                     const char *socket_path,
                     const struct omnifs_ctl_hooks *hooks)
{
	struct omni__ipc_server_config cfg = {
		.name = "control",
		.ops = &ctl_ops,
		.max_conns = CTL_MAX_CONNS,
		.max_conns_per_uid = CTL_MAX_CONNS_PER_UID,
	};
	struct omnifs_ctl *ctl;
	struct stat st;
	sigset_t old;
	int fd, rc;

	*out = NULL;
	ctl = calloc(1, sizeof(*ctl));
	if (!ctl)
		return omni_error_set(-ENOMEM, "control server: out of memory");
	ctl->b = b;
	if (hooks)
		ctl->hooks = *hooks;
	atomic_init(&ctl->refused, 0);
	atomic_init(&ctl->rolling_back, false);
	ctl->path = strdup(socket_path);
	if (!ctl->path) {
		rc = omni_error_set(-ENOMEM, "control server: out of memory");
		goto fail;
	}
	fd = omni__unix_listen(socket_path, 0600, OMNI__UNIX_STALE_PROBE, &st);
	if (fd < 0) {
		rc = fd;
		if (rc == -EADDRINUSE)
			omni_error_set(rc,
			               "%s: another omnifs daemon serves "
			               "this session",
			               socket_path);
		goto fail;
	}
	cfg.payload = ctl;
	cfg.path = ctl->path;
	cfg.path_dev = st.st_dev;
	cfg.path_ino = st.st_ino;

	/* The server's threads inherit this mask: the usual asynchronous
	 * signals keep going to the daemon's main thread. */
	block_async_signals(&old);
	rc = omni__ipc_server_start(&ctl->server, fd, &cfg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		unlink(socket_path);
		goto fail;
	}
	*out = ctl;
	return 0;
fail:
	free(ctl->path);
	free(ctl);
	return rc;
}

void omnifs_ctl_stop(struct omnifs_ctl *ctl)
{
	if (!ctl)
		return;
	omni__ipc_server_stop(ctl->server);
	free(ctl->path);
	free(ctl);
}
