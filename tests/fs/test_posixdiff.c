/*
 * tests/fs/test_posixdiff.c - the mount is indistinguishable from a plain
 * directory: the differential conformance tests (tests/support/posixdiff.h)
 * on a local mount and on a docker mount, each as a private mount and as
 * root with -o allow_other (where a third of the operations run as one of
 * two other uids).
 *
 * The plain directory is next to the workspace on the host, on the same
 * file system, so both sides have the same limits and time granularity.
 * EXDEV is checked against a directory on /dev/shm when that is another
 * file system.
 *
 * Environment: POSIXDIFF_SEED (default: a fixed one; "random" for a fresh
 * one, printed on failure),
 * POSIXDIFF_CASE (replay that one case), POSIXDIFF_CASES (default 2000
 * per configuration), POSIXDIFF_STEPS (operations per case, default 12).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"
#include "posixdiff.h"

#define BUSYBOX "omnifs-test/busybox:latest"

static struct mount_fx m;
static char foreign[PATH_MAX];

static void teardown(void)
{
	mount_down(&m);
	if (foreign[0])
		omni_test_rm_rf(foreign);
	foreign[0] = '\0';
}

TestSuite(posixdiff, .fini = teardown, .timeout = 120);

static long env_long(const char *name, long def)
{
	const char *v = getenv(name);
	char *end;

	if (!v || !*v)
		return def;
	long n = strtol(v, &end, 0);
	cr_assert(*end == '\0', "%s=%s is not a number", name, v);
	return n;
}

static void require_docker(void)
{
	if (sh_in(NULL, "docker image inspect %s >/dev/null 2>&1", BUSYBOX) ==
	    0)
		return;
	if (getenv("CI") && strcmp(getenv("CI"), "true") == 0)
		cr_assert_fail("docker or the image %s is missing", BUSYBOX);
	cr_skip_test("docker or the image %s is missing", BUSYBOX);
}

/* A directory on /dev/shm, when that is not the plain directory's fs. */
static const char *foreign_dir(const char *plain)
{
	struct stat a, b;

	omni_test_fmt(foreign, sizeof(foreign), "/dev/shm/omnifs-pd-XXXXXX");
	if (!mkdtemp(foreign)) {
		foreign[0] = '\0';
		return NULL;
	}
	if (stat(foreign, &a) == 0 && stat(plain, &b) == 0 &&
	    a.st_dev != b.st_dev)
		return foreign;
	return NULL;
}

/* The run's seed: POSIXDIFF_SEED, "random" for a fresh one (printed on a
 * failure, to replay), else a fixed one, so that a test run, CI's among
 * them, is the same run every time. */
static uint64_t pick_seed(void)
{
	const char *v = getenv("POSIXDIFF_SEED");

	if (v && strcmp(v, "random") == 0)
		return (uint64_t)(time(NULL) ^ (long)getpid() << 16);
	return (uint64_t)env_long("POSIXDIFF_SEED", 20261203);
}

static void run(const char *name, bool docker, bool shared)
{
	const char *extra[10];
	int n = 0;
	char plain[PATH_MAX], onmount[PATH_MAX];

	if (docker) {
		require_docker();
		extra[n++] = "--backend";
		extra[n++] = "docker";
		extra[n++] = "--image";
		extra[n++] = BUSYBOX;
		extra[n++] = "--network";
		extra[n++] = "none";
	}
	if (shared) {
		if (geteuid() != 0)
			cr_skip_test("needs root (allow_other, other uids)");
		extra[n++] = "-o";
		extra[n++] = "allow_other";
	}
	extra[n] = NULL;
	mount_up(&m, extra);
	cr_assert(chmod(m.tmp, 0755) == 0 && chmod(m.mnt, 0755) == 0);
	omni_test_fmt(plain, sizeof(plain), "%s/plain", m.tmp);
	omni_test_fmt(onmount, sizeof(onmount), "%s/pd", m.mnt);
	cr_assert(mkdir(plain, 0755) == 0 && mkdir(onmount, 0755) == 0);

	long one = env_long("POSIXDIFF_CASE", -1);
	struct posixdiff_config cfg = {
		.mount_root = onmount,
		.plain_root = plain,
		.foreign = foreign_dir(plain),
		.seed = pick_seed(),
		.cases = one >= 0 ? 1 : (int)env_long("POSIXDIFF_CASES", 2000),
		.first_case = one >= 0 ? (int)one : 0,
		.steps = (int)env_long("POSIXDIFF_STEPS", 12),
		.other_uids = shared,
	};
	struct posixdiff_stats st;
	char *report = NULL;
	long long t0 = omni_test_now_ms();
	int failed = posixdiff_run(&cfg, &st, &report);
	double secs = (double)(omni_test_now_ms() - t0) / 1000.0;

	fprintf(stderr,
	        "posixdiff/%s: %d cases, %ld operations (%ld succeeded), "
	        "%ld comparisons, %ld excluded, %d differed, %.1f s (seed "
	        "%llu)\n",
	        name, st.cases, st.ops, st.succeeded, st.checks, st.skipped,
	        st.failed, secs, (unsigned long long)cfg.seed);
	if (failed) {
		fprintf(stderr, "%s", report);
		free(report);
		cr_assert_fail("posixdiff/%s: %d of %d cases differed (seed "
		               "%llu)",
		               name, failed, st.cases,
		               (unsigned long long)cfg.seed);
	}
}

Test(posixdiff, local_private)
{
	run("local_private", false, false);
}

Test(posixdiff, local_shared)
{
	run("local_shared", false, true);
}

Test(posixdiff, docker_private)
{
	run("docker_private", true, false);
}

Test(posixdiff, docker_shared)
{
	run("docker_shared", true, true);
}
