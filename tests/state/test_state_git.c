/*
 * tests/state/test_state_git.c - the git state manager against real remotes:
 * a bare repository by path and by file://, and git's smart HTTP
 * (tests/servers/git-http: `git http-backend` behind a Basic-auth token)
 * on loopback, where server-side hooks run and can refuse a push.
 *
 * Every test has its own temp directory (remote, data folders, HOME) and
 * project id, and stops the servers it started. The git CLI is used only
 * to prepare remotes and to look at what the manager stored.
 *
 * Pairings (state_helpers.h): the round trip runs once per backend of
 * state_pairings[]; the real-mount round trip (omnifs --state git) too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <git2.h>

#include "helpers.h"
#include "mount_helpers.h"
#include "state/snapshot.h"
#include "state/state_git.h"
#include "state_helpers.h"

#define TOKEN "tok-3f9a1c"

static struct {
	char tmp[PATH_MAX];
	char remote[PATH_MAX]; /* a bare repository */
	char project[64];
	struct omni_backend *b[4];
	struct test_server http;
	struct mount_fx m[2];
} fx;

static void setup(void)
{
	char home[PATH_MAX], run[PATH_MAX];

	memset(&fx, 0, sizeof(fx));
	omni_test_mkdtemp(fx.tmp, sizeof(fx.tmp));
	omni_test_project_id(fx.project, sizeof(fx.project), "gs");
	omni_test_fmt(fx.remote, sizeof(fx.remote), "%s/remote.git", fx.tmp);
	omni_test_fmt(home, sizeof(home), "%s/home", fx.tmp);
	omni_test_fmt(run, sizeof(run), "%s/run", fx.tmp);
	cr_assert(mkdir(home, 0700) == 0 && mkdir(run, 0700) == 0);
	/* Hermetic: no user git config, no tokens from the caller. */
	setenv("HOME", home, 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("OMNI_RUNTIME_DIR", run, 1);
	unsetenv("OMNIAGENTS_GITHUB_API_KEY");
	unsetenv("GITHUB_TOKEN");
	unsetenv("OMNIAGENTS_GITHUB_STATE_REPO");
	unsetenv("SSH_AUTH_SOCK");
	cr_assert(sh_in(NULL, "git init -q --bare '%s'", fx.remote) == 0);
	omni_assert_ok(omni_global_init());
}

static void teardown(void)
{
	for (int i = 0; i < 4; i++)
		omni_backend_free(fx.b[i]);
	for (int i = 0; i < 2; i++)
		mount_down(&fx.m[i]);
	state_pairings_finish();
	test_server_stop(&fx.http);
	omni_test_rm_rf(fx.tmp);
	omni_global_shutdown();
	omni_test_leak_check();
}

TestSuite(state_git, .init = setup, .fini = teardown, .timeout = 120);

/* --- helpers
 * ------------------------------------------------------------------ */

static struct omni_state *git_state(const char *remote)
{
	struct omni_state_git_options o = OMNI_STATE_GIT_OPTIONS_INIT;
	struct omni_state *st;

	o.remote = remote;
	omni_assert_ok(omni_state_git(&st, &o));
	return st;
}

static const char *data_dir(const char *name)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ % 4];

	omni_test_fmt(p, PATH_MAX, "%s/%s", fx.tmp, name);
	return p;
}

/* Slot i: a local backend on data folder <tmp>/<data> with manager st. */
static struct omni_backend *start(int i, const char *data,
                                  struct omni_state *st)
{
	fx.b[i] = state_backend_start(state_pairing("local"), fx.project,
	                              data_dir(data), st);
	return fx.b[i];
}

static void put(struct omni_backend *b, const char *path, const char *text)
{
	omni_assert_ok(omni_backend_write_file(b, path, text, strlen(text)));
}

static char *get(struct omni_backend *b, const char *path)
{
	char *data;

	omni_assert_ok(omni_backend_read_file(b, path, &data, NULL));
	return data;
}

/* The branch of the fixture's project in the remote. */
static void branch_of(char *out, size_t size)
{
	omni_assert_ok(omni__git_branch_name("state/", fx.project, out, size));
}

/* git --git-dir=<repo> ARGS (stdout, trimmed); asserts success. */
static char *git_out(const char *repo, const char *args)
{
	int st;
	char *out = sh_out(&st, NULL, "git --git-dir='%s' %s 2>&1", repo, args);
	size_t n = strlen(out);

	cr_assert_eq(st, 0, "git %s: %s", args, out);
	while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = '\0';
	return out;
}

static int count_commits(const char *repo)
{
	char branch[256], args[300];

	branch_of(branch, sizeof(branch));
	omni_test_fmt(args, sizeof(args), "rev-list --count %s", branch);
	char *n = git_out(repo, args);
	int v = atoi(n);
	free(n);
	return v;
}

