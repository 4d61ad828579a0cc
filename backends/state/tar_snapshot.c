/*
 * backends/state/tar_snapshot.c - workspaces as tar.gz archives (see
 * tar_snapshot.h).
 *
 * Writing walks the workspace (snapshot_scan.c, so the ignore rules
 * apply) and reads each file through the backend operations. A file up to
 * SMALL_FILE bytes is read whole first, so its header carries the size
 * actually read even when the file changes meanwhile; a larger one is
 * streamed under the size its stat gave, cut or padded with zeros if it
 * changed while being read (its bytes are then as torn as any copy of a
 * file being written would be, and the archive stays valid). The archive
 * bytes pass through MD5 and CRC-32C on their way to the file, so the
 * uploader knows both without reading the file again.
 *
 * A file the scan listed but that is no longer that regular file when
 * it is opened (a FIFO, a device, a symlink, another inode: see
 * snapshot_scan.c) or that is gone is left out with a warning; its header
 * is only written once its descriptor is open and checked.
 *
 * Reading is done twice by the caller: omni__tar_check() decodes
 * everything and checks every name and the limits (entries, bytes:
 * snapshot_stage.c) before the workspace is touched, and
 * omni__tar_apply() then stages the entries through snapshot_apply.c.
 * Sparse entries (GNU and pax) are restored from their data blocks, at
 * their offsets, and given their full size, holes included. Entry types
 * other than files, directories and symlinks (hard links, devices,
 * fifos) are skipped.
 *
 * Locking: none; everything belongs to the call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "omni/error.h"
#include "omni/log.h"
#include "state/tar_snapshot.h"

#define SMALL_FILE (16 * 1024 * 1024)
#define CHUNK      (256 * 1024)

/* --- writing
 * ------------------------------------------------------------------ */

struct sink {
	int fd;
	struct omni__md5 md5;
	uint32_t crc;
	long long size;
	int err;
};

static la_ssize_t sink_write(struct archive *ar, void *payload,
                             const void *data, size_t len)
{
	struct sink *s = payload;
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(s->fd, (const char *)data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			s->err = -errno;
			archive_set_error(ar, errno, "write: %s",
			                  strerror(errno));
			return -1;
		}
		done += (size_t)n;
	}
	omni__md5_update(&s->md5, data, len);
	s->crc = omni__crc32c(s->crc, data, len);
	s->size += (long long)len;
	return (la_ssize_t)len;
}

struct writer {
	struct omni_backend *b;
	struct archive *ar;
	struct archive_entry *entry;
	struct omni__progress *progress;
	struct omni__digest digest;
	struct omni__tar_info *info;
	char *buf;
};

static int ar_fail(struct archive *ar, int err, const char *what,
                   const char *path)
{
	return omni_error_set(
	    err, "archive: %s %s: %s", what, path,
	    archive_error_string(ar) ? archive_error_string(ar) : "failed");
}

static void entry_header(struct writer *w, const struct omni__ws_entry *e,
                         unsigned int type, long long size)
{
	archive_entry_clear(w->entry);
	archive_entry_set_pathname(w->entry, e->path);
	archive_entry_set_filetype(w->entry, type);
	archive_entry_set_perm(w->entry, e->st.st_mode & 07777);
	archive_entry_set_size(w->entry, size);
	archive_entry_set_mtime(w->entry, e->st.st_mtim.tv_sec,
	                        e->st.st_mtim.tv_nsec);
}

static int write_data(struct writer *w, const char *path, const void *data,
                      size_t len)
{
	if (len && archive_write_data(w->ar, data, len) != (la_ssize_t)len)
		return ar_fail(w->ar, -EIO, "writing", path);
	return 0;
}

/* A file that changed into something else or went away since the scan
 * is left out (1); other failures fail the save. */
static int skipped(int rc, const char *path)
{
	if (rc != -ESTALE && rc != -ENOENT)
		return rc;
	omni__ws_skipped(path, rc);
	return 1;
}

