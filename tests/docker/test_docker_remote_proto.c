/*
 * tests/docker/test_docker_remote_proto.c - docker_remote.c against a fake
 * omni-agent (suite docker_remote_proto; no Docker needed).
 *
 * The connector gives one end of a socketpair; a thread on the other end
 * plays a script: it reads the FILES frame, then for each request it
 * reads the frame and writes crafted bytes (or closes the session). The
 * agent is untrusted input, so every malformed answer must fail with
 * -EPROTO (or the errno named) and a message, with nothing read out of
 * bounds (the ASan build runs this too), and a dropped session must be
 * replaced only for a request that is safe to send twice.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "docker/docker.h"
#include "docker/docker_remote.h"
#include "helpers.h"
#include "omni/ipc_files.h"

#define MAX_SESSIONS 4
#define MAX_REPLIES  8

struct reply {
	unsigned char *bytes; /* NULL: close the session instead */
	size_t len;
	bool close_after; /* close the session once bytes are sent */
};

struct session_script {
	struct reply r[MAX_REPLIES];
	int n;
};

struct fake {
	struct session_script s[MAX_SESSIONS];
	int nsessions, next;
	pthread_t th[MAX_SESSIONS];
	int fds[MAX_SESSIONS];
	int nthreads;
	int requests_seen;
	pthread_mutex_t lock;
};

static struct fake fk;
static struct omni__docker_remote *pr;
static struct omni__docker_backend fdb;

struct serve_args {
	int fd;
	struct session_script *s;
};
static struct serve_args sargs[MAX_SESSIONS];

static void *serve(void *arg)
{
	struct serve_args *a = arg;
	struct omni_ipc_buf buf = { 0 };
	uint8_t type;

	if (omni_ipc_recv(a->fd, &type, &buf) > 0 && type == OMNI_IPC_FILES) {
		for (int i = 0; i < a->s->n; i++) {
			if (omni_ipc_recv(a->fd, &type, &buf) <= 0)
				break;
			pthread_mutex_lock(&fk.lock);
			fk.requests_seen++;
			pthread_mutex_unlock(&fk.lock);
			if (!a->s->r[i].bytes)
				goto out;
			if (omni_ipc_write_all(a->fd, a->s->r[i].bytes,
			                       a->s->r[i].len) < 0 ||
			    a->s->r[i].close_after)
				goto out;
		}
		/* Then wait for the host to close it. */
		while (omni_ipc_recv(a->fd, &type, &buf) > 0)
			;
	}
out:
	omni_ipc_buf_finish(&buf);
	close(a->fd);
	return NULL;
}

static int fake_connect(void *ctx, int *fd)
{
	struct fake *f = ctx;
	int sv[2];

	*fd = -1;
	pthread_mutex_lock(&f->lock);
	if (f->next >= f->nsessions) {
		pthread_mutex_unlock(&f->lock);
		return omni_error_set(-ECONNREFUSED, "fake agent: no more");
	}
	int i = f->next++;
	pthread_mutex_unlock(&f->lock);
	cr_assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	sargs[i] = (struct serve_args){ .fd = sv[1], .s = &f->s[i] };
	cr_assert(pthread_create(&f->th[i], NULL, serve, &sargs[i]) == 0);
	pthread_mutex_lock(&f->lock);
	f->nthreads++;
	pthread_mutex_unlock(&f->lock);
	*fd = sv[0];
	return 0;
}

static void proto_init(void)
{
	memset(&fk, 0, sizeof(fk));
	pthread_mutex_init(&fk.lock, NULL);
	memset(&fdb, 0, sizeof(fdb));
}

static void proto_fini(void)
{
	omni__docker_remote_free(pr);
	pr = NULL;
	for (int i = 0; i < fk.nthreads; i++)
		pthread_join(fk.th[i], NULL);
	for (int s = 0; s < MAX_SESSIONS; s++)
		for (int i = 0; i < MAX_REPLIES; i++)
			free(fk.s[s].r[i].bytes);
	pthread_mutex_destroy(&fk.lock);
	omni_test_leak_check();
}

