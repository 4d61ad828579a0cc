/*
 * agent.c - omni-agent: the init process of a docker backend container,
 * serving the exec wire protocol (omni/ipc.h) on a Unix socket.
 *
 *	omni-agent --listen SOCKETPATH [--workdir DIR] [--mode OCTAL]
 *
 * The docker backend bind-mounts this static binary read-only into the
 * container and makes it the container's main process; the socket lives in
 * a host directory that is bind-mounted too, so the omnifs daemon connects
 * to it directly and a command costs a fork and exec inside the container
 * (no `docker exec`), under the container's isolation, user and limits.
 *
 * Design. libc only, linked statically with ipc.c, proc.c, error.c and
 * log.c, so it runs in any image of the host's architecture (busybox
 * included). Commands run through proc.c exactly as the local backend runs
 * them: own process group (or session and pty for -t), stdin, timeout,
 * 127/126 for missing or non-executable programs.
 *
 * PID 1. All signals the agent cares about are blocked in every thread and
 * taken by one thread with sigwaitinfo(): SIGCHLD reaps every child with
 * waitpid(-1) and posts the statuses to proc.c (reaper mode: proc.c does
 * not wait itself, or the two would steal each other's children), which
 * also buries orphans re-parented to us; SIGTERM and SIGINT kill every
 * running command's process group and exit 0 at once, so `docker stop`
 * does not wait for its 10 s grace period. Handlers are installed for
 * SIGTERM and SIGINT as well, because the kernel drops signals that PID 1
 * leaves at their default action. Outside a container (tests) the agent
 * makes itself a child subreaper so orphans come to it the same way.
 *
 * Protocol. Per connection a thread reads the first frame: EXEC runs a
 * command, CONTROL "ping" answers "pong" (a readiness probe). During a
 * command a reader thread takes STDIN, SIGNAL and RESIZE frames while the
 * connection thread pumps output; a client that leaves before EXIT gets
 * its command killed. The CWD field is an absolute path in the container
 * or one relative to --workdir (default /workspace); a missing directory
 * is an ERROR frame with -ENOENT. This mirrors fs/ctl.c, which serves the
 * same protocol through a backend; the two cannot share code, as the
 * agent may not link libomni.
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
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "omni/error.h"
#include "omni/ipc.h"
#include "omni/log.h"
#include "omni/omni.h"
#include "omni/proc.h"

struct conn {
	struct conn *prev, *next; /* under agent_lock */
	int fd;
	pid_t pgid; /* under agent_lock; 0 when none */
	pthread_mutex_t send_lock;
	atomic_bool finished;
};

static const char *socket_path;
static const char *workdir = "/workspace";
static mode_t socket_mode = 0666;

static pthread_mutex_t agent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn *conns;
static bool stopping;

/* --- serving a command ---------------------------------------------------- */

static int send_locked(struct conn *c, uint8_t type, const void *a, size_t alen,
                       const void *b, size_t blen)
{
	int rc;

	pthread_mutex_lock(&c->send_lock);
	rc = omni_ipc_send2(c->fd, type, a, alen, b, blen);
	pthread_mutex_unlock(&c->send_lock);
	return rc;
}

static void send_error(struct conn *c, int err, const char *msg)
{
	pthread_mutex_lock(&c->send_lock);
	omni_ipc_send_error(c->fd, err, msg);
	pthread_mutex_unlock(&c->send_lock);
}

static void send_reply(struct conn *c, unsigned int status, const char *text)
{
	unsigned char st[4] = { (unsigned char)(status >> 24),
		                (unsigned char)(status >> 16),
		                (unsigned char)(status >> 8),
		                (unsigned char)status };

	send_locked(c, OMNI_IPC_REPLY, st, 4, text, strlen(text));
}

static int on_output(int stream, const void *data, size_t len, void *payload)
{
	struct conn *c = payload;

	return send_locked(c,
	                   stream == OMNI_EXEC_STDERR ? OMNI_IPC_STDERR
	                                              : OMNI_IPC_STDOUT,
	                   data, len, NULL, 0) < 0;
}

struct reader_args {
	struct conn *conn;
	struct omni_proc *proc;
};

