/*
 * exec/agent_files.c - omni-agent's file sessions: the requests of the file
 * protocol (omni/ipc_files.h) answered on the workspace, for the docker
 * backend's agent mode, where the host has no bind mount to work on.
 *
 * A session is one connection: requests come one at a time and each is
 * answered before the next is read. Every operation goes through the
 * confined calls the host backends use (core/confined.c, linked into the
 * static agent): paths resolve beneath --workdir with openat2
 * RESOLVE_BENEATH, so no path and no symlink made by a command leads an
 * operation out of the workspace (-EACCES), and the semantics are those of
 * the bind mode's host side. Results are 0, counts or negative errnos with
 * the confined call's message.
 *
 * Files have no handles on the wire: OPEN opens (creating, truncating,
 * checking O_EXCL) and closes again, READ and WRITE open the path for the
 * one transfer. So a connection carries no state beyond the request in
 * flight, and the host may send any request on any of its connections.
 * A file or directory created here gets exactly the mode asked for (the
 * agent's umask is not applied: the host applied the caller's).
 *
 * A request that does not decode is answered STATUS -EPROTO and the
 * session goes on (the framing is intact); a frame that cannot be read
 * ends it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_files.h"
#include "omni/error.h"
#include "omni/ipc_files.h"
#include "omni/log.h"

/* A listing frame is sent when it holds this much. */
#define LIST_FRAME_BYTES (256u << 10)

struct session {
	int fd;
	struct omni__confined root;
	unsigned char *data; /* OMNI_FILES_MAX_DATA bytes, for READ */
	struct omni_ipc_buf out;
};

static int status(struct session *s, int64_t rc)
{
	return omni__files_send_status(s->fd, rc,
	                               rc < 0 ? omni_error_last() : NULL);
}

/* --- metadata ------------------------------------------------------------- */

static int do_stat(struct session *s, const struct omni__files_req *r)
{
	struct stat st;
	int rc;

	if (r->flags & OMNI_FILES_FOLLOW) {
		int fd = omni__confined_openat(&s->root, r->path, O_PATH, 0);
		rc = fd < 0 ? omni_error_set_errno(fd == -EXDEV ? -EACCES : fd,
		                                   "stat %s", r->path)
		            : 0;
		if (fd >= 0) {
			if (fstat(fd, &st) < 0)
				rc = omni_error_set_errno(-errno, "stat %s",
				                          r->path);
			close(fd);
		}
	} else {
		rc = omni__confined_stat(&s->root, r->path, &st);
	}
	if (rc < 0)
		return status(s, rc);
	s->out.len = 0;
	if ((rc = omni__files_put_attr(&s->out, &st)) < 0)
		return status(s, omni_error_set(rc, "out of memory"));
	return omni_ipc_send(s->fd, OMNI_FILES_R_ATTR, s->out.data, s->out.len);
}

/* The ENTRIES frame being filled: count in its first 4 bytes. */
struct lister {
	struct session *s;
	uint32_t count;
	int send_err;
};

static int list_flush(struct lister *l)
{
	struct omni_ipc_buf *b = &l->s->out;

	if (l->count == 0)
		return 0;
	b->data[0] = (unsigned char)(l->count >> 24);
	b->data[1] = (unsigned char)(l->count >> 16);
	b->data[2] = (unsigned char)(l->count >> 8);
	b->data[3] = (unsigned char)l->count;
	int rc = omni_ipc_send(l->s->fd, OMNI_FILES_R_ENTRIES, b->data, b->len);
	b->len = 4;
	l->count = 0;
	return rc;
}

static int list_one(const char *name, const struct stat *st, void *payload)
{
	struct lister *l = payload;
	int rc = omni__files_put_entry(&l->s->out, name, st);

	if (rc == 0) {
		l->count++;
		if (l->s->out.len < LIST_FRAME_BYTES)
			return 0;
		rc = list_flush(l);
	}
	if (rc < 0) {
		l->send_err = rc;
		return 1;
	}
	return 0;
}

