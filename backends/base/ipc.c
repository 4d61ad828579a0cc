/*
 * backends/base/ipc.c - encoder and decoder of the exec wire protocol
 * (omni/ipc.h).
 *
 * libc only: omni-agent links this file statically. Frames are written
 * with one sendmsg() of an iovec (header, payload) so that a frame is not
 * split by another writer's frame as long as callers hold their write
 * lock; reads loop until the whole frame has arrived.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "omni/ipc.h"

void omni_ipc_buf_finish(struct omni_ipc_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

static int buf_reserve(struct omni_ipc_buf *buf, size_t extra)
{
	if (extra > OMNI_IPC_MAX_FRAME || buf->len > OMNI_IPC_MAX_FRAME - extra)
		return -EMSGSIZE;
	if (buf->len + extra <= buf->cap)
		return 0;
	size_t cap = buf->cap ? buf->cap : 256;
	while (cap < buf->len + extra)
		cap *= 2;
	unsigned char *p = realloc(buf->data, cap);
	if (!p)
		return -ENOMEM;
	buf->data = p;
	buf->cap = cap;
	return 0;
}

int omni_ipc_buf_put(struct omni_ipc_buf *buf, const void *data, size_t len)
{
	int rc = buf_reserve(buf, len);

	if (rc < 0)
		return rc;
	if (len)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	return 0;
}

int omni_ipc_buf_put_u8(struct omni_ipc_buf *buf, uint8_t v)
{
	return omni_ipc_buf_put(buf, &v, 1);
}

int omni_ipc_buf_put_u16(struct omni_ipc_buf *buf, uint16_t v)
{
	unsigned char b[2] = { (unsigned char)(v >> 8), (unsigned char)v };

	return omni_ipc_buf_put(buf, b, sizeof(b));
}

int omni_ipc_buf_put_u32(struct omni_ipc_buf *buf, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24),
		               (unsigned char)(v >> 16),
		               (unsigned char)(v >> 8), (unsigned char)v };

	return omni_ipc_buf_put(buf, b, sizeof(b));
}

int omni_ipc_buf_put_field(struct omni_ipc_buf *buf, uint8_t tag,
                           const void *data, size_t len)
{
	int rc;

	if (len > OMNI_IPC_MAX_FRAME)
		return -EMSGSIZE;
	if ((rc = omni_ipc_buf_put_u8(buf, tag)) < 0 ||
	    (rc = omni_ipc_buf_put_u32(buf, (uint32_t)len)) < 0 ||
	    (rc = omni_ipc_buf_put(buf, data, len)) < 0)
		return rc;
	return 0;
}

uint16_t omni_ipc_get_u16(const unsigned char *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

uint32_t omni_ipc_get_u32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static int put_strings(struct omni_ipc_buf *buf, uint8_t tag, char *const *list)
{
	int rc;

	for (; list && *list; list++) {
		rc = omni_ipc_buf_put_field(buf, tag, *list, strlen(*list));
		if (rc < 0)
			return rc;
	}
	return 0;
}

int omni_ipc_request_encode(const struct omni_ipc_request *req,
                            struct omni_ipc_buf *buf)
{
	int rc;

	if ((rc = put_strings(buf, OMNI_IPC_F_ARG, req->argv)) < 0)
		return rc;
	if (req->shell &&
	    (rc = omni_ipc_buf_put_field(buf, OMNI_IPC_F_SHELL, req->shell,
	                                 strlen(req->shell))) < 0)
		return rc;
	if (req->cwd &&
	    (rc = omni_ipc_buf_put_field(buf, OMNI_IPC_F_CWD, req->cwd,
	                                 strlen(req->cwd))) < 0)
		return rc;
	if ((rc = put_strings(buf, OMNI_IPC_F_ENV, req->env)) < 0)
		return rc;
	if (req->timeout_ms) {
		unsigned char v[4] = { (unsigned char)(req->timeout_ms >> 24),
			               (unsigned char)(req->timeout_ms >> 16),
			               (unsigned char)(req->timeout_ms >> 8),
			               (unsigned char)req->timeout_ms };
		rc = omni_ipc_buf_put_field(buf, OMNI_IPC_F_TIMEOUT_MS, v, 4);
		if (rc < 0)
			return rc;
	}
	if (req->tty) {
		unsigned char v[4] = { (unsigned char)(req->rows >> 8),
			               (unsigned char)req->rows,
			               (unsigned char)(req->cols >> 8),
			               (unsigned char)req->cols };
		rc = omni_ipc_buf_put_field(buf, OMNI_IPC_F_TTY, v, 4);
		if (rc < 0)
			return rc;
	}
	if (req->want_stdin) {
		unsigned char one = 1;
		rc = omni_ipc_buf_put_field(buf, OMNI_IPC_F_STDIN, &one, 1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static char *dup_bytes(const unsigned char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		return NULL;
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

/* Append s to a NULL-terminated list, growing it by one. */
static int list_push(char ***list, size_t *count, char *s)
{
	char **l = realloc(*list, (*count + 2) * sizeof(**list));

	if (!l)
		return -ENOMEM;
	l[(*count)++] = s;
	l[*count] = NULL;
	*list = l;
	return 0;
}

