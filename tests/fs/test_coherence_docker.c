/*
 * tests/fs/test_coherence_docker.c - a docker mount with long timeouts and
 * the writeback cache stays exact when the container writes on its own.
 *
 * A process of the container that no omni-exec command waits for (docker
 * exec -d) writes the bind-mounted workspace: the mount's change watch
 * (fs/watch.c) must show each change within about a second, with no
 * command in between. Needs the Docker
 * daemon and the test images (scripts/make-test-images.sh); run under
 * flock /tmp/omnifs-docker-tests.lock like the other docker suites.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "../docker/docker_helpers.h"
#include "helpers.h"
#include "mount_helpers.h"

static struct mount_fx dm;
static bool mounted;

static void teardown(void)
{
	if (mounted)
		mount_down(&dm);
	mounted = false;
}

TestSuite(docker_coherence, .fini = teardown, .timeout = 120);

static void up(void)
{
	const char *extra[] = { "--backend", "docker", "--image", BUSYBOX,
		                "--network", "none",   NULL };

	dk_require_docker();
	mount_up(&dm, extra);
	mounted = true;
}

/* Wait up to ms for path to read as want (NULL: to be gone). */
static bool becomes(const char *path, const char *want, int ms)
{
	long long end = omni_test_now_ms() + ms;

	for (;;) {
		char *got = omni_test_host_exists(path)
		                ? omni_test_read_host(path, NULL)
		                : NULL;
		bool ok = want ? got && strcmp(got, want) == 0 : !got;
		free(got);
		if (ok || omni_test_now_ms() > end)
			return ok;
		usleep(20000);
	}
}

Test(docker_coherence, container_writes_after_the_command_show)
{
	char p[PATH_MAX], q[PATH_MAX];

	up();
	omni_test_fmt(p, sizeof(p), "%s/tick", dm.mnt);
	omni_test_fmt(q, sizeof(q), "%s/gone", dm.mnt);
	cr_assert_eq(sh_in(dm.mnt, "echo 0 > tick && echo here > gone && "
	                           "cat tick gone >/dev/null"),
	             0);
	/* A process of the container that no command started (docker
	 * exec): writes, appends, removes a file and makes one. */
	cr_assert_eq(sh_in(dm.mnt,
	                   "docker exec -d omniagents-%s sh -c 'cd /workspace "
	                   "&& sleep 1 && echo 1 > tick && sleep 0.5 && echo "
	                   "22 >> tick && rm gone && echo new > made'",
	                   dm.project),
	             0);
	cr_assert(becomes(p, "1\n", 3000));
	cr_assert(becomes(p, "1\n22\n", 2000));
	cr_assert(becomes(q, NULL, 2000));
	omni_test_fmt(q, sizeof(q), "%s/made", dm.mnt);
	cr_assert(becomes(q, "new\n", 2000));
	/* Written through the mount, read at once in the container. */
	cr_assert_eq(sh_in(dm.mnt, "printf via-mount > w && "
	                           "test \"$(omni-exec cat w)\" = via-mount"),
	             0);
	int status;
	char *out = sh_out(&status, dm.mnt, "omni-exec --stats");
	cr_assert(out && strstr(out, "watch exact\n"), "%s", out);
	free(out);
}
