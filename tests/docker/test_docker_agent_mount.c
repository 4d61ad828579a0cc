/*
 * tests/docker/test_docker_agent_mount.c - real omnifs mounts of the docker
 * backend in agent mode (suite docker_agent_mount): the workspace is the
 * container's volume and every file operation of the mount travels to
 * omni-agent through the daemon's exec stream (docker_remote.c behind the
 * remote cache).
 *
 * Most tests run against the second daemon of scripts/dockerd-remote-start.sh
 * (tcp:// with TLS, in a mount namespace of its own: it cannot see our
 * folders; dk_remote_env() points this process and the omnifs it starts at
 * it): file I/O through the mount, a multi-MiB file with checksums on both
 * sides, commands and the mount seeing each other's files, a change made by
 * a background process in the container arriving through the watch, a
 * daemon killed and started again (container and volume reused), --state
 * git round trips (unmount saves, the container and volume go, a new mount
 * restores), and checkpoint/rollback. One test runs the mode against the
 * local daemon, which works the same through any daemon.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "docker_helpers.h"
#include "file_io_model.h"
#include "helpers.h"
#include "mount_helpers.h"

static char volume[160];
static char gitdir[PATH_MAX];

static void am_fini(void)
{
	if (dk_mfx.tmp[0])
		omni_test_fmt(volume, sizeof(volume), "/volumes/omniagents-%s",
		              dk_mfx.project);
	dk_teardown();
	if (volume[0])
		dk_try("DELETE", volume, NULL, NULL);
	if (gitdir[0])
		omni_test_rm_rf(gitdir);
}

TestSuite(docker_agent_mount, .init = dk_setup, .fini = am_fini,
          .timeout = 180);

#define AGENT_ARGS                                                             \
	"--backend", "docker", "--docker-files=agent", "--image", BUSYBOX,     \
	    "--network", "none"

/* An agent-mode mount against the remote TLS daemon. */
static void remote_mount(void)
{
	const char *extra[] = { AGENT_ARGS, NULL };

	dk_remote_env();
	dk_require_docker();
	mount_up(&dk_mfx, extra);
}

static void container_name(char *out, size_t size)
{
	omni_test_fmt(out, size, "omniagents-%s", dk_mfx.project);
}

static bool volume_exists(void)
{
	char path[256];

	omni_test_fmt(path, sizeof(path), "/volumes/omniagents-%s",
	              dk_mfx.project);
	return dk_try("GET", path, NULL, NULL) == 200;
}

/* The container of the mount has the volume and no bind mount. */
static void check_no_bind_mounts(void)
{
	char name[160];
	const cJSON *mnt;
	int volumes = 0;

	container_name(name, sizeof(name));
	cJSON *c = dk_inspect(name);
	cr_assert(c, "no container %s", name);
	cJSON_ArrayForEach(mnt, cJSON_GetObjectItemCaseSensitive(c, "Mounts"))
	{
		const char *type = dk_str(mnt, "Type", NULL);
		cr_assert_str_neq(type, "bind", "a bind mount: %s",
		                  dk_str(mnt, "Source", NULL));
		volumes += strcmp(type, "volume") == 0;
	}
	cJSON_Delete(c);
	cr_assert_eq(volumes, 1);
}

/* The output of a shell command run in the mount (asserting status 0). */
static char *in_mount(const char *fmt, const char *arg)
{
	char cmd[4096];
	int st;

	omni_test_fmt(cmd, sizeof(cmd), fmt, arg ? arg : "");
	char *out = sh_out(&st, dk_mfx.mnt, "%s", cmd);
	cr_assert_eq(st, 0, "`%s` failed (%d): %s", cmd, st, out);
	return out;
}

static void expect_out(const char *cmd, const char *want)
{
	char *out = in_mount("%s", cmd);
	cr_expect_str_eq(out, want, "`%s`:\n got: '%s'\nwant: '%s'", cmd, out,
	                 want);
	free(out);
}

/* --- file I/O --------------------------------------------------------------
 */

