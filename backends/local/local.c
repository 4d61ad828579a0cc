/*
 * backends/local/local.c - the local backend: a host directory as the
 *workspace.
 *
 * USAGE
 *	omni_local_backend_new(&b, "myproject", NULL);
 *	workspace: $OMNI_DATA_PATH/<project_id>/ (default ./data/<project_id>/),
 *	created on start. get_working_directory() answers that directory as
 *	an absolute path with its symlinks resolved (what `pwd` prints in a
 *	command), as the documented interface says; paths under it, and
 *	"/workspace/..." as an alias, name files in the workspace.
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
#include <stdio.h>
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
	int dir_fd, rc;

	dir_fd =
	    omni__confined_openat(root_of(b), cwd, O_PATH | O_DIRECTORY, 0);
	if (dir_fd < 0) {
		if (dir_fd == -EXDEV)
			return omni_error_set(
			    -EACCES, "exec: %s: leads outside the workspace",
			    cwd);
		return omni_error_set_errno(dir_fd, "exec: directory %s/%s",
		                            b->workdir, cwd);
	}
	if (!(env = local_exec_env(b, &pub))) {
		close(dir_fd);
		return omni_error_set(-ENOMEM, "exec: out of memory");
	}
	rc = omni__proc_exec_spawn(out, b, req, dir_fd,
	                           (const char *const *)env);
	close(dir_fd);
	free(env);
	free(pub);
	return rc;
}

static const struct omni_backend_ops local_ops = {
	OMNI__HOST_BACKEND_OPS,
	.name = "local",
	.start = local_start,
	.shutdown = local_shutdown,
	.destroy = local_destroy,
	.exec_start = local_exec_start,
	.exec_wait = omni__proc_exec_wait,
	.exec_input = omni__proc_exec_input,
	.exec_signal = omni__proc_exec_signal,
	.exec_resize = omni__proc_exec_resize,
	.exec_free = omni__proc_exec_free,
};

/*
 * dir (absolute) with the symlinks of its longest existing ancestor
 * resolved; the part that does not exist yet is appended as it is. Does
 * what realpath() does for a directory that start() has yet to create.
 */
static int resolve_dir(const char *dir, char *out, size_t size)
{
	char head[PATH_MAX], real[PATH_MAX];
	size_t len = strlen(dir);
	int n;

	if (len >= sizeof(head))
		return omni_error_set(-ENAMETOOLONG, "data path too long");
	memcpy(head, dir, len + 1);
	/* Climb to the longest ancestor that exists. */
	while (!realpath(head, real)) {
		char *slash = strrchr(head, '/');
		if (errno != ENOENT || !slash || slash == head) {
			/* Nothing resolvable: keep the path as given. */
			real[0] = '\0';
			len = 0;
			break;
		}
		*slash = '\0';
		len = (size_t)(slash - head);
	}
	n = snprintf(out, size, "%s%s", strcmp(real, "/") ? real : "",
	             dir + len);
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "data path too long");
	return 0;
}

/* Set b->workdir to the workspace's resolved host path (after
 * omni__backend_init, which checked the project id it is built from). */
static int set_workdir(struct omni_backend *b)
{
	char dir[PATH_MAX], workdir[PATH_MAX];
	int rc;

	if ((rc = omni__workspace_host_dir(b, dir, sizeof(dir))) < 0 ||
	    (rc = resolve_dir(dir, workdir, sizeof(workdir))) < 0)
		return rc;
	char *copy = strdup(workdir);
	if (!copy)
		return omni_error_set(-ENOMEM, "local backend: out of memory");
	free(b->workdir);
	b->workdir = copy;
	b->workdir_alias = "/workspace";
	return 0;
}

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
	rc = omni__backend_init(&lb->base, &local_ops, project_id, "/", opts);
	if (rc < 0) {
		free(lb);
		return rc;
	}
	if ((rc = set_workdir(&lb->base)) < 0) {
		omni__backend_finish(&lb->base);
		free(lb);
		return rc;
	}
	*out = &lb->base;
	return 0;
}
