/*
 * backends/cache/cache.c - a caching backend in front of a remote one
 * (OMNI_CAP_REMOTE), so that the mount costs as few round trips as the
 * operations allow: the ops table, and the life of the cache.
 *
 * It is a decorator: a backend with its own ops table whose operations
 * answer from memory where they can and call the wrapped backend (inner)
 * through the omni_vfs_* wrappers where they must. main.c wraps a remote
 * backend in it; ops.c does not know it is there.
 *
 * The design, by concern (the files are listed in cache_internal.h):
 * attributes and listings are kept for a TTL (attr.c); file content is
 * fetched whole into a private local file on open (file.c) and uploaded
 * when it changed (upload.c), a directory read file after file is
 * fetched ahead (prefetch.c); name operations cost one request and
 * update the cache locally (names.c); the backend's change events and
 * invalidate keep it coherent (events.c).
 *
 * Life. wrap takes ownership of inner. start starts inner, subscribes to
 * its change watch when it has one (OMNI_CAP_WATCH; without it, changes
 * made in the sandbox show after the TTL) and starts the background
 * uploader, and opens the spool (spool.c); omni__cache_recover() then
 * uploads what an earlier session left there. shutdown stops the uploader and
 * the prefetchers, uploads what is dirty (for at most opts.shutdown_wait
 * seconds; what is left is kept in the spool, named in a message), then
 * shuts inner down. destroy frees inner and
 * everything cached; a dirty copy still there is logged as lost.
 *
 * Threads: the background uploader and up to PREFETCH_THREADS
 * prefetchers, all stopped by shutdown before the last uploads. Locking
 * is described in cache_internal.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "cache/cache_internal.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/vfs.h"

static int cache_statfs(struct omni_backend *b, struct statvfs *st)
{
	return omni_vfs_statfs(omni__cache_of(b)->inner, st);
}

/* --- commands and counters ------------------------------------------------ */

static int cache_exec_start(struct omni_backend *b,
                            const struct omni_exec_request *req,
                            struct omni_exec **out)
{
	/* The handle is the inner backend's: the other exec calls go to it
	 * directly. */
	return omni_vfs_exec_start(omni__cache_of(b)->inner, req, out);
}

/* exec_start's pair: a handle names the inner backend, so this goes to
 * the inner backend's exec_free. */
static void cache_exec_free(struct omni_exec *e)
{
	omni_vfs_exec_free(e);
}

