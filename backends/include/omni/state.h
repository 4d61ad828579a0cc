/*
 * omni/state.h - state managers: keep a workspace between sessions.
 *
 * A state manager saves the workspace of a backend session as a snapshot
 * and brings the newest snapshot back. It works only through the backend's
 * operations (omni/vfs.h), so every manager works with every backend.
 *
 *   omni_state_noop   saves nothing, always succeeds (the "none" manager)
 *   omni_state_git    commits to branch state/<project_id> of a git remote
 *   omni_state_gcs    tar.gz snapshots in a Google Cloud Storage bucket
 *
 * A manager belongs to the backend it is given to (omni_backend_new()).
 */
#ifndef OMNI_STATE_H
#define OMNI_STATE_H

#include <stdbool.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct omni_state;

/* The "none" manager. */
int omni_state_noop(struct omni_state **out);

/* Make a manager by name ("none", "git", "gcs") with default options taken
 * from the environment. -EINVAL for an unknown name. */
int omni_state_new(struct omni_state **out, const char *name);

/* The names omni_state_new() knows, NULL-terminated. */
const char *const *omni_state_names(void);

const char *omni_state_name(const struct omni_state *st);

void omni_state_free(struct omni_state *st);

/* The calls omni_backend_save_snapshot() and friends forward to. b must be
 * running. */
int omni_state_save(struct omni_state *st, struct omni_backend *b,
		    const char *message, char **id_out);
int omni_state_load_latest(struct omni_state *st, struct omni_backend *b);
int omni_state_list(struct omni_state *st, struct omni_backend *b,
		    struct omni_snapshot_list *out);
/* Delete all saved state of the project. */
int omni_state_cleanup(struct omni_state *st, struct omni_backend *b);
/* Empty the workspace except .git, leave an empty README.md, and save. */
int omni_state_clean(struct omni_state *st, struct omni_backend *b);

#ifdef __cplusplus
}
#endif

#endif
