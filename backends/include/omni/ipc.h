/*
 * omni/ipc.h - the exec wire protocol, shared by four parties: omni-exec
 * (exec/), the omnifs daemon's control server (fs/), the docker backend
 * (backends/docker/) and omni-agent inside a container (exec/agent.c).
 * The encoder and decoder live once, in backends/base/ipc.c, the Unix
 * socket helpers in backends/base/socket.c and the server loop in
 * backends/base/ipc_server.c (omni/ipc_server.h), all libc only so that
 * omni-agent can be linked statically.
 *
 * Transport: a Unix stream socket. Everything is a frame:
 *
 *	+-------------------+--------+-------------------------+
 *	| length: u32 BE    | type   | payload (length-1 bytes) |
 *	+-------------------+--------+-------------------------+
 *
 * length counts the type byte and the payload; it is at least 1 and at
 * most OMNI_IPC_MAX_FRAME. Integers are big-endian.
 *
 * A connection carries one exchange. The client sends first:
 *
 *   EXEC (0x01)    the request, as a sequence of fields
 *                  (tag u8, length u32, value):
 *                    ARG 1 (repeated, in order)  argv strings
 *                    SHELL 2                     a /bin/sh -c string
 *                    CWD 3                       directory: absolute in the
 *                                                sandbox or workspace-relative
 *                    ENV 4 (repeated)            "KEY=VALUE"
 *                    TIMEOUT_MS 5                u32
 *                    TTY 6                       u16 rows, u16 cols
 *                    STDIN 7                     u8 1: keep stdin open
 *                  Unknown tags are skipped, so fields can be added.
 *   CONTROL (0x05) a command for the daemon itself, UTF-8 text:
 *                  "ping", "stats", "save [MESSAGE]", "invalidate"
 *
 * After EXEC, the client may send at any time:
 *   STDIN (0x02)   bytes for the command's stdin; an empty payload is EOF
 *   SIGNAL (0x03)  u32 signal number, delivered to the process group
 *   RESIZE (0x04)  u16 rows, u16 cols of the terminal
 *
 * The server answers:
 *   STARTED (0x85) u32 pid (in the sandbox's numbering; may be 0)
 *   STDOUT (0x81), STDERR (0x82)   output chunks, in order per stream
 *   EXIT (0x83)    i32 exit code (status, 128+N, 124 timeout), i32 signal,
 *                  u8 timed out; the last frame of an exchange
 *   ERROR (0x84)   i32 negative errno, then a UTF-8 message; the request
 *                  failed as a whole (last frame)
 *   REPLY (0x86)   u32 status (0 ok), then UTF-8 text: the answer to
 *                  CONTROL (last frame)
 *
 * Either side closing the socket ends the exchange; a server that loses
 * its client kills the command's process group.
 */
#ifndef OMNI_IPC_H
#define OMNI_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI_IPC_MAX_FRAME (1u << 20)

enum omni_ipc_type {
	OMNI_IPC_EXEC = 0x01,
	OMNI_IPC_STDIN = 0x02,
	OMNI_IPC_SIGNAL = 0x03,
	OMNI_IPC_RESIZE = 0x04,
	OMNI_IPC_CONTROL = 0x05,
	OMNI_IPC_STDOUT = 0x81,
	OMNI_IPC_STDERR = 0x82,
	OMNI_IPC_EXIT = 0x83,
	OMNI_IPC_ERROR = 0x84,
	OMNI_IPC_STARTED = 0x85,
	OMNI_IPC_REPLY = 0x86,
};

enum omni_ipc_field {
	OMNI_IPC_F_ARG = 1,
	OMNI_IPC_F_SHELL = 2,
	OMNI_IPC_F_CWD = 3,
	OMNI_IPC_F_ENV = 4,
	OMNI_IPC_F_TIMEOUT_MS = 5,
	OMNI_IPC_F_TTY = 6,
	OMNI_IPC_F_STDIN = 7,
};

/* A growable byte buffer with a hard cap (the frame limit). */
struct omni_ipc_buf {
	unsigned char *data;
	size_t len, cap;
};

