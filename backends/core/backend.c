/*
 * backends/core/backend.c - the one place that calls through a backend's ops
 * table.
 *
 * It checks an operations table when a backend is made (version, mandatory
 * slots, slots that come in pairs), keeps the common part of every
 * instance (project id, working directory, common options, status), runs
 * and stops a backend, and holds the thin omni_vfs_* wrappers of
 * omni/vfs.h. A NULL slot becomes -ENOSYS with a message naming the
 * backend and the operation, as FUSE itself does for a missing operation.
 * Loading and saving snapshots around start and shutdown is the session's
 * (session.c): omni_backend_start/shutdown/free on the backend a session
 * shows go to it. The documented file and directory calls built on these
 * wrappers are in api.c.
 *
 * Locking: the status is guarded by b->lock; everything else is either
 * set before the session starts or belongs to the backend.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/datapath.h"
#include "omni/sys/backend_impl.h"
#include "base/error.h"
#include "omni/error.h"
#include "omni/log.h"
#include "core/session.h"
#include "journal/hook.h"

const char *omni_status_name(enum omni_status status)
{
	switch (status) {
	case OMNI_STATUS_UNINITIALIZED:
		return "UNINITIALIZED";
	case OMNI_STATUS_RUNNING:
		return "RUNNING";
	case OMNI_STATUS_STOPPED:
		return "STOPPED";
	}
	return "UNKNOWN";
}

/* --- the operations table ------------------------------------------------- */

/* Slots that come in pairs: what the first makes (a running workspace, a
 * handle), the second undoes. Both set or both NULL; the name of the first
 * pair that is not, else NULL. */
static const char *unpaired_slots(const struct omni_backend_ops *ops)
{
	if (!ops->start != !ops->shutdown)
		return "start and shutdown";
	if (!ops->open != !ops->release)
		return "open and release";
	if (!ops->exec_start != !ops->exec_free)
		return "exec_start and exec_free";
	if (ops->version >= 3 && ops->node_root) {
		const bool nodes[] = {
			ops->node_stat,     ops->node_lookup,
			ops->node_mkdir,    ops->node_mknod,
			ops->node_symlink,  ops->node_link,
			ops->node_unlink,   ops->node_rename,
			ops->node_readlink, ops->node_readdir,
			ops->node_chmod,    ops->node_chown,
			ops->node_utimens,  ops->node_truncate,
			ops->node_open,     ops->node_create,
			ops->open,
		};
		for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++)
			if (!nodes[i])
				return "node_root and the other node slots";
	}
	return NULL;
}

static int check_ops(const struct omni_backend_ops *ops)
{
	const char *pair;

	if (!ops || ops->version < 1 ||
	    ops->version > OMNI_BACKEND_OPS_VERSION || !ops->stat ||
	    !ops->destroy)
		return omni_error_set(-EINVAL, "backend: bad operations table");
	if ((pair = unpaired_slots(ops)))
		return omni_error_set(-EINVAL,
		                      "backend '%s': bad operations table: %s "
		                      "come in pairs (both set or both NULL)",
		                      ops->name ? ops->name : "", pair);
	return 0;
}

/* --- the common part of an instance --------------------------------------- */

static char *dup_opt(const char *s, bool *failed)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*failed = true;
	return d;
}

static void free_env(const char *const *env)
{
	for (const char *const *e = env; e && *e; e++)
		free((char *)*e);
	free((void *)env);
}

static const char **dup_env(const char *const *src, bool *failed)
{
	size_t n = 0;

	if (!src)
		return NULL;
	while (src[n])
		n++;
	const char **env = calloc(n + 1, sizeof(*env));
	if (!env)
		*failed = true;
	for (size_t i = 0; env && i < n; i++)
		env[i] = dup_opt(src[i], failed);
	return env;
}

