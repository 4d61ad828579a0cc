/*
 * overlay.c - the overlay's parts, its mount and the manifest of the tree
 * it covers (see overlay.h).
 *
 * Why the kernel's overlayfs: it does copy-up, whiteouts and directory
 * renames correctly and at native speed, and the local backend needs no
 * change at all, as it serves whatever directory is its workspace. The
 * cost is that the daemon must be allowed to mount it: root (or
 * CAP_SYS_ADMIN). A user namespace would not do here, as the mount must
 * be seen by the FUSE daemon's own namespace and the agent's commands,
 * which run in the host's; so without the privilege --overlay fails with
 * a message saying so, and DIR is never written by anything.
 *
 * The manifest is taken once, when the project first overlays DIR: the
 * changes in upper/ are relative to DIR as it was then, and --apply
 * compares DIR's entries against it (size, mtime to the nanosecond,
 * mode) to refuse what DIR changed meanwhile.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/datapath.h"
#include "omni/error.h"
#include "overlay.h"

static int fmt_path(char *out, size_t size, const char *a, const char *b)
{
	int n = snprintf(out, size, "%s/%s", a, b);

	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "overlay: path too long");
	return 0;
}

int omnifs_overlay_paths(struct omnifs_overlay *ov, const char *data_path,
                         const char *project, bool need_lower)
{
	char base[PATH_MAX], link[PATH_MAX + 8], dir[PATH_MAX];
	int rc;
	ssize_t n;

	memset(ov, 0, sizeof(*ov));
	if ((rc = omni__data_path(data_path, base, sizeof(base))) < 0 ||
	    (rc = fmt_path(dir, sizeof(dir), base, ".omnifs-overlay")) < 0 ||
	    (rc = fmt_path(ov->dir, sizeof(ov->dir), dir, project)) < 0 ||
	    (rc = fmt_path(ov->upper, sizeof(ov->upper), ov->dir, "upper")) <
	        0 ||
	    (rc = fmt_path(ov->work, sizeof(ov->work), ov->dir, "work")) < 0 ||
	    (rc = fmt_path(ov->manifest, sizeof(ov->manifest), ov->dir,
	                   "manifest")) < 0 ||
	    (rc = fmt_path(ov->ws, sizeof(ov->ws), base, project)) < 0 ||
	    (rc = fmt_path(link, sizeof(link), ov->dir, "lower")) < 0)
		return rc;
	n = readlink(link, ov->lower, sizeof(ov->lower) - 1);
	if (n < 0) {
		ov->lower[0] = '\0';
		if (need_lower)
			return omni_error_set(-ENOENT,
			                      "project '%s' has no overlay "
			                      "(omnifs --overlay DIR)",
			                      project);
	} else {
		ov->lower[n] = '\0';
	}
	return 0;
}

/* --- walking a tree ------------------------------------------------------- */

