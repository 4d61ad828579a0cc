/*
 * backends/docker/docker_remote.h - the workspace's files through
 * omni-agent's file protocol (omni/ipc_files.h), for the docker backend's
 * agent mode, where nothing is bind-mounted from this machine. Private to
 * libomni (and its tests).
 *
 * A struct omni__docker_remote is a small pool of file sessions, each a
 * connection obtained from a connector (in production
 * omni__docker_remote_agent_connect, i.e. omni__docker_agent_connect(),
 * which in agent mode gives one channel of the multiplexed exec stream);
 * the backend instance points at it (struct omni__docker_backend.remote).
 * The functions below have the types of the ops table's path slots
 * (omni/sys/backend_impl.h), so the agent-mode table names them directly:
 *
 *	.stat = omni__docker_remote_stat, .readdir =
 *omni__docker_remote_readdir, .mkdir, .rmdir, .unlink, .rename, .symlink,
 *.readlink, .link, .chmod, .chown, .utimens, .truncate, .statfs, .open, .read,
 *.write, .fstat, .ftruncate, .flush, .fsync, .file_fd, .release =
 *omni__docker_remote_<slot>, .watch = omni__docker_remote_watch
 *
 * (OMNI__DOCKER_REMOTE_OPS below lists them all, OMNI__DOCKER_REMOTE_CAPS
 * the capabilities they add.) The remote cache (backends/cache) goes in
 * front of the backend, as for e2b. The backend's life:
 *
 *	start     omni__docker_remote_attach(db) once the agent answers
 *	shutdown  omni__docker_remote_watch_stop(db->remote)
 *	destroy   omni__docker_remote_free(db->remote)
 *	stats     omni__docker_remote_stats_text(db->remote)
 */
#ifndef OMNI_DOCKER_REMOTE_H
#define OMNI_DOCKER_REMOTE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "docker/docker.h"
#include "omni/sys/backend_impl.h"

/* Get a new connection to the agent's ipc server into *fd (blocking,
 * close-on-exec): 0, or -errno with a message. */
typedef int (*omni__docker_remote_connect_fn)(void *ctx, int *fd);

struct omni__docker_remote;

/* Sessions open at most at once; idle ones beyond OMNI_DOCKER_REMOTE_IDLE
 * are closed once unused for OMNI_DOCKER_REMOTE_TRIM_MS. */
#define OMNI_DOCKER_REMOTE_IDLE    8
#define OMNI_DOCKER_REMOTE_MAX     16
#define OMNI_DOCKER_REMOTE_TRIM_MS 10000

/*
 * A pool using connect(ctx, &fd) for each new session (none is opened
 * yet). timeout_ms bounds the wait for each frame of an answer (0: 60 s).
 */
int omni__docker_remote_new(struct omni__docker_remote **out,
                            omni__docker_remote_connect_fn connect, void *ctx,
                            long timeout_ms);
/* Stop the watch, close every session, free. NULL is ok. */
void omni__docker_remote_free(struct omni__docker_remote *r);

/* The production connector: ctx is the struct omni__docker_backend. */
int omni__docker_remote_agent_connect(void *ctx, int *fd);

/* db->remote made with that connector (default timeout) when it is NULL;
 * 0 or -ENOMEM. No session is opened yet. */
int omni__docker_remote_attach(struct omni__docker_backend *db);

/* Counters, for statistics and tests. */
struct omni__docker_remote_counters {
	unsigned long long requests; /* sent, retries included */
	unsigned long long connects; /* sessions opened */
	unsigned long long retries;  /* requests sent again on a new one */
	unsigned long long errors;   /* answered with an error */
	unsigned long long bad;      /* malformed answers (-EPROTO) */
	unsigned long long events;   /* watch events received */
	unsigned long long watch_starts;
	unsigned long long bytes_down, bytes_up;
};
void omni__docker_remote_counters(struct omni__docker_remote *r,
                                  struct omni__docker_remote_counters *out);
/* The counters as "name value" lines (malloc'd), for the stats slot. */
char *omni__docker_remote_stats_text(struct omni__docker_remote *r);

/* --- the path slots: b is a struct omni__docker_backend with .remote set - */

