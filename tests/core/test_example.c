/*
 * tests/core/test_example.c - the README's C example still builds and works.
 *
 * tests/example/readme_example.c is the program shown in README.md (the
 * two are kept byte-identical). This test compiles it the way a user
 * would, with $CC (default cc) against backends/include and the
 * libomni.a next to the test binary, plus the pkg-config libraries, in a
 * fresh temp directory; runs it there (so ./data/example is created in
 * that directory, with OMNI_DATA_PATH unset); and checks that it prints
 * exactly "Hello\n" and exits 0.
 *
 * The source tree is $OMNI_SOURCE_DIR, else found by walking up from the
 * test binary (helpers.c). A binary built with sanitizers links the
 * example with the same sanitizers, since libomni.a then needs them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"

static char tmp[PATH_MAX];

static void setup(void)
{
	omni_test_mkdtemp(tmp, sizeof(tmp));
}

static void teardown(void)
{
	if (tmp[0])
		omni_test_rm_rf(tmp);
	omni_test_leak_check();
}

TestSuite(example, .init = setup, .fini = teardown, .timeout = 120);

#ifdef OMNI_TEST_ASAN
#define SAN_FLAGS " -fsanitize=address,undefined -fno-omit-frame-pointer"
#else
#define SAN_FLAGS ""
#endif

/* The libomni.a that belongs to this test binary. */
static void find_lib(const char *src, char *out, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			omni_test_fmt(out, size, "%s/libomni.a", exe);
			if (omni_test_host_exists(out))
				return;
		}
	}
	omni_test_fmt(out, size, "%s/build/libomni.a", src);
	cr_assert(omni_test_host_exists(out), "no libomni.a found (%s)", out);
}

static int run_shell(const char *cmd)
{
	int st = system(cmd);

	cr_assert_neq(st, -1, "system(): %s", strerror(errno));
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Test(example, readme_example_prints_hello)
{
	char src[PATH_MAX], lib[PATH_MAX], cmd[4 * PATH_MAX + 512];
	char path[PATH_MAX];
	const char *cc = getenv("CC");
	char *log, *out;
	size_t len;
	int rc;

	if (!cc || !*cc)
		cc = "cc";
	omni_test_source_dir(src, sizeof(src));
	find_lib(src, lib, sizeof(lib));

	omni_test_fmt(cmd, sizeof(cmd),
	              "cd '%s' && %s -Wall -Wextra -Werror"
	              " -I'%s/backends/include'"
	              " '%s/tests/example/readme_example.c' '%s'"
	              " $(pkg-config --libs libcurl libcjson libgit2"
	              " libarchive libcrypto) -pthread" SAN_FLAGS
	              " -o example >build.log 2>&1",
	              tmp, cc, src, src, lib);
	rc = run_shell(cmd);
	if (rc != 0) {
		omni_test_fmt(path, sizeof(path), "%s/build.log", tmp);
		log = omni_test_read_host(path, NULL);
		cr_assert_fail("building the example failed (%d):\n%s", rc,
		               log ? log : "(no log)");
	}

	omni_test_fmt(cmd, sizeof(cmd),
	              "cd '%s' && env -u OMNI_DATA_PATH ./example >out.txt "
	              "2>err.txt",
	              tmp);
	rc = run_shell(cmd);
	omni_test_fmt(path, sizeof(path), "%s/out.txt", tmp);
	out = omni_test_read_host(path, &len);
	omni_test_fmt(path, sizeof(path), "%s/err.txt", tmp);
	log = omni_test_read_host(path, NULL);
	cr_assert_eq(rc, 0, "the example exited %d; stderr:\n%s", rc,
	             log ? log : "");
	cr_assert_not_null(out);
	cr_assert_str_eq(out, "Hello\n", "stdout was \"%s\"; stderr:\n%s", out,
	                 log ? log : "");
	cr_assert_eq(len, 6);

	/* The workspace went where the documentation says. */
	struct stat st;
	omni_test_fmt(path, sizeof(path), "%s/data/example", tmp);
	cr_assert_eq(stat(path, &st), 0, "%s missing", path);
	cr_assert(S_ISDIR(st.st_mode));
	free(out);
	free(log);
}

/* The README shows the example file verbatim, so what users read is what
 * the test above compiles and runs. */
Test(example, readme_shows_the_example_verbatim)
{
	char src[PATH_MAX], path[PATH_MAX];

	omni_test_source_dir(src, sizeof(src));
	omni_test_fmt(path, sizeof(path), "%s/tests/example/readme_example.c",
	              src);
	char *example = omni_test_read_host(path, NULL);
	omni_test_fmt(path, sizeof(path), "%s/README.md", src);
	char *readme = omni_test_read_host(path, NULL);
	cr_assert(example && readme);
	cr_assert(strstr(readme, example) != NULL,
	          "README.md does not contain tests/example/readme_example.c");
	free(example);
	free(readme);
}
