/*
 * tests/docker/test_docker_escape.c - attack 1 of the sandbox issue,
 * replayed: a command in the container replaces /run/omni/agent.sock (the
 * host's runtime directory, bind-mounted read-write) and the next command
 * of the session must not run anywhere but in that container.
 *
 *   symlink to a host socket      a listening socket of the host (standing
 *                                 for another session's control socket):
 *                                 the command fails with -EPERM and the
 *                                 host socket never sees a connection
 *   symlink to another container  the agent.sock of a second session: the
 *                                 command fails, nothing runs in the other
 *                                 container
 *   a second agent in the box     a process of the container binds its own
 *                                 socket at the name: it is not the init we
 *                                 started (SO_PEERCRED), so it is refused
 *
 * The suite is backend_docker (test_docker.c declares it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "docker_helpers.h"
#include "helpers.h"
#include "omni/omni.h"

/* A non-blocking listening socket at path; the test checks later that
 * nobody connected. */
static int host_listener(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	cr_assert(fd >= 0);
	cr_assert(strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	cr_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "%s",
	          strerror(errno));
	cr_assert(listen(fd, 8) == 0);
	return fd;
}

/* Run command in the session; its result code (0, or -errno when the
 * backend refused), with *code the command's exit status. */
static int try_cmd(struct omni_backend *b, const char *command, int *code)
{
	struct omni_command_result res;
	int rc = omni_backend_execute_command(b, command, 30, &res);

	*code = rc == 0 ? res.exit_code : -1;
	if (rc == 0)
		omni_command_result_finish(&res);
	return rc;
}

Test(backend_docker, agent_socket_swapped_for_a_host_socket)
{
	struct omni_backend *b = dk_started();
	char host_sock[PATH_MAX], marker[PATH_MAX], command[PATH_MAX * 2];
	int code;

	omni_test_fmt(host_sock, sizeof(host_sock), "%s/host.sock", dk_fx.tmp);
	omni_test_fmt(marker, sizeof(marker), "%s/pwned", dk_fx.tmp);
	int lfd = host_listener(host_sock);

	omni_test_fmt(command, sizeof(command),
	              "rm /run/omni/agent.sock && ln -s %s "
	              "/run/omni/agent.sock",
	              host_sock);
	dk_cmd_is(b, command, "");
	int rc = try_cmd(b, "true", &code);
	cr_assert_eq(rc, -EPERM, "rc %d: %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "symlink"), "%s",
	          omni_error_last());
	omni_test_fmt(command, sizeof(command), "touch %s", marker);
	cr_assert_eq(try_cmd(b, command, &code), -EPERM);
	cr_assert(access(marker, F_OK) != 0, "a command ran on the host");
	cr_assert(accept(lfd, NULL, NULL) < 0 && errno == EAGAIN,
	          "the daemon connected to the host socket");
	close(lfd);
}

Test(backend_docker, agent_socket_swapped_for_another_container)
{
	struct omni_backend *a = dk_started();
	struct omni_backend_options o;
	char other[64], other_sock[PATH_MAX], command[PATH_MAX * 2];
	char other_host[PATH_MAX], marker[PATH_MAX + 16];
	int code;

	omni_test_project_id(other, sizeof(other), "dk2");
	snprintf(dk_fx.name2, sizeof(dk_fx.name2), "omniagents-%s", other);
	dk_default_opts(&o);
	omni_assert_ok(omni_docker_backend_new(&dk_fx.b[1], other, &o, NULL));
	omni_assert_ok(omni_backend_start(dk_fx.b[1]));
	omni_test_fmt(other_sock, sizeof(other_sock), "%s/docker-%s/agent.sock",
	              dk_fx.run, other);
	omni_test_fmt(other_host, sizeof(other_host), "%s/%s", dk_fx.data,
	              other);
	cr_assert(access(other_sock, F_OK) == 0);

	omni_test_fmt(command, sizeof(command),
	              "rm /run/omni/agent.sock && ln -s %s "
	              "/run/omni/agent.sock",
	              other_sock);
	dk_cmd_is(a, command, "");
	cr_assert_eq(try_cmd(a, "touch /workspace/pwned", &code), -EPERM, "%s",
	             omni_error_last());
	snprintf(marker, sizeof(marker), "%s/pwned", other_host);
	cr_assert(access(marker, F_OK) != 0,
	          "the command ran in the other container");
	/* The other session is untouched and still works. */
	dk_cmd_is(dk_fx.b[1], "echo fine", "fine\n");
}

Test(backend_docker, agent_socket_served_by_another_process)
{
	struct omni_backend *b = dk_started();
	int code;

	/* A second omni-agent, started from inside the container, takes
	 * over the name; it is not the container's init. */
	dk_cmd_is(b,
	          "rm /run/omni/agent.sock; "
	          "setsid /omni-agent --listen /run/omni/agent.sock "
	          "</dev/null >/dev/null 2>&1 & "
	          "for i in 1 2 3 4 5 6 7 8 9 10; do "
	          "[ -S /run/omni/agent.sock ] && break; sleep 0.2; done",
	          "");
	int rc = try_cmd(b, "true", &code);
	cr_assert_eq(rc, -EPERM, "rc %d: %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "not by the omni-agent"), "%s",
	          omni_error_last());
}
