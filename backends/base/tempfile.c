/*
 * backends/base/tempfile.c - an unlinked private temporary file (see
 * tempfile.h).
 *
 * O_TMPFILE first (Linux 3.11, most local filesystems); when the
 * directory's filesystem refuses it, a named file that lives only between
 * mkostemp() and unlink(). Locking: none.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/tempfile.h"

int omni__temp_fd_named(const char *dir, const char *prefix)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/%s-XXXXXX", dir, prefix);

	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

int omni__temp_fd(const char *prefix)
{
	const char *dir = getenv("TMPDIR");

	if (!dir || !*dir)
		dir = "/tmp";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	return omni__temp_fd_named(dir, prefix);
}
