/*
 * overlay_diff.c - omnifs --diff PROJECT and --apply PROJECT (see
 * overlay.h): what the overlay's upper directory holds, against DIR.
 *
 * Design. The upper directory is the change set: a whiteout (a character
 * device 0:0) is a deletion, an opaque directory (trusted.overlay.opaque
 * "y") or a directory over a non-directory replaces what DIR had there, a
 * file or a symlink is new or modified, a directory DIR lacks is new. The
 * overlay is mounted with redirect_dir=off and metacopy=off (overlay.c),
 * so a renamed directory of DIR is a copy plus a whiteout and every file
 * in upper has its data: upper alone says everything.
 *
 * --diff prints one line a change ("deleted", "new", "modified",
 * "replaced", "new directory", "symlink") and, for files, the unified
 * diff of GNU diff(1) (which names binary files as such), started with
 * posix_spawnp, labelled a/PATH and b/PATH.
 *
 * --apply needs the project unmounted (DIR must not change under a live
 * overlay). It checks every change first: a path whose entry in DIR no
 * longer matches the manifest (size, mtime, type), or that DIR made
 * meanwhile, is a conflict; with any conflict nothing is applied and the
 * conflicts are listed (exit 1). Otherwise each change is written into
 * DIR (files through a temporary name and a rename, with their mode and
 * mtime), then upper and work are emptied and the manifest taken again:
 * the project goes on from the new DIR.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "base/mountinfo.h"
#include "omni/backend.h"
#include "omni/error.h"
#include "overlay.h"

extern char **environ;

enum change {
	CH_NONE,     /* a directory both have: look inside */
	CH_DELETED,  /* a whiteout */
	CH_NEW,      /* a file or symlink DIR lacks */
	CH_MODIFIED, /* a file or symlink over one of DIR's */
	CH_NEW_DIR,  /* a directory DIR lacks */
	CH_REPLACED, /* an opaque directory, or a directory over a file */
};

static const char *const change_names[] = {
	"", "deleted", "new", "modified", "new directory", "replaced",
};

struct ctx {
	struct omnifs_overlay ov;
	struct omnifs_manifest man;
	FILE *out;
	bool apply; /* else diff */
	int conflicts;
	int rc;
};

static void join(char *out, size_t size, const char *a, const char *rel)
{
	int n = snprintf(out, size, "%s/%s", a, rel);

	if (n < 0 || (size_t)n >= size)
		out[0] = '\0'; /* too long: lstat fails, as for a missing one */
}

static bool opaque(const char *path)
{
	char v[4] = "";
	ssize_t n = lgetxattr(path, "trusted.overlay.opaque", v, sizeof(v));

	return n == 1 && v[0] == 'y';
}

static enum change classify(struct ctx *c, const char *rel,
                            const struct stat *up, struct stat *low,
                            bool *have_low)
{
	char lpath[PATH_MAX], upath[PATH_MAX];

	join(lpath, sizeof(lpath), c->ov.lower, rel);
	join(upath, sizeof(upath), c->ov.upper, rel);
	*have_low = lstat(lpath, low) == 0;
	if (S_ISCHR(up->st_mode) && up->st_rdev == 0)
		return *have_low ? CH_DELETED : CH_NONE;
	if (S_ISDIR(up->st_mode)) {
		if (!*have_low)
			return CH_NEW_DIR;
		if (!S_ISDIR(low->st_mode) || opaque(upath))
			return CH_REPLACED;
		return CH_NONE;
	}
	if (!*have_low)
		return CH_NEW;
	if (S_ISDIR(low->st_mode))
		return CH_REPLACED;
	return CH_MODIFIED;
}

/* --- diff ----------------------------------------------------------------- */

