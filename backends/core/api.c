/*
 * backends/core/api.c - the documented interface (omni/backend.h), written once
 * for every backend on top of the POSIX-shaped operations of omni/vfs.h.
 *
 * Nothing here knows which backend it talks to: a file is read with
 * open/read/release, a directory is listed with readdir, a command runs
 * through exec_start/exec_wait. User paths are normalised first (see
 * path.c), so "..", absolute paths outside the working directory and the
 * like are refused before any backend is asked.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/api.h"
#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/vfs.h"

#define IO_CHUNK (1024 * 1024)

/* --- small growable collections ------------------------------------------- */

int omni__dirents_add(struct omni__dirents *d, const char *name,
                      const struct stat *st)
{
	if (d->count == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 32;
		struct omni__dirent *e = realloc(d->items, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		d->items = e;
		d->cap = cap;
	}
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	d->items[d->count].name = copy;
	d->items[d->count].st = *st;
	d->count++;
	return 0;
}

static int dirents_cb(const char *name, const struct stat *st, void *payload)
{
	return omni__dirents_add(payload, name, st);
}

int omni__dirents_read(struct omni_backend *b, const char *path,
                       struct omni__dirents *out)
{
	memset(out, 0, sizeof(*out));
	int rc = omni_vfs_readdir(b, path, dirents_cb, out);
	if (rc < 0) {
		if (rc == -ENOMEM)
			omni_error_set(rc, "readdir: out of memory");
		omni__dirents_finish(out);
	}
	return rc;
}

void omni__dirents_finish(struct omni__dirents *d)
{
	for (size_t i = 0; i < d->count; i++)
		free(d->items[i].name);
	free(d->items);
	memset(d, 0, sizeof(*d));
}

int omni__join(char *out, size_t size, const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);

	if (dl + nl + 2 > size)
		return omni_error_set(-ENAMETOOLONG, "path too long: %s/%s",
		                      dir, name);
	memcpy(out, dir, dl);
	if (dl)
		out[dl++] = '/';
	memcpy(out + dl, name, nl + 1);
	return 0;
}

static int resolve(struct omni_backend *b, const char *in, char *out)
{
	return omni_vfs_path(b, in, out, PATH_MAX);
}

/* resolve(), then the attributes of what it names. */
static int resolve_stat(struct omni_backend *b, const char *in, char *out,
                        struct stat *st)
{
	int rc = resolve(b, in, out);

	return rc < 0 ? rc : omni_vfs_stat(b, out, st);
}

static enum omni_file_type type_of(mode_t mode)
{
	if (S_ISDIR(mode))
		return OMNI_FILE_DIRECTORY;
	if (S_ISLNK(mode))
		return OMNI_FILE_SYMLINK;
	return OMNI_FILE_FILE;
}

/* --- commands ------------------------------------------------------------- */

struct collect {
	char *data;
	size_t len, cap;
	bool oom;
};

static int collect_output(int stream, const void *data, size_t len,
                          void *payload)
{
	struct collect *c = payload;

	(void)stream;
	if (c->len + len + 1 > c->cap) {
		size_t cap = c->cap ? c->cap : 4096;
		while (cap < c->len + len + 1)
			cap *= 2;
		char *p = realloc(c->data, cap);
		if (!p) {
			c->oom = true;
			return 1;
		}
		c->data = p;
		c->cap = cap;
	}
	memcpy(c->data + c->len, data, len);
	c->len += len;
	return 0;
}

int omni_backend_execute_command(struct omni_backend *b, const char *command,
                                 double timeout_s,
                                 struct omni_command_result *out)
{
	struct omni_exec_request req = { .shell = command, .cwd = "" };
	struct omni_exec_status status;
	struct collect c = { 0 };
	struct omni_exec *e;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!command)
		return omni_error_set(-EINVAL, "execute_command: no command");
	if (timeout_s > 0) {
		double ms = timeout_s * 1000.0;
		req.timeout_ms =
		    ms > 4e9 ? 4000000000u : (unsigned int)(ms < 1 ? 1 : ms);
	}
	if ((rc = omni_vfs_exec_start(b, &req, &e)) < 0)
		return rc;
	rc = omni_vfs_exec_wait(e, collect_output, &c, &status);
	omni_vfs_exec_free(e);
	if (rc == 0 && c.oom)
		rc = omni_error_set(-ENOMEM,
		                    "execute_command: output too large");
	if (rc < 0) {
		free(c.data);
		return rc;
	}
	if (!c.data && !(c.data = malloc(1))) {
		return omni_error_set(-ENOMEM,
		                      "execute_command: out of memory");
	}
	c.data[c.len] = '\0';
	out->output = c.data;
	out->output_len = c.len;
	out->exit_code = status.exit_code;
	return 0;
}

