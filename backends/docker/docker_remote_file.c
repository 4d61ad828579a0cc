/*
 * backends/docker/docker_remote_file.c - open files and the change watch of
 * the docker backend in agent mode (docker_remote.h), over the file
 * sessions of docker_remote.c.
 *
 * Files. The protocol has no handles: a handle here is a path and its
 * open flags. OPEN does what open(2) does to the file (create, truncate,
 * O_EXCL) and gives its attributes; each READ and WRITE names the path
 * and an offset, and a WRITE may create and truncate first. So an open
 * for reading sends nothing, and one that replaces the whole content
 * (O_WRONLY | O_CREAT | O_TRUNC) is done by its first WRITE. So a handle
 * survives a lost session (the next request goes on a new one), and writes at
 * an offset may be sent again safely. The price: a file renamed while open is
 * followed by name, not by inode (the cache in front never does that to its own
 * handles).
 *
 * Round trips. Reads fetch ahead into a window of the handle: 128 KiB,
 * doubling up to 8 MiB while reads follow each other (the cache reads a
 * file 64 KiB at a time as it downloads it), the whole READ streamed in
 * DATA frames. Contiguous writes gather in a buffer of one frame
 * (OMNI_FILES_MAX_DATA) and go as one WRITE when it is full or anything
 * else happens on the handle (read, fstat, ftruncate, flush, fsync,
 * release); a failure is reported there, and the data that failed is
 * dropped, as NFS does. Writes with O_APPEND go at once (the agent
 * appends). A handle's lock serialises its requests.
 *
 * Watch. A thread holds a session of its own (not from the pool, and with
 * no receive timeout: events may be rare), sends WATCH and passes events
 * to the listener until it is stopped; see docker_remote.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "docker/docker_remote.h"
#include "omni/error.h"
#include "omni/ipc_files.h"
#include "omni/log.h"

#define RA_MIN (128u << 10)
#define RA_MAX (8u << 20)

struct remote_file {
	struct omni_file base;
	struct omni__docker_remote *r;
	pthread_mutex_t lock;
	char path[PATH_MAX];
	int flags;
	bool chmod_after; /* give it mode at release (created read-only) */
	mode_t mode;
	/* Read ahead: [ra_off, ra_off + ra_len) of the file; ra_eof when
	 * the file ended there. */
	unsigned char *ra;
	size_t ra_cap, ra_len, window;
	off_t ra_off, next_off;
	bool ra_eof;
	/* Writes gathered: wb_len bytes for wb_off. */
	unsigned char *wb;
	off_t wb_off;
	size_t wb_len;
	/* O_WRONLY | O_CREAT | O_TRUNC not done yet: the first WRITE (or an
	 * OPEN when nothing is written) does it, with pend_mode. */
	bool pend_create;
	mode_t pend_mode;
	/* The attributes of the last answer, good until anything else is
	 * done on the handle (fstat after flush costs nothing). */
	bool have_st;
	struct stat st;
};

static struct remote_file *file_of(struct omni_file *f)
{
	return (struct remote_file *)f;
}

/* --- requests of a handle ------------------------------------------------- */

struct reader {
	unsigned char *dst;
	size_t want, got;
};

static int read_frame(uint8_t type, const unsigned char *data, size_t len,
                      void *ctx)
{
	struct reader *rd = ctx;
	int64_t v;
	int rc;

	if (type == OMNI_FILES_R_DATA) {
		if (len > rd->want - rd->got)
			return omni_error_set(-EPROTO,
			                      "omni-agent: read: more data "
			                      "than asked for");
		memcpy(rd->dst + rd->got, data, len);
		rd->got += len;
		return 0;
	}
	if (type != OMNI_FILES_R_STATUS)
		return omni_error_set(-EPROTO,
		                      "omni-agent: unexpected answer 0x%02x "
		                      "to a read",
		                      type);
	if ((rc = omni__files_decode_status(data, len, &v, NULL, 0)) < 0)
		return rc;
	if (v < 0 || (uint64_t)v != rd->got)
		return omni_error_set(-EPROTO,
		                      "omni-agent: read: the count (%lld) "
		                      "disagrees with the data (%zu bytes)",
		                      (long long)v, rd->got);
	return 1;
}

