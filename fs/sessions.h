/*
 * sessions.h - the running sessions of this user: what each daemon
 * publishes, and omnifs --list (fs/ only).
 *
 * Each daemon keeps a small JSON file, <runtime dir>/<project>.session
 * (omni_runtime_dir(), mode 0600, next to its control socket): project,
 * backend, mount point, pid, start time, state manager and the last save.
 * It is written once the mount works, rewritten (atomically: a temporary
 * file renamed over it) after each save, and removed at exit. --list
 * reads these files, so it costs one small read per session and never
 * waits on a busy daemon. A file whose daemon is gone (a crash, kill -9:
 * the pid is dead or the control socket does not answer) is ignored and
 * removed.
 */
#ifndef OMNIFS_SESSIONS_H
#define OMNIFS_SESSIONS_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

struct omnifs_session_info {
	const char *project;
	const char *backend;
	const char *mountpoint;
	const char *state;  /* the state manager's name: none, git, gcs */
	const char *socket; /* the control socket */
	pid_t pid;
	long long started;   /* Unix time */
	long long last_save; /* Unix time; 0: none yet */
	const char *last_save_id;
};

/* Write (or rewrite) the file of info->project. 0, or -errno with a
 * message. Safe from several threads. */
int omnifs_session_publish(const struct omnifs_session_info *info);

/* Remove the file of project if it is this process's. */
void omnifs_session_unpublish(const char *project);

/* Print the live sessions to out: a table like docker ps, or with json a
 * JSON array of objects. Returns the exit status (0, or 1 after a message
 * on stderr). */
int omnifs_session_list(FILE *out, bool json);

#endif
