/*
 * main.c - omni-exec: run a command in the session of an omnifs mount.
 *
 * The thin part: the command line (options.c), finding the session and
 * connecting (client.c), the local terminal for -t, and turning the
 * outcome into an exit status (options.h lists them; --help prints them).
 * Everything else, the stream loop included, is in client.c.
 *
 * Our own messages start with "omni-exec: " and go to stderr, so a
 * command's stdout stays clean. Every path out of main restores the
 * terminal (explicitly, and through atexit as a safety net); signals do
 * not kill omni-exec, they are forwarded and it waits for the command.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "client.h"
#include "omni/error.h"
#include "omni/omni.h"
#include "options.h"

static struct termios saved_tty;
static int raw_fd = -1;

static void restore_tty(void)
{
	if (raw_fd >= 0) {
		omni__exec_client_tty_restore(raw_fd, &saved_tty);
		raw_fd = -1;
	}
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;

	restore_tty();
	fputs("omni-exec: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return OMNI_EXEC_EXIT_FAILURE;
}

static int run_control(const struct omni__exec_options *o,
                       const struct omni_exec_target *t)
{
	char request[4096];
	unsigned int status;
	char *reply = NULL;
	int fd, rc;

	if (o->mode == OMNI_EXEC_MODE_PING)
		snprintf(request, sizeof(request), "ping");
	else if (o->mode == OMNI_EXEC_MODE_STATS)
		snprintf(request, sizeof(request), "stats");
	else if (o->mode == OMNI_EXEC_MODE_CHECKPOINTS)
		snprintf(request, sizeof(request), "checkpoints");
	else if (o->mode == OMNI_EXEC_MODE_ROLLBACK)
		snprintf(request, sizeof(request), "rollback %s",
		         o->rollback_id);
	else if (o->mode == OMNI_EXEC_MODE_CHECKPOINT)
		snprintf(request, sizeof(request), "checkpoint%s%s",
		         o->save_message ? " " : "",
		         o->save_message ? o->save_message : "");
	else if (o->mode == OMNI_EXEC_MODE_SYNC)
		snprintf(request, sizeof(request), "sync");
	else if (o->save_message)
		snprintf(request, sizeof(request), "save %s", o->save_message);
	else
		snprintf(request, sizeof(request), "save");

	if (omni__exec_client_connect(t->socket, &fd) < 0)
		return fail("%s", omni_error_last());
	rc = omni__exec_client_control(fd, request, &status, &reply);
	close(fd);
	if (rc < 0)
		return fail("%s", omni_error_last());
	if (status != 0) {
		rc = fail("%s", reply);
		free(reply);
		return rc;
	}
	size_t n = strlen(reply);
	fputs(reply, stdout);
	if (n == 0 || reply[n - 1] != '\n')
		fputc('\n', stdout);
	free(reply);
	return fflush(stdout) == 0 ? OMNI_EXEC_EXIT_OK : OMNI_EXEC_EXIT_FAILURE;
}

/* o->env plus TERM for a terminal, unless -e gave one. */
static char **command_env(const struct omni__exec_options *o, char **term)
{
	const char *t = getenv("TERM");
	char **env;

	*term = NULL;
	env = calloc(o->nenv + 2, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < o->nenv; i++) {
		env[i] = o->env[i];
		if (strncmp(o->env[i], "TERM=", 5) == 0)
			t = NULL;
	}
	if (o->tty && t && *t) {
		size_t n = strlen(t) + 6;

		*term = malloc(n);
		if (!*term) {
			free(env);
			return NULL;
		}
		snprintf(*term, n, "TERM=%s", t);
		env[o->nenv] = *term;
	}
	return env;
}

