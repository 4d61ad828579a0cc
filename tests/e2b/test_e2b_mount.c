/*
 * tests/e2b/test_e2b_mount.c - omnifs --backend e2b, mounted for real, against
 * the local E2B server (one server and one mount per test).
 *
 * e2b_budget: the request budgets of the issue, counted by the server
 * (GET /_test/stats, reset between steps): every POSIX call made here
 * must cost no more requests than the budget says.
 * e2b_mount: the full mount and omni-exec behaviour on a sandbox:
 * output streaming, exit codes, stdin, signals, terminals, the working
 * directory, coherence both ways, and changes made behind the mount's
 * back (WatchDir).
 * e2b_fault: a server that fails (HTTP 503) or does not answer at all:
 * errors come back in bounded time, dirty data stays until it can be
 * uploaded, and unmount works; e2b_fault_close the same with uploads at
 * close (-o cache_mode=close), whose close reports a failed upload.
 * Write-back's own cases are in test_e2b_writeback.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "e2b_helpers.h"
#include "exec_helpers.h"
#include "file_io_model.h"
#include "helpers.h"
#include "mount_helpers.h"

static struct e2b_test_server srv;
static struct mount_fx m;
/* The daemon could not reach the API to kill its sandbox (black hole). */
static bool sandbox_may_live;

/* Mount with extra omnifs arguments (NULL-terminated list). */
static void up(const char *const *extra)
{
	const char *args[16] = { "--backend", "e2b" };
	int n = 2;

	for (const char *const *e = extra; e && *e && n < 14; e++)
		args[n++] = *e;
	args[n] = NULL;
	mount_up(&m, args);
}

/* Wait until the daemon's change watch is connected. */
static void wait_watch(void)
{
	for (int i = 0; i < 100; i++) {
		struct exec_test_buf out = { 0 };
		exec_test_omni_exec(
		    NULL, 0, &out, NULL,
		    (const char *const[]){ "-C", m.mnt, "--stats", NULL });
		bool on = out.data && strstr(out.data, "e2b.watch_connected 1");
		exec_test_buf_free(&out);
		if (on)
			return;
		usleep(100 * 1000);
	}
	cr_assert_fail("the change watch did not connect within 10 s");
}

/* omni-exec --sync: the sandbox has everything written through the
 * mount (write-back uploads in the background). */
static void sync_mount(void)
{
	struct exec_test_buf out = { 0 };
	int st = exec_test_omni_exec(
	    NULL, 0, &out, NULL,
	    (const char *const[]){ "-C", m.mnt, "--sync", NULL });
	cr_assert_eq(st, 0, "omni-exec --sync: %s", out.data ? out.data : "");
	exec_test_buf_free(&out);
}

/* Under ASan, the daemon and omni-exec write their reports next to the
 * server's files; teardown fails the test when there are any. */
static void sanitizer_reports_to_files(void)
{
#ifdef OMNI_TEST_ASAN
	char opts[PATH_MAX + 64];
	omni_test_fmt(opts, sizeof(opts), "log_path=%s/asan:detect_leaks=1",
	              srv.dir);
	setenv("ASAN_OPTIONS", opts, 1);
#endif
}

static void check_sanitizer_reports(void)
{
#ifdef OMNI_TEST_ASAN
	int code;
	char *found =
	    sh_out(&code, srv.dir, "cat asan.* 2>/dev/null | head -c 4000");
	cr_expect_str_empty(found, "sanitizer reports: %s", found);
	free(found);
#endif
}

static void setup(void)
{
	e2b_test_require();
	e2b_test_server_start(&srv, NULL);
	sanitizer_reports_to_files();
	up(NULL);
	wait_watch();
}

static void teardown(void)
{
	if (srv.pid > 0)
		e2b_test_fault(&srv, "none", 0);
	mount_down(&m);
	if (srv.dir[0])
		check_sanitizer_reports();
	if (srv.pid > 0 && !sandbox_may_live)
		cr_expect_eq(e2b_test_live_sandboxes(&srv), 0,
		             "unmounting did not kill the sandbox");
	e2b_test_server_stop(&srv);
}

static void mpath(char *out, size_t size, const char *rel)
{
	omni_test_fmt(out, size, "%s/%s", m.mnt, rel);
}

/* The number of change events the daemon has received (omni-exec
 * --stats), or -1. */
static long long watch_events(void)
{
	struct exec_test_buf out = { 0 };
	long long n = -1;

	exec_test_omni_exec(
	    NULL, 0, &out, NULL,
	    (const char *const[]){ "-C", m.mnt, "--stats", NULL });
	const char *at =
	    out.data ? strstr(out.data, "e2b.watch_events ") : NULL;
	if (at)
		n = strtoll(at + strlen("e2b.watch_events "), NULL, 10);
	exec_test_buf_free(&out);
	return n;
}

/* Let change events of earlier steps arrive before counting: 400 ms, then
 * until no event has come for 300 ms (a loaded machine delivers the
 * events of a large change over seconds), at most 10 s. */
static void settle(void)
{
	usleep(400 * 1000);
	long long before = watch_events();
	for (int i = 0; i < 33; i++) {
		usleep(300 * 1000);
		long long now = watch_events();
		if (now == before)
			return;
		before = now;
	}
}

