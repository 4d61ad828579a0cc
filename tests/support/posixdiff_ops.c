/*
 * tests/support/posixdiff_ops.c - the operations of the differential
 * conformance tests (posixdiff.h): the name space, how an operation is
 * drawn, described and run on one side.
 *
 * The name space is small so that operations collide: five names at the
 * top, a few below them, a path through a file, names of NAME_MAX and
 * NAME_MAX + 1 bytes, "." and "d/..". Symlink targets include the names
 * themselves (so "s" -> "s" is a loop and "s/f" walks through it), a
 * dangling name, a path through a file and an absolute path that cannot
 * be created. Nothing leads out of the case directory except "/dev/null/x"
 * (ENOTDIR on both sides) and the foreign directory of EXDEV, which is
 * never written to.
 *
 * Every open adds O_NONBLOCK (a FIFO would block otherwise; it changes
 * nothing for regular files) and O_CLOEXEC. Device nodes get numbers no
 * driver has (majors 240-254 are for local use), so opening one never
 * reaches a device.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#include "posixdiff.h"

enum {
	OP_OPEN,
	OP_OPENDIR,
	OP_TMPFILE,
	OP_CLOSE,
	OP_WRITE,
	OP_PWRITE,
	OP_READ,
	OP_FTRUNCATE,
	OP_TRUNCATE,
	OP_MKDIR,
	OP_RMDIR,
	OP_UNLINK,
	OP_RENAME,
	OP_LINK,
	OP_SYMLINK,
	OP_READLINK,
	OP_CHMOD,
	OP_FCHMOD,
	OP_CHOWN,
	OP_FCHOWN,
	OP_UTIMENS,
	OP_FUTIMENS,
	OP_MKNOD,
	OP_ACCESS,
	OP_STAT,
	OP_READDIR,
	OP_EXDEV,
	OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
	"open",      "opendir",  "open_tmpfile", "close",     "write",
	"pwrite",    "read",     "ftruncate",    "truncate",  "mkdir",
	"rmdir",     "unlink",   "renameat2",    "linkat",    "symlink",
	"readlink",  "fchmodat", "fchmod",       "fchownat",  "fchown",
	"utimensat", "futimens", "mknod",        "faccessat", "stat",
	"readdir",   "exdev",
};

/* How often each is drawn (out of the sum). */
static const int op_weight[OP_COUNT] = {
	[OP_OPEN] = 14,    [OP_OPENDIR] = 2,   [OP_TMPFILE] = 2,
	[OP_CLOSE] = 4,    [OP_WRITE] = 6,     [OP_PWRITE] = 3,
	[OP_READ] = 4,     [OP_FTRUNCATE] = 3, [OP_TRUNCATE] = 3,
	[OP_MKDIR] = 8,    [OP_RMDIR] = 4,     [OP_UNLINK] = 6,
	[OP_RENAME] = 8,   [OP_LINK] = 6,      [OP_SYMLINK] = 6,
	[OP_READLINK] = 2, [OP_CHMOD] = 4,     [OP_FCHMOD] = 2,
	[OP_CHOWN] = 4,    [OP_FCHOWN] = 2,    [OP_UTIMENS] = 4,
	[OP_FUTIMENS] = 2, [OP_MKNOD] = 4,     [OP_ACCESS] = 3,
	[OP_STAT] = 2,     [OP_READDIR] = 2,   [OP_EXDEV] = 1,
};

/* --- the name space --------------------------------------------------------
 */

#define N_NAMES 17
static char long255[NAME_MAX + 1], long256[NAME_MAX + 2];
static char dlong255[NAME_MAX + 3], dlong256[NAME_MAX + 4];
static const char *names[N_NAMES] = {
	"f",     "g",      "d",      "e",   "s",    "d/f",
	"d/g",   "d/s",    "e/f",    "s/f", "f/x",  long255,
	long256, dlong255, dlong256, ".",   "d/..",
};
/* Draw weights: the top names most, the odd ones now and then. */
static const int name_weight[N_NAMES] = { 8, 6, 6, 4, 6, 4, 3, 3, 2,
	                                  2, 1, 1, 1, 1, 1, 1, 1 };

