/*
 * tests/state/test_state.c - the "none" state manager and the generic state
 * calls (omni/state.h) on a local backend:
 *
 *   omni_state_noop        save/load/list/cleanup succeed and keep nothing
 *   omni_state_new         "none" works, unknown names are -EINVAL
 *   omni_backend_*_snapshot through the default manager of a session
 *   omni_state_clean       empties the workspace except .git and leaves an
 *                          empty README.md
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

TestSuite(state_none, .init = setup, .fini = teardown, .timeout = 30);

static const char *hp(const char *rel)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ % 4];

	omni_test_host_path(&fx, rel, p, PATH_MAX);
	return p;
}

/* Names in a host directory, sorted, space-separated. */
static void host_names(const char *dir, char *out, size_t size)
{
	struct dirent **list;
	int n = scandir(dir, &list, NULL, alphasort);

	cr_assert_geq(n, 0, "scandir(%s)", dir);
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (strcmp(list[i]->d_name, ".") != 0 &&
		    strcmp(list[i]->d_name, "..") != 0) {
			if (out[0])
				strncat(out, " ", size - strlen(out) - 1);
			strncat(out, list[i]->d_name, size - strlen(out) - 1);
		}
		free(list[i]);
	}
	free(list);
}

Test(state_none, noop_keeps_nothing)
{
	struct omni_state *st;
	struct omni_snapshot_list l = { .count = 7 };
	char *id = (char *)&fx;
	char before[1024], after[1024];

	omni_assert_ok(omni_backend_write_file(fx.b, "f.txt", "x", 1));
	host_names(fx.data, before, sizeof(before));
	omni_assert_ok(omni_state_noop(&st));
	cr_assert_str_eq(omni_state_name(st), "none");
	omni_assert_ok(omni_state_save(st, fx.b, "message", &id));
	cr_assert_null(id, "nothing saved, no id");
	omni_assert_ok(omni_state_save(st, fx.b, NULL, NULL));
	cr_assert_eq(omni_state_load_latest(st, fx.b), 0, "no snapshot");
	omni_assert_ok(omni_state_list(st, fx.b, &l));
	cr_assert_eq(l.count, 0);
	cr_assert_null(l.items);
	omni_snapshot_list_finish(&l);
	omni_assert_ok(omni_state_cleanup(st, fx.b));
	/* Nothing appeared next to the workspace, nothing in it changed. */
	host_names(fx.data, after, sizeof(after));
	cr_assert_str_eq(after, before);
	host_names(fx.host, after, sizeof(after));
	cr_assert_str_eq(after, "f.txt");
	omni_state_free(st);
	omni_state_free(NULL);
}

Test(state_none, new_by_name)
{
	struct omni_state *st = (struct omni_state *)&fx;
	const char *const *names = omni_state_names();
	bool none = false;

	omni_assert_ok(omni_state_new(&st, "none"));
	cr_assert_not_null(st);
	cr_assert_str_eq(omni_state_name(st), "none");
	omni_state_free(st);

	omni_assert_err(omni_state_new(&st, "bogus"), -EINVAL);
	cr_assert_null(st);
	cr_assert_str_neq(omni_error_last(), "");
	omni_assert_err(omni_state_new(&st, NULL), -EINVAL);
	omni_assert_err(omni_state_new(&st, ""), -EINVAL);
	omni_assert_err(omni_state_new(&st, "NONE"), -EINVAL);

	for (size_t i = 0; names[i]; i++)
		if (strcmp(names[i], "none") == 0)
			none = true;
	cr_assert(none);
}

Test(state_none, backend_snapshots_with_the_default_manager)
{
	struct omni_snapshot_list l;
	char *id = (char *)&fx;

	cr_assert_not_null(omni_backend_state(fx.b));
	cr_assert_str_eq(omni_state_name(omni_backend_state(fx.b)), "none");
	omni_assert_ok(omni_backend_save_snapshot(fx.b, "first", &id));
	cr_assert_null(id);
	omni_assert_ok(omni_backend_save_snapshot(fx.b, NULL, NULL));
	cr_assert_eq(omni_backend_load_latest_snapshot(fx.b), 0);
	omni_assert_ok(omni_backend_list_snapshots(fx.b, &l));
	cr_assert_eq(l.count, 0);
	omni_snapshot_list_finish(&l);
	/* shutdown saves through the manager: fine with "none". */
	omni_assert_ok(omni_backend_shutdown(fx.b));
	omni_assert_err(omni_backend_save_snapshot(fx.b, "late", &id),
	                -ENOTCONN);
	cr_assert_null(id);
}

