/*
 * ops.h - what the files of the FUSE operations share (fs/ only).
 *
 * ops.c holds the operations table, the file I/O, and the operations of a
 * path table (remote backends, through the cache); ops_node.c those of a
 * node table (host backends: every call on the backing files' own
 * descriptors, see inode.h); ops_dir.c the directory handles of both;
 * ops_notify.c the invalidation and the counters.
 * Each operation in ops.c hands over to ops_node.c when fs->nodes is set.
 */
#ifndef OMNIFS_OPS_H
#define OMNIFS_OPS_H

#include <fcntl.h>
#include <sys/stat.h>

#include "omnifs.h"

/* The open flags a backing open(2) accepts. The kernel hands FUSE its own
 * internal bits too (FMODE_EXEC, 0x20, on the open of an execve), which
 * openat2 rejects with EINVAL: without this mask no program or script on
 * the mount could run. O_CREAT, O_EXCL and O_NOCTTY are the kernel's
 * business (it has resolved the name already) and are dropped too.
 * O_DIRECT too: the kernel does direct I/O on its side of the mount
 * already (no page cache for that open), and the WRITE data it hands us
 * sits at no block boundary in our buffer, so an O_DIRECT backing file
 * would refuse it (EINVAL). */
#define OMNIFS_OPEN_FLAGS                                                      \
	(O_ACCMODE | O_APPEND | O_TRUNC | O_NONBLOCK | O_DSYNC | O_SYNC |      \
	 O_NOATIME | O_LARGEFILE | O_DIRECTORY | O_NOFOLLOW)

struct omnifs *omni__fs_of(fuse_req_t req);
void omni__fs_count(struct omnifs *fs, enum omnifs_op op);
struct omnifs_handle *omni__fs_handle_of(const struct fuse_file_info *fi);
struct omni_file *omni__fs_file_of(const struct fuse_file_info *fi);
/* How long the kernel may keep these attributes. */
double omni__fs_attr_ttl(const struct omnifs *fs, const struct stat *st);
/* How long the kernel may keep a name, and a missing name. */
double omni__fs_entry_ttl(const struct omnifs *fs);
double omni__fs_negative_ttl(const struct omnifs *fs);
void omni__fs_reply_err(fuse_req_t req, int rc);
/* Path table: the entry of name in parent after a successful call, with
 * the lookup the reply gives the kernel counted. */
int omni__fs_make_entry(struct omnifs *fs, fuse_ino_t parent, const char *name,
                        const struct stat *st, struct fuse_entry_param *e);
/* Reply with an entry; if the kernel did not take it, undo the lookup. */
void omni__fs_reply_entry(struct omnifs *fs, fuse_req_t req,
                          const struct fuse_entry_param *e);
/* attributes of ino (through fi's file when given). */
int omni__fs_getattr_of(struct omnifs *fs, fuse_ino_t ino,
                        struct fuse_file_info *fi, struct stat *st);
/* Wrap an open backend file in a handle listed on its node and set the
 * open flags; -ENOMEM (the file is then released). */
int omni__fs_attach_file(struct omnifs *fs, fuse_ino_t ino, struct omni_file *f,
                         const struct stat *st, struct fuse_file_info *fi);
/* The kernel did not take the handle (interrupted): undo attach_file. */
void omni__fs_detach_file(struct omnifs *fs, struct fuse_file_info *fi);

/* --- node tables (ops_node.c) ----------------------------------------------
 * Same contracts as the FUSE operations of the same names. */
void omni__fs_node_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
int omni__fs_node_getattr(struct omnifs *fs, fuse_ino_t ino,
                          struct fuse_file_info *fi, struct stat *st);
void omni__fs_node_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
                           int to_set, struct fuse_file_info *fi);
void omni__fs_node_readlink(fuse_req_t req, fuse_ino_t ino);
void omni__fs_node_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                         mode_t mode, dev_t rdev);
void omni__fs_node_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                         mode_t mode);
void omni__fs_node_remove(fuse_req_t req, fuse_ino_t parent, const char *name,
                          bool dir);
void omni__fs_node_symlink(fuse_req_t req, const char *target,
                           fuse_ino_t parent, const char *name);
void omni__fs_node_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                          fuse_ino_t newparent, const char *newname,
                          unsigned int flags);
void omni__fs_node_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                        const char *newname);
void omni__fs_node_open(fuse_req_t req, fuse_ino_t ino,
                        struct fuse_file_info *fi);
void omni__fs_node_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                          mode_t mode, struct fuse_file_info *fi);
/* A write to a host file, made as the caller: the kernel leaves clearing
 * setuid and setgid bits to us (FUSE_CAP_HANDLE_KILLPRIV), and the host
 * then clears them exactly as it would for that caller. */
ssize_t omni__fs_node_write(fuse_req_t req, struct omni_file *f,
                            const char *buf, size_t size, off_t off);
/* The entry of name in dirfd (the node of parent), with the lookup
 * counted; st when the caller has the name's attributes already. */
int omni__fs_node_entry(struct omnifs *fs, fuse_ino_t parent, int dirfd,
                        const char *name, const struct stat *st,
                        struct fuse_entry_param *e);

/* --- directories (ops_dir.c) -----------------------------------------------
 */
void omni__fs_opendir(fuse_req_t req, fuse_ino_t ino,
                      struct fuse_file_info *fi);
void omni__fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi);
void omni__fs_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
                          off_t off, struct fuse_file_info *fi);
void omni__fs_releasedir(fuse_req_t req, fuse_ino_t ino,
                         struct fuse_file_info *fi);
void omni__fs_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
                       struct fuse_file_info *fi);

/* The times a setattr asks for, into ts (UTIME_OMIT where it asks none,
 * UTIME_NOW for the _NOW flags) (ops_node.c). */
void omni__fs_setattr_times(const struct stat *attr, int to_set,
                            struct timespec ts[2]);

#endif
