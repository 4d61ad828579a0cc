/*
 * backends/cache/cache.c - a caching backend in front of a remote one
 *(OMNI_CAP_REMOTE), so that the mount costs as few round trips as the
 *operations allow.
 *
 * It is a decorator: a backend with its own ops table whose operations
 * answer from memory where they can and call the wrapped backend (inner)
 * through the omni_vfs_* wrappers where they must. main.c wraps a remote
 * backend in it; ops.c does not know it is there.
 *
 * Attributes. One table maps a workspace path to what is known about it:
 * its attributes, or that it does not exist (a negative entry), until an
 * expiry time (the TTL, default 5 s; 60 s while the backend's change
 * watch is connected, since its events say what changed). A directory's
 * entry may also hold its listing. Invariant: while a listing is fresh,
 * every name in it has a fresh entry, so a name missing from a fresh
 * listing does not exist.
 *	stat    entry fresh: 0 requests. Else the parent directory is listed
 *	        (one ListDir fills the attributes of every entry in it, and
 *	        answers later lookups of missing names as well); the root,
 *	        and names in directories that cannot be listed, use Stat.
 *	readdir a fresh listing: 0 requests; else one ListDir.
 * Concurrent misses on one directory wait for a single ListDir.
 *
 * Content. open fetches the whole file into a private local file
 * (O_TMPFILE, 0600, under $TMPDIR): the wrapped backend downloads it and
 * the cache keeps a duplicate of its descriptor. Reads and writes go to
 * that file (ops.c splices from it through file_fd). A clean copy stays
 * after close (up to max_clean_files / max_clean_bytes, least recently
 * used out first) and is reused while the file's size and modification
 * time are unchanged, so a second open costs nothing. A new file, or one
 * opened with O_TRUNC, is made locally with no request. A changed copy
 * is uploaded (one request) on flush (every close) and fsync when dirty;
 * the upload refreshes the cached attributes without a Stat. Two
 * exceptions keep `cmd > file` and lock files cheap: a flush of a copy
 * that is empty and was never written waits (the shell closes the new
 * file once before the command writes to its duplicate), and a new file
 * never written is uploaded by the background uploader a second after its
 * release, or before a command (git's index.lock, created and unlinked
 * in milliseconds, then costs nothing). A failed upload keeps the copy
 * dirty and returns the error (EIO; ENOSPC, EDQUOT and EFBIG as they are)
 * to close and fsync; the background uploader retries copies nobody has
 * open (1 s, doubling to 30 s), and the next flush, fsync, command or
 * unmount tries again. Nothing written is dropped, except by unlink.
 *
 * Prefetching. A second download in one directory within 2 s fetches the
 * directory's other small files ahead, in parallel (see prefetch_main).
 *
 * Names. mkdir, rmdir, unlink, rename: one request each, and the cache
 * is updated locally (a new directory is known empty, so creating files
 * in it costs nothing until they are uploaded). rmdir of a directory
 * whose fresh listing is empty is one Remove when the backend's unlink
 * removes directories (OMNI_CAP_REMOVE_DIRS), else the backend's rmdir.
 * A file made through the mount and not yet uploaded is renamed, chmod-ed
 * or unlinked locally (its mode travels with its first upload). rename
 * first uploads a dirty source that exists remotely; utimens a dirty file
 * (an upload later would reset its time). Attributes that the remote side
 * sets itself (the time of a mkdir, of an upload) are our clock's until
 * the change event or the next listing brings the server's.
 *
 * Coherence. Before a command (omnifs_cache_flush_all) every dirty file
 * is uploaded; after it (invalidate "") everything cached but dirty
 * copies is dropped and nothing is fetched until asked. The backend's
 * change events drop the changed path and its parent's listing and are
 * passed on to the FUSE layer (the listener), which drops the kernel's
 * copies. Events that echo our own changes are ignored: a path is marked
 * while a request changing it runs and for SELF_MARK_MS after, and an
 * event in that window is ours when the attributes it carries agree with
 * what we cached (a sandbox process changing the same file in that
 * window with the same size and mode goes unnoticed until the TTL). A
 * lost watch drops everything and falls back to the short TTL.
 *
 * Inode numbers: a hash of the path, the same for every answer.
 *
 * Locking. c->lock guards both tables, every node's fields but its
 * content, the clean-copy LRU, the marks, the prefetch queue and the
 * uploader's state; c->cond wakes threads waiting for a ListDir or a
 * download in flight. No request and no call into the listener is made
 * with c->lock held. A node's flush_lock keeps its uploads in order with
 * renames and unlinks of it. Nodes are reference counted (open handles
 * and short pins); a node leaves the table when unlinked or invalidated
 * and is freed at its last reference. listener_lock is held around calls
 * into the listener, so removing it waits for a call in progress.
 * Threads: the background uploader and up to PREFETCH_THREADS
 * prefetchers, all stopped by shutdown before the last uploads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/vfs.h"

/* Reading files one after the other in a directory fetches the rest of
 * its small files ahead, this many at once. */
#define PREFETCH_THREADS  8
#define PREFETCH_QUEUE    1024
#define PREFETCH_MAX_SIZE (1 << 20)
#define PREFETCH_PER_DIR  256

/* How long our own changes make matching watch events ignored. */
#define SELF_MARK_MS 3000
#define SELF_MARKS   512

/* --- data ----------------------------------------------------------------- */

/* The hash chain link, first in every table item. */
struct link {
	struct link *next;
	uint64_t hash;
	char *path;
};

struct centry {
	struct link l;
	bool negative;
	struct stat st;
	long long expires; /* ms, monotonic */
	char *link;        /* readlink answer, or NULL */
	/* A directory's listing. */
	bool listed;
	long long list_expires;
	char **names;
	size_t nnames, capnames;
	bool loading;
	bool changed; /* invalidated while a ListDir was in flight */
	unsigned int mark;
	/* Downloads in this directory, to see a reader going through it. */
	long long dl_at, prefetched_at;
	unsigned int dl_count;
};

struct cnode {
	struct link l;
	bool in_table;
	bool unlinked;
	int fd;
	int refs;
	bool loading;
	bool dirty;
	bool written;       /* write() since it became dirty */
	long long retry_at; /* ms: the background upload's next try */
	long long backoff;
	bool prefetched; /* fetched ahead and not opened yet */
	bool failed;     /* the last upload, of wgen failed_gen, failed */
	uint64_t failed_gen;
	bool exists_remote; /* false: made here, never uploaded */
	uint64_t wgen;
	mode_t create_mode; /* given to the first upload of a new file */
	struct stat base;   /* attributes apart from content size/times */
	/* The remote version the copy matches. */
	struct timespec rmtime;
	off_t rsize;
	bool rmtime_approx; /* our upload time, not the server's */
	struct cnode *lru_prev, *lru_next;
	bool in_lru;
	pthread_mutex_t flush_lock;
};

struct table {
	struct link **b;
	size_t nb, n;
};

struct cache {
	struct omni_backend base;
	struct omni_backend *inner;
	struct omnifs_cache_options opts;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct table entries; /* struct centry */
	struct table nodes;   /* struct cnode */
	unsigned int mark_seq;
	uint64_t gen; /* bumped when everything is dropped */
	bool watching;
	atomic_bool watch_ok;
	bool watch_lost; /* the watch was connected once and lost since */
	/* Clean copies nobody has open, oldest first. */
	struct cnode *lru_head, *lru_tail;
	size_t lru_count;
	unsigned long long lru_bytes;
	/* Our own recent changes, for watch events. */
	struct {
		uint64_t hash;
		long long until;
		int busy;
	} marks[SELF_MARKS];
	size_t mark_next;
	pthread_mutex_t listener_lock;
	omni_change_cb listener;
	void *listener_payload;
	/* The background uploader. */
	pthread_t maint;
	pthread_cond_t maint_cond;
	bool maint_running, maint_stop;
	/* Counters. */
	atomic_ullong n_stat, n_attr_hits, n_neg_hits, n_listings,
	    n_listing_hits, n_stats_remote, n_opens, n_content_hits,
	    n_downloads, n_uploads, n_upload_errors, n_invalidations, n_events,
	    n_events_ignored, n_local_only, n_prefetched, n_prefetch_used;
	/* Prefetching: a queue of paths and the threads that fetch them. */
	pthread_t prefetchers[PREFETCH_THREADS];
	int nprefetchers;
	char **pq;
	size_t pq_head, pq_len;
	pthread_cond_t pq_cond;
	bool pq_stop;
};

struct cfile {
	struct omni_file base;
	struct cnode *node;
	int flags;
};

