/*
 * tests/fs/test_coherence.c - a host mount with long timeouts and the
 * writeback cache (-o writeback; off by default) stays exact.
 *
 * The local mount keeps names and attributes for 60 s and, here, writes
 * through the kernel's writeback cache; the change watch (fs/watch.c) and the
 * syncfs before each omni-exec command keep it honest. Here the test
 * process is "another writer": it changes the workspace on the host behind
 * the mount, and each change must show through the mount within about a
 * second. The other way round, bytes written through the mount (write,
 * O_APPEND from two processes, mmap) must be there for the next command.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"

static struct mount_fx m;

static void setup(void)
{
	mount_up(&m, (const char *const[]){ "-o", "writeback", NULL });
}

static void teardown(void)
{
	mount_down(&m);
}

TestSuite(coherence, .init = setup, .fini = teardown, .timeout = 90);

static void mpath(char *out, size_t size, const char *rel)
{
	omni_test_fmt(out, size, "%s/%s", m.mnt, rel);
}

static void hpath(char *out, size_t size, const char *rel)
{
	omni_test_fmt(out, size, "%s/%s", m.host, rel);
}

/* Wait up to ms for path (through the mount) to read as want; NULL: for
 * it to be gone. */
static bool becomes(const char *path, const char *want, int ms)
{
	long long end = omni_test_now_ms() + ms;

	for (;;) {
		char *got = omni_test_host_exists(path)
		                ? omni_test_read_host(path, NULL)
		                : NULL;
		bool ok = want ? got && strcmp(got, want) == 0 : !got;
		free(got);
		if (ok || omni_test_now_ms() > end)
			return ok;
		usleep(20000);
	}
}

Test(coherence, stats_say_writeback_and_exact_watch)
{
	int status;
	char *out = sh_out(&status, m.mnt, "omni-exec --stats");

	cr_assert_eq(status, 0);
	cr_assert(strstr(out, "writeback 1\n"), "%s", out);
	cr_assert(strstr(out, "watch exact\n"), "%s", out);
	free(out);
}

Test(coherence, host_change_is_seen_within_a_second)
{
	char p[PATH_MAX], h[PATH_MAX];

	mpath(p, sizeof(p), "f.txt");
	hpath(h, sizeof(h), "f.txt");
	omni_test_write_host(p, "through the mount", 17);
	char *first = omni_test_read_host(p, NULL);
	cr_assert_str_eq(first, "through the mount");
	free(first);
	/* Longer, then shorter: the kernel must take the host's size. */
	omni_test_write_host(h, "changed on the host, longer", 27);
	cr_assert(becomes(p, "changed on the host, longer", 1000));
	omni_test_write_host(h, "short", 5);
	cr_assert(becomes(p, "short", 1000));
	/* Mode bits too. */
	cr_assert_eq(chmod(h, 0600), 0);
	long long end = omni_test_now_ms() + 1000;
	struct stat st;
	while (stat(p, &st) == 0 && (st.st_mode & 07777) != 0600 &&
	       omni_test_now_ms() < end)
		usleep(20000);
	cr_assert_eq(st.st_mode & 07777, 0600);
}

Test(coherence, host_append_to_a_file_held_open)
{
	char p[PATH_MAX], h[PATH_MAX], buf[64];

	mpath(p, sizeof(p), "log");
	hpath(h, sizeof(h), "log");
	omni_test_write_host(p, "one\n", 4);
	int fd = open(p, O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert_eq(read(fd, buf, sizeof(buf)), 4);
	int hfd = open(h, O_WRONLY | O_APPEND);
	cr_assert(hfd >= 0);
	cr_assert_eq(write(hfd, "two\n", 4), 4);
	close(hfd);
	long long end = omni_test_now_ms() + 1000;
	ssize_t n;
	while ((n = pread(fd, buf, sizeof(buf), 0)) != 8 &&
	       omni_test_now_ms() < end)
		usleep(20000);
	close(fd);
	cr_assert_eq(n, 8);
	cr_assert_eq(memcmp(buf, "one\ntwo\n", 8), 0);
}

Test(coherence, host_entries_appear_and_disappear)
{
	char p[PATH_MAX], h[PATH_MAX], hd[PATH_MAX], pd[PATH_MAX];
	struct stat st;

	mpath(p, sizeof(p), "late.txt");
	hpath(h, sizeof(h), "late.txt");
	/* Missing first: the kernel remembers that for 60 s. */
	cr_assert_eq(stat(p, &st), -1);
	omni_test_write_host(h, "here", 4);
	cr_assert(becomes(p, "here", 1000));
	cr_assert_eq(unlink(h), 0);
	cr_assert(becomes(p, NULL, 1000));
	/* A directory and a file in it, made and listed, then removed. */
	hpath(hd, sizeof(hd), "dir");
	mpath(pd, sizeof(pd), "dir/x");
	cr_assert_eq(mkdir(hd, 0755), 0);
	hpath(h, sizeof(h), "dir/x");
	omni_test_write_host(h, "x", 1);
	cr_assert(becomes(pd, "x", 1000));
	cr_assert_eq(sh_in(m.mnt, "ls dir | grep -qx x"), 0);
	cr_assert_eq(sh_in(m.host, "rm -r dir"), 0);
	cr_assert(becomes(pd, NULL, 1000));
	mpath(pd, sizeof(pd), "dir");
	cr_assert(becomes(pd, NULL, 1000));
	/* A rename on the host. */
	hpath(h, sizeof(h), "a");
	mpath(p, sizeof(p), "a");
	omni_test_write_host(h, "A", 1);
	cr_assert(becomes(p, "A", 1000));
	cr_assert_eq(sh_in(m.host, "mv a b"), 0);
	cr_assert(becomes(p, NULL, 1000));
	mpath(p, sizeof(p), "b");
	cr_assert(becomes(p, "A", 1000));
}

/* A flood of changes while the daemon is stopped overflows its queue; a
 * change lost in it must still show (everything is dropped). */
Test(coherence, queue_overflow_drops_everything)
{
	char p[PATH_MAX], h[PATH_MAX];

	mpath(p, sizeof(p), "kept.txt");
	hpath(h, sizeof(h), "kept.txt");
	omni_test_write_host(p, "cached", 6);
	char *first = omni_test_read_host(p, NULL);
	cr_assert_str_eq(first, "cached");
	free(first);
	cr_assert_eq(sh_in(m.mnt, "mkdir flood && ls flood"), 0);
	cr_assert_eq(kill(m.pid, SIGSTOP), 0);
	/* More events than an unprivileged queue holds (16 384). */
	int rc = sh_in(m.host, "cd flood && seq -f f%%.0f 20000 | xargs touch");
	omni_test_write_host(h, "changed while the queue was full", 32);
	cr_assert_eq(kill(m.pid, SIGCONT), 0);
	cr_assert_eq(rc, 0);
	cr_assert(becomes(p, "changed while the queue was full", 3000));
}

Test(coherence, write_then_command_sees_every_byte)
{
	char p[PATH_MAX];
	static char buf[1 << 20];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)('a' + i % 26);
	mpath(p, sizeof(p), "big");
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	/* Still open, pages still dirty in the kernel: the command must
	 * see them anyway. */
	int status;
	char *out = sh_out(&status, m.mnt, "omni-exec wc -c < big");
	cr_assert_eq(status, 0);
	cr_assert_eq(atol(out), (long)sizeof(buf), "%s", out);
	free(out);
	cr_assert_eq(pwrite(fd, "XYZ", 3, 4096), 3);
	out = sh_out(&status, m.mnt,
	             "omni-exec dd if=big bs=1 skip=4096 "
	             "count=3 2>/dev/null");
	cr_assert_str_eq(out, "XYZ");
	free(out);
	close(fd);
}

