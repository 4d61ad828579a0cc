/*
 * ops_notify.c - what the daemon tells the kernel outside any request
 * (invalidation after an omni-exec command or a change in the sandbox),
 * and the counters of `omni-exec --stats` (omnifs.h).
 *
 * Invalidation works on the (parent, name) pairs of the inode table
 * (inode.h), for both kinds of table; it never runs inside a FUSE request.
 * Host mounts also have the change watch (watch.c), which invalidates
 * exactly what other writers change; this file's omnifs_invalidate_all()
 * is the blunt tool (after a command, on a queue overflow).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omni/vfs.h"
#include "ops.h"

/* Is node ino a directory? (A node table; false when unknown.) */
static bool is_dir(struct omnifs *fs, fuse_ino_t ino)
{
	struct stat st;
	int fd, rc;

	if (omnifs_inode_pin(fs->inodes, ino, &fd) < 0)
		return false;
	rc = fstat(fd, &st);
	omnifs_inode_unpin(fs->inodes, ino);
	return rc == 0 && S_ISDIR(st.st_mode);
}

void omnifs_invalidate_all(struct omnifs *fs)
{
	struct omnifs_inode_ref *refs;
	size_t n;

	if (!fs->se || omnifs_inode_snapshot(fs->inodes, &refs, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		if (!refs[i].name) {
			/* The root or a detached node: no name to expire. */
		} else if (fs->expire_only &&
		           !(fs->writeback && !is_dir(fs, refs[i].ino))) {
			/* Expire, do not drop: the next use of the name asks
			 * us again, but a process whose working directory it
			 * is keeps it (a dropped dentry breaks getcwd). Under
			 * the writeback cache a file's name is dropped: the
			 * kernel trusts the size of an inode it keeps, and an
			 * unused one is evicted with its name. */
			fuse_lowlevel_notify_expire_entry(
			    fs->se, refs[i].parent, refs[i].name,
			    strlen(refs[i].name), FUSE_LL_EXPIRE_ONLY);
		} else {
			fuse_lowlevel_notify_inval_entry(fs->se, refs[i].parent,
			                                 refs[i].name,
			                                 strlen(refs[i].name));
		}
		fuse_lowlevel_notify_inval_inode(fs->se, refs[i].ino, 0, 0);
	}
	omnifs_inode_refs_free(refs, n);
	atomic_fetch_add(&fs->invalidations, 1);
}

void omnifs_invalidate_path(struct omnifs *fs, const char *path,
                            const struct stat *st)
{
	fuse_ino_t ino, parent;

	if (!fs->se)
		return;
	if (!path[0]) {
		omnifs_invalidate_all(fs);
		return;
	}
	omnifs_inode_find_path(fs->inodes, path, &ino, &parent);
	/* A directory that is still there keeps its name: dropping that
	 * would also strand processes whose working directory it is. */
	if (parent && !(st && S_ISDIR(st->st_mode) && ino)) {
		const char *name = strrchr(path, '/');
		name = name ? name + 1 : path;
		/* Also drops a negative entry the kernel keeps. */
		fuse_lowlevel_notify_inval_entry(fs->se, parent, name,
		                                 strlen(name));
		fuse_lowlevel_notify_inval_inode(fs->se, parent, 0, 0);
	}
	if (ino)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
	atomic_fetch_add(&fs->invalidations, 1);
}

static const char *const op_names[OMNIFS_OP_COUNT] = {
	[OMNIFS_OP_LOOKUP] = "lookup",   [OMNIFS_OP_GETATTR] = "getattr",
	[OMNIFS_OP_SETATTR] = "setattr", [OMNIFS_OP_READLINK] = "readlink",
	[OMNIFS_OP_MKNOD] = "mknod",     [OMNIFS_OP_MKDIR] = "mkdir",
	[OMNIFS_OP_UNLINK] = "unlink",   [OMNIFS_OP_RMDIR] = "rmdir",
	[OMNIFS_OP_SYMLINK] = "symlink", [OMNIFS_OP_RENAME] = "rename",
	[OMNIFS_OP_LINK] = "link",       [OMNIFS_OP_OPEN] = "open",
	[OMNIFS_OP_READ] = "read",       [OMNIFS_OP_WRITE] = "write",
	[OMNIFS_OP_FLUSH] = "flush",     [OMNIFS_OP_RELEASE] = "release",
	[OMNIFS_OP_FSYNC] = "fsync",     [OMNIFS_OP_OPENDIR] = "opendir",
	[OMNIFS_OP_READDIR] = "readdir", [OMNIFS_OP_RELEASEDIR] = "releasedir",
	[OMNIFS_OP_STATFS] = "statfs",   [OMNIFS_OP_CREATE] = "create",
	[OMNIFS_OP_FLOCK] = "flock",     [OMNIFS_OP_FALLOCATE] = "fallocate",
	[OMNIFS_OP_FORGET] = "forget",
};

char *omnifs_stats_text(struct omnifs *fs)
{
	size_t cap = 4096, len = 0;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	len += (size_t)snprintf(
	    out + len, cap - len,
	    "backend %s\nproject %s\ninodes %zu\ninvalidations %llu\n"
	    "writeback %d\nwatch %s\n",
	    omni_backend_name(fs->backend),
	    omni_backend_project_id(fs->backend),
	    omnifs_inode_count(fs->inodes),
	    (unsigned long long)atomic_load(&fs->invalidations),
	    fs->writeback ? 1 : 0,
	    !fs->nodes               ? "none"
	    : omnifs_watch_exact(fs) ? "exact"
	                             : "short-timeouts");
	for (int i = 0; i < OMNIFS_OP_COUNT && len < cap; i++)
		len += (size_t)snprintf(
		    out + len, cap - len, "fuse.%s %llu\n", op_names[i],
		    (unsigned long long)atomic_load(&fs->op_count[i]));
	/* The backend's own counters (requests by method, cache hits). */
	char *more = omni_vfs_stats(fs->backend);
	if (more && len < cap) {
		char *grown = realloc(out, len + strlen(more) + 1);
		if (grown) {
			out = grown;
			memcpy(out + len, more, strlen(more) + 1);
		}
	}
	free(more);
	return out;
}
