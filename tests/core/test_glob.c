/*
 * tests/core/test_glob.c - omni_backend_glob_files() on the local backend and
 * the segment matcher omni__glob_match() (backends/api.h) on its own.
 *
 * The tree every glob test starts from:
 *
 *	.hidden.c  a.c  b.c  c.h  x1  x2  xa
 *	abc/                      (an empty directory named like a file)
 *	docs/a.c
 *	src/main.c  src/readme.md
 *	src/util/str.c
 *	src/util/deep/x.c
 *
 * Checked: '*', '?', '[abc]', '[!a]', '[^a]', '[a-c]', '**' at several
 * depths, a trailing '**', absolute '/workspace/...' patterns, sorting,
 * files only, dotfiles, a search directory, no duplicates, '..' refused,
 * a symlink loop that does not hang.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "core/api.h"
#include "helpers.h"

static struct omni_fixture fx;

static void put(const char *rel)
{
	omni_assert_ok(omni_backend_write_file(fx.b, rel, rel, strlen(rel)));
}

static void setup(void)
{
	static const char *const files[] = {
		".hidden.c",
		"a.c",
		"b.c",
		"c.h",
		"x1",
		"x2",
		"xa",
		"docs/a.c",
		"src/main.c",
		"src/readme.md",
		"src/util/str.c",
		"src/util/deep/x.c",
	};

	omni_fixture_start(&fx);
	for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++)
		put(files[i]);
	omni_assert_ok(omni_backend_create_directory(fx.b, "abc", false));
}

static void teardown(void)
{
	omni_fixture_finish(&fx);
}

TestSuite(glob, .init = setup, .fini = teardown, .timeout = 30);

/* Glob and compare with the NULL-terminated list of expected paths. */
static void expect_glob(const char *pattern, const char *path, ...)
{
	struct omni_str_list l;
	const char *want[64];
	size_t n = 0;
	va_list ap;

	va_start(ap, path);
	for (const char *w; (w = va_arg(ap, const char *)) != NULL;)
		want[n++] = w;
	va_end(ap);

	omni_error_clear();
	int rc = omni_backend_glob_files(fx.b, pattern, path, &l);
	cr_assert_eq(rc, 0, "glob(%s, %s): %d %s", pattern, path ? path : "",
	             rc, omni_error_last());
	char got[4096] = "";
	for (size_t i = 0; i < l.count; i++) {
		strncat(got, l.items[i], sizeof(got) - strlen(got) - 2);
		strcat(got, " ");
	}
	cr_assert_eq(l.count, n, "glob(%s, %s): %zu results, expected %zu: %s",
	             pattern, path ? path : "", l.count, n, got);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_eq(l.items[i], want[i],
		                 "glob(%s): item %zu of: %s", pattern, i, got);
	omni_str_list_finish(&l);
	cr_assert_null(l.items);
	cr_assert_eq(l.count, 0);
}

Test(glob, star)
{
	/* Files only (not src/, docs/, abc/), dotfiles too, sorted. */
	expect_glob("*", NULL, ".hidden.c", "a.c", "b.c", "c.h", "x1", "x2",
	            "xa", NULL);
	expect_glob("*.c", NULL, ".hidden.c", "a.c", "b.c", NULL);
	expect_glob("*.md", NULL, NULL);
	expect_glob("x*", "", "x1", "x2", "xa", NULL);
	expect_glob("*a*", NULL, "a.c", "xa", NULL);
}

Test(glob, question_mark)
{
	expect_glob("x?", NULL, "x1", "x2", "xa", NULL);
	expect_glob("?.?", NULL, "a.c", "b.c", "c.h", NULL);
	expect_glob("??", NULL, "x1", "x2", "xa", NULL);
	expect_glob("???", NULL, "a.c", "b.c", "c.h", NULL);
}

Test(glob, brackets)
{
	expect_glob("[abc].c", NULL, "a.c", "b.c", NULL);
	expect_glob("[!a].c", NULL, "b.c", NULL);
	expect_glob("[^a].c", NULL, "b.c", NULL);
	expect_glob("[a-c].?", NULL, "a.c", "b.c", "c.h", NULL);
	expect_glob("x[0-9]", NULL, "x1", "x2", NULL);
	expect_glob("x[!0-9]", NULL, "xa", NULL);
	expect_glob("[c].[ch]", NULL, "c.h", NULL);
}

