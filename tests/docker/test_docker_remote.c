/*
 * tests/docker/test_docker_remote.c - the file protocol for real (suite
 * docker_remote): a docker backend in bind mode is started with the test
 * image, and docker_remote.c is driven directly with
 * omni__docker_agent_connect as its connector, so every request crosses to
 * the omni-agent in the container and back, and what it did is checked on
 * the host side of the bind mount.
 *
 *   ops         every path slot and file slot against the host side:
 *               attributes, listings with attributes, modes, links, times,
 *               sizes, renames with flags, statfs
 *   errors      ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ELOOP, EACCES
 *               (a symlink out of the workspace), EINVAL (a path with "..")
 *   big         a 24 MiB file written and read back in pieces of many
 *               sizes; a listing of 5000 entries
 *   watch       changes made by a command in the container come as events
 *               (nested new directories, writes, renames, removals)
 *   random      20 000 operations (writes, truncates, renames, reads at
 *               random offsets and sizes) through the protocol compared
 *               with a local reference file (seed printed; OMNI_TEST_SEED
 *               sets it)
 *   malformed   a fake agent on a socketpair sends crafted answers: bad
 *               lengths, names with '/' or NUL, "..", huge counts, more
 *               data than asked, frames over the limit, an old agent's
 *               ERROR, a session cut inside a frame: -EPROTO (or the
 *               errno named), never a crash; a dropped session is
 *               replaced for a request safe to repeat and not for mkdir
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cache/cache.h"
#include "docker/docker.h"
#include "docker/docker_remote.h"
#include "docker_helpers.h"
#include "helpers.h"
#include "omni/ipc_files.h"

static struct omni__docker_remote *rr;
static struct omni__docker_backend *rdb;

static void rm_teardown(void)
{
	if (rdb)
		rdb->remote = NULL;
	omni__docker_remote_free(rr);
	rr = NULL;
	rdb = NULL;
	dk_teardown();
}

TestSuite(docker_remote, .init = dk_setup, .fini = rm_teardown, .timeout = 150);

/* A started bind-mode backend whose files are also reached through the
 * agent's file protocol (rr). */
static struct omni_backend *remote_started(void)
{
	struct omni_backend *b = dk_started();

	cr_assert_str_eq(omni_backend_name(b), "docker");
	rdb = (struct omni__docker_backend *)b;
	omni_assert_ok(omni__docker_remote_attach(rdb));
	rr = rdb->remote;
	return b;
}

static void host_path(char *out, const char *rel)
{
	omni_test_fmt(out, PATH_MAX, "%s/%s", dk_fx.host, rel);
}

static void host_lstat(const char *rel, struct stat *st)
{
	char p[PATH_MAX];

	host_path(p, rel);
	cr_assert(lstat(p, st) == 0, "lstat %s: %s", p, strerror(errno));
}

static void assert_like_host(const struct stat *st, const char *rel)
{
	struct stat h;

	host_lstat(rel, &h);
	cr_assert_eq(st->st_mode, h.st_mode, "%s: mode %o, host %o", rel,
	             st->st_mode, h.st_mode);
	cr_assert_eq(st->st_ino, h.st_ino, "%s", rel);
	cr_assert_eq(st->st_nlink, h.st_nlink, "%s", rel);
	cr_assert_eq(st->st_uid, h.st_uid, "%s", rel);
	cr_assert_eq(st->st_gid, h.st_gid, "%s", rel);
	if (!S_ISDIR(h.st_mode))
		cr_assert_eq(st->st_size, h.st_size, "%s", rel);
	cr_assert_eq(st->st_mtim.tv_sec, h.st_mtim.tv_sec, "%s", rel);
	cr_assert_eq(st->st_mtim.tv_nsec, h.st_mtim.tv_nsec, "%s", rel);
}

/* Write data to rel through the protocol (created with mode). */
static void put_file(struct omni_backend *b, const char *rel, const void *data,
                     size_t len, mode_t mode)
{
	struct omni_file *f;

	omni_assert_ok(omni__docker_remote_open(
	    b, rel, O_WRONLY | O_CREAT | O_TRUNC, mode, &f));
	cr_assert_eq(omni__docker_remote_write(f, data, len, 0), (ssize_t)len);
	omni_assert_ok(omni__docker_remote_release(f));
}

static char *host_read(const char *rel, size_t *len)
{
	char p[PATH_MAX];

	host_path(p, rel);
	return omni_test_read_host(p, len);
}

/* --- every operation ------------------------------------------------------ */

struct listed {
	char names[64][64];
	struct stat st[64];
	int n;
};

static int on_entry(const char *name, const struct stat *st, void *payload)
{
	struct listed *l = payload;

	cr_assert(l->n < 64);
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s", name);
	l->st[l->n++] = *st;
	return 0;
}

/* Open files on d/f (5 bytes): reads at offsets, gathered writes,
 * fstat, ftruncate, fsync, O_APPEND; a file created read-only. */