/* Run a shell command in the mount; assert it succeeds. */
static void ok_sh(const char *fmt, const char *arg)
{
	char cmd[4096];

	snprintf(cmd, sizeof(cmd), fmt, arg);
	int st = sh_in(m.mnt, "%s", cmd);
	cr_assert_eq(st, 0, "`%s` exited %d", cmd, st);
}

#define EXPECT_REQUESTS(want, what)                                            \
	do {                                                                   \
		long got_ = e2b_test_total(&srv);                              \
		if (got_ != (want)) {                                          \
			char *c_ = e2b_test_counts(&srv);                      \
			cr_assert_fail("%s: %ld requests, budget %d: %s",      \
			               (what), got_, (int)(want), c_);         \
		}                                                              \
	} while (0)

/* --- budgets -------------------------------------------------------------- */

TestSuite(e2b_budget, .init = setup, .fini = teardown, .timeout = 180);

static void ls_l_budget(int n)
{
	char cmd[512];
	char dir[32];
	int code;
	long listdirs = 0, total = 0;

	/* A directory made in the sandbox, listed cold by ls -l. Should the
	 * machine be so loaded that events of its making come even after
	 * settle() and drop the listing once more, the count is taken again
	 * on a new directory (at most three; a mount that always lists
	 * twice still fails). */
	for (int round = 0; round < 3; round++) {
		snprintf(dir, sizeof(dir), "d%d", round);
		snprintf(cmd, sizeof(cmd),
		         "mkdir -p /tmp/workspace/%s && cd /tmp/workspace/%s "
		         "&& for i in $(seq %d); do echo $i > f$i; done && "
		         "chown -R user: /tmp/workspace/%s",
		         dir, dir, n, dir);
		free(e2b_test_exec(&srv, cmd, &code));
		cr_assert_eq(code, 0);
		settle();
		ok_sh("stat %s > /dev/null", dir);
		settle();
		e2b_test_reset(&srv);
		snprintf(cmd, sizeof(cmd), "ls -l %s | grep -c '^-rw-r--r--'",
		         dir);
		char *out = sh_out(&code, m.mnt, "%s", cmd);
		cr_assert_eq(code, 0);
		cr_assert_eq(strtol(out, NULL, 10), n, "ls -l: %s", out);
		free(out);
		listdirs =
		    e2b_test_count(&srv, "filesystem.Filesystem/ListDir");
		total = e2b_test_total(&srv);
		if (listdirs == 1 && total == 1)
			break;
		cr_log_warn("ls -l of %s: %ld ListDir, %ld requests; again",
		            dir, listdirs, total);
	}
	cr_assert_eq(listdirs, 1, "ls -l of %s made %ld ListDir", dir,
	             listdirs);
	EXPECT_REQUESTS(1, "ls -l of a directory");

	/* Every entry is known now. */
	e2b_test_reset(&srv);
	snprintf(cmd, sizeof(cmd),
	         "stat %s/f1 %s/f%d > /dev/null && test -e %s/f2", dir, dir, n,
	         dir);
	cr_assert_eq(sh_in(m.mnt, "%s", cmd), 0);
	EXPECT_REQUESTS(0, "stat of listed entries");
}

Test(e2b_budget, ls_l_50_entries_is_one_listdir)
{
	ls_l_budget(50);
}

Test(e2b_budget, ls_l_500_entries_is_one_listdir)
{
	ls_l_budget(500);
}

Test(e2b_budget, missing_names_are_remembered)
{
	ok_sh("ls > /dev/null%s", "");
	settle();
	e2b_test_reset(&srv);
	for (int i = 0; i < 3; i++)
		cr_assert_neq(sh_in(m.mnt, "test -e nope.txt"), 0);
	cr_assert_neq(sh_in(m.mnt, "cat .gitignore 2>/dev/null"), 0);
	EXPECT_REQUESTS(0, "repeated lookups of missing names");
}

Test(e2b_budget, read_whole_file_once)
{
	int code;

	free(e2b_test_exec(
	    &srv,
	    "head -c 100000 /dev/urandom > /tmp/workspace/r.bin && "
	    "chown user: /tmp/workspace/r.bin",
	    &code));
	settle();
	ok_sh("ls -l > /dev/null%s", "");
	settle();
	e2b_test_reset(&srv);
	ok_sh("cat r.bin > ../copy1%s", "");
	cr_assert_eq(e2b_test_count(&srv, "GET /files"), 1);
	EXPECT_REQUESTS(1, "open, read whole, close");
	e2b_test_reset(&srv);
	ok_sh("cat r.bin > ../copy2 && cmp ../copy1 ../copy2%s", "");
	EXPECT_REQUESTS(0, "reading it again within the TTL");
	char *theirs =
	    e2b_test_exec(&srv, "md5sum < /tmp/workspace/r.bin", &code);
	char *ours = sh_out(&code, m.mnt, "md5sum < ../copy1");
	cr_assert_str_eq(ours, theirs);
	free(ours);
	free(theirs);
}

