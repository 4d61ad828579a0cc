/*
 * agent.c - omni-agent: the init process of a docker backend container,
 * serving the exec wire protocol (omni/ipc.h) on a Unix socket.
 *
 *	omni-agent --listen SOCKETPATH [--workdir DIR] [--mode OCTAL]
 *	omni-agent mux [--socket SOCKETPATH]   (agent_mux.c)
 *
 * The docker backend bind-mounts this static binary read-only into the
 * container and makes it the container's main process; the socket lives in
 * a host directory that is bind-mounted too, so the omnifs daemon connects
 * to it directly and a command costs a fork and exec inside the container
 * (no `docker exec`), under the container's isolation, user and limits.
 *
 * Design. libc only, linked statically with libomni-base.a (ipc.c,
 * ipc_server.c, socket.c, proc.c, error.c, log.c), so it runs in any image
 * of the host's architecture (busybox included). Commands run through proc.c
 *exactly as the local backend runs them: own process group (or session and pty
 *for -t), stdin, timeout, 127/126 for missing or non-executable programs.
 *
 * PID 1. All signals the agent cares about are blocked in every thread and
 * taken by the main thread with sigwaitinfo(): SIGCHLD reaps every child with
 * waitpid(-1) and posts the statuses to proc.c (reaper mode: proc.c does
 * not wait itself, or the two would steal each other's children), which
 * also buries orphans re-parented to us; SIGTERM and SIGINT kill every
 * running command's process group and exit 0 at once, so `docker stop`
 * does not wait for its 10 s grace period. Handlers are installed for
 * SIGTERM and SIGINT as well, because the kernel drops signals that PID 1
 * leaves at their default action. Outside a container (tests) the agent
 * makes itself a child subreaper so orphans come to it the same way.
 *
 * Protocol. The server of omni/ipc_server.h, shared with fs/ctl.c (which
 * runs commands through a backend instead): per connection a thread reads
 * the first frame; EXEC runs a command, CONTROL "ping" answers "pong" (a
 * readiness probe), FILES makes the connection a file session on the
 * workspace (agent_files.c, omni/ipc_files.h). During a command a reader thread
 *takes STDIN, SIGNAL and RESIZE frames while the connection thread pumps
 *output; a client that leaves before EXIT gets its command killed. This file
 *gives the server its commands: proc.c processes, started in the directory of
 *the CWD field, an absolute path in the container or one relative to
 * --workdir (default /workspace); a missing directory is an ERROR frame
 * with -ENOENT.
 *
 * The socket's mode. The socket is made mode 0666 by default (--mode to
 * change). What protects it is the host directory holding it, which is
 * private (0700) to the daemon's user: nobody else on the host can reach
 * the socket. Inside the container every process already runs as the
 * container's user and may run any command it likes, so the socket gives
 * it nothing new; and the open mode keeps the daemon able to connect
 * whatever uid the container runs as (the caller's, root, or a remapped
 * one under user namespaces), where 0600 would only work when the uids
 * happen to match. Peer credentials are not checked for the same reason:
 * across a user namespace they do not name the host user anyway.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_files.h"
#include "omni/error.h"
#include "omni/ipc.h"
#include "omni/ipc_server.h"
#include "omni/log.h"
#include "omni/omni.h"
#include "omni/proc.h"

#include "agent_mux.h"

static const char *socket_path;
static const char *workdir = "/workspace";
static mode_t socket_mode = 0666;

/* Set before the signal loop starts; read by it alone afterwards. */
static struct omni__ipc_server *server;

/* --- serving a command: the server's ops over omni/proc.h ------------------
 */

/* Open the command's directory: absolute, or relative to --workdir. */
static int open_cwd(const char *cwd)
{
	char path[PATH_MAX];
	int n, fd;

	if (!cwd || !*cwd)
		n = snprintf(path, sizeof(path), "%s", workdir);
	else if (cwd[0] == '/')
		n = snprintf(path, sizeof(path), "%s", cwd);
	else
		n = snprintf(path, sizeof(path), "%s/%s", workdir, cwd);
	if (n < 0 || (size_t)n >= sizeof(path))
		return omni_error_set(-ENAMETOOLONG, "directory name too long");
	fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return omni_error_set_errno(-errno, "directory %s", path);
	return fd;
}

/* The command: a proc (omni/proc.h) as the server's struct omni_exec. */
static int agent_exec_start(void *payload, const struct omni_exec_request *req,
                            struct omni_exec **handle, uint32_t *pid)
{
	int dir_fd, rc;

	(void)payload;
	dir_fd = open_cwd(req->cwd);
	if (dir_fd < 0)
		return dir_fd;
	rc = omni__proc_exec_spawn(handle, NULL, req, dir_fd, NULL);
	close(dir_fd);
	if (rc < 0)
		return rc;
	*pid = (uint32_t)omni__proc_exec_pid(*handle);
	return 0;
}

static void agent_control(void *payload, struct omni__ipc_conn *conn,
                          const char *request)
{
	(void)payload;
	(void)request;
	omni__ipc_conn_reply(conn, EINVAL, "omni-agent answers only \"ping\"");
}

