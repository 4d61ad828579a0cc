/*
 * backends/cache/upload.c - uploads of dirty copies and the background
 * uploader.
 *
 * A changed copy is uploaded (one request: an open for writing of the
 * inner backend, the content copied into it, flush and release) on flush
 * (every close; in write-back mode the background does it, file.c) and
 * fsync when dirty; the upload refreshes the cached
 * attributes without a Stat. A new file takes the mode it was created
 * with to its first upload. A failed upload keeps the copy dirty and
 * returns the error (EIO; ENOSPC, EDQUOT and EFBIG as they are) to close
 * and fsync; the background uploader retries copies nobody has open
 * (1 s, doubling to 30 s), and the next flush, fsync, command or unmount
 * tries again. Nothing written is dropped, except by unlink.
 *
 * The background uploader wakes every half second, or when a close
 * queues a copy: it uploads dirty copies nobody has open (write-back's
 * closed files, files only created or emptied, whose upload waits a
 * moment, and uploads that failed), several at once, applies write-back's
 * waiting modes and times (meta.c), and every ten seconds forgets
 * expired attribute entries. flush_all (before a command, omni-exec
 * --sync, shutdown) uploads every dirty copy the same way and waits: an
 * upload the background has under way holds the node's flush_lock, so
 * flush_all's own attempt waits for it and then finds the copy clean.
 *
 * Locking: a node's flush_lock is held around its upload, so uploads
 * keep their order with renames and unlinks of it; c->lock is released
 * during the request. A node being uploaded is pinned (refs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "base/error.h"
#include "cache/cache_internal.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/vfs.h"

/* --- uploads -------------------------------------------------------------- */

int omni__cache_copy_fd(int from, off_t off, int to, off_t end)
{
	off_t in = off;

	while (in < end) {
		ssize_t n =
		    copy_file_range(from, &in, to, NULL, (size_t)(end - in), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == EINVAL ||
		              errno == ENOSYS || errno == EOPNOTSUPP)) {
			n = sendfile(to, from, &in, (size_t)(end - in));
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
	}
	return 0;
}

/* Through the backend's own writes, when it has no host descriptor. */
static int copy_by_writes(struct omni_file *f, int fd, off_t from, off_t end)
{
	char buf[65536];

	for (off_t off = from; off < end;) {
		ssize_t n = pread(fd, buf, sizeof(buf), off);
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		ssize_t w = omni_vfs_write(f, buf, (size_t)n, off - from);
		if (w < 0)
			return (int)w;
		off += n;
	}
	return 0;
}

int omni__cache_upload(struct cache *c, const char *path, int fd, off_t from,
                       mode_t mode, struct stat *st)
{
	struct omni_file *f = NULL;
	struct stat local;
	int rc;

	if (fstat(fd, &local) < 0)
		return omni_error_set_errno(-errno, "cache: %s", path);
	rc = omni_vfs_open(c->inner, path, O_WRONLY | O_CREAT | O_TRUNC, mode,
	                   &f);
	if (rc < 0)
		return rc;
	int ifd = omni_vfs_file_fd(f);
	if (ifd >= 0) {
		rc = omni__cache_copy_fd(fd, from, ifd, local.st_size);
		if (rc < 0)
			omni_error_set_errno(rc, "cache: copying %s", path);
	} else {
		rc = copy_by_writes(f, fd, from, local.st_size);
	}
	if (rc == 0)
		rc = omni_vfs_flush(f);
	if (rc == 0)
		rc = omni_vfs_fstat(f, st);
	struct omni__error_saved saved;
	omni__error_save(&saved);
	int rrc = omni_vfs_release(f);
	if (rc == 0 && rrc < 0)
		rc = rrc;
	else if (rc < 0)
		omni__error_restore(&saved, rc);
	if (rc == 0)
		st->st_size = local.st_size - from;
	return rc;
}

/* Errors close(2) and fsync(2) may give: the rest read as EIO, the
 * message keeps the detail. */
static int close_errno(int rc)
{
	if (rc == -ENOSPC || rc == -EDQUOT || rc == -EFBIG || rc == -EIO)
		return rc;
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", omni_error_last());
	return omni_error_set(-EIO, "%s", msg);
}

