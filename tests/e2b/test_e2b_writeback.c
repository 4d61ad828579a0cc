/*
 * tests/e2b/test_e2b_writeback.c - the e2b mount's write-back cache
 * (-o cache_mode=writes, the default), mounted for real against the local
 * E2B server.
 *
 * e2b_writeback: close returns before the upload (the server is made
 * slow: 20 files written faster than one upload takes each), omni-exec
 * --sync waits for all of them; `cp -a` costs at most 1.2 requests per
 * file (modes and times in one command); an outage: writes succeed,
 * unmount keeps what it could not upload under the data folder and says
 * so, and the next mount uploads it; a daemon killed with -9 while
 * uploads fail loses nothing either.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "e2b_helpers.h"
#include "exec_helpers.h"
#include "helpers.h"
#include "mount_helpers.h"

static struct e2b_test_server srv;
static struct mount_fx m;
static bool sandbox_may_live;

static void setup(void)
{
	e2b_test_require();
	e2b_test_server_start(&srv, NULL);
	mount_up(&m, (const char *const[]){ "--backend", "e2b",
	                                    "--request-timeout", "3", NULL });
	sandbox_may_live = false;
}

static void teardown(void)
{
	if (srv.pid > 0) {
		e2b_test_fault(&srv, "none", 0);
		free(e2b_test_http(&srv, "POST", "/_test/delay", "{\"ms\":0}",
		                   NULL));
	}
	mount_down(&m);
	if (srv.pid > 0 && !sandbox_may_live)
		cr_expect_eq(e2b_test_live_sandboxes(&srv), 0,
		             "unmounting did not kill the sandbox");
	e2b_test_server_stop(&srv);
}

TestSuite(e2b_writeback, .init = setup, .fini = teardown, .timeout = 180);

static void ok_sh(const char *cmd)
{
	int st = sh_in(m.mnt, "%s", cmd);
	cr_assert_eq(st, 0, "`%s` exited %d", cmd, st);
}

/* omni-exec in the mount; its stdout (malloc'd) and exit status. */
static char *omni_exec(int *status, const char *const *args)
{
	struct exec_test_buf out = { 0 }, err = { 0 };
	const char *argv[16] = { "-C", m.mnt };
	int n = 2;

	for (; args[n - 2] && n < 15; n++)
		argv[n] = args[n - 2];
	argv[n] = NULL;
	*status = exec_test_omni_exec(NULL, 0, &out, &err, argv);
	/* stdout, or stderr when it failed. */
	char *text = strdup(*status == 0 ? (out.data ? out.data : "")
	                                 : (err.data ? err.data : ""));
	exec_test_buf_free(&out);
	exec_test_buf_free(&err);
	return text;
}

static void sync_mount(void)
{
	int st;
	char *out = omni_exec(&st, (const char *const[]){ "--sync", NULL });
	cr_assert_eq(st, 0, "omni-exec --sync: %s", out);
	cr_assert_str_eq(out, "synced\n");
	free(out);
}

/* The mount again, on the same data folder and project (after an
 * unmount or a kill). */
