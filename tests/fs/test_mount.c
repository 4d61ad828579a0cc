/*
 * tests/fs/test_mount.c - omnifs on the local backend, mounted for real.
 *
 * Every test mounts its own session (mount_helpers.c), runs real programs
 * on it (cp, tar, git, sh), checks the result through the mount and on the
 * host side of the workspace, and unmounts in .fini even when it failed.
 * The coherence tests change files with omni-exec while the mount has them
 * cached, and the reverse.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/fs.h>
#include <sys/syscall.h>

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

TestSuite(mount, .init = setup, .fini = teardown, .timeout = 60);

static void mpath(char *out, size_t size, const char *rel)
{
	omni_test_fmt(out, size, "%s/%s", m.mnt, rel);
}

static void hpath(char *out, size_t size, const char *rel)
{
	omni_test_fmt(out, size, "%s/%s", m.host, rel);
}

Test(mount, write_through_mount_lands_in_workspace)
{
	char p[PATH_MAX], h[PATH_MAX];

	mpath(p, sizeof(p), "hello.txt");
	omni_test_write_host(p, "hello", 5);
	hpath(h, sizeof(h), "hello.txt");
	char *got = omni_test_read_host(h, NULL);
	cr_assert_str_eq(got, "hello");
	free(got);
}

Test(mount, cp_a_and_diff)
{
	cr_assert_eq(sh_in(m.tmp,
	                   "mkdir -p src/a/b && echo x > src/a/b/f && "
	                   "ln -s b/f src/a/l && chmod 751 src/a/b/f && "
	                   "head -c 300000 /dev/urandom > src/big && "
	                   "cp -a src '%s/copy' && diff -r src '%s/copy' && "
	                   "test \"$(stat -c %%a '%s/copy/a/b/f')\" = 751 && "
	                   "test \"$(readlink '%s/copy/a/l')\" = b/f",
	                   m.mnt, m.mnt, m.mnt, m.mnt),
	             0);
}

Test(mount, tar_round_trip)
{
	cr_assert_eq(sh_in(m.mnt,
	                   "mkdir -p t/d && seq 1 5000 > t/d/n && "
	                   "ln -s d/n t/link && tar cf ../x.tar t && "
	                   "mkdir u && tar xf ../x.tar -C u && diff -r t u/t"),
	             0);
}

Test(mount, git_workflow)
{
	cr_assert_eq(
	    sh_in(m.mnt,
	          "git init -q r && cd r && git config user.email t@e && "
	          "git config user.name t && echo one > a && mkdir d && "
	          "echo two > d/b && git add -A && git commit -qm first && "
	          "git checkout -qb side && echo three >> a && "
	          "git commit -qam second && git checkout -q - && "
	          "test \"$(cat a)\" = one && git status --porcelain | "
	          "(! grep .) && git log --oneline --all | wc -l | grep -qx 2"),
	    0);
}

Test(mount, editor_atomic_save_over_open_file)
{
	char target[PATH_MAX], tmp[PATH_MAX];

	mpath(target, sizeof(target), "doc.txt");
	mpath(tmp, sizeof(tmp), ".doc.txt.swp");
	omni_test_write_host(target, "old", 3);
	int keep = open(target, O_RDONLY);
	cr_assert(keep >= 0);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "new content", 11), 11);
	cr_assert_eq(fsync(fd), 0);
	cr_assert_eq(close(fd), 0);
	cr_assert_eq(rename(tmp, target), 0, "rename: %s", strerror(errno));
	char buf[32] = { 0 };
	cr_assert_eq(pread(keep, buf, sizeof(buf), 0), 3);
	cr_assert_str_eq(buf, "old");
	close(keep);
	char *now = omni_test_read_host(target, NULL);
	cr_assert_str_eq(now, "new content");
	free(now);
}

Test(mount, rename_noreplace_and_exchange)
{
	char a[PATH_MAX], b[PATH_MAX];

	mpath(a, sizeof(a), "a");
	mpath(b, sizeof(b), "b");
	omni_test_write_host(a, "A", 1);
	omni_test_write_host(b, "B", 1);
	cr_assert_eq(
	    syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_NOREPLACE),
	    -1);
	cr_assert_eq(errno, EEXIST);
	cr_assert_eq(
	    syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE),
	    0, "exchange: %s", strerror(errno));
	char *ga = omni_test_read_host(a, NULL),
	     *gb = omni_test_read_host(b, NULL);
	cr_assert_str_eq(ga, "B");
	cr_assert_str_eq(gb, "A");
	free(ga);
	free(gb);
}

Test(mount, appends_from_two_processes)
{
	cr_assert_eq(sh_in(m.mnt,
	                   "for i in $(seq 1 500); do echo a$i >> log; "
	                   "done & for i in $(seq 1 500); do echo b$i >> "
	                   "log; done; wait; test $(wc -l < log) -eq 1000 && "
	                   "test $(grep -c '^a' log) -eq 500 && "
	                   "test $(grep -c '^b' log) -eq 500"),
	             0);
}

Test(mount, truncate_append_unlink_while_open)
{
	char p[PATH_MAX];
	struct stat st;

	mpath(p, sizeof(p), "t");
	int fd = open(p, O_RDWR | O_CREAT | O_APPEND, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "abc", 3), 3);
	cr_assert_eq(write(fd, "def", 3), 3);
	cr_assert_eq(ftruncate(fd, 100000), 0);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_size, 100000);
	cr_assert_eq(truncate(p, 2), 0);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_size, 2);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(write(fd, "zz", 2), 2);
	char buf[8] = { 0 };
	cr_assert_eq(pread(fd, buf, sizeof(buf), 0), 4);
	cr_assert_str_eq(buf, "abzz");
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_size, 4);
	close(fd);
	cr_assert_eq(stat(p, &st), -1);
}

Test(mount, symlinks_hardlinks_modes_times)
{
	char p[PATH_MAX], l[PATH_MAX], h[PATH_MAX], buf[PATH_MAX];
	struct stat st;

	mpath(p, sizeof(p), "f");
	omni_test_write_host(p, "x", 1);
	mpath(l, sizeof(l), "rel");
	cr_assert_eq(symlink("f", l), 0);
	ssize_t n = readlink(l, buf, sizeof(buf));
	cr_assert_eq(n, 1);
	cr_assert_eq(buf[0], 'f');
	mpath(l, sizeof(l), "abs");
	cr_assert_eq(symlink("/etc/hostname", l), 0);
	n = readlink(l, buf, sizeof(buf));
	cr_assert_eq(n, (ssize_t)strlen("/etc/hostname"));
	mpath(h, sizeof(h), "hard");
	cr_assert_eq(link(p, h), 0, "link: %s", strerror(errno));
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	cr_assert_eq(chmod(p, 0700), 0);
	cr_assert_eq(stat(h, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0700);
	struct timespec ts[2] = { { 1000000000, 123456789 },
		                  { 1200000000, 987654321 } };
	cr_assert_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
	cr_assert_eq(stat(p, &st), 0);
	cr_assert_eq(st.st_mtim.tv_sec, 1200000000);
	cr_assert_eq(st.st_mtim.tv_nsec, 987654321);
	struct statvfs sv;
	cr_assert_eq(statvfs(m.mnt, &sv), 0);
	cr_assert(sv.f_blocks > 0);
}

Test(mount, flock_between_processes)
{
	cr_assert_eq(sh_in(m.mnt, "touch lk && (flock -x lk sleep 1 &) && "
	                          "sleep 0.3 && ! flock -n lk true && "
	                          "sleep 1.2 && flock -n lk true"),
	             0);
}

Test(mount, large_directory)
{
	cr_assert_eq(sh_in(m.mnt,
	                   "mkdir big && cd big && seq -f 'f%%05g' 1 "
	                   "10000 | xargs touch && test $(ls | wc -l) -eq "
	                   "10000 && test $(ls -l | grep -c '^-') -eq 10000 "
	                   "&& test $(find . -type f | wc -l) -eq 10000"),
	             0);
}

Test(mount, chmod_x_then_exec_through_omni_exec)
{
	cr_assert_eq(sh_in(m.mnt,
	                   "printf '#!/bin/sh\\necho ran-$1\\n' > s.sh && "
	                   "chmod +x s.sh && test \"$(omni-exec ./s.sh ok)\" "
	                   "= ran-ok"),
	             0);
}

/* The kernel's open for execve carries FMODE_EXEC (0x20) in the FUSE open
 * flags; a binary copied onto the mount and a script with a #! line both
 * run, as a shell, make or ./configure run them. */
