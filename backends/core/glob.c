/*
 * backends/core/glob.c - glob_files(): find files by pattern through the vfs
 * operations.
 *
 * A pattern is split at '/' into segments. A segment "**" matches any
 * number of directories (zero included); any other segment matches one
 * name with '*', '?', '[...]' ('!' or '^' negates, 'a-z' ranges, '\'
 * escapes). As pathlib does, names starting with '.' are matched like any
 * other. Only non-directories are returned; symlinked directories are not
 * descended into, so a link loop cannot make the walk endless. Results are
 * relative to the search directory, sorted and without duplicates (two
 * "**" can reach one file twice).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/api.h"
#include "omni/sys/backend_impl.h"
#include "omni/error.h"

/* Match a bracket expression at p (just after '['); on success *end points
 * past the closing ']'. Returns -1 if the bracket is unterminated. */
static int match_class(const char *p, const char *pend, char c,
                       const char **end)
{
	bool negate = false, matched = false;

	if (p < pend && (*p == '!' || *p == '^')) {
		negate = true;
		p++;
	}
	const char *start = p;
	while (p < pend && (*p != ']' || p == start)) {
		char lo = *p;
		if (lo == '\\' && p + 1 < pend)
			lo = *++p;
		char hi = lo;
		if (p + 2 < pend && p[1] == '-' && p[2] != ']') {
			hi = p[2];
			if (hi == '\\' && p + 3 < pend) {
				hi = p[3];
				p++;
			}
			p += 2;
		}
		if ((unsigned char)c >= (unsigned char)lo &&
		    (unsigned char)c <= (unsigned char)hi)
			matched = true;
		p++;
	}
	if (p >= pend)
		return -1;
	*end = p + 1;
	return matched != negate;
}

bool omni__glob_match(const char *pattern, size_t plen, const char *name)
{
	const char *p = pattern, *pend = pattern + plen, *n = name;
	const char *star_p = NULL, *star_n = NULL;

	while (*n) {
		if (p < pend && *p == '*') {
			star_p = ++p;
			star_n = n;
			continue;
		}
		if (p < pend) {
			bool ok;
			const char *next = p + 1;
			if (*p == '?') {
				ok = true;
			} else if (*p == '[') {
				int m = match_class(p + 1, pend, *n, &next);
				if (m < 0) {
					/* An unterminated '[' is literal. */
					ok = *n == '[';
					next = p + 1;
				} else {
					ok = m == 1;
				}
			} else if (*p == '\\' && p + 1 < pend) {
				ok = p[1] == *n;
				next = p + 2;
			} else {
				ok = *p == *n;
			}
			if (ok) {
				p = next;
				n++;
				continue;
			}
		}
		if (!star_p)
			return false;
		/* Backtrack: let the last '*' eat one more character. */
		p = star_p;
		n = ++star_n;
	}
	while (p < pend && *p == '*')
		p++;
	return p == pend;
}

struct glob_ctx {
	struct omni_backend *b;
	char **segs;
	size_t nsegs;
	char **items;
	size_t count, cap;
};

static int add_result(struct glob_ctx *g, const char *rel)
{
	if (g->count == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 32;
		char **p = realloc(g->items, cap * sizeof(*p));
		if (!p)
			return omni_error_set(-ENOMEM, "glob: out of memory");
		g->items = p;
		g->cap = cap;
	}
	if (!(g->items[g->count] = strdup(rel)))
		return omni_error_set(-ENOMEM, "glob: out of memory");
	g->count++;
	return 0;
}

/* Match segments [i..] inside dir (workspace-relative); prefix is dir
 * relative to the search root. */