struct stream {
	struct writer *w;
	const struct omni__ws_entry *e;
	const char *path;
	long long left;
	bool header;
	struct omni__md5 md5;
};

/* The header goes once the file is open and checked. */
static int stream_header(struct stream *s)
{
	if (s->header)
		return 0;
	s->header = true;
	entry_header(s->w, s->e, AE_IFREG, s->e->st.st_size);
	if (archive_write_header(s->w->ar, s->w->entry) != ARCHIVE_OK)
		return ar_fail(s->w->ar, -EIO, "writing", s->path);
	return 0;
}

static int stream_chunk(const void *data, size_t len, void *payload)
{
	struct stream *s = payload;
	size_t n = (long long)len > s->left ? (size_t)s->left : len;
	int rc;

	if ((rc = stream_header(s)) < 0)
		return rc;
	if (n == 0)
		return 0;
	if ((rc = write_data(s->w, s->path, data, n)) < 0)
		return rc;
	omni__md5_update(&s->md5, data, n);
	s->left -= (long long)n;
	omni__progress_add(s->w->progress, 0, (long long)n);
	return 0;
}

static int add_file(struct writer *w, const struct omni__ws_entry *e)
{
	unsigned char sum[16];
	struct omni__md5 md5;
	int rc;

	if (e->st.st_size <= SMALL_FILE) {
		char *data;
		size_t len;

		if ((rc = omni__ws_read_all(w->b, e->path, &e->st, SMALL_FILE,
		                            &data, &len)) < 0)
			return skipped(rc, e->path);
		entry_header(w, e, AE_IFREG, (long long)len);
		if (archive_write_header(w->ar, w->entry) != ARCHIVE_OK) {
			free(data);
			return ar_fail(w->ar, -EIO, "writing", e->path);
		}
		rc = write_data(w, e->path, data, len);
		if (rc == 0 && (rc = omni__md5_init(&md5)) == 0) {
			omni__md5_update(&md5, data, len);
			omni__md5_final(&md5, sum);
		}
		free(data);
		if (rc < 0)
			return rc;
		omni__progress_add(w->progress, 1, (long long)len);
		w->info->bytes += (long long)len;
	} else {
		struct stream s = {
			.w = w, .e = e, .path = e->path, .left = e->st.st_size
		};

		if ((rc = omni__md5_init(&s.md5)) < 0)
			return omni_error_set(rc, "archive: out of memory");
		rc = omni__ws_read(w->b, e->path, &e->st, stream_chunk, &s);
		if (rc < 0 && !s.header) {
			omni__md5_finish(&s.md5);
			return skipped(rc, e->path);
		}
		if (rc == 0)
			rc = stream_header(&s);
		if (rc == 0 && s.left > 0) {
			/* The file shrank while being read: pad, as the
			 * header promised that many bytes. */
			omni_log(OMNI_LOG_DEBUG,
			         "%s changed while being archived", e->path);
			memset(w->buf, 0, CHUNK);
			while (rc == 0 && s.left > 0) {
				size_t n =
				    s.left > CHUNK ? CHUNK : (size_t)s.left;
				rc = stream_chunk(w->buf, n, &s);
			}
		}
		if (rc < 0) {
			omni__md5_finish(&s.md5);
			return rc;
		}
		omni__md5_final(&s.md5, sum);
		omni__progress_add(w->progress, 1, 0);
		w->info->bytes += e->st.st_size;
	}
	w->info->files++;
	omni__digest_add(&w->digest, 'f', e->st.st_mode, e->path, sum);
	return 0;
}

static int md5_of(const void *data, size_t len, unsigned char out[16])
{
	struct omni__md5 m;

	if (omni__md5_init(&m) < 0)
		return omni_error_set(-ENOMEM, "archive: out of memory");
	omni__md5_update(&m, data, len);
	omni__md5_final(&m, out);
	return 0;
}

