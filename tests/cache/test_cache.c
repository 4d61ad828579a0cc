/*
 * tests/cache/test_cache.c - the cache decorator (backends/cache/) driven
 * directly, without a mount, in front of the counting backend
 * (counting_backend.h), which counts the requests that reach it.
 *
 * cache_attr     a listing fills the attributes of its entries (ls -l of
 *                N entries is one ListDir and no Stat), missing names are
 *                remembered, the TTL bounds it all
 * cache_content  a second read is served from the copy, a write goes up
 *                once at close, `cmd > file` and lock files cost nothing
 *                extra, a failed upload keeps the dirty copy
 * cache_names    rename, unlink, mkdir, rmdir, symlink, chmod, chown,
 *                utimens and truncate update the cache without refetching
 * cache_coherence invalidate and change events drop exactly what they
 *                name, our own changes' echoes are ignored, a lost watch
 *                drops everything, prefetching of a directory read through
 *
 * These are the budgets that tests/e2b/test_e2b_mount.c asserts through a
 * mount and the E2B test server, checked here on the cache alone.
 */
#define _GNU_SOURCE
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

/* A cache (TTL ttl seconds) over a counting backend with caps, started. */
static void up_caps(unsigned int caps, double ttl)
{
	struct omni__cache_options o = OMNI__CACHE_OPTIONS_INIT;

	o.ttl = ttl;
	cb = counting_backend_new(caps);
	omni_assert_ok(omni__cache_wrap(&c, counting_backend_base(cb), &o));
	omni_assert_ok(omni_backend_start(c));
}

static void up(void)
{
	up_caps(OMNI_CAP_FILE_FD, 5.0);
}

static void down(void)
{
	omni_backend_free(c);
	c = NULL;
	cb = NULL;
	omni_test_leak_check();
}

#define EXPECT_REQUESTS(want, what)                                            \
	do {                                                                   \
		long got_ = counting_total(cb);                                \
		cr_assert_eq(got_, (long)(want),                               \
		             "%s: %ld requests, budget "                       \
		             "%ld: %s",                                        \
		             (what), got_, (long)(want),                       \
		             counting_summary(cb));                            \
	} while (0)

/* --- helpers -------------------------------------------------------------- */

struct names {
	int n;
	char seen[64][64];
	bool all_have_mode;
};

static int collect(const char *name, const struct stat *st, void *payload)
{
	struct names *l = payload;

	if (l->n < 64)
		snprintf(l->seen[l->n], sizeof(l->seen[0]), "%s", name);
	l->n++;
	if (!st->st_mode || !st->st_ino)
		l->all_have_mode = false;
	return 0;
}

static struct names list(const char *dir)
{
	struct names l = { .all_have_mode = true };

	omni_assert_ok(omni_vfs_readdir(c, dir, collect, &l));
	return l;
}

static bool listed(const struct names *l, const char *name)
{
	for (int i = 0; i < l->n && i < 64; i++)
		if (strcmp(l->seen[i], name) == 0)
			return true;
	return false;
}

/* The whole content of path through the cache (malloc'd). */
static char *read_all(const char *path)
{
	struct omni_file *f = NULL;
	char *buf = calloc(1, 65536);
	ssize_t n;

	cr_assert_not_null(buf);
	omni_assert_ok(omni_vfs_open(c, path, O_RDONLY, 0, &f));
	omni_assert_ok(n = omni_vfs_read(f, buf, 65535, 0));
	omni_assert_ok(omni_vfs_release(f));
	return buf;
}

/* Create (or truncate) path through the cache and write data. */
static struct omni_file *create(const char *path, const char *data)
{
	struct omni_file *f = NULL;

	omni_assert_ok(
	    omni_vfs_open(c, path, O_WRONLY | O_CREAT | O_TRUNC, 0644, &f));
	if (data && *data)
		cr_assert_eq(omni_vfs_write(f, data, strlen(data), 0),
		             (ssize_t)strlen(data));
	return f;
}

/* close(2): flush, then release; returns the first error. */
static int close_file(struct omni_file *f)
{
	int rc = omni_vfs_flush(f);
	int rrc = omni_vfs_release(f);

	return rc < 0 ? rc : rrc;
}

