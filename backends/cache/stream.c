/*
 * backends/cache/stream.c - a directory's small files in one stream.
 *
 * At cloud latency a reader going through a tree (cat of every file,
 * grep -r) pays a round trip per file, even fetched ahead eight at once.
 * A remote backend with commands (the inner backend's exec) can send a
 * whole directory in one: prefetch.c queues the directory, and
 * omni__cache_stream_dir() runs
 *
 *	tar -C DIR -cf - -- NAME...
 *
 * in the sandbox for the small regular files of its fresh listing that
 * have no copy (at most PREFETCH_PER_DIR files, PREFETCH_DIR_BYTES bytes),
 * and reads the archive as it comes (ustar headers, GNU long names),
 * each file into a local copy, as a download would. Every such file has a
 * loading node from the start, so an open of it waits for the stream
 * rather than download it again; a file the archive does not bring (gone
 * meanwhile, a name tar wrote in a form not read here) is dropped, and an
 * open fetches it as usual.
 *
 * Locking: nodes are made and finished under c->lock; the command and
 * the writes into the copies run without it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/tempfile.h"
#include "cache/cache_internal.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/vfs.h"

/* One file of the stream: its node (loading, held) and listed attrs. */
struct sfile {
	const char *name; /* in node's path */
	struct cnode *n;
	struct stat st;
	int fd;
	bool done;
};

struct stream {
	struct cache *c;
	struct sfile *files;
	size_t count;
	/* The archive reader. */
	char hdr[512];
	size_t hlen;
	long long left, pad; /* bytes of the entry's data, of padding */
	enum { DATA_SKIP, DATA_FILE, DATA_NAME } kind;
	struct sfile *cur;
	char longname[PATH_MAX];
	size_t lnlen;
	bool have_longname, ended;
	uint64_t gen;
};

static long long octal(const char *p, size_t n)
{
	long long v = 0;

	if ((unsigned char)p[0] & 0x80) { /* base-256 */
		for (size_t i = 1; i < n; i++)
			v = (v << 8) | (unsigned char)p[i];
		return v;
	}
	for (size_t i = 0; i < n && p[i]; i++)
		if (p[i] >= '0' && p[i] <= '7')
			v = v * 8 + (p[i] - '0');
	return v;
}

static struct sfile *find_file(struct stream *s, const char *name)
{
	if (strncmp(name, "./", 2) == 0)
		name += 2;
	for (size_t i = 0; i < s->count; i++)
		if (!s->files[i].done && s->files[i].fd < 0 &&
		    strcmp(s->files[i].name, name) == 0)
			return &s->files[i];
	return NULL;
}

/* A full header in s->hdr: what its data is for. */
static void on_header(struct stream *s)
{
	char name[PATH_MAX];
	bool zero = true;

	for (size_t i = 0; i < sizeof(s->hdr) && zero; i++)
		zero = s->hdr[i] == 0;
	if (zero) {
		s->ended = true;
		return;
	}
	long long size = octal(s->hdr + 124, 12);
	char type = s->hdr[156];
	s->left = size;
	s->pad = (512 - size % 512) % 512;
	s->kind = DATA_SKIP;
	s->cur = NULL;
	if (type == 'L') {
		s->kind = DATA_NAME;
		s->lnlen = 0;
		return;
	}
	if (s->have_longname) {
		memcpy(name, s->longname, sizeof(name));
		s->have_longname = false;
	} else if (memcmp(s->hdr + 257, "ustar", 5) == 0 && s->hdr[345]) {
		snprintf(name, sizeof(name), "%.155s/%.100s", s->hdr + 345,
		         s->hdr);
	} else {
		snprintf(name, sizeof(name), "%.100s", s->hdr);
	}
	if (type != '0' && type != '\0')
		return;
	s->cur = find_file(s, name);
	if (!s->cur)
		return;
	s->cur->fd = omni__temp_fd("omnifs-cache");
	if (s->cur->fd >= 0)
		s->kind = DATA_FILE;
	else
		s->cur = NULL;
}

/* The end of an entry's data. */
static void on_data_end(struct stream *s)
{
	if (s->kind == DATA_NAME) {
		s->longname[s->lnlen < sizeof(s->longname) ? s->lnlen : 0] =
		    '\0';
		s->have_longname = true;
	} else if (s->kind == DATA_FILE && s->cur) {
		s->cur->done = true;
	}
}

/* Bytes of entry data (len > 0, at most s->left). */
static void on_data(struct stream *s, const char *p, size_t len)
{
	if (s->kind == DATA_NAME) {
		size_t room = sizeof(s->longname) - 1 - s->lnlen;
		size_t n = len < room ? len : room;
		memcpy(s->longname + s->lnlen, p, n);
		s->lnlen += n;
	} else if (s->kind == DATA_FILE && s->cur) {
		off_t at = (off_t)(octal(s->hdr + 124, 12) - s->left);
		if (pwrite(s->cur->fd, p, len, at) != (ssize_t)len) {
			close(s->cur->fd);
			s->cur->fd = -1;
			s->cur = NULL;
		}
	}
}

