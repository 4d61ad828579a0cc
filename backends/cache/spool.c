/*
 * backends/cache/spool.c - write-back: pending uploads kept on disk.
 *
 * In write-back mode a close returns once what was written is safe on
 * local disk, in the spool folder (the daemon gives
 * <data>/.omnifs-cache/<project>/): one file per pending copy, named
 * <id>.pending, that holds a record and the content:
 *
 *	omnifs-pending 1 PATHLEN MODE TIMES AS ANS MS MNS\n
 *	PATH\n
 *	CONTENT (the rest of the file)
 *
 * MODE is the mode to set after the upload (octal, 0: none), TIMES 1
 * when the access (AS.ANS, or -1 to leave it) and modification times
 * (MS.MNS) are to be set. The file is written as <id>.tmp, synced,
 * renamed into place and the folder synced, so a daemon killed with -9
 * loses nothing that close had returned for: the record is whole or
 * absent. It goes when the upload of that version (or a later one)
 * lands, or when the file is removed; a rename writes it again under the
 * new name.
 *
 * Once the session has started, after its snapshot load (so the newer
 * copies win; omni__cache_recover), what an earlier session left is
 * uploaded, with its mode and times; what cannot be (the sandbox is
 * gone, an outage) stays, and a message says where. At shutdown
 * (omni__cache_spool_keep_dirty) every copy still dirty is written there
 * and named in a message.
 *
 * Locking: a node's spool_lock keeps its record's writes in order and
 * guards spool_id and spool_gen; spool_stale (set by a rename) is under
 * c->lock, which is taken inside spool_lock, never the other way round.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "cache/cache_internal.h"
#include "omni/error.h"
#include "omni/log.h"

#define SPOOL_MAGIC "omnifs-pending 1 "

static void record_name(char *out, size_t size, uint64_t id, const char *ext)
{
	snprintf(out, size, "%016" PRIx64 ".%s", id, ext);
}

/* mkdir -p of dir, 0700 for the folders it makes. */
static int make_dirs(const char *dir)
{
	char p[4096];

	snprintf(p, sizeof(p), "%s", dir);
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char keep = *s;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			return -errno;
		*s = keep;
		if (!keep)
			return 0;
	}
}