static void check_file_io(void)
{
	/* Create, read, append, rename, unlink, mkdir, rmdir, symlink,
	 * chmod, truncate: each checked on the mount and in the container. */
	expect_out("echo hello > a && cat a", "hello\n");
	expect_out("echo more >> a && cat a", "hello\nmore\n");
	expect_out("mkdir -p d/e && mv a d/e/b && ls && ls d/e", "d\nb\n");
	expect_out("ln -s d/e/b link && readlink link && cat link",
	           "d/e/b\nhello\nmore\n");
	expect_out("chmod 750 d/e/b && stat -c %a d/e/b", "750\n");
	expect_out("truncate -s 3 d/e/b && cat d/e/b && echo", "hel\n");
	expect_out("echo x > gone && rm gone && mkdir emptyd && rmdir emptyd "
	           "&& ls",
	           "d\nlink\n");
	expect_out("omni-exec -n sh -c 'stat -c %a d/e/b; readlink link; "
	           "cat link; echo; ls'",
	           "750\nd/e/b\nhel\nd\nlink\n");
	expect_out("stat -c %F d && stat -c %s:%F d/e/b link",
	           "directory\n3:regular file\n5:symbolic link\n");

	/* A 6 MiB file with a checksum: through the mount, in the
	 * container, back through the mount after its copy is dropped (a
	 * command ends: the caches go). */
	char src[PATH_MAX + 8];
	omni_test_fmt(src, sizeof(src), "%s/big", dk_mfx.tmp);
	char *sum = sh_out(NULL, NULL,
	                   "head -c 6291456 /dev/urandom > '%s' && "
	                   "sha256sum < '%s' | cut -d' ' -f1",
	                   src, src);
	cr_assert_eq(strlen(sum), 65, "%s", sum);
	char *mnt_sum = sh_out(NULL, dk_mfx.mnt,
	                       "cp '%s' big && sha256sum < big | cut -d' ' "
	                       "-f1",
	                       src);
	cr_expect_str_eq(mnt_sum, sum);
	free(mnt_sum);
	char *in_ctr = in_mount("omni-exec -n sh -c 'sha256sum < big | cut "
	                        "-d\" \" -f1; stat -c %%s big'",
	                        NULL);
	char want[128];
	omni_test_fmt(want, sizeof(want), "%.64s\n6291456\n", sum);
	cr_expect_str_eq(in_ctr, want);
	free(in_ctr);
	mnt_sum = in_mount("sha256sum < big | cut -d' ' -f1", NULL);
	cr_expect_str_eq(mnt_sum, sum);
	free(mnt_sum);
	free(sum);
}

Test(docker_agent_mount, remote_file_io)
{
	remote_mount();
	check_no_bind_mounts();
	check_file_io();
}

/* --- commands and the mount ------------------------------------------------
 */

static void check_exec_and_mount(void)
{
	/* Written by a command, seen on the mount (already listed and read
	 * before: the command's end drops what the mount had). */
	expect_out("echo one > shared && ls && cat shared", "shared\none\n");
	expect_out("omni-exec -n sh -c 'echo from-container > c.txt; "
	           "echo two > shared; mkdir cdir; echo deep > cdir/f'",
	           "");
	expect_out("cat c.txt shared cdir/f && ls", "from-container\ntwo\n"
	                                            "deep\nc.txt\ncdir\n"
	                                            "shared\n");
	/* Written on the mount, seen by the command at once (nothing to
	 * wait for: close has sent it, or the command waits for it). */
	expect_out("echo from-mount > m.txt && mv c.txt moved.txt && "
	           "omni-exec -n sh -c 'cat m.txt moved.txt; ls'",
	           "from-mount\nfrom-container\ncdir\nm.txt\nmoved.txt\n"
	           "shared\n");
	/* Many small files, then --sync, then the command counts them. */
	expect_out(
	    "mkdir many && for i in $(seq 50); do echo $i > many/$i; "
	    "done && omni-exec --sync >/dev/null && omni-exec -n sh -c 'cat "
	    "many/* | wc -l'",
	    "50\n");
}

/* fsync and msync upload the file while it stays open and is written on:
 * the change events of those uploads come back late, with sizes the
 * upload had reached, and must never be taken for a change made in the
 * container (the size the mount reported then went back). */