static void put_files(const char *dir, int n)
{
	char path[256], data[32];

	counting_put_dir(cb, dir);
	for (int i = 1; i <= n; i++) {
		snprintf(path, sizeof(path), "%s/f%d", dir, i);
		snprintf(data, sizeof(data), "%d\n", i);
		counting_put(cb, path, data, 0644);
	}
}

/* A counter of omni_vfs_stats() ("cache.dirty"...). */
static long stat_value(const char *name)
{
	char key[128];
	char *s = omni_vfs_stats(c);

	cr_assert_not_null(s);
	snprintf(key, sizeof(key), "%s ", name);
	char *p = strstr(s, key);
	cr_assert_not_null(p, "no %s in %s", name, s);
	long v = strtol(p + strlen(key), NULL, 10);
	free(s);
	return v;
}

static void expect_size(const char *path, off_t size)
{
	struct stat st;

	omni_assert_ok(omni_vfs_stat(c, path, &st));
	cr_assert_eq(st.st_size, size, "%s: size %lld, expected %lld", path,
	             (long long)st.st_size, (long long)size);
}

/* Wait up to 5 s for cond. */
#define EVENTUALLY(cond, what)                                                 \
	do {                                                                   \
		int i_;                                                        \
		for (i_ = 0; i_ < 500 && !(cond); i_++)                        \
			usleep(10 * 1000);                                     \
		cr_assert(cond, "%s did not happen within 5 s", (what));       \
	} while (0)

/* --- attributes and listings ---------------------------------------------- */

TestSuite(cache_attr, .fini = down, .timeout = 60);

static void ls_l(int n)
{
	char path[64];
	struct stat st;

	up();
	put_files("d", n);
	struct names l = list("d");
	cr_assert_eq(l.n, n);
	cr_assert(l.all_have_mode, "every entry comes with its attributes");
	cr_assert_eq(counting_count(cb, COUNT_READDIR), 1);
	EXPECT_REQUESTS(1, "ls -l of a directory");
	for (int i = 1; i <= n; i++) {
		snprintf(path, sizeof(path), "d/f%d", i);
		omni_assert_ok(omni_vfs_stat(c, path, &st));
		cr_assert(S_ISREG(st.st_mode));
	}
	EXPECT_REQUESTS(1, "stat of every listed entry");
}

Test(cache_attr, ls_l_50_entries_is_one_listdir)
{
	ls_l(50);
}

Test(cache_attr, ls_l_2000_entries_is_one_listdir)
{
	/* More entries than the table's first buckets: it grows. */
	ls_l(2000);
}

Test(cache_attr, stat_lists_the_parent_once)
{
	struct stat st;

	up();
	put_files("d", 5);
	omni_assert_ok(omni_vfs_stat(c, "d/f1", &st));
	cr_assert_eq(st.st_size, 2);
	cr_assert_eq(counting_count(cb, COUNT_READDIR), 1);
	cr_assert_eq(counting_count(cb, COUNT_STAT), 0);
	omni_assert_ok(omni_vfs_stat(c, "d/f2", &st));
	omni_assert_ok(omni_vfs_stat(c, "d/f5", &st));
	EXPECT_REQUESTS(1, "stat of names in one directory");
}

Test(cache_attr, missing_names_are_remembered)
{
	struct stat st;

	up();
	put_files("d", 2);
	list("d");
	counting_reset(cb);
	for (int i = 0; i < 3; i++)
		omni_assert_err(omni_vfs_stat(c, "d/nope.txt", &st), -ENOENT);
	omni_assert_err(omni_vfs_open(c, "d/.gitignore", O_RDONLY, 0,
	                              &(struct omni_file *){ NULL }),
	                -ENOENT);
	EXPECT_REQUESTS(0, "repeated lookups of missing names");
}

Test(cache_attr, root_is_stat_once)
{
	struct stat st;

	up();
	omni_assert_ok(omni_vfs_stat(c, "", &st));
	cr_assert(S_ISDIR(st.st_mode));
	omni_assert_ok(omni_vfs_stat(c, "", &st));
	cr_assert_eq(counting_count(cb, COUNT_STAT), 1);
	EXPECT_REQUESTS(1, "stat of the root, twice");
}

