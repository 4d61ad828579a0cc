/*
 * tests/base/test_ipc_server.c - the shared exec-protocol server
 * (omni/ipc_server.h, backends/base/ipc_server.c) with fake commands, so
 * each path is reached on purpose; the agent and ctl suites run it with
 * real processes and a real backend.
 *
 * A fake command is chosen by argv[0]: "cat" echoes STDIN frames back as
 * output and ends at EOF, "wait" ends only when signalled, "fail-start"
 * cannot start, "fail-wait" fails while it is waited for. Every call the
 * server makes is counted in the statics below (a test runs in its own
 * process). Covered: output, EXIT and STARTED, stdin with EOF, SIGNAL and
 * RESIZE frames, exec_done before EXIT, a malformed EXEC, a wrong first
 * frame, a garbled frame, errors from start and wait, a client that leaves
 * mid-command, CONTROL with and without a control op, a refused peer, the
 * connection limit, kill_all, stop (commands killed, socket removed), and
 * the counters.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "omni/error.h"
#include "omni/ipc.h"
#include "omni/ipc_files.h"
#include "omni/ipc_server.h"

struct fake {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const char *kind;
	char input[4096];
	size_t in_len, sent;
	bool eof;
	int sig;
};

static atomic_int starts, frees, dones, signals_seen, last_signal;
static atomic_int rows_seen, cols_seen;
static atomic_bool refuse_peer;
static char tmp[PATH_MAX], sock[PATH_MAX];
static struct omni__ipc_server *srv;

static int fake_start(void *payload, const struct omni_exec_request *req,
                      struct omni_exec **handle, uint32_t *pid)
{
	(void)payload;
	if (!req->argv)
		return omni_error_set(-EINVAL, "the fake runs argv only");
	if (strcmp(req->argv[0], "fail-start") == 0)
		return omni_error_set(-EPERM, "refused by the fake");
	struct fake *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->kind = strcmp(req->argv[0], "cat") == 0    ? "cat"
	          : strcmp(req->argv[0], "wait") == 0 ? "wait"
	                                              : "fail-wait";
	atomic_fetch_add(&starts, 1);
	*handle = (struct omni_exec *)f; /* the server's opaque handle */
	*pid = 42;
	return 0;
}

static int fake_wait(struct omni_exec *h, omni_output_cb cb, void *cb_payload,
                     struct omni_exec_status *st)
{
	struct fake *f = (struct fake *)h;

