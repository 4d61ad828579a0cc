/*
 * tests/journal/test_checkpoint.c - omni-exec --checkpoint, --checkpoints
 * and --rollback on real mounts of the local, docker and e2b backends
 * (backends/state/checkpoint.c, the control requests of fs/ctl.c).
 *
 * The same round trip on each: files made, a checkpoint, files changed,
 * removed and added, a rollback; then the mount and a command in the
 * sandbox both see the checkpoint's files, and nothing else. The docker
 * suite is named docker_checkpoint, so it runs with the docker suites
 * (under their flock); the e2b one needs the local E2B server. Forks:
 * a local project's checkpoints copied into a new local project and into
 * an e2b one.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "e2b_helpers.h"
#include "helpers.h"
#include "mount_helpers.h"

static struct mount_fx m;
static struct e2b_test_server srv;

static void down(void)
{
	mount_down(&m);
	e2b_test_server_stop(&srv);
}

/* The output of omni-exec ARGS run in the mount, newline cut. */
static char *omni_exec(int *status, const char *args)
{
	char *out = sh_out(status, m.mnt, "omni-exec %s 2>&1", args);
	size_t n = out ? strlen(out) : 0;

	if (n && out[n - 1] == '\n')
		out[n - 1] = '\0';
	return out;
}

static void expect_file(const char *rel, const char *want)
{
	char path[PATH_MAX + 64];
	omni_test_fmt(path, sizeof(path), "%s/%s", m.mnt, rel);
	char *got = omni_test_read_host(path, NULL);
	cr_assert_not_null(got, "%s is missing", rel);
	cr_expect_str_eq(got, want, "%s", rel);
	free(got);
}

static void expect_missing(const char *rel)
{
	char path[PATH_MAX + 64];
	struct stat st;
	omni_test_fmt(path, sizeof(path), "%s/%s", m.mnt, rel);
	cr_expect_neq(lstat(path, &st), 0, "%s is still there", rel);
}

static void round_trip(void)
{
	int st;

	cr_assert_eq(sh_in(m.mnt, "echo one > a && mkdir -p d/e && "
	                          "echo two > d/b && ln -s a link"),
	             0);
	char *id = omni_exec(&st, "--checkpoint first state");
	cr_assert_eq(st, 0, "%s", id);
	cr_assert_eq(strlen(id), 12, "'%s'", id);

	cr_assert_eq(sh_in(m.mnt, "echo changed > a && rm d/b && "
	                          "echo new > c && mkdir -p x/y && "
	                          "echo deep > x/y/z && rm link && "
	                          "ln -s c link"),
	             0);
	char *second = omni_exec(&st, "--checkpoint");
	cr_assert_eq(st, 0, "%s", second);
	/* What the mount shows now is cached by the kernel: the rollback
	 * must drop it. */
	expect_file("a", "changed\n");

	char *list = omni_exec(&st, "--checkpoints");
	cr_assert_eq(st, 0, "%s", list);
	cr_expect_not_null(strstr(list, id), "%s", list);
	cr_expect_not_null(strstr(list, "first state"), "%s", list);
	cr_expect_not_null(strstr(list, "since the one before:"), "%s", list);
	/* Newest first. */
	cr_expect_lt(strstr(list, second), strstr(list, id), "%s", list);
	free(list);

	char args[64];
	snprintf(args, sizeof(args), "--rollback %s", id);
	char *out = omni_exec(&st, args);
	cr_assert_eq(st, 0, "%s", out);
	cr_expect_not_null(strstr(out, "rolled back to"), "%s", out);
	free(out);

	expect_file("a", "one\n");
	expect_file("d/b", "two\n");
	expect_missing("c");
	expect_missing("x");
	char target[64] = "";
	char lpath[PATH_MAX + 64];
	omni_test_fmt(lpath, sizeof(lpath), "%s/link", m.mnt);
	cr_expect_gt(readlink(lpath, target, sizeof(target) - 1), 0);
	cr_expect_str_eq(target, "a");
	/* The sandbox sees the same. */
	out = omni_exec(&st, "-c 'cat a d/b; ls'");
	cr_assert_eq(st, 0, "%s", out);
	cr_expect_str_eq(out, "one\ntwo\na\nd\nlink", "%s", out);
	free(out);

	/* The state before the rollback is a checkpoint too: back again. */
	snprintf(args, sizeof(args), "--rollback %s", second);
	out = omni_exec(&st, args);
	cr_assert_eq(st, 0, "%s", out);
	free(out);
	expect_file("a", "changed\n");
	expect_file("x/y/z", "deep\n");
	expect_missing("d/b");

	out = omni_exec(&st, "--rollback 0123456789ab");
	cr_expect_eq(st, 125);
	cr_expect_not_null(strstr(out, "no checkpoint"), "%s", out);
	free(out);
	free(id);
	free(second);
}