/* A workspace that exercises everything a snapshot keeps and drops. */
static void fill(struct omni_backend *b)
{
	static char blob[300 * 1024];

	state_random_bytes(blob, sizeof(blob), 7);
	put(b, "README.md", "# project\n");
	put(b, "src/main.c", "int main(void) { return 0; }\n");
	put(b, "bin/run.sh", "#!/bin/sh\necho run\n");
	omni_assert_ok(omni_vfs_chmod(b, "bin/run.sh", 0755));
	omni_assert_ok(
	    omni_backend_write_file(b, "data/blob.bin", blob, sizeof(blob)));
	omni_assert_ok(omni_vfs_symlink(b, "src/main.c", "link"));
	omni_assert_ok(omni_vfs_symlink(b, "../README.md", "src/up"));
	put(b, ".gitignore", "build/\n*.log\n!keep.log\n");
	put(b, "keep.log", "kept: re-included\n");
	put(b, "app.log", "ignored by *.log\n");
	put(b, "build/out.o", "ignored by build/\n");
	put(b, "node_modules/x/index.js", "ignored by default\n");
	put(b, "__pycache__/m.cpython-311.pyc", "ignored by default\n");
	put(b, ".venv/bin/python", "ignored by default\n");
	put(b, "pkg/mod.pyc", "ignored by default\n");
	put(b, "pkg/mod.py", "x = 1\n");
	put(b, "proj/.git/HEAD", "ref: refs/heads/main\n");
	put(b, "proj/file.txt", "in a nested repository\n");
	omni_assert_ok(omni_backend_create_directory(b, "empty", false));
}

static bool has_prefix(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

/* What a git snapshot of fill() leaves out. */
static bool git_drops(const char *p)
{
	static const char *const dropped[] = {
		"app.log",     "build", "node_modules",
		"__pycache__", ".venv", "pkg/mod.pyc",
		"proj/.git",   "empty", NULL,
	};

	for (size_t i = 0; dropped[i]; i++)
		if (has_prefix(p, dropped[i]))
			return true;
	return false;
}

/* --- round trips -------------------------------------------------------------
 */

/* Save on one data folder, load on a fresh one: everything a snapshot
 * keeps is back, bit for bit, with modes and links; nothing it drops. */
static void round_trip(const struct state_pairing *p, const char *remote)
{
	char *before, *after, *id = NULL;

	state_require(p);
	fx.b[0] = state_backend_start(p, fx.project, data_dir("a"),
	                              git_state(remote));
	fill(fx.b[0]);
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "first", &id));
	cr_assert_not_null(id);
	cr_assert_eq(strlen(id), 40, "a commit id: %s", id);
	before = state_tree_text(fx.b[0], git_drops);
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));
	omni_backend_free(fx.b[0]);
	fx.b[0] = NULL;

	fx.b[1] = state_backend_start(p, fx.project, data_dir("b"),
	                              git_state(remote));
	after = state_tree_text(fx.b[1], NULL);
	cr_assert_str_eq(after, before);
	cr_assert(strstr(after, "f 755 bin/run.sh"), "%s", after);
	cr_assert(strstr(after, "l link -> src/main.c"), "%s", after);
	cr_assert(strstr(after, "keep.log"), "%s", after);
	cr_assert(strstr(after, "proj/file.txt"), "%s", after);
	free(before);
	free(after);
	free(id);
}

Test(state_git, round_trip_bare_repository_by_path)
{
	round_trip(state_pairing("local"), fx.remote);
}

Test(state_git, round_trip_file_url)
{
	char url[PATH_MAX + 8];

	omni_test_fmt(url, sizeof(url), "file://%s", fx.remote);
	round_trip(state_pairing("local"), url);
}

ParameterizedTestParameters(state_git, round_trip_each_backend)
{
	return state_pairing_params();
}

ParameterizedTest(struct state_param *p, state_git, round_trip_each_backend,
                  .timeout = 180)
{
	round_trip(state_pairing(p->backend), fx.remote);
}

Test(state_git, commit_lands_on_the_mapped_branch)
{
	char branch[256], args[400], *out;

	/* '_' becomes '-', as the documented Python manager does. */
	omni_test_fmt(fx.project, sizeof(fx.project), "my_proj_%ld",
	              (long)getpid());
	start(0, "a", git_state(fx.remote));
	put(fx.b[0], "a.txt", "a");
	omni_assert_ok(
	    omni_backend_save_snapshot(fx.b[0], "hello world", NULL));
	branch_of(branch, sizeof(branch));
	cr_assert(strncmp(branch, "state/my-proj-", 14) == 0, "%s", branch);
	omni_test_fmt(args, sizeof(args), "log -1 --format=%%s%%n%%an %s",
	              branch);
	out = git_out(fx.remote, args);
	cr_assert(strstr(out, "hello world\nomnifs"), "%s", out);
	free(out);
	omni_test_fmt(args, sizeof(args), "ls-tree -r --name-only %s", branch);
	out = git_out(fx.remote, args);
	cr_assert_str_eq(out, "a.txt");
	free(out);
}

