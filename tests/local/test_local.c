/*
 * tests/local/test_local.c - the local backend in full, through the documented
 * API (omni/backend.h) and the POSIX-shaped calls (omni/vfs.h), on a
 * private temp directory per test:
 *
 *   construction   omni_backend_new / omni_local_backend_new, bad names
 *                  and project ids, OMNI_DATA_PATH and ./data defaults
 *   session        start creates $data/<project>, status UNINITIALIZED ->
 *                  RUNNING -> STOPPED, restart, -ENOTCONN when not running
 *   files          write/read round trips (text, all 256 byte values,
 *                  5 MB, missing parents), file_exists, copy, move, delete
 *   directories    list (flat and recursive), create, delete
 *   vfs            stat, readdir, mkdir, rename flags, symlink, readlink,
 *                  link, chmod, chown, utimens, truncate, statfs and the
 *                  open-file calls
 *
 * Escapes from the workspace are in test_confine.c, commands in
 * test_exec.c, glob in test_glob.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"

static struct omni_fixture fx;

static void setup(void)
{
	omni_fixture_start(&fx);
}

static void teardown(void)
{
	omni_fixture_finish(&fx);
}

TestSuite(backend_local, .init = setup, .fini = teardown, .timeout = 30);

/* A fixture that is made but not started. Criterion runs the suite's
 * .init before a test's own, so undo the started one first. */
static void setup_new(void)
{
	omni_fixture_finish(&fx);
	omni_fixture_new(&fx);
}

/* host path of a workspace-relative name */
static const char *hp(const char *rel)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ % 4];

	omni_test_host_path(&fx, rel, p, PATH_MAX);
	return p;
}

static void put(const char *rel, const char *text)
{
	omni_assert_ok(omni_backend_write_file(fx.b, rel, text, strlen(text)));
}

static void assert_content(const char *rel, const char *text)
{
	char *data;
	size_t len;

	omni_assert_ok(omni_backend_read_file(fx.b, rel, &data, &len));
	cr_assert_eq(len, strlen(text), "%s: %zu bytes, expected %zu", rel, len,
	             strlen(text));
	cr_assert_str_eq(data, text);
	free(data);
}

/* --- construction --------------------------------------------------------- */

Test(backend_local, start_creates_the_workspace, .init = setup_new)
{
	struct stat st;

	cr_assert_eq(stat(fx.host, &st), -1, "workspace exists before start");
	cr_assert_eq(omni_backend_get_status(fx.b), OMNI_STATUS_UNINITIALIZED);
	omni_assert_ok(omni_backend_start(fx.b));
	cr_assert_eq(stat(fx.host, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(omni_backend_get_status(fx.b), OMNI_STATUS_RUNNING);
	/* Starting a running session is a no-op. */
	omni_assert_ok(omni_backend_start(fx.b));
	cr_assert_str_eq(omni_backend_name(fx.b), "local");
	cr_assert_str_eq(omni_backend_project_id(fx.b), fx.project);
	cr_assert_str_eq(omni_backend_get_working_directory(fx.b),
	                 "/workspace");
}

Test(backend_local, start_keeps_existing_content, .init = setup_new)
{
	cr_assert_eq(mkdir(fx.data, 0755), 0);
	cr_assert_eq(mkdir(fx.host, 0755), 0);
	omni_test_write_host(hp("old.txt"), "old", 3);
	omni_assert_ok(omni_backend_start(fx.b));
	assert_content("old.txt", "old");
}

Test(backend_local, status_lifecycle, .init = setup_new)
{
	cr_assert_eq(omni_backend_get_status(fx.b), OMNI_STATUS_UNINITIALIZED);
	omni_assert_ok(omni_backend_start(fx.b));
	cr_assert_eq(omni_backend_get_status(fx.b), OMNI_STATUS_RUNNING);
	omni_assert_ok(omni_backend_shutdown(fx.b));
	cr_assert_eq(omni_backend_get_status(fx.b), OMNI_STATUS_STOPPED);
	/* A second shutdown is harmless. */
	omni_assert_ok(omni_backend_shutdown(fx.b));
	cr_assert_eq(omni_backend_get_status(fx.b), OMNI_STATUS_STOPPED);
	/* The workspace stays on disk. */
	cr_assert(omni_test_host_exists(fx.host));
	/* A stopped session can be started again. */
	omni_assert_ok(omni_backend_start(fx.b));
	cr_assert_eq(omni_backend_get_status(fx.b), OMNI_STATUS_RUNNING);
	put("again.txt", "x");
}

Test(backend_local, status_names)
{
	cr_assert_str_eq(omni_status_name(OMNI_STATUS_UNINITIALIZED),
	                 "UNINITIALIZED");
	cr_assert_str_eq(omni_status_name(OMNI_STATUS_RUNNING), "RUNNING");
	cr_assert_str_eq(omni_status_name(OMNI_STATUS_STOPPED), "STOPPED");
	cr_assert_str_eq(omni_status_name((enum omni_status)42), "UNKNOWN");
}

Test(backend_local, data_path_from_environment)
{
	struct omni_backend *b;
	char env_data[PATH_MAX], want[PATH_MAX], id[64];
	struct stat st;

	omni_test_fmt(env_data, sizeof(env_data), "%s/envdata", fx.tmp);
	omni_test_project_id(id, sizeof(id), "env");
	/* Criterion forks each test: this setenv stays in this test. */
	cr_assert_eq(setenv("OMNI_DATA_PATH", env_data, 1), 0);
	omni_assert_ok(omni_local_backend_new(&b, id, NULL));
	omni_assert_ok(omni_backend_start(b));
	omni_test_fmt(want, sizeof(want), "%s/%s", env_data, id);
	cr_assert_eq(stat(want, &st), 0, "%s was not created", want);
	cr_assert(S_ISDIR(st.st_mode));
	omni_assert_ok(omni_backend_write_file(b, "f.txt", "env", 3));
	omni_test_fmt(want, sizeof(want), "%s/%s/f.txt", env_data, id);
	cr_assert(omni_test_host_exists(want));
	omni_backend_free(b);
}

Test(backend_local, options_data_path_beats_environment)
{
	char env_data[PATH_MAX];

	/* fx.b was made with opts.data_path = fx.data. */
	omni_test_fmt(env_data, sizeof(env_data), "%s/ignored", fx.tmp);
	setenv("OMNI_DATA_PATH", env_data, 1);
	put("x.txt", "x");
	cr_assert(omni_test_host_exists(hp("x.txt")));
	cr_assert_not(omni_test_host_exists(env_data));
}

Test(backend_local, default_data_path_is_dot_data)
{
	struct omni_backend *b;
	char want[PATH_MAX], id[64];

	omni_test_project_id(id, sizeof(id), "cwd");
	unsetenv("OMNI_DATA_PATH");
	cr_assert_eq(chdir(fx.tmp), 0);
	omni_assert_ok(omni_local_backend_new(&b, id, NULL));
	omni_assert_ok(omni_backend_start(b));
	/* The host dir was made absolute at start: leaving the directory
	 * does not move the workspace. */
	cr_assert_eq(chdir("/"), 0);
	omni_assert_ok(omni_backend_write_file(b, "f.txt", "d", 1));
	omni_test_fmt(want, sizeof(want), "%s/data/%s/f.txt", fx.tmp, id);
	cr_assert(omni_test_host_exists(want), "%s missing", want);
	omni_backend_free(b);
}

Test(backend_local, relative_data_path_option)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_backend *b;
	char want[PATH_MAX], id[64];

	omni_test_project_id(id, sizeof(id), "rel");
	cr_assert_eq(chdir(fx.tmp), 0);
	opts.data_path = "reldata";
	omni_assert_ok(omni_backend_new(&b, "local", id, &opts, NULL));
	omni_assert_ok(omni_backend_start(b));
	omni_test_fmt(want, sizeof(want), "%s/reldata/%s", fx.tmp, id);
	cr_assert(omni_test_host_exists(want), "%s missing", want);
	omni_backend_free(b);
}

Test(backend_local, unknown_backend_name)
{
	struct omni_backend *b = (struct omni_backend *)&fx;
	struct omni_state *st;

	omni_assert_err(omni_backend_new(&b, "nosuch", "p", NULL, NULL),
	                -EINVAL);
	cr_assert_null(b);
	cr_assert_str_neq(omni_error_last(), "");
	omni_assert_err(omni_backend_new(&b, NULL, "p", NULL, NULL), -EINVAL);
	cr_assert_null(b);
	omni_assert_err(omni_backend_new(&b, "", "p", NULL, NULL), -EINVAL);
	/* The state manager is taken even on failure (no leak under ASan). */
	omni_assert_ok(omni_state_noop(&st));
	omni_assert_err(omni_backend_new(&b, "LOCAL", "p", NULL, st), -EINVAL);
}

Test(backend_local, invalid_project_ids)
{
	static const char *bad[] = { "../x", "",    "a/b", ".",   "..",
		                     "a b",  "x\n", "é",   "/abs" };
	char long_id[130];
	struct omni_backend *b;
	struct omni_state *st;

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		omni_assert_err(
		    omni_backend_new(&b, "local", bad[i], NULL, NULL), -EINVAL);
		cr_assert_null(b, "'%s' accepted", bad[i]);
	}
	omni_assert_err(omni_backend_new(&b, "local", NULL, NULL, NULL),
	                -EINVAL);
	omni_assert_err(omni_local_backend_new(&b, "../x", NULL), -EINVAL);
	omni_assert_ok(omni_state_noop(&st));
	omni_assert_err(omni_local_backend_new(&b, "a/b", st), -EINVAL);

	memset(long_id, 'a', sizeof(long_id));
	long_id[129] = '\0';
	omni_assert_err(omni_backend_new(&b, "local", long_id, NULL, NULL),
	                -EINVAL);
	long_id[128] = '\0';
	omni_assert_ok(omni_backend_new(&b, "local", long_id, NULL, NULL));
	omni_backend_free(b);
	omni_assert_ok(omni_backend_new(&b, "local", "A-z_0.9", NULL, NULL));
	omni_backend_free(b);
}

