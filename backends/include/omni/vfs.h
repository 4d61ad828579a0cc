/*
 * omni/vfs.h - POSIX-shaped operations on a backend session.
 *
 * These calls are what the FUSE layer (fs/) and the state managers use.
 * Each is a thin wrapper in backends/backend.c around the backend's ops
 * table (omni/backend_impl.h): it checks that the slot exists (-ENOSYS
 * otherwise) and that the session runs, and forwards.
 *
 * Paths here are already normalised and relative to the workspace root:
 * no leading '/', no "." or ".." components, no empty components; ""
 * names the root itself. omni_vfs_path() turns a user path into one.
 *
 * Every call returns 0 (or a count) or a negative errno, so fs/ can hand
 * the value to the kernel unchanged. Attributes have lstat semantics.
 */
#ifndef OMNI_VFS_H
#define OMNI_VFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <fcntl.h>
#include <time.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct omni_file; /* an open file handle of a backend */
struct omni_exec; /* a running command of a backend */

/* Capability bits of a backend (omni_vfs_caps()). */
#define OMNI_CAP_HARDLINKS (1u << 0) /* link() works */
#define OMNI_CAP_REMOTE    (1u << 1) /* every call is a network round trip */
#define OMNI_CAP_FILE_FD   (1u << 2) /* omni_vfs_file_fd() gives a host fd */
#define OMNI_CAP_WATCH     (1u << 3) /* omni_vfs_watch() reports changes */
#define OMNI_CAP_TTY       (1u << 4) /* commands can get a terminal */
/* unlink also removes a directory, with what it holds: a caller that
 * knows a directory is empty may remove it with one unlink. */
#define OMNI_CAP_REMOVE_DIRS (1u << 5)
/* The omni_vfs_node_* calls work: the workspace is a host directory. */
#define OMNI_CAP_NODES (1u << 6)

unsigned int omni_vfs_caps(struct omni_backend *b);

/*
 * Normalise a user path (absolute under the working directory, or relative
 * to it) into a workspace-relative path in out. Returns -EACCES for a path
 * that leaves the workspace, -ENAMETOOLONG when it does not fit.
 */
int omni_vfs_path(struct omni_backend *b, const char *in, char *out,
                  size_t out_size);

/* The same with an explicit working directory (no backend needed). */
int omni_path_normalize(const char *workdir, const char *in, char *out,
                        size_t out_size);

/* Called once per entry; return non-zero to stop (that value is returned
 * by the readdir). name is the entry's base name. */
typedef int (*omni_dirent_cb)(const char *name, const struct stat *st,
                              void *payload);

int omni_vfs_stat(struct omni_backend *b, const char *path, struct stat *st);
int omni_vfs_readdir(struct omni_backend *b, const char *path,
                     omni_dirent_cb cb, void *payload);
int omni_vfs_mkdir(struct omni_backend *b, const char *path, mode_t mode);
int omni_vfs_rmdir(struct omni_backend *b, const char *path);
int omni_vfs_unlink(struct omni_backend *b, const char *path);
/* flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE (from <linux/fs.h>). */
int omni_vfs_rename(struct omni_backend *b, const char *from, const char *to,
                    unsigned int flags);
int omni_vfs_symlink(struct omni_backend *b, const char *target,
                     const char *path);
/* Returns the target's length; the target is NUL-terminated when it fits
 * (truncated otherwise, like readlink(2) plus a NUL). */
ssize_t omni_vfs_readlink(struct omni_backend *b, const char *path, char *buf,
                          size_t size);
int omni_vfs_link(struct omni_backend *b, const char *from, const char *to);
int omni_vfs_chmod(struct omni_backend *b, const char *path, mode_t mode);
int omni_vfs_chown(struct omni_backend *b, const char *path, uid_t uid,
                   gid_t gid);
/* ts[0] is atime, ts[1] mtime; UTIME_NOW and UTIME_OMIT are honoured. */
int omni_vfs_utimens(struct omni_backend *b, const char *path,
                     const struct timespec ts[2]);
int omni_vfs_truncate(struct omni_backend *b, const char *path, off_t size);
int omni_vfs_statfs(struct omni_backend *b, struct statvfs *st);

