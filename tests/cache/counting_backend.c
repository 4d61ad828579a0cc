/*
 * tests/cache/counting_backend.c - the in-memory counting backend of
 * counting_backend.h.
 *
 * The workspace is an array of items (path, attributes, content or link
 * target); "" is the root directory and always exists. Lookups are
 * linear: tests hold at most a few hundred paths. An open file is a
 * private temporary file: a download fills it from the item, an upload's
 * content is stored in the item at release (as the E2B backend uploads
 * its copy). One mutex guards everything; the change callback is called
 * without it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "counting_backend.h"
#include "omni/sys/backend_impl.h"

struct item {
	char *path;
	struct stat st;
	char *data; /* content of a file, target of a symlink */
	size_t len;
};

struct counting_backend {
	struct omni_backend base;
	struct omni_backend_ops ops;
	pthread_mutex_t mu;
	struct item *items;
	size_t n, cap;
	long counts[COUNT_OPS];
	int fail[COUNT_OPS];
	omni_change_cb watcher;
	void *watch_payload;
};

struct cfake_file {
	struct omni_file base;
	char *path;
	int fd;
	bool writing;
};

static const char *const op_names[COUNT_OPS] = {
	"stat",     "readdir",  "mkdir",    "rmdir",  "unlink", "rename",
	"symlink",  "readlink", "link",     "chmod",  "chown",  "utimens",
	"truncate", "statfs",   "download", "upload",
};

static struct counting_backend *cb_of(struct omni_backend *b)
{
	return (struct counting_backend *)b;
}

/* --- the store (mu held) -------------------------------------------------- */

static struct item *find(struct counting_backend *cb, const char *path)
{
	for (size_t i = 0; i < cb->n; i++)
		if (strcmp(cb->items[i].path, path) == 0)
			return &cb->items[i];
	return NULL;
}

static void parent_of(const char *path, char *out, size_t size)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;

	cr_assert(n < size);
	memcpy(out, path, n);
	out[n] = '\0';
}

static bool is_dir(struct counting_backend *cb, const char *path)
{
	struct item *it = find(cb, path);

	return it && S_ISDIR(it->st.st_mode);
}

static struct item *add(struct counting_backend *cb, const char *path,
                        mode_t mode)
{
	struct item *it = find(cb, path);

	if (!it) {
		if (cb->n == cb->cap) {
			cb->cap = cb->cap ? cb->cap * 2 : 64;
			cb->items =
			    realloc(cb->items, cb->cap * sizeof(*cb->items));
			cr_assert_not_null(cb->items);
		}
		it = &cb->items[cb->n++];
		memset(it, 0, sizeof(*it));
		it->path = strdup(path);
		cr_assert_not_null(it->path);
	}
	free(it->data);
	it->data = NULL;
	it->len = 0;
	memset(&it->st, 0, sizeof(it->st));
	it->st.st_mode = mode;
	it->st.st_nlink = S_ISDIR(mode) ? 2 : 1;
	it->st.st_uid = getuid();
	it->st.st_gid = getgid();
	it->st.st_blksize = 4096;
	it->st.st_size = S_ISDIR(mode) ? 4096 : 0;
	clock_gettime(CLOCK_REALTIME, &it->st.st_mtim);
	it->st.st_atim = it->st.st_ctim = it->st.st_mtim;
	return it;
}

static void set_data(struct item *it, const char *data, size_t len)
{
	free(it->data);
	it->data = malloc(len + 1);
	cr_assert_not_null(it->data);
	memcpy(it->data, data, len);
	it->data[len] = '\0';
	it->len = len;
	it->st.st_size = (off_t)len;
	clock_gettime(CLOCK_REALTIME, &it->st.st_mtim);
	it->st.st_ctim = it->st.st_mtim;
}

static void del_at(struct counting_backend *cb, size_t i)
{
	free(cb->items[i].path);
	free(cb->items[i].data);
	cb->items[i] = cb->items[--cb->n];
}

/* Is path below dir (not dir itself)? */
static bool below(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	if (n == 0)
		return path[0] != '\0';
	return strncmp(path, dir, n) == 0 && path[n] == '/';
}

static void del_tree(struct counting_backend *cb, const char *path)
{
	for (size_t i = 0; i < cb->n;) {
		if (strcmp(cb->items[i].path, path) == 0 ||
		    below(cb->items[i].path, path))
			del_at(cb, i);
		else
			i++;
	}
}