static void append_records(const char *path, char tag)
{
	char rec[32];
	int fd = open(path, O_WRONLY | O_APPEND);

	if (fd < 0)
		_exit(1);
	for (int i = 0; i < 2000; i++) {
		int n = snprintf(rec, sizeof(rec), "%c%08d\n", tag, i);
		if (write(fd, rec, (size_t)n) != n)
			_exit(1);
	}
	_exit(close(fd) == 0 ? 0 : 1);
}

Test(coherence, o_append_from_two_processes)
{
	char p[PATH_MAX];
	pid_t pids[2];
	int st;

	mpath(p, sizeof(p), "app");
	omni_test_write_host(p, "", 0);
	for (int i = 0; i < 2; i++) {
		pids[i] = fork();
		cr_assert(pids[i] >= 0);
		if (pids[i] == 0)
			append_records(p, i ? 'b' : 'a');
	}
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	/* Whole records only, 2 000 of each, through the mount and as the
	 * next command sees the file. */
	const char *check = "test $(wc -c < app) -eq 40000 && "
	                    "test $(grep -c '^a[0-9]\\{8\\}$' app) -eq 2000 && "
	                    "test $(grep -c '^b[0-9]\\{8\\}$' app) -eq 2000";
	cr_assert_eq(sh_in(m.mnt, "%s", check), 0);
	cr_assert_eq(sh_in(m.mnt, "omni-exec sh -c \"%s\"", check), 0);
}

Test(coherence, mmap_write_without_msync_then_command)
{
	char p[PATH_MAX];

	mpath(p, sizeof(p), "mm");
	int fd = open(p, O_RDWR | O_CREAT, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, 8192), 0);
	char *map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert(map != MAP_FAILED);
	memcpy(map + 4096, "no msync", 8);
	int status;
	char *out = sh_out(&status, m.mnt,
	                   "omni-exec dd if=mm bs=1 skip=4096 count=8 "
	                   "2>/dev/null");
	cr_assert_eq(status, 0);
	cr_assert_str_eq(out, "no msync");
	free(out);
	munmap(map, 8192);
	close(fd);
}

/* -o no_writeback: the same appends, without the kernel's cache. */
Test(coherence_no_writeback, appends_and_host_changes, .timeout = 60)
{
	struct mount_fx nw;
	const char *const extra[] = { "-o", "no_writeback", NULL };
	char p[PATH_MAX], h[PATH_MAX];

	mount_up(&nw, extra);
	int status;
	char *out = sh_out(&status, nw.mnt, "omni-exec --stats");
	bool off = out && strstr(out, "writeback 0\n");
	free(out);
	int rc = sh_in(nw.mnt, "for i in $(seq 1 200); do echo a$i >> l; done "
	                       "& for i in $(seq 1 200); do echo b$i >> l; "
	                       "done; wait; test $(wc -l < l) -eq 400");
	omni_test_fmt(p, sizeof(p), "%s/l", nw.mnt);
	omni_test_fmt(h, sizeof(h), "%s/l", nw.host);
	omni_test_write_host(h, "replaced", 8);
	bool seen = becomes(p, "replaced", 1000);
	mount_down(&nw);
	cr_assert(off);
	cr_assert_eq(rc, 0);
	cr_assert(seen);
}
