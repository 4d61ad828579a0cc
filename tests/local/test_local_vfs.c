/*
 * tests/local/test_local_vfs.c - the local backend's POSIX-shaped calls
 * (omni/vfs.h; suite backend_local, see test_local.c): stat, readdir,
 * mkdir, rename flags, symlink, readlink, link, chmod, chown, utimens,
 * truncate, statfs and the open-file calls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "local_helpers.h"

/* --- the vfs calls -------------------------------------------------------- */

Test(backend_local, vfs_stat)
{
	struct stat st;

	local_put("f", "12345");
	cr_assert_eq(symlink("f", local_hp("l")), 0);
	omni_assert_ok(omni_vfs_stat(local_fx.b, "f", &st));
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_size, 5);
	omni_assert_ok(omni_vfs_stat(local_fx.b, "", &st));
	cr_assert(S_ISDIR(st.st_mode));
	/* lstat semantics. */
	omni_assert_ok(omni_vfs_stat(local_fx.b, "l", &st));
	cr_assert(S_ISLNK(st.st_mode));
	omni_assert_err(omni_vfs_stat(local_fx.b, "missing", &st), -ENOENT);
	omni_assert_err(omni_vfs_stat(local_fx.b, "f/x", &st), -ENOTDIR);
}

struct seen {
	char names[16][32];
	int n;
	int stop_after;
};

static int record(const char *name, const struct stat *st, void *payload)
{
	struct seen *s = payload;

	cr_assert_not_null(st);
	if (s->n < 16)
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s%s", name,
		         S_ISDIR(st->st_mode) ? "/" : "");
	s->n++;
	if (s->stop_after && s->n == s->stop_after)
		return 77;
	return 0;
}

static bool seen_has(const struct seen *s, const char *name)
{
	for (int i = 0; i < s->n && i < 16; i++)
		if (strcmp(s->names[i], name) == 0)
			return true;
	return false;
}

Test(backend_local, vfs_readdir)
{
	struct seen s = { .n = 0 };

	local_put("a", "");
	local_put("b", "");
	local_put("d/c", "");
	omni_assert_ok(omni_vfs_readdir(local_fx.b, "", record, &s));
	cr_assert_eq(s.n, 3, "no . or .. expected");
	cr_assert(seen_has(&s, "a"));
	cr_assert(seen_has(&s, "b"));
	cr_assert(seen_has(&s, "d/"));

	memset(&s, 0, sizeof(s));
	omni_assert_ok(omni_vfs_readdir(local_fx.b, "d", record, &s));
	cr_assert_eq(s.n, 1);
	cr_assert_str_eq(s.names[0], "c");

	/* A non-zero return stops and is returned. */
	memset(&s, 0, sizeof(s));
	s.stop_after = 2;
	cr_assert_eq(omni_vfs_readdir(local_fx.b, "", record, &s), 77);
	cr_assert_eq(s.n, 2);

	omni_assert_err(omni_vfs_readdir(local_fx.b, "missing", record, &s),
	                -ENOENT);
	omni_assert_err(omni_vfs_readdir(local_fx.b, "a", record, &s),
	                -ENOTDIR);
}