int omni__backend_init(struct omni_backend *b,
                       const struct omni_backend_ops *ops,
                       const char *project_id, const char *workdir,
                       const struct omni_backend_options *opts)
{
	struct omni_backend_options defaults = OMNI_BACKEND_OPTIONS_INIT;
	bool failed = false;
	int rc;

	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	if ((rc = check_ops(ops)) < 0)
		return rc;
	if (!omni_project_id_valid(project_id))
		return omni_error_set(
		    -EINVAL,
		    "invalid project id '%s': use 1-128 of A-Z a-z 0-9 . _ -",
		    project_id ? project_id : "");
	b->ops = ops;
	b->status = OMNI_STATUS_UNINITIALIZED;
	if (!opts)
		opts = &defaults;
	b->opts.version = OMNI_BACKEND_OPTIONS_VERSION;
	b->opts.progress = opts->progress;
	b->project_id = dup_opt(project_id, &failed);
	b->workdir = dup_opt(workdir, &failed);
	b->opts.data_path = dup_opt(opts->data_path, &failed);
	b->opts.env = dup_env(opts->env, &failed);
	if (failed) {
		omni__backend_finish(b);
		return omni_error_set(-ENOMEM, "backend: out of memory");
	}
	return 0;
}

int omni__backend_own_options(const struct omni_backend_options *opts,
                              const char *name, unsigned int max_version,
                              const struct omni_backend_options_head **out)
{
	const struct omni_backend_options_head *h = opts ? opts->backend : NULL;

	*out = NULL;
	if (!h)
		return 0;
	if (!h->backend || strcmp(h->backend, name) != 0)
		return omni_error_set(-EINVAL,
		                      "%s backend: given the options of the "
		                      "'%s' backend",
		                      name, h->backend ? h->backend : "");
	if (max_version == 0)
		return omni_error_set(
		    -EINVAL, "%s backend: has no options of its own", name);
	if (h->version < 1 || h->version > max_version)
		return omni_error_set(-EINVAL,
		                      "%s backend: options version %u (known: "
		                      "1 to %u)",
		                      name, h->version, max_version);
	*out = h;
	return 0;
}

int omni__backend_inherit_options(struct omni_backend *to,
                                  const struct omni_backend *from)
{
	if (from->opts.data_path &&
	    (!to->opts.data_path ||
	     strcmp(to->opts.data_path, from->opts.data_path) != 0)) {
		char *dp = strdup(from->opts.data_path);
		if (!dp)
			return omni_error_set(-ENOMEM,
			                      "backend: out of memory");
		free((char *)to->opts.data_path);
		to->opts.data_path = dp;
	}
	to->opts.progress = from->opts.progress;
	return 0;
}

void omni__backend_finish(struct omni_backend *b)
{
	free(b->project_id);
	free(b->workdir);
	free((char *)b->opts.data_path);
	free_env(b->opts.env);
	b->project_id = b->workdir = NULL;
	memset(&b->opts, 0, sizeof(b->opts));
	pthread_mutex_destroy(&b->lock);
}

int omni__workspace_host_dir(const struct omni_backend *b, char *out,
                             size_t out_size)
{
	char base[PATH_MAX];
	int n = omni__data_path(b->opts.data_path, base, sizeof(base));

	if (n < 0)
		return n;
	n = snprintf(out, out_size, "%s/%s", base, b->project_id);
	if (n < 0 || (size_t)n >= out_size)
		return omni_error_set(-ENAMETOOLONG, "data path too long");
	return 0;
}

/* --- running and stopping ------------------------------------------------- */

const char *omni_backend_name(const struct omni_backend *b)
{
	return b->ops->name;
}

const char *omni_backend_project_id(const struct omni_backend *b)
{
	return b->project_id;
}

const char *omni_backend_get_working_directory(struct omni_backend *b)
{
	return b->workdir;
}

static void set_status(struct omni_backend *b, enum omni_status s)
{
	pthread_mutex_lock(&b->lock);
	b->status = s;
	pthread_mutex_unlock(&b->lock);
}

bool omni__backend_running(struct omni_backend *b)
{
	pthread_mutex_lock(&b->lock);
	bool running = b->status == OMNI_STATUS_RUNNING;
	pthread_mutex_unlock(&b->lock);
	return running;
}

enum omni_status omni_backend_get_status(struct omni_backend *b)
{
	enum omni_status s;