static const char *const targets[] = {
	"f", "g", "d", "s", "d/f", "missing", "f/x", "/dev/null/x", "e", ".",
};
#define N_TARGETS (int)(sizeof(targets) / sizeof(targets[0]))

static const mode_t modes[] = { 0644, 0600,  0755,  0777,  0444, 0000,
	                        0640, 02755, 04755, 01777, 0711, 06777 };
#define N_MODES (int)(sizeof(modes) / sizeof(modes[0]))

static const mode_t umasks[] = { 022, 0, 077, 002, 027, 0777 };

/* chown choices: -1 keeps. */
static const int uids[] = { -1, 0, 4321, 4322 };
static const int gids[] = { -1, 0, 4321, 4242, 4322 };

/* utimensat choices: now, omit, two explicit past times. */
static const struct timespec time_choice[] = {
	{ 0, UTIME_NOW },
	{ 0, UTIME_OMIT },
	{ 1000000000, 500 },
	{ 1234567890, 250000000 },
};

static void init_names(void)
{
	if (long255[0])
		return;
	memset(long255, 'n', NAME_MAX);
	memset(long256, 'n', NAME_MAX + 1);
	snprintf(dlong255, sizeof(dlong255), "d/%s", long255);
	snprintf(dlong256, sizeof(dlong256), "d/%s", long256);
}

uint64_t pd_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

int pd_below(uint64_t *s, int n)
{
	return (int)(pd_next(s) % (uint64_t)n);
}

static int weighted(uint64_t *rng, const int *w, int n)
{
	int sum = 0;

	for (int i = 0; i < n; i++)
		sum += w[i];
	int r = pd_below(rng, sum);
	for (int i = 0; i < n; i++) {
		if (r < w[i])
			return i;
		r -= w[i];
	}
	return n - 1;
}

static int draw_open_flags(uint64_t *rng)
{
	static const int acc[] = { O_RDONLY, O_WRONLY, O_RDWR };
	int f = acc[pd_below(rng, 3)];

	if (pd_below(rng, 2))
		f |= O_CREAT;
	if (pd_below(rng, 5) == 0)
		f |= O_EXCL;
	if (pd_below(rng, 4) == 0)
		f |= O_TRUNC;
	if (pd_below(rng, 4) == 0)
		f |= O_APPEND;
	if (pd_below(rng, 10) == 0)
		f |= O_DIRECTORY;
	if (pd_below(rng, 5) == 0)
		f |= O_NOFOLLOW;
	return f;
}

static int draw_flags(uint64_t *rng, int kind)
{
	static const int rename_flags[] = { 0, 0, RENAME_NOREPLACE,
		                            RENAME_EXCHANGE };
	static const int access_modes[] = { F_OK, R_OK, W_OK, X_OK,
		                            R_OK | W_OK };

	switch (kind) {
	case OP_OPEN:
		return draw_open_flags(rng);
	case OP_TMPFILE:
		return pd_below(rng, 2) ? O_RDWR : O_WRONLY;
	case OP_RENAME:
		return rename_flags[pd_below(rng, 4)];
	case OP_LINK:
		return pd_below(rng, 3) == 0 ? AT_SYMLINK_FOLLOW : 0;
	case OP_CHOWN:
	case OP_UTIMENS:
	case OP_STAT:
		return pd_below(rng, 3) == 0 ? AT_SYMLINK_NOFOLLOW : 0;
	case OP_ACCESS:
		return access_modes[pd_below(rng, 5)] |
		       (pd_below(rng, 3) == 0 ? AT_EACCESS << 8 : 0);
	case OP_MKNOD: {
		static const int types[] = { S_IFIFO, S_IFIFO,  S_IFCHR,
			                     S_IFBLK, S_IFSOCK, S_IFREG };
		return types[pd_below(rng, 6)];
	}
	case OP_EXDEV:
		return pd_below(rng, 3);
	default:
		return 0;
	}
}

/* The first steps of a case make things (files, directories, links,
 * special files), so that the rest has something to collide with. */
static const int make_weight[OP_COUNT] = {
	[OP_OPEN] = 6, [OP_MKDIR] = 4, [OP_SYMLINK] = 2,
	[OP_LINK] = 1, [OP_MKNOD] = 1, [OP_WRITE] = 2,
};