static void check_open_files(struct omni_backend *b)
{
	struct omni_file *f;
	struct stat st, h;
	char buf[64];
	size_t len;
	char *data;

	/* Open files: fstat, ftruncate, fsync, reads at offsets. */
	omni_assert_ok(omni__docker_remote_open(b, "d/f", O_RDWR, 0, &f));
	cr_assert_eq(omni__docker_remote_file_fd(f), -1);
	cr_assert_eq(omni__docker_remote_read(f, buf, sizeof(buf), 1), 4);
	cr_assert_eq(memcmp(buf, "ello", 4), 0);
	cr_assert_eq(omni__docker_remote_write(f, "XY", 2, 10), 2);
	omni_assert_ok(omni__docker_remote_fstat(f, &st));
	cr_assert_eq(st.st_size, 12);
	assert_like_host(&st, "d/f");
	omni_assert_ok(omni__docker_remote_ftruncate(f, 3));
	omni_assert_ok(omni__docker_remote_fsync(f, false));
	cr_assert_eq(omni__docker_remote_read(f, buf, sizeof(buf), 0), 3);
	cr_assert_eq(omni__docker_remote_read(f, buf, sizeof(buf), 3), 0);
	cr_assert_eq(omni__docker_remote_read(f, buf, sizeof(buf), 100), 0);
	omni_assert_ok(omni__docker_remote_release(f));
	omni_assert_ok(
	    omni__docker_remote_open(b, "d/f", O_WRONLY | O_APPEND, 0, &f));
	cr_assert_eq(omni__docker_remote_write(f, "++", 2, 0), 2);
	omni_assert_err(omni__docker_remote_read(f, buf, 1, 0), -EBADF);
	omni_assert_ok(omni__docker_remote_release(f));
	data = host_read("d/f", &len);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(data, "hel++", 5), 0);
	free(data);

	/* A file created read-only still takes its writes, and ends with
	 * its mode. */
	put_file(b, "d/ro", "x", 1, 0444);
	host_lstat("d/ro", &h);
	cr_assert_eq(h.st_mode & 07777, 0444, "mode %o", h.st_mode);
	cr_assert_eq(h.st_size, 1);
}

/* d/f becomes d/g, then d/g and d/other swap. */
static void check_renames(struct omni_backend *b)
{
	char p[PATH_MAX];
	size_t len;
	char *data;

	/* Renames with flags. */
	omni_assert_ok(omni__docker_remote_rename(b, "d/f", "d/g", 0));
	cr_assert_not(omni_test_host_exists((host_path(p, "d/f"), p)));
	omni_assert_err(
	    omni__docker_remote_rename(b, "d/g", "d/h", RENAME_NOREPLACE),
	    -EEXIST);
	put_file(b, "d/other", "other", 5, 0644);
	omni_assert_ok(
	    omni__docker_remote_rename(b, "d/g", "d/other", RENAME_EXCHANGE));
	data = host_read("d/g", &len);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(data, "other", 5), 0);
	free(data);
}