TestSuite(docker_remote_proto, .init = proto_init, .fini = proto_fini,
          .timeout = 30);

/* Append a frame to a reply. */
static void add_frame(struct reply *r, uint8_t type, const void *p, size_t n)
{
	r->bytes = realloc(r->bytes, r->len + 5 + n);
	cr_assert(r->bytes);
	unsigned char *o = r->bytes + r->len;
	uint32_t len = (uint32_t)n + 1;
	o[0] = (unsigned char)(len >> 24);
	o[1] = (unsigned char)(len >> 16);
	o[2] = (unsigned char)(len >> 8);
	o[3] = (unsigned char)len;
	o[4] = type;
	if (n)
		memcpy(o + 5, p, n);
	r->len += 5 + n;
}

static void add_raw(struct reply *r, const void *p, size_t n)
{
	r->bytes = realloc(r->bytes, r->len + n);
	cr_assert(r->bytes);
	memcpy(r->bytes + r->len, p, n);
	r->len += n;
}

/* The next reply of session s (made as the script grows). */
static struct reply *next_reply(int s)
{
	if (s >= fk.nsessions)
		fk.nsessions = s + 1;
	cr_assert(fk.s[s].n < MAX_REPLIES);
	return &fk.s[s].r[fk.s[s].n++];
}

static void add_close(int s)
{
	next_reply(s); /* bytes NULL: close */
}

static void add_status(struct reply *r, int32_t v, const char *msg)
{
	unsigned char b[4 + 64];
	uint32_t u = (uint32_t)v;
	size_t n = strlen(msg);

	b[0] = (unsigned char)(u >> 24);
	b[1] = (unsigned char)(u >> 16);
	b[2] = (unsigned char)(u >> 8);
	b[3] = (unsigned char)u;
	memcpy(b + 4, msg, n);
	add_frame(r, OMNI_FILES_R_STATUS, b, 4 + n);
}

static struct stat file_stat(void)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | 0644;
	st.st_nlink = 1;
	st.st_size = 3;
	return st;
}

static void add_attr(struct reply *r)
{
	struct omni_ipc_buf b = { 0 };
	struct stat st = file_stat();

	omni_assert_ok(omni__files_put_attr(&b, &st));
	add_frame(r, OMNI_FILES_R_ATTR, b.data, b.len);
	omni_ipc_buf_finish(&b);
}

/* The backend the path slots are called on. */
static struct omni_backend *fake_backend(void)
{
	omni_assert_ok(omni__docker_remote_new(&pr, fake_connect, &fk, 5000));
	fdb.remote = pr;
	return &fdb.host.base;
}

static int never(const char *name, const struct stat *st, void *payload)
{
	(void)name;
	(void)st;
	(void)payload;
	cr_assert_fail("an entry of a malformed listing was given out");
	return 0;
}

static void assert_proto(long long rc)
{
	cr_assert_eq(rc, -EPROTO, "gave %lld: %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "omni-agent") ||
	              strstr(omni_error_last(), "file protocol"),
	          "%s", omni_error_last());
}

/* An ENTRIES payload: count, then (name length, name, attributes). */
static void add_entries(struct reply *r, uint32_t count, uint32_t name_len,
                        const char *name, size_t name_bytes)
{
	struct omni_ipc_buf b = { 0 };
	struct stat st = file_stat();

	omni_assert_ok(omni_ipc_buf_put_u32(&b, count));
	omni_assert_ok(omni_ipc_buf_put_u32(&b, name_len));
	omni_assert_ok(omni_ipc_buf_put(&b, name, name_bytes));
	omni_assert_ok(omni__files_put_attr(&b, &st));
	add_frame(r, OMNI_FILES_R_ENTRIES, b.data, b.len);
	omni_ipc_buf_finish(&b);
}

static int count(const char *name, const struct stat *st, void *payload)
{
	(void)st;
	cr_assert_str_eq(name, "abc");
	(*(int *)payload)++;
	return 0;
}

