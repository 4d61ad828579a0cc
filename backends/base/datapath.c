/*
 * backends/base/datapath.c - resolving the data path (see datapath.h).
 *
 * Purely textual apart from getcwd(): the folder need not exist yet (the
 * backends create it) and symlinks in it are kept. Locking: none; reads
 * the environment, so call it before starting threads that change it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/datapath.h"
#include "omni/error.h"

int omni__data_path(const char *given, char *out, size_t size)
{
	const char *base = given;
	char cwd[PATH_MAX];
	int n;

	if (!base || !*base)
		base = getenv("OMNI_DATA_PATH");
	if (!base || !*base)
		base = "./data";
	if (base[0] == '/') {
		n = snprintf(out, size, "%s", base);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return omni_error_set_errno(-errno, "getcwd");
		if (base[0] == '.' && base[1] == '/')
			base += 2;
		n = snprintf(out, size, "%s/%s", cwd, base);
	}
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "data path too long");
	return 0;
}