/* diff -u a b, labelled; its exit status (0 same, 1 differ). */
static int run_diff(struct ctx *c, const char *rel, const char *a,
                    const char *b)
{
	char la[PATH_MAX + 4], lb[PATH_MAX + 4];
	const char *argv[] = { "diff", "-u", "--label", la,  "--label",
		               lb,     a,    b,         NULL };
	pid_t pid;
	int st;

	snprintf(la, sizeof(la), "a/%s", rel);
	snprintf(lb, sizeof(lb), "b/%s", rel);
	if (strcmp(a, "/dev/null") == 0)
		snprintf(la, sizeof(la), "/dev/null");
	if (strcmp(b, "/dev/null") == 0)
		snprintf(lb, sizeof(lb), "/dev/null");
	fflush(c->out);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (fileno(c->out) != STDOUT_FILENO)
		posix_spawn_file_actions_adddup2(&fa, fileno(c->out),
		                                 STDOUT_FILENO);
	int rc =
	    posix_spawnp(&pid, "diff", &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return omni_error_set(-rc, "--diff: cannot run diff(1)");
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 2;
}

static int diff_entry(struct ctx *c, const char *rel, const struct stat *up,
                      enum change ch, const struct stat *low)
{
	char lpath[PATH_MAX], upath[PATH_MAX], target[PATH_MAX];

	join(lpath, sizeof(lpath), c->ov.lower, rel);
	join(upath, sizeof(upath), c->ov.upper, rel);
	if (S_ISLNK(up->st_mode)) {
		ssize_t n = readlink(upath, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		fprintf(c->out, "%s symlink: %s -> %s\n", change_names[ch], rel,
		        target);
		return 0;
	}
	if (ch == CH_MODIFIED && S_ISREG(low->st_mode)) {
		/* A copy-up for a chmod or a touch has the same bytes. */
		if (low->st_size == up->st_size &&
		    run_diff(c, rel, lpath, upath) == 0) {
			if ((low->st_mode & 07777) != (up->st_mode & 07777))
				fprintf(c->out, "mode: %s %o -> %o\n", rel,
				        low->st_mode & 07777,
				        up->st_mode & 07777);
			return 0;
		}
		fprintf(c->out, "modified: %s\n", rel);
		return run_diff(c, rel, lpath, upath) == 2 ? -EIO : 0;
	}
	fprintf(c->out, "%s: %s\n", change_names[ch], rel);
	if (ch == CH_DELETED && S_ISREG(low->st_mode))
		return run_diff(c, rel, lpath, "/dev/null") == 2 ? -EIO : 0;
	if ((ch == CH_NEW || ch == CH_REPLACED) && S_ISREG(up->st_mode))
		return run_diff(c, rel, "/dev/null", upath) == 2 ? -EIO : 0;
	return 0;
}

/* --- apply ---------------------------------------------------------------- */

/* Does DIR still hold at rel what the manifest says (or nothing, when
 * the manifest has nothing there)? */
static bool unchanged(struct ctx *c, const char *rel, const struct stat *low,
                      bool have_low)
{
	const struct omnifs_manifest_entry *e =
	    omnifs_manifest_find(&c->man, rel);

	if (!e)
		return !have_low;
	if (!have_low || (low->st_mode & S_IFMT) != (e->mode & S_IFMT))
		return false;
	if (S_ISDIR(low->st_mode))
		return true; /* its entries are checked one by one */
	return low->st_size == e->size &&
	       (long long)low->st_mtim.tv_sec * 1000000000LL +
	               low->st_mtim.tv_nsec ==
	           e->mtime_ns;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 ? -1 : 0;
}

static int remove_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	return nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) < 0 ? -errno : 0;
}