Test(docker_remote, every_operation_matches_the_host_side)
{
	struct omni_backend *b = remote_started();
	struct stat st, h;
	struct listed l = { 0 };
	char buf[64], p[PATH_MAX];
	size_t len;

	omni_assert_ok(omni__docker_remote_mkdir(b, "d", 0750));
	host_lstat("d", &h);
	cr_assert(S_ISDIR(h.st_mode) && (h.st_mode & 07777) == 0750);
	put_file(b, "d/f", "hello world", 11, 0640);
	char *data = host_read("d/f", &len);
	cr_assert_eq(len, 11);
	cr_assert_eq(memcmp(data, "hello world", 11), 0);
	free(data);
	host_lstat("d/f", &h);
	cr_assert_eq(h.st_mode & 07777, 0640);
	omni_assert_ok(omni__docker_remote_stat(b, "d/f", &st));
	assert_like_host(&st, "d/f");
	omni_assert_ok(omni__docker_remote_stat(b, "", &st));
	cr_assert(S_ISDIR(st.st_mode));

	/* Links, both kinds. */
	omni_assert_ok(omni__docker_remote_symlink(b, "f", "d/l"));
	cr_assert_eq(omni__docker_remote_readlink(b, "d/l", buf, sizeof(buf)),
	             1);
	cr_assert_str_eq(buf, "f");
	cr_assert_eq(omni__docker_remote_readlink(b, "d/l", buf, 1), 1);
	cr_assert_str_eq(buf, "");
	omni_assert_ok(omni__docker_remote_stat(b, "d/l", &st));
	cr_assert(S_ISLNK(st.st_mode));
	assert_like_host(&st, "d/l");
	omni_assert_ok(omni__docker_remote_link(b, "d/f", "d/h"));
	host_lstat("d/f", &h);
	cr_assert_eq(h.st_nlink, 2);

	/* The listing carries every entry's attributes. */
	omni_assert_ok(omni__docker_remote_readdir(b, "d", on_entry, &l));
	cr_assert_eq(l.n, 3);
	for (int i = 0; i < l.n; i++) {
		char rel[80];
		omni_test_fmt(rel, sizeof(rel), "d/%s", l.names[i]);
		assert_like_host(&l.st[i], rel);
	}

	/* Modes, owners, times, sizes. */
	omni_assert_ok(omni__docker_remote_chmod(b, "d/f", 0604));
	host_lstat("d/f", &h);
	cr_assert_eq(h.st_mode & 07777, 0604);
	omni_assert_ok(
	    omni__docker_remote_chown(b, "d/f", (uid_t)-1, getgid()));
	struct timespec ts[2] = { { 1000000000, 5 },
		                  { 1200000000, 123456789 } };
	omni_assert_ok(omni__docker_remote_utimens(b, "d/f", ts));
	host_lstat("d/f", &h);
	cr_assert_eq(h.st_mtim.tv_sec, 1200000000);
	cr_assert_eq(h.st_mtim.tv_nsec, 123456789);
	cr_assert_eq(h.st_atim.tv_sec, 1000000000);
	struct timespec omit[2] = { { 0, UTIME_OMIT }, { 7, 0 } };
	omni_assert_ok(omni__docker_remote_utimens(b, "d/f", omit));
	host_lstat("d/f", &h);
	cr_assert_eq(h.st_mtim.tv_sec, 7);
	cr_assert_eq(h.st_atim.tv_sec, 1000000000);
	omni_assert_ok(omni__docker_remote_truncate(b, "d/f", 5));
	host_lstat("d/f", &h);
	cr_assert_eq(h.st_size, 5);

	check_open_files(b);
	check_renames(b);

	/* statfs is the bind mount's file system. */
	struct statvfs sv, hv;
	omni_assert_ok(omni__docker_remote_statfs(b, &sv));
	cr_assert(statvfs(dk_fx.host, &hv) == 0);
	cr_assert_eq(sv.f_blocks, hv.f_blocks);
	cr_assert_eq(sv.f_bsize, hv.f_bsize);

	/* Removals. */
	omni_assert_ok(omni__docker_remote_unlink(b, "d/l"));
	omni_assert_ok(omni__docker_remote_unlink(b, "d/h"));
	omni_assert_ok(omni__docker_remote_unlink(b, "d/g"));
	omni_assert_ok(omni__docker_remote_unlink(b, "d/other"));
	omni_assert_ok(omni__docker_remote_unlink(b, "d/ro"));
	omni_assert_ok(omni__docker_remote_rmdir(b, "d"));
	cr_assert_not(omni_test_host_exists((host_path(p, "d"), p)));

	/* A round trip, for the record. */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 2000; i++)
		omni_assert_ok(omni__docker_remote_stat(b, "", &st));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr, "docker_remote: stat round trip %.1f us\n",
	        ((double)(t1.tv_sec - t0.tv_sec) * 1e9 +
	         (double)(t1.tv_nsec - t0.tv_nsec)) /
	            2000 / 1e3);

	struct omni__docker_remote_counters c;
	omni__docker_remote_counters(rr, &c);
	cr_assert(c.requests > 30);
	cr_assert(c.connects <= OMNI_DOCKER_REMOTE_MAX);
	cr_assert_eq(c.bad, 0);
}

