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

struct omni_confined {
	int root_fd;     /* O_PATH | O_DIRECTORY descriptor of the root */
	char *root_path; /* the host path of the root, for messages */
};

/* Create root (and its parents) if missing and open it. */
int omni_confined_open(struct omni_confined *c, const char *root_path);
void omni_confined_close(struct omni_confined *c);

/* openat2 beneath the root; returns a descriptor or -errno. */
int omni_confined_openat(const struct omni_confined *c, const char *path,
                         int flags, mode_t mode);

int omni_confined_stat(const struct omni_confined *c, const char *path,
                       struct stat *st);
int omni_confined_readdir(const struct omni_confined *c, const char *path,
                          omni_dirent_cb cb, void *payload);
int omni_confined_mkdir(const struct omni_confined *c, const char *path,
                        mode_t mode);
int omni_confined_rmdir(const struct omni_confined *c, const char *path);
int omni_confined_unlink(const struct omni_confined *c, const char *path);
int omni_confined_rename(const struct omni_confined *c, const char *from,
                         const char *to, unsigned int flags);
int omni_confined_symlink(const struct omni_confined *c, const char *target,
                          const char *path);
ssize_t omni_confined_readlink(const struct omni_confined *c, const char *path,
                               char *buf, size_t size);
int omni_confined_link(const struct omni_confined *c, const char *from,
                       const char *to);
int omni_confined_chmod(const struct omni_confined *c, const char *path,
                        mode_t mode);
int omni_confined_chown(const struct omni_confined *c, const char *path,
                        uid_t uid, gid_t gid);
int omni_confined_utimens(const struct omni_confined *c, const char *path,
                          const struct timespec ts[2]);
int omni_confined_truncate(const struct omni_confined *c, const char *path,
                           off_t size);
int omni_confined_statfs(const struct omni_confined *c, struct statvfs *st);

/* Open files: a plain descriptor wrapped in an omni_file. */
struct omni_confined_file {
	struct omni_file base;
	int fd;
};

int omni_confined_file_open(const struct omni_confined *c,
                            struct omni_backend *b, const char *path, int flags,
                            mode_t mode, struct omni_file **out);
ssize_t omni_confined_file_read(struct omni_file *f, void *buf, size_t size,
                                off_t off);
ssize_t omni_confined_file_write(struct omni_file *f, const void *buf,
                                 size_t size, off_t off);
int omni_confined_file_fstat(struct omni_file *f, struct stat *st);
int omni_confined_file_ftruncate(struct omni_file *f, off_t size);
int omni_confined_file_fsync(struct omni_file *f, bool datasync);
int omni_confined_file_flock(struct omni_file *f, int op);
int omni_confined_file_fallocate(struct omni_file *f, int mode, off_t off,
                                 off_t len);
int omni_confined_file_fd(struct omni_file *f);
int omni_confined_file_release(struct omni_file *f);

/*
 * A backend whose workspace is a host directory (local, and docker on the
 * host side of its bind mount) embeds this first, and points the file
 * slots of its ops table at the omni_host_* functions with
 * OMNI_HOST_FILE_OPS, so the two backends share one implementation.
 */
struct omni_host_backend {
	struct omni_backend base;
	struct omni_confined root;
};

int omni_host_stat(struct omni_backend *b, const char *path, struct stat *st);
int omni_host_readdir(struct omni_backend *b, const char *path,
                      omni_dirent_cb cb, void *payload);
int omni_host_mkdir(struct omni_backend *b, const char *path, mode_t mode);
int omni_host_rmdir(struct omni_backend *b, const char *path);
int omni_host_unlink(struct omni_backend *b, const char *path);
int omni_host_rename(struct omni_backend *b, const char *from, const char *to,
                     unsigned int flags);
int omni_host_symlink(struct omni_backend *b, const char *target,
                      const char *path);
ssize_t omni_host_readlink(struct omni_backend *b, const char *path, char *buf,
                           size_t size);
int omni_host_link(struct omni_backend *b, const char *from, const char *to);
int omni_host_chmod(struct omni_backend *b, const char *path, mode_t mode);
int omni_host_chown(struct omni_backend *b, const char *path, uid_t uid,
                    gid_t gid);
int omni_host_utimens(struct omni_backend *b, const char *path,
                      const struct timespec ts[2]);
int omni_host_truncate(struct omni_backend *b, const char *path, off_t size);
int omni_host_statfs(struct omni_backend *b, struct statvfs *st);
int omni_host_open(struct omni_backend *b, const char *path, int flags,
                   mode_t mode, struct omni_file **out);

#define OMNI_HOST_FILE_OPS                                                     \
	.stat = omni_host_stat, .readdir = omni_host_readdir,                  \
	.mkdir = omni_host_mkdir, .rmdir = omni_host_rmdir,                    \
	.unlink = omni_host_unlink, .rename = omni_host_rename,                \
	.symlink = omni_host_symlink, .readlink = omni_host_readlink,          \
	.link = omni_host_link, .chmod = omni_host_chmod,                      \
	.chown = omni_host_chown, .utimens = omni_host_utimens,                \
	.truncate = omni_host_truncate, .statfs = omni_host_statfs,            \
	.open = omni_host_open, .read = omni_confined_file_read,               \
	.write = omni_confined_file_write, .fstat = omni_confined_file_fstat,  \
	.ftruncate = omni_confined_file_ftruncate,                             \
	.fsync = omni_confined_file_fsync, .flock = omni_confined_file_flock,  \
	.fallocate = omni_confined_file_fallocate,                             \
	.file_fd = omni_confined_file_fd,                                      \
	.release = omni_confined_file_release

#endif