static struct cache *cache_of(struct omni_backend *b)
{
	return (struct cache *)b;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t hash_path(const char *p)
{
	uint64_t h = 1469598103934665603ull;

	for (; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

static ino_t ino_of(const char *path)
{
	uint64_t h = hash_path(path) ^ 0x9e3779b97f4a7c15ull;

	return (ino_t)(h < 2 ? h + 2 : h);
}

static long long ttl_ms(struct cache *c)
{
	double t = atomic_load(&c->watch_ok) ? c->opts.watch_ttl : c->opts.ttl;

	return (long long)(t * 1000);
}

/* The parent of path ("" for a top-level name) and its last component. */
static void split(const char *path, char *parent, size_t size,
                  const char **name)
{
	const char *slash = strrchr(path, '/');

	if (!slash) {
		parent[0] = '\0';
		*name = path;
		return;
	}
	size_t n = (size_t)(slash - path);
	if (n >= size)
		n = size - 1;
	memcpy(parent, path, n);
	parent[n] = '\0';
	*name = slash + 1;
}

static int join(char *out, size_t size, const char *dir, const char *name)
{
	int n = dir[0] ? snprintf(out, size, "%s/%s", dir, name)
	               : snprintf(out, size, "%s", name);

	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "cache: path too long");
	return 0;
}

/* Is path equal to prefix or below it ("" is above everything)? */
static bool under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 0)
		return true;
	return strncmp(path, prefix, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

/* --- tables (chained hashing on the path) --------------------------------- */

static int table_init(struct table *t)
{
	t->nb = 1024;
	t->n = 0;
	t->b = calloc(t->nb, sizeof(*t->b));
	return t->b ? 0 : -ENOMEM;
}

static void *table_find(struct table *t, const char *path)
{
	uint64_t h = hash_path(path);

	for (struct link *l = t->b[h & (t->nb - 1)]; l; l = l->next)
		if (l->hash == h && strcmp(l->path, path) == 0)
			return l;
	return NULL;
}

static void table_grow(struct table *t)
{
	size_t nb = t->nb * 2;
	struct link **b = calloc(nb, sizeof(*b));

	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < t->nb; i++) {
		for (struct link *l = t->b[i], *next; l; l = next) {
			next = l->next;
			l->next = b[l->hash & (nb - 1)];
			b[l->hash & (nb - 1)] = l;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

static void table_add(struct table *t, void *item)
{
	struct link *l = item;

	if (t->n + 1 > t->nb)
		table_grow(t);
	l->next = t->b[l->hash & (t->nb - 1)];
	t->b[l->hash & (t->nb - 1)] = l;
	t->n++;
}

static void table_del(struct table *t, void *item)
{
	struct link *l = item;
	struct link **pp = &t->b[l->hash & (t->nb - 1)];

	while (*pp && *pp != l)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = l->next;
		t->n--;
	}
	l->next = NULL;
}

/* --- attribute entries ---------------------------------------------------- */

static void listing_clear(struct centry *e)
{
	for (size_t i = 0; i < e->nnames; i++)
		free(e->names[i]);
	free(e->names);
	e->names = NULL;
	e->nnames = e->capnames = 0;
	e->listed = false;
}

static void entry_free(struct centry *e)
{
	listing_clear(e);
	free(e->link);
	free(e->l.path);
	free(e);
}

static struct centry *entry_get(struct cache *c, const char *path)
{
	struct centry *e = table_find(&c->entries, path);

	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e || !(e->l.path = strdup(path))) {
		free(e);
		return NULL;
	}
	e->l.hash = hash_path(path);
	table_add(&c->entries, e);
	return e;
}

/* Forget e. An entry whose listing is being fetched stays (its waiter
 * needs it) but loses its content and is marked changed. */
static void entry_drop(struct cache *c, struct centry *e)
{
	if (e->loading) {
		e->changed = true;
		e->expires = 0;
		e->negative = false;
		free(e->link);
		e->link = NULL;
		listing_clear(e);
		return;
	}
	table_del(&c->entries, e);
	entry_free(e);
}

static bool fresh(long long expires)
{
	return expires > now_ms();
}

static bool entry_fresh(const struct centry *e)
{
	return e && fresh(e->expires) && (e->negative || e->st.st_mode);
}

static bool listing_fresh(const struct centry *e)
{
	return e && e->listed && fresh(e->list_expires);
}

static void names_remove(struct centry *d, const char *name)
{
	for (size_t i = 0; i < d->nnames; i++) {
		if (strcmp(d->names[i], name) == 0) {
			free(d->names[i]);
			d->names[i] = d->names[--d->nnames];
			return;
		}
	}
}

/* Add name to d's listing; on failure the listing is dropped (it would
 * be incomplete). */
static void names_add(struct centry *d, const char *name)
{
	for (size_t i = 0; i < d->nnames; i++)
		if (strcmp(d->names[i], name) == 0)
			return;
	if (d->nnames == d->capnames) {
		size_t cap = d->capnames ? d->capnames * 2 : 16;
		char **n = realloc(d->names, cap * sizeof(*n));
		if (!n) {
			listing_clear(d);
			return;
		}
		d->names = n;
		d->capnames = cap;
	}
	if (!(d->names[d->nnames] = strdup(name))) {
		listing_clear(d);
		return;
	}
	d->nnames++;
}

/* Record that path exists with st (and is in its parent's listing). */
static void note_exists(struct cache *c, const char *path,
                        const struct stat *st)
{
	char parent[PATH_MAX];
	const char *name;
	struct centry *e = entry_get(c, path);

	if (!e)
		return;
	if (e->negative || (e->st.st_mode & S_IFMT) != (st->st_mode & S_IFMT))
		listing_clear(e);
	if (e->st.st_size != st->st_size ||
	    e->st.st_mtim.tv_sec != st->st_mtim.tv_sec ||
	    e->st.st_mtim.tv_nsec != st->st_mtim.tv_nsec) {
		free(e->link);
		e->link = NULL;
	}
	e->negative = false;
	e->st = *st;
	e->st.st_ino = ino_of(path);
	e->expires = now_ms() + ttl_ms(c);
	if (!path[0])
		return;
	split(path, parent, sizeof(parent), &name);
	struct centry *d = table_find(&c->entries, parent);
	if (d && d->listed)
		names_add(d, name);
	if (d && d->loading)
		d->changed = true;
}

/* Forget path and everything below it. */
static void drop_tree(struct cache *c, const char *path)
{
	struct centry *top = path[0] ? table_find(&c->entries, path) : NULL;

	/* Only a directory (or what is not known) has entries below. */
	if (top &&
	    (top->negative || (top->st.st_mode && !S_ISDIR(top->st.st_mode)))) {
		entry_drop(c, top);
		return;
	}
	for (size_t i = 0; i < c->entries.nb; i++) {
		for (struct centry *e = (struct centry *)c->entries.b[i], *next;
		     e; e = next) {
			next = (struct centry *)e->l.next;
			if (under(e->l.path, path))
				entry_drop(c, e);
		}
	}
}

/* Record that path does not exist (and leaves its parent's listing). */
static void note_gone(struct cache *c, const char *path)
{
	char parent[PATH_MAX];
	const char *name;

	drop_tree(c, path);
	struct centry *e = entry_get(c, path);
	if (e && !e->loading) {
		e->negative = true;
		e->expires = now_ms() + ttl_ms(c);
	}
	split(path, parent, sizeof(parent), &name);
	struct centry *d = table_find(&c->entries, parent);
	if (d && d->listed)
		names_remove(d, name);
	if (d && d->loading)
		d->changed = true;
}

/* Something about path changed without our knowing what: forget it and
 * its parent's listing. */
static void note_changed(struct cache *c, const char *path)
{
	char parent[PATH_MAX];
	const char *name;

	drop_tree(c, path);
	if (!path[0])
		return;
	split(path, parent, sizeof(parent), &name);
	struct centry *d = table_find(&c->entries, parent);
	if (d) {
		if (d->loading)
			d->changed = true;
		listing_clear(d);
	}
}

/* --- our own changes ------------------------------------------------------ */

/*
 * Our own changes come back as change events. A path is marked busy
 * while a request changing it runs (every event for it is ours), then
 * recent for SELF_MARK_MS: an event then is ours when the attributes it
 * carries agree with what we cached (a change made in the sandbox in
 * that window shows a different size, mode or type).
 */
enum mark_state { MARK_NONE, MARK_RECENT, MARK_BUSY };

static void mark_self(struct cache *c, const char *path, bool busy)
{
	uint64_t h = hash_path(path);
	long long now = now_ms();
	size_t slot = SELF_MARKS;

	for (size_t i = 0; i < SELF_MARKS; i++) {
		if (c->marks[i].hash == h) {
			slot = i;
			break;
		}
	}
	if (slot == SELF_MARKS) {
		/* A free or expired slot, else the oldest one. */
		slot = c->mark_next;
		for (size_t i = 0; i < SELF_MARKS; i++) {
			size_t j = (c->mark_next + i) % SELF_MARKS;
			if (c->marks[j].busy == 0 && c->marks[j].until <= now) {
				slot = j;
				break;
			}
		}
		c->mark_next = (slot + 1) % SELF_MARKS;
		c->marks[slot].hash = h;
		c->marks[slot].busy = 0;
	}
	if (busy) {
		c->marks[slot].busy++;
	} else if (c->marks[slot].busy > 0) {
		c->marks[slot].busy--;
	}
	c->marks[slot].until = now + SELF_MARK_MS;
}

static enum mark_state marked_self(struct cache *c, const char *path)
{
	uint64_t h = hash_path(path);
	long long now = now_ms();

	for (size_t i = 0; i < SELF_MARKS; i++) {
		if (c->marks[i].hash != h)
			continue;
		if (c->marks[i].busy > 0)
			return MARK_BUSY;
		if (c->marks[i].until > now)
			return MARK_RECENT;
	}
	return MARK_NONE;
}

/* --- content nodes -------------------------------------------------------- */

static void lru_remove(struct cache *c, struct cnode *n)
{
	if (!n->in_lru)
		return;
	if (n->lru_prev)
		n->lru_prev->lru_next = n->lru_next;
	else
		c->lru_head = n->lru_next;
	if (n->lru_next)
		n->lru_next->lru_prev = n->lru_prev;
	else
		c->lru_tail = n->lru_prev;
	n->lru_prev = n->lru_next = NULL;
	n->in_lru = false;
	c->lru_count--;
	c->lru_bytes -= (unsigned long long)n->rsize;
}

static void node_free(struct cnode *n)
{
	if (n->fd >= 0)
		close(n->fd);
	pthread_mutex_destroy(&n->flush_lock);
	free(n->l.path);
	free(n);
}

/* Take n out of the table (unlinked, invalidated, replaced). Frees it
 * when nobody holds it. */
static void node_detach(struct cache *c, struct cnode *n)
{
	if (n->in_table) {
		table_del(&c->nodes, n);
		n->in_table = false;
	}
	lru_remove(c, n);
	if (n->refs == 0 && !n->loading)
		node_free(n);
}

/* Keep at most the configured clean copies nobody has open. */
static void lru_trim(struct cache *c)
{
	while (c->lru_head && (c->lru_count > c->opts.max_clean_files ||
	                       c->lru_bytes > c->opts.max_clean_bytes))
		node_detach(c, c->lru_head);
}

static void lru_add(struct cache *c, struct cnode *n)
{
	n->lru_prev = c->lru_tail;
	n->lru_next = NULL;
	if (c->lru_tail)
		c->lru_tail->lru_next = n;
	else
		c->lru_head = n;
	c->lru_tail = n;
	n->in_lru = true;
	c->lru_count++;
	c->lru_bytes += (unsigned long long)n->rsize;
	lru_trim(c);
}

static struct cnode *node_find(struct cache *c, const char *path)
{
	return table_find(&c->nodes, path);
}

/* Drop a reference; the lock is held. */
static void node_put_locked(struct cache *c, struct cnode *n)
{
	if (--n->refs > 0)
		return;
	if (!n->in_table) {
		node_free(n);
	} else if (!n->dirty && !n->loading) {
		lru_add(c, n);
	}
}

/* The attributes of a copy: the cached ones (or those it was opened
 * with), with size and times from the copy itself when it changed. */
static void node_attr(struct cache *c, struct cnode *n, struct stat *st)
{
	struct centry *e = table_find(&c->entries, n->l.path);
	struct stat local;

	*st =
	    e && !e->negative && e->st.st_mode && n->in_table ? e->st : n->base;
	if (fstat(n->fd, &local) == 0) {
		st->st_size = local.st_size;
		st->st_blocks = local.st_blocks;
		if (n->dirty) {
			st->st_mtim = local.st_mtim;
			st->st_ctim = local.st_ctim;
		}
	}
	st->st_ino = ino_of(n->l.path);
}

/* --- fetching ------------------------------------------------------------- */

struct fetched {
	char **names;
	struct stat *st;
	size_t n, cap;
	bool oom;
};

static int fetched_add(const char *name, const struct stat *st, void *payload)
{
	struct fetched *f = payload;

	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		char **nn = realloc(f->names, cap * sizeof(*nn));
		if (nn)
			f->names = nn;
		struct stat *ns = nn ? realloc(f->st, cap * sizeof(*ns)) : NULL;
		if (!nn || !ns) {
			f->oom = true;
			return -ENOMEM;
		}
		f->st = ns;
		f->cap = cap;
	}
	if (!(f->names[f->n] = strdup(name))) {
		f->oom = true;
		return -ENOMEM;
	}
	f->st[f->n++] = *st;
	return 0;
}

static void fetched_free(struct fetched *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->names[i]);
	free(f->names);
	free(f->st);
	memset(f, 0, sizeof(*f));
}

