/*
 * backends/state/snapshot.c - the parts of a snapshot that the git and gcs
 *state managers share (see snapshot.h).
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
 * APPLY
 *	Loading a snapshot must never leave a half-written file behind, and
 *	must not delete what it should keep. So:
 *	  1. the workspace is scanned first (same ignore rules);
 *	  2. every file of the snapshot is written to a temporary name in its
 *	     directory (".omnifs-tmp-<pid>-<n>", in the default ignore list),
 *	     created with its mode (chmod only when the umask took bits away),
 *	     given its time (not on remote backends, where a utimens is a
 *	     command in the sandbox), and renamed over its path; a symlink is
 *	     made under a temporary name and renamed the same way. Something
 *	     of another type in the way (a directory where a file goes, a file
 *	     where a directory goes) is removed first;
 *	  3. what the scan found and the snapshot does not name is deleted,
 *	     deepest first; a directory goes only if it held scanned entries
 *	     (an empty directory a user made stays, since git cannot record
 *	     one), and only if it is empty by then (ignored content keeps it);
 *	  4. directory modes are set last, deepest first, so a read-only
 *	     directory does not stop its own files from being written.
 *	The managers check a snapshot completely (download verified, archive
 *	read through, objects present) before step 2, so a broken snapshot
 *	fails before anything is written.
 *
 * PLACE AND LOCK
 *	Each data folder has a state directory beside its workspaces,
 *	<data>/.omnifs-state (0700): the git manager keeps <project>.git
 *	there, the gcs manager <project>.gcs/. A save, load or cleanup of a
 *	project holds an exclusive flock on <project>.lock in it for its
 *	whole length, so two daemons (or two threads: each takes its own open
 *	file description) never work on one project's state at once.
 *
 * Locking: the functions here keep no global state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/api.h"
#include "omni/sys/backend_impl.h"
#include "base/error.h"
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
		rc = omni__ws_read_all(s->b, path, GITIGNORE_MAX, &text, &len);
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

int omni__ws_read(struct omni_backend *b, const char *path, omni__chunk_cb cb,
                  void *payload)
{
	struct omni_file *f;
	char *buf = malloc(READ_CHUNK);
	int rc;

	if (!buf)
		return omni_error_set(-ENOMEM, "%s: out of memory", path);
	if ((rc = omni_vfs_open(b, path, O_RDONLY, 0, &f)) < 0) {
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

int omni__ws_read_all(struct omni_backend *b, const char *path, size_t max,
                      char **out, size_t *len)
{
	struct grow g = { .max = max, .path = path };
	int rc = omni__ws_read(b, path, grow_cb, &g);

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

/* --- apply
 * -------------------------------------------------------------------- */

struct omni__dirmode {
	char *path;
	mode_t mode;
};

int omni__apply_begin(struct omni__apply *a, struct omni_backend *b,
                      unsigned int scan_flags, struct omni__progress *progress)
{
	int rc;

	memset(a, 0, sizeof(*a));
	a->b = b;
	a->progress = progress;
	if ((rc = omni__ws_scan(b, scan_flags, &a->existing)) < 0)
		return rc;
	a->keep = calloc(a->existing.count + 1, sizeof(*a->keep));
	if (!a->keep) {
		omni__ws_list_finish(&a->existing);
		return omni_error_set(-ENOMEM, "apply: out of memory");
	}
	a->last_dir[0] = '\0';
	return 0;
}

bool omni__apply_workspace_empty(const struct omni__apply *a)
{
	return a->existing.count == 0;
}

const struct stat *omni__apply_existing(const struct omni__apply *a,
                                        const char *path)
{
	struct omni__ws_entry *e = omni__ws_find(&a->existing, path);

	return e ? &e->st : NULL;
}

void omni__apply_keep(struct omni__apply *a, const char *path)
{
	struct omni__ws_entry *e = omni__ws_find(&a->existing, path);

	if (e)
		a->keep[e - a->existing.items] = true;
}

/* Gone already: missing, or under something that is no directory now
 * (a directory the snapshot replaced with a file). */
