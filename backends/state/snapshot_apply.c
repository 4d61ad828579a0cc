/*
 * backends/state/snapshot_apply.c - writing a snapshot into a workspace
 * through the backend operations (see snapshot.h; snapshot_scan.c reads
 * one, snapshot_stage.c holds the checks and limits).
 *
 * APPLY
 *	A snapshot may come from a sandbox (any sandbox can write to the
 *	bucket or remote a load reads), so a load must neither be turned
 *	against the workspace nor leave it half-written. So:
 *	  1. the workspace is scanned first (same ignore rules);
 *	  2. every entry is staged in a hidden directory at the root of the
 *	     workspace, OMNI__STAGE_PREFIX<random> (on the same file system,
 *	     so that a rename moves an entry in; through the backend, so it
 *	     works in a container or a remote sandbox alike; never scanned or
 *	     saved). The stage table knows the kind of every staged path, so
 *	     an entry whose parent was staged as a symlink or a file, or that
 *	     was staged before as another kind, fails the load (-EINVAL):
 *	     whatever the order or the duplicates of the archive or tree,
 *	     nothing is written through a symlink. Files are created with
 *	     their mode masked to 0777 (setuid, setgid and sticky bits are
 *	     dropped and logged), given their time (not on remote backends,
 *	     where a utimens is a command in the sandbox) and their size
 *	     (holes of sparse entries are skipped, then the size is set).
 *	     Entries and bytes count against the limits (-EFBIG);
 *	  3. only once everything is staged, each staged entry is moved into
 *	     place, parents first: a directory of the snapshot is looked at
 *	     in the workspace (lstat) when it is reached: a directory there is
 *	     kept (and descended), anything else (a symlink, a file) is
 *	     removed and the staged directory renamed in whole; a file or
 *	     symlink is renamed over its path (a rename replaces a symlink,
 *	     it never follows it), after removing a directory in the way;
 *	  4. what the scan found and the snapshot does not name is deleted,
 *	     deepest first; a directory goes only if it held scanned entries
 *	     (an empty directory a user made stays, since git cannot record
 *	     one), and only if it is empty by then (ignored content keeps it);
 *	  5. directory modes are set last, deepest first, so a read-only
 *	     directory does not stop its own files from being written.
 *	Any failure before step 3 (a damaged or unsafe snapshot, a limit, a
 *	full disk) removes the staging directory and leaves the workspace
 *	exactly as it was. Step 3 only renames and removes; a failure there
 *	(the backend itself failing) can leave part of it done. A staging
 *	directory left by a crash is removed by the next load.
 *
 * Locking: the functions here keep no global state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "core/api.h"
#include "core/hash.h"
#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/log.h"
#include "state/snapshot.h"

#define ZERO_CHUNK (64 * 1024)

/* --- apply
 * -------------------------------------------------------------------- */

struct omni__dirmode {
	char *path;
	mode_t mode;
};

int omni__apply_begin(struct omni__apply *a, struct omni_backend *b,
                      unsigned int scan_flags, struct omni__progress *progress,
                      const char *what)
{
	int rc;

	memset(a, 0, sizeof(*a));
	a->b = b;
	a->progress = progress;
	a->what = what ? what : "snapshot";
	if ((rc = omni__limits_init(&a->limits)) < 0)
		return rc;
	if ((rc = omni__ws_scan(b, scan_flags, &a->existing)) < 0)
		return rc;
	a->keep = calloc(a->existing.count + 1, sizeof(*a->keep));
	if (!a->keep || omni__stage_new(&a->stage) < 0) {
		omni__apply_cleanup(a);
		return omni_error_set(-ENOMEM, "apply: out of memory");
	}
	return 0;
}

bool omni__apply_workspace_empty(const struct omni__apply *a)
{
	return a->existing.count == 0;
}

const struct stat *omni__apply_existing(const struct omni__apply *a,
                                        const char *path)
{
	struct omni__ws_entry *e = omni__ws_find(&a->existing, path);

	return e ? &e->st : NULL;
}

void omni__apply_keep(struct omni__apply *a, const char *path)
{
	struct omni__ws_entry *e = omni__ws_find(&a->existing, path);

	if (e)
		a->keep[e - a->existing.items] = true;
}

/* Gone already: missing, or under something that is no directory now
 * (a directory the snapshot replaced with a file). */
static int ignore_missing(int rc)
{
	if (rc == -ENOENT || rc == -ENOTDIR) {
		omni_error_clear();
		return 0;
	}
	return rc;
}