/* Upload n when dirty. flush_lock is held by the caller. */
int omni__cache_node_flush_locked(struct cache *c, struct cnode *n)
{
	struct stat st;
	char *path;
	int rc;

	pthread_mutex_lock(&c->lock);
	if (!n->dirty || n->unlinked) {
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	uint64_t gen = n->wgen;
	/* Write-back sets a mode with the batch after the upload (meta.c). */
	mode_t mode =
	    n->exists_remote || c->opts.writeback ? 0 : n->create_mode;
	path = strdup(n->l.path);
	omni__cache_mark_self(c, n->l.path, true);
	pthread_mutex_unlock(&c->lock);
	if (!path) {
		pthread_mutex_lock(&c->lock);
		omni__cache_mark_self(c, n->l.path, false);
		pthread_mutex_unlock(&c->lock);
		return omni_error_set(-ENOMEM, "cache: out of memory");
	}
	rc = omni__cache_upload(c, path, n->fd, 0, mode, &st);
	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, path, false);
	bool clean = false;
	if (rc == 0) {
		atomic_fetch_add(&c->n_uploads, 1);
		n->exists_remote = true;
		n->create_mode = 0;
		clean = n->wgen == gen;
		if (clean) {
			n->dirty = false;
			n->written = false;
		}
		n->failed = false;
		n->rsize = st.st_size;
		n->rmtime = st.st_mtim;
		n->uploaded_ctime = st.st_ctim;
		n->rmtime_approx = true;
		n->base.st_mtim = n->base.st_ctim = st.st_mtim;
		n->base.st_size = st.st_size;
		if (clean)
			omni__cache_meta_uploaded_locked(c, n);
		if (n->in_table && strcmp(n->l.path, path) == 0 && !n->unlinked)
			omni__cache_note_exists(c, path, &n->base);
	} else {
		n->failed = true;
		n->failed_gen = gen;
		atomic_fetch_add(&c->n_upload_errors, 1);
		omni_log(OMNI_LOG_WARN, "cache: %s stays dirty: %s", path,
		         omni_error_last());
	}
	pthread_mutex_unlock(&c->lock);
	free(path);
	if (clean)
		omni__cache_spool_drop(c, n, gen);
	return rc < 0 ? close_errno(rc) : 0;
}

int omni__cache_node_flush(struct cache *c, struct cnode *n)
{
	pthread_mutex_lock(&n->flush_lock);
	int rc = omni__cache_node_flush_locked(c, n);
	pthread_mutex_unlock(&n->flush_lock);
	return rc;
}

/* --- several uploads at once --------------------------------------------- */

/* A list of held nodes uploaded by up to UPLOAD_THREADS threads. */
struct batch {
	struct cache *c;
	struct cnode **list;
	size_t count;
	atomic_size_t next;
	long long until; /* ms; 0: no bound */
	pthread_mutex_t lock;
	int first; /* the first error, its message in msg */
	char msg[512];
	int *rcs; /* each node's result, or NULL */
};

static void *batch_main(void *arg)
{
	struct batch *bt = arg;

	for (;;) {
		size_t i = atomic_fetch_add(&bt->next, 1);
		if (i >= bt->count)
			break;
		int rc;
		if (bt->until && omni__now_ms() >= bt->until)
			rc = omni_error_set(-ETIMEDOUT,
			                    "cache: %s: not uploaded in time",
			                    bt->list[i]->l.path);
		else
			rc = omni__cache_node_flush(bt->c, bt->list[i]);
		if (bt->rcs)
			bt->rcs[i] = rc;
		if (rc < 0) {
			pthread_mutex_lock(&bt->lock);
			if (bt->first == 0) {
				bt->first = rc;
				snprintf(bt->msg, sizeof(bt->msg), "%s",
				         omni_error_last());
			}
			pthread_mutex_unlock(&bt->lock);
		}
	}
	return NULL;
}

/* Upload the held nodes of list, several at once; the first error with
 * its message, or 0. rcs (or NULL) gets each node's result. */