Test(docker_remote, errors_are_the_kernels)
{
	struct omni_backend *b = remote_started();
	struct omni_file *f;
	struct stat st;
	char buf[16];

	omni_assert_err(omni__docker_remote_stat(b, "missing", &st), -ENOENT);
	cr_assert(strstr(omni_error_last(), "missing"), "%s",
	          omni_error_last());
	/* An open for reading sends nothing: the first read finds the file
	 * missing. */
	omni_assert_ok(omni__docker_remote_open(b, "missing", O_RDONLY, 0, &f));
	omni_assert_err(omni__docker_remote_read(f, buf, 16, 0), -ENOENT);
	omni_assert_err(omni__docker_remote_fstat(f, &st), -ENOENT);
	omni_assert_ok(omni__docker_remote_release(f));
	omni_assert_err(omni__docker_remote_open(b, "missing", O_RDWR, 0, &f),
	                -ENOENT);
	omni_assert_ok(omni__docker_remote_mkdir(b, "dir", 0755));
	omni_assert_err(omni__docker_remote_mkdir(b, "dir", 0755), -EEXIST);
	put_file(b, "file", "x", 1, 0644);
	omni_assert_err(omni__docker_remote_open(
	                    b, "file", O_WRONLY | O_CREAT | O_EXCL, 0644, &f),
	                -EEXIST);
	omni_assert_err(omni__docker_remote_stat(b, "file/x", &st), -ENOTDIR);
	omni_assert_err(omni__docker_remote_readdir(b, "file", on_entry, NULL),
	                -ENOTDIR);
	omni_assert_err(omni__docker_remote_open(b, "dir", O_WRONLY, 0, &f),
	                -EISDIR);
	omni_assert_err(omni__docker_remote_unlink(b, "dir"), -EISDIR);
	put_file(b, "dir/inside", "y", 1, 0644);
	omni_assert_err(omni__docker_remote_rmdir(b, "dir"), -ENOTEMPTY);
	omni_assert_err(omni__docker_remote_rmdir(b, "file"), -ENOTDIR);
	omni_assert_err(omni__docker_remote_readlink(b, "file", buf, 16),
	                -EINVAL);
	/* A symlink loop, and a symlink out of the workspace. */
	omni_assert_ok(omni__docker_remote_symlink(b, "loop2", "loop1"));
	omni_assert_ok(omni__docker_remote_symlink(b, "loop1", "loop2"));
	omni_assert_err(omni__docker_remote_open(b, "loop1", O_RDWR, 0, &f),
	                -ELOOP);
	omni_assert_ok(omni__docker_remote_symlink(b, "/etc", "escape"));
	omni_assert_err(
	    omni__docker_remote_open(b, "escape/passwd", O_RDWR, 0, &f),
	    -EACCES);
	omni_assert_ok(
	    omni__docker_remote_open(b, "escape/passwd", O_RDONLY, 0, &f));
	omni_assert_err(omni__docker_remote_read(f, buf, 16, 0), -EACCES);
	omni_assert_ok(omni__docker_remote_release(f));
	omni_assert_err(omni__docker_remote_stat(b, "escape/passwd", &st),
	                -EACCES);
	/* Paths that are not normalised are refused by the agent itself. */
	omni_assert_err(omni__docker_remote_stat(b, "../etc", &st), -EINVAL);
	omni_assert_err(omni__docker_remote_stat(b, "/etc", &st), -EINVAL);
	omni_assert_err(omni__docker_remote_rename(b, "file", "../x", 0),
	                -EINVAL);
	/* Errors leave the sessions usable. */
	omni_assert_ok(omni__docker_remote_stat(b, "file", &st));
}

static unsigned long long requests(void)
{
	struct omni__docker_remote_counters c;

	omni__docker_remote_counters(rr, &c);
	return c.requests;
}

/* What the cache does to upload and download a small file costs one
 * request each. */
Test(docker_remote, a_small_file_crosses_in_one_request)
{
	struct omni_backend *b = remote_started();
	struct omni_file *f;
	struct stat st;
	char buf[65536];

	unsigned long long before = requests();
	omni_assert_ok(omni__docker_remote_open(
	    b, "small", O_WRONLY | O_CREAT | O_TRUNC, 0640, &f));
	cr_assert_eq(omni__docker_remote_write(f, "0123456789", 10, 0), 10);
	omni_assert_ok(omni__docker_remote_flush(f));
	omni_assert_ok(omni__docker_remote_fstat(f, &st));
	omni_assert_ok(omni__docker_remote_release(f));
	cr_assert_eq(requests() - before, 1, "upload: %llu requests",
	             requests() - before);
	cr_assert_eq(st.st_size, 10);
	assert_like_host(&st, "small");
	cr_assert_eq(st.st_mode & 07777, 0640);

	before = requests();
	omni_assert_ok(omni__docker_remote_open(b, "small", O_RDONLY, 0, &f));
	cr_assert_eq(omni__docker_remote_read(f, buf, sizeof(buf), 0), 10);
	cr_assert_eq(omni__docker_remote_read(f, buf, sizeof(buf), 10), 0);
	omni_assert_ok(omni__docker_remote_release(f));
	cr_assert_eq(requests() - before, 1, "download: %llu requests",
	             requests() - before);
	cr_assert_eq(memcmp(buf, "0123456789", 10), 0);

	/* Mode 0 is the default one. */
	omni_assert_ok(omni__docker_remote_open(
	    b, "default", O_WRONLY | O_CREAT | O_TRUNC, 0, &f));
	omni_assert_ok(omni__docker_remote_release(f));
	omni_assert_ok(omni__docker_remote_mkdir(b, "default-dir", 0));
	struct stat h;
	host_lstat("default", &h);
	cr_assert_eq(h.st_mode & 07777, 0644);
	host_lstat("default-dir", &h);
	cr_assert_eq(h.st_mode & 07777, 0755);

	/* An empty file is made at flush. */
	before = requests();
	omni_assert_ok(omni__docker_remote_open(
	    b, "empty", O_WRONLY | O_CREAT | O_TRUNC, 0600, &f));
	omni_assert_ok(omni__docker_remote_flush(f));
	omni_assert_ok(omni__docker_remote_fstat(f, &st));
	omni_assert_ok(omni__docker_remote_release(f));
	cr_assert_eq(requests() - before, 1);
	assert_like_host(&st, "empty");
	cr_assert_eq(st.st_size, 0);
}

