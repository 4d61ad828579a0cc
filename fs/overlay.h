/*
 * overlay.h - omnifs --overlay DIR (fs/ only): the local backend serves a
 * kernel overlayfs of DIR, whose changes go to the project's data folder
 * and never to DIR; omnifs --diff PROJECT shows them against DIR and
 * omnifs --apply PROJECT writes them into DIR.
 *
 * The overlay's parts live in <data>/.omnifs-overlay/<project>/:
 *
 *	lower     a symlink to DIR (which tree the project overlays)
 *	upper/    what the agent changed (overlayfs: copies, whiteouts)
 *	work/     overlayfs's own
 *	manifest  DIR as it was when the project began: size, mtime and mode
 *	          of every entry, so --apply can refuse a file that DIR
 *	          changed meanwhile
 *
 * and the merged tree is mounted on <data>/<project>, the workspace the
 * local backend serves, for as long as the daemon runs.
 */
#ifndef OMNIFS_OVERLAY_H
#define OMNIFS_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Where the overlay of project lives, for the data path given. */
struct omnifs_overlay {
	char dir[4096];   /* <data>/.omnifs-overlay/<project> */
	char upper[4096]; /* dir/upper */
	char work[4096];  /* dir/work */
	char ws[4096];    /* <data>/<project>: the merged tree */
	char lower[4096]; /* DIR, absolute (from dir/lower once made) */
	char manifest[4096];
};

/* The paths of project's overlay; lower read from dir/lower when it
 * exists (-ENOENT when it does not and need_lower). */
int omnifs_overlay_paths(struct omnifs_overlay *ov, const char *data_path,
                         const char *project, bool need_lower);

/* Mount the overlay of lower_dir for project (root, or CAP_SYS_ADMIN):
 * the parts made on first use (and the manifest of lower_dir taken), a
 * mount left by a killed daemon replaced. -errno with a message. */
int omnifs_overlay_mount(struct omnifs_overlay *ov, const char *lower_dir,
                         const char *data_path, const char *project);
/* Unmount it (lazily when still busy). */
void omnifs_overlay_unmount(const struct omnifs_overlay *ov);

/* One entry of the manifest. */
struct omnifs_manifest_entry {
	char *path; /* relative to DIR */
	long long size, mtime_ns;
	mode_t mode;
};

struct omnifs_manifest {
	struct omnifs_manifest_entry *e;
	size_t count, cap;
};

/* Take (write) the manifest of dir, read one, find a path in it, free. */
int omnifs_manifest_take(const char *dir, const char *file);
int omnifs_manifest_read(const char *file, struct omnifs_manifest *m);
const struct omnifs_manifest_entry *
omnifs_manifest_find(const struct omnifs_manifest *m, const char *path);
void omnifs_manifest_free(struct omnifs_manifest *m);

/* Call cb for each entry below root (rel "" is root itself, not
 * called), depth first, names in order; a directory's entries come after
 * it unless cb returned 1 for it; < 0 stops the walk with that value. */
typedef int (*omnifs_walk_cb)(const char *rel, const struct stat *st,
                              void *payload);
int omnifs_overlay_walk(const char *root, omnifs_walk_cb cb, void *payload);

/* omnifs --diff PROJECT and --apply PROJECT: the exit code. */
int omnifs_overlay_diff(const char *data_path, const char *project, FILE *out);
int omnifs_overlay_apply(const char *data_path, const char *project, FILE *out);

#endif
