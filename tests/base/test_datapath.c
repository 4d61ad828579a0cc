/*
 * tests/base/test_datapath.c - base/datapath.h: the data path is the given
 * option, else $OMNI_DATA_PATH, else ./data (empty counts as unset), made
 * absolute against the current directory with a leading "./" dropped;
 * too long a result is -ENAMETOOLONG with a message.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "base/datapath.h"

static char cwd[PATH_MAX];
static char *old_env;

static void setup(void)
{
	const char *e = getenv("OMNI_DATA_PATH");

	old_env = e ? strdup(e) : NULL;
	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
}

static void teardown(void)
{
	if (old_env)
		setenv("OMNI_DATA_PATH", old_env, 1);
	else
		unsetenv("OMNI_DATA_PATH");
	free(old_env);
	omni_test_leak_check();
}

TestSuite(datapath, .init = setup, .fini = teardown, .timeout = 30);

static void expect(const char *given, const char *want_rel)
{
	char out[PATH_MAX], want[PATH_MAX];

	if (want_rel[0] == '/')
		omni_test_fmt(want, sizeof(want), "%s", want_rel);
	else
		omni_test_fmt(want, sizeof(want), "%s/%s", cwd, want_rel);
	cr_assert_eq(omni__data_path(given, out, sizeof(out)), 0, "%s",
	             omni_error_last());
	cr_assert_str_eq(out, want, "given %s", given ? given : "(null)");
}

Test(datapath, without_omni_data_path)
{
	unsetenv("OMNI_DATA_PATH");
	expect(NULL, "data");
	expect("", "data");
	expect("/srv/omni", "/srv/omni");
	expect("ws", "ws");
	expect("./ws/x", "ws/x");
	expect("../up", "../up");
}

Test(datapath, with_omni_data_path)
{
	setenv("OMNI_DATA_PATH", "/var/lib/omni", 1);
	expect(NULL, "/var/lib/omni");
	expect("", "/var/lib/omni");
	/* The option wins over the environment. */
	expect("/srv/omni", "/srv/omni");
	expect("./mine", "mine");

	setenv("OMNI_DATA_PATH", "./rel", 1);
	expect(NULL, "rel");
	setenv("OMNI_DATA_PATH", "", 1);
	expect(NULL, "data");
}

Test(datapath, too_long)
{
	char out[16];

	unsetenv("OMNI_DATA_PATH");
	cr_assert_eq(omni__data_path("/a/rather/long/path", out, sizeof(out)),
	             -ENAMETOOLONG);
	cr_assert_str_eq(omni_error_last(), "data path too long");
	cr_assert_eq(omni__data_path("/short", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/short");
}