static int glob_walk(struct glob_ctx *g, const char *dir, const char *prefix,
                     size_t i)
{
	struct omni__dirents d;
	char child[PATH_MAX], rel[PATH_MAX];
	int rc;

	if (i == g->nsegs)
		return 0;
	bool globstar = strcmp(g->segs[i], "**") == 0;
	if (globstar && (rc = glob_walk(g, dir, prefix, i + 1)) < 0)
		return rc;
	rc = omni__dirents_read(g->b, dir, &d);
	if (rc == -ENOENT || rc == -ENOTDIR || rc == -EACCES) {
		/* A directory that vanished or cannot be read holds no
		 * matches; glob does not fail on it. */
		omni_error_clear();
		return 0;
	}
	if (rc < 0)
		return rc;
	for (size_t k = 0; k < d.count && rc == 0; k++) {
		const char *name = d.items[k].name;
		bool is_dir = S_ISDIR(d.items[k].st.st_mode);

		if ((rc = omni__join(child, sizeof(child), dir, name)) < 0 ||
		    (rc = omni__join(rel, sizeof(rel), prefix, name)) < 0)
			break;
		if (globstar) {
			if (is_dir)
				rc = glob_walk(g, child, rel, i);
			continue;
		}
		if (!omni__glob_match(g->segs[i], strlen(g->segs[i]), name))
			continue;
		if (i + 1 == g->nsegs) {
			if (!is_dir)
				rc = add_result(g, rel);
		} else if (is_dir) {
			rc = glob_walk(g, child, rel, i + 1);
		}
	}
	omni__dirents_finish(&d);
	return rc;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int omni_backend_glob_files(struct omni_backend *b, const char *pattern,
                            const char *path, struct omni_str_list *out)
{
	char base[PATH_MAX], pat[PATH_MAX];
	struct glob_ctx g = { .b = b };
	int rc;

	memset(out, 0, sizeof(*out));
	if (!pattern || !*pattern)
		return omni_error_set(-EINVAL, "glob: empty pattern");
	if ((rc = omni_vfs_path(b, path, base, sizeof(base))) < 0)
		return rc;
	/* An absolute pattern is taken relative to the working directory. */
	if (pattern[0] == '/') {
		const char *wd = omni__backend_workdir_for(b, pattern);
		size_t wl = strlen(wd);
		if (strncmp(pattern, wd, wl) != 0 || pattern[wl] != '/')
			return omni_error_set(-EACCES,
			                      "%s: outside the workspace %s",
			                      pattern, b->workdir);
		pattern += wl + 1;
	}
	if (strlen(pattern) >= sizeof(pat))
		return omni_error_set(-ENAMETOOLONG, "glob: pattern too long");
	memcpy(pat, pattern, strlen(pattern) + 1);

	/* Split into segments; drop empty and "." ones, refuse "..". */
	char *segs[PATH_MAX / 2 + 1];
	size_t n = 0;
	for (char *s = pat, *save = NULL;; s = NULL) {
		char *tok = strtok_r(s, "/", &save);
		if (!tok)
			break;
		if (strcmp(tok, ".") == 0)
			continue;
		if (strcmp(tok, "..") == 0)
			return omni_error_set(
			    -EACCES, "glob: '..' in a pattern is not allowed");
		/* "**" next to "**" means the same as one. */
		if (n && strcmp(tok, "**") == 0 &&
		    strcmp(segs[n - 1], "**") == 0)
			continue;
		segs[n++] = tok;
	}
	if (n == 0)
		return omni_error_set(-EINVAL, "glob: empty pattern");
	/* A trailing "**" means every file below, as "**" followed by "*". */
	static char star[] = "*";
	if (strcmp(segs[n - 1], "**") == 0)
		segs[n++] = star;
	g.segs = segs;
	g.nsegs = n;

	rc = glob_walk(&g, base, "", 0);
	if (rc < 0) {
		for (size_t i = 0; i < g.count; i++)
			free(g.items[i]);
		free(g.items);
		return rc;
	}
	if (g.count > 1) {
		qsort(g.items, g.count, sizeof(*g.items), str_cmp);
		size_t w = 1;
		for (size_t i = 1; i < g.count; i++) {
			if (strcmp(g.items[i], g.items[w - 1]) == 0)
				free(g.items[i]);
			else
				g.items[w++] = g.items[i];
		}
		g.count = w;
	}
	out->items = g.items;
	out->count = g.count;
	return 0;
}