Test(state_git, nothing_changed_makes_no_commit)
{
	char *id = (char *)1;

	start(0, "a", git_state(fx.remote));
	put(fx.b[0], "a.txt", "a");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "one", NULL));
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "two", &id));
	cr_assert_null(id, "nothing changed: no id");
	cr_assert_eq(count_commits(fx.remote), 1);
	/* Shutdown saves too, and still makes none. */
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));
	cr_assert_eq(count_commits(fx.remote), 1);
}

Test(state_git, a_change_within_the_same_second_is_seen)
{
	/* Same size, same second: the stat cache must not hide it. */
	start(0, "a", git_state(fx.remote));
	put(fx.b[0], "f.txt", "aaaa");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "1", NULL));
	put(fx.b[0], "f.txt", "bbbb");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "2", NULL));
	cr_assert_eq(count_commits(fx.remote), 2);
	start(1, "b", git_state(fx.remote));
	char *text = get(fx.b[1], "f.txt");
	cr_assert_str_eq(text, "bbbb");
	free(text);
}

Test(state_git, deletions_and_edits_travel)
{
	start(0, "a", git_state(fx.remote));
	put(fx.b[0], "keep.txt", "v1");
	put(fx.b[0], "gone.txt", "bye");
	put(fx.b[0], "dir/sub/x.txt", "x");
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));

	start(1, "b", git_state(fx.remote));
	put(fx.b[1], "keep.txt", "v2");
	omni_assert_ok(omni_backend_delete_file(fx.b[1], "gone.txt"));
	omni_assert_ok(omni_backend_delete_directory(fx.b[1], "dir"));
	omni_assert_ok(omni_backend_shutdown(fx.b[1]));

	start(2, "c", git_state(fx.remote));
	char *text = state_tree_text(fx.b[2], NULL);
	cr_assert(strstr(text, "keep.txt"), "%s", text);
	cr_assert_null(strstr(text, "gone.txt"), "%s", text);
	cr_assert_null(strstr(text, "dir"), "%s", text);
	free(text);
	text = get(fx.b[2], "keep.txt");
	cr_assert_str_eq(text, "v2");
	free(text);
}

Test(state_git, a_save_from_elsewhere_stays_in_the_history)
{
	char branch[256], args[400], *out;

	start(0, "a", git_state(fx.remote));
	put(fx.b[0], "base.txt", "base");
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));
	/* Two data folders start from the same snapshot ... */
	start(1, "b", git_state(fx.remote));
	start(2, "c", git_state(fx.remote));
	put(fx.b[1], "from-b.txt", "b");
	put(fx.b[2], "from-c.txt", "c");
	/* ... and save one after the other. */
	omni_assert_ok(omni_backend_save_snapshot(fx.b[1], "b's work", NULL));
	omni_assert_ok(omni_backend_save_snapshot(fx.b[2], "c's work", NULL));
	branch_of(branch, sizeof(branch));
	/* The last save wins the content ... */
	omni_test_fmt(args, sizeof(args), "ls-tree --name-only %s", branch);
	out = git_out(fx.remote, args);
	cr_assert_str_eq(out, "base.txt\nfrom-c.txt");
	free(out);
	/* ... and b's snapshot is still in the remote's history. */
	omni_test_fmt(args, sizeof(args), "log --format=%%s %s", branch);
	out = git_out(fx.remote, args);
	cr_assert(strstr(out, "b's work") && strstr(out, "c's work"), "%s",
	          out);
	free(out);
	omni_test_fmt(args, sizeof(args), "show %s^2:from-b.txt", branch);
	out = git_out(fx.remote, args);
	cr_assert_str_eq(out, "b");
	free(out);
}

Test(state_git, list_is_newest_first)
{
	struct omni_snapshot_list l;
	char *ids[3];

	start(0, "a", git_state(fx.remote));
	for (int i = 0; i < 3; i++) {
		char msg[16], body[16];
		snprintf(msg, sizeof(msg), "m%d", i + 1);
		snprintf(body, sizeof(body), "v%d", i);
		put(fx.b[0], "f.txt", body);
		omni_assert_ok(
		    omni_backend_save_snapshot(fx.b[0], msg, &ids[i]));
	}
	/* Listed from a fresh data folder: the history comes from the
	 * remote. */
	start(1, "b", git_state(fx.remote));
	omni_assert_ok(omni_backend_list_snapshots(fx.b[1], &l));
	cr_assert_eq(l.count, 3);
	for (int i = 0; i < 3; i++) {
		char msg[16];
		snprintf(msg, sizeof(msg), "m%d", 3 - i);
		cr_assert_str_eq(l.items[i].message, msg);
		cr_assert_str_eq(l.items[i].id, ids[2 - i]);
		cr_assert(l.items[i].time > 1600000000);
		if (i)
			cr_assert_leq(l.items[i].time, l.items[i - 1].time);
	}
	omni_snapshot_list_finish(&l);
	for (int i = 0; i < 3; i++)
		free(ids[i]);
}

