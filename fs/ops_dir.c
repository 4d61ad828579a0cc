/*
 * ops_dir.c - open directories, for both kinds of inode table (ops.h).
 *
 * An open directory is read whole on the first readdir (and again on a
 * rewind) and served by offset from memory, so a directory of any size
 * lists consistently. READDIRPLUS returns attributes and an entry with
 * every name, which spares the kernel one LOOKUP per file for `ls -l`.
 * A path table lists by path; a node table lists the directory node's own
 * descriptor (never a path), and its entries become nodes as lookups do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "omni/vfs.h"
#include "ops.h"

struct dir_entry {
	char *name;
	struct stat st;
};

struct dir_handle {
	char path[PATH_MAX];
	struct dir_entry *entries;
	size_t count, cap;
	bool loaded;
};

static void dir_clear(struct dir_handle *d)
{
	for (size_t i = 0; i < d->count; i++)
		free(d->entries[i].name);
	free(d->entries);
	d->entries = NULL;
	d->count = d->cap = 0;
	d->loaded = false;
}

static int dir_add(const char *name, const struct stat *st, void *payload)
{
	struct dir_handle *d = payload;

	if (d->count == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct dir_entry *e = realloc(d->entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		d->entries = e;
		d->cap = cap;
	}
	d->entries[d->count].name = strdup(name);
	if (!d->entries[d->count].name)
		return -ENOMEM;
	d->entries[d->count].st = *st;
	d->count++;
	return 0;
}

void omni__fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);
	struct dir_handle *d = calloc(1, sizeof(*d));
	int rc;

	omni__fs_count(fs, OMNIFS_OP_OPENDIR);
	if (!d) {
		omni__fs_reply_err(req, -ENOMEM);
		return;
	}
	if (fs->nodes) {
		/* The node's descriptor is the directory: nothing to keep. */
		int fd;
		rc = omnifs_inode_pin(fs->inodes, ino, &fd);
		if (rc == 0)
			omnifs_inode_unpin(fs->inodes, ino);
	} else {
		rc = omnifs_inode_path(fs->inodes, ino, d->path,
		                       sizeof(d->path));
	}
	if (rc < 0) {
		free(d);
		omni__fs_reply_err(req, rc == -ESTALE ? -ENOENT : rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fs->host_files) {
		/* The kernel may keep the listing: every change through the
		 * mount drops it, so does omnifs_invalidate_all() after a
		 * command, and so does a changed mtime once the directory's
		 * attributes expire. */
		fi->cache_readdir = 1;
		fi->keep_cache = 1;
	}
	if (fuse_reply_open(req, fi) != 0)
		free(d);
}

/* (Re)read the whole directory (dirfd: its node's, or -1 for a path). */
static int dir_load(struct omnifs *fs, struct dir_handle *d, int dirfd)
{
	int rc;

	dir_clear(d);
	if (dirfd >= 0)
		rc = omni_vfs_node_readdir(fs->backend, dirfd, dir_add, d);
	else
		rc = omni_vfs_readdir(fs->backend, d->path, dir_add, d);
	if (rc < 0) {
		dir_clear(d);
		return rc;
	}
	d->loaded = true;
	return 0;
}

/* The entry of one real name for READDIRPLUS; a name that cannot be
 * looked up (gone meanwhile) is listed without one (ino 0). */
static int plus_entry(struct omnifs *fs, fuse_ino_t ino, int dirfd,
                      const char *name, const struct stat *st,
                      struct fuse_entry_param *e)
{
	if (dirfd < 0)
		return omni__fs_make_entry(fs, ino, name, st, e);
	if (omni__fs_node_entry(fs, ino, dirfd, name, st, e) < 0) {
		memset(e, 0, sizeof(*e));
		e->attr = *st;
	}
	return 0;
}

/* Fill buf with the entries from off on; returns the bytes used. */
static size_t dir_fill(fuse_req_t req, struct omnifs *fs, struct dir_handle *d,
                       fuse_ino_t ino, int dirfd, char *buf, size_t size,
                       off_t off, bool plus)
{
	size_t pos = 0;

	/* Offsets: 1 and 2 follow "." and "..", then entry i is i + 3. */
	for (off_t i = off; i < (off_t)d->count + 2; i++) {
		const char *name;
		struct stat st = { 0 };
		bool real = i >= 2;
		size_t used;

		if (real) {
			name = d->entries[i - 2].name;
			st = d->entries[i - 2].st;
		} else {
			/* glibc hides entries whose inode number is 0. */
			name = i == 0 ? "." : "..";
			st.st_mode = S_IFDIR;
			st.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
		}
		if (!plus) {
			used = fuse_add_direntry(req, buf + pos, size - pos,
			                         name, &st, i + 1);
			if (used > size - pos)
				break;
			pos += used;
			continue;
		}
		struct fuse_entry_param e = { .attr = st };
		used = fuse_add_direntry_plus(req, NULL, 0, name, &e, i + 1);
		if (used > size - pos)
			break;
		if (real && plus_entry(fs, ino, dirfd, name, &st, &e) < 0)
			break;
		fuse_add_direntry_plus(req, buf + pos, size - pos, name, &e,
		                       i + 1);
		pos += used;
	}
	return pos;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
	struct omnifs *fs = omni__fs_of(req);
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	int dirfd = -1, rc = 0;
	char *buf = NULL;

	omni__fs_count(fs, OMNIFS_OP_READDIR);
	if (fs->nodes && (rc = omnifs_inode_pin(fs->inodes, ino, &dirfd)) < 0)
		goto out;
	/* A rewinddir (offset 0) sees changes. */
	if ((off == 0 || !d->loaded) && (rc = dir_load(fs, d, dirfd)) < 0)
		goto out;
	if (!(buf = malloc(size))) {
		rc = -ENOMEM;
		goto out;
	}
	fuse_reply_buf(req, buf,
	               dir_fill(req, fs, d, ino, dirfd, buf, size, off, plus));
	free(buf);
out:
	if (dirfd >= 0)
		omnifs_inode_unpin(fs->inodes, ino);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
}

void omni__fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

void omni__fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
                          off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

void omni__fs_releasedir(fuse_req_t req, fuse_ino_t ino,
                         struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;

	(void)ino;
	omni__fs_count(fs, OMNIFS_OP_RELEASEDIR);
	dir_clear(d);
	free(d);
	fuse_reply_err(req, 0);
}

void omni__fs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
                       struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	/* Directory changes are made by synchronous backend calls. */
	fuse_reply_err(req, 0);
}