Test(backend_local, vfs_mkdir_rmdir_unlink)
{
	struct stat st;
	mode_t old = umask(0);

	omni_assert_ok(omni_vfs_mkdir(local_fx.b, "m", 0710));
	umask(old);
	cr_assert_eq(stat(local_hp("m"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0710);
	omni_assert_err(omni_vfs_mkdir(local_fx.b, "m", 0755), -EEXIST);
	omni_assert_err(omni_vfs_mkdir(local_fx.b, "", 0755), -EEXIST);
	omni_assert_err(omni_vfs_mkdir(local_fx.b, "no/parent", 0755), -ENOENT);
	local_put("m/f", "");
	omni_assert_err(omni_vfs_rmdir(local_fx.b, "m"), -ENOTEMPTY);
	omni_assert_err(omni_vfs_unlink(local_fx.b, "m"), -EISDIR);
	omni_assert_ok(omni_vfs_unlink(local_fx.b, "m/f"));
	omni_assert_err(omni_vfs_unlink(local_fx.b, "m/f"), -ENOENT);
	omni_assert_ok(omni_vfs_rmdir(local_fx.b, "m"));
	cr_assert_not(omni_test_host_exists(local_hp("m")));
	omni_assert_err(omni_vfs_rmdir(local_fx.b, ""), -EBUSY);
}

Test(backend_local, vfs_rename_flags)
{
	local_put("a", "A");
	local_put("b", "B");
	/* NOREPLACE refuses an existing target. */
	omni_assert_err(omni_vfs_rename(local_fx.b, "a", "b", RENAME_NOREPLACE),
	                -EEXIST);
	local_assert_content("a", "A");
	local_assert_content("b", "B");
	omni_assert_ok(omni_vfs_rename(local_fx.b, "a", "c", RENAME_NOREPLACE));
	cr_assert_not(omni_test_host_exists(local_hp("a")));
	local_assert_content("c", "A");
	/* EXCHANGE swaps. */
	omni_assert_ok(omni_vfs_rename(local_fx.b, "b", "c", RENAME_EXCHANGE));
	local_assert_content("b", "A");
	local_assert_content("c", "B");
	omni_assert_err(
	    omni_vfs_rename(local_fx.b, "b", "nothere", RENAME_EXCHANGE),
	    -ENOENT);
	/* Plain rename replaces. */
	omni_assert_ok(omni_vfs_rename(local_fx.b, "b", "c", 0));
	local_assert_content("c", "A");
	omni_assert_err(omni_vfs_rename(local_fx.b, "missing", "x", 0),
	                -ENOENT);
	omni_assert_err(omni_vfs_rename(local_fx.b, "", "x", 0), -EBUSY);
	/* Across directories. */
	local_put("d1/f", "F");
	omni_assert_ok(omni_vfs_mkdir(local_fx.b, "d2", 0755));
	omni_assert_ok(omni_vfs_rename(local_fx.b, "d1/f", "d2/g", 0));
	local_assert_content("d2/g", "F");
}

Test(backend_local, vfs_symlink_readlink)
{
	char buf[64];
	struct stat st;

	omni_assert_ok(omni_vfs_symlink(local_fx.b, "target/file.txt", "l"));
	cr_assert_eq(lstat(local_hp("l"), &st), 0);
	cr_assert(S_ISLNK(st.st_mode));
	memset(buf, 'Z', sizeof(buf));
	cr_assert_eq(omni_vfs_readlink(local_fx.b, "l", buf, sizeof(buf)), 15);
	cr_assert_str_eq(buf, "target/file.txt");
	/* Too small: truncated and still terminated. */
	memset(buf, 'Z', sizeof(buf));
	cr_assert_eq(omni_vfs_readlink(local_fx.b, "l", buf, 7), 7);
	cr_assert_str_eq(buf, "target");
	omni_assert_err(omni_vfs_symlink(local_fx.b, "x", "l"), -EEXIST);
	local_put("f", "");
	omni_assert_err(omni_vfs_readlink(local_fx.b, "f", buf, sizeof(buf)),
	                -EINVAL);
	omni_assert_err(
	    omni_vfs_readlink(local_fx.b, "missing", buf, sizeof(buf)),
	    -ENOENT);
	omni_assert_err(omni_vfs_readlink(local_fx.b, "", buf, sizeof(buf)),
	                -EINVAL);
	/* A link in a subdirectory, read through the API. */
	local_put("sub/real", "R");
	omni_assert_ok(omni_vfs_symlink(local_fx.b, "real", "sub/alias"));
	local_assert_content("sub/alias", "R");
	cr_assert_eq(omni_backend_file_exists(local_fx.b, "sub/alias"),
	             OMNI_FILE_SYMLINK);
}

Test(backend_local, vfs_link)
{
	struct stat st;

	local_put("orig", "data");
	omni_assert_ok(omni_vfs_link(local_fx.b, "orig", "hard"));
	cr_assert_eq(stat(local_hp("orig"), &st), 0);
	cr_assert_eq(st.st_nlink, 2);
	local_assert_content("hard", "data");
	omni_assert_err(omni_vfs_link(local_fx.b, "orig", "hard"), -EEXIST);
	omni_assert_err(omni_vfs_link(local_fx.b, "missing", "h2"), -ENOENT);
	omni_assert_ok(omni_vfs_mkdir(local_fx.b, "d", 0755));
	omni_assert_err(omni_vfs_link(local_fx.b, "d", "dlink"), -EPERM);
}

Test(backend_local, vfs_chmod_chown)
{
	struct stat st;

	local_put("f", "");
	omni_assert_ok(omni_vfs_chmod(local_fx.b, "f", 0640));
	cr_assert_eq(stat(local_hp("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640);
	omni_assert_ok(omni_vfs_chmod(local_fx.b, "f", 04755));
	cr_assert_eq(stat(local_hp("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 04755);
	/* chmod follows a symlink (inside the workspace). */
	cr_assert_eq(symlink("f", local_hp("l")), 0);
	omni_assert_ok(omni_vfs_chmod(local_fx.b, "l", 0600));
	cr_assert_eq(stat(local_hp("f"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	omni_assert_ok(omni_vfs_chmod(local_fx.b, "", 0755));
	omni_assert_err(omni_vfs_chmod(local_fx.b, "missing", 0600), -ENOENT);

	/* chown to who we are is always allowed. */
	omni_assert_ok(omni_vfs_chown(local_fx.b, "f", getuid(), getgid()));
	omni_assert_ok(omni_vfs_chown(local_fx.b, "", (uid_t)-1, (gid_t)-1));
	omni_assert_ok(omni_vfs_chown(local_fx.b, "l", getuid(), (gid_t)-1));
	omni_assert_err(
	    omni_vfs_chown(local_fx.b, "missing", getuid(), getgid()), -ENOENT);
}

Test(backend_local, vfs_utimens_nanoseconds)
{
	struct timespec ts[2] = { { 1000000000, 123456789 },
		                  { 1200000000, 987654321 } };
	struct stat st;

	local_put("f", "");
	omni_assert_ok(omni_vfs_utimens(local_fx.b, "f", ts));
	omni_assert_ok(omni_vfs_stat(local_fx.b, "f", &st));
	cr_assert_eq(st.st_atim.tv_sec, 1000000000);
	cr_assert_eq(st.st_atim.tv_nsec, 123456789);
	cr_assert_eq(st.st_mtim.tv_sec, 1200000000);
	cr_assert_eq(st.st_mtim.tv_nsec, 987654321);

	/* UTIME_OMIT keeps, UTIME_NOW sets the current time. */
	struct timespec keep_now[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };
	omni_assert_ok(omni_vfs_utimens(local_fx.b, "f", keep_now));
	omni_assert_ok(omni_vfs_stat(local_fx.b, "f", &st));
	cr_assert_eq(st.st_atim.tv_sec, 1000000000);
	cr_assert_eq(st.st_atim.tv_nsec, 123456789);
	cr_assert_gt(st.st_mtim.tv_sec, 1200000000);

	/* On a symlink the link itself changes, not the target. */
	cr_assert_eq(symlink("f", local_hp("l")), 0);
	omni_assert_ok(omni_vfs_utimens(local_fx.b, "l", ts));
	omni_assert_ok(omni_vfs_stat(local_fx.b, "f", &st));
	cr_assert_neq(st.st_mtim.tv_sec, 1200000000);
	/* The workspace root. */
	omni_assert_ok(omni_vfs_utimens(local_fx.b, "", ts));
	omni_assert_ok(omni_vfs_stat(local_fx.b, "", &st));
	cr_assert_eq(st.st_mtim.tv_sec, 1200000000);
	cr_assert_eq(st.st_mtim.tv_nsec, 987654321);
	omni_assert_err(omni_vfs_utimens(local_fx.b, "missing", ts), -ENOENT);
}

Test(backend_local, vfs_truncate)
{
	char *data;
	size_t len;

	local_put("f", "0123456789");
	omni_assert_ok(omni_vfs_truncate(local_fx.b, "f", 4));
	local_assert_content("f", "0123");
	omni_assert_ok(omni_vfs_truncate(local_fx.b, "f", 8));
	omni_assert_ok(omni_backend_read_file(local_fx.b, "f", &data, &len));
	cr_assert_eq(len, 8);
	cr_assert_eq(memcmp(data, "0123\0\0\0\0", 8), 0);
	free(data);
	omni_assert_ok(omni_vfs_truncate(local_fx.b, "f", 0));
	local_assert_content("f", "");
	omni_assert_err(omni_vfs_truncate(local_fx.b, "missing", 0), -ENOENT);
	omni_assert_err(omni_vfs_truncate(local_fx.b, "", 0), -EISDIR);
	omni_assert_err(omni_vfs_truncate(local_fx.b, "f", -1), -EINVAL);
}

Test(backend_local, vfs_statfs)
{
	struct statvfs sv;

	memset(&sv, 0, sizeof(sv));
	omni_assert_ok(omni_vfs_statfs(local_fx.b, &sv));
	cr_assert_gt(sv.f_bsize, 0);
	cr_assert_gt(sv.f_blocks, 0);
	cr_assert_gt(sv.f_namemax, 0);
}

Test(backend_local, vfs_open_files)
{
	struct omni_file *f, *g;
	struct stat st;
	char buf[32];
	int fd;

	omni_assert_ok(omni_vfs_open(local_fx.b, "f", O_RDWR | O_CREAT | O_EXCL,
	                             0600, &f));
	cr_assert_not_null(f);
	cr_assert_eq(omni_vfs_write(f, "hello world", 11, 0), 11);
	cr_assert_eq(omni_vfs_write(f, "W", 1, 6), 1);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(omni_vfs_read(f, buf, sizeof(buf), 0), 11);
	cr_assert_str_eq(buf, "hello World");
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(omni_vfs_read(f, buf, 5, 6), 5);
	cr_assert_str_eq(buf, "World");
	cr_assert_eq(omni_vfs_read(f, buf, sizeof(buf), 100), 0);
	omni_assert_ok(omni_vfs_fstat(f, &st));
	cr_assert_eq(st.st_size, 11);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0600);
	omni_assert_ok(omni_vfs_ftruncate(f, 5));
	omni_assert_ok(omni_vfs_fstat(f, &st));
	cr_assert_eq(st.st_size, 5);
	omni_assert_ok(omni_vfs_fsync(f, false));
	omni_assert_ok(omni_vfs_fsync(f, true));
	omni_assert_ok(omni_vfs_flush(f));
	omni_assert_ok(omni_vfs_fallocate(f, 0, 0, 4096));
	omni_assert_ok(omni_vfs_fstat(f, &st));
	cr_assert_eq(st.st_size, 4096);
	fd = omni_vfs_file_fd(f);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);

	/* flock: a second open file description conflicts. */
	omni_assert_ok(omni_vfs_flock(f, LOCK_EX | LOCK_NB));
	omni_assert_ok(omni_vfs_open(local_fx.b, "f", O_RDONLY, 0, &g));
	omni_assert_err(omni_vfs_flock(g, LOCK_EX | LOCK_NB), -EWOULDBLOCK);
	omni_assert_err(omni_vfs_flock(g, LOCK_SH | LOCK_NB), -EWOULDBLOCK);
	omni_assert_ok(omni_vfs_flock(f, LOCK_UN));
	omni_assert_ok(omni_vfs_flock(g, LOCK_SH | LOCK_NB));
	/* A read-only handle cannot write. */
	omni_assert_err(omni_vfs_write(g, "x", 1, 0), -EBADF);
	/* Record locks are not provided by the local backend. */
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	omni_assert_err(omni_vfs_lock(g, F_GETLK, &fl), -ENOSYS);
	omni_assert_ok(omni_vfs_release(g));
	omni_assert_ok(omni_vfs_release(f));
	omni_assert_ok(omni_vfs_release(NULL));

	/* O_EXCL on an existing file, missing without O_CREAT. */
	omni_assert_err(
	    omni_vfs_open(local_fx.b, "f", O_RDWR | O_CREAT | O_EXCL, 0600, &f),
	    -EEXIST);
	cr_assert_null(f);
	omni_assert_err(omni_vfs_open(local_fx.b, "nope", O_RDONLY, 0, &f),
	                -ENOENT);
	omni_assert_err(omni_vfs_open(local_fx.b, "", O_WRONLY, 0, &f),
	                -EISDIR);
	/* A directory opens read-only (for fstat), as open(2) allows. */
	omni_assert_ok(
	    omni_vfs_open(local_fx.b, "", O_RDONLY | O_DIRECTORY, 0, &f));
	omni_assert_ok(omni_vfs_fstat(f, &st));
	cr_assert(S_ISDIR(st.st_mode));
	omni_assert_ok(omni_vfs_release(f));
}

Test(backend_local, vfs_open_append_and_trunc)
{
	struct omni_file *f;

	local_put("f", "abc");
	omni_assert_ok(
	    omni_vfs_open(local_fx.b, "f", O_WRONLY | O_TRUNC, 0, &f));
	omni_assert_ok(omni_vfs_release(f));
	local_assert_content("f", "");
	omni_assert_ok(
	    omni_vfs_open(local_fx.b, "f", O_WRONLY | O_APPEND, 0, &f));
	cr_assert_eq(omni_vfs_write(f, "xy", 2, 0), 2);
	cr_assert_eq(omni_vfs_write(f, "z", 1, 0), 1);
	omni_assert_ok(omni_vfs_release(f));
	local_assert_content("f", "xyz");
}

Test(backend_local, vfs_watch_unsupported)
{
	omni_assert_err(omni_vfs_watch(local_fx.b, NULL, NULL), -ENOSYS);
	cr_assert(strstr(omni_error_last(), "local") != NULL);
}
