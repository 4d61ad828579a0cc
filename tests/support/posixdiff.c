/*
 * tests/support/posixdiff.c - the driver of the differential conformance
 * tests (posixdiff.h): batches of cases run in lock-step on the mount and
 * on the plain directory, the trees compared after every step, and the
 * report of what differed.
 *
 * Cases run in batches of BATCH, all at step k before any at step k + 1,
 * and each step waits for the coarse clock (the one file systems stamp
 * times with) to tick past the end of the previous one. Every time a
 * step sets is then at or after the step's start and before the next
 * one's, on both sides, so a time is compared as "set in step k" (or as
 * the explicit value utimensat gave it): exact, yet free of the absolute
 * values that differ between the two sides. One tick per step of a batch,
 * not per operation, keeps the waits to a second or two.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "posixdiff.h"

#define BATCH       50
#define MAX_REPORTS 3

/* --- text, credentials, clock ---------------------------------------------
 */

void pd_printf(struct pd_text *t, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		size_t room = t->cap - t->len;
		va_start(ap, fmt);
		int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? room : 0,
		                  fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (t->s && (size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap : 256;
		while (cap < t->len + (size_t)n + 1)
			cap *= 2;
		char *s = realloc(t->s, cap);
		cr_assert(s, "out of memory");
		t->s = s;
		t->cap = cap;
	}
}

static void text_clear(struct pd_text *t)
{
	t->len = 0;
	if (t->s)
		t->s[0] = '\0';
}

/*
 * Another uid for one operation: the effective ids and groups change, the
 * saved uid stays 0 to come back. Permission checks use the fsuid, which
 * follows the euid, and the capabilities go with euid 0, so the kernel
 * checks exactly what it would for a process of that uid (as a forked
 * child after setresuid would be), without a fork per operation.
 */
void pd_become(int cred)
{
	static const struct {
		uid_t uid;
		gid_t gid;
		size_t ngroups;
		gid_t groups[1];
	} creds[] = { { 0, 0, 0, { 0 } },
		      { 4321, 4321, 1, { 4242 } },
		      { 4322, 4322, 0, { 0 } } };
	static int current;

	if (cred == current)
		return;
	if (current != 0)
		cr_assert(seteuid(0) == 0 && setegid(0) == 0 &&
		          setgroups(0, NULL) == 0);
	if (cred != 0)
		cr_assert(setgroups(creds[cred].ngroups, creds[cred].groups) ==
		                  0 &&
		              setegid(creds[cred].gid) == 0 &&
		              seteuid(creds[cred].uid) == 0,
		          "cannot become uid %u: %s", creds[cred].uid,
		          strerror(errno));
	current = cred;
}

static struct timespec coarse_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return ts;
}

static int ts_cmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	if (a->tv_nsec != b->tv_nsec)
		return a->tv_nsec < b->tv_nsec ? -1 : 1;
	return 0;
}

/* Start step ck->steps: once the coarse clock has passed *last. */
static void next_step(struct pd_clock *ck, const struct timespec *last)
{
	struct timespec now = coarse_now();

	while (ts_cmp(&now, last) <= 0) {
		usleep(200);
		now = coarse_now();
	}
	cr_assert(ck->steps < 64);
	ck->t0[ck->steps++] = now;
}

/* --- attributes as text ----------------------------------------------------
 */

static void time_class(const struct timespec *t, const struct pd_clock *ck,
                       struct pd_text *out)
{
	int j = ck->steps - 1;

	while (j >= 0 && ts_cmp(t, &ck->t0[j]) < 0)
		j--;
	if (j >= 0)
		pd_printf(out, "s%d", j);
	else
		pd_printf(out, "=%lld.%09ld", (long long)t->tv_sec, t->tv_nsec);
}

void pd_stat_text(const struct stat *st, const struct pd_clock *ck,
                  struct pd_text *out)
{
	static const char types[] = "?pc?d?b?-?l?s???";