/* Read up to want bytes at off into dst: the count (short at the end of
 * the file) or -errno. */
static ssize_t fetch(struct remote_file *f, off_t off, void *dst, size_t want)
{
	size_t done = 0;

	while (done < want) {
		struct omni__files_req req = { .op = OMNI_FILES_READ };
		size_t n = want - done < OMNI_FILES_MAX_READ
		               ? want - done
		               : OMNI_FILES_MAX_READ;
		struct reader rd = { .dst = (unsigned char *)dst + done,
			             .want = n };

		snprintf(req.path, sizeof(req.path), "%s", f->path);
		req.off = off + (off_t)done;
		req.len = n;
		long long rc = omni__docker_remote_call(f->r, &req, NULL, 0,
		                                        true, read_frame, &rd);
		if (rc < 0)
			return (ssize_t)rc;
		done += rd.got;
		if (rd.got < n)
			break;
	}
	return (ssize_t)done;
}

struct writer {
	bool have_st;
	struct stat st;
	long long count;
};

static int write_frame(uint8_t type, const unsigned char *data, size_t len,
                       void *ctx)
{
	struct writer *w = ctx;
	int64_t v;
	int rc;

	if (type == OMNI_FILES_R_ATTR && !w->have_st) {
		if ((rc = omni__files_decode_attr(data, len, &w->st)) < 0)
			return rc;
		w->have_st = true;
		return 0;
	}
	if (type != OMNI_FILES_R_STATUS || !w->have_st)
		return omni_error_set(-EPROTO,
		                      "omni-agent: unexpected answer 0x%02x "
		                      "to a write",
		                      type);
	if ((rc = omni__files_decode_status(data, len, &v, NULL, 0)) < 0)
		return rc;
	w->count = v;
	return 1;
}

/* One WRITE of at most a frame (the first one of a handle opened with
 * O_CREAT | O_TRUNC creates and truncates): the count or -errno. */
static ssize_t send_write(struct remote_file *f, off_t off, const void *data,
                          size_t len)
{
	struct omni__files_req req = { .op = OMNI_FILES_WRITE };
	struct writer w = { .have_st = false };
	bool append = f->flags & O_APPEND;

	snprintf(req.path, sizeof(req.path), "%s", f->path);
	req.off = off;
	req.flags = append ? OMNI_FILES_APPEND : 0;
	if (f->pend_create) {
		req.flags |= OMNI_FILES_W_CREATE | OMNI_FILES_W_TRUNC;
		req.mode = f->pend_mode & 07777;
	}
	/* At an offset, the same write twice leaves the same file. */
	long long rc = omni__docker_remote_call(f->r, &req, data, len, !append,
	                                        write_frame, &w);
	if (rc < 0)
		return (ssize_t)rc;
	if (w.count < 0 || (unsigned long long)w.count > len)
		return omni_error_set(-EPROTO,
		                      "omni-agent: write %s: wrote %lld of %zu "
		                      "bytes",
		                      f->path, w.count, len);
	f->pend_create = false;
	f->st = w.st;
	f->have_st = true;
	return (ssize_t)w.count;
}

/* Write all of data at off (frames one after the other). */
static int write_all(struct remote_file *f, off_t off, const void *data,
                     size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < OMNI_FILES_MAX_DATA
		               ? len - done
		               : OMNI_FILES_MAX_DATA;
		ssize_t w = send_write(f, off + (off_t)done,
		                       (const char *)data + done, n);
		if (w < 0)
			return (int)w;
		if ((size_t)w < n)
			return omni_error_set(-EIO,
			                      "omni-agent: write %s: short "
			                      "write",
			                      f->path);
		done += n;
	}
	return 0;
}

/* Send the gathered writes. Locked. */
static int wb_flush(struct remote_file *f)
{
	if (f->wb_len == 0)
		return 0;
	int rc = write_all(f, f->wb_off, f->wb, f->wb_len);
	f->wb_len = 0;
	return rc;
}

