/*
 * backends/cache/meta.c - write-back: modes and times in one command.
 *
 * A copy (cp -a, tar x, rsync -a) sets the mode and times of each file
 * it writes. The remote backend has a command per change for them (e2b:
 * chmod, touch), and an upload resets the time, so in write-back mode
 * chmod and utimens of a file whose copy is dirty are kept on the node
 * (set_mode, set_times; names.c) and the local copy; when its upload
 * lands they join a queue (c->meta), and the queue goes as one command
 * per META_BATCH changes, argv form (no quoting):
 *
 *	sh -c SCRIPT sh  m MODE PATH  t ATIME MTIME PATH ...
 *
 * (ATIME "-" leaves the access time), or a chmod and utimens per change
 * when the inner backend runs no commands. It runs before every command and
 * on omni-exec --sync, fsync and shutdown (flush_all), and in the
 * background once uploads are done. A path removed meanwhile is skipped;
 * a batch that cannot run (an outage) is queued again.
 *
 * A path waiting in the queue is marked as changed by us (events.c), so
 * the upload's own change event, which still has the old mode, does not
 * make the cache forget the mode it was given.
 *
 * Locking: the queue is under c->lock; meta_lock lets one batch run at a
 * time, so changes to a path keep their order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_internal.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/vfs.h"

static const char script[] =
    "r=0\n"
    "while [ $# -gt 0 ]; do\n"
    "  case $1 in\n"
    "  m) if [ -e \"$3\" ]; then chmod \"$2\" -- \"$3\" || r=1; fi\n"
    "     shift 3 ;;\n"
    "  t) if [ -e \"$4\" ] || [ -L \"$4\" ]; then\n"
    "       if [ \"$2\" != - ]; then\n"
    "         touch -h -c -a -d \"$2\" -- \"$4\" || r=1\n"
    "       fi\n"
    "       if [ \"$3\" != - ]; then\n"
    "         touch -h -c -m -d \"$3\" -- \"$4\" || r=1\n"
    "       fi\n"
    "     fi\n"
    "     shift 4 ;;\n"
    "  *) exit 2 ;;\n"
    "  esac\n"
    "done\n"
    "exit $r\n";

void omni__cache_meta_add_locked(struct cache *c, const char *path, mode_t mode,
                                 const struct timespec *ts)
{
	struct pending_meta *m = NULL;
	struct timespec now;

	for (size_t i = c->nmeta; i-- > 0;)
		if (strcmp(c->meta[i].path, path) == 0) {
			m = &c->meta[i];
			break;
		}
	if (!m) {
		if (c->nmeta == c->capmeta) {
			size_t cap = c->capmeta ? c->capmeta * 2 : 64;
			struct pending_meta *a =
			    realloc(c->meta, cap * sizeof(*a));
			if (!a)
				return;
			c->meta = a;
			c->capmeta = cap;
		}
		char *p = strdup(path);
		if (!p)
			return;
		m = &c->meta[c->nmeta++];
		*m = (struct pending_meta){ .path = p };
		/* Until it is set, the sandbox's events for the path (the
		 * upload's, with the old mode) are our own. */
		omni__cache_mark_self(c, p, true);
	}
	if (mode & 07777)
		m->mode = mode & 07777;
	if (ts) {
		clock_gettime(CLOCK_REALTIME, &now);
		for (int i = 0; i < 2; i++) {
			if (ts[i].tv_nsec == UTIME_OMIT && m->times)
				continue;
			m->ts[i] = ts[i].tv_nsec == UTIME_NOW ? now : ts[i];
		}
		m->times = true;
	}
	atomic_fetch_add(&c->n_meta_changes, 1);
	c->meta_at = omni__now_ms();
}

void omni__cache_meta_uploaded_locked(struct cache *c, struct cnode *n)
{
	if (!n->set_mode && !n->set_times)
		return;
	omni__cache_meta_add_locked(c, n->l.path, n->set_mode,
	                            n->set_times ? n->times : NULL);
	if (n->set_mode)
		n->base.st_mode = (n->base.st_mode & S_IFMT) | n->set_mode;
	if (n->set_times) {
		/* The upload's time is replaced by the one asked for. */
		if (n->times[0].tv_nsec != UTIME_OMIT)
			n->base.st_atim = n->times[0];
		n->base.st_mtim = n->times[1];
		n->rmtime = n->times[1];
		n->rmtime_approx = false;
	}
	n->set_mode = 0;
	n->set_times = false;
	n->meta_pending = true;
}

struct err_buf {
	char text[1024];
	size_t len;
};

static int on_output(int stream, const void *data, size_t len, void *payload)
{
	struct err_buf *e = payload;

	if (stream == OMNI_EXEC_STDERR && e->len + 1 < sizeof(e->text)) {
		size_t n = sizeof(e->text) - 1 - e->len;
		if (n > len)
			n = len;
		memcpy(e->text + e->len, data, n);
		e->len += n;
		e->text[e->len] = '\0';
	}
	return 0;
}

