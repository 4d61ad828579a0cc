/*
 * mountpoint.h - checking a mount point before mounting on it (fs/ only).
 *
 * omnifs mounts only on a directory that holds no mount yet: a regular
 * file or a missing path is refused with a clear error, and so is a
 * directory where something is mounted (any file system: a second omnifs
 * would stack on the first and hide it). A dead FUSE mount (its daemon
 * is gone: stat gives ENOTCONN) is named as such with the command that
 * clears it; when it is one of ours (type fuse.omnifs, user_id ours) it
 * is cleared (umount2 MNT_DETACH as root, else fusermount3 -u -z) and
 * the check goes on, saying so.
 */
#ifndef OMNIFS_MOUNTPOINT_H
#define OMNIFS_MOUNTPOINT_H

#include <stddef.h>

/*
 * Check the mount point given and put its absolute path in out. 0 to go
 * on; else the exit status (1), after a message on stderr.
 */
int omnifs_mountpoint_check(const char *given, char *out, size_t size);

#endif