/* --- staging
 * ------------------------------------------------------------------ */

/* Staging directories a crashed load left at the root. */
static int remove_leftovers(struct omni__apply *a)
{
	struct omni__dirents d;
	size_t pl = strlen(OMNI__STAGE_PREFIX);
	int rc = omni__dirents_read(a->b, "", &d);

	if (rc < 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < d.count; i++) {
		if (strncmp(d.items[i].name, OMNI__STAGE_PREFIX, pl) != 0 ||
		    !S_ISDIR(d.items[i].st.st_mode))
			continue;
		omni_log(OMNI_LOG_DEBUG, "restore: removing %s (left over)",
		         d.items[i].name);
		rc = ignore_missing(omni__remove_tree(a->b, d.items[i].name));
	}
	omni__dirents_finish(&d);
	return rc;
}

/* Make the staging directory on the first entry. */
static int ensure_stage(struct omni__apply *a)
{
	unsigned char r[8];
	char hex[17];
	int rc;

	if (a->stage_dir[0])
		return 0;
	if ((rc = remove_leftovers(a)) < 0)
		return rc;
	for (int tries = 0;; tries++) {
		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			unsigned long long v =
			    (unsigned long long)ts.tv_nsec ^
			    ((unsigned long long)getpid() << 32) ^
			    (unsigned long long)tries;
			memcpy(r, &v, sizeof(r));
		}
		omni__hex(r, sizeof(r), hex);
		snprintf(a->stage_dir, sizeof(a->stage_dir), "%s%s",
		         OMNI__STAGE_PREFIX, hex);
		rc = omni_vfs_mkdir(a->b, a->stage_dir, 0700);
		if (rc != -EEXIST || tries >= 8)
			break;
		omni_error_clear();
	}
	if (rc < 0)
		a->stage_dir[0] = '\0';
	return rc;
}

static int staged_path(const struct omni__apply *a, const char *path, char *out,
                       size_t size)
{
	int n = snprintf(out, size, "%s/%s", a->stage_dir, path);

	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", path);
	return 0;
}

static const char *kind_name(char kind)
{
	return kind == 'l'   ? "a symlink"
	       : kind == 'f' ? "a file"
	                     : "a directory";
}

/* An entry of another kind than the one staged at path. */
static int conflict(const struct omni__apply *a, const char *path,
                    const struct omni__staged *e, char kind)
{
	return omni_error_set(-EINVAL,
	                      "%s: unsafe snapshot: '%s' is %s, but an "
	                      "earlier entry made it %s; nothing was "
	                      "restored",
	                      a->what, path, kind_name(kind),
	                      kind_name(e->kind));
}

/* Stage the directory dir (all of it made sure of already but its last
 * component). */
static int stage_one_dir(struct omni__apply *a, const char *dir)
{
	char sp[PATH_MAX];
	int rc;

	if ((rc = omni__limits_add(&a->limits, 1, 0, a->what)) < 0 ||
	    (rc = staged_path(a, dir, sp, sizeof(sp))) < 0)
		return rc;
	if ((rc = omni_vfs_mkdir(a->b, sp, 0755)) < 0)
		return rc;
	return omni__stage_add(a->stage, dir, 'd');
}

/* Make sure every component of dir is a staged directory: never one the
 * snapshot made a symlink or a file. */
static int stage_dirs(struct omni__apply *a, const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);
	int rc;

	if (!len || strcmp(dir, a->last_dir) == 0)
		return 0;
	if (len >= sizeof(path))
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", dir);
	memcpy(path, dir, len + 1);
	for (size_t i = 0; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		const struct omni__staged *e = omni__stage_get(a->stage, path);
		if (e && e->kind != 'd')
			return omni_error_set(
			    -EINVAL,
			    "%s: unsafe snapshot: '%s' lies under '%s', which "
			    "is %s; nothing was restored",
			    a->what, dir, path, kind_name(e->kind));
		if (!e && (rc = stage_one_dir(a, path)) < 0)
			return rc;
		if (i < len)
			path[i] = '/';
	}
	snprintf(a->last_dir, sizeof(a->last_dir), "%s", dir);
	return 0;
}

/* Prepare staging path as kind: its parents made sure of, an earlier
 * entry of the same kind removed (the later wins). *fresh says whether
 * the path is new to the table. */