Test(e2b_budget, create_write_close_is_one_upload)
{
	ok_sh("ls > /dev/null%s", "");
	settle();
	e2b_test_reset(&srv);
	ok_sh("echo hello > new.txt%s", "");
	/* Write-back: close returns first, the upload follows. */
	sync_mount();
	cr_assert_eq(e2b_test_count(&srv, "POST /files"), 1);
	EXPECT_REQUESTS(1, "create, write, close");
	/* Its attributes came with the upload. */
	e2b_test_reset(&srv);
	ok_sh(
	    "test \"$(stat -c %%s new.txt)\" = 6 && cat new.txt > /dev/null%s",
	    "");
	EXPECT_REQUESTS(0, "stat and read of the file just written");
	int code;
	char *theirs = e2b_test_exec(&srv, "cat /tmp/workspace/new.txt", &code);
	cr_assert_str_eq(theirs, "hello\n");
	free(theirs);
}

Test(e2b_budget, editor_atomic_save_is_two_requests)
{
	char tmp[PATH_MAX], target[PATH_MAX];

	ok_sh("echo old > doc.txt && ls > /dev/null%s", "");
	settle();
	mpath(tmp, sizeof(tmp), ".doc.txt.swp");
	mpath(target, sizeof(target), "doc.txt");
	e2b_test_reset(&srv);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0, "open: %s", strerror(errno));
	cr_assert_eq(write(fd, "new text\n", 9), 9);
	cr_assert_eq(fsync(fd), 0, "fsync: %s", strerror(errno));
	cr_assert_eq(close(fd), 0);
	cr_assert_eq(rename(tmp, target), 0, "rename: %s", strerror(errno));
	cr_assert_eq(e2b_test_count(&srv, "POST /files"), 1);
	cr_assert_eq(e2b_test_count(&srv, "filesystem.Filesystem/Move"), 1);
	EXPECT_REQUESTS(2, "editor's atomic save");
	int code;
	char *theirs = e2b_test_exec(&srv,
	                             "cat /tmp/workspace/doc.txt; ls -a "
	                             "/tmp/workspace",
	                             &code);
	cr_assert(strstr(theirs, "new text\n"), "%s", theirs);
	cr_assert_null(strstr(theirs, ".swp"), "%s", theirs);
	free(theirs);
}

Test(e2b_budget, names_cost_one_request_each)
{
	ok_sh("echo a > a && mkdir old && ls > /dev/null && ls old%s", "");
	settle();
	e2b_test_reset(&srv);
	ok_sh("mv a b%s", "");
	EXPECT_REQUESTS(1, "rename");
	e2b_test_reset(&srv);
	ok_sh("rm b%s", "");
	EXPECT_REQUESTS(1, "unlink");
	e2b_test_reset(&srv);
	ok_sh("mkdir fresh%s", "");
	EXPECT_REQUESTS(1, "mkdir");
	e2b_test_reset(&srv);
	ok_sh("rmdir fresh%s", "");
	EXPECT_REQUESTS(1, "rmdir of a new directory");
	e2b_test_reset(&srv);
	ok_sh("rmdir old%s", "");
	EXPECT_REQUESTS(1, "rmdir of a listed directory");
	int code;
	char *theirs = e2b_test_exec(&srv, "ls -A /tmp/workspace", &code);
	cr_assert_str_eq(theirs, "");
	free(theirs);
}

Test(e2b_budget, fsync_of_a_clean_file_is_free)
{
	char p[PATH_MAX];

	ok_sh("echo data > f && cat f > /dev/null%s", "");
	settle();
	mpath(p, sizeof(p), "f");
	e2b_test_reset(&srv);
	int fd = open(p, O_RDWR);
	cr_assert(fd >= 0);
	cr_assert_eq(fsync(fd), 0);
	cr_assert_eq(fdatasync(fd), 0);
	cr_assert_eq(close(fd), 0);
	EXPECT_REQUESTS(0, "fsync of a clean file");
}

Test(e2b_budget, warm_git_status_is_free)
{
	ok_sh("git init -q . && git config user.email t@example.com && "
	      "git config user.name t && mkdir -p src/a src/b && "
	      "for i in 1 2 3 4 5 6 7 8; do echo $i > src/a/f$i; "
	      "echo $i > src/b/g$i; done && echo '*.o' > .gitignore && "
	      "git add -A && git commit -qm init%s",
	      "");
	/* Past git's racy window, then once to refresh its index. */
	sleep(2);
	ok_sh("git status --porcelain > /dev/null%s", "");
	settle();
	ok_sh("git status --porcelain > /dev/null%s", "");
	settle();
	e2b_test_reset(&srv);
	int code;
	char *out = sh_out(&code, m.mnt, "git status --porcelain");
	cr_assert_eq(code, 0);
	cr_assert_str_eq(out, "");
	free(out);
	EXPECT_REQUESTS(0, "warm git status");
}

