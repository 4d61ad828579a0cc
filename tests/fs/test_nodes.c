/*
 * tests/fs/test_nodes.c - on a local mount, an inode is the backing file
 * (fs/ops_node.c): hard links are one inode, special files can be made,
 * calls on an open file act on that file whatever its name is now, and
 * attributes are right at once through every name.
 *
 * Each test mounts its own session (mount_helpers.c) and compares what the
 * mount shows with the host side of the workspace.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"

static struct mount_fx m;

static void setup(void)
{
	mount_up(&m, NULL);
}

static void teardown(void)
{
	mount_down(&m);
}

TestSuite(nodes, .init = setup, .fini = teardown, .timeout = 60);

static void mpath(char *out, size_t size, const char *rel)
{
	omni_test_fmt(out, size, "%s/%s", m.mnt, rel);
}

static void hpath(char *out, size_t size, const char *rel)
{
	omni_test_fmt(out, size, "%s/%s", m.host, rel);
}

static struct stat lstat_of(const char *path)
{
	struct stat st;

	cr_assert(lstat(path, &st) == 0, "lstat %s: %s", path, strerror(errno));
	return st;
}

Test(nodes, hard_links_are_one_inode)
{
	char a[PATH_MAX], b[PATH_MAX], ha[PATH_MAX];

	mpath(a, sizeof(a), "a");
	mpath(b, sizeof(b), "b");
	hpath(ha, sizeof(ha), "a");
	omni_test_write_host(a, "data", 4);
	cr_assert_eq(lstat_of(a).st_nlink, 1);
	cr_assert(link(a, b) == 0, "link: %s", strerror(errno));
	/* `ln a b; stat -c %h a` prints 2, through both names at once. */
	cr_assert_eq(lstat_of(a).st_nlink, 2);
	cr_assert_eq(lstat_of(b).st_nlink, 2);
	cr_assert_eq(lstat_of(a).st_ino, lstat_of(b).st_ino);
	char *out = sh_out(NULL, m.mnt, "stat -c %%h a");
	cr_assert_str_eq(out, "2\n");
	free(out);
	/* chmod through one name is seen through the other. */
	cr_assert(chmod(b, 0604) == 0);
	cr_assert_eq(lstat_of(a).st_mode & 07777, 0604);
	cr_assert_eq(lstat_of(ha).st_mode & 07777, 0604);
	/* A write through one name: the other sees its size and data. */
	int fd = open(b, O_WRONLY | O_APPEND);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "more", 4), 4);
	close(fd);
	cr_assert_eq(lstat_of(a).st_size, 8);
	char *got = omni_test_read_host(a, NULL);
	cr_assert_str_eq(got, "datamore");
	free(got);
	/* Unlink one name: nlink drops at once through the other. */
	cr_assert(unlink(b) == 0);
	cr_assert_eq(lstat_of(a).st_nlink, 1);
}

Test(nodes, hard_links_made_on_the_host_are_one_inode_too)
{
	char ha[PATH_MAX], hb[PATH_MAX], a[PATH_MAX], b[PATH_MAX];

	hpath(ha, sizeof(ha), "x");
	hpath(hb, sizeof(hb), "y");
	mpath(a, sizeof(a), "x");
	mpath(b, sizeof(b), "y");
	omni_test_write_host(ha, "1", 1);
	cr_assert(link(ha, hb) == 0);
	cr_assert_eq(lstat_of(a).st_ino, lstat_of(b).st_ino);
	cr_assert(chmod(a, 0640) == 0);
	cr_assert_eq(lstat_of(b).st_mode & 07777, 0640);
}

struct fifo_args {
	const char *path;
};

static int fifo_writer(void *arg)
{
	struct fifo_args *a = arg;
	int fd = open(a->path, O_WRONLY);

	if (fd < 0)
		return 1;
	if (write(fd, "through the pipe", 16) != 16)
		return 2;
	close(fd);
	return 0;
}