/* Files. flags are open(2) flags (O_CREAT, O_EXCL, O_TRUNC, O_APPEND...);
 * mode applies when the file is created. */
int omni_vfs_open(struct omni_backend *b, const char *path, int flags,
                  mode_t mode, struct omni_file **out);
ssize_t omni_vfs_read(struct omni_file *f, void *buf, size_t size, off_t off);
ssize_t omni_vfs_write(struct omni_file *f, const void *buf, size_t size,
                       off_t off);
int omni_vfs_fstat(struct omni_file *f, struct stat *st);
int omni_vfs_ftruncate(struct omni_file *f, off_t size);
/* Called on every close(2) of a descriptor: a chance to report errors. */
int omni_vfs_flush(struct omni_file *f);
int omni_vfs_fsync(struct omni_file *f, bool datasync);
/* flock(2) operation (LOCK_SH, LOCK_EX, LOCK_UN, | LOCK_NB). */
int omni_vfs_flock(struct omni_file *f, int op);
/* fcntl(2) record locks: cmd is F_GETLK, F_SETLK or F_SETLKW. */
int omni_vfs_lock(struct omni_file *f, int cmd, struct flock *lock);
int omni_vfs_fallocate(struct omni_file *f, int mode, off_t off, off_t len);
/* A host descriptor for the open file (for splice), or -ENOSYS. The fd
 * stays owned by the handle. */
int omni_vfs_file_fd(struct omni_file *f);
/* Close and free the handle; returns the last error of a final flush. */
int omni_vfs_release(struct omni_file *f);

/* --- commands ----------------------------------------------------------- */

#define OMNI_EXEC_STDOUT 1
#define OMNI_EXEC_STDERR 2

struct omni_exec_request {
	/* Either argv (NULL-terminated, argv[0] looked up in PATH) or shell
	 * (run with /bin/sh -c). */
	const char *const *argv;
	const char *shell;
	/* Workspace-relative directory (normalised), NULL or "" for the
	 * root. */
	const char *cwd;
	/* Extra "KEY=VALUE" strings, NULL-terminated, or NULL. */
	const char *const *env;
	/* Milliseconds until the process group is killed; 0 = none. */
	unsigned int timeout_ms;
	/* Give the command a pseudo-terminal of rows x cols (stdout and
	 * stderr then both arrive as OMNI_EXEC_STDOUT). */
	bool tty;
	unsigned short rows, cols;
	/* Keep stdin open for omni_vfs_exec_input(); otherwise /dev/null. */
	bool want_stdin;
};

struct omni_exec_status {
	int exit_code; /* the shell-style code: status, 128+N, or 124 */
	int signal;    /* the signal that ended it, or 0 */
	bool timed_out;
};

/* Output callback: stream is OMNI_EXEC_STDOUT or OMNI_EXEC_STDERR. Return
 * non-zero to stop reading (the command is killed). */
typedef int (*omni_output_cb)(int stream, const void *data, size_t len,
                              void *payload);

/*
 * Start a command in its own process group. A command that cannot be
 * started because the program is missing or not executable is not an
 * error here: it ends with exit code 127 or 126 and a message on stderr,
 * as a shell would.
 */
int omni_vfs_exec_start(struct omni_backend *b,
                        const struct omni_exec_request *req,
                        struct omni_exec **out);
/* Pump output into cb until the command ends and its output is drained,
 * then fill *status. Call once, from one thread; the calls below may come
 * from other threads meanwhile. When the command's main process exits,
 * what is left of its process group is killed. */
int omni_vfs_exec_wait(struct omni_exec *e, omni_output_cb cb, void *payload,
                       struct omni_exec_status *status);
/* Send bytes to stdin; len 0 closes it (EOF). */
int omni_vfs_exec_input(struct omni_exec *e, const void *data, size_t len);
/* Send a signal to the command's whole process group. */
int omni_vfs_exec_signal(struct omni_exec *e, int sig);
int omni_vfs_exec_resize(struct omni_exec *e, unsigned short rows,
                         unsigned short cols);
/* Free the handle, killing the process group if it still runs. */
void omni_vfs_exec_free(struct omni_exec *e);

/* --- change notification -------------------------------------------------- */

