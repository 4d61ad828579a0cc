/*
 * omni/backend_impl.h - the implementer API: what a backend provides.
 *
 * A backend is a static const struct omni_backend_ops (a versioned table of
 * POSIX-shaped operations, in the spirit of sqlite3_vfs and libgit2's
 * git_odb_backend) plus an instance struct that embeds struct omni_backend
 * as its first member:
 *
 *	struct local_backend {
 *		struct omni_backend base;
 *		int root_fd;
 *	};
 *
 * Only backends/core/backend.c calls through the table (the wrappers in
 * omni/vfs.h and the generic API in omni/backend.h); everything else goes
 * through those wrappers. Slots are only ever appended: a slot added in
 * version N is called only when ops->version >= N. A NULL slot makes its
 * wrapper return -ENOSYS; stat and destroy are mandatory, and slots that
 * come in pairs (open and release, exec_start and exec_free) are both set
 * or both NULL.
 *
 * File handles and command handles likewise embed struct omni_file and
 * struct omni_exec first, so the wrappers can find the backend.
 */
#ifndef OMNI_BACKEND_IMPL_H
#define OMNI_BACKEND_IMPL_H

#include <pthread.h>

#include "../backend.h"
#include "../vfs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2 added stats and invalidate; 3 the node slots. */
#define OMNI_BACKEND_OPS_VERSION 3

struct omni_backend_ops {
	unsigned int version;
	const char *name;
	unsigned int caps; /* OMNI_CAP_* */

	/* Session life. start and shutdown run on one thread with nothing
	 * else in flight. shutdown does not save (the session does that). */
	int (*start)(struct omni_backend *b);
	int (*shutdown)(struct omni_backend *b);
	/* Report the real state (a container removed behind our back is
	 * STOPPED). NULL: the status backend.c keeps is used. */
	enum omni_status (*status)(struct omni_backend *b);
	/* Free the instance; the session has been shut down. */
	void (*destroy)(struct omni_backend *b);

	/* Metadata. */
	int (*stat)(struct omni_backend *b, const char *path, struct stat *st);
	int (*readdir)(struct omni_backend *b, const char *path,
	               omni_dirent_cb cb, void *payload);
	int (*mkdir)(struct omni_backend *b, const char *path, mode_t mode);
	int (*rmdir)(struct omni_backend *b, const char *path);
	int (*unlink)(struct omni_backend *b, const char *path);
	int (*rename)(struct omni_backend *b, const char *from, const char *to,
	              unsigned int flags);
	int (*symlink)(struct omni_backend *b, const char *target,
	               const char *path);
	ssize_t (*readlink)(struct omni_backend *b, const char *path, char *buf,
	                    size_t size);
	int (*link)(struct omni_backend *b, const char *from, const char *to);
	int (*chmod)(struct omni_backend *b, const char *path, mode_t mode);
	int (*chown)(struct omni_backend *b, const char *path, uid_t uid,
	             gid_t gid);
	int (*utimens)(struct omni_backend *b, const char *path,
	               const struct timespec ts[2]);
	int (*truncate)(struct omni_backend *b, const char *path, off_t size);
	int (*statfs)(struct omni_backend *b, struct statvfs *st);

	/* Open files. release frees the handle. */
	int (*open)(struct omni_backend *b, const char *path, int flags,
	            mode_t mode, struct omni_file **out);
	ssize_t (*read)(struct omni_file *f, void *buf, size_t size, off_t off);
	ssize_t (*write)(struct omni_file *f, const void *buf, size_t size,
	                 off_t off);
	int (*fstat)(struct omni_file *f, struct stat *st);
	int (*ftruncate)(struct omni_file *f, off_t size);
	int (*flush)(struct omni_file *f);
	int (*fsync)(struct omni_file *f, bool datasync);
	int (*flock)(struct omni_file *f, int op);
	int (*lock)(struct omni_file *f, int cmd, struct flock *lock);
	int (*fallocate)(struct omni_file *f, int mode, off_t off, off_t len);
	int (*file_fd)(struct omni_file *f);
	int (*release)(struct omni_file *f);

	/* Commands. exec_free also kills a command still running. */
	int (*exec_start)(struct omni_backend *b,
	                  const struct omni_exec_request *req,
	                  struct omni_exec **out);
	int (*exec_wait)(struct omni_exec *e, omni_output_cb cb, void *payload,
	                 struct omni_exec_status *status);
	int (*exec_input)(struct omni_exec *e, const void *data, size_t len);
	int (*exec_signal)(struct omni_exec *e, int sig);
	int (*exec_resize)(struct omni_exec *e, unsigned short rows,
	                   unsigned short cols);
	void (*exec_free)(struct omni_exec *e);

	/* Change notification (optional). */
	int (*watch)(struct omni_backend *b, omni_change_cb cb, void *payload);

	/* --- version 2 --- */

	/* Counters as "name value" lines (malloc'd text), e.g. requests by
	 * method for a remote backend; NULL when there are none. */
	char *(*stats)(struct omni_backend *b);
	/* Forget what the backend caches about path and below ("": all). */
	int (*invalidate)(struct omni_backend *b, const char *path);

	/* --- version 3 --- */

