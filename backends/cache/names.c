/*
 * backends/cache/names.c - operations on names and attributes.
 *
 * mkdir, rmdir, unlink, rename: one request each, and the cache is
 * updated locally (a new directory is known empty, so creating files in
 * it costs nothing until they are uploaded). rmdir of a directory whose
 * fresh listing is empty is one Remove when the backend's unlink removes
 * directories (OMNI_CAP_REMOVE_DIRS), else the backend's rmdir. A file
 * made through the mount and not yet uploaded is renamed, chmod-ed or
 * unlinked locally (its mode travels with its first upload). rename
 * first uploads a dirty source that exists remotely (and dirty files
 * below a directory that moves); utimens a dirty file (an upload later
 * would reset its time). chown to the owner the file already has costs
 * nothing. In write-back mode chmod and utimens of a file whose copy is
 * dirty cost nothing: they are set after its upload, with others, in one
 * command (meta.c). Attributes that the remote side sets itself (the time of a
 * mkdir, of an upload) are our clock's until the change event or the
 * next listing brings the server's. A request that fails forgets what
 * was known of its paths.
 *
 * Every path changed here is marked (events.c) while its request runs,
 * so the change event that echoes it is ignored.
 *
 * Locking: c->lock around the cache's state, never across a request; a
 * node's flush_lock keeps its uploads in order with renames and unlinks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache_internal.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/vfs.h"

/* --- names ---------------------------------------------------------------- */

/* A reference on path's copy when there is one that is not loading (and
 * dirty, if asked), else NULL. The lock is held. */
static struct cnode *hold_copy(struct cache *c, const char *path,
                               bool dirty_only)
{
	struct cnode *n = omni__cache_node_find(c, path);

	if (!n || n->loading || (dirty_only && !n->dirty))
		return NULL;
	omni__cache_node_hold(c, n);
	return n;
}

