/*
 * backends/cache/upload.c - uploads of dirty copies and the background
 * uploader.
 *
 * A changed copy is uploaded (one request: an open for writing of the
 * inner backend, the content copied into it, flush and release) on flush
 * (every close) and fsync when dirty; the upload refreshes the cached
 * attributes without a Stat. A new file takes the mode it was created
 * with to its first upload. A failed upload keeps the copy dirty and
 * returns the error (EIO; ENOSPC, EDQUOT and EFBIG as they are) to close
 * and fsync; the background uploader retries copies nobody has open
 * (1 s, doubling to 30 s), and the next flush, fsync, command or unmount
 * tries again. Nothing written is dropped, except by unlink.
 *
 * The background uploader wakes every half second: it uploads dirty
 * copies nobody has open (files only created or emptied, whose upload
 * waits a moment, and uploads that failed), and every ten seconds
 * forgets expired attribute entries.
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

/* Copy all of from into to (both host descriptors). */
static int copy_fd(int from, int to, off_t size)
{
	off_t in = 0;

	while (in < size) {
		ssize_t n = copy_file_range(from, &in, to, NULL,
		                            (size_t)(size - in), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == EINVAL ||
		              errno == ENOSYS || errno == EOPNOTSUPP)) {
			n = sendfile(to, from, &in, (size_t)(size - in));
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

/* Upload the copy in fd to path through the inner backend: the new size
 * and modification time go to *st. */
static int upload(struct cache *c, const char *path, int fd, mode_t mode,
                  struct stat *st)
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
		rc = copy_fd(fd, ifd, local.st_size);
		if (rc < 0)
			omni_error_set_errno(rc, "cache: copying %s", path);
	} else {
		char buf[65536];
		for (off_t off = 0; rc == 0 && off < local.st_size;) {
			ssize_t n = pread(fd, buf, sizeof(buf), off);
			if (n <= 0) {
				rc = n < 0 ? -errno : -EIO;
				break;
			}
			ssize_t w = omni_vfs_write(f, buf, (size_t)n, off);
			if (w < 0)
				rc = (int)w;
			off += n;
		}
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
		st->st_size = local.st_size;
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
	mode_t mode = n->exists_remote ? 0 : n->create_mode;
	path = strdup(n->l.path);
	omni__cache_mark_self(c, n->l.path, true);
	pthread_mutex_unlock(&c->lock);
	if (!path) {
		pthread_mutex_lock(&c->lock);
		omni__cache_mark_self(c, n->l.path, false);
		pthread_mutex_unlock(&c->lock);
		return omni_error_set(-ENOMEM, "cache: out of memory");
	}
	rc = upload(c, path, n->fd, mode, &st);
	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, path, false);
	if (rc == 0) {
		atomic_fetch_add(&c->n_uploads, 1);
		n->exists_remote = true;
		n->create_mode = 0;
		if (n->wgen == gen) {
			n->dirty = false;
			n->written = false;
		}
		n->failed = false;
		n->rsize = st.st_size;
		n->rmtime = st.st_mtim;
		n->rmtime_approx = true;
		n->base.st_mtim = n->base.st_ctim = st.st_mtim;
		n->base.st_size = st.st_size;
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
	return rc < 0 ? close_errno(rc) : 0;
}

int omni__cache_node_flush(struct cache *c, struct cnode *n)
{
	pthread_mutex_lock(&n->flush_lock);
	int rc = omni__cache_node_flush_locked(c, n);
	pthread_mutex_unlock(&n->flush_lock);
	return rc;
}

int omni__cache_flush_all(struct omni_backend *b)
{
	struct cache *c = omni__cache_of(b);
	struct cnode **list = NULL;
	size_t count = 0, cap = 0;
	int first = 0;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->nodes.nb; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i]; n;
		     n = (struct cnode *)n->l.next) {
			if (!n->dirty || n->loading)
				continue;
			if (count == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct cnode **l =
				    realloc(list, nc * sizeof(*l));
				if (!l) {
					first = -ENOMEM;
					break;
				}
				list = l;
				cap = nc;
			}
			omni__cache_node_hold(c, n);
			list[count++] = n;
		}
	}
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; i < count; i++) {
		int rc = omni__cache_node_flush(c, list[i]);
		if (rc < 0 && first == 0) {
			struct omni__error_saved saved;
			omni__error_save(&saved);
			first = omni_error_set(
			    rc, "uploading changed files: %s", saved.msg);
		}
		pthread_mutex_lock(&c->lock);
		omni__cache_node_put_locked(c, list[i]);
		pthread_mutex_unlock(&c->lock);
	}
	free(list);
	if (first == -ENOMEM)
		omni_error_set(first, "cache: out of memory");
	return first;
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

/*
 * The background uploader: every half second, dirty copies nobody has
 * open (files only created or emptied, whose upload waits a moment, and
 * uploads that failed, retried with a growing delay up to 30 s).
 */
static void *maint_main(void *arg)
{
	struct cache *c = arg;
	struct cnode *batch[64];
	unsigned int ticks = 0;

	pthread_mutex_lock(&c->lock);
	while (!c->maint_stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 500 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c->maint_cond, &c->lock, &until);
		if (c->maint_stop)
			break;
		if (++ticks % 20 == 0)
			sweep_expired(c);
		size_t count = 0;
		long long now = omni__now_ms();
		for (size_t i = 0; i < c->nodes.nb && count < 64; i++) {
			for (struct cnode *n = (struct cnode *)c->nodes.b[i];
			     n && count < 64; n = (struct cnode *)n->l.next) {
				if (!n->dirty || n->refs > 0 || n->loading ||
				    n->unlinked || now < n->retry_at)
					continue;
				omni__cache_node_hold(c, n);
				batch[count++] = n;
			}
		}
		pthread_mutex_unlock(&c->lock);
		for (size_t i = 0; i < count; i++) {
			struct cnode *n = batch[i];
			int rc = omni__cache_node_flush(c, n);
			pthread_mutex_lock(&c->lock);
			if (rc < 0) {
				n->backoff = n->backoff ? n->backoff * 2 : 1000;
				if (n->backoff > 30000)
					n->backoff = 30000;
				n->retry_at = omni__now_ms() + n->backoff;
			} else {
				n->backoff = 0;
			}
			omni__cache_node_put_locked(c, n);
			pthread_mutex_unlock(&c->lock);
		}
		pthread_mutex_lock(&c->lock);
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
