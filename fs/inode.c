/*
 * inode.c - the inode table (see inode.h for the model and the locking).
 *
 * Three chained hash tables index it: nodes by ino, nodes by backing
 * (st_dev, st_ino) (host backends only), and names by (parent, name). A
 * name links a parent node to a child node; a node lists its names (at
 * most one for a path table). Inode numbers come from a 64-bit counter and
 * are never reused within a mount, so the generation can stay constant.
 * The tables double when their load passes 1.
 *
 * A node is freed when the kernel has forgotten it, no handle is open on
 * it, no name has it as parent and no request pins it; its names go with
 * it, and its descriptor is closed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fnv.h"
#include "inode.h"

struct node;

struct name {
	struct node *parent;
	struct node *node;
	char *name;
	struct name *node_next; /* the node's other names */
	struct name *hash_next;
};

struct node {
	fuse_ino_t ino;
	uint64_t nlookup;
	unsigned int children;         /* names whose parent this is */
	unsigned int pins;             /* requests using fd */
	struct name *names;            /* NULL for the root and detached */
	struct omnifs_handle *handles; /* open files of this node */
	int fd;                        /* O_PATH of the backing file, or -1 */
	bool dir;                      /* a directory: keeps fd for good */
	bool identified;               /* in the (dev, ino) index */
	bool keep_fd;                  /* no file handles here: fd for good */
	uint64_t hid;                  /* hash of its file handle, 0: none */
	dev_t dev;
	ino_t bino;
	struct node *ino_next;
	struct node *id_next;
};

struct omnifs_inodes {
	pthread_mutex_t lock;
	struct node **by_ino;
	struct node **by_id;
	struct name **by_name;
	size_t buckets; /* of each table */
	size_t count;
	size_t names;
	fuse_ino_t next_ino;
	bool nodes;                   /* host table: nodes are backing files */
	struct omni_backend *backend; /* of a host table: reopens file nodes */
	struct node root;
};

static size_t hash_ino(fuse_ino_t ino, size_t buckets)
{
	uint64_t h = ino * 0x9e3779b97f4a7c15ull;

	return (size_t)(h >> 17) & (buckets - 1);
}