static int stage_entry(struct omni__apply *a, const char *path, char kind,
                       char *sp, size_t size, bool *fresh)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int rc;

	*fresh = true;
	if ((rc = ensure_stage(a)) < 0 ||
	    (rc = staged_path(a, path, sp, size)) < 0)
		return rc;
	if (slash) {
		if ((size_t)(slash - path) >= sizeof(dir))
			return omni_error_set(-ENAMETOOLONG,
			                      "%s: path too long", path);
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
		if ((rc = stage_dirs(a, dir)) < 0)
			return rc;
	}
	const struct omni__staged *e = omni__stage_get(a->stage, path);
	if (e && e->kind != kind)
		return conflict(a, path, e, kind);
	*fresh = !e;
	if (e && kind != 'd' && (rc = omni_vfs_unlink(a->b, sp)) < 0)
		return rc;
	return omni__limits_add(&a->limits, 1, 0, a->what);
}

/* A first component that names a staging directory is never restored. */
static bool reserved(const char *path)
{
	if (strncmp(path, OMNI__STAGE_PREFIX, strlen(OMNI__STAGE_PREFIX)) != 0)
		return false;
	omni_log(OMNI_LOG_WARN, "restore: %s: a reserved name, skipped", path);
	return true;
}

int omni__apply_dir(struct omni__apply *a, const char *path, mode_t mode)
{
	char sp[PATH_MAX];
	bool fresh;
	int rc;

	if (!path[0] || reserved(path))
		return 0;
	if ((rc = stage_entry(a, path, 'd', sp, sizeof(sp), &fresh)) < 0)
		return rc;
	if (fresh) {
		/* 0755 while staging: the mode is set once all is in. */
		if ((rc = omni_vfs_mkdir(a->b, sp, 0755)) < 0 ||
		    (rc = omni__stage_add(a->stage, path, 'd')) < 0)
			return rc;
	}
	snprintf(a->last_dir, sizeof(a->last_dir), "%s", path);
	if (mode) {
		if (a->nmodes == a->capmodes) {
			size_t cap = a->capmodes ? a->capmodes * 2 : 32;
			struct omni__dirmode *p =
			    realloc(a->modes, cap * sizeof(*p));
			if (!p)
				return omni_error_set(-ENOMEM,
				                      "apply: out of memory");
			a->modes = p;
			a->capmodes = cap;
		}
		char *copy = strdup(path);
		if (!copy)
			return omni_error_set(-ENOMEM, "apply: out of memory");
		a->modes[a->nmodes++] =
		    (struct omni__dirmode){ copy,
			                    omni__restore_mode(path, mode) };
	}
	return 0;
}

int omni__apply_file_open(struct omni__apply *a, struct omni__apply_file *af,
                          const char *path, mode_t mode)
{
	bool fresh;
	int rc;

	memset(af, 0, sizeof(*af));
	snprintf(af->path, sizeof(af->path), "%s", path);
	if (reserved(path))
		return 1; /* the caller skips the entry */
	af->mode = omni__restore_mode(path, mode);
	if ((rc = stage_entry(a, path, 'f', af->staged, sizeof(af->staged),
	                      &fresh)) < 0)
		return rc;
	/* Made with its final mode: on a remote sandbox every chmod is a
	 * command, and most files need none after this. */
	rc = omni_vfs_open(a->b, af->staged,
	                   O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, af->mode,
	                   &af->f);
	if (rc == 0 && fresh)
		rc = omni__stage_add(a->stage, path, 'f');
	if (rc < 0)
		omni__apply_file_abort(a, af);
	return rc;
}

/* Count the file's size up to end against the byte limit. */
static int count_to(struct omni__apply *a, struct omni__apply_file *af,
                    long long end)
{
	int rc;

	if (end <= af->end)
		return 0;
	rc = omni__limits_add(&a->limits, 0,
	                      (unsigned long long)(end - af->end), a->what);
	af->end = end;
	return rc;
}

int omni__apply_file_write(struct omni__apply *a, struct omni__apply_file *af,
                           const void *data, size_t len)
{
	size_t done = 0;
	int rc = count_to(a, af, af->off + (long long)len);

	while (rc == 0 && done < len) {
		ssize_t n = omni_vfs_write(af->f, (const char *)data + done,
		                           len - done, (off_t)af->off);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return omni_error_set(
			    -EIO, "%s: write made no progress", af->path);
		done += (size_t)n;
		af->off += n;
	}
	return rc;
}

/* ENOSYS from an optional call (chmod, utimens) is not a failure. */
static int optional(int rc)
{
	if (rc == -ENOSYS) {
		omni_error_clear();
		return 0;
	}
	return rc;
}

