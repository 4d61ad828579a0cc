/*
 * backends/cache/attr.c - attributes and listings: stat and readdir.
 *
 * One table maps a workspace path to what is known about it: its
 * attributes, or that it does not exist (a negative entry), until an
 * expiry time (the TTL, default 5 s; 60 s while the backend's change
 * watch is connected, since its events say what changed). A directory's
 * entry may also hold its listing. Invariant: while a listing is fresh,
 * every name in it has a fresh entry, so a name missing from a fresh
 * listing does not exist.
 *	stat    entry fresh: 0 requests. Else the parent directory is listed
 *	        (one ListDir fills the attributes of every entry in it, and
 *	        answers later lookups of missing names as well); the root,
 *	        and names in directories that cannot be listed, use Stat.
 *	readdir a fresh listing: 0 requests; else one ListDir (and a
 *	        walker's next listings are fetched ahead: prefetch.c).
 * Concurrent misses on one directory wait for a single ListDir (the
 * entry is marked loading; c->cond wakes the waiters). A listing that
 * changed while it was fetched (the entry is marked changed, or
 * everything was dropped: c->gen moved) is not kept, only answered.
 *
 * The note_* functions keep the table true after a change this mount
 * made or was told of: note_exists, note_gone, note_changed (forget a
 * path and its parent's listing). Files made here and not uploaded yet
 * (file.c) appear in listings and stats with their local attributes.
 *
 * Locking: c->lock is held by every function here but the two
 * operations, and released only around the requests.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "omni/error.h"
#include "omni/vfs.h"

/* --- attribute entries ---------------------------------------------------- */

void omni__cache_listing_clear(struct centry *e)
{
	for (size_t i = 0; i < e->nnames; i++)
		free(e->names[i]);
	free(e->names);
	e->names = NULL;
	e->nnames = e->capnames = 0;
	e->listed = false;
}

void omni__cache_entry_free(struct centry *e)
{
	omni__cache_listing_clear(e);
	free(e->link);
	free(e->l.path);
	free(e);
}

static struct centry *entry_get(struct cache *c, const char *path)
{
	struct centry *e = omni__cache_table_find(&c->entries, path);

	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e || !(e->l.path = strdup(path))) {
		free(e);
		return NULL;
	}
	e->l.hash = omni__cache_hash_path(path);
	omni__cache_table_add(&c->entries, e);
	return e;
}

/* Forget e. An entry whose listing is being fetched stays (its waiter
 * needs it) but loses its content and is marked changed. */
void omni__cache_entry_drop(struct cache *c, struct centry *e)
{
	if (e->loading) {
		e->changed = true;
		e->expires = 0;
		e->negative = false;
		free(e->link);
		e->link = NULL;
		omni__cache_listing_clear(e);
		return;
	}
	omni__cache_table_del(&c->entries, e);
	omni__cache_entry_free(e);
}

static bool fresh(long long expires)
{
	return expires > omni__now_ms();
}

bool omni__cache_entry_fresh(const struct centry *e)
{
	return e && fresh(e->expires) && (e->negative || e->st.st_mode);
}

bool omni__cache_listing_fresh(const struct centry *e)
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
			omni__cache_listing_clear(d);
			return;
		}
		d->names = n;
		d->capnames = cap;
	}
	if (!(d->names[d->nnames] = strdup(name))) {
		omni__cache_listing_clear(d);
		return;
	}
	d->nnames++;
}

/* Record that path exists with st (and is in its parent's listing). */
void omni__cache_note_exists(struct cache *c, const char *path,
                             const struct stat *st)
{
	char parent[PATH_MAX];
	const char *name;
	struct centry *e = entry_get(c, path);

	if (!e)
		return;
	if (e->negative || (e->st.st_mode & S_IFMT) != (st->st_mode & S_IFMT))
		omni__cache_listing_clear(e);
	if (e->st.st_size != st->st_size ||
	    e->st.st_mtim.tv_sec != st->st_mtim.tv_sec ||
	    e->st.st_mtim.tv_nsec != st->st_mtim.tv_nsec) {
		free(e->link);
		e->link = NULL;
	}
	e->negative = false;
	e->st = *st;
	e->st.st_ino = omni__cache_ino_of(path);
	e->expires = omni__now_ms() + omni__cache_ttl_ms(c);
	if (!path[0])
		return;
	omni__cache_split(path, parent, sizeof(parent), &name);
	struct centry *d = omni__cache_table_find(&c->entries, parent);
	if (d && d->listed)
		names_add(d, name);
	if (d && d->loading)
		d->changed = true;
}