	memset(st, 0, sizeof(*st));
	if (strcmp(f->kind, "fail-wait") == 0)
		return omni_error_set(-EIO, "the fake lost its command");
	pthread_mutex_lock(&f->lock);
	for (;;) {
		while (f->sent < f->in_len) {
			char chunk[4096];
			size_t n = f->in_len - f->sent;

			memcpy(chunk, f->input + f->sent, n);
			f->sent += n;
			pthread_mutex_unlock(&f->lock);
			cb(OMNI_EXEC_STDOUT, chunk, n, cb_payload);
			pthread_mutex_lock(&f->lock);
		}
		if (f->sig || (f->eof && strcmp(f->kind, "cat") == 0))
			break;
		pthread_cond_wait(&f->cond, &f->lock);
	}
	if (f->sig) {
		st->signal = f->sig;
		st->exit_code = 128 + f->sig;
	}
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static int fake_input(struct omni_exec *h, const void *data, size_t len)
{
	struct fake *f = (struct fake *)h;

	pthread_mutex_lock(&f->lock);
	if (len == 0)
		f->eof = true;
	if (len > sizeof(f->input) - f->in_len)
		len = sizeof(f->input) - f->in_len;
	memcpy(f->input + f->in_len, data, len);
	f->in_len += len;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static int fake_signal(struct omni_exec *h, int sig)
{
	struct fake *f = (struct fake *)h;

	atomic_fetch_add(&signals_seen, 1);
	atomic_store(&last_signal, sig);
	pthread_mutex_lock(&f->lock);
	f->sig = sig;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static int fake_resize(struct omni_exec *h, unsigned short rows,
                       unsigned short cols)
{
	(void)h;
	atomic_store(&rows_seen, rows);
	atomic_store(&cols_seen, cols);
	return 0;
}

static void fake_free(struct omni_exec *h)
{
	struct fake *f = (struct fake *)h;

	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	free(f);
	atomic_fetch_add(&frees, 1);
}

static void fake_done(void *payload)
{
	(void)payload;
	atomic_fetch_add(&dones, 1);
}

static int fake_check_peer(void *payload, int fd)
{
	(void)payload;
	(void)fd;
	if (atomic_load(&refuse_peer))
		return omni_error_set(-EACCES, "the fake refuses you");
	return 0;
}

static void fake_control(void *payload, struct omni__ipc_conn *conn,
                         const char *request)
{
	(void)payload;
	omni__ipc_conn_reply(conn, 0, request);
}

/* A file session (set as ops.files by the tests that want it): the
 * FILES payload back, then every frame echoed until the client leaves. */
static void fake_files(void *payload, int fd, const unsigned char *data,
                       size_t len)
{
	struct omni_ipc_buf b = { 0 };
	uint8_t type;

	(void)payload;
	omni_ipc_send(fd, OMNI_IPC_FILES, data, len);
	while (omni_ipc_recv(fd, &type, &b) > 0)
		omni_ipc_send(fd, type, b.data, b.len);
	omni_ipc_buf_finish(&b);
}

static struct omni__ipc_server_ops ops = {
	.check_peer = fake_check_peer,
	.exec_start = fake_start,
	.exec_wait = fake_wait,
	.exec_input = fake_input,
	.exec_signal = fake_signal,
	.exec_resize = fake_resize,
	.exec_free = fake_free,
	.exec_done = fake_done,
	.control = fake_control,
};

static unsigned int idle_ms, max_per_uid;

static void start(unsigned int max_conns)
{
	struct stat st;
	int fd = omni__unix_listen(sock, 0600, OMNI__UNIX_STALE_PROBE, &st);

	cr_assert_geq(fd, 0, "%s", omni_error_last());
	struct omni__ipc_server_config cfg = {
		.name = "test",
		.ops = &ops,
		.max_conns = max_conns,
		.max_conns_per_uid = max_per_uid,
		.idle_ms = idle_ms,
		.path = sock,
		.path_dev = st.st_dev,
		.path_ino = st.st_ino,
	};
	omni_assert_ok(omni__ipc_server_start(&srv, fd, &cfg));
}

static void setup(void)
{
	idle_ms = 0;
	max_per_uid = 0;
	omni_test_mkdtemp(tmp, sizeof(tmp));
	cr_assert((size_t)snprintf(sock, sizeof(sock), "%s/s.sock", tmp) <
	          sizeof(sock));
	start(0);
}

static void teardown(void)
{
	omni__ipc_server_stop(srv);
	srv = NULL;
	omni_test_rm_rf(tmp);
}

TestSuite(ipc_server, .init = setup, .fini = teardown, .timeout = 30);

static int dial(void)
{
	int fd;

	omni_assert_ok(omni__unix_connect(sock, &fd));
	return fd;
}

static void send_exec(int fd, const char *argv0)
{
	struct omni_ipc_request req = {
		.argv = (char *[]){ (char *)argv0, NULL },
		.want_stdin = true,
	};
	struct omni_ipc_buf b = { 0 };

	omni_assert_ok(omni_ipc_request_encode(&req, &b));
	omni_assert_ok(omni_ipc_send(fd, OMNI_IPC_EXEC, b.data, b.len));
	omni_ipc_buf_finish(&b);
}

/* The next frame, which must be of type want. */
static void expect(int fd, uint8_t want, struct omni_ipc_buf *b)
{
	uint8_t type = 0;

	cr_assert_eq(omni_ipc_recv(fd, &type, b), 1);
	cr_assert_eq(type, want, "frame 0x%02x, want 0x%02x", type, want);
}

/* An ERROR frame with err, its message containing text. */
static void expect_error(int fd, int err, const char *text)
{
	struct omni_ipc_buf b = { 0 };

	expect(fd, OMNI_IPC_ERROR, &b);
	cr_assert_geq(b.len, 4);
	cr_assert_eq((int32_t)omni_ipc_get_u32(b.data), err);
	omni_ipc_buf_put_u8(&b, 0);
	cr_assert(strstr((char *)b.data + 4, text), "%s", b.data + 4);
	omni_ipc_buf_finish(&b);
}

static void expect_exit(int fd, int code, int sig)
{
	struct omni_ipc_buf b = { 0 };

	expect(fd, OMNI_IPC_EXIT, &b);
	cr_assert_eq(b.len, 9);
	cr_assert_eq((int32_t)omni_ipc_get_u32(b.data), code);
	cr_assert_eq((int32_t)omni_ipc_get_u32(b.data + 4), sig);
	omni_ipc_buf_finish(&b);
}

static void expect_started(int fd)
{
	struct omni_ipc_buf b = { 0 };

	expect(fd, OMNI_IPC_STARTED, &b);
	cr_assert_eq(b.len, 4);
	cr_assert_eq(omni_ipc_get_u32(b.data), 42);
	omni_ipc_buf_finish(&b);
}

static bool wait_for(atomic_int *v, int want, int ms)
{
	long long until = omni_test_now_ms() + ms;

	while (atomic_load(v) != want && omni_test_now_ms() < until)
		usleep(5 * 1000);
	return atomic_load(v) == want;
}

Test(ipc_server, output_stdin_and_exit)
{
	struct omni_ipc_buf b = { 0 };
	int fd = dial();

	send_exec(fd, "cat");
	expect_started(fd);
	omni_assert_ok(omni_ipc_send(fd, OMNI_IPC_STDIN, "hello", 5));
	expect(fd, OMNI_IPC_STDOUT, &b);
	cr_assert_eq(b.len, 5);
	cr_assert_eq(memcmp(b.data, "hello", 5), 0);
	omni_assert_ok(omni_ipc_send(fd, OMNI_IPC_STDIN, NULL, 0));
	expect_exit(fd, 0, 0);
	/* exec_free and exec_done ran before EXIT was sent. */
	cr_assert_eq(atomic_load(&frees), 1);
	cr_assert_eq(atomic_load(&dones), 1);
	cr_assert_eq(omni_ipc_recv(fd, &(uint8_t){ 0 }, &b), 0);
	omni_ipc_buf_finish(&b);
	close(fd);
}

Test(ipc_server, signal_and_resize_frames)
{
	unsigned char size[4] = { 0, 30, 0, 100 };
	int fd = dial();

	send_exec(fd, "wait");
	expect_started(fd);
	omni_assert_ok(omni_ipc_send(fd, OMNI_IPC_RESIZE, size, 4));
	/* Out of range and malformed signals are dropped. */
	omni_assert_ok(omni_ipc_send_u32(fd, OMNI_IPC_SIGNAL, 0));
	omni_assert_ok(omni_ipc_send_u32(fd, OMNI_IPC_SIGNAL, 65));
	omni_assert_ok(omni_ipc_send(fd, OMNI_IPC_SIGNAL, "x", 1));
	omni_assert_ok(omni_ipc_send(fd, 0x7f, "future", 6));
	omni_assert_ok(omni_ipc_send_u32(fd, OMNI_IPC_SIGNAL, SIGTERM));
	expect_exit(fd, 128 + SIGTERM, SIGTERM);
	cr_assert_eq(atomic_load(&signals_seen), 1);
	cr_assert_eq(atomic_load(&rows_seen), 30);
	cr_assert_eq(atomic_load(&cols_seen), 100);
	close(fd);
}

Test(ipc_server, client_leaving_mid_command_kills_it)
{
	int fd = dial();

	send_exec(fd, "wait");
	expect_started(fd);
	close(fd);
	cr_assert(wait_for(&frees, 1, 5000), "the command was not ended");
	cr_assert_eq(atomic_load(&last_signal), SIGKILL);
	cr_assert_eq(atomic_load(&dones), 1);
}

Test(ipc_server, bad_requests)
{
	struct omni_ipc_buf b = { 0 };
	int fd = dial();

	/* Neither argv nor shell. */
	omni_assert_ok(omni_ipc_send(fd, OMNI_IPC_EXEC, NULL, 0));
	expect_error(fd, -EPROTO, "malformed EXEC request");
	close(fd);

	fd = dial();
	omni_assert_ok(omni_ipc_send(fd, OMNI_IPC_STDIN, "x", 1));
	expect_error(fd, -EPROTO, "expected an EXEC or CONTROL frame");
	close(fd);

	/* A length of zero is no frame: the server hangs up without an
	 * answer (a reset, as a byte is left unread). */
	fd = dial();
	cr_assert_eq(write(fd, "\0\0\0\0\x01", 5), 5);
	cr_assert_leq(omni_ipc_recv(fd, &(uint8_t){ 0 }, &b), 0);
	close(fd);

	fd = dial();
	send_exec(fd, "fail-start");
	expect_error(fd, -EPERM, "refused by the fake");
	close(fd);

	fd = dial();
	send_exec(fd, "fail-wait");
	expect_started(fd);
	expect_error(fd, -EIO, "lost its command");
	close(fd);
	cr_assert_eq(atomic_load(&dones), 1);

	struct omni__ipc_server_stats st;
	omni__ipc_server_stats(srv, &st);
	cr_assert_eq(st.commands, 1);
	cr_assert_eq(st.failed, 3);
	cr_assert_eq(st.running, 0);
	omni_ipc_buf_finish(&b);
}

static void control(const char *req, unsigned int want_status,
                    const char *want_text)
{
	struct omni_ipc_buf b = { 0 };
	int fd = dial();

	omni_assert_ok(omni_ipc_send(fd, OMNI_IPC_CONTROL, req, strlen(req)));
	expect(fd, OMNI_IPC_REPLY, &b);
	cr_assert_geq(b.len, 4);
	cr_assert_eq(omni_ipc_get_u32(b.data), want_status);
	omni_ipc_buf_put_u8(&b, 0);
	cr_assert(strstr((char *)b.data + 4, want_text), "%s", b.data + 4);
	omni_ipc_buf_finish(&b);
	close(fd);
}

Test(ipc_server, control_requests)
{
	control("ping", 0, "pong");
	control("anything else", 0, "anything else");
	ops.control = NULL;
	control("frobnicate", EINVAL, "unknown control request: frobnicate");
	control("ping", 0, "pong");
}

Test(ipc_server, refused_peer)
{
	int fd;

	atomic_store(&refuse_peer, true);
	fd = dial();
	/* The server answers before it reads anything: no request needs to
	 * be sent (and sending one may meet a closed socket). */
	expect_error(fd, -EACCES, "the fake refuses you");
	close(fd);
	cr_assert_eq(atomic_load(&starts), 0);
}

Test(ipc_server, connection_limit)
{
	int first, second;

	omni__ipc_server_stop(srv);
	start(1);
	first = dial();
	send_exec(first, "wait");
	expect_started(first);
	second = dial();
	expect_error(second, -EAGAIN, "too many commands at once");
	close(second);
	close(first);
	cr_assert(wait_for(&frees, 1, 5000));
}

/* Reads end-of-stream on fd within ms (the server closed it). */
static bool closed_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	return poll(&p, 1, ms) == 1 && read(fd, &c, 1) <= 0;
}

Test(ipc_server, an_idle_client_is_closed)
{
	omni__ipc_server_stop(srv);
	idle_ms = 200;
	start(0);
	int quiet = dial();
	/* Half a frame, then nothing: the same deadline. */
	int half = dial();
	cr_assert_eq(write(half, "\x01\x00", 2), 2);
	cr_assert(closed_within(quiet, 3000), "an idle client stays");
	cr_assert(closed_within(half, 3000), "half a frame holds a slot");
	close(quiet);
	close(half);
	control("ping", 0, "pong");
}

Test(ipc_server, idle_clients_make_room_for_one_that_speaks)
{
	int idle[8];

	omni__ipc_server_stop(srv);
	start(4);
	for (int i = 0; i < 8; i++)
		idle[i] = dial();
	/* Every new one pushed out the oldest idle one. */
	control("ping", 0, "pong");
	cr_assert(closed_within(idle[0], 3000));
	struct omni__ipc_server_stats st;
	omni__ipc_server_stats(srv, &st);
	cr_assert_geq(st.evicted, 5, "%llu evicted", st.evicted);
	for (int i = 0; i < 8; i++)
		close(idle[i]);
}

Test(ipc_server, a_file_session_is_neither_idle_nor_pushed_out)
{
	struct omni_ipc_buf b = { 0 };

	omni__ipc_server_stop(srv);
	ops.files = fake_files;
	idle_ms = 200;
	start(2);
	int fs = dial();
	omni_assert_ok(omni_ipc_send(fs, OMNI_IPC_FILES, "\0\0\0\1", 4));
	expect(fs, OMNI_IPC_FILES, &b);
	/* Past the first-frame deadline, and then over the limit: idle
	 * newcomers go, the session stays. */
	usleep(500 * 1000);
	int idle1 = dial(), idle2 = dial();
	cr_assert(closed_within(idle1, 3000));
	cr_assert(closed_within(idle2, 3000));
	omni_assert_ok(omni_ipc_send(fs, OMNI_FILES_STAT, "x", 1));
	expect(fs, OMNI_FILES_STAT, &b);
	cr_assert_eq(b.len, 1);
	close(idle1);
	close(idle2);
	/* Stopping the server ends the session. */
	omni__ipc_server_stop(srv);
	srv = NULL;
	cr_assert(closed_within(fs, 3000));
	close(fs);
	omni_ipc_buf_finish(&b);
}

Test(ipc_server, a_running_command_is_not_pushed_out)
{
	int busy, idle;

	omni__ipc_server_stop(srv);
	max_per_uid = 1;
	start(0);
	busy = dial();
	send_exec(busy, "wait");
	expect_started(busy);
	/* The uid's one slot runs a command: a newcomer is refused, the
	 * command goes on. */
	idle = dial();
	expect_error(idle, -EAGAIN, "too many commands at once");
	close(idle);
	cr_assert_eq(atomic_load(&frees), 0);
	close(busy);
	cr_assert(wait_for(&frees, 1, 5000));
}

Test(ipc_server, kill_all_then_shutting_down)
{
	int fd = dial(), late;

	send_exec(fd, "wait");
	expect_started(fd);
	omni__ipc_server_kill_all(srv);
	expect_exit(fd, 128 + SIGKILL, SIGKILL);
	close(fd);
	late = dial();
	expect_error(late, -ESHUTDOWN, "shutting down");
	close(late);
}

Test(ipc_server, stop_ends_commands_and_removes_the_socket)
{
	struct omni_ipc_buf b = { 0 };
	int fd = dial();

	send_exec(fd, "wait");
	expect_started(fd);
	omni__ipc_server_stop(srv);
	srv = NULL;
	cr_assert_eq(atomic_load(&frees), 1);
	cr_assert_eq(atomic_load(&last_signal), SIGKILL);
	cr_assert(!omni_test_host_exists(sock), "socket left behind");
	/* The socket was shut: no EXIT comes. */
	cr_assert_leq(omni_ipc_recv(fd, &(uint8_t){ 0 }, &b), 0);
	omni_ipc_buf_finish(&b);
	close(fd);
}

Test(ipc_server, stop_keeps_a_socket_that_is_not_ours)
{
	int fd;

	/* Another server took the path over (STALE_REMOVE). */
	fd = omni__unix_listen(sock, 0600, OMNI__UNIX_STALE_REMOVE, NULL);
	cr_assert_geq(fd, 0, "%s", omni_error_last());
	omni__ipc_server_stop(srv);
	srv = NULL;
	cr_assert(omni_test_host_exists(sock), "another's socket removed");
	close(fd);
}
