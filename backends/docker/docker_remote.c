/*
 * backends/docker/docker_remote.c - the docker backend's files in agent
 * mode: a pool of file sessions with omni-agent (omni/ipc_files.h), the
 * requests, and the path slots (docker_remote.h). Open files and the
 * change watch are in docker_remote_file.c.
 *
 * Sessions. Each is a connection from the connector with a FILES frame
 * sent first (not waited for: the first request follows at once, so a new
 * session costs no extra round trip). One request is outstanding on a
 * session at a time; a thread takes the idle session used last, or opens
 * one while fewer than OMNI_DOCKER_REMOTE_MAX are open (else waits), and
 * gives it back after the answer, when the answer was whole and well
 * formed. Beyond OMNI_DOCKER_REMOTE_IDLE, sessions unused for
 * OMNI_DOCKER_REMOTE_TRIM_MS are closed.
 *
 * Dropped sessions. An idle session that the agent closed (it restarted,
 * or the multiplexed stream was lost) reads as hung up, and is dropped
 * before use. One that dies during a request gives -ECONNRESET, except
 * that a request that is safe to repeat (reads, stat, listing, writes at
 * an offset, modes and times) is sent once more on a new session when
 * nothing of the answer had come yet: a name operation (mkdir, rename,
 * unlink...) may have been done before the session died, so it is never
 * repeated behind the caller's back.
 *
 * Untrusted answers. The agent runs in the container, which may be
 * hostile, and this daemon may be root: every answer is decoded by the
 * checked decoders of base/ipc_files.c; anything malformed, unexpected or
 * out of range is -EPROTO with a message ("omni-agent: ..."), the session
 * is closed (it may be out of step), and nothing is read or written
 * outside the buffers at hand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "docker/docker_remote.h"
#include "omni/error.h"
#include "omni/ipc_files.h"
#include "omni/log.h"

/* --- the pool ----------------------------------------------------------------
 */

int omni__docker_remote_new(struct omni__docker_remote **out,
                            omni__docker_remote_connect_fn connect, void *ctx,
                            long timeout_ms)
{
	struct omni__docker_remote *r = calloc(1, sizeof(*r));

	*out = NULL;
	if (!r)
		return omni_error_set(-ENOMEM, "out of memory");
	r->connect = connect;
	r->ctx = ctx;
	r->timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
	r->watch_fd = -1;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_mutex_init(&r->watch_lock, NULL);
	pthread_cond_init(&r->watch_cond, NULL);
	*out = r;
	return 0;
}

void omni__docker_remote_free(struct omni__docker_remote *r)
{
	if (!r)
		return;
	omni__docker_remote_watch_stop(r);
	for (unsigned int i = 0; i < r->nidle; i++)
		close(r->idle[i].fd);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->watch_lock);
	pthread_cond_destroy(&r->watch_cond);
	free(r);
}

int omni__docker_remote_agent_connect(void *ctx, int *fd)
{
	return omni__docker_agent_connect(ctx, fd);
}

int omni__docker_remote_attach(struct omni__docker_backend *db)
{
	if (db->remote)
		return 0;
	return omni__docker_remote_new(
	    &db->remote, omni__docker_remote_agent_connect, db, 0);
}

struct omni__docker_remote *omni__docker_remote_of(struct omni_backend *b)
{
	return ((struct omni__docker_backend *)b)->remote;
}

static void set_timeouts(int fd, long ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
		              .tv_usec = (ms % 1000) * 1000 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int omni__docker_remote_session(struct omni__docker_remote *r, int *fd)
{
	unsigned char v[4] = { 0, 0, 0, OMNI_FILES_VERSION };
	int rc;

	*fd = -1;
	if ((rc = r->connect(r->ctx, fd)) < 0)
		return rc;
	atomic_fetch_add(&r->n_connects, 1);
	if ((rc = omni_ipc_send(*fd, OMNI_IPC_FILES, v, sizeof(v))) < 0) {
		close(*fd);
		*fd = -1;
		return omni_error_set_errno(rc, "omni-agent: file session");
	}
	return 0;
}

/* Has the agent closed this idle session (or sent something unasked)? */
static bool idle_dead(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

	return poll(&p, 1, 0) != 0;
}

/* A session for one request: *reused says it was idle in the pool. */
static int conn_get(struct omni__docker_remote *r, int *fd, bool *reused)
{
	int rc;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		if (r->nidle > 0) {
			*fd = r->idle[--r->nidle].fd;
			if (idle_dead(*fd)) {
				close(*fd);
				r->open--;
				continue;
			}
			pthread_mutex_unlock(&r->lock);
			*reused = true;
			return 0;
		}
		if (r->open < OMNI_DOCKER_REMOTE_MAX)
			break;
		pthread_cond_wait(&r->cond, &r->lock);
	}
	r->open++;
	pthread_mutex_unlock(&r->lock);
	*reused = false;
	if ((rc = omni__docker_remote_session(r, fd)) < 0) {
		pthread_mutex_lock(&r->lock);
		r->open--;
		pthread_cond_signal(&r->cond);
		pthread_mutex_unlock(&r->lock);
		return rc;
	}
	set_timeouts(*fd, r->timeout_ms);
	return 0;
}

