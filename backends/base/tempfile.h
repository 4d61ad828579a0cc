/*
 * backends/base/tempfile.h - an unlinked private temporary file (private).
 *
 * The e2b backend and the remote cache keep a local copy of a remote file
 * while it is open. The copy must vanish with its descriptor, crash or
 * not, and nobody else may open it: so it is made with O_TMPFILE (never
 * has a name) in $TMPDIR, or /tmp when TMPDIR is unset or empty, mode
 * 0600. Filesystems without O_TMPFILE get the fallback: a mkostemp() file
 * named <dir>/<prefix>-XXXXXX, unlinked at once.
 */
#ifndef OMNI_BASE_TEMPFILE_H
#define OMNI_BASE_TEMPFILE_H

/* A read-write, close-on-exec descriptor of a new nameless file in
 * $TMPDIR or /tmp (prefix names the fallback's short-lived file), or
 * -errno. Sets no message: callers say what the copy was for. */
int omni__temp_fd(const char *prefix);

/* The fallback alone: mkostemp() "<dir>/<prefix>-XXXXXX", then unlink. */
int omni__temp_fd_named(const char *dir, const char *prefix);

#endif