Test(e2b_budget, omni_exec_uploads_dirty_files_first)
{
	char p[PATH_MAX];
	struct exec_test_buf out = { 0 };

	ok_sh("ls > /dev/null%s", "");
	settle();
	/* A file written and still open is dirty. */
	mpath(p, sizeof(p), "open.txt");
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "unsaved\n", 8), 8);
	e2b_test_reset(&srv);
	int code =
	    exec_test_omni_exec(NULL, 0, &out, NULL,
	                        (const char *const[]){ "-C", m.mnt, "-n", "cat",
	                                               "open.txt", NULL });
	cr_assert_eq(code, 0);
	cr_assert_str_eq(out.data, "unsaved\n");
	cr_assert_eq(e2b_test_count(&srv, "POST /files"), 1);
	cr_assert_eq(e2b_test_count(&srv, "process.Process/Start"), 1);
	EXPECT_REQUESTS(2, "omni-exec with one dirty file");
	exec_test_buf_free(&out);
	cr_assert_eq(close(fd), 0);

	/* Clean: the command alone, and nothing fetched afterwards. */
	settle();
	e2b_test_reset(&srv);
	code = exec_test_omni_exec(
	    NULL, 0, NULL, NULL,
	    (const char *const[]){ "-C", m.mnt, "-n", "true", NULL });
	cr_assert_eq(code, 0);
	usleep(500 * 1000);
	EXPECT_REQUESTS(1, "omni-exec with nothing dirty");
	/* Asked for again, it is fetched again. */
	e2b_test_reset(&srv);
	ok_sh("cat open.txt > /dev/null%s", "");
	cr_assert(e2b_test_total(&srv) >= 1);
}

/* --- behaviour ------------------------------------------------------------ */

TestSuite(e2b_mount, .init = setup, .fini = teardown, .timeout = 180);

/* Direct and buffered I/O, copies, holes, fsync (an upload while the file
 * stays open and is written on) and mapped writes, against a model. */
Test(e2b_mount, file_io_matches_a_model)
{
	file_io_model_run(m.mnt, "e2b mount", 20261205, 2000);
}

static int omni_exec_in(const char *dir, const char *in,
                        struct exec_test_buf *out, struct exec_test_buf *err,
                        const char *const *args)
{
	const char *full[32] = { "-C", dir };
	int n = 2;

	for (; *args && n < 30; args++)
		full[n++] = *args;
	full[n] = NULL;
	return exec_test_omni_exec(in, in ? strlen(in) : 0, out, err, full);
}

Test(e2b_mount, exit_codes)
{
	struct exec_test_buf out = { 0 }, err = { 0 };

	cr_assert_eq(omni_exec_in(m.mnt, NULL, &out, &err,
	                          (const char *const[]){
	                              "-c", "echo out; echo err >&2", NULL }),
	             0);
	cr_assert_str_eq(out.data, "out\n");
	cr_assert_str_eq(err.data, "err\n");
	cr_assert_eq(
	    omni_exec_in(m.mnt, NULL, NULL, NULL,
	                 (const char *const[]){ "-c", "exit 3", NULL }),
	    3);
	long long t0 = omni_test_now_ms();
	cr_assert_eq(omni_exec_in(m.mnt, NULL, NULL, NULL,
	                          (const char *const[]){ "--timeout", "1",
	                                                 "sleep", "30", NULL }),
	             124);
	cr_assert(omni_test_now_ms() - t0 < 10000);
	cr_assert_eq(
	    omni_exec_in(m.mnt, NULL, NULL, NULL,
	                 (const char *const[]){ "no-such-program-q", NULL }),
	    127);
	cr_assert_eq(
	    omni_exec_in(m.mnt, NULL, NULL, NULL,
	                 (const char *const[]){ "-c", "kill -9 $$", NULL }),
	    137);
	exec_test_buf_free(&out);
	exec_test_buf_free(&err);
}

Test(e2b_mount, output_streams_as_it_comes)
{
	char prog[PATH_MAX];
	struct exec_test_child c;
	struct exec_test_buf out = { 0 };

	exec_test_program(prog, sizeof(prog), "omni-exec");
	char *argv[] = { prog, "-C", m.mnt,
		         "-n", "-c", "echo first; sleep 3; echo second",
		         NULL };
	exec_test_spawn(&c, NULL, argv);
	long long t0 = omni_test_now_ms();
	cr_assert(exec_test_read_until(c.out, &out, "first", 5000));
	cr_assert(omni_test_now_ms() - t0 < 2500, "first line took %lld ms",
	          omni_test_now_ms() - t0);
	cr_assert_eq(exec_test_communicate(&c, NULL, 0, &out, NULL, 20000), 0);
	cr_assert(strstr(out.data, "second"));
	exec_test_buf_free(&out);
}

Test(e2b_mount, stdin_is_forwarded)
{
	struct exec_test_buf out = { 0 };

	cr_assert_eq(omni_exec_in(m.mnt, "line one\nline two\n", &out, NULL,
	                          (const char *const[]){ "sort", "-r", NULL }),
	             0);
	cr_assert_str_eq(out.data, "line two\nline one\n");
	exec_test_buf_free(&out);
}