	pd_printf(out, "%c%04o n%lu u%u g%u sz%lld",
	          types[(st->st_mode >> 12) & 15], st->st_mode & 07777,
	          (unsigned long)st->st_nlink, st->st_uid, st->st_gid,
	          (long long)st->st_size);
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		pd_printf(out, " rdev%u:%u", major(st->st_rdev),
		          minor(st->st_rdev));
	pd_printf(out, " m");
	time_class(&st->st_mtim, ck, out);
	pd_printf(out, " c");
	time_class(&st->st_ctim, ck, out);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every entry under dir (rel its name in the case), depth first. */
static void tree_text(const char *dir, const char *rel, int depth,
                      const struct pd_clock *ck, struct pd_text *out)
{
	char *names[64], p[PATH_MAX], r[PATH_MAX];
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d) {
		pd_printf(out, "%s/: cannot list: %s\n", rel, strerror(errno));
		return;
	}
	while ((de = readdir(d)) && n < 64)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			names[n++] = strdup(de->d_name);
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
	for (int i = 0; i < n; i++) {
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		snprintf(r, sizeof(r), "%s%s%.12s", rel, *rel ? "/" : "",
		         names[i]);
		pd_printf(out, "%s%s: ", r, strlen(names[i]) > 12 ? "..." : "");
		if (lstat(p, &st) < 0) {
			pd_printf(out, "lstat: %s\n", strerror(errno));
			free(names[i]);
			continue;
		}
		pd_stat_text(&st, ck, out);
		if (S_ISLNK(st.st_mode)) {
			char t[PATH_MAX];
			ssize_t len = readlink(p, t, sizeof(t) - 1);
			pd_printf(out, " -> %.*s", (int)(len < 0 ? 0 : len), t);
		}
		pd_printf(out, "\n");
		if (S_ISDIR(st.st_mode) && depth < 3)
			tree_text(p, r, depth + 1, ck, out);
		free(names[i]);
	}
}

/* --- cases -----------------------------------------------------------------
 */

struct side {
	char root[PATH_MAX];
	int slots[PD_SLOTS];
	struct pd_text res, tree;
};

struct pd_case {
	int idx;
	uint64_t rng;
	struct side s[2]; /* 0 the mount, 1 the plain directory */
	struct pd_text log;
	bool failed;
	bool fifo_io; /* a descriptor of a FIFO was read or written */
};

static void snapshot(struct side *sd, const struct pd_clock *ck)
{
	struct stat st;

	text_clear(&sd->tree);
	if (lstat(sd->root, &st) == 0) {
		pd_printf(&sd->tree, ".: ");
		pd_stat_text(&st, ck, &sd->tree);
		pd_printf(&sd->tree, "\n");
	}
	tree_text(sd->root, "", 0, ck, &sd->tree);
	for (int i = 0; i < PD_SLOTS; i++) {
		if (sd->slots[i] < 0)
			continue;
		pd_printf(&sd->tree, "slot %d: ", i);
		if (fstat(sd->slots[i], &st) == 0)
			pd_stat_text(&st, ck, &sd->tree);
		else
			pd_printf(&sd->tree, "fstat: %s", strerror(errno));
		pd_printf(&sd->tree, "\n");
	}
}

/* The case directory on both sides: a mode and owner drawn from its
 * PRNG (shared, sticky, setgid, private...). */
static void setup_case(struct pd_case *c, const struct posixdiff_config *cfg)
{
	static const mode_t modes[] = { 0755, 0777, 01777, 02775, 03777, 0700 };
	static const uid_t uids[] = { 0, 4321, 4322 };
	static const gid_t gids[] = { 0, 4242, 4321 };
	mode_t mode = modes[pd_below(&c->rng, 6)];
	uid_t uid = uids[pd_below(&c->rng, 3)];
	gid_t gid = gids[pd_below(&c->rng, 3)];

	pd_printf(&c->log, "case %d: directory 0%o %u:%u\n", c->idx, mode, uid,
	          gid);
	for (int s = 0; s < 2; s++) {
		const char *base = s ? cfg->plain_root : cfg->mount_root;
		omni_test_fmt(c->s[s].root, sizeof(c->s[s].root), "%s/c%d",
		              base, c->idx);
		for (int i = 0; i < PD_SLOTS; i++)
			c->s[s].slots[i] = -1;
		cr_assert(mkdir(c->s[s].root, 0700) == 0, "mkdir %s: %s",
		          c->s[s].root, strerror(errno));
		cr_assert(chown(c->s[s].root, uid, gid) == 0 &&
		              chmod(c->s[s].root, mode) == 0,
		          "%s: %s", c->s[s].root, strerror(errno));
	}
}