void pd_draw(uint64_t *rng, int step, bool other_uids, struct pd_op *op)
{
	static const int slot_of[] = { 0, 0, 0, 1, 2 };

	init_names();
	memset(op, 0, sizeof(*op));
	op->kind = weighted(rng, step < 3 ? make_weight : op_weight, OP_COUNT);
	op->p1 = weighted(rng, name_weight, N_NAMES);
	op->p2 = weighted(rng, name_weight, N_NAMES);
	op->flags = draw_flags(rng, op->kind);
	op->mode = modes[pd_below(rng, N_MODES)];
	op->slot = slot_of[pd_below(rng, 5)];
	op->off =
	    pd_below(rng, 3) == 0 ? pd_below(rng, 70000) : pd_below(rng, 300);
	op->len = (size_t)pd_below(rng, 200);
	op->uid = pd_below(rng, 4);
	op->gid = pd_below(rng, 5);
	op->times[0] = pd_below(rng, 4);
	op->times[1] = pd_below(rng, 4);
	op->target = pd_below(rng, N_TARGETS);
	op->cred =
	    other_uids && pd_below(rng, 3) == 0 ? 1 + pd_below(rng, 2) : 0;
	op->umask = umasks[pd_below(rng, 6)];
	op->fill = (unsigned)pd_next(rng);
}

/* --- description -----------------------------------------------------------
 */

static const char *shown(int i)
{
	init_names();
	if (names[i] == long255)
		return "<NAME_MAX>";
	if (names[i] == long256)
		return "<NAME_MAX+1>";
	if (names[i] == dlong255)
		return "d/<NAME_MAX>";
	if (names[i] == dlong256)
		return "d/<NAME_MAX+1>";
	return names[i];
}

static void describe_args(const struct pd_op *op, struct pd_text *t)
{
	switch (op->kind) {
	case OP_OPEN:
	case OP_TMPFILE:
		pd_printf(t, "(%s, 0%o, 0%o) -> slot %d", shown(op->p1),
		          op->flags, op->mode, op->slot);
		break;
	case OP_OPENDIR:
		pd_printf(t, "(%s) -> slot %d", shown(op->p1), op->slot);
		break;
	case OP_CLOSE:
	case OP_READ:
		pd_printf(t, "(slot %d, %zu)", op->slot, op->len);
		break;
	case OP_WRITE:
	case OP_PWRITE:
	case OP_FTRUNCATE:
		pd_printf(t, "(slot %d, len %zu, off %lld)", op->slot, op->len,
		          op->off);
		break;
	case OP_FCHMOD:
	case OP_FCHOWN:
	case OP_FUTIMENS:
		pd_printf(t, "(slot %d, mode 0%o, uid %d, gid %d, times %d %d)",
		          op->slot, op->mode, uids[op->uid], gids[op->gid],
		          op->times[0], op->times[1]);
		break;
	case OP_RENAME:
	case OP_LINK:
		pd_printf(t, "(%s, %s, flags %d)", shown(op->p1), shown(op->p2),
		          op->flags);
		break;
	case OP_SYMLINK:
		pd_printf(t, "(\"%s\", %s)", targets[op->target],
		          shown(op->p1));
		break;
	default:
		pd_printf(t,
		          "(%s, mode 0%o, flags 0x%x, len %lld, uid %d, "
		          "gid %d, times %d %d)",
		          shown(op->p1), op->mode, op->flags, op->off,
		          uids[op->uid], gids[op->gid], op->times[0],
		          op->times[1]);
	}
}

void pd_describe(const struct pd_op *op, struct pd_text *t)
{
	static const char *const cred[] = { "root", "uid 4321", "uid 4322" };

	pd_printf(t, "%s", op_names[op->kind]);
	describe_args(op, t);
	pd_printf(t, " [%s, umask 0%03o]", cred[op->cred], op->umask);
}

/* --- running ---------------------------------------------------------------
 */

static void fill(unsigned char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(seed + i * 131u + (i >> 7));
}

static void result(struct pd_text *out, long rc, int err)
{
	if (rc < 0)
		pd_printf(out, "-1 %s", strerrorname_np(err));
	else
		pd_printf(out, "%ld", rc);
}