/* Threads at once share the pool: each writes and reads back files of
 * its own. */
struct worker {
	struct omni_backend *b;
	int id;
	int errors;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char name[64], data[256], back[256];

	for (int i = 0; i < 100; i++) {
		struct omni_file *f;
		int n = snprintf(data, sizeof(data), "worker %d round %d",
		                 w->id, i);
		snprintf(name, sizeof(name), "par-%d-%d", w->id, i % 5);
		if (omni__docker_remote_open(w->b, name,
		                             O_WRONLY | O_CREAT | O_TRUNC, 0644,
		                             &f) < 0 ||
		    omni__docker_remote_write(f, data, (size_t)n, 0) != n ||
		    omni__docker_remote_release(f) < 0) {
			w->errors++;
			continue;
		}
		if (omni__docker_remote_open(w->b, name, O_RDONLY, 0, &f) < 0) {
			w->errors++;
			continue;
		}
		ssize_t got =
		    omni__docker_remote_read(f, back, sizeof(back), 0);
		if (got != n || memcmp(back, data, (size_t)n) != 0)
			w->errors++;
		omni__docker_remote_release(f);
	}
	return NULL;
}

Test(docker_remote, threads_share_the_pool)
{
	struct omni_backend *b = remote_started();
	struct worker w[24];
	pthread_t th[24];

	for (int i = 0; i < 24; i++) {
		w[i] = (struct worker){ .b = b, .id = i };
		cr_assert(pthread_create(&th[i], NULL, work, &w[i]) == 0);
	}
	for (int i = 0; i < 24; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].errors, 0, "worker %d", i);
	}
	struct omni__docker_remote_counters c;
	omni__docker_remote_counters(rr, &c);
	cr_assert_leq(c.connects, OMNI_DOCKER_REMOTE_MAX,
	              "%llu sessions, %llu requests, %llu retries, %llu errors",
	              c.connects, c.requests, c.retries, c.errors);
	cr_assert_eq(c.requests, 24 * 100 * 2);
}

/* --- big files and listings ------------------------------------------------
 */

static unsigned char *random_bytes(size_t n, unsigned int seed)
{
	unsigned char *p = malloc(n);

	cr_assert(p);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (unsigned char)(seed >> 16);
	}
	return p;
}

Test(docker_remote, big_files_cross_whole)
{
	struct omni_backend *b = remote_started();
	const size_t size = 24u << 20;
	unsigned char *data = random_bytes(size, 7), *back = malloc(size);
	struct omni_file *f;
	size_t len;

	cr_assert(back);
	/* Written in pieces of many sizes: small ones gathered, large ones
	 * sent at once. */
	omni_assert_ok(omni__docker_remote_open(
	    b, "big", O_WRONLY | O_CREAT | O_TRUNC, 0644, &f));
	size_t off = 0, step = 1000;
	while (off < size) {
		size_t n = size - off < step ? size - off : step;
		cr_assert_eq(
		    omni__docker_remote_write(f, data + off, n, (off_t)off),
		    (ssize_t)n);
		off += n;
		step = step * 3 % (3u << 20) + 1;
	}
	omni_assert_ok(omni__docker_remote_release(f));
	char *host = host_read("big", &len);
	cr_assert_eq(len, size);
	cr_assert(memcmp(host, data, size) == 0);
	free(host);

	/* Read back 64 KiB at a time (as the cache downloads), and in one
	 * read of the whole. */
	omni_assert_ok(omni__docker_remote_open(b, "big", O_RDONLY, 0, &f));
	for (off = 0;;) {
		ssize_t n =
		    omni__docker_remote_read(f, back + off, 65536, (off_t)off);
		cr_assert(n >= 0, "%s", omni_error_last());
		if (n == 0)
			break;
		off += (size_t)n;
	}
	cr_assert_eq(off, size);
	cr_assert(memcmp(back, data, size) == 0);
	memset(back, 0, size);
	cr_assert_eq(omni__docker_remote_read(f, back, size, 0), (ssize_t)size);
	cr_assert(memcmp(back, data, size) == 0);
	omni_assert_ok(omni__docker_remote_release(f));
	free(data);
	free(back);
}

struct counted {
	int n;
	int bad;
};

static int count_entry(const char *name, const struct stat *st, void *payload)
{
	struct counted *c = payload;
	unsigned int i;

	if (sscanf(name, "entry-%u", &i) != 1 || !S_ISREG(st->st_mode) ||
	    st->st_size != (off_t)(i % 100))
		c->bad++;
	c->n++;
	return 0;
}

