/*
 * backends/state/snapshot.h - what the git and gcs state managers share
 * (private).
 *
 *   scan     list the workspace through the backend operations, leaving
 *            out the usual caches and what .gitignore files exclude
 *   read     stream a workspace file through the backend operations
 *   apply    write a snapshot into the workspace: every file through a
 *            temporary name and a rename, then delete what the snapshot
 *            does not have (never what the ignore rules keep out)
 *   place    the per-project state directory beside the workspaces
 *            (<data>/.omnifs-state) and its lock file
 *   digest   a content digest of a tree of entries, independent of order
 *
 * Everything here works only through omni/vfs.h, so it serves the local,
 * docker and e2b backends alike. See the heads of snapshot_scan.c
 * for the ignore rules and snapshot_apply.c for the apply protocol.
 */
#ifndef OMNI_SNAPSHOT_H
#define OMNI_SNAPSHOT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

#include "core/hash.h"
#include "omni/vfs.h"
#include "core/progress.h"

/* --- ignore rules --------------------------------------------------------- */

/* The rules every snapshot applies before the workspace's own .gitignore
 * files (which may re-include with "!pattern"). NULL-terminated. */
extern const char *const omni__default_ignores[];

struct omni__ignore_set;

/* Parse .gitignore text whose directory is base ("" for the root). */
int omni__ignore_parse(struct omni__ignore_set **out, const char *base,
                       const char *text, size_t len);
void omni__ignore_free(struct omni__ignore_set *set);

/*
 * Is path (workspace-relative) ignored by the sets, which are ordered
 * from the outermost (defaults, root) to the innermost directory? The
 * last matching rule wins, as in git.
 */
bool omni__ignored(struct omni__ignore_set *const *sets, size_t n,
                   const char *path, bool is_dir);

/* --- scan -------------------------------------------------------------------
 */

/* Leave out every file or directory named ".git" (the git manager: a git
 * tree cannot hold one; the agent's repositories are its own business). */
#define OMNI__SCAN_SKIP_GIT (1u << 0)

struct omni__ws_entry {
	char *path;        /* workspace-relative, '/'-separated */
	struct stat st;    /* lstat attributes from readdir */
	bool has_children; /* a directory with listed entries */
};

/* Sorted by strcmp(path), so a directory comes before what it holds. */
struct omni__ws_list {
	struct omni__ws_entry *items;
	size_t count, cap;
};

/*
 * List the workspace: regular files, symlinks and directories, without
 * ignored entries (and without .git with OMNI__SCAN_SKIP_GIT). Other
 * file types (sockets, fifos, devices) are left out.
 */
int omni__ws_scan(struct omni_backend *b, unsigned int flags,
                  struct omni__ws_list *out);
void omni__ws_list_finish(struct omni__ws_list *l);
/* The entry for path, or NULL. */
struct omni__ws_entry *omni__ws_find(const struct omni__ws_list *l,
                                     const char *path);

/* Called with each chunk of a file; return 0 or a negative errno. */
typedef int (*omni__chunk_cb)(const void *data, size_t len, void *payload);

/* Read a whole workspace file through the backend, chunk by chunk. */
int omni__ws_read(struct omni_backend *b, const char *path, omni__chunk_cb cb,
                  void *payload);

/* Read a whole small workspace file into a malloc'd buffer (NUL-ended). */
int omni__ws_read_all(struct omni_backend *b, const char *path, size_t max,
                      char **out, size_t *len);

/* --- apply ------------------------------------------------------------------
 */

struct omni__apply {
	struct omni_backend *b;
	struct omni__ws_list existing; /* what the workspace held */
	bool *keep;                    /* parallel to existing.items */
	struct omni__dirmode *modes;   /* directory modes set at the end */
	size_t nmodes, capmodes;
	char last_dir[PATH_MAX]; /* last directory made sure of */
	unsigned long counter;   /* for temporary names */
	struct omni__progress *progress;
};

struct omni__apply_file {
	struct omni_file *f;
	char path[PATH_MAX];
	char tmp[PATH_MAX];
	long long off;
	mode_t mode;
};