Test(nodes, mkfifo_with_a_reader_and_a_writer)
{
	char p[PATH_MAX], h[PATH_MAX], buf[64] = { 0 };
	struct fifo_args args = { p };

	mpath(p, sizeof(p), "pipe");
	hpath(h, sizeof(h), "pipe");
	cr_assert(mkfifo(p, 0640) == 0, "mkfifo: %s", strerror(errno));
	cr_assert(S_ISFIFO(lstat_of(p).st_mode));
	cr_assert(S_ISFIFO(lstat_of(h).st_mode));
	cr_assert_eq(lstat_of(h).st_mode & 07777, 0640);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0)
		_exit(fifo_writer(&args));
	int fd = open(p, O_RDONLY);
	cr_assert(fd >= 0, "open fifo: %s", strerror(errno));
	size_t got = 0;
	ssize_t n;
	while ((n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	int st;
	waitpid(pid, &st, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	cr_assert_str_eq(buf, "through the pipe");
	/* And the shell's own mkfifo. */
	cr_assert_eq(sh_in(m.mnt, "mkfifo p2 && test -p p2"), 0);
}

Test(nodes, unix_socket_bound_on_the_mount)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char h[PATH_MAX], buf[8] = { 0 };

	cr_assert(strlen(m.mnt) + 6 < sizeof(sa.sun_path));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/sock", m.mnt);
	hpath(h, sizeof(h), "sock");
	int srv = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert(srv >= 0);
	cr_assert(bind(srv, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	          "bind: %s", strerror(errno));
	cr_assert(listen(srv, 1) == 0);
	cr_assert(S_ISSOCK(lstat_of(sa.sun_path).st_mode));
	cr_assert(S_ISSOCK(lstat_of(h).st_mode));
	int cli = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert(connect(cli, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	          "connect: %s", strerror(errno));
	int conn = accept(srv, NULL, NULL);
	cr_assert(conn >= 0);
	cr_assert_eq(write(cli, "ping", 4), 4);
	cr_assert_eq(read(conn, buf, 4), 4);
	cr_assert_str_eq(buf, "ping");
	close(conn);
	close(cli);
	close(srv);
}

Test(nodes, device_nodes_where_the_daemon_may)
{
	char p[PATH_MAX], h[PATH_MAX];

	mpath(p, sizeof(p), "null");
	hpath(h, sizeof(h), "null");
	int rc = mknod(p, S_IFCHR | 0666, makedev(1, 3));
	if (geteuid() != 0) {
		/* The daemon is this user: the host refuses it too. */
		cr_assert(rc < 0 && errno == EPERM);
		return;
	}
	cr_assert(rc == 0, "mknod: %s", strerror(errno));
	struct stat st = lstat_of(h);
	cr_assert(S_ISCHR(st.st_mode));
	cr_assert_eq(major(st.st_rdev), 1);
	cr_assert_eq(minor(st.st_rdev), 3);
}

Test(nodes, fchmod_after_a_rename_behind_its_back)
{
	char p[PATH_MAX], h[PATH_MAX], hmoved[PATH_MAX];

	mpath(p, sizeof(p), "f");
	hpath(h, sizeof(h), "f");
	hpath(hmoved, sizeof(hmoved), "moved");
	omni_test_write_host(p, "content", 7);
	cr_assert(chmod(p, 0644) == 0);
	int fd = open(p, O_RDWR);
	cr_assert(fd >= 0);
	/* The sandbox renames the file away and puts another in its name. */
	cr_assert(rename(h, hmoved) == 0);
	omni_test_write_host(h, "new", 3);
	cr_assert(chmod(h, 0644) == 0);
	/* fchmod, fchown, futimens and ftruncate act on the open file. */
	cr_assert(fchmod(fd, 0600) == 0, "fchmod: %s", strerror(errno));
	cr_assert(fchown(fd, geteuid(), getegid()) == 0);
	struct timespec ts[2] = { { .tv_sec = 1000000 },
		                  { .tv_sec = 2000000 } };
	cr_assert(ftruncate(fd, 3) == 0);
	cr_assert(futimens(fd, ts) == 0);
	close(fd);
	struct stat moved = lstat_of(hmoved), other = lstat_of(h);
	cr_assert_eq(moved.st_mode & 07777, 0600);
	cr_assert_eq(moved.st_mtim.tv_sec, 2000000);
	cr_assert_eq(moved.st_size, 3);
	cr_assert_eq(other.st_mode & 07777, 0644);
	cr_assert_eq(other.st_size, 3);
	char *got = omni_test_read_host(h, NULL);
	cr_assert_str_eq(got, "new");
	free(got);
}

Test(nodes, attributes_right_at_once_through_every_name)
{
	char a[PATH_MAX], b[PATH_MAX], c[PATH_MAX];

	mpath(a, sizeof(a), "a");
	mpath(b, sizeof(b), "b");
	mpath(c, sizeof(c), "c");
	omni_test_write_host(a, "x", 1);
	struct stat before = lstat_of(a);
	usleep(20000);
	/* link: nlink and ctime through the first name. */
	cr_assert(link(a, b) == 0);
	struct stat after = lstat_of(a);
	cr_assert_eq(after.st_nlink, 2);
	cr_assert(after.st_ctim.tv_sec > before.st_ctim.tv_sec ||
	          after.st_ctim.tv_nsec != before.st_ctim.tv_nsec);
	/* write through b: size and mtime through a. */
	before = after;
	usleep(20000);
	int fd = open(b, O_WRONLY | O_TRUNC);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "hello", 5), 5);
	close(fd);
	after = lstat_of(a);
	cr_assert_eq(after.st_size, 5);
	cr_assert(after.st_mtim.tv_sec != before.st_mtim.tv_sec ||
	          after.st_mtim.tv_nsec != before.st_mtim.tv_nsec);
	/* utimens and chown through b, seen through a. */
	struct timespec ts[2] = { { .tv_sec = 12345 }, { .tv_sec = 67890 } };
	cr_assert(utimensat(AT_FDCWD, b, ts, 0) == 0);
	cr_assert_eq(lstat_of(a).st_mtim.tv_sec, 67890);
	cr_assert(chown(b, geteuid(), getegid()) == 0);
	/* rename: ctime of the renamed file, nlink unchanged. */
	before = lstat_of(a);
	usleep(20000);
	cr_assert(rename(b, c) == 0);
	after = lstat_of(a);
	cr_assert_eq(after.st_nlink, 2);
	cr_assert_eq(lstat_of(c).st_ino, after.st_ino);
	/* unlink: nlink through the other name. */
	cr_assert(unlink(c) == 0);
	cr_assert_eq(lstat_of(a).st_nlink, 1);
}

Test(nodes, open_unlinked_file_keeps_its_attributes)
{
	char p[PATH_MAX];
	struct stat st;

	mpath(p, sizeof(p), "tmp");
	int fd = open(p, O_RDWR | O_CREAT, 0600);
	cr_assert(fd >= 0);
	cr_assert(unlink(p) == 0);
	cr_assert(fchmod(fd, 0640) == 0);
	cr_assert(fstat(fd, &st) == 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	cr_assert_eq(st.st_nlink, 0);
	close(fd);
}

Test(nodes, modes_are_masked_once)
{
	char p[PATH_MAX];

	/* The kernel applies the caller's umask; the daemon must not apply
	 * its own on top (the shell's umask here is 0). */
	mpath(p, sizeof(p), "d");
	mode_t old = umask(0);
	cr_assert(mkdir(p, 0777) == 0);
	cr_assert_eq(lstat_of(p).st_mode & 07777, 0777);
	mpath(p, sizeof(p), "f");
	int fd = open(p, O_CREAT | O_WRONLY, 0666);
	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(lstat_of(p).st_mode & 07777, 0666);
	umask(old);
}

/* Descriptors the daemon holds (its /proc/PID/fd entries). */
static int daemon_fds(void)
{
	char dir[64];
	int n = 0;

	omni_test_fmt(dir, sizeof(dir), "/proc/%d/fd", (int)m.pid);
	DIR *d = opendir(dir);
	cr_assert(d, "opendir %s: %s", dir, strerror(errno));
	while (readdir(d))
		n++;
	closedir(d);
	return n - 2;
}

Test(nodes, many_files_cost_no_descriptor_each, .timeout = 120)
{
	char p[PATH_MAX], h[PATH_MAX], q[PATH_MAX];
	enum { FILES = 4000 };

	mpath(p, sizeof(p), "many");
	cr_assert(mkdir(p, 0755) == 0);
	int before = daemon_fds();
	for (int i = 0; i < FILES; i++) {
		omni_test_fmt(p, sizeof(p), "%s/many/f%d", m.mnt, i);
		int fd = open(p, O_CREAT | O_WRONLY, 0644);
		cr_assert(fd >= 0, "create %s: %s", p, strerror(errno));
		cr_assert_eq(write(fd, "x", 1), 1);
		close(fd);
	}
	/* The kernel knows every one of them now (long entry timeouts). */
	for (int i = 0; i < FILES; i++) {
		omni_test_fmt(p, sizeof(p), "%s/many/f%d", m.mnt, i);
		cr_assert_eq(lstat_of(p).st_size, 1);
	}
	int after = daemon_fds();
	cr_assert(after - before < 64,
	          "the daemon holds %d descriptors for %d files (%d before)",
	          after, FILES, before);
	/* Calls on files the kernel knows still reach the right file: by
	 * name, through a hard link, after a rename made behind its back,
	 * and on a file whose name was replaced. */
	omni_test_fmt(p, sizeof(p), "%s/many/f10", m.mnt);
	cr_assert(chmod(p, 0600) == 0);
	omni_test_fmt(h, sizeof(h), "%s/many/f10", m.host);
	cr_assert_eq(lstat_of(h).st_mode & 07777, 0600);
	omni_test_fmt(q, sizeof(q), "%s/many/link", m.mnt);
	cr_assert(link(p, q) == 0);
	cr_assert(chmod(q, 0640) == 0);
	cr_assert_eq(lstat_of(p).st_mode & 07777, 0640);
	cr_assert_eq(lstat_of(p).st_nlink, 2);
	/* f11 renamed on the host and replaced by a directory: the node of
	 * f11 is stale, its new name works, and no call reaches the
	 * directory through the old node. */
	char h11[PATH_MAX], hmoved[PATH_MAX];
	omni_test_fmt(h11, sizeof(h11), "%s/many/f11", m.host);
	omni_test_fmt(hmoved, sizeof(hmoved), "%s/many/moved", m.host);
	cr_assert(rename(h11, hmoved) == 0);
	cr_assert(mkdir(h11, 0700) == 0);
	usleep(200000); /* the change watch invalidates the names */
	omni_test_fmt(p, sizeof(p), "%s/many/f11", m.mnt);
	cr_assert(S_ISDIR(lstat_of(p).st_mode));
	omni_test_fmt(p, sizeof(p), "%s/many/moved", m.mnt);
	cr_assert(S_ISREG(lstat_of(p).st_mode));
	cr_assert(chmod(p, 0604) == 0);
	cr_assert_eq(lstat_of(hmoved).st_mode & 07777, 0604);
	cr_assert_eq(lstat_of(h11).st_mode & 07777, 0700);
	cr_assert(daemon_fds() - before < 64);
}

/* An inode number freed on the host and given to a new file: the mount
 * must show the new file, not the kernel's pages and attributes of the
 * old one (the node is told apart by its file handle). */
Test(nodes, a_reused_inode_number_is_another_file)
{
	char p[PATH_MAX], h[PATH_MAX], got[64];
	struct stat st;

	mpath(p, sizeof(p), "old");
	hpath(h, sizeof(h), "old");
	omni_test_write_host(h, "old content", 11);
	cr_assert(stat(p, &st) == 0);
	char *old = omni_test_read_host(p, NULL); /* pages in the kernel */
	cr_assert_str_eq(old, "old content");
	free(old);
	/* An O_PATH descriptor keeps the kernel's inode (and so the node)
	 * alive with no file open in the daemon. */
	int keep = open(p, O_PATH);
	cr_assert(keep >= 0);
	ino_t ino = lstat_of(h).st_ino;
	cr_assert(unlink(h) == 0);
	/* New files on the host until one gets the freed number. */
	int found = -1;
	for (int i = 0; i < 2000 && found < 0; i++) {
		omni_test_fmt(h, sizeof(h), "%s/new%d", m.host, i);
		omni_test_write_host(h, "NEW", 3);
		if (lstat_of(h).st_ino == ino)
			found = i;
	}
	cr_assert(found >= 0, "the file system gave no file inode %lu again",
	          (unsigned long)ino);
	omni_test_fmt(p, sizeof(p), "%s/new%d", m.mnt, found);
	int fd = open(p, O_RDONLY);
	cr_assert(fd >= 0, "open %s: %s", p, strerror(errno));
	ssize_t n = read(fd, got, sizeof(got) - 1);
	close(fd);
	cr_assert_eq(n, 3, "read %zd bytes of new%d", n, found);
	got[n] = '\0';
	cr_assert_str_eq(got, "NEW");
	cr_assert_eq(lstat_of(p).st_size, 3);
	close(keep);
}
