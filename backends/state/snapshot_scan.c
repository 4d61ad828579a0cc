/*
 * backends/state/snapshot_scan.c - reading a workspace for a snapshot:
 * the ignore rules, the scan and reading files, all through the backend
 * operations (see snapshot.h; snapshot_apply.c writes a snapshot back).
 *
 * IGNORE RULES
 *	A snapshot leaves out what no one wants back: the default list
 *	(omni__default_ignores: virtualenvs, __pycache__, node_modules, tool
 *	caches, .DS_Store, our own temporaries) and what the workspace's
 *	.gitignore files exclude, with git's rules: blank lines and '#'
 *	comments are skipped, "!" re-includes, a trailing '/' matches only
 *	directories, a pattern with a '/' elsewhere is anchored to the
 *	directory of its .gitignore and matched segment by segment (with "**"
 *	for any number of segments), any other pattern matches a base name at
 *	any depth; the deepest .gitignore and the last matching line win. The
 *	defaults come first, so a workspace can re-include one of them. An
 *	ignored directory is not descended into. Nothing is written into the
 *	workspace: the rules live in memory for one scan.
 *
 * SCAN
 *	The scan walks the workspace through omni/vfs.h, reads each
 *	directory's .gitignore before its entries (up to 1 MiB), leaves out
 *	what the rules ignore (and anything named .git with
 *	OMNI__SCAN_SKIP_GIT) and sorts the result by path. Files are read in
 *	chunks of 1 MiB. The staging directories of loads
 *	(OMNI__STAGE_PREFIX*, at the root) are never listed.
 *
 * READING
 *	What the scan listed as a regular file may be something else by the
 *	time it is read: a sandbox can swap it for a FIFO (an open would
 *	hang the save, and the unmount with it), a device, or a symlink to
 *	a host file. So a scanned file is opened with O_NOFOLLOW |
 *	O_NONBLOCK | O_NOCTTY (the backend honours what it can: the confined
 *	open of the host backends refuses a symlink that leads out), then
 *	fstat'ed: anything that is not a regular file, or (where inodes are
 *	real, i.e. not on a remote backend) not the inode the scan saw
 *	(st_dev, st_ino), is left out of the snapshot with a warning and
 *	never read. The data read is always that of the descriptor.
 *
 * Locking: the functions here keep no global state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "core/api.h"
#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/log.h"
#include "state/snapshot.h"

#define READ_CHUNK    (1024 * 1024)
#define GITIGNORE_MAX (1024 * 1024)

const char *const omni__default_ignores[] = {
	".venv/",
	"__pycache__/",
	"*.pyc",
	"*.pyo",
	"node_modules/",
	".mypy_cache/",
	".pytest_cache/",
	".ruff_cache/",
	".tox/",
	".cache/",
	".DS_Store",
	".omnifs-tmp-*",
	NULL,
};

/* --- ignore rules
 * ------------------------------------------------------------- */

struct ignore_rule {
	char *pattern;
	bool negate, dir_only, anchored;
};

struct omni__ignore_set {
	char *base; /* "" or "dir/sub" */
	struct ignore_rule *rules;
	size_t count;
};

void omni__ignore_free(struct omni__ignore_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->count; i++)
		free(set->rules[i].pattern);
	free(set->rules);
	free(set->base);
	free(set);
}

/* Parse one line into r; false for a line without a pattern. */
static bool parse_line(char *line, size_t len, struct ignore_rule *r)
{
	memset(r, 0, sizeof(*r));
	if (len && line[len - 1] == '\r')
		len--;
	/* Trailing spaces go, unless escaped with a backslash. */
	while (len && line[len - 1] == ' ' &&
	       !(len >= 2 && line[len - 2] == '\\'))
		len--;
	line[len] = '\0';
	if (len == 0 || line[0] == '#')
		return false;
	if (line[0] == '!') {
		r->negate = true;
		line++;
		len--;
	}
	if (len && line[len - 1] == '/') {
		r->dir_only = true;
		line[--len] = '\0';
	}
	if (len == 0)
		return false;
	if (strchr(line, '/')) {
		r->anchored = true;
		while (*line == '/')
			line++;
		if (!*line)
			return false;
	}
	r->pattern = line; /* copied by the caller */
	return true;
}

