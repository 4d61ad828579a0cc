/*
 * tests/journal/test_journal.c - the journal (backends/journal/): the
 * database API on its own, --since parsing, and on a real local mount the
 * records of file operations and commands, omnifs --log, journal=off, and
 * a daemon killed with SIGKILL mid-workload leaving a sound database.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "helpers.h"
#include "journal/hook.h"
#include "journal/journal.h"
#include "omni/backend.h"
#include "omni/vfs.h"
#include "journal_cmd.h"
#include "mount_helpers.h"

static char tmp[128];

static void tmp_setup(void)
{
	snprintf(tmp, sizeof(tmp), "/tmp/omni-journal.XXXXXX");
	cr_assert_not_null(mkdtemp(tmp));
}

static void tmp_teardown(void)
{
	omni_test_rm_rf(tmp);
}

/* One integer from a query on the database at path. */
static long long query_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	long long v = -1;

	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
	             SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
	             "%s: %s", sql, sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static char *query_text(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char *v = NULL;

	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
	             SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		v = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* --- the API -------------------------------------------------------------- */

TestSuite(journal, .init = tmp_setup, .fini = tmp_teardown, .timeout = 60);

Test(journal, records_are_committed_by_flush_and_close)
{
	char path[PATH_MAX];
	struct omni__journal *j;

	snprintf(path, sizeof(path), "%s/d/.omnifs-journal/p.sqlite", tmp);
	cr_assert_eq(omni__journal_open(&j, path), 0, "%s", omni_error_last());
	for (int i = 0; i < 10000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%d", i);
		struct omni__journal_op op = { "write", name, NULL, 100,
			                       0,       100,  -1,   0 };
		omni__journal_record_op(j, &op);
	}
	struct omni__journal_cmd cmd = { .argv = "[\"make\"]",
		                         .cwd = "src",
		                         .exit_code = 2,
		                         .duration_ms = 7,
		                         .stdout_bytes = 10 };
	omni__journal_record_cmd(j, &cmd);
	cr_assert_eq(omni__journal_flush(j), 0);
	cr_assert_eq(query_int(path, "SELECT count(*) FROM ops"), 10000);
	cr_assert_eq(query_int(path, "SELECT exit FROM commands"), 2);
	struct omni__journal_op last = { "unlink", "f1", NULL, -1,
		                         -1,       -1,   -1,   -2 };
	omni__journal_record_op(j, &last);
	omni__journal_close(j);
	cr_assert_eq(query_int(path, "SELECT result FROM ops WHERE "
	                             "op='unlink'"),
	             -2);
	char *mode = query_text(path, "PRAGMA journal_mode");
	cr_assert_str_eq(mode, "wal");
	free(mode);

	char summary[256];
	cr_assert_eq(
	    omni__journal_summary(path, 0, 0, summary, sizeof(summary)), 0);
	cr_assert_str_eq(summary, "10000 ops (0 created, 10000 written, 0 "
	                          "removed, 0 renamed), 1 commands");
}

struct recorder {
	struct omni__journal *j;
	int id;
};

static void *record_many(void *arg)
{
	const struct recorder *r = arg;

	for (int i = 0; i < 20000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "t%d/f%d", r->id, i);
		struct omni__journal_op op = { "create", name, NULL, -1,
			                       -1,       -1,   0644, 0 };
		omni__journal_record_op(r->j, &op);
	}
	return NULL;
}

/* Threads record at once, across many chunks of the buffer, with a
 * record larger than a chunk among them: every record arrives whole. */