int omni_ipc_request_decode(struct omni_ipc_request *req,
                            const unsigned char *data, size_t len)
{
	size_t pos = 0, nargs = 0, nenv = 0;
	int rc = 0;

	memset(req, 0, sizeof(*req));
	while (pos < len) {
		if (len - pos < 5) {
			rc = -EPROTO;
			goto fail;
		}
		uint8_t tag = data[pos];
		uint32_t flen = omni_ipc_get_u32(data + pos + 1);
		pos += 5;
		if (flen > len - pos) {
			rc = -EPROTO;
			goto fail;
		}
		const unsigned char *v = data + pos;
		pos += flen;

		switch (tag) {
		case OMNI_IPC_F_ARG:
		case OMNI_IPC_F_ENV: {
			if (memchr(v, '\0', flen)) {
				rc = -EPROTO;
				goto fail;
			}
			char *s = dup_bytes(v, flen);
			if (!s) {
				rc = -ENOMEM;
				goto fail;
			}
			rc = tag == OMNI_IPC_F_ARG
			         ? list_push(&req->argv, &nargs, s)
			         : list_push(&req->env, &nenv, s);
			if (rc < 0) {
				free(s);
				goto fail;
			}
			break;
		}
		case OMNI_IPC_F_SHELL:
		case OMNI_IPC_F_CWD: {
			char **slot =
			    tag == OMNI_IPC_F_SHELL ? &req->shell : &req->cwd;
			if (*slot || memchr(v, '\0', flen)) {
				rc = -EPROTO;
				goto fail;
			}
			*slot = dup_bytes(v, flen);
			if (!*slot) {
				rc = -ENOMEM;
				goto fail;
			}
			break;
		}
		case OMNI_IPC_F_TIMEOUT_MS:
			if (flen != 4) {
				rc = -EPROTO;
				goto fail;
			}
			req->timeout_ms = omni_ipc_get_u32(v);
			break;
		case OMNI_IPC_F_TTY:
			if (flen != 4) {
				rc = -EPROTO;
				goto fail;
			}
			req->tty = true;
			req->rows = omni_ipc_get_u16(v);
			req->cols = omni_ipc_get_u16(v + 2);
			break;
		case OMNI_IPC_F_STDIN:
			if (flen != 1) {
				rc = -EPROTO;
				goto fail;
			}
			req->want_stdin = v[0] != 0;
			break;
		default:
			/* A field from a newer peer: skip it. */
			break;
		}
	}
	if ((req->argv == NULL) == (req->shell == NULL)) {
		/* Exactly one of argv and shell must be given. */
		rc = -EPROTO;
		goto fail;
	}
	return 0;
fail:
	omni_ipc_request_finish(req);
	return rc;
}

void omni_ipc_request_finish(struct omni_ipc_request *req)
{
	for (char **p = req->argv; p && *p; p++)
		free(*p);
	for (char **p = req->env; p && *p; p++)
		free(*p);
	free(req->argv);
	free(req->env);
	free(req->shell);
	free(req->cwd);
	memset(req, 0, sizeof(*req));
}

