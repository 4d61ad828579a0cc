/*
 * exec/agent_watch.c - the WATCH request of the file protocol
 * (omni/ipc_files.h): changes beneath the workspace, from inotify, streamed
 * to the host so that its cache drops what a command changed.
 *
 * inotify watches one directory per watch, so the whole tree is watched:
 * at the start every directory beneath the root (symlinks are not
 * followed), then every directory that appears (created, or moved in),
 * whose content is listed and reported at once since files made in it
 * before its watch was added would otherwise go unseen (mkdir -p a/b/c).
 * A directory moved inside the tree keeps its watches, renamed by prefix
 * when the two halves of the move pair up (same cookie); one moved out
 * loses them (IN_IGNORED, or stale paths that only cost the host an
 * invalidation).
 *
 * Each directory is watched through /proc/self/fd of a descriptor opened
 * beneath the root (openat2 RESOLVE_BENEATH), so a symlink swapped in by
 * a command cannot point a watch elsewhere.
 *
 * Events are handled a read() batch at a time: the paths are collected in
 * order, one path once (its last event wins), and sent after the batch
 * with the attributes they have then (lstat), or as removed when they are
 * gone: a large write costs one event, not one per write(2). The host
 * learns of lost events through OVERFLOW: inotify's queue overflowed, or a
 * watch could not be added (max_user_watches reached).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_files.h"
#include "omni/error.h"
#include "omni/ipc_files.h"
#include "omni/log.h"

#define WATCH_MASK                                                             \
	(IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB |      \
	 IN_MOVED_FROM | IN_MOVED_TO | IN_EXCL_UNLINK | IN_ONLYDIR)

/* Paths of one batch. */
#define BATCH_MAX 1024

struct wdir {
	int wd;
	char *rel;
};

struct watch {
	int ifd, fd;
	const struct omni__confined *root;
	struct wdir *dirs;
	size_t ndirs, cap;
	struct omni_ipc_buf out;
	/* The pending half of a directory's move. */
	uint32_t move_cookie;
	char move_from[PATH_MAX];
	/* This batch's paths. */
	char *batch[BATCH_MAX];
	size_t nbatch;
	bool overflow;
	int send_err;
};

/* --- sending ----------------------------------------------------------------
 */

static void send_frame(struct watch *w, uint8_t type, const void *p, size_t n)
{
	if (!w->send_err)
		w->send_err = omni_ipc_send(w->fd, type, p, n);
}

static void send_overflow(struct watch *w)
{
	send_frame(w, OMNI_FILES_R_OVERFLOW, NULL, 0);
}

/* An EVENT for rel with its attributes now (none when it is gone). */
static void send_event(struct watch *w, const char *rel)
{
	struct stat st;
	bool have = omni__confined_stat(w->root, rel, &st) == 0;

	if (omni__files_put_event(&w->out, rel, have ? &st : NULL) == 0)
		send_frame(w, OMNI_FILES_R_EVENT, w->out.data, w->out.len);
}

/* --- the watch table ------------------------------------------------------ */

static struct wdir *find_wd(struct watch *w, int wd)
{
	for (size_t i = 0; i < w->ndirs; i++)
		if (w->dirs[i].wd == wd)
			return &w->dirs[i];
	return NULL;
}

static void forget_wd(struct watch *w, int wd)
{
	struct wdir *d = find_wd(w, wd);

	if (!d)
		return;
	free(d->rel);
	*d = w->dirs[--w->ndirs];
}

static int remember_wd(struct watch *w, int wd, const char *rel)
{
	struct wdir *d = find_wd(w, wd);
	char *copy = strdup(rel);

	if (!copy)
		return -ENOMEM;
	if (d) {
		free(d->rel);
		d->rel = copy;
		return 0;
	}
	if (w->ndirs == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct wdir *p = realloc(w->dirs, cap * sizeof(*p));
		if (!p) {
			free(copy);
			return -ENOMEM;
		}
		w->dirs = p;
		w->cap = cap;
	}
	w->dirs[w->ndirs++] = (struct wdir){ .wd = wd, .rel = copy };
	return 0;
}

/* a/b joined into out; false when it does not fit. */
static bool join(char *out, const char *dir, const char *name)
{
	int n = dir[0] ? snprintf(out, PATH_MAX, "%s/%s", dir, name)
	               : snprintf(out, PATH_MAX, "%s", name);

	return n > 0 && n < PATH_MAX;
}