int omni__ignore_parse(struct omni__ignore_set **out, const char *base,
                       const char *text, size_t len)
{
	struct omni__ignore_set *set = calloc(1, sizeof(*set));
	char *copy = malloc(len + 1);
	size_t cap = 0;
	int rc = 0;

	*out = NULL;
	if (!set || !copy || !(set->base = strdup(base))) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	for (char *line = copy; line && *line;) {
		char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		struct ignore_rule r;

		if (nl)
			*nl = '\0';
		if (parse_line(line, n, &r)) {
			if (set->count == cap) {
				size_t c = cap ? cap * 2 : 16;
				struct ignore_rule *p =
				    realloc(set->rules, c * sizeof(*p));
				if (!p) {
					rc = -ENOMEM;
					goto out;
				}
				set->rules = p;
				cap = c;
			}
			if (!(r.pattern = strdup(r.pattern))) {
				rc = -ENOMEM;
				goto out;
			}
			set->rules[set->count++] = r;
		}
		line = nl ? nl + 1 : NULL;
	}
	*out = set;
	set = NULL;
out:
	free(copy);
	omni__ignore_free(set);
	return rc < 0 ? omni_error_set(rc, "ignore rules: out of memory") : 0;
}

/* Copy the segment [s, s + n) into buf; false when it does not fit. */
static bool segment(char *buf, size_t size, const char *s, size_t n)
{
	if (n >= size)
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return true;
}

/* Match a '/'-separated pattern against a '/'-separated path, segment by
 * segment; a "**" segment stands for any number of segments (as the last
 * segment: one or more, so it matches what is inside the directory before
 * it, not that directory). */
static bool segments_match(const char *pat, const char *path)
{
	char ps[512], ss[512];

	if (!*pat)
		return !*path;
	const char *pe = strchr(pat, '/');
	size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
	const char *prest = pe ? pe + 1 : pat + pl;

	if (pl == 2 && pat[0] == '*' && pat[1] == '*') {
		if (!*prest)
			return *path != '\0';
		for (const char *p = path;;) {
			if (segments_match(prest, p))
				return true;
			const char *s = strchr(p, '/');
			if (!s)
				return false;
			p = s + 1;
		}
	}
	if (!*path)
		return false;
	const char *se = strchr(path, '/');
	size_t sl = se ? (size_t)(se - path) : strlen(path);
	const char *srest = se ? se + 1 : path + sl;
	if (!segment(ps, sizeof(ps), pat, pl) ||
	    !segment(ss, sizeof(ss), path, sl))
		return false;
	if (fnmatch(ps, ss, 0) != 0)
		return false;
	return segments_match(prest, srest);
}

static bool rule_match(const struct ignore_rule *r, const char *rel,
                       bool is_dir)
{
	if (r->dir_only && !is_dir)
		return false;
	if (r->anchored)
		return segments_match(r->pattern, rel);
	const char *name = strrchr(rel, '/');
	return fnmatch(r->pattern, name ? name + 1 : rel, 0) == 0;
}

bool omni__ignored(struct omni__ignore_set *const *sets, size_t n,
                   const char *path, bool is_dir)
{
	for (size_t i = n; i-- > 0;) {
		const struct omni__ignore_set *set = sets[i];
		const char *rel = path;
		size_t bl = strlen(set->base);

		if (bl) {
			if (strncmp(path, set->base, bl) != 0 ||
			    path[bl] != '/')
				continue;
			rel = path + bl + 1;
		}
		for (size_t k = set->count; k-- > 0;)
			if (rule_match(&set->rules[k], rel, is_dir))
				return !set->rules[k].negate;
	}
	return false;
}

static int default_set(struct omni__ignore_set **out)
{
	char text[1024];
	size_t n = 0;

	for (size_t i = 0; omni__default_ignores[i]; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%s\n",
		                      omni__default_ignores[i]);
	return omni__ignore_parse(out, "", text, n);
}

/* --- scan
 * ----------------------------------------------------------------------- */

struct scan {
	struct omni_backend *b;
	unsigned int flags;
	struct omni__ignore_set **sets;
	size_t nsets, capsets;
	struct omni__ws_list *out;
};

static int list_add(struct omni__ws_list *l, const char *path,
                    const struct stat *st)
{
	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct omni__ws_entry *p = realloc(l->items, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		l->items = p;
		l->cap = cap;
	}
	char *copy = strdup(path);
	if (!copy)
		return -ENOMEM;
	l->items[l->count++] =
	    (struct omni__ws_entry){ .path = copy, .st = *st };
	return 0;
}

static int dirent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct omni__dirent *)a)->name,
	              ((const struct omni__dirent *)b)->name);
}

