/*
 * tests/core/test_confine.c - nothing leaves the workspace of the local
 *backend.
 *
 * Each test gets a fixture (helpers.h) whose temp directory holds, next to
 * the workspace, canaries the workspace must never reach:
 *
 *	fx.tmp/canary.txt            a file ("canary")
 *	fx.tmp/outside/secret.txt    a directory with a file ("secret")
 *
 * and, made with symlink(2) directly in the host directory, links that
 * point at them:
 *
 *	abs      -> fx.tmp/canary.txt            absolute, outside
 *	absdir   -> fx.tmp/outside               absolute directory, outside
 *	rel      -> ../../canary.txt             relative, climbing out
 *	reldir   -> ../../outside                relative directory, climbing
 *	up       -> ../../..                     climbing above the temp dir
 *	dangle   -> fx.tmp/created.txt           absolute, to nothing yet
 *	rdangle  -> ../../created2.txt           relative, to nothing yet
 *
 * Every escape through the documented API and the vfs calls must fail with
 * -EACCES and change nothing outside. Where a call looks at the link itself
 * (lstat semantics) instead of following it, it may answer differently,
 * and the comment at that assertion says why that is still safe. Links
 * that stay inside the workspace work normally.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"

static struct omni_fixture fx;
static char canary[PATH_MAX], outside[PATH_MAX], secret[PATH_MAX];
static char created[PATH_MAX], created2[PATH_MAX];
static struct stat canary_st, secret_st, outside_st;

static const char *hp(const char *rel)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ % 4];

	omni_test_host_path(&fx, rel, p, PATH_MAX);
	return p;
}

static void setup(void)
{
	omni_fixture_start(&fx);
	omni_test_fmt(canary, sizeof(canary), "%s/canary.txt", fx.tmp);
	omni_test_fmt(outside, sizeof(outside), "%s/outside", fx.tmp);
	omni_test_fmt(secret, sizeof(secret), "%s/secret.txt", outside);
	omni_test_fmt(created, sizeof(created), "%s/created.txt", fx.tmp);
	omni_test_fmt(created2, sizeof(created2), "%s/created2.txt", fx.tmp);
	omni_test_write_host(canary, "canary", 6);
	cr_assert_eq(chmod(canary, 0644), 0);
	cr_assert_eq(mkdir(outside, 0755), 0);
	omni_test_write_host(secret, "secret", 6);
	cr_assert_eq(symlink(canary, hp("abs")), 0);
	cr_assert_eq(symlink(outside, hp("absdir")), 0);
	cr_assert_eq(symlink("../../canary.txt", hp("rel")), 0);
	cr_assert_eq(symlink("../../outside", hp("reldir")), 0);
	cr_assert_eq(symlink("../../..", hp("up")), 0);
	cr_assert_eq(symlink(created, hp("dangle")), 0);
	cr_assert_eq(symlink("../../created2.txt", hp("rdangle")), 0);
	/* Something legitimate inside. */
	omni_test_write_host(hp("inside.txt"), "inside", 6);
	cr_assert_eq(stat(canary, &canary_st), 0);
	cr_assert_eq(stat(secret, &secret_st), 0);
	cr_assert_eq(stat(outside, &outside_st), 0);
}

/* Nothing outside the workspace changed. */
static void assert_outside_untouched(void)
{
	struct stat st;
	char *data;
	size_t len;

	data = omni_test_read_host(canary, &len);
	cr_assert_not_null(data, "the canary is gone");
	cr_assert_str_eq(data, "canary", "the canary was rewritten");
	free(data);
	cr_assert_eq(stat(canary, &st), 0);
	cr_assert_eq(st.st_mode, canary_st.st_mode, "canary mode changed");
	cr_assert_eq(st.st_mtim.tv_sec, canary_st.st_mtim.tv_sec);
	cr_assert_eq(st.st_mtim.tv_nsec, canary_st.st_mtim.tv_nsec);
	cr_assert_eq(st.st_size, 6);

	data = omni_test_read_host(secret, &len);
	cr_assert_not_null(data, "the secret is gone");
	cr_assert_str_eq(data, "secret");
	free(data);
	cr_assert_eq(stat(secret, &st), 0);
	cr_assert_eq(st.st_mode, secret_st.st_mode);
	cr_assert_eq(st.st_mtim.tv_nsec, secret_st.st_mtim.tv_nsec);
	cr_assert_eq(stat(outside, &st), 0);
	cr_assert_eq(st.st_mode, outside_st.st_mode);
	cr_assert_eq(st.st_mtim.tv_sec, outside_st.st_mtim.tv_sec);
	cr_assert_eq(st.st_mtim.tv_nsec, outside_st.st_mtim.tv_nsec,
	             "something was created or removed in outside/");

	cr_assert_not(omni_test_host_exists(created), "created.txt appeared");
	cr_assert_not(omni_test_host_exists(created2), "created2.txt appeared");
}

