/*
 * tests/base/test_ipc_files.c - the file protocol's codec (omni/ipc_files.h,
 * backends/base/ipc_files.c).
 *
 *   requests    encode/decode round trip of every field, the exact layout,
 *               truncated payloads, a NUL in a path, an unknown op, a path
 *               too long (-ENAMETOOLONG), bad nanoseconds; open flags both
 *               ways and unknown wire flags refused
 *   paths       request paths and entry names accepted and refused
 *   answers     attributes, entries, link, statfs, event and status round
 *               trips; every malformed form (-EPROTO): short and long
 *               payloads, bad modes and types, negative sizes, bad
 *               nanoseconds, names with '/', NUL, "." and "..", empty or
 *               too long, counts larger than the frame holds (0xffffffff),
 *               lengths past the end, event paths with "..", bad flags,
 *               error codes out of range; a callback's stop value
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "omni/error.h"
#include "omni/ipc_files.h"

TestSuite(ipc_files, .fini = omni_test_leak_check, .timeout = 30);

static struct stat sample_stat(void)
{
	struct stat st;

	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | 0640;
	st.st_nlink = 2;
	st.st_uid = 1000;
	st.st_gid = 1001;
	st.st_size = 5000000000LL;
	st.st_blocks = 9765632;
	st.st_blksize = 4096;
	st.st_ino = 0x123456789abcULL;
	st.st_rdev = 0;
	st.st_atim.tv_sec = 1700000000;
	st.st_atim.tv_nsec = 1;
	st.st_mtim.tv_sec = -5;
	st.st_mtim.tv_nsec = 999999999;
	st.st_ctim.tv_sec = 1800000000;
	st.st_ctim.tv_nsec = 500;
	return st;
}

static void assert_same_stat(const struct stat *a, const struct stat *b)
{
	cr_assert_eq(a->st_mode, b->st_mode);
	cr_assert_eq(a->st_nlink, b->st_nlink);
	cr_assert_eq(a->st_uid, b->st_uid);
	cr_assert_eq(a->st_gid, b->st_gid);
	cr_assert_eq(a->st_size, b->st_size);
	cr_assert_eq(a->st_blocks, b->st_blocks);
	cr_assert_eq(a->st_blksize, b->st_blksize);
	cr_assert_eq(a->st_ino, b->st_ino);
	cr_assert_eq(a->st_atim.tv_sec, b->st_atim.tv_sec);
	cr_assert_eq(a->st_atim.tv_nsec, b->st_atim.tv_nsec);
	cr_assert_eq(a->st_mtim.tv_sec, b->st_mtim.tv_sec);
	cr_assert_eq(a->st_mtim.tv_nsec, b->st_mtim.tv_nsec);
	cr_assert_eq(a->st_ctim.tv_sec, b->st_ctim.tv_sec);
	cr_assert_eq(a->st_ctim.tv_nsec, b->st_ctim.tv_nsec);
}

/* --- requests --------------------------------------------------------------
 */

Test(ipc_files, request_round_trip_keeps_every_field)
{
	static struct omni__files_req in, out;
	struct omni_ipc_buf b = { 0 };
	unsigned char frame[4096];

	in.op = OMNI_FILES_RENAME;
	strcpy(in.path, "a/b c/d");
	strcpy(in.path2, "x/y");
	in.mode = 0755;
	in.flags = 3;
	in.uid = 7;
	in.gid = 0xffffffffu;
	in.off = -42;
	in.len = 1ULL << 40;
	in.ts[0].tv_sec = 1;
	in.ts[0].tv_nsec = UTIME_NOW;
	in.ts[1].tv_sec = -2;
	in.ts[1].tv_nsec = 999999999;
	omni_assert_ok(omni__files_req_encode(&in, &b));
	/* The layout: 4+7, 4+3, 4 u32, i64, u64, 2 times of 12. */
	cr_assert_eq(b.len, 4 + 7 + 4 + 3 + 16 + 8 + 8 + 24);
	cr_assert_eq(memcmp(b.data, "\0\0\0\7a/b c/d", 11), 0);
	memcpy(frame, b.data, b.len);
	memcpy(frame + b.len, "DATA", 4);
	omni_assert_ok(
	    omni__files_req_decode(&out, OMNI_FILES_RENAME, frame, b.len + 4));
	cr_assert_eq(out.op, OMNI_FILES_RENAME);
	cr_assert_str_eq(out.path, "a/b c/d");
	cr_assert_str_eq(out.path2, "x/y");
	cr_assert_eq(out.mode, 0755);
	cr_assert_eq(out.flags, 3);
	cr_assert_eq(out.uid, 7);
	cr_assert_eq(out.gid, 0xffffffffu);
	cr_assert_eq(out.off, -42);
	cr_assert_eq(out.len, 1ULL << 40);
	cr_assert_eq(out.ts[0].tv_nsec, UTIME_NOW);
	cr_assert_eq(out.ts[1].tv_sec, -2);
	cr_assert_eq(out.ts[1].tv_nsec, 999999999);
	cr_assert_eq(out.data_len, 4);
	cr_assert_eq(memcmp(out.data, "DATA", 4), 0);
	omni_ipc_buf_finish(&b);
}

