/*
 * tests/base/test_ipc.c - the exec wire protocol (omni/ipc.h, backends/ipc.c).
 *
 *   buffers     big-endian put/get helpers, fields, the frame cap
 *   requests    encode/decode round trips (argv, shell, cwd, env, timeout,
 *               tty, stdin), the exact field layout, malformed payloads
 *               (-EPROTO: truncated header or value, both argv and shell,
 *               neither, NUL inside a string, repeated shell, bad fixed
 *               sizes), unknown tags skipped
 *   frames      over a socketpair: send/recv, empty payloads, send2, EOF
 *               at a frame boundary (0), a stream cut inside a frame or
 *               its header (-EPROTO), bad lengths (-EPROTO), oversize
 *               sends (-EMSGSIZE), a gone peer (-EPIPE, no SIGPIPE), a
 *               1 MiB frame, a pipe instead of a socket; the EXIT and
 *               ERROR payload layouts
 *   transport   omni__unix_listen() and omni__unix_connect(): a path too
 *               long (-ENAMETOOLONG), the exact mode whatever the umask,
 *               a stale socket replaced, a live one kept (-EADDRINUSE),
 *               another file kept (-EEXIST), a socket removed unasked
 *               (OMNI__UNIX_STALE_REMOVE), the file's identity, connect
 *               to nothing (-ENOENT) and to a stale socket (-ECONNREFUSED)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "omni/error.h"
#include "omni/ipc.h"

TestSuite(ipc, .fini = omni_test_leak_check, .timeout = 30);

static void make_pair(int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

/* --- buffers -------------------------------------------------------------- */

Test(ipc, buffer_helpers_are_big_endian)
{
	struct omni_ipc_buf b = { 0 };
	static const unsigned char want[] = { 0xAB, 0x12, 0x34, 0xDE, 0xAD,
		                              0xBE, 0xEF, 'x',  'y' };

	omni_assert_ok(omni_ipc_buf_put_u8(&b, 0xAB));
	omni_assert_ok(omni_ipc_buf_put_u16(&b, 0x1234));
	omni_assert_ok(omni_ipc_buf_put_u32(&b, 0xDEADBEEF));
	omni_assert_ok(omni_ipc_buf_put(&b, "xy", 2));
	omni_assert_ok(omni_ipc_buf_put(&b, NULL, 0));
	cr_assert_eq(b.len, sizeof(want));
	cr_assert_eq(memcmp(b.data, want, sizeof(want)), 0);
	cr_assert_eq(omni_ipc_get_u16(b.data + 1), 0x1234);
	cr_assert_eq(omni_ipc_get_u32(b.data + 3), 0xDEADBEEF);
	omni_ipc_buf_finish(&b);
	cr_assert_null(b.data);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
	omni_ipc_buf_finish(&b);
}

Test(ipc, field_layout)
{
	struct omni_ipc_buf b = { 0 };

	omni_assert_ok(omni_ipc_buf_put_field(&b, 9, "abc", 3));
	omni_assert_ok(omni_ipc_buf_put_field(&b, 10, NULL, 0));
	cr_assert_eq(b.len, 8 + 5);
	cr_assert_eq(memcmp(b.data,
	                    "\x09\0\0\0\x03"
	                    "abc\x0a\0\0\0\0",
	                    13),
	             0);
	omni_ipc_buf_finish(&b);
}

Test(ipc, buffer_cap)
{
	struct omni_ipc_buf b = { 0 };
	char *big = calloc(1, OMNI_IPC_MAX_FRAME + 1);

	cr_assert_not_null(big);
	cr_assert_eq(omni_ipc_buf_put(&b, big, OMNI_IPC_MAX_FRAME + 1),
	             -EMSGSIZE);
	omni_assert_ok(omni_ipc_buf_put(&b, big, OMNI_IPC_MAX_FRAME));
	cr_assert_eq(omni_ipc_buf_put_u8(&b, 1), -EMSGSIZE);
	cr_assert_eq(b.len, OMNI_IPC_MAX_FRAME);
	omni_ipc_buf_finish(&b);
	cr_assert_eq(omni_ipc_buf_put_field(&b, 1, big, OMNI_IPC_MAX_FRAME + 1),
	             -EMSGSIZE);
	omni_ipc_buf_finish(&b);
	free(big);
}