static int ignore_missing(int rc)
{
	if (rc == -ENOENT || rc == -ENOTDIR) {
		omni_error_clear();
		return 0;
	}
	return rc;
}

/* Make sure every component of dir ("" is the root) is a directory,
 * removing a file or symlink that stands in the way. */
static int ensure_dir(struct omni__apply *a, const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);
	int rc;

	if (!len || strcmp(dir, a->last_dir) == 0)
		return 0;
	if (len >= sizeof(path))
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", dir);
	memcpy(path, dir, len + 1);
	for (size_t i = 0; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		struct omni__ws_entry *e = omni__ws_find(&a->existing, path);
		if (e && S_ISDIR(e->st.st_mode)) {
			a->keep[e - a->existing.items] = true;
		} else {
			if (e && (rc = ignore_missing(
			              omni_vfs_unlink(a->b, path))) < 0)
				return rc;
			rc = omni_vfs_mkdir(a->b, path, 0755);
			if (rc == -EEXIST) {
				struct stat st;
				omni_error_clear();
				rc = omni_vfs_stat(a->b, path, &st);
				if (rc == 0 && !S_ISDIR(st.st_mode))
					rc = omni_error_set(
					    -ENOTDIR, "%s: not a directory",
					    path);
			}
			if (rc < 0)
				return rc;
			if (e)
				a->keep[e - a->existing.items] = true;
		}
		if (i < len)
			path[i] = '/';
	}
	snprintf(a->last_dir, sizeof(a->last_dir), "%s", dir);
	return 0;
}

static int ensure_parent(struct omni__apply *a, const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (!slash)
		return 0;
	if ((size_t)(slash - path) >= sizeof(dir))
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", path);
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return ensure_dir(a, dir);
}

/* A directory stands where a file or link goes: remove it. */
static int clear_dir_at(struct omni__apply *a, const char *path)
{
	struct omni__ws_entry *e = omni__ws_find(&a->existing, path);

	if (!e || !S_ISDIR(e->st.st_mode))
		return 0;
	a->last_dir[0] = '\0';
	return ignore_missing(omni__remove_tree(a->b, path));
}

static int tmp_name(struct omni__apply *a, const char *path, char *out,
                    size_t size)
{
	const char *slash = strrchr(path, '/');
	int dl = slash ? (int)(slash - path) : 0;
	int n = snprintf(out, size, "%.*s%s.omnifs-tmp-%ld-%lu", dl, path,
	                 slash ? "/" : "", (long)getpid(), a->counter++);

	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", path);
	return 0;
}

int omni__apply_dir(struct omni__apply *a, const char *path, mode_t mode)
{
	int rc;

	if (!path[0])
		return 0;
	if ((rc = ensure_dir(a, path)) < 0)
		return rc;
	if (mode) {
		if (a->nmodes == a->capmodes) {
			size_t cap = a->capmodes ? a->capmodes * 2 : 32;
			struct omni__dirmode *p =
			    realloc(a->modes, cap * sizeof(*p));
			if (!p)
				return omni_error_set(-ENOMEM,
				                      "apply: out of memory");
			a->modes = p;
			a->capmodes = cap;
		}
		char *copy = strdup(path);
		if (!copy)
			return omni_error_set(-ENOMEM, "apply: out of memory");
		a->modes[a->nmodes++] = (struct omni__dirmode){ copy, mode };
	}
	return 0;
}

int omni__apply_file_open(struct omni__apply *a, struct omni__apply_file *af,
                          const char *path, mode_t mode)
{
	int rc;

	memset(af, 0, sizeof(*af));
	af->mode = mode & 07777;
	snprintf(af->path, sizeof(af->path), "%s", path);
	if ((rc = ensure_parent(a, path)) < 0 ||
	    (rc = clear_dir_at(a, path)) < 0)
		return rc;
	for (int tries = 0;; tries++) {
		if ((rc = tmp_name(a, path, af->tmp, sizeof(af->tmp))) < 0)
			return rc;
		/* Made with its final mode: on a remote sandbox every chmod
		 * is a command, and most files need none after this. */
		rc = omni_vfs_open(a->b, af->tmp,
		                   O_WRONLY | O_CREAT | O_EXCL | O_TRUNC,
		                   af->mode, &af->f);
		if (rc != -EEXIST || tries >= 8)
			break;
		omni_error_clear();
	}
	if (rc < 0)
		af->tmp[0] = '\0';
	return rc;
}