void omni_command_result_finish(struct omni_command_result *res)
{
	free(res->output);
	memset(res, 0, sizeof(*res));
}

/* --- files ---------------------------------------------------------------- */

int omni_backend_read_file(struct omni_backend *b, const char *path, char **out,
                           size_t *out_len)
{
	char rel[PATH_MAX];
	struct omni_file *f = NULL;
	struct stat st;
	char *data = NULL;
	size_t len = 0, cap;
	int rc;

	*out = NULL;
	if (out_len)
		*out_len = 0;
	if ((rc = resolve(b, path, rel)) < 0)
		return rc;
	if ((rc = omni_vfs_open(b, rel, O_RDONLY, 0, &f)) < 0)
		return rc;
	if ((rc = omni_vfs_fstat(f, &st)) < 0)
		goto out;
	if (S_ISDIR(st.st_mode)) {
		rc = omni_error_set(-EISDIR, "%s: is a directory", path);
		goto out;
	}
	/* Room for the content, the NUL, and the probe that finds EOF. */
	cap = st.st_size > 0 ? (size_t)st.st_size + 2 : 4096;
	if (!(data = malloc(cap))) {
		rc = omni_error_set(-ENOMEM, "%s: out of memory", path);
		goto out;
	}
	for (;;) {
		if (len + 1 >= cap) {
			char *p = realloc(data, cap * 2);
			if (!p) {
				rc = omni_error_set(-ENOMEM,
				                    "%s: out of memory", path);
				goto out;
			}
			data = p;
			cap *= 2;
		}
		size_t want = cap - len - 1;
		if (want > IO_CHUNK)
			want = IO_CHUNK;
		ssize_t n = omni_vfs_read(f, data + len, want, (off_t)len);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	data[len] = '\0';
	*out = data;
	data = NULL;
	if (out_len)
		*out_len = len;
	rc = 0;
out:
	free(data);
	int rrc = omni_vfs_release(f);
	if (rc == 0 && rrc < 0) {
		free(*out);
		*out = NULL;
		if (out_len)
			*out_len = 0;
		rc = rrc;
	}
	return rc;
}

/* Make every missing parent directory of rel. */
static int make_parents(struct omni_backend *b, const char *rel)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(rel, '/');

	if (!slash)
		return 0;
	memcpy(dir, rel, (size_t)(slash - rel));
	dir[slash - rel] = '\0';
	return omni__mkdir_p(b, dir);
}

static int stop_at_first(const char *name, const struct stat *st, void *payload)
{
	(void)name;
	(void)st;
	(void)payload;
	return 1;
}

/* path is a symlink: fine when it leads to a directory, which the backend
 * resolves within the workspace (-EACCES when the link leads out,
 * -ENOTDIR when it leads to a file). */
static int check_dir_link(struct omni_backend *b, const char *path)
{
	int rc = omni_vfs_readdir(b, path, stop_at_first, NULL);

	return rc < 0 ? rc : 0;
}

int omni__mkdir_p(struct omni_backend *b, const char *rel)
{
	char path[PATH_MAX];
	struct stat st;
	size_t len = strlen(rel);
	int rc;

	if (len >= sizeof(path))
		return omni_error_set(-ENAMETOOLONG, "path too long");
	memcpy(path, rel, len + 1);
	for (size_t i = 0; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		char saved = path[i];
		path[i] = '\0';
		if (path[0]) {
			rc = omni_vfs_mkdir(b, path, 0755);
			if (rc == -EEXIST) {
				rc = omni_vfs_stat(b, path, &st);
				if (rc == 0 && S_ISLNK(st.st_mode))
					rc = check_dir_link(b, path);
				else if (rc == 0 && !S_ISDIR(st.st_mode))
					rc = omni_error_set(
					    -ENOTDIR,
					    "%s: exists and is not a directory",
					    path);
			}
			if (rc < 0)
				return rc;
		}
		path[i] = saved;
	}
	return 0;
}

static int write_all(struct omni_file *f, const void *data, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t n = len - done > IO_CHUNK ? IO_CHUNK : len - done;
		ssize_t w = omni_vfs_write(f, (const char *)data + done, n,
		                           (off_t)done);
		if (w < 0)
			return (int)w;
		if (w == 0)
			return omni_error_set(-EIO, "write: no progress");
		done += (size_t)w;
	}
	return 0;
}

