/*
 * omni/ipc_files.h - the file protocol: the workspace's files through
 * omni-agent, for the docker backend's agent mode (nothing bind-mounted
 * from this machine). Two parties speak it: omni-agent (exec/agent_files.c)
 * and the docker backend (backends/docker/docker_remote.c). The encoder and
 * decoder live once, in backends/base/ipc_files.c, libc only, so that the
 * static omni-agent links them. Private to omnifs (omni__ prefix).
 *
 * Transport: the frames of omni/ipc.h (u32 BE length, type, payload; at
 * most OMNI_IPC_MAX_FRAME) on a connection to the agent's ipc server. The
 * client's first frame is
 *
 *   FILES (0x06)   u32 version (OMNI_FILES_VERSION)
 *
 * and the connection becomes a file session: the client sends requests,
 * the agent answers each one in order, one request at a time (the host
 * keeps a pool of sessions for concurrency). The client need not wait for
 * an answer to FILES: its first request may follow at once. An agent that
 * does not know FILES answers an ERROR frame (omni/ipc.h) and closes.
 *
 * Integers are big-endian; i64 is two's complement. A string is u32 length
 * and that many bytes (no NUL; a NUL inside is malformed). An attribute
 * block (ATTR) is, in this order:
 *	u32 mode (S_IFMT type bits and 07777 only), u32 nlink, u32 uid,
 *	u32 gid, i64 size (>= 0), i64 blocks (>= 0), u32 blksize, u64 ino,
 *	u64 rdev, then atime, mtime, ctime as i64 seconds and u32 ns (< 1e9)
 * (88 bytes).
 *
 * Every request has the same layout (fields an operation does not use are
 * zero or empty), the operation being the frame type:
 *	str path, str path2, u32 mode, u32 flags, u32 uid, u32 gid,
 *	i64 off, u64 len, atime (i64 s, u32 ns), mtime (i64 s, u32 ns),
 *	then the rest of the payload is data
 * path is workspace-relative and normalised ("" is the root; no leading
 * '/', no empty, "." or ".." component): the agent resolves it beneath
 * its --workdir (openat2 RESOLVE_BENEATH) and refuses anything else.
 *
 *   op             uses                          answer
 *   STAT 0x20      path, flags&1: follow         ATTR
 *   LIST 0x21      path                          ENTRIES*, then STATUS 0
 *   MKDIR 0x22     path, mode                    STATUS
 *   RMDIR 0x23     path                          STATUS
 *   UNLINK 0x24    path                          STATUS
 *   RENAME 0x25    path, path2 (to), flags       STATUS
 *                  (RENAME_NOREPLACE 1, RENAME_EXCHANGE 2)
 *   SYMLINK 0x26   path2 (the target, any text), path   STATUS
 *   READLINK 0x27  path                          LINK
 *   LINK 0x28      path, path2 (the new name)    STATUS
 *   CHMOD 0x29     path, mode                    STATUS
 *   CHOWN 0x2a     path, uid, gid ((u32)-1 keeps) STATUS
 *   UTIMENS 0x2b   path, atime, mtime (ns may be UTIME_NOW, UTIME_OMIT)
 *                                                STATUS
 *   TRUNCATE 0x2c  path, off (the size)          STATUS
 *   STATFS 0x2d    -                             STATFS
 *   OPEN 0x2e      path, flags (OMNI_FILES_O_*), mode
 *                  opens (creating, truncating, O_EXCL) and closes again;
 *                  the mode given to a new file is exactly mode
 *                                                ATTR of the file
 *   READ 0x2f      path, off, len (<= OMNI_FILES_MAX_READ)
 *                  DATA* (each <= OMNI_FILES_MAX_DATA, in order), then
 *                  STATUS with the byte count (short at end of file)
 *   WRITE 0x30     path, off, data (<= OMNI_FILES_MAX_DATA), flags:
 *                  1 append; 2 create (with exactly mode) when missing;
 *                  4 truncate first (so one request makes a whole small
 *                  file)                         ATTR of the file after the
 *                                                write, then STATUS with
 *                                                the count
 *   FSYNC 0x31     path                          STATUS
 *   WATCH 0x32     -   the session becomes a change stream until the
 *                  client closes it: READY once inotify watches the whole
 *                  workspace (recursively; new directories are added and
 *                  what they already hold is reported), then EVENT frames;
 *                  OVERFLOW when events were lost (inotify's queue
 *                  overflowed, or a watch could not be added): drop every
 *                  cached thing.
 *
 * Answers:
 *   STATUS 0xa0    i32 result (0, a count, or a negative errno), then a
 *                  UTF-8 message (with errors)
 *   ATTR 0xa1      an attribute block
 *   ENTRIES 0xa2   u32 count, then count times (str name, ATTR); a name is
 *                  1..255 bytes, without '/' or NUL, not "." or ".."
 *   DATA 0xa3      bytes of content
 *   LINK 0xa4      str target (1..PATH_MAX-1 bytes)
 *   STATFS 0xa5    u64 bsize, frsize, blocks, bfree, bavail, files, ffree,
 *                  favail, namemax
 *   EVENT 0xa6     u8 has_attr, str path (as request paths, not ""),
 *                  ATTR when has_attr (a creation or change; none for a
 *                  removal or a name moved away)
 *   READY 0xa7, OVERFLOW 0xa8   empty
 * Any answer may instead be STATUS with a negative errno (the request
 * failed); an error frame in the middle of a LIST or READ ends it.
 *
 * Everything the agent sends is untrusted input to a daemon that may run
 * as root: the decoders check every length, count, name and value and
 * return -EPROTO for anything malformed, never reading past the frame.
 */