int omni__apply_file_write(struct omni__apply_file *af, const void *data,
                           size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = omni_vfs_write(af->f, (const char *)data + done,
		                           len - done, (off_t)af->off);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return omni_error_set(
			    -EIO, "%s: write made no progress", af->path);
		done += (size_t)n;
		af->off += n;
	}
	return 0;
}

/* ENOSYS from an optional call (chmod, utimens) is not a failure. */
static int optional(int rc)
{
	if (rc == -ENOSYS) {
		omni_error_clear();
		return 0;
	}
	return rc;
}

int omni__apply_file_commit(struct omni__apply *a, struct omni__apply_file *af,
                            const struct timespec *mtime)
{
	bool remote = omni_vfs_caps(a->b) & OMNI_CAP_REMOTE;
	struct stat st;
	int rc = omni_vfs_flush(af->f);

	/* Where asking is cheap, see whether the umask took bits away; a
	 * remote backend gives a new file the mode it was asked for. */
	bool fix_mode = !remote && (omni_vfs_fstat(af->f, &st) < 0 ||
	                            (st.st_mode & 07777) != af->mode);
	int rrc = omni_vfs_release(af->f);

	af->f = NULL;
	if (rc == 0)
		rc = rrc;
	if (rc == 0 && fix_mode)
		rc = optional(omni_vfs_chmod(a->b, af->tmp, af->mode));
	/* Times are kept where setting one is cheap; on a remote sandbox
	 * each would be a command, so files there get the load's time. */
	if (rc == 0 && mtime && !remote) {
		struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, *mtime };
		rc = optional(omni_vfs_utimens(a->b, af->tmp, ts));
	}
	if (rc == 0)
		rc = omni_vfs_rename(a->b, af->tmp, af->path, 0);
	if (rc < 0) {
		omni__apply_file_abort(a, af);
		return rc;
	}
	af->tmp[0] = '\0';
	omni__apply_keep(a, af->path);
	if (a->progress)
		omni__progress_add(a->progress, 1, af->off);
	return 0;
}

void omni__apply_file_abort(struct omni__apply *a, struct omni__apply_file *af)
{
	struct omni__error_saved saved;

	/* Keep the message of the failure that got us here. */
	omni__error_save(&saved);
	if (af->f)
		omni_vfs_release(af->f);
	af->f = NULL;
	if (af->tmp[0])
		omni_vfs_unlink(a->b, af->tmp);
	af->tmp[0] = '\0';
	if (saved.code)
		omni__error_restore(&saved, saved.code);
}

int omni__apply_symlink(struct omni__apply *a, const char *path,
                        const char *target)
{
	char tmp[PATH_MAX];
	int rc;

	if ((rc = ensure_parent(a, path)) < 0 ||
	    (rc = clear_dir_at(a, path)) < 0 ||
	    (rc = tmp_name(a, path, tmp, sizeof(tmp))) < 0)
		return rc;
	if ((rc = omni_vfs_symlink(a->b, target, tmp)) < 0)
		return rc;
	if ((rc = omni_vfs_rename(a->b, tmp, path, 0)) < 0) {
		struct omni__error_saved saved;
		omni__error_save(&saved);
		omni_vfs_unlink(a->b, tmp);
		return omni__error_restore(&saved, rc);
	}
	omni__apply_keep(a, path);
	if (a->progress)
		omni__progress_add(a->progress, 1, (long long)strlen(target));
	return 0;
}

static int dirmode_cmp_desc(const void *x, const void *y)
{
	return strcmp(((const struct omni__dirmode *)y)->path,
	              ((const struct omni__dirmode *)x)->path);
}

