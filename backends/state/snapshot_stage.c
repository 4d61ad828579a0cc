/*
 * backends/state/snapshot_stage.c - what a restore checks before it writes
 * (see snapshot.h; snapshot_apply.c runs the protocol): its limits, the
 * modes it gives, and the table of what it has staged.
 *
 * LIMITS
 *	A snapshot comes from a bucket or a remote that a sandbox may have
 *	written to, so a restore has bounds: at most max_entries entries and
 *	max_bytes bytes of content (the size a file has once restored, holes
 *	included). The defaults (1 000 000 entries, 64 GiB) are far above a
 *	real workspace; OMNI_RESTORE_MAX_ENTRIES and OMNI_RESTORE_MAX_BYTES
 *	set others. The managers count while they check a snapshot (before
 *	anything is written) and again while they stage it; past a limit the
 *	load fails with -EFBIG and the workspace stays as it was.
 *
 * MODES
 *	Only the permission bits are restored: setuid, setgid and sticky are
 *	dropped, each drop logged at WARN with the path. A file saved as
 *	04755 by root in a sandbox would otherwise come back setuid in a
 *	workspace that other users of the host can reach.
 *
 * THE STAGE TABLE
 *	Every path a restore stages, with its kind, in a binary tree
 *	(tsearch: no hash that an archive could fill with collisions). Paths
 *	are ordered with '/' before every other byte, so a walk gives each
 *	directory followed directly by what it holds; the swap into the
 *	workspace relies on it.
 *
 * Locking: none; everything belongs to one restore.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "omni/error.h"
#include "omni/log.h"
#include "state/snapshot.h"

/* --- limits
 * ------------------------------------------------------------------- */

/* A count with an optional binary suffix; false when it is none. */
static bool parse_count(const char *s, unsigned long long *out)
{
	unsigned long long v = 0;
	const char *p = s;
	unsigned int shift = 0;

	if (!*p)
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (~0ull - 9) / 10)
			return false;
		v = v * 10 + (unsigned long long)(*p - '0');
	}
	if (p == s)
		return false;
	switch (*p) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return false;
	}
	if (shift && (p[1] || v > (~0ull >> shift)))
		return false;
	*out = v << shift;
	return true;
}

static int limit_from_env(const char *name, unsigned long long def,
                          unsigned long long *out)
{
	const char *s = getenv(name);

	*out = def;
	if (!s || !*s)
		return 0;
	if (!parse_count(s, out) || *out == 0)
		return omni_error_set(-EINVAL,
		                      "%s=%s: not a positive number (a count, "
		                      "or bytes with K, M, G or T)",
		                      name, s);
	return 0;
}

int omni__limits_init(struct omni__limits *l)
{
	int rc;

	memset(l, 0, sizeof(*l));
	if ((rc = limit_from_env("OMNI_RESTORE_MAX_ENTRIES",
	                         OMNI__RESTORE_MAX_ENTRIES, &l->max_entries)) <
	    0)
		return rc;
	return limit_from_env("OMNI_RESTORE_MAX_BYTES", OMNI__RESTORE_MAX_BYTES,
	                      &l->max_bytes);
}

int omni__limits_add(struct omni__limits *l, unsigned long long entries,
                     unsigned long long bytes, const char *what)
{
	l->entries += entries;
	if (l->entries > l->max_entries)
		return omni_error_set(
		    -EFBIG,
		    "%s: the snapshot holds more than %llu entries "
		    "(OMNI_RESTORE_MAX_ENTRIES); nothing was restored",
		    what, l->max_entries);
	if (bytes > l->max_bytes - l->bytes)
		return omni_error_set(
		    -EFBIG,
		    "%s: the snapshot holds more than %llu bytes "
		    "(OMNI_RESTORE_MAX_BYTES); nothing was restored",
		    what, l->max_bytes);
	l->bytes += bytes;
	return 0;
}

mode_t omni__restore_mode(const char *path, unsigned int mode)
{
	if (mode & 07000)
		omni_log(OMNI_LOG_WARN,
		         "restore: %s: mode %04o has %s%s%s bits, dropped",
		         path, mode & 07777, (mode & 04000) ? "setuid " : "",
		         (mode & 02000) ? "setgid " : "",
		         (mode & 01000) ? "sticky " : "");
	return (mode_t)(mode & 0777);
}

/* --- the stage table
 * ---------------------------------------------------------- */

struct omni__stage {
	void *root; /* tsearch tree of struct omni__staged * */
	size_t count;
};

/* strcmp with '/' before every other byte. */
static int path_cmp(const void *x, const void *y)
{
	const unsigned char *a =
	    (const unsigned char *)((const struct omni__staged *)x)->path;
	const unsigned char *b =
	    (const unsigned char *)((const struct omni__staged *)y)->path;

	for (;; a++, b++) {
		int ca = *a == '/' ? 1 : *a ? *a + 1 : 0;
		int cb = *b == '/' ? 1 : *b ? *b + 1 : 0;
		if (ca != cb)
			return ca - cb;
		if (!ca)
			return 0;
	}
}

int omni__stage_new(struct omni__stage **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : omni_error_set(-ENOMEM, "restore: out of memory");
}

static void free_staged(void *p)
{
	struct omni__staged *e = p;

	free(e->path);
	free(e);
}

void omni__stage_free(struct omni__stage *s)
{
	if (!s)
		return;
	tdestroy(s->root, free_staged);
	free(s);
}

struct omni__staged *omni__stage_get(struct omni__stage *s, const char *path)
{
	struct omni__staged key = { .path = (char *)path };
	void *found = tfind(&key, &s->root, path_cmp);

	return found ? *(struct omni__staged **)found : NULL;
}

int omni__stage_add(struct omni__stage *s, const char *path, char kind)
{
	struct omni__staged *e = calloc(1, sizeof(*e));
	void *node;

	if (!e || !(e->path = strdup(path))) {
		free(e);
		return omni_error_set(-ENOMEM, "restore: out of memory");
	}
	e->kind = kind;
	node = tsearch(e, &s->root, path_cmp);
	if (!node) {
		free_staged(e);
		return omni_error_set(-ENOMEM, "restore: out of memory");
	}
	if (*(struct omni__staged **)node != e) {
		free_staged(e);
		return omni_error_set(-EEXIST, "restore: %s staged twice",
		                      path);
	}
	s->count++;
	return 0;
}

struct collect {
	struct omni__staged **items;
	size_t count;
};

static void collect_one(const void *node, VISIT which, void *payload)
{
	struct collect *c = payload;

	if (which == postorder || which == leaf)
		c->items[c->count++] = *(struct omni__staged *const *)node;
}

int omni__stage_sorted(struct omni__stage *s, struct omni__staged ***out,
                       size_t *count)
{
	struct collect c = { .items =
		                 malloc((s->count + 1) * sizeof(*c.items)) };

	*out = NULL;
	*count = 0;
	if (!c.items)
		return omni_error_set(-ENOMEM, "restore: out of memory");
	twalk_r(s->root, collect_one, &c);
	*out = c.items;
	*count = c.count;
	return 0;
}