int omni__cache_spool_open(struct cache *c)
{
	struct timespec now;

	c->spool_fd = -1;
	if (!c->opts.spool[0])
		return 0;
	int rc = make_dirs(c->opts.spool);
	if (rc < 0)
		return omni_error_set_errno(rc, "cache: %s", c->opts.spool);
	c->spool_fd = open(c->opts.spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->spool_fd < 0)
		return omni_error_set_errno(-errno, "cache: %s", c->opts.spool);
	/* Ids that sort after an earlier session's. */
	clock_gettime(CLOCK_REALTIME, &now);
	c->spool_seq =
	    (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Write the record <id>.pending for path with content from fd, durably. */
static int write_record(struct cache *c, uint64_t id, const char *path, int fd,
                        mode_t mode, bool times, const struct timespec ts[2])
{
	char tmp[64], name[64], head[256];
	struct stat st;
	int rc = 0;

	record_name(tmp, sizeof(tmp), id, "tmp");
	record_name(name, sizeof(name), id, "pending");
	if (fstat(fd, &st) < 0)
		return -errno;
	int out = openat(c->spool_fd, tmp,
	                 O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0)
		return -errno;
	bool omit_a = times && ts[0].tv_nsec == UTIME_OMIT;
	int n = snprintf(
	    head, sizeof(head), SPOOL_MAGIC "%zu %o %d %lld %ld %lld %ld\n",
	    strlen(path), (unsigned int)(mode & 07777), times ? 1 : 0,
	    times && !omit_a ? (long long)ts[0].tv_sec : -1LL,
	    times && !omit_a ? ts[0].tv_nsec : 0L,
	    times ? (long long)ts[1].tv_sec : 0LL, times ? ts[1].tv_nsec : 0L);
	if ((rc = write_all(out, head, (size_t)n)) == 0 &&
	    (rc = write_all(out, path, strlen(path))) == 0 &&
	    (rc = write_all(out, "\n", 1)) == 0)
		rc = omni__cache_copy_fd(fd, 0, out, st.st_size);
	if (rc == 0 && fsync(out) < 0)
		rc = -errno;
	close(out);
	if (rc == 0 && renameat(c->spool_fd, tmp, c->spool_fd, name) < 0)
		rc = -errno;
	if (rc == 0 && fsync(c->spool_fd) < 0)
		rc = -errno;
	if (rc < 0)
		unlinkat(c->spool_fd, tmp, 0);
	return rc;
}

int omni__cache_spool_put(struct cache *c, struct cnode *n)
{
	struct timespec ts[2];
	int rc = 0;

	if (c->spool_fd < 0)
		return 0;
	pthread_mutex_lock(&n->spool_lock);
	pthread_mutex_lock(&c->lock);
	uint64_t gen = n->wgen;
	bool need = n->dirty && !n->unlinked && !n->loading &&
	            (!n->spool_id || n->spool_gen != gen || n->spool_stale);
	char *path = need ? strdup(n->l.path) : NULL;
	mode_t mode = n->set_mode;
	bool times = n->set_times;
	memcpy(ts, n->times, sizeof(ts));
	if (need && !n->spool_id)
		n->spool_id = ++c->spool_seq;
	uint64_t id = n->spool_id;
	pthread_mutex_unlock(&c->lock);
	if (need && !path)
		rc = omni_error_set(-ENOMEM, "cache: out of memory");
	else if (need)
		rc = write_record(c, id, path, n->fd, mode, times, ts);
	if (need && rc == 0) {
		n->spool_gen = gen;
		pthread_mutex_lock(&c->lock);
		/* Renamed while written: the next put writes it again. */
		n->spool_stale = strcmp(n->l.path, path) != 0;
		pthread_mutex_unlock(&c->lock);
		atomic_fetch_add(&c->n_spooled, 1);
	} else if (need && rc != -ENOMEM) {
		rc = omni_error_set_errno(rc, "cache: keeping %s in %s", path,
		                          c->opts.spool);
	}
	pthread_mutex_unlock(&n->spool_lock);
	free(path);
	return rc;
}

void omni__cache_spool_drop(struct cache *c, struct cnode *n, uint64_t upto)
{
	char name[64];

	if (c->spool_fd < 0)
		return;
	pthread_mutex_lock(&n->spool_lock);
	if (n->spool_id && n->spool_gen <= upto) {
		record_name(name, sizeof(name), n->spool_id, "pending");
		unlinkat(c->spool_fd, name, 0);
		n->spool_id = n->spool_gen = 0;
		n->spool_stale = false;
	}
	pthread_mutex_unlock(&n->spool_lock);
}

void omni__cache_spool_forget(struct cache *c, struct cnode *n)
{
	char name[64];

	if (c->spool_fd < 0 || !n->spool_id)
		return;
	record_name(name, sizeof(name), n->spool_id, "pending");
	unlinkat(c->spool_fd, name, 0);
	n->spool_id = 0;
}

/* --- recovery ------------------------------------------------------------- */

/* A growing "a (x.pending), b (y.pending)" list for the messages. */
struct names {
	char *text;
	size_t len, count;
};

static void names_add(struct names *l, const char *path, const char *file)
{
	size_t add = strlen(path) + strlen(file) + 8;
	char *t = realloc(l->text, l->len + add);

	if (!t)
		return;
	l->text = t;
	l->len += (size_t)snprintf(t + l->len, add, "%s%s (%s)",
	                           l->count ? ", " : "", path, file);
	l->count++;
}

/* Upload one record; 0 when it is in the sandbox (and its file gone). */
static int recover_one(struct cache *c, const char *file, char **path_out)
{
	char head[256], *path = NULL;
	unsigned int mode;
	int times, rc;
	size_t plen;
	long long as, ms;
	long ans, mns;
	struct stat st;

	*path_out = NULL;
	int fd = openat(c->spool_fd, file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return omni_error_set_errno(-errno, "cache: %s", file);
	ssize_t got = pread(fd, head, sizeof(head) - 1, 0);
	head[got > 0 ? got : 0] = '\0';
	char *nl = strchr(head, '\n');
	if (!nl || strncmp(head, SPOOL_MAGIC, strlen(SPOOL_MAGIC)) != 0 ||
	    sscanf(head + strlen(SPOOL_MAGIC), "%zu %o %d %lld %ld %lld %ld",
	           &plen, &mode, &times, &as, &ans, &ms, &mns) != 7 ||
	    plen == 0 || plen > 4096 || fstat(fd, &st) < 0) {
		close(fd);
		return omni_error_set(-EINVAL, "cache: %s: not a record", file);
	}
	off_t start = (nl - head) + 1 + (off_t)plen + 1;
	path = calloc(1, plen + 1);
	if (!path || pread(fd, path, plen, (nl - head) + 1) != (ssize_t)plen) {
		free(path);
		close(fd);
		return omni_error_set(-EIO, "cache: %s: short record", file);
	}
	*path_out = path;
	struct stat up;
	rc = omni__cache_upload(c, path, fd, start, 0, &up);
	close(fd);
	if (rc < 0)
		return rc;
	struct timespec ts[2] = {
		{ .tv_sec = (time_t)as, .tv_nsec = as < 0 ? UTIME_OMIT : ans },
		{ .tv_sec = (time_t)ms, .tv_nsec = mns },
	};
	pthread_mutex_lock(&c->lock);
	if (mode || times)
		omni__cache_meta_add_locked(c, path, (mode_t)mode,
		                            times ? ts : NULL);
	pthread_mutex_unlock(&c->lock);
	unlinkat(c->spool_fd, file, 0);
	return 0;
}

void omni__cache_spool_recover(struct cache *c)
{
	struct names done = { 0 }, kept = { 0 };
	char why[512] = "";

	if (c->spool_fd < 0)
		return;
	int dfd = dup(c->spool_fd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
			/* A record never finished: its close never returned. */
			unlinkat(c->spool_fd, de->d_name, 0);
			continue;
		}
		if (len < 9 || strcmp(de->d_name + len - 8, ".pending") != 0)
			continue;
		char *path;
		if (recover_one(c, de->d_name, &path) == 0) {
			names_add(&done, path, de->d_name);
			atomic_fetch_add(&c->n_recovered, 1);
		} else {
			if (!why[0])
				snprintf(why, sizeof(why), "%s",
				         omni_error_last());
			names_add(&kept, path ? path : "?", de->d_name);
		}
		free(path);
	}
	closedir(d);
	if (done.count && omni__cache_meta_apply(c) < 0)
		omni_log(OMNI_LOG_WARN, "cache: %s", omni_error_last());
	if (done.count)
		omni_log(OMNI_LOG_INFO,
		         "cache: uploaded %zu file(s) an earlier session left "
		         "pending in %s: %s",
		         done.count, c->opts.spool, done.text ? done.text : "");
	if (kept.count)
		omni_log(OMNI_LOG_ERROR,
		         "cache: %zu file(s) an earlier session left could not "
		         "be uploaded (%s); they are kept in %s: %s",
		         kept.count, why, c->opts.spool,
		         kept.text ? kept.text : "");
	omni_error_clear();
	free(done.text);
	free(kept.text);
}

void omni__cache_spool_keep_dirty(struct cache *c)
{
	struct names kept = { 0 }, lost = { 0 };
	struct cnode **list = NULL;
	size_t count = 0;
	char name[64];

	pthread_mutex_lock(&c->lock);
	list = calloc(c->nodes.n + 1, sizeof(*list));
	for (size_t i = 0; list && i < c->nodes.nb; i++)
		for (struct cnode *n = (struct cnode *)c->nodes.b[i]; n;
		     n = (struct cnode *)n->l.next)
			if (n->dirty && !n->loading && !n->unlinked) {
				omni__cache_node_hold(c, n);
				list[count++] = n;
			}
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; i < count; i++) {
		struct cnode *n = list[i];
		int rc = omni__cache_spool_put(c, n);
		pthread_mutex_lock(&c->lock);
		if (rc == 0 && n->spool_id) {
			record_name(name, sizeof(name), n->spool_id, "pending");
			names_add(&kept, n->l.path, name);
		} else {
			names_add(&lost, n->l.path, "not kept");
		}
		omni__cache_node_put_locked(c, n);
		pthread_mutex_unlock(&c->lock);
	}
	free(list);
	if (kept.count)
		omni_log(OMNI_LOG_ERROR,
		         "cache: %zu file(s) could not be uploaded to the "
		         "sandbox; they are kept in %s and go up at the next "
		         "mount of this project: %s",
		         kept.count, c->opts.spool, kept.text);
	if (lost.count)
		omni_log(OMNI_LOG_ERROR,
		         "cache: %zu file(s) could not be uploaded and are "
		         "lost: %s",
		         lost.count, lost.text);
	free(kept.text);
	free(lost.text);
}