static char *cache_stats(struct omni_backend *b)
{
	struct cache *c = omni__cache_of(b);
	size_t dirty = 0, copies = 0;
	char *inner = omni_vfs_stats(c->inner);

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->nodes.nb; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i]; n;
		     n = (struct cnode *)n->l.next) {
			copies++;
			if (n->dirty)
				dirty++;
		}
	}
	size_t entries = c->entries.n, nmeta = c->nmeta;
	pthread_mutex_unlock(&c->lock);

	size_t cap = 2048 + (inner ? strlen(inner) : 0);
	char *out = malloc(cap);
	if (!out) {
		free(inner);
		return NULL;
	}
	snprintf(out, cap,
	         "cache.ttl_ms %lld\ncache.watch %d\ncache.entries %zu\n"
	         "cache.copies %zu\ncache.dirty %zu\ncache.stat %llu\n"
	         "cache.attr_hits %llu\ncache.negative_hits %llu\n"
	         "cache.listings %llu\ncache.listing_hits %llu\n"
	         "cache.stats_remote %llu\ncache.opens %llu\n"
	         "cache.content_hits %llu\ncache.downloads %llu\n"
	         "cache.local_creates %llu\ncache.uploads %llu\n"
	         "cache.upload_errors %llu\ncache.invalidations %llu\n"
	         "cache.events %llu\ncache.events_ignored %llu\n"
	         "cache.prefetched %llu\ncache.prefetch_used %llu\n"
	         "cache.writeback %d\ncache.spooled %llu\n"
	         "cache.recovered %llu\ncache.meta_pending %zu\n"
	         "cache.meta_batches %llu\ncache.meta_changes %llu\n%s",
	         omni__cache_ttl_ms(c), atomic_load(&c->watch_ok) ? 1 : 0,
	         entries, copies, dirty,
	         (unsigned long long)atomic_load(&c->n_stat),
	         (unsigned long long)atomic_load(&c->n_attr_hits),
	         (unsigned long long)atomic_load(&c->n_neg_hits),
	         (unsigned long long)atomic_load(&c->n_listings),
	         (unsigned long long)atomic_load(&c->n_listing_hits),
	         (unsigned long long)atomic_load(&c->n_stats_remote),
	         (unsigned long long)atomic_load(&c->n_opens),
	         (unsigned long long)atomic_load(&c->n_content_hits),
	         (unsigned long long)atomic_load(&c->n_downloads),
	         (unsigned long long)atomic_load(&c->n_local_only),
	         (unsigned long long)atomic_load(&c->n_uploads),
	         (unsigned long long)atomic_load(&c->n_upload_errors),
	         (unsigned long long)atomic_load(&c->n_invalidations),
	         (unsigned long long)atomic_load(&c->n_events),
	         (unsigned long long)atomic_load(&c->n_events_ignored),
	         (unsigned long long)atomic_load(&c->n_prefetched),
	         (unsigned long long)atomic_load(&c->n_prefetch_used),
	         c->opts.writeback ? 1 : 0,
	         (unsigned long long)atomic_load(&c->n_spooled),
	         (unsigned long long)atomic_load(&c->n_recovered), nmeta,
	         (unsigned long long)atomic_load(&c->n_meta_batches),
	         (unsigned long long)atomic_load(&c->n_meta_changes),
	         inner ? inner : "");
	free(inner);
	return out;
}

/* --- the session ---------------------------------------------------------- */

static int cache_start(struct omni_backend *b)
{
	struct cache *c = omni__cache_of(b);
	int rc = omni_backend_start(c->inner);

	if (rc < 0)
		return rc;
	if (omni_vfs_caps(c->inner) & OMNI_CAP_WATCH) {
		rc = omni_vfs_watch(c->inner, omni__cache_on_change, c);
		if (rc < 0) {
			omni_log(OMNI_LOG_WARN,
			         "cache: no change watch (%s); changes made in "
			         "the sandbox show after %.1f s",
			         omni_error_last(), c->opts.ttl);
			omni_error_clear();
		} else {
			c->watching = true;
		}
	}
	/* The folder of pending uploads; what an earlier session left in
	 * it goes up with omni__cache_recover(). */
	if (omni__cache_spool_open(c) < 0) {
		omni_log(OMNI_LOG_WARN,
		         "cache: %s; pending uploads are kept in memory only",
		         omni_error_last());
		omni_error_clear();
	}
	omni__cache_maint_start(c);
	return 0;
}

void omni__cache_recover(struct omni_backend *b)
{
	omni__cache_spool_recover(omni__cache_of(b));
}

static int cache_shutdown(struct omni_backend *b)
{
	struct cache *c = omni__cache_of(b);
	struct omni__error_saved saved = { .code = 0 };

	omni__cache_maint_stop(c);
	omni__cache_prefetch_stop(c);
	long long until =
	    omni__now_ms() + (long long)(c->opts.shutdown_wait * 1000);
	int rc = omni__cache_flush_all_until(c, until);

	if (rc < 0) {
		omni__error_save(&saved);
		omni_log(OMNI_LOG_ERROR, "%s", saved.msg);
	}
	/* What is left waits on disk for the next mount. */
	if (c->spool_fd >= 0)
		omni__cache_spool_keep_dirty(c);
	int src = omni_backend_shutdown(c->inner);
	if (rc < 0)
		return omni__error_restore(&saved, rc);
	return src;
}

