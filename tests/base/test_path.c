/*
 * tests/base/test_path.c - omni_path_normalize() and omni_vfs_path(): user
 * paths (absolute under the working directory or relative to it) become
 * workspace-relative ones; anything that leaves the workspace is -EACCES,
 * anything that does not fit is -ENAMETOOLONG. Purely lexical: symlinks
 * are the backends' business (see test_confine.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "helpers.h"

TestSuite(path, .fini = omni_test_leak_check, .timeout = 30);

/* Arrays, not pointers: Criterion hands the parameters to a worker
 * process that may not share our address space layout. */
struct norm_case {
	char workdir[32];
	char in[48];
	int rc;
	char out[32]; /* expected when rc == 0 */
};

ParameterizedTestParameters(path, normalize)
{
	static struct norm_case cases[] = {
		{ "/workspace", "/workspace/a", 0, "a" },
		{ "/workspace", "/workspace", 0, "" },
		{ "/workspace", "/workspace/", 0, "" },
		{ "/workspace", "/workspace/a/b/c.txt", 0, "a/b/c.txt" },
		{ "/workspace", "a/./b/../c", 0, "a/c" },
		{ "/workspace", "a//b/", 0, "a/b" },
		{ "/workspace", "./x", 0, "x" },
		{ "/workspace", "", 0, "" },
		{ "/workspace", ".", 0, "" },
		{ "/workspace", "a/..", 0, "" },
		{ "/workspace", "a/b/../../c", 0, "c" },
		{ "/workspace", "/workspace/a/../b", 0, "b" },
		{ "/workspace", "...", 0, "..." },
		{ "/workspace", "..a/b..", 0, "..a/b.." },
		{ "/workspace", "../x", -EACCES, "" },
		{ "/workspace", "..", -EACCES, "" },
		{ "/workspace", "a/../..", -EACCES, "" },
		{ "/workspace", "a/../../workspace/a", -EACCES, "" },
		{ "/workspace", "/workspace/..", -EACCES, "" },
		{ "/workspace", "/workspace/../etc", -EACCES, "" },
		{ "/workspace", "/etc/passwd", -EACCES, "" },
		{ "/workspace", "/workspacex/a", -EACCES, "" },
		{ "/workspace", "/workspacex", -EACCES, "" },
		{ "/workspace", "/", -EACCES, "" },
		{ "/tmp/workspace", "/tmp/workspace/x", 0, "x" },
		{ "/tmp/workspace/", "/tmp/workspace/x/", 0, "x" },
		{ "/tmp/workspace", "/tmp/x", -EACCES, "" },
		{ "/tmp/workspace", "x/y", 0, "x/y" },
	};

	return cr_make_param_array(struct norm_case, cases,
	                           sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct norm_case *c, path, normalize)
{
	char out[PATH_MAX];
	int rc;

	omni_error_clear();
	memset(out, 'Z', sizeof(out));
	rc = omni_path_normalize(c->workdir, c->in, out, sizeof(out));
	cr_assert_eq(rc, c->rc, "normalize(%s, \"%s\") gave %d, expected %d",
	             c->workdir, c->in, rc, c->rc);
	if (rc == 0) {
		cr_assert_str_eq(out, c->out, "normalize(%s, \"%s\")",
		                 c->workdir, c->in);
	} else {
		/* A failure says why. */
		cr_assert_str_neq(omni_error_last(), "");
		cr_assert_eq(omni_error_code(), rc);
	}
}

Test(path, null_input_is_the_root)
{
	char out[16] = "junk";

	omni_assert_ok(
	    omni_path_normalize("/workspace", NULL, out, sizeof(out)));
	cr_assert_str_eq(out, "");
}

Test(path, no_workdir_refuses_absolute)
{
	char out[64];

	omni_assert_err(omni_path_normalize(NULL, "/x", out, sizeof(out)),
	                -EACCES);
	omni_assert_ok(omni_path_normalize(NULL, "x/./y", out, sizeof(out)));
	cr_assert_str_eq(out, "x/y");
}

Test(path, long_path_is_enametoolong)
{
	size_t n = PATH_MAX + 100;
	char *in = malloc(n + 1);
	char out[PATH_MAX];

	cr_assert_not_null(in);
	/* "aaaaaaaa/aaaaaaaa/..." longer than the output buffer. */
	for (size_t i = 0; i < n; i++)
		in[i] = (i % 9 == 8) ? '/' : 'a';
	in[n] = '\0';
	omni_assert_err(omni_path_normalize("/workspace", in, out, sizeof(out)),
	                -ENAMETOOLONG);
	free(in);
}

Test(path, exact_fit_and_one_byte_short)
{
	char out[4];

	/* "abc" needs 4 bytes with its NUL. */
	omni_assert_ok(omni_path_normalize("/workspace", "abc", out, 4));
	cr_assert_str_eq(out, "abc");
	omni_assert_err(omni_path_normalize("/workspace", "abcd", out, 4),
	                -ENAMETOOLONG);
	omni_assert_err(omni_path_normalize("/workspace", "ab/c", out, 4),
	                -ENAMETOOLONG);
	omni_assert_err(omni_path_normalize("/workspace", "", out, 0),
	                -ENAMETOOLONG);
}

Test(path, vfs_path_uses_the_backend_workdir)
{
	struct omni_fixture fx;
	char out[PATH_MAX];

	/* omni_vfs_path needs no running session. */
	omni_fixture_new(&fx);
	/* The local backend: its host directory, and "/workspace" too. */
	const char *wd = omni_backend_get_working_directory(fx.b);
	char in[PATH_MAX + 32];
	cr_assert_str_eq(wd, fx.host);
	omni_assert_ok(
	    omni_vfs_path(fx.b, "/workspace/src/../a.c", out, sizeof(out)));
	cr_assert_str_eq(out, "a.c");
	omni_test_fmt(in, sizeof(in), "%s/src/../b.c", wd);
	omni_assert_ok(omni_vfs_path(fx.b, in, out, sizeof(out)));
	cr_assert_str_eq(out, "b.c");
	omni_test_fmt(in, sizeof(in), "%s/../x", wd);
	omni_assert_err(omni_vfs_path(fx.b, in, out, sizeof(out)), -EACCES);
	omni_assert_err(omni_vfs_path(fx.b, "/etc/passwd", out, sizeof(out)),
	                -EACCES);
	omni_assert_err(
	    omni_vfs_path(fx.b, "../../etc/passwd", out, sizeof(out)), -EACCES);
	omni_fixture_finish(&fx);
}