/* Give a session back (ok: it is in step), or close it. Sessions beyond
 * OMNI_DOCKER_REMOTE_IDLE that nobody used for a while (the bottom of the
 * stack) are closed: a burst keeps its sessions, a quiet pool shrinks. */
static void conn_put(struct omni__docker_remote *r, int fd, bool ok)
{
	long long now = omni__now_ms();

	pthread_mutex_lock(&r->lock);
	if (ok && r->nidle < OMNI_DOCKER_REMOTE_MAX) {
		r->idle[r->nidle].fd = fd;
		r->idle[r->nidle].since = now;
		r->nidle++;
	} else {
		close(fd);
		r->open--;
	}
	while (r->nidle > OMNI_DOCKER_REMOTE_IDLE &&
	       now - r->idle[0].since > OMNI_DOCKER_REMOTE_TRIM_MS) {
		close(r->idle[0].fd);
		r->open--;
		r->nidle--;
		memmove(&r->idle[0], &r->idle[1],
		        r->nidle * sizeof(r->idle[0]));
	}
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* --- one request ------------------------------------------------------------
 */

static const char *op_name(uint8_t op)
{
	static const char *const names[] = {
		"stat",   "list",    "mkdir",    "rmdir",  "unlink",
		"rename", "symlink", "readlink", "link",   "chmod",
		"chown",  "utimens", "truncate", "statfs", "open",
		"read",   "write",   "fsync",    "watch",
	};

	if (op < OMNI_FILES_STAT || op > OMNI_FILES_WATCH)
		return "request";
	return names[op - OMNI_FILES_STAT];
}

/* An ERROR frame of omni/ipc.h: an agent without file sessions. */
static int ipc_error(const struct omni_ipc_buf *buf)
{
	char msg[256] = "";
	int64_t v = 0;

	omni__files_decode_status(buf->data, buf->len, &v, msg, sizeof(msg));
	return omni_error_set(-EPROTONOSUPPORT,
	                      "omni-agent has no file sessions (it answered "
	                      "'%s'): it is older than this omnifs",
	                      msg);
}

struct exchange {
	struct omni__docker_remote *r;
	const struct omni__files_req *req;
	omni__docker_remote_frame_fn fn;
	void *ctx;
	int fd;
	bool answered; /* a frame of the answer came */
	bool in_step;  /* the session may be used again */
	long long result;
};

/* One answer frame: 1 the answer is complete, 0 more, -errno. */
static int take_frame(struct exchange *x, uint8_t type,
                      const struct omni_ipc_buf *buf)
{
	char msg[512];
	int64_t v;
	int rc;

	if (type == OMNI_IPC_ERROR)
		return ipc_error(buf);
	if (type == OMNI_FILES_R_STATUS) {
		if ((rc = omni__files_decode_status(buf->data, buf->len, &v,
		                                    msg, sizeof(msg))) < 0)
			return rc;
		if (v < 0) {
			x->in_step = true;
			atomic_fetch_add(&x->r->n_errors, 1);
			return omni_error_set((int)v, "%s",
			                      msg[0] ? msg : strerror((int)-v));
		}
		if (!x->fn) {
			x->in_step = true;
			x->result = v;
			return 1;
		}
	} else if (!x->fn) {
		return omni_error_set(-EPROTO,
		                      "omni-agent: unexpected answer 0x%02x to "
		                      "%s",
		                      type, op_name(x->req->op));
	}
	rc = x->fn(type, buf->data, buf->len, x->ctx);
	if (rc == 1)
		x->in_step = true;
	return rc;
}

/* Send the request on x->fd and read its answer. */
static int exchange(struct exchange *x, const struct omni_ipc_buf *head,
                    const void *data, size_t data_len)
{
	struct omni_ipc_buf buf = { 0 };
	uint8_t type;
	int rc;

	atomic_fetch_add(&x->r->n_requests, 1);
	rc = omni_ipc_send2(x->fd, x->req->op, head->data, head->len, data,
	                    data_len);
	if (rc < 0)
		goto out;
	atomic_fetch_add(&x->r->n_up, head->len + data_len);
	for (;;) {
		rc = omni_ipc_recv(x->fd, &type, &buf);
		if (rc == 0)
			rc = x->answered ? -ECONNRESET : -ENOTCONN;
		else if (rc == -EPROTO)
			rc =
			    omni_error_set(-EPROTO,
			                   "omni-agent: a malformed frame (or "
			                   "the session cut inside one) in the "
			                   "answer to %s",
			                   op_name(x->req->op));
		if (rc <= 0)
			break;
		x->answered = true;
		atomic_fetch_add(&x->r->n_down, buf.len + 5);
		if ((rc = take_frame(x, type, &buf)) != 0)
			break;
	}
out:
	omni_ipc_buf_finish(&buf);
	return rc;
}

long long omni__docker_remote_call(struct omni__docker_remote *r,
                                   const struct omni__files_req *req,
                                   const void *data, size_t data_len,
                                   bool retry_safe,
                                   omni__docker_remote_frame_fn fn, void *ctx)
{
	struct omni_ipc_buf head = { 0 };
	struct exchange x = { .r = r, .req = req, .fn = fn, .ctx = ctx };
	bool reused = false;
	int rc;

	omni_error_clear();
	if (!r)
		return omni_error_set(-ENOTCONN,
		                      "docker: no file sessions (agent mode is "
		                      "not set up)");
	if ((rc = omni__files_req_encode(req, &head)) < 0) {
		omni_ipc_buf_finish(&head);
		return omni_error_set(rc, "docker: %s %s: %s", op_name(req->op),
		                      req->path, strerror(-rc));
	}
	for (int attempt = 0;; attempt++) {
		if ((rc = conn_get(r, &x.fd, &reused)) < 0)
			break;
		x.answered = x.in_step = false;
		rc = exchange(&x, &head, data, data_len);
		conn_put(r, x.fd, x.in_step);
		if (rc == -ENOTCONN && reused && retry_safe && attempt == 0) {
			atomic_fetch_add(&r->n_retries, 1);
			continue;
		}
		if (rc == -EPROTO)
			atomic_fetch_add(&r->n_bad, 1);
		if (rc == -ENOTCONN || rc == -ECONNRESET)
			rc =
			    omni_error_set(-ECONNRESET,
			                   "omni-agent: the file session ended "
			                   "during %s %s",
			                   op_name(req->op), req->path);
		else if (rc == -EAGAIN || rc == -EWOULDBLOCK)
			rc = omni_error_set(-ETIMEDOUT,
			                    "omni-agent: no answer to %s %s "
			                    "within %ld ms",
			                    op_name(req->op), req->path,
			                    r->timeout_ms);
		else if (rc < 0 && !omni_error_code())
			rc = omni_error_set_errno(rc, "omni-agent: %s %s",
			                          op_name(req->op), req->path);
		break;
	}
	omni_ipc_buf_finish(&head);
	return rc < 0 ? rc : (fn ? 0 : x.result);
}

/* A request on path with every other field zero. */
static void req_init(struct omni__files_req *req, uint8_t op, const char *path)
{
	memset(req, 0, sizeof(*req));
	req->op = op;
	snprintf(req->path, sizeof(req->path), "%s", path ? path : "");
}

/* A request answered by STATUS 0. */
static int simple(struct omni_backend *b, struct omni__files_req *req,
                  bool retry_safe)
{
	long long rc = omni__docker_remote_call(
	    omni__docker_remote_of(b), req, NULL, 0, retry_safe, NULL, NULL);

	if (rc > 0)
		rc = omni_error_set(-EPROTO,
		                    "omni-agent: %s %s: a count where none was "
		                    "expected",
		                    op_name(req->op), req->path);
	return (int)rc;
}

/* --- metadata ----------------------------------------------------------------
 */

int omni__docker_remote_attr_frame(uint8_t type, const unsigned char *data,
                                   size_t len, void *ctx)
{
	if (type != OMNI_FILES_R_ATTR)
		return omni_error_set(-EPROTO,
		                      "omni-agent: unexpected answer 0x%02x "
		                      "(attributes expected)",
		                      type);
	int rc = omni__files_decode_attr(data, len, ctx);
	return rc < 0 ? rc : 1;
}

int omni__docker_remote_getattr(struct omni__docker_remote *r, const char *path,
                                bool follow, struct stat *st)
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_STAT, path);
	req.flags = follow ? OMNI_FILES_FOLLOW : 0;
	return (int)omni__docker_remote_call(
	    r, &req, NULL, 0, true, omni__docker_remote_attr_frame, st);
}