/* The argv of one batch (its strings in strs, freed by the caller). */
static const char **batch_argv(const struct pending_meta *m, size_t count,
                               char (*strs)[3][40])
{
	const char **argv = calloc(4 + count * 8 + 1, sizeof(*argv));
	size_t a = 0;

	if (!argv)
		return NULL;
	argv[a++] = "sh";
	argv[a++] = "-c";
	argv[a++] = script;
	argv[a++] = "sh";
	for (size_t i = 0; i < count; i++) {
		if (m[i].mode) {
			snprintf(strs[i][0], sizeof(strs[i][0]), "%04o",
			         (unsigned int)m[i].mode);
			argv[a++] = "m";
			argv[a++] = strs[i][0];
			argv[a++] = m[i].path;
		}
		if (m[i].times) {
			for (int t = 0; t < 2; t++)
				if (m[i].ts[t].tv_nsec == UTIME_OMIT)
					snprintf(strs[i][1 + t],
					         sizeof(strs[i][1 + t]), "-");
				else
					snprintf(strs[i][1 + t],
					         sizeof(strs[i][1 + t]),
					         "@%lld.%09ld",
					         (long long)m[i].ts[t].tv_sec,
					         m[i].ts[t].tv_nsec);
			argv[a++] = "t";
			argv[a++] = strs[i][1];
			argv[a++] = strs[i][2];
			argv[a++] = m[i].path;
		}
	}
	return argv;
}

/* Without commands (the inner backend has none): a call per change. */
static int run_each(struct cache *c, const struct pending_meta *m, size_t count)
{
	int first = 0;

	omni_error_clear();
	for (size_t i = 0; i < count; i++) {
		int rc = m[i].mode
		             ? omni_vfs_chmod(c->inner, m[i].path, m[i].mode)
		             : 0;
		if (rc == 0 && m[i].times)
			rc = omni_vfs_utimens(c->inner, m[i].path, m[i].ts);
		if (rc < 0 && rc != -ENOENT && first == 0)
			first = rc;
	}
	if (first < 0)
		omni_log(OMNI_LOG_WARN, "cache: %s", omni_error_last());
	omni_error_clear();
	return 0;
}

/* Run one batch; 0, or -errno when it could not run. */
static int run_batch(struct cache *c, const struct pending_meta *m,
                     size_t count)
{
	char(*strs)[3][40] = calloc(count, sizeof(*strs));
	const char **argv = strs ? batch_argv(m, count, strs) : NULL;
	struct omni_exec_request req = { .argv = argv, .timeout_ms = 60000 };
	struct omni_exec_status status = { 0 };
	struct err_buf err = { .len = 0 };
	struct omni_exec *e = NULL;
	int rc;

	if (!argv) {
		free(strs);
		return omni_error_set(-ENOMEM, "cache: out of memory");
	}
	rc = omni_vfs_exec_start(c->inner, &req, &e);
	if (rc == -ENOSYS) {
		free(argv);
		free(strs);
		return run_each(c, m, count);
	}
	if (rc == 0) {
		rc = omni_vfs_exec_wait(e, on_output, &err, &status);
		omni_vfs_exec_free(e);
	}
	free(argv);
	free(strs);
	if (rc == 0 && status.exit_code != 0)
		omni_log(OMNI_LOG_WARN,
		         "cache: setting modes and times of %zu file(s) "
		         "ended with %d: %s",
		         count, status.exit_code, err.text);
	return rc;
}

int omni__cache_meta_apply(struct cache *c)
{
	int rc = 0;

	pthread_mutex_lock(&c->meta_lock);
	for (;;) {
		pthread_mutex_lock(&c->lock);
		size_t count = c->nmeta < META_BATCH ? c->nmeta : META_BATCH;
		struct pending_meta *m =
		    count ? malloc(count * sizeof(*m)) : NULL;
		if (m) {
			memcpy(m, c->meta, count * sizeof(*m));
			memmove(c->meta, c->meta + count,
			        (c->nmeta - count) * sizeof(*m));
			c->nmeta -= count;
		}
		pthread_mutex_unlock(&c->lock);
		if (!m) {
			if (count)
				rc = omni_error_set(-ENOMEM,
				                    "cache: out of memory");
			break;
		}
		rc = run_batch(c, m, count);
		pthread_mutex_lock(&c->lock);
		for (size_t i = 0; i < count; i++) {
			struct cnode *n = omni__cache_node_find(c, m[i].path);
			if (n && rc == 0)
				n->meta_pending = false;
			omni__cache_mark_self(c, m[i].path, false);
			if (rc < 0)
				omni__cache_meta_add_locked(
				    c, m[i].path, m[i].mode,
				    m[i].times ? m[i].ts : NULL);
			free(m[i].path);
		}
		if (rc == 0)
			atomic_fetch_add(&c->n_meta_batches, 1);
		pthread_mutex_unlock(&c->lock);
		free(m);
		if (rc < 0) {
			rc = omni_error_set(rc,
			                    "setting modes and times of %zu "
			                    "file(s): %s",
			                    count, omni_error_last());
			break;
		}
	}
	pthread_mutex_unlock(&c->meta_lock);
	return rc;
}

/* A rename moved what was at from (and below) to to: so do the waiting
 * changes. The lock is held. */
void omni__cache_meta_rename_locked(struct cache *c, const char *from,
                                    const char *to)
{
	size_t fl = strlen(from);

	for (size_t i = 0; i < c->nmeta; i++) {
		const char *p = c->meta[i].path;
		if (!omni__cache_under(p, from))
			continue;
		size_t len = strlen(to) + strlen(p + fl) + 1;
		char *np = malloc(len);
		if (!np)
			continue;
		snprintf(np, len, "%s%s", to, p + fl);
		omni__cache_mark_self(c, p, false);
		omni__cache_mark_self(c, np, true);
		free(c->meta[i].path);
		c->meta[i].path = np;
	}
}

void omni__cache_meta_free(struct cache *c)
{
	for (size_t i = 0; i < c->nmeta; i++)
		free(c->meta[i].path);
	free(c->meta);
	c->meta = NULL;
	c->nmeta = c->capmeta = 0;
}