static size_t hash_id(dev_t dev, ino_t bino, size_t buckets)
{
	uint64_t h =
	    ((uint64_t)bino ^ ((uint64_t)dev << 40)) * 0x9e3779b97f4a7c15ull;

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
	t->buckets = 1024;
	t->by_ino = calloc(t->buckets, sizeof(*t->by_ino));
	t->by_id = calloc(t->buckets, sizeof(*t->by_id));
	t->by_name = calloc(t->buckets, sizeof(*t->by_name));
	if (!t->by_ino || !t->by_id || !t->by_name) {
		free(t->by_ino);
		free(t->by_id);
		free(t->by_name);
		free(t);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->root.ino = FUSE_ROOT_ID;
	t->root.nlookup = 1;
	t->root.fd = -1;
	t->next_ino = FUSE_ROOT_ID + 1;
	t->by_ino[hash_ino(FUSE_ROOT_ID, t->buckets)] = &t->root;
	t->count = 1;
	*out = t;
	return 0;
}

void omnifs_inodes_free(struct omnifs_inodes *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->buckets; i++) {
		for (struct name *nm = t->by_name[i], *next; nm; nm = next) {
			next = nm->hash_next;
			free(nm->name);
			free(nm);
		}
		for (struct node *n = t->by_ino[i], *next; n; n = next) {
			next = n->ino_next;
			if (n->fd >= 0)
				close(n->fd);
			if (n != &t->root)
				free(n);
		}
	}
	free(t->by_ino);
	free(t->by_id);
	free(t->by_name);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct node *find_ino(struct omnifs_inodes *t, fuse_ino_t ino)
{
	for (struct node *n = t->by_ino[hash_ino(ino, t->buckets)]; n;
	     n = n->ino_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

/* The node of backing file (dev, bino) whose file handle hashes to hid:
 * an inode number freed and given to a new file is another file (the
 * handle carries the generation). */
static struct node *find_id(struct omnifs_inodes *t, dev_t dev, ino_t bino,
                            uint64_t hid)
{
	for (struct node *n = t->by_id[hash_id(dev, bino, t->buckets)]; n;
	     n = n->id_next)
		if (n->dev == dev && n->bino == bino && n->hid == hid)
			return n;
	return NULL;
}

uint64_t omnifs_inode_handle_id(int dirfd, const char *name)
{
	union {
		struct file_handle fh;
		char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	} u;
	int mount_id;

	u.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(dirfd, name, &u.fh, &mount_id,
	                      name[0] ? 0 : AT_EMPTY_PATH) < 0)
		return 0;
	uint64_t h = OMNI__FNV64_SEED ^ (uint64_t)(unsigned)u.fh.handle_type;
	for (unsigned i = 0; i < u.fh.handle_bytes; i++) {
		h ^= u.fh.f_handle[i];
		h *= 0x100000001b3ull;
	}
	return h ? h : 1;
}

static struct name *find_name(struct omnifs_inodes *t, struct node *parent,
                              const char *name)
{
	for (struct name *nm = t->by_name[hash_name(parent, name, t->buckets)];
	     nm; nm = nm->hash_next)
		if (nm->parent == parent && strcmp(nm->name, name) == 0)
			return nm;
	return NULL;
}

static void name_unhash(struct omnifs_inodes *t, struct name *nm)
{
	struct name **pp =
	    &t->by_name[hash_name(nm->parent, nm->name, t->buckets)];
	while (*pp && *pp != nm)
		pp = &(*pp)->hash_next;
	if (*pp)
		*pp = nm->hash_next;
	nm->hash_next = NULL;
}

static void name_hash(struct omnifs_inodes *t, struct name *nm)
{
	size_t h = hash_name(nm->parent, nm->name, t->buckets);

	nm->hash_next = t->by_name[h];
	t->by_name[h] = nm;
}

/* Unlink nm from the indexes and its node's list and free it; its parent
 * loses a child (the caller then calls maybe_free on both nodes). */
static void name_drop(struct omnifs_inodes *t, struct name *nm)
{
	struct name **pp = &nm->node->names;

	name_unhash(t, nm);
	while (*pp && *pp != nm)
		pp = &(*pp)->node_next;
	if (*pp)
		*pp = nm->node_next;
	nm->parent->children--;
	t->names--;
	free(nm->name);
	free(nm);
}

/* A new name of n in parent (NULL on -ENOMEM). */
static struct name *name_add(struct omnifs_inodes *t, struct node *parent,
                             const char *name, struct node *n)
{
	struct name *nm = calloc(1, sizeof(*nm));

	if (!nm || !(nm->name = strdup(name))) {
		free(nm);
		return NULL;
	}
	nm->parent = parent;
	nm->node = n;
	nm->node_next = n->names;
	n->names = nm;
	parent->children++;
	t->names++;
	name_hash(t, nm);
	return nm;
}

static void rehash(struct omnifs_inodes *t, size_t nb, struct node **bi,
                   struct node **bd, struct name **bn)
{
	for (size_t i = 0; i < t->buckets; i++) {
		for (struct node *n = t->by_ino[i], *next; n; n = next) {
			next = n->ino_next;
			size_t h = hash_ino(n->ino, nb);
			n->ino_next = bi[h];
			bi[h] = n;
		}
		for (struct node *n = t->by_id[i], *next; n; n = next) {
			next = n->id_next;
			size_t h = hash_id(n->dev, n->bino, nb);
			n->id_next = bd[h];
			bd[h] = n;
		}
		for (struct name *nm = t->by_name[i], *next; nm; nm = next) {
			next = nm->hash_next;
			size_t h = hash_name(nm->parent, nm->name, nb);
			nm->hash_next = bn[h];
			bn[h] = nm;
		}
	}
}

static void maybe_grow(struct omnifs_inodes *t)
{
	if (t->count < t->buckets && t->names < t->buckets)
		return;
	size_t nb = t->buckets * 2;
	struct node **bi = calloc(nb, sizeof(*bi));
	struct node **bd = calloc(nb, sizeof(*bd));
	struct name **bn = calloc(nb, sizeof(*bn));
	if (!bi || !bd || !bn) {
		/* Longer chains, still correct. */
		free(bi);
		free(bd);
		free(bn);
		return;
	}
	rehash(t, nb, bi, bd, bn);
	free(t->by_ino);
	free(t->by_id);
	free(t->by_name);
	t->by_ino = bi;
	t->by_id = bd;
	t->by_name = bn;
	t->buckets = nb;
}

/* A new node with no name (NULL on -ENOMEM). */
static struct node *node_new(struct omnifs_inodes *t)
{
	struct node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->fd = -1;
	n->ino = t->next_ino++;
	size_t h = hash_ino(n->ino, t->buckets);
	n->ino_next = t->by_ino[h];
	t->by_ino[h] = n;
	t->count++;
	return n;
}

static void id_link(struct omnifs_inodes *t, struct node *n)
{
	size_t h = hash_id(n->dev, n->bino, t->buckets);

	n->id_next = t->by_id[h];
	t->by_id[h] = n;
}

static void id_unlink(struct omnifs_inodes *t, struct node *n)
{
	struct node **pp = &t->by_id[hash_id(n->dev, n->bino, t->buckets)];

	while (*pp && *pp != n)
		pp = &(*pp)->id_next;
	if (*pp)
		*pp = n->id_next;
}

/* Free n if nothing refers to it any more. The lock is held. */
static void maybe_free(struct omnifs_inodes *t, struct node *n)
{
	if (n == &t->root || n->nlookup > 0 || n->children > 0 || n->handles ||
	    n->pins > 0)
		return;
	while (n->names) {
		struct node *parent = n->names->parent;
		name_drop(t, n->names);
		/* A forgotten directory may have kept its parent alive. */
		maybe_free(t, parent);
	}
	struct node **pp = &t->by_ino[hash_ino(n->ino, t->buckets)];
	while (*pp && *pp != n)
		pp = &(*pp)->ino_next;
	if (*pp)
		*pp = n->ino_next;
	if (n->identified)
		id_unlink(t, n);
	if (n->fd >= 0)
		close(n->fd);
	t->count--;
	free(n);
}

/* Build n's path into out (its first names up to the root); the caller
 * holds the lock. */
static int build_path(struct omnifs_inodes *t, struct node *n, char *out,
                      size_t size)
{
	size_t pos = size;

	if (size == 0)
		return -ENAMETOOLONG;
	out[--pos] = '\0';
	for (; n != &t->root; n = n->names->parent) {
		if (!n->names)
			return -ESTALE; /* detached somewhere up the chain */
		size_t len = strlen(n->names->name);
		if (len + 1 > pos)
			return -ENAMETOOLONG;
		pos -= len;
		memcpy(out + pos, n->names->name, len);
		if (n->names->parent != &t->root)
			out[--pos] = '/';
	}
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
		rc = build_path(t, n, out, size);
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
	struct node *p = find_ino(t, parent), *n = NULL;
	if (!p)
		goto out;
	struct name *nm = find_name(t, p, name);
	if (nm) {
		n = nm->node;
	} else {
		if (!(n = node_new(t)))
			goto out;
		if (!name_add(t, p, name, n)) {
			maybe_free(t, n);
			goto out;
		}
		maybe_grow(t);
	}
	n->nlookup++;
	ino = n->ino;
out:
	pthread_mutex_unlock(&t->lock);
	return ino;
}

void omnifs_inode_set_root(struct omnifs_inodes *t, struct omni_backend *b,
                           int fd, const struct stat *st)
{
	pthread_mutex_lock(&t->lock);
	t->nodes = true;
	t->backend = b;
	t->root.fd = fd;
	t->root.dir = true;
	t->root.identified = true;
	t->root.hid = omnifs_inode_handle_id(fd, "");
	t->root.dev = st->st_dev;
	t->root.bino = st->st_ino;
	id_link(t, &t->root);
	pthread_mutex_unlock(&t->lock);
}

/* The i-th name of n, or NULL. The lock is held. */
static struct name *nth_name(struct node *n, int i)
{
	struct name *nm = n->names;

	while (nm && i-- > 0)
		nm = nm->node_next;
	return nm;
}

/*
 * Give a file node (n->fd < 0, pinned by the caller) a descriptor again:
 * its names are looked up one by one beneath their parents' descriptors
 * (omni_vfs_node_lookup: one component, confined, no symlink followed),
 * and the first that is still the same backing
 * file (st_dev, st_ino) wins. The lock is held on entry and on return but
 * dropped around the opens; the parents are pinned meanwhile.
 */
static int reopen(struct omnifs_inodes *t, struct node *n)
{
	char name[NAME_MAX + 1];

	for (int i = 0; i < 8 && n->fd < 0; i++) {
		struct name *nm = nth_name(n, i);
		if (!nm)
			break;
		struct node *p = nm->parent;
		if (p->fd < 0 || strlen(nm->name) > NAME_MAX)
			continue;
		memcpy(name, nm->name, strlen(nm->name) + 1);
		p->pins++;
		pthread_mutex_unlock(&t->lock);
		struct stat st;
		int fd = omni_vfs_node_lookup(t->backend, p->fd, name, &st);
		if (fd >= 0 && (st.st_dev != n->dev || st.st_ino != n->bino ||
		                omnifs_inode_handle_id(fd, "") != n->hid)) {
			close(fd);
			fd = -1;
		}
		pthread_mutex_lock(&t->lock);
		p->pins--;
		if (fd >= 0 && n->fd < 0)
			n->fd = fd;
		else if (fd >= 0)
			close(fd); /* another request was quicker */
	}
	/* No name leads to it (unlinked while open): an open handle does. */
	if (n->fd < 0 && n->handles) {
		struct omnifs_handle *h = n->handles;
		atomic_fetch_add(&h->refs, 1);
		pthread_mutex_unlock(&t->lock);
		int fd = -1, ffd = omni_vfs_file_fd(h->file);
		struct stat st;
		if (ffd >= 0)
			fd = omni_vfs_node_lookup(t->backend, ffd, "", &st);
		omnifs_handle_put(h);
		pthread_mutex_lock(&t->lock);
		if (fd >= 0 && n->fd < 0)
			n->fd = fd;
		else if (fd >= 0)
			close(fd);
	}
	return n->fd >= 0 ? 0 : -ESTALE;
}

/* A file node's descriptor is kept only while it is pinned or open: the
 * kernel may know far more files than this process may hold descriptors
 * (touch of 100 000 files). Directories keep theirs: they are the
 * parents every lookup starts from. The lock is held. */
static void drop_fd(struct node *n)
{
	if (!n->dir && !n->keep_fd && n->fd >= 0 && n->pins == 0 &&
	    !n->handles) {
		close(n->fd);
		n->fd = -1;
	}
}

int omnifs_inode_pin(struct omnifs_inodes *t, fuse_ino_t ino, int *fd)
{
	int rc = -ESTALE;

	pthread_mutex_lock(&t->lock);
	struct node *n = find_ino(t, ino);
	if (n && (n->fd >= 0 || (t->nodes && n->identified && n->hid))) {
		n->pins++;
		rc = n->fd >= 0 ? 0 : reopen(t, n);
		if (rc == 0) {
			*fd = n->fd;
		} else {
			n->pins--;
			maybe_free(t, n);
		}
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void omnifs_inode_unpin(struct omnifs_inodes *t, fuse_ino_t ino)
{
	pthread_mutex_lock(&t->lock);
	struct node *n = find_ino(t, ino);
	if (n && n->pins > 0) {
		n->pins--;
		drop_fd(n);
		maybe_free(t, n);
	}
	pthread_mutex_unlock(&t->lock);
}

/* Point (p, name) at n: a name that named another file (replaced behind
 * our back) moves. -ENOMEM. The lock is held. */
static int set_name(struct omnifs_inodes *t, struct node *p, const char *name,
                    struct node *n)
{
	struct name *nm = find_name(t, p, name);

	if (nm && nm->node == n)
		return 0;
	if (nm) {
		struct node *old = nm->node;
		name_drop(t, nm);
		maybe_free(t, old);
	}
	if (!name_add(t, p, name, n))
		return -ENOMEM;
	maybe_grow(t);
	return 0;
}

int omnifs_inode_lookup_node(struct omnifs_inodes *t, fuse_ino_t parent,
                             const char *name, const struct stat *st,
                             uint64_t hid, int *fd, fuse_ino_t *ino)
{
	int rc = 0;

	*ino = 0;
	pthread_mutex_lock(&t->lock);
	struct node *p = find_ino(t, parent);
	struct node *n = find_id(t, st->st_dev, st->st_ino, hid);
	if (!p) {
		rc = -ESTALE;
		goto out;
	}
	if (!n) {
		bool dir = S_ISDIR(st->st_mode);
		/* A directory is made with its descriptor; a file needs none
		 * (reopen() finds it by name and handle when a request pins
		 * it), unless the file system has no handles: then its
		 * descriptor keeps the inode number from being reused. */
		bool keep = dir || !hid;
		if (keep && *fd < 0) {
			rc = -ENOENT;
			goto out;
		}
		if (!(n = node_new(t))) {
			rc = -ENOMEM;
			goto out;
		}
		if (keep) {
			n->fd = *fd;
			*fd = -1;
		}
		n->keep_fd = keep && !dir;
		n->hid = hid;
		n->dir = dir;
		n->dev = st->st_dev;
		n->bino = st->st_ino;
		n->identified = true;
		id_link(t, n);
	}
	n->nlookup++;
	if (set_name(t, p, name, n) < 0) {
		/* The kernel still gets the node; only invalidation by this
		 * name is lost. */
	}
	*ino = n->ino;
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
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
	struct name *nm = p ? find_name(t, p, name) : NULL;
	if (nm) {
		struct node *n = nm->node;
		name_drop(t, nm);
		maybe_free(t, n);
		maybe_free(t, p);
	}
	pthread_mutex_unlock(&t->lock);
}

/* Move nm to (np, newname) (newname already copied). */
static void name_move(struct omnifs_inodes *t, struct name *nm, struct node *np,
                      char *newname)
{
	name_unhash(t, nm);
	nm->parent->children--;
	nm->parent = np;
	np->children++;
	free(nm->name);
	nm->name = newname;
	name_hash(t, nm);
}

void omnifs_inode_rename(struct omnifs_inodes *t, fuse_ino_t parent,
                         const char *name, fuse_ino_t newparent,
                         const char *newname, bool exchange)
{
	pthread_mutex_lock(&t->lock);
	struct node *p = find_ino(t, parent), *np = find_ino(t, newparent);
	struct name *src = p ? find_name(t, p, name) : NULL;
	struct name *dst = np ? find_name(t, np, newname) : NULL;
	struct node *gone = NULL;
	char *n1 = strdup(newname), *n2 = exchange ? strdup(name) : NULL;

	if (!p || !np || !n1 || (exchange && !n2)) {
		/* Out of memory: forget both names; lookups rebuild them. */
		struct node *a = src ? src->node : NULL;
		struct node *b = dst ? dst->node : NULL;
		if (src)
			name_drop(t, src);
		if (dst)
			name_drop(t, dst);
		free(n1);
		free(n2);
		if (a)
			maybe_free(t, a);
		if (b)
			maybe_free(t, b);
		goto out;
	}
	if (dst && !exchange) {
		/* Renamed over: the old target loses that name. */
		gone = dst->node;
		name_drop(t, dst);
		dst = NULL;
	}
	if (src) {
		name_move(t, src, np, n1);
		n1 = NULL;
	}
	if (dst) {
		name_move(t, dst, p, n2);
		n2 = NULL;
	}
	free(n1);
	free(n2);
	if (gone)
		maybe_free(t, gone);
	maybe_free(t, p);
out:
	pthread_mutex_unlock(&t->lock);
}

/* One ref for n (with name nm, or none); -ENOMEM. */
static int ref_of(struct omnifs_inode_ref *ref, struct node *n,
                  const struct name *nm)
{
	ref->ino = n->ino;
	if (!nm)
		return 0;
	ref->parent = nm->parent->ino;
	ref->name = strdup(nm->name);
	return ref->name ? 0 : -ENOMEM;
}

int omnifs_inode_snapshot(struct omnifs_inodes *t,
                          struct omnifs_inode_ref **out, size_t *count)
{
	size_t k = 0;
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	struct omnifs_inode_ref *refs =
	    calloc(t->count + t->names, sizeof(*refs));
	if (!refs) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->buckets && rc == 0; i++) {
		for (struct node *n = t->by_ino[i]; n && rc == 0;
		     n = n->ino_next) {
			if (!n->names)
				rc = ref_of(&refs[k++], n, NULL);
			for (struct name *nm = n->names; nm && rc == 0;
			     nm = nm->node_next)
				rc = ref_of(&refs[k++], n, nm);
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
		drop_fd(n);
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
		struct name *nm = find_name(t, dir, name);
		n = nm ? nm->node : NULL;
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