static int add_link(struct writer *w, const struct omni__ws_entry *e)
{
	char target[PATH_MAX];
	unsigned char sum[16];
	ssize_t n = omni_vfs_readlink(w->b, e->path, target, sizeof(target));
	int rc;

	if (n < 0)
		return (int)n;
	if ((size_t)n >= sizeof(target))
		return omni_error_set(-ENAMETOOLONG, "%s: link target too long",
		                      e->path);
	target[n] = '\0';
	entry_header(w, e, AE_IFLNK, 0);
	archive_entry_set_symlink(w->entry, target);
	if (archive_write_header(w->ar, w->entry) != ARCHIVE_OK)
		return ar_fail(w->ar, -EIO, "writing", e->path);
	if ((rc = md5_of(target, (size_t)n, sum)) < 0)
		return rc;
	omni__digest_add(&w->digest, 'l', e->st.st_mode, e->path, sum);
	omni__progress_add(w->progress, 1, 0);
	w->info->files++;
	return 0;
}

static int add_dir(struct writer *w, const struct omni__ws_entry *e)
{
	unsigned char sum[16];
	int rc;

	entry_header(w, e, AE_IFDIR, 0);
	if (archive_write_header(w->ar, w->entry) != ARCHIVE_OK)
		return ar_fail(w->ar, -EIO, "writing", e->path);
	if ((rc = md5_of("", 0, sum)) < 0)
		return rc;
	omni__digest_add(&w->digest, 'd', e->st.st_mode, e->path, sum);
	return 0;
}

int omni__tar_write(struct omni_backend *b, unsigned int scan_flags, int fd,
                    struct omni__progress *progress,
                    struct omni__tar_info *info)
{
	struct omni__progress quiet;
	struct omni__ws_list list = { 0 };
	struct sink sink = { .fd = fd };
	struct writer w = { .b = b, .info = info, .progress = progress };
	int rc;

	memset(info, 0, sizeof(*info));
	if (!w.progress) {
		omni__progress_start(&quiet, false, "archive");
		w.progress = &quiet;
	}
	if ((rc = omni__ws_scan(b, scan_flags, &list)) < 0)
		return rc;
	w.ar = archive_write_new();
	w.entry = archive_entry_new();
	w.buf = malloc(CHUNK);
	if (!w.ar || !w.entry || !w.buf || omni__md5_init(&sink.md5) < 0) {
		rc = omni_error_set(-ENOMEM, "archive: out of memory");
		goto out;
	}
	if (archive_write_add_filter_gzip(w.ar) != ARCHIVE_OK ||
	    archive_write_set_format_pax_restricted(w.ar) != ARCHIVE_OK ||
	    archive_write_open2(w.ar, &sink, NULL, sink_write, NULL, NULL) !=
	        ARCHIVE_OK) {
		rc = ar_fail(w.ar, sink.err ? sink.err : -EIO, "creating", "");
		goto out;
	}
	for (size_t i = 0; i < list.count && rc == 0; i++) {
		const struct omni__ws_entry *e = &list.items[i];
		if (S_ISDIR(e->st.st_mode))
			rc = add_dir(&w, e);
		else if (S_ISLNK(e->st.st_mode))
			rc = add_link(&w, e);
		else if ((rc = add_file(&w, e)) > 0)
			rc = 0; /* left out */
		if (rc < 0 && sink.err)
			rc = omni_error_set_errno(sink.err, "archive: write");
	}
	if (rc == 0 && archive_write_close(w.ar) != ARCHIVE_OK)
		rc = ar_fail(w.ar, sink.err ? sink.err : -EIO, "closing", "");
	if (rc == 0)
		rc = omni__digest_final(&w.digest, info->digest);
	if (rc == 0) {
		omni__md5_final(&sink.md5, info->md5);
		info->crc32c = sink.crc;
		info->size = sink.size;
	}
out:
	omni__md5_finish(&sink.md5);
	if (w.ar)
		archive_write_free(w.ar);
	archive_entry_free(w.entry);
	free(w.buf);
	omni__digest_finish(&w.digest);
	omni__ws_list_finish(&list);
	return rc;
}

/* --- reading
 * ------------------------------------------------------------------ */

