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
 * The tests of the suite are in three files: construction, the session and
 * threads here; files and directories in test_local_files.c; the vfs calls
 * in test_local_vfs.c (the fixture and helpers in local_helpers.c).
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
#include "local_helpers.h"

TestSuite(backend_local, .init = local_setup, .fini = local_teardown,
          .timeout = 30);

/* --- construction --------------------------------------------------------- */

Test(backend_local, start_creates_the_workspace, .init = local_setup_new)
{
	struct stat st;

	cr_assert_eq(stat(local_fx.host, &st), -1,
	             "workspace exists before start");
	cr_assert_eq(omni_backend_get_status(local_fx.b),
	             OMNI_STATUS_UNINITIALIZED);
	omni_assert_ok(omni_backend_start(local_fx.b));
	cr_assert_eq(stat(local_fx.host, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(omni_backend_get_status(local_fx.b), OMNI_STATUS_RUNNING);
	/* Starting a running session is a no-op. */
	omni_assert_ok(omni_backend_start(local_fx.b));
	cr_assert_str_eq(omni_backend_name(local_fx.b), "local");
	cr_assert_str_eq(omni_backend_project_id(local_fx.b), local_fx.project);
	char real[PATH_MAX];
	cr_assert_not_null(realpath(local_fx.host, real));
	cr_assert_str_eq(omni_backend_get_working_directory(local_fx.b), real);
}

/* The documented interface: "Working directory: {DATA_PATH}/{project_id}/".
 * It is where commands run (pwd prints it), and a path under it names a
 * file, as "/workspace/..." still does. */
Test(backend_local, working_directory_is_the_host_directory,
     .init = local_setup_new)
{
	struct omni_command_result r;
	struct omni_str_list l;
	char before[PATH_MAX], path[PATH_MAX + 16], want[PATH_MAX + 2];
	const char *wd = omni_backend_get_working_directory(local_fx.b);

	cr_assert_eq(wd[0], '/');
	omni_test_fmt(before, sizeof(before), "%s", wd);
	omni_assert_ok(omni_backend_start(local_fx.b));
	wd = omni_backend_get_working_directory(local_fx.b);
	cr_assert_str_eq(wd, before, "changed by start");

	omni_assert_ok(omni_backend_execute_command(local_fx.b, "pwd", 10, &r));
	omni_test_fmt(want, sizeof(want), "%s\n", wd);
	cr_assert_str_eq(r.output, want);
	omni_command_result_finish(&r);

	omni_test_fmt(path, sizeof(path), "%s/real.txt", wd);
	omni_assert_ok(omni_backend_write_file(local_fx.b, path, "r", 1));
	local_assert_content("/workspace/real.txt", "r");
	local_assert_content("real.txt", "r");
	cr_assert_eq(omni_backend_file_exists(local_fx.b, wd),
	             OMNI_FILE_DIRECTORY);
	omni_test_fmt(path, sizeof(path), "%s/*.txt", wd);
	omni_assert_ok(omni_backend_glob_files(local_fx.b, path, NULL, &l));
	cr_assert_eq(l.count, 1);
	cr_assert_str_eq(l.items[0], "real.txt");
	omni_str_list_finish(&l);

	/* A sibling that merely shares the prefix is outside. */
	omni_test_fmt(path, sizeof(path), "%sx/f", wd);
	omni_assert_err(omni_backend_write_file(local_fx.b, path, "x", 1),
	                -EACCES);
}

/* Symlinks in the data path are resolved, so the working directory is
 * the one pwd prints, even before the workspace exists. */
Test(backend_local, working_directory_resolves_symlinks)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_command_result r;
	struct omni_backend *b;
	char link[PATH_MAX], want[PATH_MAX + 2], id[64];

	omni_test_project_id(id, sizeof(id), "link");
	/* local_fx.data exists: the suite's fixture started a session. */
	omni_test_fmt(link, sizeof(link), "%s/link", local_fx.tmp);
	cr_assert_eq(symlink(local_fx.data, link), 0);
	opts.data_path = link;
	omni_assert_ok(omni_backend_new(&b, "local", id, &opts, NULL));
	omni_test_fmt(want, sizeof(want), "%s/%s", local_fx.data, id);
	cr_assert_str_eq(omni_backend_get_working_directory(b), want);
	omni_assert_ok(omni_backend_start(b));
	omni_assert_ok(omni_backend_execute_command(b, "pwd", 10, &r));
	omni_test_fmt(want, sizeof(want), "%s/%s\n", local_fx.data, id);
	cr_assert_str_eq(r.output, want);
	omni_command_result_finish(&r);
	omni_backend_free(b);
}

Test(backend_local, start_keeps_existing_content, .init = local_setup_new)
{
	cr_assert_eq(mkdir(local_fx.data, 0755), 0);
	cr_assert_eq(mkdir(local_fx.host, 0755), 0);
	omni_test_write_host(local_hp("old.txt"), "old", 3);
	omni_assert_ok(omni_backend_start(local_fx.b));
	local_assert_content("old.txt", "old");
}

Test(backend_local, status_lifecycle, .init = local_setup_new)
{
	cr_assert_eq(omni_backend_get_status(local_fx.b),
	             OMNI_STATUS_UNINITIALIZED);
	omni_assert_ok(omni_backend_start(local_fx.b));
	cr_assert_eq(omni_backend_get_status(local_fx.b), OMNI_STATUS_RUNNING);
	omni_assert_ok(omni_backend_shutdown(local_fx.b));
	cr_assert_eq(omni_backend_get_status(local_fx.b), OMNI_STATUS_STOPPED);
	/* A second shutdown is harmless. */
	omni_assert_ok(omni_backend_shutdown(local_fx.b));
	cr_assert_eq(omni_backend_get_status(local_fx.b), OMNI_STATUS_STOPPED);
	/* The workspace stays on disk. */
	cr_assert(omni_test_host_exists(local_fx.host));
	/* A stopped session can be started again. */
	omni_assert_ok(omni_backend_start(local_fx.b));
	cr_assert_eq(omni_backend_get_status(local_fx.b), OMNI_STATUS_RUNNING);
	local_put("again.txt", "x");
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

	omni_test_fmt(env_data, sizeof(env_data), "%s/envdata", local_fx.tmp);
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

	/* local_fx.b was made with opts.data_path = local_fx.data. */
	omni_test_fmt(env_data, sizeof(env_data), "%s/ignored", local_fx.tmp);
	setenv("OMNI_DATA_PATH", env_data, 1);
	local_put("x.txt", "x");
	cr_assert(omni_test_host_exists(local_hp("x.txt")));
	cr_assert_not(omni_test_host_exists(env_data));
}

Test(backend_local, default_data_path_is_dot_data)
{
	struct omni_backend *b;
	char want[PATH_MAX], id[64];

	omni_test_project_id(id, sizeof(id), "cwd");
	unsetenv("OMNI_DATA_PATH");
	cr_assert_eq(chdir(local_fx.tmp), 0);
	omni_assert_ok(omni_local_backend_new(&b, id, NULL));
	omni_assert_ok(omni_backend_start(b));
	/* The host dir was made absolute at start: leaving the directory
	 * does not move the workspace. */
	cr_assert_eq(chdir("/"), 0);
	omni_assert_ok(omni_backend_write_file(b, "f.txt", "d", 1));
	omni_test_fmt(want, sizeof(want), "%s/data/%s/f.txt", local_fx.tmp, id);
	cr_assert(omni_test_host_exists(want), "%s missing", want);
	omni_backend_free(b);
}

Test(backend_local, relative_data_path_option)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_backend *b;
	char want[PATH_MAX], id[64];

	omni_test_project_id(id, sizeof(id), "rel");
	cr_assert_eq(chdir(local_fx.tmp), 0);
	opts.data_path = "reldata";
	omni_assert_ok(omni_backend_new(&b, "local", id, &opts, NULL));
	omni_assert_ok(omni_backend_start(b));
	omni_test_fmt(want, sizeof(want), "%s/reldata/%s", local_fx.tmp, id);
	cr_assert(omni_test_host_exists(want), "%s missing", want);
	omni_backend_free(b);
}

