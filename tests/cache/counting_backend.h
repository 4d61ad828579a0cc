/*
 * tests/cache/counting_backend.h - an in-memory remote backend that
 * counts the calls made to it, for testing the cache decorator
 * (backends/cache/) without a mount or a server.
 *
 * It fills the ops table of omni/sys/backend_impl.h with
 * OMNI_CAP_REMOTE (what the cache sits in front of), plus the caps a test
 * asks for (OMNI_CAP_WATCH, OMNI_CAP_REMOVE_DIRS, OMNI_CAP_FILE_FD). Its
 * workspace is a flat list of paths, each a directory, a regular file
 * with its content, or a symlink. An open for reading is a download, an
 * open for writing an upload (the content lands at release), as with the
 * E2B backend; read, write, flush, fstat and release belong to their
 * open and are not counted as requests.
 *
 * The test keeps the struct counting_backend pointer after wrapping it in
 * a cache (which owns and frees it) to read counters, inject failures,
 * change the workspace behind the cache's back and send change events.
 * Every function is thread-safe: the cache calls it from its own threads.
 */
#ifndef OMNI_TESTS_COUNTING_BACKEND_H
#define OMNI_TESTS_COUNTING_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "omni/omni.h"

/* The counted operations (a request each). */
enum counting_op {
	COUNT_STAT,
	COUNT_READDIR,
	COUNT_MKDIR,
	COUNT_RMDIR,
	COUNT_UNLINK,
	COUNT_RENAME,
	COUNT_SYMLINK,
	COUNT_READLINK,
	COUNT_LINK,
	COUNT_CHMOD,
	COUNT_CHOWN,
	COUNT_UTIMENS,
	COUNT_TRUNCATE,
	COUNT_STATFS,
	COUNT_DOWNLOAD, /* open without write access */
	COUNT_UPLOAD,   /* open with write access */
	COUNT_OPS
};

struct counting_backend;

/* A backend (not started) with OMNI_CAP_REMOTE | extra_caps. */
struct counting_backend *counting_backend_new(unsigned int extra_caps);

/* The backend to hand to omni__cache_wrap() (which then owns it). */
struct omni_backend *counting_backend_base(struct counting_backend *cb);

/* Calls of op since the last reset; all requests; zero the counters. */
long counting_count(struct counting_backend *cb, enum counting_op op);
long counting_total(struct counting_backend *cb);
void counting_reset(struct counting_backend *cb);
/* "stat=1 readdir=2 ..." for assertion messages (static buffer). */
const char *counting_summary(struct counting_backend *cb);

/* Make every later call of op fail with err (a negative errno; 0 stops
 * failing). The call is still counted. */
void counting_fail(struct counting_backend *cb, enum counting_op op, int err);

/* Change the workspace behind the cache's back (no call counted).
 * counting_put makes the parents as directories. */
void counting_put(struct counting_backend *cb, const char *path,
                  const char *data, mode_t mode);
void counting_put_dir(struct counting_backend *cb, const char *path);
void counting_remove(struct counting_backend *cb, const char *path);

/* The content of path (malloc'd, NUL-terminated) or NULL when it is not
 * a regular file; its mode (0 when missing). */
char *counting_get(struct counting_backend *cb, const char *path);
mode_t counting_mode(struct counting_backend *cb, const char *path);

/* The lstat-like attributes of path: 0 or -ENOENT. */
int counting_lookup(struct counting_backend *cb, const char *path,
                    struct stat *st);

/* Send a change event to whoever watches (see omni_change_cb). */
void counting_event(struct counting_backend *cb, const char *path,
                    const struct stat *st);

#endif