/* Called from a backend thread with the workspace-relative path that
 * changed ("" when unknown: drop everything; also said when the watch
 * (re)connects). NULL says the watch is lost for now: changes may go
 * unreported until the next "". st, when not NULL, is what the path is
 * now (lstat-like; the backend sends it with creations and changes, not
 * with removals). */
typedef void (*omni_change_cb)(const char *path, const struct stat *st,
                               void *payload);

/* Ask to be told about changes made in the sandbox. -ENOSYS when the
 * backend cannot. */
int omni_vfs_watch(struct omni_backend *b, omni_change_cb cb, void *payload);

/* --- statistics and caches ------------------------------------------------ */

/* The backend's counters as "name value" lines (malloc'd; free() it), or
 * NULL when it keeps none. */
char *omni_vfs_stats(struct omni_backend *b);

/* Drop what the backend caches about path and below ("" for all); 0 when
 * it caches nothing. */
int omni_vfs_invalidate(struct omni_backend *b, const char *path);

/* --- nodes: the backing files' own descriptors (OMNI_CAP_NODES) -----------
 *
 * For a backend whose workspace is a host directory (local, docker), a
 * file can be named by descriptor instead of by path: an O_PATH
 * descriptor of each file (a "node"), and of a directory plus ONE name
 * ("." and ".." and names with '/' are refused with -EINVAL). Nothing is
 * resolved again from the workspace root, nothing follows a symlink, so a
 * file keeps its identity across renames and hard links, and no rename or
 * symlink swap in the sandbox can lead a call outside the workspace.
 * Descriptors returned are the caller's to close; -ENOSYS elsewhere. The
 * descriptors the calls take are ones node_root and node_lookup returned
 * (the journal knows a descriptor's path by its number, from the moment
 * one of them hands that number out).
 */

/* A new O_PATH descriptor of the workspace root. */
int omni_vfs_node_root(struct omni_backend *b);
/* lstat of name in dirfd; name "" for dirfd itself. */
int omni_vfs_node_stat(struct omni_backend *b, int dirfd, const char *name,
                       struct stat *st);
/* A new O_PATH descriptor of name in dirfd (not followed if a symlink),
 * with its attributes; name "" for a new descriptor of dirfd's inode. */
int omni_vfs_node_lookup(struct omni_backend *b, int dirfd, const char *name,
                         struct stat *st);
int omni_vfs_node_mkdir(struct omni_backend *b, int dirfd, const char *name,
                        mode_t mode);
/* Any type mknod(2) makes: regular, FIFO, socket, devices. */
int omni_vfs_node_mknod(struct omni_backend *b, int dirfd, const char *name,
                        mode_t mode, dev_t rdev);
int omni_vfs_node_symlink(struct omni_backend *b, const char *target, int dirfd,
                          const char *name);
/* A new name for the node fd. */
int omni_vfs_node_link(struct omni_backend *b, int fd, int newdirfd,
                       const char *newname);
int omni_vfs_node_unlink(struct omni_backend *b, int dirfd, const char *name,
                         bool dir);
int omni_vfs_node_rename(struct omni_backend *b, int dirfd, const char *name,
                         int newdirfd, const char *newname, unsigned int flags);
ssize_t omni_vfs_node_readlink(struct omni_backend *b, int fd, char *buf,
                               size_t size);
int omni_vfs_node_readdir(struct omni_backend *b, int fd, omni_dirent_cb cb,
                          void *payload);
int omni_vfs_node_chmod(struct omni_backend *b, int fd, mode_t mode);
int omni_vfs_node_chown(struct omni_backend *b, int fd, uid_t uid, gid_t gid);
int omni_vfs_node_utimens(struct omni_backend *b, int fd,
                          const struct timespec ts[2]);
int omni_vfs_node_truncate(struct omni_backend *b, int fd, off_t size);
/* Open the node itself for I/O (O_CREAT, O_EXCL, O_NOFOLLOW ignored). */
int omni_vfs_node_open(struct omni_backend *b, int fd, int flags,
                       struct omni_file **out);
/* Create (or with flags lacking O_EXCL, open) name in dirfd. */
int omni_vfs_node_create(struct omni_backend *b, int dirfd, const char *name,
                         int flags, mode_t mode, struct omni_file **out);

#ifdef __cplusplus
}
#endif

#endif