#ifndef OMNI_IPC_FILES_H
#define OMNI_IPC_FILES_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "omni/ipc.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI_IPC_FILES     0x06
#define OMNI_FILES_VERSION 1u

/* Content bytes in one DATA or WRITE frame: the frame limit less room for
 * a request's path and fields. */
#define OMNI_FILES_MAX_DATA (OMNI_IPC_MAX_FRAME - 8192)
/* Bytes one READ may ask for (streamed as DATA frames). */
#define OMNI_FILES_MAX_READ (64u << 20)
/* The size of an attribute block on the wire. */
#define OMNI_FILES_ATTR_SIZE 88

enum omni_files_op {
	OMNI_FILES_STAT = 0x20,
	OMNI_FILES_LIST = 0x21,
	OMNI_FILES_MKDIR = 0x22,
	OMNI_FILES_RMDIR = 0x23,
	OMNI_FILES_UNLINK = 0x24,
	OMNI_FILES_RENAME = 0x25,
	OMNI_FILES_SYMLINK = 0x26,
	OMNI_FILES_READLINK = 0x27,
	OMNI_FILES_LINK = 0x28,
	OMNI_FILES_CHMOD = 0x29,
	OMNI_FILES_CHOWN = 0x2a,
	OMNI_FILES_UTIMENS = 0x2b,
	OMNI_FILES_TRUNCATE = 0x2c,
	OMNI_FILES_STATFS = 0x2d,
	OMNI_FILES_OPEN = 0x2e,
	OMNI_FILES_READ = 0x2f,
	OMNI_FILES_WRITE = 0x30,
	OMNI_FILES_FSYNC = 0x31,
	OMNI_FILES_WATCH = 0x32,
};

enum omni_files_answer {
	OMNI_FILES_R_STATUS = 0xa0,
	OMNI_FILES_R_ATTR = 0xa1,
	OMNI_FILES_R_ENTRIES = 0xa2,
	OMNI_FILES_R_DATA = 0xa3,
	OMNI_FILES_R_LINK = 0xa4,
	OMNI_FILES_R_STATFS = 0xa5,
	OMNI_FILES_R_EVENT = 0xa6,
	OMNI_FILES_R_READY = 0xa7,
	OMNI_FILES_R_OVERFLOW = 0xa8,
};

