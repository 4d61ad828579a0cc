/*
 * backends/core/confined.c - file operations confined beneath a directory
 * (confined.h).
 *
 * Every call resolves through openat2(2) with RESOLVE_BENEATH and
 * RESOLVE_NO_MAGICLINKS from the root descriptor. The kernel then refuses
 * any resolution that would leave the root (EXDEV), including through
 * symlinks made by a command; we report that as -EACCES. No state is
 * shared between calls but the root descriptor, so every function is safe
 * to call from many threads at once.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/confined.h"
#include "omni/error.h"

#define RESOLVE_FLAGS (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)

static int fail(int err, const char *op, const char *path)
{
	if (err == -EXDEV || err == -ELOOP) {
		/* openat2 said the path leads out of the root. ELOOP also
		 * comes from a real symlink loop; both are refusals. */
		if (err == -EXDEV)
			return omni_error_set(
			    -EACCES, "%s: %s: leads outside the workspace", op,
			    path);
	}
	return omni_error_set_errno(err, "%s: %s", op, *path ? path : ".");
}

int omni__confined_openat(const struct omni__confined *c, const char *path,
                          int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (unsigned long long)(flags | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_FLAGS,
	};
	long fd;

	do {
		fd = syscall(SYS_openat2, c->root_fd, *path ? path : ".", &how,
		             sizeof(how));
	} while (fd < 0 && (errno == EINTR || errno == EAGAIN));
	if (fd < 0)
		return -errno;
	return (int)fd;
}

/*
 * Split path into its parent (opened beneath the root) and last name.
 * *pfd is the parent's descriptor; close it with put_parent(). The root
 * itself has no parent: -EBUSY, with *name set to "".
 */
static int get_parent(const struct omni__confined *c, const char *path,
                      int *pfd, const char **name)
{
	const char *slash = strrchr(path, '/');
	char parent[PATH_MAX];

	*pfd = -1;
	*name = path;
	if (!*path)
		return -EBUSY;
	if (!slash) {
		*pfd = c->root_fd;
		return 0;
	}
	size_t n = (size_t)(slash - path);
	if (n >= sizeof(parent))
		return -ENAMETOOLONG;
	memcpy(parent, path, n);
	parent[n] = '\0';
	*name = slash + 1;
	int fd = omni__confined_openat(c, parent, O_PATH | O_DIRECTORY, 0);
	if (fd < 0)
		return fd;
	*pfd = fd;
	return 0;
}

static void put_parent(const struct omni__confined *c, int pfd)
{
	if (pfd >= 0 && pfd != c->root_fd)
		close(pfd);
}

/* The parents of from and to, for an operation op on both (rename,
 * link): 0, or the failure (fail()) with nothing held. */
static int get_parents(const struct omni__confined *c, const char *op,
                       const char *from, const char *to, int pfd[2],
                       const char *name[2])
{
	int rc;

	if ((rc = get_parent(c, from, &pfd[0], &name[0])) < 0)
		return fail(rc, op, from);
	if ((rc = get_parent(c, to, &pfd[1], &name[1])) < 0) {
		put_parent(c, pfd[0]);
		return fail(rc, op, to);
	}
	return 0;
}

/* Release what get_parents() took; rc is the operation's -errno or 0. */
static int put_parents(const struct omni__confined *c, const int pfd[2], int rc,
                       const char *op, const char *from)
{
	put_parent(c, pfd[0]);
	put_parent(c, pfd[1]);
	return rc < 0 ? fail(rc, op, from) : 0;
}

/* mkdir -p with plain *at calls, for creating the root itself (the only
 * place a path is not confined: it is the confinement's own root). */
static int make_root(const char *root_path)
{
	char buf[PATH_MAX];
	size_t len = strlen(root_path);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, root_path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = saved;
	}
	return 0;
}

int omni__confined_open(struct omni__confined *c, const char *root_path)
{
	int rc;

	c->root_fd = -1;
	c->root_path = strdup(root_path);
	if (!c->root_path)
		return omni_error_set(-ENOMEM, "out of memory");
	if ((rc = make_root(root_path)) < 0) {
		omni_error_set_errno(rc, "cannot create workspace %s",
		                     root_path);
		goto fail;
	}
	c->root_fd = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->root_fd < 0) {
		rc = omni_error_set_errno(-errno, "cannot open workspace %s",
		                          root_path);
		goto fail;
	}
	return 0;
