/*
 * tests/cache/test_cache_writeback.c - the cache's write-back mode
 * (opts.writeback, a spool folder) over the counting fake backend, no
 * mount: close costs no request and keeps a record on disk, flush_all
 * uploads and sets the modes kept meanwhile (a call per change here: the
 * fake backend runs no commands), and a cache that could not upload at
 * shutdown leaves the record for the next one, which uploads it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cache/cache.h"
#include "counting_backend.h"
#include "helpers.h"

static struct counting_backend *cb;
static struct omni_backend *c;
static char spool[PATH_MAX];
static char tmp[PATH_MAX];

/* A write-back cache over a new counting backend, on the spool. */
static void start_cache(void)
{
	struct omni__cache_options o = OMNI__CACHE_OPTIONS_INIT;

	o.writeback = true;
	o.shutdown_wait = 5;
	snprintf(o.spool, sizeof(o.spool), "%s", spool);
	cb = counting_backend_new(OMNI_CAP_FILE_FD);
	omni_assert_ok(omni__cache_wrap(&c, counting_backend_base(cb), &o));
	omni_assert_ok(omni_backend_start(c));
	omni__cache_recover(c);
}

static void setup(void)
{
	omni_test_mkdtemp(tmp, sizeof(tmp));
	omni_test_fmt(spool, sizeof(spool), "%s/spool/p", tmp);
	start_cache();
}

static void teardown(void)
{
	omni_backend_free(c);
	c = NULL;
	omni_test_rm_rf(tmp);
	omni_test_leak_check();
}

TestSuite(cache_writeback, .init = setup, .fini = teardown, .timeout = 60);

static int records(void)
{
	DIR *d = opendir(spool);
	struct dirent *de;
	int n = 0;

	cr_assert_not_null(d, "no spool folder %s", spool);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len > 8 && strcmp(de->d_name + len - 8, ".pending") == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* open(O_CREAT), write, close(2) through the cache. */
static void write_file(const char *path, const char *data, mode_t mode)
{
	struct omni_file *f = NULL;

	omni_assert_ok(
	    omni_vfs_open(c, path, O_WRONLY | O_CREAT | O_TRUNC, mode, &f));
	cr_assert_eq(omni_vfs_write(f, data, strlen(data), 0),
	             (ssize_t)strlen(data));
	omni_assert_ok(omni_vfs_flush(f));
	omni_assert_ok(omni_vfs_release(f));
}

Test(cache_writeback, close_keeps_a_record_and_flush_all_uploads)
{
	struct stat st;

	omni_assert_ok(omni_vfs_stat(c, "", &st));
	counting_reset(cb);
	write_file("a.txt", "alpha\n", 0644);
	omni_assert_ok(omni_vfs_chmod(c, "a.txt", 0751));
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 0,
	             "close waited for the upload: %s", counting_summary(cb));
	cr_assert_eq(counting_count(cb, COUNT_CHMOD), 0);
	cr_assert_eq(records(), 1);
	omni_assert_ok(omni_vfs_stat(c, "a.txt", &st));
	cr_assert_eq(st.st_mode & 07777, 0751);
	omni_assert_ok(omni__cache_flush_all(c));
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 1, "%s",
	             counting_summary(cb));
	cr_assert_eq(counting_count(cb, COUNT_CHMOD), 1);
	cr_assert_eq(counting_mode(cb, "a.txt") & 07777, 0751);
	char *theirs = counting_get(cb, "a.txt");
	cr_assert_str_eq(theirs, "alpha\n");
	free(theirs);
	cr_assert_eq(records(), 0);
	cr_assert_eq(omni__cache_pending(c), 0);
}

Test(cache_writeback, a_file_removed_before_its_upload_costs_nothing)
{
	struct stat st;

	/* The root's listing, so that the name is known to be new. */
	cr_assert_eq(omni_vfs_stat(c, "nope", &st), -ENOENT);
	counting_reset(cb);
	write_file("tmp.lock", "x", 0644);
	omni_assert_ok(omni_vfs_unlink(c, "tmp.lock"));
	omni_assert_ok(omni__cache_flush_all(c));
	cr_assert_eq(counting_total(cb), 0, "%s", counting_summary(cb));
	cr_assert_eq(records(), 0);
}

Test(cache_writeback, what_shutdown_cannot_upload_goes_up_next_time)
{
	struct stat st;

	omni_assert_ok(omni_vfs_stat(c, "", &st));
	counting_fail(cb, COUNT_UPLOAD, -EIO);
	write_file("keep.txt", "keep me\n", 0600);
	cr_assert_eq(omni_backend_shutdown(c), -EIO);
	cr_assert_eq(records(), 1);
	omni_backend_free(c);
	/* The next session, on a sandbox that answers. */
	start_cache();
	char *theirs = counting_get(cb, "keep.txt");
	cr_assert_str_eq(theirs, "keep me\n");
	free(theirs);
	cr_assert_eq(counting_mode(cb, "keep.txt") & 07777, 0600);
	cr_assert_eq(records(), 0);
}

/* A written file read again and again (a poll every 50 ms) still goes up
 * in the background: a read-only close does not put the upload off. */
Test(cache_writeback, reads_do_not_put_the_upload_off)
{
	char buf[16];

	write_file("polled", "v1\n", 0644);
	counting_reset(cb);
	for (int i = 0; i < 40 && counting_count(cb, COUNT_UPLOAD) == 0; i++) {
		struct omni_file *f = NULL;
		omni_assert_ok(omni_vfs_open(c, "polled", O_RDONLY, 0, &f));
		cr_assert_eq(omni_vfs_read(f, buf, sizeof(buf), 0), 3);
		omni_assert_ok(omni_vfs_release(f));
		usleep(50 * 1000);
	}
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 1,
	             "not uploaded within 2 s of reads: %s",
	             counting_summary(cb));
	char *got = counting_get(cb, "polled");
	cr_assert_str_eq(got, "v1\n");
	free(got);
}
