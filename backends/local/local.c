/*
 * backends/local/local.c - the local backend: a host directory as the
 *workspace.
 *
 * USAGE
 *	omni_local_backend_new(&b, "myproject", NULL);
 *	workspace: $OMNI_DATA_PATH/<project_id>/ (default ./data/<project_id>/),
 *	created on start. get_working_directory() answers "/workspace", and
 *	"/workspace/..." paths map into the workspace.
 *
 * Files go through confined.c (openat2 beneath the workspace), so no path
 * or symlink escapes it. Commands run on the host, in the workspace (or
 * a directory in it), with /bin/sh -c or an argv, each in its own process
 * group (proc.c), with the caller's environment minus the credentials
 * (base/env.h: E2B_*, GOOGLE_*, *_TOKEN, ...) plus env= and the request's
 * own variables. There is no isolation: a command itself may touch
 * anything its user can.
 *
 * Locking: none needed. The root descriptor is set by start and cleared by
 * shutdown, which run with nothing else in flight; every other call only
 * reads it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/env.h"
#include "core/confined.h"
#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/proc.h"
#include "core/registry.h"

extern char **environ;

struct local_exec {
	struct omni_exec base;
	struct omni_proc *proc;
};

static struct omni__confined *root_of(struct omni_backend *b)
{
	return &((struct omni__host_backend *)b)->root;
}

static int local_start(struct omni_backend *b)
{
	char dir[PATH_MAX];
	int rc = omni__workspace_host_dir(b, dir, sizeof(dir));

	if (rc < 0)
		return rc;
	return omni__confined_open(root_of(b), dir);
}

static int local_shutdown(struct omni_backend *b)
{
	omni__confined_close(root_of(b));
	return 0;
}

static void local_destroy(struct omni_backend *b)
{
	struct omni__host_backend *lb = (struct omni__host_backend *)b;

	omni__confined_close(&lb->root);
	omni__backend_finish(b);
	free(lb);
}

/* --- commands ------------------------------------------------------------- */

/*
 * The environment a command starts from: the daemon's own without its
 * credentials (base/env.h), with the session's env= on top (those pass
 * whatever their names). The request's variables go on top of that in
 * proc.c. A malloc'd array of borrowed strings; *pub is freed with it.
 */
static const char **local_exec_env(struct omni_backend *b, const char ***pub)
{
	*pub = omni__env_public((const char *const *)environ);
	if (!*pub)
		return NULL;
	const char **env = omni__env_merge(*pub, b->opts.env);
	if (!env) {
		free(*pub);
		*pub = NULL;
	}
	return env;
}

static int local_exec_start(struct omni_backend *b,
                            const struct omni_exec_request *req,
                            struct omni_exec **out)
{
	const char *cwd = req->cwd ? req->cwd : "";
	const char **pub = NULL, **env = NULL;
	struct local_exec *e;
	int dir_fd, rc;

	dir_fd =
	    omni__confined_openat(root_of(b), cwd, O_PATH | O_DIRECTORY, 0);
	if (dir_fd < 0) {
		if (dir_fd == -EXDEV)
			return omni_error_set(
			    -EACCES, "exec: %s: leads outside the workspace",
			    cwd);
		return omni_error_set_errno(
		    dir_fd, "exec: directory /workspace/%s", cwd);
	}
	e = calloc(1, sizeof(*e));
	if (!e || !(env = local_exec_env(b, &pub))) {
		close(dir_fd);
		free(e);
		return omni_error_set(-ENOMEM, "exec: out of memory");
	}
	e->base.backend = b;
	rc = omni_proc_spawn_env(&e->proc, req, dir_fd, env);
	close(dir_fd);
	free(env);
	free(pub);
	if (rc < 0) {
		free(e);
		return rc;
	}
	*out = &e->base;
	return 0;
}

static struct omni_proc *proc_of(struct omni_exec *e)
{
	return ((struct local_exec *)e)->proc;
}

static int local_exec_wait(struct omni_exec *e, omni_output_cb cb,
                           void *payload, struct omni_exec_status *status)
{
	return omni_proc_wait(proc_of(e), cb, payload, status);
}

static int local_exec_input(struct omni_exec *e, const void *data, size_t len)
{
	return omni_proc_input(proc_of(e), data, len);
}

static int local_exec_signal(struct omni_exec *e, int sig)
{
	return omni_proc_signal(proc_of(e), sig);
}

static int local_exec_resize(struct omni_exec *e, unsigned short rows,
                             unsigned short cols)
{
	return omni_proc_resize(proc_of(e), rows, cols);
}

static void local_exec_free(struct omni_exec *e)
{
	omni_proc_free(proc_of(e));
	free(e);
}

static const struct omni_backend_ops local_ops = {
	.version = OMNI_BACKEND_OPS_VERSION,
	.name = "local",
	.caps = OMNI_CAP_HARDLINKS | OMNI_CAP_FILE_FD | OMNI_CAP_TTY,
	.start = local_start,
	.shutdown = local_shutdown,
	.destroy = local_destroy,
	OMNI_HOST_FILE_OPS,
	.exec_start = local_exec_start,
	.exec_wait = local_exec_wait,
	.exec_input = local_exec_input,
	.exec_signal = local_exec_signal,
	.exec_resize = local_exec_resize,
	.exec_free = local_exec_free,
};

int omni__local_backend_open(struct omni_backend **out, const char *project_id,
                             const struct omni_backend_options *opts)
{
	const struct omni_backend_options_head *own;
	struct omni__host_backend *lb;
	int rc;

	*out = NULL;
	/* The local backend has no options of its own. */
	if ((rc = omni__backend_own_options(opts, "local", 0, &own)) < 0)
		return rc;
	if (!(lb = calloc(1, sizeof(*lb))))
		return omni_error_set(-ENOMEM, "local backend: out of memory");
	lb->root.root_fd = -1;
	rc = omni__backend_init(&lb->base, &local_ops, project_id, "/workspace",
	                        opts);
	if (rc < 0) {
		free(lb);
		return rc;
	}
	*out = &lb->base;
	return 0;
}