static void finish_case(struct pd_case *c)
{
	for (int s = 0; s < 2; s++) {
		for (int i = 0; i < PD_SLOTS; i++)
			if (c->s[s].slots[i] >= 0)
				close(c->s[s].slots[i]);
		omni_test_rm_rf(c->s[s].root);
		free(c->s[s].res.s);
		free(c->s[s].tree.s);
	}
	free(c->log.s);
}

/* --- Excluded --------------------------------------------------------------
 *
 * The differences the mount cannot avoid, each matched narrowly; any
 * other difference fails. Never compared at all: st_dev, st_ino (another
 * file system), st_blocks and st_blksize (FUSE reports its own), atime
 * (relatime, and reads the kernel serves from its page cache never reach
 * the backing file). The mtime and ctime of a FIFO once a descriptor of
 * it was read or written (mask_fifo_times): pipe I/O never reaches the
 * file system, the kernel stamps its own inode, which on a plain
 * directory is the file's and on FUSE (as on NFS) is a cache the next
 * getattr replaces.
 */
static bool excluded(const struct pd_op *op, struct pd_case *c)
{
	const char *a = c->s[0].res.s;
	char p[PATH_MAX];
	struct stat st;

	if (!pd_op_opens(op))
		return false;
	/* O_TMPFILE: libfuse 3.14's low-level API has no tmpfile operation,
	 * so the kernel answers EOPNOTSUPP, as on NFS; users of O_TMPFILE
	 * fall back on a named file. */
	bool tmpfile = pd_op_tmpfile(op) && strcmp(a, "-1 EOPNOTSUPP") == 0;
	/* Device nodes: every FUSE mount is nodev (libfuse's default), so
	 * opening one gives EACCES. */
	bool device = strcmp(a, "-1 EACCES") == 0 &&
	              pd_op_path(op, c->s[1].root, p, sizeof(p)) &&
	              stat(p, &st) == 0 &&
	              (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode));
	if (!tmpfile && !device)
		return false;
	if (c->s[1].slots[op->slot] >= 0) {
		close(c->s[1].slots[op->slot]);
		c->s[1].slots[op->slot] = -1;
	}
	return true;
}

/* The times of FIFOs, once their I/O may have set them: the last two
 * fields of each line whose type is 'p' become "m* c*" (see Excluded). */
static void mask_fifo_times(struct pd_text *t)
{
	struct pd_text out = { 0 };
	char *line = t->s;

	while (line && *line) {
		char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		const char *colon = memchr(line, ':', len);
		char *m = NULL;
		for (char *p = line; p + 2 < line + len; p++)
			if (p[0] == ' ' && p[1] == 'm')
				m = p;
		if (colon && colon + 2 < line + len && colon[2] == 'p' && m)
			pd_printf(&out, "%.*s m* c*\n", (int)(m - line), line);
		else
			pd_printf(&out, "%.*s\n", (int)len, line);
		line = end ? end + 1 : NULL;
	}
	free(t->s);
	*t = out;
}