static int do_open(struct remote_file *f, int flags, mode_t mode,
                   struct stat *st);

/* Everything written is in the file, and the file is made: the gathered
 * writes sent, a creation still pending done with OPEN. Locked. */
static int sync_locked(struct remote_file *f)
{
	int rc = wb_flush(f);

	if (rc == 0 && f->pend_create) {
		rc = do_open(f, f->flags, f->pend_mode, &f->st);
		if (rc == 0) {
			f->pend_create = false;
			f->have_st = true;
		}
	}
	return rc;
}

/* --- the slots ---------------------------------------------------------------
 */

static int do_open(struct remote_file *f, int flags, mode_t mode,
                   struct stat *st)
{
	struct omni__files_req req = { .op = OMNI_FILES_OPEN };

	snprintf(req.path, sizeof(req.path), "%s", f->path);
	req.flags = omni__files_oflags_to_wire(flags);
	req.mode = mode & 07777;
	return (int)omni__docker_remote_call(
	    f->r, &req, NULL, 0, !(flags & O_EXCL),
	    omni__docker_remote_attr_frame, st);
}

int omni__docker_remote_open(struct omni_backend *b, const char *path,
                             int flags, mode_t mode, struct omni_file **out)
{
	struct remote_file *f;
	struct stat st;
	int rc;

	*out = NULL;
	if (strlen(path) >= PATH_MAX)
		return omni_error_set(-ENAMETOOLONG, "open: path too long");
	if (!(f = calloc(1, sizeof(*f))))
		return omni_error_set(-ENOMEM, "out of memory");
	f->base.backend = b;
	f->r = omni__docker_remote_of(b);
	f->flags = flags;
	snprintf(f->path, sizeof(f->path), "%s", path);
	pthread_mutex_init(&f->lock, NULL);
	/* No mode: the default, as envd makes files (the cache's write-back
	 * sets other modes afterwards). */
	if ((flags & O_CREAT) && !(mode & 07777))
		mode = 0644;
	int acc = flags & O_ACCMODE;
	if (acc == O_RDONLY && !(flags & (O_CREAT | O_TRUNC))) {
		/* Nothing to do to the file: the first READ finds it (or
		 * says it is missing). */
		rc = 0;
	} else if (acc == O_WRONLY && (flags & O_CREAT) && (flags & O_TRUNC) &&
	           !(flags & (O_EXCL | O_APPEND)) && (mode & S_IWUSR)) {
		/* A whole new content: the first WRITE makes the file. */
		f->pend_create = true;
		f->pend_mode = mode & 07777;
		rc = 0;
	} else if ((flags & O_CREAT) && !(mode & S_IWUSR)) {
		/* Made writable for our own writes, given its mode at
		 * release; an existing file keeps its own. */
		rc = do_open(f, flags | O_EXCL, mode | S_IWUSR, &st);
		if (rc == 0) {
			f->chmod_after = true;
			f->mode = mode & 07777;
		} else if (rc == -EEXIST && !(flags & O_EXCL)) {
			omni_error_clear();
			rc = do_open(f, flags & ~O_CREAT, 0, &st);
		}
	} else {
		rc = do_open(f, flags, mode, &st);
	}
	if (rc < 0) {
		pthread_mutex_destroy(&f->lock);
		free(f);
		return rc;
	}
	*out = &f->base;
	return 0;
}

/* Serve from the window: the count, or -1 when it cannot. Locked. */
static ssize_t from_window(struct remote_file *f, void *buf, size_t size,
                           off_t off)
{
	if (!f->ra_len && !f->ra_eof)
		return -1;
	if (off < f->ra_off || off > f->ra_off + (off_t)f->ra_len)
		return -1;
	size_t avail = (size_t)(f->ra_off + (off_t)f->ra_len - off);
	if (avail < size && !f->ra_eof)
		return -1;
	size_t n = avail < size ? avail : size;
	memcpy(buf, f->ra + (off - f->ra_off), n);
	return (ssize_t)n;
}

