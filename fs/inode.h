/*
 * inode.h - the daemon's table of inodes the kernel knows.
 *
 * omnifs uses libfuse's low-level API: the kernel names files by inode
 * number, the backends by workspace-relative path. This table maps one to
 * the other. Each node has a parent and a name (so a path is built by
 * walking up to the root), the kernel's lookup count, and a generation.
 *
 * A node whose name was unlinked or renamed over stays in the ino index
 * until the kernel forgets it, but leaves the name index: it has no path
 * any more ("detached"), and only operations on open handles reach it.
 *
 * Two kinds of table share this code. For a remote backend (e2b, behind
 * the cache) a node is a path: each node has exactly one name and paths
 * are built from the names. For a host backend (local, docker: the
 * backend has OMNI_CAP_NODES) a node is the backing file: it is found by
 * the file's (st_dev, st_ino) and has as many names as the kernel looked
 * it up by (hard links are one node). A directory holds an O_PATH
 * descriptor of itself for good (every lookup starts from one); any other
 * node holds one only while a request pins it or a file of it is open,
 * and is found again by its names beneath its parents' descriptors, the
 * (st_dev, st_ino) checked (so the kernel may know 100 000 files with the
 * daemon holding a few descriptors).
 * Names are kept in both kinds for invalidation ((parent, name) pairs).
 *
 * Locking: one mutex guards both indexes and every node's links. Paths are
 * copied out under it; nothing calls the backend or the kernel with it
 * held (a notification sent while holding it could deadlock against a
 * FUSE request that waits for it).
 */
#ifndef OMNIFS_INODE_H
#define OMNIFS_INODE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <fuse_lowlevel.h>

#include "omni/vfs.h"

struct omnifs_inodes;

int omnifs_inodes_new(struct omnifs_inodes **out);
void omnifs_inodes_free(struct omnifs_inodes *t);

/*
 * The workspace-relative path of ino ("" for the root) into out.
 * -ESTALE for an unknown or detached node, -ENAMETOOLONG.
 */
int omnifs_inode_path(struct omnifs_inodes *t, fuse_ino_t ino, char *out,
                      size_t size);

/* The path of name inside directory parent. */
int omnifs_inode_child_path(struct omnifs_inodes *t, fuse_ino_t parent,
                            const char *name, char *out, size_t size);

/*
 * Record that the kernel looked up name in parent (one more reference):
 * finds or makes the node. Returns its ino (0 on -ENOMEM) and generation.
 */
fuse_ino_t omnifs_inode_lookup(struct omnifs_inodes *t, fuse_ino_t parent,
                               const char *name, uint64_t *generation);

/* The kernel dropped nlookup references to ino. */
void omnifs_inode_forget(struct omnifs_inodes *t, fuse_ino_t ino,
                         uint64_t nlookup);

/* name in parent is gone (unlink, rmdir): detach its node, if any. */
void omnifs_inode_remove(struct omnifs_inodes *t, fuse_ino_t parent,
                         const char *name);

/* A rename succeeded: move the node; with exchange, swap the two. */
void omnifs_inode_rename(struct omnifs_inodes *t, fuse_ino_t parent,
                         const char *name, fuse_ino_t newparent,
                         const char *newname, bool exchange);

/* One (parent, name) pair the kernel may have cached, for invalidation
 * (a node with several names gives one per name). */
struct omnifs_inode_ref {
	fuse_ino_t ino;
	fuse_ino_t parent; /* 0 for the root and detached nodes */
	char *name;
};

/* Copy every node's ino and (parent, name). Free with _refs_free(). */
int omnifs_inode_snapshot(struct omnifs_inodes *t,
                          struct omnifs_inode_ref **out, size_t *count);
void omnifs_inode_refs_free(struct omnifs_inode_ref *refs, size_t count);

/*
 * An open file as the kernel holds it (fi->fh). Each node keeps a list of
 * its open handles, so a file that was unlinked while open can still be
 * reached (fstat of a detached node). refs starts at 1 for the kernel's
 * reference; omnifs_handle_put() releases the backend file at zero.
 */
struct omnifs_handle {
	struct omni_file *file;
	fuse_ino_t ino;
	atomic_int refs;
	struct omnifs_handle *next;
};

void omnifs_inode_add_handle(struct omnifs_inodes *t, struct omnifs_handle *h);
/* Unlink h from its node (the caller then drops its reference). */
void omnifs_inode_remove_handle(struct omnifs_inodes *t,
                                struct omnifs_handle *h);
/* Some open handle of ino with a reference taken, or NULL. */
struct omnifs_handle *omnifs_inode_get_handle(struct omnifs_inodes *t,
                                              fuse_ino_t ino);
/* Drop a reference; the last one releases the backend file and frees h.
 * Returns the release's error, or 0. */
int omnifs_handle_put(struct omnifs_handle *h);

/* --- host backends: nodes that hold descriptors ----------------------------
 */

/* Make the root a node of the backing root directory of host backend b,
 * holding fd (taken over). Before any request. File nodes are found again
 * through b (omni_vfs_node_lookup). */
void omnifs_inode_set_root(struct omnifs_inodes *t, struct omni_backend *b,
                           int fd, const struct stat *st);

/*
 * Pin ino and give its O_PATH descriptor (valid until omnifs_inode_unpin;
 * the node is not freed meanwhile). -ESTALE for an unknown ino.
 */
int omnifs_inode_pin(struct omnifs_inodes *t, fuse_ino_t ino, int *fd);
void omnifs_inode_unpin(struct omnifs_inodes *t, fuse_ino_t ino);

/*
 * Record that the kernel looked up name in parent and found the backing
 * file st, whose file handle hashes to hid (omnifs_inode_handle_id; 0 on
 * a file system without handles), one more reference. A node of (st_dev,
 * st_ino, hid) that exists is used (*fd is left alone); else a node is
 * made: a file's needs no descriptor, a directory's (and any node's where
 * hid is 0) takes *fd (which becomes -1). -ENOENT when a descriptor is
 * needed and *fd is -1 (the caller opens one and calls again), -ENOMEM.
 */
int omnifs_inode_lookup_node(struct omnifs_inodes *t, fuse_ino_t parent,
                             const char *name, const struct stat *st,
                             uint64_t hid, int *fd, fuse_ino_t *ino);

/* A hash of the file handle of name in dirfd (of dirfd itself for ""),
 * not following a final symlink: with the inode number it tells a file
 * from a later one that got the same number. 0 when the file system has
 * no handles, or the name is gone. */
uint64_t omnifs_inode_handle_id(int dirfd, const char *name);

/* Number of nodes (root included), for statistics. */
size_t omnifs_inode_count(struct omnifs_inodes *t);

/*
 * Find a workspace-relative path among the nodes the kernel knows, for
 * invalidation: *ino gets its node (0 when unknown; the root for "") and
 * *parent the node of its directory (0 when that is unknown too).
 */
void omnifs_inode_find_path(struct omnifs_inodes *t, const char *path,
                            fuse_ino_t *ino, fuse_ino_t *parent);

#endif
