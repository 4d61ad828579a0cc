/*
 * watch.c - the change watch of a host mount (see watch.h).
 *
 * fanotify rather than inotify, for one reason: each event carries the
 * process that caused it, so the daemon's own operations (every write
 * through the mount lands on the backing file too) are told apart exactly
 * and cost no invalidation. The group reports directory file handles and
 * names (FAN_REPORT_DFID_NAME), which unprivileged processes may use since
 * Linux 5.13 (they then see only their own pid, which is all we compare).
 *
 * Each directory is marked once, before the kernel caches a name in it
 * (lookup, create, opendir: the callers in ops.c), with its children's
 * changes included (FAN_EVENT_ON_CHILD). Two maps: the directory inodes
 * already marked, and the hash of each directory's file handle to its
 * inode, by which an event's directory is found. Marks are bounded (half
 * of fs.fanotify.max_user_marks); past the bound, or when a mark fails,
 * the watch is "degraded" and the mount falls back to short timeouts.
 *
 * An event becomes: a name created, removed or moved in directory D -> the
 * entry (D, name) and D's attributes and listing; a file modified -> its
 * pages and attributes (under the writeback cache also its name, so an
 * unused inode is evicted and its size read again, and a grown size is
 * stored in the kernel, which otherwise trusts its own); attributes
 * changed -> its attributes. A queue overflow drops everything
 * (omnifs_invalidate_all). Notifications are sent from the watch thread or
 * from omnifs_watch_drain(), never from a FUSE request.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fnv.h"
#include "omni/log.h"
#include "ops.h"
#include "watch.h"

#ifndef AT_HANDLE_FID
#define AT_HANDLE_FID 0x200
#endif

#define MARK_MASK                                                              \
	(FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO |             \
	 FAN_MODIFY | FAN_ATTRIB | FAN_ONDIR | FAN_EVENT_ON_CHILD)
#define NAME_EVENTS (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO)

/* uint64 -> uint64, open addressing; key 0 is "empty". */
struct map {
	uint64_t *keys, *vals;
	size_t cap, len;
};

struct omnifs_watch {
	struct omnifs *fs;
	struct fuse_session *se;
	int fan;
	int stop[2];
	pthread_t thread;
	pthread_mutex_t lock;      /* the maps */
	pthread_mutex_t read_lock; /* one reader of the queue at a time */
	struct map marked;         /* directory ino -> 1 */
	struct map dirs;           /* handle hash -> directory ino */
	size_t max_marks;
	atomic_bool degraded;
	pid_t self;
};

/* --- the maps --------------------------------------------------------------
 */

static size_t slot_of(const struct map *m, uint64_t key)
{
	size_t i = (size_t)(key * 0x9e3779b97f4a7c15ull) & (m->cap - 1);

	while (m->keys[i] && m->keys[i] != key)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static uint64_t map_get(const struct map *m, uint64_t key)
{
	return m->cap ? m->vals[slot_of(m, key)] : 0;
}

static int map_put(struct map *m, uint64_t key, uint64_t val)
{
	if ((m->len + 1) * 2 > m->cap) {
		struct map g = { .cap = m->cap ? m->cap * 2 : 256 };
		g.keys = calloc(g.cap, sizeof(*g.keys));
		g.vals = calloc(g.cap, sizeof(*g.vals));
		if (!g.keys || !g.vals) {
			free(g.keys);
			free(g.vals);
			return -ENOMEM;
		}
		for (size_t i = 0; i < m->cap; i++)
			if (m->keys[i]) {
				size_t j = slot_of(&g, m->keys[i]);
				g.keys[j] = m->keys[i];
				g.vals[j] = m->vals[i];
				g.len++;
			}
		free(m->keys);
		free(m->vals);
		*m = g;
	}
	size_t i = slot_of(m, key);
	if (!m->keys[i])
		m->len++;
	m->keys[i] = key;
	m->vals[i] = val;
	return 0;
}

static void map_free(struct map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* A file handle's bytes as one number (never 0). */
static uint64_t handle_key(const struct file_handle *fh)
{
	uint64_t h = OMNI__FNV64_SEED ^ (uint32_t)fh->handle_type;

	for (unsigned i = 0; i < fh->handle_bytes; i++)
		h = (h ^ fh->f_handle[i]) * OMNI__FNV64_PRIME;
	return h ? h : 1;
}

/* --- marks -----------------------------------------------------------------
 */

static void degrade(struct omnifs_watch *w, const char *why, int err)
{
	if (!atomic_exchange(&w->degraded, true))
		omni_log(
		    OMNI_LOG_WARN,
		    "change watch incomplete (%s: %s): short timeouts from "
		    "now on",
		    why, strerror(err));
}

/* Mark directory fd (node ino) and remember its handle. */
static void mark(struct omnifs_watch *w, int fd, fuse_ino_t ino)
{
	union {
		struct file_handle fh;
		char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	} u;
	int mnt;

	u.fh.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", &u.fh, &mnt,
	                      AT_EMPTY_PATH | AT_HANDLE_FID) < 0) {
		u.fh.handle_bytes = MAX_HANDLE_SZ;
		if (name_to_handle_at(fd, "", &u.fh, &mnt, AT_EMPTY_PATH) < 0) {
			degrade(w, "file handle", errno);
			return;
		}
	}
	if (fanotify_mark(w->fan, FAN_MARK_ADD | FAN_MARK_ONLYDIR, MARK_MASK,
	                  fd, ".") < 0) {
		degrade(w, "fanotify_mark", errno);
		return;
	}
	pthread_mutex_lock(&w->lock);
	int rc = map_put(&w->dirs, handle_key(&u.fh), ino);
	if (rc == 0)
		rc = map_put(&w->marked, ino, 1);
	pthread_mutex_unlock(&w->lock);
	if (rc < 0)
		degrade(w, "watch table", -rc);
}