/* The names of a directory, sorted, without . and .. */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_dir(const char *path, struct pd_text *out)
{
	DIR *d = opendir(path);
	char *names_[64];
	int n = 0;
	struct dirent *de;

	if (!d) {
		result(out, -1, errno);
		return;
	}
	while ((de = readdir(d)) && n < 64)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			names_[n++] = strdup(de->d_name);
	closedir(d);
	qsort(names_, (size_t)n, sizeof(names_[0]), cmp_str);
	pd_printf(out, "[");
	for (int i = 0; i < n; i++) {
		pd_printf(out, "%s%.40s", i ? " " : "", names_[i]);
		free(names_[i]);
	}
	pd_printf(out, "]");
}

/* The descriptor operations; rc and errno of the call. */
static long exec_fd(const struct pd_op *op, int fd, struct pd_text *out)
{
	unsigned char buf[200];
	struct timespec ts[2] = { time_choice[op->times[0]],
		                  time_choice[op->times[1]] };
	long rc;

	switch (op->kind) {
	case OP_WRITE:
		fill(buf, op->len, op->fill);
		return write(fd, buf, op->len);
	case OP_PWRITE:
		fill(buf, op->len, op->fill);
		return pwrite(fd, buf, op->len, op->off);
	case OP_READ:
		rc = read(fd, buf, op->len);
		if (rc > 0) {
			int err = errno;
			pd_printf(out, " data ");
			for (long i = 0; i < rc; i++)
				pd_printf(out, "%02x", buf[i]);
			errno = err;
		}
		return rc;
	case OP_FTRUNCATE:
		return ftruncate(fd, op->off);
	case OP_FCHMOD:
		return fchmod(fd, op->mode);
	case OP_FCHOWN:
		return fchown(fd, (uid_t)uids[op->uid], (gid_t)gids[op->gid]);
	case OP_FUTIMENS:
		return futimens(
		    fd, op->times[0] == 0 && op->times[1] == 0 ? NULL : ts);
	default:
		return 0;
	}
}

static long exec_open(const struct pd_op *op, const char *p, int *slot)
{
	int flags = O_NONBLOCK | O_CLOEXEC;
	long rc;

	if (op->kind == OP_OPEN)
		flags |= op->flags;
	else if (op->kind == OP_OPENDIR)
		flags |= O_RDONLY | O_DIRECTORY;
	else
		flags |= O_TMPFILE | op->flags;
	if (*slot >= 0) {
		close(*slot);
		*slot = -1;
	}
	rc = open(p, flags, op->mode);
	if (rc >= 0)
		*slot = (int)rc;
	return rc < 0 ? -1 : 0;
}

static long exec_names(const struct pd_op *op, const char *p, const char *p2,
                       const struct pd_clock *ck, struct pd_text *out)
{
	struct timespec ts[2] = { time_choice[op->times[0]],
		                  time_choice[op->times[1]] };
	char buf[PATH_MAX];
	struct stat st;
	long rc;

	switch (op->kind) {
	case OP_TRUNCATE:
		return truncate(p, op->off);
	case OP_MKDIR:
		return mkdir(p, op->mode);
	case OP_RMDIR:
		return rmdir(p);
	case OP_UNLINK:
		return unlink(p);
	case OP_RENAME:
		return renameat2(AT_FDCWD, p, AT_FDCWD, p2,
		                 (unsigned)op->flags);
	case OP_LINK:
		return linkat(AT_FDCWD, p, AT_FDCWD, p2, op->flags);
	case OP_SYMLINK:
		return symlink(targets[op->target], p);
	case OP_READLINK:
		rc = readlink(p, buf, sizeof(buf) - 1);
		if (rc >= 0)
			pd_printf(out, " \"%.*s\"", (int)(rc > 40 ? 40 : rc),
			          buf);
		return rc;
	case OP_CHMOD:
		return chmod(p, op->mode);
	case OP_CHOWN:
		return fchownat(AT_FDCWD, p, (uid_t)uids[op->uid],
		                (gid_t)gids[op->gid], op->flags);
	case OP_UTIMENS:
		return utimensat(AT_FDCWD, p,
		                 op->times[0] == 0 && op->times[1] == 0 ? NULL
		                                                        : ts,
		                 op->flags);
	case OP_MKNOD:
		return mknod(p, (mode_t)op->flags | (op->mode & 07777),
		             op->flags == S_IFCHR || op->flags == S_IFBLK
		                 ? makedev(240 + (op->off & 7), op->len)
		                 : 0);
	case OP_ACCESS:
		return faccessat(AT_FDCWD, p, op->flags & 0xff, op->flags >> 8);
	case OP_STAT:
		rc = fstatat(AT_FDCWD, p, &st, op->flags);
		if (rc == 0) {
			pd_printf(out, " ");
			pd_stat_text(&st, ck, out);
		}
		return rc;
	default:
		return 0;
	}
}