static bool has_children(struct counting_backend *cb, const char *path)
{
	for (size_t i = 0; i < cb->n; i++)
		if (below(cb->items[i].path, path))
			return true;
	return false;
}

static void make_parents(struct counting_backend *cb, const char *path)
{
	char parent[PATH_MAX];

	parent_of(path, parent, sizeof(parent));
	if (!parent[0] || is_dir(cb, parent))
		return;
	make_parents(cb, parent);
	add(cb, parent, S_IFDIR | 0755);
}

/* Count op; its injected failure, if any. Takes mu. */
static int enter(struct counting_backend *cb, enum counting_op op)
{
	pthread_mutex_lock(&cb->mu);
	cb->counts[op]++;
	int err = cb->fail[op];
	if (err)
		pthread_mutex_unlock(&cb->mu);
	return err ? omni_error_set(err, "counting: %s fails", op_names[op])
	           : 0;
}

static int leave(struct counting_backend *cb, int rc, const char *path)
{
	pthread_mutex_unlock(&cb->mu);
	if (rc < 0)
		return omni_error_set(rc, "counting: %s: %s", path,
		                      strerror(-rc));
	return rc;
}

/* The parent of path must be an existing directory. */
static int check_parent(struct counting_backend *cb, const char *path)
{
	char parent[PATH_MAX];

	parent_of(path, parent, sizeof(parent));
	if (!parent[0])
		return 0;
	struct item *p = find(cb, parent);
	if (!p)
		return -ENOENT;
	return S_ISDIR(p->st.st_mode) ? 0 : -ENOTDIR;
}

/* --- the operations ------------------------------------------------------- */

static int fake_stat(struct omni_backend *b, const char *path, struct stat *st)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_STAT);

	if (rc < 0)
		return rc;
	if (!path[0]) {
		memset(st, 0, sizeof(*st));
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return leave(cb, 0, path);
	}
	struct item *it = find(cb, path);
	if (it)
		*st = it->st;
	return leave(cb, it ? 0 : -ENOENT, path);
}

static int fake_readdir(struct omni_backend *b, const char *path,
                        omni_dirent_cb fn, void *payload)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_READDIR);
	char parent[PATH_MAX];

	if (rc < 0)
		return rc;
	if (path[0] && !find(cb, path))
		return leave(cb, -ENOENT, path);
	if (path[0] && !is_dir(cb, path))
		return leave(cb, -ENOTDIR, path);
	for (size_t i = 0; i < cb->n && rc == 0; i++) {
		parent_of(cb->items[i].path, parent, sizeof(parent));
		if (strcmp(parent, path) != 0)
			continue;
		const char *name =
		    cb->items[i].path + strlen(path) + (path[0] ? 1 : 0);
		rc = fn(name, &cb->items[i].st, payload);
	}
	return leave(cb, rc, path);
}

static int fake_mkdir(struct omni_backend *b, const char *path, mode_t mode)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_MKDIR);

	if (rc < 0)
		return rc;
	if (find(cb, path))
		return leave(cb, -EEXIST, path);
	if ((rc = check_parent(cb, path)) == 0)
		add(cb, path, S_IFDIR | (mode & 07777));
	return leave(cb, rc, path);
}

static int fake_rmdir(struct omni_backend *b, const char *path)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_RMDIR);

	if (rc < 0)
		return rc;
	if (!find(cb, path))
		rc = -ENOENT;
	else if (!is_dir(cb, path))
		rc = -ENOTDIR;
	else if (has_children(cb, path))
		rc = -ENOTEMPTY;
	else
		del_tree(cb, path);
	return leave(cb, rc, path);
}

static int fake_unlink(struct omni_backend *b, const char *path)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_UNLINK);

	if (rc < 0)
		return rc;
	if (!find(cb, path))
		rc = -ENOENT;
	else if (is_dir(cb, path) && !(cb->ops.caps & OMNI_CAP_REMOVE_DIRS))
		rc = -EISDIR;
	else
		del_tree(cb, path);
	return leave(cb, rc, path);
}

static int fake_rename(struct omni_backend *b, const char *from, const char *to,
                       unsigned int flags)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_RENAME);
	char path[PATH_MAX];

	(void)flags;
	if (rc < 0)
		return rc;
	if (!find(cb, from))
		return leave(cb, -ENOENT, from);
	if ((rc = check_parent(cb, to)) < 0)
		return leave(cb, rc, to);
	if (strcmp(from, to) == 0)
		return leave(cb, 0, to);
	del_tree(cb, to);
	size_t n = strlen(from);
	for (size_t i = 0; i < cb->n; i++) {
		struct item *it = &cb->items[i];
		if (strcmp(it->path, from) != 0 && !below(it->path, from))
			continue;
		snprintf(path, sizeof(path), "%s%s", to, it->path + n);
		free(it->path);
		it->path = strdup(path);
		cr_assert_not_null(it->path);
	}
	return leave(cb, 0, to);
}