Test(docker_remote, listings_of_thousands)
{
	struct omni_backend *b = remote_started();
	char p[PATH_MAX], name[64];
	struct counted c = { 0 };

	host_path(p, "many");
	cr_assert(mkdir(p, 0755) == 0);
	for (unsigned int i = 0; i < 5000; i++) {
		omni_test_fmt(name, sizeof(name), "%s/entry-%u", p, i);
		char content[100];
		memset(content, 'c', sizeof(content));
		omni_test_write_host(name, content, i % 100);
	}
	omni_assert_ok(omni__docker_remote_readdir(b, "many", count_entry, &c));
	cr_assert_eq(c.n, 5000);
	cr_assert_eq(c.bad, 0);
}

/* --- the watch --------------------------------------------------------------
 */

struct events {
	pthread_mutex_t lock;
	char path[512][128];
	bool has[512];
	off_t size[512];
	int n, ready, lost;
};

static struct events ev = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_change(const char *path, const struct stat *st, void *payload)
{
	struct events *e = payload;

	pthread_mutex_lock(&e->lock);
	if (!path) {
		e->lost++;
	} else if (!path[0]) {
		e->ready++;
	} else if (e->n < 512) {
		snprintf(e->path[e->n], sizeof(e->path[0]), "%s", path);
		e->has[e->n] = st != NULL;
		e->size[e->n] = st ? st->st_size : -1;
		e->n++;
	}
	pthread_mutex_unlock(&e->lock);
}

/* Has an event for path come, with attributes (want 1), without (0), or
 * either (-1)? */
static bool seen(const char *path, int want)
{
	bool found = false;

	pthread_mutex_lock(&ev.lock);
	for (int i = 0; i < ev.n && !found; i++)
		found = strcmp(ev.path[i], path) == 0 &&
		        (want < 0 || ev.has[i] == (want == 1));
	pthread_mutex_unlock(&ev.lock);
	return found;
}

static void wait_seen(const char *path, int want)
{
	for (int i = 0; i < 200 && !seen(path, want); i++)
		usleep(50 * 1000);
	cr_assert(seen(path, want), "no event for %s (want %d)", path, want);
}

Test(docker_remote, the_watch_reports_changes_made_in_the_container)
{
	struct omni_backend *b = remote_started();

	omni_assert_ok(omni__docker_remote_watch(b, on_change, &ev));
	for (int i = 0; i < 200; i++) {
		pthread_mutex_lock(&ev.lock);
		int ready = ev.ready;
		pthread_mutex_unlock(&ev.lock);
		if (ready)
			break;
		usleep(20 * 1000);
	}
	cr_assert_eq(ev.ready, 1, "the watch did not start");
	dk_cmd_is(b,
	          "mkdir -p w/x/y && echo hi > w/x/y/f && mv w/x/y/f w/x/y/g "
	          "&& echo 12345678 > w/t && mkdir w/x/y/deep && "
	          "echo z > w/x/y/deep/z && echo ok",
	          "ok\n");
	wait_seen("w", 1);
	wait_seen("w/x/y/g", 1);
	wait_seen("w/x/y/f", 0);
	wait_seen("w/x/y/deep/z", 1);
	wait_seen("w/t", 1);
	dk_cmd_is(b, "rm w/x/y/g && mv w/t w/u && chmod 600 w/u && echo ok",
	          "ok\n");
	wait_seen("w/x/y/g", 0);
	wait_seen("w/u", 1);
	/* The size an event carries is the file's size after the change. */
	pthread_mutex_lock(&ev.lock);
	off_t last = -2;
	for (int i = 0; i < ev.n; i++)
		if (strcmp(ev.path[i], "w/u") == 0 && ev.has[i])
			last = ev.size[i];
	pthread_mutex_unlock(&ev.lock);
	cr_assert_eq(last, 9);
	/* Nothing names a path outside, or a malformed one. */
	pthread_mutex_lock(&ev.lock);
	for (int i = 0; i < ev.n; i++)
		cr_assert(omni__files_path_ok(ev.path[i]) && ev.path[i][0],
		          "%s", ev.path[i]);
	pthread_mutex_unlock(&ev.lock);
	omni__docker_remote_watch_stop(rr);
	cr_assert_eq(ev.lost, 0);
}

/* --- 20 000 random operations ----------------------------------------------
 */

static unsigned long long rnd_state;

static unsigned int rnd(unsigned int n)
{
	rnd_state = rnd_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned int)((rnd_state >> 33) % n);
}

/* The state of a run: the file through the protocol (f, named names[cur])
 * and its reference, a local file (ref). */
struct run {
	struct omni_backend *b;
	struct omni_file *f;
	const char *names[2];
	int cur, ref;
	off_t size;
	unsigned char *buf, *want;
};

#define RUN_MAX (4u << 20)

