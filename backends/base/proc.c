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
 * As a command. struct proc_exec puts a proc behind a struct omni_exec,
 * for the local backend's ops table and omni-agent's exec server, which
 * both run commands as procs.
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

#include "base/clock.h"
#include "base/env.h"
#include "omni/error.h"
#include "omni/ipc.h"
#include "omni/proc.h"
#include "omni/sys/backend_impl.h"

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

/* What omni_proc_spawn() holds while it sets up: freed by spawn_finish(). */
struct spawn {
	int outp[2], errp[2], inp[2];
	int master;
	char **env;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_ok, attr_ok;
};

static void spawn_finish(struct spawn *sp)
{
	close_fd(&sp->outp[0]);
	close_fd(&sp->outp[1]);
	close_fd(&sp->errp[0]);
	close_fd(&sp->errp[1]);
	close_fd(&sp->inp[0]);
	close_fd(&sp->inp[1]);
	close_fd(&sp->master);
	free(sp->env);
	if (sp->fa_ok)
		posix_spawn_file_actions_destroy(&sp->fa);
	if (sp->attr_ok)
		posix_spawnattr_destroy(&sp->attr);
}

/* The child's streams on a new pseudo-terminal. */
static int spawn_tty(struct spawn *sp, const struct omni_exec_request *req)
{
	char slave[128];

	sp->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (sp->master < 0 || grantpt(sp->master) < 0 ||
	    unlockpt(sp->master) < 0 ||
	    ptsname_r(sp->master, slave, sizeof(slave)) != 0)
		return omni_error_set_errno(-errno, "exec: pseudo-terminal");
	set_winsize(sp->master, req->rows, req->cols);
	/* setsid() runs before the file actions, so opening the slave makes
	 * it the controlling terminal of the new session. */
	posix_spawn_file_actions_addopen(&sp->fa, 0, slave, O_RDWR, 0);
	posix_spawn_file_actions_adddup2(&sp->fa, 0, 1);
	posix_spawn_file_actions_adddup2(&sp->fa, 0, 2);
	return 0;
}

/* The child's streams on pipes; stdin from /dev/null unless wanted. */
static int spawn_pipes(struct spawn *sp, const struct omni_exec_request *req)
{
	if (pipe2(sp->outp, O_CLOEXEC) < 0 || pipe2(sp->errp, O_CLOEXEC) < 0)
		return omni_error_set_errno(-errno, "exec: pipe");
	posix_spawn_file_actions_adddup2(&sp->fa, sp->outp[1], 1);
	posix_spawn_file_actions_adddup2(&sp->fa, sp->errp[1], 2);
	if (req->want_stdin) {
		if (pipe2(sp->inp, O_CLOEXEC) < 0)
			return omni_error_set_errno(-errno, "exec: pipe");
		posix_spawn_file_actions_adddup2(&sp->fa, sp->inp[0], 0);
	} else {
		posix_spawn_file_actions_addopen(&sp->fa, 0, "/dev/null",
		                                 O_RDONLY, 0);
	}
	return 0;
}

/* File actions, attributes (own group or session, default signals) and
 * environment of the child: base with the request's variables on top. */
static int spawn_prepare(struct spawn *sp, const struct omni_exec_request *req,
                         int dir_fd, const char *const *base)
{
	int rc;

	if ((rc = posix_spawn_file_actions_init(&sp->fa)) != 0)
		return -rc;
	sp->fa_ok = true;
	if ((rc = posix_spawnattr_init(&sp->attr)) != 0)
		return -rc;
	sp->attr_ok = true;

	rc = req->tty ? spawn_tty(sp, req) : spawn_pipes(sp, req);
	if (rc < 0)
		return rc;
	if (dir_fd >= 0)
		posix_spawn_file_actions_addfchdir_np(&sp->fa, dir_fd);

	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&sp->attr, &none);
	posix_spawnattr_setsigdefault(&sp->attr, &all);
	short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
	if (req->tty) {
		flags |= POSIX_SPAWN_SETSID;
	} else {
		flags |= POSIX_SPAWN_SETPGROUP;
		posix_spawnattr_setpgroup(&sp->attr, 0);
	}
	posix_spawnattr_setflags(&sp->attr, flags);

	sp->env = (char **)omni__env_merge(base, req->env);
	if (!sp->env)
		return omni_error_set(-ENOMEM, "exec: out of memory");
	return 0;
}

/* Start the program. A missing or unrunnable one is not an error: p
 * ends with 127 or 126 and a message, as in a shell. */