Test(docker_agent_mount, remote_file_io_matches_a_model)
{
	remote_mount();
	file_io_model_run(dk_mfx.mnt, "agent mount", 20261204, 2000);
}

/* A file written a moment ago may not be in the container yet (its upload
 * follows the close): link and chown, which the container carries out,
 * send it up first instead of failing with ENOENT. */
Test(docker_agent_mount, remote_link_and_chown_of_a_file_just_written)
{
	remote_mount();
	expect_out("echo a > f && ln f g 2>&1 && cat g", "a\n");
	expect_out("echo c > h && chown 1234:2345 h 2>&1 && stat -c '%u %g' h",
	           "1234 2345\n");
	expect_out("omni-exec stat -c '%u %g %h %s' h f", "1234 2345 1 2\n"
	                                                  "0 0 2 2\n");
}

Test(docker_agent_mount, remote_commands_and_the_mount_see_each_other)
{
	remote_mount();
	check_exec_and_mount();
}

/* --- the watch -------------------------------------------------------------
 */

static long stat_value(const char *key)
{
	char *out = in_mount("omni-exec --stats", NULL);
	char *p = strstr(out, key);
	long v = p ? strtol(p + strlen(key), NULL, 10) : -1;
	free(out);
	return v;
}

/* Poll (10 s at most) until `cmd` in the mount prints want. */
static bool eventually(const char *cmd, const char *want)
{
	for (int i = 0; i < 100; i++) {
		int st;
		char *out = sh_out(&st, dk_mfx.mnt, "%s 2>/dev/null", cmd);
		bool ok = st == 0 && strcmp(out, want) == 0;
		free(out);
		if (ok)
			return true;
		usleep(100 * 1000);
	}
	return false;
}

Test(docker_agent_mount, remote_background_change_arrives_through_the_watch)
{
	remote_mount();
	expect_out("echo v1 > seen && mkdir sub && ls", "seen\nsub\n");
	cr_assert(
	    eventually("omni-exec --stats | grep -c '^cache.watch 1'", "1\n"),
	    "the watch did not start");
	long events = stat_value("\ncache.events ");
	/* A process in the container that no omni-exec started (omni-agent
	 * ends what a command leaves behind): `docker exec -d`, straight to
	 * the daemon; it changes files 2 s later, after the mount has read
	 * them again. (A change of the same size and mode within
	 * SELF_MARK_MS of our own write would pass for its echo: events.c
	 * says so; this one grows the file.) */
	cr_assert_eq(
	    sh_in(NULL,
	          "docker exec -d omniagents-%s sh -c 'cd "
	          "/workspace && sleep 2 && echo version2 > seen && echo "
	          "new > sub/new && mkdir sub/dd'",
	          dk_mfx.project),
	    0);
	expect_out("cat seen && ls sub && echo end", "v1\nend\n");
	cr_assert(eventually("cat seen", "version2\n"),
	          "the change did not arrive");
	cr_assert(eventually("ls sub && cat sub/new", "dd\nnew\nnew\n"),
	          "the new files did not arrive");
	cr_expect_gt(stat_value("\ncache.events "), events);
}

/* A change made in the container just after our upload, its modification
 * time set back (touch -d, cp -p, tar x do that): it is no echo of the
 * upload, whose change time it follows, and it shows without a command. */
Test(docker_agent_mount, remote_backdated_change_after_our_upload_shows)
{
	remote_mount();
	cr_assert(
	    eventually("omni-exec --stats | grep -c '^cache.watch 1'", "1\n"),
	    "the watch did not start");
	expect_out("echo mount > w && omni-exec --sync >/dev/null && cat w",
	           "mount\n");
	cr_assert_eq(sh_in(NULL,
	                   "docker exec omniagents-%s sh -c 'cd /workspace && "
	                   "echo sandbox >> w && touch -d 2000-01-01 w'",
	                   dk_mfx.project),
	             0);
	cr_assert(eventually("cat w", "mount\nsandbox\n"),
	          "the backdated change did not show");
	expect_out("stat -c %y w | cut -c1-4", "2000\n");
}

/* --- a killed daemon, started again ---------------------------------------
 */