Test(ipc_files, malformed_requests_are_refused)
{
	static struct omni__files_req in, out;
	struct omni_ipc_buf b = { 0 };

	strcpy(in.path, "file");
	omni_assert_ok(omni__files_req_encode(&in, &b));
	/* Every truncation of the fixed part. */
	for (size_t n = 0; n < b.len; n++)
		omni_assert_err(
		    omni__files_req_decode(&out, OMNI_FILES_STAT, b.data, n),
		    -EPROTO);
	omni_assert_ok(
	    omni__files_req_decode(&out, OMNI_FILES_STAT, b.data, b.len));
	/* Unknown operations. */
	omni_assert_err(omni__files_req_decode(&out, 0x1f, b.data, b.len),
	                -EPROTO);
	omni_assert_err(omni__files_req_decode(&out, 0x33, b.data, b.len),
	                -EPROTO);
	/* A NUL inside the path. */
	b.data[5] = '\0';
	omni_assert_err(
	    omni__files_req_decode(&out, OMNI_FILES_STAT, b.data, b.len),
	    -EPROTO);
	b.data[5] = 'i';
	/* A path length past the end of the frame. */
	b.data[3] = 200;
	omni_assert_err(
	    omni__files_req_decode(&out, OMNI_FILES_STAT, b.data, b.len),
	    -EPROTO);
	/* A path length of 4 GiB: too long, said so. */
	memset(b.data, 0xff, 4);
	omni_assert_err(
	    omni__files_req_decode(&out, OMNI_FILES_STAT, b.data, b.len),
	    -ENAMETOOLONG);
	omni_ipc_buf_finish(&b);

	/* Nanoseconds out of range (neither UTIME_NOW nor UTIME_OMIT). */
	memset(&in, 0, sizeof(in));
	in.ts[1].tv_nsec = 1000000000;
	omni_assert_ok(omni__files_req_encode(&in, &b));
	omni_assert_err(
	    omni__files_req_decode(&out, OMNI_FILES_UTIMENS, b.data, b.len),
	    -EPROTO);
	omni_ipc_buf_finish(&b);

	/* The encoder refuses a path it cannot send. */
	memset(in.path, 'a', sizeof(in.path));
	omni_assert_err(omni__files_req_encode(&in, &b), -ENAMETOOLONG);
	omni_ipc_buf_finish(&b);
}

Test(ipc_files, open_flags_cross_both_ways)
{
	static const int flags[] = {
		O_RDONLY,
		O_WRONLY | O_CREAT | O_TRUNC,
		O_RDWR | O_CREAT | O_EXCL,
		O_WRONLY | O_APPEND,
	};

	for (size_t i = 0; i < sizeof(flags) / sizeof(*flags); i++)
		cr_assert_eq(omni__files_oflags_from_wire(
		                 omni__files_oflags_to_wire(flags[i])),
		             flags[i]);
	/* Flags a host does not pass on are dropped. */
	cr_assert_eq(omni__files_oflags_to_wire(O_RDONLY | O_NOFOLLOW |
	                                        O_DIRECTORY | O_CLOEXEC),
	             OMNI_FILES_O_RDONLY);
	cr_assert_eq(omni__files_oflags_from_wire(0x3), -1);
	cr_assert_eq(omni__files_oflags_from_wire(0x100), -1);
}