static int push_set(struct scan *s, struct omni__ignore_set *set)
{
	if (s->nsets == s->capsets) {
		size_t cap = s->capsets ? s->capsets * 2 : 8;
		struct omni__ignore_set **p =
		    realloc(s->sets, cap * sizeof(*p));
		if (!p) {
			omni__ignore_free(set);
			return -ENOMEM;
		}
		s->sets = p;
		s->capsets = cap;
	}
	s->sets[s->nsets++] = set;
	return 0;
}

/* Read dir/.gitignore (when the listing has one) into a new rule set. */
static int load_gitignore(struct scan *s, const char *dir,
                          const struct omni__dirents *d, bool *pushed)
{
	char path[PATH_MAX];
	char *text = NULL;
	size_t len = 0;
	struct omni__ignore_set *set;
	int rc;

	*pushed = false;
	for (size_t i = 0; i < d->count; i++) {
		if (strcmp(d->items[i].name, ".gitignore") != 0 ||
		    !S_ISREG(d->items[i].st.st_mode))
			continue;
		if ((rc = omni__join(path, sizeof(path), dir, ".gitignore")) <
		    0)
			return rc;
		rc = omni__ws_read_all(s->b, path, &d->items[i].st,
		                       GITIGNORE_MAX, &text, &len);
		if (rc == -ESTALE || rc == -ENOENT) {
			omni__ws_skipped(path, rc);
			return 0;
		}
		if (rc == -EFBIG) {
			/* A giant .gitignore is not worth failing a save
			 * for; its rules are not applied. */
			omni_log(OMNI_LOG_DEBUG, "%s: too large, not read",
			         path);
			omni_error_clear();
			return 0;
		}
		if (rc < 0)
			return rc;
		rc = omni__ignore_parse(&set, dir, text, len);
		free(text);
		if (rc < 0 || (rc = push_set(s, set)) < 0)
			return rc;
		*pushed = true;
		return 0;
	}
	return 0;
}

static int scan_dir(struct scan *s, const char *dir, size_t parent)
{
	struct omni__dirents d;
	char path[PATH_MAX];
	bool pushed = false;
	int rc = omni__dirents_read(s->b, dir, &d);

	if (rc < 0)
		return rc;
	if (d.count > 1)
		qsort(d.items, d.count, sizeof(*d.items), dirent_cmp);
	if ((rc = load_gitignore(s, dir, &d, &pushed)) < 0)
		goto out;
	for (size_t i = 0; i < d.count; i++) {
		const struct stat *st = &d.items[i].st;
		const char *name = d.items[i].name;

		if ((s->flags & OMNI__SCAN_SKIP_GIT) &&
		    strcmp(name, ".git") == 0)
			continue;
		if (!dir[0] && strncmp(name, OMNI__STAGE_PREFIX,
		                       strlen(OMNI__STAGE_PREFIX)) == 0)
			continue;
		if (!S_ISREG(st->st_mode) && !S_ISLNK(st->st_mode) &&
		    !S_ISDIR(st->st_mode))
			continue;
		if ((rc = omni__join(path, sizeof(path), dir, name)) < 0)
			goto out;
		if (omni__ignored(s->sets, s->nsets, path,
		                  S_ISDIR(st->st_mode)))
			continue;
		if ((rc = list_add(s->out, path, st)) < 0) {
			rc = omni_error_set(rc, "scan: out of memory");
			goto out;
		}
		if (parent != (size_t)-1)
			s->out->items[parent].has_children = true;
		if (S_ISDIR(st->st_mode) &&
		    (rc = scan_dir(s, path, s->out->count - 1)) < 0)
			goto out;
	}
out:
	if (pushed)
		omni__ignore_free(s->sets[--s->nsets]);
	omni__dirents_finish(&d);
	return rc;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct omni__ws_entry *)a)->path,
	              ((const struct omni__ws_entry *)b)->path);
}

int omni__ws_scan(struct omni_backend *b, unsigned int flags,
                  struct omni__ws_list *out)
{
	struct scan s = { .b = b, .flags = flags, .out = out };
	struct omni__ignore_set *defaults;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = default_set(&defaults)) < 0 ||
	    (rc = push_set(&s, defaults)) < 0)
		return rc;
	rc = scan_dir(&s, "", (size_t)-1);
	for (size_t i = 0; i < s.nsets; i++)
		omni__ignore_free(s.sets[i]);
	free(s.sets);
	if (rc < 0) {
		omni__ws_list_finish(out);
		return rc;
	}
	if (out->count > 1)
		qsort(out->items, out->count, sizeof(*out->items), entry_cmp);
	return 0;
}

