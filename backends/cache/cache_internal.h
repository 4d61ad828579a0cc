/*
 * backends/cache/cache_internal.h - what the files of the cache share.
 *
 * The cache (cache.h) is one object, struct cache, split by concern:
 *
 *	cache.c     the ops table, wrap, start, shutdown, destroy, stats
 *	table.c     path helpers, the hash tables, content nodes' life and LRU
 *	attr.c      attribute entries, listings, stat and readdir
 *	file.c      open files: local copies, download, read, write, release
 *	upload.c    uploads of dirty copies, flush_all, the background uploader
 *	spool.c     write-back: pending uploads kept on disk, and recovered
 *	meta.c      modes and times waiting for uploads, one command a batch
 *	prefetch.c  fetching a directory's small files ahead
 *	names.c     mkdir, rmdir, unlink, rename, symlinks, chmod, utimens...
 *	events.c    marks of our own changes, invalidation, change events
 *
 * Locking (for every file). c->lock guards both tables, every node's
 * fields but its content, the clean-copy LRU, the marks, the prefetch
 * queue and the uploader's state; c->cond wakes threads waiting for a
 * ListDir or a download in flight. No request and no call into the
 * listener is made with c->lock held. A node's flush_lock keeps its
 * uploads in order with renames and unlinks of it. Nodes are reference
 * counted (open handles and short pins); a node leaves the table when
 * unlinked or invalidated and is freed at its last reference.
 * listener_lock is held around calls into the listener, so removing it
 * waits for a call in progress. Functions named *_locked, and those whose
 * comment says so, are called with c->lock held.
 *
 * Names: every function shared between these files is omni__cache_*;
 * the operations of the table are omni__cache_<slot>.
 */
#ifndef OMNI_CACHE_INTERNAL_H
#define OMNI_CACHE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "base/clock.h"
#include "base/fnv.h"
#include "cache/cache.h"
#include "omni/sys/backend_impl.h"

/* Reading files one after the other in a directory fetches the rest of
 * its small files ahead, this many at once. */
#define PREFETCH_THREADS  8
#define PREFETCH_QUEUE    1024
#define PREFETCH_MAX_SIZE (1 << 20)
#define PREFETCH_PER_DIR  256
/* A directory streamed in one command (stream.c) brings at most this. */
#define PREFETCH_DIR_BYTES (16u << 20)
/* Directories a reader going from one to its sibling queues at once. */
#define PREFETCH_SIBLINGS 64

/* Uploads at once (flush_all and the background uploader). */
#define UPLOAD_THREADS 16
/* Write-back: a closed file waits this long before its upload, so that a
 * file renamed or removed right away (temporary and lock files) costs no
 * upload. */
#define WRITEBACK_DELAY_MS 200
/* Attribute changes in one command at most; the background applies them
 * once no upload is waiting and none was added for META_IDLE_MS. */
#define META_BATCH   256
#define META_IDLE_MS 1000

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
	/* Listings of its subdirectories, to see a walker (ls -R, find). */
	long long ls_at, listed_ahead_at;
	unsigned int ls_count;
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
	/* The sandbox's ctime after our last upload (stale_echo() in
	 * events.c); 0 before one. */
	struct timespec uploaded_ctime;
	struct cnode *lru_prev, *lru_next;
	bool in_lru;
	pthread_mutex_t flush_lock;
	/* Write-back: modes and times set while dirty, applied after the
	 * upload (meta.c); 0 / false for none. */
	mode_t set_mode;
	bool set_times;
	struct timespec times[2];
	/* Uploaded, its mode and times still in the queue: base has them,
	 * not what the sandbox says meanwhile. */
	bool meta_pending;
	/* The copy kept in the spool (spool.c, under spool_lock): its id (0:
	 * none), the wgen it holds, and whether the name changed since. */
	pthread_mutex_t spool_lock;
	uint64_t spool_id, spool_gen;
	bool spool_stale;
};

/* A mode or times change waiting for its command (meta.c). */
struct pending_meta {
	char *path;
	mode_t mode; /* 0: none */
	bool times;
	struct timespec ts[2];
};

struct table {
	struct link **b;
	size_t nb, n;
};

struct cache {
	struct omni_backend base;
	struct omni_backend *inner;
	struct omni__cache_options opts;
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
	bool maint_running, maint_stop, maint_kick;
	/* Write-back: the spool folder's descriptor (-1: none), the next
	 * record id, and attribute changes waiting (meta.c). */
	int spool_fd;
	uint64_t spool_seq;
	struct pending_meta *meta;
	size_t nmeta, capmeta;
	long long meta_at;
	pthread_mutex_t meta_lock; /* one batch command at a time */
	/* Counters. */
	atomic_ullong n_stat, n_attr_hits, n_neg_hits, n_listings,
	    n_listing_hits, n_stats_remote, n_opens, n_content_hits,
	    n_downloads, n_uploads, n_upload_errors, n_invalidations, n_events,
	    n_events_ignored, n_local_only, n_prefetched, n_prefetch_used,
	    n_spooled, n_recovered, n_meta_batches, n_meta_changes;
	/* Prefetching: a queue of paths and the threads that fetch them. */
	pthread_t prefetchers[PREFETCH_THREADS];
	int nprefetchers;
	char **pq;
	size_t pq_head, pq_len;
	pthread_cond_t pq_cond;
	bool pq_stop;
	/* Streaming (stream.c): off once the inner backend has no
	 * commands; where and when the last directory began streaming. */
	bool no_stream;
	char *stream_parent;
	char *stream_dir;
	long long stream_at;
};