/* A workspace of data folder <data> made by a session without a manager
 * (so it holds work no snapshot has). */
static void prefill(const char *data, const char *path, const char *text)
{
	struct omni_backend *b = state_backend_start(
	    state_pairing("local"), fx.project, data_dir(data), NULL);
	put(b, path, text);
	omni_backend_free(b);
}

Test(state_git, a_new_project_loads_nothing_and_touches_nothing)
{
	prefill("a", "mine.txt", "local only");
	/* The remote has no branch for the project yet. */
	start(0, "a", git_state(fx.remote));
	cr_assert_eq(omni_backend_load_latest_snapshot(fx.b[0]), 0);
	char *text = get(fx.b[0], "mine.txt");
	cr_assert_str_eq(text, "local only");
	free(text);
}

Test(state_git, same_data_folder_keeps_the_workspace_as_is)
{
	char path[PATH_MAX];
	struct stat st1, st2;

	start(0, "a", git_state(fx.remote));
	put(fx.b[0], "a.txt", "a");
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));
	omni_test_fmt(path, sizeof(path), "%s/a/%s/a.txt", fx.tmp, fx.project);
	cr_assert(stat(path, &st1) == 0);
	omni_backend_free(fx.b[0]);
	fx.b[0] = NULL;
	usleep(20000);
	start(1, "a", git_state(fx.remote));
	cr_assert(stat(path, &st2) == 0);
	/* Not rewritten: same inode, same mtime (build tools watch them). */
	cr_assert_eq(st1.st_ino, st2.st_ino);
	cr_assert_eq(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);
}

Test(state_git, loading_over_other_work_keeps_it_in_a_backup)
{
	char store[PATH_MAX], branch[256], args[400], *out;

	start(0, "a", git_state(fx.remote));
	put(fx.b[0], "shared.txt", "from a");
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));

	/* Data folder b has unsaved work of its own when it starts. */
	struct omni_backend_options o = OMNI_BACKEND_OPTIONS_INIT;
	o.data_path = data_dir("b");
	omni_assert_ok(
	    omni_backend_new(&fx.b[1], "local", fx.project, &o, NULL));
	omni_assert_ok(omni_backend_start(fx.b[1]));
	put(fx.b[1], "unsaved.txt", "precious");
	put(fx.b[1], "shared.txt", "from b");
	omni_backend_free(fx.b[1]);
	fx.b[1] = NULL;

	start(2, "b", git_state(fx.remote));
	char *text = get(fx.b[2], "shared.txt");
	cr_assert_str_eq(text, "from a");
	free(text);
	cr_assert_eq(omni_backend_file_exists(fx.b[2], "unsaved.txt"),
	             OMNI_FILE_NONE);
	/* ... but nothing is lost: it is a commit in the local history. */
	omni_test_fmt(store, sizeof(store), "%s/b/.omnifs-state/%s.git", fx.tmp,
	              fx.project);
	branch_of(branch, sizeof(branch));
	omni_test_fmt(args, sizeof(args),
	              "show refs/omnifs/backup/%s:unsaved.txt", branch);
	out = git_out(store, args);
	cr_assert_str_eq(out, "precious");
	free(out);
}

/* --- failures
 * ----------------------------------------------------------------- */

Test(state_git, unreachable_remote_fails_the_start_and_writes_nothing)
{
	struct omni_backend *b;
	char *text;

	prefill("a", "mine.txt", "local only");
	int rc = state_backend_try(&b, state_pairing("local"), fx.project,
	                           data_dir("a"),
	                           git_state("http://127.0.0.1:9/nothing.git"));
	fx.b[0] = b;
	cr_assert_eq(rc, -ECONNREFUSED, "%d: %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "127.0.0.1"), "%s",
	          omni_error_last());
	cr_assert(strstr(omni_error_last(), "loading the latest snapshot"),
	          "%s", omni_error_last());
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_STOPPED);
	/* The workspace is as it was. */
	omni_backend_free(b);
	fx.b[0] = NULL;
	b = state_backend_start(state_pairing("local"), fx.project,
	                        data_dir("a"), NULL);
	fx.b[0] = b;
	text = state_tree_text(b, NULL);
	cr_assert(strncmp(text, "f 644 mine.txt ", 15) == 0 &&
	              !strchr(text, '\n')[1],
	          "%s", text);
	free(text);
}

