/*
 * backends/base/runtime.c - the runtime directory, control socket paths, and
 * finding the omnifs mount around a directory (omni/session.h).
 *
 * The mount table is read with base/mountinfo.h; the omnifs mount around
 * a directory is the deepest fuse.omnifs mount whose source is
 * "omnifs:<project>" and whose mount point holds the directory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mountinfo.h"
#include "omni/error.h"
#include "omni/session.h"

int omni_runtime_dir(char *out, size_t size, bool create)
{
	const char *env = getenv("OMNI_RUNTIME_DIR");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	int n;

	if (env && *env)
		n = snprintf(out, size, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(out, size, "%s/omnifs", xdg);
	else
		n = snprintf(out, size, "/tmp/omnifs-%u", (unsigned)getuid());
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG,
		                      "runtime directory: too long");
	if (create && mkdir(out, 0700) < 0 && errno != EEXIST)
		return omni_error_set_errno(-errno, "cannot create %s", out);
	if (lstat(out, &st) < 0)
		return omni_error_set_errno(-errno, "runtime directory %s",
		                            out);
	if (!S_ISDIR(st.st_mode))
		return omni_error_set(
		    -ENOTDIR, "runtime directory %s: not a directory", out);
	if (st.st_uid != getuid())
		return omni_error_set(
		    -EACCES,
		    "runtime directory %s belongs to uid %u, not to you", out,
		    (unsigned)st.st_uid);
	if (st.st_mode & 077) {
		if (!create)
			return omni_error_set(
			    -EACCES,
			    "runtime directory %s is open to others (mode %o)",
			    out, (unsigned)(st.st_mode & 0777));
		if (chmod(out, 0700) < 0)
			return omni_error_set_errno(-errno, "chmod %s", out);
	}
	return 0;
}

int omni_session_socket_path(const char *project_id, char *out, size_t size)
{
	char dir[PATH_MAX];
	int rc = omni_runtime_dir(dir, sizeof(dir), false);

	if (rc < 0)
		return rc;
	/* A Unix socket path must fit sockaddr_un.sun_path (108 bytes). */
	int n = snprintf(out, size, "%s/%s.sock", dir, project_id);
	if (n < 0 || (size_t)n >= size || n >= 108)
		return omni_error_set(
		    -ENAMETOOLONG, "control socket path too long: %s/%s.sock",
		    dir, project_id);
	return 0;
}

/* The deepest omnifs mount that holds a directory. */
struct find {
	const char *real;
	size_t best_len;
	char mp[PATH_MAX], src[PATH_MAX];
};

static int find_one(const struct omni__mount *m, void *payload)
{
	struct find *f = payload;
	size_t ml = strlen(m->point);

	if (strcmp(m->fstype, "fuse.omnifs") != 0 ||
	    strncmp(m->source, "omnifs:", 7) != 0)
		return 0;
	bool inside = strncmp(f->real, m->point, ml) == 0 &&
	              (f->real[ml] == '\0' || f->real[ml] == '/' ||
	               strcmp(m->point, "/") == 0);
	if (!inside || ml < f->best_len)
		return 0;
	f->best_len = ml;
	snprintf(f->mp, sizeof(f->mp), "%s", m->point);
	snprintf(f->src, sizeof(f->src), "%s", m->source + 7);
	return 0;
}

/* The mount around real, a canonical absolute path. */
static int find_real(const char *real, char *project, size_t project_size,
                     char *mountpoint, size_t mountpoint_size, char *rel,
                     size_t rel_size)
{
	struct find f = { .real = real };
	int rc;

	if ((rc = omni__mountinfo_each(find_one, &f)) < 0)
		return rc;
	if (!f.mp[0])
		return omni_error_set(-ENOENT,
		                      "%s is not inside an omnifs mount", real);
	const char *r = real + f.best_len;
	while (*r == '/')
		r++;
	if ((size_t)snprintf(project, project_size, "%s", f.src) >=
	        project_size ||
	    (size_t)snprintf(mountpoint, mountpoint_size, "%s", f.mp) >=
	        mountpoint_size ||
	    (size_t)snprintf(rel, rel_size, "%s", r) >= rel_size)
		return omni_error_set(-ENAMETOOLONG, "path too long");
	return 0;
}

int omni_session_find(const char *dir, char *project, size_t project_size,
                      char *mountpoint, size_t mountpoint_size, char *rel,
                      size_t rel_size)
{
	char real[PATH_MAX];

	if (!realpath(dir, real))
		return omni_error_set_errno(-errno, "%s", dir);
	return find_real(real, project, project_size, mountpoint,
	                 mountpoint_size, rel, rel_size);
}

int omni__session_find_cwd(char *project, size_t project_size, char *mountpoint,
                           size_t mountpoint_size, char *rel, size_t rel_size)
{
	char here[PATH_MAX];

	/* The kernel's path of the directory: canonical already, and
	 * found without a look at the file system (realpath would walk the
	 * mount: a round trip to a remote sandbox after each command). */
	if (!getcwd(here, sizeof(here)))
		return omni_error_set_errno(-errno, "cannot get the current "
		                                    "directory");
	return find_real(here, project, project_size, mountpoint,
	                 mountpoint_size, rel, rel_size);
}
