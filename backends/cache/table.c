/*
 * backends/cache/table.c - the cache's tables and the life of its content
 * nodes.
 *
 * Two tables map a workspace path to what the cache knows about it:
 * c->entries holds attribute entries (struct centry, attr.c), c->nodes the
 * local copies of file content (struct cnode, file.c). Both are chained
 * hash tables on the path (FNV-1a, omni__cache_hash_path), with a power
 * of two of buckets that doubles when the table holds as many items; an
 * item starts with struct link, so one set of functions serves both. A
 * failed growth only makes chains longer.
 *
 * Content nodes are reference counted (open handles and short pins). A
 * clean node nobody holds sits in the LRU of clean copies, at most
 * max_clean_files of them and max_clean_bytes of content, the least
 * recently used out first. A node leaves the table when it is unlinked,
 * invalidated or replaced, and is freed at its last reference.
 *
 * Also here: the path helpers every file uses (split, join, under).
 *
 * Locking: every function here is called with c->lock held (see
 * cache_internal.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache_internal.h"
#include "omni/error.h"

/* --- paths ---------------------------------------------------------------- */

/* The parent of path ("" for a top-level name) and its last component. */
void omni__cache_split(const char *path, char *parent, size_t size,
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

int omni__cache_join(char *out, size_t size, const char *dir, const char *name)
{
	int n = dir[0] ? snprintf(out, size, "%s/%s", dir, name)
	               : snprintf(out, size, "%s", name);

	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "cache: path too long");
	return 0;
}

/* Is path equal to prefix or below it ("" is above everything)? */
bool omni__cache_under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 0)
		return true;
	return strncmp(path, prefix, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

/* --- tables (chained hashing on the path) --------------------------------- */

int omni__cache_table_init(struct table *t)
{
	t->nb = 1024;
	t->n = 0;
	t->b = calloc(t->nb, sizeof(*t->b));
	return t->b ? 0 : -ENOMEM;
}

void *omni__cache_table_find(struct table *t, const char *path)
{
	uint64_t h = omni__cache_hash_path(path);

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

void omni__cache_table_add(struct table *t, void *item)
{
	struct link *l = item;

	if (t->n + 1 > t->nb)
		table_grow(t);
	l->next = t->b[l->hash & (t->nb - 1)];
	t->b[l->hash & (t->nb - 1)] = l;
	t->n++;
}

void omni__cache_table_del(struct table *t, void *item)
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

/* --- content nodes -------------------------------------------------------- */

void omni__cache_lru_remove(struct cache *c, struct cnode *n)
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

void omni__cache_node_free(struct cache *c, struct cnode *n)
{
	/* Gone from the table for good (unlinked, replaced): so is what
	 * the spool kept of it. Without c (destroy) the spool keeps it. */
	if (c && n->spool_id)
		omni__cache_spool_forget(c, n);
	if (n->fd >= 0)
		close(n->fd);
	pthread_mutex_destroy(&n->flush_lock);
	pthread_mutex_destroy(&n->spool_lock);
	free(n->l.path);
	free(n);
}

struct cnode *omni__cache_node_add_loading(struct cache *c, char *path)
{
	struct cnode *n = path ? calloc(1, sizeof(*n)) : NULL;

	if (!n) {
		free(path);
		return NULL;
	}
	n->l.path = path;
	n->l.hash = omni__cache_hash_path(path);
	n->fd = -1;
	n->refs = 1;
	n->loading = true;
	n->in_table = true;
	pthread_mutex_init(&n->flush_lock, NULL);
	pthread_mutex_init(&n->spool_lock, NULL);
	omni__cache_table_add(&c->nodes, n);
	return n;
}

void omni__cache_node_hold(struct cache *c, struct cnode *n)
{
	n->refs++;
	omni__cache_lru_remove(c, n);
}

int omni__cache_node_loaded(struct cache *c, struct cnode *n, int rc)
{
	n->loading = false;
	pthread_cond_broadcast(&c->cond);
	if (rc < 0) {
		n->refs = 0;
		omni__cache_node_detach(c, n);
	}
	return rc;
}

/* Take n out of the table (unlinked, invalidated, replaced). Frees it
 * when nobody holds it. */
void omni__cache_node_detach(struct cache *c, struct cnode *n)
{
	if (n->in_table) {
		omni__cache_table_del(&c->nodes, n);
		n->in_table = false;
	}
	omni__cache_lru_remove(c, n);
	if (n->refs == 0 && !n->loading)
		omni__cache_node_free(c, n);
}

/* Keep at most the configured clean copies nobody has open. */
static void lru_trim(struct cache *c)
{
	while (c->lru_head && (c->lru_count > c->opts.max_clean_files ||
	                       c->lru_bytes > c->opts.max_clean_bytes))
		omni__cache_node_detach(c, c->lru_head);
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

struct cnode *omni__cache_node_find(struct cache *c, const char *path)
{
	return omni__cache_table_find(&c->nodes, path);
}

/* Drop a reference; the lock is held. */
void omni__cache_node_put_locked(struct cache *c, struct cnode *n)
{
	if (--n->refs > 0)
		return;
	if (!n->in_table) {
		omni__cache_node_free(c, n);
	} else if (!n->dirty && !n->loading) {
		lru_add(c, n);
	}
}
