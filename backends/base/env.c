/*
 * backends/base/env.c - merging environment lists (see env.h).
 *
 * Quadratic in the list sizes, which are tens of entries: simpler than a
 * hash and without allocations beyond the result. Locking: none.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/env.h"

/* Does extra hold "NAME=..." for the name of base entry e? */
static bool overridden(const char *e, const char *const *extra)
{
	const char *eq = strchr(e, '=');
	size_t klen = eq ? (size_t)(eq - e) : strlen(e);

	for (const char *const *x = extra; x && *x; x++)
		if (strncmp(*x, e, klen) == 0 && (*x)[klen] == '=')
			return true;
	return false;
}

const char **omni__env_merge(const char *const *base, const char *const *extra)
{
	size_t n = 0, k = 0;

	for (const char *const *x = base; x && *x; x++)
		n++;
	for (const char *const *x = extra; x && *x; x++)
		n++;
	const char **env = calloc(n + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (const char *const *x = base; x && *x; x++)
		if (!overridden(*x, extra))
			env[k++] = *x;
	for (const char *const *x = extra; x && *x; x++)
		env[k++] = *x;
	env[k] = NULL;
	return env;
}