/* --- requests ------------------------------------------------------------- */

static void decode_ok(struct omni_ipc_request *out,
                      const struct omni_ipc_buf *b)
{
	int rc = omni_ipc_request_decode(out, b->data, b->len);

	cr_assert_eq(rc, 0, "decode: %d", rc);
}

Test(ipc, request_round_trip_argv)
{
	char *argv[] = { "ls", "-l", "a b", "", NULL };
	char *env[] = { "A=1", "B=two words", NULL };
	struct omni_ipc_request req = {
		.argv = argv,
		.cwd = "sub/dir",
		.env = env,
		.timeout_ms = 123456,
		.tty = true,
		.rows = 50,
		.cols = 300,
		.want_stdin = true,
	};
	struct omni_ipc_request got;
	struct omni_ipc_buf b = { 0 };

	omni_assert_ok(omni_ipc_request_encode(&req, &b));
	decode_ok(&got, &b);
	cr_assert_not_null(got.argv);
	for (int i = 0; i < 4; i++)
		cr_assert_str_eq(got.argv[i], argv[i]);
	cr_assert_null(got.argv[4]);
	cr_assert_null(got.shell);
	cr_assert_str_eq(got.cwd, "sub/dir");
	cr_assert_str_eq(got.env[0], "A=1");
	cr_assert_str_eq(got.env[1], "B=two words");
	cr_assert_null(got.env[2]);
	cr_assert_eq(got.timeout_ms, 123456);
	cr_assert(got.tty);
	cr_assert_eq(got.rows, 50);
	cr_assert_eq(got.cols, 300);
	cr_assert(got.want_stdin);
	omni_ipc_request_finish(&got);
	cr_assert_null(got.argv);
	cr_assert_null(got.cwd);
	omni_ipc_buf_finish(&b);
}

Test(ipc, request_round_trip_shell_minimal)
{
	struct omni_ipc_request req = { .shell = "echo 'hi' | tr a-z A-Z" };
	struct omni_ipc_request got;
	struct omni_ipc_buf b = { 0 };

	omni_assert_ok(omni_ipc_request_encode(&req, &b));
	/* Only the SHELL field: tag, length, text. */
	cr_assert_eq(b.len, 5 + strlen(req.shell));
	cr_assert_eq(b.data[0], OMNI_IPC_F_SHELL);
	cr_assert_eq(omni_ipc_get_u32(b.data + 1), strlen(req.shell));
	decode_ok(&got, &b);
	cr_assert_null(got.argv);
	cr_assert_str_eq(got.shell, req.shell);
	cr_assert_null(got.cwd);
	cr_assert_null(got.env);
	cr_assert_eq(got.timeout_ms, 0);
	cr_assert_not(got.tty);
	cr_assert_not(got.want_stdin);
	omni_ipc_request_finish(&got);
	omni_ipc_buf_finish(&b);
}

Test(ipc, request_field_layout)
{
	char *argv[] = { "ls", NULL };
	struct omni_ipc_request req = { .argv = argv,
		                        .timeout_ms = 0x01020304,
		                        .tty = true,
		                        .rows = 0x0506,
		                        .cols = 0x0708,
		                        .want_stdin = true };
	struct omni_ipc_buf b = { 0 };
	static const unsigned char want[] = {
		OMNI_IPC_F_ARG,
		0,
		0,
		0,
		2,
		'l',
		's',
		OMNI_IPC_F_TIMEOUT_MS,
		0,
		0,
		0,
		4,
		1,
		2,
		3,
		4,
		OMNI_IPC_F_TTY,
		0,
		0,
		0,
		4,
		5,
		6,
		7,
		8,
		OMNI_IPC_F_STDIN,
		0,
		0,
		0,
		1,
		1,
	};

	omni_assert_ok(omni_ipc_request_encode(&req, &b));
	cr_assert_eq(b.len, sizeof(want));
	cr_assert_eq(memcmp(b.data, want, sizeof(want)), 0);
	omni_ipc_buf_finish(&b);
}