/* Put a fetched listing of dir into the cache. The lock is held. */
static void install_listing(struct cache *c, struct centry *d,
                            struct fetched *f)
{
	char child[PATH_MAX];
	unsigned int mark = ++c->mark_seq;
	long long exp = now_ms() + ttl_ms(c);

	for (size_t i = 0; i < f->n; i++) {
		if (join(child, sizeof(child), d->l.path, f->names[i]) < 0)
			continue;
		struct centry *e = entry_get(c, child);
		if (!e) {
			listing_clear(d);
			return;
		}
		if (e->negative ||
		    (e->st.st_mode & S_IFMT) != (f->st[i].st_mode & S_IFMT))
			listing_clear(e);
		if (e->st.st_mtim.tv_sec != f->st[i].st_mtim.tv_sec ||
		    e->st.st_mtim.tv_nsec != f->st[i].st_mtim.tv_nsec ||
		    e->st.st_size != f->st[i].st_size) {
			free(e->link);
			e->link = NULL;
		}
		e->negative = false;
		e->st = f->st[i];
		e->st.st_ino = ino_of(child);
		e->expires = exp;
		e->mark = mark;
	}
	/* Names that are gone. */
	for (size_t i = 0; i < d->nnames; i++) {
		if (join(child, sizeof(child), d->l.path, d->names[i]) < 0)
			continue;
		struct centry *e = table_find(&c->entries, child);
		if (e && e->mark != mark)
			drop_tree(c, child);
	}
	listing_clear(d);
	d->names = f->names;
	d->nnames = d->capnames = f->n;
	f->names = NULL;
	f->n = f->cap = 0;
	/* Files made here and not uploaded yet belong in it too. */
	for (size_t i = 0; i < c->nodes.nb; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i]; n;
		     n = (struct cnode *)n->l.next) {
			char parent[PATH_MAX];
			const char *name;
			if (n->exists_remote)
				continue;
			split(n->l.path, parent, sizeof(parent), &name);
			if (strcmp(parent, d->l.path) != 0)
				continue;
			struct centry *e = entry_get(c, n->l.path);
			if (e && e->mark != mark) {
				e->negative = false;
				node_attr(c, n, &e->st);
				e->expires = exp;
				e->mark = mark;
				names_add(d, name);
			}
		}
	}
	d->listed = true;
	d->list_expires = exp;
	if (!d->st.st_mode)
		d->expires = 0; /* listed but its own attributes unknown */
}

/*
 * Make dir's listing fresh (one ListDir unless another thread is already
 * fetching it, which is waited for). When want is given, *found tells
 * whether that name is in it and *st gets its attributes. The lock is
 * held on entry and on return.
 */
static int load_listing(struct cache *c, const char *dir, const char *want,
                        bool *found, struct stat *st)
{
	struct fetched f = { 0 };
	struct centry *d;
	char child[PATH_MAX];
	int rc;

	for (;;) {
		d = entry_get(c, dir);
		if (!d)
			return omni_error_set(-ENOMEM, "cache: out of memory");
		if (!d->loading)
			break;
		pthread_cond_wait(&c->cond, &c->lock);
	}
	if (listing_fresh(d)) {
		atomic_fetch_add(&c->n_listing_hits, 1);
		goto answer;
	}
	d->loading = true;
	d->changed = false;
	uint64_t gen = c->gen;
	pthread_mutex_unlock(&c->lock);
	atomic_fetch_add(&c->n_listings, 1);
	rc = omni_vfs_readdir(c->inner, dir, fetched_add, &f);
	if (rc == 0 && f.oom)
		rc = omni_error_set(-ENOMEM, "cache: out of memory");
	pthread_mutex_lock(&c->lock);
	d->loading = false;
	pthread_cond_broadcast(&c->cond);
	if (rc < 0) {
		fetched_free(&f);
		if (rc == -ENOENT && !d->changed && gen == c->gen) {
			d->negative = true;
			d->expires = now_ms() + ttl_ms(c);
		}
		return rc;
	}
	if (!d->changed && gen == c->gen) {
		install_listing(c, d, &f);
	} else if (want) {
		/* Stale by now for the cache, still the caller's answer. */
		*found = false;
		for (size_t i = 0; i < f.n; i++) {
			if (strcmp(f.names[i], want) == 0) {
				*found = true;
				*st = f.st[i];
				join(child, sizeof(child), dir, want);
				st->st_ino = ino_of(child);
				break;
			}
		}
		fetched_free(&f);
		return 0;
	}
	fetched_free(&f);
answer:
	if (want) {
		if (join(child, sizeof(child), dir, want) < 0)
			return -ENAMETOOLONG;
		struct centry *e = table_find(&c->entries, child);
		*found = e && !e->negative && e->st.st_mode;
		if (*found)
			*st = e->st;
	}
	return 0;
}

