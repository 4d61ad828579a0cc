/*
 * tests/support/file_io_model.c - one file's data through every kind of
 * I/O, compared with an in-memory model of the file (file_io_model.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>

#include <criterion/criterion.h>

#include "file_io_model.h"
#include "helpers.h"

#define MAX_SIZE (256 * 1024)
#define ALIGN    4096
#define OPS      3000

struct io_run {
	int direct;   /* O_DIRECT descriptor */
	int buffered; /* plain descriptor of the same file */
	unsigned char *model;
	size_t size;        /* of the model */
	unsigned char *buf; /* ALIGN-aligned, MAX_SIZE */
	unsigned seed;
	int op;
	const char *where;
};

static unsigned next(struct io_run *r)
{
	r->seed = r->seed * 1103515245u + 12345u;
	return (r->seed >> 8) & 0xffffff;
}

static size_t below(struct io_run *r, size_t n)
{
	return n ? next(r) % n : 0;
}

static void fill(struct io_run *r, unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(next(r) | 1); /* never a hole's zero */
}

/* The model after writing n bytes of p at off. */
static void model_write(struct io_run *r, size_t off, const void *p, size_t n)
{
	if (off > r->size)
		memset(r->model + r->size, 0, off - r->size);
	memcpy(r->model + off, p, n);
	if (off + n > r->size)
		r->size = off + n;
}

static void model_truncate(struct io_run *r, size_t size)
{
	if (size > r->size)
		memset(r->model + r->size, 0, size - r->size);
	r->size = size;
}

/* Read [off, off + n) through fd and compare it with the model. */
static void check_range(struct io_run *r, int fd, size_t off, size_t n,
                        const char *how)
{
	ssize_t got = pread(fd, r->buf, n, (off_t)off);
	size_t want =
	    off >= r->size ? 0 : (off + n > r->size ? r->size - off : n);

	cr_assert_eq(got, (ssize_t)want,
	             "%s, op %d: %s read of %zu at %zu gave %zd (%s), the "
	             "file has %zu",
	             r->where, r->op, how, n, off, got,
	             got < 0 ? strerror(errno) : "", r->size);
	for (size_t i = 0; i < want; i++)
		if (r->buf[i] != r->model[off + i])
			cr_assert_fail(
			    "%s, op %d: %s read of %zu at %zu: byte %zu "
			    "is %u, the model says %u",
			    r->where, r->op, how, n, off, off + i, r->buf[i],
			    r->model[off + i]);
}

static void check_all(struct io_run *r)
{
	struct stat st;

	cr_assert_eq(fstat(r->buffered, &st), 0);
	cr_assert_eq((size_t)st.st_size, r->size,
	             "%s, op %d: size %lld, want %zu", r->where, r->op,
	             (long long)st.st_size, r->size);
	check_range(r, r->buffered, 0, MAX_SIZE, "whole buffered");
	check_range(r, r->direct, 0, MAX_SIZE, "whole direct");
}