Test(journal, threads_and_a_record_larger_than_a_chunk)
{
	char path[PATH_MAX];
	struct omni__journal *j;
	pthread_t t[4];
	struct recorder r[4];
	size_t big = 200 * 1024;
	char *argv = malloc(big + 1);

	snprintf(path, sizeof(path), "%s/j.sqlite", tmp);
	cr_assert_eq(omni__journal_open(&j, path), 0);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct recorder){ j, i };
		cr_assert_eq(pthread_create(&t[i], NULL, record_many, &r[i]),
		             0);
	}
	memset(argv, 'a', big);
	argv[0] = '[';
	argv[big - 1] = ']';
	argv[big] = '\0';
	struct omni__journal_cmd cmd = { .argv = argv, .cwd = NULL };
	omni__journal_record_cmd(j, &cmd);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	cr_assert_eq(omni__journal_flush(j), 0);
	omni__journal_close(j);
	free(argv);
	cr_assert_eq(query_int(path, "SELECT count(*) FROM ops"), 80000);
	for (int i = 0; i < 4; i++) {
		char sql[128];
		snprintf(sql, sizeof(sql),
		         "SELECT count(*) FROM ops WHERE path LIKE 't%d/f%%' "
		         "AND mode=420 AND op='create' AND path2 IS NULL",
		         i);
		cr_assert_eq(query_int(path, sql), 20000);
	}
	cr_assert_eq(query_int(path, "SELECT length(argv) FROM commands "
	                             "WHERE cwd IS NULL"),
	             (long long)big);
}

Test(journal, a_record_waits_at_most_a_second)
{
	char path[PATH_MAX];
	struct omni__journal *j;

	snprintf(path, sizeof(path), "%s/j.sqlite", tmp);
	cr_assert_eq(omni__journal_open(&j, path), 0);
	struct omni__journal_op op = {
		"mkdir", "d", NULL, -1, -1, -1, 0755, 0
	};
	omni__journal_record_op(j, &op);
	usleep(1500 * 1000);
	/* Not flushed, not closed: the writer committed it on its own. */
	cr_assert_eq(query_int(path, "SELECT count(*) FROM ops"), 1);
	omni__journal_close(j);
}

Test(journal, print_text_and_json)
{
	char path[PATH_MAX], out[PATH_MAX];
	struct omni__journal *j;

	snprintf(path, sizeof(path), "%s/j.sqlite", tmp);
	snprintf(out, sizeof(out), "%s/out", tmp);
	cr_assert_eq(omni__journal_open(&j, path), 0);
	struct omni__journal_op op = { "rename", "a", "b \"q\"", -1,
		                       -1,       -1,  -1,        0 };
	omni__journal_record_op(j, &op);
	omni__journal_close(j);
	FILE *f = fopen(out, "w");
	cr_assert_eq(omni__journal_print(path, 0, true, f), 0);
	cr_assert_eq(omni__journal_print(path, 0, false, f), 0);
	fclose(f);
	char *text = omni_test_read_host(out, NULL);
	cr_assert_not_null(strstr(text, "\"op\":\"rename\",\"path\":\"a\","
	                                "\"path2\":\"b \\\"q\\\"\""),
	                   "%s", text);
	cr_assert_not_null(strstr(text, "rename    a -> b \"q\"  ok"), "%s",
	                   text);
	free(text);
	cr_assert_lt(
	    omni__journal_print("/nonexistent/j.sqlite", 0, false, stdout), 0);
}

Test(journal, since_parsing)
{
	long long now = 1700000000000LL;

	cr_assert_eq(omnifs_parse_since("10m", now), now - 600000);
	cr_assert_eq(omnifs_parse_since("2h", now), now - 7200000);
	cr_assert_eq(omnifs_parse_since("30s", now), now - 30000);
	cr_assert_eq(omnifs_parse_since("1d", now), now - 86400000);
	cr_assert_eq(omnifs_parse_since("2023-11-14T22:13:20Z", now), now);
	cr_assert_eq(omnifs_parse_since("2023-11-14", now), 1699920000000LL);
	cr_assert_eq(omnifs_parse_since("yesterday", now), -1);
	cr_assert_eq(omnifs_parse_since("10x", now), -1);
}

/* Paths of node descriptors are cached by number, with no system call to
 * check them: a number closed and handed out again by a lookup must name
 * its new directory, not the old one. */