/* Forget path and everything below it. */
void omni__cache_drop_tree(struct cache *c, const char *path)
{
	struct centry *top =
	    path[0] ? omni__cache_table_find(&c->entries, path) : NULL;

	/* Only a directory (or what is not known) has entries below. */
	if (top &&
	    (top->negative || (top->st.st_mode && !S_ISDIR(top->st.st_mode)))) {
		omni__cache_entry_drop(c, top);
		return;
	}
	for (size_t i = 0; i < c->entries.nb; i++) {
		for (struct centry *e = (struct centry *)c->entries.b[i], *next;
		     e; e = next) {
			next = (struct centry *)e->l.next;
			if (omni__cache_under(e->l.path, path))
				omni__cache_entry_drop(c, e);
		}
	}
}

/* Record that path does not exist (and leaves its parent's listing). */
void omni__cache_note_gone(struct cache *c, const char *path)
{
	char parent[PATH_MAX];
	const char *name;

	omni__cache_drop_tree(c, path);
	struct centry *e = entry_get(c, path);
	if (e && !e->loading) {
		e->negative = true;
		e->expires = omni__now_ms() + omni__cache_ttl_ms(c);
	}
	omni__cache_split(path, parent, sizeof(parent), &name);
	struct centry *d = omni__cache_table_find(&c->entries, parent);
	if (d && d->listed)
		names_remove(d, name);
	if (d && d->loading)
		d->changed = true;
}

/* Something about path changed without our knowing what: forget it and
 * its parent's listing. */
void omni__cache_note_changed(struct cache *c, const char *path)
{
	char parent[PATH_MAX];
	const char *name;

	omni__cache_drop_tree(c, path);
	if (!path[0])
		return;
	omni__cache_split(path, parent, sizeof(parent), &name);
	struct centry *d = omni__cache_table_find(&c->entries, parent);
	if (d) {
		if (d->loading)
			d->changed = true;
		omni__cache_listing_clear(d);
	}
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
	long long exp = omni__now_ms() + omni__cache_ttl_ms(c);

	for (size_t i = 0; i < f->n; i++) {
		if (omni__cache_join(child, sizeof(child), d->l.path,
		                     f->names[i]) < 0)
			continue;
		struct centry *e = entry_get(c, child);
		if (!e) {
			omni__cache_listing_clear(d);
			return;
		}
		if (e->negative ||
		    (e->st.st_mode & S_IFMT) != (f->st[i].st_mode & S_IFMT))
			omni__cache_listing_clear(e);
		if (e->st.st_mtim.tv_sec != f->st[i].st_mtim.tv_sec ||
		    e->st.st_mtim.tv_nsec != f->st[i].st_mtim.tv_nsec ||
		    e->st.st_size != f->st[i].st_size) {
			free(e->link);
			e->link = NULL;
		}
		e->negative = false;
		e->st = f->st[i];
		e->st.st_ino = omni__cache_ino_of(child);
		e->expires = exp;
		e->mark = mark;
	}
	/* Names that are gone. */
	for (size_t i = 0; i < d->nnames; i++) {
		if (omni__cache_join(child, sizeof(child), d->l.path,
		                     d->names[i]) < 0)
			continue;
		struct centry *e = omni__cache_table_find(&c->entries, child);
		if (e && e->mark != mark)
			omni__cache_drop_tree(c, child);
	}
	omni__cache_listing_clear(d);
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
			omni__cache_split(n->l.path, parent, sizeof(parent),
			                  &name);
			if (strcmp(parent, d->l.path) != 0)
				continue;
			struct centry *e = entry_get(c, n->l.path);
			if (e && e->mark != mark) {
				e->negative = false;
				omni__cache_node_attr(c, n, &e->st);
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
	if (omni__cache_listing_fresh(d)) {
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
			d->expires = omni__now_ms() + omni__cache_ttl_ms(c);
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
				omni__cache_join(child, sizeof(child), dir,
				                 want);
				st->st_ino = omni__cache_ino_of(child);
				break;
			}
		}
		fetched_free(&f);
		return 0;
	}
	fetched_free(&f);