int omni__docker_remote_stat(struct omni_backend *b, const char *path,
                             struct stat *st)
{
	return omni__docker_remote_getattr(omni__docker_remote_of(b), path,
	                                   false, st);
}

/* Entries one listing may bring: a bound on what an agent can make a
 * caller hold. */
#define LIST_MAX_ENTRIES (4u << 20)

struct lister {
	omni_dirent_cb cb;
	void *payload;
	int stopped; /* the callback's non-zero value */
	unsigned long n;
};

static int list_cb(const char *name, const struct stat *st, void *payload)
{
	struct lister *l = payload;

	if (++l->n > LIST_MAX_ENTRIES)
		return omni_error_set(-EPROTO,
		                      "omni-agent: a listing of more than %u "
		                      "entries",
		                      LIST_MAX_ENTRIES);
	if (l->stopped)
		return 0; /* the rest is drained, not given */
	l->stopped = l->cb(name, st, l->payload);
	return 0;
}

static int list_frame(uint8_t type, const unsigned char *data, size_t len,
                      void *ctx)
{
	if (type == OMNI_FILES_R_STATUS)
		return 1; /* the end (a success: errors are taken before) */
	if (type != OMNI_FILES_R_ENTRIES)
		return omni_error_set(-EPROTO,
		                      "omni-agent: unexpected answer 0x%02x "
		                      "in a listing",
		                      type);
	return omni__files_decode_entries(data, len, list_cb, ctx);
}

