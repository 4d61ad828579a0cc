/*
 * tests/docker/test_docker_files.c - files of the docker backend (suite
 * backend_docker, see test_docker.c): both ways across the bind mount,
 * owned by a non-root caller, and the whole thing: omnifs mounted on a
 * container with omni-exec.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "docker/docker.h"
#include "docker_helpers.h"
#include "helpers.h"
#include "http_fake.h"
#include "mount_helpers.h"
#include "omni/session.h"

/* --- files ---------------------------------------------------------------- */

Test(backend_docker, files_cross_the_bind_mount_both_ways)
{
	struct omni_backend *b = dk_started();
	char *data = NULL, p[PATH_MAX];
	size_t len;
	struct stat st;

	omni_assert_ok(omni_backend_write_file(b, "/workspace/notes/a.txt",
	                                       "from host", 9));
	dk_cmd_is(b, "cat notes/a.txt", "from host");
	dk_cmd_is(b,
	          "mkdir -p out && printf 'from container' > out/b.txt && "
	          "ln -s b.txt out/link && echo ok",
	          "ok\n");
	omni_assert_ok(omni_backend_read_file(b, "out/b.txt", &data, &len));
	cr_assert_str_eq(data, "from container");
	free(data);
	cr_assert_eq(omni_backend_file_exists(b, "out/link"),
	             OMNI_FILE_SYMLINK);
	cr_assert_eq(omni_backend_file_exists(b, "out"), OMNI_FILE_DIRECTORY);
	struct omni_dir_list l;
	omni_assert_ok(omni_backend_list_directory(b, "out", false, &l));
	cr_assert_eq(l.count, 2);
	omni_dir_list_finish(&l);
	/* On the host, and owned by the caller. */
	omni_test_fmt(p, sizeof(p), "%s/out/b.txt", dk_fx.host);
	cr_assert(stat(p, &st) == 0);
	cr_assert_eq(st.st_uid, getuid());
	cr_assert_eq(st.st_gid, getgid());
	/* A symlink made in the container cannot lead a file operation out
	 * of the workspace. */
	dk_cmd_is(b, "ln -s /etc escape && echo ok", "ok\n");
	omni_assert_err(omni_backend_read_file(b, "escape/passwd", &data, &len),
	                -EACCES);
	omni_assert_ok(omni_backend_delete_file(b, "notes/a.txt"));
	dk_cmd_is(b, "test -e notes/a.txt || echo gone", "gone\n");
}

Test(backend_docker, files_belong_to_a_non_root_caller)
{
	dk_require_docker();
	dk_fx_paths();
	if (geteuid() != 0) {
		/* Already not root: the ordinary path shows it. */
		struct omni_backend *b = dk_fx_start(0, NULL);
		dk_cmd_is(b, "echo x > mine.txt && echo ok", "ok\n");
		char p[PATH_MAX];
		struct stat st;
		omni_test_fmt(p, sizeof(p), "%s/mine.txt", dk_fx.host);
		cr_assert(stat(p, &st) == 0 && st.st_uid == getuid());
		return;
	}
	const uid_t nobody = 65534;
	struct stat sst;
	struct omni__docker_api api;
	cr_assert(omni__docker_api_init(&api) == 0);
	if (!api.ep.unix_socket[0] || stat(api.ep.unix_socket, &sst) < 0)
		cr_skip_test("the daemon is not on a local Unix socket");
	cr_assert(chown(dk_fx.tmp, nobody, nobody) == 0);
	cr_assert(chown(dk_fx.run, nobody, nobody) == 0);

	int p[2];
	cr_assert(pipe(p) == 0);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		gid_t groups[1] = { sst.st_gid };
		close(p[0]);
		if (setgroups(1, groups) < 0 ||
		    setresgid(nobody, nobody, nobody) < 0 ||
		    setresuid(nobody, nobody, nobody) < 0) {
			dprintf(p[1], "cannot become uid %u: %s\n", nobody,
			        strerror(errno));
			_exit(20);
		}
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		setenv("OMNI_AGENT_PATH", dk_agent_path, 1);
		struct omni_backend_options o;
		struct omni_backend *b = NULL;
		struct omni_command_result r;
		dk_default_opts(&o);
		if (omni_docker_backend_new(&b, dk_fx.project, &o, NULL) < 0 ||
		    omni_backend_start(b) < 0) {
			dprintf(p[1], "start: %s\n", omni_error_last());
			_exit(21);
		}
		if (omni_backend_execute_command(
		        b, "id -u; id -g; echo x > mine.txt; mkdir sub", 30,
		        &r) < 0) {
			dprintf(p[1], "exec: %s\n", omni_error_last());
			_exit(22);
		}
		dprintf(p[1], "%s", r.output);
		omni_command_result_finish(&r);
		if (omni_backend_shutdown(b) < 0) {
			dprintf(p[1], "shutdown: %s\n", omni_error_last());
			_exit(23);
		}
		omni_backend_free(b);
		_exit(0);
	}
	close(p[1]);
	char buf[4096];
	size_t n = 0;
	ssize_t r;
	while ((r = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(p[0]);
	int status;
	cr_assert(waitpid(pid, &status, 0) == pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	          "the child as uid 65534 failed: %s", buf);
	cr_assert_str_eq(buf, "65534\n65534\n");
	char f[PATH_MAX];
	struct stat st;
	omni_test_fmt(f, sizeof(f), "%s/mine.txt", dk_fx.host);
	cr_assert(stat(f, &st) == 0);
	cr_assert_eq(st.st_uid, nobody);
	cr_assert_eq(st.st_gid, nobody);
	omni_test_fmt(f, sizeof(f), "%s/sub", dk_fx.host);
	cr_assert(stat(f, &st) == 0 && S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_uid, nobody);
	cr_assert(!dk_exists(dk_fx.name));
}

/* --- the whole thing: omnifs mounted on a container ----------------------- */

Test(backend_docker, fuse_mount_and_omni_exec)
{
	const char *extra[] = { "--backend", "docker", "--image", BUSYBOX,
		                "--network", "none",   NULL };
	char name[160], f[PATH_MAX], want[32];
	int status;

	dk_require_docker();
	mount_up(&dk_mfx, extra);
	omni_test_fmt(name, sizeof(name), "omniagents-%s", dk_mfx.project);
	cr_assert(dk_exists(name));

	char *out =
	    sh_out(&status, dk_mfx.mnt, "omni-exec -c 'echo hi > f; id -u'");
	snprintf(want, sizeof(want), "%u\n", getuid());
	cr_assert_eq(status, 0);
	cr_assert_str_eq(out, want);
	free(out);
	omni_test_fmt(f, sizeof(f), "%s/f", dk_mfx.mnt);
	char *got = omni_test_read_host(f, NULL);
	cr_assert(got);
	cr_assert_str_eq(got, "hi\n");
	free(got);

	/* The reverse, and a subdirectory as the working directory. */
	cr_assert_eq(
	    sh_in(dk_mfx.mnt, "mkdir -p sub && echo from-mount > sub/g"), 0);
	omni_test_fmt(f, sizeof(f), "%s/sub", dk_mfx.mnt);
	out = sh_out(&status, f, "omni-exec -c 'pwd; cat g'");
	cr_assert_eq(status, 0);
	cr_assert_str_eq(out, "/workspace/sub\nfrom-mount\n");
	free(out);
	cr_assert_eq(sh_in(dk_mfx.mnt, "omni-exec -c 'exit 7'"), 7);

	mount_down(&dk_mfx);
	cr_assert(!dk_exists(name), "the container outlived the mount");
}
