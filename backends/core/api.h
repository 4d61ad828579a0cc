/*
 * backends/core/api.h - helpers shared by the generic API (api.c), glob
 * (glob.c) and the state managers: directory listings held in memory, path
 * joining, mkdir -p and recursive removal through the vfs operations. Private
 * to libomni.
 */
#ifndef OMNI_API_H
#define OMNI_API_H

#include <stddef.h>
#include <sys/stat.h>

#include "omni/vfs.h"

struct omni__dirent {
	char *name;
	struct stat st;
};

struct omni__dirents {
	struct omni__dirent *items;
	size_t count, cap;
};

/* Read a whole directory (workspace-relative path) into memory. */
int omni__dirents_read(struct omni_backend *b, const char *path,
                       struct omni__dirents *out);
int omni__dirents_add(struct omni__dirents *d, const char *name,
                      const struct stat *st);
void omni__dirents_finish(struct omni__dirents *d);

/* out = dir + "/" + name, or name when dir is "". */
int omni__join(char *out, size_t size, const char *dir, const char *name);

/* mkdir -p of a workspace-relative path. */
int omni__mkdir_p(struct omni_backend *b, const char *rel);

/* Remove rel and everything under it ("" empties the workspace). */
int omni__remove_tree(struct omni_backend *b, const char *rel);

/* Does name match a glob pattern segment ('*', '?', '[...]'; no '/')? */
bool omni__glob_match(const char *pattern, size_t plen, const char *name);

#endif
