/*
 * watch.h - the change watch of a host mount (local, docker): what another
 * writer does to the backing directory reaches the kernel's caches.
 *
 * omnifs lets the kernel keep names, attributes and pages for long
 * (passthrough_hp's shape), but it is not the only writer: omni-exec
 * commands, processes of the container that outlive a command, and host
 * processes write the same files. The watch (fanotify, watch.c) marks every
 * directory before the kernel caches a name in it, and turns each change
 * made by another process into the matching notification (entry or
 * inode). Changes made by the daemon itself are the kernel's own doing and
 * are skipped. When no watch can be had (no fanotify, the mark limit
 * reached), the mount falls back to short timeouts (omni__fs_*_ttl).
 */
#ifndef OMNIFS_WATCH_H
#define OMNIFS_WATCH_H

#include <stdbool.h>

#include <fuse_lowlevel.h>

struct omnifs;

/* Start the watch of fs's backing tree (a node table, a session whose
 * notifications it may send) and mark the root. -errno when the kernel
 * offers no watch; fs->watch is then NULL. */
int omnifs_watch_start(struct omnifs *fs);

/* Stop it (before the session is destroyed). */
void omnifs_watch_stop(struct omnifs *fs);

/* Directory ino is about to get names cached in the kernel: watch it
 * first. Cheap when it already is. */
void omnifs_watch_dir(struct omnifs *fs, fuse_ino_t ino);

/* Handle every change queued so far (after a command: all its writes are
 * queued by the time it exited). */
void omnifs_watch_drain(struct omnifs *fs);

/* The watch covers every directory the kernel caches names of: long
 * timeouts are safe. */
bool omnifs_watch_exact(const struct omnifs *fs);

#endif