int omni__docker_remote_readdir(struct omni_backend *b, const char *path,
                                omni_dirent_cb cb, void *payload)
{
	struct omni__files_req req;
	struct lister l = { .cb = cb, .payload = payload };

	req_init(&req, OMNI_FILES_LIST, path);
	long long rc = omni__docker_remote_call(omni__docker_remote_of(b), &req,
	                                        NULL, 0, true, list_frame, &l);
	if (rc < 0)
		return (int)rc;
	return l.stopped;
}

int omni__docker_remote_mkdir(struct omni_backend *b, const char *path,
                              mode_t mode)
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_MKDIR, path);
	req.mode = mode & 07777 ? mode & 07777 : 0755; /* 0: the default */
	return simple(b, &req, false);
}

int omni__docker_remote_rmdir(struct omni_backend *b, const char *path)
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_RMDIR, path);
	return simple(b, &req, false);
}

int omni__docker_remote_unlink(struct omni_backend *b, const char *path)
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_UNLINK, path);
	return simple(b, &req, false);
}

int omni__docker_remote_rename(struct omni_backend *b, const char *from,
                               const char *to, unsigned int flags)
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_RENAME, from);
	snprintf(req.path2, sizeof(req.path2), "%s", to);
	req.flags = flags;
	return simple(b, &req, false);
}

int omni__docker_remote_symlink(struct omni_backend *b, const char *target,
                                const char *path)
{
	struct omni__files_req req;

	if (strlen(target) >= sizeof(req.path2))
		return omni_error_set(-ENAMETOOLONG,
		                      "symlink %s: target too "
		                      "long",
		                      path);
	req_init(&req, OMNI_FILES_SYMLINK, path);
	snprintf(req.path2, sizeof(req.path2), "%s", target);
	return simple(b, &req, false);
}

int omni__docker_remote_link(struct omni_backend *b, const char *from,
                             const char *to)
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_LINK, from);
	snprintf(req.path2, sizeof(req.path2), "%s", to);
	return simple(b, &req, false);
}

struct link_answer {
	char target[PATH_MAX];
	size_t len;
};

static int link_frame(uint8_t type, const unsigned char *data, size_t len,
                      void *ctx)
{
	struct link_answer *a = ctx;

	if (type != OMNI_FILES_R_LINK)
		return omni_error_set(-EPROTO,
		                      "omni-agent: unexpected answer 0x%02x "
		                      "(a link target expected)",
		                      type);
	int rc = omni__files_decode_link(data, len, a->target,
	                                 sizeof(a->target), &a->len);
	return rc < 0 ? rc : 1;
}

