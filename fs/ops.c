/*
 * ops.c - the FUSE low-level operations table, the file I/O, and the
 * operations of a path table (remote backends behind the cache).
 *
 * With a path table (e2b) each operation turns the kernel's inode numbers
 * into workspace-relative paths (inode.c), calls one omni_vfs_* function,
 * and hands its 0 or -errno straight back to the kernel. With a node table
 * (local, docker: fs->nodes) the name operations hand over to ops_node.c,
 * which works on the backing files' own descriptors; directories are in
 * ops_dir.c (see ops.h). Nothing is cached here but what the kernel caches
 * on our word: entries and attributes for entry_timeout and attr_timeout,
 * and file pages (keep_cache) until omnifs_invalidate_all() says otherwise
 * after a command ran in the sandbox.
 *
 * Reads of a backend with host descriptors are answered with the
 * descriptor itself, so libfuse can splice file pages to the kernel without
 * copying them through this process.
 *
 * Handles: fi->fh holds a struct omnifs_handle * for files (kept in its
 * node's list, see inode.h) and a struct dir_handle * for directories;
 * both are freed in release.
 *
 * Host mounts (a node table) keep what the kernel caches for long
 * (60 s by default, as libfuse's passthrough_hp does) and use the kernel's
 * writeback cache, because the change watch (watch.c) invalidates exactly
 * what another writer changes: every directory is watched before a name in
 * it is cached (the name operations and opendir below call
 * omnifs_watch_dir). Without a complete watch the timeouts fall back to
 * SHORT_TTL and names are not remembered missing. Under the writeback
 * cache the kernel appends and fills partial pages itself: files are
 * opened read-write and without O_APPEND on the backing side.
 *
 * Hard links: in a path table each name is a node of its own, so a file
 * with several links is never cached by the kernel (attribute timeout 0,
 * no keep_cache); a change through one name is then seen through the
 * others at once. In a node table a file is one node whatever its names,
 * and is cached like any other.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "omni/error.h"
#include "omni/log.h"
#include "omni/vfs.h"
#include "ops.h"

/* Below this many bytes a copy is cheaper than setting up a splice. */
#define SPLICE_MIN (64 * 1024)

struct omnifs *omni__fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

void omni__fs_count(struct omnifs *fs, enum omnifs_op op)
{
	atomic_fetch_add_explicit(&fs->op_count[op], 1, memory_order_relaxed);
}

struct omnifs_handle *omni__fs_handle_of(const struct fuse_file_info *fi)
{
	return (struct omnifs_handle *)(uintptr_t)fi->fh;
}

struct omni_file *omni__fs_file_of(const struct fuse_file_info *fi)
{
	return omni__fs_handle_of(fi)->file;
}

/* The timeouts of a host mount whose change watch is not complete. */
#define SHORT_TTL 1.0

/* A host mount without a complete watch: short timeouts only. */
static bool unwatched(const struct omnifs *fs)
{
	return fs->nodes && !omnifs_watch_exact(fs);
}

/* How long the kernel may keep these attributes. */
double omni__fs_attr_ttl(const struct omnifs *fs, const struct stat *st)
{
	/* A path table has a node per name: a file with other names must
	 * not be cached, or a change through one would not show through
	 * the others. A node table has one node per file. */
	if (!fs->nodes && !S_ISDIR(st->st_mode) && st->st_nlink > 1)
		return 0;
	if (unwatched(fs) && fs->attr_timeout > SHORT_TTL)
		return SHORT_TTL;
	return fs->attr_timeout;
}

double omni__fs_entry_ttl(const struct omnifs *fs)
{
	if (unwatched(fs) && fs->entry_timeout > SHORT_TTL)
		return SHORT_TTL;
	return fs->entry_timeout;
}

double omni__fs_negative_ttl(const struct omnifs *fs)
{
	return unwatched(fs) ? 0 : fs->negative_timeout;
}

/* Names are about to be cached in directory ino (a host mount). */
static void watch_parent(struct omnifs *fs, fuse_ino_t ino)
{
	if (fs->watch)
		omnifs_watch_dir(fs, ino);
}

