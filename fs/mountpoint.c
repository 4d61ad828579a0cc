/*
 * mountpoint.c - checking a mount point before mounting (see mountpoint.h).
 *
 * The absolute path comes from realpath(3), except for a dead FUSE mount,
 * where every lookup of the path itself fails with ENOTCONN: there the
 * parent is resolved and the last name appended. What is mounted on the
 * path is the last mountinfo entry for it (base/mountinfo.h), the one on
 * top.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/mountinfo.h"
#include "mountpoint.h"

extern char **environ;

/* The top mount on one path, if any. */
struct top {
	const char *path;
	bool found;
	char fstype[64], source[PATH_MAX], super[1024];
};

static int top_one(const struct omni__mount *m, void *payload)
{
	struct top *t = payload;

	if (strcmp(m->point, t->path) != 0)
		return 0;
	t->found = true;
	snprintf(t->fstype, sizeof(t->fstype), "%s", m->fstype);
	snprintf(t->source, sizeof(t->source), "%s", m->source);
	snprintf(t->super, sizeof(t->super), "%s", m->super);
	return 0;
}

static void find_top(const char *path, struct top *t)
{
	memset(t, 0, sizeof(*t));
	t->path = path;
	if (omni__mountinfo_each(top_one, t) < 0)
		t->found = false;
}

/* Is a FUSE mount's super block option user_id= the caller's uid? */
static bool owned_by_us(const char *super)
{
	const char *p = strstr(super, "user_id=");
	char *end;

	if (!p || (p != super && p[-1] != ','))
		return false;
	errno = 0;
	unsigned long uid = strtoul(p + 8, &end, 10);
	return !errno && end != p + 8 && (*end == ',' || !*end) &&
	       uid == (unsigned long)getuid();
}

/* given made absolute into out, the last name kept as it is. */
static int absolute(const char *given, char *out, size_t size)
{
	char copy[PATH_MAX], parent[PATH_MAX];
	int err;

	if (realpath(given, parent)) {
		if ((size_t)snprintf(out, size, "%s", parent) >= size)
			return -ENAMETOOLONG;
		return 0;
	}
	err = errno;
	if ((size_t)snprintf(copy, sizeof(copy), "%s", given) >= sizeof(copy))
		return -ENAMETOOLONG;
	size_t n = strlen(copy);
	while (n > 1 && copy[n - 1] == '/')
		copy[--n] = '\0';
	char *slash = strrchr(copy, '/');
	const char *name = slash ? slash + 1 : copy;
	if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return -err;
	if (slash)
		*slash = '\0';
	const char *dir = slash ? (copy[0] ? copy : "/") : ".";
	if (!realpath(dir, parent))
		return -err;
	if ((size_t)snprintf(out, size, "%s%s%s", parent,
	                     strcmp(parent, "/") == 0 ? "" : "/", name) >= size)
		return -ENAMETOOLONG;
	return 0;
}

/* Take a dead mount of ours off path. */
static int clear_dead(const char *path)
{
	const char *argv[] = { "fusermount3", "-u", "-z", "--", path, NULL };
	pid_t pid;
	int st, rc;

	if (geteuid() == 0)
		return umount2(path, MNT_DETACH) == 0 ? 0 : -errno;
	rc = posix_spawnp(&pid, "fusermount3", NULL, NULL, (char **)argv,
	                  environ);
	if (rc != 0)
		return -rc;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EBUSY;
}

static int check(const char *given, char *out, size_t size, bool may_clear);

/* stat() said ENOTCONN: a FUSE mount whose daemon is gone. */
static int dead_mount(const char *given, char *out, size_t size, bool may_clear)
{
	struct top t;
	int rc;

	find_top(out, &t);
	bool ours = t.found && strcmp(t.fstype, "fuse.omnifs") == 0 &&
	            owned_by_us(t.super);
	if (!ours || !may_clear) {
		fprintf(stderr,
		        "omnifs: %s: a dead FUSE mount%s%s%s (its daemon is "
		        "gone: transport endpoint is not connected); clear it "
		        "with: fusermount3 -u %s\n",
		        given, t.found ? " (" : "", t.found ? t.source : "",
		        t.found ? ")" : "", out);
		return 1;
	}
	fprintf(stderr,
	        "omnifs: %s: clearing the dead omnifs mount (%s) that a "
	        "crashed daemon left\n",
	        given, t.source);
	if ((rc = clear_dead(out)) < 0) {
		fprintf(stderr,
		        "omnifs: %s: cannot clear it (%s); run: fusermount3 "
		        "-u %s\n",
		        given, strerror(-rc), out);
		return 1;
	}
	return check(given, out, size, false);
}

static int check(const char *given, char *out, size_t size, bool may_clear)
{
	struct stat st;
	struct top t;
	int rc = absolute(given, out, size);

	if (rc < 0) {
		fprintf(stderr, "omnifs: %s: %s\n", given,
		        rc == -ENOENT ? "no such directory (create it first)"
		                      : strerror(-rc));
		return 1;
	}
	int err = stat(out, &st) < 0 ? errno : 0;
	if (err == ENOTCONN)
		return dead_mount(given, out, size, may_clear);
	/* Something mounted there, even one we may not look into (the
	 * FUSE mount of another user answers EACCES). */
	find_top(out, &t);
	if (t.found && strncmp(t.fstype, "fuse", 4) == 0 && err == 0) {
		/* The kernel may answer stat from attributes it still
		 * keeps; statfs always asks the daemon. */
		struct statfs sf;
		if (statfs(out, &sf) < 0 && errno == ENOTCONN)
			return dead_mount(given, out, size, may_clear);
	}
	if (t.found && err != ENOENT) {
		bool fuse = strncmp(t.fstype, "fuse", 4) == 0;
		fprintf(stderr,
		        "omnifs: %s: already a mount point (%s, type %s); "
		        "unmount it first: %s %s\n",
		        given, t.source, t.fstype,
		        fuse ? "fusermount3 -u" : "umount", out);
		return 1;
	}
	if (err) {
		fprintf(stderr, "omnifs: %s: %s\n", given,
		        err == ENOENT ? "no such directory (create it first)"
		                      : strerror(err));
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr,
		        "omnifs: %s: not a directory (the mount point must be "
		        "one)\n",
		        given);
		return 1;
	}
	return 0;
}

int omnifs_mountpoint_check(const char *given, char *out, size_t size)
{
	return check(given, out, size, true);
}