void omnifs_watch_dir(struct omnifs *fs, fuse_ino_t ino)
{
	struct omnifs_watch *w = fs->watch;
	uint64_t known;
	size_t count;
	int fd;

	if (!w || atomic_load(&w->degraded))
		return;
	pthread_mutex_lock(&w->lock);
	known = map_get(&w->marked, ino);
	count = w->dirs.len; /* one per directory, whatever its inos */
	pthread_mutex_unlock(&w->lock);
	if (known)
		return;
	if (count >= w->max_marks) {
		degrade(w, "mark limit", ENOSPC);
		return;
	}
	if (omnifs_inode_pin(fs->inodes, ino, &fd) < 0)
		return;
	mark(w, fd, ino);
	omnifs_inode_unpin(fs->inodes, ino);
}

bool omnifs_watch_exact(const struct omnifs *fs)
{
	return fs->watch && !atomic_load(&fs->watch->degraded);
}

/* --- events ----------------------------------------------------------------
 */

/* The node of name in directory dir, or 0. */
static fuse_ino_t child_of(struct omnifs *fs, fuse_ino_t dir, const char *name)
{
	char path[PATH_MAX];
	fuse_ino_t ino, parent;

	if (omnifs_inode_child_path(fs->inodes, dir, name, path, sizeof(path)) <
	    0)
		return 0;
	omnifs_inode_find_path(fs->inodes, path, &ino, &parent);
	return ino;
}

/* Under the writeback cache the kernel trusts its own size of a cached
 * file: drop the name (an unused inode is then evicted and read again)
 * and, for a file someone holds open, store its last byte, which grows
 * the kernel's size to the file's (a shrink cannot be told). */
static void writeback_refresh(struct omnifs_watch *w, fuse_ino_t dir,
                              const char *name, fuse_ino_t ino)
{
	struct fuse_bufvec last = FUSE_BUFVEC_INIT(1);
	struct stat st;
	char byte;
	int dirfd, fd = -1;

	if (omnifs_inode_pin(w->fs->inodes, dir, &dirfd) < 0)
		return;
	fd = openat(dirfd, name,
	            O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	omnifs_inode_unpin(w->fs->inodes, dir);
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		fuse_lowlevel_notify_inval_entry(w->se, dir, name,
		                                 strlen(name));
		if (st.st_size > 0 &&
		    pread(fd, &byte, 1, st.st_size - 1) == 1) {
			last.buf[0].mem = &byte;
			fuse_lowlevel_notify_store(w->se, ino, st.st_size - 1,
			                           &last, 0);
		}
	}
	close(fd);
}

static void apply(struct omnifs_watch *w, fuse_ino_t dir, const char *name,
                  uint64_t mask)
{
	struct omnifs *fs = w->fs;
	fuse_ino_t ino;

	if (!name || !name[0] || strcmp(name, ".") == 0) {
		fuse_lowlevel_notify_inval_inode(w->se, dir, -1, 0);
		return;
	}
	ino = child_of(fs, dir, name);
	if (mask & NAME_EVENTS) {
		/* The name means something else now (also drops a negative
		 * entry); the directory's times, link count and listing. */
		fuse_lowlevel_notify_inval_entry(w->se, dir, name,
		                                 strlen(name));
		fuse_lowlevel_notify_inval_inode(w->se, dir, 0, 0);
		if (ino) /* its link count and ctime */
			fuse_lowlevel_notify_inval_inode(w->se, ino, -1, 0);
	}
	if (ino && (mask & FAN_MODIFY)) {
		if (fs->writeback)
			writeback_refresh(w, dir, name, ino);
		fuse_lowlevel_notify_inval_inode(w->se, ino, 0, 0);
	} else if (ino && (mask & FAN_ATTRIB)) {
		fuse_lowlevel_notify_inval_inode(w->se, ino, -1, 0);
	}
	atomic_fetch_add(&fs->invalidations, 1);
}