Test(cache_attr, unlistable_directory_falls_back_to_stat)
{
	struct stat st;

	up();
	put_files("d", 2);
	counting_fail(cb, COUNT_READDIR, -EACCES);
	omni_assert_ok(omni_vfs_stat(c, "d/f1", &st));
	cr_assert_eq(counting_count(cb, COUNT_READDIR), 1);
	cr_assert_eq(counting_count(cb, COUNT_STAT), 1);
	omni_assert_ok(omni_vfs_stat(c, "d/f1", &st));
	EXPECT_REQUESTS(2, "a second stat of the same name");
}

Test(cache_attr, listing_is_kept_for_the_ttl)
{
	up_caps(OMNI_CAP_FILE_FD, 0.3);
	put_files("d", 3);
	list("d");
	list("d");
	EXPECT_REQUESTS(1, "two listings within the TTL");
	counting_put(cb, "d/late", "x", 0644);
	usleep(450 * 1000);
	struct names l = list("d");
	cr_assert_eq(l.n, 4);
	cr_assert(listed(&l, "late"));
	EXPECT_REQUESTS(2, "a listing after the TTL");
}

Test(cache_attr, ttl_expiry_refetches_attributes)
{
	up_caps(OMNI_CAP_FILE_FD, 0.3);
	put_files("d", 1);
	expect_size("d/f1", 2);
	counting_put(cb, "d/f1", "longer\n", 0644);
	expect_size("d/f1", 2); /* still trusted */
	EXPECT_REQUESTS(1, "stat within the TTL");
	usleep(450 * 1000);
	expect_size("d/f1", 7);
	EXPECT_REQUESTS(2, "stat after the TTL");
}

/* --- content -------------------------------------------------------------- */

/* ls -R: a second subdirectory listed within 2 s has the others listed
 * ahead, several at once; still one ListDir per directory, and a single
 * listing (the budget above) fetches nothing ahead. */
Test(cache_attr, a_walker_has_the_next_directories_listed_ahead)
{
	char path[64];

	up();
	for (int i = 1; i <= 12; i++) {
		snprintf(path, sizeof(path), "t/d%d", i);
		put_files(path, 3);
	}
	cr_assert_eq(list("t").n, 12);
	cr_assert_eq(list("t/d1").n, 3);
	usleep(300 * 1000);
	EXPECT_REQUESTS(2, "two listings, nothing ahead yet");
	cr_assert_eq(list("t/d2").n, 3);
	/* The other ten, by the prefetch threads. */
	for (int i = 0; i < 200 && counting_total(cb) < 13; i++)
		usleep(10 * 1000);
	EXPECT_REQUESTS(13, "listed ahead: one ListDir per directory");
	for (int i = 3; i <= 12; i++) {
		snprintf(path, sizeof(path), "t/d%d", i);
		cr_assert_eq(list(path).n, 3);
	}
	EXPECT_REQUESTS(13, "the walker's own listings: from the cache");
	cr_assert_geq(stat_value("cache.listing_hits"), 10);
	/* Once per TTL: the walker going through again costs nothing. */
	cr_assert_eq(list("t/d1").n, 3);
	EXPECT_REQUESTS(13, "walked again");
}

TestSuite(cache_content, .fini = down, .timeout = 60);

Test(cache_content, repeated_read_is_served_from_the_copy)
{
	up();
	counting_put(cb, "r.txt", "some content\n", 0644);
	list("");
	counting_reset(cb);
	char *a = read_all("r.txt");
	cr_assert_str_eq(a, "some content\n");
	cr_assert_eq(counting_count(cb, COUNT_DOWNLOAD), 1);
	EXPECT_REQUESTS(1, "open, read whole, close");
	char *b = read_all("r.txt");
	cr_assert_str_eq(b, a);
	EXPECT_REQUESTS(1, "reading it again");
	cr_assert_eq(stat_value("cache.content_hits"), 1);
	free(a);
	free(b);
}

Test(cache_content, read_without_host_descriptors)
{
	/* The inner backend gives no host fd: content goes through read
	 * and write. */
	up_caps(0, 5.0);
	counting_put(cb, "r.txt", "through read\n", 0644);
	char *a = read_all("r.txt");
	cr_assert_str_eq(a, "through read\n");
	free(a);
	omni_assert_ok(close_file(create("w.txt", "through write\n")));
	char *w = counting_get(cb, "w.txt");
	cr_assert_str_eq(w, "through write\n");
	free(w);
}

