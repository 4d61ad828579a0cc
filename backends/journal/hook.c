/*
 * backends/journal/hook.c - from vfs calls to journal records (see
 * hook.h).
 *
 * Design. The wrappers of backend.c call these only when the backend has
 * a journal, after the backend's call, with its result; nothing here sets
 * the thread's error message, so the wrapper's caller still reads the
 * backend's. A record costs the calling thread no system call: path calls
 * carry their paths, and node calls a directory descriptor whose path is
 * cached.
 *
 * The path of a descriptor comes from /proc/self/fd/N (a readlink, 3 us)
 * once, then from a cache by descriptor number, the workspace root's own
 * path (read at attach) dropped from the front. An entry holds while
 *  - the number names the same file: node descriptors come only from
 *    omni_vfs_node_root and omni_vfs_node_lookup, which tell the hook
 *    (omni__journal_node_fd) whenever they hand a number out, so one
 *    closed and given to another file is never taken for the old one;
 *  - no rename through the hooks, and no command (which may have renamed
 *    anything), came since: both move a generation on.
 * A cached path is thus never older than the last rename the journal
 * could know of.
 *
 * Locking: a file's write counter has its own mutex (FUSE may write to
 * one handle from several threads); the path cache has the hook's mutex,
 * the generation and the per-slot epochs are atomic; the rest is
 * read-only after attach.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "journal/hook.h"
#include "journal/journal.h"
#include "omni/error.h"
#include "omni/sys/backend_impl.h"

#define PATH_CACHE 1024

struct path_slot {
	int fd;
	unsigned int gen, epoch;
	size_t len;
	char *rel; /* workspace-relative, malloc'd */
};

struct omni__journal_hook {
	struct omni__journal *journal;
	char root[PATH_MAX]; /* the workspace root's host path, or "" */
	size_t root_len;
	pthread_mutex_t lock; /* the cache */
	atomic_uint gen;
	/* Moved on when a descriptor of the slot's numbers is handed out. */
	atomic_uint epoch[PATH_CACHE];
	struct path_slot cache[PATH_CACHE];
};

struct omni__journal_file {
	pthread_mutex_t lock;
	long long bytes, lo, hi;
	char path[];
};

struct omni__journal_exec {
	struct omni__journal *journal;
	struct omni__journal_hook *hook;
	long long start_ms, start_mono;
	bool done;
	char *argv, *cwd;
};

struct omni__journal *omni__journal_of(const struct omni_backend *b)
{
	return b && b->journal ? b->journal->journal : NULL;
}

int omni__journal_attach(struct omni_backend *b, const char *db_path)
{
	struct omni__journal_hook *h = calloc(1, sizeof(*h));
	char link[64];
	int rc, fd;

	if (!h)
		return omni_error_set(-ENOMEM, "journal: out of memory");
	pthread_mutex_init(&h->lock, NULL);
	atomic_init(&h->gen, 1);
	if ((rc = omni__journal_open(&h->journal, db_path)) < 0) {
		pthread_mutex_destroy(&h->lock);
		free(h);
		return rc;
	}
	if ((omni_vfs_caps(b) & OMNI_CAP_NODES) &&
	    (fd = omni_vfs_node_root(b)) >= 0) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, h->root, sizeof(h->root) - 1);
		h->root[n > 0 ? n : 0] = '\0';
		h->root_len = n > 1 ? (size_t)n : 0;
		close(fd);
	}
	b->journal = h;
	return 0;
}

void omni__journal_detach(struct omni_backend *b)
{
	if (!b || !b->journal)
		return;
	omni__journal_close(b->journal->journal);
	for (size_t i = 0; i < PATH_CACHE; i++)
		free(b->journal->cache[i].rel);
	pthread_mutex_destroy(&b->journal->lock);
	free(b->journal);
	b->journal = NULL;
}

/* --- paths ---------------------------------------------------------------- */

/* A path call's path, workspace-relative. */
static const char *rel_path(const struct omni_backend *b, const char *path)
{
	size_t n = b->workdir ? strlen(b->workdir) : 0;

	if (!path)
		return NULL;
	if (n > 1 && strncmp(path, b->workdir, n) == 0 &&
	    (path[n] == '/' || path[n] == '\0'))
		path += n;
	while (*path == '/')
		path++;
	return path;
}

/* The workspace-relative path of fd, by readlink, into host. */
static const char *read_path(const struct omni__journal_hook *h, int fd,
                             char *host, size_t size)
{
	char link[64];
	const char *rel = host;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, host, size - 1)) < 0)
		n = 0;
	host[n] = '\0';
	if (h->root_len && strncmp(host, h->root, h->root_len) == 0 &&
	    (host[h->root_len] == '/' || host[h->root_len] == '\0'))
		rel = host + h->root_len;
	while (*rel == '/')
		rel++;
	return rel;
}

