/*
 * backends/e2b/e2b.h - the e2b backend's private interface, shared by its
 *files:
 *
 *	e2b.c          the session: configuration, control plane (create,
 *	               keep-alive, kill), the ops table, statistics
 *	e2b_http.c     one envd or control-plane request: a pool of curl
 *	               handles (kept connections), timeouts, the breaker that
 *	               makes calls fail fast while the sandbox is unreachable,
 *	               Connect unary JSON calls, error mapping, counters
 *	e2b_stream.c   Connect server streams (process Start, WatchDir): the
 *	               5-byte envelopes read incrementally through curl multi
 *	e2b_files.c    the filesystem: Stat, ListDir, MakeDir, Move, Remove,
 *	               /files content through whole-file handles, the
 *	               operations done with a command, the WatchDir thread
 *	e2b_process.c  commands: Start, SendInput, SendSignal, Update
 *
 * Nothing here is used outside these files.
 */
#ifndef OMNI_E2B_H
#define OMNI_E2B_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "base/base64.h"
#include "base/clock.h"
#include "core/http.h"
#include "omni/sys/backend_impl.h"

/* Where the workspace lives in the sandbox. */
#define E2B_WORKDIR "/tmp/workspace"
/* The sandbox user files and commands belong to. */
#define E2B_USER "user"
/* envd's port, sent as E2b-Sandbox-Port. */
#define E2B_ENVD_PORT 49983

/* Every kind of request, counted apart (omni_vfs_stats). */
enum e2b_method {
	E2B_M_CREATE,
	E2B_M_KILL,
	E2B_M_REFRESH,
	E2B_M_STAT,
	E2B_M_LISTDIR,
	E2B_M_MAKEDIR,
	E2B_M_MOVE,
	E2B_M_REMOVE,
	E2B_M_WATCHDIR,
	E2B_M_FILES_GET,
	E2B_M_FILES_POST,
	E2B_M_START,
	E2B_M_SENDINPUT,
	E2B_M_SENDSIGNAL,
	E2B_M_UPDATE,
	E2B_M_CLOSESTDIN,
	E2B_M_COUNT,
};

/* The name a method is counted and reported under ("ListDir"). */
const char *omni__e2b_method_name(enum e2b_method m);

struct e2b_backend {
	struct omni_backend base;

	/* Configuration, fixed at open. api_key never reaches a log or a
	 * message. */
	char *api_key;
	char api_url[1024];
	char domain[256];
	char sandbox_url[1024]; /* E2B_SANDBOX_URL, or "" */
	bool debug;             /* E2B_DEBUG: no control plane */
	char template_id[256];
	unsigned int timeout_s; /* sandbox lifetime, refreshed */
	long req_timeout_ms;    /* bound of every unary request */
	long connect_timeout_ms;

	/* The sandbox, set by start. */
	char sandbox_id[128];
	char access_token[256];
	char envd_url[1024];
	char envd_version[32];

	/* Idle curl handles, each keeping its connection (e2b_http.c). */
	struct omni__curl_pool pool;

	/* Breaker: set while envd does not answer (e2b_http.c). */
	atomic_llong down_since_ms;
	atomic_llong next_probe_ms;
	atomic_int down_err;

	/* Counters. */
	atomic_ullong count[E2B_M_COUNT];
	atomic_ullong errors;
	atomic_ullong timeouts;
	atomic_ullong fast_fails;
	atomic_ullong bytes_down;
	atomic_ullong bytes_up;
	atomic_ullong helper_cmds;

	/* Keep-alive thread (e2b.c). */
	pthread_mutex_t ka_lock;
	pthread_cond_t ka_cond;
	pthread_t ka_thread;
	bool ka_running;
	bool ka_stop;

	/* Watch thread (e2b_files.c). */
	pthread_mutex_t watch_lock;
	pthread_t watch_thread;
	bool watch_running;
	atomic_bool watch_stop;
	struct e2b_stream *watch_stream; /* guarded by watch_lock */
	omni_change_cb watch_cb;
	void *watch_payload;
	atomic_bool watch_connected;
	atomic_ullong watch_events;
	atomic_ullong watch_reconnects;

	/* statfs answers are kept a while: each costs a command. */
	pthread_mutex_t statfs_lock;
	struct statvfs statfs_cache;
	long long statfs_at_ms;
};

static inline struct e2b_backend *e2b_of(struct omni_backend *b)
{
	return (struct e2b_backend *)b;
}

/* "/tmp/workspace" or "/tmp/workspace/<rel>" into out. */
int omni__e2b_abs(const char *rel, char *out, size_t size);

/* --- requests (e2b_http.c) --------------------------------------------------
 */