static int spawn_run(struct omni_proc *p, struct spawn *sp,
                     const struct omni_exec_request *req)
{
	pid_t pid;
	int err;

	if (req->argv && req->argv[0]) {
		err = posix_spawnp(&pid, req->argv[0], &sp->fa, &sp->attr,
		                   (char *const *)req->argv, sp->env);
	} else {
		char *const argv[] = { "/bin/sh", "-c", (char *)req->shell,
			               NULL };
		err = posix_spawn(&pid, "/bin/sh", &sp->fa, &sp->attr, argv,
		                  sp->env);
	}
	if (err == 0) {
		p->pid = pid;
		p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		/* Without pidfds (old kernels, some seccomp profiles), the
		 * pump polls the exit every few milliseconds instead. */
		return 0;
	}
	const char *what = req->argv ? req->argv[0] : "/bin/sh";
	if (err == ENOENT || err == ENOTDIR)
		proc_set_failed(p, 127, what, ENOENT);
	else if (err == EACCES || err == ENOEXEC || err == EISDIR ||
	         err == EPERM)
		proc_set_failed(p, 126, what, err);
	else
		return omni_error_set_errno(-err, "exec: cannot start %s",
		                            what);
	if (!p->fail_msg)
		return omni_error_set(-ENOMEM, "exec: out of memory");
	return 0;
}

/* Our ends of the child's streams move from sp to p. */
static void spawn_take_fds(struct omni_proc *p, struct spawn *sp, bool tty)
{
	if (tty) {
		p->out_fd = sp->master;
		p->in_fd = dup(sp->master);
		if (p->in_fd >= 0)
			fcntl(p->in_fd, F_SETFD, FD_CLOEXEC);
		sp->master = -1;
	} else {
		p->out_fd = sp->outp[0];
		p->err_fd = sp->errp[0];
		p->in_fd = sp->inp[1];
		sp->outp[0] = sp->errp[0] = sp->inp[1] = -1;
	}
	if (p->fail_msg) {
		/* Nothing runs: the pump reports the message and the code. */
		close_fd(&p->out_fd);
		close_fd(&p->err_fd);
		close_fd(&p->in_fd);
	}
}

int omni_proc_spawn(struct omni_proc **out, const struct omni_exec_request *req,
                    int dir_fd)
{
	return omni_proc_spawn_env(out, req, dir_fd,
	                           (const char *const *)environ);
}

