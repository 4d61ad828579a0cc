/*
 * tests/journal/test_overlay.c - omnifs --overlay DIR, --diff and --apply
 * (fs/overlay.c, fs/overlay_diff.c) on a real local mount over a git
 * repository: edits, deletions, renames of files and directories and a
 * commit through the mount leave DIR untouched (a hash listing before
 * and after), --diff names them, --apply writes them (refused while
 * mounted, and when DIR changed a file meanwhile). Needs root (overlayfs).
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"

static struct mount_fx m;
static char dir[PATH_MAX];  /* the tree overlaid */
static char base[PATH_MAX]; /* its parent, removed at the end */

/* sha256 of every file of DIR, .git included, sorted. */
static char *listing(void)
{
	int st;
	char *out = sh_out(&st, dir,
	                   "find . -type f -o -type l | LC_ALL=C sort | "
	                   "while read -r f; do if [ -L \"$f\" ]; then "
	                   "echo \"$f -> $(readlink \"$f\")\"; else "
	                   "sha256sum \"$f\"; fi; done");
	cr_assert_eq(st, 0);
	return out;
}

static void setup(void)
{
	if (geteuid() != 0)
		cr_skip_test("overlayfs needs root");
	omni_test_mkdtemp(base, sizeof(base));
	omni_test_fmt(dir, sizeof(dir), "%s/repo", base);
	cr_assert_eq(sh_in(base,
	                   "mkdir repo && cd repo && git init -q && "
	                   "git config user.email t@t && "
	                   "git config user.name t && "
	                   "printf 'line1\\nline2\\n' > a.txt && "
	                   "echo gone > del.txt && mkdir -p src/sub && "
	                   "echo keep > src/sub/k && echo r > old-name && "
	                   "printf 'bin\\0ary\\0' > bin.dat && "
	                   "git add -A && git commit -qm init"),
	             0);
}

static void teardown(void)
{
	mount_down(&m);
	if (base[0])
		omni_test_rm_rf(base);
}

TestSuite(overlay, .init = setup, .fini = teardown, .timeout = 120);

static void up(void)
{
	char arg[PATH_MAX + 16];
	omni_test_fmt(arg, sizeof(arg), "--overlay=%s", dir);
	const char *extra[] = { arg, NULL };
	mount_up(&m, extra);
}

/* Unmount and wait for the daemon (it unmounts the overlay), keeping
 * the data folder for --diff and --apply. */
static void unmount_only(void)
{
	int st;
	cr_assert_eq(sh_in(m.tmp, "fusermount3 -u '%s'", m.mnt), 0);
	waitpid(m.pid, &st, 0);
	m.pid = 0;
}

static char *omnifs_cmd(int *st, const char *what)
{
	return sh_out(st, m.tmp, "omnifs --data-path '%s' %s %s 2>&1", m.data,
	              what, m.project);
}

Test(overlay, changes_stay_out_of_dir_until_applied)
{
	char *before = listing();
	up();
	cr_assert_eq(
	    sh_in(m.mnt, "printf 'line1\\nCHANGED\\n' > a.txt && rm del.txt && "
	                 "mv src src2 && mv old-name new-name && "
	                 "echo new > n.txt && printf 'b\\0\\0' > bin.dat && "
	                 "git add -A && git commit -qm change"),
	    0);
	char *during = listing();
	cr_expect_str_eq(during, before, "DIR was written");
	free(during);

	int st;
	char *out = omnifs_cmd(&st, "--apply");
	cr_expect_neq(st, 0);
	cr_expect_not_null(strstr(out, "mounted"), "%s", out);
	free(out);

	unmount_only();
	char *after = listing();
	cr_expect_str_eq(after, before, "DIR was written");
	free(after);

	out = omnifs_cmd(&st, "--diff");
	cr_assert_eq(st, 0, "%s", out);
	static const char *const want[] = {
		"modified: a.txt\n",
		"-line2\n+CHANGED\n",
		"deleted: del.txt\n",
		"-gone\n",
		"Binary files a/bin.dat and b/bin.dat differ",
		"deleted: src\n",
		"new directory: src2\n",
		"new: src2/sub/k\n",
		"deleted: old-name\n",
		"new: new-name\n",
		"new: n.txt\n",
		"+new\n",
		"modified: .git/refs/heads/",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
		cr_expect_not_null(strstr(out, want[i]), "no '%s' in:\n%s",
		                   want[i], out);
	free(out);

	out = omnifs_cmd(&st, "--apply");
	cr_assert_eq(st, 0, "%s", out);
	free(out);
	out =
	    sh_out(&st, dir,
	           "git status --porcelain && git log --format=%%s && "
	           "cat a.txt src2/sub/k new-name && git fsck --no-progress && "
	           "ls del.txt src old-name 2>&1 | wc -l");
	cr_assert_eq(st, 0, "%s", out);
	cr_expect_str_eq(out, "change\ninit\nline1\nCHANGED\nkeep\nr\n3\n");
	free(out);
	/* Nothing is left to apply. */
	out = omnifs_cmd(&st, "--diff");
	cr_expect_str_empty(out, "%s", out);
	free(out);
	free(before);
}

Test(overlay, a_file_dir_changed_meanwhile_is_refused)
{
	up();
	cr_assert_eq(sh_in(m.mnt, "echo mine > a.txt && echo x > other"), 0);
	unmount_only();
	/* Someone edits DIR by hand meanwhile. */
	cr_assert_eq(sh_in(dir, "sleep 0.01; echo theirs > a.txt"), 0);

	int st;
	char *out = omnifs_cmd(&st, "--apply");
	cr_expect_neq(st, 0);
	cr_expect_not_null(strstr(out, "conflict: a.txt"), "%s", out);
	cr_expect_not_null(strstr(out, "nothing applied"), "%s", out);
	free(out);
	out = sh_out(&st, dir, "cat a.txt; ls other 2>&1 | wc -l");
	cr_expect_str_eq(out, "theirs\n1\n", "%s", out);
	free(out);
}

Test(overlay, only_on_the_local_backend)
{
	char bin[PATH_MAX];
	int st;

	test_build_dir(bin, sizeof(bin));
	char *out = sh_out(&st, base,
	                   "mkdir -p mnt run && OMNI_RUNTIME_DIR=$PWD/run "
	                   "'%s/omnifs' --data-path=$PWD/data --backend docker "
	                   "--overlay '%s' mnt 2>&1",
	                   bin, dir);
	cr_expect_neq(st, 0);
	cr_expect_not_null(strstr(out, "local backend only"), "%s", out);
	free(out);
}
