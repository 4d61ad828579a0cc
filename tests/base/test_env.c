/*
 * tests/base/test_env.c - base/env.h: omni__env_merge() keeps the base
 * entries in order, drops those an extra entry overrides (so a name never
 * appears twice), appends the extras in order, matches whole names only,
 * and takes NULL for either list; omni__env_secret() names the
 * credentials a host command must not inherit, and omni__env_public()
 * leaves them out.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "base/env.h"

TestSuite(env, .fini = omni_test_leak_check, .timeout = 30);

static void check(const char **got, const char *const *want)
{
	size_t i = 0;

	cr_assert_not_null(got);
	for (; want[i]; i++) {
		cr_assert_not_null(got[i], "entry %zu missing (%s)", i,
		                   want[i]);
		cr_assert_str_eq(got[i], want[i], "entry %zu", i);
	}
	cr_assert_null(got[i], "extra entry %s", got[i]);
	free(got);
}

Test(env, extras_override_and_remove_base_entries)
{
	const char *base[] = { "A=1", "PATH=/bin", "B=2", "PATH=/again", NULL };
	const char *extra[] = { "PATH=/usr/bin", "C=3", NULL };
	const char *want[] = { "A=1", "B=2", "PATH=/usr/bin", "C=3", NULL };

	check(omni__env_merge(base, extra), want);
}

Test(env, whole_names_only)
{
	const char *base[] = { "AB=1", "A=2", "ABC=3", NULL };
	const char *extra[] = { "AB=x", NULL };
	const char *want[] = { "A=2", "ABC=3", "AB=x", NULL };

	check(omni__env_merge(base, extra), want);
}

Test(env, entry_without_equals_is_a_name)
{
	const char *base[] = { "LONE", "KEEP", NULL };
	const char *extra[] = { "LONE=now", "KEEP", NULL };
	const char *want[] = { "KEEP", "LONE=now", "KEEP", NULL };

	/* "KEEP" in extra is no "KEEP=..." and replaces nothing. */
	check(omni__env_merge(base, extra), want);
}

Test(env, null_lists)
{
	const char *base[] = { "A=1", NULL };
	const char *none[] = { NULL };

	check(omni__env_merge(NULL, NULL), none);
	check(omni__env_merge(base, NULL), base);
	check(omni__env_merge(NULL, base), base);
	/* The strings are borrowed, not copied. */
	const char **got = omni__env_merge(base, NULL);
	cr_assert_eq(got[0], base[0]);
	free(got);
}

/* --- credentials (issue 11, attack 6) ------------------------------------- */

Test(env, credential_names)
{
	static const char *const secret[] = {
		"E2B_API_KEY=k",
		"E2B_DOMAIN=x",
		"GOOGLE_APPLICATION_CREDENTIALS=/k.json",
		"GOOGLE_OAUTH_ACCESS_TOKEN=t",
		"OMNIAGENTS_GITHUB_API_KEY=k",
		"OMNIAGENTS_GCS_BUCKET=b",
		"AWS_SECRET_ACCESS_KEY=s",
		"AWS_REGION=eu",
		"GITHUB_TOKEN=t",
		"NPM_TOKEN=t",
		"MY_API_KEY=k",
		"DB_SECRET=s",
		"CLIENT_SECRET_FILE=f",
		"GITHUB_TOKEN",
		NULL,
	};
	static const char *const public[] = {
		"PATH=/bin",
		"HOME=/root",
		"TOKEN=not a suffix",
		"MY_TOKENS=plural",
		"github_token=lower case",
		"API_KEY=no underscore before",
		"SECRET=none before",
		"HARMLESS=_SECRET_TOKEN in the value",
		"XE2B_API=prefix only at the start",
		"GITHUB_TOKENS=x",
		NULL,
	};

	for (const char *const *e = secret; *e; e++)
		cr_assert(omni__env_secret(*e), "%s is a credential", *e);
	for (const char *const *e = public; *e; e++)
		cr_assert(!omni__env_secret(*e), "%s is no credential", *e);
}

Test(env, public_keeps_the_rest_in_order)
{
	const char *base[] = { "A=1", "GITHUB_TOKEN=t",
		               "B=2", "X_API_KEY=k",
		               "C=3", NULL };
	const char *want[] = { "A=1", "B=2", "C=3", NULL };
	const char *none[] = { NULL };

	check(omni__env_public(base), want);
	check(omni__env_public(NULL), none);
	/* Extras pass whatever their names: env= and -e are on purpose. */
	const char **pub = omni__env_public(base);
	const char *extra[] = { "GITHUB_TOKEN=x", NULL };
	const char *want2[] = { "A=1", "B=2", "C=3", "GITHUB_TOKEN=x", NULL };
	check(omni__env_merge(pub, extra), want2);
	free(pub);
}