static int fake_symlink(struct omni_backend *b, const char *target,
                        const char *path)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_SYMLINK);

	if (rc < 0)
		return rc;
	if (find(cb, path))
		return leave(cb, -EEXIST, path);
	if ((rc = check_parent(cb, path)) == 0)
		set_data(add(cb, path, S_IFLNK | 0777), target, strlen(target));
	return leave(cb, rc, path);
}

static ssize_t fake_readlink(struct omni_backend *b, const char *path,
                             char *buf, size_t size)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_READLINK);

	if (rc < 0)
		return rc;
	struct item *it = find(cb, path);
	if (!it)
		return leave(cb, -ENOENT, path);
	if (!S_ISLNK(it->st.st_mode))
		return leave(cb, -EINVAL, path);
	size_t n = it->len < size - 1 ? it->len : size - 1;
	memcpy(buf, it->data, n);
	buf[n] = '\0';
	return leave(cb, (int)it->len, path);
}

static int fake_chmod(struct omni_backend *b, const char *path, mode_t mode)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_CHMOD);

	if (rc < 0)
		return rc;
	struct item *it = find(cb, path);
	if (it)
		it->st.st_mode = (it->st.st_mode & S_IFMT) | (mode & 07777);
	return leave(cb, it ? 0 : -ENOENT, path);
}

static int fake_chown(struct omni_backend *b, const char *path, uid_t uid,
                      gid_t gid)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_CHOWN);

	if (rc < 0)
		return rc;
	struct item *it = find(cb, path);
	if (it && uid != (uid_t)-1)
		it->st.st_uid = uid;
	if (it && gid != (gid_t)-1)
		it->st.st_gid = gid;
	return leave(cb, it ? 0 : -ENOENT, path);
}

static int fake_utimens(struct omni_backend *b, const char *path,
                        const struct timespec ts[2])
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_UTIMENS);

	if (rc < 0)
		return rc;
	struct item *it = find(cb, path);
	if (it && ts[1].tv_nsec != UTIME_OMIT && ts[1].tv_nsec != UTIME_NOW)
		it->st.st_mtim = ts[1];
	return leave(cb, it ? 0 : -ENOENT, path);
}

static int fake_truncate(struct omni_backend *b, const char *path, off_t size)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_TRUNCATE);

	if (rc < 0)
		return rc;
	struct item *it = find(cb, path);
	if (!it || !S_ISREG(it->st.st_mode))
		return leave(cb, it ? -EISDIR : -ENOENT, path);
	char *d = calloc(1, (size_t)size + 1);
	cr_assert_not_null(d);
	memcpy(d, it->data ? it->data : "",
	       it->len < (size_t)size ? it->len : (size_t)size);
	set_data(it, d, (size_t)size);
	free(d);
	return leave(cb, 0, path);
}

static int fake_statfs(struct omni_backend *b, struct statvfs *st)
{
	struct counting_backend *cb = cb_of(b);
	int rc = enter(cb, COUNT_STATFS);

	if (rc < 0)
		return rc;
	memset(st, 0, sizeof(*st));
	st->f_bsize = 4096;
	st->f_blocks = 1000;
	return leave(cb, 0, "");
}

/* --- open files ----------------------------------------------------------- */

static int fake_open(struct omni_backend *b, const char *path, int flags,
                     mode_t mode, struct omni_file **out)
{
	struct counting_backend *cb = cb_of(b);
	bool writing = (flags & O_ACCMODE) != O_RDONLY;
	int rc = enter(cb, writing ? COUNT_UPLOAD : COUNT_DOWNLOAD);

	if (rc < 0)
		return rc;
	struct item *it = find(cb, path);
	if (!it && !(flags & O_CREAT))
		return leave(cb, -ENOENT, path);
	if (it && !S_ISREG(it->st.st_mode))
		return leave(cb, -EISDIR, path);
	if (!it) {
		if ((rc = check_parent(cb, path)) < 0)
			return leave(cb, rc, path);
		it = add(cb, path,
		         S_IFREG | (mode & 07777 ? mode & 07777 : 0644));
	}
	struct cfake_file *f = calloc(1, sizeof(*f));
	cr_assert_not_null(f);
	f->base.backend = b;
	f->path = strdup(path);
	f->writing = writing;
	f->fd = memfd_create("counting", MFD_CLOEXEC);
	cr_assert(f->fd >= 0);
	if (!(flags & O_TRUNC) && it->len > 0)
		cr_assert_eq(pwrite(f->fd, it->data, it->len, 0),
		             (ssize_t)it->len);
	*out = &f->base;
	return leave(cb, 0, path);
}

