/*
 * backends/core/confined.h - file operations confined beneath a directory
 * (private).
 *
 * The local backend and the docker backend (which works on the host side
 * of its bind mount) share this code. Every path is resolved with
 * openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) from a descriptor of
 * the root, so neither "..", nor an absolute symlink, nor a relative one
 * climbing out can lead an operation outside; such attempts fail with
 * -EACCES. Operations that must not follow a final symlink (lstat, unlink,
 * rename, readlink, utimens, chown) resolve the parent beneath the root and
 * act on the last name with the *at() call and AT_SYMLINK_NOFOLLOW.
 *
 * Paths are workspace-relative and normalised (see omni/vfs.h); "" is the
 * root. All functions return 0 (or a count) or -errno with a message.
 */
#ifndef OMNI_CONFINED_H
#define OMNI_CONFINED_H

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include "omni/sys/backend_impl.h"

struct omni__confined {
	int root_fd;     /* O_PATH | O_DIRECTORY descriptor of the root */
	char *root_path; /* the host path of the root, for messages */
};

/* Create root (and its parents) if missing and open it. */
int omni__confined_open(struct omni__confined *c, const char *root_path);
void omni__confined_close(struct omni__confined *c);

/* openat2 beneath the root; returns a descriptor or -errno. */
int omni__confined_openat(const struct omni__confined *c, const char *path,
                          int flags, mode_t mode);

int omni__confined_stat(const struct omni__confined *c, const char *path,
                        struct stat *st);
int omni__confined_readdir(const struct omni__confined *c, const char *path,
                           omni_dirent_cb cb, void *payload);
int omni__confined_mkdir(const struct omni__confined *c, const char *path,
                         mode_t mode);
int omni__confined_rmdir(const struct omni__confined *c, const char *path);
int omni__confined_unlink(const struct omni__confined *c, const char *path);
int omni__confined_rename(const struct omni__confined *c, const char *from,
                          const char *to, unsigned int flags);
int omni__confined_symlink(const struct omni__confined *c, const char *target,
                           const char *path);
ssize_t omni__confined_readlink(const struct omni__confined *c,
                                const char *path, char *buf, size_t size);
int omni__confined_link(const struct omni__confined *c, const char *from,
                        const char *to);
int omni__confined_chmod(const struct omni__confined *c, const char *path,
                         mode_t mode);
int omni__confined_chown(const struct omni__confined *c, const char *path,
                         uid_t uid, gid_t gid);
int omni__confined_utimens(const struct omni__confined *c, const char *path,
                           const struct timespec ts[2]);
int omni__confined_truncate(const struct omni__confined *c, const char *path,
                            off_t size);
int omni__confined_statfs(const struct omni__confined *c, struct statvfs *st);

/* Open files: a plain descriptor wrapped in an omni_file. */
struct omni__confined_file {
	struct omni_file base;
	int fd;
};

int omni__confined_file_open(const struct omni__confined *c,
                             struct omni_backend *b, const char *path,
                             int flags, mode_t mode, struct omni_file **out);
ssize_t omni__confined_file_read(struct omni_file *f, void *buf, size_t size,
                                 off_t off);
ssize_t omni__confined_file_write(struct omni_file *f, const void *buf,
                                  size_t size, off_t off);
int omni__confined_file_fstat(struct omni_file *f, struct stat *st);
int omni__confined_file_ftruncate(struct omni_file *f, off_t size);
int omni__confined_file_fsync(struct omni_file *f, bool datasync);
int omni__confined_file_flock(struct omni_file *f, int op);
int omni__confined_file_fallocate(struct omni_file *f, int mode, off_t off,
                                  off_t len);
int omni__confined_file_fd(struct omni_file *f);
int omni__confined_file_release(struct omni_file *f);

/*
 * A backend whose workspace is a host directory (local, and docker on the
 * host side of its bind mount) embeds this first, and starts its ops table
 * with OMNI__HOST_BACKEND_OPS: the table's version, the capabilities both
 * have (hard links, a file's descriptor from the host's files, a
 * pseudo-terminal for commands, inodes that are the backing files) and
 * the file slots, which point at the omni__host_* functions
 * (OMNI_HOST_FILE_OPS, which includes the node slots, OMNI_HOST_NODE_OPS),
 * so the two backends share one implementation and list only what
 * differs.
 */
struct omni__host_backend {
	struct omni_backend base;
	struct omni__confined root;
};

int omni__host_stat(struct omni_backend *b, const char *path, struct stat *st);
int omni__host_readdir(struct omni_backend *b, const char *path,
                       omni_dirent_cb cb, void *payload);
int omni__host_mkdir(struct omni_backend *b, const char *path, mode_t mode);
int omni__host_rmdir(struct omni_backend *b, const char *path);
int omni__host_unlink(struct omni_backend *b, const char *path);
int omni__host_rename(struct omni_backend *b, const char *from, const char *to,
                      unsigned int flags);
int omni__host_symlink(struct omni_backend *b, const char *target,
                       const char *path);
ssize_t omni__host_readlink(struct omni_backend *b, const char *path, char *buf,
                            size_t size);