static void op_write(struct run *r, int op)
{
	off_t off = rnd(RUN_MAX);
	size_t n = rnd(10) == 0 ? rnd(2u << 20) + 1 : rnd(64u << 10) + 1;

	for (size_t i = 0; i < n; i++)
		r->buf[i] = (unsigned char)rnd(256);
	cr_assert_eq(omni__docker_remote_write(r->f, r->buf, n, off),
	             (ssize_t)n, "op %d: %s", op, omni_error_last());
	cr_assert_eq(pwrite(r->ref, r->buf, n, off), (ssize_t)n);
	if (off + (off_t)n > r->size)
		r->size = off + (off_t)n;
}

static void op_truncate(struct run *r)
{
	off_t to = rnd(RUN_MAX);

	if (rnd(2)) {
		omni_assert_ok(omni__docker_remote_ftruncate(r->f, to));
	} else {
		omni_assert_ok(omni__docker_remote_flush(r->f));
		omni_assert_ok(
		    omni__docker_remote_truncate(r->b, r->names[r->cur], to));
	}
	cr_assert(ftruncate(r->ref, to) == 0);
	r->size = to;
}

static void op_rename(struct run *r)
{
	omni_assert_ok(omni__docker_remote_release(r->f));
	omni_assert_ok(omni__docker_remote_rename(r->b, r->names[r->cur],
	                                          r->names[!r->cur], 0));
	r->cur = !r->cur;
	omni_assert_ok(
	    omni__docker_remote_open(r->b, r->names[r->cur], O_RDWR, 0, &r->f));
}

static void op_read(struct run *r, int op)
{
	off_t off = rnd(RUN_MAX + 65536);
	size_t n = rnd(5) == 0 ? rnd(2u << 20) + 1 : rnd(64u << 10) + 1;
	ssize_t got = omni__docker_remote_read(r->f, r->buf, n, off);
	ssize_t exp = pread(r->ref, r->want, n, off);

	cr_assert_eq(got, exp,
	             "op %d: read %zu at %lld: %zd, expected %zd (%s)", op, n,
	             (long long)off, got, exp, omni_error_last());
	cr_assert(got <= 0 || memcmp(r->buf, r->want, (size_t)got) == 0,
	          "op %d: read %zu at %lld: content differs", op, n,
	          (long long)off);
}

/* The whole file as the agent has it, into a malloc'd buffer. */
static unsigned char *whole_remote(struct run *r, size_t *len)
{
	struct omni_file *f;
	unsigned char *p = malloc((size_t)r->size + 1);

	cr_assert(p);
	omni_assert_ok(
	    omni__docker_remote_open(r->b, r->names[r->cur], O_RDONLY, 0, &f));
	ssize_t n = omni__docker_remote_read(f, p, (size_t)r->size + 1, 0);
	cr_assert(n >= 0, "%s", omni_error_last());
	omni_assert_ok(omni__docker_remote_release(f));
	*len = (size_t)n;
	return p;
}

/*
 * 20 000 operations (45% writes, 10% truncates, 5% renames, 40% reads at
 * random offsets and sizes) through the protocol, mirrored on a local
 * reference file; every read is compared, and at the end the whole file
 * (from the host side of the bind mount when host_side, else read back
 * through the protocol).
 */