/* --- malformed answers ------------------------------------------------------
 */

Test(docker_remote_proto, a_good_answer_passes)
{
	struct reply *r = next_reply(0);
	struct stat st;
	int n = 0;

	add_attr(r);
	r = next_reply(0);
	add_entries(r, 1, 3, "abc", 3);
	add_status(r, 0, "");
	struct omni_backend *b = fake_backend();
	omni_assert_ok(omni__docker_remote_stat(b, "x", &st));
	cr_assert_eq(st.st_size, 3);
	omni_assert_ok(omni__docker_remote_readdir(b, "", count, &n));
	cr_assert_eq(n, 1);
	cr_assert_eq(fk.next, 1, "one session for both");
}

Test(docker_remote_proto, bad_attributes)
{
	struct omni_ipc_buf b = { 0 };
	struct stat st = file_stat();

	omni_assert_ok(omni__files_put_attr(&b, &st));
	add_frame(next_reply(0), OMNI_FILES_R_ATTR, b.data, b.len - 1);
	b.data[0] = 0xf0; /* no such file type */
	add_frame(next_reply(1), OMNI_FILES_R_ATTR, b.data, b.len);
	omni_ipc_buf_finish(&b);
	struct omni_backend *be = fake_backend();
	assert_proto(omni__docker_remote_stat(be, "x", &st));
	assert_proto(omni__docker_remote_stat(be, "x", &st));
	struct omni__docker_remote_counters c;
	omni__docker_remote_counters(pr, &c);
	cr_assert_eq(c.bad, 2);
	cr_assert_eq(fk.next, 2, "a session out of step is not used again");
}

Test(docker_remote_proto, bad_listings)
{
	char big[300];

	memset(big, 'n', sizeof(big));
	add_entries(next_reply(0), 0xffffffffu, 3, "abc", 3);
	add_entries(next_reply(1), 1, 3, "a/b", 3);
	add_entries(next_reply(2), 1, 2, "..", 2);
	add_entries(next_reply(3), 1, 0x7fffffffu, "abc", 3);
	struct omni_backend *b = fake_backend();
	for (int i = 0; i < 4; i++)
		assert_proto(omni__docker_remote_readdir(b, "d", never, NULL));
}

Test(docker_remote_proto, bad_names_nul_and_long)
{
	add_entries(next_reply(0), 1, 3, "a\0b", 3);
	char big[300];
	memset(big, 'n', sizeof(big));
	add_entries(next_reply(1), 1, 300, big, 300);
	struct omni_backend *b = fake_backend();
	assert_proto(omni__docker_remote_readdir(b, "d", never, NULL));
	assert_proto(omni__docker_remote_readdir(b, "d", never, NULL));
}

Test(docker_remote_proto, bad_frame_lengths)
{
	static const unsigned char huge[5] = { 0x7f, 0xff, 0xff, 0xff,
		                               OMNI_FILES_R_ATTR };
	static const unsigned char zero[5] = { 0, 0, 0, 0, OMNI_FILES_R_ATTR };
	static const unsigned char cut[15] = { 0, 0, 0, 100, OMNI_FILES_R_ATTR,
		                               1, 2, 3 };
	struct stat st;

	add_raw(next_reply(0), huge, sizeof(huge));
	add_raw(next_reply(1), zero, sizeof(zero));
	struct reply *r = next_reply(2);
	add_raw(r, cut, sizeof(cut));
	r->close_after = true;
	struct omni_backend *b = fake_backend();
	assert_proto(omni__docker_remote_stat(b, "x", &st));
	assert_proto(omni__docker_remote_stat(b, "x", &st));
	/* A session cut inside a frame. */
	long long rc = omni__docker_remote_stat(b, "x", &st);
	cr_assert(rc == -EPROTO || rc == -ECONNRESET, "%lld: %s", rc,
	          omni_error_last());
}