Test(docker_agent_mount, remote_killed_daemon_remounts_onto_the_same_volume)
{
	const char *extra[] = { AGENT_ARGS, "--project", NULL, NULL };
	char name[160], id1[80], id2[80];

	remote_mount();
	extra[sizeof(extra) / sizeof(extra[0]) - 2] = dk_mfx.project;
	expect_out(
	    "mkdir -p src && echo kept > src/k && "
	    "head -c 1048576 /dev/zero > z && omni-exec --sync >/dev/null",
	    "");
	container_name(name, sizeof(name));
	dk_id(name, id1, sizeof(id1));
	/* kill -9: no shutdown, so the container and its volume stay. */
	kill(dk_mfx.pid, SIGKILL);
	waitpid(dk_mfx.pid, NULL, 0);
	dk_mfx.pid = 0;
	/* auto_unmount: fusermount3 unmounts when the daemon dies. */
	for (int i = 0; i < 100 && mount_is_mounted(dk_mfx.mnt); i++)
		usleep(50 * 1000);
	if (mount_is_mounted(dk_mfx.mnt))
		sh_in(NULL, "fusermount3 -u -z '%s'", dk_mfx.mnt);
	cr_assert(volume_exists());
	mount_again(&dk_mfx, extra);
	dk_id(name, id2, sizeof(id2));
	cr_assert_str_eq(id1, id2);
	expect_out("cat src/k && stat -c %s z", "kept\n1048576\n");
	expect_out("omni-exec -n cat src/k", "kept\n");
	/* A clean unmount: the session ends, container and volume go. */
	cr_assert_eq(sh_in(NULL, "fusermount3 -u '%s'", dk_mfx.mnt), 0);
	cr_assert(omni_test_pid_gone(dk_mfx.pid, 60000), "omnifs did not exit");
	dk_mfx.pid = 0;
	cr_expect_not(dk_exists(name));
	cr_expect_not(volume_exists());
}

/* --- the mode through the local daemon --------------------------------------
 */

Test(docker_agent_mount, local_daemon_agent_mode)
{
	const char *extra[] = { AGENT_ARGS, NULL };

	dk_require_docker();
	mount_up(&dk_mfx, extra);
	check_no_bind_mounts();
	/* Nothing of the data folder is the workspace. */
	struct stat st;
	cr_assert(stat(dk_mfx.host, &st) < 0 && errno == ENOENT);
	check_file_io();
	expect_out("rm -r big d link && ls -A", "");
	check_exec_and_mount();
	expect_out("omni-exec --stats | grep -c '^agent_file_requests'", "1\n");
}

/* --- state: --state git ----------------------------------------------------
 */

/* Files with every kind of content the state keeps. */
static void fill_workspace(void)
{
	expect_out("mkdir -p src/deep/er && printf 'hello\\n' > src/hello.txt "
	           "&& printf '#!/bin/sh\\necho run\\n' > run.sh && chmod "
	           "755 run.sh && ln -s src/hello.txt link && head -c 3145728 "
	           "/dev/urandom > src/deep/er/blob && : > empty && "
	           "omni-exec -n sh -c 'echo made-inside > inside.txt'",
	           "");
}

#define TREE_CMD                                                               \
	"find . -path ./.omnifs -prune -o -print | LC_ALL=C sort | while "     \
	"read f; do if [ -L \"$f\" ]; then echo \"$f -> $(readlink "           \
	"\"$f\")\"; elif [ -d \"$f\" ]; then echo \"$f/\"; else echo \"$f "    \
	"$(stat -c %a \"$f\") $(sha256sum < \"$f\" | cut -c1-16)\"; fi; "      \
	"done"