static ssize_t read_locked(struct remote_file *f, void *buf, size_t size,
                           off_t off)
{
	ssize_t n = from_window(f, buf, size, off);

	if (n >= 0)
		return n;
	bool sequential = off == f->next_off && f->window;
	f->window = sequential
	                ? (f->window * 2 > RA_MAX ? RA_MAX : f->window * 2)
	                : RA_MIN;
	if (size >= f->window)
		return fetch(f, off, buf, size); /* big: straight in */
	if (f->ra_cap < f->window) {
		unsigned char *p = realloc(f->ra, f->window);
		if (!p)
			return omni_error_set(-ENOMEM, "out of memory");
		f->ra = p;
		f->ra_cap = f->window;
	}
	f->ra_len = 0;
	f->ra_eof = false;
	n = fetch(f, off, f->ra, f->window);
	if (n < 0)
		return n;
	f->ra_off = off;
	f->ra_len = (size_t)n;
	f->ra_eof = (size_t)n < f->window;
	n = from_window(f, buf, size, off);
	return n < 0 ? 0 : n; /* n < 0: the file ends before off */
}

ssize_t omni__docker_remote_read(struct omni_file *of, void *buf, size_t size,
                                 off_t off)
{
	struct remote_file *f = file_of(of);
	ssize_t n;

	if ((f->flags & O_ACCMODE) == O_WRONLY)
		return omni_error_set(-EBADF, "read %s: not open for reading",
		                      f->path);
	if (off < 0)
		return omni_error_set(-EINVAL, "read %s: negative offset",
		                      f->path);
	if (size == 0)
		return 0;
	pthread_mutex_lock(&f->lock);
	n = wb_flush(f);
	if (n == 0)
		n = read_locked(f, buf, size, off);
	if (n >= 0)
		f->next_off = off + n;
	pthread_mutex_unlock(&f->lock);
	return n;
}

ssize_t omni__docker_remote_write(struct omni_file *of, const void *buf,
                                  size_t size, off_t off)
{
	struct remote_file *f = file_of(of);
	int rc = 0;

	if ((f->flags & O_ACCMODE) == O_RDONLY)
		return omni_error_set(-EBADF, "write %s: not open for writing",
		                      f->path);
	if (off < 0)
		return omni_error_set(-EINVAL, "write %s: negative offset",
		                      f->path);
	pthread_mutex_lock(&f->lock);
	f->ra_len = 0;
	f->ra_eof = false;
	f->have_st = false;
	if (f->wb_len && off == f->wb_off + (off_t)f->wb_len &&
	    f->wb_len + size <= OMNI_FILES_MAX_DATA && !(f->flags & O_APPEND)) {
		memcpy(f->wb + f->wb_len, buf, size);
		f->wb_len += size;
		goto out;
	}
	if ((rc = wb_flush(f)) < 0)
		goto out;
	if ((f->flags & O_APPEND) || size >= OMNI_FILES_MAX_DATA / 2) {
		rc = write_all(f, off, buf, size);
		goto out;
	}
	if (!f->wb && !(f->wb = malloc(OMNI_FILES_MAX_DATA))) {
		rc = omni_error_set(-ENOMEM, "out of memory");
		goto out;
	}
	memcpy(f->wb, buf, size);
	f->wb_off = off;
	f->wb_len = size;
out:
	pthread_mutex_unlock(&f->lock);
	return rc < 0 ? rc : (ssize_t)size;
}

