/*
 * ctl.h - the omnifs daemon's control server: the Unix socket omni-exec
 * talks to (wire format in omni/ipc.h).
 *
 * One thread accepts; each connection gets a thread that runs one command
 * through the backend (omni_vfs_exec_*) or answers one CONTROL request.
 * The socket is mode 0600 in the private runtime directory, and a peer
 * whose uid differs from the daemon's is refused and logged.
 *
 * Coherence: before a command starts, hooks.before_exec runs (the cache
 * layer uploads dirty files); after it ends and before its EXIT frame is
 * sent, hooks.after_exec runs (caches and the kernel's are dropped), so a
 * caller that sees the exit status also sees the command's changes.
 */
#ifndef OMNIFS_CTL_H
#define OMNIFS_CTL_H

#include "omni/backend.h"

struct omnifs_ctl;

struct omnifs_ctl_hooks {
	/* Return < 0 to refuse the command with that error. */
	int (*before_exec)(void *payload);
	void (*after_exec)(void *payload);
	/* Answer a CONTROL text the server does not handle itself. Set
	 * *reply to a malloc'd string. Return 0 or -errno. The server
	 * answers "ping", "save [MESSAGE]" and "invalidate" (which calls
	 * after_exec); for "stats" it prints its own counters and appends
	 * this hook's reply. Hooks run on the server's threads, possibly
	 * several at once, and until omnifs_ctl_stop() returns. */
	int (*control)(const char *request, char **reply, void *payload);
	/* After a "save" request that saved a snapshot (id names it). */
	void (*after_save)(const char *id, void *payload);
	/* After a rollback, before after_exec: path (workspace-relative)
	 * was made by it where nothing was (the kernel may remember the
	 * name as missing). */
	void (*invalidate_path)(const char *path, void *payload);
	void *payload;
};

/* Listen on socket_path (an existing stale socket is replaced) and serve
 * commands of backend b until omnifs_ctl_stop(). */
int omnifs_ctl_start(struct omnifs_ctl **out, struct omni_backend *b,
                     const char *socket_path,
                     const struct omnifs_ctl_hooks *hooks);

/* Stop accepting, end running commands (their process groups are killed),
 * wait for the connection threads, remove the socket. NULL is ok. */
void omnifs_ctl_stop(struct omnifs_ctl *ctl);

#endif