/* Copy the file from into to (a temporary name, then the rename). */
static int copy_file(const char *from, const char *to, const struct stat *st)
{
	char tmp[PATH_MAX + 16], buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), out = -1,
	    rc = 0;
	ssize_t n;

	snprintf(tmp, sizeof(tmp), "%s.omnifs-apply", to);
	if (in < 0 || (out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	                          st->st_mode & 07777)) < 0)
		rc = -errno;
	while (rc == 0 && (n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 || write(out, buf, (size_t)n) != n)
			rc = -EIO;
	}
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	if (rc == 0 && (fchmod(out, st->st_mode & 07777) < 0 ||
	                futimens(out, ts) < 0 || fsync(out) < 0))
		rc = -errno;
	if (in >= 0)
		close(in);
	if (out >= 0 && close(out) < 0 && rc == 0)
		rc = -EIO;
	if (rc == 0 && rename(tmp, to) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

static int apply_entry(struct ctx *c, const char *rel, const struct stat *up,
                       enum change ch)
{
	char lpath[PATH_MAX], upath[PATH_MAX], target[PATH_MAX];
	int rc = 0;

	join(lpath, sizeof(lpath), c->ov.lower, rel);
	join(upath, sizeof(upath), c->ov.upper, rel);
	if (ch == CH_DELETED || ch == CH_REPLACED ||
	    (ch == CH_MODIFIED && S_ISLNK(up->st_mode)))
		rc = remove_tree(lpath);
	if (rc == 0 && (ch == CH_NEW_DIR || ch == CH_REPLACED) &&
	    mkdir(lpath, up->st_mode & 07777) < 0)
		rc = -errno;
	if (rc == 0 && S_ISLNK(up->st_mode)) {
		ssize_t n = readlink(upath, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		remove_tree(lpath);
		if (symlink(target, lpath) < 0)
			rc = -errno;
	}
	if (rc == 0 && S_ISREG(up->st_mode))
		rc = copy_file(upath, lpath, up);
	if (rc < 0)
		return omni_error_set(rc, "--apply: %s: %s", lpath,
		                      strerror(-rc));
	fprintf(c->out, "%s: %s\n", change_names[ch], rel);
	return 0;
}

/* --- the walk ------------------------------------------------------------- */

static int visit(const char *rel, const struct stat *up, void *payload)
{
	struct ctx *c = payload;
	struct stat low;
	bool have_low;
	enum change ch = classify(c, rel, up, &low, &have_low);

	if (ch == CH_NONE)
		return 0;
	if (c->apply && c->conflicts >= 0 &&
	    !unchanged(c, rel, &low, have_low)) {
		fprintf(c->out,
		        "conflict: %s (changed in %s since the overlay "
		        "began)\n",
		        rel, c->ov.lower);
		c->conflicts++;
		return S_ISDIR(up->st_mode) ? 1 : 0;
	}
	if (c->apply && c->conflicts < 0)
		return apply_entry(c, rel, up, ch);
	if (!c->apply)
		return diff_entry(c, rel, up, ch, &low);
	return 0;
}

static int is_mounted(const struct omni__mount *m, void *payload)
{
	return strcmp(m->point, payload) == 0 ? 1 : 0;
}

static int open_ctx(struct ctx *c, const char *data_path, const char *project,
                    FILE *out, bool apply)
{
	memset(c, 0, sizeof(*c));
	c->out = out;
	c->apply = apply;
	if (!omni_project_id_valid(project))
		return omni_error_set(-EINVAL, "invalid project id '%s'",
		                      project);
	return omnifs_overlay_paths(&c->ov, data_path, project, true);
}

int omnifs_overlay_diff(const char *data_path, const char *project, FILE *out)
{
	struct ctx c;
	int rc = open_ctx(&c, data_path, project, out, false);

	if (rc == 0)
		rc = omnifs_overlay_walk(c.ov.upper, visit, &c);
	if (rc < 0) {
		fprintf(stderr, "omnifs: --diff %s: %s\n", project,
		        omni_error_last());
		return 1;
	}
	return 0;
}

/* Empty dir (the directory stays). */
static int empty_dir(const char *dir)
{
	int rc = remove_tree(dir);

	if (rc == 0 && mkdir(dir, 0700) < 0)
		rc = -errno;
	return rc;
}

static int apply_all(struct ctx *c)
{
	int rc;

	if (omni__mountinfo_each(is_mounted, c->ov.ws) == 1)
		return omni_error_set(-EBUSY,
		                      "the project is mounted: unmount it "
		                      "first (DIR must not change under a "
		                      "live overlay)");
	if ((rc = omnifs_manifest_read(c->ov.manifest, &c->man)) < 0 ||
	    (rc = omnifs_overlay_walk(c->ov.upper, visit, c)) < 0)
		return rc;
	if (c->conflicts > 0)
		return omni_error_set(-EEXIST, "%d conflict%s: nothing applied",
		                      c->conflicts,
		                      c->conflicts == 1 ? "" : "s");
	c->conflicts = -1; /* checked: now write */
	if ((rc = omnifs_overlay_walk(c->ov.upper, visit, c)) < 0)
		return rc;
	if ((rc = empty_dir(c->ov.upper)) < 0 ||
	    (rc = empty_dir(c->ov.work)) < 0)
		return omni_error_set(rc, "--apply: cannot empty %s",
		                      c->ov.dir);
	return omnifs_manifest_take(c->ov.lower, c->ov.manifest);
}

int omnifs_overlay_apply(const char *data_path, const char *project, FILE *out)
{
	struct ctx c;
	int rc = open_ctx(&c, data_path, project, out, true);

	if (rc == 0)
		rc = apply_all(&c);
	omnifs_manifest_free(&c.man);
	if (rc < 0) {
		fprintf(stderr, "omnifs: --apply %s: %s\n", project,
		        omni_error_last());
		return 1;
	}
	return 0;
}