static void signal_case(int sig, int want)
{
	char prog[PATH_MAX];
	struct exec_test_child c;
	struct exec_test_buf out = { 0 };

	exec_test_program(prog, sizeof(prog), "omni-exec");
	char *argv[] = { prog, "-C", m.mnt,
		         "-n", "-c", "echo ready; sleep 60 & wait",
		         NULL };
	exec_test_spawn(&c, NULL, argv);
	cr_assert(exec_test_read_until(c.out, &out, "ready", 10000));
	usleep(300 * 1000);
	long long t0 = omni_test_now_ms();
	cr_assert_eq(kill(c.pid, sig), 0);
	cr_assert_eq(exec_test_communicate(&c, NULL, 0, NULL, NULL, 15000),
	             want);
	cr_assert(omni_test_now_ms() - t0 < 10000);
	exec_test_buf_free(&out);
	/* Nothing of the command's group is left in the sandbox. */
	int code;
	for (int i = 0; i < 30; i++) {
		char *ps = e2b_test_exec(
		    &srv, "pgrep -u user -f 'sleep 60' || true", &code);
		bool gone = ps[0] == '\0';
		free(ps);
		if (gone)
			return;
		usleep(100 * 1000);
	}
	cr_assert_fail("the command's background job survived");
}

Test(e2b_mount, sigterm_ends_the_command)
{
	signal_case(SIGTERM, 143);
}

Test(e2b_mount, sigint_ends_the_command)
{
	signal_case(SIGINT, 130);
}