/* --- local ---------------------------------------------------------------- */

static void local_up(void)
{
	mount_up(&m, NULL);
}

TestSuite(checkpoint, .init = local_up, .fini = down, .timeout = 120);

Test(checkpoint, local_round_trip)
{
	round_trip();
}

Test(checkpoint, rollback_waits_for_no_command)
{
	int st;

	cr_assert_eq(sh_in(m.mnt, "echo one > a"), 0);
	char *id = omni_exec(&st, "--checkpoint");
	cr_assert_eq(st, 0, "%s", id);
	cr_assert_eq(sh_in(m.mnt, "echo two > a"), 0);

	char cmd[PATH_MAX + 64];
	omni_test_fmt(cmd, sizeof(cmd), "omni-exec -C '%s' -n -- sleep 3",
	              m.mnt);
	pid_t pid = fork();
	if (pid == 0) {
		execlp("sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	usleep(800 * 1000);
	char args[64];
	snprintf(args, sizeof(args), "--rollback %s", id);
	char *out = omni_exec(&st, args);
	cr_expect_eq(st, 125);
	cr_expect_not_null(strstr(out, "running: rollback refused"), "%s", out);
	free(out);
	expect_file("a", "two\n");
	waitpid(pid, &st, 0);
	out = omni_exec(&st, args);
	cr_expect_eq(st, 0, "%s", out);
	free(out);
	expect_file("a", "one\n");
	free(id);
}

Test(checkpoint, the_journal_records_one_rollback)
{
	int st;

	cr_assert_eq(sh_in(m.mnt, "mkdir d && echo 1 > d/f"), 0);
	char *id = omni_exec(&st, "--checkpoint");
	cr_assert_eq(sh_in(m.mnt, "for i in 1 2 3 4 5; do echo $i > g$i; "
	                          "done"),
	             0);
	char args[64];
	snprintf(args, sizeof(args), "--rollback %s", id);
	free(omni_exec(&st, args));
	cr_assert_eq(st, 0);
	char *log = NULL;
	for (int i = 0; i < 40; i++) {
		free(log);
		log = sh_out(&st, m.tmp, "omnifs --data-path '%s' --log %s",
		             m.data, m.project);
		if (log && strstr(log, "rollback"))
			break;
		usleep(100 * 1000);
	}
	cr_assert_not_null(strstr(log, "rollback  "), "%s", log);
	/* The files the rollback removed are not journaled one by one. */
	cr_expect_null(strstr(log, "unlink    g1"), "%s", log);
	free(log);
	free(id);
}

/* --- docker --------------------------------------------------------------- */

static void docker_up(void)
{
	const char *extra[] = { "--backend", "docker",
		                "--image",   "omnifs-test/busybox:latest",
		                "--network", "none",
		                NULL };
	if (system("docker info >/dev/null 2>&1") != 0)
		cr_skip_test("no docker daemon");
	mount_up(&m, extra);
}

TestSuite(docker_checkpoint, .init = docker_up, .fini = down, .timeout = 180);

Test(docker_checkpoint, round_trip)
{
	round_trip();
}

/* --- e2b ------------------------------------------------------------------ */

static void e2b_up(void)
{
	const char *extra[] = { "--backend", "e2b", NULL };
	e2b_test_require();
	e2b_test_server_start(&srv, NULL);
	mount_up(&m, extra);
}

TestSuite(e2b_checkpoint, .init = e2b_up, .fini = down, .timeout = 180);

Test(e2b_checkpoint, round_trip)
{
	round_trip();
}

/* --- forks ---------------------------------------------------------------- */

static struct mount_fx src;

/* A local project with two checkpoints: the id of the first in first. */
static void make_source(char *first, size_t size)
{
	int st;

	mount_up(&src, NULL);
	cr_assert_eq(sh_in(src.mnt, "echo one > a && mkdir -p d && "
	                            "echo two > d/b"),
	             0);
	char *out = sh_out(&st, src.mnt, "omni-exec --checkpoint first");
	cr_assert_eq(st, 0, "%s", out);
	snprintf(first, size, "%.12s", out);
	free(out);
	cr_assert_eq(sh_in(src.mnt, "echo three > c && omni-exec --checkpoint "
	                            "second >/dev/null"),
	             0);
}

static void fork_down(void)
{
	mount_down(&m);
	mount_down(&src);
	e2b_test_server_stop(&srv);
}

static void no_setup(void)
{
}

TestSuite(fork, .init = no_setup, .fini = fork_down, .timeout = 120);

Test(fork, newest_checkpoint_onto_local)
{
	char first[16], from[128], data[PATH_MAX + 16];

	make_source(first, sizeof(first));
	snprintf(from, sizeof(from), "--from=%s", src.project);
	omni_test_fmt(data, sizeof(data), "--data-path=%s", src.data);
	const char *extra[] = { data, from, NULL };
	mount_up(&m, extra);
	expect_file("a", "one\n");
	expect_file("d/b", "two\n");
	expect_file("c", "three\n");
	/* The fork has a history of its own, starting at the fork. */
	int st;
	char *list = omni_exec(&st, "--checkpoints");
	cr_assert_eq(st, 0, "%s", list);
	cr_expect_not_null(strstr(list, "forked from"), "%s", list);
	free(list);
	/* The source is untouched by what the fork does. */
	cr_assert_eq(sh_in(m.mnt, "rm a"), 0);
	char path[PATH_MAX + 8];
	omni_test_fmt(path, sizeof(path), "%s/a", src.mnt);
	cr_expect_eq(access(path, F_OK), 0);
}

Test(fork, a_bad_source_is_refused)
{
	char data[PATH_MAX + 16];

	make_source(data, sizeof(data));
	omni_test_fmt(data, sizeof(data), "--data-path=%s", src.data);
	int st;
	char *out = sh_out(&st, src.tmp,
	                   "mkdir -p forkmnt && omnifs %s --from=nosuch "
	                   "forkmnt 2>&1",
	                   data);
	cr_expect_neq(st, 0);
	cr_expect_not_null(strstr(out, "nosuch"), "%s", out);
	free(out);
}

TestSuite(e2b_fork, .init = no_setup, .fini = fork_down, .timeout = 180);

Test(e2b_fork, a_checkpoint_of_local_onto_e2b)
{
	char first[16], from[128], data[PATH_MAX + 16];

	e2b_test_require();
	make_source(first, sizeof(first));
	e2b_test_server_start(&srv, NULL);
	snprintf(from, sizeof(from), "--from=%s@%s", src.project, first);
	omni_test_fmt(data, sizeof(data), "--data-path=%s", src.data);
	const char *extra[] = { "--backend", "e2b", data, from, NULL };
	mount_up(&m, extra);
	expect_file("a", "one\n");
	expect_file("d/b", "two\n");
	expect_missing("c");
	int st;
	char *out = omni_exec(&st, "-c 'cat a d/b; ls'");
	cr_assert_eq(st, 0, "%s", out);
	cr_expect_str_eq(out, "one\ntwo\na\nd", "%s", out);
	free(out);
}