Test(backend_local, unknown_backend_name)
{
	struct omni_backend *b = (struct omni_backend *)&local_fx;
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
	cr_assert(omni_vfs_caps(local_fx.b) & OMNI_CAP_HARDLINKS);
	cr_assert(omni_vfs_caps(local_fx.b) & OMNI_CAP_FILE_FD);
	cr_assert(omni_vfs_caps(local_fx.b) & OMNI_CAP_TTY);
	cr_assert_not(omni_vfs_caps(local_fx.b) & OMNI_CAP_REMOTE);
	cr_assert_str_eq(omni_state_name(omni_backend_state(local_fx.b)),
	                 "none");
}

Test(backend_local, free_null_and_free_running)
{
	omni_backend_free(NULL);
	/* Freeing a running session shuts it down first. */
	omni_backend_free(local_fx.b);
	local_fx.b = NULL;
}

Test(backend_local, options_are_copied, .init = local_setup_new)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_command_result res;
	struct omni_backend *b;
	char data[PATH_MAX], id[64], env0[32];
	const char *env[] = { env0, NULL };

	omni_test_fmt(data, sizeof(data), "%s/copied", local_fx.tmp);
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
	omni_test_fmt(data, sizeof(data), "%s/copied", local_fx.tmp);
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
	struct omni_file *f = (struct omni_file *)&local_fx;
	struct omni_exec *e = (struct omni_exec *)&local_fx;
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

Test(backend_local, calls_before_start_are_enotconn, .init = local_setup_new)
{
	assert_not_connected(local_fx.b);
	/* Nothing was created. */
	cr_assert_not(omni_test_host_exists(local_fx.host));
}

Test(backend_local, calls_after_shutdown_are_enotconn)
{
	omni_assert_ok(omni_backend_shutdown(local_fx.b));
	assert_not_connected(local_fx.b);
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
		w[i] = (struct worker){ .b = local_fx.b, .id = i };
		cr_assert_eq(pthread_create(&t[i], NULL, worker_main, &w[i]),
		             0);
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(pthread_join(t[i], NULL), 0);
		cr_assert_eq(w[i].failures, 0, "thread %d failed", i);
	}
	omni_assert_ok(omni_backend_list_directory(local_fx.b, "", true, &l));
	cr_assert_eq(l.count, 4 + 4 * 50);
	omni_dir_list_finish(&l);
}