Test(cache_content, remote_change_is_fetched_again)
{
	up_caps(OMNI_CAP_FILE_FD, 0.3);
	counting_put(cb, "r.txt", "old\n", 0644);
	char *a = read_all("r.txt");
	cr_assert_str_eq(a, "old\n");
	free(a);
	counting_put(cb, "r.txt", "newer\n", 0644);
	usleep(450 * 1000);
	counting_reset(cb);
	a = read_all("r.txt");
	cr_assert_str_eq(a, "newer\n");
	cr_assert_eq(counting_count(cb, COUNT_DOWNLOAD), 1);
	free(a);
}

Test(cache_content, write_is_uploaded_once_at_close)
{
	up();
	list("");
	counting_reset(cb);
	struct omni_file *f = create("new.txt", "hello\n");
	EXPECT_REQUESTS(0, "create and write");
	omni_assert_ok(close_file(f));
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 1);
	EXPECT_REQUESTS(1, "create, write, close");
	char *theirs = counting_get(cb, "new.txt");
	cr_assert_str_eq(theirs, "hello\n");
	free(theirs);
	/* Its attributes came with the upload, its content is here. */
	expect_size("new.txt", 6);
	char *ours = read_all("new.txt");
	cr_assert_str_eq(ours, "hello\n");
	free(ours);
	EXPECT_REQUESTS(1, "stat and read of the file just written");
}

Test(cache_content, shell_redirect_is_one_upload)
{
	up();
	list("");
	counting_reset(cb);
	/* `cmd > file`: the shell closes the empty new file once before
	 * the command writes to its duplicate. */
	struct omni_file *f = create("out.txt", NULL);
	omni_assert_ok(omni_vfs_flush(f));
	EXPECT_REQUESTS(0, "flush of an empty new file");
	cr_assert_eq(omni_vfs_write(f, "out\n", 4, 0), 4);
	omni_assert_ok(close_file(f));
	EXPECT_REQUESTS(1, "cmd > file");
	char *theirs = counting_get(cb, "out.txt");
	cr_assert_str_eq(theirs, "out\n");
	free(theirs);
}

Test(cache_content, lock_file_created_and_removed_costs_nothing)
{
	up();
	list("");
	counting_reset(cb);
	omni_assert_ok(close_file(create("index.lock", NULL)));
	omni_assert_ok(omni_vfs_unlink(c, "index.lock"));
	EXPECT_REQUESTS(0, "a lock file's life");
	cr_assert_eq(counting_mode(cb, "index.lock"), 0);
	usleep(1600 * 1000);
	EXPECT_REQUESTS(0, "after the background uploader's delay");
}

Test(cache_content, new_empty_file_goes_up_in_the_background)
{
	up();
	list("");
	counting_reset(cb);
	omni_assert_ok(close_file(create("empty", NULL)));
	EXPECT_REQUESTS(0, "closing a new empty file");
	EVENTUALLY(counting_mode(cb, "empty") != 0, "the background upload");
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 1);
}

Test(cache_content, failed_upload_keeps_the_dirty_copy)
{
	up();
	list("");
	counting_fail(cb, COUNT_UPLOAD, -EIO);
	struct omni_file *f = create("keep.txt", "precious\n");
	omni_assert_err(omni_vfs_flush(f), -EIO);
	omni_assert_ok(omni_vfs_release(f));
	cr_assert_null(counting_get(cb, "keep.txt"));
	/* Still here, with its content. */
	cr_assert_eq(stat_value("cache.dirty"), 1);
	expect_size("keep.txt", 9);
	char *ours = read_all("keep.txt");
	cr_assert_str_eq(ours, "precious\n");
	free(ours);
	omni_assert_err(omni__cache_flush_all(c), -EIO);
	cr_assert_eq(stat_value("cache.dirty"), 1);
	/* The remote side is back: the next try uploads it. */
	counting_fail(cb, COUNT_UPLOAD, 0);
	omni_assert_ok(omni__cache_flush_all(c));
	cr_assert_eq(stat_value("cache.dirty"), 0);
	char *theirs = counting_get(cb, "keep.txt");
	cr_assert_str_eq(theirs, "precious\n");
	free(theirs);
}

