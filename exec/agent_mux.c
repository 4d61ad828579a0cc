/*
 * agent_mux.c - `omni-agent mux`: the container end of the docker backend's
 * agent-mode stream.
 *
 *	omni-agent mux [--socket PATH]     (default /run/omni/agent.sock)
 *
 * The omnifs daemon starts this through ONE docker exec with stdin and
 * stdout attached (no TTY) and keeps the stream open for the session.
 * Standard input and output carry the channel frames of base/mux.h; each
 * channel the daemon opens becomes a connection to the agent's own Unix
 * socket (the server omni-agent runs as the container's init), and the
 * bytes are pumped both ways, with per-channel credit so one big output
 * never holds up the others. Stdin at EOF (the daemon closed the stream, or
 * the network dropped it and Docker closed the exec's stdin) ends the
 * process; its connections close, and the agent kills the commands whose
 * client went away. Messages go to standard error (Docker sends them to the
 * daemon as stderr frames, which it logs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/mux.h"
#include "agent_mux.h"
#include "omni/error.h"
#include "omni/ipc.h"

struct mux_ctx {
	const char *socket;
};

static ssize_t fd_recv(void *ctx, void *buf, size_t len)
{
	(void)ctx;
	for (;;) {
		ssize_t n = read(0, buf, len);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

static ssize_t fd_send(void *ctx, const void *buf, size_t len)
{
	(void)ctx;
	for (;;) {
		ssize_t n = write(1, buf, len);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

static int accept_chan(void *ctx, uint32_t id)
{
	struct mux_ctx *mc = ctx;
	int fd, rc = omni__unix_connect(mc->socket, &fd);

	if (rc < 0) {
		fprintf(stderr, "omni-agent mux: channel %u: %s\n",
		        (unsigned)id, omni_error_last());
		return rc;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

int omni__agent_mux_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct mux_ctx mc = { .socket = "/run/omni/agent.sock" };
	struct omni__mux *m;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (c != 's') {
			fputs("Usage: omni-agent mux [--socket PATH]\n",
			      stderr);
			return 2;
		}
		mc.socket = optarg;
	}
	signal(SIGPIPE, SIG_IGN);
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
	struct omni__mux_io io = {
		.recv = fd_recv,
		.send = fd_send,
		.in_fd = 0,
		.out_fd = 1,
		.ctx = &mc,
		.accept = accept_chan,
	};
	if ((rc = omni__mux_new(&m, &io)) < 0) {
		fprintf(stderr, "omni-agent mux: %s\n", strerror(-rc));
		return 1;
	}
	rc = omni__mux_run(m);
	omni__mux_free(m);
	if (rc < 0) {
		fprintf(stderr, "omni-agent mux: the stream: %s\n",
		        strerror(-rc));
		return 1;
	}
	return 0;
}