/* --- adding directories --------------------------------------------------- */

/* Directories still to watch (a work list, so depth costs no stack). */
struct dir_stack {
	char **rel;
	size_t n, cap;
};

static int dir_stack_push(struct dir_stack *s, const char *rel)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char **p = realloc(s->rel, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		s->rel = p;
		s->cap = cap;
	}
	if (!(s->rel[s->n] = strdup(rel)))
		return -ENOMEM;
	s->n++;
	return 0;
}

/* The entries of directory dir: its subdirectories go on the work list
 * (by d_type: a large tree costs no lstat per file), and with report
 * every entry is sent with its attributes. -ENOMEM, else 0. */
static int scan_dir(struct watch *w, struct dir_stack *pending, const char *dir,
                    bool report)
{
	int fd = omni__confined_openat(w->root, dir,
	                               O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (fd < 0)
		return 0; /* gone meanwhile */
	if (!(d = fdopendir(fd))) {
		close(fd);
		return 0;
	}
	while (rc == 0 && !w->send_err && (de = readdir(d))) {
		char rel[PATH_MAX];
		struct stat st;
		bool is_dir = de->d_type == DT_DIR;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !join(rel, dir, de->d_name))
			continue;
		if (report || de->d_type == DT_UNKNOWN) {
			if (fstatat(dirfd(d), de->d_name, &st,
			            AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			is_dir = S_ISDIR(st.st_mode);
			if (report &&
			    omni__files_put_event(&w->out, rel, &st) == 0)
				send_frame(w, OMNI_FILES_R_EVENT, w->out.data,
				           w->out.len);
		}
		if (is_dir)
			rc = dir_stack_push(pending, rel);
	}
	closedir(d);
	return rc;
}

/* Watch one directory: 0, or -errno when the watch could not be added
 * (the directory going away in between is 0). */
static int add_one(struct watch *w, const char *rel)
{
	char proc[64];
	int fd = omni__confined_openat(w->root, rel,
	                               O_PATH | O_DIRECTORY | O_NOFOLLOW, 0);

	if (fd < 0)
		return 0; /* gone, or a symlink now: nothing to watch */
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	int wd = inotify_add_watch(w->ifd, proc, WATCH_MASK);
	int err = wd < 0 ? -errno : 0;
	close(fd);
	if (wd < 0)
		return err == -ENOENT || err == -ENOTDIR ? 0 : err;
	return remember_wd(w, wd, rel);
}

/* Watch rel and every directory beneath it; report what they hold when
 * report is set (a directory that just appeared). */
static void add_tree(struct watch *w, const char *rel, bool report)
{
	struct dir_stack pending = { 0 };
	bool warned = false;

	if (dir_stack_push(&pending, rel) < 0) {
		send_overflow(w);
		return;
	}
	while (pending.n > 0 && !w->send_err) {
		char *dir = pending.rel[--pending.n];
		int rc = add_one(w, dir);
		if (rc < 0) {
			if (!warned)
				omni_log(OMNI_LOG_WARN,
				         "watch: cannot watch %s: %s; changes "
				         "there go unreported",
				         dir[0] ? dir : ".", strerror(-rc));
			warned = true;
			w->overflow = true;
		} else if (scan_dir(w, &pending, dir, report) < 0) {
			w->overflow = true;
		}
		free(dir);
	}
	while (pending.n > 0)
		free(pending.rel[--pending.n]);
	free(pending.rel);
}

/* A directory moved inside the tree: its watches' paths follow. */
static void rename_prefix(struct watch *w, const char *from, const char *to)
{
	size_t fl = strlen(from);
	char rel[PATH_MAX];

	for (size_t i = 0; i < w->ndirs; i++) {
		const char *r = w->dirs[i].rel;
		if (strncmp(r, from, fl) != 0 || (r[fl] && r[fl] != '/'))
			continue;
		int n = snprintf(rel, sizeof(rel), "%s%s", to, r + fl);
		char *copy = n > 0 && n < PATH_MAX ? strdup(rel) : NULL;
		if (!copy)
			continue;
		free(w->dirs[i].rel);
		w->dirs[i].rel = copy;
	}
}

/* --- events -----------------------------------------------------------------
 */

/* Note rel in this batch (moved to its end when already there). */
static void batch_add(struct watch *w, const char *rel)
{
	for (size_t i = 0; i < w->nbatch; i++) {
		if (strcmp(w->batch[i], rel) == 0) {
			char *p = w->batch[i];
			memmove(&w->batch[i], &w->batch[i + 1],
			        (w->nbatch - i - 1) * sizeof(char *));
			w->batch[w->nbatch - 1] = p;
			return;
		}
	}
	if (w->nbatch == BATCH_MAX) {
		w->overflow = true;
		return;
	}
	if ((w->batch[w->nbatch] = strdup(rel)))
		w->nbatch++;
	else
		w->overflow = true;
}

static void batch_send(struct watch *w)
{
	if (w->overflow) {
		send_overflow(w);
		w->overflow = false;
	}
	for (size_t i = 0; i < w->nbatch; i++) {
		send_event(w, w->batch[i]);
		free(w->batch[i]);
	}
	w->nbatch = 0;
}

static void take_event(struct watch *w, const struct inotify_event *ev)
{
	char rel[PATH_MAX];

	if (ev->mask & IN_Q_OVERFLOW) {
		w->overflow = true;
		return;
	}
	if (ev->mask & IN_IGNORED) {
		forget_wd(w, ev->wd);
		return;
	}
	struct wdir *d = find_wd(w, ev->wd);
	if (!d)
		return;
	if (ev->len == 0 || !ev->name[0]) {
		/* The directory itself: its parent reports removals and
		 * moves; a change of its attributes is its own. */
		if ((ev->mask & IN_ATTRIB) && d->rel[0])
			batch_add(w, d->rel);
		return;
	}
	if (!join(rel, d->rel, ev->name))
		return;
	bool dir = ev->mask & IN_ISDIR;
	if ((ev->mask & IN_MOVED_FROM) && dir) {
		w->move_cookie = ev->cookie;
		snprintf(w->move_from, sizeof(w->move_from), "%s", rel);
	}
	if ((ev->mask & IN_MOVED_TO) && dir) {
		if (ev->cookie && ev->cookie == w->move_cookie) {
			rename_prefix(w, w->move_from, rel);
			w->move_cookie = 0;
		} else {
			add_tree(w, rel, true);
		}
	}
	if ((ev->mask & IN_CREATE) && dir)
		add_tree(w, rel, true);
	batch_add(w, rel);
}

/* Read what inotify has; false when the watch must end. */
static bool read_events(struct watch *w)
{
	union {
		struct inotify_event ev;
		char b[16384];
	} u;
	const char *buf = u.b;
	ssize_t n = read(w->ifd, u.b, sizeof(u.b));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	for (ssize_t off = 0; off < n;) {
		const struct inotify_event *ev =
		    (const struct inotify_event *)(buf + off);
		take_event(w, ev);
		off += (ssize_t)(sizeof(*ev) + ev->len);
	}
	return true;
}

/* The client said something or left: any frame is ignored; its end ends
 * the watch. */
static bool client_alive(struct watch *w)
{
	char b[4096];
	ssize_t n = recv(w->fd, b, sizeof(b), MSG_DONTWAIT);

	if (n < 0)
		return errno == EINTR || errno == EAGAIN;
	return n > 0;
}

int omni__agent_watch(int fd, const struct omni__confined *root)
{
	struct watch w = { .fd = fd, .root = root };

	w.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w.ifd < 0)
		return omni_error_set_errno(-errno, "watch: inotify");
	add_tree(&w, "", false);
	if (w.overflow) {
		send_overflow(&w);
		w.overflow = false;
	}
	send_frame(&w, OMNI_FILES_R_READY, NULL, 0);
	while (!w.send_err) {
		struct pollfd p[2] = { { .fd = w.ifd, .events = POLLIN },
			               { .fd = fd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents && !client_alive(&w))
			break;
		if ((p[0].revents & POLLIN) && !read_events(&w))
			break;
		/* Let a burst finish: what comes within 10 ms (up to 50)
		 * joins the batch. */
		if (p[0].revents & POLLIN) {
			struct pollfd more = { .fd = w.ifd, .events = POLLIN };
			for (int i = 0;
			     i < 5 && w.nbatch < BATCH_MAX / 2 &&
			     poll(&more, 1, 10) > 0 && read_events(&w);
			     i++)
				;
		}
		batch_send(&w);
	}
	for (size_t i = 0; i < w.nbatch; i++)
		free(w.batch[i]);
	for (size_t i = 0; i < w.ndirs; i++)
		free(w.dirs[i].rel);
	free(w.dirs);
	omni_ipc_buf_finish(&w.out);
	close(w.ifd);
	return 0;
}