Test(state_none, explicit_manager_is_owned_by_the_backend)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_state *st;
	struct omni_backend *b;
	char id[64];

	omni_test_project_id(id, sizeof(id), "owned");
	opts.data_path = fx.data;
	omni_assert_ok(omni_state_new(&st, "none"));
	omni_assert_ok(omni_backend_new(&b, "local", id, &opts, st));
	cr_assert_eq(omni_backend_state(b), st);
	omni_assert_ok(omni_backend_start(b));
	omni_assert_ok(omni_backend_save_snapshot(b, "m", NULL));
	/* Freed with the backend (ASan would report a leak otherwise). */
	omni_backend_free(b);
}

Test(state_none, clean_keeps_only_git_and_an_empty_readme)
{
	char names[1024];
	struct stat st;
	char *data;
	size_t len = 99;

	omni_assert_ok(omni_backend_write_file(fx.b, "a.txt", "a", 1));
	omni_assert_ok(omni_backend_write_file(fx.b, ".env", "SECRET=1", 8));
	omni_assert_ok(omni_backend_write_file(fx.b, "README.md", "old", 3));
	omni_assert_ok(omni_backend_write_file(fx.b, "src/deep/x.c", "x", 1));
	omni_assert_ok(omni_backend_write_file(fx.b, ".git/HEAD",
	                                       "ref: refs/heads/main\n", 21));
	omni_assert_ok(
	    omni_backend_write_file(fx.b, ".git/objects/ab/cd", "o", 1));
	omni_assert_ok(omni_backend_create_directory(fx.b, "empty", false));
	cr_assert_eq(symlink("src", hp("link")), 0);
	cr_assert_eq(symlink("nowhere", hp("dangling")), 0);

	omni_assert_ok(omni_state_clean(omni_backend_state(fx.b), fx.b));

	host_names(fx.host, names, sizeof(names));
	cr_assert_str_eq(names, ".git README.md");
	cr_assert_eq(stat(hp("README.md"), &st), 0);
	cr_assert_eq(st.st_size, 0);
	omni_assert_ok(omni_backend_read_file(fx.b, "README.md", &data, &len));
	cr_assert_eq(len, 0);
	free(data);
	/* .git is kept whole. */
	omni_assert_ok(omni_backend_read_file(fx.b, ".git/HEAD", &data, NULL));
	cr_assert_str_eq(data, "ref: refs/heads/main\n");
	free(data);
	cr_assert(omni_test_host_exists(hp(".git/objects/ab/cd")));
}

Test(state_none, clean_an_empty_workspace)
{
	char names[256];

	omni_assert_ok(omni_state_clean(omni_backend_state(fx.b), fx.b));
	host_names(fx.host, names, sizeof(names));
	cr_assert_str_eq(names, "README.md");
	/* Twice is the same. */
	omni_assert_ok(omni_state_clean(omni_backend_state(fx.b), fx.b));
	host_names(fx.host, names, sizeof(names));
	cr_assert_str_eq(names, "README.md");
}

Test(state_none, clean_needs_a_running_session)
{
	omni_assert_ok(omni_backend_shutdown(fx.b));
	omni_assert_err(omni_state_clean(omni_backend_state(fx.b), fx.b),
	                -ENOTCONN);
}

Test(state_none, clean_many_entries)
{
	char name[64], names[256];

	/* Entries are removed while the root is being read: none may be
	 * skipped. */
	for (int i = 0; i < 400; i++) {
		snprintf(name, sizeof(name), "file-%03d.txt", i);
		omni_assert_ok(omni_backend_write_file(fx.b, name, "x", 1));
	}
	for (int i = 0; i < 30; i++) {
		snprintf(name, sizeof(name), "dir-%02d/sub/f", i);
		omni_assert_ok(omni_backend_write_file(fx.b, name, "y", 1));
	}
	omni_assert_ok(omni_state_clean(omni_backend_state(fx.b), fx.b));
	host_names(fx.host, names, sizeof(names));
	cr_assert_str_eq(names, "README.md");
}
