/*
 * backends/journal/hook.h - the journal's side of the vfs wrappers
 * (private: backends/core/backend.c and session.c).
 *
 * A session whose journal is on gives its face backend (the one the mount
 * calls) a struct omni__journal_hook; every omni_vfs_* and
 * omni_vfs_node_* wrapper that changes something calls one of these after
 * the call, with its result, when b->journal is set (one pointer test
 * otherwise). The hooks turn what the call had into workspace-relative
 * paths: path calls as given (the workdir prefix and leading slashes
 * dropped), node calls by reading the descriptor's path in /proc/self/fd
 * (once: the paths are cached, see hook.c) and dropping the workspace
 * root's, read once at attach. That keeps the journal out of the fs
 * layer, and it records the same for every consumer of the library (the
 * mount, a program using omni/vfs.h).
 *
 * Writes are coalesced per open: a file opened for writing carries a
 * counter (struct omni_file's journal), and its release records one
 * "write" with the bytes written and the range [lowest offset, highest
 * end). Commands are recorded when their wait ends, with the bytes of
 * each output stream counted on the way.
 */
#ifndef OMNI_JOURNAL_HOOK_H
#define OMNI_JOURNAL_HOOK_H

#include <stdbool.h>
#include <sys/types.h>

#include "omni/vfs.h"

struct omni_backend;
struct omni_file;
struct omni_exec;
struct omni__journal;

/* Give b (running) the journal at db_path: b->journal is set. */
int omni__journal_attach(struct omni_backend *b, const char *db_path);
/* Commit, close and take it away. */
void omni__journal_detach(struct omni_backend *b);
/* The journal of b, or NULL. */
struct omni__journal *omni__journal_of(const struct omni_backend *b);

/* A path call: op on path (and path2), size and mode -1 when none. */
void omni__journal_path_op(struct omni_backend *b, const char *op,
                           const char *path, const char *path2, long long size,
                           long long mode, int result);
/* omni_vfs_node_root or omni_vfs_node_lookup handed out fd: a number that
 * may have named another file before (the path cache forgets it). */
void omni__journal_node_fd(struct omni_backend *b, int fd);
/* A node call: op on name in fd (name NULL: fd itself), and on name2 in
 * fd2 (fd2 < 0: none; with fd2 < 0 and name2 set, name2 is text such as
 * a symlink's target). */
void omni__journal_node_op(struct omni_backend *b, const char *op, int fd,
                           const char *name, int fd2, const char *name2,
                           long long size, long long mode, int result);

/* A file was opened (f NULL: it failed with result): by path, or by node
 * (fd, name as in omni__journal_node_op). Creation is recorded now; a
 * file open for writing gets its write counter. */
void omni__journal_opened(struct omni_backend *b, struct omni_file *f,
                          const char *path, int fd, const char *name, int flags,
                          mode_t mode, bool create, int result);
void omni__journal_wrote(struct omni_file *f, off_t off, ssize_t n);
void omni__journal_ftruncated(struct omni_file *f, off_t size, int result);
/* Before the backend's release: the coalesced "write" record. */
void omni__journal_releasing(struct omni_file *f);

/* Commands: after a start (e NULL: it failed with result), around the
 * wait, and before the free (a command never waited for is recorded
 * then). */
void omni__journal_exec_started(struct omni_backend *b,
                                const struct omni_exec_request *req,
                                struct omni_exec *e, int result);
struct omni__journal_counter {
	omni_output_cb cb; /* the caller's, or NULL */
	void *payload;
	long long out, err;
};
/* The output callback that counts, then calls the caller's (payload: a
 * struct omni__journal_counter). */
int omni__journal_count_output(int stream, const void *data, size_t len,
                               void *payload);
void omni__journal_exec_waited(struct omni_exec *e,
                               const struct omni__journal_counter *c,
                               const struct omni_exec_status *status,
                               int result);
void omni__journal_exec_freeing(struct omni_exec *e);

#endif