static void cache_destroy(struct omni_backend *b)
{
	struct cache *c = omni__cache_of(b);

	omni__cache_maint_stop(c);
	omni__cache_prefetch_stop(c);
	omni_backend_free(c->inner);
	for (size_t i = 0; c->entries.b && i < c->entries.nb; i++) {
		for (struct centry *e = (struct centry *)c->entries.b[i], *next;
		     e; e = next) {
			next = (struct centry *)e->l.next;
			omni__cache_entry_free(e);
		}
	}
	for (size_t i = 0; c->nodes.b && i < c->nodes.nb; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i], *next; n;
		     n = next) {
			next = (struct cnode *)n->l.next;
			if (n->dirty && !n->spool_id)
				omni_log(OMNI_LOG_ERROR,
				         "cache: %s: changes never uploaded",
				         n->l.path);
			omni__cache_node_free(NULL, n);
		}
	}
	free(c->entries.b);
	free(c->nodes.b);
	omni__cache_meta_free(c);
	if (c->spool_fd >= 0)
		close(c->spool_fd);
	pthread_mutex_destroy(&c->meta_lock);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->listener_lock);
	pthread_cond_destroy(&c->maint_cond);
	pthread_cond_destroy(&c->pq_cond);
	omni__backend_finish(b);
	free(c);
}

static const struct omni_backend_ops cache_ops = {
	.version = OMNI_BACKEND_OPS_VERSION,
	.name = "cache",
	.caps = OMNI_CAP_REMOTE | OMNI_CAP_TTY | OMNI_CAP_WATCH,
	.start = cache_start,
	.shutdown = cache_shutdown,
	.destroy = cache_destroy,
	.stat = omni__cache_stat,
	.readdir = omni__cache_readdir,
	.mkdir = omni__cache_mkdir,
	.rmdir = omni__cache_rmdir,
	.unlink = omni__cache_unlink,
	.rename = omni__cache_rename,
	.symlink = omni__cache_symlink,
	.readlink = omni__cache_readlink,
	.link = omni__cache_link,
	.chmod = omni__cache_chmod,
	.chown = omni__cache_chown,
	.utimens = omni__cache_utimens,
	.truncate = omni__cache_truncate,
	.statfs = cache_statfs,
	.open = omni__cache_open,
	.read = omni__cache_read,
	.write = omni__cache_write,
	.fstat = omni__cache_fstat,
	.ftruncate = omni__cache_ftruncate,
	.flush = omni__cache_flush,
	.fsync = omni__cache_fsync,
	.fallocate = omni__cache_fallocate,
	.file_fd = omni__cache_file_fd,
	.release = omni__cache_release,
	.exec_start = cache_exec_start,
	.exec_free = cache_exec_free,
	.watch = omni__cache_watch,
	.stats = cache_stats,
	.invalidate = omni__cache_invalidate,
};

bool omni__cache_is(const struct omni_backend *b)
{
	return b && b->ops == &cache_ops;
}

int omni__cache_wrap(struct omni_backend **out, struct omni_backend *inner,
                     const struct omni__cache_options *opts)
{
	struct omni__cache_options defaults = OMNI__CACHE_OPTIONS_INIT;
	struct cache *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	if (!c) {
		omni_backend_free(inner);
		return omni_error_set(-ENOMEM, "cache: out of memory");
	}
	rc = omni__backend_init(
	    &c->base, &cache_ops, omni_backend_project_id(inner),
	    omni_backend_get_working_directory(inner), NULL);
	if (rc < 0) {
		omni_backend_free(inner);
		free(c);
		return rc;
	}
	c->inner = inner;
	c->opts = opts ? *opts : defaults;
	if (c->opts.ttl < 0)
		c->opts.ttl = 0;
	if (c->opts.watch_ttl < c->opts.ttl)
		c->opts.watch_ttl = c->opts.ttl;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	pthread_mutex_init(&c->listener_lock, NULL);
	pthread_cond_init(&c->maint_cond, NULL);
	pthread_cond_init(&c->pq_cond, NULL);
	pthread_mutex_init(&c->meta_lock, NULL);
	c->spool_fd = -1;
	if (omni__cache_table_init(&c->entries) < 0 ||
	    omni__cache_table_init(&c->nodes) < 0) {
		cache_destroy(&c->base);
		return omni_error_set(-ENOMEM, "cache: out of memory");
	}
	*out = &c->base;
	return 0;
}