static int do_list(struct session *s, const struct omni__files_req *r)
{
	struct lister l = { .s = s };
	int rc;

	s->out.len = 0;
	if ((rc = omni_ipc_buf_put_u32(&s->out, 0)) < 0)
		return status(s, omni_error_set(rc, "out of memory"));
	rc = omni__confined_readdir(&s->root, r->path, list_one, &l);
	if (l.send_err)
		return l.send_err; /* the client is gone */
	if (rc == 0 && (rc = list_flush(&l)) < 0)
		return rc;
	return status(s, rc);
}

static int do_readlink(struct session *s, const struct omni__files_req *r)
{
	char target[PATH_MAX];
	ssize_t n =
	    omni__confined_readlink(&s->root, r->path, target, sizeof(target));
	int rc;

	if (n >= (ssize_t)sizeof(target))
		n = omni_error_set(-ENAMETOOLONG, "readlink %s: too long",
		                   r->path);
	if (n < 0)
		return status(s, n);
	s->out.len = 0;
	if ((rc = omni_ipc_buf_put_u32(&s->out, (uint32_t)n)) < 0 ||
	    (rc = omni_ipc_buf_put(&s->out, target, (size_t)n)) < 0)
		return status(s, omni_error_set(rc, "out of memory"));
	return omni_ipc_send(s->fd, OMNI_FILES_R_LINK, s->out.data, s->out.len);
}

static int do_statfs(struct session *s)
{
	struct statvfs st;
	int rc = omni__confined_statfs(&s->root, &st);

	if (rc < 0)
		return status(s, rc);
	if ((rc = omni__files_put_statfs(&s->out, &st)) < 0)
		return status(s, omni_error_set(rc, "out of memory"));
	return omni_ipc_send(s->fd, OMNI_FILES_R_STATFS, s->out.data,
	                     s->out.len);
}

static int do_mkdir(struct session *s, const struct omni__files_req *r)
{
	int rc = omni__confined_mkdir(&s->root, r->path, r->mode & 07777);

	if (rc == 0)
		rc = omni__confined_chmod(&s->root, r->path, r->mode & 07777);
	return status(s, rc);
}

/* --- content -------------------------------------------------------------- */

/* Open path for a transfer (no creation): -errno with a message. */
static int open_for(struct session *s, const char *path, int flags,
                    const char *what)
{
	int fd = omni__confined_openat(&s->root, path, flags | O_NOCTTY, 0);

	if (fd < 0)
		return omni_error_set_errno(fd == -EXDEV ? -EACCES : fd,
		                            "%s %s", what, path);
	return fd;
}

/* Open path with open(2) flags as open(2) would, but a file created gets
 * exactly mode (O_EXCL first tells whether it was created): a descriptor,
 * or -errno with a message. */
static int open_file(struct session *s, const char *path, int flags,
                     mode_t mode)
{
	bool created = false;
	int fd = -ENOENT;

	flags |= O_NOCTTY;
	for (int tries = 0; tries < 3 && fd == -ENOENT; tries++) {
		if (flags & O_CREAT) {
			fd = omni__confined_openat(
			    &s->root, path, flags | O_EXCL, mode & 07777);
			created = fd >= 0;
			if (fd != -EEXIST || (flags & O_EXCL))
				break;
		}
		/* It exists (or no O_CREAT): open what is there; gone again
		 * in between, it is created on the next turn. */
		fd = omni__confined_openat(&s->root, path, flags & ~O_CREAT, 0);
		if (!(flags & O_CREAT))
			break;
	}
	if (fd < 0)
		return omni_error_set_errno(fd == -EXDEV ? -EACCES : fd,
		                            "open %s", path);
	if (created && fchmod(fd, mode & 07777) < 0) {
		int err = omni_error_set_errno(-errno, "chmod %s", path);
		close(fd);
		return err;
	}
	return fd;
}

/* An ATTR frame of the open file fd: 0 sent, 1 a failure answered
 * with STATUS instead, -errno the client is gone. */
static int send_fd_attr(struct session *s, int fd, const char *path)
{
	struct stat st;
	int rc;

	if (fstat(fd, &st) < 0)
		rc = omni_error_set_errno(-errno, "stat %s", path);
	else {
		s->out.len = 0;
		rc = omni__files_put_attr(&s->out, &st);
		if (rc < 0)
			rc = omni_error_set(rc, "out of memory");
	}
	if (rc < 0)
		return (rc = status(s, rc)) < 0 ? rc : 1;
	return omni_ipc_send(s->fd, OMNI_FILES_R_ATTR, s->out.data, s->out.len);
}