/* A host descriptor behind an open file, or -1. */
static int host_fd(const struct fuse_file_info *fi)
{
	if (!fi || !fi->fh)
		return -1;
	int fd = omni_vfs_file_fd(omni__fs_file_of(fi));
	return fd >= 0 ? fd : -1;
}

void omni__fs_reply_err(fuse_req_t req, int rc)
{
	fuse_reply_err(req, rc < 0 ? -rc : rc);
}

/* Fill a fuse_entry_param for name in parent after a successful call, and
 * count the lookup the reply will give the kernel. */
int omni__fs_make_entry(struct omnifs *fs, fuse_ino_t parent, const char *name,
                        const struct stat *st, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = omnifs_inode_lookup(fs->inodes, parent, name, &e->generation);
	if (!e->ino)
		return -ENOMEM;
	e->attr = *st;
	e->attr_timeout = omni__fs_attr_ttl(fs, st);
	e->entry_timeout = omni__fs_entry_ttl(fs);
	return 0;
}

/* Reply with an entry; if the kernel did not take it, undo the lookup. */
void omni__fs_reply_entry(struct omnifs *fs, fuse_req_t req,
                          const struct fuse_entry_param *e)
{
	if (fuse_reply_entry(req, e) != 0)
		omnifs_inode_forget(fs->inodes, e->ino, 1);
}

/* --- names ---------------------------------------------------------------- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (omni__fs_of(req)->nodes) {
		watch_parent(omni__fs_of(req), parent);
		omni__fs_node_lookup(req, parent, name);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char path[PATH_MAX];
	struct fuse_entry_param e;
	struct stat st;
	int rc;

	omni__fs_count(fs, OMNIFS_OP_LOOKUP);
	rc = omnifs_inode_child_path(fs->inodes, parent, name, path,
	                             sizeof(path));
	if (rc == 0)
		rc = omni_vfs_stat(fs->backend, path, &st);
	if (rc == -ENOENT && fs->negative_timeout > 0) {
		/* A negative entry: the kernel remembers the name is free. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->negative_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc == 0)
		rc = omni__fs_make_entry(fs, parent, name, &st, &e);
	if (rc < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	omni__fs_reply_entry(fs, req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct omnifs *fs = omni__fs_of(req);

	omni__fs_count(fs, OMNIFS_OP_FORGET);
	omnifs_inode_forget(fs->inodes, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t n,
                            struct fuse_forget_data *forgets)
{
	struct omnifs *fs = omni__fs_of(req);

	omni__fs_count(fs, OMNIFS_OP_FORGET);
	for (size_t i = 0; i < n; i++)
		omnifs_inode_forget(fs->inodes, forgets[i].ino,
		                    forgets[i].nlookup);
	fuse_reply_none(req);
}

/* stat through the open handle when there is one, else by path. */
int omni__fs_getattr_of(struct omnifs *fs, fuse_ino_t ino,
                        struct fuse_file_info *fi, struct stat *st)
{
	char path[PATH_MAX];
	int rc;

	if (fi && fi->fh)
		return omni_vfs_fstat(omni__fs_file_of(fi), st);
	if (fs->nodes)
		return omni__fs_node_getattr(fs, ino, fi, st);
	rc = omnifs_inode_path(fs->inodes, ino, path, sizeof(path));
	if (rc == -ESTALE) {
		/* Unlinked, maybe still open (fstat after unlink). */
		struct omnifs_handle *h =
		    omnifs_inode_get_handle(fs->inodes, ino);
		if (!h)
			return -ENOENT;
		rc = omni_vfs_fstat(h->file, st);
		omnifs_handle_put(h);
		return rc;
	}
	if (rc < 0)
		return rc;
	return omni_vfs_stat(fs->backend, path, st);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);
	struct stat st;
	int rc;

	omni__fs_count(fs, OMNIFS_OP_GETATTR);
	rc = omni__fs_getattr_of(fs, ino, fi, &st);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, omni__fs_attr_ttl(fs, &st));
}

static int setattr_times(struct omnifs *fs, const char *path, int fd,
                         struct stat *attr, int to_set)
{
	struct timespec ts[2];

