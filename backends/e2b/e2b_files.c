/*
 * backends/e2b/e2b_files.c - the e2b backend's filesystem operations.
 *
 * Paths: the workspace-relative "a/b" is "/tmp/workspace/a/b" in the
 * sandbox (omni__e2b_abs), and every request names its user "user".
 *
 * Endpoints and what they give:
 *	stat      filesystem.Filesystem/Stat          EntryInfo (lstat)
 *	readdir   filesystem.Filesystem/ListDir d=1   every entry with its
 *	                                              attributes, one request
 *	mkdir     filesystem.Filesystem/MakeDir       (+ chmod when the mode
 *	                                              is not 0755)
 *	rename    filesystem.Filesystem/Move          RENAME_NOREPLACE checks
 *	                                              with Stat first;
 *	                                              RENAME_EXCHANGE: EINVAL
 *	unlink    filesystem.Filesystem/Remove        envd removes directories
 *	                                              too (OMNI_CAP_REMOVE_DIRS)
 *	                                              and a missing path is a
 *	                                              success
 *	content   GET /files, POST /files (octet-stream)
 *	watch     filesystem.Filesystem/WatchDir, recursive, with the
 *	          entries, on a thread: each event gives the listener the
 *	          path (relative to /tmp/workspace) and its attributes; ""
 *	          when the stream (re)starts, NULL when it is lost (it
 *	          reconnects with a backoff of 0.5 s doubling to 10 s)
 *
 * Operations envd has no RPC for run a command in the sandbox, argv form
 * (no shell, so no quoting), as the user, with LC_ALL=C; a failing
 * command's stderr gives the errno (omni__e2b_run_error):
 *	rmdir     rmdir -- P                 (exact ENOTEMPTY semantics)
 *	chmod     chmod MODE -- P
 *	utimens   touch -h -c [-a|-m] -d @S.N -- P   (one per time given;
 *	                                     both together when equal)
 *	symlink   ln -s -T -- TARGET P
 *	readlink  readlink -n -- P           (Stat's symlinkTarget is the
 *	                                     resolved path, not the link text)
 *	truncate  truncate -s N -- P
 *	statfs    stat -f -c ... /tmp/workspace   (kept 30 s)
 * and some fail honestly: link (hard links) -EPERM, as on file systems
 * without them (git falls back to rename); chown -EPERM (commands run as
 * the sandbox user); mknod of anything but a regular file is refused
 * above us.
 *
 * Files: an open file is a whole-file copy in an unlinked temporary file
 * (O_TMPFILE, mode 0600): open downloads it (unless O_TRUNC), reads and
 * writes go to the copy, flush/fsync/release upload it when it changed
 * (one POST of the whole file). A file opened with O_CREAT whose mode is
 * not 0644 gets that mode with chmod after its first upload (envd creates
 * files 0644). A failed upload leaves the copy dirty and returns the
 * error; the next flush tries again, but release does not when the last
 * flush failed on the same content (its caller was told already).
 * file_fd gives the copy's descriptor, so the FUSE layer can splice from
 * it. A download has no mode: fstat says 0644 until the caller knows
 * better (the cache keeps the listing's attributes).
 *
 * Locking: a file's lock guards its flags and attributes; its upload lock
 * keeps two uploads of the same file from racing (a later one could land
 * first); writes never wait for an upload: one that happens during it
 * leaves the file dirty. The watch thread's state is under watch_lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/tempfile.h"
#include "e2b/e2b.h"
#include "core/http.h"
#include "omni/error.h"
#include "omni/log.h"

#define FS_SVC "/filesystem.Filesystem/"

/* --- metadata ------------------------------------------------------------- */

/* A call about path, whose absolute form goes into abs (PATH_MAX bytes):
 * the message is {"path": abs} (and "depth" when not 0), and abs is in the
 * error messages; *reply as omni__e2b_rpc()'s out. */
