/*
 * backends/base/ipc_files.c - encoder and decoder of the file protocol
 * (omni/ipc_files.h).
 *
 * libc only: omni-agent links this file statically. Decoding goes through
 * a cursor (struct rd) whose every read checks the bytes left first and
 * latches a failure, so a decoder reads all its fields and tests once at
 * the end; nothing is read past the frame, whatever the lengths say.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "omni/error.h"
#include "omni/ipc_files.h"

/* --- the cursor ------------------------------------------------------------
 */

struct rd {
	const unsigned char *p;
	size_t len, off;
	const char *bad; /* the first thing found wrong, or NULL */
};

static const unsigned char *take(struct rd *r, size_t n, const char *what)
{
	if (r->bad)
		return NULL;
	if (n > r->len - r->off) {
		r->bad = what;
		return NULL;
	}
	const unsigned char *p = r->p + r->off;
	r->off += n;
	return p;
}

static uint32_t get_u32(struct rd *r, const char *what)
{
	const unsigned char *p = take(r, 4, what);

	return p ? omni_ipc_get_u32(p) : 0;
}

static uint64_t get_u64(struct rd *r, const char *what)
{
	const unsigned char *p = take(r, 8, what);

	if (!p)
		return 0;
	return (uint64_t)omni_ipc_get_u32(p) << 32 | omni_ipc_get_u32(p + 4);
}

static int64_t get_i64(struct rd *r, const char *what)
{
	uint64_t v = get_u64(r, what);
	int64_t s;

	memcpy(&s, &v, sizeof(s));
	return s;
}

/* A string into out (size bytes with the NUL); *n (when given) its
 * length. One that does not fit, or holds a NUL, is a failure. */
static void get_str(struct rd *r, char *out, size_t size, size_t *n,
                    const char *what)
{
	uint32_t len = get_u32(r, what);
	const unsigned char *p;

	out[0] = '\0';
	if (n)
		*n = 0;
	if (r->bad)
		return;
	if (len >= size || !(p = take(r, len, what))) {
		r->bad = what;
		return;
	}
	if (memchr(p, '\0', len)) {
		r->bad = what;
		return;
	}
	memcpy(out, p, len);
	out[len] = '\0';
	if (n)
		*n = len;
}

static int rd_fail(const struct rd *r, const char *ctx)
{
	return omni_error_set(-EPROTO, "file protocol: malformed %s (%s)", ctx,
	                      r->bad ? r->bad : "trailing bytes");
}

/* --- putting ----------------------------------------------------------------
 */

static int put_u64(struct omni_ipc_buf *b, uint64_t v)
{
	int rc = omni_ipc_buf_put_u32(b, (uint32_t)(v >> 32));

	return rc < 0 ? rc : omni_ipc_buf_put_u32(b, (uint32_t)v);
}

static int put_i64(struct omni_ipc_buf *b, int64_t v)
{
	uint64_t u;

	memcpy(&u, &v, sizeof(u));
	return put_u64(b, u);
}

static int put_str(struct omni_ipc_buf *b, const char *s, size_t n)
{
	int rc = omni_ipc_buf_put_u32(b, (uint32_t)n);

	return rc < 0 ? rc : omni_ipc_buf_put(b, s, n);
}

static int put_time(struct omni_ipc_buf *b, const struct timespec *t)
{
	int rc = put_i64(b, (int64_t)t->tv_sec);

	return rc < 0 ? rc : omni_ipc_buf_put_u32(b, (uint32_t)t->tv_nsec);
}

/* --- flags, paths and names ------------------------------------------------
 */

uint32_t omni__files_oflags_to_wire(int flags)
{
	uint32_t w;

	switch (flags & O_ACCMODE) {
	case O_WRONLY:
		w = OMNI_FILES_O_WRONLY;
		break;
	case O_RDWR:
		w = OMNI_FILES_O_RDWR;
		break;
	default:
		w = OMNI_FILES_O_RDONLY;
		break;
	}
	if (flags & O_CREAT)
		w |= OMNI_FILES_O_CREAT;
	if (flags & O_EXCL)
		w |= OMNI_FILES_O_EXCL;
	if (flags & O_TRUNC)
		w |= OMNI_FILES_O_TRUNC;
	if (flags & O_APPEND)
		w |= OMNI_FILES_O_APPEND;
	return w;
}