/* One event's directory and name, from its info records. */
static void event(struct omnifs_watch *w,
                  const struct fanotify_event_metadata *m)
{
	const char *p = (const char *)m + m->metadata_len;
	const char *end = (const char *)m + m->event_len;

	while (p + sizeof(struct fanotify_event_info_header) <= end) {
		const struct fanotify_event_info_header *h = (const void *)p;
		if (h->len == 0 || p + h->len > end)
			break;
		if (h->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME ||
		    h->info_type == FAN_EVENT_INFO_TYPE_DFID) {
			const struct fanotify_event_info_fid *fid =
			    (const void *)p;
			const struct file_handle *fh =
			    (const void *)fid->handle;
			const char *name =
			    h->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME
			        ? (const char *)fh->f_handle + fh->handle_bytes
			        : NULL;
			pthread_mutex_lock(&w->lock);
			fuse_ino_t dir = map_get(&w->dirs, handle_key(fh));
			pthread_mutex_unlock(&w->lock);
			if (dir)
				apply(w, dir, name, m->mask);
			return;
		}
		p += h->len;
	}
}

/* Read and handle what is queued (the descriptor does not block). */
static void pump(struct omnifs_watch *w)
{
	char buf[64 * 1024];
	bool overflow = false;
	ssize_t n;

	pthread_mutex_lock(&w->read_lock);
	while ((n = read(w->fan, buf, sizeof(buf))) > 0) {
		/* Records are 4-byte aligned (FANOTIFY_EVENT_ALIGN) but the
		 * metadata has 8-byte fields: each one is copied to an
		 * aligned place before it is read. */
		union {
			struct fanotify_event_metadata m;
			char raw[4096];
		} ev;
		size_t off = 0;
		while (off + FAN_EVENT_METADATA_LEN <= (size_t)n) {
			memcpy(&ev.m, buf + off, sizeof(ev.m));
			size_t len = ev.m.event_len;
			if (len < FAN_EVENT_METADATA_LEN ||
			    off + len > (size_t)n ||
			    ev.m.vers != FANOTIFY_METADATA_VERSION)
				break;
			if (len <= sizeof(ev.raw)) {
				memcpy(ev.raw, buf + off, len);
				if (ev.m.mask & FAN_Q_OVERFLOW)
					overflow = true;
				else if (ev.m.pid != w->self)
					event(w, &ev.m);
			}
			off += len;
		}
	}
	pthread_mutex_unlock(&w->read_lock);
	if (overflow) {
		omni_log(OMNI_LOG_DEBUG, "change watch overflow: dropping "
		                         "every cached name");
		omnifs_invalidate_all(w->fs);
	}
}

void omnifs_watch_drain(struct omnifs *fs)
{
	if (fs->watch)
		pump(fs->watch);
}

static void *watch_main(void *arg)
{
	struct omnifs_watch *w = arg;
	struct pollfd pfd[2] = { { .fd = w->fan, .events = POLLIN },
		                 { .fd = w->stop[0], .events = POLLIN } };

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents)
			pump(w);
	}
	return NULL;
}

/* --- life ------------------------------------------------------------------
 */

static size_t mark_bound(void)
{
	FILE *f = fopen("/proc/sys/fs/fanotify/max_user_marks", "re");
	unsigned long v = 0;

	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v >= 2 ? v / 2 : 4096;
}

static void watch_free(struct omnifs_watch *w)
{
	if (w->fan >= 0)
		close(w->fan);
	for (int i = 0; i < 2; i++)
		if (w->stop[i] >= 0)
			close(w->stop[i]);
	pthread_mutex_destroy(&w->lock);
	pthread_mutex_destroy(&w->read_lock);
	map_free(&w->marked);
	map_free(&w->dirs);
	free(w);
}

int omnifs_watch_start(struct omnifs *fs)
{
	struct omnifs_watch *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return -ENOMEM;
	w->fs = fs;
	w->se = fs->se;
	w->self = getpid();
	w->max_marks = mark_bound();
	w->stop[0] = w->stop[1] = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_mutex_init(&w->read_lock, NULL);
	w->fan = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME |
	                           FAN_CLOEXEC | FAN_NONBLOCK,
	                       O_RDONLY | O_CLOEXEC);
	if (w->fan < 0 || pipe2(w->stop, O_CLOEXEC) < 0) {
		rc = -errno;
		watch_free(w);
		return rc;
	}
	fs->watch = w;
	omnifs_watch_dir(fs, FUSE_ROOT_ID);
	if (atomic_load(&w->degraded) ||
	    (rc = -pthread_create(&w->thread, NULL, watch_main, w)) < 0) {
		fs->watch = NULL;
		watch_free(w);
		return -EOPNOTSUPP;
	}
	return 0;
}

void omnifs_watch_stop(struct omnifs *fs)
{
	struct omnifs_watch *w = fs->watch;
	ssize_t n;

	if (!w)
		return;
	n = write(w->stop[1], "x", 1);
	(void)n;
	pthread_join(w->thread, NULL);
	fs->watch = NULL;
	watch_free(w);
}