static size_t copy_out(char *out, size_t size, const char *s, size_t len)
{
	if (len >= size)
		len = size - 1; /* a longer path is cut */
	memcpy(out, s, len);
	out[len] = '\0';
	return len;
}

/* The same through the cache, into out; its length. */
static size_t fd_path(struct omni__journal_hook *h, int fd, char *out,
                      size_t size)
{
	size_t i = (unsigned int)fd % PATH_CACHE, len;
	struct path_slot *s = &h->cache[i];
	unsigned int gen = atomic_load(&h->gen);
	unsigned int epoch = atomic_load(&h->epoch[i]);
	char host[PATH_MAX];

	pthread_mutex_lock(&h->lock);
	if (s->rel && s->fd == fd && s->gen == gen && s->epoch == epoch) {
		len = copy_out(out, size, s->rel, s->len);
		pthread_mutex_unlock(&h->lock);
		return len;
	}
	pthread_mutex_unlock(&h->lock);
	const char *rel = read_path(h, fd, host, sizeof(host));
	len = strlen(rel);
	char *copy = strdup(rel);
	pthread_mutex_lock(&h->lock);
	free(s->rel);
	*s = (struct path_slot){ fd, gen, epoch, len, copy };
	pthread_mutex_unlock(&h->lock);
	return copy_out(out, size, rel, len);
}

void omni__journal_node_fd(struct omni_backend *b, int fd)
{
	if (fd >= 0)
		atomic_fetch_add(&b->journal->epoch[fd % PATH_CACHE], 1);
}

/* Paths may have changed: the cache is stale. */
static void paths_moved(struct omni__journal_hook *h)
{
	atomic_fetch_add(&h->gen, 1);
}

/* name in fd as a workspace-relative path into out; NULL when fd < 0. */
static const char *node_path(struct omni__journal_hook *h, int fd,
                             const char *name, char *out, size_t size)
{
	if (fd < 0)
		return NULL;
	size_t len = fd_path(h, fd, out, size);
	if (name && *name) {
		if (len && len + 1 < size)
			out[len++] = '/';
		copy_out(out + len, size - len, name, strlen(name));
	}
	return out;
}

static void record(struct omni_backend *b, const char *op, const char *path,
                   const char *path2, long long size, long long mode,
                   int result)
{
	struct omni__journal_op rec = {
		.op = op,
		.path = path,
		.path2 = path2,
		.size = size,
		.off = -1,
		.len = -1,
		.mode = mode,
		.result = result < 0 ? result : 0,
	};
	omni__journal_record_op(b->journal->journal, &rec);
}

void omni__journal_path_op(struct omni_backend *b, const char *op,
                           const char *path, const char *path2, long long size,
                           long long mode, int result)
{
	if (strcmp(op, "rename") == 0)
		paths_moved(b->journal);
	if (omni__journal_is_quiet())
		return;
	record(b, op, rel_path(b, path),
	       strcmp(op, "symlink") == 0 ? path2 : rel_path(b, path2), size,
	       mode, result);
}

void omni__journal_node_op(struct omni_backend *b, const char *op, int fd,
                           const char *name, int fd2, const char *name2,
                           long long size, long long mode, int result)
{
	char p1[PATH_MAX], p2[PATH_MAX];

	if (omni__journal_is_quiet()) {
		if (strcmp(op, "rename") == 0)
			paths_moved(b->journal);
		return;
	}
	if (strcmp(op, "rename") == 0) {
		/* Resolved before the generation moves on: the directories
		 * themselves did not move. */
		record(b, op, node_path(b->journal, fd, name, p1, sizeof(p1)),
		       node_path(b->journal, fd2, name2, p2, sizeof(p2)), size,
		       mode, result);
		paths_moved(b->journal);
		return;
	}
	record(b, op, node_path(b->journal, fd, name, p1, sizeof(p1)),
	       fd2 >= 0 ? node_path(b->journal, fd2, name2, p2, sizeof(p2))
	                : name2,
	       size, mode, result);
}

/* --- files ---------------------------------------------------------------- */

void omni__journal_opened(struct omni_backend *b, struct omni_file *f,
                          const char *path, int fd, const char *name, int flags,
                          mode_t mode, bool create, int result)
{
	char buf[PATH_MAX];
	const char *p;
	struct omni__journal_file *jf;

	if (f)
		f->journal = NULL;
	if (omni__journal_is_quiet())
		return;
	if (!create && (result < 0 || (flags & O_ACCMODE) == O_RDONLY))
		return;
	p = path ? rel_path(b, path)
	         : node_path(b->journal, fd, name, buf, sizeof(buf));
	if (create)
		record(b, "create", p, NULL, -1, mode & 07777, result);
	if (result < 0 || !f || (flags & O_ACCMODE) == O_RDONLY)
		return;
	if ((flags & O_TRUNC) && !create)
		record(b, "truncate", p, NULL, 0, -1, 0);
	size_t len = strlen(p ? p : "");
	if (!(jf = malloc(sizeof(*jf) + len + 1)))
		return; /* the write goes unrecorded */
	pthread_mutex_init(&jf->lock, NULL);
	jf->bytes = 0;
	jf->lo = -1;
	jf->hi = 0;
	memcpy(jf->path, p ? p : "", len + 1);
	f->journal = jf;
}