int omni__files_oflags_from_wire(uint32_t w)
{
	static const int acc[] = { O_RDONLY, O_WRONLY, O_RDWR, -1 };
	int f;

	if (w & ~(0x3u | OMNI_FILES_O_CREAT | OMNI_FILES_O_EXCL |
	          OMNI_FILES_O_TRUNC | OMNI_FILES_O_APPEND))
		return -1;
	if ((f = acc[w & 0x3u]) < 0)
		return -1;
	if (w & OMNI_FILES_O_CREAT)
		f |= O_CREAT;
	if (w & OMNI_FILES_O_EXCL)
		f |= O_EXCL;
	if (w & OMNI_FILES_O_TRUNC)
		f |= O_TRUNC;
	if (w & OMNI_FILES_O_APPEND)
		f |= O_APPEND;
	return f;
}

bool omni__files_name_ok(const char *name, size_t n)
{
	if (n == 0 || n > 255 || memchr(name, '/', n) || memchr(name, 0, n))
		return false;
	return !(name[0] == '.' && (n == 1 || (n == 2 && name[1] == '.')));
}

bool omni__files_path_ok(const char *p)
{
	size_t total = strlen(p);

	if (total >= PATH_MAX)
		return false;
	if (total == 0)
		return true;
	for (const char *s = p;;) {
		const char *slash = strchr(s, '/');
		size_t n = slash ? (size_t)(slash - s) : strlen(s);
		if (!omni__files_name_ok(s, n))
			return false;
		if (!slash)
			return true;
		s = slash + 1;
	}
}

/* --- requests ----------------------------------------------------------------
 */

int omni__files_req_encode(const struct omni__files_req *req,
                           struct omni_ipc_buf *buf)
{
	size_t n1 = strnlen(req->path, PATH_MAX), n2;
	int rc;

	n2 = strnlen(req->path2, PATH_MAX);
	if (n1 >= PATH_MAX || n2 >= PATH_MAX)
		return -ENAMETOOLONG;
	buf->len = 0;
	if ((rc = put_str(buf, req->path, n1)) < 0 ||
	    (rc = put_str(buf, req->path2, n2)) < 0 ||
	    (rc = omni_ipc_buf_put_u32(buf, req->mode)) < 0 ||
	    (rc = omni_ipc_buf_put_u32(buf, req->flags)) < 0 ||
	    (rc = omni_ipc_buf_put_u32(buf, req->uid)) < 0 ||
	    (rc = omni_ipc_buf_put_u32(buf, req->gid)) < 0 ||
	    (rc = put_i64(buf, req->off)) < 0 ||
	    (rc = put_u64(buf, req->len)) < 0 ||
	    (rc = put_time(buf, &req->ts[0])) < 0 ||
	    (rc = put_time(buf, &req->ts[1])) < 0)
		return rc;
	return 0;
}

/* A request's time: ns below 1e9, or UTIME_NOW / UTIME_OMIT. */
static void get_req_time(struct rd *r, struct timespec *t)
{
	t->tv_sec = (time_t)get_i64(r, "time");
	uint32_t ns = get_u32(r, "time");
	if (!r->bad && ns >= 1000000000u && ns != (uint32_t)UTIME_NOW &&
	    ns != (uint32_t)UTIME_OMIT)
		r->bad = "nanoseconds";
	t->tv_nsec = (long)ns;
}

int omni__files_req_decode(struct omni__files_req *req, uint8_t type,
                           const unsigned char *data, size_t len)
{
	struct rd r = { .p = data, .len = len };

	memset(req, 0, sizeof(*req));
	req->op = type;
	if (type < OMNI_FILES_STAT || type > OMNI_FILES_WATCH)
		return omni_error_set(
		    -EPROTO, "file protocol: unknown request 0x%02x", type);
	/* A path too long for us is said so, not called malformed. */
	if (len >= 4 && omni_ipc_get_u32(data) >= PATH_MAX)
		return omni_error_set(-ENAMETOOLONG,
		                      "file protocol: path too long");
	get_str(&r, req->path, sizeof(req->path), NULL, "path");
	get_str(&r, req->path2, sizeof(req->path2), NULL, "second path");
	req->mode = get_u32(&r, "mode");
	req->flags = get_u32(&r, "flags");
	req->uid = get_u32(&r, "uid");
	req->gid = get_u32(&r, "gid");
	req->off = get_i64(&r, "offset");
	req->len = get_u64(&r, "length");
	get_req_time(&r, &req->ts[0]);
	get_req_time(&r, &req->ts[1]);
	if (r.bad)
		return rd_fail(&r, "request");
	req->data = data + r.off;
	req->data_len = len - r.off;
	return 0;
}

/* --- answers: encoding --------------------------------------------------- */