static void remount(void)
{
	char omnifs[PATH_MAX];
	const char *argv[] = { omnifs,      "-f",  "--data-path", m.data,
		               "--backend", "e2b", m.mnt,         NULL };

	omni_test_fmt(omnifs, sizeof(omnifs), "%s/omnifs", m.bin);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, m.log,
	                                 O_WRONLY | O_CREAT | O_APPEND, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	int rc = posix_spawn(&m.pid, omnifs, &fa, NULL, (char *const *)argv,
	                     environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert(rc == 0, "cannot start omnifs: %s", strerror(rc));
	for (int i = 0; i < 1000 && !mount_is_mounted(m.mnt); i++)
		usleep(10000);
	cr_assert(mount_is_mounted(m.mnt), "no mount again");
	/* The control socket comes up just after the mount. */
	for (int i = 0; i < 100; i++) {
		int st;
		free(omni_exec(&st, (const char *const[]){ "--ping", NULL }));
		if (st == 0)
			return;
		usleep(100 * 1000);
	}
	cr_assert_fail("the daemon does not answer --ping");
}

/* Wait for the daemon to exit (at most seconds). */
static void wait_exit(int seconds)
{
	int st;

	for (int i = 0; i < seconds * 10; i++) {
		if (waitpid(m.pid, &st, WNOHANG) == m.pid) {
			m.pid = 0;
			return;
		}
		usleep(100 * 1000);
	}
	cr_assert_fail("omnifs did not exit within %d s", seconds);
}

/* How many records the spool folder of the mount's project holds. */
static int spooled(void)
{
	int code;
	char *out = sh_out(&code, m.data,
	                   "ls .omnifs-cache/%s 2>/dev/null | grep -c "
	                   "'\\.pending$'",
	                   m.project);
	int n = (int)strtol(out, NULL, 10);

	free(out);
	return n;
}

Test(e2b_writeback, close_returns_before_the_upload)
{
	ok_sh("ls > /dev/null");
	/* Each upload takes 300 ms: twenty closes that waited for theirs
	 * would take six seconds. */
	free(e2b_test_http(&srv, "POST", "/_test/delay", "{\"ms\":300}", NULL));
	long long t0 = omni_test_now_ms();
	ok_sh("for i in $(seq 20); do echo \"n $i\" > w$i.txt; done");
	long long took = omni_test_now_ms() - t0;
	cr_assert(took < 2500, "20 writes took %lld ms", took);
	sync_mount();
	free(e2b_test_http(&srv, "POST", "/_test/delay", "{\"ms\":0}", NULL));
	cr_assert_eq(e2b_test_count(&srv, "POST /files"), 20, "%s",
	             e2b_test_counts(&srv));
	int code;
	char *theirs = e2b_test_exec(
	    &srv, "cat /tmp/workspace/w1.txt /tmp/workspace/w20.txt", &code);
	cr_assert_str_eq(theirs, "n 1\nn 20\n");
	free(theirs);
	cr_assert_eq(spooled(), 0, "records left after the uploads");
}

Test(e2b_writeback, cp_a_costs_at_most_1_2_requests_per_file)
{
	enum { N = 60 };
	char cmd[1024];

	snprintf(cmd, sizeof(cmd),
	         "rm -rf /tmp/omni-wb-src.%d && mkdir -p /tmp/omni-wb-src.%d/s "
	         "&& cd /tmp/omni-wb-src.%d && for i in $(seq %d); do echo "
	         "$i > s/f$i; done && chmod 755 s/f1 s/f2 && chmod 600 s/f3 "
	         "&& touch -d 2001-02-03T04:05:06 s/* s",
	         (int)getpid(), (int)getpid(), (int)getpid(), N);
	ok_sh(cmd);
	ok_sh("ls > /dev/null");
	usleep(400 * 1000);
	e2b_test_reset(&srv);
	snprintf(cmd, sizeof(cmd), "cp -a /tmp/omni-wb-src.%d/s copy",
	         (int)getpid());
	ok_sh(cmd);
	sync_mount();
	long total = e2b_test_total(&srv);
	cr_assert(total <= N * 12 / 10, "cp -a of %d files: %ld requests: %s",
	          N, total, e2b_test_counts(&srv));
	cr_assert_eq(e2b_test_count(&srv, "POST /files"), N);
	int code;
	char *theirs = e2b_test_exec(&srv,
	                             "cd /tmp/workspace/copy && stat -c '%n "
	                             "%a %Y' f1 f3 f4 f60",
	                             &code);
	cr_assert_str_eq(theirs, "f1 755 981173106\nf3 600 981173106\n"
	                         "f4 644 981173106\nf60 644 981173106\n");
	free(theirs);
	/* And the mount says the same. */
	char *ours = sh_out(&code, m.mnt, "stat -c '%%a %%Y' copy/f1 copy/f3");
	cr_assert_str_eq(ours, "755 981173106\n600 981173106\n");
	free(ours);
	snprintf(cmd, sizeof(cmd), "rm -rf /tmp/omni-wb-src.%d", (int)getpid());
	sh_in(NULL, "%s", cmd);
}

Test(e2b_writeback, fsync_uploads_at_once)
{
	char p[PATH_MAX];

	ok_sh("ls > /dev/null");
	omni_test_fmt(p, sizeof(p), "%s/synced.txt", m.mnt);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0700);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "now\n", 4), 4);
	cr_assert_eq(fsync(fd), 0, "fsync: %s", strerror(errno));
	int code;
	char *theirs =
	    e2b_test_exec(&srv,
	                  "cat /tmp/workspace/synced.txt; stat -c %a "
	                  "/tmp/workspace/synced.txt",
	                  &code);
	cr_assert_str_eq(theirs, "now\n700\n");
	free(theirs);
	cr_assert_eq(close(fd), 0);
}