Test(state_git, missing_remote_path_is_enoent)
{
	struct omni_backend *b;
	char missing[PATH_MAX];

	omni_test_fmt(missing, sizeof(missing), "%s/nope.git", fx.tmp);
	int rc = state_backend_try(&b, state_pairing("local"), fx.project,
	                           data_dir("a"), git_state(missing));
	fx.b[0] = b;
	cr_assert_eq(rc, -ENOENT, "%s", omni_error_last());
	cr_assert(strstr(omni_error_last(), "nope.git"), "%s",
	          omni_error_last());
}

Test(state_git, no_remote_configured_is_einval)
{
	struct omni_state *st = (struct omni_state *)1;

	omni_assert_err(omni_state_git(&st, NULL), -EINVAL);
	cr_assert_null(st);
	cr_assert(strstr(omni_error_last(), "OMNIAGENTS_GITHUB_STATE_REPO"));
	setenv("OMNIAGENTS_GITHUB_STATE_REPO", fx.remote, 1);
	omni_assert_ok(omni_state_new(&st, "git"));
	cr_assert_str_eq(omni_state_name(st), "git");
	omni_state_free(st);
	omni_assert_ok(omni_state_new(&st, "git:owner/repo"));
	omni_state_free(st);
	omni_assert_err(omni_state_new(&st, "git:"), -EINVAL);
}

/* A smart-HTTP server on loopback that wants the token. */
static void start_http(const char *const *extra)
{
	char root[PATH_MAX];
	const char *args[8] = { "--root", root, "--token", TOKEN };
	int n = 4;

	omni_test_fmt(root, sizeof(root), "%s", fx.tmp);
	for (const char *const *e = extra; e && *e && n < 7; e++)
		args[n++] = *e;
	args[n] = NULL;
	test_server_start(&fx.http, "tests/servers/git-http/server.js", args);
}

static const char *http_url(void)
{
	static char url[128];

	omni_test_fmt(url, sizeof(url), "%s/remote.git", fx.http.url);
	return url;
}

Test(state_git, smart_http_with_a_token)
{
	char *stats;

	start_http(NULL);
	setenv("OMNIAGENTS_GITHUB_API_KEY", TOKEN, 1);
	start(0, "a", git_state(http_url()));
	fill(fx.b[0]);
	char *before = state_tree_text(fx.b[0], git_drops);
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));
	start(1, "b", git_state(http_url()));
	char *after = state_tree_text(fx.b[1], NULL);
	cr_assert_str_eq(after, before);
	free(before);
	free(after);
	char url[128];
	omni_test_fmt(url, sizeof(url), "%s/_test/stats", fx.http.url);
	cr_assert_eq(test_http("GET", url, NULL, &stats), 200);
	/* The server asked, the token answered, a push happened. */
	cr_assert(strstr(stats, "\"pushes\":1"), "%s", stats);
	cr_assert_null(strstr(stats, "\"unauthorized\":0"), "%s", stats);
	free(stats);
	/* GITHUB_TOKEN works as well. */
	unsetenv("OMNIAGENTS_GITHUB_API_KEY");
	setenv("GITHUB_TOKEN", TOKEN, 1);
	put(fx.b[1], "more.txt", "more");
	omni_assert_ok(
	    omni_backend_save_snapshot(fx.b[1], "with GITHUB_TOKEN", NULL));
}

Test(state_git, smart_http_wrong_or_missing_token_is_eacces)
{
	struct omni_backend *b;
	int rc;

	start_http(NULL);
	setenv("OMNIAGENTS_GITHUB_API_KEY", "wrong", 1);
	rc = state_backend_try(&b, state_pairing("local"), fx.project,
	                       data_dir("a"), git_state(http_url()));
	fx.b[0] = b;
	cr_assert_eq(rc, -EACCES, "%d: %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "refused the token in "
	                                    "$OMNIAGENTS_GITHUB_API_KEY"),
	          "%s", omni_error_last());

	unsetenv("OMNIAGENTS_GITHUB_API_KEY");
	rc = state_backend_try(&b, state_pairing("local"), fx.project,
	                       data_dir("b"), git_state(http_url()));
	fx.b[1] = b;
	cr_assert_eq(rc, -EACCES, "%d: %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "GITHUB_TOKEN"), "%s",
	          omni_error_last());
}

/* A pre-receive hook in the remote that refuses every push. */
static void refuse_pushes(bool on)
{
	char hook[PATH_MAX];

	omni_test_fmt(hook, sizeof(hook), "%s/hooks/pre-receive", fx.remote);
	if (!on) {
		cr_assert(unlink(hook) == 0);
		return;
	}
	omni_test_write_host(hook,
	                     "#!/bin/sh\necho 'rejected by policy' >&2\n"
	                     "exit 1\n",
	                     strlen("#!/bin/sh\necho 'rejected by policy' >&2\n"
	                            "exit 1\n"));
	cr_assert(chmod(hook, 0755) == 0);
}

