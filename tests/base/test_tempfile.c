/*
 * tests/base/test_tempfile.c - base/tempfile.h: omni__temp_fd() gives a
 * nameless read-write file in $TMPDIR (or /tmp), close-on-exec and 0600;
 * the fallback omni__temp_fd_named() leaves no name behind either; a
 * missing directory is -ENOENT.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "base/tempfile.h"

static char dir[PATH_MAX];
static char *old_tmpdir;

static void setup(void)
{
	const char *t = getenv("TMPDIR");

	old_tmpdir = t ? strdup(t) : NULL;
	omni_test_mkdtemp(dir, sizeof(dir));
}

static void teardown(void)
{
	if (old_tmpdir)
		setenv("TMPDIR", old_tmpdir, 1);
	else
		unsetenv("TMPDIR");
	free(old_tmpdir);
	omni_test_rm_rf(dir);
	omni_test_leak_check();
}

TestSuite(tempfile, .init = setup, .fini = teardown, .timeout = 30);

static int entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* fd is a private, writable, readable, close-on-exec regular file. */
static void check_private(int fd)
{
	struct stat st;
	char buf[6] = "";

	cr_assert_geq(fd, 0, "rc %d", fd);
	cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(st.st_nlink, 0, "the file still has a name");
	cr_assert_eq(pwrite(fd, "hello", 5, 0), 5);
	cr_assert_eq(pread(fd, buf, 5, 0), 5);
	cr_assert_str_eq(buf, "hello");
}

Test(tempfile, nameless_in_tmpdir)
{
	setenv("TMPDIR", dir, 1);
	int fd = omni__temp_fd("omni-test");

	check_private(fd);
	cr_assert_eq(entries(dir), 0);
	close(fd);
}

Test(tempfile, empty_tmpdir_means_tmp)
{
	setenv("TMPDIR", "", 1);
	int fd = omni__temp_fd("omni-test");

	check_private(fd);
	close(fd);
}

Test(tempfile, fallback_leaves_no_name)
{
	int fd = omni__temp_fd_named(dir, "omni-test");

	check_private(fd);
	cr_assert_eq(entries(dir), 0);
	close(fd);
}

Test(tempfile, missing_directory)
{
	char missing[PATH_MAX];

	omni_test_fmt(missing, sizeof(missing), "%s/none", dir);
	setenv("TMPDIR", missing, 1);
	cr_assert_eq(omni__temp_fd("omni-test"), -ENOENT);
	cr_assert_eq(omni__temp_fd_named(missing, "omni-test"), -ENOENT);
}
