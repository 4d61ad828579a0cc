/*
 * backends/cache/events.c - coherence: our own changes, invalidation and
 * the backend's change events.
 *
 * Before a command (omni__cache_flush_all, upload.c) every dirty file
 * is uploaded; after it (invalidate "") everything cached but dirty
 * copies is dropped and nothing is fetched until asked. The backend's
 * change events drop the changed path and its parent's listing and are
 * passed on to the FUSE layer (the listener), which drops the kernel's
 * copies. Events that echo our own changes are ignored: a path is marked
 * while a request changing it runs and for SELF_MARK_MS after, and an
 * event in that window is ours when the attributes it carries agree with
 * what we cached (a sandbox process changing the same file in that
 * window with the same size and mode goes unnoticed until the TTL), or
 * when it is older than our last upload of the file (stale_echo). A
 * lost watch drops everything and falls back to the short TTL.
 *
 * Locking: the marks are under c->lock. Events come on the inner
 * backend's thread; the listener is called without c->lock, under
 * listener_lock.
 */
#include <errno.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/vfs.h"

/* --- our own changes ------------------------------------------------------ */

/*
 * Our own changes come back as change events. A path is marked busy
 * while a request changing it runs (every event for it is ours), then
 * recent for SELF_MARK_MS: an event then is ours when the attributes it
 * carries agree with what we cached (a change made in the sandbox in
 * that window shows a different size, mode or type).
 */
enum mark_state { MARK_NONE, MARK_RECENT, MARK_BUSY };

void omni__cache_mark_self(struct cache *c, const char *path, bool busy)
{
	uint64_t h = omni__cache_hash_path(path);
	long long now = omni__now_ms();
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
	uint64_t h = omni__cache_hash_path(path);
	long long now = omni__now_ms();

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

/* --- invalidation --------------------------------------------------------- */

/* Forget everything but dirty copies. The lock is held. */
static void drop_all(struct cache *c)
{
	c->gen++;
	atomic_fetch_add(&c->n_invalidations, 1);
	omni__cache_drop_tree(c, "");
	for (size_t i = 0; i < c->nodes.nb; i++) {
		for (struct cnode *n = (struct cnode *)c->nodes.b[i], *next; n;
		     n = next) {
			next = (struct cnode *)n->l.next;
			if (!n->dirty && !n->loading && n->exists_remote &&
			    !n->meta_pending)
				omni__cache_node_detach(c, n);
		}
	}
}

int omni__cache_invalidate(struct omni_backend *b, const char *path)
{
	struct cache *c = omni__cache_of(b);

	pthread_mutex_lock(&c->lock);
	if (!path[0]) {
		drop_all(c);
	} else {
		omni__cache_note_changed(c, path);
		struct cnode *n = omni__cache_node_find(c, path);
		if (n && !n->dirty && !n->loading && n->exists_remote &&
		    !n->meta_pending)
			omni__cache_node_detach(c, n);
	}
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* --- change events -------------------------------------------------------- */

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

/* An event of our own upload may come after the upload has ended, with
 * the attributes the sandbox read part way through it (a size the upload
 * had reached then). Its change time is then no later than the one the
 * upload left. A change time cannot be set by a process in the sandbox
 * (touch sets the modification time only), so a later change backdated
 * with touch -d or cp -p is still seen. Where the backend knows no change
 * time (e2b: it is the modification time) that guard is the modification
 * time. A change made in the sandbox within the same clock tick after our
 * upload is taken for ours, and seen when the attributes expire or after
 * the next command. The lock is held. */
static bool stale_echo(struct cache *c, const char *path, const struct stat *st)
{
	struct cnode *n = omni__cache_node_find(c, path);

	if (!S_ISREG(st->st_mode) || !n || n->loading || !n->exists_remote)
		return false;
	const struct timespec *up = &n->uploaded_ctime;
	return st->st_ctim.tv_sec < up->tv_sec ||
	       (st->st_ctim.tv_sec == up->tv_sec &&
	        st->st_ctim.tv_nsec <= up->tv_nsec);
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
	struct centry *e = omni__cache_table_find(&c->entries, path);
	if (!e)
		return true; /* nothing cached to correct (dropped since) */
	if (e->negative || !e->st.st_mode || !same_as_cached(&e->st, st))
		return stale_echo(c, path, st);
	if (S_ISREG(st->st_mode)) {
		/* Events of one change may come in any order: keep the
		 * latest time, and the copy's version in step with it. */
		struct cnode *n = omni__cache_node_find(c, path);
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
void omni__cache_on_change(const char *path, const struct stat *st,
                           void *payload)
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
		omni__cache_note_changed(c, path);
		struct cnode *n = omni__cache_node_find(c, path);
		if (n && !n->loading && !n->dirty && n->exists_remote &&
		    !n->meta_pending)
			omni__cache_node_detach(c, n);
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

int omni__cache_watch(struct omni_backend *b, omni_change_cb cb, void *payload)
{
	struct cache *c = omni__cache_of(b);

	pthread_mutex_lock(&c->listener_lock);
	c->listener = cb;
	c->listener_payload = payload;
	pthread_mutex_unlock(&c->listener_lock);
	return c->watching
	           ? 0
	           : omni_error_set(-ENOSYS, "%s backend: no change watch",
	                            omni_backend_name(c->inner));
}