/* --- stat ----------------------------------------------------------------- */

static int stat_locked(struct cache *c, const char *path, struct stat *st)
{
	char parent[PATH_MAX];
	const char *name;
	int rc;

	atomic_fetch_add(&c->n_stat, 1);
	for (;;) {
		struct cnode *n = node_find(c, path);
		if (n && !n->loading && (n->dirty || !n->exists_remote)) {
			node_attr(c, n, st);
			return 0;
		}
		struct centry *e = table_find(&c->entries, path);
		if (entry_fresh(e)) {
			if (e->negative) {
				atomic_fetch_add(&c->n_neg_hits, 1);
				return -ENOENT;
			}
			atomic_fetch_add(&c->n_attr_hits, 1);
			*st = e->st;
			if (n && !n->loading)
				node_attr(c, n, st);
			return 0;
		}
		if (!path[0])
			break;
		split(path, parent, sizeof(parent), &name);
		struct centry *d = table_find(&c->entries, parent);
		if (d && d->loading) {
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		if (listing_fresh(d)) {
			/* Fresh listings have every name: it is not there. */
			atomic_fetch_add(&c->n_neg_hits, 1);
			return -ENOENT;
		}
		if (d && d->negative && fresh(d->expires))
			return -ENOENT;
		bool found = false;
		rc = load_listing(c, parent, name, &found, st);
		if (rc == 0) {
			if (!found)
				return omni_error_set(-ENOENT,
				                      "%s: no such file", path);
			n = node_find(c, path);
			if (n && !n->loading)
				node_attr(c, n, st);
			return 0;
		}
		if (rc == -ENOENT || rc == -ENOTDIR || rc == -ENOMEM)
			return rc;
		/* A directory we may not list: ask for the name alone. */
		break;
	}
	uint64_t gen = c->gen;
	pthread_mutex_unlock(&c->lock);
	atomic_fetch_add(&c->n_stats_remote, 1);
	rc = omni_vfs_stat(c->inner, path, st);
	pthread_mutex_lock(&c->lock);
	if (gen == c->gen) {
		if (rc == 0) {
			note_exists(c, path, st);
		} else if (rc == -ENOENT) {
			struct centry *e = entry_get(c, path);
			if (e && !e->loading) {
				e->negative = true;
				e->expires = now_ms() + ttl_ms(c);
			}
		}
	}
	if (rc == 0)
		st->st_ino = ino_of(path);
	return rc;
}

static int cache_stat(struct omni_backend *b, const char *path, struct stat *st)
{
	struct cache *c = cache_of(b);

	pthread_mutex_lock(&c->lock);
	int rc = stat_locked(c, path, st);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int cache_readdir(struct omni_backend *b, const char *path,
                         omni_dirent_cb cb, void *payload)
{
	struct cache *c = cache_of(b);
	struct fetched copy = { 0 };
	char child[PATH_MAX];
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	struct centry *d = table_find(&c->entries, path);
	if (listing_fresh(d) && !d->loading) {
		atomic_fetch_add(&c->n_listing_hits, 1);
	} else {
		bool found;
		struct stat st;
		rc = load_listing(c, path, NULL, &found, &st);
		d = table_find(&c->entries, path);
	}
	/* Copy it out: the callback runs without the lock. */
	for (size_t i = 0; rc == 0 && d && d->listed && i < d->nnames; i++) {
		struct stat st;
		if (join(child, sizeof(child), path, d->names[i]) < 0)
			continue;
		struct cnode *n = node_find(c, child);
		struct centry *e = table_find(&c->entries, child);
		if (n && !n->loading)
			node_attr(c, n, &st);
		else if (e && !e->negative && e->st.st_mode)
			st = e->st;
		else
			continue;
		rc = fetched_add(d->names[i], &st, &copy);
	}
	bool listed = d && d->listed;
	pthread_mutex_unlock(&c->lock);
	if (rc == 0 && !listed) {
		/* Changed while it was fetched: list once more, uncached. */
		rc = omni_vfs_readdir(c->inner, path, fetched_add, &copy);
		atomic_fetch_add(&c->n_listings, 1);
	}
	for (size_t i = 0; rc == 0 && i < copy.n; i++) {
		if (join(child, sizeof(child), path, copy.names[i]) == 0)
			copy.st[i].st_ino = ino_of(child);
		rc = cb(copy.names[i], &copy.st[i], payload);
	}
	fetched_free(&copy);
	return rc;
}

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
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", omni_error_last());
	int rrc = omni_vfs_release(f);
	if (rc == 0 && rrc < 0)
		rc = rrc;
	else if (rc < 0)
		omni_error_set(rc, "%s", msg);
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
static int node_flush_locked(struct cache *c, struct cnode *n)
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
	mark_self(c, n->l.path, true);
	pthread_mutex_unlock(&c->lock);
	if (!path) {
		pthread_mutex_lock(&c->lock);
		mark_self(c, n->l.path, false);
		pthread_mutex_unlock(&c->lock);
		return omni_error_set(-ENOMEM, "cache: out of memory");
	}
	rc = upload(c, path, n->fd, mode, &st);
	pthread_mutex_lock(&c->lock);
	mark_self(c, path, false);
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
			note_exists(c, path, &n->base);
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

static int node_flush(struct cache *c, struct cnode *n)
{
	pthread_mutex_lock(&n->flush_lock);
	int rc = node_flush_locked(c, n);
	pthread_mutex_unlock(&n->flush_lock);
	return rc;
}

int omnifs_cache_flush_all(struct omni_backend *b)
{
	struct cache *c = cache_of(b);
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
			n->refs++;
			lru_remove(c, n);
			list[count++] = n;
		}
	}
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; i < count; i++) {
		int rc = node_flush(c, list[i]);
		if (rc < 0 && first == 0) {
			char msg[512];
			snprintf(msg, sizeof(msg), "%s", omni_error_last());
			first = omni_error_set(
			    rc, "uploading changed files: %s", msg);
		}
		pthread_mutex_lock(&c->lock);
		node_put_locked(c, list[i]);
		pthread_mutex_unlock(&c->lock);
	}
	free(list);
	if (first == -ENOMEM)
		omni_error_set(first, "cache: out of memory");
	return first;
}

/*
 * The background uploader: every half second, dirty copies nobody has
 * open (files only created or emptied, whose upload waits a moment, and
 * uploads that failed, retried with a growing delay up to 30 s).
 */
/* Forget entries that expired (they would be fetched again anyway), so
 * that browsing a large tree does not grow the table for ever. The lock
 * is held. */
static void sweep_expired(struct cache *c)
{
	long long now = now_ms();

	for (size_t i = 0; i < c->entries.nb; i++) {
		for (struct centry *e = (struct centry *)c->entries.b[i], *next;
		     e; e = next) {
			next = (struct centry *)e->l.next;
			if (!e->loading && e->expires < now &&
			    (!e->listed || e->list_expires < now))
				entry_drop(c, e);
		}
	}
}

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
		long long now = now_ms();
		for (size_t i = 0; i < c->nodes.nb && count < 64; i++) {
			for (struct cnode *n = (struct cnode *)c->nodes.b[i];
			     n && count < 64; n = (struct cnode *)n->l.next) {
				if (!n->dirty || n->refs > 0 || n->loading ||
				    n->unlinked || now < n->retry_at)
					continue;
				n->refs++;
				lru_remove(c, n);
				batch[count++] = n;
			}
		}
		pthread_mutex_unlock(&c->lock);
		for (size_t i = 0; i < count; i++) {
			struct cnode *n = batch[i];
			int rc = node_flush(c, n);
			pthread_mutex_lock(&c->lock);
			if (rc < 0) {
				n->backoff = n->backoff ? n->backoff * 2 : 1000;
				if (n->backoff > 30000)
					n->backoff = 30000;
				n->retry_at = now_ms() + n->backoff;
			} else {
				n->backoff = 0;
			}
			node_put_locked(c, n);
			pthread_mutex_unlock(&c->lock);
		}
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void maint_stop(struct cache *c)
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