struct cfile {
	struct omni_file base;
	struct cnode *node;
	int flags;
};

/* --- shared helpers ------------------------------------------------------ */

static inline struct cache *omni__cache_of(struct omni_backend *b)
{
	return (struct cache *)b;
}

/* FNV-1a of a path: the tables' hash and the inode numbers (the seed the
 * e2b backend uses too, so both give a path the same inode number). */
static inline uint64_t omni__cache_hash_path(const char *p)
{
	return omni__fnv1a64(OMNI__FNV64_SEED, p);
}

/* Inode numbers: a hash of the path, the same for every answer. */
static inline ino_t omni__cache_ino_of(const char *path)
{
	uint64_t h = omni__cache_hash_path(path) ^ 0x9e3779b97f4a7c15ull;

	return (ino_t)(h < 2 ? h + 2 : h);
}

/* How long what is fetched now is trusted: the watch's TTL while the
 * change watch is connected, else the short one. */
static inline long long omni__cache_ttl_ms(struct cache *c)
{
	double t = atomic_load(&c->watch_ok) ? c->opts.watch_ttl : c->opts.ttl;

	return (long long)(t * 1000);
}

/* --- table.c: paths, tables, content nodes -------------------------------- */

/* The parent of path ("" for a top-level name) and its last component. */
void omni__cache_split(const char *path, char *parent, size_t size,
                       const char **name);
/* dir/name into out; -ENAMETOOLONG when it does not fit. */
int omni__cache_join(char *out, size_t size, const char *dir, const char *name);
/* Is path equal to prefix or below it ("" is above everything)? */
bool omni__cache_under(const char *path, const char *prefix);

int omni__cache_table_init(struct table *t);
void *omni__cache_table_find(struct table *t, const char *path);
void omni__cache_table_add(struct table *t, void *item);
void omni__cache_table_del(struct table *t, void *item);

void omni__cache_lru_remove(struct cache *c, struct cnode *n);
/* Free n; with c, its spooled copy goes too (without: destroy keeps it). */
void omni__cache_node_free(struct cache *c, struct cnode *n);
void omni__cache_node_detach(struct cache *c, struct cnode *n);
struct cnode *omni__cache_node_find(struct cache *c, const char *path);
void omni__cache_node_put_locked(struct cache *c, struct cnode *n);
/* A new node for path (taken over, freed on failure; NULL is allowed),
 * loading, with one reference, in the table; NULL when out of memory.
 * The caller fills it without the lock, then calls
 * omni__cache_node_loaded() with the lock and the filling's result: on
 * failure the node is dropped. Both with the lock held; loaded returns
 * rc. */
/* Take a reference on n (out of the LRU list while held); lock held. */
void omni__cache_node_hold(struct cache *c, struct cnode *n);
struct cnode *omni__cache_node_add_loading(struct cache *c, char *path);
int omni__cache_node_loaded(struct cache *c, struct cnode *n, int rc);

/* --- attr.c: attribute entries, listings, stat, readdir ------------------- */

void omni__cache_listing_clear(struct centry *e);
void omni__cache_entry_free(struct centry *e);
void omni__cache_entry_drop(struct cache *c, struct centry *e);
bool omni__cache_entry_fresh(const struct centry *e);
bool omni__cache_listing_fresh(const struct centry *e);
/* Make dir's listing fresh (one ListDir, or wait for one in flight); the
 * lock is held on entry and return. */
int omni__cache_load_listing_locked(struct cache *c, const char *dir);
void omni__cache_note_exists(struct cache *c, const char *path,
                             const struct stat *st);
void omni__cache_drop_tree(struct cache *c, const char *path);
void omni__cache_note_gone(struct cache *c, const char *path);
void omni__cache_note_changed(struct cache *c, const char *path);
int omni__cache_stat_locked(struct cache *c, const char *path, struct stat *st);
int omni__cache_stat(struct omni_backend *b, const char *path, struct stat *st);
int omni__cache_readdir(struct omni_backend *b, const char *path,
                        omni_dirent_cb cb, void *payload);

/* --- file.c: open files --------------------------------------------------- */

void omni__cache_node_attr(struct cache *c, struct cnode *n, struct stat *st);
int omni__cache_download(struct cache *c, const char *path, int *out);
struct stat omni__cache_new_file_attr(mode_t mode);
void omni__cache_mark_dirty_locked(struct cnode *n);
int omni__cache_open(struct omni_backend *b, const char *path, int flags,
                     mode_t mode, struct omni_file **out);
ssize_t omni__cache_read(struct omni_file *f, void *buf, size_t size,
                         off_t off);
ssize_t omni__cache_write(struct omni_file *f, const void *buf, size_t size,
                          off_t off);
