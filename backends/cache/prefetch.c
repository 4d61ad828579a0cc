/*
 * backends/cache/prefetch.c - fetching a directory's small files ahead.
 *
 * A second download in the same directory within 2 s looks like a
 * reader going through it (cat *, grep -r, a build): the other small
 * regular files (up to PREFETCH_MAX_SIZE) of its fresh listing that have
 * no copy yet are queued, once per TTL and at most PREFETCH_PER_DIR of
 * them, and up to PREFETCH_THREADS threads, started on demand, fetch
 * them, each as an open would (a later open waits for one in flight). A
 * single file read never triggers it, so the budgets of single
 * operations hold.
 *
 * Locking: the queue (c->pq, a ring of PREFETCH_QUEUE paths) is under
 * c->lock; downloads run without it. prefetch_stop, at shutdown, joins
 * the threads and empties the queue.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "omni/error.h"

/*
 * Prefetching. A second download in the same directory within 2 s looks
 * like a reader going through it (cat *, grep -r, a build): the other
 * small regular files of its fresh listing that have no copy yet are
 * queued, once per TTL, and PREFETCH_THREADS threads fetch them, each as
 * an open would (a later open waits for one in flight). A single file
 * read never triggers it, so the budgets of single operations hold.
 */
static void *prefetch_main(void *arg)
{
	struct cache *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->pq_stop && c->pq_len == 0)
			pthread_cond_wait(&c->pq_cond, &c->lock);
		if (c->pq_stop)
			break;
		char *path = c->pq[c->pq_head];
		c->pq_head = (c->pq_head + 1) % PREFETCH_QUEUE;
		c->pq_len--;
		struct centry *e = omni__cache_table_find(&c->entries, path);
		if (!omni__cache_entry_fresh(e) || e->negative ||
		    !S_ISREG(e->st.st_mode) || omni__cache_node_find(c, path)) {
			free(path);
			continue;
		}
		struct stat st = e->st;
		struct cnode *n = omni__cache_node_add_loading(c, path);
		if (!n)
			continue;
		uint64_t gen = c->gen;
		pthread_mutex_unlock(&c->lock);
		int rc = omni__cache_download(c, path, &n->fd);
		pthread_mutex_lock(&c->lock);
		if (omni__cache_node_loaded(c, n, rc) < 0) {
			omni_error_clear();
			continue;
		}
		atomic_fetch_add(&c->n_prefetched, 1);
		n->exists_remote = true;
		n->prefetched = true;
		n->base = st;
		n->rsize = st.st_size;
		n->rmtime = st.st_mtim;
		if (gen != c->gen) {
			omni__cache_table_del(&c->nodes, n);
			n->in_table = false;
		}
		omni__cache_node_put_locked(c, n);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* A file of path's directory was downloaded. The lock is held. */
void omni__cache_note_download(struct cache *c, const char *path)
{
	char parent[PATH_MAX], child[PATH_MAX];
	const char *name;
	long long now = omni__now_ms();

	omni__cache_split(path, parent, sizeof(parent), &name);
	struct centry *d = omni__cache_table_find(&c->entries, parent);
	if (!omni__cache_listing_fresh(d) || d->loading)
		return;
	d->dl_count = now - d->dl_at < 2000 ? d->dl_count + 1 : 1;
	d->dl_at = now;
	if (d->dl_count < 2 || (d->prefetched_at &&
	                        now - d->prefetched_at < omni__cache_ttl_ms(c)))
		return;
	d->prefetched_at = now;
	if (!c->pq) {
		c->pq = calloc(PREFETCH_QUEUE, sizeof(*c->pq));
		if (!c->pq)
			return;
	}
	size_t queued = 0;
	for (size_t i = 0; i < d->nnames && queued < PREFETCH_PER_DIR &&
	                   c->pq_len < PREFETCH_QUEUE;
	     i++) {
		if (omni__cache_join(child, sizeof(child), parent,
		                     d->names[i]) < 0)
			continue;
		struct centry *e = omni__cache_table_find(&c->entries, child);
		if (!e || e->negative || !S_ISREG(e->st.st_mode) ||
		    e->st.st_size > PREFETCH_MAX_SIZE ||
		    omni__cache_node_find(c, child))
			continue;
		char *copy = strdup(child);
		if (!copy)
			break;
		c->pq[(c->pq_head + c->pq_len) % PREFETCH_QUEUE] = copy;
		c->pq_len++;
		queued++;
	}
	omni_error_clear();
	while (queued > 0 && !c->pq_stop &&
	       c->nprefetchers < PREFETCH_THREADS) {
		if (pthread_create(&c->prefetchers[c->nprefetchers], NULL,
		                   prefetch_main, c) != 0)
			break;
		c->nprefetchers++;
	}
	pthread_cond_broadcast(&c->pq_cond);
}

void omni__cache_prefetch_stop(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->pq_stop = true;
	int n = c->nprefetchers;
	c->nprefetchers = 0;
	pthread_cond_broadcast(&c->pq_cond);
	pthread_mutex_unlock(&c->lock);
	for (int i = 0; i < n; i++)
		pthread_join(c->prefetchers[i], NULL);
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->pq_len; i++)
		free(c->pq[(c->pq_head + i) % PREFETCH_QUEUE]);
	c->pq_len = 0;
	free(c->pq);
	c->pq = NULL;
	pthread_mutex_unlock(&c->lock);
}