/* --- files ---------------------------------------------------------------- */

static int temp_fd(void)
{
	const char *dir = getenv("TMPDIR");
	char path[PATH_MAX];

	if (!dir || !*dir)
		dir = "/tmp";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	snprintf(path, sizeof(path), "%s/omnifs-cache-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	unlink(path);
	return fd;
}

/* Fetch path's content into a new local file. */
static int download(struct cache *c, const char *path, int *out)
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
		fd = temp_fd();
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

static struct stat new_file_attr(mode_t mode)
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

static void mark_dirty_locked(struct cnode *n)
{
	n->dirty = true;
	n->wgen++;
}

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
		struct centry *e = table_find(&c->entries, path);
		if (!entry_fresh(e) || e->negative || !S_ISREG(e->st.st_mode) ||
		    node_find(c, path)) {
			free(path);
			continue;
		}
		struct stat st = e->st;
		struct cnode *n = calloc(1, sizeof(*n));
		if (!n) {
			free(path);
			continue;
		}
		n->l.path = path;
		n->l.hash = hash_path(path);
		n->fd = -1;
		n->refs = 1;
		n->loading = true;
		n->in_table = true;
		pthread_mutex_init(&n->flush_lock, NULL);
		table_add(&c->nodes, n);
		uint64_t gen = c->gen;
		pthread_mutex_unlock(&c->lock);
		int rc = download(c, path, &n->fd);
		pthread_mutex_lock(&c->lock);
		n->loading = false;
		pthread_cond_broadcast(&c->cond);
		if (rc < 0) {
			omni_error_clear();
			n->refs = 0;
			node_detach(c, n);
			continue;
		}
		atomic_fetch_add(&c->n_prefetched, 1);
		n->exists_remote = true;
		n->prefetched = true;
		n->base = st;
		n->rsize = st.st_size;
		n->rmtime = st.st_mtim;
		if (gen != c->gen) {
			table_del(&c->nodes, n);
			n->in_table = false;
		}
		node_put_locked(c, n);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* A file of path's directory was downloaded. The lock is held. */
static void note_download(struct cache *c, const char *path)
{
	char parent[PATH_MAX], child[PATH_MAX];
	const char *name;
	long long now = now_ms();

	split(path, parent, sizeof(parent), &name);
	struct centry *d = table_find(&c->entries, parent);
	if (!listing_fresh(d) || d->loading)
		return;
	d->dl_count = now - d->dl_at < 2000 ? d->dl_count + 1 : 1;
	d->dl_at = now;
	if (d->dl_count < 2 ||
	    (d->prefetched_at && now - d->prefetched_at < ttl_ms(c)))
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
		if (join(child, sizeof(child), parent, d->names[i]) < 0)
			continue;
		struct centry *e = table_find(&c->entries, child);
		if (!e || e->negative || !S_ISREG(e->st.st_mode) ||
		    e->st.st_size > PREFETCH_MAX_SIZE || node_find(c, child))
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

static void prefetch_stop(struct cache *c)
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

static int cache_open(struct omni_backend *b, const char *path, int flags,
                      mode_t mode, struct omni_file **out)
{
	struct cache *c = cache_of(b);
	struct stat st;
	struct cnode *n;
	int rc;

	*out = NULL;
	atomic_fetch_add(&c->n_opens, 1);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		rc = stat_locked(c, path, &st);
		if (rc < 0 && rc != -ENOENT)
			goto out;
		if (rc == 0 && S_ISDIR(st.st_mode)) {
			rc =
			    omni_error_set(-EISDIR, "%s: is a directory", path);
			goto out;
		}
		if (rc == 0 && (flags & O_CREAT) && (flags & O_EXCL)) {
			rc = omni_error_set(-EEXIST, "%s: exists", path);
			goto out;
		}
		if (rc == -ENOENT && !(flags & O_CREAT))
			goto out;
		bool exists = rc == 0;
		n = node_find(c, path);
		if (n && n->loading) {
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		if (n && !n->dirty && n->exists_remote &&
		    (!exists ||
		     (!(flags & O_TRUNC) && !same_version(n, &st)))) {
			/* Changed remotely: fetch it again. */
			node_detach(c, n);
			n = NULL;
		}
		if (n) {
			n->refs++;
			lru_remove(c, n);
			if (flags & O_TRUNC) {
				if (ftruncate(n->fd, 0) < 0) {
					rc = omni_error_set_errno(
					    -errno, "cache: %s", path);
					node_put_locked(c, n);
					goto out;
				}
				mark_dirty_locked(n);
			} else {
				atomic_fetch_add(&c->n_content_hits, 1);
				if (n->prefetched)
					atomic_fetch_add(&c->n_prefetch_used,
					                 1);
			}
			n->prefetched = false;
			rc = make_handle(n, b, flags, out);
			if (rc < 0)
				node_put_locked(c, n);
			goto out;
		}
		/* A new node: fetched (or made) without the lock. */
		n = calloc(1, sizeof(*n));
		if (!n || !(n->l.path = strdup(path))) {
			free(n);
			rc = omni_error_set(-ENOMEM, "cache: out of memory");
			goto out;
		}
		n->l.hash = hash_path(path);
		n->fd = -1;
		n->refs = 1;
		n->loading = true;
		n->in_table = true;
		pthread_mutex_init(&n->flush_lock, NULL);
		table_add(&c->nodes, n);
		uint64_t gen = c->gen;
		pthread_mutex_unlock(&c->lock);
		if (exists && !(flags & O_TRUNC)) {
			rc = download(c, path, &n->fd);
		} else {
			n->fd = temp_fd();
			rc = n->fd < 0
			         ? omni_error_set_errno(n->fd,
			                                "cache: temporary "
			                                "file")
			         : 0;
		}
		pthread_mutex_lock(&c->lock);
		n->loading = false;
		pthread_cond_broadcast(&c->cond);
		if (rc < 0) {
			n->refs = 0;
			node_detach(c, n);
			goto out;
		}
		if (exists && !(flags & O_TRUNC))
			note_download(c, path);
		n->exists_remote = exists;
		n->base = exists ? st : new_file_attr(mode);
		n->base.st_ino = ino_of(path);
		n->rsize = exists ? st.st_size : 0;
		n->rmtime = n->base.st_mtim;
		if (!exists) {
			n->create_mode = mode & 07777;
			mark_self(c, path, false);
			note_exists(c, path, &n->base);
			atomic_fetch_add(&c->n_local_only, 1);
		}
		if (!exists || (flags & O_TRUNC))
			mark_dirty_locked(n);
		if (gen != c->gen && !n->dirty) {
			/* Everything was dropped meanwhile: serve this
			 * open, keep nothing. */
			table_del(&c->nodes, n);
			n->in_table = false;
		}
		rc = make_handle(n, b, flags, out);
		if (rc < 0)
			node_put_locked(c, n);
		goto out;
	}
out:
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static struct cnode *node_of(struct omni_file *f)
{
	return ((struct cfile *)f)->node;
}

static ssize_t cache_read(struct omni_file *f, void *buf, size_t size,
                          off_t off)
{
	ssize_t n;

	do {
		n = pread(node_of(f)->fd, buf, size, off);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? omni_error_set_errno(-errno, "cache: read") : n;
}

static ssize_t cache_write(struct omni_file *f, const void *buf, size_t size,
                           off_t off)
{
	struct cache *c = cache_of(f->backend);
	struct cnode *n = node_of(f);
	ssize_t w;

	pthread_mutex_lock(&c->lock);
	mark_dirty_locked(n);
	n->written = true;
	pthread_mutex_unlock(&c->lock);
	do {
		w = pwrite(n->fd, buf, size, off);
	} while (w < 0 && errno == EINTR);
	return w < 0 ? omni_error_set_errno(-errno, "cache: write") : w;
}

static int cache_fstat(struct omni_file *f, struct stat *st)
{
	struct cache *c = cache_of(f->backend);

	pthread_mutex_lock(&c->lock);
	node_attr(c, node_of(f), st);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int cache_ftruncate(struct omni_file *f, off_t size)
{
	struct cache *c = cache_of(f->backend);
	struct cnode *n = node_of(f);

	pthread_mutex_lock(&c->lock);
	mark_dirty_locked(n);
	pthread_mutex_unlock(&c->lock);
	if (ftruncate(n->fd, size) < 0)
		return omni_error_set_errno(-errno, "cache: truncate");
	return 0;
}

static int cache_fallocate(struct omni_file *f, int mode, off_t off, off_t len)
{
	struct cache *c = cache_of(f->backend);
	struct cnode *n = node_of(f);

	pthread_mutex_lock(&c->lock);
	mark_dirty_locked(n);
	n->written = true;
	pthread_mutex_unlock(&c->lock);
	if (fallocate(n->fd, mode, off, len) < 0)
		return omni_error_set_errno(-errno, "cache: fallocate");
	return 0;
}

static int cache_flush(struct omni_file *f)
{
	struct cache *c = cache_of(f->backend);
	struct cnode *n = node_of(f);
	struct stat local;

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
	return node_flush(c, n);
}

static int cache_fsync(struct omni_file *f, bool datasync)
{
	(void)datasync;
	return node_flush(cache_of(f->backend), node_of(f));
}

static int cache_file_fd(struct omni_file *f)
{
	return node_of(f)->fd;
}

static int cache_release(struct omni_file *f)
{
	struct cache *c = cache_of(f->backend);
	struct cnode *n = node_of(f);
	int rc = 0;

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
		n->retry_at = now_ms() + 1000;
	pthread_mutex_unlock(&c->lock);
	if (last && dirty)
		rc = node_flush(c, n);
	pthread_mutex_lock(&c->lock);
	node_put_locked(c, n);
	pthread_mutex_unlock(&c->lock);
	free(f);
	return rc;
}

/* --- names ---------------------------------------------------------------- */

static int cache_mkdir(struct omni_backend *b, const char *path, mode_t mode)
{
	struct cache *c = cache_of(b);
	int rc;

	pthread_mutex_lock(&c->lock);
	mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	rc = omni_vfs_mkdir(c->inner, path, mode);
	pthread_mutex_lock(&c->lock);
	mark_self(c, path, false);
	if (rc == 0) {
		struct stat st = new_file_attr(mode & 07777 ? mode : 0755);
		st.st_mode = S_IFDIR | (st.st_mode & 07777);
		st.st_size = 4096;
		note_exists(c, path, &st);
		struct centry *e = table_find(&c->entries, path);
		if (e && !e->loading) {
			/* A new directory is empty. */
			listing_clear(e);
			e->listed = true;
			e->list_expires = e->expires;
		}
	} else if (rc == -EEXIST) {
		note_changed(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int cache_rmdir(struct omni_backend *b, const char *path)
{
	struct cache *c = cache_of(b);
	int rc;

	pthread_mutex_lock(&c->lock);
	struct centry *d = table_find(&c->entries, path);
	bool empty = listing_fresh(d) && !d->loading && d->nnames == 0 &&
	             (omni_vfs_caps(c->inner) & OMNI_CAP_REMOVE_DIRS);
	mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	rc = empty ? omni_vfs_unlink(c->inner, path)
	           : omni_vfs_rmdir(c->inner, path);
	pthread_mutex_lock(&c->lock);
	mark_self(c, path, false);
	if (rc == 0) {
		note_gone(c, path);
	} else if (rc == -ENOTEMPTY || rc == -ENOENT) {
		note_changed(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int cache_unlink(struct omni_backend *b, const char *path)
{
	struct cache *c = cache_of(b);
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	struct cnode *n = node_find(c, path);
	if (n && !n->loading) {
		n->refs++;
		lru_remove(c, n);
	} else {
		n = NULL;
	}
	mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	/* No upload of it may be under way while we decide. */
	if (n)
		pthread_mutex_lock(&n->flush_lock);
	pthread_mutex_lock(&c->lock);
	bool local = n && !n->exists_remote;
	pthread_mutex_unlock(&c->lock);
	/* A file made here and never uploaded exists nowhere else. */
	if (!local)
		rc = omni_vfs_unlink(c->inner, path);
	pthread_mutex_lock(&c->lock);
	mark_self(c, path, false);
	if (rc == 0) {
		if (n) {
			n->unlinked = true;
			n->dirty = false;
			if (n->in_table)
				table_del(&c->nodes, n);
			n->in_table = false;
		}
		note_gone(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	if (n) {
		pthread_mutex_unlock(&n->flush_lock);
		pthread_mutex_lock(&c->lock);
		node_put_locked(c, n);
		pthread_mutex_unlock(&c->lock);
	}
	return rc;
}

/* Re-key nodes at from (and below it) to to. The lock is held. */
static void move_nodes(struct cache *c, const char *from, const char *to)
{
	struct cnode *moved = NULL;
	char path[PATH_MAX];

	/* The target's own copy is gone. */
	struct cnode *t = node_find(c, to);
	if (t && !t->loading && strcmp(from, to) != 0) {
		t->unlinked = true;
		node_detach(c, t);
	}
	for (size_t i = 0; i < c->nodes.nb; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i], *next; n;
		     n = next) {
			next = (struct cnode *)n->l.next;
			if (!under(n->l.path, from) || n->loading)
				continue;
			table_del(&c->nodes, n);
			n->l.next = (struct link *)moved;
			moved = n;
		}
	}
	while (moved) {
		struct cnode *n = moved;
		moved = (struct cnode *)n->l.next;
		n->l.next = NULL;
		int len = snprintf(path, sizeof(path), "%s%s", to,
		                   n->l.path + strlen(from));
		char *p =
		    len > 0 && (size_t)len < sizeof(path) ? strdup(path) : NULL;
		if (!p) {
			n->in_table = false;
			lru_remove(c, n);
			if (n->refs == 0)
				node_free(n);
			continue;
		}
		free(n->l.path);
		n->l.path = p;
		n->l.hash = hash_path(p);
		n->base.st_ino = ino_of(p);
		table_add(&c->nodes, n);
	}
}

static int cache_rename(struct omni_backend *b, const char *from,
                        const char *to, unsigned int flags)
{
	struct cache *c = cache_of(b);
	struct stat st;
	bool have_st, local = false;
	struct cnode *n;
	int rc = 0;

	if (flags & RENAME_EXCHANGE)
		return omni_error_set(
		    -EINVAL, "rename: exchanging is not supported here");
	pthread_mutex_lock(&c->lock);
	if (flags & RENAME_NOREPLACE) {
		rc = stat_locked(c, to, &st);
		if (rc == 0)
			rc = omni_error_set(-EEXIST, "%s: exists", to);
		else if (rc == -ENOENT)
			rc = 0;
	}
	have_st = rc == 0 && stat_locked(c, from, &st) == 0;
	n = node_find(c, from);
	if (n && !n->loading) {
		n->refs++;
		lru_remove(c, n);
	} else {
		n = NULL;
	}
	mark_self(c, from, true);
	mark_self(c, to, true);
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		goto unmark;

	/* Dirty files below a directory that moves: up first. */
	if (have_st && S_ISDIR(st.st_mode)) {
		omni_error_clear();
		pthread_mutex_lock(&c->lock);
		bool any = false;
		for (size_t i = 0; i < c->nodes.nb && !any; i++)
			for (struct cnode *x = (struct cnode *)c->nodes.b[i]; x;
			     x = (struct cnode *)x->l.next)
				if (x->dirty && under(x->l.path, from))
					any = true;
		pthread_mutex_unlock(&c->lock);
		if (any && (rc = omnifs_cache_flush_all(b)) < 0)
			goto unmark;
	}
	if (n) {
		pthread_mutex_lock(&n->flush_lock);
		pthread_mutex_lock(&c->lock);
		local = !n->exists_remote;
		pthread_mutex_unlock(&c->lock);
		if (!local)
			rc = node_flush_locked(c, n);
	}
	/* A file never uploaded moves here only; its upload goes to the
	 * new name. */
	if (rc == 0 && !local)
		rc = omni_vfs_rename(c->inner, from, to, 0);
	pthread_mutex_lock(&c->lock);
	mark_self(c, from, false);
	mark_self(c, to, false);
	if (rc == 0) {
		struct centry *e = table_find(&c->entries, from);
		struct stat moved;
		bool known = have_st || (e && !e->negative && e->st.st_mode);
		if (!have_st && known)
			st = e->st;
		moved = st;
		move_nodes(c, from, to);
		note_gone(c, from);
		drop_tree(c, to);
		/* A directory's listings below are forgotten (they were
		 * kept under the old names); its own attributes move. */
		if (known)
			note_exists(c, to, &moved);
		else
			note_changed(c, to);
	} else {
		note_changed(c, from);
		note_changed(c, to);
	}
	pthread_mutex_unlock(&c->lock);
	if (n)
		pthread_mutex_unlock(&n->flush_lock);
	goto out;
unmark:
	pthread_mutex_lock(&c->lock);
	mark_self(c, from, false);
	mark_self(c, to, false);
	pthread_mutex_unlock(&c->lock);
out:
	if (n) {
		pthread_mutex_lock(&c->lock);
		node_put_locked(c, n);
		pthread_mutex_unlock(&c->lock);
	}
	return rc;
}

static int cache_symlink(struct omni_backend *b, const char *target,
                         const char *path)
{
	struct cache *c = cache_of(b);

	pthread_mutex_lock(&c->lock);
	mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	int rc = omni_vfs_symlink(c->inner, target, path);
	pthread_mutex_lock(&c->lock);
	mark_self(c, path, false);
	if (rc == 0) {
		struct stat st = new_file_attr(0777);
		st.st_mode = S_IFLNK | 0777;
		st.st_size = (off_t)strlen(target);
		note_exists(c, path, &st);
		struct centry *e = table_find(&c->entries, path);
		if (e && !e->link)
			e->link = strdup(target);
	} else {
		note_changed(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static ssize_t cache_readlink(struct omni_backend *b, const char *path,
                              char *buf, size_t size)
{
	struct cache *c = cache_of(b);
	struct stat st;

	pthread_mutex_lock(&c->lock);
	int rc = stat_locked(c, path, &st);
	if (rc == 0 && !S_ISLNK(st.st_mode))
		rc = omni_error_set(-EINVAL, "%s: not a symlink", path);
	struct centry *e = rc == 0 ? table_find(&c->entries, path) : NULL;
	if (e && e->link && entry_fresh(e)) {
		size_t len = strlen(e->link);
		if (size > 0) {
			size_t n = len < size - 1 ? len : size - 1;
			memcpy(buf, e->link, n);
			buf[n] = '\0';
		}
		pthread_mutex_unlock(&c->lock);
		return (ssize_t)len;
	}
	uint64_t gen = c->gen;
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		return rc;
	ssize_t n = omni_vfs_readlink(c->inner, path, buf, size);
	if (n >= 0 && (size_t)n < size) {
		pthread_mutex_lock(&c->lock);
		e = table_find(&c->entries, path);
		if (e && gen == c->gen && entry_fresh(e) && !e->negative) {
			free(e->link);
			e->link = strdup(buf);
		}
		pthread_mutex_unlock(&c->lock);
	}
	return n;
}

static int cache_link(struct omni_backend *b, const char *from, const char *to)
{
	struct cache *c = cache_of(b);
	int rc = omni_vfs_link(c->inner, from, to);

	pthread_mutex_lock(&c->lock);
	note_changed(c, from);
	note_changed(c, to);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Update the attributes cached for path (and its open copy) with fn. */
static void update_attr(struct cache *c, const char *path,
                        void (*fn)(struct stat *st, const void *arg),
                        const void *arg)
{
	struct centry *e = table_find(&c->entries, path);
	struct cnode *n = node_find(c, path);

	if (e && !e->negative && e->st.st_mode && !e->loading) {
		fn(&e->st, arg);
		e->expires = now_ms() + ttl_ms(c);
	}
	if (n && !n->loading)
		fn(&n->base, arg);
}

static void set_mode(struct stat *st, const void *arg)
{
	st->st_mode = (st->st_mode & S_IFMT) | (*(const mode_t *)arg & 07777);
	clock_gettime(CLOCK_REALTIME, &st->st_ctim);
}

static int cache_chmod(struct omni_backend *b, const char *path, mode_t mode)
{
	struct cache *c = cache_of(b);
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	struct cnode *n = node_find(c, path);
	if (n && !n->loading && !n->exists_remote) {
		/* Not uploaded yet: the mode goes with the upload. */
		n->create_mode = mode & 07777;
		update_attr(c, path, set_mode, &mode);
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	rc = omni_vfs_chmod(c->inner, path, mode);
	pthread_mutex_lock(&c->lock);
	mark_self(c, path, false);
	if (rc == 0) {
		update_attr(c, path, set_mode, &mode);
	} else {
		note_changed(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int cache_chown(struct omni_backend *b, const char *path, uid_t uid,
                       gid_t gid)
{
	struct cache *c = cache_of(b);
	struct stat st;

	/* Giving a file to its owner changes nothing (cp -p does it). */
	pthread_mutex_lock(&c->lock);
	int rc = stat_locked(c, path, &st);
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		return rc;
	if ((uid == (uid_t)-1 || uid == st.st_uid) &&
	    (gid == (gid_t)-1 || gid == st.st_gid))
		return 0;
	return omni_vfs_chown(c->inner, path, uid, gid);
}

static void set_times(struct stat *st, const void *arg)
{
	const struct timespec *ts = arg;
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	if (ts[0].tv_nsec != UTIME_OMIT)
		st->st_atim = ts[0].tv_nsec == UTIME_NOW ? now : ts[0];
	if (ts[1].tv_nsec != UTIME_OMIT)
		st->st_mtim = ts[1].tv_nsec == UTIME_NOW ? now : ts[1];
	st->st_ctim = now;
}

static int cache_utimens(struct omni_backend *b, const char *path,
                         const struct timespec ts[2])
{
	struct cache *c = cache_of(b);
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	struct cnode *n = node_find(c, path);
	if (n && !n->loading && n->dirty) {
		n->refs++;
		lru_remove(c, n);
	} else {
		n = NULL;
	}
	mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	/* An upload later would set the time to its own: upload first. */
	if (n)
		rc = node_flush(c, n);
	if (rc == 0)
		rc = omni_vfs_utimens(c->inner, path, ts);
	pthread_mutex_lock(&c->lock);
	if (n)
		node_put_locked(c, n);
	mark_self(c, path, false);
	if (rc == 0) {
		update_attr(c, path, set_times, ts);
		n = node_find(c, path);
		if (n && !n->loading && !n->dirty) {
			n->rmtime = n->base.st_mtim;
			n->rmtime_approx = false;
		}
	} else {
		note_changed(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static void set_size(struct stat *st, const void *arg)
{
	st->st_size = *(const off_t *)arg;
	clock_gettime(CLOCK_REALTIME, &st->st_mtim);
	st->st_ctim = st->st_mtim;
}

static int cache_truncate(struct omni_backend *b, const char *path, off_t size)
{
	struct cache *c = cache_of(b);
	struct stat st;
	int rc;

	pthread_mutex_lock(&c->lock);
	rc = stat_locked(c, path, &st);
	if (rc == 0 && S_ISDIR(st.st_mode))
		rc = omni_error_set(-EISDIR, "%s: is a directory", path);
	struct cnode *n = rc == 0 ? node_find(c, path) : NULL;
	if (n && n->loading)
		n = NULL;
	if (n) {
		n->refs++;
		lru_remove(c, n);
		mark_dirty_locked(n);
	}
	if (rc == 0)
		mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		return rc;
	if (n) {
		/* The copy is here: cut it and upload it. */
		if (ftruncate(n->fd, size) < 0)
			rc = omni_error_set_errno(-errno, "cache: truncate");
		else
			rc = node_flush(c, n);
		pthread_mutex_lock(&c->lock);
		node_put_locked(c, n);
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	if (size == 0) {
		/* An empty upload replaces the content, keeping the mode. */
		struct omni_file *f = NULL;
		rc = omni_vfs_open(c->inner, path, O_WRONLY | O_TRUNC, 0, &f);
		if (rc == 0)
			rc = omni_vfs_release(f);
	} else {
		rc = omni_vfs_truncate(c->inner, path, size);
	}
	pthread_mutex_lock(&c->lock);
	mark_self(c, path, false);
	if (rc == 0) {
		update_attr(c, path, set_size, &size);
	} else {
		note_changed(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int cache_statfs(struct omni_backend *b, struct statvfs *st)
{
	return omni_vfs_statfs(cache_of(b)->inner, st);
}

/* --- commands ------------------------------------------------------------- */

static int cache_exec_start(struct omni_backend *b,
                            const struct omni_exec_request *req,
                            struct omni_exec **out)
{
	/* The handle is the inner backend's: the other exec calls go to it
	 * directly. */
	return omni_vfs_exec_start(cache_of(b)->inner, req, out);
}

/* exec_start's pair: a handle names the inner backend, so this goes to
 * the inner backend's exec_free. */
static void cache_exec_free(struct omni_exec *e)
{
	omni_vfs_exec_free(e);
}

/* --- invalidation --------------------------------------------------------- */

/* Forget everything but dirty copies. The lock is held. */
static void drop_all(struct cache *c)
{
	c->gen++;
	atomic_fetch_add(&c->n_invalidations, 1);
	drop_tree(c, "");
	for (size_t i = 0; i < c->nodes.nb; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i], *next; n;
		     n = next) {
			next = (struct cnode *)n->l.next;
			if (!n->dirty && !n->loading && n->exists_remote)
				node_detach(c, n);
		}
	}
}

static int cache_invalidate(struct omni_backend *b, const char *path)
{
	struct cache *c = cache_of(b);

	pthread_mutex_lock(&c->lock);
	if (!path[0]) {
		drop_all(c);
	} else {
		note_changed(c, path);
		struct cnode *n = node_find(c, path);
		if (n && !n->dirty && !n->loading && n->exists_remote)
			node_detach(c, n);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void tell_listener(struct cache *c, const char *path,
                          const struct stat *st)
{
	pthread_mutex_lock(&c->listener_lock);
	if (c->listener)
		c->listener(path, st, c->listener_payload);
	pthread_mutex_unlock(&c->listener_lock);
}

/* Does an event's st agree with what we cached (an echo of our own
 * change)? */
static bool same_as_cached(const struct stat *a, const struct stat *b)
{
	if ((a->st_mode & S_IFMT) != (b->st_mode & S_IFMT) ||
	    (a->st_mode & 07777) != (b->st_mode & 07777))
		return false;
	return !S_ISREG(a->st_mode) || a->st_size == b->st_size;
}

/* Is this event (path "", st) an echo of our own change? If so, the
 * server's modification time replaces our guess. The lock is held. */
static bool own_event(struct cache *c, const char *path, const struct stat *st)
{
	enum mark_state ms = marked_self(c, path);

	if (ms == MARK_BUSY)
		return true;
	if (ms == MARK_NONE)
		return false;
	if (!st)
		return true; /* a removal or rename we made */
	struct centry *e = table_find(&c->entries, path);
	if (!e)
		return true; /* nothing cached to correct (dropped since) */
	if (e->negative || !e->st.st_mode || !same_as_cached(&e->st, st))
		return false;
	if (S_ISREG(st->st_mode)) {
		/* Events of one change may come in any order: keep the
		 * latest time, and the copy's version in step with it. */
		struct cnode *n = node_find(c, path);
		struct timespec t = st->st_mtim;
		if (n && !n->loading && !n->dirty && n->rsize == st->st_size) {
			if (!n->rmtime_approx &&
			    (n->rmtime.tv_sec > t.tv_sec ||
			     (n->rmtime.tv_sec == t.tv_sec &&
			      n->rmtime.tv_nsec > t.tv_nsec)))
				t = n->rmtime;
			n->rmtime = t;
			n->rmtime_approx = false;
		}
		e->st.st_mtim = t;
	}
	return true;
}

/* The inner backend's change events (its own thread). */
static void on_change(const char *path, const struct stat *st, void *payload)
{
	struct cache *c = payload;

	if (!path) {
		atomic_store(&c->watch_ok, false);
		pthread_mutex_lock(&c->lock);
		c->watch_lost = true;
		pthread_mutex_unlock(&c->lock);
		tell_listener(c, NULL, NULL);
		return;
	}
	atomic_fetch_add(&c->n_events, 1);
	pthread_mutex_lock(&c->lock);
	if (path[0] && own_event(c, path, st)) {
		pthread_mutex_unlock(&c->lock);
		atomic_fetch_add(&c->n_events_ignored, 1);
		return;
	}
	if (!path[0]) {
		/* The watch is (back) on. After a loss, events may have been
		 * missed: drop everything. The first time, what is cached came
		 * through this mount and is known. */
		bool first = !atomic_load(&c->watch_ok) && !c->watch_lost;
		if (!first)
			drop_all(c);
		atomic_store(&c->watch_ok, true);
		if (first) {
			pthread_mutex_unlock(&c->lock);
			return;
		}
	} else {
		omni_log(OMNI_LOG_DEBUG,
		         "cache: %s changed in the sandbox (%s)", path,
		         st ? (S_ISDIR(st->st_mode) ? "directory" : "file")
		            : "gone");
		note_changed(c, path);
		struct cnode *n = node_find(c, path);
		if (n && !n->loading && !n->dirty && n->exists_remote)
			node_detach(c, n);
		else if (n && n->dirty)
			omni_log(
			    OMNI_LOG_WARN,
			    "cache: %s changed in the sandbox while it has "
			    "unsaved changes here; ours will win",
			    path);
	}
	pthread_mutex_unlock(&c->lock);
	tell_listener(c, path, st);
}

static int cache_watch(struct omni_backend *b, omni_change_cb cb, void *payload)
{
	struct cache *c = cache_of(b);

	pthread_mutex_lock(&c->listener_lock);
	c->listener = cb;
	c->listener_payload = payload;
	pthread_mutex_unlock(&c->listener_lock);
	return c->watching
	           ? 0
	           : omni_error_set(-ENOSYS, "%s backend: no change watch",
	                            omni_backend_name(c->inner));
}

static char *cache_stats(struct omni_backend *b)
{
	struct cache *c = cache_of(b);
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
	size_t entries = c->entries.n;
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
	         "cache.prefetched %llu\ncache.prefetch_used %llu\n%s",
	         ttl_ms(c), atomic_load(&c->watch_ok) ? 1 : 0, entries, copies,
	         dirty, (unsigned long long)atomic_load(&c->n_stat),
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
	         inner ? inner : "");
	free(inner);
	return out;
}

/* --- the session ---------------------------------------------------------- */

static int cache_start(struct omni_backend *b)
{
	struct cache *c = cache_of(b);
	int rc = omni_backend_start(c->inner);

	if (rc < 0)
		return rc;
	if (omni_vfs_caps(c->inner) & OMNI_CAP_WATCH) {
		rc = omni_vfs_watch(c->inner, on_change, c);
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
	pthread_mutex_lock(&c->lock);
	c->maint_stop = false;
	c->maint_running = pthread_create(&c->maint, NULL, maint_main, c) == 0;
	pthread_mutex_unlock(&c->lock);
	if (!c->maint_running)
		omni_log(OMNI_LOG_WARN, "cache: no background uploader thread");
	return 0;
}

static int cache_shutdown(struct omni_backend *b)
{
	struct cache *c = cache_of(b);
	char msg[512] = "";

	maint_stop(c);
	prefetch_stop(c);
	int rc = omnifs_cache_flush_all(b);

	if (rc < 0) {
		snprintf(msg, sizeof(msg), "%s", omni_error_last());
		omni_log(OMNI_LOG_ERROR, "%s", msg);
	}
	int src = omni_backend_shutdown(c->inner);
	if (rc < 0)
		return omni_error_set(rc, "%s", msg);
	return src;
}

static void cache_destroy(struct omni_backend *b)
{
	struct cache *c = cache_of(b);

	maint_stop(c);
	prefetch_stop(c);
	omni_backend_free(c->inner);
	for (size_t i = 0; c->entries.b && i < c->entries.nb; i++) {
		for (struct centry *e = (struct centry *)c->entries.b[i], *next;
		     e; e = next) {
			next = (struct centry *)e->l.next;
			entry_free(e);
		}
	}
	for (size_t i = 0; c->nodes.b && i < c->nodes.nb; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i], *next; n;
		     n = next) {
			next = (struct cnode *)n->l.next;
			if (n->dirty)
				omni_log(OMNI_LOG_ERROR,
				         "cache: %s: changes never uploaded",
				         n->l.path);
			node_free(n);
		}
	}
	free(c->entries.b);
	free(c->nodes.b);
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
	.stat = cache_stat,
	.readdir = cache_readdir,
	.mkdir = cache_mkdir,
	.rmdir = cache_rmdir,
	.unlink = cache_unlink,
	.rename = cache_rename,
	.symlink = cache_symlink,
	.readlink = cache_readlink,
	.link = cache_link,
	.chmod = cache_chmod,
	.chown = cache_chown,
	.utimens = cache_utimens,
	.truncate = cache_truncate,
	.statfs = cache_statfs,
	.open = cache_open,
	.read = cache_read,
	.write = cache_write,
	.fstat = cache_fstat,
	.ftruncate = cache_ftruncate,
	.flush = cache_flush,
	.fsync = cache_fsync,
	.fallocate = cache_fallocate,
	.file_fd = cache_file_fd,
	.release = cache_release,
	.exec_start = cache_exec_start,
	.exec_free = cache_exec_free,
	.watch = cache_watch,
	.stats = cache_stats,
	.invalidate = cache_invalidate,
};

bool omnifs_cache_is(const struct omni_backend *b)
{
	return b && b->ops == &cache_ops;
}

int omnifs_cache_wrap(struct omni_backend **out, struct omni_backend *inner,
                      const struct omnifs_cache_options *opts)
{
	struct omnifs_cache_options defaults = OMNIFS_CACHE_OPTIONS_INIT;
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
	if (table_init(&c->entries) < 0 || table_init(&c->nodes) < 0) {
		cache_destroy(&c->base);
		return omni_error_set(-ENOMEM, "cache: out of memory");
	}
	*out = &c->base;
	return 0;
}