/* Give the file its size: a hole at the end of a sparse entry. */
static int extend(struct omni__apply *a, struct omni__apply_file *af,
                  long long size)
{
	char *zeros;
	int rc;

	if (size <= af->off)
		return 0;
	if ((rc = count_to(a, af, size)) < 0)
		return rc;
	rc = omni_vfs_ftruncate(af->f, (off_t)size);
	if (rc != -ENOSYS)
		return rc;
	omni_error_clear();
	if (!(zeros = calloc(1, ZERO_CHUNK)))
		return omni_error_set(-ENOMEM, "apply: out of memory");
	/* No ftruncate here: the hole is written as zeros. */
	while (rc == 0 && af->off < size) {
		long long n = size - af->off;
		rc = omni__apply_file_write(
		    a, af, zeros, n > ZERO_CHUNK ? ZERO_CHUNK : (size_t)n);
	}
	free(zeros);
	return rc;
}

int omni__apply_file_commit(struct omni__apply *a, struct omni__apply_file *af,
                            long long size, const struct timespec *mtime)
{
	bool remote = omni_vfs_caps(a->b) & OMNI_CAP_REMOTE;
	struct stat st;
	int rc = size >= 0 ? extend(a, af, size) : 0;

	if (rc == 0)
		rc = omni_vfs_flush(af->f);
	/* Where asking is cheap, see whether the umask took bits away; a
	 * remote backend gives a new file the mode it was asked for. */
	bool fix_mode = rc == 0 && !remote &&
	                (omni_vfs_fstat(af->f, &st) < 0 ||
	                 (st.st_mode & 07777) != af->mode);
	int rrc = omni_vfs_release(af->f);

	af->f = NULL;
	if (rc == 0)
		rc = rrc;
	if (rc == 0 && fix_mode)
		rc = optional(omni_vfs_chmod(a->b, af->staged, af->mode));
	/* Times are kept where setting one is cheap; on a remote sandbox
	 * each would be a command, so files there get the load's time. */
	if (rc == 0 && mtime && !remote) {
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, *mtime };
		rc = optional(omni_vfs_utimens(a->b, af->staged, ts));
	}
	if (rc < 0) {
		omni__apply_file_abort(a, af);
		return rc;
	}
	if (a->progress)
		omni__progress_add(a->progress, 1, af->end);
	return 0;
}

void omni__apply_file_abort(struct omni__apply *a, struct omni__apply_file *af)
{
	(void)a;
	/* What was staged goes with the staging directory. */
	if (af->f) {
		struct omni__error_saved saved;
		omni__error_save(&saved);
		omni_vfs_release(af->f);
		if (saved.code)
			omni__error_restore(&saved, saved.code);
	}
	af->f = NULL;
}

int omni__apply_symlink(struct omni__apply *a, const char *path,
                        const char *target)
{
	char sp[PATH_MAX];
	bool fresh;
	int rc;

	if (reserved(path))
		return 0;
	if ((rc = stage_entry(a, path, 'l', sp, sizeof(sp), &fresh)) < 0 ||
	    (rc = omni__limits_add(&a->limits, 0, strlen(target), a->what)) <
	        0 ||
	    (rc = omni_vfs_symlink(a->b, target, sp)) < 0)
		return rc;
	if (fresh && (rc = omni__stage_add(a->stage, path, 'l')) < 0)
		return rc;
	if (a->progress)
		omni__progress_add(a->progress, 1, (long long)strlen(target));
	return 0;
}

/* --- the swap
 * ----------------------------------------------------------------- */

/* A staged directory: keep the workspace's, or move ours in whole.
 * *moved says it was moved (with all it holds). */