static int flush_many(struct cache *c, struct cnode **list, size_t count,
                      long long until, int *rcs)
{
	struct batch bt = {
		.c = c, .list = list, .count = count, .until = until, .rcs = rcs
	};
	pthread_t threads[UPLOAD_THREADS];
	size_t started = 0;

	atomic_init(&bt.next, 0);
	pthread_mutex_init(&bt.lock, NULL);
	while (started < UPLOAD_THREADS && started + 1 < count &&
	       pthread_create(&threads[started], NULL, batch_main, &bt) == 0)
		started++;
	batch_main(&bt);
	for (size_t i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	pthread_mutex_destroy(&bt.lock);
	if (bt.first < 0)
		return omni_error_set(bt.first, "%s", bt.msg);
	return 0;
}

/* Hold every dirty node (not loading) into *out. The lock is held. */
static size_t hold_dirty_locked(struct cache *c, struct cnode ***out)
{
	size_t count = 0;
	struct cnode **list = calloc(c->nodes.n + 1, sizeof(*list));

	*out = list;
	for (size_t i = 0; list && i < c->nodes.nb; i++)
		for (struct cnode *n = (struct cnode *)c->nodes.b[i]; n;
		     n = (struct cnode *)n->l.next) {
			if (!n->dirty || n->loading)
				continue;
			omni__cache_node_hold(c, n);
			list[count++] = n;
		}
	return count;
}

int omni__cache_flush_all_until(struct cache *c, long long until)
{
	struct cnode **list;
	int first = 0;

	pthread_mutex_lock(&c->lock);
	size_t count = hold_dirty_locked(c, &list);
	pthread_mutex_unlock(&c->lock);
	if (!list)
		return omni_error_set(-ENOMEM, "cache: out of memory");
	if (count > 0) {
		first = flush_many(c, list, count, until, NULL);
		if (first < 0) {
			struct omni__error_saved saved;
			omni__error_save(&saved);
			first = omni_error_set(
			    first, "uploading changed files: %s", saved.msg);
		}
	}
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < count; i++)
		omni__cache_node_put_locked(c, list[i]);
	pthread_mutex_unlock(&c->lock);
	free(list);
	if (first == 0)
		first = omni__cache_meta_apply(c);
	return first;
}

int omni__cache_flush_all(struct omni_backend *b)
{
	return omni__cache_flush_all_until(omni__cache_of(b), 0);
}

size_t omni__cache_pending(struct omni_backend *b)
{
	struct cache *c = omni__cache_of(b);
	size_t count = 0;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->nodes.nb; i++)
		for (struct cnode *n = (struct cnode *)c->nodes.b[i]; n;
		     n = (struct cnode *)n->l.next)
			if (n->dirty && !n->unlinked)
				count++;
	count += c->nmeta;
	pthread_mutex_unlock(&c->lock);
	return count;
}

void omni__cache_queue_upload(struct cache *c, struct cnode *n,
                              long long delay_ms)
{
	long long at = omni__now_ms() + delay_ms;

	if (!n->failed || n->retry_at < at)
		n->retry_at = at;
	c->maint_kick = true;
	pthread_cond_broadcast(&c->maint_cond);
}

/* --- the background uploader --------------------------------------------- */

/* Forget entries that expired (they would be fetched again anyway), so
 * that browsing a large tree does not grow the table for ever. The lock
 * is held. */
static void sweep_expired(struct cache *c)
{
	long long now = omni__now_ms();

	for (size_t i = 0; i < c->entries.nb; i++) {
		for (struct centry *e = (struct centry *)c->entries.b[i], *next;
		     e; e = next) {
			next = (struct centry *)e->l.next;
			if (!e->loading && e->expires < now &&
			    (!e->listed || e->list_expires < now))
				omni__cache_entry_drop(c, e);
		}
	}
}

/* Hold the dirty copies nobody has open whose time has come (at most
 * max) into batch; *next gets the ms of the next one waiting. The lock is
 * held. */