static void *reader_main(void *arg)
{
	struct reader_args *ra = arg;
	struct conn *c = ra->conn;
	struct omni_ipc_buf buf = { 0 };
	bool stdin_open = true;
	uint8_t type;

	for (;;) {
		if (omni_ipc_recv(c->fd, &type, &buf) <= 0) {
			if (!atomic_load(&c->finished))
				omni_proc_signal(ra->proc, SIGKILL);
			break;
		}
		if (type == OMNI_IPC_STDIN && stdin_open) {
			if (omni_proc_input(ra->proc, buf.data, buf.len) < 0 ||
			    buf.len == 0)
				stdin_open = false;
		} else if (type == OMNI_IPC_SIGNAL && buf.len == 4) {
			uint32_t sig = omni_ipc_get_u32(buf.data);
			if (sig >= 1 && sig < 65)
				omni_proc_signal(ra->proc, (int)sig);
		} else if (type == OMNI_IPC_RESIZE && buf.len == 4) {
			omni_proc_resize(ra->proc, omni_ipc_get_u16(buf.data),
			                 omni_ipc_get_u16(buf.data + 2));
		}
	}
	omni_ipc_buf_finish(&buf);
	return NULL;
}

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

static void serve_exec(struct conn *c, const unsigned char *data, size_t len)
{
	struct omni_ipc_request ir;
	struct omni_exec_status st;
	struct omni_proc *p = NULL;
	struct reader_args ra;
	pthread_t reader;
	bool killed;
	int dir_fd, rc;

	if ((rc = omni_ipc_request_decode(&ir, data, len)) < 0) {
		send_error(c, rc, "malformed EXEC request");
		return;
	}
	dir_fd = open_cwd(ir.cwd);
	if (dir_fd < 0) {
		send_error(c, dir_fd, omni_error_last());
		omni_ipc_request_finish(&ir);
		return;
	}
	struct omni_exec_request req = {
		.argv = (const char *const *)ir.argv,
		.shell = ir.shell,
		.env = (const char *const *)ir.env,
		.timeout_ms = ir.timeout_ms,
		.tty = ir.tty,
		.rows = ir.rows,
		.cols = ir.cols,
		.want_stdin = ir.want_stdin,
	};
	rc = omni_proc_spawn(&p, &req, dir_fd);
	close(dir_fd);
	if (rc < 0) {
		send_error(c, rc, omni_error_last());
		omni_ipc_request_finish(&ir);
		return;
	}

	pthread_mutex_lock(&agent_lock);
	c->pgid = omni_proc_pid(p);
	killed = stopping;
	pthread_mutex_unlock(&agent_lock);
	if (killed)
		omni_proc_signal(p, SIGKILL);

	pthread_mutex_lock(&c->send_lock);
	omni_ipc_send_u32(c->fd, OMNI_IPC_STARTED, (uint32_t)omni_proc_pid(p));
	pthread_mutex_unlock(&c->send_lock);

	ra = (struct reader_args){ .conn = c, .proc = p };
	bool have_reader = pthread_create(&reader, NULL, reader_main, &ra) == 0;
	if (!have_reader)
		omni_proc_signal(p, SIGKILL);

	rc = omni_proc_wait(p, on_output, c, &st);
	atomic_store(&c->finished, true);
	if (have_reader) {
		shutdown(c->fd, SHUT_RD);
		pthread_join(reader, NULL);
	}
	pthread_mutex_lock(&agent_lock);
	c->pgid = 0;
	pthread_mutex_unlock(&agent_lock);
	if (rc < 0)
		send_error(c, rc, omni_error_last());
	omni_proc_free(p);
	if (rc == 0) {
		pthread_mutex_lock(&c->send_lock);
		omni_ipc_send_exit(c->fd, st.exit_code, st.signal,
		                   st.timed_out);
		pthread_mutex_unlock(&c->send_lock);
	}
	omni_ipc_request_finish(&ir);
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct omni_ipc_buf buf = { 0 };
	uint8_t type;

	if (omni_ipc_recv(c->fd, &type, &buf) > 0) {
		if (type == OMNI_IPC_EXEC) {
			serve_exec(c, buf.data, buf.len);
		} else if (type == OMNI_IPC_CONTROL) {
			if (buf.len == 4 && memcmp(buf.data, "ping", 4) == 0)
				send_reply(c, 0, "pong");
			else
				send_reply(c, EINVAL,
				           "omni-agent answers only \"ping\"");
		} else {
			send_error(c, -EPROTO,
			           "expected an EXEC or CONTROL frame");
		}
	}
	omni_ipc_buf_finish(&buf);

	pthread_mutex_lock(&agent_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&agent_lock);
	close(c->fd);
	pthread_mutex_destroy(&c->send_lock);
	free(c);
	return NULL;
}