/* --- paths ------------------------------------------------------------------
 */

Test(ipc_files, paths_and_names)
{
	char longname[300], longpath[PATH_MAX + 10];

	cr_assert(omni__files_path_ok(""));
	cr_assert(omni__files_path_ok("a"));
	cr_assert(omni__files_path_ok("a/b/.c/..d/e f"));
	cr_assert(!omni__files_path_ok("/a"));
	cr_assert(!omni__files_path_ok("a/"));
	cr_assert(!omni__files_path_ok("a//b"));
	cr_assert(!omni__files_path_ok("."));
	cr_assert(!omni__files_path_ok("a/./b"));
	cr_assert(!omni__files_path_ok(".."));
	cr_assert(!omni__files_path_ok("a/../../etc"));
	memset(longname, 'n', sizeof(longname));
	longname[256] = '\0';
	cr_assert(!omni__files_path_ok(longname));
	longname[255] = '\0';
	cr_assert(omni__files_path_ok(longname));
	for (size_t i = 0; i < sizeof(longpath) - 1; i++)
		longpath[i] = i % 2 ? '/' : 'x';
	longpath[sizeof(longpath) - 1] = '\0';
	cr_assert(!omni__files_path_ok(longpath));

	cr_assert(omni__files_name_ok("x", 1));
	cr_assert(omni__files_name_ok("...", 3));
	cr_assert(!omni__files_name_ok("", 0));
	cr_assert(!omni__files_name_ok(".", 1));
	cr_assert(!omni__files_name_ok("..", 2));
	cr_assert(!omni__files_name_ok("a/b", 3));
	cr_assert(!omni__files_name_ok("a\0b", 3));
}

/* --- answers
 * ------------------------------------------------------------------ */

Test(ipc_files, attributes_round_trip_and_are_checked)
{
	struct omni_ipc_buf b = { 0 };
	struct stat in = sample_stat(), out;

	omni_assert_ok(omni__files_put_attr(&b, &in));
	cr_assert_eq(b.len, OMNI_FILES_ATTR_SIZE);
	omni_assert_ok(omni__files_decode_attr(b.data, b.len, &out));
	assert_same_stat(&in, &out);
	/* Short, long. */
	for (size_t n = 0; n < b.len; n++)
		omni_assert_err(omni__files_decode_attr(b.data, n, &out),
		                -EPROTO);
	omni_assert_ok(omni_ipc_buf_put_u8(&b, 0));
	omni_assert_err(omni__files_decode_attr(b.data, b.len, &out), -EPROTO);
	b.len--;

	struct stat bad = in;
	bad.st_mode = 0170000 | 0644; /* no such type */
	b.len = 0;
	omni_assert_ok(omni__files_put_attr(&b, &bad));
	omni_assert_err(omni__files_decode_attr(b.data, b.len, &out), -EPROTO);
	bad.st_mode = S_IFREG | 0644;
	b.len = 0;
	omni_assert_ok(omni__files_put_attr(&b, &bad));
	b.data[1] = 0x10; /* bits beyond type and 07777 */
	omni_assert_err(omni__files_decode_attr(b.data, b.len, &out), -EPROTO);
	bad.st_size = -1;
	b.len = 0;
	omni_assert_ok(omni__files_put_attr(&b, &bad));
	omni_assert_err(omni__files_decode_attr(b.data, b.len, &out), -EPROTO);
	bad.st_size = 0;
	bad.st_mtim.tv_nsec = 1000000000;
	b.len = 0;
	omni_assert_ok(omni__files_put_attr(&b, &bad));
	omni_assert_err(omni__files_decode_attr(b.data, b.len, &out), -EPROTO);
	cr_assert(strstr(omni_error_last(), "nanoseconds"));
	omni_ipc_buf_finish(&b);
}

struct seen {
	char names[8][256];
	int n;
	int stop_at;
};

static int collect(const char *name, const struct stat *st, void *payload)
{
	struct seen *s = payload;

	cr_assert(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode));
	strcpy(s->names[s->n++], name);
	return s->n == s->stop_at ? 7 : 0;
}

