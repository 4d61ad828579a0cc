/*
 * tests/local/local_helpers.c - the fixture and helpers of the
 * backend_local suite, shared by its files (see local_helpers.h).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "local_helpers.h"

struct omni_fixture local_fx;

void local_setup(void)
{
	omni_fixture_start(&local_fx);
}

void local_teardown(void)
{
	omni_fixture_finish(&local_fx);
}

/* A fixture that is made but not started. Criterion runs the suite's
 * .init before a test's own, so undo the started one first. */
void local_setup_new(void)
{
	omni_fixture_finish(&local_fx);
	omni_fixture_new(&local_fx);
}

/* host path of a workspace-relative name */
const char *local_hp(const char *rel)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ % 4];

	omni_test_host_path(&local_fx, rel, p, PATH_MAX);
	return p;
}

void local_put(const char *rel, const char *text)
{
	omni_assert_ok(
	    omni_backend_write_file(local_fx.b, rel, text, strlen(text)));
}

void local_assert_content(const char *rel, const char *text)
{
	char *data;
	size_t len;

	omni_assert_ok(omni_backend_read_file(local_fx.b, rel, &data, &len));
	cr_assert_eq(len, strlen(text), "%s: %zu bytes, expected %zu", rel, len,
	             strlen(text));
	cr_assert_str_eq(data, text);
	free(data);
}