int omni_backend_write_file(struct omni_backend *b, const char *path,
                            const void *data, size_t len)
{
	char rel[PATH_MAX];
	struct omni_file *f;
	int rc;

	if ((rc = resolve(b, path, rel)) < 0)
		return rc;
	if (!rel[0])
		return omni_error_set(-EISDIR, "%s: is the workspace", path);
	if ((rc = make_parents(b, rel)) < 0)
		return rc;
	rc = omni_vfs_open(b, rel, O_WRONLY | O_CREAT | O_TRUNC, 0644, &f);
	if (rc < 0)
		return rc;
	rc = write_all(f, data, len);
	if (rc == 0)
		rc = omni_vfs_flush(f);
	int rrc = omni_vfs_release(f);
	return rc < 0 ? rc : rrc;
}

int omni_backend_file_exists(struct omni_backend *b, const char *path)
{
	char rel[PATH_MAX];
	struct stat st;
	int rc;

	rc = resolve_stat(b, path, rel, &st);
	if (rc == -ENOENT || rc == -ENOTDIR) {
		omni_error_clear();
		return OMNI_FILE_NONE;
	}
	if (rc < 0)
		return rc;
	return type_of(st.st_mode);
}

int omni_backend_copy_file(struct omni_backend *b, const char *src,
                           const char *dst)
{
	char rs[PATH_MAX], rd[PATH_MAX];
	struct omni_file *in = NULL, *out = NULL;
	struct stat st, dst_st;
	char *buf = NULL;
	int rc;

	if ((rc = resolve(b, src, rs)) < 0 || (rc = resolve(b, dst, rd)) < 0)
		return rc;
	if ((rc = omni_vfs_open(b, rs, O_RDONLY, 0, &in)) < 0)
		return rc;
	if ((rc = omni_vfs_fstat(in, &st)) < 0)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		rc = omni_error_set(-EISDIR, "%s: not a regular file", src);
		goto out;
	}
	if ((rc = make_parents(b, rd)) < 0)
		goto out;
	/* Truncate only once the target is known not to be the source
	 * itself (the same path, a link or a hard link to it). */
	rc = omni_vfs_open(b, rd, O_WRONLY | O_CREAT, st.st_mode & 07777, &out);
	if (rc < 0)
		goto out;
	if ((rc = omni_vfs_fstat(out, &dst_st)) < 0)
		goto out;
	if (st.st_ino != 0 && dst_st.st_ino == st.st_ino &&
	    dst_st.st_dev == st.st_dev) {
		rc = omni_error_set(
		    -EINVAL, "copy: %s and %s are the same file", src, dst);
		goto out;
	}
	if ((rc = omni_vfs_ftruncate(out, 0)) < 0)
		goto out;
	if (!(buf = malloc(IO_CHUNK))) {
		rc = omni_error_set(-ENOMEM, "copy: out of memory");
		goto out;
	}
	for (off_t off = 0;;) {
		ssize_t n = omni_vfs_read(in, buf, IO_CHUNK, off);
		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = omni_vfs_write(
			    out, buf + done, (size_t)(n - done), off + done);
			if (w <= 0) {
				rc = w < 0 ? (int)w
				           : omni_error_set(
				                 -EIO, "copy: no progress");
				goto out;
			}
			done += w;
		}
		off += n;
	}
	if ((rc = omni_vfs_flush(out)) < 0)
		goto out;
	/* The created file's mode was masked by nothing here, but a file
	 * that already existed keeps its old mode: set it. */
	rc = omni_vfs_chmod(b, rd, st.st_mode & 07777);
	if (rc == -ENOSYS) {
		omni_error_clear();
		rc = 0;
	}
out:
	free(buf);
	int r1 = omni_vfs_release(in);
	int r2 = out ? omni_vfs_release(out) : 0;
	if (rc == 0)
		rc = r2 < 0 ? r2 : (r1 < 0 ? r1 : 0);
	return rc;
}

int omni_backend_move_file(struct omni_backend *b, const char *src,
                           const char *dst)
{
	char rs[PATH_MAX], rd[PATH_MAX];
	struct stat st;
	int rc;

	if ((rc = resolve(b, src, rs)) < 0 || (rc = resolve(b, dst, rd)) < 0)
		return rc;
	if (!rs[0] || !rd[0])
		return omni_error_set(-EBUSY,
		                      "move: cannot move the workspace");
	/* A missing source must not leave the target's parents behind. */
	if ((rc = omni_vfs_stat(b, rs, &st)) < 0 ||
	    (rc = make_parents(b, rd)) < 0)
		return rc;
	return omni_vfs_rename(b, rs, rd, 0);
}

int omni_backend_delete_file(struct omni_backend *b, const char *path)
{
	char rel[PATH_MAX];
	struct stat st;
	int rc;

	if ((rc = resolve_stat(b, path, rel, &st)) < 0)
		return rc;
	if (S_ISDIR(st.st_mode))
		return omni_error_set(
		    -EISDIR, "%s: is a directory (use delete_directory)", path);
	return omni_vfs_unlink(b, rel);
}

/* --- directories ---------------------------------------------------------- */