void omni__journal_wrote(struct omni_file *f, off_t off, ssize_t n)
{
	struct omni__journal_file *jf = f->journal;

	if (n <= 0)
		return;
	pthread_mutex_lock(&jf->lock);
	jf->bytes += n;
	if (jf->lo < 0 || off < jf->lo)
		jf->lo = off;
	if (off + n > jf->hi)
		jf->hi = off + n;
	pthread_mutex_unlock(&jf->lock);
}

void omni__journal_ftruncated(struct omni_file *f, off_t size, int result)
{
	record(f->backend, "truncate", f->journal->path, NULL, size, -1,
	       result);
}

void omni__journal_releasing(struct omni_file *f)
{
	struct omni__journal_file *jf = f->journal;
	struct omni_backend *b = f->backend;

	f->journal = NULL;
	if (jf->bytes > 0 && b->journal && !omni__journal_is_quiet()) {
		struct omni__journal_op rec = {
			.op = "write",
			.path = jf->path,
			.size = jf->bytes,
			.off = jf->lo,
			.len = jf->hi - jf->lo,
			.mode = -1,
		};
		omni__journal_record_op(b->journal->journal, &rec);
	}
	pthread_mutex_destroy(&jf->lock);
	free(jf);
}

/* --- commands ------------------------------------------------------------- */

static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *argv_json(const struct omni_exec_request *req)
{
	cJSON *a = cJSON_CreateArray();
	char *text;

	if (!a)
		return NULL;
	if (req->argv) {
		for (const char *const *p = req->argv; *p; p++)
			cJSON_AddItemToArray(a, cJSON_CreateString(*p));
	} else {
		cJSON_AddItemToArray(a, cJSON_CreateString("/bin/sh"));
		cJSON_AddItemToArray(a, cJSON_CreateString("-c"));
		cJSON_AddItemToArray(
		    a, cJSON_CreateString(req->shell ? req->shell : ""));
	}
	text = cJSON_PrintUnformatted(a);
	cJSON_Delete(a);
	return text;
}

static void record_exec(struct omni__journal_exec *je,
                        const struct omni__journal_counter *c,
                        const struct omni_exec_status *st, int result)
{
	struct omni__journal_cmd cmd = {
		.time_ms = je->start_ms,
		.argv = je->argv,
		.cwd = je->cwd,
		.exit_code = st ? st->exit_code : -1,
		.signal = st ? st->signal : 0,
		.result = result < 0 ? result : 0,
		.duration_ms = mono_ms() - je->start_mono,
		.stdout_bytes = c ? c->out : 0,
		.stderr_bytes = c ? c->err : 0,
	};
	je->done = true;
	paths_moved(je->hook); /* the command may have renamed anything */
	omni__journal_record_cmd(je->journal, &cmd);
}

void omni__journal_exec_started(struct omni_backend *b,
                                const struct omni_exec_request *req,
                                struct omni_exec *e, int result)
{
	struct omni__journal_exec *je = calloc(1, sizeof(*je));
	struct timespec now;

	if (e)
		e->journal = NULL;
	if (!je)
		return;
	je->journal = b->journal->journal;
	je->hook = b->journal;
	clock_gettime(CLOCK_REALTIME, &now);
	je->start_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	je->start_mono = mono_ms();
	je->argv = argv_json(req);
	je->cwd = strdup(req->cwd ? req->cwd : "");
	if (!e) {
		record_exec(je, NULL, NULL, result);
		free(je->argv);
		free(je->cwd);
		free(je);
		return;
	}
	e->journal = je;
}

int omni__journal_count_output(int stream, const void *data, size_t len,
                               void *payload)
{
	struct omni__journal_counter *c = payload;

	if (stream == OMNI_EXEC_STDERR)
		c->err += (long long)len;
	else
		c->out += (long long)len;
	return c->cb ? c->cb(stream, data, len, c->payload) : 0;
}

void omni__journal_exec_waited(struct omni_exec *e,
                               const struct omni__journal_counter *c,
                               const struct omni_exec_status *status,
                               int result)
{
	if (!e->journal->done)
		record_exec(e->journal, c, result < 0 ? NULL : status, result);
}

void omni__journal_exec_freeing(struct omni_exec *e)
{
	struct omni__journal_exec *je = e->journal;

	e->journal = NULL;
	if (!je->done)
		record_exec(je, NULL, NULL, -ECANCELED);
	free(je->argv);
	free(je->cwd);
	free(je);
}