int omni__docker_remote_flush(struct omni_file *of)
{
	struct remote_file *f = file_of(of);

	pthread_mutex_lock(&f->lock);
	int rc = sync_locked(f);
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int omni__docker_remote_fstat(struct omni_file *of, struct stat *st)
{
	struct remote_file *f = file_of(of);
	int rc;

	pthread_mutex_lock(&f->lock);
	rc = sync_locked(f);
	bool have = rc == 0 && f->have_st;
	if (have)
		*st = f->st;
	pthread_mutex_unlock(&f->lock);
	if (rc < 0 || have)
		return rc;
	return omni__docker_remote_getattr(f->r, f->path, true, st);
}

int omni__docker_remote_ftruncate(struct omni_file *of, off_t size)
{
	struct remote_file *f = file_of(of);
	struct omni__files_req req = { .op = OMNI_FILES_TRUNCATE };
	int rc;

	if (size < 0)
		return omni_error_set(-EINVAL, "truncate %s: negative size",
		                      f->path);
	pthread_mutex_lock(&f->lock);
	rc = sync_locked(f);
	f->ra_len = 0;
	f->ra_eof = false;
	f->have_st = false;
	if (rc == 0) {
		snprintf(req.path, sizeof(req.path), "%s", f->path);
		req.off = size;
		rc = (int)omni__docker_remote_call(f->r, &req, NULL, 0, true,
		                                   NULL, NULL);
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

int omni__docker_remote_fsync(struct omni_file *of, bool datasync)
{
	struct remote_file *f = file_of(of);
	struct omni__files_req req = { .op = OMNI_FILES_FSYNC };
	int rc = omni__docker_remote_flush(of);

	(void)datasync;
	if (rc < 0)
		return rc;
	snprintf(req.path, sizeof(req.path), "%s", f->path);
	return (int)omni__docker_remote_call(f->r, &req, NULL, 0, true, NULL,
	                                     NULL);
}

int omni__docker_remote_file_fd(struct omni_file *f)
{
	(void)f;
	return -1;
}

int omni__docker_remote_release(struct omni_file *of)
{
	struct remote_file *f = file_of(of);
	struct omni__files_req req = { .op = OMNI_FILES_CHMOD };
	int rc = omni__docker_remote_flush(of);

	if (f->chmod_after) {
		snprintf(req.path, sizeof(req.path), "%s", f->path);
		req.mode = f->mode;
		int crc = (int)omni__docker_remote_call(f->r, &req, NULL, 0,
		                                        true, NULL, NULL);
		if (rc == 0)
			rc = crc;
	}
	pthread_mutex_destroy(&f->lock);
	free(f->ra);
	free(f->wb);
	free(f);
	return rc;
}

/* --- the watch
 * ---------------------------------------------------------------- */

static void notify(struct omni__docker_remote *r, const char *path,
                   const struct stat *st)
{
	pthread_mutex_lock(&r->watch_lock);
	omni_change_cb cb = r->watch_cb;
	void *payload = r->watch_payload;
	pthread_mutex_unlock(&r->watch_lock);
	if (cb)
		cb(path, st, payload);
}

/* One frame of the stream: 0 go on, -errno end it. */
static int watch_frame(struct omni__docker_remote *r, uint8_t type,
                       const struct omni_ipc_buf *buf, bool *started)
{
	char path[PATH_MAX], msg[256];
	struct stat st;
	bool has_st;
	int64_t v;
	int rc;

	switch (type) {
	case OMNI_FILES_R_READY:
		*started = true;
		atomic_fetch_add(&r->n_watch_starts, 1);
		notify(r, "", NULL); /* events may have been missed before */
		return 0;
	case OMNI_FILES_R_OVERFLOW:
		notify(r, "", NULL);
		return 0;
	case OMNI_FILES_R_EVENT:
		rc = omni__files_decode_event(buf->data, buf->len, path,
		                              sizeof(path), &st, &has_st);
		if (rc < 0) {
			atomic_fetch_add(&r->n_bad, 1);
			return rc;
		}
		atomic_fetch_add(&r->n_events, 1);
		notify(r, path, has_st ? &st : NULL);
		return 0;
	case OMNI_FILES_R_STATUS:
		rc = omni__files_decode_status(buf->data, buf->len, &v, msg,
		                               sizeof(msg));
		if (rc == 0)
			rc = omni_error_set(v < 0 ? (int)v : -EPROTO,
			                    "omni-agent: watch: %s", msg);
		return rc;
	default:
		atomic_fetch_add(&r->n_bad, 1);
		return omni_error_set(-EPROTO,
		                      "omni-agent: unexpected frame 0x%02x in "
		                      "the watch",
		                      type);
	}
}

/* One session of the watch, until it ends: whether READY came. */
static bool watch_once(struct omni__docker_remote *r)
{
	struct omni__files_req req = { .op = OMNI_FILES_WATCH };
	struct omni_ipc_buf buf = { 0 };
	bool started = false;
	uint8_t type;
	int fd, rc;

	if ((rc = omni__docker_remote_session(r, &fd)) < 0)
		return false;
	pthread_mutex_lock(&r->watch_lock);
	if (r->watch_stop) {
		pthread_mutex_unlock(&r->watch_lock);
		close(fd);
		return false;
	}
	r->watch_fd = fd;
	pthread_mutex_unlock(&r->watch_lock);
	if ((rc = omni__files_req_encode(&req, &buf)) == 0)
		rc = omni_ipc_send(fd, OMNI_FILES_WATCH, buf.data, buf.len);
	while (rc == 0 && (rc = omni_ipc_recv(fd, &type, &buf)) > 0)
		rc = watch_frame(r, type, &buf, &started);
	if (rc == -EPROTO)
		omni_log(OMNI_LOG_WARN, "docker: watch: %s", omni_error_last());
	pthread_mutex_lock(&r->watch_lock);
	r->watch_fd = -1;
	pthread_mutex_unlock(&r->watch_lock);
	close(fd);
	omni_ipc_buf_finish(&buf);
	return started;
}

static void *watch_main(void *arg)
{
	struct omni__docker_remote *r = arg;
	long backoff = 250;

	pthread_mutex_lock(&r->watch_lock);
	while (!r->watch_stop) {
		pthread_mutex_unlock(&r->watch_lock);
		bool started = watch_once(r);
		pthread_mutex_lock(&r->watch_lock);
		if (r->watch_stop)
			break;
		if (started) {
			backoff = 250;
			pthread_mutex_unlock(&r->watch_lock);
			notify(r, NULL, NULL); /* lost until the next "" */
			pthread_mutex_lock(&r->watch_lock);
		}
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += backoff / 1000;
		until.tv_nsec += (backoff % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!r->watch_stop &&
		       pthread_cond_timedwait(&r->watch_cond, &r->watch_lock,
		                              &until) == 0)
			;
		backoff = backoff * 2 > 10000 ? 10000 : backoff * 2;
	}
	pthread_mutex_unlock(&r->watch_lock);
	return NULL;
}

int omni__docker_remote_watch(struct omni_backend *b, omni_change_cb cb,
                              void *payload)
{
	struct omni__docker_remote *r = omni__docker_remote_of(b);
	int rc = 0;

	if (!r)
		return omni_error_set(-ENOSYS, "docker: no file sessions");
	if (!cb) {
		omni__docker_remote_watch_stop(r);
		return 0;
	}
	pthread_mutex_lock(&r->watch_lock);
	r->watch_cb = cb;
	r->watch_payload = payload;
	if (!r->watch_running) {
		r->watch_stop = false;
		rc = pthread_create(&r->watch_thread, NULL, watch_main, r);
		if (rc == 0)
			r->watch_running = true;
		else
			rc = omni_error_set(-rc, "docker: cannot start a "
			                         "thread");
	}
	pthread_mutex_unlock(&r->watch_lock);
	return rc;
}

void omni__docker_remote_watch_stop(struct omni__docker_remote *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->watch_lock);
	bool running = r->watch_running;
	r->watch_stop = true;
	r->watch_running = false;
	if (r->watch_fd >= 0)
		shutdown(r->watch_fd, SHUT_RDWR);
	pthread_cond_broadcast(&r->watch_cond);
	pthread_mutex_unlock(&r->watch_lock);
	if (running)
		pthread_join(r->watch_thread, NULL);
	pthread_mutex_lock(&r->watch_lock);
	r->watch_cb = NULL;
	r->watch_payload = NULL;
	pthread_mutex_unlock(&r->watch_lock);
}
