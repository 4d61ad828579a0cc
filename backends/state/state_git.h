/*
 * backends/state/state_git.h - the pure helpers of the git state manager, for
 * its tests (private).
 */
#ifndef OMNI_STATE_GIT_H
#define OMNI_STATE_GIT_H

#include <stddef.h>

/*
 * The remote as libgit2 wants it: URLs and scp-like "user@host:path" as
 * given, "owner/repo" as https://github.com/owner/repo.git, local paths
 * made absolute (the daemon changes directory later). -EINVAL for "".
 */
int omni__git_remote_url(const char *in, char *out, size_t size);

/*
 * The branch of a project: prefix + the id with '_' and ' ' as '-' (the
 * documented Python manager's mapping); when that is no valid ref name
 * (a '.' where git refuses one), '.' become '-' too. -EINVAL when even
 * that is not valid (a bad prefix).
 */
int omni__git_branch_name(const char *prefix, const char *project, char *out,
                          size_t size);

/*
 * A libgit2 failure (its return code, error class and message) as a
 * negative errno: ENOTFOUND ENOENT, EAUTH and ECERTIFICATE EACCES,
 * ELOCKED EBUSY, EEXISTS EEXIST, ENONFASTFORWARD EAGAIN, EINVALIDSPEC
 * EINVAL, EUSER ECANCELED; otherwise from the message: an HTTP status
 * (401/403 EACCES, 404 ENOENT), "Connection refused" ECONNREFUSED, a
 * timeout ETIMEDOUT, an unresolvable host EHOSTUNREACH; out of memory
 * ENOMEM; the rest EIO.
 */
int omni__git_to_errno(int rc, int klass, const char *message);

#endif