Test(backend_local, names_and_version)
{
	const char *const *names = omni_backend_names();
	bool local = false;

	for (size_t i = 0; names[i]; i++)
		if (strcmp(names[i], "local") == 0)
			local = true;
	cr_assert(local);
	cr_assert_str_eq(omni_version(), OMNI_VERSION);
	omni_assert_ok(omni_global_init());
	omni_global_shutdown();
	cr_assert(omni_vfs_caps(fx.b) & OMNI_CAP_HARDLINKS);
	cr_assert(omni_vfs_caps(fx.b) & OMNI_CAP_FILE_FD);
	cr_assert(omni_vfs_caps(fx.b) & OMNI_CAP_TTY);
	cr_assert_not(omni_vfs_caps(fx.b) & OMNI_CAP_REMOTE);
	cr_assert_str_eq(omni_state_name(omni_backend_state(fx.b)), "none");
}

Test(backend_local, free_null_and_free_running)
{
	omni_backend_free(NULL);
	/* Freeing a running session shuts it down first. */
	omni_backend_free(fx.b);
	fx.b = NULL;
}

Test(backend_local, options_are_copied, .init = setup_new)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_command_result res;
	struct omni_backend *b;
	char data[PATH_MAX], id[64], env0[32];
	const char *env[] = { env0, NULL };

	omni_test_fmt(data, sizeof(data), "%s/copied", fx.tmp);
	snprintf(env0, sizeof(env0), "X=1");
	omni_test_project_id(id, sizeof(id), "copy");
	opts.data_path = data;
	opts.env = env;
	/* The local backend has no options of its own: those of another
	 * backend are refused. */
	struct omni_docker_options d = OMNI_DOCKER_OPTIONS_INIT;
	d.image = "img";
	d.network = "none";
	opts.backend = &d.head;
	omni_assert_err(omni_backend_new(&b, "local", id, &opts, NULL),
	                -EINVAL);
	cr_assert_str_eq(omni_error_last(),
	                 "local backend: given the options of the 'docker' "
	                 "backend");
	opts.backend = NULL;
	omni_assert_ok(omni_backend_new(&b, "local", id, &opts, NULL));
	/* Scribble over what we passed: the backend kept copies. */
	memset(data, 'Z', strlen(data));
	memset(env0, 'Z', 3);
	memset(id, 'Z', strlen(id));
	omni_assert_ok(omni_backend_start(b));
	omni_test_fmt(data, sizeof(data), "%s/copied", fx.tmp);
	cr_assert(omni_test_host_exists(data));
	omni_assert_ok(omni_backend_execute_command(b, "true", 5, &res));
	omni_command_result_finish(&res);
	omni_backend_free(b);
}

/* --- not running ---------------------------------------------------------- */

static void assert_not_connected(struct omni_backend *b)
{
	struct omni_command_result res;
	struct omni_dir_list list;
	struct omni_str_list globbed;
	struct omni_file *f = (struct omni_file *)&fx;
	struct omni_exec *e = (struct omni_exec *)&fx;
	struct omni_exec_request req = { .shell = "true" };
	struct statvfs sv;
	struct stat st;
	char *data;
	char buf[8];

	omni_assert_err(omni_vfs_stat(b, "", &st), -ENOTCONN);
	cr_assert_str_neq(omni_error_last(), "");
	omni_assert_err(omni_vfs_mkdir(b, "d", 0755), -ENOTCONN);
	omni_assert_err(omni_vfs_unlink(b, "f"), -ENOTCONN);
	omni_assert_err(omni_vfs_readlink(b, "l", buf, sizeof(buf)), -ENOTCONN);
	omni_assert_err(omni_vfs_statfs(b, &sv), -ENOTCONN);
	omni_assert_err(omni_vfs_open(b, "f", O_RDONLY, 0, &f), -ENOTCONN);
	cr_assert_null(f);
	omni_assert_err(omni_vfs_exec_start(b, &req, &e), -ENOTCONN);
	cr_assert_null(e);
	omni_assert_err(omni_backend_read_file(b, "f", &data, NULL), -ENOTCONN);
	cr_assert_null(data);
	omni_assert_err(omni_backend_write_file(b, "f", "x", 1), -ENOTCONN);
	omni_assert_err(omni_backend_file_exists(b, "f"), -ENOTCONN);
	omni_assert_err(omni_backend_copy_file(b, "a", "b"), -ENOTCONN);
	omni_assert_err(omni_backend_move_file(b, "a", "b"), -ENOTCONN);
	omni_assert_err(omni_backend_delete_file(b, "a"), -ENOTCONN);
	omni_assert_err(omni_backend_list_directory(b, "", false, &list),
	                -ENOTCONN);
	omni_assert_err(omni_backend_create_directory(b, "d", true), -ENOTCONN);
	omni_assert_err(omni_backend_delete_directory(b, "d"), -ENOTCONN);
	omni_assert_err(omni_backend_glob_files(b, "*", NULL, &globbed),
	                -ENOTCONN);
	omni_assert_err(omni_backend_execute_command(b, "true", 1, &res),
	                -ENOTCONN);
	cr_assert_null(res.output);
	omni_assert_err(omni_backend_save_snapshot(b, "m", NULL), -ENOTCONN);
}