void omni__ws_list_finish(struct omni__ws_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i].path);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

struct omni__ws_entry *omni__ws_find(const struct omni__ws_list *l,
                                     const char *path)
{
	struct omni__ws_entry key = { .path = (char *)path };

	if (!l->count)
		return NULL;
	return bsearch(&key, l->items, l->count, sizeof(key), entry_cmp);
}

void omni__ws_skipped(const char *path, int rc)
{
	if (rc == -ENOENT)
		omni_log(OMNI_LOG_DEBUG, "%s: deleted while saving, left out",
		         path);
	else
		omni_log(OMNI_LOG_WARN, "save: %s left out: %s", path,
		         omni_error_last());
	omni_error_clear();
}

/* Open a scanned file for reading, only if it is still that file. */
static int open_seen(struct omni_backend *b, const char *path,
                     const struct stat *seen, struct omni_file **f)
{
	struct stat st;
	int rc = omni_vfs_open(
	    b, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0, f);

	if (rc == -ELOOP || rc == -EACCES || rc == -EXDEV) {
		/* Refused: a symlink (leading out) now stands there? */
		struct omni__error_saved saved;
		omni__error_save(&saved);
		if (omni_vfs_stat(b, path, &st) == 0 && S_ISLNK(st.st_mode))
			return omni_error_set(
			    -ESTALE, "%s: now a symlink, not followed", path);
		return omni__error_restore(&saved, rc);
	}
	if (rc < 0)
		return rc;
	rc = omni_vfs_fstat(*f, &st);
	if (rc == 0 && !S_ISREG(st.st_mode))
		rc = omni_error_set(-ESTALE,
		                    "%s: no longer a regular file (mode %o)",
		                    path, (unsigned int)st.st_mode);
	else if (rc == 0 && !(omni_vfs_caps(b) & OMNI_CAP_REMOTE) &&
	         (st.st_dev != seen->st_dev || st.st_ino != seen->st_ino))
		rc = omni_error_set(
		    -ESTALE, "%s: another file than the one scanned", path);
	if (rc < 0) {
		omni_vfs_release(*f);
		*f = NULL;
	}
	return rc;
}

int omni__ws_read(struct omni_backend *b, const char *path,
                  const struct stat *seen, omni__chunk_cb cb, void *payload)
{
	struct omni_file *f = NULL;
	char *buf = malloc(READ_CHUNK);
	int rc;

	if (!buf)
		return omni_error_set(-ENOMEM, "%s: out of memory", path);
	rc = seen ? open_seen(b, path, seen, &f)
	          : omni_vfs_open(b, path, O_RDONLY, 0, &f);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	for (off_t off = 0;;) {
		ssize_t n = omni_vfs_read(f, buf, READ_CHUNK, off);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		if (n == 0)
			break;
		if ((rc = cb(buf, (size_t)n, payload)) < 0)
			break;
		off += n;
	}
	int rrc = omni_vfs_release(f);
	free(buf);
	return rc < 0 ? rc : rrc;
}

struct grow {
	char *data;
	size_t len, cap, max;
	const char *path;
};

static int grow_cb(const void *data, size_t len, void *payload)
{
	struct grow *g = payload;

	if (g->len + len > g->max)
		return omni_error_set(-EFBIG, "%s: larger than %zu bytes",
		                      g->path, g->max);
	if (g->len + len + 1 > g->cap) {
		size_t cap = g->cap ? g->cap : 4096;
		while (cap < g->len + len + 1)
			cap *= 2;
		char *p = realloc(g->data, cap);
		if (!p)
			return omni_error_set(-ENOMEM, "%s: out of memory",
			                      g->path);
		g->data = p;
		g->cap = cap;
	}
	memcpy(g->data + g->len, data, len);
	g->len += len;
	return 0;
}

int omni__ws_read_all(struct omni_backend *b, const char *path,
                      const struct stat *seen, size_t max, char **out,
                      size_t *len)
{
	struct grow g = { .max = max, .path = path };
	int rc = omni__ws_read(b, path, seen, grow_cb, &g);

	*out = NULL;
	if (rc == 0 && !g.data && !(g.data = malloc(1)))
		rc = omni_error_set(-ENOMEM, "%s: out of memory", path);
	if (rc < 0) {
		free(g.data);
		return rc;
	}
	g.data[g.len] = '\0';
	*out = g.data;
	if (len)
		*len = g.len;
	return 0;
}