static int walk_dir(const char *root, const char *rel, omnifs_walk_cb cb,
                    void *payload)
{
	char path[PATH_MAX], child[PATH_MAX];
	struct dirent **names = NULL;
	int n, rc = 0;

	if (*rel)
		snprintf(path, sizeof(path), "%s/%s", root, rel);
	else
		snprintf(path, sizeof(path), "%s", root);
	if ((n = scandir(path, &names, NULL, alphasort)) < 0)
		return omni_error_set(-errno, "overlay: cannot list %s", path);
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		struct stat st;

		if (rc < 0 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		int len = snprintf(child, sizeof(child), "%s%s%s", rel,
		                   *rel ? "/" : "", name);
		if (len < 0 || (size_t)len >= sizeof(child)) {
			rc = omni_error_set(-ENAMETOOLONG, "overlay: path too "
			                                   "long");
			continue;
		}
		if (fmt_path(path, sizeof(path), root, child) < 0) {
			rc = -ENAMETOOLONG;
			continue;
		}
		if (lstat(path, &st) < 0) {
			rc = omni_error_set(-errno, "overlay: %s", path);
			continue;
		}
		rc = cb(child, &st, payload);
		if (rc == 0 && S_ISDIR(st.st_mode))
			rc = walk_dir(root, child, cb, payload);
		if (rc == 1)
			rc = 0;
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int omnifs_overlay_walk(const char *root, omnifs_walk_cb cb, void *payload)
{
	return walk_dir(root, "", cb, payload);
}

/* --- the manifest --------------------------------------------------------- */

static int put_entry(const char *rel, const struct stat *st, void *payload)
{
	fprintf(payload, "%lld %lld %o %s%c", (long long)st->st_size,
	        (long long)st->st_mtim.tv_sec * 1000000000LL +
	            st->st_mtim.tv_nsec,
	        (unsigned int)st->st_mode, rel, '\0');
	return 0;
}

int omnifs_manifest_take(const char *dir, const char *file)
{
	char tmp[PATH_MAX + 8];
	FILE *f;
	int rc;

	snprintf(tmp, sizeof(tmp), "%s.new", file);
	if (!(f = fopen(tmp, "we")))
		return omni_error_set(-errno, "overlay: cannot write %s", tmp);
	rc = omnifs_overlay_walk(dir, put_entry, f);
	if (fclose(f) != 0 && rc == 0)
		rc = omni_error_set(-EIO, "overlay: cannot write %s", tmp);
	if (rc == 0 && rename(tmp, file) < 0)
		rc = omni_error_set(-errno, "overlay: cannot write %s", file);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

static int add_entry(struct omnifs_manifest *m, const char *rec, size_t len)
{
	long long size, mtime;
	unsigned int mode;
	int used = 0;

	if (sscanf(rec, "%lld %lld %o %n", &size, &mtime, &mode, &used) != 3 ||
	    (size_t)used >= len)
		return omni_error_set(-EINVAL, "overlay: bad manifest entry");
	if (m->count == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 256;
		struct omnifs_manifest_entry *e =
		    realloc(m->e, cap * sizeof(*e));
		if (!e)
			return omni_error_set(-ENOMEM, "out of memory");
		m->e = e;
		m->cap = cap;
	}
	struct omnifs_manifest_entry *e = &m->e[m->count];
	if (!(e->path = strdup(rec + used)))
		return omni_error_set(-ENOMEM, "out of memory");
	e->size = size;
	e->mtime_ns = mtime;
	e->mode = (mode_t)mode;
	m->count++;
	return 0;
}

static int by_path(const void *a, const void *b)
{
	return strcmp(((const struct omnifs_manifest_entry *)a)->path,
	              ((const struct omnifs_manifest_entry *)b)->path);
}

int omnifs_manifest_read(const char *file, struct omnifs_manifest *m)
{
	char *rec = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;
	FILE *f = fopen(file, "re");

	memset(m, 0, sizeof(*m));
	if (!f)
		return omni_error_set(-errno, "overlay: cannot read %s", file);
	while (rc == 0 && (len = getdelim(&rec, &cap, '\0', f)) > 0)
		rc = add_entry(m, rec, (size_t)len);
	free(rec);
	fclose(f);
	if (rc < 0) {
		omnifs_manifest_free(m);
		return rc;
	}
	qsort(m->e, m->count, sizeof(*m->e), by_path);
	return 0;
}

const struct omnifs_manifest_entry *
omnifs_manifest_find(const struct omnifs_manifest *m, const char *path)
{
	struct omnifs_manifest_entry key = { .path = (char *)path };

	if (!m->count)
		return NULL;
	return bsearch(&key, m->e, m->count, sizeof(*m->e), by_path);
}

void omnifs_manifest_free(struct omnifs_manifest *m)
{
	for (size_t i = 0; i < m->count; i++)
		free(m->e[i].path);
	free(m->e);
	memset(m, 0, sizeof(*m));
}

/* --- the mount ------------------------------------------------------------ */

static int make_dir(const char *path)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return omni_error_set(-errno, "overlay: cannot create %s",
		                      path);
	return 0;
}

/* The parts, made on first use; a project that overlays another tree
 * is refused. */
static int prepare(struct omnifs_overlay *ov, const char *lower)
{
	char parent[PATH_MAX], base[PATH_MAX], link[PATH_MAX + 8];
	int rc;

	snprintf(parent, sizeof(parent), "%s", ov->dir);
	*strrchr(parent, '/') = '\0';
	snprintf(base, sizeof(base), "%s", parent);
	*strrchr(base, '/') = '\0';
	if (mkdir(base, 0755) < 0 && errno != EEXIST)
		return omni_error_set(-errno, "overlay: cannot create %s",
		                      base);
	if ((rc = make_dir(parent)) < 0 || (rc = make_dir(ov->dir)) < 0 ||
	    (rc = make_dir(ov->upper)) < 0 || (rc = make_dir(ov->work)) < 0 ||
	    (rc = make_dir(ov->ws)) < 0)
		return rc;
	if (ov->lower[0] && strcmp(ov->lower, lower) != 0)
		return omni_error_set(-EEXIST,
		                      "overlay: the project overlays %s, not "
		                      "%s (use another project)",
		                      ov->lower, lower);
	snprintf(link, sizeof(link), "%s/lower", ov->dir);
	if (!ov->lower[0]) {
		if ((rc = omnifs_manifest_take(lower, ov->manifest)) < 0)
			return rc;
		if (symlink(lower, link) < 0)
			return omni_error_set(
			    -errno, "overlay: cannot create %s", link);
		snprintf(ov->lower, sizeof(ov->lower), "%s", lower);
	}
	return 0;
}

int omnifs_overlay_mount(struct omnifs_overlay *ov, const char *lower_dir,
                         const char *data_path, const char *project)
{
	char lower[PATH_MAX], opts[4 * PATH_MAX + 64];
	struct stat st;
	int rc;

	if (!realpath(lower_dir, lower) || stat(lower, &st) < 0 ||
	    !S_ISDIR(st.st_mode))
		return omni_error_set(-ENOTDIR, "--overlay %s: not a directory",
		                      lower_dir);
	if ((rc = omnifs_overlay_paths(ov, data_path, project, false)) < 0 ||
	    (rc = prepare(ov, lower)) < 0)
		return rc;
	if (strpbrk(lower, ",:\\") || strpbrk(ov->dir, ",:\\"))
		return omni_error_set(-EINVAL,
		                      "--overlay: paths with ',', ':' or '\\' "
		                      "cannot be given to overlayfs");
	/* A killed daemon left its overlay: replace it. */
	umount2(ov->ws, MNT_DETACH);
	snprintf(opts, sizeof(opts),
	         "lowerdir=%s,upperdir=%s,workdir=%s,"
	         "redirect_dir=off,metacopy=off",
	         lower, ov->upper, ov->work);
	if (mount("overlay", ov->ws, "overlay", 0, opts) < 0)
		return omni_error_set(-errno,
		                      "--overlay: cannot mount overlayfs on %s "
		                      "(%s; the daemon needs root or "
		                      "CAP_SYS_ADMIN)",
		                      ov->ws, strerror(errno));
	return 0;
}

void omnifs_overlay_unmount(const struct omnifs_overlay *ov)
{
	if (umount2(ov->ws, 0) < 0)
		umount2(ov->ws, MNT_DETACH);
}