Test(state_git, refused_push_keeps_the_commit_and_the_files)
{
	char store[PATH_MAX], branch[256], args[300], path[PATH_MAX];
	char *id = NULL, *out;

	start_http(NULL);
	setenv("OMNIAGENTS_GITHUB_API_KEY", TOKEN, 1);
	start(0, "a", git_state(http_url()));
	put(fx.b[0], "work.txt", "important");
	refuse_pushes(true);

	omni_assert_err(omni_backend_save_snapshot(fx.b[0], "refused", &id),
	                -EPERM);
	cr_assert_null(id);
	const char *msg = omni_error_last();
	cr_assert(strstr(msg, "refused the push"), "%s", msg);
	cr_assert(strstr(msg, "pre-receive hook declined"), "%s", msg);
	cr_assert(strstr(msg, "rejected by policy"), "%s", msg);
	cr_assert(strstr(msg, "kept as commit"), "%s", msg);
	/* The workspace is untouched, the commit is in the local history. */
	out = get(fx.b[0], "work.txt");
	cr_assert_str_eq(out, "important");
	free(out);
	omni_test_fmt(store, sizeof(store), "%s/a/.omnifs-state/%s.git", fx.tmp,
	              fx.project);
	branch_of(branch, sizeof(branch));
	omni_test_fmt(args, sizeof(args), "log -1 --format=%%s %s", branch);
	out = git_out(store, args);
	cr_assert_str_eq(out, "refused");
	free(out);

	/* Unmounting still completes, with the error, and the files stay. */
	cr_assert_lt(omni_backend_shutdown(fx.b[0]), 0);
	omni_test_fmt(path, sizeof(path), "%s/a/%s/work.txt", fx.tmp,
	              fx.project);
	cr_assert(omni_test_host_exists(path));
	omni_backend_free(fx.b[0]);
	fx.b[0] = NULL;

	/* Once the remote accepts again, the next save pushes the kept
	 * commit although nothing changed since. */
	refuse_pushes(false);
	start(1, "a", git_state(http_url()));
	omni_assert_ok(omni_backend_save_snapshot(fx.b[1], "again", &id));
	cr_assert_not_null(id, "the pending commit was pushed");
	free(id);
	cr_assert_eq(count_commits(fx.remote), 1);
	omni_test_fmt(args, sizeof(args), "log -1 --format=%%s %s", branch);
	out = git_out(fx.remote, args);
	cr_assert_str_eq(out, "refused");
	free(out);
}

Test(state_git, cleanup_deletes_the_branch_and_the_local_history)
{
	char store[PATH_MAX], *out;
	int st;

	start(0, "a", git_state(fx.remote));
	put(fx.b[0], "a.txt", "a");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "x", NULL));
	omni_assert_ok(
	    omni_state_cleanup(omni_backend_state(fx.b[0]), fx.b[0]));
	out = sh_out(&st, NULL, "git --git-dir='%s' for-each-ref", fx.remote);
	cr_assert_str_eq(out, "");
	free(out);
	omni_test_fmt(store, sizeof(store), "%s/a/.omnifs-state/%s.git", fx.tmp,
	              fx.project);
	cr_assert(!omni_test_host_exists(store));
	/* And a fresh data folder finds nothing. */
	start(1, "b", git_state(fx.remote));
	cr_assert_eq(omni_backend_file_exists(fx.b[1], "a.txt"),
	             OMNI_FILE_NONE);
	/* Twice is fine. */
	omni_assert_ok(
	    omni_state_cleanup(omni_backend_state(fx.b[1]), fx.b[1]));
}

Test(state_git, clean_leaves_git_and_an_empty_readme_and_saves)
{
	char branch[256], args[300], *out;

	start(0, "a", git_state(fx.remote));
	put(fx.b[0], "a.txt", "a");
	put(fx.b[0], ".git/HEAD", "ref: refs/heads/main\n");
	omni_assert_ok(omni_state_clean(omni_backend_state(fx.b[0]), fx.b[0]));
	branch_of(branch, sizeof(branch));
	omni_test_fmt(args, sizeof(args), "ls-tree -r --name-only %s", branch);
	out = git_out(fx.remote, args);
	cr_assert_str_eq(out, "README.md");
	free(out);
	cr_assert_eq(omni_backend_file_exists(fx.b[0], ".git/HEAD"),
	             OMNI_FILE_FILE);
}

struct saver {
	struct omni_backend *b;
	int rc;
	char msg[512];
};

static void *save_thread(void *arg)
{
	struct saver *s = arg;

	for (int i = 0; i < 3 && s->rc == 0; i++) {
		s->rc = omni_backend_save_snapshot(s->b, "concurrent", NULL);
		if (s->rc < 0)
			snprintf(s->msg, sizeof(s->msg), "%s",
			         omni_error_last());
	}
	return NULL;
}

