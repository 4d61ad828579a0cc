/*
 * backends/core/backend.c - the one place that calls through a backend's ops
 * table.
 *
 * It holds the table of backend names, the common part of every instance
 * (project id, working directory, options, state manager, status), the
 * session's life (start loads the newest snapshot, shutdown saves one),
 * and the thin omni_vfs_* wrappers of omni/vfs.h. A NULL slot becomes
 * -ENOSYS with a message naming the backend and the operation, as FUSE
 * itself does for a missing operation. The documented file and directory
 * calls built on these wrappers are in api.c.
 *
 * Locking: the status is guarded by b->lock; everything else is either
 * set before the session starts or belongs to the backend.
 */
#include <errno.h>
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
#include "omni/state.h"
#include "core/registry.h"

/* --- registry ------------------------------------------------------------- */

static const struct {
	const char *name;
	int (*create)(struct omni_backend **out, const char *project_id,
	              const struct omni_backend_options *opts,
	              struct omni_state *state);
} backend_table[] = {
	{ "local", omni__local_backend_open },
	{ "docker", omni__docker_backend_open },
	{ "e2b", omni__e2b_backend_open },
};

static const char *const backend_names[] = { "local", "docker", "e2b", NULL };

const char *const *omni_backend_names(void)
{
	return backend_names;
}

int omni_backend_new(struct omni_backend **out, const char *name,
                     const char *project_id,
                     const struct omni_backend_options *opts,
                     struct omni_state *state)
{
	*out = NULL;
	for (size_t i = 0; i < sizeof(backend_table) / sizeof(*backend_table);
	     i++) {
		if (strcmp(backend_table[i].name, name ? name : "") == 0)
			return backend_table[i].create(out, project_id, opts,
			                               state);
	}
	omni_state_free(state);
	return omni_error_set(
	    -EINVAL, "unknown backend '%s' (known: local, docker, e2b)",
	    name ? name : "");
}

int omni_local_backend_new(struct omni_backend **out, const char *project_id,
                           struct omni_state *state)
{
	return omni__local_backend_open(out, project_id, NULL, state);
}

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

int omni__backend_init(struct omni_backend *b,
                       const struct omni_backend_ops *ops,
                       const char *project_id, const char *workdir,
                       const struct omni_backend_options *opts,
                       struct omni_state *state)
{
	struct omni_backend_options defaults = OMNI_BACKEND_OPTIONS_INIT;
	bool failed = false;
	int rc;

	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	if (!ops || ops->version < 1 ||
	    ops->version > OMNI_BACKEND_OPS_VERSION || !ops->stat ||
	    !ops->destroy) {
		omni_state_free(state);
		return omni_error_set(-EINVAL, "backend: bad operations table");
	}
	if (!omni_project_id_valid(project_id)) {
		omni_state_free(state);
		return omni_error_set(
		    -EINVAL,
		    "invalid project id '%s': use 1-128 of A-Z a-z 0-9 . _ -",
		    project_id ? project_id : "");
	}
	if (!state && (rc = omni_state_noop(&state)) < 0)
		return rc;
	b->ops = ops;
	b->state = state;
	b->status = OMNI_STATUS_UNINITIALIZED;
	if (!opts)
		opts = &defaults;
	b->opts = *opts;
	b->opts.version = OMNI_BACKEND_OPTIONS_VERSION;
	b->project_id = dup_opt(project_id, &failed);
	b->workdir = dup_opt(workdir, &failed);
	b->opts.data_path = dup_opt(opts->data_path, &failed);
	b->opts.image = dup_opt(opts->image, &failed);
	b->opts.network = dup_opt(opts->network, &failed);
	b->opts.e2b_template = dup_opt(opts->e2b_template, &failed);
	b->opts.env = NULL;
	if (opts->env) {
		size_t n = 0;
		while (opts->env[n])
			n++;
		const char **env = calloc(n + 1, sizeof(*env));
		if (!env)
			failed = true;
		for (size_t i = 0; env && i < n; i++)
			env[i] = dup_opt(opts->env[i], &failed);
		b->opts.env = env;
	}
	if (failed) {
		omni__backend_finish(b);
		return omni_error_set(-ENOMEM, "backend: out of memory");
	}
	return 0;
}