Test(e2b_writeback, outage_unmount_keeps_the_files_and_remount_uploads)
{
	ok_sh("ls > /dev/null");
	e2b_test_fault(&srv, "hang", 0);
	/* Writes succeed at local speed during the outage. */
	long long t0 = omni_test_now_ms();
	ok_sh("echo one > one.txt && mkdir -p /tmp/x && echo two > two.txt");
	cr_assert(omni_test_now_ms() - t0 < 2000, "writes waited");
	/* Unmount: the daemon gives up within its bounds and keeps them. */
	cr_assert_eq(sh_in(NULL, "fusermount3 -u '%s'", m.mnt), 0);
	wait_exit(60);
	sandbox_may_live = true;
	cr_assert_eq(spooled(), 2);
	char *log = omni_test_read_host(m.log, NULL);
	cr_assert(log && strstr(log, "kept in") && strstr(log, "one.txt") &&
	              strstr(log, "two.txt"),
	          "no message naming the kept files: %s", log ? log : "");
	free(log);
	/* The next mount uploads them first. */
	e2b_test_fault(&srv, "none", 0);
	remount();
	int st;
	char *out = omni_exec(
	    &st, (const char *const[]){ "cat", "one.txt", "two.txt", NULL });
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_str_eq(out, "one\ntwo\n");
	free(out);
	cr_assert_eq(spooled(), 0);
}

Test(e2b_writeback, kill_9_with_pending_uploads_loses_nothing)
{
	ok_sh("ls > /dev/null");
	/* Uploads fail (and are retried later) ... */
	e2b_test_fault(&srv, "error", 503);
	ok_sh("echo kept > k.txt && printf 'x%.0s' $(seq 5000) > big.txt && "
	      "chmod 751 k.txt");
	/* ... when the daemon dies. */
	kill(m.pid, SIGKILL);
	int status;
	waitpid(m.pid, &status, 0);
	m.pid = 0;
	sandbox_may_live = true;
	for (int i = 0; i < 100 && mount_is_mounted(m.mnt); i++)
		usleep(50 * 1000);
	if (mount_is_mounted(m.mnt))
		sh_in(NULL, "fusermount3 -u '%s' 2>/dev/null", m.mnt);
	cr_assert_eq(spooled(), 2);
	e2b_test_fault(&srv, "none", 0);
	remount();
	int st;
	char *out = omni_exec(
	    &st, (const char *const[]){ "sh", "-c",
	                                "cat k.txt; wc -c < big.txt; stat -c "
	                                "%a k.txt",
	                                NULL });
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_str_eq(out, "kept\n5000\n751\n");
	free(out);
}

/* --- reads that hide latency ---------------------------------------------- */

TestSuite(e2b_stream, .init = setup, .fini = teardown, .timeout = 180);

/* A reader going through a tree file by file: after two files of a
 * directory the rest of it comes in one stream (tar in the sandbox), and
 * once it goes on to a sibling, the other directories too. */
Test(e2b_stream, reading_a_tree_costs_a_command_per_directory)
{
	int code;

	free(e2b_test_exec(&srv,
	                   "mkdir -p /tmp/workspace/t && cd /tmp/workspace/t "
	                   "&& for d in 1 2 3 4 5; do mkdir d$d; for f in "
	                   "$(seq 30); do echo \"$d $f\" > d$d/f$f; done; "
	                   "done && echo accent > d1/'é ✓' && chown -R user: "
	                   "/tmp/workspace/t",
	                   &code));
	cr_assert_eq(code, 0);
	/* The change events of making it come first. */
	usleep(1000 * 1000);
	ok_sh("ls -R t > /dev/null");
	usleep(400 * 1000);
	e2b_test_reset(&srv);
	int code2;
	char *sum =
	    sh_out(&code2, m.mnt,
	           "find t -type f -print0 | sort -z | xargs -0 cat | md5sum");
	cr_assert_eq(code2, 0);
	long total = e2b_test_total(&srv);
	cr_assert(total <= 12, "151 files read: %ld requests: %s", total,
	          e2b_test_counts(&srv));
	char *theirs =
	    e2b_test_exec(&srv,
	                  "cd /tmp/workspace && find t -type f -print0 | "
	                  "sort -z | xargs -0 cat | md5sum",
	                  &code);
	cr_assert_str_eq(sum, theirs);
	free(sum);
	free(theirs);
}