Test(docker_remote_proto, reads_that_disagree)
{
	unsigned char *data = calloc(1, 200 << 10);
	struct reply *r;
	struct omni_file *f;
	char buf[16];

	cr_assert(data);
	/* More data than asked for (an open for reading sends nothing). */
	r = next_reply(0);
	add_frame(r, OMNI_FILES_R_DATA, data, 200 << 10);
	add_status(r, 200 << 10, "");
	/* A count that is not the bytes sent. */
	r = next_reply(1);
	add_frame(r, OMNI_FILES_R_DATA, data, 5);
	add_status(r, 9, "");
	/* A negative count that is no errno. */
	r = next_reply(2);
	add_status(r, -100000, "");
	free(data);
	struct omni_backend *b = fake_backend();
	omni_assert_ok(omni__docker_remote_open(b, "x", O_RDONLY, 0, &f));
	assert_proto(omni__docker_remote_read(f, buf, sizeof(buf), 0));
	assert_proto(omni__docker_remote_read(f, buf, sizeof(buf), 0));
	assert_proto(omni__docker_remote_read(f, buf, sizeof(buf), 0));
	omni_assert_ok(omni__docker_remote_release(f));
}

Test(docker_remote_proto, bad_links_statfs_and_types)
{
	unsigned char link[8] = { 0, 0, 0, 50, 'a', 'b', 'c', 'd' };
	char buf[64];
	struct statvfs sv;

	add_frame(next_reply(0), OMNI_FILES_R_LINK, link, sizeof(link));
	add_frame(next_reply(1), OMNI_FILES_R_STATFS, link, sizeof(link));
	add_frame(next_reply(2), 0x99, NULL, 0);
	add_status(next_reply(3), 7, ""); /* a count from mkdir */
	struct omni_backend *b = fake_backend();
	assert_proto(omni__docker_remote_readlink(b, "l", buf, sizeof(buf)));
	assert_proto(omni__docker_remote_statfs(b, &sv));
	assert_proto(omni__docker_remote_mkdir(b, "d", 0755));
	assert_proto(omni__docker_remote_mkdir(b, "d", 0755));
}

Test(docker_remote_proto, writes_counted_wrong_and_errors_passed_on)
{
	struct omni_file *f;

	add_attr(next_reply(0));
	struct reply *r = next_reply(0);
	add_attr(r);
	add_status(r, 1000, ""); /* more than sent */
	/* The session stays in step: the error comes on it. */
	add_status(next_reply(0), -ENOSPC, "write x: No space left on device");
	/* A count without the attributes before it. */
	add_attr(next_reply(0));
	add_status(next_reply(0), 3, "");
	struct omni_backend *b = fake_backend();
	omni_assert_ok(omni__docker_remote_open(b, "x", O_WRONLY, 0, &f));
	cr_assert_eq(omni__docker_remote_write(f, "abc", 3, 0), 3);
	assert_proto(omni__docker_remote_flush(f));
	cr_assert_eq(omni__docker_remote_write(f, "abc", 3, 0), 3);
	cr_assert_eq(omni__docker_remote_release(f), -ENOSPC);
	cr_assert(strstr(omni_error_last(), "No space left"), "%s",
	          omni_error_last());
	omni_assert_ok(omni__docker_remote_open(b, "x", O_WRONLY, 0, &f));
	cr_assert_eq(omni__docker_remote_write(f, "abc", 3, 0), 3);
	assert_proto(omni__docker_remote_release(f));
}

Test(docker_remote_proto, an_agent_without_file_sessions)
{
	unsigned char err[40] = { 0xff, 0xff, 0xff, 0xb9 }; /* -EPROTO */
	struct stat st;

	memcpy(err + 4, "expected an EXEC or CONTROL frame", 33);
	add_frame(next_reply(0), OMNI_IPC_ERROR, err, 37);
	struct omni_backend *b = fake_backend();
	cr_assert_eq(omni__docker_remote_stat(b, "x", &st), -EPROTONOSUPPORT);
	cr_assert(strstr(omni_error_last(), "older"), "%s", omni_error_last());
}

/* --- dropped sessions
 * --------------------------------------------------------- */