void omni__backend_finish(struct omni_backend *b)
{
	omni_state_free(b->state);
	b->state = NULL;
	free(b->project_id);
	free(b->workdir);
	free((char *)b->opts.data_path);
	free((char *)b->opts.image);
	free((char *)b->opts.network);
	free((char *)b->opts.e2b_template);
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

/* --- life of a session ---------------------------------------------------- */

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

struct omni_state *omni_backend_state(struct omni_backend *b)
{
	return b->state;
}

static void set_status(struct omni_backend *b, enum omni_status s)
{
	pthread_mutex_lock(&b->lock);
	b->status = s;
	pthread_mutex_unlock(&b->lock);
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

int omni_backend_start(struct omni_backend *b)
{
	int rc;

	if (omni_backend_get_status(b) == OMNI_STATUS_RUNNING)
		return 0;
	if (b->ops->start && (rc = b->ops->start(b)) < 0)
		return rc;
	set_status(b, OMNI_STATUS_RUNNING);
	rc = omni_state_load_latest(b->state, b);
	if (rc < 0) {
		/* Never run on a half-restored workspace. */
		struct omni__error_saved saved;
		omni__error_save(&saved);
		if (b->ops->shutdown)
			b->ops->shutdown(b);
		set_status(b, OMNI_STATUS_STOPPED);
		return omni_error_set(rc, "loading the latest snapshot: %s",
		                      saved.msg);
	}
	omni_log(OMNI_LOG_DEBUG, "%s session '%s' started (%s)", b->ops->name,
	         b->project_id, rc > 0 ? "snapshot loaded" : "no snapshot");
	return 0;
}

int omni_backend_shutdown(struct omni_backend *b)
{
	int rc = 0, src;
	struct omni__error_saved saved = { .code = 0 };

	pthread_mutex_lock(&b->lock);
	bool running = b->status == OMNI_STATUS_RUNNING;
	pthread_mutex_unlock(&b->lock);
	if (!running)
		return 0;
	src = omni_state_save(b->state, b, "session shutdown", NULL);
	if (src < 0)
		omni__error_save(&saved);
	if (b->ops->shutdown)
		rc = b->ops->shutdown(b);
	set_status(b, OMNI_STATUS_STOPPED);
	if (src < 0)
		return omni_error_set(src, "saving the snapshot: %s",
		                      saved.msg);
	return rc;
}

void omni_backend_free(struct omni_backend *b)
{
	if (!b)
		return;
	omni_backend_shutdown(b);
	b->ops->destroy(b);
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

int omni_vfs_path(struct omni_backend *b, const char *in, char *out,
                  size_t out_size)
{
	return omni_path_normalize(b->workdir, in, out, out_size);
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
	CALL(b, mkdir, "mkdir", b, path, mode);
}

int omni_vfs_rmdir(struct omni_backend *b, const char *path)
{
	CALL(b, rmdir, "rmdir", b, path);
}

int omni_vfs_unlink(struct omni_backend *b, const char *path)
{
	CALL(b, unlink, "unlink", b, path);
}

int omni_vfs_rename(struct omni_backend *b, const char *from, const char *to,
                    unsigned int flags)
{
	CALL(b, rename, "rename", b, from, to, flags);
}

int omni_vfs_symlink(struct omni_backend *b, const char *target,
                     const char *path)
{
	CALL(b, symlink, "symlink", b, target, path);
}

ssize_t omni_vfs_readlink(struct omni_backend *b, const char *path, char *buf,
                          size_t size)
{
	CALL(b, readlink, "readlink", b, path, buf, size);
}

int omni_vfs_link(struct omni_backend *b, const char *from, const char *to)
{
	CALL(b, link, "link", b, from, to);
}

int omni_vfs_chmod(struct omni_backend *b, const char *path, mode_t mode)
{
	CALL(b, chmod, "chmod", b, path, mode);
}

int omni_vfs_chown(struct omni_backend *b, const char *path, uid_t uid,
                   gid_t gid)
{
	CALL(b, chown, "chown", b, path, uid, gid);
}

int omni_vfs_utimens(struct omni_backend *b, const char *path,
                     const struct timespec ts[2])
{
	CALL(b, utimens, "utimens", b, path, ts);
}

int omni_vfs_truncate(struct omni_backend *b, const char *path, off_t size)
{
	CALL(b, truncate, "truncate", b, path, size);
}

int omni_vfs_statfs(struct omni_backend *b, struct statvfs *st)
{
	CALL(b, statfs, "statfs", b, st);
}

int omni_vfs_open(struct omni_backend *b, const char *path, int flags,
                  mode_t mode, struct omni_file **out)
{
	*out = NULL;
	CALL(b, open, "open", b, path, flags, mode, out);
}

ssize_t omni_vfs_read(struct omni_file *f, void *buf, size_t size, off_t off)
{
	FCALL(f, read, "read", f, buf, size, off);
}

ssize_t omni_vfs_write(struct omni_file *f, const void *buf, size_t size,
                       off_t off)
{
	FCALL(f, write, "write", f, buf, size, off);
}

int omni_vfs_fstat(struct omni_file *f, struct stat *st)
{
	FCALL(f, fstat, "fstat", f, st);
}

int omni_vfs_ftruncate(struct omni_file *f, off_t size)
{
	FCALL(f, ftruncate, "ftruncate", f, size);
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
	return f->backend->ops->release(f);
}

int omni_vfs_exec_start(struct omni_backend *b,
                        const struct omni_exec_request *req,
                        struct omni_exec **out)
{
	*out = NULL;
	CALL(b, exec_start, "running commands", b, req, out);
}

int omni_vfs_exec_wait(struct omni_exec *e, omni_output_cb cb, void *payload,
                       struct omni_exec_status *status)
{
	FCALL(e, exec_wait, "exec wait", e, cb, payload, status);
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
	if (e)
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