static int write_all_iov(int fd, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };
		ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOTSOCK) {
				/* A pipe or file (tests): plain writev. */
				n = writev(fd, iov, iovcnt);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0)
					return -errno;
			} else {
				return -errno;
			}
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

int omni_ipc_send2(int fd, uint8_t type, const void *a, size_t alen,
                   const void *b, size_t blen)
{
	if (alen + blen > OMNI_IPC_MAX_FRAME - 1)
		return -EMSGSIZE;
	uint32_t len = (uint32_t)(alen + blen + 1);
	unsigned char head[5] = { (unsigned char)(len >> 24),
		                  (unsigned char)(len >> 16),
		                  (unsigned char)(len >> 8), (unsigned char)len,
		                  type };
	struct iovec iov[3] = {
		{ .iov_base = head, .iov_len = sizeof(head) },
		{ .iov_base = (void *)a, .iov_len = alen },
		{ .iov_base = (void *)b, .iov_len = blen },
	};

	return write_all_iov(fd, iov, 3);
}

int omni_ipc_send(int fd, uint8_t type, const void *payload, size_t len)
{
	return omni_ipc_send2(fd, type, payload, len, NULL, 0);
}

int omni_ipc_send_u32(int fd, uint8_t type, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24),
		               (unsigned char)(v >> 16),
		               (unsigned char)(v >> 8), (unsigned char)v };

	return omni_ipc_send(fd, type, b, sizeof(b));
}

int omni_ipc_send_exit(int fd, int exit_code, int sig, bool timed_out)
{
	uint32_t c = (uint32_t)exit_code, s = (uint32_t)sig;
	unsigned char b[9] = {
		(unsigned char)(c >> 24),          (unsigned char)(c >> 16),
		(unsigned char)(c >> 8),           (unsigned char)c,
		(unsigned char)(s >> 24),          (unsigned char)(s >> 16),
		(unsigned char)(s >> 8),           (unsigned char)s,
		(unsigned char)(timed_out ? 1 : 0)
	};

	return omni_ipc_send(fd, OMNI_IPC_EXIT, b, sizeof(b));
}

int omni_ipc_send_error(int fd, int err, const char *msg)
{
	uint32_t e = (uint32_t)err;
	unsigned char b[4] = { (unsigned char)(e >> 24),
		               (unsigned char)(e >> 16),
		               (unsigned char)(e >> 8), (unsigned char)e };

	return omni_ipc_send2(fd, OMNI_IPC_ERROR, b, sizeof(b), msg,
	                      msg ? strlen(msg) : 0);
}

int omni_ipc_write_all(int fd, const void *data, size_t len)
{
	sigset_t pipe_set, old;
	int rc = 0;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = fd,
					            .events = POLLOUT };
				poll(&p, 1, -1);
				continue;
			}
			rc = -errno;
			break;
		}
		data = (const char *)data + n;
		len -= (size_t)n;
	}
	if (rc == -EPIPE) {
		struct timespec zero = { 0, 0 };
		sigtimedwait(&pipe_set, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/* Read exactly n bytes. Returns 1, 0 on EOF before any byte, -errno. */
static int read_full(int fd, void *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (char *)p + got, n - got);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return got == 0 ? 0 : -EPROTO;
		got += (size_t)r;
	}
	return 1;
}

int omni_ipc_recv(int fd, uint8_t *type, struct omni_ipc_buf *buf)
{
	unsigned char head[5];
	int rc = read_full(fd, head, 4);

	if (rc <= 0)
		return rc;
	uint32_t len = omni_ipc_get_u32(head);
	if (len < 1 || len > OMNI_IPC_MAX_FRAME)
		return -EPROTO;
	rc = read_full(fd, head + 4, 1);
	if (rc <= 0)
		return rc == 0 ? -EPROTO : rc;
	*type = head[4];
	buf->len = 0;
	if ((rc = buf_reserve(buf, len - 1)) < 0)
		return rc;
	if (len > 1) {
		rc = read_full(fd, buf->data, len - 1);
		if (rc <= 0)
			return rc == 0 ? -EPROTO : rc;
	}
	buf->len = len - 1;
	return 1;
}