static void teardown(void)
{
	omni_fixture_finish(&fx);
}

TestSuite(confine, .init = setup, .fini = teardown, .timeout = 30);

/* Paths that leave lexically, and paths that leave through a link. */
static const char *const lexical[] = {
	"../../etc/passwd",         "/etc/passwd",        "..", "../canary.txt",
	"/workspace/../canary.txt", "a/../../canary.txt",
};
static const char *const via_file_link[] = { "abs", "rel", "up/etc/passwd" };
static const char *const via_dir_link[] = {
	"absdir/secret.txt",
	"reldir/secret.txt",
	"/workspace/absdir/secret.txt",
};

#define N(a) (sizeof(a) / sizeof(*(a)))

Test(confine, read_file)
{
	char *data = (char *)&fx;
	size_t len;

	for (size_t i = 0; i < N(lexical); i++) {
		omni_assert_err(
		    omni_backend_read_file(fx.b, lexical[i], &data, &len),
		    -EACCES);
		cr_assert_null(data);
	}
	for (size_t i = 0; i < N(via_file_link); i++)
		omni_assert_err(
		    omni_backend_read_file(fx.b, via_file_link[i], &data, &len),
		    -EACCES);
	for (size_t i = 0; i < N(via_dir_link); i++)
		omni_assert_err(
		    omni_backend_read_file(fx.b, via_dir_link[i], &data, &len),
		    -EACCES);
	assert_outside_untouched();
}

Test(confine, write_file)
{
	for (size_t i = 0; i < N(lexical); i++)
		omni_assert_err(
		    omni_backend_write_file(fx.b, lexical[i], "x", 1), -EACCES);
	for (size_t i = 0; i < N(via_file_link); i++)
		omni_assert_err(
		    omni_backend_write_file(fx.b, via_file_link[i], "pwned", 5),
		    -EACCES);
	for (size_t i = 0; i < N(via_dir_link); i++)
		omni_assert_err(
		    omni_backend_write_file(fx.b, via_dir_link[i], "pwned", 5),
		    -EACCES);
	/* Creating through a dangling link must not create its target. */
	omni_assert_err(omni_backend_write_file(fx.b, "dangle", "new", 3),
	                -EACCES);
	omni_assert_err(omni_backend_write_file(fx.b, "rdangle", "new", 3),
	                -EACCES);
	/* New files and directories below a link to outside. */
	omni_assert_err(omni_backend_write_file(fx.b, "absdir/new.txt", "n", 1),
	                -EACCES);
	omni_assert_err(
	    omni_backend_write_file(fx.b, "reldir/sub/new.txt", "n", 1),
	    -EACCES);
	omni_assert_err(omni_backend_write_file(fx.b, "up/x", "n", 1), -EACCES);
	assert_outside_untouched();
}

Test(confine, delete_file)
{
	for (size_t i = 0; i < N(lexical); i++)
		omni_assert_err(omni_backend_delete_file(fx.b, lexical[i]),
		                -EACCES);
	for (size_t i = 0; i < N(via_dir_link); i++)
		omni_assert_err(omni_backend_delete_file(fx.b, via_dir_link[i]),
		                -EACCES);
	assert_outside_untouched();
	/* Deleting the link itself is fine: it is in the workspace, and its
	 * target stays. */
	omni_assert_ok(omni_backend_delete_file(fx.b, "abs"));
	cr_assert_not(omni_test_host_exists(hp("abs")));
	assert_outside_untouched();
}

Test(confine, copy_file)
{
	/* Out as the source ... */
	for (size_t i = 0; i < N(lexical); i++)
		omni_assert_err(omni_backend_copy_file(fx.b, lexical[i], "c"),
		                -EACCES);
	for (size_t i = 0; i < N(via_file_link); i++)
		omni_assert_err(
		    omni_backend_copy_file(fx.b, via_file_link[i], "c"),
		    -EACCES);
	for (size_t i = 0; i < N(via_dir_link); i++)
		omni_assert_err(
		    omni_backend_copy_file(fx.b, via_dir_link[i], "c"),
		    -EACCES);
	cr_assert_not(omni_test_host_exists(hp("c")));
	/* ... and as the target. */
	omni_assert_err(omni_backend_copy_file(fx.b, "inside.txt", "abs"),
	                -EACCES);
	omni_assert_err(omni_backend_copy_file(fx.b, "inside.txt", "rel"),
	                -EACCES);
	omni_assert_err(omni_backend_copy_file(fx.b, "inside.txt", "dangle"),
	                -EACCES);
	omni_assert_err(
	    omni_backend_copy_file(fx.b, "inside.txt", "absdir/secret.txt"),
	    -EACCES);
	omni_assert_err(
	    omni_backend_copy_file(fx.b, "inside.txt", "reldir/copied.txt"),
	    -EACCES);
	omni_assert_err(
	    omni_backend_copy_file(fx.b, "inside.txt", "../copied.txt"),
	    -EACCES);
	assert_outside_untouched();
}

