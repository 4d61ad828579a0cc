/*
 * tests/core/test_example.c - the README's C example still builds and works.
 *
 * tests/example/readme_example.c is the program shown in README.md (the
 * two are kept byte-identical). This test compiles it the way a user
 * would, with $CC (default cc) against backends/include, in a fresh temp
 * directory: once with the libomni.a next to the test binary plus the
 * pkg-config libraries, once with -lomni against the libomni.so there;
 * runs it there (so ./data/example is created in that directory, with
 * OMNI_DATA_PATH unset); and checks that it prints exactly "Hello\n" and
 * exits 0. (The installed library, through pkg-config, is checked by
 * tests/packaging/run.sh.)
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

/* The build directory of this test binary (where libomni.a and
 * libomni.so are), else $src/build. */
static void find_build(const char *src, char *out, size_t size)
{
	char exe[PATH_MAX], lib[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			omni_test_fmt(lib, sizeof(lib), "%s/libomni.a", exe);
			if (omni_test_host_exists(lib)) {
				omni_test_fmt(out, size, "%s", exe);
				return;
			}
		}
	}
	omni_test_fmt(out, size, "%s/build", src);
	omni_test_fmt(lib, sizeof(lib), "%s/libomni.a", out);
	cr_assert(omni_test_host_exists(lib), "no libomni.a found (%s)", lib);
}

static int run_shell(const char *cmd)
{
	int st = system(cmd);

	cr_assert_neq(st, -1, "system(): %s", strerror(errno));
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Compile the README example with "$CC ... <link>" in tmp, run it there
 * and check that it prints exactly "Hello\n" and makes ./data/example. */
static void build_and_run(const char *src, const char *link)
{
	char cmd[4 * PATH_MAX + 512], path[PATH_MAX];
	const char *cc = getenv("CC");
	char *log, *out;
	size_t len;
	int rc;

	if (!cc || !*cc)
		cc = "cc";
	omni_test_fmt(cmd, sizeof(cmd),
	              "cd '%s' && %s -Wall -Wextra -Werror"
	              " -I'%s/backends/include'"
	              " '%s/tests/example/readme_example.c' %s" SAN_FLAGS
	              " -o example >build.log 2>&1",
	              tmp, cc, src, src, link);
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

/* libomni.a, with the libraries it needs from pkg-config. */
Test(example, readme_example_prints_hello)
{
	char src[PATH_MAX], build[PATH_MAX], link[2 * PATH_MAX];

	omni_test_source_dir(src, sizeof(src));
	find_build(src, build, sizeof(build));
	omni_test_fmt(link, sizeof(link),
	              "'%s/libomni.a' $(pkg-config --libs libcurl libcjson"
	              " libgit2 libarchive libcrypto sqlite3) -pthread",
	              build);
	build_and_run(src, link);
}

/* libomni.so from the build tree, as the README shows (-lomni, rpath). */
Test(example, readme_example_links_the_shared_library)
{
	char src[PATH_MAX], build[PATH_MAX], link[2 * PATH_MAX + 64];

	omni_test_source_dir(src, sizeof(src));
	find_build(src, build, sizeof(build));
	omni_test_fmt(link, sizeof(link), "-L'%s' -lomni -Wl,-rpath,'%s'",
	              build, build);
	build_and_run(src, link);

	/* It is dynamically linked to that very library. */
	char cmd[2 * PATH_MAX + 64];
	omni_test_fmt(cmd, sizeof(cmd),
	              "ldd '%s/example' | grep -q '%s/libomni.so.0'", tmp,
	              build);
	cr_assert_eq(run_shell(cmd), 0,
	             "the example does not use %s/libomni.so", build);
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