answer:
	if (want) {
		if (omni__cache_join(child, sizeof(child), dir, want) < 0)
			return -ENAMETOOLONG;
		struct centry *e = omni__cache_table_find(&c->entries, child);
		*found = e && !e->negative && e->st.st_mode;
		if (*found)
			*st = e->st;
	}
	return 0;
}

int omni__cache_load_listing_locked(struct cache *c, const char *dir)
{
	bool found;
	struct stat st;

	return load_listing(c, dir, NULL, &found, &st);
}

/* --- stat and readdir ----------------------------------------------------- */

int omni__cache_stat_locked(struct cache *c, const char *path, struct stat *st)
{
	char parent[PATH_MAX];
	const char *name;
	int rc;

	atomic_fetch_add(&c->n_stat, 1);
	for (;;) {
		struct cnode *n = omni__cache_node_find(c, path);
		if (n && !n->loading &&
		    (n->dirty || !n->exists_remote || n->meta_pending)) {
			omni__cache_node_attr(c, n, st);
			return 0;
		}
		struct centry *e = omni__cache_table_find(&c->entries, path);
		if (omni__cache_entry_fresh(e)) {
			if (e->negative) {
				atomic_fetch_add(&c->n_neg_hits, 1);
				return -ENOENT;
			}
			atomic_fetch_add(&c->n_attr_hits, 1);
			*st = e->st;
			if (n && !n->loading)
				omni__cache_node_attr(c, n, st);
			return 0;
		}
		if (!path[0])
			break;
		omni__cache_split(path, parent, sizeof(parent), &name);
		struct centry *d = omni__cache_table_find(&c->entries, parent);
		if (d && d->loading) {
			pthread_cond_wait(&c->cond, &c->lock);
			continue;
		}
		if (omni__cache_listing_fresh(d)) {
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
			n = omni__cache_node_find(c, path);
			if (n && !n->loading)
				omni__cache_node_attr(c, n, st);
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
			omni__cache_note_exists(c, path, st);
		} else if (rc == -ENOENT) {
			struct centry *e = entry_get(c, path);
			if (e && !e->loading) {
				e->negative = true;
				e->expires =
				    omni__now_ms() + omni__cache_ttl_ms(c);
			}
		}
	}
	if (rc == 0)
		st->st_ino = omni__cache_ino_of(path);
	return rc;
}

int omni__cache_stat(struct omni_backend *b, const char *path, struct stat *st)
{
	struct cache *c = omni__cache_of(b);

	pthread_mutex_lock(&c->lock);
	int rc = omni__cache_stat_locked(c, path, st);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int omni__cache_readdir(struct omni_backend *b, const char *path,
                        omni_dirent_cb cb, void *payload)
{
	struct cache *c = omni__cache_of(b);
	struct fetched copy = { 0 };
	char child[PATH_MAX];
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	struct centry *d = omni__cache_table_find(&c->entries, path);
	if (omni__cache_listing_fresh(d) && !d->loading) {
		atomic_fetch_add(&c->n_listing_hits, 1);
	} else {
		bool found;
		struct stat st;
		rc = load_listing(c, path, NULL, &found, &st);
		if (rc == 0)
			omni__cache_note_listing(c, path);
		d = omni__cache_table_find(&c->entries, path);
	}
	/* Copy it out: the callback runs without the lock. */
	for (size_t i = 0; rc == 0 && d && d->listed && i < d->nnames; i++) {
		struct stat st;
		if (omni__cache_join(child, sizeof(child), path, d->names[i]) <
		    0)
			continue;
		struct cnode *n = omni__cache_node_find(c, child);
		struct centry *e = omni__cache_table_find(&c->entries, child);
		if (n && !n->loading)
			omni__cache_node_attr(c, n, &st);
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
		if (omni__cache_join(child, sizeof(child), path,
		                     copy.names[i]) == 0)
			copy.st[i].st_ino = omni__cache_ino_of(child);
		rc = cb(copy.names[i], &copy.st[i], payload);
	}
	fetched_free(&copy);
	return rc;
}