Test(confine, move_file)
{
	omni_assert_err(omni_backend_move_file(fx.b, "absdir/secret.txt", "s"),
	                -EACCES);
	omni_assert_err(
	    omni_backend_move_file(fx.b, "inside.txt", "absdir/moved.txt"),
	    -EACCES);
	omni_assert_err(
	    omni_backend_move_file(fx.b, "inside.txt", "../moved.txt"),
	    -EACCES);
	omni_assert_err(omni_backend_move_file(fx.b, "/etc/passwd", "p"),
	                -EACCES);
	cr_assert(omni_test_host_exists(hp("inside.txt")));
	assert_outside_untouched();
}

Test(confine, file_exists_and_stat)
{
	struct stat st;

	for (size_t i = 0; i < N(lexical); i++)
		omni_assert_err(omni_backend_file_exists(fx.b, lexical[i]),
		                -EACCES);
	for (size_t i = 0; i < N(via_dir_link); i++)
		omni_assert_err(omni_backend_file_exists(fx.b, via_dir_link[i]),
		                -EACCES);
	omni_assert_err(omni_vfs_stat(fx.b, "absdir/secret.txt", &st), -EACCES);
	omni_assert_err(omni_vfs_stat(fx.b, "reldir/secret.txt", &st), -EACCES);
	omni_assert_err(omni_vfs_stat(fx.b, "up/etc", &st), -EACCES);
	/* The links themselves are workspace entries (lstat). */
	cr_assert_eq(omni_backend_file_exists(fx.b, "abs"), OMNI_FILE_SYMLINK);
	cr_assert_eq(omni_backend_file_exists(fx.b, "absdir"),
	             OMNI_FILE_SYMLINK);
}

Test(confine, vfs_chmod_truncate_utimens)
{
	struct timespec ts[2] = { { 1, 0 }, { 1, 0 } };

	omni_assert_err(omni_vfs_chmod(fx.b, "abs", 0777), -EACCES);
	omni_assert_err(omni_vfs_chmod(fx.b, "rel", 0777), -EACCES);
	omni_assert_err(omni_vfs_chmod(fx.b, "absdir", 0700), -EACCES);
	omni_assert_err(omni_vfs_chmod(fx.b, "absdir/secret.txt", 0777),
	                -EACCES);
	omni_assert_err(omni_vfs_chmod(fx.b, "up", 0700), -EACCES);
	omni_assert_err(omni_vfs_truncate(fx.b, "abs", 0), -EACCES);
	omni_assert_err(omni_vfs_truncate(fx.b, "rel", 0), -EACCES);
	omni_assert_err(omni_vfs_truncate(fx.b, "reldir/secret.txt", 0),
	                -EACCES);
	omni_assert_err(omni_vfs_utimens(fx.b, "absdir/secret.txt", ts),
	                -EACCES);
	omni_assert_err(
	    omni_vfs_chown(fx.b, "absdir/secret.txt", getuid(), getgid()),
	    -EACCES);
	/* utimens and chown act on the link itself (no follow): the link
	 * changes, the canary does not. */
	omni_assert_ok(omni_vfs_utimens(fx.b, "abs", ts));
	omni_assert_ok(omni_vfs_chown(fx.b, "abs", getuid(), getgid()));
	assert_outside_untouched();
}

Test(confine, vfs_open)
{
	struct omni_file *f = (struct omni_file *)&fx;
	static const char *const targets[] = {
		"abs",
		"rel",
		"dangle",
		"rdangle",
		"up/x",
		"absdir/secret.txt",
		"absdir/new.txt",
		"reldir/secret.txt",
		"reldir/new.txt",
		"..",
	};
	static const int flag_sets[] = {
		O_RDONLY,
		O_WRONLY | O_CREAT,
		O_RDWR | O_CREAT | O_TRUNC,
		O_WRONLY | O_CREAT | O_EXCL,
		O_WRONLY | O_APPEND,
	};

	for (size_t i = 0; i < N(targets); i++) {
		for (size_t k = 0; k < N(flag_sets); k++) {
			int rc = omni_vfs_open(fx.b, targets[i], flag_sets[k],
			                       0666, &f);
			/* O_EXCL on an existing link is EEXIST before any
			 * resolution: also a refusal, and a safe one. */
			if ((flag_sets[k] & O_EXCL) && rc == -EEXIST)
				continue;
			cr_assert_eq(rc, -EACCES, "open(%s, %#x) gave %d: %s",
			             targets[i], (unsigned)flag_sets[k], rc,
			             omni_error_last());
			cr_assert_null(f);
		}
	}
	assert_outside_untouched();
}