static int on_output(int stream, const void *data, size_t len, void *payload)
{
	struct stream *s = payload;
	const char *p = data;

	if (stream != OMNI_EXEC_STDOUT)
		return 0;
	while (len > 0 && !s->ended) {
		if (s->left == 0 && s->pad == 0) {
			size_t n = sizeof(s->hdr) - s->hlen;
			if (n > len)
				n = len;
			memcpy(s->hdr + s->hlen, p, n);
			s->hlen += n;
			p += n;
			len -= n;
			if (s->hlen == sizeof(s->hdr)) {
				s->hlen = 0;
				on_header(s);
				if (s->left == 0)
					on_data_end(s);
			}
			continue;
		}
		if (s->left > 0) {
			size_t n =
			    (long long)len < s->left ? len : (size_t)s->left;
			on_data(s, p, n);
			s->left -= (long long)n;
			p += n;
			len -= n;
			if (s->left == 0)
				on_data_end(s);
			continue;
		}
		size_t n = (long long)len < s->pad ? len : (size_t)s->pad;
		s->pad -= (long long)n;
		p += n;
		len -= n;
	}
	return 0;
}

/* Loading nodes for the small files of dir's fresh listing that have no
 * copy. The lock is held. */
static size_t pick_files(struct cache *c, const char *dir, struct sfile *out,
                         size_t max)
{
	struct centry *d = omni__cache_table_find(&c->entries, dir);
	char child[PATH_MAX];
	unsigned long long bytes = 0;
	size_t count = 0;

	if (!omni__cache_listing_fresh(d) || d->loading)
		return 0;
	for (size_t i = 0; i < d->nnames && count < max; i++) {
		if (omni__cache_join(child, sizeof(child), dir, d->names[i]) <
		    0)
			continue;
		struct centry *e = omni__cache_table_find(&c->entries, child);
		if (!e || e->negative || !S_ISREG(e->st.st_mode) ||
		    e->st.st_size > PREFETCH_MAX_SIZE ||
		    bytes + (unsigned long long)e->st.st_size >
		        PREFETCH_DIR_BYTES ||
		    omni__cache_node_find(c, child))
			continue;
		struct stat st = e->st;
		struct cnode *n =
		    omni__cache_node_add_loading(c, strdup(child));
		if (!n)
			break;
		bytes += (unsigned long long)st.st_size;
		const char *slash = strrchr(n->l.path, '/');
		out[count++] = (struct sfile){
			.name = slash ? slash + 1 : n->l.path,
			.n = n,
			.st = st,
			.fd = -1,
		};
	}
	return count;
}

/* The command's argv: tar -C DIR -cf - -- NAME... */
static const char **tar_argv(const char *dir, const struct sfile *f,
                             size_t count)
{
	const char **argv = calloc(count + 7, sizeof(*argv));
	size_t a = 0;

	if (!argv)
		return NULL;
	argv[a++] = "tar";
	argv[a++] = "-C";
	argv[a++] = dir[0] ? dir : ".";
	argv[a++] = "-cf";
	argv[a++] = "-";
	argv[a++] = "--";
	for (size_t i = 0; i < count; i++)
		argv[a++] = f[i].name;
	return argv;
}

/* The nodes made by pick_files: filled, or dropped. */
static void finish(struct stream *s)
{
	struct cache *c = s->c;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < s->count; i++) {
		struct sfile *f = &s->files[i];
		struct cnode *n = f->n;
		if (!f->done && f->fd >= 0) {
			close(f->fd);
			f->fd = -1;
		}
		n->fd = f->fd;
		if (omni__cache_node_loaded(c, n, f->done ? 0 : -ENOENT) < 0)
			continue;
		atomic_fetch_add(&c->n_prefetched, 1);
		n->exists_remote = true;
		n->prefetched = true;
		n->base = f->st;
		n->rsize = f->st.st_size;
		n->rmtime = f->st.st_mtim;
		if (s->gen != c->gen) {
			omni__cache_table_del(&c->nodes, n);
			n->in_table = false;
		}
		omni__cache_node_put_locked(c, n);
	}
	pthread_mutex_unlock(&c->lock);
}

int omni__cache_stream_dir(struct cache *c, const char *dir)
{
	struct sfile *files = calloc(PREFETCH_PER_DIR, sizeof(*files));
	struct stream s = { .c = c, .files = files };
	struct omni_exec_status status;
	struct omni_exec *e = NULL;

	if (!files)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	s.count = pick_files(c, dir, files, PREFETCH_PER_DIR);
	s.gen = c->gen;
	pthread_mutex_unlock(&c->lock);
	if (s.count == 0) {
		free(files);
		return 0;
	}
	const char **argv = tar_argv(dir, files, s.count);
	struct omni_exec_request req = { .argv = argv, .timeout_ms = 60000 };
	int rc = argv ? omni_vfs_exec_start(c->inner, &req, &e) : -ENOMEM;
	if (rc == 0) {
		rc = omni_vfs_exec_wait(e, on_output, &s, &status);
		omni_vfs_exec_free(e);
	}
	if (rc < 0)
		omni_log(OMNI_LOG_DEBUG, "cache: streaming %s: %s", dir,
		         omni_error_last());
	omni_error_clear();
	free(argv);
	finish(&s);
	free(files);
	return rc == -ENOSYS || rc == -EOPNOTSUPP ? -ENOSYS : 0;
}