ssize_t omni__docker_remote_readlink(struct omni_backend *b, const char *path,
                                     char *buf, size_t size)
{
	struct omni__files_req req;
	struct link_answer *a = malloc(sizeof(*a));
	long long rc;

	if (!a)
		return omni_error_set(-ENOMEM, "out of memory");
	req_init(&req, OMNI_FILES_READLINK, path);
	rc = omni__docker_remote_call(omni__docker_remote_of(b), &req, NULL, 0,
	                              true, link_frame, a);
	if (rc >= 0) {
		rc = (long long)a->len;
		if (size > 0) {
			size_t n = a->len < size - 1 ? a->len : size - 1;
			memcpy(buf, a->target, n);
			buf[n] = '\0';
		}
	}
	free(a);
	return (ssize_t)rc;
}

int omni__docker_remote_chmod(struct omni_backend *b, const char *path,
                              mode_t mode)
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_CHMOD, path);
	req.mode = mode & 07777;
	return simple(b, &req, true);
}

int omni__docker_remote_chown(struct omni_backend *b, const char *path,
                              uid_t uid, gid_t gid)
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_CHOWN, path);
	req.uid = (uint32_t)uid;
	req.gid = (uint32_t)gid;
	return simple(b, &req, true);
}

int omni__docker_remote_utimens(struct omni_backend *b, const char *path,
                                const struct timespec ts[2])
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_UTIMENS, path);
	if (ts) {
		req.ts[0] = ts[0];
		req.ts[1] = ts[1];
	} else {
		req.ts[0].tv_nsec = req.ts[1].tv_nsec = UTIME_NOW;
	}
	return simple(b, &req, true);
}

int omni__docker_remote_truncate(struct omni_backend *b, const char *path,
                                 off_t size)
{
	struct omni__files_req req;

	if (size < 0)
		return omni_error_set(-EINVAL, "truncate %s: negative size",
		                      path);
	req_init(&req, OMNI_FILES_TRUNCATE, path);
	req.off = size;
	return simple(b, &req, true);
}

static int statfs_frame(uint8_t type, const unsigned char *data, size_t len,
                        void *ctx)
{
	if (type != OMNI_FILES_R_STATFS)
		return omni_error_set(-EPROTO,
		                      "omni-agent: unexpected answer 0x%02x "
		                      "(statfs expected)",
		                      type);
	int rc = omni__files_decode_statfs(data, len, ctx);
	return rc < 0 ? rc : 1;
}

int omni__docker_remote_statfs(struct omni_backend *b, struct statvfs *st)
{
	struct omni__files_req req;

	req_init(&req, OMNI_FILES_STATFS, "");
	return (int)omni__docker_remote_call(omni__docker_remote_of(b), &req,
	                                     NULL, 0, true, statfs_frame, st);
}

/* --- counters ----------------------------------------------------------------
 */

void omni__docker_remote_counters(struct omni__docker_remote *r,
                                  struct omni__docker_remote_counters *out)
{
	out->requests = atomic_load(&r->n_requests);
	out->connects = atomic_load(&r->n_connects);
	out->retries = atomic_load(&r->n_retries);
	out->errors = atomic_load(&r->n_errors);
	out->bad = atomic_load(&r->n_bad);
	out->events = atomic_load(&r->n_events);
	out->watch_starts = atomic_load(&r->n_watch_starts);
	out->bytes_down = atomic_load(&r->n_down);
	out->bytes_up = atomic_load(&r->n_up);
}

char *omni__docker_remote_stats_text(struct omni__docker_remote *r)
{
	struct omni__docker_remote_counters c;
	char *text = NULL;

	if (!r)
		return NULL;
	omni__docker_remote_counters(r, &c);
	if (asprintf(&text,
	             "agent_file_requests %llu\nagent_file_sessions %llu\n"
	             "agent_file_retries %llu\nagent_file_errors %llu\n"
	             "agent_file_malformed %llu\nagent_watch_events %llu\n"
	             "agent_watch_starts %llu\nagent_bytes_down %llu\n"
	             "agent_bytes_up %llu\n",
	             c.requests, c.connects, c.retries, c.errors, c.bad,
	             c.events, c.watch_starts, c.bytes_down, c.bytes_up) < 0)
		return NULL;
	return text;
}