/* An ENTRIES payload with count and the names given. */
static void entries(struct omni_ipc_buf *b, uint32_t count,
                    const char *const *names, size_t n)
{
	struct stat st = sample_stat();

	b->len = 0;
	omni_assert_ok(omni_ipc_buf_put_u32(b, count));
	for (size_t i = 0; i < n; i++) {
		uint32_t len = (uint32_t)strlen(names[i]);
		omni_assert_ok(omni_ipc_buf_put_u32(b, len));
		omni_assert_ok(omni_ipc_buf_put(b, names[i], len));
		omni_assert_ok(omni__files_put_attr(b, &st));
	}
}

Test(ipc_files, entries_round_trip_and_are_checked)
{
	struct omni_ipc_buf b = { 0 };
	struct stat st = sample_stat();
	struct seen s = { 0 };

	omni_assert_ok(omni_ipc_buf_put_u32(&b, 3));
	omni_assert_ok(omni__files_put_entry(&b, "a", &st));
	omni_assert_ok(omni__files_put_entry(&b, ".hidden", &st));
	omni_assert_ok(omni__files_put_entry(&b, "c d", &st));
	omni_assert_ok(omni__files_decode_entries(b.data, b.len, collect, &s));
	cr_assert_eq(s.n, 3);
	cr_assert_str_eq(s.names[1], ".hidden");
	/* The callback's stop value comes back. */
	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	cr_assert_eq(omni__files_decode_entries(b.data, b.len, collect, &s), 7);
	cr_assert_eq(s.n, 2);

	static const char *const bad[] = { "a/b", ".", "..", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		const char *names[2] = { "ok", bad[i] };
		memset(&s, 0, sizeof(s));
		entries(&b, 2, names, 2);
		omni_assert_err(
		    omni__files_decode_entries(b.data, b.len, collect, &s),
		    -EPROTO);
		/* Nothing is given before the whole frame is checked. */
		cr_assert_eq(s.n, 0, "%s", bad[i]);
	}
	/* A NUL inside a name. */
	const char *one[1] = { "abc" };
	entries(&b, 1, one, 1);
	b.data[9] = '\0';
	omni_assert_err(omni__files_decode_entries(b.data, b.len, collect, &s),
	                -EPROTO);
	/* A name of 256 bytes. */
	char longname[257];
	memset(longname, 'x', 256);
	longname[256] = '\0';
	one[0] = longname;
	entries(&b, 1, one, 1);
	omni_assert_err(omni__files_decode_entries(b.data, b.len, collect, &s),
	                -EPROTO);
	/* Counts the frame cannot hold, or that disagree with it. */
	one[0] = "abc";
	entries(&b, 0xffffffffu, one, 1);
	omni_assert_err(omni__files_decode_entries(b.data, b.len, collect, &s),
	                -EPROTO);
	cr_assert(strstr(omni_error_last(), "count"));
	entries(&b, 2, one, 1);
	omni_assert_err(omni__files_decode_entries(b.data, b.len, collect, &s),
	                -EPROTO);
	entries(&b, 0, one, 1);
	omni_assert_err(omni__files_decode_entries(b.data, b.len, collect, &s),
	                -EPROTO);
	/* A name length running past the end. */
	entries(&b, 1, one, 1);
	b.data[7] = 0xf0;
	omni_assert_err(omni__files_decode_entries(b.data, b.len, collect, &s),
	                -EPROTO);
	omni_assert_err(omni__files_decode_entries(b.data, 3, collect, &s),
	                -EPROTO);
	cr_assert_eq(s.n, 0);
	omni_ipc_buf_finish(&b);
}