static void random_ops(struct omni_backend *b, struct omni__docker_remote *rem,
                       bool host_side)
{
	struct run r = { .b = b, .names = { "r-a", "r-b" } };
	const char *env = getenv("OMNI_TEST_SEED");
	unsigned long long seed = env ? strtoull(env, NULL, 0) : 20261203ULL;
	char ref_path[PATH_MAX];
	struct timespec t0, t1;

	r.buf = malloc(2u << 20);
	r.want = malloc(2u << 20);
	cr_assert(r.buf && r.want);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rnd_state = seed;
	fprintf(stderr, "docker_remote random operations: seed %llu\n", seed);
	omni_test_fmt(ref_path, sizeof(ref_path), "%s/reference", dk_fx.tmp);
	r.ref = open(ref_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert(r.ref >= 0);
	omni_assert_ok(omni__docker_remote_open(
	    b, r.names[0], O_RDWR | O_CREAT | O_TRUNC, 0644, &r.f));
	for (int op = 0; op < 20000; op++) {
		unsigned int kind = rnd(100);
		if (kind < 45)
			op_write(&r, op);
		else if (kind < 55)
			op_truncate(&r);
		else if (kind < 60)
			op_rename(&r);
		else
			op_read(&r, op);
	}
	struct stat st;
	omni_assert_ok(omni__docker_remote_fstat(r.f, &st));
	cr_assert_eq(st.st_size, r.size);
	omni_assert_ok(omni__docker_remote_release(r.f));

	size_t len;
	unsigned char *got =
	    host_side ? (unsigned char *)host_read(r.names[r.cur], &len)
	              : whole_remote(&r, &len);
	cr_assert_eq((off_t)len, r.size);
	unsigned char *whole = malloc(len + 1);
	cr_assert(whole);
	cr_assert_eq(pread(r.ref, whole, len, 0), (ssize_t)len);
	cr_assert(len == 0 || memcmp(got, whole, len) == 0);

	struct omni__docker_remote_counters c;
	omni__docker_remote_counters(rem, &c);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fprintf(stderr,
	        "docker_remote random operations: %llu requests, %llu MiB "
	        "up, %llu MiB down, %.2f s\n",
	        c.requests, c.bytes_up >> 20, c.bytes_down >> 20,
	        (double)(t1.tv_sec - t0.tv_sec) +
	            (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	free(whole);
	free(got);
	close(r.ref);
	free(r.buf);
	free(r.want);
}

Test(docker_remote, twenty_thousand_random_operations)
{
	struct omni_backend *b = remote_started();

	random_ops(b, rr, true);
}

/* Agent mode (docker.c with --docker-files=agent): the backend's own
 * sessions, each a channel of the multiplexed exec stream, with the
 * workspace in a volume. */
Test(docker_remote, twenty_thousand_random_operations_in_agent_mode)
{
	struct omni_backend_options o;

	dk_require_docker();
	dk_fx_paths();
	dk_default_opts(&o);
	dk_dopts.files = "agent";
	struct omni_backend *b = dk_fx_start(0, &o);
	struct omni__docker_remote *rem =
	    ((struct omni__docker_backend *)b)->remote;
	cr_assert(rem, "agent mode without file sessions (start must call "
	               "omni__docker_remote_attach)");
	random_ops(b, rem, false);
}

/* --- the remote cache in front ------------------------------------------- */

/* The path slots alone, on an instance that shares the started backend's
 * file sessions: what the agent-mode table gives the cache. */
static int inner_start(struct omni_backend *b)
{
	(void)b;
	return 0;
}

static int inner_shutdown(struct omni_backend *b)
{
	omni__docker_remote_watch_stop(
	    ((struct omni__docker_backend *)b)->remote);
	return 0;
}

static void inner_destroy(struct omni_backend *b)
{
	omni__backend_finish(b);
	free(b);
}

static const struct omni_backend_ops agent_files_ops = {
	.version = OMNI_BACKEND_OPS_VERSION,
	.name = "docker-agent-files",
	.caps = OMNI_CAP_REMOTE | OMNI__DOCKER_REMOTE_CAPS,
	.start = inner_start,
	.shutdown = inner_shutdown,
	.destroy = inner_destroy,
	OMNI__DOCKER_REMOTE_OPS,
};

Test(docker_remote, the_cache_in_front_of_the_protocol)
{
	struct omni_backend *b = remote_started(), *c;
	struct omni__docker_backend *in = calloc(1, sizeof(*in));
	struct omni__cache_options o = OMNI__CACHE_OPTIONS_INIT;
	struct omni_dir_list l;
	char *data = NULL, p[PATH_MAX];
	size_t len;

	cr_assert(in);
	omni_assert_ok(omni__backend_init(&in->host.base, &agent_files_ops,
	                                  dk_fx.project, "/workspace", NULL));
	in->remote = rr;
	omni_assert_ok(omni__cache_wrap(&c, &in->host.base, &o));
	omni_assert_ok(omni_backend_start(c));

	/* Written through the cache: in the container's workspace. */
	omni_assert_ok(omni_backend_write_file(c, "/workspace/notes/a.txt",
	                                       "through the cache", 17));
	data = host_read("notes/a.txt", &len);
	cr_assert_eq(len, 17);
	cr_assert_eq(memcmp(data, "through the cache", 17), 0);
	free(data);
	dk_cmd_is(b, "cat notes/a.txt", "through the cache");

	/* Made in the container: read, listed, and a change seen through
	 * the watch (the cache trusts what it has for a minute otherwise). */
	dk_cmd_is(b, "mkdir -p out && printf one > out/f && echo ok", "ok\n");
	omni_assert_ok(omni_backend_read_file(c, "out/f", &data, &len));
	cr_assert_str_eq(data, "one");
	free(data);
	omni_assert_ok(omni_backend_list_directory(c, "out", false, &l));
	cr_assert_eq(l.count, 1);
	omni_dir_list_finish(&l);
	dk_cmd_is(b, "printf two-two > out/f && echo ok", "ok\n");
	bool changed = false;
	for (int i = 0; i < 100 && !changed; i++) {
		omni_assert_ok(omni_backend_read_file(c, "out/f", &data, &len));
		changed = strcmp(data, "two-two") == 0;
		free(data);
		if (!changed)
			usleep(50 * 1000);
	}
	cr_assert(changed, "the change made in the container was not seen");

	/* Name operations through the cache. */
	omni_assert_ok(omni_backend_move_file(c, "out/f", "out/g"));
	host_path(p, "out/g");
	cr_assert(omni_test_host_exists(p));
	omni_assert_ok(omni_backend_delete_file(c, "out/g"));
	cr_assert_not(omni_test_host_exists(p));
	omni_backend_free(c);
}
