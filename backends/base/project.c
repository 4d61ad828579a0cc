/*
 * backends/base/project.c - what a project id may be. Apart from the rest of
 * backend.c so that omni-exec can link it without the backends and their
 * libraries.
 */
#include <stdbool.h>
#include <string.h>

#include "omni/backend.h"

bool omni_project_id_valid(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > 128 || strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = id[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		          c == '-';
		if (!ok)
			return false;
	}
	return true;
}
