/*
 * backends/state/snapshot.c - the parts of a snapshot that the git and gcs
 * state managers share (see snapshot.h): the place of a project's state,
 * its lock, snapshot names and the content digest.
 *
 * FILES
 *	snapshot_scan.c   the ignore rules, the scan of a workspace, reading
 *	                  its files
 *	snapshot_apply.c  writing a snapshot into a workspace (the apply
 *	                  protocol)
 *	snapshot.c        the state directory and lock, snapshot names, the
 *	                  digest (this file)
 *
 * PLACE AND LOCK
 *	Each data folder has a state directory beside its workspaces,
 *	<data>/.omnifs-state (0700): the git manager keeps <project>.git
 *	there, the gcs manager <project>.gcs/. A save, load or cleanup of a
 *	project holds an exclusive flock on <project>.lock in it for its
 *	whole length, so two daemons (or two threads: each takes its own open
 *	file description) never work on one project's state at once.
 *
 * Locking: the functions here keep no global state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/api.h"
#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/log.h"
#include "state/snapshot.h"

/* --- place
 * -------------------------------------------------------------------- */

int omni__host_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", path);
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return omni_error_set_errno(-errno, "mkdir %s", buf);
		if (i < len)
			buf[i] = '/';
	}
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int omni__host_remove_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT
		           ? 0
		           : omni_error_set_errno(-errno, "%s", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return omni_error_set_errno(-errno, "rm %s", path);
		return 0;
	}
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return omni_error_set_errno(errno ? -errno : -EIO, "rm -r %s",
		                            path);
	return 0;
}

int omni__host_write_file(const char *path, const void *data, size_t len)
{
	char tmp[PATH_MAX];
	int fd,
	    n = snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid());
	size_t done = 0;

	if (n < 0 || (size_t)n >= sizeof(tmp))
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return omni_error_set_errno(-errno, "create %s", tmp);
	while (done < len) {
		ssize_t w = write(fd, (const char *)data + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int err = -errno;
			close(fd);
			unlink(tmp);
			return omni_error_set_errno(err, "write %s", tmp);
		}
		done += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		int err = -errno;
		unlink(tmp);
		return omni_error_set_errno(err, "write %s", path);
	}
	return 0;
}

int omni__state_dir(struct omni_backend *b, const char *dir, char *out,
                    size_t size)
{
	char ws[PATH_MAX];
	int rc, n;

	if (dir && *dir) {
		n = snprintf(out, size, "%s", dir);
	} else {
		if ((rc = omni__workspace_host_dir(b, ws, sizeof(ws))) < 0)
			return rc;
		char *slash = strrchr(ws, '/');
		if (slash)
			*slash = '\0';
		n = snprintf(out, size, "%s/.omnifs-state", ws[0] ? ws : "");
	}
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG,
		                      "state directory too long");
	if ((rc = omni__host_mkdir_p(out, 0700)) < 0)
		return rc;
	return 0;
}

int omni__state_lock(const char *path, int timeout_s, const char *what,
                     int *fd_out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	long long waited_ms = 0;

	*fd_out = -1;
	if (fd < 0)
		return omni_error_set_errno(-errno, "lock %s", path);
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			int err = -errno;
			close(fd);
			return omni_error_set_errno(err, "flock %s", path);
		}
		if (waited_ms >= (long long)timeout_s * 1000) {
			close(fd);
			return omni_error_set(
			    -EBUSY,
			    "%s: another save or load of this project is "
			    "running (lock %s held for %d s)",
			    what, path, timeout_s);
		}
		if (waited_ms == 0)
			omni_log(OMNI_LOG_DEBUG, "%s: waiting for %s", what,
			         path);
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
		waited_ms += 50;
	}
	*fd_out = fd;
	return 0;
}

void omni__state_unlock(int fd)
{
	if (fd >= 0) {
		flock(fd, LOCK_UN);
		close(fd);
	}
}

/* Parse "YYYYmmdd_HHMMSS_ffffff" into seconds and microseconds. */
static bool parse_stamp(const char *name, long long *sec, long *usec)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, s;
	long us;
	char tail;

	if (strlen(name) < 22 || sscanf(name, "%4d%2d%2d_%2d%2d%2d_%6ld%c", &y,
	                                &mo, &d, &h, &mi, &s, &us, &tail) < 7)
		return false;
	for (int i = 0; i < 22; i++) {
		bool digit = name[i] >= '0' && name[i] <= '9';
		if ((i == 8 || i == 15) ? name[i] != '_' : !digit)
			return false;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return false;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	*sec = (long long)timegm(&tm);
	*usec = us;
	return true;
}

long long omni__snap_time(const char *name)
{
	long long sec;
	long usec;

	return parse_stamp(name, &sec, &usec) ? sec : -1;
}

static void format_stamp(char out[32], long long sec, long usec)
{
	time_t t = (time_t)sec;
	struct tm tm;
	char buf[96];

	gmtime_r(&t, &tm);
	snprintf(buf, sizeof(buf), "%04d%02d%02d_%02d%02d%02d_%06ld",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec, usec % 1000000);
	snprintf(out, 32, "%.31s", buf);
}

void omni__snap_timestamp(char out[32], const char *prev)
{
	struct timespec ts;
	long long psec;
	long pusec;

	clock_gettime(CLOCK_REALTIME, &ts);
	format_stamp(out, (long long)ts.tv_sec, ts.tv_nsec / 1000);
	/* A clock that went backwards must not make the new snapshot look
	 * older than the last one: the newest name is the one loaded. */
	if (prev && parse_stamp(prev, &psec, &pusec) &&
	    strcmp(out, prev) <= 0) {
		if (++pusec == 1000000) {
			pusec = 0;
			psec++;
		}
		format_stamp(out, psec, pusec);
	}
}

/* --- digest
 * ------------------------------------------------------------------- */

void omni__digest_add(struct omni__digest *d, char type, unsigned int mode,
                      const char *path, const unsigned char md5[16])
{
	char hex[33];
	char *line;

	if (d->oom)
		return;
	if (d->count == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		char **p = realloc(d->lines, cap * sizeof(*p));
		if (!p) {
			d->oom = true;
			return;
		}
		d->lines = p;
		d->cap = cap;
	}
	omni__hex(md5, 16, hex);
	if (asprintf(&line, "%c %o %s %s", type, mode & 07777, hex, path) < 0) {
		d->oom = true;
		return;
	}
	d->lines[d->count++] = line;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int omni__digest_final(struct omni__digest *d, char out[33])
{
	struct omni__md5 m;
	unsigned char sum[16];

	if (d->oom || omni__md5_init(&m) < 0)
		return omni_error_set(-ENOMEM, "digest: out of memory");
	if (d->count > 1)
		qsort(d->lines, d->count, sizeof(*d->lines), str_cmp);
	for (size_t i = 0; i < d->count; i++)
		omni__md5_update(&m, d->lines[i], strlen(d->lines[i]) + 1);
	omni__md5_final(&m, sum);
	omni__hex(sum, 16, out);
	return 0;
}

void omni__digest_finish(struct omni__digest *d)
{
	for (size_t i = 0; i < d->count; i++)
		free(d->lines[i]);
	free(d->lines);
	memset(d, 0, sizeof(*d));
}