Test(state_git, concurrent_saves_do_not_corrupt_anything)
{
	struct saver s[3];
	pthread_t t[3];
	char store[PATH_MAX], *out;
	int st;

	start(0, "a", git_state(fx.remote));
	/* A second session on the same data folder: another manager, the
	 * same history and lock file. */
	start(1, "a", git_state(fx.remote));
	for (int i = 0; i < 20; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%02d.txt", i);
		put(fx.b[0], name, name);
	}
	for (int i = 0; i < 3; i++) {
		s[i] = (struct saver){ .b = fx.b[i == 2 ? 1 : 0] };
		cr_assert(pthread_create(&t[i], NULL, save_thread, &s[i]) == 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(s[i].rc, 0, "saver %d: %s", i, s[i].msg);
	}
	cr_assert_eq(count_commits(fx.remote), 1);
	out = sh_out(&st, NULL, "git --git-dir='%s' fsck --strict 2>&1",
	             fx.remote);
	cr_assert_eq(st, 0, "%s", out);
	free(out);
	omni_test_fmt(store, sizeof(store), "%s/a/.omnifs-state/%s.git", fx.tmp,
	              fx.project);
	out = sh_out(&st, NULL, "git --git-dir='%s' fsck 2>&1", store);
	cr_assert_eq(st, 0, "%s", out);
	free(out);
}

Test(state_git, large_files_stream)
{
	size_t n = 6 * 1024 * 1024 + 123;
	char *big = malloc(n), *back;
	size_t len;

	cr_assert(big);
	state_random_bytes(big, n, 99);
	start(0, "a", git_state(fx.remote));
	omni_assert_ok(omni_backend_write_file(fx.b[0], "big.bin", big, n));
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));
	start(1, "b", git_state(fx.remote));
	omni_assert_ok(omni_backend_read_file(fx.b[1], "big.bin", &back, &len));
	cr_assert_eq(len, n);
	cr_assert(memcmp(back, big, n) == 0);
	free(back);
	free(big);
}

/* --- a real mount: omnifs --state git
 * ------------------------------------------- */

ParameterizedTestParameters(state_git, mount_round_trip_each_backend)
{
	return state_pairing_params();
}

ParameterizedTest(struct state_param *param, state_git,
                  mount_round_trip_each_backend, .timeout = 180)
{
	const struct state_pairing *p = state_pairing(param->backend);
	char state[PATH_MAX + 8], branch[256], args[300], *out, *log;
	const char *argv[16];
	int n = 0, st;

	state_require(p);
	omni_test_fmt(state, sizeof(state), "git:%s", fx.remote);
	for (const char *const *a = p->mount_args; a && *a; a++)
		argv[n++] = *a;
	argv[n++] = "--project";
	argv[n++] = fx.project;
	argv[n++] = "--state";
	argv[n++] = state;
	argv[n] = NULL;

	mount_up(&fx.m[0], argv);
	cr_assert(sh_in(fx.m[0].mnt, "mkdir -p src && printf 'hello\\n' > "
	                             "src/hello.txt && printf '#!/bin/sh\\n' "
	                             "> run.sh && chmod 755 run.sh && ln -s "
	                             "src/hello.txt link") == 0);
	/* Save on demand while mounted. */
	out = sh_out(&st, fx.m[0].mnt, "omni-exec --save 'on demand' 2>&1");
	cr_assert_eq(st, 0, "omni-exec --save: %s", out);
	free(out);
	branch_of(branch, sizeof(branch));
	omni_test_fmt(args, sizeof(args), "log -1 --format=%%s %s", branch);
	out = git_out(fx.remote, args);
	cr_assert_str_eq(out, "on demand");
	free(out);
	cr_assert(sh_in(fx.m[0].mnt, "printf 'after\\n' > late.txt") == 0);
	/* Unmount saves: late.txt goes too, and says so on stderr. */
	cr_assert(sh_in(NULL, "fusermount3 -u '%s'", fx.m[0].mnt) == 0);
	cr_assert(omni_test_pid_gone(fx.m[0].pid, 60000),
	          "omnifs did not exit");
	fx.m[0].pid = 0;
	log = omni_test_read_host(fx.m[0].log, NULL);
	cr_assert(log && strstr(log, "saved snapshot"), "progress: %s",
	          log ? log : "");
	free(log);
	mount_down(&fx.m[0]);

	/* A fresh mount on a fresh data folder has it all back. */
	mount_up(&fx.m[1], argv);
	out = sh_out(&st, fx.m[1].mnt,
	             "cat src/hello.txt late.txt && stat -c '%%a' run.sh && "
	             "readlink link");
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_str_eq(out, "hello\nafter\n755\nsrc/hello.txt\n");
	free(out);
	log = omni_test_read_host(fx.m[1].log, NULL);
	cr_assert(log && strstr(log, "loaded snapshot"), "progress: %s",
	          log ? log : "");
	free(log);
}