Test(confine, vfs_namespace_ops)
{
	omni_assert_err(omni_vfs_mkdir(fx.b, "absdir/newdir", 0755), -EACCES);
	omni_assert_err(omni_vfs_mkdir(fx.b, "up/newdir", 0755), -EACCES);
	omni_assert_err(omni_vfs_rmdir(fx.b, "absdir/x"), -EACCES);
	omni_assert_err(omni_vfs_unlink(fx.b, "absdir/secret.txt"), -EACCES);
	omni_assert_err(omni_vfs_unlink(fx.b, "reldir/secret.txt"), -EACCES);
	omni_assert_err(omni_vfs_rename(fx.b, "absdir/secret.txt", "stolen", 0),
	                -EACCES);
	omni_assert_err(
	    omni_vfs_rename(fx.b, "inside.txt", "absdir/secret.txt", 0),
	    -EACCES);
	omni_assert_err(omni_vfs_link(fx.b, "absdir/secret.txt", "hard"),
	                -EACCES);
	omni_assert_err(omni_vfs_link(fx.b, "inside.txt", "absdir/hard"),
	                -EACCES);
	omni_assert_err(omni_vfs_symlink(fx.b, "x", "absdir/sl"), -EACCES);
	char buf[PATH_MAX];
	omni_assert_err(omni_vfs_readlink(fx.b, "absdir/x", buf, sizeof(buf)),
	                -EACCES);
	/* Reading the link's own text is allowed: it reveals nothing. */
	cr_assert_gt(omni_vfs_readlink(fx.b, "abs", buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, canary);
	/* Storing a link to outside is allowed too (it is never followed
	 * out); using it is refused. */
	omni_assert_ok(omni_vfs_symlink(fx.b, "/etc/passwd", "etcpw"));
	char *data;
	omni_assert_err(omni_backend_read_file(fx.b, "etcpw", &data, NULL),
	                -EACCES);
	assert_outside_untouched();
}

static int count_entry(const char *name, const struct stat *st, void *payload)
{
	(void)name;
	(void)st;
	(*(int *)payload)++;
	return 0;
}

Test(confine, directories)
{
	struct omni_dir_list l;
	struct omni_str_list g;
	int count = 0;

	/* readdir follows the link beneath the root: refused. */
	omni_assert_err(omni_vfs_readdir(fx.b, "absdir", count_entry, &count),
	                -EACCES);
	omni_assert_err(omni_vfs_readdir(fx.b, "reldir", count_entry, &count),
	                -EACCES);
	omni_assert_err(omni_vfs_readdir(fx.b, "up", count_entry, &count),
	                -EACCES);
	cr_assert_eq(count, 0);
	omni_assert_err(omni_backend_list_directory(fx.b, "..", false, &l),
	                -EACCES);
	omni_assert_err(omni_backend_list_directory(fx.b, "absdir", false, &l),
	                -EACCES);
	omni_assert_err(omni_backend_list_directory(fx.b, "reldir", true, &l),
	                -EACCES);
	omni_assert_err(omni_backend_list_directory(fx.b, "/etc", false, &l),
	                -EACCES);
	cr_assert_eq(l.count, 0);
	omni_assert_err(omni_backend_create_directory(fx.b, "absdir/new", true),
	                -EACCES);
	omni_assert_err(
	    omni_backend_create_directory(fx.b, "absdir/new", false), -EACCES);
	omni_assert_err(omni_backend_create_directory(fx.b, "../new", true),
	                -EACCES);
	omni_assert_err(omni_backend_delete_directory(fx.b, "reldir/x"),
	                -EACCES);
	omni_assert_err(omni_backend_delete_directory(fx.b, ".."), -EACCES);
	/* delete_directory on the link: a symlink is not a directory
	 * (lstat), so -ENOTDIR, and outside/ is left alone. */
	omni_assert_err(omni_backend_delete_directory(fx.b, "absdir"),
	                -ENOTDIR);
	/* glob: a pattern or base that leaves is refused; a link to outside
	 * inside the workspace is never descended into. */
	omni_assert_err(omni_backend_glob_files(fx.b, "../*", NULL, &g),
	                -EACCES);
	omni_assert_err(omni_backend_glob_files(fx.b, "*", "..", &g), -EACCES);
	omni_assert_ok(omni_backend_glob_files(fx.b, "**/*.txt", NULL, &g));
	for (size_t i = 0; i < g.count; i++)
		cr_assert_null(strstr(g.items[i], "secret"), "%s", g.items[i]);
	omni_str_list_finish(&g);
	/* A base directory reached through a link to outside holds no
	 * matches (glob treats an unreadable directory as empty). */
	omni_assert_ok(omni_backend_glob_files(fx.b, "*", "absdir", &g));
	cr_assert_eq(g.count, 0);
	omni_str_list_finish(&g);
	assert_outside_untouched();
	/* The whole workspace can be removed without touching outside. */
	omni_assert_ok(omni_state_clean(omni_backend_state(fx.b), fx.b));
	assert_outside_untouched();
}

Test(confine, exec_cwd)
{
	struct omni_exec *e = (struct omni_exec *)&fx;
	static const char *const cwds[] = { "absdir", "reldir", "up",
		                            "..",     "../..",  "up/tmp" };

	for (size_t i = 0; i < N(cwds); i++) {
		struct omni_exec_request req = { .shell = "touch pwned",
			                         .cwd = cwds[i] };
		omni_assert_err(omni_vfs_exec_start(fx.b, &req, &e), -EACCES);
		cr_assert_null(e);
	}
	cr_assert_not(omni_test_host_exists(hp("pwned")));
	assert_outside_untouched();
}

/* --- links that stay inside ----------------------------------------------- */

Test(confine, inside_links_work)
{
	struct omni_dir_list l;
	char *data;
	size_t len;

	cr_assert_eq(mkdir(hp("real"), 0755), 0);
	omni_test_write_host(hp("real/a.txt"), "A", 1);
	cr_assert_eq(symlink("real", hp("dirlink")), 0);
	cr_assert_eq(symlink("real/a.txt", hp("filelink")), 0);
	cr_assert_eq(symlink("../inside.txt", hp("real/up-inside")), 0);

	omni_assert_ok(omni_backend_read_file(fx.b, "filelink", &data, &len));
	cr_assert_str_eq(data, "A");
	free(data);
	omni_assert_ok(
	    omni_backend_read_file(fx.b, "dirlink/a.txt", &data, &len));
	cr_assert_str_eq(data, "A");
	free(data);
	/* A relative link with ".." that stays inside. */
	omni_assert_ok(
	    omni_backend_read_file(fx.b, "real/up-inside", &data, &len));
	cr_assert_str_eq(data, "inside");
	free(data);
	/* Writing through links. */
	omni_assert_ok(omni_backend_write_file(fx.b, "filelink", "B", 1));
	data = omni_test_read_host(hp("real/a.txt"), &len);
	cr_assert_str_eq(data, "B");
	free(data);
	omni_assert_ok(
	    omni_backend_write_file(fx.b, "dirlink/new.txt", "N", 1));
	cr_assert(omni_test_host_exists(hp("real/new.txt")));
	omni_assert_ok(
	    omni_backend_write_file(fx.b, "dirlink/sub/deep.txt", "D", 1));
	cr_assert(omni_test_host_exists(hp("real/sub/deep.txt")));
	omni_assert_ok(
	    omni_backend_copy_file(fx.b, "filelink", "dirlink/copy.txt"));
	cr_assert(omni_test_host_exists(hp("real/copy.txt")));
	omni_assert_ok(omni_vfs_chmod(fx.b, "filelink", 0600));
	omni_assert_ok(omni_vfs_truncate(fx.b, "filelink", 0));
	/* Listing through a directory link. */
	omni_assert_ok(omni_backend_list_directory(fx.b, "dirlink", false, &l));
	cr_assert_geq(l.count, 4);
	cr_assert_str_eq(l.entries[0].path, "a.txt");
	omni_dir_list_finish(&l);
	/* A command can start in a linked directory. */
	struct omni_exec_request req = { .shell = "cat a.txt new.txt",
		                         .cwd = "dirlink" };
	struct omni_exec *e;
	omni_assert_ok(omni_vfs_exec_start(fx.b, &req, &e));
	struct omni_exec_status status;
	omni_assert_ok(omni_vfs_exec_wait(e, NULL, NULL, &status));
	cr_assert_eq(status.exit_code, 0);
	omni_vfs_exec_free(e);
	assert_outside_untouched();
}