/* Decode raw bytes and expect rc; the request is left empty on failure. */
static void expect_decode(const void *data, size_t len, int rc)
{
	struct omni_ipc_request got;

	memset(&got, 0x5a, sizeof(got));
	int r = omni_ipc_request_decode(&got, data, len);
	cr_assert_eq(r, rc, "decode gave %d, expected %d", r, rc);
	if (r < 0) {
		cr_assert_null(got.argv);
		cr_assert_null(got.shell);
		cr_assert_null(got.cwd);
		cr_assert_null(got.env);
	}
	omni_ipc_request_finish(&got);
}

#define RAW(s) s, sizeof(s) - 1

Test(ipc, malformed_requests)
{
	/* Empty: neither argv nor shell. */
	expect_decode("", 0, -EPROTO);
	/* Only a cwd. */
	expect_decode(RAW("\x03\0\0\0\x01x"), -EPROTO);
	/* Both argv and shell. */
	expect_decode(RAW("\x01\0\0\0\x02ls\x02\0\0\0\x02ls"), -EPROTO);
	/* A truncated field header (4 of 5 bytes). */
	expect_decode(RAW("\x02\0\0\0"), -EPROTO);
	expect_decode(RAW("\x02\0\0\0\x02ls\x03"), -EPROTO);
	/* A value shorter than its length. */
	expect_decode(RAW("\x02\0\0\0\x05ls"), -EPROTO);
	expect_decode(RAW("\x02\xff\xff\xff\xffls"), -EPROTO);
	/* NUL inside strings. */
	expect_decode(RAW("\x02\0\0\0\x03l\0s"), -EPROTO);
	expect_decode(RAW("\x01\0\0\0\x03l\0s"), -EPROTO);
	expect_decode(RAW("\x02\0\0\0\x02ls\x04\0\0\0\x03"
	                  "A\0B"),
	              -EPROTO);
	expect_decode(RAW("\x02\0\0\0\x02ls\x03\0\0\0\x02\0x"), -EPROTO);
	/* SHELL or CWD twice. */
	expect_decode(RAW("\x02\0\0\0\x01x\x02\0\0\0\x01y"), -EPROTO);
	expect_decode(RAW("\x02\0\0\0\x01x\x03\0\0\0\x01y\x03\0\0\0\x01z"),
	              -EPROTO);
	/* Fixed-size fields of the wrong size. */
	expect_decode(RAW("\x02\0\0\0\x01x\x05\0\0\0\x03\0\0\x01"), -EPROTO);
	expect_decode(RAW("\x02\0\0\0\x01x\x06\0\0\0\x02\0\x18"), -EPROTO);
	expect_decode(RAW("\x02\0\0\0\x01x\x07\0\0\0\x00"), -EPROTO);
	expect_decode(RAW("\x02\0\0\0\x01x\x07\0\0\0\x02\x01\x01"), -EPROTO);
	/* An error after some strings were decoded frees them (ASan). */
	expect_decode(RAW("\x01\0\0\0\x01"
	                  "a\x04\0\0\0\x01"
	                  "b\x01\0\0\0\x09"
	                  "c"),
	              -EPROTO);
}