Test(e2b_mount, tty_gives_a_terminal)
{
	char prog[PATH_MAX];
	struct exec_test_buf out = { 0 };
	int master;

	exec_test_program(prog, sizeof(prog), "omni-exec");
	char *argv[] = { prog, "-t", "-C", m.mnt, "sh", NULL };
	pid_t pid = exec_test_spawn_pty(&master, 33, 101, argv);
	const char *cmd = "stty size; tty; echo done-$((6*7)); exit 7\n";
	cr_assert_eq(write(master, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
	cr_assert(exec_test_read_until(master, &out, "done-42", 15000),
	          "output: %s", out.data);
	exec_test_read_until(master, &out, "\x01never\x01", 3000);
	cr_assert_eq(exec_test_wait(pid, 10000), 7, "output: %s", out.data);
	cr_assert(strstr(out.data, "33 101"), "output: %s", out.data);
	cr_assert(strstr(out.data, "/dev/pts/"), "output: %s", out.data);
	close(master);
	exec_test_buf_free(&out);
}

Test(e2b_mount, tty_resize_reaches_the_sandbox)
{
	char prog[PATH_MAX];
	struct exec_test_buf out = { 0 };
	struct winsize ws = { .ws_row = 40, .ws_col = 120 };
	int master;

	exec_test_program(prog, sizeof(prog), "omni-exec");
	char *argv[] = { prog, "-t", "-C", m.mnt, "sh", NULL };
	pid_t pid = exec_test_spawn_pty(&master, 30, 90, argv);
	cr_assert_eq(write(master, "stty size\n", 10), 10);
	cr_assert(exec_test_read_until(master, &out, "30 90", 15000),
	          "output: %s", out.data);
	cr_assert(ioctl(master, TIOCSWINSZ, &ws) == 0);
	bool seen = false;
	for (int i = 0; i < 30 && !seen; i++) {
		cr_assert_eq(write(master, "stty size\n", 10), 10);
		seen = exec_test_read_until(master, &out, "40 120", 300);
	}
	cr_assert(seen, "output: %s", out.data);
	cr_assert_eq(write(master, "exit 0\n", 7), 7);
	exec_test_read_until(master, &out, "\x01never\x01", 3000);
	cr_assert_eq(exec_test_wait(pid, 10000), 0);
	close(master);
	exec_test_buf_free(&out);
}

Test(e2b_mount, cwd_maps_into_the_workspace)
{
	char dir[PATH_MAX];
	struct exec_test_buf out = { 0 };

	ok_sh("mkdir -p src/deep%s", "");
	mpath(dir, sizeof(dir), "src/deep");
	cr_assert_eq(omni_exec_in(dir, NULL, &out, NULL,
	                          (const char *const[]){ "pwd", NULL }),
	             0);
	cr_assert_str_eq(out.data, "/tmp/workspace/src/deep\n");
	exec_test_buf_free(&out);
	/* The shell way, from inside the mount. */
	int code;
	char *text = sh_out(&code, m.mnt, "cd src && omni-exec pwd");
	cr_assert_eq(code, 0);
	cr_assert_str_eq(text, "/tmp/workspace/src\n");
	free(text);
}

Test(e2b_mount, coherence_with_commands)
{
	struct exec_test_buf out = { 0 };
	int code;

	/* Written through the mount, seen by the next command. */
	ok_sh("printf 'from the mount' > a.txt && chmod 755 a.txt%s", "");
	cr_assert_eq(
	    omni_exec_in(m.mnt, NULL, &out, NULL,
	                 (const char *const[]){ "-c",
	                                        "cat a.txt; stat -c ' %a' "
	                                        "a.txt",
	                                        NULL }),
	    0);
	cr_assert_str_eq(out.data, "from the mount 755\n");
	exec_test_buf_free(&out);
	/* Written by a command, seen through the mount as it returns. */
	ok_sh("cat a.txt > /dev/null && ls > /dev/null%s", "");
	cr_assert_eq(
	    omni_exec_in(m.mnt, NULL, NULL, NULL,
	                 (const char *const[]){ "-c",
	                                        "echo changed > a.txt; "
	                                        "mkdir -p made/here; "
	                                        "echo x > made/here/f",
	                                        NULL }),
	    0);
	char *text = sh_out(&code, m.mnt, "cat a.txt made/here/f");
	cr_assert_str_eq(text, "changed\nx\n");
	free(text);
	/* Symlinks and their targets. */
	ok_sh("ln -s made/here/f link && test \"$(readlink link)\" = "
	      "made/here/f && test \"$(cat link)\" = x%s",
	      "");
	text = e2b_test_exec(&srv, "readlink /tmp/workspace/link", &code);
	cr_assert_str_eq(text, "made/here/f\n");
	free(text);
}

Test(e2b_mount, changes_behind_the_mount_show_within_two_seconds)
{
	int code;

	ok_sh("echo v1 > seen.txt && cat seen.txt > /dev/null && "
	      "test ! -e later.txt%s",
	      "");
	settle();
	free(e2b_test_exec(&srv,
	                   "echo v2-longer > /tmp/workspace/seen.txt; "
	                   "echo new > /tmp/workspace/later.txt",
	                   &code));
	long long t0 = omni_test_now_ms();
	bool ok = false;
	while (!ok && omni_test_now_ms() - t0 < 2000) {
		char *a = sh_out(&code, m.mnt, "cat seen.txt later.txt 2>&1");
		ok = strcmp(a, "v2-longer\nnew\n") == 0;
		free(a);
		if (!ok)
			usleep(100 * 1000);
	}
	cr_assert(ok, "changes made in the sandbox not visible after 2 s");
	/* And a removal. */
	free(e2b_test_exec(&srv, "rm /tmp/workspace/later.txt", &code));
	t0 = omni_test_now_ms();
	ok = false;
	while (!ok && omni_test_now_ms() - t0 < 2000) {
		ok = sh_in(m.mnt, "test ! -e later.txt") == 0;
		if (!ok)
			usleep(100 * 1000);
	}
	cr_assert(ok, "a removal in the sandbox not visible after 2 s");
}

Test(e2b_mount, agent_workflow_files)
{
	/* cp -a, tar, appends, truncation, renames of directories. */
	ok_sh("mkdir -p /tmp/omni-e2b-src.$$ && cd /tmp/omni-e2b-src.$$ && "
	      "mkdir -p a/b && echo x > a/b/f && chmod 751 a/b/f && "
	      "head -c 300000 /dev/urandom > big && cd - > /dev/null && "
	      "cp -a /tmp/omni-e2b-src.$$ copy && "
	      "diff -r /tmp/omni-e2b-src.$$ copy && "
	      "test \"$(stat -c %%a copy/a/b/f)\" = 751 && "
	      "rm -rf /tmp/omni-e2b-src.$$%s",
	      "");
	ok_sh("echo one >> log && echo two >> log && test \"$(cat log)\" = "
	      "\"$(printf 'one\\ntwo')\"%s",
	      "");
	ok_sh("truncate -s 2 log && test \"$(cat log)\" = on && "
	      "truncate -s 0 log && test ! -s log%s",
	      "");
	ok_sh("mv copy moved && test -f moved/a/b/f && test ! -e copy && "
	      "tar cf ../t.tar moved && rm -rf moved && tar xf ../t.tar && "
	      "test -f moved/big%s",
	      "");
	struct exec_test_buf out = { 0 };
	cr_assert_eq(omni_exec_in(m.mnt, NULL, &out, NULL,
	                          (const char *const[]){
	                              "stat", "-c", "%s %a", "moved/big",
	                              "moved/a/b/f", "log", NULL }),
	             0);
	cr_assert_str_eq(out.data, "300000 644\n2 751\n0 644\n");
	exec_test_buf_free(&out);
}

/* Names outside ASCII, and ones that need quoting, go through the mount
 * both ways: written here and read in the sandbox, written there and read
 * here (the download's Content-Disposition uses filename*=utf-8''). */
Test(e2b_mount, non_ascii_names_both_ways)
{
	ok_sh("echo here > 'café ✓.txt' && echo q > 'say \"hi\".txt' && "
	      "mkdir 'dír' && echo in > 'dír/日本語'%s",
	      "");
	struct exec_test_buf out = { 0 };
	cr_assert_eq(omni_exec_in(m.mnt, NULL, &out, NULL,
	                          (const char *const[]){
	                              "sh", "-c",
	                              "cat 'café ✓.txt' 'say \"hi\".txt' "
	                              "'dír/日本語' && echo there > 'ñ.txt'",
	                              NULL }),
	             0);
	cr_assert_str_eq(out.data, "here\nq\nin\n");
	exec_test_buf_free(&out);
	ok_sh("test \"$(cat ñ.txt)\" = there && ls | grep -qx 'café ✓.txt' && "
	      "test \"$(cat 'dír/日本語')\" = in%s",
	      "");
}

Test(e2b_mount, request_counts_are_readable)
{
	struct exec_test_buf out = { 0 };

	ok_sh("ls -l > /dev/null && echo x > counted%s", "");
	sync_mount();
	cr_assert_eq(omni_exec_in(m.mnt, NULL, &out, NULL,
	                          (const char *const[]){ "--stats", NULL }),
	             0);
	static const char *const keys[] = {
		"\ne2b.ListDir ",  "\ne2b.files.post ",  "\ne2b.Stat ",
		"\ne2b.requests ", "\ncache.attr_hits ", "\ncache.uploads ",
		"\nfuse.lookup ",
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(*keys); i++)
		cr_assert(strstr(out.data, keys[i]), "no %s in %s", keys[i] + 1,
		          out.data);
	cr_assert(strstr(out.data, "\ne2b.files.post 1\n"), "%s", out.data);
	exec_test_buf_free(&out);
}

Test(e2b_mount, unsupported_operations_say_so)
{
	int code;

	ok_sh("echo x > a%s", "");
	/* No hard links through envd: EPERM, as on file systems without. */
	char *text = sh_out(&code, m.mnt,
	                    "python3 -c 'import os\ntry:\n os.link(\"a\", "
	                    "\"b\")\nexcept OSError as e: print(e.errno)'");
	cr_assert_eq(strtol(text, NULL, 10), EPERM, "%s", text);
	free(text);
	/* Device nodes are refused; giving a file to its owner is fine. */
	cr_assert_neq(sh_in(m.mnt, "mkfifo p 2>/dev/null"), 0);
	ok_sh("chown \"$(id -u):$(id -g)\" a%s", "");
}

/* --- faults --------------------------------------------------------------- */

static void fault_setup(void)
{
	e2b_test_require();
	e2b_test_server_start(&srv, NULL);
	sanitizer_reports_to_files();
	up((const char *const[]){ "--request-timeout", "3", NULL });
	wait_watch();
}

TestSuite(e2b_fault, .init = fault_setup, .fini = teardown, .timeout = 180);

/* Upload at close (-o cache_mode=close): close reports the failure. */
static void fault_close_setup(void)
{
	e2b_test_require();
	e2b_test_server_start(&srv, NULL);
	sanitizer_reports_to_files();
	up((const char *const[]){ "--request-timeout", "3", "-o",
	                          "cache_mode=close", NULL });
	wait_watch();
}

TestSuite(e2b_fault_close, .init = fault_close_setup, .fini = teardown,
          .timeout = 180);

Test(e2b_fault_close, failed_upload_keeps_the_data)
{
	char p[PATH_MAX];
	char buf[64] = "";

	ok_sh("ls > /dev/null%s", "");
	mpath(p, sizeof(p), "precious.txt");
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "do not lose me\n", 15), 15);
	e2b_test_fault(&srv, "error", 503);
	errno = 0;
	cr_assert_eq(close(fd), -1, "close succeeded with the server failing");
	cr_assert_eq(errno, EIO, "close: %s", strerror(errno));
	/* Still readable here, dirty, while the server fails. */
	fd = open(p, O_RDWR);
	cr_assert(fd >= 0, "open: %s", strerror(errno));
	cr_assert_eq(read(fd, buf, sizeof(buf)), 15);
	cr_assert_str_eq(buf, "do not lose me\n");
	cr_assert_eq(fsync(fd), -1);
	cr_assert_eq(errno, EIO);
	/* Once it answers again, fsync uploads it. */
	e2b_test_fault(&srv, "none", 0);
	e2b_test_reset(&srv);
	cr_assert_eq(fsync(fd), 0, "fsync: %s", strerror(errno));
	cr_assert_eq(e2b_test_count(&srv, "POST /files"), 1);
	cr_assert_eq(close(fd), 0);
	int code;
	char *text =
	    e2b_test_exec(&srv, "cat /tmp/workspace/precious.txt", &code);
	cr_assert_str_eq(text, "do not lose me\n");
	free(text);
}