static int path_rpc(struct e2b_backend *eb, enum e2b_method m,
                    const char *rpc_path, const char *path, char *abs,
                    int depth, cJSON **reply)
{
	cJSON *msg;
	int rc;

	if ((rc = omni__e2b_abs(path, abs, PATH_MAX)) < 0)
		return rc;
	msg = cJSON_CreateObject();
	if (!msg || !cJSON_AddStringToObject(msg, "path", abs) ||
	    (depth && !cJSON_AddNumberToObject(msg, "depth", depth))) {
		cJSON_Delete(msg);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	rc = omni__e2b_rpc(eb, m, rpc_path, msg, abs, reply);
	cJSON_Delete(msg);
	return rc;
}

int omni__e2b_stat(struct omni_backend *b, const char *path, struct stat *st)
{
	struct e2b_backend *eb = e2b_of(b);
	char abs[PATH_MAX];
	cJSON *reply = NULL;
	int rc = path_rpc(eb, E2B_M_STAT, FS_SVC "Stat", path, abs, 0, &reply);

	if (rc < 0)
		return rc;
	const cJSON *entry = cJSON_GetObjectItemCaseSensitive(reply, "entry");
	rc = omni__e2b_entry_to_stat(entry, st);
	cJSON_Delete(reply);
	return rc;
}

int omni__e2b_readdir(struct omni_backend *b, const char *path,
                      omni_dirent_cb cb, void *payload)
{
	struct e2b_backend *eb = e2b_of(b);
	char abs[PATH_MAX];
	cJSON *reply = NULL;
	int rc;

	rc =
	    path_rpc(eb, E2B_M_LISTDIR, FS_SVC "ListDir", path, abs, 1, &reply);
	if (rc == -EINVAL && strstr(omni_error_last(), "not a directory"))
		rc = omni_error_set(-ENOTDIR, "e2b: %s: not a directory", abs);
	if (rc < 0)
		return rc;
	const cJSON *entries =
	    cJSON_GetObjectItemCaseSensitive(reply, "entries");
	const cJSON *e;
	cJSON_ArrayForEach(e, entries)
	{
		const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
		struct stat st;
		if (!cJSON_IsString(name) || !name->valuestring[0] ||
		    strchr(name->valuestring, '/')) {
			rc = omni_error_set(-EPROTO,
			                    "e2b: ListDir %s: bad entry", abs);
			break;
		}
		if ((rc = omni__e2b_entry_to_stat(e, &st)) < 0)
			break;
		if ((rc = cb(name->valuestring, &st, payload)) != 0)
			break;
	}
	cJSON_Delete(reply);
	return rc;
}

int omni__e2b_make_workdir(struct e2b_backend *eb)
{
	char abs[PATH_MAX];
	int rc =
	    path_rpc(eb, E2B_M_MAKEDIR, FS_SVC "MakeDir", "", abs, 0, NULL);

	if (rc == -EEXIST) {
		omni_error_clear();
		rc = 0;
	}
	return rc;
}

int omni__e2b_mkdir(struct omni_backend *b, const char *path, mode_t mode)
{
	struct e2b_backend *eb = e2b_of(b);
	char abs[PATH_MAX];
	int rc;

	rc = path_rpc(eb, E2B_M_MAKEDIR, FS_SVC "MakeDir", path, abs, 0, NULL);
	/* envd says invalid_argument when a file has the name. */
	if (rc == -EINVAL)
		rc = omni_error_set(-EEXIST, "e2b: %s: exists", abs);
	if (rc < 0)
		return rc;
	/* MakeDir makes 0755 directories. */
	if ((mode & 07777) != 0755 && (mode & 07777) != 0)
		rc = omni__e2b_chmod(b, path, mode);
	return rc;
}

int omni__e2b_unlink(struct omni_backend *b, const char *path)
{
	struct e2b_backend *eb = e2b_of(b);
	char abs[PATH_MAX];

	if (!path[0])
		return omni_error_set(-EBUSY, "e2b: the workspace cannot go");
	return path_rpc(eb, E2B_M_REMOVE, FS_SVC "Remove", path, abs, 0, NULL);
}

int omni__e2b_rename(struct omni_backend *b, const char *from, const char *to,
                     unsigned int flags)
{
	struct e2b_backend *eb = e2b_of(b);
	char src[PATH_MAX], dst[PATH_MAX];
	struct stat st;
	cJSON *msg;
	int rc;

	if (flags & ~1u)
		return omni_error_set(-EINVAL,
		                      "e2b: rename: RENAME_EXCHANGE is not "
		                      "supported");
	if ((rc = omni__e2b_abs(from, src, sizeof(src))) < 0 ||
	    (rc = omni__e2b_abs(to, dst, sizeof(dst))) < 0)
		return rc;
	if (flags & 1u) { /* RENAME_NOREPLACE */
		rc = omni__e2b_stat(b, to, &st);
		if (rc == 0)
			return omni_error_set(-EEXIST, "e2b: %s exists", dst);
		if (rc != -ENOENT)
			return rc;
	}
	msg = cJSON_CreateObject();
	if (!msg || !cJSON_AddStringToObject(msg, "source", src) ||
	    !cJSON_AddStringToObject(msg, "destination", dst)) {
		cJSON_Delete(msg);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	rc = omni__e2b_rpc(eb, E2B_M_MOVE, FS_SVC "Move", msg, src, NULL);
	cJSON_Delete(msg);
	if (rc == -EIO) {
		/* rename(2)'s own errors arrive as "internal". */
		const char *m = omni_error_last();
		if (strstr(m, "directory not empty"))
			rc = -ENOTEMPTY;
		else if (strstr(m, "is a directory"))
			rc = -EISDIR;
		else if (strstr(m, "not a directory"))
			rc = -ENOTDIR;
		else if (strstr(m, "invalid argument"))
			rc = -EINVAL;
		if (rc != -EIO)
			omni_error_set(rc, "e2b: rename %s %s: %s", src, dst,
			               strerror(-rc));
	}
	return rc;
}

/* Run a helper command on one path: argv is the command without the
 * path, "--" and the path are appended. */
static int run_on(struct omni_backend *b, const char *path,
                  const char *const *argv, const char *what)
{
	struct e2b_backend *eb = e2b_of(b);
	char abs[PATH_MAX];
	const char *full[16];
	char *err = NULL;
	size_t n = 0;
	int rc;

	if ((rc = omni__e2b_abs(path, abs, sizeof(abs))) < 0)
		return rc;
	for (; argv[n] && n < 13; n++)
		full[n] = argv[n];
	full[n++] = "--";
	full[n++] = abs;
	full[n] = NULL;
	rc = omni__e2b_run(eb, full, NULL, &err);
	if (rc > 0) {
		char label[PATH_MAX + 64];
		snprintf(label, sizeof(label), "%s %s", what, abs);
		rc = omni__e2b_run_error(rc, err, label);
	}
	free(err);
	return rc;
}

int omni__e2b_rmdir(struct omni_backend *b, const char *path)
{
	if (!path[0])
		return omni_error_set(-EBUSY, "e2b: the workspace cannot go");
	return run_on(b, path, (const char *const[]){ "rmdir", NULL }, "rmdir");
}

int omni__e2b_chmod(struct omni_backend *b, const char *path, mode_t mode)
{
	char m[16];

	snprintf(m, sizeof(m), "%04o", (unsigned int)(mode & 07777));
	return run_on(b, path, (const char *const[]){ "chmod", m, NULL },
	              "chmod");
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

int omni__e2b_utimens(struct omni_backend *b, const char *path,
                      const struct timespec ts[2])
{
	char when[2][64];
	struct timespec t[2];
	struct timespec now;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &now);
	for (int i = 0; i < 2; i++) {
		t[i] = ts[i];
		if (t[i].tv_nsec == UTIME_NOW)
			t[i] = now;
		snprintf(when[i], sizeof(when[i]), "@%lld.%09ld",
		         (long long)t[i].tv_sec, t[i].tv_nsec);
	}
	bool a = ts[0].tv_nsec != UTIME_OMIT, m = ts[1].tv_nsec != UTIME_OMIT;
	if (a && m && same_time(&t[0], &t[1]))
		return run_on(b, path,
		              (const char *const[]){ "touch", "-h", "-c", "-d",
		                                     when[0], NULL },
		              "touch");
	if (a)
		rc = run_on(b, path,
		            (const char *const[]){ "touch", "-h", "-c", "-a",
		                                   "-d", when[0], NULL },
		            "touch");
	if (rc == 0 && m)
		rc = run_on(b, path,
		            (const char *const[]){ "touch", "-h", "-c", "-m",
		                                   "-d", when[1], NULL },
		            "touch");
	return rc;
}

int omni__e2b_truncate(struct omni_backend *b, const char *path, off_t size)
{
	char n[32];

	snprintf(n, sizeof(n), "%lld", (long long)size);
	return run_on(b, path,
	              (const char *const[]){ "truncate", "-s", n, NULL },
	              "truncate");
}

int omni__e2b_symlink(struct omni_backend *b, const char *target,
                      const char *path)
{
	struct e2b_backend *eb = e2b_of(b);
	char abs[PATH_MAX], label[PATH_MAX + 16];
	char *err = NULL;
	int rc;

	if ((rc = omni__e2b_abs(path, abs, sizeof(abs))) < 0)
		return rc;
	rc = omni__e2b_run(
	    eb,
	    (const char *const[]){ "ln", "-s", "-T", "--", target, abs, NULL },
	    NULL, &err);
	if (rc > 0) {
		snprintf(label, sizeof(label), "ln -s %s", abs);
		rc = omni__e2b_run_error(rc, err, label);
	}
	free(err);
	return rc;
}

ssize_t omni__e2b_readlink(struct omni_backend *b, const char *path, char *buf,
                           size_t size)
{
	struct e2b_backend *eb = e2b_of(b);
	char abs[PATH_MAX], label[PATH_MAX + 16];
	char *out = NULL, *err = NULL;
	int rc;

	if ((rc = omni__e2b_abs(path, abs, sizeof(abs))) < 0)
		return rc;
	rc = omni__e2b_run(
	    eb, (const char *const[]){ "readlink", "-n", "--", abs, NULL },
	    &out, &err);
	if (rc > 0) {
		snprintf(label, sizeof(label), "readlink %s", abs);
		/* readlink(1) prints nothing for a non-link. */
		rc = err && *err ? omni__e2b_run_error(rc, err, label)
		                 : omni_error_set(
		                       -EINVAL, "e2b: %s: not a symlink", abs);
	}
	free(err);
	if (rc < 0) {
		free(out);
		return rc;
	}
	size_t len = out ? strlen(out) : 0;
	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(buf, out ? out : "", n);
		buf[n] = '\0';
	}
	free(out);
	return (ssize_t)len;
}

int omni__e2b_statfs(struct omni_backend *b, struct statvfs *st)
{
	struct e2b_backend *eb = e2b_of(b);
	char *out = NULL, *err = NULL;
	unsigned long long bsize, blocks, bfree, bavail, files, ffree, namemax;
	int rc;

	pthread_mutex_lock(&eb->statfs_lock);
	if (eb->statfs_at_ms && omni__now_ms() - eb->statfs_at_ms < 30000) {
		*st = eb->statfs_cache;
		pthread_mutex_unlock(&eb->statfs_lock);
		return 0;
	}
	pthread_mutex_unlock(&eb->statfs_lock);
	rc = omni__e2b_run(eb,
	                   (const char *const[]){ "stat", "-f", "-c",
	                                          "%S %b %f %a %c %d %l",
	                                          E2B_WORKDIR, NULL },
	                   &out, &err);
	if (rc > 0)
		rc = omni__e2b_run_error(rc, err, "stat -f");
	if (rc == 0 &&
	    (!out ||
	     sscanf(out, "%llu %llu %llu %llu %llu %llu %llu", &bsize, &blocks,
	            &bfree, &bavail, &files, &ffree, &namemax) != 7))
		rc = omni_error_set(-EPROTO, "e2b: statfs: unexpected '%s'",
		                    out ? out : "");
	free(out);
	free(err);
	if (rc < 0)
		return rc;
	memset(st, 0, sizeof(*st));
	st->f_bsize = st->f_frsize = (unsigned long)bsize;
	st->f_blocks = blocks;
	st->f_bfree = bfree;
	st->f_bavail = bavail;
	st->f_files = files;
	st->f_ffree = st->f_favail = ffree;
	st->f_namemax = (unsigned long)namemax;
	pthread_mutex_lock(&eb->statfs_lock);
	eb->statfs_cache = *st;
	eb->statfs_at_ms = omni__now_ms();
	pthread_mutex_unlock(&eb->statfs_lock);
	return 0;
}

/* --- files ---------------------------------------------------------------- */

struct e2b_file {
	struct omni_file base;
	int fd;
	int flags;
	char abs[PATH_MAX];
	pthread_mutex_t lock;    /* dirty, wgen, st, chmod_after */
	pthread_mutex_t up_lock; /* one upload at a time */
	bool dirty;
	uint64_t wgen;
	mode_t chmod_after; /* 0, or a mode to set after the next upload */
	struct stat st;
	/* The last upload failed with this error at this wgen. */
	int failed_err;
	uint64_t failed_gen;
};

static struct e2b_file *file_of(struct omni_file *f)
{
	return (struct e2b_file *)f;
}

/* The whole content through envd's /files: downloaded into f->fd (GET),
 * or uploaded from it (POST, size bytes). A reply other than 200 (a
 * download) or 2xx (an upload) is an error "download PATH: ..." or
 * "upload PATH: ...". resp is always set: release it with
 * omni__e2b_resp_finish(). */
static int transfer(struct e2b_backend *eb, struct e2b_file *f, bool up,
                    off_t size, struct e2b_http_resp *resp)
{
	char esc[PATH_MAX * 3], url[PATH_MAX * 3 + 64];
	int rc;

	memset(resp, 0, sizeof(*resp));
	if ((rc = omni__http_escape(f->abs, esc, sizeof(esc))) < 0)
		return rc;
	snprintf(url, sizeof(url), "/files?path=%s&username=%s", esc, E2B_USER);
	struct e2b_http_req req = {
		.m = up ? E2B_M_FILES_POST : E2B_M_FILES_GET,
		.method = up ? "POST" : "GET",
		.path = url,
		.content_type = up ? "application/octet-stream" : NULL,
		.in_fd = up ? f->fd : -1,
		.in_size = up ? size : 0,
		.out_fd = up ? -1 : f->fd,
		.transfer = true,
	};
	rc = omni__e2b_http(eb, &req, resp);
	if (rc == 0 && (up ? resp->status < 200 || resp->status >= 300
	                   : resp->status != 200)) {
		char label[PATH_MAX + 16];
		snprintf(label, sizeof(label), "%s %s",
		         up ? "upload" : "download", f->abs);
		rc = omni__e2b_reply_error(resp, label);
	}
	return rc;
}

static int download(struct e2b_backend *eb, struct e2b_file *f)
{
	struct e2b_http_resp resp;
	int rc = transfer(eb, f, false, 0, &resp);

	/* envd: 400 "path ... is a directory". */
	if (rc == -EINVAL && resp.status != 200 &&
	    strstr(omni_error_last(), "is a directory"))
		rc = omni_error_set(-EISDIR, "e2b: %s: is a directory", f->abs);
	if (rc == 0) {
		f->st.st_size = resp.written;
		if (resp.last_modified >= 0) {
			f->st.st_mtim.tv_sec = (time_t)resp.last_modified;
			f->st.st_mtim.tv_nsec = 0;
			f->st.st_ctim = f->st.st_atim = f->st.st_mtim;
		}
	}
	omni__e2b_resp_finish(&resp);
	return rc;
}

int omni__e2b_open(struct omni_backend *b, const char *path, int flags,
                   mode_t mode, struct omni_file **out)
{
	struct e2b_backend *eb = e2b_of(b);
	struct e2b_file *f;
	struct stat st;
	int rc;

	*out = NULL;
	if (!path[0])
		return omni_error_set(-EISDIR,
		                      "e2b: the workspace is a directory");
	if (!(f = calloc(1, sizeof(*f))))
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	f->base.backend = b;
	f->flags = flags;
	pthread_mutex_init(&f->lock, NULL);
	pthread_mutex_init(&f->up_lock, NULL);
	if ((rc = omni__e2b_abs(path, f->abs, sizeof(f->abs))) < 0)
		goto fail;
	f->fd = omni__temp_fd("omni-e2b");
	if (f->fd < 0) {
		rc = omni_error_set_errno(f->fd, "e2b: temporary file");
		goto fail;
	}
	clock_gettime(CLOCK_REALTIME, &f->st.st_mtim);
	f->st.st_atim = f->st.st_ctim = f->st.st_mtim;
	f->st.st_mode = S_IFREG | 0644;
	f->st.st_nlink = 1;
	f->st.st_uid = getuid();
	f->st.st_gid = getgid();
	f->st.st_blksize = 4096;
	f->st.st_ino = omni__e2b_ino(f->abs);
	if ((flags & O_CREAT) && (flags & O_EXCL)) {
		rc = omni__e2b_stat(b, path, &st);
		if (rc == 0) {
			rc = omni_error_set(-EEXIST, "e2b: %s exists", f->abs);
			goto fail;
		}
		if (rc != -ENOENT)
			goto fail;
		omni_error_clear();
		flags |= O_TRUNC;
	}
	if (flags & O_TRUNC) {
		/* The whole content is replaced: nothing to fetch. */
		f->dirty = true;
	} else {
		rc = download(eb, f);
		if (rc == -ENOENT && (flags & O_CREAT)) {
			omni_error_clear();
			f->dirty = true;
			flags |= O_TRUNC; /* it is new */
			rc = 0;
		}
		if (rc < 0)
			goto fail;
	}
	if ((flags & O_CREAT) && (flags & O_TRUNC)) {
		mode_t m = mode & 07777;
		if (m && m != 0644)
			f->chmod_after = m | S_IFREG;
		if (m)
			f->st.st_mode = S_IFREG | m;
	}
	*out = &f->base;
	return 0;
fail:
	if (f->fd > 0)
		close(f->fd);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->up_lock);
	free(f);
	return rc;
}