Test(backend_local, calls_before_start_are_enotconn, .init = setup_new)
{
	assert_not_connected(fx.b);
	/* Nothing was created. */
	cr_assert_not(omni_test_host_exists(fx.host));
}

Test(backend_local, calls_after_shutdown_are_enotconn)
{
	omni_assert_ok(omni_backend_shutdown(fx.b));
	assert_not_connected(fx.b);
}

/* --- read and write ------------------------------------------------------- */

Test(backend_local, write_read_round_trip)
{
	char *data = NULL;
	size_t len = 0;

	put("hello.txt", "Hello, world\n");
	assert_content("hello.txt", "Hello, world\n");
	assert_content("/workspace/hello.txt", "Hello, world\n");
	assert_content("./x/../hello.txt", "Hello, world\n");
	/* The file is really on the host. */
	data = omni_test_read_host(hp("hello.txt"), &len);
	cr_assert_not_null(data);
	cr_assert_str_eq(data, "Hello, world\n");
	free(data);
	/* out_len may be NULL; the buffer is NUL-terminated. */
	omni_assert_ok(omni_backend_read_file(fx.b, "hello.txt", &data, NULL));
	cr_assert_str_eq(data, "Hello, world\n");
	free(data);
}

Test(backend_local, write_replaces_and_truncates)
{
	struct stat st;

	put("f.txt", "a much longer first content");
	put("f.txt", "short");
	assert_content("f.txt", "short");
	cr_assert_eq(stat(hp("f.txt"), &st), 0);
	cr_assert_eq(st.st_size, 5);
	/* An empty write makes an empty file. */
	omni_assert_ok(omni_backend_write_file(fx.b, "empty", "", 0));
	assert_content("empty", "");
	omni_assert_ok(omni_backend_write_file(fx.b, "empty2", NULL, 0));
	assert_content("empty2", "");
}

Test(backend_local, binary_all_byte_values)
{
	unsigned char bytes[256 * 3];
	char *data;
	size_t len, hlen;

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(255 - i % 256);
	omni_assert_ok(
	    omni_backend_write_file(fx.b, "bin", bytes, sizeof(bytes)));
	omni_assert_ok(omni_backend_read_file(fx.b, "bin", &data, &len));
	cr_assert_eq(len, sizeof(bytes));
	cr_assert_eq(memcmp(data, bytes, len), 0);
	cr_assert_eq(data[len], '\0');
	free(data);
	data = omni_test_read_host(hp("bin"), &hlen);
	cr_assert_eq(hlen, sizeof(bytes));
	cr_assert_eq(memcmp(data, bytes, hlen), 0);
	free(data);
}

Test(backend_local, five_megabytes)
{
	size_t n = 5 * 1024 * 1024 + 17;
	unsigned char *big = malloc(n);
	char *data;
	size_t len;
	struct stat st;

	cr_assert_not_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (unsigned char)((i * 2654435761u) >> 13);
	omni_assert_ok(omni_backend_write_file(fx.b, "big/5mb.bin", big, n));
	cr_assert_eq(stat(hp("big/5mb.bin"), &st), 0);
	cr_assert_eq((size_t)st.st_size, n);
	omni_assert_ok(
	    omni_backend_read_file(fx.b, "big/5mb.bin", &data, &len));
	cr_assert_eq(len, n);
	cr_assert_eq(memcmp(data, big, n), 0);
	free(data);
	free(big);
}

