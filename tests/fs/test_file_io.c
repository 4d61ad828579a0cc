/*
 * tests/fs/test_file_io.c - one file's data through every kind of I/O
 * (tests/support/file_io_model.h), on a plain directory first, so the
 * model itself is checked against the kernel's own filesystem, then on a
 * local mount. The docker agent mode runs it too (test_docker_agent_mount.c).
 */
#define _GNU_SOURCE
#include <sys/stat.h>

#include <criterion/criterion.h>

#include "file_io_model.h"
#include "helpers.h"
#include "mount_helpers.h"

static struct mount_fx m;

static void setup(void)
{
	mount_up(&m, NULL);
}

static void teardown(void)
{
	mount_down(&m);
}

TestSuite(file_io, .init = setup, .fini = teardown, .timeout = 120);

Test(file_io, direct_and_buffered_io_copies_and_holes_match_a_model)
{
	char plain[PATH_MAX];

	/* Beside the data folder: the same filesystem as the backing file. */
	omni_test_fmt(plain, sizeof(plain), "%s/plain", m.tmp);
	cr_assert_eq(mkdir(plain, 0755), 0);
	file_io_model_run(plain, "plain directory", 20261203, 3000);
	file_io_model_run(m.mnt, "mount", 20261203, 3000);
}