Test(ipc_files, link_statfs_and_status)
{
	struct omni_ipc_buf b = { 0 };
	char target[PATH_MAX], msg[16];
	size_t n;
	int64_t v;

	omni_assert_ok(omni_ipc_buf_put_u32(&b, 9));
	omni_assert_ok(omni_ipc_buf_put(&b, "../../etc", 9));
	omni_assert_ok(
	    omni__files_decode_link(b.data, b.len, target, sizeof(target), &n));
	cr_assert_eq(n, 9);
	cr_assert_str_eq(target, "../../etc");
	omni_assert_err(omni__files_decode_link(b.data, b.len, target, 9, &n),
	                -EPROTO);
	omni_assert_err(omni__files_decode_link(b.data, b.len - 1, target,
	                                        sizeof(target), &n),
	                -EPROTO);
	b.len = 0;
	omni_assert_ok(omni_ipc_buf_put_u32(&b, 0));
	omni_assert_err(
	    omni__files_decode_link(b.data, b.len, target, sizeof(target), &n),
	    -EPROTO);

	struct statvfs in = { .f_bsize = 4096,
		              .f_frsize = 4096,
		              .f_blocks = 1000,
		              .f_bfree = 10,
		              .f_bavail = 9,
		              .f_files = 77,
		              .f_ffree = 7,
		              .f_favail = 6,
		              .f_namemax = 255 },
	               out;
	omni_assert_ok(omni__files_put_statfs(&b, &in));
	omni_assert_ok(omni__files_decode_statfs(b.data, b.len, &out));
	cr_assert_eq(out.f_blocks, 1000);
	cr_assert_eq(out.f_namemax, 255);
	cr_assert_eq(out.f_favail, 6);
	omni_assert_err(omni__files_decode_statfs(b.data, b.len - 1, &out),
	                -EPROTO);

	/* Status through a socket pair: the message is kept (and cut to
	 * fit, with control characters made harmless). */
	int sv[2];
	uint8_t type;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	omni_assert_ok(omni__files_send_status(sv[0], -ENOENT, "gone\n\033x"));
	omni_assert_ok(omni__files_send_status(sv[0], 12345, "ignored"));
	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	cr_assert_eq(type, OMNI_FILES_R_STATUS);
	omni_assert_ok(
	    omni__files_decode_status(b.data, b.len, &v, msg, sizeof(msg)));
	cr_assert_eq(v, -ENOENT);
	cr_assert_str_eq(msg, "gone??x");
	omni_assert_ok(omni__files_decode_status(b.data, b.len, &v, msg, 3));
	cr_assert_str_eq(msg, "go");
	cr_assert_eq(omni_ipc_recv(sv[1], &type, &b), 1);
	omni_assert_ok(
	    omni__files_decode_status(b.data, b.len, &v, msg, sizeof(msg)));
	cr_assert_eq(v, 12345);
	cr_assert_str_eq(msg, "");
	close(sv[0]);
	close(sv[1]);
	/* Short, and an errno no kernel has. */
	omni_assert_err(omni__files_decode_status(b.data, 3, &v, msg, 16),
	                -EPROTO);
	memcpy(b.data, "\xff\xff\x00\x00", 4);
	omni_assert_err(omni__files_decode_status(b.data, 4, &v, msg, 16),
	                -EPROTO);
	omni_ipc_buf_finish(&b);
}

Test(ipc_files, events_round_trip_and_are_checked)
{
	struct omni_ipc_buf b = { 0 };
	struct stat in = sample_stat(), out;
	char path[PATH_MAX];
	bool has;

	omni_assert_ok(omni__files_put_event(&b, "src/a.c", &in));
	omni_assert_ok(omni__files_decode_event(b.data, b.len, path,
	                                        sizeof(path), &out, &has));
	cr_assert(has);
	cr_assert_str_eq(path, "src/a.c");
	assert_same_stat(&in, &out);
	omni_assert_ok(omni__files_put_event(&b, "gone", NULL));
	omni_assert_ok(omni__files_decode_event(b.data, b.len, path,
	                                        sizeof(path), &out, &has));
	cr_assert(!has);
	cr_assert_str_eq(path, "gone");
	/* A flag saying attributes follow, with none. */
	b.data[0] = 1;
	omni_assert_err(omni__files_decode_event(b.data, b.len, path,
	                                         sizeof(path), &out, &has),
	                -EPROTO);
	b.data[0] = 2;
	omni_assert_err(omni__files_decode_event(b.data, b.len, path,
	                                         sizeof(path), &out, &has),
	                -EPROTO);
	static const char *const bad[] = { "", "/etc/passwd", "a/../../x",
		                           "a//b", "./a" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		omni_assert_ok(omni__files_put_event(&b, bad[i], NULL));
		omni_assert_err(omni__files_decode_event(b.data, b.len, path,
		                                         sizeof(path), &out,
		                                         &has),
		                -EPROTO);
	}
	omni_assert_err(
	    omni__files_decode_event(b.data, 0, path, sizeof(path), &out, &has),
	    -EPROTO);
	omni_ipc_buf_finish(&b);
}
