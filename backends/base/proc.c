/*
 * backends/base/proc.c - run a command as a local process group (see proc.h).
 *
 * Design. A command is started with posix_spawn (never fork: the daemon is
 * multithreaded) into a process group of its own, or a session of its own
 * with a pseudo-terminal as controlling terminal when a tty is asked for.
 * omni_proc_wait() is the pump: one poll() loop over the output
 * descriptors, a pidfd that becomes readable when the main process exits,
 * and the deadline. While it runs, other threads may write to stdin, send
 * signals or resize the terminal; those touch only the stdin descriptor
 * (under in_lock) and the process group id, which never changes.
 *
 * End of a command. When the main process exits, the output that is
 * already in the pipes is read, then what is left of the process group is
 * killed (a background child must not outlive the command and keep its
 * pipes open), and the pipes are read to EOF, for at most LINGER_MS more
 * if a descendant escaped the group. A timeout kills the whole group with
 * SIGKILL and reports exit code 124.
 *
 * PID 1. Inside a container omni-agent is init and reaps every child
 * itself; in reaper mode this module does not call waitpid() but takes the
 * statuses that omni_proc_reaped() posts (a small table under a mutex).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base/env.h"
#include "base/clock.h"
#include "omni/error.h"
#include "omni/ipc.h"
#include "omni/proc.h"

extern char **environ;

#define READ_CHUNK (64 * 1024)
#define LINGER_MS  300

struct omni_proc {
	pid_t pid;
	int pidfd;
	int out_fd,
	    err_fd; /* read ends; out_fd is the pty master in tty mode */
	int in_fd;  /* write end of stdin (or the master), -1 if none */
	bool tty;
	pthread_mutex_t in_lock;
	unsigned int timeout_ms;
	/* Set when the program could not be started: reported as output. */
	char *fail_msg;
	int fail_code;
	/* Read by omni_proc_signal() from other threads while the pump
	 * sets it: atomic. */
	_Atomic bool reaped;
	int wstatus;
};

/* --- reaper mode ---------------------------------------------------------- */

#define REAPED_SLOTS 256

static bool reaper_mode;
static pthread_mutex_t reaper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reaper_cond = PTHREAD_COND_INITIALIZER;
static struct {
	pid_t pid;
	int status;
} reaped[REAPED_SLOTS];
static unsigned int reaped_next;

void omni_proc_set_reaper_mode(bool on)
{
	reaper_mode = on;
}

void omni_proc_reaped(pid_t pid, int status)
{
	pthread_mutex_lock(&reaper_lock);
	reaped[reaped_next].pid = pid;
	reaped[reaped_next].status = status;
	reaped_next = (reaped_next + 1) % REAPED_SLOTS;
	pthread_cond_broadcast(&reaper_cond);
	pthread_mutex_unlock(&reaper_lock);
}

/* Take pid's status from the table; wait up to ms (-1: forever). */
static bool reaper_take(pid_t pid, int *status, int ms)
{
	struct timespec until;
	bool found = false;

	clock_gettime(CLOCK_REALTIME, &until);
	if (ms >= 0) {
		until.tv_sec += ms / 1000;
		until.tv_nsec += (long)(ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&reaper_lock);
	for (;;) {
		for (unsigned int i = 0; i < REAPED_SLOTS; i++) {
			if (reaped[i].pid == pid) {
				*status = reaped[i].status;
				reaped[i].pid = 0;
				found = true;
				break;
			}
		}
		if (found)
			break;
		if (ms < 0) {
			pthread_cond_wait(&reaper_cond, &reaper_lock);
		} else if (pthread_cond_timedwait(&reaper_cond, &reaper_lock,
		                                  &until) == ETIMEDOUT) {
			break;
		}
	}
	pthread_mutex_unlock(&reaper_lock);
	return found;
}

/* Non-blocking: has the main process ended? Records its status. */
static bool proc_try_reap(struct omni_proc *p, int block_ms)
{
	if (p->reaped)
		return true;
	if (reaper_mode) {
		p->reaped = reaper_take(p->pid, &p->wstatus, block_ms);
		return p->reaped;
	}
	int st;
	pid_t r;
	do {
		r = waitpid(p->pid, &st, block_ms < 0 ? 0 : WNOHANG);
	} while (r < 0 && errno == EINTR);
	if (r == p->pid) {
		p->reaped = true;
		p->wstatus = st;
	} else if (r < 0 && errno == ECHILD) {
		/* Someone else reaped it; we cannot know how it ended. */
		p->reaped = true;
		p->wstatus = 0;
	}
	return p->reaped;
}

/* --- spawning ----------------------------------------------------------- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int set_winsize(int fd, unsigned short rows, unsigned short cols)
{
	struct winsize ws = { .ws_row = rows ? rows : 24,
		              .ws_col = cols ? cols : 80 };

	if (ioctl(fd, TIOCSWINSZ, &ws) < 0)
		return -errno;
	return 0;
}

/* A proc that never ran: ends with code and message on stderr. */
static void proc_set_failed(struct omni_proc *p, int code, const char *what,
                            int err)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%s: %s\n", what,
	         err == ENOENT ? "command not found" : strerror(err));
	p->fail_msg = strdup(msg);
	p->fail_code = code;
	p->reaped = true;
	p->wstatus = 0;
}

