/*
 * tests/base/test_env.c - base/env.h: omni__env_merge() keeps the base
 * entries in order, drops those an extra entry overrides (so a name never
 * appears twice), appends the extras in order, matches whole names only,
 * and takes NULL for either list.
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
