/*
 * backends/state/state_git.h - what the files of the git state manager
 * share (private): its pure helpers (also for its tests), the manager,
 * one operation, and the functions one file calls in another.
 *
 *   state_git.c   the manager: one operation, the choice of a tip, save,
 *                 load, list, cleanup, life cycle
 *   git_remote.c  remote URLs, branch names, libgit2 errors as errno,
 *                 credentials, fetch and push
 *   git_tree.c    workspace -> tree (with the stat cache), commits,
 *                 tree -> workspace
 *
 * See the head of state_git.c for the design.
 */
#ifndef OMNI_STATE_GIT_H
#define OMNI_STATE_GIT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <git2.h>

#include "core/progress.h"
#include "omni/sys/state_impl.h"
#include "state/snapshot.h"

#define OMNI__GIT_REF_MAX 512

/* --- git_remote.c: pure helpers ------------------------------------------- */

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

/* --- the manager and one operation ---------------------------------------- */

struct git_state {
	struct omni_state base;
	pthread_mutex_t mutex;
	char *remote; /* normalised */
	char *prefix;
	char *state_dir; /* NULL: the default */
	char *author_name, *author_email;
};

/* One save, load, list or cleanup. */
struct git_op {
	struct git_state *gs;
	struct omni_backend *b;
	char branch[OMNI__GIT_REF_MAX];   /* state/<id> */
	char ref_head[OMNI__GIT_REF_MAX]; /* refs/heads/<branch> */
	char ref_fetched[OMNI__GIT_REF_MAX];
	char ref_pushed[OMNI__GIT_REF_MAX];
	char ref_backup[OMNI__GIT_REF_MAX];
	char dir[PATH_MAX];   /* the state directory */
	char store[PATH_MAX]; /* <dir>/<project>.git */
	char cache[PATH_MAX]; /* <store>/omnifs-index */
	int lock_fd;
	git_repository *repo;
	struct omni__progress progress;
	/* Credentials tried on the current connection. */
	bool tried_token, tried_agent;
	int next_key;
	/* What the remote said. */
	char push_status[256];
	char remote_msg[512];
};

struct tree_apply {
	struct git_op *op;
	struct omni__apply *a;
	git_index *cache;
	git_odb *odb;
	struct omni__limits limits; /* counted by the check */
	const char *what;           /* the snapshot, for messages */
	int rc;
};

/* --- state_git.c ------------------------------------------------------------
 */

/* Begin an operation on b's history store <state_dir>/<project>.git
 * (made when missing): the refs of the project's branch, the store's
 * flock (what names the operation), the repository. End releases them. */
int omni__git_op_begin(struct git_op *op, struct git_state *gs,
                       struct omni_backend *b, const char *what);
void omni__git_op_end(struct git_op *op);
/* Turn the last libgit2 failure into -errno and a message. */
int omni__git_fail(int rc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The commit a reference names; *found false when there is none. */
int omni__git_lookup_ref(struct git_op *op, const char *ref, git_oid *out,
                         bool *found);
/* Point ref at oid (created or forced), with log as the reflog message. */
int omni__git_set_ref(struct git_op *op, const char *ref, const git_oid *oid,
                      const char *log);

/* --- git_remote.c: talking to the remote ---------------------------------- */

/* Fetch the remote's branch into ref_fetched; *found says whether the
 * remote has it. */
int omni__git_fetch(struct git_op *op, git_oid *out, bool *found);
/* Push one refspec; a refusal by the server is -EPERM. */
int omni__git_push(struct git_op *op, const char *spec);

/* --- git_tree.c ------------------------------------------------------------
 */

/*
 * Build the tree of the workspace into *out, and write the stat cache
 * for it (only when keep_cache; a backup of a workspace about to be
 * replaced has no use for one).
 */
int omni__git_build_tree(struct git_op *op, git_oid *out, bool keep_cache);
/* Commit tree_oid with up to two parents; message "" is "snapshot". */
int omni__git_commit_tree(struct git_op *op, const git_oid *tree_oid,
                          const git_oid *const *parents, size_t nparents,
                          const char *message, git_oid *out);
/* The tree id of a commit. */
int omni__git_tree_of(struct git_op *op, const git_oid *commit, git_oid *out);
/* git_tree_walk callbacks over a struct tree_apply: write each entry into
 * the workspace; check that every blob is in the store first. */
int omni__git_apply_walk_cb(const char *root, const git_tree_entry *te,
                            void *payload);
int omni__git_check_tree_cb(const char *root, const git_tree_entry *te,
                            void *payload);
/* Fill the stat cache from what was just written, so the next save does
 * not read it all back. */
void omni__git_cache_after_load(struct git_op *op, git_tree *tree);
/*
 * Writing tree into the workspace of op->b, in two steps: begin (ta and
 * a filled; every blob checked to be in the store, the limits counted,
 * the workspace scanned: omni__apply_begin) and write (every entry
 * staged, moved into place, what the tree lacks deleted, the stat cache
 * refreshed). The caller frees ta->odb and, once begin succeeded,
 * omni__apply_cleanup(a). what and hex name the tree in messages.
 */
int omni__git_apply_begin(struct git_op *op, struct tree_apply *ta,
                          struct omni__apply *a, git_tree *tree,
                          const char *what);
int omni__git_apply_write(struct git_op *op, struct tree_apply *ta,
                          git_tree *tree, const char *hex);

#endif