int omni_proc_spawn_env(struct omni_proc **out,
                        const struct omni_exec_request *req, int dir_fd,
                        const char *const *base)
{
	struct spawn sp = {
		.outp = { -1, -1 },
		.errp = { -1, -1 },
		.inp = { -1, -1 },
		.master = -1,
	};
	struct omni_proc *p;
	int rc;

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

	rc = spawn_prepare(&sp, req, dir_fd, base);
	if (rc == 0)
		rc = spawn_run(p, &sp, req);
	if (rc == 0) {
		spawn_take_fds(p, &sp, req->tty);
		*out = p;
		p = NULL;
	}
	spawn_finish(&sp);
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

/* One omni_proc_wait() in progress. */
struct pump {
	struct omni_proc *p;
	omni_output_cb cb;
	void *payload;
	char *chunk;
	bool timed_out, stopped, killed_rest;
	long long deadline, linger_until;
};

/* The main process has exited: drain what it left in the pipes, then end
 * the rest of its group, and linger a little for the pipes' EOF. */
static void pump_drain_and_kill_rest(struct pump *pu)
{
	struct omni_proc *p = pu->p;
	int fds[2] = { p->out_fd, p->err_fd };

	for (int i = 0; i < 2; i++) {
		if (fds[i] < 0)
			continue;
		fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
	}
	while (p->out_fd >= 0 &&
	       pump_fd(&p->out_fd, OMNI_EXEC_STDOUT, pu->cb, pu->payload,
	               pu->chunk, &pu->stopped) > 0)
		;
	while (p->err_fd >= 0 &&
	       pump_fd(&p->err_fd, OMNI_EXEC_STDERR, pu->cb, pu->payload,
	               pu->chunk, &pu->stopped) > 0)
		;
	kill_group(p, SIGKILL);
	pu->killed_rest = true;
	pu->linger_until = omni__now_ms() + LINGER_MS;
}

enum pump_step { PUMP_POLL, PUMP_AGAIN, PUMP_END };

/* How long the next poll() may wait, from the deadline and the linger
 * time. PUMP_AGAIN: the timeout just killed the group; PUMP_END: stop
 * waiting for pipes a descendant holds. */
static enum pump_step pump_wait_ms(struct pump *pu, bool exited, int *wait_ms)
{
	struct omni_proc *p = pu->p;
	long long now = omni__now_ms();

	*wait_ms = -1;
	if (!exited && p->pidfd < 0)
		*wait_ms = 10;
	if (!exited && pu->deadline && !pu->timed_out) {
		long long left = pu->deadline - now;
		if (left <= 0) {
			kill_group(p, SIGKILL);
			pu->timed_out = true;
			return PUMP_AGAIN;
		}
		if (*wait_ms < 0 || left < *wait_ms)
			*wait_ms = (int)left;
	}
	if (exited) {
		long long left = pu->linger_until - now;
		if (left <= 0) {
			/* A descendant left the group and holds the pipes:
			 * stop waiting for it. */
			close_fd(&p->out_fd);
			close_fd(&p->err_fd);
			return PUMP_END;
		}
		*wait_ms = (int)left;
	}
	return PUMP_POLL;
}

/* One poll() over the output, the pidfd and the clock; reads what came. */
static int pump_poll(struct pump *pu, bool exited, int wait_ms)
{
	struct omni_proc *p = pu->p;
	struct pollfd pfd[3];
	int n = 0, out_i = -1, err_i = -1, pid_i = -1;

	if (p->out_fd >= 0) {
		out_i = n;
		pfd[n++] = (struct pollfd){ .fd = p->out_fd, .events = POLLIN };
	}
	if (p->err_fd >= 0) {
		err_i = n;
		pfd[n++] = (struct pollfd){ .fd = p->err_fd, .events = POLLIN };
	}
	if (!exited && p->pidfd >= 0) {
		pid_i = n;
		pfd[n++] = (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
	}

	int r = poll(pfd, (nfds_t)n, wait_ms);
	if (r < 0 && errno != EINTR)
		return omni_error_set_errno(-errno, "exec: poll");
	if (r <= 0)
		return 0;
	if (out_i >= 0 && pfd[out_i].revents)
		pump_fd(&p->out_fd, OMNI_EXEC_STDOUT, pu->cb, pu->payload,
		        pu->chunk, &pu->stopped);
	if (err_i >= 0 && pfd[err_i].revents)
		pump_fd(&p->err_fd, OMNI_EXEC_STDERR, pu->cb, pu->payload,
		        pu->chunk, &pu->stopped);
	if (pid_i >= 0 && pfd[pid_i].revents)
		proc_try_reap(p, reaper_mode ? 1000 : 0);
	if (pu->stopped && !p->reaped) {
		/* The consumer is gone: end the command. */
		kill_group(p, SIGKILL);
	}
	return 0;
}

/* The exit code: the status, 128+N for signal N, 124 for the timeout. */
static void proc_fill_status(const struct omni_proc *p, bool timed_out,
                             struct omni_exec_status *status)
{
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
}

int omni_proc_wait(struct omni_proc *p, omni_output_cb cb, void *payload,
                   struct omni_exec_status *status)
{
	struct pump pu = {
		.p = p,
		.cb = cb,
		.payload = payload,
		.deadline = p->timeout_ms ? omni__now_ms() + p->timeout_ms : 0,
	};
	int rc = 0;

	memset(status, 0, sizeof(*status));
	if (p->fail_msg) {
		if (cb)
			cb(OMNI_EXEC_STDERR, p->fail_msg, strlen(p->fail_msg),
			   payload);
		status->exit_code = p->fail_code;
		return 0;
	}
	pu.chunk = malloc(READ_CHUNK);
	if (!pu.chunk)
		return omni_error_set(-ENOMEM, "exec: out of memory");

	for (;;) {
		bool exited = proc_try_reap(p, 0);
		int wait_ms;

		if (exited && !pu.killed_rest)
			pump_drain_and_kill_rest(&pu);
		if (exited && p->out_fd < 0 && p->err_fd < 0)
			break;
		enum pump_step step = pump_wait_ms(&pu, exited, &wait_ms);
		if (step == PUMP_AGAIN)
			continue;
		if (step == PUMP_END)
			break;
		if ((rc = pump_poll(&pu, exited, wait_ms)) < 0)
			break;
	}
	free(pu.chunk);
	if (rc < 0)
		return rc;

	if (!p->reaped)
		proc_try_reap(p, -1);
	proc_fill_status(p, pu.timed_out, status);
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

/* --- a proc as a struct omni_exec ----------------------------------------- */

struct proc_exec {
	struct omni_exec base;
	struct omni_proc *proc;
};

static struct omni_proc *proc_of(struct omni_exec *e)
{
	return ((struct proc_exec *)e)->proc;
}

int omni__proc_exec_spawn(struct omni_exec **out, struct omni_backend *b,
                          const struct omni_exec_request *req, int dir_fd,
                          const char *const *base_env)
{
	struct proc_exec *e = calloc(1, sizeof(*e));
	int rc;

	if (!e)
		return omni_error_set(-ENOMEM, "exec: out of memory");
	e->base.backend = b;
	rc = base_env ? omni_proc_spawn_env(&e->proc, req, dir_fd, base_env)
	              : omni_proc_spawn(&e->proc, req, dir_fd);
	if (rc < 0) {
		free(e);
		return rc;
	}
	*out = &e->base;
	return 0;
}

pid_t omni__proc_exec_pid(struct omni_exec *e)
{
	return omni_proc_pid(proc_of(e));
}

int omni__proc_exec_wait(struct omni_exec *e, omni_output_cb cb, void *payload,
                         struct omni_exec_status *status)
{
	return omni_proc_wait(proc_of(e), cb, payload, status);
}

int omni__proc_exec_input(struct omni_exec *e, const void *data, size_t len)
{
	return omni_proc_input(proc_of(e), data, len);
}

int omni__proc_exec_signal(struct omni_exec *e, int sig)
{
	return omni_proc_signal(proc_of(e), sig);
}

int omni__proc_exec_resize(struct omni_exec *e, unsigned short rows,
                           unsigned short cols)
{
	return omni_proc_resize(proc_of(e), rows, cols);
}

void omni__proc_exec_free(struct omni_exec *e)
{
	omni_proc_free(proc_of(e));
	free(e);
}
