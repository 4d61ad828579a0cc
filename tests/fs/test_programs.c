/*
 * tests/fs/test_programs.c - real programs on the mount, on the host: an
 * autotools project (autoreconf, configure, make, make check), a C program
 * compiled on the mount and run from it, git (clone of a few hundred
 * files, commit, gc, fsck), a Python venv created on the mount and used,
 * and tar and cp -a round trips of a tree with symlinks, hard links,
 * modes, a FIFO and sparse files (compared with diff -r and with the
 * type, mode, nlink, size and owner of every entry).
 *
 * Suite programs runs on a local mount; programs_docker runs git and the
 * round trips on a docker mount (busybox, --network none), where the
 * workspace is the host side of the container's bind mount.
 *
 * Every step is one shell script; a failure shows its output. Tools that
 * are missing (autoreconf, python3's venv) skip their test, or fail it
 * under CI=true: scripts/install-deps.sh installs them.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"

#define BUSYBOX "omnifs-test/busybox:latest"

static struct mount_fx m;

static void setup_local(void)
{
	mount_up(&m, NULL);
}

static void teardown(void)
{
	mount_down(&m);
}

TestSuite(programs, .init = setup_local, .fini = teardown, .timeout = 180);

static bool in_ci(void)
{
	const char *ci = getenv("CI");
	return ci && strcmp(ci, "true") == 0;
}

/* Skip (fail under CI=true) unless the shell test `check` passes. */
static void require(const char *check, const char *what)
{
	if (sh_in(NULL, "{ %s; } >/dev/null 2>&1", check) == 0)
		return;
	if (in_ci())
		cr_assert_fail("%s is missing", what);
	cr_skip_test("%s is missing (scripts/install-deps.sh)", what);
}

/* Run script in dir (set -e, with $T the test's directory and $M the
 * mount point); assert that it succeeds, showing its output when it does
 * not. */
static void script(const char *dir, const char *what, const char *s)
{
	int status;
	char *out =
	    sh_out(&status, dir, "set -e; exec 2>&1; T='%s'; M='%s'\n%s", m.tmp,
	           m.mnt, s);

	cr_assert_eq(status, 0, "%s failed (%d) in %s:\n%s", what, status, dir,
	             out);
	free(out);
}

/* --- autotools ------------------------------------------------------------
 */

Test(programs, autotools_project_builds_and_checks)
{
	require("command -v autoreconf && command -v automake && command -v "
	        "make && command -v cc",
	        "autoconf, automake, make or cc");
	script(m.mnt, "writing the project",
	       "mkdir proj && cd proj\n"
	       "cat > configure.ac <<'EOF'\n"
	       "AC_INIT([hello], [1.0])\n"
	       "AM_INIT_AUTOMAKE([foreign -Wall -Werror])\n"
	       "AC_PROG_CC\n"
	       "AC_CONFIG_FILES([Makefile])\n"
	       "AC_OUTPUT\n"
	       "EOF\n"
	       "cat > Makefile.am <<'EOF'\n"
	       "bin_PROGRAMS = hello\n"
	       "hello_SOURCES = hello.c\n"
	       "check_PROGRAMS = unit\n"
	       "unit_SOURCES = unit.c\n"
	       "TESTS = unit run.sh\n"
	       "EXTRA_DIST = run.sh\n"
	       "EOF\n"
	       "printf '#include <stdio.h>\\nint main(void) { "
	       "puts(\"hello from the mount\"); return 0; }\\n' > hello.c\n"
	       "printf 'int main(void) { return 2 + 2 == 4 ? 0 : 1; }\\n' "
	       "> unit.c\n"
	       "printf '#!/bin/sh\\n./hello | grep -q \"from the mount\"\\n' "
	       "> run.sh\n"
	       "chmod +x run.sh\n");
	char proj[PATH_MAX];
	omni_test_fmt(proj, sizeof(proj), "%s/proj", m.mnt);
	script(proj, "autoreconf", "autoreconf -fi");
	script(proj, "configure", "./configure");
	script(proj, "make", "make");
	script(proj, "make check", "make check");
	script(proj, "the program",
	       "test \"$(./hello)\" = 'hello from the mount'");
	script(proj, "make distcheck-like clean",
	       "make distclean && test ! -e hello");
}

/* --- a binary and a script ------------------------------------------------
 */