struct e2b_http_req {
	enum e2b_method m;
	const char *method;       /* "GET", "POST", "DELETE" */
	bool api;                 /* control plane (else envd) */
	const char *path;         /* "/sandboxes", "/files?path=..." */
	const char *content_type; /* NULL: none */
	bool rpc;                 /* Connect: Basic auth user, protocol hdr */
	const char *body;
	size_t body_len;
	int in_fd; /* >= 0: body read from it, in_size bytes */
	off_t in_size;
	int out_fd;      /* >= 0: a 2xx body is written there */
	long timeout_ms; /* 0: the request timeout */
	bool transfer;   /* content: bounded by progress, not time */
};

struct e2b_http_resp {
	long status;
	char *body; /* error bodies and small replies, NUL-terminated */
	size_t len;
	long long last_modified; /* seconds, or -1 */
	off_t written;           /* bytes written to out_fd */
};

/* One request. 0 when a reply came (any status), else -errno with a
 * message. Release resp with omni__e2b_resp_finish(). */
/* The error of a call refused while the breaker is open: how long the
 * sandbox has been silent (from the first request that got no answer),
 * that the call is not retried, and when the next probe goes. Returns the
 * errno of the outage. */
int omni__e2b_outage_error(struct e2b_backend *eb, enum e2b_method m);

int omni__e2b_http(struct e2b_backend *eb, const struct e2b_http_req *req,
                   struct e2b_http_resp *resp);
void omni__e2b_resp_finish(struct e2b_http_resp *resp);

/*
 * A Connect unary call: POST /<svc>/<method> with msg as JSON. On success
 * *out (may be NULL) gets the parsed reply (cJSON_Delete it). Errors are
 * -errno with "e2b: <Method> <what>: <message>".
 */
int omni__e2b_rpc(struct e2b_backend *eb, enum e2b_method m,
                  const char *rpc_path, const cJSON *msg, const char *what,
                  cJSON **out);

/*
 * Connect error codes ("not_found"...) to errnos, falling back on the HTTP
 * status when code is NULL or unknown (envd's own {"code":401} bodies,
 * the proxy's 502). Negative. Table-tested.
 */
int omni__e2b_code_to_errno(const char *code, long http_status);

/* Turn a non-2xx reply into -errno and a message "<what>: <text>". */
int omni__e2b_reply_error(const struct e2b_http_resp *resp, const char *what);

/* --- JSON and attributes -----------------------------------------------------
 */

/* Protobuf Timestamp text ("2024-01-02T03:04:05.123456789Z") to a
 * timespec. -EPROTO when malformed. */
int omni__e2b_parse_time(const char *s, struct timespec *out);

/*
 * EntryInfo (JSON) to struct stat, lstat-like: a symlink (permissions
 * "L...") is S_IFLNK. owner "user" maps to the daemon's own uid and gid,
 * "root" to 0, numbers to themselves, other names to nobody (65534).
 * st_ino is a hash of the path. -EPROTO when fields are malformed.
 */
int omni__e2b_entry_to_stat(const cJSON *entry, struct stat *st);

/* "KEY=VALUE" strings (NULL-terminated, or NULL) into obj's members,
 * the last of a key winning; strings without '=' or with a key of 256
 * bytes or more are skipped. false when out of memory. */
bool omni__e2b_env_to_json(cJSON *obj, const char *const *env);

/* A stable inode number for a workspace path. */
ino_t omni__e2b_ino(const char *abs_path);

/* --- streams (e2b_stream.c) -------------------------------------------------
 */

struct e2b_stream;

/*
 * Open a server stream: POST rpc_path with msg in one envelope. The
 * handshake (the first message) must come within handshake_ms, and then
 * some bytes at least every idle_ms (keepalives are asked for every
 * idle_ms / 3.5); timeout_ms > 0 is sent as Connect-Timeout-Ms.
 */
int omni__e2b_stream_open(struct e2b_stream **out, struct e2b_backend *eb,
                          enum e2b_method m, const char *rpc_path,
                          const cJSON *msg, long handshake_ms, long idle_ms,
                          unsigned int timeout_ms);

/*
 * The next message: 1 with *msg set (cJSON_Delete it), 0 at the end of
 * the stream (end_err/end_code/end_msg tell how it ended), or -errno for
 * a transport failure, a timeout, or a cancel. wait_ms < 0 waits as long
 * as the stream lives.
 */
int omni__e2b_stream_next(struct e2b_stream *s, cJSON **msg, long wait_ms);

/* How the stream ended: 0 or -errno, the Connect code ("" when none) and
 * message. */
int omni__e2b_stream_end(const struct e2b_stream *s, const char **code,
                         const char **msg);