Test(cache_content, upload_errors_reach_close_as_close_reports_them)
{
	up();
	list("");
	counting_fail(cb, COUNT_UPLOAD, -ENOSPC);
	omni_assert_err(close_file(create("a", "x")), -ENOSPC);
	counting_fail(cb, COUNT_UPLOAD, -EACCES);
	omni_assert_err(close_file(create("b", "y")), -EIO);
	cr_assert_eq(stat_value("cache.dirty"), 2);
	counting_fail(cb, COUNT_UPLOAD, 0);
	omni_assert_ok(omni__cache_flush_all(c));
}

/* A reader's close never reports the writer's failed upload (`cat` of a
 * file whose upload failed must not fail at close with EIO). */
Test(cache_content, read_only_close_reports_no_upload_error)
{
	up();
	list("");
	counting_fail(cb, COUNT_UPLOAD, -EIO);
	struct omni_file *w = create("shared.txt", "data\n");
	struct omni_file *r = NULL;
	omni_assert_ok(omni_vfs_open(c, "shared.txt", O_RDONLY, 0, &r));
	omni_assert_err(omni_vfs_flush(w), -EIO);
	omni_assert_ok(omni_vfs_release(w));
	/* The reader is now the last one: its close tries the upload
	 * again, which fails, and says nothing of it. */
	omni_assert_ok(omni_vfs_flush(r));
	omni_assert_ok(omni_vfs_release(r));
	cr_assert_eq(stat_value("cache.dirty"), 1);
	counting_fail(cb, COUNT_UPLOAD, 0);
	omni_assert_ok(omni__cache_flush_all(c));
	char *theirs = counting_get(cb, "shared.txt");
	cr_assert_str_eq(theirs, "data\n");
	free(theirs);
}

Test(cache_content, flush_all_uploads_each_dirty_file_once)
{
	up();
	list("");
	struct omni_file *a = create("a", "1");
	struct omni_file *b = create("b", "2");
	counting_reset(cb);
	omni_assert_ok(omni__cache_flush_all(c));
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 2);
	omni_assert_ok(omni__cache_flush_all(c));
	omni_assert_ok(close_file(a));
	omni_assert_ok(close_file(b));
	EXPECT_REQUESTS(2, "flush_all twice, then close");
}

Test(cache_content, fsync_of_a_clean_file_is_free)
{
	struct omni_file *f = NULL;

	up();
	counting_put(cb, "f", "data\n", 0644);
	free(read_all("f"));
	counting_reset(cb);
	omni_assert_ok(omni_vfs_open(c, "f", O_RDWR, 0, &f));
	omni_assert_ok(omni_vfs_fsync(f, false));
	omni_assert_ok(omni_vfs_fsync(f, true));
	omni_assert_ok(close_file(f));
	EXPECT_REQUESTS(0, "fsync of a clean file");
}

Test(cache_content, shutdown_uploads_what_is_dirty)
{
	up();
	list("");
	struct omni_file *f = create("late.txt", "at the end\n");
	omni_assert_ok(omni_vfs_release(f));
	/* The release of a written file uploads it; one more change that
	 * is only a truncation waits for the uploader or the shutdown. */
	omni_assert_ok(omni_vfs_open(c, "late.txt", O_WRONLY | O_TRUNC, 0, &f));
	omni_assert_ok(omni_vfs_release(f));
	omni_assert_ok(omni_backend_shutdown(c));
	char *theirs = counting_get(cb, "late.txt");
	cr_assert_str_eq(theirs, "");
	free(theirs);
}

/* --- names ---------------------------------------------------------------- */

TestSuite(cache_names, .fini = down, .timeout = 60);

Test(cache_names, rename_updates_the_cache)
{
	struct stat st;

	up();
	put_files("d", 3);
	list("d");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_rename(c, "d/f1", "d/g", 0));
	cr_assert_eq(counting_count(cb, COUNT_RENAME), 1);
	omni_assert_ok(omni_vfs_stat(c, "d/g", &st));
	cr_assert_eq(st.st_size, 2);
	omni_assert_err(omni_vfs_stat(c, "d/f1", &st), -ENOENT);
	struct names l = list("d");
	cr_assert_eq(l.n, 3);
	cr_assert(listed(&l, "g") && !listed(&l, "f1"));
	EXPECT_REQUESTS(1, "rename, then stat and list");
	char *moved = counting_get(cb, "d/g");
	cr_assert_not_null(moved);
	free(moved);
}

