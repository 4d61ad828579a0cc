/*
 * tests/fs/test_mountpoint.c - where omnifs mounts, and what it leaves
 * behind (issue 11 attack 7, issue 14 "crashes clean up" and --list).
 *
 *	mountpoint    a file or a missing path is refused; so is a live
 *	              mount of any kind (no stacking); a killed daemon
 *	              leaves no dead mount (auto_unmount); a dead mount of
 *	              ours is cleared and one of another kind is named, with
 *	              the command that clears it
 *	session_list  omnifs --list and --list --json show each running
 *	              session with its fields; a killed daemon's entry goes
 *
 * The dead mounts that are not omnifs's are made by hand: /dev/fuse
 * opened, mount(2) with its descriptor, the descriptor closed; the kernel
 * then answers ENOTCONN, as after a crash. That needs root; those tests
 * skip otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"

/* A private directory with run/ (OMNI_RUNTIME_DIR) and PATH set so that
 * "omnifs" and "omni-exec" are the build's. */
struct place {
	char tmp[PATH_MAX], run[PATH_MAX], bin[PATH_MAX];
};

static void place_up(struct place *p)
{
	char path_env[PATH_MAX * 2];

	omni_test_mkdtemp(p->tmp, sizeof(p->tmp));
	omni_test_fmt(p->run, sizeof(p->run), "%s/run", p->tmp);
	cr_assert_eq(mkdir(p->run, 0700), 0);
	setenv("OMNI_RUNTIME_DIR", p->run, 1);
	test_build_dir(p->bin, sizeof(p->bin));
	omni_test_fmt(path_env, sizeof(path_env), "%s:%s", p->bin,
	              getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", path_env, 1);
}

/* How many mounts are on exactly path. */
static int mounts_on(const char *path)
{
	int st;
	char *out = sh_out(&st, NULL,
	                   "awk -v p='%s' '$5 == p' /proc/self/mountinfo | "
	                   "wc -l",
	                   path);
	int n = (int)strtol(out, NULL, 10);

	free(out);
	return n;
}

/* Wait up to ms for path to be a plain directory again. */
static bool plain_dir_within(const char *path, int ms)
{
	struct stat st;

	for (int i = 0; i < ms / 10; i++) {
		if (!mount_is_mounted(path) && stat(path, &st) == 0 &&
		    S_ISDIR(st.st_mode))
			return true;
		usleep(10000);
	}
	return false;
}

/* Does the FUSE mount at path answer ENOTCONN (its daemon gone) within
 * ms? statfs always asks the daemon; stat may be answered from the
 * attributes the kernel keeps. The kernel ends the connection when the
 * last descriptor of /dev/fuse closes, a moment after the kill. */
static bool dead_within(const char *path, int ms)
{
	struct statfs sf;

	for (int i = 0; i < ms / 10; i++) {
		if (statfs(path, &sf) < 0 && errno == ENOTCONN)
			return true;
		usleep(10000);
	}
	return false;
}

/* --- mountpoint ----------------------------------------------------------- */

TestSuite(mountpoint, .timeout = 60);

Test(mountpoint, a_file_or_a_missing_path_is_refused)
{
	struct place p;
	char *out;
	int st;

	place_up(&p);
	out = sh_out(&st, p.tmp,
	             "touch afile && omnifs --data-path data afile 2>&1");
	cr_assert_neq(st, 0);
	cr_assert_not_null(strstr(out, "afile: not a directory"), "%s", out);
	free(out);
	out = sh_out(&st, p.tmp, "omnifs --data-path data nowhere 2>&1");
	cr_assert_neq(st, 0);
	cr_assert_not_null(strstr(out, "nowhere: no such directory"), "%s",
	                   out);
	free(out);
	/* Nothing was mounted, nothing was started. */
	cr_assert_eq(sh_in(p.tmp, "test ! -e data/afile && ls run | wc -l | "
	                          "grep -qx 0"),
	             0);
	omni_test_rm_rf(p.tmp);
}

Test(mountpoint, a_live_mount_is_not_stacked_on)
{
	struct mount_fx m;
	char *out;
	int st;

	mount_up(&m, NULL);
	/* Another project on the same mount point. */
	out =
	    sh_out(&st, m.tmp,
	           "omnifs --project other --data-path data '%s' 2>&1", m.mnt);
	cr_assert_neq(st, 0);
	cr_assert_not_null(strstr(out, "already a mount point"), "%s", out);
	cr_assert_not_null(strstr(out, m.project), "%s", out);
	cr_assert_not_null(strstr(out, "fusermount3 -u"), "%s", out);
	free(out);
	/* As mount.fuse3 would start it. */
	out = sh_out(&st, m.tmp, "omnifs other '%s' 2>&1", m.mnt);
	cr_assert_neq(st, 0);
	cr_assert_not_null(strstr(out, "already a mount point"), "%s", out);
	free(out);
	cr_assert_eq(mounts_on(m.mnt), 1);
	cr_assert_eq(sh_in(m.mnt, "echo still > here && omni-exec cat here "
	                          "| grep -qx still"),
	             0);
	mount_down(&m);
}

Test(mountpoint, any_mount_is_refused)
{
	struct place p;
	char dir[PATH_MAX];
	char *out;
	int st;

	place_up(&p);
	omni_test_fmt(dir, sizeof(dir), "%s/tmpfs", p.tmp);
	cr_assert_eq(mkdir(dir, 0755), 0);
	if (mount("omni-test", dir, "tmpfs", 0, "size=1m") < 0) {
		omni_test_rm_rf(p.tmp);
		cr_skip_test("cannot mount a tmpfs: %s", strerror(errno));
	}
	out = sh_out(&st, p.tmp, "omnifs --data-path data tmpfs 2>&1");
	umount2(dir, MNT_DETACH);
	cr_assert_neq(st, 0);
	cr_assert_not_null(strstr(out, "already a mount point (omni-test, "
	                               "type tmpfs); unmount it first: "
	                               "umount"),
	                   "%s", out);
	free(out);
	omni_test_rm_rf(p.tmp);
}

Test(mountpoint, a_killed_daemon_leaves_a_plain_directory)
{
	struct mount_fx m;

	mount_up(&m, NULL);
	cr_assert_eq(kill(m.pid, SIGKILL), 0);
	cr_assert(omni_test_pid_gone(m.pid, 5000));
	m.pid = 0;
	/* fusermount3 (auto_unmount) takes the mount away. */
	cr_assert(plain_dir_within(m.mnt, 5000), "%s is still a mount point",
	          m.mnt);
	mount_down(&m);
}

Test(mountpoint, a_dead_mount_of_ours_is_cleared)
{
	const char *extra[] = { "-o", "no_auto_unmount", NULL };
	struct mount_fx m;
	char *out;
	int rc;

	mount_up(&m, extra);
	cr_assert_eq(kill(m.pid, SIGKILL), 0);
	cr_assert(omni_test_pid_gone(m.pid, 5000));
	m.pid = 0;
	cr_assert(dead_within(m.mnt, 5000), "no dead mount to test with");
	/* Output to a file: the daemon would keep a pipe of sh_out() open
	 * (it inherits the test's descriptors). */
	rc = sh_in(m.tmp, "omnifs --data-path data '%s' >out 2>&1", m.mnt);
	out = sh_out(NULL, m.tmp, "cat out");
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_not_null(strstr(out, "clearing the dead omnifs mount"), "%s",
	                   out);
	free(out);
	cr_assert_eq(mounts_on(m.mnt), 1);
	cr_assert_eq(sh_in(m.mnt, "omni-exec true"), 0);
	cr_assert_eq(sh_in(NULL, "fusermount3 -u '%s'", m.mnt), 0);
	mount_down(&m);
}

/* A dead FUSE mount of type fstype owned by uid, made by hand on dir;
 * false when this process may not mount. */
static bool dead_fuse_mount(const char *dir, const char *fstype, unsigned uid)
{
	char opts[128];
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return false;
	snprintf(opts, sizeof(opts),
	         "fd=%d,rootmode=40000,user_id=%u,group_id=0", fd, uid);
	int rc = mount("handmade", dir, fstype, MS_NOSUID | MS_NODEV, opts);
	close(fd);
	return rc == 0;
}

Test(mountpoint, other_dead_mounts_are_named_with_the_fix)
{
	struct place p;
	char dir[PATH_MAX];
	char *out;
	int st;

	place_up(&p);
	omni_test_fmt(dir, sizeof(dir), "%s/dead", p.tmp);
	cr_assert_eq(mkdir(dir, 0755), 0);
	if (!dead_fuse_mount(dir, "fuse.other", (unsigned)getuid())) {
		omni_test_rm_rf(p.tmp);
		cr_skip_test("cannot mount FUSE by hand (needs root)");
	}
	out = sh_out(&st, p.tmp, "omnifs --data-path data dead 2>&1");
	cr_assert_neq(st, 0);
	cr_assert_not_null(strstr(out, "dead: a dead FUSE mount (handmade)"),
	                   "%s", out);
	cr_assert_not_null(strstr(out, "fusermount3 -u"), "%s", out);
	cr_assert_eq(mounts_on(dir), 1, "it was not ours to clear");
	umount2(dir, MNT_DETACH);
	/* An omnifs mount of another user is not ours either. */
	if (dead_fuse_mount(dir, "fuse.omnifs", (unsigned)getuid() + 4242)) {
		free(out);
		out = sh_out(&st, p.tmp, "omnifs --data-path data dead 2>&1");
		umount2(dir, MNT_DETACH);
		cr_assert_neq(st, 0);
		cr_assert_not_null(strstr(out, "already a mount point"), "%s",
		                   out);
	}
	free(out);
	omni_test_rm_rf(p.tmp);
}

/* --- session_list --------------------------------------------------------- */

TestSuite(session_list, .timeout = 90);

/* The --list --json array, parsed (asserts). */
static cJSON *list_json(const char *dir)
{
	int st;
	char *out = sh_out(&st, dir, "omnifs --list --json");

	cr_assert_eq(st, 0, "%s", out);
	cJSON *a = cJSON_Parse(out);
	cr_assert(cJSON_IsArray(a), "not a JSON array: %s", out);
	free(out);
	return a;
}

static const cJSON *entry(const cJSON *a, const char *project)
{
	const cJSON *o;

	cJSON_ArrayForEach(o, a)
	{
		const char *p =
		    cJSON_GetStringValue(cJSON_GetObjectItem(o, "project"));
		if (p && strcmp(p, project) == 0)
			return o;
	}
	return NULL;
}

static const char *field(const cJSON *o, const char *name)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, name));

	cr_assert_not_null(s, "no string %s", name);
	return s;
}