int omni__host_link(struct omni_backend *b, const char *from, const char *to);
int omni__host_chmod(struct omni_backend *b, const char *path, mode_t mode);
int omni__host_chown(struct omni_backend *b, const char *path, uid_t uid,
                     gid_t gid);
int omni__host_utimens(struct omni_backend *b, const char *path,
                       const struct timespec ts[2]);
int omni__host_truncate(struct omni_backend *b, const char *path, off_t size);
int omni__host_statfs(struct omni_backend *b, struct statvfs *st);
int omni__host_open(struct omni_backend *b, const char *path, int flags,
                    mode_t mode, struct omni_file **out);

/*
 * The node slots (ops version 3, omni/vfs.h "nodes"): calls on O_PATH
 * descriptors and single names, for fs/'s inode table. See confined.c.
 */
int omni__host_node_root(struct omni_backend *b);
int omni__host_node_stat(struct omni_backend *b, int dirfd, const char *name,
                         struct stat *st);
int omni__host_node_lookup(struct omni_backend *b, int dirfd, const char *name,
                           struct stat *st);
int omni__host_node_mkdir(struct omni_backend *b, int dirfd, const char *name,
                          mode_t mode);
int omni__host_node_mknod(struct omni_backend *b, int dirfd, const char *name,
                          mode_t mode, dev_t rdev);
int omni__host_node_symlink(struct omni_backend *b, const char *target,
                            int dirfd, const char *name);
int omni__host_node_link(struct omni_backend *b, int fd, int newdirfd,
                         const char *newname);
int omni__host_node_unlink(struct omni_backend *b, int dirfd, const char *name,
                           bool dir);
int omni__host_node_rename(struct omni_backend *b, int dirfd, const char *name,
                           int newdirfd, const char *newname,
                           unsigned int flags);
ssize_t omni__host_node_readlink(struct omni_backend *b, int fd, char *buf,
                                 size_t size);
int omni__host_node_readdir(struct omni_backend *b, int fd, omni_dirent_cb cb,
                            void *payload);
int omni__host_node_chmod(struct omni_backend *b, int fd, mode_t mode);
int omni__host_node_chown(struct omni_backend *b, int fd, uid_t uid, gid_t gid);
int omni__host_node_utimens(struct omni_backend *b, int fd,
                            const struct timespec ts[2]);
int omni__host_node_truncate(struct omni_backend *b, int fd, off_t size);
int omni__host_node_open(struct omni_backend *b, int fd, int flags,
                         struct omni_file **out);
int omni__host_node_create(struct omni_backend *b, int dirfd, const char *name,
                           int flags, mode_t mode, struct omni_file **out);

#define OMNI_HOST_NODE_OPS                                                     \
	.node_root = omni__host_node_root, .node_stat = omni__host_node_stat,  \
	.node_lookup = omni__host_node_lookup,                                 \
	.node_mkdir = omni__host_node_mkdir,                                   \
	.node_mknod = omni__host_node_mknod,                                   \
	.node_symlink = omni__host_node_symlink,                               \
	.node_link = omni__host_node_link,                                     \
	.node_unlink = omni__host_node_unlink,                                 \
	.node_rename = omni__host_node_rename,                                 \
	.node_readlink = omni__host_node_readlink,                             \
	.node_readdir = omni__host_node_readdir,                               \
	.node_chmod = omni__host_node_chmod,                                   \
	.node_chown = omni__host_node_chown,                                   \
	.node_utimens = omni__host_node_utimens,                               \
	.node_truncate = omni__host_node_truncate,                             \
	.node_open = omni__host_node_open,                                     \
	.node_create = omni__host_node_create

#define OMNI_HOST_FILE_OPS                                                     \
	.stat = omni__host_stat, .readdir = omni__host_readdir,                \
	.mkdir = omni__host_mkdir, .rmdir = omni__host_rmdir,                  \
	.unlink = omni__host_unlink, .rename = omni__host_rename,              \
	.symlink = omni__host_symlink, .readlink = omni__host_readlink,        \
	.link = omni__host_link, .chmod = omni__host_chmod,                    \
	.chown = omni__host_chown, .utimens = omni__host_utimens,              \
	.truncate = omni__host_truncate, .statfs = omni__host_statfs,          \
	.open = omni__host_open, .read = omni__confined_file_read,             \
	.write = omni__confined_file_write,                                    \
	.fstat = omni__confined_file_fstat,                                    \
	.ftruncate = omni__confined_file_ftruncate,                            \
	.fsync = omni__confined_file_fsync,                                    \
	.flock = omni__confined_file_flock,                                    \
	.fallocate = omni__confined_file_fallocate,                            \
	.file_fd = omni__confined_file_fd,                                     \
	.release = omni__confined_file_release, OMNI_HOST_NODE_OPS

#define OMNI__HOST_BACKEND_OPS                                                 \
	.version = OMNI_BACKEND_OPS_VERSION,                                   \
	.caps = OMNI_CAP_HARDLINKS | OMNI_CAP_FILE_FD | OMNI_CAP_TTY |         \
	        OMNI_CAP_NODES,                                                \
	OMNI_HOST_FILE_OPS

#endif