Test(programs, compiled_program_runs_from_the_mount)
{
	require("command -v cc", "cc");
	script(m.mnt, "cc and run",
	       "printf '#include <stdio.h>\\n#include <unistd.h>\\n"
	       "int main(int c, char **v) { printf(\"%%s %%d\\\\n\", v[0], c); "
	       "return access(v[0], X_OK); }\\n' > prog.c\n"
	       "cc -O1 -o prog prog.c\n"
	       "test \"$(./prog a b)\" = './prog 3'\n"
	       "test \"$(\"$PWD/prog\")\" = \"$PWD/prog 1\"\n"
	       "mkdir -p bin && cp prog bin/p2 && test \"$(bin/p2)\" = 'bin/p2 "
	       "1'\n"
	       "printf '#!/bin/sh\\nexec ./prog from-script\\n' > s.sh\n"
	       "chmod 755 s.sh\n"
	       "test \"$(./s.sh)\" = './prog 2'\n");
}

/* --- git -------------------------------------------------------------------
 */

/* A repository of a few hundred files in <tmp>/src, outside the mount. */
static void make_source_repo(const char *tmp)
{
	script(tmp, "making the source repository",
	       "git init -q src && cd src\n"
	       "git config user.email t@example.com && git config user.name t\n"
	       "for d in 0 1 2 3 4 5 6 7 8 9; do mkdir -p dir$d/sub; "
	       "for f in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19; do "
	       "echo \"file $d $f\" > dir$d/f$f.txt; echo \"sub $d $f\" > "
	       "dir$d/sub/s$f.c; done; done\n"
	       "ln -s dir0/f0.txt link && printf '#!/bin/sh\\necho run\\n' > "
	       "tool.sh && chmod +x tool.sh\n"
	       "git add -A && git commit -qm initial\n"
	       "test $(git ls-files | wc -l) -ge 400\n");
}

static void git_round_trip(void)
{
	char clone[PATH_MAX];

	require("command -v git", "git");
	make_source_repo(m.tmp);
	omni_test_fmt(clone, sizeof(clone), "%s/clone", m.mnt);
	script(m.mnt, "git clone", "git clone -q \"$T/src\" clone");
	script(
	    clone, "git work",
	    "git config user.email t@example.com && git config user.name t\n"
	    "test \"$(git status --porcelain)\" = ''\n"
	    "test \"$(./tool.sh)\" = run && test \"$(cat link)\" = 'file 0 0'\n"
	    "for i in 1 2 3; do echo change $i >> dir1/f1.txt; "
	    "git mv dir2/f$i.txt dir3/moved$i.txt; git rm -q dir4/f$i.txt; "
	    "git add -A; git commit -qm \"change $i\"; done\n"
	    "git gc -q --aggressive\n"
	    "git fsck --strict --no-progress\n"
	    "test \"$(git status --porcelain)\" = ''\n"
	    "test $(git rev-list --count HEAD) = 4\n"
	    "test \"$(git show HEAD~3:dir2/f1.txt)\" = 'file 2 1'\n"
	    "git checkout -q HEAD~2 && git checkout -q - && git diff --quiet "
	    "HEAD\n");
	/* The mount's repository cloned back out, checked again. */
	script(m.tmp, "git clone from the mount",
	       "git clone -q \"$M/clone\" back\n"
	       "cd back && git fsck --strict --no-progress && test $(git "
	       "rev-list --count HEAD) = 4");
}

Test(programs, git_clone_commit_gc_fsck)
{
	git_round_trip();
}

/* --- python venv -----------------------------------------------------------
 */

Test(programs, python_venv_created_and_used)
{
	require("python3 -c 'import venv, ensurepip'", "python3's venv");
	script(m.mnt, "venv",
	       "python3 -m venv v\n"
	       "test -x v/bin/python\n"
	       "v/bin/python -c 'import sys; assert sys.prefix != "
	       "sys.base_prefix; print(sys.prefix)' | grep -q /v$\n"
	       "v/bin/python -m pip --version | grep -q '^pip '\n"
	       "printf 'def f():\\n    return 42\\n' > v/mod.py\n"
	       "cd v && bin/python -c 'import mod; assert mod.f() == 42'\n"
	       "bin/python -m py_compile mod.py && ls __pycache__/mod.*.pyc\n");
}

/* --- tar and cp -a ----------------------------------------------------------
 */

/* The shell functions of the round trips: list DIR (type and mode,
 * nlink, size, owner and symlink target of every entry, sorted) and same
 * A B (diff -r, FIFOs aside, and the lists equal). */