int omni__docker_remote_stat(struct omni_backend *b, const char *path,
                             struct stat *st);
int omni__docker_remote_readdir(struct omni_backend *b, const char *path,
                                omni_dirent_cb cb, void *payload);
int omni__docker_remote_mkdir(struct omni_backend *b, const char *path,
                              mode_t mode);
int omni__docker_remote_rmdir(struct omni_backend *b, const char *path);
int omni__docker_remote_unlink(struct omni_backend *b, const char *path);
int omni__docker_remote_rename(struct omni_backend *b, const char *from,
                               const char *to, unsigned int flags);
int omni__docker_remote_symlink(struct omni_backend *b, const char *target,
                                const char *path);
ssize_t omni__docker_remote_readlink(struct omni_backend *b, const char *path,
                                     char *buf, size_t size);
int omni__docker_remote_link(struct omni_backend *b, const char *from,
                             const char *to);
int omni__docker_remote_chmod(struct omni_backend *b, const char *path,
                              mode_t mode);
int omni__docker_remote_chown(struct omni_backend *b, const char *path,
                              uid_t uid, gid_t gid);
int omni__docker_remote_utimens(struct omni_backend *b, const char *path,
                                const struct timespec ts[2]);
int omni__docker_remote_truncate(struct omni_backend *b, const char *path,
                                 off_t size);
int omni__docker_remote_statfs(struct omni_backend *b, struct statvfs *st);

/*
 * Open files. A handle is the path and its flags, and costs round trips
 * only where it must: an open for reading sends nothing (the first read
 * finds the file, or says it is missing: -ENOENT comes from read, not
 * open); O_WRONLY | O_CREAT | O_TRUNC is done by the first WRITE (or at
 * flush when nothing was written); other opens send OPEN at once
 * (O_EXCL, O_RDWR, ...). Reads fetch ahead (a window growing while reads
 * are sequential, up to 8 MiB); contiguous writes are gathered up to a
 * frame and sent at the next flush, fsync, fstat, ftruncate, read or
 * release (whose result carries a failed write's error, as NFS does); a
 * WRITE answers the file's attributes, so fstat after flush is free. So
 * the cache's upload or download of a small file is one request. file_fd
 * is -1 (no host descriptor). A file created with a mode without owner
 * write is created writable and gets its mode at release. Mode 0 means
 * the default, 0644 for files and 0755 for directories (as envd makes
 * them: the cache's write-back passes 0 and sets other modes after).
 */
int omni__docker_remote_open(struct omni_backend *b, const char *path,
                             int flags, mode_t mode, struct omni_file **out);
ssize_t omni__docker_remote_read(struct omni_file *f, void *buf, size_t size,
                                 off_t off);
ssize_t omni__docker_remote_write(struct omni_file *f, const void *buf,
                                  size_t size, off_t off);
int omni__docker_remote_fstat(struct omni_file *f, struct stat *st);
int omni__docker_remote_ftruncate(struct omni_file *f, off_t size);
int omni__docker_remote_flush(struct omni_file *f);
int omni__docker_remote_fsync(struct omni_file *f, bool datasync);
int omni__docker_remote_file_fd(struct omni_file *f);
int omni__docker_remote_release(struct omni_file *f);

/*
 * The change watch (omni_change_cb, as e2b's): a thread with a session of
 * its own sends WATCH and passes each event on (path and attributes, or
 * NULL attributes for a removal); "" when the watch (re)starts or the
 * agent lost events (OVERFLOW), NULL when the session is lost, and it
 * reconnects with a backoff of 0.25 s doubling to 10 s. cb NULL stops it,
 * as does omni__docker_remote_watch_stop() (NULL is ok).
 */
int omni__docker_remote_watch(struct omni_backend *b, omni_change_cb cb,
                              void *payload);
void omni__docker_remote_watch_stop(struct omni__docker_remote *r);

/* Links work through the agent; changes come through the watch. */
#define OMNI__DOCKER_REMOTE_CAPS (OMNI_CAP_WATCH | OMNI_CAP_HARDLINKS)