Test(e2b_fault_close, dirty_file_retried_by_the_next_close)
{
	char p[PATH_MAX];

	ok_sh("ls > /dev/null%s", "");
	mpath(p, sizeof(p), "later.txt");
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "abc", 3), 3);
	e2b_test_fault(&srv, "error", 500);
	cr_assert_eq(close(fd), -1);
	e2b_test_fault(&srv, "none", 0);
	/* Any later open and close of it uploads the kept copy. */
	fd = open(p, O_RDONLY);
	cr_assert(fd >= 0);
	cr_assert_eq(close(fd), 0);
	int code;
	char *text = e2b_test_exec(&srv, "cat /tmp/workspace/later.txt", &code);
	cr_assert_str_eq(text, "abc");
	free(text);
}

/* An upload against a black hole fails within the request timeout (3 s
 * here): connecting and waiting for the answer share one bound. */
Test(e2b_fault_close, upload_to_a_black_hole_fails_in_time)
{
	char p[PATH_MAX];

	ok_sh("ls > /dev/null%s", "");
	mpath(p, sizeof(p), "late.txt");
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "abc", 3), 3);
	e2b_test_fault(&srv, "hang", 0);
	long long t0 = omni_test_now_ms();
	cr_assert_eq(close(fd), -1, "close succeeded against a black hole");
	long long took = omni_test_now_ms() - t0;
	cr_assert(took < 4500, "close took %lld ms with a 3 s bound", took);
	sandbox_may_live = true;
	e2b_test_fault(&srv, "none", 0);
}