int omni_proc_spawn(struct omni_proc **out, const struct omni_exec_request *req,
                    int dir_fd)
{
	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, inp[2] = { -1, -1 };
	int master = -1, rc = 0;
	char slave[128];
	char **env = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_ok = false, attr_ok = false;
	struct omni_proc *p;

	*out = NULL;
	if ((req->argv == NULL || req->argv[0] == NULL) && req->shell == NULL)
		return omni_error_set(-EINVAL, "exec: no command given");
	p = calloc(1, sizeof(*p));
	if (!p)
		return omni_error_set(-ENOMEM, "exec: out of memory");
	p->pid = -1;
	p->pidfd = p->out_fd = p->err_fd = p->in_fd = -1;
	p->tty = req->tty;
	p->timeout_ms = req->timeout_ms;
	pthread_mutex_init(&p->in_lock, NULL);

	if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
		rc = -rc;
		goto fail;
	}
	fa_ok = true;
	if ((rc = posix_spawnattr_init(&attr)) != 0) {
		rc = -rc;
		goto fail;
	}
	attr_ok = true;

	if (req->tty) {
		master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
		    ptsname_r(master, slave, sizeof(slave)) != 0) {
			rc = omni_error_set_errno(-errno,
			                          "exec: pseudo-terminal");
			goto fail;
		}
		set_winsize(master, req->rows, req->cols);
		/* setsid() runs before the file actions, so opening the slave
		 * makes it the controlling terminal of the new session. */
		posix_spawn_file_actions_addopen(&fa, 0, slave, O_RDWR, 0);
		posix_spawn_file_actions_adddup2(&fa, 0, 1);
		posix_spawn_file_actions_adddup2(&fa, 0, 2);
	} else {
		if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
			rc = omni_error_set_errno(-errno, "exec: pipe");
			goto fail;
		}
		posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
		posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
		if (req->want_stdin) {
			if (pipe2(inp, O_CLOEXEC) < 0) {
				rc = omni_error_set_errno(-errno, "exec: pipe");
				goto fail;
			}
			posix_spawn_file_actions_adddup2(&fa, inp[0], 0);
		} else {
			posix_spawn_file_actions_addopen(&fa, 0, "/dev/null",
			                                 O_RDONLY, 0);
		}
	}
	if (dir_fd >= 0)
		posix_spawn_file_actions_addfchdir_np(&fa, dir_fd);

	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	if (req->tty) {
		flags |= POSIX_SPAWN_SETSID;
	} else {
		flags |= POSIX_SPAWN_SETPGROUP;
		posix_spawnattr_setpgroup(&attr, 0);
	}
	posix_spawnattr_setflags(&attr, flags);

	env = (char **)omni__env_merge((const char *const *)environ, req->env);
	if (!env) {
		rc = omni_error_set(-ENOMEM, "exec: out of memory");
		goto fail;
	}

	pid_t pid;
	int err;
	if (req->argv && req->argv[0]) {
		err = posix_spawnp(&pid, req->argv[0], &fa, &attr,
		                   (char *const *)req->argv, env);
	} else {
		char *const argv[] = { "/bin/sh", "-c", (char *)req->shell,
			               NULL };
		err = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, env);
	}
	if (err != 0) {
		const char *what = req->argv ? req->argv[0] : "/bin/sh";
		if (err == ENOENT || err == ENOTDIR)
			proc_set_failed(p, 127, what, ENOENT);
		else if (err == EACCES || err == ENOEXEC || err == EISDIR ||
		         err == EPERM)
			proc_set_failed(p, 126, what, err);
		else {
			rc = omni_error_set_errno(-err, "exec: cannot start %s",
			                          what);
			goto fail;
		}
		if (!p->fail_msg) {
			rc = omni_error_set(-ENOMEM, "exec: out of memory");
			goto fail;
		}
	} else {
		p->pid = pid;
		p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		/* Without pidfds (old kernels, some seccomp profiles), the
		 * pump polls the exit every few milliseconds instead. */
	}

	if (req->tty) {
		p->out_fd = master;
		p->in_fd = dup(master);
		if (p->in_fd >= 0)
			fcntl(p->in_fd, F_SETFD, FD_CLOEXEC);
		master = -1;
	} else {
		p->out_fd = outp[0];
		p->err_fd = errp[0];
		p->in_fd = inp[1];
		outp[0] = errp[0] = inp[1] = -1;
	}
	if (p->fail_msg) {
		/* Nothing runs: the pump reports the message and the code. */
		close_fd(&p->out_fd);
		close_fd(&p->err_fd);
		close_fd(&p->in_fd);
	}
	rc = 0;
	*out = p;
	p = NULL;
