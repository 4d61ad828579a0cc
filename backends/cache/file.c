/*
 * backends/cache/file.c - open files: content kept in local files.
 *
 * open fetches the whole file into a private local file (O_TMPFILE,
 * 0600, under $TMPDIR): the wrapped backend downloads it and the cache
 * keeps a duplicate of its descriptor (or copies it through read when
 * the backend has no host descriptor). Reads and writes go to that file
 * (ops.c splices from it through file_fd). A clean copy stays after
 * close (up to max_clean_files / max_clean_bytes, least recently used
 * out first, table.c) and is reused while the file's size and
 * modification time are unchanged, so a second open costs nothing. A
 * new file, or one opened with O_TRUNC, is made locally with no request.
 *
 * A changed copy is uploaded (upload.c) on flush (every close) and fsync
 * when dirty. In write-back mode (opts.writeback) close keeps it instead
 * (spool.c: on local disk, synced, before close returns) and the last
 * release queues it for the background uploader; fsync still uploads,
 * with the modes and times waiting (meta.c). Two exceptions keep `cmd > file`
 * and lock files cheap: a flush of a copy that is empty and was never written
 * waits (the shell closes the new file once before the command writes to its
 * duplicate), and a new file never written is uploaded by the background
 * uploader a second after its release, or before a command (git's index.lock,
 * created and unlinked in milliseconds, then costs nothing).
 *
 * Locking: a node's fields are under c->lock, its content is not (reads
 * and writes go straight to the descriptor). A download runs without the
 * lock while the node is marked loading; c->cond wakes those waiting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/tempfile.h"
#include "cache/cache_internal.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/vfs.h"

/* The attributes of a copy: the cached ones (or those it was opened
 * with), with size and times from the copy itself when it changed. */
void omni__cache_node_attr(struct cache *c, struct cnode *n, struct stat *st)
{
	struct centry *e = omni__cache_table_find(&c->entries, n->l.path);
	struct stat local;

	*st =
	    e && !e->negative && e->st.st_mode && n->in_table ? e->st : n->base;
	/* Write-back: a mode and times not in the sandbox yet win over
	 * what a listing brought meanwhile. */
	if (n->set_mode)
		st->st_mode = (st->st_mode & S_IFMT) | n->set_mode;
	if (n->meta_pending) {
		st->st_mode = n->base.st_mode;
		st->st_atim = n->base.st_atim;
		st->st_mtim = n->base.st_mtim;
	}
	if (fstat(n->fd, &local) == 0) {
		st->st_size = local.st_size;
		st->st_blocks = local.st_blocks;
		if (n->dirty) {
			st->st_mtim = local.st_mtim;
			st->st_ctim = local.st_ctim;
		}
	}
	st->st_ino = omni__cache_ino_of(n->l.path);
}