static struct cfake_file *ff(struct omni_file *f)
{
	return (struct cfake_file *)f;
}

static ssize_t fake_read(struct omni_file *f, void *buf, size_t size, off_t off)
{
	ssize_t n = pread(ff(f)->fd, buf, size, off);

	return n < 0 ? -errno : n;
}

static ssize_t fake_write(struct omni_file *f, const void *buf, size_t size,
                          off_t off)
{
	ssize_t n = pwrite(ff(f)->fd, buf, size, off);

	return n < 0 ? -errno : n;
}

static int fake_fstat(struct omni_file *f, struct stat *st)
{
	struct counting_backend *cb = cb_of(f->backend);
	struct stat local;

	cr_assert_eq(fstat(ff(f)->fd, &local), 0);
	pthread_mutex_lock(&cb->mu);
	struct item *it = find(cb, ff(f)->path);
	if (it)
		*st = it->st;
	pthread_mutex_unlock(&cb->mu);
	st->st_size = local.st_size;
	clock_gettime(CLOCK_REALTIME, &st->st_mtim);
	return 0;
}

static int fake_file_fd(struct omni_file *f)
{
	struct counting_backend *cb = cb_of(f->backend);

	if (!(cb->ops.caps & OMNI_CAP_FILE_FD))
		return -ENOSYS;
	return ff(f)->fd;
}

static int fake_release(struct omni_file *f)
{
	struct counting_backend *cb = cb_of(f->backend);
	struct cfake_file *x = ff(f);

	if (x->writing) {
		struct stat local;
		cr_assert_eq(fstat(x->fd, &local), 0);
		char *d = malloc((size_t)local.st_size + 1);
		cr_assert_not_null(d);
		cr_assert_eq(pread(x->fd, d, (size_t)local.st_size, 0),
		             (ssize_t)local.st_size);
		pthread_mutex_lock(&cb->mu);
		struct item *it = find(cb, x->path);
		if (it)
			set_data(it, d, (size_t)local.st_size);
		pthread_mutex_unlock(&cb->mu);
		free(d);
	}
	close(x->fd);
	free(x->path);
	free(x);
	return 0;
}

static int fake_watch(struct omni_backend *b, omni_change_cb fn, void *payload)
{
	struct counting_backend *cb = cb_of(b);

	pthread_mutex_lock(&cb->mu);
	cb->watcher = fn;
	cb->watch_payload = payload;
	pthread_mutex_unlock(&cb->mu);
	return 0;
}

static void fake_destroy(struct omni_backend *b)
{
	struct counting_backend *cb = cb_of(b);

	for (size_t i = 0; i < cb->n; i++) {
		free(cb->items[i].path);
		free(cb->items[i].data);
	}
	free(cb->items);
	pthread_mutex_destroy(&cb->mu);
	omni__backend_finish(b);
	free(cb);
}

static const struct omni_backend_ops counting_ops = {
	.version = OMNI_BACKEND_OPS_VERSION,
	.name = "counting",
	.caps = OMNI_CAP_REMOTE,
	.destroy = fake_destroy,
	.stat = fake_stat,
	.readdir = fake_readdir,
	.mkdir = fake_mkdir,
	.rmdir = fake_rmdir,
	.unlink = fake_unlink,
	.rename = fake_rename,
	.symlink = fake_symlink,
	.readlink = fake_readlink,
	.chmod = fake_chmod,
	.chown = fake_chown,
	.utimens = fake_utimens,
	.truncate = fake_truncate,
	.statfs = fake_statfs,
	.open = fake_open,
	.read = fake_read,
	.write = fake_write,
	.fstat = fake_fstat,
	.file_fd = fake_file_fd,
	.release = fake_release,
	.watch = fake_watch,
};

/* --- the test's side ------------------------------------------------------ */

struct counting_backend *counting_backend_new(unsigned int extra_caps)
{
	struct counting_backend *cb = calloc(1, sizeof(*cb));

