/*
 * tests/fs/test_nodes_shared.c - a local mount shared with other users
 * (root, -o allow_other) and a sandbox that swaps files under the mount.
 *
 * nodes_shared: files another uid creates through the mount are that
 * uid's (and group's, with supplementary groups and setgid directories
 * honoured), and that uid can chmod them. The other uid runs in a forked
 * child (run_as_user); only the daemon needs /dev/fuse.
 *
 * nodes_race: a thread swaps a directory for a symlink leading out of the
 * workspace (and back) on the host side, as a command in the sandbox
 * could, while another works through the mount on descriptors of that
 * directory: nothing outside the workspace is ever touched.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"

#define OTHER_UID  4321
#define OTHER_GID  4321
#define SHARED_GID 4242

static struct mount_fx m;

static void setup_shared(void)
{
	static const char *const extra[] = { "-o", "allow_other", NULL };

	if (geteuid() != 0)
		return;
	mount_up(&m, extra);
	/* The other user must reach the mount point. */
	cr_assert(chmod(m.tmp, 0755) == 0);
	cr_assert(chmod(m.mnt, 0777) == 0);
}

static void teardown(void)
{
	mount_down(&m);
}

TestSuite(nodes_shared, .init = setup_shared, .fini = teardown, .timeout = 60);

struct as_other {
	char dir[PATH_MAX];
};

static int make_files(void *arg)
{
	struct as_other *a = arg;
	char p[PATH_MAX + 32];

	snprintf(p, sizeof(p), "%s/mine", a->dir);
	int fd = open(p, O_CREAT | O_WRONLY | O_EXCL, 0644);
	if (fd < 0)
		return 10;
	close(fd);
	if (chmod(p, 0600) < 0)
		return 11;
	snprintf(p, sizeof(p), "%s/dir", a->dir);
	if (mkdir(p, 0755) < 0)
		return 12;
	snprintf(p, sizeof(p), "%s/fifo", a->dir);
	if (mkfifo(p, 0644) < 0)
		return 13;
	snprintf(p, sizeof(p), "%s/link", a->dir);
	if (symlink("mine", p) < 0)
		return 14;
	/* A directory only the shared group may write to. */
	snprintf(p, sizeof(p), "%s/group/byfriend", a->dir);
	fd = open(p, O_CREAT | O_WRONLY, 0664);
	if (fd < 0)
		return 15;
	close(fd);
	return 0;
}

static void assert_owner(const char *rel, uid_t uid, gid_t gid)
{
	char h[PATH_MAX];
	struct stat st;

	omni_test_fmt(h, sizeof(h), "%s/%s", m.host, rel);
	cr_assert(lstat(h, &st) == 0, "%s: %s", rel, strerror(errno));
	cr_assert_eq(st.st_uid, uid, "%s belongs to %u", rel, st.st_uid);
	cr_assert_eq(st.st_gid, gid, "%s has group %u", rel, st.st_gid);
}

Test(nodes_shared, files_of_another_uid_are_its_own)
{
	struct as_other a;
	char group[PATH_MAX];
	gid_t groups[] = { SHARED_GID };

	if (geteuid() != 0)
		cr_skip_test("needs root (allow_other, another uid)");
	omni_test_fmt(a.dir, sizeof(a.dir), "%s", m.mnt);
	/* root:SHARED_GID, 2770: writable through the supplementary group,
	 * new files take the directory's group. */
	omni_test_fmt(group, sizeof(group), "%s/group", m.mnt);
	cr_assert(mkdir(group, 0770) == 0);
	cr_assert(chown(group, 0, SHARED_GID) == 0);
	cr_assert(chmod(group, 02770) == 0);
	int rc = run_as_user(OTHER_UID, OTHER_GID, 1, groups, make_files, &a);
	cr_assert_eq(rc, 0, "the other user's step %d failed", rc);
	assert_owner("mine", OTHER_UID, OTHER_GID);
	assert_owner("dir", OTHER_UID, OTHER_GID);
	assert_owner("fifo", OTHER_UID, OTHER_GID);
	assert_owner("link", OTHER_UID, OTHER_GID);
	assert_owner("group/byfriend", OTHER_UID, SHARED_GID);
	char h[PATH_MAX];
	struct stat st;
	omni_test_fmt(h, sizeof(h), "%s/mine", m.host);
	cr_assert(lstat(h, &st) == 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	/* Root's own files stay root's. */
	omni_test_fmt(h, sizeof(h), "%s/rootfile", m.mnt);
	omni_test_write_host(h, "r", 1);
	assert_owner("rootfile", 0, 0);
}

static int chmod_roots_file(void *arg)
{
	struct as_other *a = arg;
	char p[PATH_MAX + 32];

	snprintf(p, sizeof(p), "%s/rootfile", a->dir);
	if (chmod(p, 0777) == 0)
		return 1;
	return errno == EPERM ? 0 : 2;
}

Test(nodes_shared, permissions_are_checked_for_the_caller)
{
	struct as_other a;
	char p[PATH_MAX];

	if (geteuid() != 0)
		cr_skip_test("needs root (allow_other, another uid)");
	omni_test_fmt(a.dir, sizeof(a.dir), "%s", m.mnt);
	omni_test_fmt(p, sizeof(p), "%s/rootfile", m.mnt);
	omni_test_write_host(p, "r", 1);
	cr_assert_eq(
	    run_as_user(OTHER_UID, OTHER_GID, 0, NULL, chmod_roots_file, &a),
	    0);
}

/* --- the symlink swap race -------------------------------------------------
 */

static void setup_race(void)
{
	mount_up(&m, NULL);
}

TestSuite(nodes_race, .init = setup_race, .fini = teardown, .timeout = 60);

struct race {
	char host_dir[PATH_MAX];  /* the workspace's d, on the host */
	char host_real[PATH_MAX]; /* where d goes while swapped */
	char target[PATH_MAX];    /* what the symlink leads to */
	atomic_bool stop;
	atomic_int swaps;
};

static void *swapper(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->stop)) {
		if (rename(r->host_dir, r->host_real) < 0)
			continue;
		if (symlink(r->target, r->host_dir) == 0) {
			usleep(50);
			unlink(r->host_dir);
		}
		rename(r->host_real, r->host_dir);
		atomic_fetch_add(&r->swaps, 1);
	}
	return NULL;
}

