/*
 * ops_node.c - the FUSE operations of a node table: host backends (local,
 * docker), where an inode is the backing file itself (inode.h).
 *
 * Why handle slots in the backend's ops table (version 3, omni/vfs.h
 * "nodes") rather than an inode layer inside the host backends: the
 * inode table is the FUSE protocol's business (lookup counts, forget,
 * (parent, name) pairs for invalidation after omni-exec) and stays in one
 * place for every backend, while everything that touches the workspace
 * (one-name checks, openat2 beneath a directory, no symlink followed)
 * stays in the library next to the path-based confinement it replaces
 * (backends/core/confined.c), shared by local and docker. The e2b path
 * table and the cache decorator are untouched.
 *
 * Every operation pins the nodes it names (omnifs_inode_pin), so their
 * descriptors stay open for the call, and names one file as (directory
 * descriptor, one name) or by its own descriptor: never a path resolved
 * again from the root. Hence hard links are one inode, fchmod and friends
 * reach the open file after a rename behind its back, and a rename or
 * symlink swap in the sandbox cannot lead a call out of the workspace.
 *
 * Ownership: when the daemon is root, a node is made as the caller (its
 * fsuid, fsgid and supplementary groups, set on this request thread only,
 * as bindfs does), so under -o allow_other another user's files are that
 * user's. The kernel has applied the caller's umask to the mode already:
 * request threads get their own umask of 0 (unshare(CLONE_FS)), so the
 * daemon's does not mask it twice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "omni/vfs.h"
#include "ops.h"

#define MAX_GROUPS 256

/* --- making nodes as the caller --------------------------------------------
 */

struct caller {
	bool switched;
};

/* setgroups(2) for this thread only (glibc's wrapper sets every thread). */
static int thread_setgroups(size_t n, const gid_t *groups)
{
	return (int)syscall(SYS_setgroups, n, groups);
}

/* This thread's own supplementary groups, put back after each call. */
static __thread gid_t own_groups[MAX_GROUPS];
static __thread int own_ngroups = -1;

static void as_caller(fuse_req_t req, struct caller *c)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[MAX_GROUPS];
	int n;

	c->switched = false;
	if (own_ngroups < 0) {
		/* First use on this thread: its own umask of 0. */
		if (unshare(CLONE_FS) == 0)
			umask(0);
		own_ngroups = getgroups(MAX_GROUPS, own_groups);
		if (own_ngroups < 0)
			own_ngroups = 0;
	}
	if (geteuid() != 0 || (ctx->uid == 0 && ctx->gid == getegid()))
		return;
	n = fuse_req_getgroups(req, MAX_GROUPS, groups);
	if (n > MAX_GROUPS)
		n = MAX_GROUPS;
	if (n >= 0 && thread_setgroups((size_t)n, groups) < 0)
		return;
	setfsgid(ctx->gid);
	setfsuid(ctx->uid);
	c->switched = true;
}

static void end_caller(struct caller *c)
{
	if (!c->switched)
		return;
	setfsuid(0);
	setfsgid(getegid());
	thread_setgroups((size_t)own_ngroups, own_groups);
}

/* --- entries ----------------------------------------------------------------
 */

int omni__fs_node_entry(struct omnifs *fs, fuse_ino_t parent, int dirfd,
                        const char *name, const struct stat *st,
                        struct fuse_entry_param *e)
{
	int fd = -1, rc;

	memset(e, 0, sizeof(*e));
	/* The handle first: a name swapped between the two calls gives a
	 * node that matches no file (never one file taken for another). */
	uint64_t hid = omnifs_inode_handle_id(dirfd, name);
	if (st)
		e->attr = *st;
	else if ((rc = omni_vfs_node_stat(fs->backend, dirfd, name, &e->attr)) <
	         0)
		return rc;
	rc = omnifs_inode_lookup_node(fs->inodes, parent, name, &e->attr, hid,
	                              &fd, &e->ino);
	if (rc == -ENOENT) {
		/* A node that needs a descriptor: its own, whose attributes
		 * and handle are then the ones that count. */
		fd = omni_vfs_node_lookup(fs->backend, dirfd, name, &e->attr);
		if (fd < 0)
			return fd;
		hid = omnifs_inode_handle_id(fd, "");
		rc = omnifs_inode_lookup_node(fs->inodes, parent, name,
		                              &e->attr, hid, &fd, &e->ino);
		if (fd >= 0)
			close(fd); /* another request made the node first */
	}
	if (rc < 0)
		return rc;
	e->generation = 1;
	e->attr_timeout = omni__fs_attr_ttl(fs, &e->attr);
	e->entry_timeout = omni__fs_entry_ttl(fs);
	return 0;
}