Test(cache_names, rename_noreplace_refuses_an_existing_target)
{
	up();
	put_files("d", 2);
	list("d");
	counting_reset(cb);
	omni_assert_err(omni_vfs_rename(c, "d/f1", "d/f2", RENAME_NOREPLACE),
	                -EEXIST);
	EXPECT_REQUESTS(0, "a refused rename");
}

Test(cache_names, unlink_updates_the_cache)
{
	struct stat st;

	up();
	put_files("d", 3);
	list("d");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_unlink(c, "d/f2"));
	omni_assert_err(omni_vfs_stat(c, "d/f2", &st), -ENOENT);
	struct names l = list("d");
	cr_assert_eq(l.n, 2);
	cr_assert(!listed(&l, "f2"));
	cr_assert_eq(counting_count(cb, COUNT_UNLINK), 1);
	EXPECT_REQUESTS(1, "unlink, then stat and list");
}

Test(cache_names, new_directory_is_known_empty)
{
	struct stat st;

	up();
	list("");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_mkdir(c, "fresh", 0755));
	EXPECT_REQUESTS(1, "mkdir");
	omni_assert_ok(omni_vfs_stat(c, "fresh", &st));
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(list("fresh").n, 0);
	omni_assert_err(omni_vfs_stat(c, "fresh/x", &st), -ENOENT);
	omni_assert_ok(close_file(create("fresh/x", "in it\n")));
	EXPECT_REQUESTS(2, "mkdir, list, create and write in it");
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 1);
}

Test(cache_names, rmdir_of_an_empty_listed_directory_is_one_remove)
{
	up_caps(OMNI_CAP_FILE_FD | OMNI_CAP_REMOVE_DIRS, 5.0);
	counting_put_dir(cb, "old");
	list("old");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_rmdir(c, "old"));
	cr_assert_eq(counting_count(cb, COUNT_UNLINK), 1);
	EXPECT_REQUESTS(1, "rmdir of a listed empty directory");
	cr_assert_eq(counting_mode(cb, "old"), 0);
}

Test(cache_names, rmdir_without_remove_dirs_uses_rmdir)
{
	struct stat st;

	up();
	counting_put_dir(cb, "old");
	list("old");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_rmdir(c, "old"));
	cr_assert_eq(counting_count(cb, COUNT_RMDIR), 1);
	omni_assert_err(omni_vfs_stat(c, "old", &st), -ENOENT);
	EXPECT_REQUESTS(1, "rmdir, then stat");
}

Test(cache_names, editor_atomic_save_is_two_requests)
{
	up();
	counting_put(cb, "doc.txt", "old\n", 0644);
	list("");
	counting_reset(cb);
	struct omni_file *f = create(".doc.txt.swp", "new text\n");
	omni_assert_ok(omni_vfs_fsync(f, false));
	omni_assert_ok(close_file(f));
	omni_assert_ok(omni_vfs_rename(c, ".doc.txt.swp", "doc.txt", 0));
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 1);
	cr_assert_eq(counting_count(cb, COUNT_RENAME), 1);
	EXPECT_REQUESTS(2, "editor's atomic save");
	char *theirs = counting_get(cb, "doc.txt");
	cr_assert_str_eq(theirs, "new text\n");
	free(theirs);
	cr_assert_eq(counting_mode(cb, ".doc.txt.swp"), 0);
}

Test(cache_names, a_file_never_uploaded_moves_and_changes_mode_here)
{
	up();
	list("");
	counting_reset(cb);
	struct omni_file *f = create("draft", NULL);
	omni_assert_ok(omni_vfs_rename(c, "draft", "final", 0));
	omni_assert_ok(omni_vfs_chmod(c, "final", 0600));
	EXPECT_REQUESTS(0, "rename and chmod of a file made here");
	cr_assert_eq(omni_vfs_write(f, "text\n", 5, 0), 5);
	omni_assert_ok(close_file(f));
	EXPECT_REQUESTS(1, "its upload");
	cr_assert_eq(counting_mode(cb, "draft"), 0);
	cr_assert_eq(counting_mode(cb, "final"), S_IFREG | 0600);
}

