/*
 * backends/state/snapshot_apply.c - writing a snapshot into a workspace
 * through the backend operations (see snapshot.h; snapshot_scan.c reads
 * one).
 *
 * APPLY
 *	Loading a snapshot must never leave a half-written file behind, and
 *	must not delete what it should keep. So:
 *	  1. the workspace is scanned first (same ignore rules);
 *	  2. every file of the snapshot is written to a temporary name in its
 *	     directory (".omnifs-tmp-<pid>-<n>", in the default ignore list),
 *	     created with its mode (chmod only when the umask took bits away),
 *	     given its time (not on remote backends, where a utimens is a
 *	     command in the sandbox), and renamed over its path; a symlink is
 *	     made under a temporary name and renamed the same way. Something
 *	     of another type in the way (a directory where a file goes, a file
 *	     where a directory goes) is removed first;
 *	  3. what the scan found and the snapshot does not name is deleted,
 *	     deepest first; a directory goes only if it held scanned entries
 *	     (an empty directory a user made stays, since git cannot record
 *	     one), and only if it is empty by then (ignored content keeps it);
 *	  4. directory modes are set last, deepest first, so a read-only
 *	     directory does not stop its own files from being written.
 *	The managers check a snapshot completely (download verified, archive
 *	read through, objects present) before step 2, so a broken snapshot
 *	fails before anything is written.
 *
 * Locking: the functions here keep no global state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "core/api.h"
#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/log.h"
#include "state/snapshot.h"

/* --- apply
 * -------------------------------------------------------------------- */

struct omni__dirmode {
	char *path;
	mode_t mode;
};

int omni__apply_begin(struct omni__apply *a, struct omni_backend *b,
                      unsigned int scan_flags, struct omni__progress *progress)
{
	int rc;

	memset(a, 0, sizeof(*a));
	a->b = b;
	a->progress = progress;
	if ((rc = omni__ws_scan(b, scan_flags, &a->existing)) < 0)
		return rc;
	a->keep = calloc(a->existing.count + 1, sizeof(*a->keep));
	if (!a->keep) {
		omni__ws_list_finish(&a->existing);
		return omni_error_set(-ENOMEM, "apply: out of memory");
	}
	a->last_dir[0] = '\0';
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

/* Make sure every component of dir ("" is the root) is a directory,
 * removing a file or symlink that stands in the way. */
static int ensure_dir(struct omni__apply *a, const char *dir)
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
		struct omni__ws_entry *e = omni__ws_find(&a->existing, path);
		if (e && S_ISDIR(e->st.st_mode)) {
			a->keep[e - a->existing.items] = true;
		} else {
			if (e && (rc = ignore_missing(
			              omni_vfs_unlink(a->b, path))) < 0)
				return rc;
			rc = omni_vfs_mkdir(a->b, path, 0755);
			if (rc == -EEXIST) {
				struct stat st;
				omni_error_clear();
				rc = omni_vfs_stat(a->b, path, &st);
				if (rc == 0 && !S_ISDIR(st.st_mode))
					rc = omni_error_set(
					    -ENOTDIR, "%s: not a directory",
					    path);
			}
			if (rc < 0)
				return rc;
			if (e)
				a->keep[e - a->existing.items] = true;
		}
		if (i < len)
			path[i] = '/';
	}
	snprintf(a->last_dir, sizeof(a->last_dir), "%s", dir);
	return 0;
}

static int ensure_parent(struct omni__apply *a, const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (!slash)
		return 0;
	if ((size_t)(slash - path) >= sizeof(dir))
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", path);
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return ensure_dir(a, dir);
}

/* A directory stands where a file or link goes: remove it. */
static int clear_dir_at(struct omni__apply *a, const char *path)
{
	struct omni__ws_entry *e = omni__ws_find(&a->existing, path);

	if (!e || !S_ISDIR(e->st.st_mode))
		return 0;
	a->last_dir[0] = '\0';
	return ignore_missing(omni__remove_tree(a->b, path));
}

static int tmp_name(struct omni__apply *a, const char *path, char *out,
                    size_t size)
{
	const char *slash = strrchr(path, '/');
	int dl = slash ? (int)(slash - path) : 0;
	int n = snprintf(out, size, "%.*s%s.omnifs-tmp-%ld-%lu", dl, path,
	                 slash ? "/" : "", (long)getpid(), a->counter++);

	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", path);
	return 0;
}

int omni__apply_dir(struct omni__apply *a, const char *path, mode_t mode)
{
	int rc;

	if (!path[0])
		return 0;
	if ((rc = ensure_dir(a, path)) < 0)
		return rc;
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
		a->modes[a->nmodes++] = (struct omni__dirmode){ copy, mode };
	}
	return 0;
}

