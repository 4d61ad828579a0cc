/*
 * inode.c - the inode table (see inode.h for the model and the locking).
 *
 * Two chained hash tables index the nodes: by ino, and by (parent, name).
 * Inode numbers come from a 64-bit counter and are never reused within a
 * mount, so the generation can stay constant. Both tables double when
 * their load passes 1.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/fnv.h"
#include "inode.h"

struct node {
	fuse_ino_t ino;
	struct node *parent; /* NULL for the root and when detached */
	char *name;          /* NULL for the root and when detached */
	uint64_t nlookup;
	unsigned int children;         /* nodes whose parent this is */
	struct omnifs_handle *handles; /* open files of this node */
	struct node *ino_next;
	struct node *name_next;
};

struct omnifs_inodes {
	pthread_mutex_t lock;
	struct node **by_ino;
	size_t ino_buckets;
	struct node **by_name;
	size_t name_buckets;
	size_t count;
	fuse_ino_t next_ino;
	struct node root;
};

static size_t hash_ino(fuse_ino_t ino, size_t buckets)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 17) & (buckets - 1);
}

static size_t hash_name(const struct node *parent, const char *name,
                        size_t buckets)
{
	/* FNV-1a over the name, mixed with the parent's ino. */
	uint64_t h = omni__fnv1a64(OMNI__FNV64_SEED ^ parent->ino, name);

	return (size_t)(h ^ (h >> 29)) & (buckets - 1);
}