int omni__files_put_attr(struct omni_ipc_buf *b, const struct stat *st)
{
	const struct timespec *t[3] = { &st->st_atim, &st->st_mtim,
		                        &st->st_ctim };
	int rc;

	if ((rc = omni_ipc_buf_put_u32(b, (uint32_t)st->st_mode)) < 0 ||
	    (rc = omni_ipc_buf_put_u32(b, (uint32_t)st->st_nlink)) < 0 ||
	    (rc = omni_ipc_buf_put_u32(b, (uint32_t)st->st_uid)) < 0 ||
	    (rc = omni_ipc_buf_put_u32(b, (uint32_t)st->st_gid)) < 0 ||
	    (rc = put_i64(b, (int64_t)st->st_size)) < 0 ||
	    (rc = put_i64(b, (int64_t)st->st_blocks)) < 0 ||
	    (rc = omni_ipc_buf_put_u32(b, (uint32_t)st->st_blksize)) < 0 ||
	    (rc = put_u64(b, (uint64_t)st->st_ino)) < 0 ||
	    (rc = put_u64(b, (uint64_t)st->st_rdev)) < 0)
		return rc;
	for (int i = 0; i < 3; i++)
		if ((rc = put_time(b, t[i])) < 0)
			return rc;
	return 0;
}

int omni__files_put_entry(struct omni_ipc_buf *b, const char *name,
                          const struct stat *st)
{
	size_t before = b->len;
	int rc = put_str(b, name, strlen(name));

	if (rc == 0)
		rc = omni__files_put_attr(b, st);
	if (rc < 0)
		b->len = before; /* no half entry */
	return rc;
}

int omni__files_put_statfs(struct omni_ipc_buf *b, const struct statvfs *st)
{
	const uint64_t v[9] = { st->f_bsize, st->f_frsize, st->f_blocks,
		                st->f_bfree, st->f_bavail, st->f_files,
		                st->f_ffree, st->f_favail, st->f_namemax };
	int rc = 0;

	b->len = 0;
	for (int i = 0; i < 9 && rc == 0; i++)
		rc = put_u64(b, v[i]);
	return rc;
}

int omni__files_put_event(struct omni_ipc_buf *b, const char *path,
                          const struct stat *st)
{
	int rc;

	b->len = 0;
	if ((rc = omni_ipc_buf_put_u8(b, st ? 1 : 0)) < 0 ||
	    (rc = put_str(b, path, strlen(path))) < 0)
		return rc;
	return st ? omni__files_put_attr(b, st) : 0;
}

int omni__files_send_status(int fd, int64_t result, const char *msg)
{
	unsigned char head[4];
	uint32_t v = (uint32_t)(int32_t)result;

	if (result > INT32_MAX)
		v = INT32_MAX;
	head[0] = (unsigned char)(v >> 24);
	head[1] = (unsigned char)(v >> 16);
	head[2] = (unsigned char)(v >> 8);
	head[3] = (unsigned char)v;
	if (result >= 0 || !msg)
		msg = "";
	size_t n = strnlen(msg, 4000);
	return omni_ipc_send2(fd, OMNI_FILES_R_STATUS, head, sizeof(head), msg,
	                      n);
}

/* --- answers: decoding -----------------------------------------------------
 */

int omni__files_decode_status(const unsigned char *data, size_t len,
                              int64_t *result, char *msg, size_t msg_size)
{
	if (len < 4)
		return omni_error_set(-EPROTO,
		                      "file protocol: malformed status");
	int32_t v;
	uint32_t u = omni_ipc_get_u32(data);
	memcpy(&v, &u, sizeof(v));
	/* An error is a real errno: anything else would be passed on to
	 * callers that hand it to the kernel. */
	if (v < -4095)
		return omni_error_set(
		    -EPROTO, "file protocol: error code %d out of range",
		    (int)v);
	*result = v;
	if (msg_size) {
		size_t n = len - 4 < msg_size - 1 ? len - 4 : msg_size - 1;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = data[4 + i];
			msg[i] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
		}
		msg[n] = '\0';
	}
	return 0;
}

static bool type_ok(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG:
	case S_IFDIR:
	case S_IFLNK:
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFCHR:
	case S_IFBLK:
		return true;
	default:
		return false;
	}
}