Test(journal, a_reused_descriptor_number_names_the_new_directory)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	char data[PATH_MAX], path[PATH_MAX];
	struct omni_backend *b;
	struct stat st;

	snprintf(data, sizeof(data), "%s/data", tmp);
	snprintf(path, sizeof(path), "%s/j.sqlite", tmp);
	opts.data_path = data;
	omni_assert_ok(omni_backend_new(&b, "local", "p", &opts, NULL));
	omni_assert_ok(omni_backend_start(b));
	omni_assert_ok(omni__journal_attach(b, path));
	int root = omni_vfs_node_root(b);
	cr_assert_geq(root, 0);
	omni_assert_ok(omni_vfs_node_mkdir(b, root, "a", 0755));
	omni_assert_ok(omni_vfs_node_mkdir(b, root, "b", 0755));
	int fd = omni_vfs_node_lookup(b, root, "a", &st);
	cr_assert_geq(fd, 0);
	omni_assert_ok(omni_vfs_node_mknod(b, fd, "x", S_IFREG | 0644, 0));
	close(fd);
	int again = omni_vfs_node_lookup(b, root, "b", &st);
	cr_assert_eq(again, fd, "the lowest free number comes back");
	omni_assert_ok(omni_vfs_node_mknod(b, again, "y", S_IFREG | 0644, 0));
	close(again);
	close(root);
	cr_assert_eq(omni__journal_flush(omni__journal_of(b)), 0);
	cr_assert_eq(query_int(path, "SELECT count(*) FROM ops WHERE "
	                             "op='mknod' AND path='a/x'"),
	             1);
	cr_assert_eq(query_int(path, "SELECT count(*) FROM ops WHERE "
	                             "op='mknod' AND path='b/y'"),
	             1);
	omni__journal_detach(b);
	omni_backend_free(b);
}

/* --- on a mount ----------------------------------------------------------- */

static struct mount_fx m;
static char db[PATH_MAX + 128];

static void mount_setup(void)
{
	mount_up(&m, NULL);
	snprintf(db, sizeof(db), "%s/.omnifs-journal/%s.sqlite", m.data,
	         m.project);
}

static void mount_teardown(void)
{
	mount_down(&m);
}

TestSuite(journal_mount, .init = mount_setup, .fini = mount_teardown,
          .timeout = 90);

/* omnifs --log until pattern shows (the writer commits within 1 s). */
static char *log_until(const char *args, const char *pattern)
{
	char *out = NULL;

	for (int i = 0; i < 50; i++) {
		int st;
		free(out);
		out = sh_out(&st, m.tmp, "omnifs --data-path '%s' --log %s %s",
		             m.data, m.project, args);
		if (out && strstr(out, pattern))
			break;
		usleep(100 * 1000);
	}
	return out;
}