/* --- pure helpers
 * ---------------------------------------------------------------- */

Test(state_git, remote_urls)
{
	char out[PATH_MAX + 64], cwd[PATH_MAX], want[PATH_MAX + 64];

	cr_assert(getcwd(cwd, sizeof(cwd)));
	omni_assert_ok(omni__git_remote_url("owner/repo", out, sizeof(out)));
	cr_assert_str_eq(out, "https://github.com/owner/repo.git");
	omni_assert_ok(
	    omni__git_remote_url("my-org/my.repo.git", out, sizeof(out)));
	cr_assert_str_eq(out, "https://github.com/my-org/my.repo.git");
	omni_assert_ok(
	    omni__git_remote_url("https://example.com/a/b", out, sizeof(out)));
	cr_assert_str_eq(out, "https://example.com/a/b");
	omni_assert_ok(
	    omni__git_remote_url("git@github.com:o/r.git", out, sizeof(out)));
	cr_assert_str_eq(out, "git@github.com:o/r.git");
	omni_assert_ok(
	    omni__git_remote_url("/srv/state.git", out, sizeof(out)));
	cr_assert_str_eq(out, "/srv/state.git");
	omni_assert_ok(
	    omni__git_remote_url("./dir/repo.git", out, sizeof(out)));
	omni_test_fmt(want, sizeof(want), "%s/dir/repo.git", cwd);
	cr_assert_str_eq(out, want);
	omni_assert_ok(omni__git_remote_url("~/r.git", out, sizeof(out)));
	omni_test_fmt(want, sizeof(want), "%s/r.git", getenv("HOME"));
	cr_assert_str_eq(out, want);
	omni_assert_err(omni__git_remote_url("", out, sizeof(out)), -EINVAL);
}

Test(state_git, branch_names)
{
	char out[256];

	omni_assert_ok(
	    omni__git_branch_name("state/", "my_proj", out, sizeof(out)));
	cr_assert_str_eq(out, "state/my-proj");
	omni_assert_ok(
	    omni__git_branch_name("state/", "a.b-c", out, sizeof(out)));
	cr_assert_str_eq(out, "state/a.b-c");
	/* Names git refuses get their dots replaced. */
	omni_assert_ok(
	    omni__git_branch_name("state/", ".hidden", out, sizeof(out)));
	cr_assert_str_eq(out, "state/-hidden");
	omni_assert_ok(
	    omni__git_branch_name("state/", "a..b", out, sizeof(out)));
	cr_assert_str_eq(out, "state/a--b");
	omni_assert_ok(
	    omni__git_branch_name("state/", "x.lock", out, sizeof(out)));
	cr_assert_str_eq(out, "state/x-lock");
	omni_assert_err(
	    omni__git_branch_name("bad..prefix/", "x", out, sizeof(out)),
	    -EINVAL);
}

struct errno_case {
	int rc, klass;
	char msg[96];
	int want;
};

ParameterizedTestParameters(state_git, error_mapping)
{
	static struct errno_case cases[] = {
		{ GIT_ENOTFOUND, 0, "", -ENOENT },
		{ GIT_EAUTH, GIT_ERROR_HTTP, "", -EACCES },
		{ GIT_ECERTIFICATE, GIT_ERROR_SSL, "", -EACCES },
		{ GIT_ELOCKED, 0, "", -EBUSY },
		{ GIT_EEXISTS, 0, "", -EEXIST },
		{ GIT_ENONFASTFORWARD, 0, "", -EAGAIN },
		{ GIT_EINVALIDSPEC, 0, "", -EINVAL },
		{ GIT_EUSER, 0, "", -ECANCELED },
		{ -1, GIT_ERROR_OS,
		  "failed to connect to 127.0.0.1: Connection refused",
		  -ECONNREFUSED },
		{ -1, GIT_ERROR_HTTP, "unexpected http status code: 404",
		  -ENOENT },
		{ -1, GIT_ERROR_HTTP, "unexpected http status code: 403",
		  -EACCES },
		{ -1, GIT_ERROR_HTTP, "unexpected http status code: 500",
		  -EIO },
		{ -1, GIT_ERROR_NET,
		  "failed to resolve address for x: Name or "
		  "service not known",
		  -EHOSTUNREACH },
		{ -1, GIT_ERROR_NET, "connection timed out", -ETIMEDOUT },
		{ -1, GIT_ERROR_NOMEMORY, "out of memory", -ENOMEM },
		{ -1, GIT_ERROR_NET, "remote error: no such repository", -EIO },
	};
	return cr_make_param_array(struct errno_case, cases,
	                           sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct errno_case *c, state_git, error_mapping)
{
	cr_assert_eq(omni__git_to_errno(c->rc, c->klass, c->msg), c->want,
	             "%d/%d '%s'", c->rc, c->klass, c->msg);
}