Test(ipc, unknown_tags_are_skipped)
{
	struct omni_ipc_request got;
	static const unsigned char raw[] = {
		0x63,
		0,
		0,
		0,
		3,
		'z',
		'z',
		'z', /* unknown, 3 bytes */
		OMNI_IPC_F_SHELL,
		0,
		0,
		0,
		4,
		't',
		'r',
		'u',
		'e',
		0xff,
		0,
		0,
		0,
		0, /* unknown, empty */
		0x08,
		0,
		0,
		0,
		2,
		0,
		0, /* future, with NULs */
		OMNI_IPC_F_CWD,
		0,
		0,
		0,
		1,
		'd',
	};

	cr_assert_eq(omni_ipc_request_decode(&got, raw, sizeof(raw)), 0);
	cr_assert_str_eq(got.shell, "true");
	cr_assert_str_eq(got.cwd, "d");
	omni_ipc_request_finish(&got);
}

Test(ipc, zero_length_strings_and_stdin_zero)
{
	/* An empty shell string is a shell string; STDIN 0 means "no". */
	static const unsigned char raw[] = {
		OMNI_IPC_F_SHELL, 0, 0, 0, 0, OMNI_IPC_F_STDIN, 0, 0, 0, 1, 0
	};
	struct omni_ipc_request got;

	cr_assert_eq(omni_ipc_request_decode(&got, raw, sizeof(raw)), 0);
	cr_assert_str_eq(got.shell, "");
	cr_assert_not(got.want_stdin);
	omni_ipc_request_finish(&got);
}

/* --- frames --------------------------------------------------------------- */

Test(ipc, frames_over_a_socketpair)
{
	struct omni_ipc_buf b = { 0 };
	uint8_t type = 0;
	int sv[2];

	make_pair(sv);
	omni_assert_ok(omni_ipc_send(sv[0], OMNI_IPC_STDOUT, "hello", 5));
	omni_assert_ok(omni_ipc_send(sv[0], OMNI_IPC_STDIN, NULL, 0));
	omni_assert_ok(
	    omni_ipc_send2(sv[0], OMNI_IPC_STDERR, "ab", 2, "cd", 2));
	omni_assert_ok(omni_ipc_send_u32(sv[0], OMNI_IPC_STARTED, 4242));
	omni_assert_ok(omni_ipc_send2(sv[0], OMNI_IPC_REPLY, NULL, 0, "z", 1));
	close(sv[0]);

	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(type, OMNI_IPC_STDOUT);
	cr_assert_eq(b.len, 5);
	cr_assert_eq(memcmp(b.data, "hello", 5), 0);

	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(type, OMNI_IPC_STDIN);
	cr_assert_eq(b.len, 0, "content is replaced, not appended");

	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(type, OMNI_IPC_STDERR);
	cr_assert_eq(b.len, 4);
	cr_assert_eq(memcmp(b.data, "abcd", 4), 0);

	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(type, OMNI_IPC_STARTED);
	cr_assert_eq(b.len, 4);
	cr_assert_eq(omni_ipc_get_u32(b.data), 4242);

	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(type, OMNI_IPC_REPLY);
	cr_assert_eq(b.len, 1);

	/* The peer closed at a frame boundary. */
	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 0);
	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 0);
	close(sv[1]);
	omni_ipc_buf_finish(&b);
}

Test(ipc, frame_wire_format)
{
	unsigned char raw[16];
	int sv[2];

	make_pair(sv);
	omni_assert_ok(omni_ipc_send(sv[0], 0x81, "xyz", 3));
	cr_assert_eq(read(sv[1], raw, sizeof(raw)), 8);
	cr_assert_eq(memcmp(raw, "\0\0\0\x04\x81xyz", 8), 0);
	close(sv[0]);
	close(sv[1]);
}

/* Write raw bytes into the stream, close, and expect recv to give rc. */
static void expect_recv(const void *raw, size_t len, int rc)
{
	struct omni_ipc_buf b = { 0 };
	uint8_t type;
	int sv[2];

	make_pair(sv);
	cr_assert_eq(write(sv[0], raw, len), (ssize_t)len);
	close(sv[0]);
	int r = omni_ipc_recv(sv[1], &type, &b);
	cr_assert_eq(r, rc, "recv gave %d, expected %d", r, rc);
	close(sv[1]);
	omni_ipc_buf_finish(&b);
}

