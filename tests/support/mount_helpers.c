/*
 * tests/support/mount_helpers.c - real omnifs mounts for the integration tests
 * (see mount_helpers.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"

extern char **environ;

void test_build_dir(char *out, size_t size)
{
	const char *env = getenv("OMNI_BUILD_DIR");
	char src[PATH_MAX];

	if (env && *env) {
		omni_test_fmt(out, size, "%s", env);
		return;
	}
	omni_test_source_dir(src, sizeof(src));
	omni_test_fmt(out, size, "%s/build", src);
}

bool mount_is_mounted(const char *path)
{
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX], rest[1024];
		/* id parent maj:min root mountpoint ... - fstype ... */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		const char *sep = strstr(line, " - ");
		if (!sep || sscanf(sep + 3, "%1023s", rest) != 1)
			continue;
		found =
		    strcmp(mp, path) == 0 && strcmp(rest, "fuse.omnifs") == 0;
	}
	free(line);
	fclose(f);
	return found;
}

void mount_up(struct mount_fx *m, const char *const *extra)
{
	char path_env[PATH_MAX * 2];

	memset(m, 0, sizeof(*m));
	omni_test_mkdtemp(m->tmp, sizeof(m->tmp));
	omni_test_project_id(m->project, sizeof(m->project), "mnt");
	omni_test_fmt(m->mnt, sizeof(m->mnt), "%s/%s", m->tmp, m->project);
	omni_test_fmt(m->data, sizeof(m->data), "%s/data", m->tmp);
	omni_test_fmt(m->run, sizeof(m->run), "%s/run", m->tmp);
	omni_test_fmt(m->log, sizeof(m->log), "%s/omnifs.log", m->tmp);
	omni_test_fmt(m->host, sizeof(m->host), "%s/%s", m->data, m->project);
	cr_assert(mkdir(m->mnt, 0755) == 0);
	cr_assert(mkdir(m->run, 0700) == 0);
	setenv("OMNI_RUNTIME_DIR", m->run, 1);
	test_build_dir(m->bin, sizeof(m->bin));
	omni_test_fmt(path_env, sizeof(path_env), "%s:%s", m->bin,
	              getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", path_env, 1);
	mount_again(m, extra);
}

void mount_again(struct mount_fx *m, const char *const *extra)
{
	char omnifs[PATH_MAX];
	omni_test_fmt(omnifs, sizeof(omnifs), "%s/omnifs", m->bin);
	const char *argv[32] = { omnifs, "-f", "--data-path", m->data };
	int argc = 4;
	for (const char *const *e = extra; e && *e && argc < 30; e++)
		argv[argc++] = *e;
	argv[argc++] = m->mnt;
	argv[argc] = NULL;

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, m->log,
	                                 O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	int rc = posix_spawn(&m->pid, omnifs, &fa, NULL, (char *const *)argv,
	                     environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert(rc == 0, "cannot start %s: %s", omnifs, strerror(rc));

	for (int i = 0; i < 1000; i++) {
		if (mount_is_mounted(m->mnt))
			return;
		int st;
		if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
			m->pid = 0;
			char *log = omni_test_read_host(m->log, NULL);
			cr_assert_fail("omnifs exited before mounting: %s",
			               log ? log : "");
		}
		usleep(10000);
	}
	cr_assert_fail("omnifs did not mount %s within 10 s", m->mnt);
}

void mount_down(struct mount_fx *m)
{
	if (!m->tmp[0])
		return;
	if (mount_is_mounted(m->mnt)) {
		char cmd[PATH_MAX + 64];
		snprintf(cmd, sizeof(cmd), "fusermount3 -u '%s' 2>/dev/null",
		         m->mnt);
		if (system(cmd) != 0) {
			snprintf(cmd, sizeof(cmd), "umount -l '%s' 2>/dev/null",
			         m->mnt);
			if (system(cmd) != 0) {
				/* Nothing more to try; the daemon is killed
				 * below and the kernel drops the mount. */
			}
		}
	}
	if (m->pid > 0) {
		int st;
		for (int i = 0; i < 1000; i++) {
			if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
				m->pid = 0;
				break;
			}
			usleep(10000);
		}
		if (m->pid > 0) {
			kill(m->pid, SIGKILL);
			waitpid(m->pid, &st, 0);
			m->pid = 0;
		}
	}
	omni_test_rm_rf(m->tmp);
	m->tmp[0] = '\0';
}

static int run_shell(const char *dir, const char *cmd, int out_fd)
{
	posix_spawn_file_actions_t fa;
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	pid_t pid;
	int st, rc;

	posix_spawn_file_actions_init(&fa);
	if (dir)
		posix_spawn_file_actions_addchdir_np(&fa, dir);
	if (out_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, (char *const *)argv,
	                 environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert(rc == 0, "cannot run sh: %s", strerror(rc));
	if (out_fd >= 0)
		close(out_fd);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int sh_in(const char *dir, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert(n > 0 && (size_t)n < sizeof(cmd));
	return run_shell(dir, cmd, -1);
}

char *sh_out(int *status, const char *dir, const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	int p[2];

	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert(n > 0 && (size_t)n < sizeof(cmd));
	cr_assert(pipe(p) == 0);

	/* Read in a second process-free way: spawn first, then drain. */
	posix_spawn_file_actions_t fa;
	const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
	pid_t pid;
	posix_spawn_file_actions_init(&fa);
	if (dir)
		posix_spawn_file_actions_addchdir_np(&fa, dir);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addclose(&fa, p[0]);
	int rc = posix_spawn(&pid, "/bin/sh", &fa, NULL, (char *const *)argv,
	                     environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert(rc == 0);
	close(p[1]);

	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	cr_assert(buf);
	for (;;) {
		if (len + 1 >= cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert(buf);
		}
		ssize_t r = read(p[0], buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (status)
		*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return buf;
}

int run_as_user(uid_t uid, gid_t gid, size_t ngroups, const gid_t *groups,
                int (*fn)(void *arg), void *arg)
{
	pid_t pid = fork();
	int st;

	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (setgroups(ngroups, groups) < 0 ||
		    setresgid(gid, gid, gid) < 0 ||
		    setresuid(uid, uid, uid) < 0)
			_exit(127);
		_exit(fn(arg));
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
