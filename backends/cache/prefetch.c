/*
 * backends/cache/prefetch.c - fetching a directory's small files ahead.
 *
 * A second download in the same directory within 2 s looks like a
 * reader going through it (cat *, grep -r, a build): the other small
 * regular files (up to PREFETCH_MAX_SIZE) of its fresh listing that have
 * no copy yet are fetched, once per TTL and at most PREFETCH_PER_DIR of
 * them: in one command streaming them all (stream.c, PREFETCH_DIR_BYTES
 * at most) when the inner backend runs commands, else each as an open
 * would, by up to PREFETCH_THREADS threads started on demand (a later
 * open waits for one in flight). When the reader goes on to a sibling
 * directory within 5 s (find | xargs cat, grep -r), the parent's other
 * listed directories are streamed too (PREFETCH_SIBLINGS at most). A
 * single file read never triggers it, so the budgets of single
 * operations hold.
 *
 * Listings the same way: a second subdirectory of one directory listed
 * for a reader within 2 s looks like a walker (ls -R, find, du), which
 * lists one directory after another, a round trip each: the directory's
 * other subdirectories without a fresh listing are listed ahead, once per
 * TTL and at most PREFETCH_PER_DIR of them, by the same threads, several
 * at once (the walker's own readdir waits for one in flight). A single
 * listing never triggers it.
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

/* Queue item for a directory streamed in one command (stream.c), for a
 * directory listed ahead; other items are paths fetched one by one. */
#define DIR_ITEM  '\001'
#define LIST_ITEM '\002'

/* kind: DIR_ITEM, LIST_ITEM, or 0 for a file. */
static bool queue_add_locked(struct cache *c, const char *item, char kind)
{
	if (c->pq_len >= PREFETCH_QUEUE)
		return false;
	size_t len = strlen(item);
	char *copy = malloc(len + 2);
	if (!copy)
		return false;
	copy[0] = kind;
	memcpy(copy + (kind ? 1 : 0), item, len + 1);
	c->pq[(c->pq_head + c->pq_len) % PREFETCH_QUEUE] = copy;
	c->pq_len++;
	return true;
}

/* Queue dir's small regular files without a copy, one by one. The lock
 * is held; the number queued. */
static size_t queue_files_locked(struct cache *c, const char *parent)
{
	struct centry *d = omni__cache_table_find(&c->entries, parent);
	char child[PATH_MAX];
	size_t queued = 0;

	if (!omni__cache_listing_fresh(d) || d->loading)
		return 0;
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
		if (!queue_add_locked(c, child, 0))
			break;
		queued++;
	}
	return queued;
}