ssize_t omni__e2b_read(struct omni_file *of, void *buf, size_t size, off_t off)
{
	struct e2b_file *f = file_of(of);
	ssize_t n;

	do {
		n = pread(f->fd, buf, size, off);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? omni_error_set_errno(-errno, "e2b: read %s", f->abs) : n;
}

static void touch_locked(struct e2b_file *f)
{
	clock_gettime(CLOCK_REALTIME, &f->st.st_mtim);
	f->st.st_ctim = f->st.st_mtim;
	f->dirty = true;
	f->wgen++;
}

ssize_t omni__e2b_write(struct omni_file *of, const void *buf, size_t size,
                        off_t off)
{
	struct e2b_file *f = file_of(of);
	ssize_t n;

	if (f->flags & O_APPEND) {
		struct stat st;
		if (fstat(f->fd, &st) == 0)
			off = st.st_size;
	}
	do {
		n = pwrite(f->fd, buf, size, off);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return omni_error_set_errno(
		    -errno, "e2b: write %s (local copy)", f->abs);
	pthread_mutex_lock(&f->lock);
	touch_locked(f);
	pthread_mutex_unlock(&f->lock);
	return n;
}

int omni__e2b_fstat(struct omni_file *of, struct stat *st)
{
	struct e2b_file *f = file_of(of);
	struct stat local;

	if (fstat(f->fd, &local) < 0)
		return omni_error_set_errno(-errno, "e2b: fstat %s", f->abs);
	pthread_mutex_lock(&f->lock);
	*st = f->st;
	pthread_mutex_unlock(&f->lock);
	st->st_size = local.st_size;
	st->st_blocks = local.st_blocks;
	return 0;
}

int omni__e2b_ftruncate(struct omni_file *of, off_t size)
{
	struct e2b_file *f = file_of(of);

	if (ftruncate(f->fd, size) < 0)
		return omni_error_set_errno(-errno, "e2b: truncate %s", f->abs);
	pthread_mutex_lock(&f->lock);
	touch_locked(f);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int omni__e2b_fallocate(struct omni_file *of, int mode, off_t off, off_t len)
{
	struct e2b_file *f = file_of(of);

	if (fallocate(f->fd, mode, off, len) < 0)
		return omni_error_set_errno(-errno, "e2b: fallocate %s",
		                            f->abs);
	pthread_mutex_lock(&f->lock);
	touch_locked(f);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

int omni__e2b_file_fd(struct omni_file *of)
{
	return file_of(of)->fd;
}

/* Upload the copy when it changed. */
static int upload(struct e2b_file *f)
{
	struct e2b_backend *eb = e2b_of(f->base.backend);
	struct e2b_http_resp resp;
	struct stat local;
	uint64_t gen;
	mode_t chmod_mode;
	int rc;

	pthread_mutex_lock(&f->up_lock);
	pthread_mutex_lock(&f->lock);
	bool dirty = f->dirty;
	gen = f->wgen;
	chmod_mode = f->chmod_after;
	pthread_mutex_unlock(&f->lock);
	if (!dirty) {
		pthread_mutex_unlock(&f->up_lock);
		return 0;
	}
	if (fstat(f->fd, &local) < 0) {
		rc = omni_error_set_errno(-errno, "e2b: fstat %s", f->abs);
		goto out;
	}
	rc = transfer(eb, f, true, local.st_size, &resp);
	omni__e2b_resp_finish(&resp);
	if (rc < 0)
		goto failed;
	if (chmod_mode) {
		/* envd makes new files 0644. */
		char rel[PATH_MAX];
		snprintf(rel, sizeof(rel), "%s",
		         f->abs + strlen(E2B_WORKDIR) +
		             (f->abs[strlen(E2B_WORKDIR)] == '/'));
		rc = omni__e2b_chmod(f->base.backend, rel, chmod_mode);
		if (rc < 0)
			goto failed;
	}
	pthread_mutex_lock(&f->lock);
	f->failed_err = 0;
	if (f->wgen == gen)
		f->dirty = false;
	f->chmod_after = 0;
	/* The reply names the file but carries no attributes: the copy's
	 * size, and the time of the upload as its modification time. */
	f->st.st_size = local.st_size;
	clock_gettime(CLOCK_REALTIME, &f->st.st_mtim);
	f->st.st_ctim = f->st.st_mtim;
	pthread_mutex_unlock(&f->lock);
	goto out;
failed:
	pthread_mutex_lock(&f->lock);
	f->failed_err = rc;
	f->failed_gen = gen;
	pthread_mutex_unlock(&f->lock);
out:
	pthread_mutex_unlock(&f->up_lock);
	return rc;
}

int omni__e2b_flush(struct omni_file *of)
{
	return upload(file_of(of));
}

int omni__e2b_fsync(struct omni_file *of, bool datasync)
{
	(void)datasync;
	return upload(file_of(of));
}

int omni__e2b_release(struct omni_file *of)
{
	struct e2b_file *f = file_of(of);
	int rc;

	/* A flush already failed on this very content and said so: do not
	 * try once more on the way out (the caller keeps its own copy). */
	pthread_mutex_lock(&f->lock);
	bool known_bad =
	    f->dirty && f->failed_err < 0 && f->failed_gen == f->wgen;
	rc = f->failed_err;
	pthread_mutex_unlock(&f->lock);
	if (known_bad)
		omni_error_set(rc,
		               "e2b: %s: not uploaded (the last upload "
		               "failed)",
		               f->abs);
	else
		rc = upload(f);

	close(f->fd);
	pthread_mutex_destroy(&f->lock);
	pthread_mutex_destroy(&f->up_lock);
	free(f);
	return rc;
}

/* --- WatchDir ------------------------------------------------------------- */

static void notify(struct e2b_backend *eb, const char *path,
                   const struct stat *st)
{
	omni_change_cb cb;
	void *payload;

	pthread_mutex_lock(&eb->watch_lock);
	cb = eb->watch_cb;
	payload = eb->watch_payload;
	pthread_mutex_unlock(&eb->watch_lock);
	if (cb)
		cb(path, st, payload);
}

/* One event: {"filesystem":{"name":"a/b","type":"EVENT_TYPE_WRITE",
 * "entry":{EntryInfo}}}; the entry comes with creations and changes. */
static void watch_event(struct e2b_backend *eb, const cJSON *msg)
{
	const cJSON *fsev = cJSON_GetObjectItemCaseSensitive(msg, "filesystem");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(fsev, "name");
	const cJSON *entry = cJSON_GetObjectItemCaseSensitive(fsev, "entry");
	struct stat st;
	bool have_st =
	    cJSON_IsObject(entry) && omni__e2b_entry_to_stat(entry, &st) == 0;

	if (!cJSON_IsString(name))
		return;
	atomic_fetch_add(&eb->watch_events, 1);
	const char *n = name->valuestring;
	/* Names are relative to the watched directory; take an absolute
	 * one under it apart too. */
	size_t wl = strlen(E2B_WORKDIR);
	if (strncmp(n, E2B_WORKDIR, wl) == 0 && (n[wl] == '/' || !n[wl]))
		n += wl + (n[wl] == '/');
	while (*n == '/')
		n++;
	notify(eb, n, have_st ? &st : NULL);
}

static void *watch_main(void *arg)
{
	struct e2b_backend *eb = arg;
	long backoff = 500;

	while (!atomic_load(&eb->watch_stop)) {
		struct e2b_stream *s = NULL;
		cJSON *msg = cJSON_CreateObject();
		int rc = -ENOMEM;

		if (msg && cJSON_AddStringToObject(msg, "path", E2B_WORKDIR) &&
		    cJSON_AddBoolToObject(msg, "recursive", 1) &&
		    cJSON_AddBoolToObject(msg, "includeEntry", 1))
			rc = omni__e2b_stream_open(
			    &s, eb, E2B_M_WATCHDIR, FS_SVC "WatchDir", msg,
			    eb->req_timeout_ms, 30000, 0);
		cJSON_Delete(msg);
		if (rc == 0) {
			pthread_mutex_lock(&eb->watch_lock);
			eb->watch_stream = s;
			if (atomic_load(&eb->watch_stop))
				omni__e2b_stream_cancel(s);
			pthread_mutex_unlock(&eb->watch_lock);
		}
		bool started = false;
		while (rc == 0) {
			cJSON *m = NULL;
			rc = omni__e2b_stream_next(s, &m, -1);
			if (rc <= 0)
				break;
			rc = 0;
			if (cJSON_GetObjectItemCaseSensitive(m, "start")) {
				started = true;
				backoff = 500;
				atomic_store(&eb->watch_connected, true);
				/* Events may have been missed before. */
				notify(eb, "", NULL);
			} else if (cJSON_GetObjectItemCaseSensitive(
			               m, "filesystem")) {
				watch_event(eb, m);
			}
			cJSON_Delete(m);
		}
		if (rc == 0 && s) {
			const char *code, *text;
			rc = omni__e2b_stream_end(s, &code, &text);
			if (rc == 0)
				rc = -EPIPE;
		}
		pthread_mutex_lock(&eb->watch_lock);
		eb->watch_stream = NULL;
		pthread_mutex_unlock(&eb->watch_lock);
		omni__e2b_stream_free(s);
		if (atomic_load(&eb->watch_stop))
			break;
		atomic_fetch_add(&eb->watch_reconnects, 1);
		if (atomic_exchange(&eb->watch_connected, false) || started)
			notify(eb, NULL, NULL);
		omni_log(OMNI_LOG_DEBUG,
		         "e2b: watch ended (%s); again in %ld ms",
		         omni_error_last(), backoff);
		/* Sleep in small steps so a stop is quick. */
		for (long t = 0; t < backoff && !atomic_load(&eb->watch_stop);
		     t += 50)
			usleep(50 * 1000);
		backoff = backoff * 2 > 10000 ? 10000 : backoff * 2;
	}
	atomic_store(&eb->watch_connected, false);
	return NULL;
}

int omni__e2b_watch(struct omni_backend *b, omni_change_cb cb, void *payload)
{
	struct e2b_backend *eb = e2b_of(b);
	int rc = 0;

	pthread_mutex_lock(&eb->watch_lock);
	eb->watch_cb = cb;
	eb->watch_payload = payload;
	if (cb && !eb->watch_running) {
		atomic_store(&eb->watch_stop, false);
		rc = pthread_create(&eb->watch_thread, NULL, watch_main, eb);
		if (rc == 0)
			eb->watch_running = true;
		else
			rc = omni_error_set(-rc, "e2b: cannot start a thread");
	}
	pthread_mutex_unlock(&eb->watch_lock);
	return rc;
}

void omni__e2b_watch_stop(struct e2b_backend *eb)
{
	pthread_mutex_lock(&eb->watch_lock);
	bool running = eb->watch_running;
	atomic_store(&eb->watch_stop, true);
	omni__e2b_stream_cancel(eb->watch_stream);
	eb->watch_cb = NULL;
	eb->watch_running = false;
	pthread_mutex_unlock(&eb->watch_lock);
	if (running)
		pthread_join(eb->watch_thread, NULL);
}