/* OPEN flags on the wire (open(2)'s values are not assumed). */
#define OMNI_FILES_O_RDONLY 0x0u
#define OMNI_FILES_O_WRONLY 0x1u
#define OMNI_FILES_O_RDWR   0x2u
#define OMNI_FILES_O_CREAT  0x10u
#define OMNI_FILES_O_EXCL   0x20u
#define OMNI_FILES_O_TRUNC  0x40u
#define OMNI_FILES_O_APPEND 0x80u

/* STAT flags and WRITE flags. */
#define OMNI_FILES_FOLLOW   0x1u
#define OMNI_FILES_APPEND   0x1u
#define OMNI_FILES_W_CREATE 0x2u
#define OMNI_FILES_W_TRUNC  0x4u

/* A request. Decoded, path and path2 are NUL-terminated copies; data
 * points into the frame decoded (valid while it is). */
struct omni__files_req {
	uint8_t op;
	char path[PATH_MAX];
	char path2[PATH_MAX];
	uint32_t mode, flags, uid, gid;
	int64_t off;
	uint64_t len;
	struct timespec ts[2];
	const unsigned char *data;
	size_t data_len;
};

/* open(2) flags to and from the wire's. */
uint32_t omni__files_oflags_to_wire(int flags);
int omni__files_oflags_from_wire(uint32_t wire);

/* Is p a request path: "" or names joined by single '/', none empty, "."
 * or "..", shorter than PATH_MAX? */
bool omni__files_path_ok(const char *p);
/* Is the name (n bytes) a directory entry's: 1..255 bytes, no '/', no
 * NUL, not "." or ".."? */
bool omni__files_name_ok(const char *name, size_t n);

/* Encode req (without data) into buf, replacing its content; the caller
 * sends buf then req->data_len bytes of data as one frame of type req->op
 * (omni_ipc_send2). -ENAMETOOLONG, -ENOMEM. */
int omni__files_req_encode(const struct omni__files_req *req,
                           struct omni_ipc_buf *buf);
/* Decode a request frame. -EPROTO when malformed, -ENAMETOOLONG. */
int omni__files_req_decode(struct omni__files_req *req, uint8_t type,
                           const unsigned char *data, size_t len);

/* Append an attribute block, a directory entry, a STATFS payload, an
 * EVENT payload to buf. -ENOMEM or -EMSGSIZE (the frame is full). */
int omni__files_put_attr(struct omni_ipc_buf *buf, const struct stat *st);
int omni__files_put_entry(struct omni_ipc_buf *buf, const char *name,
                          const struct stat *st);
int omni__files_put_statfs(struct omni_ipc_buf *buf, const struct statvfs *st);
int omni__files_put_event(struct omni_ipc_buf *buf, const char *path,
                          const struct stat *st);

/* Send a STATUS frame: result, and msg (may be NULL) when result < 0. */
int omni__files_send_status(int fd, int64_t result, const char *msg);

/*
 * Decoders of answers. Each checks the whole payload: -EPROTO with a
 * message naming what is wrong ("file protocol: ..."), never reading
 * outside [data, data + len).
 */
/* STATUS: *result, and the message (NUL-terminated, truncated to fit msg;
 * control characters replaced). */
int omni__files_decode_status(const unsigned char *data, size_t len,
                              int64_t *result, char *msg, size_t msg_size);
int omni__files_decode_attr(const unsigned char *data, size_t len,
                            struct stat *st);
/* ENTRIES: cb for each (name NUL-terminated); the whole frame is checked
 * before the first call. A non-zero return of cb stops and is returned. */
int omni__files_decode_entries(const unsigned char *data, size_t len,
                               int (*cb)(const char *name,
                                         const struct stat *st, void *payload),
                               void *payload);
/* LINK into buf (NUL-terminated; needs PATH_MAX bytes); the length. */
int omni__files_decode_link(const unsigned char *data, size_t len, char *buf,
                            size_t size, size_t *out_len);
int omni__files_decode_statfs(const unsigned char *data, size_t len,
                              struct statvfs *st);
/* EVENT: the path into path (PATH_MAX bytes), *has_st and st. */
int omni__files_decode_event(const unsigned char *data, size_t len, char *path,
                             size_t path_size, struct stat *st, bool *has_st);

#ifdef __cplusplus
}
#endif

#endif