static int place_dir(struct omni__apply *a, const char *path, const char *sp,
                     bool *moved)
{
	struct stat st;
	int rc = omni_vfs_stat(a->b, path, &st);

	*moved = false;
	if (rc == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (rc == 0)
		rc = ignore_missing(omni_vfs_unlink(a->b, path));
	else if (rc == -ENOENT)
		rc = ignore_missing(rc);
	if (rc < 0)
		return rc;
	a->last_dir[0] = '\0';
	*moved = true;
	return omni_vfs_rename(a->b, sp, path, 0);
}

/* A staged file or symlink: rename it over path (which replaces a file
 * or a symlink, never following it), after a directory in the way. */
static int place_file(struct omni__apply *a, const char *path, const char *sp)
{
	int rc = omni_vfs_rename(a->b, sp, path, 0);

	if (rc == -EISDIR || rc == -ENOTEMPTY || rc == -EEXIST) {
		omni_error_clear();
		if ((rc = ignore_missing(omni__remove_tree(a->b, path))) < 0)
			return rc;
		rc = omni_vfs_rename(a->b, sp, path, 0);
	}
	return rc;
}

/* Move every staged entry into place, parents first. */
static int swap_in(struct omni__apply *a)
{
	struct omni__staged **items;
	char sp[PATH_MAX];
	const char *moved = NULL;
	size_t n, ml = 0;
	int rc = omni__stage_sorted(a->stage, &items, &n);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *path = items[i]->path;
		bool dir_moved = false;

		omni__apply_keep(a, path);
		if (moved && strncmp(path, moved, ml) == 0 && path[ml] == '/')
			continue; /* moved in with its directory */
		moved = NULL;
		if ((rc = staged_path(a, path, sp, sizeof(sp))) < 0)
			break;
		if (items[i]->kind == 'd') {
			rc = place_dir(a, path, sp, &dir_moved);
			if (dir_moved) {
				moved = path;
				ml = strlen(path);
			}
		} else {
			rc = place_file(a, path, sp);
		}
	}
	free(items);
	return rc;
}

static int dirmode_cmp_desc(const void *x, const void *y)
{
	return strcmp(((const struct omni__dirmode *)y)->path,
	              ((const struct omni__dirmode *)x)->path);
}

/* Delete what the scan found and the snapshot did not name. */
static int delete_unnamed(struct omni__apply *a)
{
	int rc = 0;

	for (size_t i = a->existing.count; i-- > 0 && rc == 0;) {
		const struct omni__ws_entry *e = &a->existing.items[i];

		if (a->keep[i])
			continue;
		if (S_ISDIR(e->st.st_mode)) {
			if (!e->has_children)
				continue;
			rc = omni_vfs_rmdir(a->b, e->path);
			if (rc == -ENOTEMPTY || rc == -EEXIST ||
			    rc == -ENOENT || rc == -ENOTDIR) {
				omni_error_clear();
				rc = 0;
			}
		} else {
			rc = ignore_missing(omni_vfs_unlink(a->b, e->path));
		}
	}
	return rc;
}

int omni__apply_finish(struct omni__apply *a)
{
	int rc = 0;

	if (a->stage_dir[0]) {
		rc = swap_in(a);
		if (rc == 0)
			rc = ignore_missing(
			    omni__remove_tree(a->b, a->stage_dir));
		if (rc < 0)
			return rc;
		a->stage_dir[0] = '\0';
	}
	rc = delete_unnamed(a);
	if (a->nmodes > 1)
		qsort(a->modes, a->nmodes, sizeof(*a->modes), dirmode_cmp_desc);
	for (size_t i = 0; i < a->nmodes && rc == 0; i++)
		rc = optional(
		    omni_vfs_chmod(a->b, a->modes[i].path, a->modes[i].mode));
	return rc;
}

void omni__apply_cleanup(struct omni__apply *a)
{
	if (a->stage_dir[0]) {
		/* A failed load: what was staged goes, nothing else. */
		struct omni__error_saved saved;
		omni__error_save(&saved);
		if (omni__remove_tree(a->b, a->stage_dir) < 0)
			omni_log(OMNI_LOG_WARN,
			         "restore: could not remove %s: %s",
			         a->stage_dir, omni_error_last());
		if (saved.code)
			omni__error_restore(&saved, saved.code);
		else
			omni_error_clear();
	}
	omni__ws_list_finish(&a->existing);
	free(a->keep);
	omni__stage_free(a->stage);
	for (size_t i = 0; i < a->nmodes; i++)
		free(a->modes[i].path);
	free(a->modes);
	memset(a, 0, sizeof(*a));
}

bool omni__snap_path_ok(char *path)
{
	char *p = path;
	size_t len;

	while (p[0] == '.' && p[1] == '/')
		p += 2;
	if (p != path)
		memmove(path, p, strlen(p) + 1);
	len = strlen(path);
	while (len && path[len - 1] == '/')
		path[--len] = '\0';
	if (!len || path[0] == '/' || len >= PATH_MAX)
		return false;
	for (const char *s = path; *s;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 0 || (n == 1 && s[0] == '.') ||
		    (n == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		s += n + (e ? 1 : 0);
	}
	return true;
}