Test(docker_remote_proto, a_dead_session_is_replaced_when_safe)
{
	struct stat st;

	add_attr(next_reply(0));
	add_close(0); /* dies on the second request, answering nothing */
	add_attr(next_reply(1));
	struct omni_backend *b = fake_backend();
	omni_assert_ok(omni__docker_remote_stat(b, "x", &st));
	omni_assert_ok(omni__docker_remote_stat(b, "x", &st));
	struct omni__docker_remote_counters c;
	omni__docker_remote_counters(pr, &c);
	cr_assert_eq(c.retries, 1);
	cr_assert_eq(fk.next, 2);
}

Test(docker_remote_proto, a_name_operation_is_never_sent_twice)
{
	add_status(next_reply(0), 0, "");
	add_close(0);
	add_status(next_reply(1), 0, "");
	struct omni_backend *b = fake_backend();
	omni_assert_ok(omni__docker_remote_mkdir(b, "a", 0755));
	cr_assert_eq(omni__docker_remote_mkdir(b, "b", 0755), -ECONNRESET);
	cr_assert(strstr(omni_error_last(), "mkdir b"), "%s",
	          omni_error_last());
	struct omni__docker_remote_counters c;
	omni__docker_remote_counters(pr, &c);
	cr_assert_eq(c.retries, 0);
	/* The next one goes on a new session. */
	omni_assert_ok(omni__docker_remote_mkdir(b, "c", 0755));
	cr_assert_eq(fk.requests_seen, 3);
}

/* --- the watch
 * ---------------------------------------------------------------- */

static pthread_mutex_t wlock = PTHREAD_MUTEX_INITIALIZER;
static int w_ready, w_lost, w_events;

static void on_change(const char *path, const struct stat *st, void *payload)
{
	(void)st;
	(void)payload;
	pthread_mutex_lock(&wlock);
	if (!path)
		w_lost++;
	else if (!path[0])
		w_ready++;
	else {
		cr_assert(omni__files_path_ok(path), "%s", path);
		w_events++;
	}
	pthread_mutex_unlock(&wlock);
}

Test(docker_remote_proto, a_bad_event_ends_the_watch_session)
{
	struct omni_ipc_buf e = { 0 };
	struct reply *r = next_reply(0);
	struct stat st = file_stat();

	add_frame(r, OMNI_FILES_R_READY, NULL, 0);
	omni_assert_ok(omni__files_put_event(&e, "ok/file", &st));
	add_frame(r, OMNI_FILES_R_EVENT, e.data, e.len);
	omni_assert_ok(omni__files_put_event(&e, "../../etc/passwd", NULL));
	add_frame(r, OMNI_FILES_R_EVENT, e.data, e.len);
	/* The watch comes back on a new session; lost events (OVERFLOW)
	 * say "drop everything" as a restart does. */
	r = next_reply(1);
	add_frame(r, OMNI_FILES_R_READY, NULL, 0);
	add_frame(r, OMNI_FILES_R_OVERFLOW, NULL, 0);
	omni_assert_ok(omni__files_put_event(&e, "again", NULL));
	add_frame(r, OMNI_FILES_R_EVENT, e.data, e.len);
	omni_ipc_buf_finish(&e);
	struct omni_backend *b = fake_backend();
	omni_assert_ok(omni__docker_remote_watch(b, on_change, NULL));
	for (int i = 0; i < 250; i++) {
		pthread_mutex_lock(&wlock);
		int n = w_events;
		pthread_mutex_unlock(&wlock);
		if (n == 2)
			break;
		usleep(20 * 1000);
	}
	omni__docker_remote_watch_stop(pr);
	cr_assert_eq(w_events, 2);
	cr_assert_eq(w_lost, 1);
	cr_assert_eq(w_ready, 3, "start, overflow, restart: %d", w_ready);
	struct omni__docker_remote_counters c;
	omni__docker_remote_counters(pr, &c);
	cr_assert_eq(c.bad, 1);
	cr_assert_eq(c.watch_starts, 2);
}