	pthread_mutex_lock(&b->lock);
	s = b->status;
	pthread_mutex_unlock(&b->lock);
	if (s == OMNI_STATUS_RUNNING && b->ops->status)
		s = b->ops->status(b);
	return s;
}

int omni__backend_run(struct omni_backend *b)
{
	int rc;

	if (b->ops->start && (rc = b->ops->start(b)) < 0)
		return rc;
	set_status(b, OMNI_STATUS_RUNNING);
	return 0;
}

int omni__backend_stop(struct omni_backend *b)
{
	int rc = 0;

	if (b->ops->shutdown)
		rc = b->ops->shutdown(b);
	set_status(b, OMNI_STATUS_STOPPED);
	return rc;
}

void omni__backend_destroy(struct omni_backend *b)
{
	b->ops->destroy(b);
}

/* The session whose face b is (start, shutdown and free go to it); NULL
 * for a backend on its own or behind another one, such as the backend a
 * cache wraps, which is started and stopped by what is in front of it. */
static struct omni__session *face_of(struct omni_backend *b)
{
	if (b->session && omni__session_backend(b->session) == b)
		return b->session;
	return NULL;
}

int omni_backend_start(struct omni_backend *b)
{
	struct omni__session *s = face_of(b);
	int rc;

	if (s)
		return omni__session_start(s);
	if (omni_backend_get_status(b) == OMNI_STATUS_RUNNING)
		return 0;
	if ((rc = omni__backend_run(b)) < 0)
		return rc;
	omni_log(OMNI_LOG_DEBUG, "%s session '%s' started (no snapshot)",
	         b->ops->name, b->project_id);
	return 0;
}

int omni_backend_shutdown(struct omni_backend *b)
{
	struct omni__session *s = face_of(b);

	if (s)
		return omni__session_shutdown(s);
	if (!omni__backend_running(b))
		return 0;
	return omni__backend_stop(b);
}

void omni_backend_free(struct omni_backend *b)
{
	struct omni__session *s;

	if (!b)
		return;
	if ((s = face_of(b))) {
		omni__session_free(s);
		return;
	}
	omni_backend_shutdown(b);
	omni__backend_destroy(b);
}

/* --- the vfs wrappers ----------------------------------------------------- */

static int no_op(const struct omni_backend *b, const char *what)
{
	return omni_error_set(-ENOSYS, "%s backend: %s is not supported",
	                      b->ops->name, what);
}

/* A session that is not running can do nothing. */
static int check_running(struct omni_backend *b)
{
	pthread_mutex_lock(&b->lock);
	enum omni_status s = b->status;
	pthread_mutex_unlock(&b->lock);
	if (s != OMNI_STATUS_RUNNING)
		return omni_error_set(-ENOTCONN, "%s session '%s' is %s",
		                      b->ops->name, b->project_id,
		                      s == OMNI_STATUS_STOPPED ? "stopped"
		                                               : "not started");
	return 0;
}

#define CALL(b, slot, what, ...)                                               \
	do {                                                                   \
		int rc_ = check_running(b);                                    \
		if (rc_ < 0)                                                   \
			return rc_;                                            \
		if (!(b)->ops->slot)                                           \
			return no_op((b), (what));                             \
		return (b)->ops->slot(__VA_ARGS__);                            \
	} while (0)

/* The same, for a call whose result the journal records: into rc. */
#define CALL_RC(rc, b, slot, what, ...)                                        \
	do {                                                                   \
		(rc) = check_running(b);                                       \
		if ((rc) == 0)                                                 \
			(rc) = (b)->ops->slot ? (b)->ops->slot(__VA_ARGS__)    \
			                      : no_op((b), (what));            \
	} while (0)

#define FCALL(f, slot, what, ...)                                              \
	do {                                                                   \
		if (!(f)->backend->ops->slot)                                  \
			return no_op((f)->backend, (what));                    \
		return (f)->backend->ops->slot(__VA_ARGS__);                   \
	} while (0)

unsigned int omni_vfs_caps(struct omni_backend *b)
{
	return b->ops->caps;
}

