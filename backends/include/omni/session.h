/*
 * omni/session.h - how omni-exec finds the omnifs daemon of a mount.
 *
 * Each mounted session has a control socket <runtime>/<project_id>.sock in
 * a private runtime directory:
 *
 *	$OMNI_RUNTIME_DIR, else $XDG_RUNTIME_DIR/omnifs, else
 *	/tmp/omnifs-<uid>
 *
 * created with mode 0700 and refused when it belongs to another user or is
 * open to group or others. A mount is listed in /proc/self/mountinfo with
 * file system type "fuse.omnifs" and source "omnifs:<project_id>", which is
 * how a directory inside a mount leads to its project and so its socket.
 */
#ifndef OMNI_SESSION_H
#define OMNI_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The runtime directory; create makes it (0700) when missing. */
int omni_runtime_dir(char *out, size_t size, bool create);

/* <runtime>/<project_id>.sock */
int omni_session_socket_path(const char *project_id, char *out, size_t size);

/*
 * Find the omnifs mount that contains dir (an existing directory). On
 * success fills project (its project id), mountpoint, and rel: dir's path
 * inside the mount, workspace-relative ("" at the mount's root). Returns
 * -ENOENT when dir is not inside any omnifs mount.
 */
int omni_session_find(const char *dir, char *project, size_t project_size,
                      char *mountpoint, size_t mountpoint_size, char *rel,
                      size_t rel_size);

#ifdef __cplusplus
}
#endif

#endif