#define OMNI__DOCKER_REMOTE_OPS                                                \
	.stat = omni__docker_remote_stat,                                      \
	.readdir = omni__docker_remote_readdir,                                \
	.mkdir = omni__docker_remote_mkdir,                                    \
	.rmdir = omni__docker_remote_rmdir,                                    \
	.unlink = omni__docker_remote_unlink,                                  \
	.rename = omni__docker_remote_rename,                                  \
	.symlink = omni__docker_remote_symlink,                                \
	.readlink = omni__docker_remote_readlink,                              \
	.link = omni__docker_remote_link, .chmod = omni__docker_remote_chmod,  \
	.chown = omni__docker_remote_chown,                                    \
	.utimens = omni__docker_remote_utimens,                                \
	.truncate = omni__docker_remote_truncate,                              \
	.statfs = omni__docker_remote_statfs,                                  \
	.open = omni__docker_remote_open, .read = omni__docker_remote_read,    \
	.write = omni__docker_remote_write,                                    \
	.fstat = omni__docker_remote_fstat,                                    \
	.ftruncate = omni__docker_remote_ftruncate,                            \
	.flush = omni__docker_remote_flush,                                    \
	.fsync = omni__docker_remote_fsync,                                    \
	.file_fd = omni__docker_remote_file_fd,                                \
	.release = omni__docker_remote_release,                                \
	.watch = omni__docker_remote_watch

/* --- between docker_remote.c and docker_remote_file.c ----------------------
 */

struct omni__files_req;

struct omni__docker_remote {
	omni__docker_remote_connect_fn connect;
	void *ctx;
	long timeout_ms;

	/* The pool: idle sessions, and how many are open in all. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct {
		int fd;
		long long since;        /* ms, monotonic: idle since */
	} idle[OMNI_DOCKER_REMOTE_MAX]; /* a stack: the last used on top */
	unsigned int nidle, open;

	/* Counters (atomic). */
	_Atomic unsigned long long n_requests, n_connects, n_retries, n_errors,
	    n_bad, n_events, n_watch_starts, n_down, n_up;

	/* The watch thread (docker_remote_file.c), under watch_lock. */
	pthread_mutex_t watch_lock;
	pthread_cond_t watch_cond;
	pthread_t watch_thread;
	bool watch_running, watch_stop;
	int watch_fd; /* its session, to shut down on stop; -1 */
	omni_change_cb watch_cb;
	void *watch_payload;
};

/* The pool of the backend b (its .remote). */
struct omni__docker_remote *omni__docker_remote_of(struct omni_backend *b);

/*
 * An answer frame of a request, other than a failure (STATUS < 0), which
 * omni__docker_remote_call() handles: return 0 when more frames follow,
 * 1 for the last one, -errno to fail (-EPROTO with omni_error_set() when
 * the frame is malformed or unexpected: the session is then closed).
 */
typedef int (*omni__docker_remote_frame_fn)(uint8_t type,
                                            const unsigned char *data,
                                            size_t len, void *ctx);

/*
 * Send req (then data_len bytes of data in the same frame) on a session
 * of the pool and read its answer: frames go to fn (NULL: a STATUS is
 * expected, whose result is returned). 0 (or STATUS's count when fn is
 * NULL), or -errno with a message. A session found dead before any
 * answer came is replaced and the request sent again once, when
 * retry_safe says doing it twice does no harm.
 */
long long omni__docker_remote_call(struct omni__docker_remote *r,
                                   const struct omni__files_req *req,
                                   const void *data, size_t data_len,
                                   bool retry_safe,
                                   omni__docker_remote_frame_fn fn, void *ctx);

/* The frame function of an answer that is one ATTR frame (ctx: a struct
 * stat): STAT, and OPEN, which answers with the file's attributes. */
int omni__docker_remote_attr_frame(uint8_t type, const unsigned char *data,
                                   size_t len, void *ctx);

/* STAT (follow: the target of a final symlink) into st. */
int omni__docker_remote_getattr(struct omni__docker_remote *r, const char *path,
                                bool follow, struct stat *st);

/* A new session (FILES sent) into *fd, outside the pool, for the watch;
 * no receive timeout. */
int omni__docker_remote_session(struct omni__docker_remote *r, int *fd);

#endif