/* OPEN: the file as open(2) would leave it, and its attributes. */
static int do_open(struct session *s, const struct omni__files_req *r)
{
	int flags = omni__files_oflags_from_wire(r->flags), fd, rc;

	if (flags < 0)
		return status(
		    s, omni_error_set(-EINVAL, "open %s: bad flags", r->path));
	if ((fd = open_file(s, r->path, flags, r->mode)) < 0)
		return status(s, fd);
	rc = send_fd_attr(s, fd, r->path);
	close(fd);
	return rc < 0 ? rc : 0;
}

static int do_read(struct session *s, const struct omni__files_req *r)
{
	uint64_t want = r->len, done = 0;
	int fd, rc = 0;

	if (r->off < 0 || want > OMNI_FILES_MAX_READ)
		return status(
		    s, omni_error_set(-EINVAL, "read %s: bad range", r->path));
	if (!s->data && !(s->data = malloc(OMNI_FILES_MAX_DATA)))
		return status(s, omni_error_set(-ENOMEM, "out of memory"));
	if ((fd = open_for(s, r->path, O_RDONLY, "read")) < 0)
		return status(s, fd);
	while (done < want) {
		size_t n = want - done < OMNI_FILES_MAX_DATA
		               ? (size_t)(want - done)
		               : OMNI_FILES_MAX_DATA;
		ssize_t got = pread(fd, s->data, n, r->off + (off_t)done);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = omni_error_set_errno(-errno, "read %s", r->path);
			break;
		}
		if (got == 0)
			break;
		if ((rc = omni_ipc_send(s->fd, OMNI_FILES_R_DATA, s->data,
		                        (size_t)got)) < 0) {
			close(fd);
			return rc; /* the client is gone */
		}
		done += (uint64_t)got;
	}
	close(fd);
	return status(s, rc < 0 ? rc : (int64_t)done);
}

static int do_write(struct session *s, const struct omni__files_req *r)
{
	bool append = r->flags & OMNI_FILES_APPEND;
	int flags = O_WRONLY | (append ? O_APPEND : 0), fd, rc;
	size_t done = 0;

	if (r->off < 0 ||
	    (r->flags &
	     ~(OMNI_FILES_APPEND | OMNI_FILES_W_CREATE | OMNI_FILES_W_TRUNC)))
		return status(
		    s,
		    omni_error_set(-EINVAL, "write %s: bad request", r->path));
	if (r->flags & OMNI_FILES_W_CREATE)
		flags |= O_CREAT;
	if (r->flags & OMNI_FILES_W_TRUNC)
		flags |= O_TRUNC;
	if ((fd = open_file(s, r->path, flags, r->mode)) < 0)
		return status(s, fd);
	while (done < r->data_len) {
		ssize_t n = append
		                ? write(fd, r->data + done, r->data_len - done)
		                : pwrite(fd, r->data + done, r->data_len - done,
		                         r->off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err =
			    omni_error_set_errno(-errno, "write %s", r->path);
			close(fd);
			return status(s, err);
		}
		done += (size_t)n;
	}
	/* Written: the attributes now (the host's fstat needs no request
	 * of its own), then the count. */
	rc = send_fd_attr(s, fd, r->path);
	close(fd);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	return status(s, (int64_t)done);
}

static int do_fsync(struct session *s, const struct omni__files_req *r)
{
	int fd = open_for(s, r->path, O_RDONLY, "fsync"), rc = 0;

	if (fd < 0)
		return status(s, fd);
	if (fsync(fd) < 0)
		rc = omni_error_set_errno(-errno, "fsync %s", r->path);
	close(fd);
	return status(s, rc);
}

/* --- dispatch ------------------------------------------------------------- */

/* Are the request's paths acceptable for its operation? */
static int check_paths(const struct omni__files_req *r)
{
	bool two = r->op == OMNI_FILES_RENAME || r->op == OMNI_FILES_LINK;

	if (!omni__files_path_ok(r->path) ||
	    (two && (!omni__files_path_ok(r->path2) || !r->path2[0])))
		return omni_error_set(-EINVAL, "file protocol: bad path '%s'",
		                      r->path);
	if (r->op == OMNI_FILES_SYMLINK && !r->path2[0])
		return omni_error_set(-ENOENT, "symlink: empty target");
	return 0;
}