int omni__apply_finish(struct omni__apply *a)
{
	int rc = 0;

	for (size_t i = a->existing.count; i-- > 0 && rc == 0;) {
		const struct omni__ws_entry *e = &a->existing.items[i];

		if (a->keep[i])
			continue;
		if (S_ISDIR(e->st.st_mode)) {
			if (!e->has_children)
				continue;
			rc = omni_vfs_rmdir(a->b, e->path);
			if (rc == -ENOTEMPTY || rc == -EEXIST ||
			    rc == -ENOENT || rc == -ENOTDIR) {
				omni_error_clear();
				rc = 0;
			}
		} else {
			rc = ignore_missing(omni_vfs_unlink(a->b, e->path));
		}
	}
	if (a->nmodes > 1)
		qsort(a->modes, a->nmodes, sizeof(*a->modes), dirmode_cmp_desc);
	for (size_t i = 0; i < a->nmodes && rc == 0; i++)
		rc = optional(omni_vfs_chmod(a->b, a->modes[i].path,
		                             a->modes[i].mode & 07777));
	return rc;
}

void omni__apply_cleanup(struct omni__apply *a)
{
	omni__ws_list_finish(&a->existing);
	free(a->keep);
	for (size_t i = 0; i < a->nmodes; i++)
		free(a->modes[i].path);
	free(a->modes);
	memset(a, 0, sizeof(*a));
}

bool omni__snap_path_ok(char *path)
{
	char *p = path;
	size_t len;

	while (p[0] == '.' && p[1] == '/')
		p += 2;
	if (p != path)
		memmove(path, p, strlen(p) + 1);
	len = strlen(path);
	while (len && path[len - 1] == '/')
		path[--len] = '\0';
	if (!len || path[0] == '/' || len >= PATH_MAX)
		return false;
	for (const char *s = path; *s;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 0 || (n == 1 && s[0] == '.') ||
		    (n == 2 && s[0] == '.' && s[1] == '.'))
			return false;
		s += n + (e ? 1 : 0);
	}
	return true;
}

/* --- place
 * -------------------------------------------------------------------- */

int omni__host_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len >= sizeof(buf))
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", path);
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return omni_error_set_errno(-errno, "mkdir %s", buf);
		if (i < len)
			buf[i] = '/';
	}
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int omni__host_remove_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT
		           ? 0
		           : omni_error_set_errno(-errno, "%s", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return omni_error_set_errno(-errno, "rm %s", path);
		return 0;
	}
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0)
		return omni_error_set_errno(errno ? -errno : -EIO, "rm -r %s",
		                            path);
	return 0;
}

int omni__host_write_file(const char *path, const void *data, size_t len)
{
	char tmp[PATH_MAX];
	int fd,
	    n = snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid());
	size_t done = 0;

	if (n < 0 || (size_t)n >= sizeof(tmp))
		return omni_error_set(-ENAMETOOLONG, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return omni_error_set_errno(-errno, "create %s", tmp);
	while (done < len) {
		ssize_t w = write(fd, (const char *)data + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int err = -errno;
			close(fd);
			unlink(tmp);
			return omni_error_set_errno(err, "write %s", tmp);
		}
		done += (size_t)w;
	}
	if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		int err = -errno;
		unlink(tmp);
		return omni_error_set_errno(err, "write %s", path);
	}
	return 0;
}

int omni__state_dir(struct omni_backend *b, const char *dir, char *out,
                    size_t size)
{
	char ws[PATH_MAX];
	int rc, n;

	if (dir && *dir) {
		n = snprintf(out, size, "%s", dir);
	} else {
		if ((rc = omni__workspace_host_dir(b, ws, sizeof(ws))) < 0)
			return rc;
		char *slash = strrchr(ws, '/');
		if (slash)
			*slash = '\0';
		n = snprintf(out, size, "%s/.omnifs-state", ws[0] ? ws : "");
	}
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG,
		                      "state directory too long");
	if ((rc = omni__host_mkdir_p(out, 0700)) < 0)
		return rc;
	return 0;
}