Test(cache_names, chown_to_the_owner_is_free)
{
	up();
	counting_put(cb, "f", "x", 0644);
	list("");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_chown(c, "f", getuid(), getgid()));
	omni_assert_ok(omni_vfs_chown(c, "f", (uid_t)-1, (gid_t)-1));
	EXPECT_REQUESTS(0, "chown to the owner");
}

Test(cache_names, symlink_is_known_without_readlink)
{
	struct stat st;
	char buf[64];

	up();
	list("");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_symlink(c, "target/file", "ln"));
	omni_assert_ok(omni_vfs_stat(c, "ln", &st));
	cr_assert(S_ISLNK(st.st_mode));
	cr_assert_eq(omni_vfs_readlink(c, "ln", buf, sizeof(buf)), 11);
	cr_assert_str_eq(buf, "target/file");
	EXPECT_REQUESTS(1, "symlink, stat, readlink");
}

Test(cache_names, utimens_of_a_dirty_file_uploads_it_first)
{
	struct timespec ts[2] = { { 1000, 0 }, { 2000, 0 } };
	struct stat st;

	up();
	list("");
	struct omni_file *f = create("t", "abc");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_utimens(c, "t", ts));
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 1);
	cr_assert_eq(counting_count(cb, COUNT_UTIMENS), 1);
	omni_assert_ok(omni_vfs_stat(c, "t", &st));
	cr_assert_eq(st.st_mtim.tv_sec, 2000);
	omni_assert_ok(close_file(f));
	EXPECT_REQUESTS(2, "utimens of a dirty file, then close");
}

Test(cache_names, truncate_to_zero_is_an_empty_upload)
{
	up();
	counting_put(cb, "f", "content\n", 0644);
	list("");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_truncate(c, "f", 0));
	cr_assert_eq(counting_count(cb, COUNT_UPLOAD), 1);
	expect_size("f", 0);
	EXPECT_REQUESTS(1, "truncate, then stat");
	char *theirs = counting_get(cb, "f");
	cr_assert_str_eq(theirs, "");
	free(theirs);
}

/* --- coherence ------------------------------------------------------------ */

TestSuite(cache_coherence, .fini = down, .timeout = 60);

Test(cache_coherence, invalidate_all_keeps_dirty_copies)
{
	struct stat st;

	up();
	put_files("d", 3);
	list("d");
	struct omni_file *f = create("d/dirty", "unsaved\n");
	counting_reset(cb);
	omni_assert_ok(omni_vfs_invalidate(c, ""));
	EXPECT_REQUESTS(0, "invalidating");
	omni_assert_ok(omni_vfs_stat(c, "d/f1", &st));
	EXPECT_REQUESTS(1, "stat after invalidating everything");
	expect_size("d/dirty", 8);
	omni_assert_ok(close_file(f));
	char *theirs = counting_get(cb, "d/dirty");
	cr_assert_str_eq(theirs, "unsaved\n");
	free(theirs);
}

Test(cache_coherence, invalidate_of_a_path_drops_only_it)
{
	struct stat st;

	up();
	put_files("d", 3);
	list("d");
	counting_put(cb, "d/f1", "changed\n", 0644);
	counting_reset(cb);
	omni_assert_ok(omni_vfs_invalidate(c, "d/f1"));
	omni_assert_ok(omni_vfs_stat(c, "d/f2", &st));
	EXPECT_REQUESTS(0, "stat of a name not invalidated");
	expect_size("d/f1", 8);
	EXPECT_REQUESTS(1, "stat of the invalidated name");
}

Test(cache_coherence, invalidate_drops_a_clean_copy)
{
	up();
	counting_put(cb, "f", "one\n", 0644);
	free(read_all("f"));
	counting_put(cb, "f", "two\n", 0644); /* same size */
	omni_assert_ok(omni_vfs_invalidate(c, "f"));
	counting_reset(cb);
	char *now = read_all("f");
	cr_assert_str_eq(now, "two\n");
	free(now);
	cr_assert_eq(counting_count(cb, COUNT_DOWNLOAD), 1);
}

struct heard {
	int n;
	char last[64];
	bool lost;
};

static void listener(const char *path, const struct stat *st, void *payload)
{
	struct heard *h = payload;

	(void)st;
	if (!path) {
		h->lost = true;
		return;
	}
	h->n++;
	snprintf(h->last, sizeof(h->last), "%s", path);
}