	/* Nodes (omni/vfs.h): calls on the backing files' own descriptors,
	 * for a backend whose workspace is a host directory (with
	 * OMNI_CAP_NODES). All set or all NULL; open and release too. */
	int (*node_root)(struct omni_backend *b);
	int (*node_stat)(struct omni_backend *b, int dirfd, const char *name,
	                 struct stat *st);
	int (*node_lookup)(struct omni_backend *b, int dirfd, const char *name,
	                   struct stat *st);
	int (*node_mkdir)(struct omni_backend *b, int dirfd, const char *name,
	                  mode_t mode);
	int (*node_mknod)(struct omni_backend *b, int dirfd, const char *name,
	                  mode_t mode, dev_t rdev);
	int (*node_symlink)(struct omni_backend *b, const char *target,
	                    int dirfd, const char *name);
	int (*node_link)(struct omni_backend *b, int fd, int newdirfd,
	                 const char *newname);
	int (*node_unlink)(struct omni_backend *b, int dirfd, const char *name,
	                   bool dir);
	int (*node_rename)(struct omni_backend *b, int dirfd, const char *name,
	                   int newdirfd, const char *newname,
	                   unsigned int flags);
	ssize_t (*node_readlink)(struct omni_backend *b, int fd, char *buf,
	                         size_t size);
	int (*node_readdir)(struct omni_backend *b, int fd, omni_dirent_cb cb,
	                    void *payload);
	int (*node_chmod)(struct omni_backend *b, int fd, mode_t mode);
	int (*node_chown)(struct omni_backend *b, int fd, uid_t uid, gid_t gid);
	int (*node_utimens)(struct omni_backend *b, int fd,
	                    const struct timespec ts[2]);
	int (*node_truncate)(struct omni_backend *b, int fd, off_t size);
	int (*node_open)(struct omni_backend *b, int fd, int flags,
	                 struct omni_file **out);
	int (*node_create)(struct omni_backend *b, int dirfd, const char *name,
	                   int flags, mode_t mode, struct omni_file **out);
};

/*
 * The six command slots of a table whose functions are named
 * PREFIX_exec_start, _wait, _input, _signal, _resize and _free: one line
 * names them all, so that exec_start never comes without exec_free.
 */
#define OMNI_BACKEND_EXEC_OPS(prefix)                                          \
	.exec_start = prefix##_exec_start, .exec_wait = prefix##_exec_wait,    \
	.exec_input = prefix##_exec_input,                                     \
	.exec_signal = prefix##_exec_signal,                                   \
	.exec_resize = prefix##_exec_resize, .exec_free = prefix##_exec_free

struct omni__session;

/*
 * The part of every backend instance that backend.c owns. A backend's
 * constructor calls omni__backend_init() on it; backend.c frees the
 * strings. The state manager is not here: it belongs to the session
 * (core/session.h) the backend is part of.
 */
struct omni_backend {
	const struct omni_backend_ops *ops;
	char *project_id;
	/* The working directory the sandbox sees ("/workspace" in docker,
	 * the workspace's absolute host path on local). */
	char *workdir;
	/* Another name of workdir that paths may start with ("/workspace"
	 * on local), or NULL. A static string, set by the constructor. */
	const char *workdir_alias;
	/* The options every backend reads (strings owned, copied); the
	 * backend's own options are its business (.backend is NULL here). */
	struct omni_backend_options opts;
	enum omni_status status;
	pthread_mutex_t lock; /* guards status across threads */
	/* The session this backend belongs to, or NULL (set by session.c). */
	struct omni__session *session;
	/* The session's journal on the backend the mount calls, or NULL
	 * (journal/hook.h; set by session.c while it runs). */
	struct omni__journal_hook *journal;
};

/* journal: the write counter of a file open for writing under a journal,
 * and the record of a command; set by the wrappers of backend.c after the
 * open or start, whatever the backend put there. */
struct omni_file {
	struct omni_backend *backend;
	struct omni__journal_file *journal;
};

struct omni_exec {
	struct omni_backend *backend;
	struct omni__journal_exec *journal;
};

/*
 * Fill the common part: checks the ops table (version, mandatory and paired
 * slots), copies project_id, workdir and the common options' strings.
 * Returns -ENOMEM or -EINVAL (bad ops table or project id).
 */
int omni__backend_init(struct omni_backend *b,
                       const struct omni_backend_ops *ops,
                       const char *project_id, const char *workdir,
                       const struct omni_backend_options *opts);

/*
 * The backend's own options from opts (NULL when none were given), after
 * checking that they are for the backend named name and of a version it
 * knows (at most max_version): else -EINVAL with a message, *out NULL.
 */
int omni__backend_own_options(const struct omni_backend_options *opts,
                              const char *name, unsigned int max_version,
                              const struct omni_backend_options_head **out);

/*
 * The name an absolute user path starts with: workdir, or workdir_alias
 * when path lies under the alias and not under workdir. Every check of
 * an absolute path (omni_vfs_path, glob patterns) goes through this.
 */
const char *omni__backend_workdir_for(const struct omni_backend *b,
                                      const char *path);

/* Free what omni__backend_init() made (not b itself). */
void omni__backend_finish(struct omni_backend *b);

/*
 * The host directory of a project's workspace:
 * <data_path or $OMNI_DATA_PATH or ./data>/<project_id>, made absolute.
 * Writes into out; -ENAMETOOLONG when it does not fit.
 */
int omni__workspace_host_dir(const struct omni_backend *b, char *out,
                             size_t out_size);

#ifdef __cplusplus
}
#endif

#endif
