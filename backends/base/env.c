/*
 * backends/base/env.c - merging environment lists, and leaving out the
 * credentials a host command must not inherit (see env.h).
 *
 * Quadratic in the list sizes, which are tens of entries: simpler than a
 * hash and without allocations beyond the result. The credential rule is
 * three small tables (prefixes, suffixes, infixes, plus whole names), so
 * that README.md and this file say the same thing line for line. Locking:
 * none.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/env.h"

/* The length of entry e's name. */
static size_t name_len(const char *e)
{
	const char *eq = strchr(e, '=');

	return eq ? (size_t)(eq - e) : strlen(e);
}

/* Does extra hold "NAME=..." for the name of base entry e? */
static bool overridden(const char *e, const char *const *extra)
{
	size_t klen = name_len(e);

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

/* --- credentials ---------------------------------------------------------- */

/* E2B_API_KEY, GOOGLE_APPLICATION_CREDENTIALS, OMNIAGENTS_GITHUB_API_KEY
 * and the other credentials omnifs reads, and the cloud providers'. */
static const char *const secret_prefix[] = { "E2B_", "GOOGLE_", "OMNIAGENTS_",
	                                     "AWS_" };
static const char *const secret_name[] = { "GITHUB_TOKEN" };
static const char *const secret_suffix[] = { "_TOKEN", "_API_KEY" };
static const char *const secret_infix[] = { "_SECRET" };

#define COUNT(a) (sizeof(a) / sizeof(*(a)))

bool omni__env_secret(const char *entry)
{
	size_t n = name_len(entry);

	for (size_t i = 0; i < COUNT(secret_prefix); i++)
		if (strncmp(entry, secret_prefix[i],
		            strlen(secret_prefix[i])) == 0)
			return true;
	for (size_t i = 0; i < COUNT(secret_name); i++)
		if (n == strlen(secret_name[i]) &&
		    strncmp(entry, secret_name[i], n) == 0)
			return true;
	for (size_t i = 0; i < COUNT(secret_suffix); i++) {
		size_t s = strlen(secret_suffix[i]);
		if (n >= s && strncmp(entry + n - s, secret_suffix[i], s) == 0)
			return true;
	}
	for (size_t i = 0; i < COUNT(secret_infix); i++) {
		const char *hit = strstr(entry, secret_infix[i]);
		if (hit && (size_t)(hit - entry) + strlen(secret_infix[i]) <= n)
			return true;
	}
	return false;
}

const char **omni__env_public(const char *const *base)
{
	size_t n = 0, k = 0;

	for (const char *const *x = base; x && *x; x++)
		n++;
	const char **env = calloc(n + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (const char *const *x = base; x && *x; x++)
		if (!omni__env_secret(*x))
			env[k++] = *x;
	env[k] = NULL;
	return env;
}