int omni__cache_fstat(struct omni_file *f, struct stat *st);
int omni__cache_ftruncate(struct omni_file *f, off_t size);
int omni__cache_fallocate(struct omni_file *f, int mode, off_t off, off_t len);
int omni__cache_flush(struct omni_file *f);
int omni__cache_fsync(struct omni_file *f, bool datasync);
int omni__cache_file_fd(struct omni_file *f);
int omni__cache_release(struct omni_file *f);

/* --- upload.c: uploads and the background uploader ------------------------ */

int omni__cache_node_flush_locked(struct cache *c, struct cnode *n);
int omni__cache_node_flush(struct cache *c, struct cnode *n);
/* Upload the copy in fd from offset from to its end to path through the
 * inner backend (mode: for a new file, 0 for the backend's default); the
 * new size and time go to *st. */
int omni__cache_upload(struct cache *c, const char *path, int fd, off_t from,
                       mode_t mode, struct stat *st);
/* Copy from's bytes [off, end) to to's current position. */
int omni__cache_copy_fd(int from, off_t off, int to, off_t end);
/* Write-back: n is ready for the background uploader (after delay_ms). */
void omni__cache_queue_upload(struct cache *c, struct cnode *n,
                              long long delay_ms);
/* flush_all, giving up on what is left after until_ms (0: no bound). */
int omni__cache_flush_all_until(struct cache *c, long long until_ms);
void omni__cache_maint_start(struct cache *c);
void omni__cache_maint_stop(struct cache *c);

/* --- spool.c: pending uploads on disk --------------------------------------
 */

/* Open (make) the spool folder; without one, write-back keeps pending
 * copies in memory only. */
int omni__cache_spool_open(struct cache *c);
/* Keep n's content and record durably (written and synced) unless the
 * spool holds this version already. Not with c->lock. */
int omni__cache_spool_put(struct cache *c, struct cnode *n);
/* Forget n's spooled copy when it holds wgen upto or older. */
void omni__cache_spool_drop(struct cache *c, struct cnode *n, uint64_t upto);
/* n is freed: its spooled copy goes (no lock taken). */
void omni__cache_spool_forget(struct cache *c, struct cnode *n);
/* Upload what an earlier session left in the spool (after the
 * session started and loaded its snapshot). */
void omni__cache_spool_recover(struct cache *c);
/* Shutdown: keep every dirty copy in the spool and name them in a
 * message. */
void omni__cache_spool_keep_dirty(struct cache *c);

/* --- meta.c: modes and times batched -------------------------------------- */

void omni__cache_meta_add_locked(struct cache *c, const char *path, mode_t mode,
                                 const struct timespec *ts);
/* Run the waiting changes, one command per META_BATCH. */
int omni__cache_meta_apply(struct cache *c);
/* n was uploaded (wgen clean): its waiting mode and times are queued.
 * Lock held. */
void omni__cache_meta_uploaded_locked(struct cache *c, struct cnode *n);
/* A rename moved from (and below) to to; lock held. */
void omni__cache_meta_rename_locked(struct cache *c, const char *from,
                                    const char *to);
void omni__cache_meta_free(struct cache *c);

/* --- prefetch.c ----------------------------------------------------------- */

void omni__cache_note_download(struct cache *c, const char *path);
/* dir's listing was fetched for a reader; lock held. */
void omni__cache_note_listing(struct cache *c, const char *dir);
void omni__cache_prefetch_stop(struct cache *c);

/* --- stream.c ------------------------------------------------------------- */

/* Fetch dir's small files in one command; -ENOSYS (nothing fetched) when
 * the inner backend runs no commands. Not with the lock. */
int omni__cache_stream_dir(struct cache *c, const char *dir);

/* --- names.c: name and attribute operations ------------------------------- */

int omni__cache_mkdir(struct omni_backend *b, const char *path, mode_t mode);
int omni__cache_rmdir(struct omni_backend *b, const char *path);
int omni__cache_unlink(struct omni_backend *b, const char *path);
int omni__cache_rename(struct omni_backend *b, const char *from, const char *to,
                       unsigned int flags);
int omni__cache_symlink(struct omni_backend *b, const char *target,
                        const char *path);
ssize_t omni__cache_readlink(struct omni_backend *b, const char *path,
                             char *buf, size_t size);
int omni__cache_link(struct omni_backend *b, const char *from, const char *to);
int omni__cache_chmod(struct omni_backend *b, const char *path, mode_t mode);
int omni__cache_chown(struct omni_backend *b, const char *path, uid_t uid,
                      gid_t gid);
int omni__cache_utimens(struct omni_backend *b, const char *path,
                        const struct timespec ts[2]);
int omni__cache_truncate(struct omni_backend *b, const char *path, off_t size);

/* --- events.c: our own changes, invalidation, change events --------------- */

void omni__cache_mark_self(struct cache *c, const char *path, bool busy);
int omni__cache_invalidate(struct omni_backend *b, const char *path);
void omni__cache_on_change(const char *path, const struct stat *st,
                           void *payload);
int omni__cache_watch(struct omni_backend *b, omni_change_cb cb, void *payload);

#endif