static int open_reader(struct archive **out, int fd, const char *what)
{
	struct archive *ar;

	*out = NULL;
	if (lseek(fd, 0, SEEK_SET) < 0)
		return omni_error_set_errno(-errno, "%s: seek", what);
	if (!(ar = archive_read_new()))
		return omni_error_set(-ENOMEM, "archive: out of memory");
	archive_read_support_filter_all(ar);
	archive_read_support_format_tar(ar);
	if (archive_read_open_fd(ar, fd, 64 * 1024) != ARCHIVE_OK) {
		int rc = omni_error_set(-EPROTO, "%s: not a tar archive: %s",
		                        what, archive_error_string(ar));
		archive_read_free(ar);
		return rc;
	}
	*out = ar;
	return 0;
}

/* Next entry: 1, 0 at the end, or -errno. Fills path (checked). */
static int next_entry(struct archive *ar, struct archive_entry **e, char *path,
                      size_t size, const char *what)
{
	int r = archive_read_next_header(ar, e);

	if (r == ARCHIVE_EOF)
		return 0;
	if (r < ARCHIVE_WARN)
		return omni_error_set(-EPROTO, "%s: damaged archive: %s", what,
		                      archive_error_string(ar));
	const char *name = archive_entry_pathname(*e);
	if (!name || strlen(name) >= size)
		return omni_error_set(-EINVAL,
		                      "%s: an entry has no usable name", what);
	memcpy(path, name, strlen(name) + 1);
	if (!omni__snap_path_ok(path))
		return omni_error_set(
		    -EINVAL, "%s: unsafe name '%s' in the archive", what, name);
	return 1;
}

/* The kinds of entries we restore; others are skipped. */
static char entry_kind(struct archive_entry *e)
{
	if (archive_entry_hardlink(e))
		return 0;
	switch (archive_entry_filetype(e)) {
	case AE_IFREG:
		return 'f';
	case AE_IFDIR:
		return 'd';
	case AE_IFLNK:
		return 'l';
	}
	return 0;
}

/* The content size of a regular entry (0 for others), counted against
 * the byte limit before any of it is decompressed. */
static int entry_size(struct archive_entry *e, char kind, long long *size)
{
	*size = 0;
	if (kind != 'f' || !archive_entry_size_is_set(e))
		return 0;
	*size = (long long)archive_entry_size(e);
	return *size < 0 ? -EPROTO : 0;
}

/* Read one entry's data through, into its MD5 (a sparse entry's holes,
 * the trailing one too, as zeros: what the restored file holds). */
static int check_data(struct archive *ar, char kind, long long size,
                      const char *path, const char *what, char *buf,
                      struct omni__md5 *m, long long *bytes)
{
	long long got = 0;

	for (;;) {
		la_ssize_t n = archive_read_data(ar, buf, CHUNK);
		if (n < 0)
			return omni_error_set(
			    -EPROTO, "%s: damaged archive at %s: %s", what,
			    path, archive_error_string(ar));
		if (n == 0)
			break;
		if (kind == 'f')
			omni__md5_update(m, buf, (size_t)n);
		got += n;
	}
	if (kind != 'f')
		return 0;
	if (got > size)
		return omni_error_set(-EPROTO,
		                      "%s: damaged archive at %s: more data "
		                      "than its size",
		                      what, path);
	memset(buf, 0, CHUNK);
	for (long long left = size - got; left > 0;) {
		size_t n = left > CHUNK ? CHUNK : (size_t)left;
		omni__md5_update(m, buf, n);
		left -= (long long)n;
	}
	*bytes += size;
	return 0;
}