int omni__state_lock(const char *path, int timeout_s, const char *what,
                     int *fd_out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	long long waited_ms = 0;

	*fd_out = -1;
	if (fd < 0)
		return omni_error_set_errno(-errno, "lock %s", path);
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK) {
			int err = -errno;
			close(fd);
			return omni_error_set_errno(err, "flock %s", path);
		}
		if (waited_ms >= (long long)timeout_s * 1000) {
			close(fd);
			return omni_error_set(
			    -EBUSY,
			    "%s: another save or load of this project is "
			    "running (lock %s held for %d s)",
			    what, path, timeout_s);
		}
		if (waited_ms == 0)
			omni_log(OMNI_LOG_DEBUG, "%s: waiting for %s", what,
			         path);
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
		waited_ms += 50;
	}
	*fd_out = fd;
	return 0;
}

void omni__state_unlock(int fd)
{
	if (fd >= 0) {
		flock(fd, LOCK_UN);
		close(fd);
	}
}

/* Parse "YYYYmmdd_HHMMSS_ffffff" into seconds and microseconds. */
static bool parse_stamp(const char *name, long long *sec, long *usec)
{
	struct tm tm = { 0 };
	int y, mo, d, h, mi, s;
	long us;
	char tail;

	if (strlen(name) < 22 || sscanf(name, "%4d%2d%2d_%2d%2d%2d_%6ld%c", &y,
	                                &mo, &d, &h, &mi, &s, &us, &tail) < 7)
		return false;
	for (int i = 0; i < 22; i++) {
		bool digit = name[i] >= '0' && name[i] <= '9';
		if ((i == 8 || i == 15) ? name[i] != '_' : !digit)
			return false;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
		return false;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	*sec = (long long)timegm(&tm);
	*usec = us;
	return true;
}

long long omni__snap_time(const char *name)
{
	long long sec;
	long usec;

	return parse_stamp(name, &sec, &usec) ? sec : -1;
}

static void format_stamp(char out[32], long long sec, long usec)
{
	time_t t = (time_t)sec;
	struct tm tm;
	char buf[96];

	gmtime_r(&t, &tm);
	snprintf(buf, sizeof(buf), "%04d%02d%02d_%02d%02d%02d_%06ld",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec, usec % 1000000);
	snprintf(out, 32, "%.31s", buf);
}

void omni__snap_timestamp(char out[32], const char *prev)
{
	struct timespec ts;
	long long psec;
	long pusec;

	clock_gettime(CLOCK_REALTIME, &ts);
	format_stamp(out, (long long)ts.tv_sec, ts.tv_nsec / 1000);
	/* A clock that went backwards must not make the new snapshot look
	 * older than the last one: the newest name is the one loaded. */
	if (prev && parse_stamp(prev, &psec, &pusec) &&
	    strcmp(out, prev) <= 0) {
		if (++pusec == 1000000) {
			pusec = 0;
			psec++;
		}
		format_stamp(out, psec, pusec);
	}
}

/* --- digest
 * ------------------------------------------------------------------- */

void omni__digest_add(struct omni__digest *d, char type, unsigned int mode,
                      const char *path, const unsigned char md5[16])
{
	char hex[33];
	char *line;

	if (d->oom)
		return;
	if (d->count == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		char **p = realloc(d->lines, cap * sizeof(*p));
		if (!p) {
			d->oom = true;
			return;
		}
		d->lines = p;
		d->cap = cap;
	}
	omni__hex(md5, 16, hex);
	if (asprintf(&line, "%c %o %s %s", type, mode & 07777, hex, path) < 0) {
		d->oom = true;
		return;
	}
	d->lines[d->count++] = line;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int omni__digest_final(struct omni__digest *d, char out[33])
{
	struct omni__md5 m;
	unsigned char sum[16];

	if (d->oom || omni__md5_init(&m) < 0)
		return omni_error_set(-ENOMEM, "digest: out of memory");
	if (d->count > 1)
		qsort(d->lines, d->count, sizeof(*d->lines), str_cmp);
	for (size_t i = 0; i < d->count; i++)
		omni__md5_update(&m, d->lines[i], strlen(d->lines[i]) + 1);
	omni__md5_final(&m, sum);
	omni__hex(sum, 16, out);
	return 0;
}

void omni__digest_finish(struct omni__digest *d)
{
	for (size_t i = 0; i < d->count; i++)
		free(d->lines[i]);
	free(d->lines);
	memset(d, 0, sizeof(*d));
}
