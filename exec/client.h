/*
 * client.h - the client side of the exec wire protocol (omni/ipc.h), as
 * omni-exec uses it: find the session, connect, run one command with its
 * streams, signals and terminal, or send one CONTROL request.
 *
 * Nothing here is tied to the omnifs daemon: omni__exec_client_run() works
 * on any connected socket that speaks the protocol (omni-agent too), and
 * reports through the io descriptors given, so tests can drive it with
 * pipes and files.
 */
#ifndef OMNI_EXEC_CLIENT_H
#define OMNI_EXEC_CLIENT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <termios.h>

#include "omni/ipc.h"

/* Where a command goes. */
struct omni_exec_target {
	char project[256];
	char socket[PATH_MAX];
	/* The command's directory, workspace-relative ("" is the root). */
	char cwd[PATH_MAX];
};

/*
 * Pick the session: from mount_dir (a directory inside a mount, or the
 * mount point: the command runs in it), from project (the command runs in
 * the current directory when it is inside that project's mount, else in
 * the workspace root), or, with both NULL, from the current directory.
 * -ENOENT with a message that says what to do when no mount is found;
 * -EINVAL for an invalid project id.
 */
int omni__exec_client_resolve(struct omni_exec_target *out,
                              const char *mount_dir, const char *project);

/* Connect to a control socket. *out gets the descriptor (close it). The
 * message tells a missing daemon from a stale socket. */
int omni__exec_client_connect(const char *path, int *out);

struct omni__exec_client_io {
	int in_fd;  /* forwarded when req->want_stdin; -1: none */
	int out_fd; /* STDOUT frames go here */
	int err_fd; /* STDERR frames go here */
	/* Read end of a pipe carrying signal numbers, one byte each (see
	 * omni__exec_client_signals_install()); -1: none. SIGWINCH becomes a
	 * RESIZE frame with tty_fd's size, any other a SIGNAL frame. */
	int sig_fd;
	int tty_fd; /* the local terminal, -1: none */
};

#define OMNI_EXEC_CLIENT_IO_INIT                                               \
	{                                                                      \
		.in_fd = -1, .out_fd = 1, .err_fd = 2, .sig_fd = -1,           \
		.tty_fd = -1                                                   \
	}

struct omni__exec_client_result {
	int exit_code;  /* the command's status, 128+N, or 124 */
	int signal;     /* the signal that ended it, or 0 */
	bool timed_out; /* killed by its timeout */
	/* Set when omni-exec gave up waiting (signals that could not be
	 * delivered, or the local stdout closed and the command would not
	 * stop): exit_code is then 128+signal, and the daemon kills the
	 * command because the connection is gone. */
	bool abandoned;
};

/*
 * Run req on the connected socket fd and pump the exchange until its EXIT
 * frame: output to io->out_fd / io->err_fd as it arrives, stdin from
 * io->in_fd by a helper thread (started once the command has started; EOF
 * sends an empty STDIN frame), signals from io->sig_fd. Returns 0 with
 * *res filled when the command ran to its end, or -errno with a message:
 * the daemon's ERROR frame (its errno), a lost connection (-ECONNRESET),
 * a protocol error (-EPROTO). The socket is shut down afterwards; the
 * caller closes it.
 */
int omni__exec_client_run(int fd, const struct omni_ipc_request *req,
                          const struct omni__exec_client_io *io,
                          struct omni__exec_client_result *res);

/*
 * Send a CONTROL request ("ping", "stats", "save MESSAGE", ...) and read
 * its REPLY: *status is 0 on success or an errno, *reply the text
 * (malloc'd). -errno when no reply came (ERROR frame, connection lost).
 */
int omni__exec_client_control(int fd, const char *request, unsigned int *status,
                              char **reply);

/*
 * Route SIGINT, SIGTERM, SIGHUP, SIGQUIT (and SIGWINCH when winch) into a
 * self-pipe whose read end goes to *read_fd, for io.sig_fd. For programs
 * (omni-exec's main); the handlers stay installed.
 */
int omni__exec_client_signals_install(bool winch, int *read_fd);

/* Put terminal fd in raw mode, saving its settings in *saved. */
int omni__exec_client_tty_raw(int fd, struct termios *saved);
/* Restore settings saved by omni__exec_client_tty_raw(). */
int omni__exec_client_tty_restore(int fd, const struct termios *saved);

#endif