struct list_acc {
	struct omni_dir_entry *items;
	size_t count, cap;
};

static int list_add(struct list_acc *acc, const char *path,
                    const struct stat *st)
{
	if (acc->count == acc->cap) {
		size_t cap = acc->cap ? acc->cap * 2 : 32;
		struct omni_dir_entry *p =
		    realloc(acc->items, cap * sizeof(*p));
		if (!p)
			return omni_error_set(-ENOMEM, "list: out of memory");
		acc->items = p;
		acc->cap = cap;
	}
	char *copy = strdup(path);
	if (!copy)
		return omni_error_set(-ENOMEM, "list: out of memory");
	acc->items[acc->count++] = (struct omni_dir_entry){
		.path = copy,
		.type = type_of(st->st_mode),
		.size = (unsigned long long)st->st_size,
	};
	return 0;
}

/* Walk dir (workspace-relative); prefix is the path relative to the
 * listed directory. */
static int list_walk(struct omni_backend *b, const char *dir,
                     const char *prefix, bool recursive, struct list_acc *acc)
{
	struct omni__dirents d;
	char child[PATH_MAX], rel[PATH_MAX];
	int rc = omni__dirents_read(b, dir, &d);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < d.count && rc == 0; i++) {
		if ((rc = omni__join(rel, sizeof(rel), prefix,
		                     d.items[i].name)) < 0 ||
		    (rc = list_add(acc, rel, &d.items[i].st)) < 0)
			break;
		if (recursive && S_ISDIR(d.items[i].st.st_mode)) {
			rc = omni__join(child, sizeof(child), dir,
			                d.items[i].name);
			if (rc == 0)
				rc = list_walk(b, child, rel, true, acc);
		}
	}
	omni__dirents_finish(&d);
	return rc;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct omni_dir_entry *)a)->path,
	              ((const struct omni_dir_entry *)b)->path);
}

int omni_backend_list_directory(struct omni_backend *b, const char *path,
                                bool recursive, struct omni_dir_list *out)
{
	char rel[PATH_MAX];
	struct list_acc acc = { 0 };
	struct stat st;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = resolve_stat(b, path, rel, &st)) < 0)
		return rc;
	/* A symlink is listed as what it leads to; readdir resolves it
	 * within the workspace (-EACCES when it leads out). */
	if (!S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
		return omni_error_set(-ENOTDIR, "%s: not a directory",
		                      path ? path : "");
	rc = list_walk(b, rel, "", recursive, &acc);
	out->entries = acc.items;
	out->count = acc.count;
	if (rc < 0) {
		omni_dir_list_finish(out);
		return rc;
	}
	if (out->count > 1)
		qsort(out->entries, out->count, sizeof(*out->entries),
		      entry_cmp);
	return 0;
}

void omni_dir_list_finish(struct omni_dir_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->entries[i].path);
	free(list->entries);
	list->entries = NULL;
	list->count = 0;
}

int omni_backend_create_directory(struct omni_backend *b, const char *path,
                                  bool parents)
{
	char rel[PATH_MAX];
	int rc;

	if ((rc = resolve(b, path, rel)) < 0)
		return rc;
	if (parents)
		return omni__mkdir_p(b, rel);
	if (!rel[0])
		return omni_error_set(-EEXIST, "%s: the workspace exists",
		                      path);
	return omni_vfs_mkdir(b, rel, 0755);
}

int omni__remove_tree(struct omni_backend *b, const char *rel)
{
	struct omni__dirents d;
	char child[PATH_MAX];
	int rc = omni__dirents_read(b, rel, &d);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < d.count && rc == 0; i++) {
		rc = omni__join(child, sizeof(child), rel, d.items[i].name);
		if (rc < 0)
			break;
		if (S_ISDIR(d.items[i].st.st_mode))
			rc = omni__remove_tree(b, child);
		else
			rc = omni_vfs_unlink(b, child);
	}
	omni__dirents_finish(&d);
	if (rc < 0)
		return rc;
	return rel[0] ? omni_vfs_rmdir(b, rel) : 0;
}

int omni_backend_delete_directory(struct omni_backend *b, const char *path)
{
	char rel[PATH_MAX];
	struct stat st;
	int rc;

	if ((rc = resolve(b, path, rel)) < 0)
		return rc;
	if (!rel[0])
		return omni_error_set(
		    -EBUSY, "%s: the workspace itself cannot be deleted",
		    path ? path : "");
	if ((rc = omni_vfs_stat(b, rel, &st)) < 0)
		return rc;
	if (!S_ISDIR(st.st_mode))
		return omni_error_set(-ENOTDIR, "%s: not a directory", path);
	return omni__remove_tree(b, rel);
}

void omni_str_list_finish(struct omni_str_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}