Test(glob, globstar_at_depths)
{
	expect_glob("**/*.c", NULL, ".hidden.c", "a.c", "b.c", "docs/a.c",
	            "src/main.c", "src/util/deep/x.c", "src/util/str.c", NULL);
	expect_glob("src/**/*.c", NULL, "src/main.c", "src/util/deep/x.c",
	            "src/util/str.c", NULL);
	expect_glob("src/util/**/*.c", NULL, "src/util/deep/x.c",
	            "src/util/str.c", NULL);
	expect_glob("**/deep/*.c", NULL, "src/util/deep/x.c", NULL);
	expect_glob("**/util/**/x.c", NULL, "src/util/deep/x.c", NULL);
	expect_glob("*/*.c", NULL, "docs/a.c", "src/main.c", NULL);
	expect_glob("*/*/*.c", NULL, "src/util/str.c", NULL);
	expect_glob("**/a.c", NULL, "a.c", "docs/a.c", NULL);
}

Test(glob, trailing_globstar_means_everything_below)
{
	expect_glob("src/**", NULL, "src/main.c", "src/readme.md",
	            "src/util/deep/x.c", "src/util/str.c", NULL);
	expect_glob("docs/**", NULL, "docs/a.c", NULL);
	expect_glob("abc/**", NULL, NULL);
	expect_glob("**", "src/util", "deep/x.c", "str.c", NULL);
}

Test(glob, absolute_patterns)
{
	struct omni_str_list l;

	expect_glob("/workspace/src/*.c", NULL, "src/main.c", NULL);
	expect_glob("/workspace/**/x.c", NULL, "src/util/deep/x.c", NULL);
	omni_assert_err(omni_backend_glob_files(fx.b, "/etc/*", NULL, &l),
	                -EACCES);
	omni_assert_err(
	    omni_backend_glob_files(fx.b, "/workspacex/*", NULL, &l), -EACCES);
	cr_assert_eq(l.count, 0);
}

Test(glob, relative_to_a_directory)
{
	expect_glob("*.c", "src", "main.c", NULL);
	expect_glob("*.c", "/workspace/src", "main.c", NULL);
	expect_glob("**/*.c", "src/util", "deep/x.c", "str.c", NULL);
	expect_glob("*", "src/util/deep", "x.c", NULL);
	expect_glob("*.c", "./src/../docs", "a.c", NULL);
	/* A directory that is not there holds no matches. */
	expect_glob("*", "nowhere", NULL);
	/* Patterns with "." segments. */
	expect_glob("./src/./*.c", NULL, "src/main.c", NULL);
}

Test(glob, no_duplicates)
{
	expect_glob("src/**/**/x.c", NULL, "src/util/deep/x.c", NULL);
	expect_glob("**/**/*.md", NULL, "src/readme.md", NULL);
	/* Two separate '**' can reach one file in several ways. */
	expect_glob("**/*/**/x.c", NULL, "src/util/deep/x.c", NULL);
	expect_glob("**/*/**/*.c", NULL, "docs/a.c", "src/main.c",
	            "src/util/deep/x.c", "src/util/str.c", NULL);
}

Test(glob, dotdot_is_refused)
{
	struct omni_str_list l;

	omni_assert_err(omni_backend_glob_files(fx.b, "../*", NULL, &l),
	                -EACCES);
	omni_assert_err(omni_backend_glob_files(fx.b, "src/../*", NULL, &l),
	                -EACCES);
	omni_assert_err(omni_backend_glob_files(fx.b, "**/..", NULL, &l),
	                -EACCES);
	omni_assert_err(
	    omni_backend_glob_files(fx.b, "/workspace/../x", NULL, &l),
	    -EACCES);
	omni_assert_err(omni_backend_glob_files(fx.b, "*", "..", &l), -EACCES);
	omni_assert_err(omni_backend_glob_files(fx.b, "*", "/etc", &l),
	                -EACCES);
	cr_assert_null(l.items);
}

Test(glob, bad_patterns)
{
	struct omni_str_list l;

	omni_assert_err(omni_backend_glob_files(fx.b, "", NULL, &l), -EINVAL);
	omni_assert_err(omni_backend_glob_files(fx.b, NULL, NULL, &l), -EINVAL);
	omni_assert_err(omni_backend_glob_files(fx.b, "///", NULL, &l),
	                -EACCES);
	omni_assert_err(omni_backend_glob_files(fx.b, "./.", NULL, &l),
	                -EINVAL);
	/* An unterminated '[' is literal. */
	put("[odd");
	expect_glob("[odd", NULL, "[odd", NULL);
	expect_glob("[o*", NULL, "[odd", NULL);
}