Test(mount, programs_and_scripts_run_from_the_mount)
{
	cr_assert_eq(sh_in(m.tmp,
	                   "cp /bin/true '%s/t' && '%s/t' && "
	                   "printf '#!/bin/sh\\necho ran $1\\n' > '%s/s.sh' && "
	                   "chmod +x '%s/s.sh' && "
	                   "test \"$('%s/s.sh' ok)\" = 'ran ok' && "
	                   "cd '%s' && ./s.sh x >/dev/null",
	                   m.mnt, m.mnt, m.mnt, m.mnt, m.mnt, m.mnt),
	             0);
}

Test(mount, mmap_write_then_read_through_omni_exec)
{
	char p[PATH_MAX];

	mpath(p, sizeof(p), "mm");
	int fd = open(p, O_RDWR | O_CREAT, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(ftruncate(fd, 4096), 0);
	char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert(map != MAP_FAILED);
	memcpy(map, "mapped!", 7);
	cr_assert_eq(msync(map, 4096, MS_SYNC), 0);
	munmap(map, 4096);
	close(fd);
	int status;
	char *out = sh_out(&status, m.mnt, "omni-exec head -c 7 mm");
	cr_assert_eq(status, 0);
	cr_assert_str_eq(out, "mapped!");
	free(out);
}

Test(mount, command_changes_are_visible_at_once)
{
	char p[PATH_MAX];

	mpath(p, sizeof(p), "c.txt");
	omni_test_write_host(p, "before", 6);
	/* Read it so the kernel caches pages and attributes. */
	char *first = omni_test_read_host(p, NULL);
	cr_assert_str_eq(first, "before");
	free(first);
	cr_assert_eq(sh_in(m.mnt,
	                   "omni-exec -c 'printf after-longer > c.txt; "
	                   "echo new > n.txt; mkdir d; mv n.txt d/n2.txt'"),
	             0);
	char *now = omni_test_read_host(p, NULL);
	cr_assert_str_eq(now, "after-longer");
	free(now);
	cr_assert_eq(sh_in(m.mnt, "test -f d/n2.txt && ! test -e n.txt"), 0);
	/* Deleted by a command, then made again through the mount. */
	cr_assert_eq(sh_in(m.mnt, "cat c.txt >/dev/null && omni-exec rm c.txt "
	                          "&& ! test -e c.txt && echo again > c.txt && "
	                          "test \"$(cat c.txt)\" = again"),
	             0);
}

Test(mount, mount_writes_are_visible_to_next_command)
{
	cr_assert_eq(sh_in(m.mnt,
	                   "echo via-mount > w.txt && "
	                   "test \"$(omni-exec cat w.txt)\" = via-mount"),
	             0);
}

Test(mount, omni_exec_cwd_follows_the_caller)
{
	int status;
	char *out;

	cr_assert_eq(sh_in(m.mnt, "mkdir -p src/deep"), 0);
	char dir[PATH_MAX];
	mpath(dir, sizeof(dir), "src/deep");
	out = sh_out(&status, dir, "omni-exec pwd");
	cr_assert_eq(status, 0);
	char want[PATH_MAX + 2];
	omni_test_fmt(want, sizeof(want), "%s/src/deep\n", m.host);
	cr_assert_str_eq(out, want);
	free(out);
}

Test(mount, unmount_keeps_files_and_daemon_exits)
{
	char p[PATH_MAX], h[PATH_MAX];

	mpath(p, sizeof(p), "kept");
	omni_test_write_host(p, "kept", 4);
	cr_assert_eq(sh_in(NULL, "fusermount3 -u '%s'", m.mnt), 0);
	int st;
	pid_t r = 0;
	for (int i = 0; i < 500 && r == 0; i++) {
		r = waitpid(m.pid, &st, WNOHANG);
		if (r == 0)
			usleep(10000);
	}
	cr_assert_eq(r, m.pid, "the daemon did not exit after unmount");
	m.pid = 0;
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	hpath(h, sizeof(h), "kept");
	char *got = omni_test_read_host(h, NULL);
	cr_assert_str_eq(got, "kept");
	free(got);
}

Test(mount, sigterm_unmounts)
{
	cr_assert_eq(kill(m.pid, SIGTERM), 0);
	int st;
	pid_t r = 0;
	for (int i = 0; i < 500 && r == 0; i++) {
		r = waitpid(m.pid, &st, WNOHANG);
		if (r == 0)
			usleep(10000);
	}
	cr_assert_eq(r, m.pid);
	m.pid = 0;
	cr_assert(!mount_is_mounted(m.mnt));
}

/* Without -f the daemon returns once mounted; a bad start is reported. */
Test(mount_daemon, background_start_and_errors, .timeout = 60)
{
	char tmp[PATH_MAX], bin[PATH_MAX], mnt[PATH_MAX], run[PATH_MAX];
	char project[64];

	omni_test_mkdtemp(tmp, sizeof(tmp));
	omni_test_project_id(project, sizeof(project), "bg");
	omni_test_fmt(mnt, sizeof(mnt), "%s/%s", tmp, project);
	omni_test_fmt(run, sizeof(run), "%s/run", tmp);
	cr_assert_eq(mkdir(mnt, 0755), 0);
	cr_assert_eq(mkdir(run, 0700), 0);
	setenv("OMNI_RUNTIME_DIR", run, 1);
	test_build_dir(bin, sizeof(bin));
	cr_assert_eq(sh_in(tmp, "'%s/omnifs' --data-path data '%s'", bin, mnt),
	             0);
	cr_assert(mount_is_mounted(mnt));
	cr_assert_eq(
	    sh_in(tmp, "echo hi > '%s/x' && test -f data/%s/x", mnt, project),
	    0);
	/* A second mount of the same project is refused. */
	cr_assert_neq(sh_in(tmp,
	                    "mkdir -p other && '%s/omnifs' --project %s "
	                    "--data-path data other 2>err; r=$?; grep -q "
	                    "'already mounted' err && exit $r",
	                    bin, project),
	              0);
	/* Unmounted, and the daemon gone (its control socket with it), so
	 * the next start is not refused as "already mounted". */
	cr_assert_eq(sh_in(tmp,
	                   "fusermount3 -u '%s' && for i in $(seq 200); do "
	                   "test -e run/%s.sock || exit 0; sleep 0.05; done; "
	                   "exit 1",
	                   mnt, project),
	             0);
	/* Errors reach the terminal with a non-zero exit. */
	cr_assert_eq(sh_in(tmp,
	                   "'%s/omnifs' --backend nope '%s' 2>err; "
	                   "test $? -ne 0 && grep -q 'unknown backend' err || "
	                   "{ cat err >&2; exit 1; }",
	                   bin, mnt),
	             0);
	cr_assert_eq(sh_in(tmp,
	                   "'%s/omnifs' --help | grep -q -- --backend && "
	                   "'%s/omnifs' --version | grep -q omnifs",
	                   bin, bin),
	             0);
	omni_test_rm_rf(tmp);
}

/* Invalidation after a command must not break the caller's working
 * directory (getcwd) inside the mount. */
Test(mount, cwd_survives_commands)
{
	char dir[PATH_MAX];

	cr_assert_eq(sh_in(m.mnt, "mkdir -p w/x && git init -q w/x"), 0);
	mpath(dir, sizeof(dir), "w/x");
	cr_assert_eq(sh_in(dir, "omni-exec true && omni-exec true && /bin/pwd "
	                        ">/dev/null && git status >/dev/null"),
	             0);
}

/* A crashed daemon loses nothing that was written: the files are on disk
 * in the workspace, and the mount goes away by itself (auto_unmount). */
Test(mount, crash_keeps_files)
{
	char p[PATH_MAX], h[PATH_MAX];

	mpath(p, sizeof(p), "precious");
	omni_test_write_host(p, "data", 4);
	cr_assert_eq(kill(m.pid, SIGKILL), 0);
	int st;
	cr_assert_eq(waitpid(m.pid, &st, 0), m.pid);
	m.pid = 0;
	hpath(h, sizeof(h), "precious");
	char *got = omni_test_read_host(h, NULL);
	cr_assert_str_eq(got, "data");
	free(got);
	for (int i = 0; i < 500 && mount_is_mounted(m.mnt); i++)
		usleep(10000);
	cr_assert(!mount_is_mounted(m.mnt));
}

/* Listings the kernel caches are dropped when a command changes the
 * directory, and when the mount itself does. */
Test(mount, cached_listing_follows_changes)
{
	cr_assert_eq(sh_in(m.mnt,
	                   "mkdir L && touch L/a L/b && ls L >/dev/null && "
	                   "omni-exec -c 'touch L/c; rm L/a' && "
	                   "test \"$(ls L | tr '\\n' ' ')\" = 'b c ' && "
	                   "touch L/d && rm L/b && "
	                   "test \"$(ls L | tr '\\n' ' ')\" = 'c d '"),
	             0);
}

/* access(2) follows the mode bits (the mount answers it itself). */
Test(mount, access_follows_mode_bits)
{
	cr_assert_eq(sh_in(m.mnt, "touch nx && ! test -x nx && chmod +x nx && "
	                          "test -x nx && test -r nx && test -w nx"),
	             0);
}
