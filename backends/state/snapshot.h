/*
 * backends/state/snapshot.h - what the git and gcs state managers share
 * (private).
 *
 *   scan     list the workspace through the backend operations, leaving
 *            out the usual caches and what .gitignore files exclude
 *   read     stream a workspace file through the backend operations,
 *            only if it is still the regular file the scan saw
 *   apply    write a snapshot into the workspace: staged whole in a
 *            hidden directory, checked entry by entry (no symlink
 *            followed, no setuid bits, limits on entries and bytes),
 *            then moved into place; then delete what the snapshot does
 *            not have (never what the ignore rules keep out)
 *   place    the per-project state directory beside the workspaces
 *            (<data>/.omnifs-state) and its lock file
 *   digest   a content digest of a tree of entries, independent of order
 *
 * Everything here works only through omni/vfs.h, so it serves the local,
 * docker and e2b backends alike. See the heads of snapshot_scan.c
 * for the ignore rules, snapshot_apply.c for the apply protocol and
 * snapshot_stage.c for the checks and limits of a restore.
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

/* The staging directories of loads (".omnifs-restore-<hex>" at the
 * root): never scanned, never saved. */
#define OMNI__STAGE_PREFIX ".omnifs-restore-"

/* Called with each chunk of a file; return 0 or a negative errno. */
typedef int (*omni__chunk_cb)(const void *data, size_t len, void *payload);

/*
 * Read a whole workspace file through the backend, chunk by chunk. With
 * seen (the scan's lstat of it), the file is opened with O_NOFOLLOW |
 * O_NONBLOCK and read only if the descriptor is a regular file and, on
 * a backend with real inodes, the inode the scan saw: otherwise
 * -ESTALE, and the caller leaves it out of the snapshot (a FIFO, a
 * device or a symlink put in its place meanwhile is never read).
 */
int omni__ws_read(struct omni_backend *b, const char *path,
                  const struct stat *seen, omni__chunk_cb cb, void *payload);

/* Read a whole small workspace file into a malloc'd buffer (NUL-ended);
 * seen as for omni__ws_read. */
int omni__ws_read_all(struct omni_backend *b, const char *path,
                      const struct stat *seen, size_t max, char **out,
                      size_t *len);

/* Log that a scanned entry was left out of a save (rc -ESTALE from a
 * read: it changed into something else); clears the error. */
void omni__ws_skipped(const char *path, int rc);

/* --- limits and checks of a restore (snapshot_stage.c) --------------------
 */

#define OMNI__RESTORE_MAX_ENTRIES 1000000ull
#define OMNI__RESTORE_MAX_BYTES   (64ull << 30)

/* What one restore may write: entries and bytes, with the counts. */
struct omni__limits {
	unsigned long long max_entries, max_bytes;
	unsigned long long entries, bytes;
};

/*
 * The limits of a restore: OMNI_RESTORE_MAX_ENTRIES and
 * OMNI_RESTORE_MAX_BYTES (a number, bytes with an optional K, M, G or T
 * suffix) or the defaults above. -EINVAL for a value that is no number.
 */
int omni__limits_init(struct omni__limits *l);
/* Count entries and bytes of what (a snapshot's name for the message);
 * -EFBIG with a message naming the variable once a limit is passed. */
int omni__limits_add(struct omni__limits *l, unsigned long long entries,
                     unsigned long long bytes, const char *what);

/* mode & 0777, logging (WARN) the setuid, setgid and sticky bits that a
 * restore of path drops. */
mode_t omni__restore_mode(const char *path, unsigned int mode);

/* What is staged, by path (a tree: no hash an archive could collide). */
struct omni__stage;

struct omni__staged {
	char *path;
	char kind;  /* 'd', 'f' or 'l' */
	bool moved; /* in place in the workspace already */
};