Test(glob, symlink_loop_does_not_hang)
{
	char host[PATH_MAX];
	long long t0 = omni_test_now_ms();

	omni_test_host_path(&fx, "src/loop", host, sizeof(host));
	cr_assert_eq(symlink(".", host), 0);
	omni_test_host_path(&fx, "src/util/back", host, sizeof(host));
	cr_assert_eq(symlink("..", host), 0);
	/* Links to directories are not descended into. */
	expect_glob("**/*.c", "src", "main.c", "util/deep/x.c", "util/str.c",
	            NULL);
	expect_glob("src/**/x.c", NULL, "src/util/deep/x.c", NULL);
	cr_assert_lt(omni_test_now_ms() - t0, 5000);
}

Test(glob, many_files_sorted)
{
	char name[32];
	struct omni_str_list l;

	for (int i = 99; i >= 0; i--) {
		snprintf(name, sizeof(name), "many/f%02d.txt", i);
		put(name);
	}
	omni_assert_ok(omni_backend_glob_files(fx.b, "many/*.txt", NULL, &l));
	cr_assert_eq(l.count, 100);
	for (size_t i = 1; i < l.count; i++)
		cr_assert_lt(strcmp(l.items[i - 1], l.items[i]), 0);
	omni_str_list_finish(&l);
}

/* --- the matcher ---------------------------------------------------------- */

struct match_case {
	char pattern[16];
	char name[16];
	bool match;
};

ParameterizedTestParameters(glob, match)
{
	static struct match_case cases[] = {
		{ "", "", true },
		{ "", "a", false },
		{ "a", "", false },
		{ "*", "", true },
		{ "*", "abc", true },
		{ "*", ".hidden", true },
		{ "**", "abc", true },
		{ "a*", "a", true },
		{ "a*c", "abbbc", true },
		{ "a*c", "abcd", false },
		{ "*a", "bba", true },
		{ "a*b*c", "aXbYc", true },
		{ "a*b*c", "aXbY", false },
		{ "*.c", ".hidden.c", true },
		{ "*.c", "a.h", false },
		{ "?", "", false },
		{ "?", "a", true },
		{ "?", "ab", false },
		{ "??", "ab", true },
		{ "a", "ab", false },
		{ "ab", "a", false },
		{ "[abc]", "b", true },
		{ "[abc]", "d", false },
		{ "[!abc]", "b", false },
		{ "[!abc]", "d", true },
		{ "[^abc]", "d", true },
		{ "[a-c]", "c", true },
		{ "[a-c]", "d", false },
		{ "[a-c]", "-", false },
		{ "[!a-c]x", "dx", true },
		{ "[]]", "]", true },
		{ "[!]]", "a", true },
		{ "[!]]", "]", false },
		{ "[a-]", "-", true },
		{ "[\\]]", "]", true },
		{ "\\*", "*", true },
		{ "\\*", "a", false },
		{ "\\?", "?", true },
		{ "[", "[", true },
		{ "[ab", "[ab", true },
		{ "[ab", "a", false },
		{ "*[0-9]", "file7", true },
		{ "*[0-9]", "file", false },
		{ "x[0-9][0-9]", "x42", true },
	};

	return cr_make_param_array(struct match_case, cases,
	                           sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct match_case *c, glob, match)
{
	bool got = omni__glob_match(c->pattern, strlen(c->pattern), c->name);

	cr_assert_eq(got, c->match, "match(\"%s\", \"%s\") = %d", c->pattern,
	             c->name, got);
}

Test(glob, match_uses_only_plen_bytes)
{
	/* The pattern is a segment of a longer string. */
	const char *pat = "abc/def";

	cr_assert(omni__glob_match(pat, 3, "abc"));
	cr_assert_not(omni__glob_match(pat, 3, "abc/def"));
	cr_assert(omni__glob_match("*.c/rest", 3, "x.c"));
	cr_assert(omni__glob_match("[ab]/x", 4, "a"));
	/* A bracket cut by plen is unterminated, hence literal. */
	cr_assert(omni__glob_match("[ab]", 3, "[ab"));
}
