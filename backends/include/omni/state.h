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
 * A manager belongs to the session it is given to (omni_backend_new()),
 * which loads on start and saves on shutdown through what the session
 * shows (omnifs's cache over a remote sandbox, when there is one).
 */
#ifndef OMNI_STATE_H
#define OMNI_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct omni_state;

/* The "none" manager. */
int omni_state_noop(struct omni_state **out);

/* --- git: branch state/<project_id> of a git remote (libgit2) -------------
 *
 * Save commits the workspace to refs/heads/<prefix><project_id> ('_' and
 * ' ' in the id become '-', as the documented Python manager does) in a
 * local repository kept beside the workspaces, <state_dir>/<project>.git,
 * and force-pushes the branch; nothing is committed when nothing changed.
 * Load fetches the branch and writes its tree into the workspace; a
 * branch the remote does not have is a new project (load returns 0),
 * while an unreachable remote or refused credentials are errors.
 *
 * Left out of every snapshot: anything named .git (the agent's own
 * repositories are its business, and a git tree cannot hold them), the
 * usual caches (.venv/, __pycache__/, node_modules/, *.pyc, ...), what
 * the workspace's .gitignore files exclude, and empty directories (git
 * cannot record them).
 *
 * Environment: OMNIAGENTS_GITHUB_STATE_REPO (the remote when the option
 * is NULL), OMNIAGENTS_GITHUB_API_KEY or else GITHUB_TOKEN (a token for
 * http(s) remotes, sent as user "x-access-token" unless the URL names a
 * user), SSH_AUTH_SOCK (an ssh agent) and OMNIAGENTS_GIT_SSH_KEY (a
 * private key file; else ~/.ssh/id_ed25519, id_ecdsa, id_rsa) for ssh.
 */
#define OMNI_STATE_GIT_OPTIONS_VERSION 1

struct omni_state_git_options {
	unsigned int version;
	/* A URL (https://, http://, ssh://, git://, file://), scp-like
	 * "user@host:path", a local path, or "owner/repo" for
	 * https://github.com/owner/repo.git. NULL: the environment. */
	const char *remote;
	/* Branch name prefix; NULL: "state/". */
	const char *branch_prefix;
	/* Where the local history lives; NULL: <data>/.omnifs-state. */
	const char *state_dir;
	/* Author and committer of snapshots; NULL: "omnifs",
	 * "omnifs@localhost". */
	const char *author_name;
	const char *author_email;
};

#define OMNI_STATE_GIT_OPTIONS_INIT                                            \
	{                                                                      \
		.version = OMNI_STATE_GIT_OPTIONS_VERSION                      \
	}

/* opts may be NULL (all defaults). -EINVAL when no remote is configured
 * or the options are bad. Nothing is contacted until the first load. */
int omni_state_git(struct omni_state **out,
                   const struct omni_state_git_options *opts);

/* --- gcs: tar.gz snapshots in a Google Cloud Storage bucket ---------------
 *
 * Save writes gs://<bucket>/<prefix>/<project_id>/<YYYYmmdd_HHMMSS_ffffff>
 * .tar.gz (UTC; no "<prefix>/" when the prefix is empty, which is the
 * documented Python manager's layout) with ifGenerationMatch=0, so a
 * retried upload never overwrites; the message is kept in the object's
 * metadata. Nothing is uploaded when nothing changed. Load takes the
 * greatest name. Archives keep file modes, modification times (restored
 * where that is cheap: not on remote sandboxes, where each would cost a
 * command), symlinks, empty directories and any bytes, and leave out the
 * same caches as git (but keep .git directories: a tar can hold them).
 *
 * A save that cannot upload keeps its archive under
 * <state_dir>/<project>.gcs/pending/ and uploads it first on the next
 * save, so nothing is lost when the bucket is unreachable.
 *
 * Environment: OMNIAGENTS_GCS_BUCKET (else OMNIAGENTS_BUCKET_NAME or
 * BUCKET_OMNIAGENTS, the Python manager's names), OMNIAGENTS_GCS_PREFIX,
 * OMNIAGENTS_GCS_ENDPOINT (another API base URL, authenticated),
 * STORAGE_EMULATOR_HOST (an emulator: base URL from it, no
 * authentication, as the official clients do). Credentials, first found:
 * GOOGLE_OAUTH_ACCESS_TOKEN or CLOUDSDK_AUTH_ACCESS_TOKEN (a bearer
 * token), GOOGLE_APPLICATION_CREDENTIALS (a service-account key or
 * authorized-user file), gcloud's application_default_credentials.json
 * (under $CLOUDSDK_CONFIG or ~/.config/gcloud), then the metadata server
 * (GCE_METADATA_HOST overrides its address).
 */
#define OMNI_STATE_GCS_OPTIONS_VERSION 1

struct omni_state_gcs_options {
	unsigned int version;
	/* NULL: the environment; no bucket anywhere is -EINVAL. */
	const char *bucket;
	/* Object name prefix without a trailing '/'; NULL: environment or
	 * none. */
	const char *prefix;
	/* API base URL ("https://storage.googleapis.com"); NULL: the
	 * environment (see above). */
	const char *endpoint;
	/* Where pending uploads and bookkeeping live; NULL:
	 * <data>/.omnifs-state. */
	const char *state_dir;
	/* Retries of a request that failed with 408, 429, 5xx or a network
	 * error (0: 5), and the first wait (0: 1000 ms; it doubles, with
	 * jitter, up to 32 s). */
	unsigned int max_retries;
	unsigned int retry_base_ms;
	/* Archives above this size use a resumable upload (0: 8 MiB), sent
	 * in chunks of chunk_size (0: 8 MiB; rounded up to 256 KiB). */
	size_t resumable_threshold;
	size_t chunk_size;
};

#define OMNI_STATE_GCS_OPTIONS_INIT                                            \
	{                                                                      \
		.version = OMNI_STATE_GCS_OPTIONS_VERSION                      \
	}

/* opts may be NULL. -EINVAL without a bucket or with a bad option.
 * Credentials are looked up on first use, not here. */
int omni_state_gcs(struct omni_state **out,
                   const struct omni_state_gcs_options *opts);

/*
 * Make a manager by name with default options taken from the
 * environment: "none", "git" or "gcs". A name may carry its main option
 * after a colon: "git:REMOTE" (any remote form above, e.g.
 * "git:owner/repo", "git:/srv/state.git") and "gcs://BUCKET[/PREFIX]".
 * -EINVAL for an unknown name.
 */
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