/* Run a shell command with a limit; its time in ms, *status its exit. */
static long long timed_sh(int *status, const char *cmd)
{
	long long t0 = omni_test_now_ms();

	*status =
	    sh_in(m.mnt, "timeout -s KILL 30 sh -c '%s' 2>/dev/null", cmd);
	return omni_test_now_ms() - t0;
}

Test(e2b_fault, black_hole_fails_every_call_in_bounded_time)
{
	int status, code;

	/* Made behind the mount's back: nothing of it is cached. */
	free(e2b_test_exec(&srv,
	                   "mkdir -p /tmp/workspace/remote && echo r > "
	                   "/tmp/workspace/remote/r && chown -R user: "
	                   "/tmp/workspace/remote",
	                   &code));
	ok_sh("ls > /dev/null%s", "");
	settle();
	e2b_test_fault(&srv, "hang", 0);
	/* What needs the server fails; nothing waits past the bound. */
	static const char *const calls[] = {
		"ls -l remote",      "cat remote/r",  "mkdir newdir",
		"omni-exec -n true", "stat remote/r",
	};
	for (size_t i = 0; i < sizeof(calls) / sizeof(*calls); i++) {
		long long took = timed_sh(&status, calls[i]);
		cr_assert_neq(status, 137, "`%s` hung", calls[i]);
		cr_assert_neq(status, 0, "`%s` succeeded against a black hole",
		              calls[i]);
		cr_assert(took < 8000, "`%s` took %lld ms", calls[i], took);
	}
	/* A new file in a listed directory: kept here (write-back), or an
	 * error when the listing had expired; in time either way. */
	long long took_new = timed_sh(&status, "echo x > newfile");
	cr_assert_neq(status, 137, "echo x > newfile hung");
	cr_assert(took_new < 8000, "took %lld ms", took_new);
	/* Listing what was listed: from the cache, or an error, in time. */
	long long took = timed_sh(&status, "ls > /dev/null");
	cr_assert_neq(status, 137, "ls hung");
	cr_assert(took < 8000, "took %lld ms", took);
	/* Unmounting works while the server is still a black hole. */
	long long t0 = omni_test_now_ms();
	cr_assert_eq(sh_in(NULL, "fusermount3 -u '%s'", m.mnt), 0);
	cr_assert(!mount_is_mounted(m.mnt));
	cr_assert(omni_test_now_ms() - t0 < 5000);
	/* The daemon exits on its own within its bounds. */
	int st;
	bool gone = false;
	for (int i = 0; i < 200 && !gone; i++) {
		gone = waitpid(m.pid, &st, WNOHANG) == m.pid;
		if (!gone)
			usleep(100 * 1000);
	}
	cr_assert(gone, "omnifs did not exit within 20 s of the unmount");
	m.pid = 0;
	sandbox_may_live = true;
	e2b_test_fault(&srv, "none", 0);
}

/* omni-exec during an outage says how long the sandbox has been silent
 * (dated from the first request that got no answer) and that it is not
 * retried. */
Test(e2b_fault, outage_message_says_how_long_and_no_retry)
{
	int status;

	e2b_test_fault(&srv, "hang", 0);
	/* The first call waits out the 3 s bound and opens the breaker. */
	status = sh_in(NULL,
	               "timeout -s KILL 30 stat '%s/nothing-here' "
	               ">/dev/null 2>&1",
	               m.mnt);
	cr_assert_neq(status, 0);
	int code;
	char *err =
	    sh_out(&code, NULL,
	           "omni-exec --mount '%s' -n true 2>&1 >/dev/null", m.mnt);
	cr_assert_neq(code, 0, "%s", err);
	long secs = -1;
	const char *at = strstr(err, "has not answered for ");
	cr_assert(at, "%s", err);
	secs = strtol(at + strlen("has not answered for "), NULL, 10);
	cr_assert_geq(secs, 3, "%s", err);
	cr_assert(strstr(err, "not retried"), "%s", err);
	free(err);
	e2b_test_fault(&srv, "none", 0);
}

Test(e2b_fault, recovers_after_the_outage)
{
	int status;

	ok_sh("echo before > f%s", "");
	e2b_test_fault(&srv, "hang", 0);
	timed_sh(&status, "omni-exec true");
	cr_assert_neq(status, 0);
	e2b_test_fault(&srv, "none", 0);
	long long t0 = omni_test_now_ms();
	bool ok = false;
	while (!ok && omni_test_now_ms() - t0 < 5000) {
		ok = sh_in(m.mnt,
		           "omni-exec -n cat f 2>/dev/null | grep -q before") ==
		     0;
		if (!ok)
			usleep(200 * 1000);
	}
	cr_assert(ok, "the mount did not recover within 5 s");
	cr_assert(omni_test_now_ms() - t0 < 3000, "recovery took %lld ms",
	          omni_test_now_ms() - t0);
}