Test(ipc, cut_and_bad_frames)
{
	/* Cut inside the length. */
	expect_recv("\0\0", 2, -EPROTO);
	/* Length but no type. */
	expect_recv("\0\0\0\x05", 4, -EPROTO);
	/* Cut inside the payload. */
	expect_recv("\0\0\0\x0a\x81"
	            "abc",
	            8, -EPROTO);
	/* Length 0 (a frame has at least its type). */
	expect_recv("\0\0\0\0\x81", 5, -EPROTO);
	/* Longer than the cap. */
	unsigned char big[5] = { 0, 0x10, 0, 0x02, 0x81 };
	cr_assert_eq(OMNI_IPC_MAX_FRAME + 2u, 0x100002u);
	expect_recv(big, 5, -EPROTO);
	expect_recv("\xff\xff\xff\xff\x81", 5, -EPROTO);
	/* Exactly one type byte is fine. */
	expect_recv("\0\0\0\x01\x83", 5, 1);
}

Test(ipc, oversize_send_is_emsgsize)
{
	int sv[2];
	char *big = calloc(1, OMNI_IPC_MAX_FRAME);

	cr_assert_not_null(big);
	make_pair(sv);
	cr_assert_eq(
	    omni_ipc_send(sv[0], OMNI_IPC_STDOUT, big, OMNI_IPC_MAX_FRAME),
	    -EMSGSIZE);
	cr_assert_eq(omni_ipc_send2(sv[0], OMNI_IPC_STDOUT, big,
	                            OMNI_IPC_MAX_FRAME / 2, big,
	                            OMNI_IPC_MAX_FRAME / 2),
	             -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
	free(big);
}

struct sender {
	int fd;
	size_t len;
	int rc;
};

static void *send_big(void *arg)
{
	struct sender *s = arg;
	char *data = malloc(s->len);

	for (size_t i = 0; i < s->len; i++)
		data[i] = (char)(i % 251);
	s->rc = omni_ipc_send(s->fd, OMNI_IPC_STDOUT, data, s->len);
	free(data);
	return NULL;
}

Test(ipc, largest_frame)
{
	struct sender s;
	struct omni_ipc_buf b = { 0 };
	uint8_t type;
	pthread_t t;
	int sv[2];

	make_pair(sv);
	s = (struct sender){ .fd = sv[0], .len = OMNI_IPC_MAX_FRAME - 1 };
	cr_assert_eq(pthread_create(&t, NULL, send_big, &s), 0);
	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(s.rc, 0);
	cr_assert_eq(b.len, OMNI_IPC_MAX_FRAME - 1);
	for (size_t i = 0; i < b.len; i++)
		if (b.data[i] != (unsigned char)(i % 251))
			cr_assert_fail("byte %zu differs", i);
	close(sv[0]);
	close(sv[1]);
	omni_ipc_buf_finish(&b);
}

Test(ipc, gone_peer_is_epipe_without_sigpipe)
{
	int sv[2];

	/* SIGPIPE left at its default would kill this test. */
	signal(SIGPIPE, SIG_DFL);
	make_pair(sv);
	close(sv[1]);
	cr_assert_eq(omni_ipc_send(sv[0], OMNI_IPC_STDOUT, "x", 1), -EPIPE);
	cr_assert_eq(omni_ipc_send_exit(sv[0], 0, 0, false), -EPIPE);
	close(sv[0]);
}

Test(ipc, works_over_a_pipe)
{
	struct omni_ipc_buf b = { 0 };
	uint8_t type;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	omni_assert_ok(omni_ipc_send2(p[1], OMNI_IPC_STDOUT, "pi", 2, "pe", 2));
	close(p[1]);
	cr_assert_eq(omni_ipc_recv(p[0], &type, &b), 1);
	cr_assert_eq(type, OMNI_IPC_STDOUT);
	cr_assert_eq(b.len, 4);
	cr_assert_eq(memcmp(b.data, "pipe", 4), 0);
	cr_assert_eq(omni_ipc_recv(p[0], &type, &b), 0);
	close(p[0]);
	omni_ipc_buf_finish(&b);
}

Test(ipc, bad_descriptor)
{
	struct omni_ipc_buf b = { 0 };
	uint8_t type;

	cr_assert_eq(omni_ipc_send(-1, OMNI_IPC_STDOUT, "x", 1), -EBADF);
	cr_assert_eq(omni_ipc_recv(-1, &type, &b), -EBADF);
}

Test(ipc, exit_payload_layout)
{
	struct omni_ipc_buf b = { 0 };
	uint8_t type;
	int sv[2];

	make_pair(sv);
	omni_assert_ok(omni_ipc_send_exit(sv[0], 124, 9, true));
	omni_assert_ok(omni_ipc_send_exit(sv[0], 3, 0, false));
	omni_assert_ok(omni_ipc_send_exit(sv[0], -1, 0, false));

	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(type, OMNI_IPC_EXIT);
	cr_assert_eq(b.len, 9);
	cr_assert_eq(memcmp(b.data, "\0\0\0\x7c\0\0\0\x09\x01", 9), 0);

	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(b.len, 9);
	cr_assert_eq((int32_t)omni_ipc_get_u32(b.data), 3);
	cr_assert_eq((int32_t)omni_ipc_get_u32(b.data + 4), 0);
	cr_assert_eq(b.data[8], 0);

	/* Signed: -1 travels as 0xffffffff. */
	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(memcmp(b.data, "\xff\xff\xff\xff", 4), 0);
	cr_assert_eq((int32_t)omni_ipc_get_u32(b.data), -1);
	close(sv[0]);
	close(sv[1]);
	omni_ipc_buf_finish(&b);
}

Test(ipc, error_payload_layout)
{
	struct omni_ipc_buf b = { 0 };
	uint8_t type;
	int sv[2];

	make_pair(sv);
	omni_assert_ok(omni_ipc_send_error(sv[0], -ENOENT, "no such file"));
	omni_assert_ok(omni_ipc_send_error(sv[0], -EACCES, NULL));

	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(type, OMNI_IPC_ERROR);
	cr_assert_eq(b.len, 4 + 12, "no NUL on the wire");
	cr_assert_eq((int32_t)omni_ipc_get_u32(b.data), -ENOENT);
	cr_assert_eq(memcmp(b.data + 4, "no such file", 12), 0);

	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(type, OMNI_IPC_ERROR);
	cr_assert_eq(b.len, 4);
	cr_assert_eq((int32_t)omni_ipc_get_u32(b.data), -EACCES);
	close(sv[0]);
	close(sv[1]);
	omni_ipc_buf_finish(&b);
}

/* --- transport: Unix sockets ---------------------------------------------- */

static void sock_in(char *out, size_t size, const char *dir, const char *name)
{
	cr_assert((size_t)snprintf(out, size, "%s/%s", dir, name) < size);
}

Test(ipc, unix_path_too_long)
{
	char path[200];
	int fd = 7;

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	omni_assert_err(
	    omni__unix_listen(path, 0600, OMNI__UNIX_STALE_PROBE, NULL),
	    -ENAMETOOLONG);
	cr_assert(strstr(omni_error_last(), "too long"), "%s",
	          omni_error_last());
	omni_assert_err(omni__unix_connect(path, &fd), -ENAMETOOLONG);
	cr_assert_eq(fd, -1);
}

Test(ipc, unix_listen_connect_and_mode)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	struct stat st, got;
	int lfd, cfd, afd;
	mode_t old = umask(077);

	omni_test_mkdtemp(tmp, sizeof(tmp));
	sock_in(path, sizeof(path), tmp, "s.sock");
	/* The umask narrows the file at bind; the mode is set exactly. */
	lfd = omni__unix_listen(path, 0666, OMNI__UNIX_STALE_PROBE, &st);
	umask(old);
	cr_assert_geq(lfd, 0, "%s", omni_error_last());
	cr_assert(lstat(path, &got) == 0);
	cr_assert(S_ISSOCK(got.st_mode));
	cr_assert_eq(got.st_mode & 0777, 0666, "mode %o", got.st_mode & 0777);
	cr_assert_eq(got.st_dev, st.st_dev);
	cr_assert_eq(got.st_ino, st.st_ino);
	cr_assert(fcntl(lfd, F_GETFD) & FD_CLOEXEC);

	omni_assert_ok(omni__unix_connect(path, &cfd));
	cr_assert(fcntl(cfd, F_GETFD) & FD_CLOEXEC);
	afd = accept(lfd, NULL, NULL);
	cr_assert_geq(afd, 0);
	omni_assert_ok(omni_ipc_send(cfd, OMNI_IPC_CONTROL, "ping", 4));
	struct omni_ipc_buf buf = { 0 };
	uint8_t type;
	cr_assert_eq(omni_ipc_recv(afd, &type, &buf), 1);
	cr_assert_eq(type, OMNI_IPC_CONTROL);
	omni_ipc_buf_finish(&buf);
	close(afd);
	close(cfd);
	close(lfd);

	/* A private one stays private. */
	cr_assert(unlink(path) == 0);
	lfd = omni__unix_listen(path, 0600, OMNI__UNIX_STALE_PROBE, NULL);
	cr_assert_geq(lfd, 0, "%s", omni_error_last());
	cr_assert(lstat(path, &got) == 0);
	cr_assert_eq(got.st_mode & 0777, 0600, "mode %o", got.st_mode & 0777);
	close(lfd);
	omni_test_rm_rf(tmp);
}