static int run_command(const struct omni__exec_options *o,
                       const struct omni_exec_target *t)
{
	struct omni__exec_client_io io = OMNI_EXEC_CLIENT_IO_INIT;
	struct omni__exec_client_result res;
	struct omni_ipc_request req = { 0 };
	char *term = NULL;
	int fd, rc;

	req.argv = o->argv;
	req.shell = (char *)o->shell;
	req.cwd = (char *)t->cwd;
	req.timeout_ms = o->timeout_ms;
	req.env = command_env(o, &term);
	if (!req.env)
		return fail("out of memory");
	/* stdin is forwarded unless -n or closed (see client.c for the
	 * terminal case). */
	req.want_stdin = !o->no_stdin && fcntl(STDIN_FILENO, F_GETFL) >= 0;
	io.in_fd = req.want_stdin ? STDIN_FILENO : -1;
	if (o->tty) {
		struct winsize ws;

		req.tty = true;
		if (isatty(STDIN_FILENO))
			io.tty_fd = STDIN_FILENO;
		else if (isatty(STDOUT_FILENO))
			io.tty_fd = STDOUT_FILENO;
		if (io.tty_fd >= 0 && ioctl(io.tty_fd, TIOCGWINSZ, &ws) == 0) {
			req.rows = ws.ws_row;
			req.cols = ws.ws_col;
		}
	}
	if (omni__exec_client_signals_install(o->tty, &io.sig_fd) < 0) {
		rc = fail("%s", omni_error_last());
		goto out;
	}
	if (omni__exec_client_connect(t->socket, &fd) < 0) {
		rc = fail("%s", omni_error_last());
		goto out;
	}
	if (o->tty && isatty(STDIN_FILENO)) {
		if (omni__exec_client_tty_raw(STDIN_FILENO, &saved_tty) == 0)
			raw_fd = STDIN_FILENO;
	}

	rc = omni__exec_client_run(fd, &req, &io, &res);
	close(fd);
	restore_tty();
	if (rc < 0) {
		rc = fail("%s", omni_error_last());
		goto out;
	}
	if (res.abandoned && res.timed_out)
		fprintf(stderr, "omni-exec: the daemon did not end the command "
		                "after its timeout; gave up\n");
	else if (res.abandoned && res.signal != SIGPIPE)
		fprintf(stderr, "omni-exec: the command does not take "
		                "signals; disconnected (it is killed)\n");
	else if (res.timed_out)
		fprintf(stderr, "omni-exec: timed out after %g s\n",
		        o->timeout_s);
	rc = res.exit_code;
	if (rc < 0 || rc > 255)
		rc = fail("unexpected exit status %d", rc);
out:
	free(req.env);
	free(term);
	return rc;
}

int main(int argc, char **argv)
{
	struct omni__exec_options o;
	struct omni_exec_target t;
	int rc;

	omni_log_set_prefix("omni-exec");
	if (omni__exec_options_parse(&o, argc, argv) < 0) {
		fprintf(stderr, "omni-exec: %s\n", omni_error_last());
		omni__exec_usage(stderr, false);
		omni__exec_options_finish(&o);
		return OMNI_EXEC_EXIT_USAGE;
	}
	if (o.mode == OMNI_EXEC_MODE_HELP) {
		omni__exec_usage(stdout, true);
		omni__exec_options_finish(&o);
		return fflush(stdout) == 0 ? 0 : OMNI_EXEC_EXIT_FAILURE;
	}
	if (o.mode == OMNI_EXEC_MODE_VERSION) {
		printf("omni-exec %s\n", OMNI_VERSION);
		omni__exec_options_finish(&o);
		return fflush(stdout) == 0 ? 0 : OMNI_EXEC_EXIT_FAILURE;
	}

	/* Our own stdout closing is handled where it happens (EPIPE), and a
	 * background omni-exec reading its terminal must not be stopped. */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTTIN, SIG_IGN);
	atexit(restore_tty);

	if (omni__exec_client_resolve(&t, o.mount_dir, o.project) < 0)
		rc = fail("%s", omni_error_last());
	else if (o.mode == OMNI_EXEC_MODE_RUN)
		rc = run_command(&o, &t);
	else
		rc = run_control(&o, &t);
	omni__exec_options_finish(&o);
	return rc;
}
