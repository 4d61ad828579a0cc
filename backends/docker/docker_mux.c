/*
 * backends/docker/docker_mux.c - agent mode's connections to omni-agent: one
 * long-lived hijacked exec stream running `/omni-agent mux` in the container,
 * carrying every connection as a channel of base/mux.c.
 *
 * omni__docker_mux_connect() gives the caller (docker_exec.c, the file
 * client) one end of a socketpair; a thread pumps the other end as a channel
 * of the stream, and `omni-agent mux` (exec/agent_mux.c) connects the
 * channel to the agent's Unix socket inside the container. The OPEN frame
 * goes out with the caller's first bytes, so connect + request costs one
 * round trip, as a local socket would.
 *
 * The stream: POST /containers/{id}/exec (AttachStdin, AttachStdout,
 * AttachStderr, Tty false, Cmd /omni-agent mux), then POST /exec/{id}/start
 * with "Upgrade: tcp" through docker_stream.c. Host to container is the
 * exec's raw stdin; container to host comes in Docker's 8-byte frames
 * (stream 1 stdout: mux frames; stream 2 stderr: the mux's messages, which
 * are logged), demultiplexed here before the mux parses them.
 *
 * A dropped stream (network, daemon restart, container stop) ends the
 * thread: every open channel's descriptor is closed (its user reads EOF or
 * ECONNRESET, and reports the agent gone), and the next connect makes a new
 * exec and stream. Docker closes the old exec's stdin when its connection
 * goes, so the old `omni-agent mux` exits by itself.
 *
 * Locking: x->lock serializes connect (which may re-establish) and stop;
 * the running mux is shared through its own thread-safe open.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mux.h"
#include "docker/docker.h"
#include "omni/error.h"
#include "omni/log.h"

#define MUX_TIMEOUT_MS 30000L

struct omni__docker_mux {
	pthread_mutex_t lock;
	struct omni__mux *m;
	pthread_t thread;
	bool thread_on;
	struct omni__docker_stream st;
	char name[160];
	/* Docker's frames: header bytes so far, payload left, its stream. */
	uint8_t hdr[8];
	size_t hdr_len;
	size_t left;
	uint8_t kind;
	uint8_t raw[65536];
	size_t raw_off, raw_len;
	char errline[256];
	size_t errlen;
	unsigned streams; /* made so far (reconnects + 1) */
};

static void log_stderr(struct omni__docker_mux *x, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n' || x->errlen == sizeof(x->errline) - 1) {
			x->errline[x->errlen] = '\0';
			omni_log(OMNI_LOG_WARN, "docker: %s: %s", x->name,
			         x->errline);
			x->errlen = 0;
			if (p[i] == '\n')
				continue;
		}
		/* The container's text: nothing that would drive a
		 * terminal reaches the log. */
		x->errline[x->errlen++] =
		    p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	}
}

/* The mux's recv: stdout payload bytes of Docker's frames. */
static ssize_t host_recv(void *ctx, void *buf, size_t len)
{
	struct omni__docker_mux *x = ctx;

	for (;;) {
		if (x->raw_off == x->raw_len) {
			ssize_t n = omni__docker_stream_recv(&x->st, x->raw,
			                                     sizeof(x->raw));
			if (n <= 0)
				return n;
			x->raw_off = 0;
			x->raw_len = (size_t)n;
		}
		while (x->raw_off < x->raw_len) {
			if (x->left == 0) {
				x->hdr[x->hdr_len++] = x->raw[x->raw_off++];
				if (x->hdr_len < 8)
					continue;
				x->hdr_len = 0;
				x->kind = x->hdr[0];
				x->left = (size_t)x->hdr[4] << 24 |
				          (size_t)x->hdr[5] << 16 |
				          (size_t)x->hdr[6] << 8 | x->hdr[7];
				continue;
			}
			size_t take = x->raw_len - x->raw_off;
			if (take > x->left)
				take = x->left;
			const uint8_t *p = x->raw + x->raw_off;
			if (x->kind == 1) {
				if (take > len)
					take = len;
				memcpy(buf, p, take);
				x->raw_off += take;
				x->left -= take;
				return (ssize_t)take;
			}
			log_stderr(x, p, take);
			x->raw_off += take;
			x->left -= take;
		}
	}
}

static ssize_t host_send(void *ctx, const void *buf, size_t len)
{
	struct omni__docker_mux *x = ctx;

	return omni__docker_stream_send(&x->st, buf, len);
}

static void *run(void *arg)
{
	struct omni__docker_mux *x = arg;
	int rc = omni__mux_run(x->m);

	if (rc < 0)
		omni_log(OMNI_LOG_WARN,
		         "docker: the stream to omni-agent in %s ended: %s",
		         x->name, strerror(-rc));
	else
		omni_log(OMNI_LOG_DEBUG,
		         "docker: the stream to omni-agent in %s ended",
		         x->name);
	return NULL;
}