/* path is dir itself or below it. */
static bool under_dir(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	return strncmp(path, dir, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

const char *omni__backend_workdir_for(const struct omni_backend *b,
                                      const char *path)
{
	if (b->workdir_alias && path && path[0] == '/' &&
	    !under_dir(path, b->workdir) && under_dir(path, b->workdir_alias))
		return b->workdir_alias;
	return b->workdir;
}

int omni_vfs_path(struct omni_backend *b, const char *in, char *out,
                  size_t out_size)
{
	return omni_path_normalize(omni__backend_workdir_for(b, in), in, out,
	                           out_size);
}

int omni_vfs_stat(struct omni_backend *b, const char *path, struct stat *st)
{
	CALL(b, stat, "stat", b, path, st);
}

int omni_vfs_readdir(struct omni_backend *b, const char *path,
                     omni_dirent_cb cb, void *payload)
{
	CALL(b, readdir, "readdir", b, path, cb, payload);
}

int omni_vfs_mkdir(struct omni_backend *b, const char *path, mode_t mode)
{
	int rc;

	CALL_RC(rc, b, mkdir, "mkdir", b, path, mode);
	if (b->journal)
		omni__journal_path_op(b, "mkdir", path, NULL, -1, mode, rc);
	return rc;
}

int omni_vfs_rmdir(struct omni_backend *b, const char *path)
{
	int rc;

	CALL_RC(rc, b, rmdir, "rmdir", b, path);
	if (b->journal)
		omni__journal_path_op(b, "rmdir", path, NULL, -1, -1, rc);
	return rc;
}

int omni_vfs_unlink(struct omni_backend *b, const char *path)
{
	int rc;

	CALL_RC(rc, b, unlink, "unlink", b, path);
	if (b->journal)
		omni__journal_path_op(b, "unlink", path, NULL, -1, -1, rc);
	return rc;
}

int omni_vfs_rename(struct omni_backend *b, const char *from, const char *to,
                    unsigned int flags)
{
	int rc;

	CALL_RC(rc, b, rename, "rename", b, from, to, flags);
	if (b->journal)
		omni__journal_path_op(b, "rename", from, to, -1, -1, rc);
	return rc;
}

int omni_vfs_symlink(struct omni_backend *b, const char *target,
                     const char *path)
{
	int rc;

	CALL_RC(rc, b, symlink, "symlink", b, target, path);
	if (b->journal)
		omni__journal_path_op(b, "symlink", path, target, -1, -1, rc);
	return rc;
}

ssize_t omni_vfs_readlink(struct omni_backend *b, const char *path, char *buf,
                          size_t size)
{
	CALL(b, readlink, "readlink", b, path, buf, size);
}

int omni_vfs_link(struct omni_backend *b, const char *from, const char *to)
{
	int rc;

	CALL_RC(rc, b, link, "link", b, from, to);
	if (b->journal)
		omni__journal_path_op(b, "link", from, to, -1, -1, rc);
	return rc;
}

int omni_vfs_chmod(struct omni_backend *b, const char *path, mode_t mode)
{
	int rc;

	CALL_RC(rc, b, chmod, "chmod", b, path, mode);
	if (b->journal)
		omni__journal_path_op(b, "chmod", path, NULL, -1, mode & 07777,
		                      rc);
	return rc;
}

int omni_vfs_chown(struct omni_backend *b, const char *path, uid_t uid,
                   gid_t gid)
{
	int rc;

	CALL_RC(rc, b, chown, "chown", b, path, uid, gid);
	if (b->journal) {
		char ids[48];
		snprintf(ids, sizeof(ids), "%d:%d", (int)uid, (int)gid);
		omni__journal_path_op(b, "chown", path, ids, -1, -1, rc);
	}
	return rc;
}

int omni_vfs_utimens(struct omni_backend *b, const char *path,
                     const struct timespec ts[2])
{
	int rc;

	CALL_RC(rc, b, utimens, "utimens", b, path, ts);
	if (b->journal)
		omni__journal_path_op(b, "utimens", path, NULL, -1, -1, rc);
	return rc;
}

int omni_vfs_truncate(struct omni_backend *b, const char *path, off_t size)
{
	int rc;

	CALL_RC(rc, b, truncate, "truncate", b, path, size);
	if (b->journal)
		omni__journal_path_op(b, "truncate", path, NULL, size, -1, rc);
	return rc;
}

int omni_vfs_statfs(struct omni_backend *b, struct statvfs *st)
{
	CALL(b, statfs, "statfs", b, st);
}

int omni_vfs_open(struct omni_backend *b, const char *path, int flags,
                  mode_t mode, struct omni_file **out)
{
	int rc;

	*out = NULL;
	CALL_RC(rc, b, open, "open", b, path, flags, mode, out);
	if (*out)
		(*out)->journal = NULL;
	if (b->journal)
		omni__journal_opened(b, rc < 0 ? NULL : *out, path, -1, NULL,
		                     flags, mode, (flags & O_CREAT) != 0, rc);
	return rc;
}

ssize_t omni_vfs_read(struct omni_file *f, void *buf, size_t size, off_t off)
{
	FCALL(f, read, "read", f, buf, size, off);
}

ssize_t omni_vfs_write(struct omni_file *f, const void *buf, size_t size,
                       off_t off)
{
	ssize_t n;

	if (!f->backend->ops->write)
		return no_op(f->backend, "write");
	n = f->backend->ops->write(f, buf, size, off);
	if (f->journal && f->backend->journal)
		omni__journal_wrote(f, off, n);
	return n;
}

int omni_vfs_fstat(struct omni_file *f, struct stat *st)
{
	FCALL(f, fstat, "fstat", f, st);
}

int omni_vfs_ftruncate(struct omni_file *f, off_t size)
{
	int rc;

	if (!f->backend->ops->ftruncate)
		return no_op(f->backend, "ftruncate");
	rc = f->backend->ops->ftruncate(f, size);
	if (f->journal && f->backend->journal)
		omni__journal_ftruncated(f, size, rc);
	return rc;
}

int omni_vfs_flush(struct omni_file *f)
{
	if (!f->backend->ops->flush)
		return 0; /* nothing buffered, nothing to report */
	return f->backend->ops->flush(f);
}

int omni_vfs_fsync(struct omni_file *f, bool datasync)
{
	FCALL(f, fsync, "fsync", f, datasync);
}

int omni_vfs_flock(struct omni_file *f, int op)
{
	FCALL(f, flock, "flock", f, op);
}

int omni_vfs_lock(struct omni_file *f, int cmd, struct flock *lock)
{
	FCALL(f, lock, "lock", f, cmd, lock);
}

int omni_vfs_fallocate(struct omni_file *f, int mode, off_t off, off_t len)
{
	FCALL(f, fallocate, "fallocate", f, mode, off, len);
}

int omni_vfs_file_fd(struct omni_file *f)
{
	if (!f->backend->ops->file_fd)
		return -ENOSYS;
	return f->backend->ops->file_fd(f);
}

int omni_vfs_release(struct omni_file *f)
{
	if (!f)
		return 0;
	if (f->journal && f->backend->journal)
		omni__journal_releasing(f);
	return f->backend->ops->release(f);
}

int omni_vfs_exec_start(struct omni_backend *b,
                        const struct omni_exec_request *req,
                        struct omni_exec **out)
{
	int rc;

	*out = NULL;
	CALL_RC(rc, b, exec_start, "running commands", b, req, out);
	if (*out)
		(*out)->journal = NULL;
	if (b->journal)
		omni__journal_exec_started(b, req, rc < 0 ? NULL : *out, rc);
	return rc;
}

int omni_vfs_exec_wait(struct omni_exec *e, omni_output_cb cb, void *payload,
                       struct omni_exec_status *status)
{
	struct omni__journal_counter c = { cb, payload, 0, 0 };
	int rc;

	if (!e->journal)
		FCALL(e, exec_wait, "exec wait", e, cb, payload, status);
	if (!e->backend->ops->exec_wait)
		rc = no_op(e->backend, "exec wait");
	else
		rc = e->backend->ops->exec_wait(e, omni__journal_count_output,
		                                &c, status);
	omni__journal_exec_waited(e, &c, status, rc);
	return rc;
}

int omni_vfs_exec_input(struct omni_exec *e, const void *data, size_t len)
{
	FCALL(e, exec_input, "exec stdin", e, data, len);
}

int omni_vfs_exec_signal(struct omni_exec *e, int sig)
{
	FCALL(e, exec_signal, "exec signal", e, sig);
}

int omni_vfs_exec_resize(struct omni_exec *e, unsigned short rows,
                         unsigned short cols)
{
	FCALL(e, exec_resize, "terminal resize", e, rows, cols);
}

void omni_vfs_exec_free(struct omni_exec *e)
{
	if (!e)
		return;
	if (e->journal)
		omni__journal_exec_freeing(e);
	e->backend->ops->exec_free(e);
}

int omni_vfs_watch(struct omni_backend *b, omni_change_cb cb, void *payload)
{
	CALL(b, watch, "watching for changes", b, cb, payload);
}

/* Slots of version 2: only called on tables that have them. */
char *omni_vfs_stats(struct omni_backend *b)
{
	if (b->ops->version < 2 || !b->ops->stats)
		return NULL;
	return b->ops->stats(b);
}

int omni_vfs_invalidate(struct omni_backend *b, const char *path)
{
	if (b->ops->version < 2 || !b->ops->invalidate)
		return 0;
	return b->ops->invalidate(b, path ? path : "");
}

/* Slots of version 3: the nodes (omni/vfs.h). */
#define NCALL(b, slot, what, ...)                                              \
	do {                                                                   \
		if ((b)->ops->version < 3)                                     \
			return no_op((b), (what));                             \
		CALL(b, slot, what, __VA_ARGS__);                              \
	} while (0)

#define NCALL_RC(rc, b, slot, what, ...)                                       \
	do {                                                                   \
		if ((b)->ops->version < 3)                                     \
			(rc) = no_op((b), (what));                             \
		else                                                           \
			CALL_RC(rc, b, slot, what, __VA_ARGS__);               \
	} while (0)

/* The two calls that hand out node descriptors tell the journal, which
 * caches paths by descriptor number (journal/hook.c). */
int omni_vfs_node_root(struct omni_backend *b)
{
	int fd;

	NCALL_RC(fd, b, node_root, "node_root", b);
	if (b->journal)
		omni__journal_node_fd(b, fd);
	return fd;
}

int omni_vfs_node_stat(struct omni_backend *b, int dirfd, const char *name,
                       struct stat *st)
{
	NCALL(b, node_stat, "node_stat", b, dirfd, name, st);
}

int omni_vfs_node_lookup(struct omni_backend *b, int dirfd, const char *name,
                         struct stat *st)
{
	int fd;

	NCALL_RC(fd, b, node_lookup, "node_lookup", b, dirfd, name, st);
	if (b->journal)
		omni__journal_node_fd(b, fd);
	return fd;
}

int omni_vfs_node_mkdir(struct omni_backend *b, int dirfd, const char *name,
                        mode_t mode)
{
	int rc;

	NCALL_RC(rc, b, node_mkdir, "node_mkdir", b, dirfd, name, mode);
	if (b->journal)
		omni__journal_node_op(b, "mkdir", dirfd, name, -1, NULL, -1,
		                      mode, rc);
	return rc;
}

int omni_vfs_node_mknod(struct omni_backend *b, int dirfd, const char *name,
                        mode_t mode, dev_t rdev)
{
	int rc;

	NCALL_RC(rc, b, node_mknod, "node_mknod", b, dirfd, name, mode, rdev);
	if (b->journal)
		omni__journal_node_op(b, "mknod", dirfd, name, -1, NULL, -1,
		                      mode, rc);
	return rc;
}

int omni_vfs_node_symlink(struct omni_backend *b, const char *target, int dirfd,
                          const char *name)
{
	int rc;

	NCALL_RC(rc, b, node_symlink, "node_symlink", b, target, dirfd, name);
	if (b->journal)
		omni__journal_node_op(b, "symlink", dirfd, name, -1, target, -1,
		                      -1, rc);
	return rc;
}

int omni_vfs_node_link(struct omni_backend *b, int fd, int newdirfd,
                       const char *newname)
{
	int rc;

	NCALL_RC(rc, b, node_link, "node_link", b, fd, newdirfd, newname);
	if (b->journal)
		omni__journal_node_op(b, "link", fd, NULL, newdirfd, newname,
		                      -1, -1, rc);
	return rc;
}

int omni_vfs_node_unlink(struct omni_backend *b, int dirfd, const char *name,
                         bool dir)
{
	int rc;

	NCALL_RC(rc, b, node_unlink, "node_unlink", b, dirfd, name, dir);
	if (b->journal)
		omni__journal_node_op(b, dir ? "rmdir" : "unlink", dirfd, name,
		                      -1, NULL, -1, -1, rc);
	return rc;
}

int omni_vfs_node_rename(struct omni_backend *b, int dirfd, const char *name,
                         int newdirfd, const char *newname, unsigned int flags)
{
	int rc;

	NCALL_RC(rc, b, node_rename, "node_rename", b, dirfd, name, newdirfd,
	         newname, flags);
	if (b->journal)
		omni__journal_node_op(b, "rename", dirfd, name, newdirfd,
		                      newname, -1, -1, rc);
	return rc;
}

ssize_t omni_vfs_node_readlink(struct omni_backend *b, int fd, char *buf,
                               size_t size)
{
	NCALL(b, node_readlink, "node_readlink", b, fd, buf, size);
}

int omni_vfs_node_readdir(struct omni_backend *b, int fd, omni_dirent_cb cb,
                          void *payload)
{
	NCALL(b, node_readdir, "node_readdir", b, fd, cb, payload);
}

int omni_vfs_node_chmod(struct omni_backend *b, int fd, mode_t mode)
{
	int rc;

	NCALL_RC(rc, b, node_chmod, "node_chmod", b, fd, mode);
	if (b->journal)
		omni__journal_node_op(b, "chmod", fd, NULL, -1, NULL, -1,
		                      mode & 07777, rc);
	return rc;
}

int omni_vfs_node_chown(struct omni_backend *b, int fd, uid_t uid, gid_t gid)
{
	int rc;

	NCALL_RC(rc, b, node_chown, "node_chown", b, fd, uid, gid);
	if (b->journal) {
		char ids[48];
		snprintf(ids, sizeof(ids), "%d:%d", (int)uid, (int)gid);
		omni__journal_node_op(b, "chown", fd, NULL, -1, ids, -1, -1,
		                      rc);
	}
	return rc;
}

int omni_vfs_node_utimens(struct omni_backend *b, int fd,
                          const struct timespec ts[2])
{
	int rc;

	NCALL_RC(rc, b, node_utimens, "node_utimens", b, fd, ts);
	if (b->journal)
		omni__journal_node_op(b, "utimens", fd, NULL, -1, NULL, -1, -1,
		                      rc);
	return rc;
}

int omni_vfs_node_truncate(struct omni_backend *b, int fd, off_t size)
{
	int rc;

	NCALL_RC(rc, b, node_truncate, "node_truncate", b, fd, size);
	if (b->journal)
		omni__journal_node_op(b, "truncate", fd, NULL, -1, NULL, size,
		                      -1, rc);
	return rc;
}

int omni_vfs_node_open(struct omni_backend *b, int fd, int flags,
                       struct omni_file **out)
{
	int rc;

	*out = NULL;
	NCALL_RC(rc, b, node_open, "node_open", b, fd, flags, out);
	if (*out)
		(*out)->journal = NULL;
	if (b->journal)
		omni__journal_opened(b, rc < 0 ? NULL : *out, NULL, fd, NULL,
		                     flags, 0, false, rc);
	return rc;
}

int omni_vfs_node_create(struct omni_backend *b, int dirfd, const char *name,
                         int flags, mode_t mode, struct omni_file **out)
{
	int rc;

	*out = NULL;
	NCALL_RC(rc, b, node_create, "node_create", b, dirfd, name, flags, mode,
	         out);
	if (*out)
		(*out)->journal = NULL;
	if (b->journal)
		omni__journal_opened(b, rc < 0 ? NULL : *out, NULL, dirfd, name,
		                     flags, mode, true, rc);
	return rc;
}
