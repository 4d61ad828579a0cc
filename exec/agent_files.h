/*
 * exec/agent_files.h - omni-agent's side of the file protocol
 * (omni/ipc_files.h): agent_files.c answers requests, agent_watch.c streams
 * inotify events. Private to omni-agent.
 */
#ifndef OMNI_AGENT_FILES_H
#define OMNI_AGENT_FILES_H

#include <stddef.h>

#include "core/confined.h"

/*
 * Serve a file session on fd, whose FILES frame (payload data, len bytes)
 * has been read, until the client closes it (or the server shuts the
 * socket down). Every path is resolved beneath workdir. Does not close fd.
 */
void omni__agent_files_serve(int fd, const char *workdir,
                             const unsigned char *data, size_t len);

/*
 * The WATCH request: stream the changes beneath root (workdir is its path,
 * for inotify) to fd until the client closes it. Returns when it did, or
 * -errno when the watch could not start (the caller answers STATUS).
 */
int omni__agent_watch(int fd, const struct omni__confined *root);

#endif