/* Fetch path as an open would. The lock is held on entry and return. */
static void fetch_one_locked(struct cache *c, char *path)
{
	struct centry *e = omni__cache_table_find(&c->entries, path);
	if (!omni__cache_entry_fresh(e) || e->negative ||
	    !S_ISREG(e->st.st_mode) || omni__cache_node_find(c, path)) {
		free(path);
		return;
	}
	struct stat st = e->st;
	struct cnode *n = omni__cache_node_add_loading(c, path);
	if (!n)
		return;
	uint64_t gen = c->gen;
	pthread_mutex_unlock(&c->lock);
	int rc = omni__cache_download(c, path, &n->fd);
	pthread_mutex_lock(&c->lock);
	if (omni__cache_node_loaded(c, n, rc) < 0) {
		omni_error_clear();
		return;
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

/* A directory: one stream, or its files one by one when the inner
 * backend runs no commands. The lock is held on entry and return. */
static void fetch_dir_locked(struct cache *c, char *item)
{
	const char *dir = item + 1;

	pthread_mutex_unlock(&c->lock);
	int rc = c->no_stream ? -ENOSYS : omni__cache_stream_dir(c, dir);
	pthread_mutex_lock(&c->lock);
	if (rc == -ENOSYS) {
		c->no_stream = true;
		omni_error_clear();
		queue_files_locked(c, dir);
		pthread_cond_broadcast(&c->pq_cond);
	}
	free(item);
}

/*
 * Prefetching threads: each takes the queue's next item and fetches it
 * (a directory in one stream, or a file as an open would; a later open
 * waits for one in flight).
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
		char *item = c->pq[c->pq_head];
		c->pq_head = (c->pq_head + 1) % PREFETCH_QUEUE;
		c->pq_len--;
		if (item[0] == DIR_ITEM) {
			fetch_dir_locked(c, item);
		} else if (item[0] == LIST_ITEM) {
			if (omni__cache_load_listing_locked(c, item + 1) < 0)
				omni_error_clear();
			free(item);
		} else
			fetch_one_locked(c, item);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* A reader went from one directory to a sibling of it: the other
 * directories of their parent with a fresh listing are queued too (at
 * most PREFETCH_SIBLINGS). The lock is held. */
static size_t queue_siblings_locked(struct cache *c, const char *parent,
                                    long long now)
{
	char p[PATH_MAX];
	const char *name;
	size_t queued = 0;

	for (size_t i = 0; i < c->entries.nb && queued < PREFETCH_SIBLINGS;
	     i++) {
		for (struct centry *e = (struct centry *)c->entries.b[i];
		     e && queued < PREFETCH_SIBLINGS;
		     e = (struct centry *)e->l.next) {
			if (!e->l.path[0] || !omni__cache_listing_fresh(e) ||
			    e->loading ||
			    (e->prefetched_at &&
			     now - e->prefetched_at < omni__cache_ttl_ms(c)))
				continue;
			omni__cache_split(e->l.path, p, sizeof(p), &name);
			if (strcmp(p, parent) != 0)
				continue;
			if (!queue_add_locked(c, e->l.path, DIR_ITEM))
				return queued;
			e->prefetched_at = now;
			queued++;
		}
	}
	return queued;
}

/* Where the reader's directory is: its parent and itself, to see it go on
 * to a sibling. The lock is held; true when it did. */
static bool moved_to_sibling(struct cache *c, const char *dir,
                             const char *parent, long long now)
{
	bool moved = c->stream_parent && c->stream_dir &&
	             strcmp(c->stream_parent, parent) == 0 &&
	             strcmp(c->stream_dir, dir) != 0 &&
	             now - c->stream_at < 5000;
	char *p = strdup(parent), *d = strdup(dir);

	if (p && d) {
		free(c->stream_parent);
		free(c->stream_dir);
		c->stream_parent = p;
		c->stream_dir = d;
		c->stream_at = now;
	} else {
		free(p);
		free(d);
	}
	return moved;
}

/* Threads for queued items (up to PREFETCH_THREADS), woken. The lock is
 * held. */
static void start_locked(struct cache *c, size_t queued)
{
	while (queued > 0 && !c->pq_stop &&
	       c->nprefetchers < PREFETCH_THREADS) {
		if (pthread_create(&c->prefetchers[c->nprefetchers], NULL,
		                   prefetch_main, c) != 0)
			break;
		c->nprefetchers++;
	}
	pthread_cond_broadcast(&c->pq_cond);
}

/* A file of path's directory was downloaded. The lock is held. */
void omni__cache_note_download(struct cache *c, const char *path)
{
	char parent[PATH_MAX], grand[PATH_MAX];
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
	size_t queued;
	if (c->no_stream) {
		queued = queue_files_locked(c, parent);
	} else {
		queued = queue_add_locked(c, parent, DIR_ITEM) ? 1 : 0;
		omni__cache_split(parent, grand, sizeof(grand), &name);
		if (parent[0] && moved_to_sibling(c, parent, grand, now))
			queued += queue_siblings_locked(c, grand, now);
	}
	omni_error_clear();
	start_locked(c, queued);
}

/* A subdirectory of dir's parent was listed for a reader. The lock is
 * held. */
void omni__cache_note_listing(struct cache *c, const char *dir)
{
	char parent[PATH_MAX], child[PATH_MAX];
	const char *name;
	long long now = omni__now_ms();
	size_t queued = 0;

	if (!dir[0])
		return;
	omni__cache_split(dir, parent, sizeof(parent), &name);
	struct centry *d = omni__cache_table_find(&c->entries, parent);
	if (!omni__cache_listing_fresh(d) || d->loading)
		return;
	d->ls_count = now - d->ls_at < 2000 ? d->ls_count + 1 : 1;
	d->ls_at = now;
	if (d->ls_count < 2 ||
	    (d->listed_ahead_at &&
	     now - d->listed_ahead_at < omni__cache_ttl_ms(c)))
		return;
	d->listed_ahead_at = now;
	if (!c->pq && !(c->pq = calloc(PREFETCH_QUEUE, sizeof(*c->pq))))
		return;
	for (size_t i = 0; i < d->nnames && queued < PREFETCH_PER_DIR; i++) {
		if (omni__cache_join(child, sizeof(child), parent,
		                     d->names[i]) < 0)
			continue;
		struct centry *e = omni__cache_table_find(&c->entries, child);
		if (!e || e->negative || !S_ISDIR(e->st.st_mode) ||
		    e->loading || omni__cache_listing_fresh(e))
			continue;
		if (!queue_add_locked(c, child, LIST_ITEM))
			break;
		queued++;
	}
	omni_error_clear();
	start_locked(c, queued);
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
	free(c->stream_parent);
	free(c->stream_dir);
	c->stream_parent = c->stream_dir = NULL;
	pthread_mutex_unlock(&c->lock);
}