/* A cache whose inner backend watches, connected. */
static void up_watching(struct heard *h)
{
	up_caps(OMNI_CAP_FILE_FD | OMNI_CAP_WATCH, 0.3);
	omni_assert_ok(omni_vfs_watch(c, listener, h));
	counting_event(cb, "", NULL);
	cr_assert_eq(stat_value("cache.watch"), 1);
}

Test(cache_coherence, change_event_drops_exactly_the_named_entry)
{
	struct heard h = { 0 };
	struct stat st;

	up_watching(&h);
	put_files("d", 3);
	list("d");
	counting_put(cb, "d/f1", "changed\n", 0644);
	cr_assert_eq(counting_lookup(cb, "d/f1", &st), 0);
	counting_reset(cb);
	counting_event(cb, "d/f1", &st);
	/* The first "" (the watch connecting) is not passed on: nothing
	 * was missed. */
	cr_assert_eq(h.n, 1);
	cr_assert_str_eq(h.last, "d/f1");
	omni_assert_ok(omni_vfs_stat(c, "d/f2", &st));
	omni_assert_ok(omni_vfs_stat(c, "d/f3", &st));
	EXPECT_REQUESTS(0, "stat of names not in the event");
	expect_size("d/f1", 8);
	EXPECT_REQUESTS(1, "stat of the changed name");
}

Test(cache_coherence, echo_of_our_own_change_is_ignored)
{
	struct heard h = { 0 };
	struct stat st;

	up_watching(&h);
	list("");
	omni_assert_ok(omni_vfs_mkdir(c, "mine", 0755));
	cr_assert_eq(counting_lookup(cb, "mine", &st), 0);
	counting_reset(cb);
	counting_event(cb, "mine", &st);
	cr_assert_eq(stat_value("cache.events_ignored"), 1);
	cr_assert_eq(h.n, 0, "the echo is not passed on");
	omni_assert_ok(omni_vfs_stat(c, "mine", &st));
	cr_assert_eq(list("mine").n, 0);
	EXPECT_REQUESTS(0, "our own directory after its echo");
}

Test(cache_coherence, watch_keeps_entries_past_the_short_ttl)
{
	struct heard h = { 0 };
	struct stat st;

	up_watching(&h);
	put_files("d", 2);
	list("d");
	counting_reset(cb);
	usleep(450 * 1000);
	omni_assert_ok(omni_vfs_stat(c, "d/f1", &st));
	EXPECT_REQUESTS(0, "stat past the short TTL while watching");
}

Test(cache_coherence, lost_watch_drops_everything)
{
	struct heard h = { 0 };
	struct stat st;

	up_watching(&h);
	put_files("d", 2);
	list("d");
	counting_event(cb, NULL, NULL);
	cr_assert(h.lost, "the listener hears of the loss");
	cr_assert_eq(stat_value("cache.watch"), 0);
	counting_event(cb, "", NULL);
	counting_reset(cb);
	omni_assert_ok(omni_vfs_stat(c, "d/f1", &st));
	EXPECT_REQUESTS(1, "stat after the watch came back");
	cr_assert_eq(stat_value("cache.invalidations"), 1);
}

Test(cache_coherence, reading_through_a_directory_prefetches_it)
{
	up();
	put_files("d", 6);
	list("d");
	free(read_all("d/f1"));
	free(read_all("d/f2"));
	EVENTUALLY(stat_value("cache.prefetched") == 4, "prefetching");
	counting_reset(cb);
	for (int i = 3; i <= 6; i++) {
		char path[16];
		snprintf(path, sizeof(path), "d/f%d", i);
		char *s = read_all(path);
		cr_assert_eq(strtol(s, NULL, 10), i);
		free(s);
	}
	EXPECT_REQUESTS(0, "reading the prefetched files");
	cr_assert_eq(stat_value("cache.prefetch_used"), 4);
}

Test(cache_coherence, a_single_read_prefetches_nothing)
{
	up();
	put_files("d", 6);
	list("d");
	free(read_all("d/f1"));
	usleep(300 * 1000);
	cr_assert_eq(stat_value("cache.prefetched"), 0);
	EXPECT_REQUESTS(2, "list and one read");
}