fail:
	close_fd(&outp[0]);
	close_fd(&outp[1]);
	close_fd(&errp[0]);
	close_fd(&errp[1]);
	close_fd(&inp[0]);
	close_fd(&inp[1]);
	close_fd(&master);
	free(env);
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_ok)
		posix_spawnattr_destroy(&attr);
	if (p)
		omni_proc_free(p);
	return rc;
}

pid_t omni_proc_pid(const struct omni_proc *p)
{
	return p->pid > 0 ? p->pid : 0;
}

/* --- the pump ------------------------------------------------------------- */

/* Read once from *fd; deliver; close on EOF. Returns bytes read, 0 on EOF
 * or EAGAIN, and marks *stopped when the callback asks to stop. */
static ssize_t pump_fd(int *fd, int stream, omni_output_cb cb, void *payload,
                       char *chunk, bool *stopped)
{
	ssize_t n;

	do {
		n = read(*fd, chunk, READ_CHUNK);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return 0;
	if (n <= 0) {
		/* EOF, or EIO from a pty master whose slave is closed. */
		close_fd(fd);
		return 0;
	}
	if (!*stopped && cb && cb(stream, chunk, (size_t)n, payload) != 0)
		*stopped = true;
	return n;
}

static void kill_group(struct omni_proc *p, int sig)
{
	if (p->pid > 0)
		kill(-p->pid, sig);
}

int omni_proc_wait(struct omni_proc *p, omni_output_cb cb, void *payload,
                   struct omni_exec_status *status)
{
	bool timed_out = false, stopped = false, killed_rest = false;
	long long deadline = p->timeout_ms ? omni__now_ms() + p->timeout_ms : 0;
	long long linger_until = 0;
	char *chunk;

	memset(status, 0, sizeof(*status));
	if (p->fail_msg) {
		if (cb)
			cb(OMNI_EXEC_STDERR, p->fail_msg, strlen(p->fail_msg),
			   payload);
		status->exit_code = p->fail_code;
		return 0;
	}
	chunk = malloc(READ_CHUNK);
	if (!chunk)
		return omni_error_set(-ENOMEM, "exec: out of memory");

	for (;;) {
		bool exited = proc_try_reap(p, 0);

		if (exited && !killed_rest) {
			/* Drain what the main process left in the pipes,
			 * then end the rest of its group. */
			int fds[2] = { p->out_fd, p->err_fd };
			for (int i = 0; i < 2; i++) {
				if (fds[i] < 0)
					continue;
				fcntl(fds[i], F_SETFL,
				      fcntl(fds[i], F_GETFL) | O_NONBLOCK);
			}
			while (p->out_fd >= 0 &&
			       pump_fd(&p->out_fd, OMNI_EXEC_STDOUT, cb,
			               payload, chunk, &stopped) > 0)
				;
			while (p->err_fd >= 0 &&
			       pump_fd(&p->err_fd, OMNI_EXEC_STDERR, cb,
			               payload, chunk, &stopped) > 0)
				;
			kill_group(p, SIGKILL);
			killed_rest = true;
			linger_until = omni__now_ms() + LINGER_MS;
		}
		if (exited && p->out_fd < 0 && p->err_fd < 0)
			break;

		struct pollfd pfd[3];
		int n = 0, out_i = -1, err_i = -1, pid_i = -1;
		if (p->out_fd >= 0) {
			out_i = n;
			pfd[n++] = (struct pollfd){ .fd = p->out_fd,
				                    .events = POLLIN };
		}
		if (p->err_fd >= 0) {
			err_i = n;
			pfd[n++] = (struct pollfd){ .fd = p->err_fd,
				                    .events = POLLIN };
		}
		if (!exited && p->pidfd >= 0) {
			pid_i = n;
			pfd[n++] =
			    (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
		}

		long long now = omni__now_ms();
		int wait_ms = -1;
		if (!exited && p->pidfd < 0)
			wait_ms = 10;
		if (!exited && deadline && !timed_out) {
			long long left = deadline - now;
			if (left <= 0) {
				kill_group(p, SIGKILL);
				timed_out = true;
				continue;
			}
			if (wait_ms < 0 || left < wait_ms)
				wait_ms = (int)left;
		}
		if (exited) {
			long long left = linger_until - now;
			if (left <= 0) {
				/* A descendant left the group and holds the
				 * pipes: stop waiting for it. */
				close_fd(&p->out_fd);
				close_fd(&p->err_fd);
				break;
			}
			wait_ms = (int)left;
		}

		int r = poll(pfd, (nfds_t)n, wait_ms);
		if (r < 0 && errno != EINTR) {
			int err = -errno;
			free(chunk);
			return omni_error_set_errno(err, "exec: poll");
		}
		if (r <= 0)
			continue;
		if (out_i >= 0 && pfd[out_i].revents)
			pump_fd(&p->out_fd, OMNI_EXEC_STDOUT, cb, payload,
			        chunk, &stopped);
		if (err_i >= 0 && pfd[err_i].revents)
			pump_fd(&p->err_fd, OMNI_EXEC_STDERR, cb, payload,
			        chunk, &stopped);
		if (pid_i >= 0 && pfd[pid_i].revents)
			proc_try_reap(p, reaper_mode ? 1000 : 0);
		if (stopped && !p->reaped) {
			/* The consumer is gone: end the command. */
			kill_group(p, SIGKILL);
		}
	}
	free(chunk);

	if (!p->reaped)
		proc_try_reap(p, -1);
	if (timed_out) {
		status->timed_out = true;
		status->exit_code = 124;
		if (WIFSIGNALED(p->wstatus))
			status->signal = WTERMSIG(p->wstatus);
	} else if (WIFSIGNALED(p->wstatus)) {
		status->signal = WTERMSIG(p->wstatus);
		status->exit_code = 128 + status->signal;
	} else {
		status->exit_code = WEXITSTATUS(p->wstatus);
	}
	return 0;
}

/* --- control from other threads ------------------------------------------- */

int omni_proc_input(struct omni_proc *p, const void *data, size_t len)
{
	int rc = 0;

	pthread_mutex_lock(&p->in_lock);
	if (p->in_fd < 0) {
		rc = -EPIPE;
	} else if (len == 0) {
		if (p->tty) {
			/* A terminal has no EOF of its own: send the EOF
			 * character, as a typing user would. */
			struct termios t;
			unsigned char eof = 4;
			if (tcgetattr(p->in_fd, &t) == 0 && t.c_cc[VEOF])
				eof = t.c_cc[VEOF];
			rc = omni_ipc_write_all(p->in_fd, &eof, 1);
		} else {
			close_fd(&p->in_fd);
		}
	} else {
		rc = omni_ipc_write_all(p->in_fd, data, len);
	}
	pthread_mutex_unlock(&p->in_lock);
	if (rc < 0)
		omni_error_set_errno(rc, "exec: stdin");
	return rc;
}

int omni_proc_signal(struct omni_proc *p, int sig)
{
	if (p->pid <= 0 || p->reaped)
		return omni_error_set(-ESRCH, "exec: the command has ended");
	if (kill(-p->pid, sig) < 0)
		return omni_error_set_errno(-errno, "exec: kill");
	return 0;
}

int omni_proc_resize(struct omni_proc *p, unsigned short rows,
                     unsigned short cols)
{
	int rc;

	if (!p->tty)
		return omni_error_set(-ENOTTY,
		                      "exec: the command has no terminal");
	pthread_mutex_lock(&p->in_lock);
	rc = p->in_fd >= 0 ? set_winsize(p->in_fd, rows, cols) : -EBADF;
	pthread_mutex_unlock(&p->in_lock);
	if (rc < 0)
		return omni_error_set_errno(rc, "exec: resize");
	return 0;
}

void omni_proc_free(struct omni_proc *p)
{
	if (!p)
		return;
	if (p->pid > 0 && !p->reaped) {
		kill_group(p, SIGKILL);
		proc_try_reap(p, reaper_mode ? 2000 : -1);
	}
	close_fd(&p->out_fd);
	close_fd(&p->err_fd);
	close_fd(&p->in_fd);
	close_fd(&p->pidfd);
	pthread_mutex_destroy(&p->in_lock);
	free(p->fail_msg);
	free(p);
}
