/*
 * backends/base/path.c - turn a user's path into a workspace-relative one.
 *
 * The documented interface accepts "/workspace/src/a.c", "src/a.c" and
 * "./src/../src/a.c" alike. This is purely lexical: ".." is resolved
 * against the components seen so far and may not climb above the root.
 * Symlinks are the backends' business (the local backend resolves beneath
 * its root with openat2).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "omni/error.h"
#include "omni/vfs.h"

int omni_path_normalize(const char *workdir, const char *in, char *out,
                        size_t out_size)
{
	size_t wlen = workdir ? strlen(workdir) : 0;
	const char *p = in ? in : "";
	size_t len = 0;

	if (out_size == 0)
		return -ENAMETOOLONG;
	while (wlen > 1 && workdir[wlen - 1] == '/')
		wlen--;
	if (p[0] == '/') {
		if (wlen == 0 || strncmp(p, workdir, wlen) != 0 ||
		    (p[wlen] != '\0' && p[wlen] != '/'))
			return omni_error_set(-EACCES,
			                      "%s: outside the workspace %s",
			                      in, workdir ? workdir : "");
		p += wlen;
	}

	out[0] = '\0';
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n == 1 && p[0] == '.') {
			/* nothing */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (len == 0)
				return omni_error_set(
				    -EACCES, "%s: leaves the workspace", in);
			char *slash = memrchr(out, '/', len);
			len = slash ? (size_t)(slash - out) : 0;
			out[len] = '\0';
		} else {
			size_t need = len + (len ? 1 : 0) + n + 1;
			if (need > out_size)
				return omni_error_set(-ENAMETOOLONG,
				                      "%s: path too long", in);
			if (len)
				out[len++] = '/';
			memcpy(out + len, p, n);
			len += n;
			out[len] = '\0';
		}
		p += n;
	}
	return 0;
}