static void get_attr(struct rd *r, struct stat *st)
{
	struct timespec *t[3] = { &st->st_atim, &st->st_mtim, &st->st_ctim };

	memset(st, 0, sizeof(*st));
	uint32_t mode = get_u32(r, "mode");
	st->st_nlink = get_u32(r, "nlink");
	st->st_uid = get_u32(r, "uid");
	st->st_gid = get_u32(r, "gid");
	int64_t size = get_i64(r, "size");
	int64_t blocks = get_i64(r, "blocks");
	st->st_blksize = get_u32(r, "blksize");
	st->st_ino = (ino_t)get_u64(r, "ino");
	st->st_rdev = (dev_t)get_u64(r, "rdev");
	for (int i = 0; i < 3; i++) {
		t[i]->tv_sec = (time_t)get_i64(r, "time");
		uint32_t ns = get_u32(r, "time");
		if (!r->bad && ns >= 1000000000u)
			r->bad = "nanoseconds";
		t[i]->tv_nsec = (long)ns;
	}
	if (r->bad)
		return;
	if ((mode & ~(uint32_t)(S_IFMT | 07777)) || !type_ok(mode))
		r->bad = "mode";
	else if (size < 0 || blocks < 0)
		r->bad = "size";
	st->st_mode = (mode_t)mode;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)blocks;
}

int omni__files_decode_attr(const unsigned char *data, size_t len,
                            struct stat *st)
{
	struct rd r = { .p = data, .len = len };

	get_attr(&r, st);
	if (r.bad || r.off != len)
		return rd_fail(&r, "attributes");
	return 0;
}

/* One entry's name: a string that is a valid entry name. */
static void get_name(struct rd *r, char *name, size_t size)
{
	size_t n = 0;

	get_str(r, name, size, &n, "name");
	if (!r->bad && !omni__files_name_ok(name, n))
		r->bad = "name";
}

int omni__files_decode_entries(const unsigned char *data, size_t len,
                               int (*cb)(const char *name,
                                         const struct stat *st, void *payload),
                               void *payload)
{
	struct rd r = { .p = data, .len = len };
	char name[256];
	struct stat st;
	uint32_t count = get_u32(&r, "count");

	/* Each entry takes at least 4 + 1 + an attribute block: a count
	 * the frame cannot hold is refused before anything is read. */
	if (!r.bad && count > (len - 4) / (5 + OMNI_FILES_ATTR_SIZE))
		r.bad = "count";
	for (uint32_t i = 0; i < count && !r.bad; i++) {
		get_name(&r, name, sizeof(name));
		get_attr(&r, &st);
	}
	if (r.bad || r.off != len)
		return rd_fail(&r, "listing");
	r.off = 4;
	for (uint32_t i = 0; i < count; i++) {
		get_name(&r, name, sizeof(name));
		get_attr(&r, &st);
		int rc = cb(name, &st, payload);
		if (rc != 0)
			return rc;
	}
	return 0;
}

int omni__files_decode_link(const unsigned char *data, size_t len, char *buf,
                            size_t size, size_t *out_len)
{
	struct rd r = { .p = data, .len = len };
	size_t n = 0;

	get_str(&r, buf, size, &n, "target");
	if (!r.bad && n == 0)
		r.bad = "empty target";
	if (r.bad || r.off != len)
		return rd_fail(&r, "link");
	*out_len = n;
	return 0;
}

int omni__files_decode_statfs(const unsigned char *data, size_t len,
                              struct statvfs *st)
{
	struct rd r = { .p = data, .len = len };
	uint64_t v[9];

	for (int i = 0; i < 9; i++)
		v[i] = get_u64(&r, "statfs");
	if (r.bad || r.off != len)
		return rd_fail(&r, "statfs");
	memset(st, 0, sizeof(*st));
	st->f_bsize = (unsigned long)v[0];
	st->f_frsize = (unsigned long)v[1];
	st->f_blocks = (fsblkcnt_t)v[2];
	st->f_bfree = (fsblkcnt_t)v[3];
	st->f_bavail = (fsblkcnt_t)v[4];
	st->f_files = (fsfilcnt_t)v[5];
	st->f_ffree = (fsfilcnt_t)v[6];
	st->f_favail = (fsfilcnt_t)v[7];
	st->f_namemax = (unsigned long)v[8];
	return 0;
}

int omni__files_decode_event(const unsigned char *data, size_t len, char *path,
                             size_t path_size, struct stat *st, bool *has_st)
{
	struct rd r = { .p = data, .len = len };
	const unsigned char *flag = take(&r, 1, "event");

	get_str(&r, path, path_size, NULL, "event path");
	if (!r.bad && (!path[0] || !omni__files_path_ok(path)))
		r.bad = "event path";
	if (!r.bad && *flag > 1)
		r.bad = "event flag";
	*has_st = flag && *flag == 1;
	if (*has_st)
		get_attr(&r, st);
	if (r.bad || r.off != len)
		return rd_fail(&r, "event");
	return 0;
}
