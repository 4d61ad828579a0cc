/*
 * backends/base/runtime.c - the runtime directory, control socket paths, and
 * finding the omnifs mount around a directory (omni/session.h).
 *
 * The mount table is read from /proc/self/mountinfo: field 5 is the mount
 * point, and after the " - " separator come the file system type and the
 * source. Octal escapes (\040 for a space) in both are decoded.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Decode mountinfo's octal escapes in place. */
static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' &&
		    r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 +
			              (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

int omni_session_find(const char *dir, char *project, size_t project_size,
                      char *mountpoint, size_t mountpoint_size, char *rel,
                      size_t rel_size)
{
	char real[PATH_MAX], best_mp[PATH_MAX] = "", best_src[PATH_MAX] = "";
	size_t best_len = 0;
	char *line = NULL;
	size_t cap = 0;
	FILE *f;

	if (!realpath(dir, real))
		return omni_error_set_errno(-errno, "%s", dir);
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return omni_error_set_errno(-errno, "/proc/self/mountinfo");
	while (getline(&line, &cap, f) > 0) {
		char *fields[6] = { 0 }, *save = NULL, *p = line;
		int i;

		for (i = 0; i < 5; i++, p = NULL)
			if (!(fields[i] = strtok_r(p, " ", &save)))
				break;
		if (i < 5)
			continue;
		char *sep = strstr(save ? save : "", " - ");
		if (!sep)
			continue;
		char *fstype = strtok_r(sep + 3, " ", &save);
		char *source = strtok_r(NULL, " ", &save);
		if (!fstype || !source || strcmp(fstype, "fuse.omnifs") != 0)
			continue;
		char *mp = fields[4];
		unescape(mp);
		unescape(source);
		size_t ml = strlen(mp);
		bool inside = strncmp(real, mp, ml) == 0 &&
		              (real[ml] == '\0' || real[ml] == '/' ||
		               strcmp(mp, "/") == 0);
		if (!inside || ml < best_len || strncmp(source, "omnifs:", 7))
			continue;
		best_len = ml;
		snprintf(best_mp, sizeof(best_mp), "%s", mp);
		snprintf(best_src, sizeof(best_src), "%s", source + 7);
	}
	free(line);
	fclose(f);
	if (!best_mp[0])
		return omni_error_set(-ENOENT,
		                      "%s is not inside an omnifs mount", real);
	const char *r = real + best_len;
	while (*r == '/')
		r++;
	if ((size_t)snprintf(project, project_size, "%s", best_src) >=
	        project_size ||
	    (size_t)snprintf(mountpoint, mountpoint_size, "%s", best_mp) >=
	        mountpoint_size ||
	    (size_t)snprintf(rel, rel_size, "%s", r) >= rel_size)
		return omni_error_set(-ENAMETOOLONG, "path too long");
	return 0;
}