int omnifs_inodes_new(struct omnifs_inodes **out)
{
	struct omnifs_inodes *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->ino_buckets = t->name_buckets = 1024;
	t->by_ino = calloc(t->ino_buckets, sizeof(*t->by_ino));
	t->by_name = calloc(t->name_buckets, sizeof(*t->by_name));
	if (!t->by_ino || !t->by_name) {
		free(t->by_ino);
		free(t->by_name);
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->root.ino = FUSE_ROOT_ID;
	t->root.nlookup = 1;
	t->next_ino = FUSE_ROOT_ID + 1;
	t->by_ino[hash_ino(FUSE_ROOT_ID, t->ino_buckets)] = &t->root;
	t->count = 1;
	*out = t;
	return 0;
}

void omnifs_inodes_free(struct omnifs_inodes *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->ino_buckets; i++) {
		for (struct node *n = t->by_ino[i], *next; n; n = next) {
			next = n->ino_next;
			if (n != &t->root) {
				free(n->name);
				free(n);
			}
		}
	}
	free(t->by_ino);
	free(t->by_name);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct node *find_ino(struct omnifs_inodes *t, fuse_ino_t ino)
{
	for (struct node *n = t->by_ino[hash_ino(ino, t->ino_buckets)]; n;
	     n = n->ino_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

static struct node *find_name(struct omnifs_inodes *t, struct node *parent,
                              const char *name)
{
	for (struct node *n =
	         t->by_name[hash_name(parent, name, t->name_buckets)];
	     n; n = n->name_next)
		if (n->parent == parent && strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

static void unlink_name(struct omnifs_inodes *t, struct node *n)
{
	if (!n->name)
		return;
	struct node **pp =
	    &t->by_name[hash_name(n->parent, n->name, t->name_buckets)];
	while (*pp && *pp != n)
		pp = &(*pp)->name_next;
	if (*pp)
		*pp = n->name_next;
	n->name_next = NULL;
}

static void link_name(struct omnifs_inodes *t, struct node *n)
{
	size_t h = hash_name(n->parent, n->name, t->name_buckets);

	n->name_next = t->by_name[h];
	t->by_name[h] = n;
}

/* Take n out of the name index and off its parent; it keeps its ino. */
static void detach(struct omnifs_inodes *t, struct node *n)
{
	unlink_name(t, n);
	if (n->parent)
		n->parent->children--;
	n->parent = NULL;
	free(n->name);
	n->name = NULL;
}

static void maybe_grow(struct omnifs_inodes *t)
{
	if (t->count < t->ino_buckets)
		return;
	size_t nb = t->ino_buckets * 2;
	struct node **bi = calloc(nb, sizeof(*bi));
	struct node **bn = calloc(nb, sizeof(*bn));
	if (!bi || !bn) {
		/* Longer chains, still correct. */
		free(bi);
		free(bn);
		return;
	}
	for (size_t i = 0; i < t->ino_buckets; i++) {
		for (struct node *n = t->by_ino[i], *next; n; n = next) {
			next = n->ino_next;
			size_t h = hash_ino(n->ino, nb);
			n->ino_next = bi[h];
			bi[h] = n;
		}
		for (struct node *n = t->by_name[i], *next; n; n = next) {
			next = n->name_next;
			size_t h = hash_name(n->parent, n->name, nb);
			n->name_next = bn[h];
			bn[h] = n;
		}
	}
	free(t->by_ino);
	free(t->by_name);
	t->by_ino = bi;
	t->by_name = bn;
	t->ino_buckets = t->name_buckets = nb;
}

/* Build n's path into out; the caller holds the lock. */
static int build_path(struct node *n, char *out, size_t size)
{
	size_t pos = size;

	if (size == 0)
		return -ENAMETOOLONG;
	out[--pos] = '\0';
	for (; n && n->name; n = n->parent) {
		size_t len = strlen(n->name);
		if (len + 1 > pos)
			return -ENAMETOOLONG;
		pos -= len;
		memcpy(out + pos, n->name, len);
		if (n->parent && n->parent->name)
			out[--pos] = '/';
	}
	if (n == NULL)
		return -ESTALE; /* detached somewhere up the chain */
	if (n->ino != FUSE_ROOT_ID)
		return -ESTALE;
	memmove(out, out + pos, size - pos);
	return 0;
}

int omnifs_inode_path(struct omnifs_inodes *t, fuse_ino_t ino, char *out,
                      size_t size)
{
	int rc = -ESTALE;

	pthread_mutex_lock(&t->lock);
	struct node *n = find_ino(t, ino);
	if (n)
		rc = build_path(n, out, size);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int omnifs_inode_child_path(struct omnifs_inodes *t, fuse_ino_t parent,
                            const char *name, char *out, size_t size)
{
	int rc = omnifs_inode_path(t, parent, out, size);

	if (rc < 0)
		return rc;
	size_t len = strlen(out), nl = strlen(name);
	if (len + nl + 2 > size)
		return -ENAMETOOLONG;
	if (len)
		out[len++] = '/';
	memcpy(out + len, name, nl + 1);
	return 0;
}

fuse_ino_t omnifs_inode_lookup(struct omnifs_inodes *t, fuse_ino_t parent,
                               const char *name, uint64_t *generation)
{
	fuse_ino_t ino = 0;

	*generation = 1;
	pthread_mutex_lock(&t->lock);
	struct node *p = find_ino(t, parent);
	if (!p)
		goto out;
	struct node *n = find_name(t, p, name);
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n)
			goto out;
		n->name = strdup(name);
		if (!n->name) {
			free(n);
			goto out;
		}
		n->ino = t->next_ino++;
		n->parent = p;
		p->children++;
		size_t h = hash_ino(n->ino, t->ino_buckets);
		n->ino_next = t->by_ino[h];
		t->by_ino[h] = n;
		link_name(t, n);
		t->count++;
		maybe_grow(t);
	}
	n->nlookup++;
	ino = n->ino;
out:
	pthread_mutex_unlock(&t->lock);
	return ino;
}

/* Free n if nothing refers to it any more. The lock is held. */
static void maybe_free(struct omnifs_inodes *t, struct node *n)
{
	if (n == &t->root || n->nlookup > 0 || n->children > 0 || n->handles)
		return;
	struct node *parent = n->parent;
	detach(t, n);
	struct node **pp = &t->by_ino[hash_ino(n->ino, t->ino_buckets)];
	while (*pp && *pp != n)
		pp = &(*pp)->ino_next;
	if (*pp)
		*pp = n->ino_next;
	t->count--;
	free(n);
	/* A forgotten directory may have kept its parent alive. */
	if (parent)
		maybe_free(t, parent);
}

void omnifs_inode_forget(struct omnifs_inodes *t, fuse_ino_t ino,
                         uint64_t nlookup)
{
	pthread_mutex_lock(&t->lock);
	struct node *n = find_ino(t, ino);
	if (n && n != &t->root) {
		n->nlookup = nlookup > n->nlookup ? 0 : n->nlookup - nlookup;
		maybe_free(t, n);
	}
	pthread_mutex_unlock(&t->lock);
}

void omnifs_inode_remove(struct omnifs_inodes *t, fuse_ino_t parent,
                         const char *name)
{
	pthread_mutex_lock(&t->lock);
	struct node *p = find_ino(t, parent);
	struct node *n = p ? find_name(t, p, name) : NULL;
	if (n) {
		detach(t, n);
		maybe_free(t, n);
		maybe_free(t, p);
	}
	pthread_mutex_unlock(&t->lock);
}

void omnifs_inode_rename(struct omnifs_inodes *t, fuse_ino_t parent,
                         const char *name, fuse_ino_t newparent,
                         const char *newname, bool exchange)
{
	pthread_mutex_lock(&t->lock);
	struct node *p = find_ino(t, parent), *np = find_ino(t, newparent);
	struct node *src = p ? find_name(t, p, name) : NULL;
	struct node *dst = np ? find_name(t, np, newname) : NULL;
	char *n1 = strdup(newname), *n2 = exchange ? strdup(name) : NULL;

	if (!p || !np || !n1 || (exchange && !n2)) {
		/* Out of memory: forget both names; lookups rebuild them. */
		if (src)
			detach(t, src);
		if (dst)
			detach(t, dst);
		free(n1);
		free(n2);
		goto out;
	}
	if (src)
		unlink_name(t, src);
	if (dst)
		unlink_name(t, dst);
	if (dst && !exchange) {
		/* Renamed over: the old target has no name any more. */
		dst->parent->children--;
		dst->parent = NULL;
		free(dst->name);
		dst->name = NULL;
	}
	if (src) {
		src->parent->children--;
		src->parent = np;
		np->children++;
		free(src->name);
		src->name = n1;
		n1 = NULL;
		link_name(t, src);
	}
	if (dst && exchange) {
		dst->parent->children--;
		dst->parent = p;
		p->children++;
		free(dst->name);
		dst->name = n2;
		n2 = NULL;
		link_name(t, dst);
	}
	free(n1);
	free(n2);
	if (dst && !exchange)
		maybe_free(t, dst);
	maybe_free(t, p);
out:
	pthread_mutex_unlock(&t->lock);
}

int omnifs_inode_snapshot(struct omnifs_inodes *t,
                          struct omnifs_inode_ref **out, size_t *count)
{
	size_t k = 0;
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	struct omnifs_inode_ref *refs = calloc(t->count, sizeof(*refs));
	if (!refs) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->ino_buckets && rc == 0; i++) {
		for (struct node *n = t->by_ino[i]; n; n = n->ino_next) {
			refs[k].ino = n->ino;
			if (n->name && n->parent) {
				refs[k].parent = n->parent->ino;
				refs[k].name = strdup(n->name);
				if (!refs[k].name) {
					rc = -ENOMEM;
					break;
				}
			}
			k++;
		}
	}
out:
	pthread_mutex_unlock(&t->lock);
	if (rc < 0) {
		omnifs_inode_refs_free(refs, k);
		return rc;
	}
	*out = refs;
	*count = k;
	return 0;
}

void omnifs_inode_refs_free(struct omnifs_inode_ref *refs, size_t count)
{
	for (size_t i = 0; refs && i < count; i++)
		free(refs[i].name);
	free(refs);
}

size_t omnifs_inode_count(struct omnifs_inodes *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void omnifs_inode_add_handle(struct omnifs_inodes *t, struct omnifs_handle *h)
{
	pthread_mutex_lock(&t->lock);
	struct node *n = find_ino(t, h->ino);
	if (n) {
		h->next = n->handles;
		n->handles = h;
	}
	pthread_mutex_unlock(&t->lock);
}

void omnifs_inode_remove_handle(struct omnifs_inodes *t,
                                struct omnifs_handle *h)
{
	pthread_mutex_lock(&t->lock);
	struct node *n = find_ino(t, h->ino);
	if (n) {
		struct omnifs_handle **pp = &n->handles;
		while (*pp && *pp != h)
			pp = &(*pp)->next;
		if (*pp)
			*pp = h->next;
		maybe_free(t, n);
	}
	h->next = NULL;
	pthread_mutex_unlock(&t->lock);
}

struct omnifs_handle *omnifs_inode_get_handle(struct omnifs_inodes *t,
                                              fuse_ino_t ino)
{
	struct omnifs_handle *h = NULL;

	pthread_mutex_lock(&t->lock);
	struct node *n = find_ino(t, ino);
	if (n && n->handles) {
		h = n->handles;
		atomic_fetch_add(&h->refs, 1);
	}
	pthread_mutex_unlock(&t->lock);
	return h;
}

int omnifs_handle_put(struct omnifs_handle *h)
{
	int rc = 0;

	if (h && atomic_fetch_sub(&h->refs, 1) == 1) {
		rc = omni_vfs_release(h->file);
		free(h);
	}
	return rc;
}

void omnifs_inode_find_path(struct omnifs_inodes *t, const char *path,
                            fuse_ino_t *ino, fuse_ino_t *parent)
{
	char name[NAME_MAX + 1];
	struct node *dir = &t->root, *n = &t->root;

	*ino = *parent = 0;
	pthread_mutex_lock(&t->lock);
	for (const char *p = path; *p && n;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (len == 0 || len > NAME_MAX) {
			n = NULL;
			break;
		}
		memcpy(name, p, len);
		name[len] = '\0';
		dir = n;
		n = find_name(t, dir, name);
		p += len + (slash ? 1 : 0);
		if (slash && !n)
			dir = NULL; /* an ancestor is unknown */
	}
	if (n)
		*ino = n->ino;
	if (path[0] && dir)
		*parent = dir->ino;
	pthread_mutex_unlock(&t->lock);
}