static size_t take_ready_locked(struct cache *c, struct cnode **batch,
                                size_t max, long long *next)
{
	long long now = omni__now_ms();
	size_t count = 0;

	for (size_t i = 0; i < c->nodes.nb && count < max; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i];
		     n && count < max; n = (struct cnode *)n->l.next) {
			if (!n->dirty || n->refs > 0 || n->loading ||
			    n->unlinked)
				continue;
			if (now < n->retry_at) {
				if (n->retry_at < *next)
					*next = n->retry_at;
				continue;
			}
			omni__cache_node_hold(c, n);
			batch[count++] = n;
		}
	}
	return count;
}

/* After a batch: failures wait longer (1 s doubling to 30 s). */
static void batch_done(struct cache *c, struct cnode **batch, size_t count,
                       const int *rcs)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < count; i++) {
		struct cnode *n = batch[i];
		if (rcs[i] < 0) {
			n->backoff = n->backoff ? n->backoff * 2 : 1000;
			if (n->backoff > 30000)
				n->backoff = 30000;
			n->retry_at = omni__now_ms() + n->backoff;
		} else {
			n->backoff = 0;
		}
		omni__cache_node_put_locked(c, n);
	}
	pthread_mutex_unlock(&c->lock);
}

/* Wait for a kick or until next (ms), at most half a second. Lock held. */
static void maint_wait(struct cache *c, long long next)
{
	long long wait = next - omni__now_ms();
	struct timespec until;

	if (c->maint_kick) {
		c->maint_kick = false;
		return;
	}
	if (wait > 500)
		wait = 500;
	if (wait < 1)
		wait = 1;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)(wait % 1000) * 1000000L;
	until.tv_sec += wait / 1000;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&c->maint_cond, &c->lock, &until);
	c->maint_kick = false;
}

/*
 * The background uploader: dirty copies nobody has open once their time
 * comes (write-back: WRITEBACK_DELAY_MS after their close; files only
 * created or emptied a second after; failed uploads after their backoff),
 * up to UPLOAD_THREADS at once. Write-back's waiting modes and times go
 * once no upload is due and none was added for META_IDLE_MS (or a batch
 * is full).
 */
static void *maint_main(void *arg)
{
	struct cache *c = arg;
	struct cnode *batch[256];
	int rcs[256];
	long long next = 0, swept = omni__now_ms();

	pthread_mutex_lock(&c->lock);
	while (!c->maint_stop) {
		maint_wait(c, next);
		if (c->maint_stop)
			break;
		if (omni__now_ms() - swept >= 10000) {
			sweep_expired(c);
			swept = omni__now_ms();
		}
		next = omni__now_ms() + 500;
		size_t count = take_ready_locked(c, batch, 256, &next);
		long long now = omni__now_ms();
		bool meta = c->nmeta >= META_BATCH ||
		            (c->nmeta > 0 && count == 0 &&
		             now - c->meta_at >= META_IDLE_MS);
		if (c->nmeta > 0 && c->meta_at + META_IDLE_MS < next)
			next = c->meta_at + META_IDLE_MS;
		pthread_mutex_unlock(&c->lock);
		if (count > 0) {
			flush_many(c, batch, count, 0, rcs);
			omni_error_clear();
			batch_done(c, batch, count, rcs);
			next = 0; /* look again at once */
		}
		if (meta && omni__cache_meta_apply(c) < 0) {
			omni_log(OMNI_LOG_WARN, "cache: %s", omni_error_last());
			omni_error_clear();
		}
		pthread_mutex_lock(&c->lock);
		if (count > 0)
			c->maint_kick = true;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

void omni__cache_maint_start(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->maint_stop = false;
	c->maint_running = pthread_create(&c->maint, NULL, maint_main, c) == 0;
	pthread_mutex_unlock(&c->lock);
	if (!c->maint_running)
		omni_log(OMNI_LOG_WARN, "cache: no background uploader thread");
}

void omni__cache_maint_stop(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	bool running = c->maint_running;
	c->maint_stop = true;
	c->maint_running = false;
	pthread_cond_broadcast(&c->maint_cond);
	pthread_mutex_unlock(&c->lock);
	if (running)
		pthread_join(c->maint, NULL);
}