Test(journal_mount, file_operations_and_commands)
{
	cr_assert_eq(sh_in(m.mnt, "printf hello > a && mkdir d && mv a d/b && "
	                          "ln -s d/b s && chmod 600 d/b && "
	                          "truncate -s 2 d/b && ln d/b h && rm h && "
	                          "touch -d 2020-01-01 d/b && "
	                          "dd if=/dev/zero of=big bs=4096 count=8 "
	                          "2>/dev/null && rmdir nope 2>/dev/null; "
	                          "mkdir e && rmdir e"),
	             0);
	cr_assert_eq(sh_in(m.tmp,
	                   "omni-exec --project %s -- sh -c "
	                   "'printf 12345; printf 123 >&2; exit 3' "
	                   ">/dev/null 2>&1",
	                   m.project),
	             3);
	char *out = log_until("", "exec ");
	cr_assert_not_null(out);
	static const char *const want[] = {
		"create    a mode=644  ok",
		"write     a  size=5 range=[0,5)  ok",
		"mkdir     d mode=755  ok",
		"rename    a -> d/b  ok",
		"symlink   s -> d/b  ok",
		"chmod     d/b mode=600  ok",
		"truncate  d/b  size=2  ok",
		"link      d/b -> h  ok",
		"unlink    h  ok",
		"utimens   d/b  ok",
		"write     big  size=32768 range=[0,32768)  ok",
		"rmdir     e  ok",
		"exec      [\"sh\",\"-c\",\"printf 12345; printf 123 >&2; exit "
		"3\"]",
		"exit=3",
		"out=5 err=3",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
		cr_expect_not_null(strstr(out, want[i]), "missing '%s' in:\n%s",
		                   want[i], out);
	free(out);

	/* The database is SQLite's: the sqlite3 shell reads it. */
	cr_assert_eq(query_int(db, "SELECT count(*) FROM commands WHERE "
	                           "exit=3 AND stdout_bytes=5"),
	             1);
	out = log_until("--json --since 10m", "\"type\":\"command\"");
	cr_assert_not_null(strstr(out, "\"op\":\"rename\",\"path\":\"a\","
	                               "\"path2\":\"d/b\""),
	                   "%s", out);
	free(out);
	out = log_until("--since 2000-01-01", "exec ");
	cr_assert_not_null(strstr(out, "exec "));
	free(out);
}

Test(journal_mount, one_write_record_per_open)
{
	cr_assert_eq(sh_in(m.mnt, "for i in 1 2 3 4 5 6 7 8 9 10; do "
	                          "echo line $i; done > f"),
	             0);
	cr_assert_eq(sh_in(m.mnt, "printf xx | dd of=f bs=1 seek=100 "
	                          "conv=notrunc 2>/dev/null"),
	             0);
	char *out = log_until("", "range=[100,102)");
	cr_assert_not_null(strstr(out, "write     f  size=71 range=[0,71)"),
	                   "%s", out);
	cr_assert_not_null(strstr(out, "write     f  size=2 range=[100,102)"),
	                   "%s", out);
	free(out);
	cr_assert_eq(query_int(db, "SELECT count(*) FROM ops WHERE op='write'"),
	             2);
}

Test(journal_mount, a_killed_daemon_leaves_a_sound_database)
{
	/* Many small files; the daemon dies in the middle. */
	pid_t w = fork();
	if (w == 0) {
		char cmd[PATH_MAX + 128];
		snprintf(cmd, sizeof(cmd),
		         "cd '%s' && i=0; while [ $i -lt 100000 ]; do "
		         "echo $i > f$((i %% 500)) || exit 0; i=$((i+1)); done",
		         m.mnt);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	usleep(2500 * 1000);
	cr_assert_eq(kill(m.pid, SIGKILL), 0);
	int st;
	waitpid(m.pid, &st, 0);
	m.pid = 0;
	waitpid(w, &st, 0);
	char *ok = query_text(db, "PRAGMA integrity_check");
	cr_assert_str_eq(ok, "ok");
	free(ok);
	long long n = query_int(db, "SELECT count(*) FROM ops");
	cr_assert_gt(n, 100, "only %lld records survived", n);
	/* What reached the database is whole: every write names its file
	 * and its size. */
	cr_assert_eq(query_int(db, "SELECT count(*) FROM ops WHERE op='write'"
	                           " AND (path NOT LIKE 'f%' OR size < 2)"),
	             0);
}

/* journal=off: no database at all. */
Test(journal, off_keeps_none)
{
	struct mount_fx mo;
	const char *extra[] = { "-o", "journal=off", NULL };
	char path[PATH_MAX + 32];
	struct stat st;

	mount_up(&mo, extra);
	cr_assert_eq(sh_in(mo.mnt, "echo x > a && mkdir b"), 0);
	snprintf(path, sizeof(path), "%s/.omnifs-journal", mo.data);
	cr_expect_neq(stat(path, &st), 0);
	mount_down(&mo);
}

/* Paths of descriptors are cached: a directory renamed through the
 * mount, or by a command, must not leave old names behind. */
Test(journal_mount, paths_follow_renamed_directories)
{
	cr_assert_eq(sh_in(m.mnt, "mkdir a && echo 1 > a/f && mv a b && "
	                          "echo 2 > b/f && chmod 600 b/f"),
	             0);
	cr_assert_eq(sh_in(m.mnt, "omni-exec mv b c >/dev/null"), 0);
	cr_assert_eq(sh_in(m.mnt, "echo 3 > c/f && chmod 640 c/f"), 0);
	char *out = log_until("", "chmod     c/f");
	cr_expect_not_null(strstr(out, "write     b/f  size=2"), "%s", out);
	cr_expect_not_null(strstr(out, "chmod     b/f mode=600"), "%s", out);
	cr_expect_not_null(strstr(out, "chmod     c/f mode=640"), "%s", out);
	cr_expect_not_null(strstr(out, "write     c/f  size=2"), "%s", out);
	free(out);
}