/* Pin ino for this call: its descriptor, or -ESTALE turned into ENOENT. */
static int pin(struct omnifs *fs, fuse_ino_t ino, int *fd)
{
	int rc = omnifs_inode_pin(fs->inodes, ino, fd);

	return rc == -ESTALE ? -ENOENT : rc;
}

void omni__fs_node_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct omnifs *fs = omni__fs_of(req);
	struct fuse_entry_param e;
	int dirfd, rc;

	omni__fs_count(fs, OMNIFS_OP_LOOKUP);
	if ((rc = pin(fs, parent, &dirfd)) < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	rc = omni__fs_node_entry(fs, parent, dirfd, name, NULL, &e);
	omnifs_inode_unpin(fs->inodes, parent);
	if (rc == -ENOENT && omni__fs_negative_ttl(fs) > 0) {
		/* A negative entry: the kernel remembers the name is free. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = omni__fs_negative_ttl(fs);
		fuse_reply_entry(req, &e);
	} else if (rc < 0) {
		omni__fs_reply_err(req, rc);
	} else {
		omni__fs_reply_entry(fs, req, &e);
	}
}

/* After a call that made name in the pinned directory dirfd: reply with
 * its entry. */
static void reply_made(fuse_req_t req, struct omnifs *fs, fuse_ino_t parent,
                       int dirfd, const char *name, int rc)
{
	struct fuse_entry_param e;

	if (rc == 0)
		rc = omni__fs_node_entry(fs, parent, dirfd, name, NULL, &e);
	omnifs_inode_unpin(fs->inodes, parent);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
	else
		omni__fs_reply_entry(fs, req, &e);
}

/* --- attributes -------------------------------------------------------------
 */

int omni__fs_node_getattr(struct omnifs *fs, fuse_ino_t ino,
                          struct fuse_file_info *fi, struct stat *st)
{
	int fd, rc;

	if (fi && fi->fh)
		return omni_vfs_fstat(omni__fs_file_of(fi), st);
	if ((rc = pin(fs, ino, &fd)) < 0)
		return rc;
	rc = omni_vfs_node_stat(fs->backend, fd, "", st);
	omnifs_inode_unpin(fs->inodes, ino);
	return rc;
}

static int sys(int rc)
{
	return rc < 0 ? -errno : 0;
}

void omni__fs_setattr_times(const struct stat *attr, int to_set,
                            struct timespec ts[2])
{
	ts[0].tv_nsec = ts[1].tv_nsec = UTIME_OMIT;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		ts[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		ts[0] = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		ts[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		ts[1] = attr->st_mtim;
}

/* Apply a setattr: through the open file ofd when there is one (fchmod,
 * fchown, futimens, ftruncate act on the open file), else on the node. */
static int apply_setattr(fuse_req_t req, int fd, int ofd,
                         struct fuse_file_info *fi, const struct stat *attr,
                         int to_set)
{
	struct omni_backend *b = omni__fs_of(req)->backend;
	struct caller c;
	int rc = 0;

	/* chown(2) with both ids -1 changes the ctime alone: the kernel
	 * sends it as a setattr of nothing (or of the ctime only). */
	if (!(to_set & ~FUSE_SET_ATTR_CTIME))
		return ofd >= 0
		           ? sys(fchown(ofd, (uid_t)-1, (gid_t)-1))
		           : omni_vfs_node_chown(b, fd, (uid_t)-1, (gid_t)-1);
	if (to_set & FUSE_SET_ATTR_MODE)
		rc = ofd >= 0 ? sys(fchmod(ofd, attr->st_mode))
		              : omni_vfs_node_chmod(b, fd, attr->st_mode);
	if (rc == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid =
		    (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid =
		    (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		rc = ofd >= 0 ? sys(fchown(ofd, uid, gid))
		              : omni_vfs_node_chown(b, fd, uid, gid);
	}
	/* The truncation as the caller, so that the host clears setuid and
	 * setgid bits as it would for that caller (the kernel's own rule,
	 * in the mode it sends, keeps a setgid bit without group execute).
	 * The mode, owner and times are the daemon's: the kernel checked
	 * them, or computed the mode itself to clear those bits. */
	if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
		as_caller(req, &c);
		rc = ofd >= 0 ? omni_vfs_ftruncate(omni__fs_file_of(fi),
		                                   attr->st_size)
		              : omni_vfs_node_truncate(b, fd, attr->st_size);
		end_caller(&c);
	}
	if (rc == 0 &&
	    (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	               FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))) {
		struct timespec ts[2];
		omni__fs_setattr_times(attr, to_set, ts);
		rc = ofd >= 0 ? sys(futimens(ofd, ts))
		              : omni_vfs_node_utimens(b, fd, ts);
	}
	return rc;
}

void omni__fs_node_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                           int to_set, struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);
	int ofd = -1, fd, rc;
	struct stat st;

	omni__fs_count(fs, OMNIFS_OP_SETATTR);
	if ((rc = pin(fs, ino, &fd)) < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	if (fi && fi->fh)
		ofd = omni_vfs_file_fd(omni__fs_file_of(fi));
	rc = apply_setattr(req, fd, ofd >= 0 ? ofd : -1, fi, attr, to_set);
	if (rc == 0)
		rc = omni_vfs_node_stat(fs->backend, fd, "", &st);
	omnifs_inode_unpin(fs->inodes, ino);
	if (rc < 0)
		omni__fs_reply_err(req, rc);
	else
		fuse_reply_attr(req, &st, omni__fs_attr_ttl(fs, &st));
}

void omni__fs_node_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct omnifs *fs = omni__fs_of(req);
	char target[PATH_MAX];
	ssize_t n;
	int fd;

	omni__fs_count(fs, OMNIFS_OP_READLINK);
	if ((n = pin(fs, ino, &fd)) < 0) {
		omni__fs_reply_err(req, (int)n);
		return;
	}
	n = omni_vfs_node_readlink(fs->backend, fd, target, sizeof(target));
	omnifs_inode_unpin(fs->inodes, ino);
	if (n < 0)
		omni__fs_reply_err(req, (int)n);
	else if ((size_t)n >= sizeof(target))
		omni__fs_reply_err(req, -ENAMETOOLONG);
	else
		fuse_reply_readlink(req, target);
}

/* --- names ------------------------------------------------------------------
 */

void omni__fs_node_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                         mode_t mode, dev_t rdev)
{
	struct omnifs *fs = omni__fs_of(req);
	struct caller c;
	int dirfd, rc;

	omni__fs_count(fs, OMNIFS_OP_MKNOD);
	if ((rc = pin(fs, parent, &dirfd)) < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	as_caller(req, &c);
	rc = omni_vfs_node_mknod(fs->backend, dirfd, name, mode, rdev);
	end_caller(&c);
	reply_made(req, fs, parent, dirfd, name, rc);
}

void omni__fs_node_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                         mode_t mode)
{
	struct omnifs *fs = omni__fs_of(req);
	struct caller c;
	int dirfd, rc;

	omni__fs_count(fs, OMNIFS_OP_MKDIR);
	if ((rc = pin(fs, parent, &dirfd)) < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	as_caller(req, &c);
	rc = omni_vfs_node_mkdir(fs->backend, dirfd, name, mode & 07777);
	end_caller(&c);
	reply_made(req, fs, parent, dirfd, name, rc);
}

void omni__fs_node_symlink(fuse_req_t req, const char *target,
                           fuse_ino_t parent, const char *name)
{
	struct omnifs *fs = omni__fs_of(req);
	struct caller c;
	int dirfd, rc;

	omni__fs_count(fs, OMNIFS_OP_SYMLINK);
	if ((rc = pin(fs, parent, &dirfd)) < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	as_caller(req, &c);
	rc = omni_vfs_node_symlink(fs->backend, target, dirfd, name);
	end_caller(&c);
	reply_made(req, fs, parent, dirfd, name, rc);
}

void omni__fs_node_remove(fuse_req_t req, fuse_ino_t parent, const char *name,
                          bool dir)
{
	struct omnifs *fs = omni__fs_of(req);
	int dirfd, rc;

	omni__fs_count(fs, dir ? OMNIFS_OP_RMDIR : OMNIFS_OP_UNLINK);
	if ((rc = pin(fs, parent, &dirfd)) == 0) {
		rc = omni_vfs_node_unlink(fs->backend, dirfd, name, dir);
		omnifs_inode_unpin(fs->inodes, parent);
	}
	if (rc == 0)
		omnifs_inode_remove(fs->inodes, parent, name);
	omni__fs_reply_err(req, rc);
}

void omni__fs_node_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                          fuse_ino_t newparent, const char *newname,
                          unsigned int flags)
{
	struct omnifs *fs = omni__fs_of(req);
	int from, to, rc;

	omni__fs_count(fs, OMNIFS_OP_RENAME);
	if ((rc = pin(fs, parent, &from)) < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	if ((rc = pin(fs, newparent, &to)) == 0) {
		rc = omni_vfs_node_rename(fs->backend, from, name, to, newname,
		                          flags);
		omnifs_inode_unpin(fs->inodes, newparent);
	}
	omnifs_inode_unpin(fs->inodes, parent);
	if (rc == 0)
		omnifs_inode_rename(fs->inodes, parent, name, newparent,
		                    newname, (flags & RENAME_EXCHANGE) != 0);
	omni__fs_reply_err(req, rc);
}

void omni__fs_node_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                        const char *newname)
{
	struct omnifs *fs = omni__fs_of(req);
	int fd, dirfd, rc;

	omni__fs_count(fs, OMNIFS_OP_LINK);
	if ((rc = pin(fs, ino, &fd)) < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	if ((rc = pin(fs, newparent, &dirfd)) < 0) {
		omnifs_inode_unpin(fs->inodes, ino);
		omni__fs_reply_err(req, rc);
		return;
	}
	rc = omni_vfs_node_link(fs->backend, fd, dirfd, newname);
	omnifs_inode_unpin(fs->inodes, ino);
	reply_made(req, fs, newparent, dirfd, newname, rc);
}

/* --- files ------------------------------------------------------------------
 */

void omni__fs_node_open(fuse_req_t req, fuse_ino_t ino,
                        struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);
	struct omni_file *f = NULL;
	struct caller c;
	struct stat st;
	int fd, rc;

	omni__fs_count(fs, OMNIFS_OP_OPEN);
	if ((rc = pin(fs, ino, &fd)) < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	/* O_TRUNC as the caller: the host clears setuid and setgid bits as
	 * it would for that caller (see omni__fs_node_write). */
	if (fi->flags & O_TRUNC)
		as_caller(req, &c);
	else
		c.switched = false;
	rc = omni_vfs_node_open(fs->backend, fd, fi->flags & OMNIFS_OPEN_FLAGS,
	                        &f);
	end_caller(&c);
	omnifs_inode_unpin(fs->inodes, ino);
	if (rc == 0 && (rc = omni_vfs_fstat(f, &st)) < 0)
		omni_vfs_release(f);
	if (rc == 0)
		rc = omni__fs_attach_file(fs, ino, f, &st, fi);
	if (rc < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	if (fuse_reply_open(req, fi) != 0)
		omni__fs_detach_file(fs, fi);
}

ssize_t omni__fs_node_write(fuse_req_t req, struct omni_file *f,
                            const char *buf, size_t size, off_t off)
{
	struct caller c;
	ssize_t n;

	as_caller(req, &c);
	n = omni_vfs_write(f, buf, size, off);
	end_caller(&c);
	return n;
}

/* The node of a file just created as f in parent, entry in e: the
 * attributes and handle of the open file, the very inode made, whatever
 * happened to the name since (a file node needs no descriptor of its own
 * where the file system has handles). */
static int created_entry(struct omnifs *fs, fuse_ino_t parent, const char *name,
                         struct omni_file *f, struct fuse_entry_param *e)
{
	int fd = -1, rc;

	memset(e, 0, sizeof(*e));
	uint64_t hid = omnifs_inode_handle_id(omni_vfs_file_fd(f), "");
	if (hid)
		rc = omni_vfs_fstat(f, &e->attr);
	else
		rc = fd = omni_vfs_node_lookup(fs->backend, omni_vfs_file_fd(f),
		                               "", &e->attr);
	if (rc < 0)
		return rc;
	rc = omnifs_inode_lookup_node(fs->inodes, parent, name, &e->attr, hid,
	                              &fd, &e->ino);
	if (fd >= 0)
		close(fd);
	e->generation = 1;
	e->attr_timeout = omni__fs_attr_ttl(fs, &e->attr);
	e->entry_timeout = omni__fs_entry_ttl(fs);
	return rc;
}

void omni__fs_node_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                          mode_t mode, struct fuse_file_info *fi)
{
	struct omnifs *fs = omni__fs_of(req);
	struct fuse_entry_param e;
	struct omni_file *f = NULL;
	struct caller c;
	int dirfd, rc;

	omni__fs_count(fs, OMNIFS_OP_CREATE);
	if ((rc = pin(fs, parent, &dirfd)) < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	as_caller(req, &c);
	rc = omni_vfs_node_create(fs->backend, dirfd, name,
	                          fi->flags & (OMNIFS_OPEN_FLAGS | O_EXCL),
	                          mode & 07777, &f);
	end_caller(&c);
	omnifs_inode_unpin(fs->inodes, parent);
	if (rc == 0 && (rc = created_entry(fs, parent, name, f, &e)) < 0)
		omni_vfs_release(f);
	if (rc == 0 &&
	    (rc = omni__fs_attach_file(fs, e.ino, f, &e.attr, fi)) < 0)
		omnifs_inode_forget(fs->inodes, e.ino, 1);
	if (rc < 0) {
		omni__fs_reply_err(req, rc);
		return;
	}
	if (fuse_reply_create(req, &e, fi) != 0) {
		omni__fs_detach_file(fs, fi);
		omnifs_inode_forget(fs->inodes, e.ino, 1);
	}
}