int omni__cache_mkdir(struct omni_backend *b, const char *path, mode_t mode)
{
	struct cache *c = omni__cache_of(b);
	int rc;

	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	rc = omni_vfs_mkdir(c->inner, path, mode);
	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, path, false);
	if (rc == 0) {
		struct stat st =
		    omni__cache_new_file_attr(mode & 07777 ? mode : 0755);
		st.st_mode = S_IFDIR | (st.st_mode & 07777);
		st.st_size = 4096;
		omni__cache_note_exists(c, path, &st);
		struct centry *e = omni__cache_table_find(&c->entries, path);
		if (e && !e->loading) {
			/* A new directory is empty. */
			omni__cache_listing_clear(e);
			e->listed = true;
			e->list_expires = e->expires;
		}
	} else if (rc == -EEXIST) {
		omni__cache_note_changed(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int omni__cache_rmdir(struct omni_backend *b, const char *path)
{
	struct cache *c = omni__cache_of(b);
	int rc;

	pthread_mutex_lock(&c->lock);
	struct centry *d = omni__cache_table_find(&c->entries, path);
	bool empty = omni__cache_listing_fresh(d) && !d->loading &&
	             d->nnames == 0 &&
	             (omni_vfs_caps(c->inner) & OMNI_CAP_REMOVE_DIRS);
	omni__cache_mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	rc = empty ? omni_vfs_unlink(c->inner, path)
	           : omni_vfs_rmdir(c->inner, path);
	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, path, false);
	if (rc == 0) {
		omni__cache_note_gone(c, path);
	} else if (rc == -ENOTEMPTY || rc == -ENOENT) {
		omni__cache_note_changed(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int omni__cache_unlink(struct omni_backend *b, const char *path)
{
	struct cache *c = omni__cache_of(b);
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	struct cnode *n = hold_copy(c, path, false);
	omni__cache_mark_self(c, path, true);
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
	omni__cache_mark_self(c, path, false);
	if (rc == 0) {
		if (n) {
			n->unlinked = true;
			n->dirty = false;
			if (n->in_table)
				omni__cache_table_del(&c->nodes, n);
			n->in_table = false;
		}
		omni__cache_note_gone(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	if (n) {
		pthread_mutex_unlock(&n->flush_lock);
		if (rc == 0)
			omni__cache_spool_drop(c, n, UINT64_MAX);
		pthread_mutex_lock(&c->lock);
		omni__cache_node_put_locked(c, n);
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
	struct cnode *t = omni__cache_node_find(c, to);
	if (t && !t->loading && strcmp(from, to) != 0) {
		t->unlinked = true;
		omni__cache_node_detach(c, t);
	}
	for (size_t i = 0; i < c->nodes.nb; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i], *next; n;
		     n = next) {
			next = (struct cnode *)n->l.next;
			if (!omni__cache_under(n->l.path, from) || n->loading)
				continue;
			omni__cache_table_del(&c->nodes, n);
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
			omni__cache_lru_remove(c, n);
			if (n->refs == 0)
				omni__cache_node_free(c, n);
			continue;
		}
		free(n->l.path);
		n->l.path = p;
		n->spool_stale = n->spool_id != 0;
		n->l.hash = omni__cache_hash_path(p);
		n->base.st_ino = omni__cache_ino_of(p);
		omni__cache_table_add(&c->nodes, n);
	}
}

int omni__cache_rename(struct omni_backend *b, const char *from, const char *to,
                       unsigned int flags)
{
	struct cache *c = omni__cache_of(b);
	struct stat st;
	bool have_st, local = false;
	struct cnode *n;
	int rc = 0;

	if (flags & RENAME_EXCHANGE)
		return omni_error_set(
		    -EINVAL, "rename: exchanging is not supported here");
	pthread_mutex_lock(&c->lock);
	if (flags & RENAME_NOREPLACE) {
		rc = omni__cache_stat_locked(c, to, &st);
		if (rc == 0)
			rc = omni_error_set(-EEXIST, "%s: exists", to);
		else if (rc == -ENOENT)
			rc = 0;
	}
	have_st = rc == 0 && omni__cache_stat_locked(c, from, &st) == 0;
	n = hold_copy(c, from, false);
	omni__cache_mark_self(c, from, true);
	omni__cache_mark_self(c, to, true);
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
				if (x->dirty &&
				    omni__cache_under(x->l.path, from))
					any = true;
		pthread_mutex_unlock(&c->lock);
		if (any && (rc = omni__cache_flush_all(b)) < 0)
			goto unmark;
	}
	if (n) {
		pthread_mutex_lock(&n->flush_lock);
		pthread_mutex_lock(&c->lock);
		local = !n->exists_remote;
		pthread_mutex_unlock(&c->lock);
		if (!local)
			rc = omni__cache_node_flush_locked(c, n);
	}
	/* A file never uploaded moves here only; its upload goes to the
	 * new name. */
	if (rc == 0 && !local)
		rc = omni_vfs_rename(c->inner, from, to, 0);
	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, from, false);
	omni__cache_mark_self(c, to, false);
	if (rc == 0) {
		struct centry *e = omni__cache_table_find(&c->entries, from);
		struct stat moved;
		bool known = have_st || (e && !e->negative && e->st.st_mode);
		if (!have_st && known)
			st = e->st;
		moved = st;
		move_nodes(c, from, to);
		omni__cache_meta_rename_locked(c, from, to);
		omni__cache_note_gone(c, from);
		omni__cache_drop_tree(c, to);
		/* A directory's listings below are forgotten (they were
		 * kept under the old names); its own attributes move. */
		if (known)
			omni__cache_note_exists(c, to, &moved);
		else
			omni__cache_note_changed(c, to);
	} else {
		omni__cache_note_changed(c, from);
		omni__cache_note_changed(c, to);
	}
	pthread_mutex_unlock(&c->lock);
	if (n)
		pthread_mutex_unlock(&n->flush_lock);
	/* A kept copy's record names the new path. */
	if (n && rc == 0 && omni__cache_spool_put(c, n) < 0)
		omni_log(OMNI_LOG_WARN, "%s", omni_error_last());
	goto out;
unmark:
	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, from, false);
	omni__cache_mark_self(c, to, false);
	pthread_mutex_unlock(&c->lock);
out:
	if (n) {
		pthread_mutex_lock(&c->lock);
		omni__cache_node_put_locked(c, n);
		pthread_mutex_unlock(&c->lock);
	}
	return rc;
}

int omni__cache_symlink(struct omni_backend *b, const char *target,
                        const char *path)
{
	struct cache *c = omni__cache_of(b);

	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	int rc = omni_vfs_symlink(c->inner, target, path);
	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, path, false);
	if (rc == 0) {
		struct stat st = omni__cache_new_file_attr(0777);
		st.st_mode = S_IFLNK | 0777;
		st.st_size = (off_t)strlen(target);
		omni__cache_note_exists(c, path, &st);
		struct centry *e = omni__cache_table_find(&c->entries, path);
		if (e && !e->link)
			e->link = strdup(target);
	} else {
		omni__cache_note_changed(c, path);
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

ssize_t omni__cache_readlink(struct omni_backend *b, const char *path,
                             char *buf, size_t size)
{
	struct cache *c = omni__cache_of(b);
	struct stat st;

	pthread_mutex_lock(&c->lock);
	int rc = omni__cache_stat_locked(c, path, &st);
	if (rc == 0 && !S_ISLNK(st.st_mode))
		rc = omni_error_set(-EINVAL, "%s: not a symlink", path);
	struct centry *e =
	    rc == 0 ? omni__cache_table_find(&c->entries, path) : NULL;
	if (e && e->link && omni__cache_entry_fresh(e)) {
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
		e = omni__cache_table_find(&c->entries, path);
		if (e && gen == c->gen && omni__cache_entry_fresh(e) &&
		    !e->negative) {
			free(e->link);
			e->link = strdup(buf);
		}
		pthread_mutex_unlock(&c->lock);
	}
	return n;
}

/* Before a request about path's file that the sandbox carries out (link,
 * chown): a copy made or changed here goes up first, or the sandbox would
 * not have the file yet (ENOENT) or act on its old content. 0 or -errno. */
static int upload_first(struct cache *c, const char *path)
{
	pthread_mutex_lock(&c->lock);
	struct cnode *n = hold_copy(c, path, true);
	pthread_mutex_unlock(&c->lock);
	if (!n)
		return 0;
	int rc = omni__cache_node_flush(c, n);
	pthread_mutex_lock(&c->lock);
	omni__cache_node_put_locked(c, n);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int omni__cache_link(struct omni_backend *b, const char *from, const char *to)
{
	struct cache *c = omni__cache_of(b);
	int rc = upload_first(c, from);

	if (rc == 0)
		rc = omni_vfs_link(c->inner, from, to);

	pthread_mutex_lock(&c->lock);
	omni__cache_note_changed(c, from);
	omni__cache_note_changed(c, to);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* --- attributes ----------------------------------------------------------- */

/* Update the attributes cached for path (and its open copy) with fn. */
static void update_attr(struct cache *c, const char *path,
                        void (*fn)(struct stat *st, const void *arg),
                        const void *arg)
{
	struct centry *e = omni__cache_table_find(&c->entries, path);
	struct cnode *n = omni__cache_node_find(c, path);

	if (e && !e->negative && e->st.st_mode && !e->loading) {
		fn(&e->st, arg);
		e->expires = omni__now_ms() + omni__cache_ttl_ms(c);
	}
	if (n && !n->loading)
		fn(&n->base, arg);
}

/* The end of a request that changed path's attributes (marked busy when
 * it began): fn on success, else what was known of path is forgotten.
 * Takes c->lock; returns rc. */
static int attr_request_end(struct cache *c, const char *path, int rc,
                            void (*fn)(struct stat *st, const void *arg),
                            const void *arg)
{
	pthread_mutex_lock(&c->lock);
	omni__cache_mark_self(c, path, false);
	if (rc == 0)
		update_attr(c, path, fn, arg);
	else
		omni__cache_note_changed(c, path);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static void set_mode(struct stat *st, const void *arg)
{
	st->st_mode = (st->st_mode & S_IFMT) | (*(const mode_t *)arg & 07777);
	clock_gettime(CLOCK_REALTIME, &st->st_ctim);
}

/* Write-back: a mode or times kept on n go into its spooled record too.
 * Called with the lock, which it releases. */
static int attr_kept(struct cache *c, struct cnode *n)
{
	/* Not kept yet: its close will keep it, attributes and all. */
	if (!n->spool_id) {
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	omni__cache_node_hold(c, n);
	n->spool_stale = true;
	pthread_mutex_unlock(&c->lock);
	int rc = omni__cache_spool_put(c, n);
	pthread_mutex_lock(&c->lock);
	omni__cache_node_put_locked(c, n);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int omni__cache_chmod(struct omni_backend *b, const char *path, mode_t mode)
{
	struct cache *c = omni__cache_of(b);
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	struct cnode *n = omni__cache_node_find(c, path);
	if (n && !n->loading && !n->exists_remote) {
		/* Not uploaded yet: the mode goes with the upload. */
		n->create_mode = mode & 07777;
		update_attr(c, path, set_mode, &mode);
		if (c->opts.writeback) {
			n->set_mode = mode & 07777;
			return attr_kept(c, n);
		}
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	if (n && !n->loading && n->dirty && c->opts.writeback) {
		/* Write-back: set after the upload, with others (meta.c). */
		n->set_mode = mode & 07777;
		update_attr(c, path, set_mode, &mode);
		return attr_kept(c, n);
	}
	omni__cache_mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	rc = omni_vfs_chmod(c->inner, path, mode);
	return attr_request_end(c, path, rc, set_mode, &mode);
}

int omni__cache_chown(struct omni_backend *b, const char *path, uid_t uid,
                      gid_t gid)
{
	struct cache *c = omni__cache_of(b);
	struct stat st;

	/* Giving a file to its owner changes nothing (cp -p does it). */
	pthread_mutex_lock(&c->lock);
	int rc = omni__cache_stat_locked(c, path, &st);
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		return rc;
	if ((uid == (uid_t)-1 || uid == st.st_uid) &&
	    (gid == (gid_t)-1 || gid == st.st_gid))
		return 0;
	if ((rc = upload_first(c, path)) < 0)
		return rc;
	rc = omni_vfs_chown(c->inner, path, uid, gid);
	pthread_mutex_lock(&c->lock);
	omni__cache_note_changed(c, path);
	pthread_mutex_unlock(&c->lock);
	return rc;
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

/* Write-back: the times of held dirty n are set on its copy now and in
 * the sandbox after its upload (meta.c). Called with the lock, which it
 * releases. */
static int times_later(struct cache *c, struct cnode *n, const char *path,
                       const struct timespec ts[2])
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	for (int i = 0; i < 2; i++) {
		if (ts[i].tv_nsec == UTIME_OMIT && n->set_times)
			continue;
		n->times[i] = ts[i].tv_nsec == UTIME_NOW ? now : ts[i];
	}
	n->set_times = true;
	update_attr(c, path, set_times, ts);
	bool kept = n->spool_stale = n->spool_id != 0;
	pthread_mutex_unlock(&c->lock);
	/* The copy's own times are what fstat and stat show meanwhile. */
	futimens(n->fd, ts);
	int rc = kept ? omni__cache_spool_put(c, n) : 0;
	pthread_mutex_lock(&c->lock);
	omni__cache_node_put_locked(c, n);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int omni__cache_utimens(struct omni_backend *b, const char *path,
                        const struct timespec ts[2])
{
	struct cache *c = omni__cache_of(b);
	int rc = 0;

	pthread_mutex_lock(&c->lock);
	struct cnode *n = hold_copy(c, path, true);
	if (n && c->opts.writeback)
		return times_later(c, n, path, ts);
	omni__cache_mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	/* An upload later would set the time to its own: upload first. */
	if (n)
		rc = omni__cache_node_flush(c, n);
	if (rc == 0)
		rc = omni_vfs_utimens(c->inner, path, ts);
	pthread_mutex_lock(&c->lock);
	if (n)
		omni__cache_node_put_locked(c, n);
	omni__cache_mark_self(c, path, false);
	if (rc == 0) {
		update_attr(c, path, set_times, ts);
		n = omni__cache_node_find(c, path);
		if (n && !n->loading && !n->dirty) {
			n->rmtime = n->base.st_mtim;
			n->rmtime_approx = false;
		}
	} else {
		omni__cache_note_changed(c, path);
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

int omni__cache_truncate(struct omni_backend *b, const char *path, off_t size)
{
	struct cache *c = omni__cache_of(b);
	struct stat st;
	int rc;

	pthread_mutex_lock(&c->lock);
	rc = omni__cache_stat_locked(c, path, &st);
	if (rc == 0 && S_ISDIR(st.st_mode))
		rc = omni_error_set(-EISDIR, "%s: is a directory", path);
	struct cnode *n = rc == 0 ? hold_copy(c, path, false) : NULL;
	if (n)
		omni__cache_mark_dirty_locked(n);
	if (rc == 0)
		omni__cache_mark_self(c, path, true);
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		return rc;
	if (n) {
		/* The copy is here: cut it and upload it. */
		if (ftruncate(n->fd, size) < 0)
			rc = omni_error_set_errno(-errno, "cache: truncate");
		else
			rc = omni__cache_node_flush(c, n);
		pthread_mutex_lock(&c->lock);
		omni__cache_node_put_locked(c, n);
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
	return attr_request_end(c, path, rc, set_size, &size);
}