/* Fetch path's content into a new local file. */
int omni__cache_download(struct cache *c, const char *path, int *out)
{
	struct omni_file *f = NULL;
	int fd = -1, rc;

	*out = -1;
	rc = omni_vfs_open(c->inner, path, O_RDONLY, 0, &f);
	if (rc < 0)
		return rc;
	atomic_fetch_add(&c->n_downloads, 1);
	int ifd = omni_vfs_file_fd(f);
	if (ifd >= 0) {
		/* The backend's own copy: keep it. */
		fd = fcntl(ifd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			rc = omni_error_set_errno(-errno, "cache: dup");
	} else {
		fd = omni__temp_fd("omnifs-cache");
		if (fd < 0)
			rc = omni_error_set_errno(fd, "cache: temporary file");
		char buf[65536];
		for (off_t off = 0; rc == 0;) {
			ssize_t n = omni_vfs_read(f, buf, sizeof(buf), off);
			if (n < 0)
				rc = (int)n;
			if (n <= 0)
				break;
			if (pwrite(fd, buf, (size_t)n, off) != n)
				rc = omni_error_set_errno(-errno,
				                          "cache: write");
			off += n;
		}
	}
	int rrc = omni_vfs_release(f);
	if (rc == 0 && rrc < 0)
		rc = rrc;
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

static bool same_version(struct cnode *n, const struct stat *st)
{
	if (st->st_size != n->rsize)
		return false;
	if (!n->rmtime_approx)
		return st->st_mtim.tv_sec == n->rmtime.tv_sec &&
		       st->st_mtim.tv_nsec == n->rmtime.tv_nsec;
	/* After our upload we know the time only roughly: the server's own
	 * is adopted when it is close. */
	long long d = (long long)st->st_mtim.tv_sec - n->rmtime.tv_sec;
	if (d < -3 || d > 3)
		return false;
	n->rmtime = st->st_mtim;
	n->rmtime_approx = false;
	return true;
}

struct stat omni__cache_new_file_attr(mode_t mode)
{
	struct stat st = { 0 };

	clock_gettime(CLOCK_REALTIME, &st.st_mtim);
	st.st_atim = st.st_ctim = st.st_mtim;
	st.st_mode = S_IFREG | (mode & 07777 ? mode & 07777 : 0644);
	st.st_nlink = 1;
	st.st_uid = getuid();
	st.st_gid = getgid();
	st.st_blksize = 4096;
	return st;
}

static int make_handle(struct cnode *n, struct omni_backend *b, int flags,
                       struct omni_file **out)
{
	struct cfile *f = calloc(1, sizeof(*f));

	if (!f)
		return omni_error_set(-ENOMEM, "cache: out of memory");
	f->base.backend = b;
	f->node = n;
	f->flags = flags;
	*out = &f->base;
	return 0;
}

void omni__cache_mark_dirty_locked(struct cnode *n)
{
	n->dirty = true;
	n->wgen++;
}

/* Open n, the copy in the table (not loading). The lock is held. */
static int open_copy(struct cache *c, struct cnode *n, struct omni_backend *b,
                     const char *path, int flags, struct omni_file **out)
{
	int rc;

	omni__cache_node_hold(c, n);
	if (flags & O_TRUNC) {
		if (ftruncate(n->fd, 0) < 0) {
			rc = omni_error_set_errno(-errno, "cache: %s", path);
			omni__cache_node_put_locked(c, n);
			return rc;
		}
		omni__cache_mark_dirty_locked(n);
	} else {
		atomic_fetch_add(&c->n_content_hits, 1);
		if (n->prefetched)
			atomic_fetch_add(&c->n_prefetch_used, 1);
	}
	n->prefetched = false;
	rc = make_handle(n, b, flags, out);
	if (rc < 0)
		omni__cache_node_put_locked(c, n);
	return rc;
}

/*
 * Open path with no copy of it yet: a new node, downloaded when the file
 * exists (st) and is not truncated, else made empty here, both without
 * the lock. The lock is held on entry and on return.
 */
static int open_new(struct cache *c, struct omni_backend *b, const char *path,
                    int flags, mode_t mode, bool exists, const struct stat *st,
                    struct omni_file **out)
{
	struct cnode *n = omni__cache_node_add_loading(c, strdup(path));
	int rc;

	if (!n)
		return omni_error_set(-ENOMEM, "cache: out of memory");
	uint64_t gen = c->gen;
	pthread_mutex_unlock(&c->lock);
	if (exists && !(flags & O_TRUNC)) {
		rc = omni__cache_download(c, path, &n->fd);
	} else {
		n->fd = omni__temp_fd("omnifs-cache");
		rc = n->fd < 0 ? omni_error_set_errno(n->fd, "cache: temporary "
		                                             "file")
		               : 0;
	}
	pthread_mutex_lock(&c->lock);
	if (omni__cache_node_loaded(c, n, rc) < 0)
		return rc;
	if (exists && !(flags & O_TRUNC))
		omni__cache_note_download(c, path);
	n->exists_remote = exists;
	n->base = exists ? *st : omni__cache_new_file_attr(mode);
	n->base.st_ino = omni__cache_ino_of(path);
	n->rsize = exists ? st->st_size : 0;
	n->rmtime = n->base.st_mtim;
	if (!exists) {
		n->create_mode = mode & 07777;
		if (c->opts.writeback && n->create_mode &&
		    n->create_mode != 0644)
			n->set_mode = n->create_mode;
		omni__cache_mark_self(c, path, false);
		omni__cache_note_exists(c, path, &n->base);
		atomic_fetch_add(&c->n_local_only, 1);
	}
	if (!exists || (flags & O_TRUNC))
		omni__cache_mark_dirty_locked(n);
	if (gen != c->gen && !n->dirty) {
		/* Everything was dropped meanwhile: serve this open, keep
		 * nothing. */
		omni__cache_table_del(&c->nodes, n);
		n->in_table = false;
	}
	rc = make_handle(n, b, flags, out);
	if (rc < 0)
		omni__cache_node_put_locked(c, n);
	return rc;
}

int omni__cache_open(struct omni_backend *b, const char *path, int flags,
                     mode_t mode, struct omni_file **out)
{
	struct cache *c = omni__cache_of(b);
	struct stat st;
	struct cnode *n;
	int rc;

	*out = NULL;
	atomic_fetch_add(&c->n_opens, 1);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		rc = omni__cache_stat_locked(c, path, &st);
		if (rc < 0 && rc != -ENOENT)
			break;
		if (rc == 0 && S_ISDIR(st.st_mode)) {
			rc =
			    omni_error_set(-EISDIR, "%s: is a directory", path);
			break;
		}
		if (rc == 0 && (flags & O_CREAT) && (flags & O_EXCL)) {
			rc = omni_error_set(-EEXIST, "%s: exists", path);
			break;
		}
		if (rc == -ENOENT && !(flags & O_CREAT))
			break;
		bool exists = rc == 0;
		n = omni__cache_node_find(c, path);
		if (n && n->loading) {
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		if (n && !n->dirty && n->exists_remote &&
		    (!exists ||
		     (!(flags & O_TRUNC) && !same_version(n, &st)))) {
			/* Changed remotely: fetch it again. */
			omni__cache_node_detach(c, n);
			n = NULL;
		}
		if (n)
			rc = open_copy(c, n, b, path, flags, out);
		else
			rc =
			    open_new(c, b, path, flags, mode, exists, &st, out);
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* --- the open file's operations ------------------------------------------ */

static struct cnode *node_of(struct omni_file *f)
{
	return ((struct cfile *)f)->node;
}

ssize_t omni__cache_read(struct omni_file *f, void *buf, size_t size, off_t off)
{
	ssize_t n;

	do {
		n = pread(node_of(f)->fd, buf, size, off);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? omni_error_set_errno(-errno, "cache: read") : n;
}

ssize_t omni__cache_write(struct omni_file *f, const void *buf, size_t size,
                          off_t off)
{
	struct cache *c = omni__cache_of(f->backend);
	struct cnode *n = node_of(f);
	ssize_t w;

	pthread_mutex_lock(&c->lock);
	omni__cache_mark_dirty_locked(n);
	n->written = true;
	n->set_times = false; /* a write sets the time again */
	pthread_mutex_unlock(&c->lock);
	do {
		w = pwrite(n->fd, buf, size, off);
	} while (w < 0 && errno == EINTR);
	return w < 0 ? omni_error_set_errno(-errno, "cache: write") : w;
}

int omni__cache_fstat(struct omni_file *f, struct stat *st)
{
	struct cache *c = omni__cache_of(f->backend);

	pthread_mutex_lock(&c->lock);
	omni__cache_node_attr(c, node_of(f), st);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

int omni__cache_ftruncate(struct omni_file *f, off_t size)
{
	struct cache *c = omni__cache_of(f->backend);
	struct cnode *n = node_of(f);

	pthread_mutex_lock(&c->lock);
	omni__cache_mark_dirty_locked(n);
	pthread_mutex_unlock(&c->lock);
	if (ftruncate(n->fd, size) < 0)
		return omni_error_set_errno(-errno, "cache: truncate");
	return 0;
}

int omni__cache_fallocate(struct omni_file *f, int mode, off_t off, off_t len)
{
	struct cache *c = omni__cache_of(f->backend);
	struct cnode *n = node_of(f);

	pthread_mutex_lock(&c->lock);
	omni__cache_mark_dirty_locked(n);
	n->written = true;
	pthread_mutex_unlock(&c->lock);
	if (fallocate(n->fd, mode, off, len) < 0)
		return omni_error_set_errno(-errno, "cache: fallocate");
	return 0;
}

/* Was f opened for reading only? Its close still sends a dirty copy that
 * an earlier close could not (any close retries it), but never reports an
 * upload error: the failure belongs to whoever wrote, and that writer's
 * close, fsync or the background uploader deal with it. */
static bool read_only(const struct omni_file *f)
{
	return (((const struct cfile *)f)->flags & O_ACCMODE) == O_RDONLY;
}

/* Write-back's close: the copy is kept (in the spool, synced) and the
 * release queues its upload. 1 when done so, else 0 (then the close
 * uploads as without write-back), or -errno. */
static int keep_for_later(struct cache *c, struct cnode *n)
{
	pthread_mutex_lock(&c->lock);
	bool dirty = n->dirty && !n->unlinked;
	pthread_mutex_unlock(&c->lock);
	if (!dirty)
		return 1;
	if (omni__cache_spool_put(c, n) == 0)
		return 1;
	omni_log(OMNI_LOG_WARN, "%s; uploading it now", omni_error_last());
	return 0;
}

int omni__cache_flush(struct omni_file *f)
{
	struct cache *c = omni__cache_of(f->backend);
	struct cnode *n = node_of(f);
	struct stat local;

	if (c->opts.writeback && keep_for_later(c, n))
		return 0;

	/* `cmd > file` closes the new, still empty file once before the
	 * command writes to its duplicate: an empty copy that was only
	 * created or truncated waits for the next flush or the release,
	 * rather than costing an upload of its own. */
	pthread_mutex_lock(&c->lock);
	bool only_cut = n->dirty && !n->written && fstat(n->fd, &local) == 0 &&
	                local.st_size == 0;
	pthread_mutex_unlock(&c->lock);
	if (only_cut)
		return 0;
	int rc = omni__cache_node_flush(c, n);
	if (rc < 0 && read_only(f)) {
		omni_log(OMNI_LOG_WARN, "%s", omni_error_last());
		rc = 0;
	}
	return rc;
}

int omni__cache_fsync(struct omni_file *f, bool datasync)
{
	struct cache *c = omni__cache_of(f->backend);
	int rc = omni__cache_node_flush(c, node_of(f));

	(void)datasync;
	/* Write-back: the modes and times waiting go too. */
	if (rc == 0 && c->opts.writeback && !datasync)
		rc = omni__cache_meta_apply(c);
	return rc;
}

int omni__cache_file_fd(struct omni_file *f)
{
	return node_of(f)->fd;
}

/* Write-back's release: a copy changed after its last flush (through a
 * mapping) is kept too; the last release queues the upload. A read-only
 * handle changed nothing: the upload waiting keeps its time (a file read
 * again and again, say polled every 100 ms, would otherwise put it off
 * for ever, and a change made in the sandbox meanwhile would be lost to
 * ours), and nothing is spooled again. */
static int release_later(struct cache *c, struct cnode *n, struct omni_file *f)
{
	int rc = 0;

	if (read_only(f)) {
		pthread_mutex_lock(&c->lock);
		omni__cache_node_put_locked(c, n);
		pthread_mutex_unlock(&c->lock);
		free(f);
		return 0;
	}
	pthread_mutex_lock(&c->lock);
	bool dirty = n->dirty && !n->unlinked;
	pthread_mutex_unlock(&c->lock);
	if (dirty && omni__cache_spool_put(c, n) < 0)
		omni_log(OMNI_LOG_WARN, "%s", omni_error_last());
	pthread_mutex_lock(&c->lock);
	if (n->refs == 1 && n->dirty && !n->unlinked)
		omni__cache_queue_upload(
		    c, n,
		    n->written || n->exists_remote ? WRITEBACK_DELAY_MS : 1000);
	omni__cache_node_put_locked(c, n);
	pthread_mutex_unlock(&c->lock);
	free(f);
	return rc;
}

int omni__cache_release(struct omni_file *f)
{
	struct cache *c = omni__cache_of(f->backend);
	struct cnode *n = node_of(f);
	int rc = 0;

	if (c->opts.writeback)
		return release_later(c, n, f);
	pthread_mutex_lock(&c->lock);
	bool last = n->refs == 1;
	/* Changed after the last flush (through a mapping, or emptied
	 * without a write): upload now; not again when the flush of
	 * close(2) just failed on it (the background uploader retries). A
	 * new file that was never written goes up in the background a
	 * moment later, or before a command: lock files that live a few
	 * milliseconds cost nothing. */
	bool dirty = n->dirty && !n->unlinked &&
	             (n->written || n->exists_remote) &&
	             !(n->failed && n->failed_gen == n->wgen);
	if (n->dirty && !n->written && !n->exists_remote)
		n->retry_at = omni__now_ms() + 1000;
	pthread_mutex_unlock(&c->lock);
	if (last && dirty) {
		rc = omni__cache_node_flush(c, n);
		if (rc < 0 && read_only(f)) {
			omni_log(OMNI_LOG_WARN, "%s", omni_error_last());
			rc = 0;
		}
	}
	pthread_mutex_lock(&c->lock);
	omni__cache_node_put_locked(c, n);
	pthread_mutex_unlock(&c->lock);
	free(f);
	return rc;
}
