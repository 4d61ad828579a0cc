/*
 * tests/fs/test_nodes_api.c - the node calls of a host backend
 * (omni_vfs_node_*, ops version 3) without a mount, on the local backend:
 * one name at a time, no symlink followed, and a node that keeps its
 * identity across renames. What fs/ops_node.c builds on.
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
#include "omni/backend.h"
#include "omni/error.h"
#include "omni/sys/backend_impl.h"
#include "omni/vfs.h"

static struct omni_fixture fx;
static char outside[PATH_MAX];
static int root = -1;

static void setup(void)
{
	char p[PATH_MAX];

	omni_fixture_start(&fx);
	omni_test_fmt(outside, sizeof(outside), "%s/outside", fx.tmp);
	cr_assert(mkdir(outside, 0755) == 0);
	omni_test_host_path(&fx, "esc", p, sizeof(p));
	cr_assert(symlink(outside, p) == 0);
	omni_test_host_path(&fx, "up", p, sizeof(p));
	cr_assert(symlink("..", p) == 0);
	omni_test_host_path(&fx, "f", p, sizeof(p));
	omni_test_write_host(p, "file", 4);
	root = omni_vfs_node_root(fx.b);
	cr_assert(root >= 0, "%s", omni_error_last());
}

static void teardown(void)
{
	if (root >= 0)
		close(root);
	root = -1;
	omni_fixture_finish(&fx);
}

TestSuite(nodes_api, .init = setup, .fini = teardown, .timeout = 30);

Test(nodes_api, local_and_docker_have_nodes)
{
	cr_assert(omni_vfs_caps(fx.b) & OMNI_CAP_NODES);
}

Test(nodes_api, only_one_name_at_a_time)
{
	static const char *const bad[] = {
		"..", ".", "a/b", "esc/x", "/etc", ""
	};
	struct stat st;
	struct omni_file *f;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (bad[i][0]) {
			cr_assert_eq(
			    omni_vfs_node_lookup(fx.b, root, bad[i], &st),
			    -EINVAL, "lookup %s", bad[i]);
			cr_assert_eq(
			    omni_vfs_node_stat(fx.b, root, bad[i], &st),
			    -EINVAL, "stat %s", bad[i]);
		}
		cr_assert_eq(omni_vfs_node_mkdir(fx.b, root, bad[i], 0755),
		             -EINVAL, "mkdir %s", bad[i]);
		cr_assert_eq(omni_vfs_node_create(fx.b, root, bad[i], O_WRONLY,
		                                  0644, &f),
		             -EINVAL, "create %s", bad[i]);
		cr_assert_eq(omni_vfs_node_unlink(fx.b, root, bad[i], false),
		             -EINVAL, "unlink %s", bad[i]);
		cr_assert_eq(omni_vfs_node_symlink(fx.b, "x", root, bad[i]),
		             -EINVAL, "symlink %s", bad[i]);
	}
}

Test(nodes_api, symlinks_are_nodes_never_followed)
{
	struct omni_file *f = NULL;
	struct stat st;
	char p[PATH_MAX];

	/* The symlink itself, not what it points to. */
	int fd = omni_vfs_node_lookup(fx.b, root, "esc", &st);
	cr_assert(fd >= 0);
	cr_assert(S_ISLNK(st.st_mode));
	/* Used as a directory, it leads nowhere. */
	cr_assert_lt(
	    omni_vfs_node_create(fx.b, fd, "x", O_WRONLY | O_EXCL, 0644, &f),
	    0);
	cr_assert_lt(omni_vfs_node_mkdir(fx.b, fd, "x", 0755), 0);
	cr_assert_lt(omni_vfs_node_readdir(fx.b, fd, NULL, NULL), 0);
	/* Opened for I/O, it is refused (ELOOP), not followed. */
	cr_assert_eq(omni_vfs_node_open(fx.b, fd, O_RDONLY, &f), -ELOOP);
	close(fd);
	/* Creating over a symlink's name does not follow it either. */
	cr_assert_lt(
	    omni_vfs_node_create(fx.b, root, "esc", O_WRONLY, 0644, &f), 0);
	omni_test_fmt(p, sizeof(p), "%s/x", outside);
	cr_assert_not(omni_test_host_exists(p));
	omni_test_fmt(p, sizeof(p), "%s", outside);
	cr_assert(stat(p, &st) == 0 && st.st_nlink == 2,
	          "something was made outside");
}

Test(nodes_api, a_node_keeps_its_identity_across_renames)
{
	struct omni_file *f = NULL;
	struct stat st, st2;
	char buf[8] = { 0 };
	char from[PATH_MAX], to[PATH_MAX];

	int fd = omni_vfs_node_lookup(fx.b, root, "f", &st);
	cr_assert(fd >= 0);
	omni_test_host_path(&fx, "f", from, sizeof(from));
	omni_test_host_path(&fx, "g", to, sizeof(to));
	cr_assert(rename(from, to) == 0);
	omni_test_write_host(from, "other", 5);
	cr_assert_eq(omni_vfs_node_chmod(fx.b, fd, 0600), 0);
	cr_assert_eq(omni_vfs_node_stat(fx.b, fd, "", &st2), 0);
	cr_assert_eq(st2.st_ino, st.st_ino);
	cr_assert_eq(st2.st_mode & 07777, 0600);
	cr_assert_eq(omni_vfs_node_open(fx.b, fd, O_RDONLY, &f), 0);
	cr_assert_eq(omni_vfs_read(f, buf, sizeof(buf) - 1, 0), 4);
	cr_assert_str_eq(buf, "file");
	omni_vfs_release(f);
	/* A second name for the node, through its descriptor. */
	cr_assert_eq(omni_vfs_node_link(fx.b, fd, root, "h"), 0);
	cr_assert_eq(omni_vfs_node_stat(fx.b, root, "h", &st2), 0);
	cr_assert_eq(st2.st_ino, st.st_ino);
	cr_assert_eq(st2.st_nlink, 2);
	close(fd);
}

static int fake_stat(struct omni_backend *b, const char *path, struct stat *st)
{
	(void)b;
	(void)path;
	(void)st;
	return -ENOENT;
}

static void fake_destroy(struct omni_backend *b)
{
	(void)b;
}

static int fake_root(struct omni_backend *b)
{
	(void)b;
	return -ENOSYS;
}

Test(nodes_api, node_slots_come_all_or_none)
{
	const struct omni_backend_ops ops = {
		.version = OMNI_BACKEND_OPS_VERSION,
		.name = "fake",
		.stat = fake_stat,
		.destroy = fake_destroy,
		.node_root = fake_root,
	};
	struct omni_backend b;

	cr_assert_eq(omni__backend_init(&b, &ops, "p", "/w", NULL), -EINVAL);
	cr_assert(strstr(omni_error_last(), "node_root"), "%s",
	          omni_error_last());
}
