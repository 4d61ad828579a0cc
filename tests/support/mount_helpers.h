/*
 * tests/support/mount_helpers.h - a real omnifs mount for one test.
 *
 * mount_up() makes a private directory (mkdtemp), starts build/omnifs in
 * the foreground on <tmp>/<project> with its data in <tmp>/data and its
 * control socket in <tmp>/run (OMNI_RUNTIME_DIR), and waits until the
 * kernel lists the mount. mount_down() unmounts with fusermount3 -u, waits
 * for the daemon to exit (it saves and shuts the session down), and
 * removes everything. PATH gets the build directory first, so shell
 * commands in tests can call omnifs and omni-exec by name.
 */
#ifndef OMNI_TESTS_MOUNT_HELPERS_H
#define OMNI_TESTS_MOUNT_HELPERS_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

struct mount_fx {
	char tmp[PATH_MAX];
	char data[PATH_MAX];
	char mnt[PATH_MAX];
	char run[PATH_MAX];
	char log[PATH_MAX];
	char host[PATH_MAX]; /* data/<project>: the workspace on the host */
	char project[64];
	char bin[PATH_MAX];
	pid_t pid;
};

/* Start omnifs with extra arguments (NULL-terminated list, may be NULL). */
void mount_up(struct mount_fx *m, const char *const *extra);
void mount_down(struct mount_fx *m);
/* Start omnifs again on the same folders and mount point (the one before
 * has exited or was killed, and its mount is gone); a new log. */
void mount_again(struct mount_fx *m, const char *const *extra);

/* Is path a mount point of type fuse.omnifs? */
bool mount_is_mounted(const char *path);

/* Run a shell command (sh -c) in directory dir; returns its exit status
 * (or 128+signal). */
int sh_in(const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The same, capturing stdout into a malloc'd NUL-terminated string. */
char *sh_out(int *status, const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Run fn(arg) in a forked child that has become uid:gid with the given
 * supplementary groups (setgroups, setresgid, setresuid; the caller must
 * be root). Returns the child's exit status: fn's return value, or 128+N
 * when a signal ended it, or 127 when the child could not switch.
 */
int run_as_user(uid_t uid, gid_t gid, size_t ngroups, const gid_t *groups,
                int (*fn)(void *arg), void *arg);

/* The build directory ($OMNI_BUILD_DIR, else <source>/build). */
void test_build_dir(char *out, size_t size);

#endif
