/*
 * backends/base/mux.h - many byte streams ("channels") over one byte stream,
 * with per-channel credit flow control (private; libc only, so the static
 * omni-agent links it too).
 *
 * The docker backend's agent mode carries every connection to omni-agent
 * over ONE hijacked exec stream running `omni-agent mux` in the container:
 * the host end (backends/docker/docker_mux.c) turns each connection into a
 * channel, the container end (exec/agent_mux.c) connects each channel to
 * the agent's Unix socket. Both ends run this engine.
 *
 * Wire format: frames of a 9-byte header, type (1 byte), channel (u32 big
 * endian), payload length (u32 big endian), then the payload:
 *	OPEN   (1) a new channel (opener -> acceptor), no payload
 *	DATA   (2) bytes of the channel
 *	CLOSE  (3) the sender will send no more on the channel (EOF)
 *	WINDOW (4) payload u32: the receiver has delivered that many more
 *	           bytes to its local end; the sender may send them again
 * Each direction of a channel starts with OMNI__MUX_WINDOW bytes of credit;
 * DATA spends it, WINDOW gives it back. A receiver never has more than one
 * window of undelivered bytes per channel, so a slow local reader (a big
 * command output nobody reads yet) stops its own channel only: the stream
 * is always read. Channel ids are never reused within one stream; frames
 * for an unknown channel are dropped. A frame that breaks the rules (too
 * long, more data than the window, unknown type) ends the stream with
 * -EPROTO.
 *
 * A channel ends when both sides have sent CLOSE and everything received
 * is delivered. A local end that cannot take more bytes (closed) makes its
 * side send CLOSE and drop (but credit back) later data.
 */
#ifndef OMNI_BASE_MUX_H
#define OMNI_BASE_MUX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define OMNI__MUX_OPEN   1
#define OMNI__MUX_DATA   2
#define OMNI__MUX_CLOSE  3
#define OMNI__MUX_WINDOW 4

#define OMNI__MUX_HEADER    9
#define OMNI__MUX_WINDOW_SZ (1u << 20)
#define OMNI__MUX_MAX_DATA  (64u << 10)

/* The stream under the channels. recv: bytes, 0 at EOF, -EAGAIN when
 * nothing is there now, -errno; send: bytes taken, -EAGAIN, -errno. Both
 * must not block. in_fd and out_fd are polled (they may be the same). */
struct omni__mux_io {
	ssize_t (*recv)(void *ctx, void *buf, size_t len);
	ssize_t (*send)(void *ctx, const void *buf, size_t len);
	int in_fd, out_fd;
	void *ctx;
	/* Acceptor side: a channel the peer opened; return a connected,
	 * non-blocking descriptor, or -errno (the channel is closed at
	 * once). NULL on the opener side (OPEN from the peer is -EPROTO). */
	int (*accept)(void *ctx, uint32_t id);
};

struct omni__mux;

/* A mux over io (copied). -ENOMEM or -errno from pipe(). */
int omni__mux_new(struct omni__mux **out, const struct omni__mux_io *io);
void omni__mux_free(struct omni__mux *m);

/*
 * Pump until the stream ends or omni__mux_stop() is called: 0 for EOF or
 * stop, -errno for a stream error or a protocol violation. On return every
 * channel's local descriptor is closed (their users see EOF), and later
 * omni__mux_open() calls fail with -ECONNRESET.
 */
int omni__mux_run(struct omni__mux *m);

/*
 * Opener side, from any thread: a new channel. *fd gets the user's end of a
 * socketpair (blocking, close-on-exec); the OPEN frame goes out with the
 * first bytes written (no round trip). -ECONNRESET once the run has ended.
 */
int omni__mux_open(struct omni__mux *m, int *fd);

/* Ask omni__mux_run() to return (any thread). */
void omni__mux_stop(struct omni__mux *m);

/* Counters, for tests and stats: channels open now, opened in total. */
void omni__mux_counts(struct omni__mux *m, unsigned *open, unsigned *total);

#endif