int omni__tar_check(int fd, const char *what, struct omni__tar_info *info)
{
	struct archive *ar;
	struct archive_entry *e;
	struct omni__digest digest = { 0 };
	struct omni__limits limits;
	char path[PATH_MAX];
	char *buf;
	int rc;

	memset(info, 0, sizeof(*info));
	if ((rc = omni__limits_init(&limits)) < 0)
		return rc;
	if (!(buf = malloc(CHUNK)))
		return omni_error_set(-ENOMEM, "archive: out of memory");
	if ((rc = open_reader(&ar, fd, what)) < 0) {
		free(buf);
		return rc;
	}
	while ((rc = next_entry(ar, &e, path, sizeof(path), what)) > 0) {
		char kind = entry_kind(e);
		unsigned char sum[16];
		struct omni__md5 m;
		long long size;

		if (entry_size(e, kind, &size) < 0) {
			rc = omni_error_set(-EPROTO, "%s: bad size for %s",
			                    what, path);
			break;
		}
		if ((rc = omni__limits_add(&limits, 1, (unsigned long long)size,
		                           what)) < 0)
			break;
		if ((rc = omni__md5_init(&m)) < 0) {
			rc = omni_error_set(rc, "archive: out of memory");
			break;
		}
		if (kind == 'l') {
			const char *t = archive_entry_symlink(e);
			omni__md5_update(&m, t ? t : "", t ? strlen(t) : 0);
		}
		rc = check_data(ar, kind, size, path, what, buf, &m,
		                &info->bytes);
		omni__md5_final(&m, sum);
		if (rc < 0)
			break;
		if (kind == 'f' || kind == 'l')
			info->files++;
		if (kind)
			omni__digest_add(&digest, kind, archive_entry_perm(e),
			                 path, sum);
	}
	if (rc == 0)
		rc = omni__digest_final(&digest, info->digest);
	archive_read_free(ar);
	omni__digest_finish(&digest);
	free(buf);
	return rc;
}

/* Stage a regular entry from its data blocks, at their offsets, so the
 * holes of a sparse entry stay holes; then give it its full size. */
static int apply_file(struct omni__apply *a, struct archive *ar,
                      struct archive_entry *e, const char *path,
                      const char *what)
{
	struct omni__apply_file af;
	struct timespec mtime = { archive_entry_mtime(e),
		                  archive_entry_mtime_nsec(e) };
	long long size;
	int rc = omni__apply_file_open(a, &af, path, archive_entry_perm(e));

	if (rc != 0)
		return rc < 0 ? rc : 0;
	if (entry_size(e, 'f', &size) < 0)
		size = -1;
	for (;;) {
		const void *block;
		size_t len;
		la_int64_t off;
		int r = archive_read_data_block(ar, &block, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN || off < af.off) {
			rc = omni_error_set(
			    -EPROTO, "%s: damaged archive at %s: %s", what,
			    path,
			    r < ARCHIVE_WARN ? archive_error_string(ar)
			                     : "data blocks out of order");
			break;
		}
		af.off = (long long)off;
		if ((rc = omni__apply_file_write(a, &af, block, len)) < 0)
			break;
	}
	if (rc < 0) {
		omni__apply_file_abort(a, &af);
		return rc;
	}
	return omni__apply_file_commit(
	    a, &af, size, archive_entry_mtime_is_set(e) ? &mtime : NULL);
}

int omni__tar_apply(struct omni__apply *a, int fd, const char *what)
{
	struct archive *ar;
	struct archive_entry *e;
	char path[PATH_MAX];
	int rc;

	if ((rc = open_reader(&ar, fd, what)) < 0)
		return rc;
	while ((rc = next_entry(ar, &e, path, sizeof(path), what)) > 0) {
		switch (entry_kind(e)) {
		case 'd':
			rc = omni__apply_dir(a, path, archive_entry_perm(e));
			break;
		case 'f':
			rc = apply_file(a, ar, e, path, what);
			break;
		case 'l': {
			const char *t = archive_entry_symlink(e);
			rc = omni__apply_symlink(a, path, t ? t : "");
			break;
		}
		default:
			omni_log(OMNI_LOG_DEBUG,
			         "%s: skipping %s (not a file, "
			         "directory or symlink)",
			         what, path);
			rc = 0;
		}
		if (rc < 0)
			break;
	}
	archive_read_free(ar);
	return rc;
}