void omni_ipc_buf_finish(struct omni_ipc_buf *buf);
int omni_ipc_buf_put(struct omni_ipc_buf *buf, const void *data, size_t len);
int omni_ipc_buf_put_u8(struct omni_ipc_buf *buf, uint8_t v);
int omni_ipc_buf_put_u16(struct omni_ipc_buf *buf, uint16_t v);
int omni_ipc_buf_put_u32(struct omni_ipc_buf *buf, uint32_t v);
/* A field: tag, u32 length, value. */
int omni_ipc_buf_put_field(struct omni_ipc_buf *buf, uint8_t tag,
                           const void *data, size_t len);

uint16_t omni_ipc_get_u16(const unsigned char *p);
uint32_t omni_ipc_get_u32(const unsigned char *p);

/* A decoded EXEC request; strings point into storage owned by it. */
struct omni_ipc_request {
	char **argv; /* NULL-terminated, or NULL */
	char *shell;
	char *cwd;
	char **env; /* NULL-terminated, or NULL */
	uint32_t timeout_ms;
	bool tty;
	uint16_t rows, cols;
	bool want_stdin;
};

/* Encode a request into buf (the EXEC payload, without frame header). */
int omni_ipc_request_encode(const struct omni_ipc_request *req,
                            struct omni_ipc_buf *buf);
/* Decode an EXEC payload. -EPROTO on malformed input, -ENOMEM. */
int omni_ipc_request_decode(struct omni_ipc_request *req,
                            const unsigned char *data, size_t len);
void omni_ipc_request_finish(struct omni_ipc_request *req);

/*
 * Send one frame, retrying on EINTR and short writes. Returns 0 or -errno
 * (-EPIPE when the peer is gone). Callers serialise writers on one fd.
 * MSG_NOSIGNAL is used, so no SIGPIPE is raised.
 */
int omni_ipc_send(int fd, uint8_t type, const void *payload, size_t len);

/* Send a frame whose payload is two pieces (a header and data). */
int omni_ipc_send2(int fd, uint8_t type, const void *a, size_t alen,
                   const void *b, size_t blen);

/* Convenience senders. */
int omni_ipc_send_exit(int fd, int exit_code, int sig, bool timed_out);
int omni_ipc_send_error(int fd, int err, const char *msg);
int omni_ipc_send_u32(int fd, uint8_t type, uint32_t v);

/*
 * Write all of data to a pipe, terminal or file descriptor, waiting on a
 * non-blocking one. SIGPIPE is blocked in the calling thread for the call
 * and a pending one eaten, so a reader that went away gives -EPIPE rather
 * than a signal, also in programs that do not ignore SIGPIPE. Returns 0
 * or -errno.
 */
int omni_ipc_write_all(int fd, const void *data, size_t len);

/*
 * Receive one frame into buf (replacing its content). Returns 1 on a
 * frame, 0 on orderly end of stream at a frame boundary, or -errno
 * (-EPROTO for a bad length or a stream cut inside a frame).
 */
int omni_ipc_recv(int fd, uint8_t *type, struct omni_ipc_buf *buf);

/* --- the transport: Unix stream sockets (backends/base/socket.c) --------- */

/* What omni__unix_listen() does with a file already at the path. */
enum omni__unix_stale {
	/* A socket nobody answers on is removed; a live one is
	 * -EADDRINUSE, anything else -EEXIST. */
	OMNI__UNIX_STALE_PROBE,
	/* Any socket is removed unasked (its server is known to be gone);
	 * anything else makes bind() fail. */
	OMNI__UNIX_STALE_REMOVE,
};

/*
 * Listen on a new socket at path, of exactly the given mode (the file is
 * never wider, even while it is created), with close-on-exec. st_out (may
 * be NULL) gets the socket file's identity, to remove it later only if it
 * is still ours. Returns the listening descriptor, or -errno with a
 * message: -ENAMETOOLONG when path does not fit a sockaddr_un,
 * -EADDRINUSE, -EEXIST (see enum omni__unix_stale), or bind's and
 * listen's errors (the file is removed again on the latter).
 */
int omni__unix_listen(const char *path, mode_t mode,
                      enum omni__unix_stale stale, struct stat *st_out);

/*
 * Connect to the socket at path (close-on-exec; EINTR is retried). *out
 * gets the descriptor or -1. Returns 0 or -errno with a message:
 * -ENAMETOOLONG, -ENOENT (no such socket), -ECONNREFUSED (nobody
 * listens: a stale socket), -EACCES, ...
 */
int omni__unix_connect(const char *path, int *out);

#ifdef __cplusplus
}
#endif

#endif