/* A file session (omni/ipc_files.h): agent_files.c, beneath --workdir. */
static void agent_files(void *payload, int fd, const unsigned char *data,
                        size_t len)
{
	(void)payload;
	omni__agent_files_serve(fd, workdir, data, len);
}

static const struct omni__ipc_server_ops agent_ops = {
	.exec_start = agent_exec_start,
	.exec_wait = omni__proc_exec_wait,
	.exec_input = omni__proc_exec_input,
	.exec_signal = omni__proc_exec_signal,
	.exec_resize = omni__proc_exec_resize,
	.exec_free = omni__proc_exec_free,
	.control = agent_control,
	.files = agent_files,
};

/* --- signals: reaping and stopping ---------------------------------------- */

static void reap_children(void)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			break;
		omni_proc_reaped(pid, status);
	}
}

static void stop_now(int sig)
{
	omni__ipc_server_kill_all(server);
	omni_log(OMNI_LOG_INFO, "signal %d: commands killed, exiting", sig);
	unlink(socket_path);
	_exit(0);
}

/* The main thread's loop, once the server runs: every signal the agent
 * cares about is blocked in all threads and taken here. */
static void signal_loop(const sigset_t *set)
{
	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(set, &info);

		if (sig < 0)
			continue;
		if (sig == SIGCHLD)
			reap_children();
		else if (sig == SIGTERM || sig == SIGINT)
			stop_now(sig);
	}
}

static void on_signal(int sig)
{
	/* Never runs (the signals are blocked everywhere); its presence
	 * keeps PID 1 from dropping them. */
	(void)sig;
}

/* --- start-up ------------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("Usage: omni-agent --listen SOCKETPATH [--workdir DIR] "
	      "[--mode OCTAL]\n"
	      "       omni-agent mux [--socket SOCKETPATH]\n"
	      "\n"
	      "The init process of an omnifs docker container: reaps "
	      "children, stops at\n"
	      "once on SIGTERM, and runs the commands of the omnifs daemon "
	      "that connects\n"
	      "to SOCKETPATH (the exec wire protocol of omni-exec).\n"
	      "With mux: carry the channels of one docker exec stream on "
	      "stdin/stdout\n"
	      "to SOCKETPATH (agent mode: no bind mounts).\n"
	      "\n"
	      "  -l, --listen PATH   the Unix socket to serve\n"
	      "  -w, --workdir DIR   where relative command directories start "
	      "(default\n"
	      "                      /workspace)\n"
	      "  -m, --mode OCTAL    the socket's mode (default 0666; the "
	      "directory holding\n"
	      "                      it is what keeps others out)\n"
	      "  -h, --help          show this help and exit\n"
	      "  -V, --version       show the version and exit\n",
	      f);
}

/* The command line into the statics above. Returns -1 to go on, or the
 * exit status. */
static int parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "mode", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "l:w:m:hV", opts, NULL)) != -1) {
		char *end;

		switch (c) {
		case 'l':
			socket_path = optarg;
			break;
		case 'w':
			workdir = optarg;
			break;
		case 'm':
			socket_mode = (mode_t)strtoul(optarg, &end, 8);
			if (*optarg == '\0' || *end != '\0' ||
			    socket_mode > 0777) {
				fprintf(stderr, "omni-agent: bad mode '%s'\n",
				        optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("omni-agent %s\n", OMNI_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!socket_path || optind != argc) {
		fprintf(stderr, "omni-agent: %s\n",
		        socket_path ? "unexpected argument"
		                    : "--listen SOCKETPATH is required");
		usage(stderr);
		return 2;
	}
	return -1;
}

int main(int argc, char **argv)
{
	static sigset_t set;
	struct sigaction sa = { .sa_handler = on_signal };
	struct omni__ipc_server_config cfg = {
		.name = "agent",
		.ops = &agent_ops,
		/* Anything in the container can connect; idle connections
		 * are pushed out before the daemon's are refused. */
		.max_conns = 512,
	};
	int rc, fd;

	omni_log_set_prefix("omni-agent");
	/* Agent mode of the docker backend: the stream end (agent_mux.c). */
	if (argc > 1 && strcmp(argv[1], "mux") == 0)
		return omni__agent_mux_main(argc - 1, argv + 1);
	if ((rc = parse_args(argc, argv)) >= 0)
		return rc;

	/* Before any thread: every thread inherits this mask, and only the
	 * main thread's signal loop takes them. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	omni_proc_set_reaper_mode(true);
	if (getpid() != 1)
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

	/* A socket left by a previous run of the container is stale. */
	fd = omni__unix_listen(socket_path, socket_mode,
	                       OMNI__UNIX_STALE_REMOVE, NULL);
	if (fd < 0) {
		fprintf(stderr, "omni-agent: %s\n", omni_error_last());
		return 1;
	}
	if (omni__ipc_server_start(&server, fd, &cfg) < 0) {
		fprintf(stderr, "omni-agent: %s\n", omni_error_last());
		unlink(socket_path);
		return 1;
	}
	omni_log(OMNI_LOG_INFO, "serving %s (workdir %s)", socket_path,
	         workdir);
	signal_loop(&set);
	return 0;
}