/* Stop and free the current stream (x->lock held). */
static void teardown(struct omni__docker_mux *x)
{
	if (x->thread_on) {
		omni__mux_stop(x->m);
		pthread_join(x->thread, NULL);
		x->thread_on = false;
	}
	omni__mux_free(x->m);
	x->m = NULL;
	omni__docker_stream_close(&x->st);
	x->hdr_len = x->left = x->raw_off = x->raw_len = x->errlen = 0;
}

static int establish(struct omni__docker_backend *db,
                     struct omni__docker_mux *x)
{
	char path[256], what[256];
	cJSON *reply = NULL;
	int rc;

	snprintf(path, sizeof(path), "/containers/%s/exec", db->id);
	snprintf(what, sizeof(what), "starting omni-agent mux in %s", db->name);
	rc = omni__docker_call(&db->api, "POST", path,
	                       "{\"AttachStdin\":true,\"AttachStdout\":true,"
	                       "\"AttachStderr\":true,\"Tty\":false,\"Cmd\":"
	                       "[\"" OMNI_DOCKER_AGENT_PATH
	                       "\",\"mux\",\"--socket\",\"" OMNI_DOCKER_RUN_DIR
	                       "/agent.sock\"]}",
	                       MUX_TIMEOUT_MS, &reply, what);
	if (rc < 0)
		return rc;
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(reply, "Id");
	if (!cJSON_IsString(id) || strlen(id->valuestring) > 128 ||
	    strchr(id->valuestring, '/')) {
		cJSON_Delete(reply);
		return omni_error_set(-EPROTO, "docker: %s: no exec id", what);
	}
	snprintf(path, sizeof(path), "/exec/%s/start", id->valuestring);
	cJSON_Delete(reply);
	rc = omni__docker_stream_open(&db->api, path,
	                              "{\"Detach\":false,\"Tty\":false}",
	                              MUX_TIMEOUT_MS, &x->st);
	if (rc < 0)
		return rc;
	struct omni__mux_io io = {
		.recv = host_recv,
		.send = host_send,
		.in_fd = x->st.fd,
		.out_fd = x->st.fd,
		.ctx = x,
	};
	if ((rc = omni__mux_new(&x->m, &io)) < 0) {
		omni__docker_stream_close(&x->st);
		return omni_error_set_errno(rc, "docker: the agent stream");
	}
	if ((rc = pthread_create(&x->thread, NULL, run, x)) != 0) {
		teardown(x);
		return omni_error_set_errno(-rc, "docker: the agent stream");
	}
	x->thread_on = true;
	x->streams++;
	omni_log(OMNI_LOG_DEBUG, "docker: stream %u to omni-agent in %s open",
	         x->streams, db->name);
	return 0;
}

int omni__docker_mux_connect(struct omni__docker_backend *db, int *fd)
{
	struct omni__docker_mux *x = db->mux;
	int rc;

	*fd = -1;
	if (!x || !db->id[0])
		return omni_error_set(-ENOTCONN,
		                      "docker: the session is not started");
	pthread_mutex_lock(&x->lock);
	if (x->m && omni__mux_open(x->m, fd) == 0) {
		pthread_mutex_unlock(&x->lock);
		return 0;
	}
	if (x->m)
		teardown(x);
	rc = establish(db, x);
	if (rc == 0 && (rc = omni__mux_open(x->m, fd)) < 0)
		rc = omni_error_set_errno(rc, "docker: the agent stream");
	pthread_mutex_unlock(&x->lock);
	return rc;
}

int omni__docker_mux_new(struct omni__docker_backend *db)
{
	struct omni__docker_mux *x = calloc(1, sizeof(*x));

	if (!x)
		return omni_error_set(-ENOMEM, "docker: out of memory");
	pthread_mutex_init(&x->lock, NULL);
	x->st.fd = -1;
	snprintf(x->name, sizeof(x->name), "%s", db->name);
	db->mux = x;
	return 0;
}

void omni__docker_mux_stop(struct omni__docker_backend *db)
{
	struct omni__docker_mux *x = db->mux;

	if (!x)
		return;
	pthread_mutex_lock(&x->lock);
	if (x->m)
		teardown(x);
	pthread_mutex_unlock(&x->lock);
}

void omni__docker_mux_free(struct omni__docker_backend *db)
{
	struct omni__docker_mux *x = db->mux;

	if (!x)
		return;
	omni__docker_mux_stop(db);
	pthread_mutex_destroy(&x->lock);
	free(x);
	db->mux = NULL;
}

unsigned omni__docker_mux_streams(struct omni__docker_backend *db)
{
	struct omni__docker_mux *x = db->mux;
	unsigned n = 0;

	if (x) {
		pthread_mutex_lock(&x->lock);
		n = x->streams;
		pthread_mutex_unlock(&x->lock);
	}
	return n;
}