/* EXDEV: a rename or link between the case and the foreign directory
 * (p2 is then that directory's name, made by the caller). */
static long exec_exdev(const struct pd_op *op, const char *p, const char *p2)
{
	switch (op->flags) {
	case 0:
		return rename(p, p2);
	case 1:
		return rename(p2, p);
	default:
		return link(p, p2);
	}
}

enum { CL_OPEN, CL_FD, CL_NAME, CL_CLOSE, CL_READDIR, CL_EXDEV };

static int op_class(int kind)
{
	switch (kind) {
	case OP_OPEN:
	case OP_OPENDIR:
	case OP_TMPFILE:
		return CL_OPEN;
	case OP_WRITE:
	case OP_PWRITE:
	case OP_READ:
	case OP_FTRUNCATE:
	case OP_FCHMOD:
	case OP_FCHOWN:
	case OP_FUTIMENS:
		return CL_FD;
	case OP_CLOSE:
		return CL_CLOSE;
	case OP_READDIR:
		return CL_READDIR;
	case OP_EXDEV:
		return CL_EXDEV;
	default:
		return CL_NAME;
	}
}

bool pd_op_opens(const struct pd_op *op)
{
	return op_class(op->kind) == CL_OPEN;
}

bool pd_op_tmpfile(const struct pd_op *op)
{
	return op->kind == OP_TMPFILE;
}

bool pd_op_path(const struct pd_op *op, const char *root, char *out,
                size_t size)
{
	int cl = op_class(op->kind);

	init_names();
	if (cl == CL_FD || cl == CL_CLOSE)
		return false;
	int n = snprintf(out, size, "%s/%s", root, names[op->p1]);
	return n > 0 && (size_t)n < size;
}

void pd_exec(const struct pd_op *op, const char *root, const char *foreign,
             int slots[PD_SLOTS], const struct pd_clock *ck,
             struct pd_text *out)
{
	struct pd_text extra = { 0 };
	char p[PATH_MAX], p2[PATH_MAX];
	int cl = op_class(op->kind);
	long rc = 0;
	int err = 0;

	init_names();
	snprintf(p, sizeof(p), "%s/%s", root, names[op->p1]);
	if (cl == CL_EXDEV)
		snprintf(p2, sizeof(p2), "%s/x", foreign ? foreign : "/");
	else
		snprintf(p2, sizeof(p2), "%s/%s", root, names[op->p2]);
	if (cl == CL_EXDEV && !foreign) {
		pd_printf(out, "skipped");
		return;
	}
	pd_become(op->cred);
	umask(op->umask);
	errno = 0;
	if (cl == CL_OPEN) {
		rc = exec_open(op, p, &slots[op->slot]);
	} else if (cl == CL_READDIR) {
		list_dir(p, &extra);
	} else if (cl == CL_EXDEV) {
		rc = exec_exdev(op, p, p2);
	} else if (cl == CL_NAME) {
		rc = exec_names(op, p, p2, ck, &extra);
	} else if (cl == CL_FD && slots[op->slot] < 0) {
		rc = -1;
		errno = EBADF;
	} else if (cl == CL_FD) {
		rc = exec_fd(op, slots[op->slot], &extra);
	}
	err = errno;
	umask(0);
	pd_become(0);
	if (cl == CL_CLOSE && slots[op->slot] >= 0) {
		rc = close(slots[op->slot]);
		err = errno;
		slots[op->slot] = -1;
	}
	if (cl != CL_READDIR)
		result(out, rc, err);
	if (extra.s)
		pd_printf(out, "%s", extra.s);
	free(extra.s);
}