/* Does op read or write a FIFO's descriptor (on the plain side)? */
static bool fifo_io(const struct pd_op *op, const struct pd_case *c)
{
	char p[PATH_MAX];
	struct stat st;
	int fd = c->s[1].slots[op->slot];

	return !pd_op_path(op, "", p, sizeof(p)) && fd >= 0 &&
	       fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

/* --- the run ---------------------------------------------------------------
 */

static void report_case(struct pd_text *rep, const struct posixdiff_config *cfg,
                        struct pd_case *c, const char *what, const char *a,
                        const char *b)
{
	pd_printf(rep,
	          "\n--- case %d differs (%s); replay: POSIXDIFF_SEED=%llu "
	          "POSIXDIFF_CASE=%d\n%s--- mount:\n%s\n--- plain:\n%s\n",
	          c->idx, what, (unsigned long long)cfg->seed, c->idx, c->log.s,
	          a, b);
}

static void run_op(struct pd_case *c, const struct posixdiff_config *cfg,
                   const struct pd_clock *ck, struct posixdiff_stats *st,
                   struct pd_text *rep)
{
	struct pd_op op;

	pd_draw(&c->rng, ck->steps - 2, cfg->other_uids, &op);
	pd_printf(&c->log, "%2d. ", ck->steps - 1);
	pd_describe(&op, &c->log);
	c->fifo_io = c->fifo_io || fifo_io(&op, c);
	for (int s = 0; s < 2; s++) {
		text_clear(&c->s[s].res);
		pd_exec(&op, c->s[s].root, cfg->foreign, c->s[s].slots, ck,
		        &c->s[s].res);
	}
	st->ops++;
	st->checks++;
	const char *a = c->s[0].res.s, *b = c->s[1].res.s;
	if (strcmp(a, b) == 0) {
		if (strncmp(a, "-1 ", 3) != 0)
			st->succeeded++;
		pd_printf(&c->log, " = %s\n", a);
		return;
	}
	if (excluded(&op, c)) {
		st->skipped++;
		pd_printf(&c->log, " = %s | %s (excluded)\n", a, b);
		return;
	}
	pd_printf(&c->log, " = %s | %s\n", a, b);
	c->failed = true;
	if (++st->failed <= MAX_REPORTS)
		report_case(rep, cfg, c, "result", a, b);
}

static void check_tree(struct pd_case *c, const struct posixdiff_config *cfg,
                       const struct pd_clock *ck, struct posixdiff_stats *st,
                       struct pd_text *rep)
{
	for (int s = 0; s < 2; s++) {
		snapshot(&c->s[s], ck);
		if (c->fifo_io)
			mask_fifo_times(&c->s[s].tree);
	}
	st->checks++;
	if (strcmp(c->s[0].tree.s, c->s[1].tree.s) == 0)
		return;
	c->failed = true;
	if (++st->failed <= MAX_REPORTS)
		report_case(rep, cfg, c, "tree", c->s[0].tree.s,
		            c->s[1].tree.s);
}

static void run_batch(const struct posixdiff_config *cfg, int first, int n,
                      struct posixdiff_stats *st, struct pd_text *rep)
{
	struct pd_case *cs = calloc((size_t)n, sizeof(*cs));
	struct pd_clock ck = { .steps = 0 };
	struct timespec last = { 0, 0 };

	cr_assert(cs);
	next_step(&ck, &last);
	for (int i = 0; i < n; i++) {
		cs[i].idx = first + i;
		cs[i].rng = cfg->seed ^ ((uint64_t)cs[i].idx << 32);
		pd_next(&cs[i].rng);
		setup_case(&cs[i], cfg);
	}
	for (int i = 0; i < n; i++)
		check_tree(&cs[i], cfg, &ck, st, rep);
	for (int k = 0; k < cfg->steps; k++) {
		/* The fine clock: a file system may stamp a change with a
		 * fine-grained time later than the coarse clock (multigrain
		 * timestamps, Linux 6.13+), so a step starts only once the
		 * coarse clock has passed every time the last step could
		 * have given. */
		clock_gettime(CLOCK_REALTIME, &last);
		next_step(&ck, &last);
		for (int i = 0; i < n; i++)
			if (!cs[i].failed)
				run_op(&cs[i], cfg, &ck, st, rep);
		for (int i = 0; i < n; i++)
			if (!cs[i].failed)
				check_tree(&cs[i], cfg, &ck, st, rep);
	}
	for (int i = 0; i < n; i++)
		finish_case(&cs[i]);
	free(cs);
	st->cases += n;
}

int posixdiff_run(const struct posixdiff_config *cfg,
                  struct posixdiff_stats *st, char **report)
{
	struct pd_text rep = { 0 };

	memset(st, 0, sizeof(*st));
	cr_assert(cfg->steps > 0 && cfg->steps < 63);
	umask(0);
	for (int done = 0; done < cfg->cases; done += BATCH) {
		int n = cfg->cases - done < BATCH ? cfg->cases - done : BATCH;
		run_batch(cfg, cfg->first_case + done, n, st, &rep);
	}
	if (st->failed) {
		pd_printf(&rep,
		          "\n%d of %d cases differed (seed %llu; reports for "
		          "the first %d)\n",
		          st->failed, st->cases, (unsigned long long)cfg->seed,
		          MAX_REPORTS);
		*report = rep.s;
	} else {
		free(rep.s);
		*report = NULL;
	}
	return st->failed;
}