/*
 * Start applying: scan the workspace (flags as for omni__ws_scan). The
 * scan decides what the final pass deletes: entries the snapshot does not
 * name, never ignored ones.
 */
int omni__apply_begin(struct omni__apply *a, struct omni_backend *b,
                      unsigned int scan_flags, struct omni__progress *progress);
/* The workspace held nothing (after the ignore rules)? */
bool omni__apply_workspace_empty(const struct omni__apply *a);
/* What the workspace holds at path before applying, or NULL. */
const struct stat *omni__apply_existing(const struct omni__apply *a,
                                        const char *path);
/* Keep path as it is (the caller knows it already matches). */
void omni__apply_keep(struct omni__apply *a, const char *path);

/* A directory (mode 0: leave the mode alone). */
int omni__apply_dir(struct omni__apply *a, const char *path, mode_t mode);

/* A regular file: open a temporary beside it, write, commit (rename over
 * path). mtime may be NULL (now). abort removes the temporary. */
int omni__apply_file_open(struct omni__apply *a, struct omni__apply_file *af,
                          const char *path, mode_t mode);
int omni__apply_file_write(struct omni__apply_file *af, const void *data,
                           size_t len);
int omni__apply_file_commit(struct omni__apply *a, struct omni__apply_file *af,
                            const struct timespec *mtime);
void omni__apply_file_abort(struct omni__apply *a, struct omni__apply_file *af);

/* A symlink to target (made under a temporary name, renamed over path). */
int omni__apply_symlink(struct omni__apply *a, const char *path,
                        const char *target);

/* Delete what the snapshot did not name and set directory modes. */
int omni__apply_finish(struct omni__apply *a);
void omni__apply_cleanup(struct omni__apply *a);

/*
 * Check and normalise a path from a snapshot in place: strips "./" and
 * trailing '/', refuses (false) absolute paths, "." and ".." components
 * and empty ones.
 */
bool omni__snap_path_ok(char *path);

/* --- place ------------------------------------------------------------------
 */

/*
 * The state directory of b's data folder (dir when given, else
 * <data>/.omnifs-state beside the workspaces), created 0700.
 */
int omni__state_dir(struct omni_backend *b, const char *dir, char *out,
                    size_t size);

/* mkdir -p on the host (mode for the directories made). */
int omni__host_mkdir_p(const char *path, mode_t mode);
/* rm -rf on the host; a missing path is fine. */
int omni__host_remove_tree(const char *path);
/* Write a host file atomically (temporary + rename). */
int omni__host_write_file(const char *path, const void *data, size_t len);

/*
 * Take an exclusive flock on path (created 0600), waiting up to
 * timeout_s; what names the operation for the message. *fd_out gets the
 * descriptor for omni__state_unlock(). -EBUSY on timeout.
 */
int omni__state_lock(const char *path, int timeout_s, const char *what,
                     int *fd_out);
void omni__state_unlock(int fd);

/* "YYYYmmdd_HHMMSS_ffffff" (UTC) of now, never at or before prev. */
void omni__snap_timestamp(char out[32], const char *prev);
/* Seconds since the epoch of such a name, or -1. */
long long omni__snap_time(const char *name);

/* --- digest ------------------------------------------------------------------
 */

/*
 * A digest of a set of entries, independent of the order they are added
 * in: each entry is a line "type mode path md5", the lines are sorted and
 * hashed. Two workspaces with the same files, modes, links and contents
 * have the same digest.
 */
struct omni__digest {
	char **lines;
	size_t count, cap;
	bool oom;
};
/* type: 'f' file, 'l' symlink (md5 of the target), 'd' directory. */
void omni__digest_add(struct omni__digest *d, char type, unsigned int mode,
                      const char *path, const unsigned char md5[16]);
/* 32 hex digits + NUL; -ENOMEM when an add ran out of memory. */
int omni__digest_final(struct omni__digest *d, char out[33]);
void omni__digest_finish(struct omni__digest *d);

#endif