Test(docker_agent_mount, remote_state_git_round_trip)
{
	char remote[PATH_MAX], state[PATH_MAX + 8], project[64], name[160];

	dk_remote_env();
	dk_require_docker();
	omni_test_mkdtemp(gitdir, sizeof(gitdir));
	omni_test_fmt(remote, sizeof(remote), "%s/remote.git", gitdir);
	cr_assert_eq(sh_in(NULL, "git init -q --bare '%s'", remote), 0);
	omni_test_fmt(state, sizeof(state), "git:%s", remote);
	omni_test_project_id(project, sizeof(project), "gst");
	const char *extra[] = { AGENT_ARGS, "--project", project,
		                "--state",  state,       NULL };

	mount_up(&dk_mfx, extra);
	fill_workspace();
	char *before = in_mount("%s", TREE_CMD);
	cr_assert(strstr(before, "./src/deep/er/blob 644"), "%s", before);
	/* Unmount saves, then the container and the volume go. */
	cr_assert_eq(sh_in(NULL, "fusermount3 -u '%s'", dk_mfx.mnt), 0);
	cr_assert(omni_test_pid_gone(dk_mfx.pid, 90000), "omnifs did not exit");
	dk_mfx.pid = 0;
	char *log = omni_test_read_host(dk_mfx.log, NULL);
	cr_assert(log && strstr(log, "saved snapshot"), "%s", log ? log : "");
	free(log);
	omni_test_fmt(name, sizeof(name), "omniagents-%s", project);
	cr_expect_not(dk_exists(name));
	omni_test_fmt(volume, sizeof(volume), "/volumes/%s", name);
	cr_expect_neq(dk_try("GET", volume, NULL, NULL), 200);
	mount_down(&dk_mfx);

	/* A new mount (new data folder, same project) restores it all. */
	mount_up(&dk_mfx, extra);
	log = omni_test_read_host(dk_mfx.log, NULL);
	cr_assert(log && strstr(log, "loaded snapshot"), "%s", log ? log : "");
	free(log);
	char *after = in_mount("%s", TREE_CMD);
	cr_expect_str_eq(after, before);
	expect_out("./run.sh && omni-exec -n sh -c 'cat inside.txt; "
	           "./run.sh; readlink link'",
	           "run\nmade-inside\nrun\nsrc/hello.txt\n");
	free(before);
	free(after);
}

/* --- checkpoints -----------------------------------------------------------
 */

Test(docker_agent_mount, remote_checkpoint_and_rollback)
{
	remote_mount();
	fill_workspace();
	char *before = in_mount("%s", TREE_CMD);
	char *id = in_mount("omni-exec --checkpoint agent mode", NULL);
	id[strcspn(id, "\n")] = '\0';
	cr_assert_eq(strlen(id), 12, "'%s'", id);
	expect_out("echo changed > src/hello.txt && rm -r src/deep && rm "
	           "link && ln -s run.sh link && echo new > new.txt && "
	           "omni-exec -n sh -c 'echo in > made-in && chmod 600 run.sh'",
	           "");
	char *out = in_mount("omni-exec --rollback %s", id);
	cr_expect(strstr(out, "rolled back to"), "%s", out);
	free(out);
	char *after = in_mount("%s", TREE_CMD);
	cr_expect_str_eq(after, before);
	/* The container sees the same tree. */
	char *inside = in_mount("omni-exec -n sh -c '%s'", TREE_CMD);
	cr_expect_str_eq(inside, before);
	free(inside);
	free(after);
	free(before);
	free(id);
}

/* omni-exec finds its session from the kernel's path of its directory:
 * after a command has dropped every cache, a command run three
 * directories down asks the agent for nothing (realpath(3) walked the
 * mount: a listing for each level, a round trip each). */
Test(docker_agent_mount, remote_commands_in_a_subdirectory_cost_no_lookups)
{
	remote_mount();
	expect_out("mkdir -p a/b/c && echo x > a/b/c/f", "");
	long before = -1, after = -1;
	char *out = sh_out(NULL, NULL,
	                   "omni-exec --project %s --stats | grep "
	                   "'^agent_file_requests '",
	                   dk_mfx.project);
	before = strtol(out + strlen("agent_file_requests "), NULL, 10);
	free(out);
	expect_out("cd a/b/c && omni-exec -n true && omni-exec -n true && "
	           "omni-exec -n pwd",
	           "/workspace/a/b/c\n");
	out = sh_out(NULL, NULL,
	             "omni-exec --project %s --stats | grep "
	             "'^agent_file_requests '",
	             dk_mfx.project);
	after = strtol(out + strlen("agent_file_requests "), NULL, 10);
	free(out);
	cr_expect_leq(after - before, 1, "%ld file requests for 3 commands",
	              after - before);
}
