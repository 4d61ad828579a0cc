/*
 * backends/state/checkpoint.h - checkpoints of a running workspace and the
 * rollback to one, with no remote (private: the library, fs/).
 *
 * A checkpoint is a commit in the local history store the git state
 * manager keeps beside the data folder, <data>/.omnifs-state/<project>.git,
 * on the ref refs/omnifs/checkpoints/state/<project>; it works whatever
 * the session's state manager (none, git, gcs), and on every backend, as
 * the store reads and writes the workspace through the vfs ops. The
 * store's stat cache makes a checkpoint of an unchanged file free.
 */
#ifndef OMNI_STATE_CHECKPOINT_H
#define OMNI_STATE_CHECKPOINT_H

struct omni_backend;

/* Record the workspace of b as a checkpoint; *id_out (malloc'd) is its
 * id (12 hex digits). message "" or NULL: "checkpoint". */
int omni__checkpoint_create(struct omni_backend *b, const char *message,
                            char **id_out);

/* The checkpoints, newest first, one line each: id, time, message, and
 * what the journal recorded between the one before and it. *text_out is
 * malloc'd ("no checkpoints\n" when there are none). */
int omni__checkpoint_list(struct omni_backend *b, char **text_out);

/* Bring the workspace back to checkpoint id (a prefix of its hex id):
 * changed files restored, new ones removed. The workspace as it was is
 * first recorded as a checkpoint ("before rollback to ID"), so a rollback
 * can itself be undone; *text_out says both. The journal records one
 * "rollback" instead of each file written. */
typedef void (*omni__checkpoint_new_cb)(const char *path, void *payload);
int omni__checkpoint_rollback(struct omni_backend *b, const char *id,
                              char **text_out);
/* The same; added(path) then names each path the rollback made that the
 * workspace did not have (a cache of missing names, such as the
 * kernel's, forgets them), once the rollback succeeded. */
int omni__checkpoint_rollback_cb(struct omni_backend *b, const char *id,
                                 omni__checkpoint_new_cb added, void *payload,
                                 char **text_out);

/*
 * Fork: fill the workspace of b (a new project, empty: else -EEXIST) with
 * a checkpoint of project from in the same data folder: checkpoint (hex
 * prefix) or, NULL, its newest checkpoint, else its newest snapshot of
 * the git state manager. The new workspace starts its own chain with a
 * checkpoint "forked from FROM@ID"; *text_out (malloc'd) says so. Any
 * backend: the tree is written through b's vfs ops.
 */
int omni__checkpoint_fork(struct omni_backend *b, const char *from,
                          const char *checkpoint, char **text_out);

#endif