	omni__fs_setattr_times(attr, to_set, ts);
	if (path)
		return omni_vfs_utimens(fs->backend, path, ts);
	if (fd >= 0)
		return futimens(fd, ts) < 0 ? -errno : 0;
	return -ENOENT;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                       int to_set, struct fuse_file_info *fi)
{
	if (omni__fs_of(req)->nodes) {
		omni__fs_node_setattr(req, ino, attr, to_set, fi);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char pathbuf[PATH_MAX];
	const char *path = pathbuf;
	struct omnifs_handle *h = fi && fi->fh ? omni__fs_handle_of(fi) : NULL;
	struct omnifs_handle *taken = NULL;
	struct stat st;
	int rc, fd;

	omni__fs_count(fs, OMNIFS_OP_SETATTR);
	rc = omnifs_inode_path(fs->inodes, ino, pathbuf, sizeof(pathbuf));
	if (rc == -ESTALE) {
		/* Unlinked while open: only a handle reaches the file. */
		if (!h)
			h = taken = omnifs_inode_get_handle(fs->inodes, ino);
		path = NULL;
		rc = h ? 0 : -ENOENT;
	}
	if (rc < 0)
		goto out;
	fd = h ? omni_vfs_file_fd(h->file) : -1;

	if (to_set & FUSE_SET_ATTR_MODE) {
		if (path)
			rc = omni_vfs_chmod(fs->backend, path, attr->st_mode);
		else
			rc = fd >= 0
			         ? (fchmod(fd, attr->st_mode) < 0 ? -errno : 0)
			         : -ENOENT;
		if (rc < 0)
			goto out;
	}
	if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid =
		    (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid =
		    (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		if (path)
			rc = omni_vfs_chown(fs->backend, path, uid, gid);
		else
			rc = fd >= 0 ? (fchown(fd, uid, gid) < 0 ? -errno : 0)
			             : -ENOENT;
		if (rc < 0)
			goto out;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (h)
			rc = omni_vfs_ftruncate(h->file, attr->st_size);
		else
			rc =
			    omni_vfs_truncate(fs->backend, path, attr->st_size);
		if (rc < 0)
			goto out;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	              FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)) {
		rc = setattr_times(fs, path, fd, attr, to_set);
		if (rc < 0)
			goto out;
	}
	if (h)
		rc = omni_vfs_fstat(h->file, &st);
	else
		rc = omni_vfs_stat(fs->backend, path, &st);
out:
	omnifs_handle_put(taken);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, omni__fs_attr_ttl(fs, &st));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	if (omni__fs_of(req)->nodes) {
		omni__fs_node_readlink(req, ino);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char path[PATH_MAX], target[PATH_MAX];
	ssize_t n;
	int rc;

	omni__fs_count(fs, OMNIFS_OP_READLINK);
	rc = omnifs_inode_path(fs->inodes, ino, path, sizeof(path));
	if (rc < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	n = omni_vfs_readlink(fs->backend, path, target, sizeof(target));
	if (n < 0)
		omni__fs_reply_err(req, (int)n);
	else if ((size_t)n >= sizeof(target))
		omni__fs_reply_err(req, -ENAMETOOLONG);
	else
		fuse_reply_readlink(req, target);
}

/* After a call that made name in parent: stat it and reply an entry. */
static void reply_new_entry(fuse_req_t req, struct omnifs *fs,
                            fuse_ino_t parent, const char *name,
                            const char *path)
{
	struct fuse_entry_param e;
	struct stat st;
	int rc = omni_vfs_stat(fs->backend, path, &st);

	if (rc == 0)
		rc = omni__fs_make_entry(fs, parent, name, &st, &e);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
	else
		omni__fs_reply_entry(fs, req, &e);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode, dev_t rdev)
{
	if (omni__fs_of(req)->nodes) {
		watch_parent(omni__fs_of(req), parent);
		omni__fs_node_mknod(req, parent, name, mode, rdev);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char path[PATH_MAX];
	struct omni_file *f;
	int rc;

	(void)rdev;
	omni__fs_count(fs, OMNIFS_OP_MKNOD);
	if (!S_ISREG(mode)) {
		/* Device nodes, FIFOs and sockets do not travel to every
		 * backend; say so rather than pretend. */
		omni__fs_reply_err(req, -EPERM);
		return;
	}
	rc = omnifs_inode_child_path(fs->inodes, parent, name, path,
	                             sizeof(path));
	if (rc == 0)
		rc = omni_vfs_open(fs->backend, path,
		                   O_WRONLY | O_CREAT | O_EXCL, mode & 07777,
		                   &f);
	if (rc == 0)
		rc = omni_vfs_release(f);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
	else
		reply_new_entry(req, fs, parent, name, path);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode)
{
	if (omni__fs_of(req)->nodes) {
		watch_parent(omni__fs_of(req), parent);
		omni__fs_node_mkdir(req, parent, name, mode);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char path[PATH_MAX];
	int rc;

	omni__fs_count(fs, OMNIFS_OP_MKDIR);
	rc = omnifs_inode_child_path(fs->inodes, parent, name, path,
	                             sizeof(path));
	if (rc == 0)
		rc = omni_vfs_mkdir(fs->backend, path, mode & 07777);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
	else
		reply_new_entry(req, fs, parent, name, path);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name,
                        bool dir)
{
	if (omni__fs_of(req)->nodes) {
		omni__fs_node_remove(req, parent, name, dir);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char path[PATH_MAX];
	int rc;

	omni__fs_count(fs, dir ? OMNIFS_OP_RMDIR : OMNIFS_OP_UNLINK);
	rc = omnifs_inode_child_path(fs->inodes, parent, name, path,
	                             sizeof(path));
	if (rc == 0)
		rc = dir ? omni_vfs_rmdir(fs->backend, path)
		         : omni_vfs_unlink(fs->backend, path);
	if (rc == 0)
		omnifs_inode_remove(fs->inodes, parent, name);
	omni__fs_reply_err(req, rc);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, false);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_name(req, parent, name, true);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent,
                       const char *name)
{
	if (omni__fs_of(req)->nodes) {
		watch_parent(omni__fs_of(req), parent);
		omni__fs_node_symlink(req, target, parent, name);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char path[PATH_MAX];
	int rc;

	omni__fs_count(fs, OMNIFS_OP_SYMLINK);
	rc = omnifs_inode_child_path(fs->inodes, parent, name, path,
	                             sizeof(path));
	if (rc == 0)
		rc = omni_vfs_symlink(fs->backend, target, path);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
	else
		reply_new_entry(req, fs, parent, name, path);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                      fuse_ino_t newparent, const char *newname,
                      unsigned int flags)
{
	if (omni__fs_of(req)->nodes) {
		watch_parent(omni__fs_of(req), newparent);
		omni__fs_node_rename(req, parent, name, newparent, newname,
		                     flags);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char from[PATH_MAX], to[PATH_MAX];
	int rc;

	omni__fs_count(fs, OMNIFS_OP_RENAME);
	rc = omnifs_inode_child_path(fs->inodes, parent, name, from,
	                             sizeof(from));
	if (rc == 0)
		rc = omnifs_inode_child_path(fs->inodes, newparent, newname, to,
		                             sizeof(to));
	if (rc == 0)
		rc = omni_vfs_rename(fs->backend, from, to, flags);
	if (rc == 0)
		omnifs_inode_rename(fs->inodes, parent, name, newparent,
		                    newname, (flags & RENAME_EXCHANGE) != 0);
	omni__fs_reply_err(req, rc);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                    const char *newname)
{
	if (omni__fs_of(req)->nodes) {
		watch_parent(omni__fs_of(req), newparent);
		omni__fs_node_link(req, ino, newparent, newname);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char from[PATH_MAX], to[PATH_MAX];
	int rc;

	omni__fs_count(fs, OMNIFS_OP_LINK);
	rc = omnifs_inode_path(fs->inodes, ino, from, sizeof(from));
	if (rc == 0)
		rc = omnifs_inode_child_path(fs->inodes, newparent, newname, to,
		                             sizeof(to));
	if (rc == 0)
		rc = omni_vfs_link(fs->backend, from, to);
	if (rc < 0)
		omni__fs_reply_err(req, rc == -ESTALE ? -ENOENT : rc);
	else
		reply_new_entry(req, fs, newparent, newname, to);
}

/* --- files ---------------------------------------------------------------- */

static void set_open_flags(struct omnifs *fs, const struct stat *st,
                           struct fuse_file_info *fi)
{
	/* Our pages stay valid until omnifs_invalidate_all() (after a
	 * command) or a change through the mount, which the kernel sees;
	 * not so for a file with other names (see the head comment). */
	fi->keep_cache = fs->nodes || st->st_nlink <= 1;
	/* Files backed by a host descriptor have nothing to flush on close:
	 * spare the kernel that round trip. */
	if (fs->host_files)
		fi->noflush = 1;
}

/* Wrap an open backend file in a handle listed on its node, and set the
 * open flags. Returns -ENOMEM (the file is then released). */
int omni__fs_attach_file(struct omnifs *fs, fuse_ino_t ino, struct omni_file *f,
                         const struct stat *st, struct fuse_file_info *fi)
{
	struct omnifs_handle *h = calloc(1, sizeof(*h));

	if (!h) {
		omni_vfs_release(f);
		return -ENOMEM;
	}
	h->file = f;
	h->ino = ino;
	atomic_init(&h->refs, 1);
	omnifs_inode_add_handle(fs->inodes, h);
	fi->fh = (uint64_t)(uintptr_t)h;
	set_open_flags(fs, st, fi);
	return 0;
}

/* The kernel did not take the handle (interrupted): undo attach_file. */
void omni__fs_detach_file(struct omnifs *fs, struct fuse_file_info *fi)
{
	struct omnifs_handle *h = omni__fs_handle_of(fi);

	omnifs_inode_remove_handle(fs->inodes, h);
	omnifs_handle_put(h);
}

/*
 * Under the writeback cache the kernel writes whole pages, reading what it
 * does not have first, and places appends itself: the backing file must be
 * readable, and must not be O_APPEND (a pwrite there ignores its offset).
 */
static void writeback_flags(const struct omnifs *fs, struct fuse_file_info *fi)
{
	if (!fs->writeback)
		return;
	if ((fi->flags & O_ACCMODE) == O_WRONLY)
		fi->flags = (fi->flags & ~O_ACCMODE) | O_RDWR;
	fi->flags &= ~O_APPEND;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (omni__fs_of(req)->nodes) {
		writeback_flags(omni__fs_of(req), fi);
		omni__fs_node_open(req, ino, fi);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char path[PATH_MAX];
	struct omni_file *f = NULL;
	struct stat st;
	int rc;

	omni__fs_count(fs, OMNIFS_OP_OPEN);
	rc = omnifs_inode_path(fs->inodes, ino, path, sizeof(path));
	if (rc == 0)
		rc = omni_vfs_open(fs->backend, path,
		                   fi->flags & OMNIFS_OPEN_FLAGS, 0, &f);
	if (rc == 0 && (rc = omni_vfs_fstat(f, &st)) < 0)
		omni_vfs_release(f);
	if (rc == 0)
		rc = omni__fs_attach_file(fs, ino, f, &st, fi);
	if (rc < 0) {
		omni__fs_reply_err(req, rc == -ESTALE ? -ENOENT : rc);
		return;
	}
	if (fuse_reply_open(req, fi) != 0)
		omni__fs_detach_file(fs, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                      mode_t mode, struct fuse_file_info *fi)
{
	if (omni__fs_of(req)->nodes) {
		watch_parent(omni__fs_of(req), parent);
		writeback_flags(omni__fs_of(req), fi);
		omni__fs_node_create(req, parent, name, mode, fi);
		return;
	}
	struct omnifs *fs = omni__fs_of(req);
	char path[PATH_MAX];
	struct fuse_entry_param e;
	struct omni_file *f = NULL;
	struct stat st;
	int rc;

	omni__fs_count(fs, OMNIFS_OP_CREATE);
	rc = omnifs_inode_child_path(fs->inodes, parent, name, path,
	                             sizeof(path));
	if (rc == 0)
		rc = omni_vfs_open(fs->backend, path,
		                   (fi->flags & (OMNIFS_OPEN_FLAGS | O_EXCL)) |
		                       O_CREAT,
		                   mode & 07777, &f);
	if (rc == 0)
		rc = omni_vfs_fstat(f, &st);
	if (rc == 0)
		rc = omni__fs_make_entry(fs, parent, name, &st, &e);
	if (rc < 0) {
		if (f)
			omni_vfs_release(f);
		omni__fs_reply_err(req, rc);
		return;
	}
	if ((rc = omni__fs_attach_file(fs, e.ino, f, &st, fi)) < 0) {
		omnifs_inode_forget(fs->inodes, e.ino, 1);
		omni__fs_reply_err(req, rc);
		return;
	}
	if (fuse_reply_create(req, &e, fi) != 0) {
		omni__fs_detach_file(fs, fi);
		omnifs_inode_forget(fs->inodes, e.ino, 1);
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);
	int fd = host_fd(fi);

	(void)ino;
	omni__fs_count(fs, OMNIFS_OP_READ);
	if (fd >= 0 && size > SPLICE_MIN) {
		/* Let libfuse move the pages with splice where it can. */
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		bv.buf[0].fd = fd;
		bv.buf[0].pos = off;
		fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
		return;
	}
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		omni__fs_reply_err(req, -ENOMEM);
		return;
	}
	ssize_t n;
	if (fd >= 0) {
		do {
			n = pread(fd, buf, size, off);
		} while (n < 0 && errno == EINTR);
		if (n < 0)
			n = -errno;
	} else {
		n = omni_vfs_read(omni__fs_file_of(fi), buf, size, off);
	}
	if (n < 0)
		omni__fs_reply_err(req, (int)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
                     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);

	(void)ino;
	omni__fs_count(fs, OMNIFS_OP_WRITE);
	struct omni_file *f = omni__fs_file_of(fi);
	ssize_t n = fs->nodes ? omni__fs_node_write(req, f, buf, size, off)
	                      : omni_vfs_write(f, buf, size, off);
	if (n < 0)
		omni__fs_reply_err(req, (int)n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);

	(void)ino;
	omni__fs_count(fs, OMNIFS_OP_FLUSH);
	omni__fs_reply_err(req, omni_vfs_flush(omni__fs_file_of(fi)));
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);

	(void)ino;
	omni__fs_count(fs, OMNIFS_OP_RELEASE);
	struct omnifs_handle *h = omni__fs_handle_of(fi);
	omnifs_inode_remove_handle(fs->inodes, h);
	int rc = omnifs_handle_put(h);
	if (rc < 0)
		omni_log(OMNI_LOG_WARN, "release: %s", omni_error_last());
	omni__fs_reply_err(req, rc);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
                     struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);

	(void)ino;
	omni__fs_count(fs, OMNIFS_OP_FSYNC);
	omni__fs_reply_err(req,
	                   omni_vfs_fsync(omni__fs_file_of(fi), datasync != 0));
}

static void op_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
                     int op)
{
	struct omnifs *fs = omni__fs_of(req);

	(void)ino;
	omni__fs_count(fs, OMNIFS_OP_FLOCK);
	omni__fs_reply_err(req, omni_vfs_flock(omni__fs_file_of(fi), op));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
                         off_t length, struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);

	(void)ino;
	omni__fs_count(fs, OMNIFS_OP_FALLOCATE);
	omni__fs_reply_err(req, omni_vfs_fallocate(omni__fs_file_of(fi), mode,
	                                           offset, length));
}

/*
 * access(2) on a mount without default_permissions: the mode bits as the
 * kernel would check them for the caller (root may do anything but run a
 * file that has no execute bit).
 */
static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct omnifs *fs = omni__fs_of(req);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;
	int rc = omni__fs_getattr_of(fs, ino, NULL, &st);

	if (rc < 0 || mask == F_OK) {
		omni__fs_reply_err(req, rc);
		return;
	}
	if (ctx->uid == 0) {
		bool exec_ok = S_ISDIR(st.st_mode) || (st.st_mode & 0111);
		omni__fs_reply_err(req,
		                   (mask & X_OK) && !exec_ok ? -EACCES : 0);
		return;
	}
	mode_t bits = st.st_mode;
	if (ctx->uid == st.st_uid)
		bits >>= 6;
	else if (ctx->gid == st.st_gid)
		bits >>= 3;
	if (((mask & R_OK) && !(bits & 4)) || ((mask & W_OK) && !(bits & 2)) ||
	    ((mask & X_OK) && !(bits & 1)))
		rc = -EACCES;
	omni__fs_reply_err(req, rc);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct omnifs *fs = omni__fs_of(req);
	struct statvfs st;
	int rc;

	(void)ino;
	omni__fs_count(fs, OMNIFS_OP_STATFS);
	rc = omni_vfs_statfs(fs->backend, &st);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
	else
		fuse_reply_statfs(req, &st);
}

/* A host backend: the inode table becomes one of backing files, rooted
 * at the workspace's own descriptor (inode.h). Each node keeps a
 * descriptor open: allow as many as we may. */
static void init_nodes(struct omnifs *fs)
{
	struct rlimit rl;
	struct stat st;
	int fd;

	if (!(omni_vfs_caps(fs->backend) & OMNI_CAP_NODES))
		return;
	fd = omni_vfs_node_root(fs->backend);
	if (fd < 0) {
		omni_log(OMNI_LOG_WARN, "workspace root: %s",
		         omni_error_last());
		return;
	}
	if (omni_vfs_node_stat(fs->backend, fd, "", &st) < 0) {
		close(fd);
		return;
	}
	omnifs_inode_set_root(fs->inodes, fs->backend, fd, &st);
	fs->nodes = true;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	/* Root may raise the hard limit too, up to fs.nr_open: with long
	 * timeouts the kernel holds many nodes. */
	FILE *f = fopen("/proc/sys/fs/nr_open", "re");
	unsigned long nr_open = 0;
	if (f) {
		if (fscanf(f, "%lu", &nr_open) != 1)
			nr_open = 0;
		fclose(f);
	}
	struct rlimit want = { nr_open, nr_open };
	if (nr_open > rl.rlim_max && setrlimit(RLIMIT_NOFILE, &want) == 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A listing is about to be read (readdirplus caches its names). */
static void op_opendir(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
	watch_parent(omni__fs_of(req), ino);
	omni__fs_opendir(req, ino, fi);
}

/* A host mount: the change watch, then the writeback cache where the
 * watch covers other writers (or -o writeback says so). */
static void init_watch(struct omnifs *fs, struct fuse_conn_info *conn)
{
	int rc;

	if (!fs->nodes)
		return;
	if ((rc = omnifs_watch_start(fs)) < 0)
		omni_log(OMNI_LOG_WARN,
		         "no change watch (fanotify: %s): short timeouts",
		         strerror(-rc));
	/* Off unless asked for: the kernel then writes back later as the
	 * daemon, so the host cannot drop setuid and setgid bits for the
	 * writer, and it keeps its own mtime and size (see omnifs(1)). */
	if (fs->writeback_mode > 0) {
		if (conn->capable & FUSE_CAP_WRITEBACK_CACHE) {
			conn->want |= FUSE_CAP_WRITEBACK_CACHE;
			fs->writeback = true;
		}
	}
}

static void op_destroy(void *userdata)
{
	omnifs_watch_stop(userdata);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct omnifs *fs = userdata;

	init_nodes(fs);

	/* Move file pages with splice where possible; 1 MiB requests. */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (conn->capable & FUSE_CAP_SPLICE_MOVE)
		conn->want |= FUSE_CAP_SPLICE_MOVE;
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	if (conn->capable & FUSE_CAP_READDIRPLUS_AUTO)
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	/* Linux 6.2 and later can expire a name without dropping it. */
	if (conn->capable & FUSE_CAP_EXPIRE_ONLY) {
		conn->want |= FUSE_CAP_EXPIRE_ONLY;
		fs->expire_only = true;
	}
	/* Remote backends: no writeback cache (the cache decorator holds
	 * the writes). Host mounts: see init_watch(). */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	init_watch(fs, conn);
	if (!fs->host_files)
		conn->want &= ~FUSE_CAP_FLOCK_LOCKS;
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
}

const struct fuse_lowlevel_ops omnifs_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = omni__fs_readdir,
	.readdirplus = omni__fs_readdirplus,
	.releasedir = omni__fs_releasedir,
	.fsyncdir = omni__fs_fsyncdir,
	.statfs = op_statfs,
	.access = op_access,
	.create = op_create,
	.flock = op_flock,
	.fallocate = op_fallocate,
};