int omni__apply_file_open(struct omni__apply *a, struct omni__apply_file *af,
                          const char *path, mode_t mode)
{
	int rc;

	memset(af, 0, sizeof(*af));
	af->mode = mode & 07777;
	snprintf(af->path, sizeof(af->path), "%s", path);
	if ((rc = ensure_parent(a, path)) < 0 ||
	    (rc = clear_dir_at(a, path)) < 0)
		return rc;
	for (int tries = 0;; tries++) {
		if ((rc = tmp_name(a, path, af->tmp, sizeof(af->tmp))) < 0)
			return rc;
		/* Made with its final mode: on a remote sandbox every chmod
		 * is a command, and most files need none after this. */
		rc = omni_vfs_open(a->b, af->tmp,
		                   O_WRONLY | O_CREAT | O_EXCL | O_TRUNC,
		                   af->mode, &af->f);
		if (rc != -EEXIST || tries >= 8)
			break;
		omni_error_clear();
	}
	if (rc < 0)
		af->tmp[0] = '\0';
	return rc;
}

int omni__apply_file_write(struct omni__apply_file *af, const void *data,
                           size_t len)
{
	size_t done = 0;

	while (done < len) {
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
	return 0;
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

int omni__apply_file_commit(struct omni__apply *a, struct omni__apply_file *af,
                            const struct timespec *mtime)
{
	bool remote = omni_vfs_caps(a->b) & OMNI_CAP_REMOTE;
	struct stat st;
	int rc = omni_vfs_flush(af->f);

	/* Where asking is cheap, see whether the umask took bits away; a
	 * remote backend gives a new file the mode it was asked for. */
	bool fix_mode = !remote && (omni_vfs_fstat(af->f, &st) < 0 ||
	                            (st.st_mode & 07777) != af->mode);
	int rrc = omni_vfs_release(af->f);

	af->f = NULL;
	if (rc == 0)
		rc = rrc;
	if (rc == 0 && fix_mode)
		rc = optional(omni_vfs_chmod(a->b, af->tmp, af->mode));
	/* Times are kept where setting one is cheap; on a remote sandbox
	 * each would be a command, so files there get the load's time. */
	if (rc == 0 && mtime && !remote) {
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, *mtime };
		rc = optional(omni_vfs_utimens(a->b, af->tmp, ts));
	}
	if (rc == 0)
		rc = omni_vfs_rename(a->b, af->tmp, af->path, 0);
	if (rc < 0) {
		omni__apply_file_abort(a, af);
		return rc;
	}
	af->tmp[0] = '\0';
	omni__apply_keep(a, af->path);
	if (a->progress)
		omni__progress_add(a->progress, 1, af->off);
	return 0;
}

void omni__apply_file_abort(struct omni__apply *a, struct omni__apply_file *af)
{
	struct omni__error_saved saved;

	/* Keep the message of the failure that got us here. */
	omni__error_save(&saved);
	if (af->f)
		omni_vfs_release(af->f);
	af->f = NULL;
	if (af->tmp[0])
		omni_vfs_unlink(a->b, af->tmp);
	af->tmp[0] = '\0';
	if (saved.code)
		omni__error_restore(&saved, saved.code);
}

int omni__apply_symlink(struct omni__apply *a, const char *path,
                        const char *target)
{
	char tmp[PATH_MAX];
	int rc;

	if ((rc = ensure_parent(a, path)) < 0 ||
	    (rc = clear_dir_at(a, path)) < 0 ||
	    (rc = tmp_name(a, path, tmp, sizeof(tmp))) < 0)
		return rc;
	if ((rc = omni_vfs_symlink(a->b, target, tmp)) < 0)
		return rc;
	if ((rc = omni_vfs_rename(a->b, tmp, path, 0)) < 0) {
		struct omni__error_saved saved;
		omni__error_save(&saved);
		omni_vfs_unlink(a->b, tmp);
		return omni__error_restore(&saved, rc);
	}
	omni__apply_keep(a, path);
	if (a->progress)
		omni__progress_add(a->progress, 1, (long long)strlen(target));
	return 0;
}

static int dirmode_cmp_desc(const void *x, const void *y)
{
	return strcmp(((const struct omni__dirmode *)y)->path,
	              ((const struct omni__dirmode *)x)->path);
}

int omni__apply_finish(struct omni__apply *a)
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
	if (a->nmodes > 1)
		qsort(a->modes, a->nmodes, sizeof(*a->modes), dirmode_cmp_desc);
	for (size_t i = 0; i < a->nmodes && rc == 0; i++)
		rc = optional(omni_vfs_chmod(a->b, a->modes[i].path,
		                             a->modes[i].mode & 07777));
	return rc;
}

void omni__apply_cleanup(struct omni__apply *a)
{
	omni__ws_list_finish(&a->existing);
	free(a->keep);
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