Test(backend_local, write_makes_missing_parents)
{
	struct stat st;

	put("a/b/c/deep.txt", "deep");
	cr_assert_eq(stat(hp("a/b/c"), &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	assert_content("a/b/c/deep.txt", "deep");
	put("/workspace/x/y.txt", "abs");
	assert_content("x/y.txt", "abs");
}

Test(backend_local, write_errors)
{
	put("file", "f");
	/* A parent that is a file. */
	omni_assert_err(omni_backend_write_file(fx.b, "file/sub", "x", 1),
	                -ENOTDIR);
	/* The workspace itself, or a directory. */
	omni_assert_err(omni_backend_write_file(fx.b, "/workspace", "x", 1),
	                -EISDIR);
	omni_assert_err(omni_backend_write_file(fx.b, "", "x", 1), -EISDIR);
	omni_assert_ok(omni_backend_create_directory(fx.b, "dir", false));
	omni_assert_err(omni_backend_write_file(fx.b, "dir", "x", 1), -EISDIR);
}

Test(backend_local, read_errors)
{
	char *data = (char *)&fx;
	size_t len = 99;

	omni_assert_err(
	    omni_backend_read_file(fx.b, "missing.txt", &data, &len), -ENOENT);
	cr_assert_null(data);
	cr_assert_eq(len, 0);
	cr_assert_str_neq(omni_error_last(), "");
	omni_assert_err(
	    omni_backend_read_file(fx.b, "no/such/dir/f", &data, &len),
	    -ENOENT);
	omni_assert_ok(omni_backend_create_directory(fx.b, "d", false));
	omni_assert_err(omni_backend_read_file(fx.b, "d", &data, &len),
	                -EISDIR);
	cr_assert_null(data);
	omni_assert_err(omni_backend_read_file(fx.b, "/workspace", &data, &len),
	                -EISDIR);
	put("f", "x");
	omni_assert_err(omni_backend_read_file(fx.b, "f/g", &data, &len),
	                -ENOTDIR);
}

Test(backend_local, read_empty_file)
{
	char *data;
	size_t len = 99;

	omni_test_write_host(hp("zero"), "", 0);
	omni_assert_ok(omni_backend_read_file(fx.b, "zero", &data, &len));
	cr_assert_eq(len, 0);
	cr_assert_not_null(data);
	cr_assert_str_eq(data, "");
	free(data);
}

/* --- file_exists ---------------------------------------------------------- */

Test(backend_local, file_exists_types)
{
	put("f.txt", "f");
	omni_assert_ok(omni_backend_create_directory(fx.b, "d", false));
	cr_assert_eq(symlink("f.txt", hp("link")), 0);
	cr_assert_eq(symlink("nowhere", hp("dangling")), 0);

	cr_assert_eq(omni_backend_file_exists(fx.b, "f.txt"), OMNI_FILE_FILE);
	cr_assert_eq(omni_backend_file_exists(fx.b, "/workspace/f.txt"),
	             OMNI_FILE_FILE);
	cr_assert_eq(omni_backend_file_exists(fx.b, "d"), OMNI_FILE_DIRECTORY);
	cr_assert_eq(omni_backend_file_exists(fx.b, ""), OMNI_FILE_DIRECTORY);
	cr_assert_eq(omni_backend_file_exists(fx.b, "/workspace"),
	             OMNI_FILE_DIRECTORY);
	cr_assert_eq(omni_backend_file_exists(fx.b, "link"), OMNI_FILE_SYMLINK);
	cr_assert_eq(omni_backend_file_exists(fx.b, "dangling"),
	             OMNI_FILE_SYMLINK);
	cr_assert_eq(omni_backend_file_exists(fx.b, "nope"), OMNI_FILE_NONE);
	cr_assert_eq(omni_backend_file_exists(fx.b, "nope/deeper"),
	             OMNI_FILE_NONE);
	/* Under a regular file: not there (ENOTDIR is "none"). */
	cr_assert_eq(omni_backend_file_exists(fx.b, "f.txt/x"), OMNI_FILE_NONE);
	/* "none" is not an error: the message is cleared. */
	cr_assert_str_eq(omni_error_last(), "");
	omni_assert_err(omni_backend_file_exists(fx.b, "../x"), -EACCES);
}

/* --- copy, move, delete --------------------------------------------------- */

Test(backend_local, copy_keeps_content_and_mode)
{
	struct stat st;

	put("src.sh", "#!/bin/sh\necho hi\n");
	cr_assert_eq(chmod(hp("src.sh"), 0751), 0);
	omni_assert_ok(omni_backend_copy_file(fx.b, "src.sh", "dst.sh"));
	assert_content("dst.sh", "#!/bin/sh\necho hi\n");
	assert_content("src.sh", "#!/bin/sh\necho hi\n");
	cr_assert_eq(stat(hp("dst.sh"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0751, "mode %o", st.st_mode & 07777);

	/* Into a missing directory, replacing nothing. */
	omni_assert_ok(omni_backend_copy_file(fx.b, "/workspace/src.sh",
	                                      "new/dir/copy.sh"));
	assert_content("new/dir/copy.sh", "#!/bin/sh\necho hi\n");

	/* Replacing an existing longer file with another mode. */
	put("old", "a much longer old content that must go away");
	cr_assert_eq(chmod(hp("old"), 0600), 0);
	omni_assert_ok(omni_backend_copy_file(fx.b, "src.sh", "old"));
	assert_content("old", "#!/bin/sh\necho hi\n");
	cr_assert_eq(stat(hp("old"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0751, "mode %o", st.st_mode & 07777);
}

Test(backend_local, copy_large_and_binary)
{
	size_t n = 3 * 1024 * 1024 + 5;
	char *big = malloc(n), *data;
	size_t len;

	cr_assert_not_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)(i * 7);
	omni_assert_ok(omni_backend_write_file(fx.b, "big", big, n));
	omni_assert_ok(omni_backend_copy_file(fx.b, "big", "big2"));
	omni_assert_ok(omni_backend_read_file(fx.b, "big2", &data, &len));
	cr_assert_eq(len, n);
	cr_assert_eq(memcmp(data, big, n), 0);
	free(data);
	free(big);
}

Test(backend_local, copy_errors)
{
	omni_assert_err(omni_backend_copy_file(fx.b, "missing", "x"), -ENOENT);
	cr_assert_not(omni_test_host_exists(hp("x")));
	omni_assert_ok(omni_backend_create_directory(fx.b, "d", false));
	omni_assert_err(omni_backend_copy_file(fx.b, "d", "x"), -EISDIR);
	cr_assert_not(omni_test_host_exists(hp("x")));
	put("f", "f");
	omni_assert_err(omni_backend_copy_file(fx.b, "f", "d"), -EISDIR);
	omni_assert_err(omni_backend_copy_file(fx.b, "f", "../f"), -EACCES);
	omni_assert_err(omni_backend_copy_file(fx.b, "/etc/hostname", "f2"),
	                -EACCES);
}

Test(backend_local, copy_onto_itself_keeps_the_data)
{
	/* Opening the target with O_TRUNC first would empty the source. */
	put("same.txt", "precious");
	omni_assert_err(omni_backend_copy_file(fx.b, "same.txt", "same.txt"),
	                -EINVAL);
	assert_content("same.txt", "precious");
	cr_assert_lt(
	    omni_backend_copy_file(fx.b, "same.txt", "/workspace/./same.txt"),
	    0);
	assert_content("same.txt", "precious");
	/* The same file under another name. */
	cr_assert_eq(symlink("same.txt", hp("alias")), 0);
	cr_assert_lt(omni_backend_copy_file(fx.b, "same.txt", "alias"), 0);
	assert_content("same.txt", "precious");
	omni_assert_ok(omni_vfs_link(fx.b, "same.txt", "hard"));
	cr_assert_lt(omni_backend_copy_file(fx.b, "hard", "same.txt"), 0);
	assert_content("same.txt", "precious");
}

Test(backend_local, move_file_and_directory)
{
	put("a.txt", "A");
	omni_assert_ok(omni_backend_move_file(fx.b, "a.txt", "b.txt"));
	cr_assert_not(omni_test_host_exists(hp("a.txt")));
	assert_content("b.txt", "A");

	/* Into a missing directory. */
	omni_assert_ok(omni_backend_move_file(fx.b, "b.txt", "sub/dir/c.txt"));
	assert_content("sub/dir/c.txt", "A");

	/* A whole directory. */
	put("tree/one", "1");
	put("tree/deep/two", "2");
	omni_assert_ok(
	    omni_backend_move_file(fx.b, "/workspace/tree", "moved"));
	cr_assert_not(omni_test_host_exists(hp("tree")));
	assert_content("moved/one", "1");
	assert_content("moved/deep/two", "2");

	/* The target file is replaced. */
	put("x", "new");
	put("y", "old");
	omni_assert_ok(omni_backend_move_file(fx.b, "x", "y"));
	assert_content("y", "new");
	cr_assert_not(omni_test_host_exists(hp("x")));
}

Test(backend_local, move_errors)
{
	omni_assert_err(omni_backend_move_file(fx.b, "missing", "x"), -ENOENT);
	/* A failed move leaves no new directories behind. */
	omni_assert_err(omni_backend_move_file(fx.b, "missing", "new/dir/x"),
	                -ENOENT);
	cr_assert_not(omni_test_host_exists(hp("new")));
	omni_assert_err(omni_backend_move_file(fx.b, "/workspace", "x"),
	                -EBUSY);
	put("f", "f");
	omni_assert_err(omni_backend_move_file(fx.b, "f", ""), -EBUSY);
	omni_assert_err(omni_backend_move_file(fx.b, "f", "../f"), -EACCES);
	omni_assert_err(omni_backend_move_file(fx.b, "../f", "f"), -EACCES);
	/* A directory onto a non-empty directory. */
	put("d1/a", "a");
	put("d2/b", "b");
	cr_assert_lt(omni_backend_move_file(fx.b, "d1", "d2"), 0);
	assert_content("d2/b", "b");
	assert_content("f", "f");
}

Test(backend_local, delete_file)
{
	put("f", "f");
	omni_assert_ok(omni_backend_delete_file(fx.b, "f"));
	cr_assert_not(omni_test_host_exists(hp("f")));
	omni_assert_err(omni_backend_delete_file(fx.b, "f"), -ENOENT);
	omni_assert_ok(omni_backend_create_directory(fx.b, "d", false));
	omni_assert_err(omni_backend_delete_file(fx.b, "d"), -EISDIR);
	cr_assert(omni_test_host_exists(hp("d")));
	omni_assert_err(omni_backend_delete_file(fx.b, "/workspace"), -EISDIR);

	/* A symlink is deleted, not its target. */
	put("target", "t");
	cr_assert_eq(symlink("target", hp("link")), 0);
	omni_assert_ok(omni_backend_delete_file(fx.b, "link"));
	cr_assert_not(omni_test_host_exists(hp("link")));
	assert_content("target", "t");
	/* A dangling one too. */
	cr_assert_eq(symlink("nowhere", hp("dangling")), 0);
	omni_assert_ok(omni_backend_delete_file(fx.b, "dangling"));
	cr_assert_not(omni_test_host_exists(hp("dangling")));
}

/* --- directories ---------------------------------------------------------- */

Test(backend_local, list_directory_flat_and_recursive)
{
	struct omni_dir_list l;

	put("b.txt", "bbb");
	put("a.txt", "a");
	put("sub/inner.txt", "12345");
	put("sub/deeper/z", "");
	cr_assert_eq(symlink("a.txt", hp("ln")), 0);

	omni_assert_ok(omni_backend_list_directory(fx.b, "", false, &l));
	cr_assert_eq(l.count, 4);
	cr_assert_str_eq(l.entries[0].path, "a.txt");
	cr_assert_eq(l.entries[0].type, OMNI_FILE_FILE);
	cr_assert_eq(l.entries[0].size, 1);
	cr_assert_str_eq(l.entries[1].path, "b.txt");
	cr_assert_eq(l.entries[1].size, 3);
	cr_assert_str_eq(l.entries[2].path, "ln");
	cr_assert_eq(l.entries[2].type, OMNI_FILE_SYMLINK);
	cr_assert_str_eq(l.entries[3].path, "sub");
	cr_assert_eq(l.entries[3].type, OMNI_FILE_DIRECTORY);
	omni_dir_list_finish(&l);
	cr_assert_null(l.entries);
	cr_assert_eq(l.count, 0);

	omni_assert_ok(
	    omni_backend_list_directory(fx.b, "/workspace", true, &l));
	static const char *want[] = { "a.txt",        "b.txt",
		                      "ln",           "sub",
		                      "sub/deeper",   "sub/deeper/z",
		                      "sub/inner.txt" };
	cr_assert_eq(l.count, sizeof(want) / sizeof(*want));
	for (size_t i = 0; i < l.count; i++)
		cr_assert_str_eq(l.entries[i].path, want[i], "entry %zu", i);
	cr_assert_eq(l.entries[4].type, OMNI_FILE_DIRECTORY);
	cr_assert_eq(l.entries[5].type, OMNI_FILE_FILE);
	cr_assert_eq(l.entries[5].size, 0);
	cr_assert_eq(l.entries[6].size, 5);
	omni_dir_list_finish(&l);

	/* Paths are relative to the listed directory. */
	omni_assert_ok(omni_backend_list_directory(fx.b, "sub", true, &l));
	cr_assert_eq(l.count, 3);
	cr_assert_str_eq(l.entries[0].path, "deeper");
	cr_assert_str_eq(l.entries[1].path, "deeper/z");
	cr_assert_str_eq(l.entries[2].path, "inner.txt");
	omni_dir_list_finish(&l);
}

Test(backend_local, list_sorts_bytewise)
{
	struct omni_dir_list l;
	static const char *names[] = { "b",   "B",   "a",  "_",
		                       "a-b", "a.b", "10", "9" };
	static const char *sorted[] = { "10", "9",   "B",   "_",
		                        "a",  "a-b", "a.b", "b" };

	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
		put(names[i], "");
	omni_assert_ok(omni_backend_list_directory(fx.b, NULL, false, &l));
	cr_assert_eq(l.count, 8);
	for (size_t i = 0; i < l.count; i++)
		cr_assert_str_eq(l.entries[i].path, sorted[i]);
	omni_dir_list_finish(&l);
}

Test(backend_local, list_directory_errors)
{
	struct omni_dir_list l;

	omni_assert_ok(omni_backend_list_directory(fx.b, "", true, &l));
	cr_assert_eq(l.count, 0);
	omni_dir_list_finish(&l);
	put("f", "x");
	omni_assert_err(omni_backend_list_directory(fx.b, "f", false, &l),
	                -ENOTDIR);
	cr_assert_eq(l.count, 0);
	omni_assert_err(omni_backend_list_directory(fx.b, "missing", false, &l),
	                -ENOENT);
	omni_assert_err(omni_backend_list_directory(fx.b, "..", false, &l),
	                -EACCES);
}

Test(backend_local, directory_links_inside)
{
	struct omni_dir_list l;

	put("real/a", "a");
	cr_assert_eq(symlink("real", hp("dl")), 0);
	cr_assert_eq(symlink("real/a", hp("fl")), 0);
	cr_assert_eq(symlink("nowhere", hp("dangling")), 0);
	/* A link to a directory lists as the directory ... */
	omni_assert_ok(omni_backend_list_directory(fx.b, "dl", false, &l));
	cr_assert_eq(l.count, 1);
	cr_assert_str_eq(l.entries[0].path, "a");
	omni_dir_list_finish(&l);
	/* ... a link to a file or to nothing does not. */
	omni_assert_err(omni_backend_list_directory(fx.b, "fl", false, &l),
	                -ENOTDIR);
	omni_assert_err(
	    omni_backend_list_directory(fx.b, "dangling", false, &l), -ENOENT);
	/* mkdir -p through and onto a link to a directory. */
	omni_assert_ok(omni_backend_create_directory(fx.b, "dl", true));
	omni_assert_ok(omni_backend_create_directory(fx.b, "dl/x/y", true));
	cr_assert(omni_test_host_exists(hp("real/x/y")));
	omni_assert_err(omni_backend_create_directory(fx.b, "fl/x", true),
	                -ENOTDIR);
	omni_assert_err(omni_backend_write_file(fx.b, "fl/x", "x", 1),
	                -ENOTDIR);
	omni_assert_err(omni_backend_write_file(fx.b, "dangling/x", "x", 1),
	                -ENOENT);
	cr_assert_not(omni_test_host_exists(hp("nowhere")));
}

Test(backend_local, create_directory)
{
	struct stat st;

	omni_assert_ok(omni_backend_create_directory(fx.b, "d", false));
	cr_assert_eq(stat(hp("d"), &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	omni_assert_err(omni_backend_create_directory(fx.b, "d", false),
	                -EEXIST);
	omni_assert_err(omni_backend_create_directory(fx.b, "x/y", false),
	                -ENOENT);
	cr_assert_not(omni_test_host_exists(hp("x")));
	omni_assert_ok(omni_backend_create_directory(fx.b, "x/y/z", true));
	cr_assert_eq(stat(hp("x/y/z"), &st), 0);
	/* With parents an existing directory is fine. */
	omni_assert_ok(omni_backend_create_directory(fx.b, "x/y/z", true));
	omni_assert_ok(
	    omni_backend_create_directory(fx.b, "/workspace/x", true));
	omni_assert_ok(omni_backend_create_directory(fx.b, "", true));
	omni_assert_err(
	    omni_backend_create_directory(fx.b, "/workspace", false), -EEXIST);
	/* A file in the way. */
	put("file", "");
	omni_assert_err(omni_backend_create_directory(fx.b, "file", true),
	                -ENOTDIR);
	omni_assert_err(omni_backend_create_directory(fx.b, "file/sub", true),
	                -ENOTDIR);
	omni_assert_err(omni_backend_create_directory(fx.b, "file", false),
	                -EEXIST);
	omni_assert_err(omni_backend_create_directory(fx.b, "../up", true),
	                -EACCES);
}

Test(backend_local, delete_directory_recursive)
{
	put("tree/a", "a");
	put("tree/sub/b", "b");
	put("tree/sub/deeper/c", "c");
	put("tree/.hidden", "h");
	omni_assert_ok(
	    omni_backend_create_directory(fx.b, "tree/empty", false));
	omni_assert_ok(omni_backend_delete_directory(fx.b, "tree"));
	cr_assert_not(omni_test_host_exists(hp("tree")));
	/* An empty one. */
	omni_assert_ok(omni_backend_create_directory(fx.b, "e", false));
	omni_assert_ok(omni_backend_delete_directory(fx.b, "/workspace/e"));
	cr_assert_not(omni_test_host_exists(hp("e")));
}

Test(backend_local, delete_directory_does_not_follow_links)
{
	put("keep/precious", "p");
	put("d/file", "f");
	cr_assert_eq(symlink("../keep", hp("d/link")), 0);
	omni_assert_ok(omni_backend_delete_directory(fx.b, "d"));
	cr_assert_not(omni_test_host_exists(hp("d")));
	assert_content("keep/precious", "p");
}

Test(backend_local, delete_directory_errors)
{
	omni_assert_err(omni_backend_delete_directory(fx.b, "/workspace"),
	                -EBUSY);
	omni_assert_err(omni_backend_delete_directory(fx.b, ""), -EBUSY);
	omni_assert_err(omni_backend_delete_directory(fx.b, "."), -EBUSY);
	omni_assert_err(omni_backend_delete_directory(fx.b, "a/.."), -EBUSY);
	cr_assert(omni_test_host_exists(fx.host));
	omni_assert_err(omni_backend_delete_directory(fx.b, "missing"),
	                -ENOENT);
	put("f", "x");
	omni_assert_err(omni_backend_delete_directory(fx.b, "f"), -ENOTDIR);
	cr_assert(omni_test_host_exists(hp("f")));
	omni_assert_err(omni_backend_delete_directory(fx.b, ".."), -EACCES);
}

/* --- the vfs calls -------------------------------------------------------- */

Test(backend_local, vfs_stat)
{
	struct stat st;

	put("f", "12345");
	cr_assert_eq(symlink("f", hp("l")), 0);
	omni_assert_ok(omni_vfs_stat(fx.b, "f", &st));
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_size, 5);
	omni_assert_ok(omni_vfs_stat(fx.b, "", &st));
	cr_assert(S_ISDIR(st.st_mode));
	/* lstat semantics. */
	omni_assert_ok(omni_vfs_stat(fx.b, "l", &st));
	cr_assert(S_ISLNK(st.st_mode));
	omni_assert_err(omni_vfs_stat(fx.b, "missing", &st), -ENOENT);
	omni_assert_err(omni_vfs_stat(fx.b, "f/x", &st), -ENOTDIR);
}

struct seen {
	char names[16][32];
	int n;
	int stop_after;
};

static int record(const char *name, const struct stat *st, void *payload)
{
	struct seen *s = payload;

	cr_assert_not_null(st);
	if (s->n < 16)
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s%s", name,
		         S_ISDIR(st->st_mode) ? "/" : "");
	s->n++;
	if (s->stop_after && s->n == s->stop_after)
		return 77;
	return 0;
}

static bool seen_has(const struct seen *s, const char *name)
{
	for (int i = 0; i < s->n && i < 16; i++)
		if (strcmp(s->names[i], name) == 0)
			return true;
	return false;
}

Test(backend_local, vfs_readdir)
{
	struct seen s = { .n = 0 };

	put("a", "");
	put("b", "");
	put("d/c", "");
	omni_assert_ok(omni_vfs_readdir(fx.b, "", record, &s));
	cr_assert_eq(s.n, 3, "no . or .. expected");
	cr_assert(seen_has(&s, "a"));
	cr_assert(seen_has(&s, "b"));
	cr_assert(seen_has(&s, "d/"));

	memset(&s, 0, sizeof(s));
	omni_assert_ok(omni_vfs_readdir(fx.b, "d", record, &s));
	cr_assert_eq(s.n, 1);
	cr_assert_str_eq(s.names[0], "c");

	/* A non-zero return stops and is returned. */
	memset(&s, 0, sizeof(s));
	s.stop_after = 2;
	cr_assert_eq(omni_vfs_readdir(fx.b, "", record, &s), 77);
	cr_assert_eq(s.n, 2);

	omni_assert_err(omni_vfs_readdir(fx.b, "missing", record, &s), -ENOENT);
	omni_assert_err(omni_vfs_readdir(fx.b, "a", record, &s), -ENOTDIR);
}

Test(backend_local, vfs_mkdir_rmdir_unlink)
{
	struct stat st;
	mode_t old = umask(0);

	omni_assert_ok(omni_vfs_mkdir(fx.b, "m", 0710));
	umask(old);
	cr_assert_eq(stat(hp("m"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0710);
	omni_assert_err(omni_vfs_mkdir(fx.b, "m", 0755), -EEXIST);
	omni_assert_err(omni_vfs_mkdir(fx.b, "", 0755), -EEXIST);
	omni_assert_err(omni_vfs_mkdir(fx.b, "no/parent", 0755), -ENOENT);
	put("m/f", "");
	omni_assert_err(omni_vfs_rmdir(fx.b, "m"), -ENOTEMPTY);
	omni_assert_err(omni_vfs_unlink(fx.b, "m"), -EISDIR);
	omni_assert_ok(omni_vfs_unlink(fx.b, "m/f"));
	omni_assert_err(omni_vfs_unlink(fx.b, "m/f"), -ENOENT);
	omni_assert_ok(omni_vfs_rmdir(fx.b, "m"));
	cr_assert_not(omni_test_host_exists(hp("m")));
	omni_assert_err(omni_vfs_rmdir(fx.b, ""), -EBUSY);
}

Test(backend_local, vfs_rename_flags)
{
	put("a", "A");
	put("b", "B");
	/* NOREPLACE refuses an existing target. */
	omni_assert_err(omni_vfs_rename(fx.b, "a", "b", RENAME_NOREPLACE),
	                -EEXIST);
	assert_content("a", "A");
	assert_content("b", "B");
	omni_assert_ok(omni_vfs_rename(fx.b, "a", "c", RENAME_NOREPLACE));
	cr_assert_not(omni_test_host_exists(hp("a")));
	assert_content("c", "A");
	/* EXCHANGE swaps. */
	omni_assert_ok(omni_vfs_rename(fx.b, "b", "c", RENAME_EXCHANGE));
	assert_content("b", "A");
	assert_content("c", "B");
	omni_assert_err(omni_vfs_rename(fx.b, "b", "nothere", RENAME_EXCHANGE),
	                -ENOENT);
	/* Plain rename replaces. */
	omni_assert_ok(omni_vfs_rename(fx.b, "b", "c", 0));
	assert_content("c", "A");
	omni_assert_err(omni_vfs_rename(fx.b, "missing", "x", 0), -ENOENT);
	omni_assert_err(omni_vfs_rename(fx.b, "", "x", 0), -EBUSY);
	/* Across directories. */
	put("d1/f", "F");
	omni_assert_ok(omni_vfs_mkdir(fx.b, "d2", 0755));
	omni_assert_ok(omni_vfs_rename(fx.b, "d1/f", "d2/g", 0));
	assert_content("d2/g", "F");
}

Test(backend_local, vfs_symlink_readlink)
{
	char buf[64];
	struct stat st;

	omni_assert_ok(omni_vfs_symlink(fx.b, "target/file.txt", "l"));
	cr_assert_eq(lstat(hp("l"), &st), 0);
	cr_assert(S_ISLNK(st.st_mode));
	memset(buf, 'Z', sizeof(buf));
	cr_assert_eq(omni_vfs_readlink(fx.b, "l", buf, sizeof(buf)), 15);
	cr_assert_str_eq(buf, "target/file.txt");
	/* Too small: truncated and still terminated. */
	memset(buf, 'Z', sizeof(buf));
	cr_assert_eq(omni_vfs_readlink(fx.b, "l", buf, 7), 7);
	cr_assert_str_eq(buf, "target");
	omni_assert_err(omni_vfs_symlink(fx.b, "x", "l"), -EEXIST);
	put("f", "");
	omni_assert_err(omni_vfs_readlink(fx.b, "f", buf, sizeof(buf)),
	                -EINVAL);
	omni_assert_err(omni_vfs_readlink(fx.b, "missing", buf, sizeof(buf)),
	                -ENOENT);
	omni_assert_err(omni_vfs_readlink(fx.b, "", buf, sizeof(buf)), -EINVAL);
	/* A link in a subdirectory, read through the API. */
	put("sub/real", "R");
	omni_assert_ok(omni_vfs_symlink(fx.b, "real", "sub/alias"));
	assert_content("sub/alias", "R");
	cr_assert_eq(omni_backend_file_exists(fx.b, "sub/alias"),
	             OMNI_FILE_SYMLINK);
}

Test(backend_local, vfs_link)
{
	struct stat st;

	put("orig", "data");
	omni_assert_ok(omni_vfs_link(fx.b, "orig", "hard"));
	cr_assert_eq(stat(hp("orig"), &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	assert_content("hard", "data");
	omni_assert_err(omni_vfs_link(fx.b, "orig", "hard"), -EEXIST);
	omni_assert_err(omni_vfs_link(fx.b, "missing", "h2"), -ENOENT);
	omni_assert_ok(omni_vfs_mkdir(fx.b, "d", 0755));
	omni_assert_err(omni_vfs_link(fx.b, "d", "dlink"), -EPERM);
}

Test(backend_local, vfs_chmod_chown)
{
	struct stat st;

	put("f", "");
	omni_assert_ok(omni_vfs_chmod(fx.b, "f", 0640));
	cr_assert_eq(stat(hp("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	omni_assert_ok(omni_vfs_chmod(fx.b, "f", 04755));
	cr_assert_eq(stat(hp("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 04755);
	/* chmod follows a symlink (inside the workspace). */
	cr_assert_eq(symlink("f", hp("l")), 0);
	omni_assert_ok(omni_vfs_chmod(fx.b, "l", 0600));
	cr_assert_eq(stat(hp("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	omni_assert_ok(omni_vfs_chmod(fx.b, "", 0755));
	omni_assert_err(omni_vfs_chmod(fx.b, "missing", 0600), -ENOENT);

	/* chown to who we are is always allowed. */
	omni_assert_ok(omni_vfs_chown(fx.b, "f", getuid(), getgid()));
	omni_assert_ok(omni_vfs_chown(fx.b, "", (uid_t)-1, (gid_t)-1));
	omni_assert_ok(omni_vfs_chown(fx.b, "l", getuid(), (gid_t)-1));
	omni_assert_err(omni_vfs_chown(fx.b, "missing", getuid(), getgid()),
	                -ENOENT);
}

Test(backend_local, vfs_utimens_nanoseconds)
{
	struct timespec ts[2] = { { 1000000000, 123456789 },
		                  { 1200000000, 987654321 } };
	struct stat st;

	put("f", "");
	omni_assert_ok(omni_vfs_utimens(fx.b, "f", ts));
	omni_assert_ok(omni_vfs_stat(fx.b, "f", &st));
	cr_assert_eq(st.st_atim.tv_sec, 1000000000);
	cr_assert_eq(st.st_atim.tv_nsec, 123456789);
	cr_assert_eq(st.st_mtim.tv_sec, 1200000000);
	cr_assert_eq(st.st_mtim.tv_nsec, 987654321);

	/* UTIME_OMIT keeps, UTIME_NOW sets the current time. */
	struct timespec keep_now[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };
	omni_assert_ok(omni_vfs_utimens(fx.b, "f", keep_now));
	omni_assert_ok(omni_vfs_stat(fx.b, "f", &st));
	cr_assert_eq(st.st_atim.tv_sec, 1000000000);
	cr_assert_eq(st.st_atim.tv_nsec, 123456789);
	cr_assert_gt(st.st_mtim.tv_sec, 1200000000);

	/* On a symlink the link itself changes, not the target. */
	cr_assert_eq(symlink("f", hp("l")), 0);
	omni_assert_ok(omni_vfs_utimens(fx.b, "l", ts));
	omni_assert_ok(omni_vfs_stat(fx.b, "f", &st));
	cr_assert_neq(st.st_mtim.tv_sec, 1200000000);
	/* The workspace root. */
	omni_assert_ok(omni_vfs_utimens(fx.b, "", ts));
	omni_assert_ok(omni_vfs_stat(fx.b, "", &st));
	cr_assert_eq(st.st_mtim.tv_sec, 1200000000);
	cr_assert_eq(st.st_mtim.tv_nsec, 987654321);
	omni_assert_err(omni_vfs_utimens(fx.b, "missing", ts), -ENOENT);
}

Test(backend_local, vfs_truncate)
{
	char *data;
	size_t len;

	put("f", "0123456789");
	omni_assert_ok(omni_vfs_truncate(fx.b, "f", 4));
	assert_content("f", "0123");
	omni_assert_ok(omni_vfs_truncate(fx.b, "f", 8));
	omni_assert_ok(omni_backend_read_file(fx.b, "f", &data, &len));
	cr_assert_eq(len, 8);
	cr_assert_eq(memcmp(data, "0123\0\0\0\0", 8), 0);
	free(data);
	omni_assert_ok(omni_vfs_truncate(fx.b, "f", 0));
	assert_content("f", "");
	omni_assert_err(omni_vfs_truncate(fx.b, "missing", 0), -ENOENT);
	omni_assert_err(omni_vfs_truncate(fx.b, "", 0), -EISDIR);
	omni_assert_err(omni_vfs_truncate(fx.b, "f", -1), -EINVAL);
}

Test(backend_local, vfs_statfs)
{
	struct statvfs sv;

	memset(&sv, 0, sizeof(sv));
	omni_assert_ok(omni_vfs_statfs(fx.b, &sv));
	cr_assert_gt(sv.f_bsize, 0);
	cr_assert_gt(sv.f_blocks, 0);
	cr_assert_gt(sv.f_namemax, 0);
}

Test(backend_local, vfs_open_files)
{
	struct omni_file *f, *g;
	struct stat st;
	char buf[32];
	int fd;

	omni_assert_ok(
	    omni_vfs_open(fx.b, "f", O_RDWR | O_CREAT | O_EXCL, 0600, &f));
	cr_assert_not_null(f);
	cr_assert_eq(omni_vfs_write(f, "hello world", 11, 0), 11);
	cr_assert_eq(omni_vfs_write(f, "W", 1, 6), 1);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(omni_vfs_read(f, buf, sizeof(buf), 0), 11);
	cr_assert_str_eq(buf, "hello World");
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(omni_vfs_read(f, buf, 5, 6), 5);
	cr_assert_str_eq(buf, "World");
	cr_assert_eq(omni_vfs_read(f, buf, sizeof(buf), 100), 0);
	omni_assert_ok(omni_vfs_fstat(f, &st));
	cr_assert_eq(st.st_size, 11);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600);
	omni_assert_ok(omni_vfs_ftruncate(f, 5));
	omni_assert_ok(omni_vfs_fstat(f, &st));
	cr_assert_eq(st.st_size, 5);
	omni_assert_ok(omni_vfs_fsync(f, false));
	omni_assert_ok(omni_vfs_fsync(f, true));
	omni_assert_ok(omni_vfs_flush(f));
	omni_assert_ok(omni_vfs_fallocate(f, 0, 0, 4096));
	omni_assert_ok(omni_vfs_fstat(f, &st));
	cr_assert_eq(st.st_size, 4096);
	fd = omni_vfs_file_fd(f);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);

	/* flock: a second open file description conflicts. */
	omni_assert_ok(omni_vfs_flock(f, LOCK_EX | LOCK_NB));
	omni_assert_ok(omni_vfs_open(fx.b, "f", O_RDONLY, 0, &g));
	omni_assert_err(omni_vfs_flock(g, LOCK_EX | LOCK_NB), -EWOULDBLOCK);
	omni_assert_err(omni_vfs_flock(g, LOCK_SH | LOCK_NB), -EWOULDBLOCK);
	omni_assert_ok(omni_vfs_flock(f, LOCK_UN));
	omni_assert_ok(omni_vfs_flock(g, LOCK_SH | LOCK_NB));
	/* A read-only handle cannot write. */
	omni_assert_err(omni_vfs_write(g, "x", 1, 0), -EBADF);
	/* Record locks are not provided by the local backend. */
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	omni_assert_err(omni_vfs_lock(g, F_GETLK, &fl), -ENOSYS);
	omni_assert_ok(omni_vfs_release(g));
	omni_assert_ok(omni_vfs_release(f));
	omni_assert_ok(omni_vfs_release(NULL));

	/* O_EXCL on an existing file, missing without O_CREAT. */
	omni_assert_err(
	    omni_vfs_open(fx.b, "f", O_RDWR | O_CREAT | O_EXCL, 0600, &f),
	    -EEXIST);
	cr_assert_null(f);
	omni_assert_err(omni_vfs_open(fx.b, "nope", O_RDONLY, 0, &f), -ENOENT);
	omni_assert_err(omni_vfs_open(fx.b, "", O_WRONLY, 0, &f), -EISDIR);
	/* A directory opens read-only (for fstat), as open(2) allows. */
	omni_assert_ok(omni_vfs_open(fx.b, "", O_RDONLY | O_DIRECTORY, 0, &f));
	omni_assert_ok(omni_vfs_fstat(f, &st));
	cr_assert(S_ISDIR(st.st_mode));
	omni_assert_ok(omni_vfs_release(f));
}

Test(backend_local, vfs_open_append_and_trunc)
{
	struct omni_file *f;

	put("f", "abc");
	omni_assert_ok(omni_vfs_open(fx.b, "f", O_WRONLY | O_TRUNC, 0, &f));
	omni_assert_ok(omni_vfs_release(f));
	assert_content("f", "");
	omni_assert_ok(omni_vfs_open(fx.b, "f", O_WRONLY | O_APPEND, 0, &f));
	cr_assert_eq(omni_vfs_write(f, "xy", 2, 0), 2);
	cr_assert_eq(omni_vfs_write(f, "z", 1, 0), 1);
	omni_assert_ok(omni_vfs_release(f));
	assert_content("f", "xyz");
}

Test(backend_local, vfs_watch_unsupported)
{
	omni_assert_err(omni_vfs_watch(fx.b, NULL, NULL), -ENOSYS);
	cr_assert(strstr(omni_error_last(), "local") != NULL);
}

/* --- several threads on one session --------------------------------------- */

struct worker {
	struct omni_backend *b;
	int id;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char path[64], text[64], *data;
	size_t len;

	for (int i = 0; i < 50; i++) {
		snprintf(path, sizeof(path), "t%d/f%d", w->id, i);
		snprintf(text, sizeof(text), "thread %d file %d", w->id, i);
		if (omni_backend_write_file(w->b, path, text, strlen(text)) <
		        0 ||
		    omni_backend_read_file(w->b, path, &data, &len) < 0) {
			w->failures++;
			continue;
		}
		if (len != strlen(text) || memcmp(data, text, len) != 0)
			w->failures++;
		free(data);
	}
	return NULL;
}

Test(backend_local, concurrent_threads)
{
	struct worker w[4];
	pthread_t t[4];
	struct omni_dir_list l;

	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ .b = fx.b, .id = i };
		cr_assert_eq(pthread_create(&t[i], NULL, worker_main, &w[i]),
		             0);
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(pthread_join(t[i], NULL), 0);
		cr_assert_eq(w[i].failures, 0, "thread %d failed", i);
	}
	omni_assert_ok(omni_backend_list_directory(fx.b, "", true, &l));
	cr_assert_eq(l.count, 4 + 4 * 50);
	omni_dir_list_finish(&l);
}