int omni__stage_new(struct omni__stage **out);
void omni__stage_free(struct omni__stage *s);
/* The entry at path, or NULL. */
struct omni__staged *omni__stage_get(struct omni__stage *s, const char *path);
/* Add path of kind (which must not be staged yet). */
int omni__stage_add(struct omni__stage *s, const char *path, char kind);
/* Every entry, ordered so that what a directory holds follows it
 * directly ('/' sorts before every other byte). The array is malloc'd,
 * its entries borrowed. */
int omni__stage_sorted(struct omni__stage *s, struct omni__staged ***out,
                       size_t *count);

/* --- apply ------------------------------------------------------------------
 */

struct omni__apply {
	struct omni_backend *b;
	struct omni__ws_list existing; /* what the workspace held */
	bool *keep;                    /* parallel to existing.items */
	struct omni__stage *stage;     /* what the snapshot put in staging */
	char stage_dir[64];            /* OMNI__STAGE_PREFIX<hex>, "" if none */
	struct omni__limits limits;
	const char *what;            /* the snapshot, for messages */
	struct omni__dirmode *modes; /* directory modes set at the end */
	size_t nmodes, capmodes;
	char last_dir[PATH_MAX]; /* last staged directory made sure of */
	struct omni__progress *progress;
};

struct omni__apply_file {
	struct omni_file *f;
	char path[PATH_MAX];   /* in the workspace */
	char staged[PATH_MAX]; /* in the staging directory */
	long long off;         /* where the next write goes */
	long long end;         /* bytes counted against the limit */
	mode_t mode;
};

/*
 * Start applying: read the limits and scan the workspace (flags as for
 * omni__ws_scan). The scan decides what the final pass deletes: entries
 * the snapshot does not name, never ignored ones. what names the
 * snapshot in messages (borrowed).
 */
int omni__apply_begin(struct omni__apply *a, struct omni_backend *b,
                      unsigned int scan_flags, struct omni__progress *progress,
                      const char *what);
/* The workspace held nothing (after the ignore rules)? */
bool omni__apply_workspace_empty(const struct omni__apply *a);
/* What the workspace holds at path before applying, or NULL. */
const struct stat *omni__apply_existing(const struct omni__apply *a,
                                        const char *path);
/* Keep path as it is (the caller knows it already matches). */
void omni__apply_keep(struct omni__apply *a, const char *path);

/*
 * The entries of a snapshot, staged. A path whose parent was staged as
 * a file or a symlink, or that was staged before as another kind, fails
 * with -EINVAL (nothing is written through a symlink, whatever the
 * order or the duplicates); the same path twice of the same kind: the
 * later wins. Setuid, setgid and sticky bits are dropped (logged). Past
 * a limit: -EFBIG.
 */
/* A directory (mode 0: leave the mode alone). */
int omni__apply_dir(struct omni__apply *a, const char *path, mode_t mode);

/* A regular file: open it in staging (1: a reserved name, skip the
 * entry and call nothing else), write (at af->off, which the caller may
 * move forward over a hole), commit (size: extend to it, or -1). mtime
 * may be NULL (now). abort closes it (the staging directory goes as a
 * whole). */
int omni__apply_file_open(struct omni__apply *a, struct omni__apply_file *af,
                          const char *path, mode_t mode);
int omni__apply_file_write(struct omni__apply *a, struct omni__apply_file *af,
                           const void *data, size_t len);
int omni__apply_file_commit(struct omni__apply *a, struct omni__apply_file *af,
                            long long size, const struct timespec *mtime);
void omni__apply_file_abort(struct omni__apply *a, struct omni__apply_file *af);

/* A symlink to target. */
int omni__apply_symlink(struct omni__apply *a, const char *path,
                        const char *target);

/* Move what was staged into place (never through a symlink of the
 * workspace: each directory is looked at first), delete what the
 * snapshot did not name, set directory modes, remove the staging
 * directory. */
int omni__apply_finish(struct omni__apply *a);
/* Free everything; a staging directory still there (a failed load) is
 * removed, so the workspace is as it was. */
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