fail:
	free(c->root_path);
	c->root_path = NULL;
	return rc;
}

void omni__confined_close(struct omni__confined *c)
{
	if (c->root_fd >= 0)
		close(c->root_fd);
	c->root_fd = -1;
	free(c->root_path);
	c->root_path = NULL;
}

int omni__confined_stat(const struct omni__confined *c, const char *path,
                        struct stat *st)
{
	const char *name;
	int pfd, rc;

	if (!*path) {
		if (fstat(c->root_fd, st) < 0)
			return fail(-errno, "stat", path);
		return 0;
	}
	if ((rc = get_parent(c, path, &pfd, &name)) < 0)
		return fail(rc, "stat", path);
	rc = fstatat(pfd, name, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	put_parent(c, pfd);
	return rc < 0 ? fail(rc, "stat", path) : 0;
}

/* List the open directory fd (taken over and closed), with lstat-like
 * attributes; path names it in messages. */
static int list_dir(int fd, const char *path, omni_dirent_cb cb, void *payload)
{
	struct dirent *de;
	DIR *dir;
	int rc = 0;

	dir = fdopendir(fd);
	if (!dir) {
		rc = -errno;
		close(fd);
		return fail(rc, "readdir", path);
	}
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (!de) {
			if (errno)
				rc = fail(-errno, "readdir", path);
			break;
		}
		if (de->d_name[0] == '.' &&
		    (de->d_name[1] == '\0' ||
		     (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		struct stat st;
		if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) <
		    0) {
			if (errno == ENOENT)
				continue; /* removed while we listed */
			rc = fail(-errno, "readdir", path);
			break;
		}
		rc = cb(de->d_name, &st, payload);
		if (rc != 0)
			break;
	}
	closedir(dir);
	return rc;
}

int omni__confined_readdir(const struct omni__confined *c, const char *path,
                           omni_dirent_cb cb, void *payload)
{
	int fd = omni__confined_openat(c, path, O_RDONLY | O_DIRECTORY, 0);

	if (fd < 0)
		return fail(fd, "readdir", path);
	return list_dir(fd, path, cb, payload);
}

/* The pattern of every "act on the last name" operation. */
#define WITH_PARENT(c, path, opname, expr)                                     \
	do {                                                                   \
		const char *name;                                              \
		int pfd, rc_ = get_parent((c), (path), &pfd, &name);           \
		if (rc_ < 0)                                                   \
			return fail(rc_, (opname), (path));                    \
		rc_ = (expr) < 0 ? -errno : 0;                                 \
		put_parent((c), pfd);                                          \
		return rc_ < 0 ? fail(rc_, (opname), (path)) : 0;              \
	} while (0)

int omni__confined_mkdir(const struct omni__confined *c, const char *path,
                         mode_t mode)
{
	if (!*path)
		return omni_error_set(-EEXIST, "mkdir: the workspace exists");
	WITH_PARENT(c, path, "mkdir", mkdirat(pfd, name, mode));
}

int omni__confined_rmdir(const struct omni__confined *c, const char *path)
{
	WITH_PARENT(c, path, "rmdir", unlinkat(pfd, name, AT_REMOVEDIR));
}

int omni__confined_unlink(const struct omni__confined *c, const char *path)
{
	WITH_PARENT(c, path, "unlink", unlinkat(pfd, name, 0));
}

int omni__confined_rename(const struct omni__confined *c, const char *from,
                          const char *to, unsigned int flags)
{
	const char *name[2];
	int pfd[2], rc;

	if ((rc = get_parents(c, "rename", from, to, pfd, name)) < 0)
		return rc;
	rc =
	    renameat2(pfd[0], name[0], pfd[1], name[1], flags) < 0 ? -errno : 0;
	return put_parents(c, pfd, rc, "rename", from);
}

int omni__confined_symlink(const struct omni__confined *c, const char *target,
                           const char *path)
{
	/* The target is stored, not followed: a link pointing outside may
	 * exist, but no confined operation will ever follow it out. */
	WITH_PARENT(c, path, "symlink", symlinkat(target, pfd, name));
}

ssize_t omni__confined_readlink(const struct omni__confined *c,
                                const char *path, char *buf, size_t size)
{
	const char *name;
	int pfd, rc = get_parent(c, path, &pfd, &name);

	if (rc < 0)
		return fail(rc == -EBUSY ? -EINVAL : rc, "readlink", path);
	ssize_t n = readlinkat(pfd, name, buf, size);
	rc = n < 0 ? -errno : 0;
	put_parent(c, pfd);
	if (rc < 0)
		return fail(rc, "readlink", path);
	if ((size_t)n < size)
		buf[n] = '\0';
	else if (size > 0)
		buf[size - 1] = '\0';
	return n;
}

int omni__confined_link(const struct omni__confined *c, const char *from,
                        const char *to)
{
	const char *name[2];
	int pfd[2], rc;

	if ((rc = get_parents(c, "link", from, to, pfd, name)) < 0)
		return rc;
	rc = linkat(pfd[0], name[0], pfd[1], name[1], 0) < 0 ? -errno : 0;
	return put_parents(c, pfd, rc, "link", from);
}

int omni__confined_chmod(const struct omni__confined *c, const char *path,
                         mode_t mode)
{
	/* chmod follows symlinks; resolve them beneath the root to an O_PATH
	 * descriptor, then change the mode through its /proc entry (fchmod
	 * does not take O_PATH descriptors). */
	char proc[64];
	int fd = omni__confined_openat(c, path, O_PATH, 0), rc;

	if (fd < 0)
		return fail(fd, "chmod", path);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	rc = chmod(proc, mode) < 0 ? -errno : 0;
	close(fd);
	return rc < 0 ? fail(rc, "chmod", path) : 0;
}

int omni__confined_chown(const struct omni__confined *c, const char *path,
                         uid_t uid, gid_t gid)
{
	if (!*path) {
		if (fchownat(c->root_fd, "", uid, gid, AT_EMPTY_PATH) < 0)
			return fail(-errno, "chown", path);
		return 0;
	}
	WITH_PARENT(c, path, "chown",
	            fchownat(pfd, name, uid, gid, AT_SYMLINK_NOFOLLOW));
}

int omni__confined_utimens(const struct omni__confined *c, const char *path,
                           const struct timespec ts[2])
{
	if (!*path) {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", c->root_fd);
		if (utimensat(AT_FDCWD, proc, ts, 0) < 0)
			return fail(-errno, "utimens", path);
		return 0;
	}
	WITH_PARENT(c, path, "utimens",
	            utimensat(pfd, name, ts, AT_SYMLINK_NOFOLLOW));
}

int omni__confined_truncate(const struct omni__confined *c, const char *path,
                            off_t size)
{
	int fd = omni__confined_openat(c, path, O_WRONLY, 0), rc;

	if (fd < 0)
		return fail(fd, "truncate", path);
	rc = ftruncate(fd, size) < 0 ? -errno : 0;
	close(fd);
	return rc < 0 ? fail(rc, "truncate", path) : 0;
}

int omni__confined_statfs(const struct omni__confined *c, struct statvfs *st)
{
	if (fstatvfs(c->root_fd, st) < 0)
		return fail(-errno, "statfs", "");
	return 0;
}

/* --- open files ----------------------------------------------------------- */

static int file_fd_of(struct omni_file *f)
{
	return ((struct omni__confined_file *)f)->fd;
}

int omni__confined_file_open(const struct omni__confined *c,
                             struct omni_backend *b, const char *path,
                             int flags, mode_t mode, struct omni_file **out)
{
	struct omni__confined_file *f = malloc(sizeof(*f));
	int fd;

	*out = NULL;
	if (!f)
		return omni_error_set(-ENOMEM, "open: out of memory");
	fd = omni__confined_openat(c, path, flags & ~O_NOFOLLOW, mode);
	if (fd < 0) {
		free(f);
		return fail(fd, "open", path);
	}
	f->base.backend = b;
	f->fd = fd;
	*out = &f->base;
	return 0;
}

ssize_t omni__confined_file_read(struct omni_file *f, void *buf, size_t size,
                                 off_t off)
{
	ssize_t n;

	do {
		n = pread(file_fd_of(f), buf, size, off);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return omni_error_set_errno(-errno, "read");
	return n;
}

ssize_t omni__confined_file_write(struct omni_file *f, const void *buf,
                                  size_t size, off_t off)
{
	ssize_t n;

	do {
		n = pwrite(file_fd_of(f), buf, size, off);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return omni_error_set_errno(-errno, "write");
	return n;
}

int omni__confined_file_fstat(struct omni_file *f, struct stat *st)
{
	if (fstat(file_fd_of(f), st) < 0)
		return omni_error_set_errno(-errno, "fstat");
	return 0;
}

int omni__confined_file_ftruncate(struct omni_file *f, off_t size)
{
	if (ftruncate(file_fd_of(f), size) < 0)
		return omni_error_set_errno(-errno, "ftruncate");
	return 0;
}

int omni__confined_file_fsync(struct omni_file *f, bool datasync)
{
	int rc = datasync ? fdatasync(file_fd_of(f)) : fsync(file_fd_of(f));

	if (rc < 0)
		return omni_error_set_errno(-errno, "fsync");
	return 0;
}

int omni__confined_file_flock(struct omni_file *f, int op)
{
	if (flock(file_fd_of(f), op) < 0)
		return -errno; /* EWOULDBLOCK is expected, no message */
	return 0;
}

int omni__confined_file_fallocate(struct omni_file *f, int mode, off_t off,
                                  off_t len)
{
	if (fallocate(file_fd_of(f), mode, off, len) < 0)
		return omni_error_set_errno(-errno, "fallocate");
	return 0;
}

int omni__confined_file_fd(struct omni_file *f)
{
	return file_fd_of(f);
}

int omni__confined_file_release(struct omni_file *f)
{
	struct omni__confined_file *cf = (struct omni__confined_file *)f;
	int rc = 0;

	if (cf->fd >= 0 && close(cf->fd) < 0 && errno != EINTR)
		rc = omni_error_set_errno(-errno, "close");
	free(cf);
	return rc;
}

/* --- the file slots of a host-directory backend --------------------------- */

static const struct omni__confined *host_root(struct omni_backend *b)
{
	return &((struct omni__host_backend *)b)->root;
}

int omni__host_stat(struct omni_backend *b, const char *path, struct stat *st)
{
	return omni__confined_stat(host_root(b), path, st);
}

int omni__host_readdir(struct omni_backend *b, const char *path,
                       omni_dirent_cb cb, void *payload)
{
	return omni__confined_readdir(host_root(b), path, cb, payload);
}

int omni__host_mkdir(struct omni_backend *b, const char *path, mode_t mode)
{
	return omni__confined_mkdir(host_root(b), path, mode);
}

int omni__host_rmdir(struct omni_backend *b, const char *path)
{
	return omni__confined_rmdir(host_root(b), path);
}

int omni__host_unlink(struct omni_backend *b, const char *path)
{
	return omni__confined_unlink(host_root(b), path);
}

int omni__host_rename(struct omni_backend *b, const char *from, const char *to,
                      unsigned int flags)
{
	return omni__confined_rename(host_root(b), from, to, flags);
}

int omni__host_symlink(struct omni_backend *b, const char *target,
                       const char *path)
{
	return omni__confined_symlink(host_root(b), target, path);
}

ssize_t omni__host_readlink(struct omni_backend *b, const char *path, char *buf,
                            size_t size)
{
	return omni__confined_readlink(host_root(b), path, buf, size);
}

int omni__host_link(struct omni_backend *b, const char *from, const char *to)
{
	return omni__confined_link(host_root(b), from, to);
}

int omni__host_chmod(struct omni_backend *b, const char *path, mode_t mode)
{
	return omni__confined_chmod(host_root(b), path, mode);
}

int omni__host_chown(struct omni_backend *b, const char *path, uid_t uid,
                     gid_t gid)
{
	return omni__confined_chown(host_root(b), path, uid, gid);
}

int omni__host_utimens(struct omni_backend *b, const char *path,
                       const struct timespec ts[2])
{
	return omni__confined_utimens(host_root(b), path, ts);
}

int omni__host_truncate(struct omni_backend *b, const char *path, off_t size)
{
	return omni__confined_truncate(host_root(b), path, size);
}

int omni__host_statfs(struct omni_backend *b, struct statvfs *st)
{
	return omni__confined_statfs(host_root(b), st);
}

int omni__host_open(struct omni_backend *b, const char *path, int flags,
                    mode_t mode, struct omni_file **out)
{
	return omni__confined_file_open(host_root(b), b, path, flags, mode,
	                                out);
}

/* --- nodes: calls on descriptors (ops version 3) ---------------------------
 *
 * fs/ keeps one O_PATH descriptor per inode the kernel knows and names
 * every file by (directory descriptor, one name). Nothing here resolves
 * more than one component: a name with a '/', "." or ".." is refused, and
 * every open also carries RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, so the
 * result is always a direct child of a directory that is itself in the
 * workspace, and a symlink swapped in by the sandbox is never followed.
 * Calls on a node's own descriptor go through the descriptor (AT_EMPTY_PATH)
 * or its /proc/self/fd entry, which names the inode, never a path.
 */

#define NODE_RESOLVE                                                           \
	(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

/* One path component, as the kernel would hand it over. */
static int check_name(const char *op, const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || strchr(name, '/') || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return omni_error_set(-EINVAL, "%s: '%s' is not a file name",
		                      op, name);
	if (len > NAME_MAX)
		return omni_error_set(-ENAMETOOLONG, "%s: name too long", op);
	return 0;
}

/* openat2 of one name beneath dirfd, never following a symlink. */
static int open_child(int dirfd, const char *name, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (unsigned long long)(flags | O_NOFOLLOW | O_CLOEXEC),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = NODE_RESOLVE,
	};
	long fd;

	do {
		fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	} while (fd < 0 && (errno == EINTR || errno == EAGAIN));
	return fd < 0 ? -errno : (int)fd;
}

/* Open the inode fd names (its /proc/self/fd entry) with flags. */
static int reopen(int fd, int flags)
{
	char proc[64];
	int nfd;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	do {
		nfd = open(proc, flags | O_CLOEXEC);
	} while (nfd < 0 && errno == EINTR);
	return nfd < 0 ? -errno : nfd;
}

int omni__host_node_root(struct omni_backend *b)
{
	int fd = reopen(host_root(b)->root_fd, O_PATH | O_DIRECTORY);

	return fd < 0 ? fail(fd, "root", "") : fd;
}

int omni__host_node_stat(struct omni_backend *b, int dirfd, const char *name,
                         struct stat *st)
{
	int rc;

	(void)b;
	if (*name && (rc = check_name("stat", name)) < 0)
		return rc;
	if (fstatat(dirfd, name, st,
	            AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH)) < 0)
		return fail(-errno, "stat", name);
	return 0;
}

int omni__host_node_lookup(struct omni_backend *b, int dirfd, const char *name,
                           struct stat *st)
{
	int fd, rc;

	(void)b;
	if (!*name)
		fd = reopen(dirfd, O_PATH);
	else if ((rc = check_name("lookup", name)) < 0)
		return rc;
	else
		fd = open_child(dirfd, name, O_PATH, 0);
	if (fd < 0)
		return fail(fd, "lookup", name);
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		rc = -errno;
		close(fd);
		return fail(rc, "lookup", name);
	}
	return fd;
}

int omni__host_node_mkdir(struct omni_backend *b, int dirfd, const char *name,
                          mode_t mode)
{
	int rc = check_name("mkdir", name);

	(void)b;
	if (rc < 0)
		return rc;
	return mkdirat(dirfd, name, mode) < 0 ? fail(-errno, "mkdir", name) : 0;
}

int omni__host_node_mknod(struct omni_backend *b, int dirfd, const char *name,
                          mode_t mode, dev_t rdev)
{
	int rc = check_name("mknod", name);

	(void)b;
	if (rc < 0)
		return rc;
	if (mknodat(dirfd, name, mode, rdev) < 0)
		return fail(-errno, "mknod", name);
	return 0;
}

int omni__host_node_symlink(struct omni_backend *b, const char *target,
                            int dirfd, const char *name)
{
	int rc = check_name("symlink", name);

	(void)b;
	if (rc < 0)
		return rc;
	/* Stored, never followed by any call here. */
	if (symlinkat(target, dirfd, name) < 0)
		return fail(-errno, "symlink", name);
	return 0;
}

int omni__host_node_link(struct omni_backend *b, int fd, int newdirfd,
                         const char *newname)
{
	char proc[64];
	int rc = check_name("link", newname);

	(void)b;
	if (rc < 0)
		return rc;
	/* linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the
	 * /proc entry names the same inode for any user. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, newdirfd, newname, AT_SYMLINK_FOLLOW) < 0)
		return fail(-errno, "link", newname);
	return 0;
}

int omni__host_node_unlink(struct omni_backend *b, int dirfd, const char *name,
                           bool dir)
{
	int rc = check_name(dir ? "rmdir" : "unlink", name);

	(void)b;
	if (rc < 0)
		return rc;
	if (unlinkat(dirfd, name, dir ? AT_REMOVEDIR : 0) < 0)
		return fail(-errno, dir ? "rmdir" : "unlink", name);
	return 0;
}

int omni__host_node_rename(struct omni_backend *b, int dirfd, const char *name,
                           int newdirfd, const char *newname,
                           unsigned int flags)
{
	int rc = check_name("rename", name);

	(void)b;
	if (rc == 0)
		rc = check_name("rename", newname);
	if (rc < 0)
		return rc;
	/* Single names resolve nowhere: EXDEV is the file system's own
	 * (an overlayfs directory of the lower layer), which mv(1) meets by
	 * copying; not the refusal fail() makes of it. */
	if (renameat2(dirfd, name, newdirfd, newname, flags) < 0)
		return errno == EXDEV
		           ? omni_error_set_errno(-EXDEV, "rename: %s", name)
		           : fail(-errno, "rename", name);
	return 0;
}

ssize_t omni__host_node_readlink(struct omni_backend *b, int fd, char *buf,
                                 size_t size)
{
	ssize_t n;

	(void)b;
	n = readlinkat(fd, "", buf, size);
	if (n < 0)
		return fail(-errno, "readlink", "");
	if ((size_t)n < size)
		buf[n] = '\0';
	else if (size > 0)
		buf[size - 1] = '\0';
	return n;
}

int omni__host_node_readdir(struct omni_backend *b, int fd, omni_dirent_cb cb,
                            void *payload)
{
	int dfd;

	(void)b;
	do {
		dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} while (dfd < 0 && errno == EINTR);
	if (dfd < 0)
		return fail(-errno, "readdir", "");
	return list_dir(dfd, "", cb, payload);
}

int omni__host_node_chmod(struct omni_backend *b, int fd, mode_t mode)
{
	char proc[64];

	(void)b;
	/* fchmod takes no O_PATH descriptor; the /proc entry is the inode. */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (chmod(proc, mode) < 0)
		return fail(-errno, "chmod", "");
	return 0;
}

int omni__host_node_chown(struct omni_backend *b, int fd, uid_t uid, gid_t gid)
{
	(void)b;
	if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return fail(-errno, "chown", "");
	return 0;
}

int omni__host_node_utimens(struct omni_backend *b, int fd,
                            const struct timespec ts[2])
{
	(void)b;
	if (utimensat(fd, "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return fail(-errno, "utimens", "");
	return 0;
}

int omni__host_node_truncate(struct omni_backend *b, int fd, off_t size)
{
	struct stat st;
	int wfd, rc = 0;

	(void)b;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return fail(-errno, "truncate", "");
	if (S_ISDIR(st.st_mode))
		return fail(-EISDIR, "truncate", "");
	if (!S_ISREG(st.st_mode))
		return fail(-EINVAL, "truncate", "");
	if ((wfd = reopen(fd, O_WRONLY | O_NONBLOCK)) < 0)
		return fail(wfd, "truncate", "");
	if (ftruncate(wfd, size) < 0)
		rc = fail(-errno, "truncate", "");
	close(wfd);
	return rc;
}

/* Wrap a descriptor in an omni_file of backend b. */
static int wrap_file(struct omni_backend *b, int fd, struct omni_file **out)
{
	struct omni__confined_file *f = malloc(sizeof(*f));

	if (!f) {
		close(fd);
		return omni_error_set(-ENOMEM, "open: out of memory");
	}
	f->base.backend = b;
	f->fd = fd;
	*out = &f->base;
	return 0;
}

int omni__host_node_open(struct omni_backend *b, int fd, int flags,
                         struct omni_file **out)
{
	int nfd;

	*out = NULL;
	/* The name was resolved when fd was made: what is opened is that
	 * inode, whatever its names are now. */
	nfd = reopen(fd, flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW | O_TMPFILE));
	if (nfd < 0)
		return fail(nfd, "open", "");
	return wrap_file(b, nfd, out);
}

int omni__host_node_create(struct omni_backend *b, int dirfd, const char *name,
                           int flags, mode_t mode, struct omni_file **out)
{
	int fd, rc = check_name("create", name);

	*out = NULL;
	if (rc < 0)
		return rc;
	fd = open_child(dirfd, name, flags | O_CREAT, mode);
	if (fd < 0)
		return fail(fd, "create", name);
	return wrap_file(b, fd, out);
}