static void start_conn(int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	pthread_attr_t attr;
	pthread_t t;

	if (!c) {
		omni_ipc_send_error(fd, -ENOMEM, "out of memory");
		close(fd);
		return;
	}
	c->fd = fd;
	pthread_mutex_init(&c->send_lock, NULL);
	atomic_init(&c->finished, false);
	pthread_mutex_lock(&agent_lock);
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	pthread_mutex_unlock(&agent_lock);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, conn_main, c) != 0) {
		omni_log(OMNI_LOG_ERROR, "cannot start a thread");
		pthread_mutex_lock(&agent_lock);
		conns = c->next; /* c is still the head: nothing ran */
		if (conns)
			conns->prev = NULL;
		pthread_mutex_unlock(&agent_lock);
		omni_ipc_send_error(fd, -EAGAIN, "cannot start a thread");
		close(fd);
		pthread_mutex_destroy(&c->send_lock);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

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
	pthread_mutex_lock(&agent_lock);
	stopping = true;
	for (struct conn *c = conns; c; c = c->next)
		if (c->pgid > 0)
			kill(-c->pgid, SIGKILL);
	pthread_mutex_unlock(&agent_lock);
	omni_log(OMNI_LOG_INFO, "signal %d: commands killed, exiting", sig);
	unlink(socket_path);
	_exit(0);
}

static void *signal_main(void *arg)
{
	const sigset_t *set = arg;

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
	return NULL;
}

static void on_signal(int sig)
{
	/* Never runs (the signals are blocked everywhere); its presence
	 * keeps PID 1 from dropping them. */
	(void)sig;
}

/* --- start-up ------------------------------------------------------------- */

static int listen_socket(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(socket_path) >= sizeof(sa.sun_path))
		return omni_error_set(-ENAMETOOLONG, "socket path too long: %s",
		                      socket_path);
	memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
	/* A socket left by a previous run of the container is stale. */
	if (lstat(socket_path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(socket_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return omni_error_set_errno(-errno, "socket");
	/* The file is created with at most this mode (minus the umask),
	 * then set to exactly it. */
	if (fchmod(fd, socket_mode) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(socket_path, socket_mode) < 0 || listen(fd, 128) < 0) {
		int err = -errno;
		close(fd);
		return omni_error_set_errno(err, "cannot listen on %s",
		                            socket_path);
	}
	return fd;
}

static void usage(FILE *f)
{
	fputs("Usage: omni-agent --listen SOCKETPATH [--workdir DIR] "
	      "[--mode OCTAL]\n"
	      "\n"
	      "The init process of an omnifs docker container: reaps "
	      "children, stops at\n"
	      "once on SIGTERM, and runs the commands of the omnifs daemon "
	      "that connects\n"
	      "to SOCKETPATH (the exec wire protocol of omni-exec).\n"
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "mode", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static sigset_t set;
	struct sigaction sa = { .sa_handler = on_signal };
	pthread_t sig_thread;
	int c, fd;

	omni_log_set_prefix("omni-agent");
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

	/* Before any thread: every thread inherits this mask, and only the
	 * signal thread takes them. */
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

	fd = listen_socket();
	if (fd < 0) {
		fprintf(stderr, "omni-agent: %s\n", omni_error_last());
		return 1;
	}
	if (pthread_create(&sig_thread, NULL, signal_main, &set) != 0) {
		fprintf(stderr, "omni-agent: cannot start a thread\n");
		unlink(socket_path);
		return 1;
	}
	omni_log(OMNI_LOG_INFO, "serving %s (workdir %s)", socket_path,
	         workdir);

	for (;;) {
		int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				usleep(100000);
			continue;
		}
		start_conn(cfd);
	}
}