/* Make a blocked or later _next() return -ECANCELED. Any thread. */
void omni__e2b_stream_cancel(struct e2b_stream *s);
void omni__e2b_stream_free(struct e2b_stream *s);

/*
 * The envelope parser on its own (for tests): feed bytes, get complete
 * messages through cb. Returns 0, or -EPROTO for a bad envelope or JSON.
 */
struct e2b_envelopes {
	unsigned char *buf;
	size_t len, cap;
	bool ended;
	char end_code[64];
	char end_msg[512];
};
typedef int (*e2b_message_cb)(cJSON *msg, void *payload);
int omni__e2b_envelopes_feed(struct e2b_envelopes *p, const void *data,
                             size_t n, e2b_message_cb cb, void *payload);
void omni__e2b_envelopes_finish(struct e2b_envelopes *p);

/* --- filesystem (e2b_files.c)
 * ------------------------------------------------- */

int omni__e2b_stat(struct omni_backend *b, const char *path, struct stat *st);
int omni__e2b_readdir(struct omni_backend *b, const char *path,
                      omni_dirent_cb cb, void *payload);
int omni__e2b_mkdir(struct omni_backend *b, const char *path, mode_t mode);
int omni__e2b_rmdir(struct omni_backend *b, const char *path);
int omni__e2b_unlink(struct omni_backend *b, const char *path);
int omni__e2b_rename(struct omni_backend *b, const char *from, const char *to,
                     unsigned int flags);
int omni__e2b_symlink(struct omni_backend *b, const char *target,
                      const char *path);
ssize_t omni__e2b_readlink(struct omni_backend *b, const char *path, char *buf,
                           size_t size);
int omni__e2b_chmod(struct omni_backend *b, const char *path, mode_t mode);
int omni__e2b_utimens(struct omni_backend *b, const char *path,
                      const struct timespec ts[2]);
int omni__e2b_truncate(struct omni_backend *b, const char *path, off_t size);
int omni__e2b_statfs(struct omni_backend *b, struct statvfs *st);

int omni__e2b_open(struct omni_backend *b, const char *path, int flags,
                   mode_t mode, struct omni_file **out);
ssize_t omni__e2b_read(struct omni_file *f, void *buf, size_t size, off_t off);
ssize_t omni__e2b_write(struct omni_file *f, const void *buf, size_t size,
                        off_t off);
int omni__e2b_fstat(struct omni_file *f, struct stat *st);
int omni__e2b_ftruncate(struct omni_file *f, off_t size);
int omni__e2b_flush(struct omni_file *f);
int omni__e2b_fsync(struct omni_file *f, bool datasync);
int omni__e2b_fallocate(struct omni_file *f, int mode, off_t off, off_t len);
int omni__e2b_file_fd(struct omni_file *f);
int omni__e2b_release(struct omni_file *f);

int omni__e2b_watch(struct omni_backend *b, omni_change_cb cb, void *payload);
void omni__e2b_watch_stop(struct e2b_backend *eb);

/* Make /tmp/workspace (start). */
int omni__e2b_make_workdir(struct e2b_backend *eb);

/* --- commands (e2b_process.c)
 * -------------------------------------------------- */

int omni__e2b_exec_start(struct omni_backend *b,
                         const struct omni_exec_request *req,
                         struct omni_exec **out);
int omni__e2b_exec_wait(struct omni_exec *e, omni_output_cb cb, void *payload,
                        struct omni_exec_status *status);
int omni__e2b_exec_input(struct omni_exec *e, const void *data, size_t len);
int omni__e2b_exec_signal(struct omni_exec *e, int sig);
int omni__e2b_exec_resize(struct omni_exec *e, unsigned short rows,
                          unsigned short cols);
void omni__e2b_exec_free(struct omni_exec *e);

/*
 * Run argv (no shell) in the sandbox as the user, LC_ALL=C, collecting
 * stdout (may be NULL) into a malloc'd string; bounded by the request
 * timeout. Returns the exit code (>= 0) or -errno when it could not run.
 */
int omni__e2b_run(struct e2b_backend *eb, const char *const *argv,
                  char **out_stdout, char **out_stderr);

/*
 * A failed helper command (exit code != 0) as -errno: the text of
 * strerror() found in its stderr (ENOENT "No such file or directory",
 * ...), else -EIO. Sets the message "e2b: <what>: <stderr>".
 */
int omni__e2b_run_error(int exit_code, const char *err, const char *what);

/* The signal named by Go's ProcessState text ("signal: killed" -> 9), or
 * 0. */
int omni__e2b_signal_from_status(const char *status);

#endif