static int handle(struct session *s, const struct omni__files_req *r)
{
	const struct omni__confined *c = &s->root;
	int rc;

	omni_error_clear();
	if ((rc = check_paths(r)) < 0)
		return status(s, rc);
	switch (r->op) {
	case OMNI_FILES_STAT:
		return do_stat(s, r);
	case OMNI_FILES_LIST:
		return do_list(s, r);
	case OMNI_FILES_MKDIR:
		return do_mkdir(s, r);
	case OMNI_FILES_RMDIR:
		return status(s, omni__confined_rmdir(c, r->path));
	case OMNI_FILES_UNLINK:
		return status(s, omni__confined_unlink(c, r->path));
	case OMNI_FILES_RENAME:
		if (r->flags & ~3u)
			return status(
			    s, omni_error_set(-EINVAL, "rename: bad flags"));
		return status(
		    s, omni__confined_rename(c, r->path, r->path2, r->flags));
	case OMNI_FILES_SYMLINK:
		return status(s, omni__confined_symlink(c, r->path2, r->path));
	case OMNI_FILES_READLINK:
		return do_readlink(s, r);
	case OMNI_FILES_LINK:
		return status(s, omni__confined_link(c, r->path, r->path2));
	case OMNI_FILES_CHMOD:
		return status(
		    s, omni__confined_chmod(c, r->path, r->mode & 07777));
	case OMNI_FILES_CHOWN:
		return status(s, omni__confined_chown(c, r->path, (uid_t)r->uid,
		                                      (gid_t)r->gid));
	case OMNI_FILES_UTIMENS:
		return status(s, omni__confined_utimens(c, r->path, r->ts));
	case OMNI_FILES_TRUNCATE:
		if (r->off < 0)
			return status(
			    s, omni_error_set(-EINVAL, "truncate: bad size"));
		return status(s, omni__confined_truncate(c, r->path, r->off));
	case OMNI_FILES_STATFS:
		return do_statfs(s);
	case OMNI_FILES_OPEN:
		return do_open(s, r);
	case OMNI_FILES_READ:
		return do_read(s, r);
	case OMNI_FILES_WRITE:
		return do_write(s, r);
	case OMNI_FILES_FSYNC:
		return do_fsync(s, r);
	case OMNI_FILES_WATCH:
		rc = omni__agent_watch(s->fd, &s->root);
		/* A watch that ran ends the session with its client. */
		return rc < 0 ? status(s, rc) : -ECONNRESET;
	default:
		return status(s, omni_error_set(-EPROTO, "unknown request"));
	}
}

void omni__agent_files_serve(int fd, const char *workdir,
                             const unsigned char *data, size_t len)
{
	struct session s = { .fd = fd };
	struct omni_ipc_buf in = { 0 };
	struct omni__files_req *req = malloc(sizeof(*req));
	uint8_t type;
	int rc;

	if (!req) {
		omni__files_send_status(fd, -ENOMEM, "out of memory");
		return;
	}
	if (len != 4 || omni_ipc_get_u32(data) != OMNI_FILES_VERSION) {
		omni__files_send_status(fd, -EPROTONOSUPPORT,
		                        "omni-agent speaks file protocol "
		                        "version 1 only");
		free(req);
		return;
	}
	if (omni__confined_open(&s.root, workdir) < 0) {
		omni__files_send_status(fd, -EIO, omni_error_last());
		free(req);
		return;
	}
	while ((rc = omni_ipc_recv(fd, &type, &in)) > 0) {
		rc = omni__files_req_decode(req, type, in.data, in.len);
		if (rc < 0)
			rc = status(&s, rc);
		else
			rc = handle(&s, req);
		if (rc < 0)
			break; /* the client is gone, or the watch ended */
	}
	omni__confined_close(&s.root);
	omni_ipc_buf_finish(&in);
	omni_ipc_buf_finish(&s.out);
	free(s.data);
	free(req);
}