Test(session_list, two_sessions_listed_and_a_killed_one_goes)
{
	struct place p;
	char m1[PATH_MAX], m2[PATH_MAX], remote[PATH_MAX];
	char *out;
	int st;

	place_up(&p);
	omni_test_fmt(m1, sizeof(m1), "%s/one", p.tmp);
	omni_test_fmt(m2, sizeof(m2), "%s/two", p.tmp);
	omni_test_fmt(remote, sizeof(remote), "%s/remote.git", p.tmp);
	cr_assert_eq(sh_in(p.tmp, "mkdir one two && git init -q --bare "
	                          "remote.git"),
	             0);
	/* An empty list first. */
	cJSON *a = list_json(p.tmp);
	cr_assert_eq(cJSON_GetArraySize(a), 0);
	cJSON_Delete(a);
	cr_assert_eq(sh_in(p.tmp,
	                   "omnifs -q --data-path data --state git:%s "
	                   "proj-one one && omnifs --data-path data proj-two "
	                   "two",
	                   remote),
	             0);
	cr_assert_eq(sh_in(m1, "echo x > f && omni-exec --save first "
	                       ">/dev/null"),
	             0);

	a = list_json(p.tmp);
	cr_assert_eq(cJSON_GetArraySize(a), 2);
	const cJSON *one = entry(a, "proj-one"), *two = entry(a, "proj-two");
	cr_assert(one && two);
	cr_assert_str_eq(field(one, "backend"), "local");
	cr_assert_str_eq(field(one, "mountpoint"), m1);
	cr_assert_str_eq(field(one, "state"), "git");
	cr_assert_str_eq(field(two, "state"), "none");
	cr_assert_str_eq(field(two, "mountpoint"), m2);
	cr_assert(cJSON_IsNumber(cJSON_GetObjectItem(one, "last_save")));
	cr_assert_gt(strlen(field(one, "last_save_id")), 0);
	cr_assert(cJSON_IsNull(cJSON_GetObjectItem(two, "last_save")));
	cr_assert_geq(cJSON_GetNumberValue(cJSON_GetObjectItem(one, "uptime")),
	              0);
	pid_t pid1 =
	    (pid_t)cJSON_GetNumberValue(cJSON_GetObjectItem(one, "pid"));
	pid_t pid2 =
	    (pid_t)cJSON_GetNumberValue(cJSON_GetObjectItem(two, "pid"));
	cr_assert(pid1 > 0 && pid2 > 0 && pid1 != pid2);
	cr_assert_eq(kill(pid1, 0), 0);
	cJSON_Delete(a);

	/* The table, like docker ps. */
	out = sh_out(&st, p.tmp, "omnifs --list");
	cr_assert_eq(st, 0);
	cr_assert_not_null(strstr(out, "PROJECT"), "%s", out);
	cr_assert_not_null(strstr(out, "LAST SAVE"), "%s", out);
	cr_assert_not_null(strstr(out, "proj-one"), "%s", out);
	cr_assert_not_null(strstr(out, " ago"), "%s", out);
	cr_assert_not_null(strstr(out, "never"), "%s", out);
	cr_assert_not_null(strstr(out, m2), "%s", out);
	free(out);

	/* A killed daemon: its entry goes, and so does its file. */
	cr_assert_eq(kill(pid2, SIGKILL), 0);
	cr_assert(omni_test_pid_gone(pid2, 5000));
	/* Its socket stops answering once the process has exited for good
	 * (a zombie counts as gone above). */
	a = list_json(p.tmp);
	for (int i = 0; i < 100 && cJSON_GetArraySize(a) != 1; i++) {
		cJSON_Delete(a);
		usleep(50000);
		a = list_json(p.tmp);
	}
	cr_assert_eq(cJSON_GetArraySize(a), 1);
	cr_assert_not_null(entry(a, "proj-one"));
	cJSON_Delete(a);
	cr_assert_eq(sh_in(p.tmp, "test ! -e run/proj-two.session"), 0);
	cr_assert(plain_dir_within(m2, 5000));

	/* An unmounted one: its daemon removes the file as it exits. */
	cr_assert_eq(sh_in(NULL, "fusermount3 -u '%s'", m1), 0);
	cr_assert(omni_test_pid_gone(pid1, 30000));
	cr_assert_eq(sh_in(p.tmp, "test ! -e run/proj-one.session"), 0);
	a = list_json(p.tmp);
	cr_assert_eq(cJSON_GetArraySize(a), 0);
	cJSON_Delete(a);
	omni_test_rm_rf(p.tmp);
}