/* Operations on the mount through descriptors of d and of the root; each
 * may fail while d is swapped, none may reach outside. */
static void work(int dfd, int rootfd, int i)
{
	char name[32];
	struct stat st;

	snprintf(name, sizeof(name), "omnifs-race-%d", i % 8);
	int fd = openat(dfd, name, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, "in", 2) < 0) {
			/* only the outside matters */
		}
		close(fd);
	}
	fchmodat(dfd, "f", (i & 1) ? 0600 : 0644, 0);
	fstatat(dfd, "f", &st, AT_SYMLINK_NOFOLLOW);
	mkdirat(dfd, "omnifs-race-dir", 0755);
	unlinkat(dfd, "omnifs-race-dir", AT_REMOVEDIR);
	unlinkat(dfd, name, 0);
	fstatat(rootfd, "d", &st, AT_SYMLINK_NOFOLLOW);
	fd = openat(rootfd, "d", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (fd >= 0) {
		DIR *dir = fdopendir(fd);
		while (dir && readdir(dir))
			;
		if (dir)
			closedir(dir);
		else
			close(fd);
	}
}

/* Swap d for a symlink to target for 1.5 s while working through the
 * mount on descriptors of d and of the root. */
static void race(const char *target)
{
	struct race r = { 0 };
	char p[PATH_MAX];
	pthread_t t;

	omni_test_fmt(r.target, sizeof(r.target), "%s", target);
	omni_test_fmt(r.host_dir, sizeof(r.host_dir), "%s/d", m.host);
	omni_test_fmt(r.host_real, sizeof(r.host_real), "%s/d.real", m.host);
	omni_test_fmt(p, sizeof(p), "%s/d", m.mnt);
	int dfd = open(p, O_RDONLY | O_DIRECTORY);
	int rootfd = open(m.mnt, O_RDONLY | O_DIRECTORY);
	cr_assert(dfd >= 0 && rootfd >= 0);
	cr_assert(pthread_create(&t, NULL, swapper, &r) == 0);
	long long end = omni_test_now_ms() + 1500;
	for (int i = 0; omni_test_now_ms() < end; i++)
		work(dfd, rootfd, i);
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	close(dfd);
	close(rootfd);
	cr_assert(atomic_load(&r.swaps) > 10, "only %d swaps",
	          atomic_load(&r.swaps));
}

Test(nodes_race, symlink_swap_never_leads_outside)
{
	char outside[PATH_MAX], p[PATH_MAX];
	struct stat st, before;

	omni_test_fmt(outside, sizeof(outside), "%s/outside", m.tmp);
	cr_assert(mkdir(outside, 0755) == 0);
	omni_test_fmt(p, sizeof(p), "%s/f", outside);
	omni_test_write_host(p, "outside", 7);
	cr_assert(chmod(p, 0640) == 0);
	cr_assert(lstat(p, &before) == 0);
	omni_test_fmt(p, sizeof(p), "%s/d", m.mnt);
	cr_assert(mkdir(p, 0755) == 0);
	omni_test_fmt(p, sizeof(p), "%s/d/f", m.mnt);
	omni_test_write_host(p, "inside", 6);

	race(outside);
	/* Outside: the same single file, same mode, same content. */
	DIR *dir = opendir(outside);
	struct dirent *de;
	int entries = 0;
	cr_assert(dir);
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			entries++;
	closedir(dir);
	cr_assert_eq(entries, 1, "something was made outside the workspace");
	omni_test_fmt(p, sizeof(p), "%s/f", outside);
	cr_assert(lstat(p, &st) == 0);
	cr_assert_eq(st.st_mode, before.st_mode);
	cr_assert_eq(st.st_ctim.tv_sec, before.st_ctim.tv_sec);
	cr_assert_eq(st.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
	char *got = omni_test_read_host(p, NULL);
	cr_assert_str_eq(got, "outside");
	free(got);

	/* And with the host's own root as the target. */
	race("/");
	for (int i = 0; i < 8; i++) {
		omni_test_fmt(p, sizeof(p), "/omnifs-race-%d", i);
		cr_assert_not(omni_test_host_exists(p), "%s was made", p);
	}
	cr_assert_not(omni_test_host_exists("/omnifs-race-dir"));
}