Test(ipc, unix_stale_live_and_other_files)
{
	char tmp[PATH_MAX], path[PATH_MAX], file[PATH_MAX];
	int lfd, lfd2, cfd;

	omni_test_mkdtemp(tmp, sizeof(tmp));
	sock_in(path, sizeof(path), tmp, "s.sock");
	sock_in(file, sizeof(file), tmp, "plain");

	/* Nothing there, then a stale socket (its listener closed). */
	omni_assert_err(omni__unix_connect(path, &cfd), -ENOENT);
	lfd = omni__unix_listen(path, 0600, OMNI__UNIX_STALE_PROBE, NULL);
	cr_assert_geq(lfd, 0);
	close(lfd);
	cr_assert(omni_test_host_exists(path));
	omni_assert_err(omni__unix_connect(path, &cfd), -ECONNREFUSED);
	cr_assert_eq(cfd, -1);

	/* The stale one is replaced; the live one is not taken over. */
	lfd = omni__unix_listen(path, 0600, OMNI__UNIX_STALE_PROBE, NULL);
	cr_assert_geq(lfd, 0, "%s", omni_error_last());
	omni_assert_err(
	    omni__unix_listen(path, 0600, OMNI__UNIX_STALE_PROBE, NULL),
	    -EADDRINUSE);
	omni_assert_ok(omni__unix_connect(path, &cfd));
	close(cfd);

	/* STALE_REMOVE takes any socket: connections go to the new one. */
	lfd2 = omni__unix_listen(path, 0600, OMNI__UNIX_STALE_REMOVE, NULL);
	cr_assert_geq(lfd2, 0, "%s", omni_error_last());
	omni_assert_ok(omni__unix_connect(path, &cfd));
	struct pollfd p = { .fd = lfd2, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 1000), 1);
	close(cfd);
	close(lfd2);
	close(lfd);

	/* Another kind of file is never removed. */
	omni_test_write_host(file, "x", 1);
	omni_assert_err(
	    omni__unix_listen(file, 0600, OMNI__UNIX_STALE_PROBE, NULL),
	    -EEXIST);
	cr_assert_lt(
	    omni__unix_listen(file, 0600, OMNI__UNIX_STALE_REMOVE, NULL), 0);
	cr_assert(omni_test_host_exists(file));
	omni_test_rm_rf(tmp);
}