#define TREE_FUNCS                                                             \
	"list() { (cd \"$1\" && find . -printf '%P %M %n %s %u %g %l\\n' | "   \
	"sort); }\n"                                                           \
	"same() { diff -r --no-dereference -x fifo \"$1\" \"$2\" || return "   \
	"1; list \"$1\" > \"$T/la\"; "                                         \
	"list \"$2\" > \"$T/lb\"; diff \"$T/la\" \"$T/lb\"; }\n"

/* A tree in <tmp>/tree: modes, symlinks (relative, absolute, dangling,
 * to a directory), hard links, a FIFO, sparse files, an empty directory,
 * and files of another owner. */
static void make_tree(const char *tmp)
{
	script(
	    tmp, "making the tree",
	    "mkdir tree && cd tree\n"
	    "mkdir -p a/b/c empty && chmod 0750 a/b && chmod 0700 a/b/c\n"
	    "echo data > a/file && chmod 0640 a/file\n"
	    "printf '#!/bin/sh\\n' > a/exe && chmod 0755 a/exe\n"
	    "echo suid > a/suid && chmod 04755 a/suid\n"
	    "echo sgid > a/sgid && chmod 02750 a/sgid\n"
	    "mkdir shared && chmod 1777 shared && mkdir grp && chmod 2775 grp\n"
	    "echo theirs > other && chown 4321:4242 other\n"
	    "ln a/file hard1 && ln a/file a/b/hard2\n"
	    "ln -s a/file rel && ln -s /etc/hostname abs && ln -s missing "
	    "dangling && ln -s a/b dirlink\n"
	    "mkfifo fifo && chmod 0620 fifo\n"
	    "truncate -s 5M sparse && printf end >> sparse\n"
	    "dd if=/dev/zero of=holes bs=1 count=1 seek=3000000 2>/dev/null\n"
	    "head -c 300000 /dev/urandom > random\n"
	    "touch -d '2001-02-03 04:05:06' a/file dangling rel -h\n");
}

static void tar_and_cp(void)
{
	require("command -v tar && command -v diff && command -v find", "tar");
	make_tree(m.tmp);
	/* cp -a onto the mount, within it, and back out. */
	script(m.tmp, "cp -a round trip",
	       TREE_FUNCS "cp -a \"$T/tree\" \"$M/cpa\" && same \"$T/tree\" "
	                  "\"$M/cpa\"\n"
	                  "cp -a \"$M/cpa\" \"$M/cpa2\" && same \"$T/tree\" "
	                  "\"$M/cpa2\"\n"
	                  "cp -a \"$M/cpa2\" \"$T/back\" && same \"$T/tree\" "
	                  "\"$T/back\"\n"
	                  "test $(stat -c %h \"$M/cpa/a/file\") = 3 && test -p "
	                  "\"$M/cpa/fifo\"\n");
	/* tar: archive onto the mount, extract on it, archive from it. */
	script(m.tmp, "tar round trip",
	       TREE_FUNCS "tar -C \"$T/tree\" -cSpf \"$M/t.tar\" .\n"
	                  "mkdir \"$M/untar\" && tar -C \"$M/untar\" -xSpf "
	                  "\"$M/t.tar\"\n"
	                  "same \"$T/tree\" \"$M/untar\"\n"
	                  "tar -C \"$M/untar\" -cSpf \"$T/t2.tar\" .\n"
	                  "mkdir \"$T/out\" && tar -C \"$T/out\" -xSpf "
	                  "\"$T/t2.tar\"\n"
	                  "same \"$T/tree\" \"$T/out\"\n");
}

Test(programs, tar_and_cp_a_round_trips)
{
	tar_and_cp();
}

/* --- on a docker mount -----------------------------------------------------
 */

static void setup_docker(void)
{
	static const char *const extra[] = { "--backend", "docker",
		                             "--image",   BUSYBOX,
		                             "--network", "none",
		                             NULL };

	if (sh_in(NULL, "docker image inspect %s >/dev/null 2>&1", BUSYBOX) !=
	    0) {
		if (in_ci())
			cr_assert_fail("docker or %s is missing", BUSYBOX);
		return;
	}
	mount_up(&m, extra);
}

TestSuite(programs_docker, .init = setup_docker, .fini = teardown,
          .timeout = 180);

Test(programs_docker, git_clone_commit_gc_fsck)
{
	if (!m.tmp[0])
		cr_skip_test("docker or %s is missing", BUSYBOX);
	git_round_trip();
}

Test(programs_docker, tar_and_cp_a_round_trips)
{
	if (!m.tmp[0])
		cr_skip_test("docker or %s is missing", BUSYBOX);
	tar_and_cp();
}