	cr_assert_not_null(cb);
	/* Each instance has its own table, for its caps. */
	cb->ops = counting_ops;
	cb->ops.caps |= extra_caps;
	if (!(extra_caps & OMNI_CAP_WATCH))
		cb->ops.watch = NULL;
	pthread_mutex_init(&cb->mu, NULL);
	cr_assert_eq(omni__backend_init(&cb->base, &cb->ops, "cache-test",
	                                "/workspace", NULL),
	             0, "%s", omni_error_last());
	return cb;
}

struct omni_backend *counting_backend_base(struct counting_backend *cb)
{
	return &cb->base;
}

long counting_count(struct counting_backend *cb, enum counting_op op)
{
	pthread_mutex_lock(&cb->mu);
	long n = cb->counts[op];
	pthread_mutex_unlock(&cb->mu);
	return n;
}

long counting_total(struct counting_backend *cb)
{
	long n = 0;

	pthread_mutex_lock(&cb->mu);
	for (int i = 0; i < COUNT_OPS; i++)
		n += cb->counts[i];
	pthread_mutex_unlock(&cb->mu);
	return n;
}

void counting_reset(struct counting_backend *cb)
{
	pthread_mutex_lock(&cb->mu);
	memset(cb->counts, 0, sizeof(cb->counts));
	pthread_mutex_unlock(&cb->mu);
}

const char *counting_summary(struct counting_backend *cb)
{
	static _Thread_local char out[512];
	size_t len = 0;

	out[0] = '\0';
	pthread_mutex_lock(&cb->mu);
	for (int i = 0; i < COUNT_OPS && len < sizeof(out); i++) {
		if (!cb->counts[i])
			continue;
		int n = snprintf(out + len, sizeof(out) - len, "%s=%ld ",
		                 op_names[i], cb->counts[i]);
		if (n > 0)
			len += (size_t)n;
	}
	pthread_mutex_unlock(&cb->mu);
	return out;
}

void counting_fail(struct counting_backend *cb, enum counting_op op, int err)
{
	pthread_mutex_lock(&cb->mu);
	cb->fail[op] = err;
	pthread_mutex_unlock(&cb->mu);
}

void counting_put(struct counting_backend *cb, const char *path,
                  const char *data, mode_t mode)
{
	pthread_mutex_lock(&cb->mu);
	make_parents(cb, path);
	set_data(add(cb, path, S_IFREG | mode), data, strlen(data));
	pthread_mutex_unlock(&cb->mu);
}

void counting_put_dir(struct counting_backend *cb, const char *path)
{
	pthread_mutex_lock(&cb->mu);
	make_parents(cb, path);
	add(cb, path, S_IFDIR | 0755);
	pthread_mutex_unlock(&cb->mu);
}

void counting_remove(struct counting_backend *cb, const char *path)
{
	pthread_mutex_lock(&cb->mu);
	del_tree(cb, path);
	pthread_mutex_unlock(&cb->mu);
}

char *counting_get(struct counting_backend *cb, const char *path)
{
	char *out = NULL;

	pthread_mutex_lock(&cb->mu);
	struct item *it = find(cb, path);
	if (it && S_ISREG(it->st.st_mode)) {
		out = calloc(1, it->len + 1);
		cr_assert_not_null(out);
		if (it->len)
			memcpy(out, it->data, it->len);
	}
	pthread_mutex_unlock(&cb->mu);
	return out;
}

mode_t counting_mode(struct counting_backend *cb, const char *path)
{
	pthread_mutex_lock(&cb->mu);
	struct item *it = find(cb, path);
	mode_t m = it ? it->st.st_mode : 0;
	pthread_mutex_unlock(&cb->mu);
	return m;
}

int counting_lookup(struct counting_backend *cb, const char *path,
                    struct stat *st)
{
	pthread_mutex_lock(&cb->mu);
	struct item *it = find(cb, path);
	if (it)
		*st = it->st;
	pthread_mutex_unlock(&cb->mu);
	return it ? 0 : -ENOENT;
}

void counting_event(struct counting_backend *cb, const char *path,
                    const struct stat *st)
{
	pthread_mutex_lock(&cb->mu);
	omni_change_cb fn = cb->watcher;
	void *payload = cb->watch_payload;
	pthread_mutex_unlock(&cb->mu);
	cr_assert_not_null(fn, "nobody watches the counting backend");
	fn(path, st, payload);
}