static void one_op(struct io_run *r)
{
	size_t off, n, src;
	ssize_t done;

	switch (below(r, 11)) {
	case 0: /* direct write, aligned */
		off = below(r, MAX_SIZE / ALIGN) * ALIGN;
		n = (1 + below(r, (MAX_SIZE - off) / ALIGN < 16
		                      ? (MAX_SIZE - off) / ALIGN
		                      : 16)) *
		    ALIGN;
		fill(r, r->buf, n);
		done = pwrite(r->direct, r->buf, n, (off_t)off);
		cr_assert_eq(done, (ssize_t)n, "%s, op %d: direct write: %s",
		             r->where, r->op, strerror(errno));
		model_write(r, off, r->buf, n);
		break;
	case 1: /* buffered write anywhere */
		off = below(r, MAX_SIZE - 1);
		n = 1 +
		    below(r, MAX_SIZE - off < 70000 ? MAX_SIZE - off : 70000);
		fill(r, r->buf, n);
		done = pwrite(r->buffered, r->buf, n, (off_t)off);
		cr_assert_eq(done, (ssize_t)n, "%s, op %d: write: %s", r->where,
		             r->op, strerror(errno));
		model_write(r, off, r->buf, n);
		break;
	case 2: /* truncate */
		n = below(r, MAX_SIZE);
		cr_assert_eq(
		    ftruncate(next(r) & 1 ? r->direct : r->buffered, (off_t)n),
		    0, "%s, op %d: truncate: %s", r->where, r->op,
		    strerror(errno));
		model_truncate(r, n);
		break;
	case 3: /* copy_file_range, any way between the two descriptors */
	{
		int fin = next(r) & 1 ? r->direct : r->buffered;
		int fout = next(r) & 1 ? r->direct : r->buffered;
		bool direct = fin == r->direct || fout == r->direct;

		if (r->size == 0)
			break;
		src = below(r, r->size);
		n = 1 + below(r, r->size - src < 65536 ? r->size - src : 65536);
		off = below(r, MAX_SIZE - n);
		if (direct) {
			/* O_DIRECT wants whole blocks, inside the file (as
			 * on the plain directory: EINVAL otherwise). */
			src &= ~(size_t)(ALIGN - 1);
			off &= ~(size_t)(ALIGN - 1);
			n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
			if (src + n > r->size || off + n > MAX_SIZE)
				break;
		}
		if (off < src + n && src < off + n)
			break; /* overlapping ranges of one file are EINVAL */
		loff_t in = (loff_t)src, out = (loff_t)off;
		size_t avail = src + n > r->size ? r->size - src : n;
		done = copy_file_range(fin, &in, fout, &out, n, 0);
		cr_assert_eq(
		    done, (ssize_t)avail,
		    "%s, op %d: copy_file_range of %zu from %zu to %zu "
		    "(%s to %s): %zd %s",
		    r->where, r->op, n, src, off,
		    fin == r->direct ? "direct" : "buffered",
		    fout == r->direct ? "direct" : "buffered", done,
		    done < 0 ? strerror(errno) : "");
		memmove(r->buf, r->model + src, avail);
		if (avail)
			model_write(r, off, r->buf, avail);
		break;
	}
	case 4: /* a punched hole keeps the size */
		if (r->size == 0)
			break;
		off = below(r, r->size);
		n = 1 + below(r, r->size - off);
		cr_assert_eq(
		    fallocate(r->buffered,
		              FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		              (off_t)off, (off_t)n),
		    0, "%s, op %d: punch hole: %s", r->where, r->op,
		    strerror(errno));
		memset(r->model + off, 0, n);
		break;
	case 5: /* zeroed range, which may grow the file */
		off = below(r, MAX_SIZE - 1);
		n = 1 +
		    below(r, MAX_SIZE - off < 65536 ? MAX_SIZE - off : 65536);
		cr_assert_eq(fallocate(r->direct, FALLOC_FL_ZERO_RANGE,
		                       (off_t)off, (off_t)n),
		             0, "%s, op %d: zero range: %s", r->where, r->op,
		             strerror(errno));
		if (off > r->size)
			memset(r->model + r->size, 0, off - r->size);
		memset(r->model + off, 0, n);
		if (off + n > r->size)
			r->size = off + n;
		break;
	case 6: /* direct read, aligned */
		off = below(r, MAX_SIZE / ALIGN) * ALIGN;
		n = (1 + below(r, 16)) * ALIGN;
		if (off + n > MAX_SIZE)
			n = MAX_SIZE - off;
		check_range(r, r->direct, off, n, "direct");
		break;
	case 7: /* fsync: on a remote backend, an upload of what is
	         * written so far while the file stays open */
		cr_assert_eq(fsync(next(r) & 1 ? r->direct : r->buffered), 0,
		             "%s, op %d: fsync: %s", r->where, r->op,
		             strerror(errno));
		break;
	case 8: /* a write through a shared mapping, synced */
	{
		if (r->size == 0)
			break;
		off = below(r, r->size);
		n = 1 + below(r, r->size - off < 65536 ? r->size - off : 65536);
		size_t start = off & ~(size_t)(ALIGN - 1);
		unsigned char *map =
		    mmap(NULL, off + n - start, PROT_READ | PROT_WRITE,
		         MAP_SHARED, r->buffered, (off_t)start);
		cr_assert_neq(map, MAP_FAILED, "%s, op %d: mmap: %s", r->where,
		              r->op, strerror(errno));
		fill(r, r->buf, n);
		memcpy(map + (off - start), r->buf, n);
		cr_assert_eq(msync(map, off + n - start, MS_SYNC), 0,
		             "%s, op %d: msync: %s", r->where, r->op,
		             strerror(errno));
		munmap(map, off + n - start);
		model_write(r, off, r->buf, n);
		break;
	}
	default: /* buffered read anywhere */
		off = below(r, MAX_SIZE);
		n = 1 + below(r, MAX_SIZE - off);
		check_range(r, r->buffered, off, n, "buffered");
		break;
	}
}

void file_io_model_run(const char *dir, const char *where, unsigned seed,
                       int ops)
{
	char p[PATH_MAX];
	struct io_run r = { .seed = seed, .where = where };
	void *buf;

	omni_test_fmt(p, sizeof(p), "%s/io-file", dir);
	r.buffered = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(r.buffered, 0, "%s: %s", p, strerror(errno));
	r.direct = open(p, O_RDWR | O_DIRECT);
	cr_assert_geq(r.direct, 0, "%s: O_DIRECT: %s", p, strerror(errno));
	cr_assert_eq(posix_memalign(&buf, ALIGN, MAX_SIZE), 0);
	r.buf = buf;
	r.model = calloc(1, MAX_SIZE);
	cr_assert_not_null(r.model);
	for (r.op = 1; r.op <= ops; r.op++) {
		one_op(&r);
		if (r.op % 100 == 0)
			check_all(&r);
	}
	check_all(&r);
	close(r.direct);
	close(r.buffered);
	free(r.buf);
	free(r.model);
}
