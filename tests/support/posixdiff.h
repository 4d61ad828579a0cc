/*
 * tests/support/posixdiff.h - differential conformance tests: the same
 * generated sequences of system calls run in a directory on an omnifs
 * mount and in a plain directory, and every result must be the same.
 *
 * A case is a fresh directory (one per side, "c<N>" under each root, with
 * a random mode and owner: sticky, setgid, shared...) and a sequence of
 * operations drawn by a PRNG seeded with (seed, N) over a small name
 * space, so that names collide: opens with every flag, I/O on up to three
 * descriptors (kept open across unlink and rename), truncation, mkdir,
 * rmdir, unlink, rename and renameat2, link, symlink, readlink, chmod,
 * chown, utimensat, mkfifo and mknod, access, stat and readdir; long
 * names, symlink loops, paths through files; each under a random umask
 * and, on a shared mount, as root or as one of two other uids.
 *
 * After every operation the result (return value, errno, the bytes read,
 * the symlink text, the entries listed) and then the whole tree of the
 * case (lstat of every entry: type, mode, nlink, uid, gid, size, rdev,
 * the symlink's target; fstat of its open descriptors) must read the same
 * on both sides. Times are compared by the step that set them: the cases
 * of a batch advance in lock-step, and each step starts on a new tick of
 * the coarse clock the file systems stamp times with, so "the mtime
 * changed in this step" is exact on both sides, as are explicit times
 * set by utimensat; UTIME_NOW and UTIME_OMIT are then checked too.
 *
 * What the mount cannot match is excluded in one list (posixdiff.c,
 * "Excluded"), each with its reason; nothing else is.
 */
#ifndef OMNI_TESTS_POSIXDIFF_H
#define OMNI_TESTS_POSIXDIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

struct posixdiff_config {
	const char *mount_root; /* an empty directory on the mount */
	const char *plain_root; /* an empty plain directory, same fs type */
	const char *foreign;    /* a directory on a third fs (EXDEV), or NULL */
	uint64_t seed;
	int cases;       /* how many cases */
	int first_case;  /* the index of the first (a replay: one case) */
	int steps;       /* operations per case */
	bool other_uids; /* also as other uids (a shared mount, as root) */
};

struct posixdiff_stats {
	int cases;      /* cases run */
	long ops;       /* operations run (on each side) */
	long checks;    /* results and trees compared */
	long skipped;   /* operations whose difference is excluded */
	long succeeded; /* operations that succeeded (on both sides) */
	int failed;     /* cases that differed */
};

/*
 * Run the cases; *report gets a malloc'd text (the seed, and for the
 * first failures the case's operations with both sides' results and the
 * first difference), or NULL when nothing differed. Returns the number
 * of cases that differed.
 */
int posixdiff_run(const struct posixdiff_config *c, struct posixdiff_stats *st,
                  char **report);

/* --- shared by posixdiff.c and posixdiff_ops.c ----------------------------
 */

#define PD_SLOTS 3

/* A growing text. */
struct pd_text {
	char *s;
	size_t len, cap;
};
void pd_printf(struct pd_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The start of each step, on the coarse clock. */
struct pd_clock {
	struct timespec t0[64];
	int steps;
};

/* One operation, drawn before it runs on either side. */
struct pd_op {
	int kind;
	int p1, p2;    /* indices in the name space */
	int flags;     /* open, rename, AT_ or access flags */
	mode_t mode;   /* open, mkdir, chmod, mknod mode */
	int slot;      /* descriptor slot */
	long long off; /* offset, length of truncation */
	size_t len;    /* bytes to write or read */
	int uid, gid;  /* chown choices */
	int times[2];  /* utimensat choices */
	int target;    /* symlink target choice */
	int cred;      /* 0 root, 1 and 2 other uids */
	mode_t umask;
	unsigned fill; /* what a write writes */
};

/* Draw operation step (from 0) of a case. */
void pd_draw(uint64_t *rng, int step, bool other_uids, struct pd_op *op);
/* The operation, as text (for the report). */
void pd_describe(const struct pd_op *op, struct pd_text *out);
/* Run it in the case directory root with the case's descriptors (and
 * foreign: the directory on another fs, or NULL); the result goes to out
 * as text. */
void pd_exec(const struct pd_op *op, const char *root, const char *foreign,
             int slots[PD_SLOTS], const struct pd_clock *ck,
             struct pd_text *out);
/* Does the op name a path (p1)? Its full path on a side. */
bool pd_op_path(const struct pd_op *op, const char *root, char *out,
                size_t size);
/* Opens a descriptor into op->slot; an O_TMPFILE open. */
bool pd_op_opens(const struct pd_op *op);
bool pd_op_tmpfile(const struct pd_op *op);

/* The compared attributes of st, as text. */
void pd_stat_text(const struct stat *st, const struct pd_clock *ck,
                  struct pd_text *out);
/* Switch to credential i (0 root), for one operation. */
void pd_become(int cred);
/* The PRNG (splitmix64) and a draw below n. */
uint64_t pd_next(uint64_t *s);
int pd_below(uint64_t *s, int n);

#endif
