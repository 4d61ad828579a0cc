/*
 * options.c - omni-exec's command line (see options.h).
 *
 * getopt_long with "+" (stop at the first operand, so `omni-exec ls -l`
 * passes -l to ls) and ":" (no messages from getopt: ours go through
 * omni_error_set() so that main prints them and tests can read them).
 * getopt keeps global state; optind is reset to 0 on entry, which makes
 * glibc start over, so the parser can run more than once in a process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "omni/error.h"
#include "options.h"

enum {
	OPT_PROJECT = 256,
	OPT_TIMEOUT,
	OPT_STATS,
	OPT_SAVE,
	OPT_PING,
	OPT_CHECKPOINT,
	OPT_CHECKPOINTS,
	OPT_ROLLBACK,
	OPT_SYNC,
};

static const struct option long_options[] = {
	{ "mount", required_argument, NULL, 'C' },
	{ "project", required_argument, NULL, OPT_PROJECT },
	{ "env", required_argument, NULL, 'e' },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "tty", no_argument, NULL, 't' },
	{ "no-stdin", no_argument, NULL, 'n' },
	{ "stats", no_argument, NULL, OPT_STATS },
	{ "save", optional_argument, NULL, OPT_SAVE },
	{ "ping", no_argument, NULL, OPT_PING },
	{ "checkpoint", optional_argument, NULL, OPT_CHECKPOINT },
	{ "checkpoints", no_argument, NULL, OPT_CHECKPOINTS },
	{ "rollback", required_argument, NULL, OPT_ROLLBACK },
	{ "sync", no_argument, NULL, OPT_SYNC },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

void omni__exec_usage(FILE *f, bool full)
{
	fputs("Usage: omni-exec [OPTION]... [--] COMMAND [ARG]...\n"
	      "       omni-exec [OPTION]... -c 'SHELL COMMAND'\n"
	      "       omni-exec [-C DIR | --project ID] --ping | --stats | "
	      "--sync | --save [MESSAGE]\n"
	      "       omni-exec [-C DIR | --project ID] --checkpoint [MESSAGE] "
	      "| --checkpoints\n"
	      "                 | --rollback ID\n",
	      f);
	if (!full) {
		fputs("Try 'omni-exec --help' for more information.\n", f);
		return;
	}
	fputs(
	    "\n"
	    "Run a command in the sandbox of an omnifs mount. The session is "
	    "found from\n"
	    "the current directory (a directory inside the mount), and the "
	    "command runs\n"
	    "in the same directory of the sandbox: `cd mnt/src && omni-exec "
	    "make` runs\n"
	    "make in /workspace/src.\n"
	    "\n"
	    "Options:\n"
	    "  -c STRING             run STRING with /bin/sh -c\n"
	    "  -C, --mount DIR       use the mount that contains DIR; the "
	    "command runs in DIR\n"
	    "      --project ID      use the session of project ID; the "
	    "command runs in the\n"
	    "                        current directory when it is inside "
	    "that mount, else\n"
	    "                        at the workspace root\n"
	    "  -e, --env KEY=VALUE   set a variable for the command "
	    "(repeatable); -e KEY\n"
	    "                        passes KEY's value from here\n"
	    "      --timeout SECONDS kill the command after SECONDS "
	    "(fractions allowed)\n"
	    "  -t, --tty             give the command a terminal (for "
	    "interactive programs);\n"
	    "                        the local terminal is put in raw mode "
	    "meanwhile\n"
	    "  -n, --no-stdin        do not forward stdin (the command reads "
	    "/dev/null)\n"
	    "      --ping            check that the session's daemon answers\n"
	    "      --stats           print the daemon's statistics\n"
	    "      --sync            wait until the sandbox has everything "
	    "written through\n"
	    "                        the mount (uploads and modes pending)\n"
	    "      --save [MESSAGE]  save a snapshot of the workspace now\n"
	    "      --checkpoint [MESSAGE]\n"
	    "                        record the workspace as a local "
	    "checkpoint (no remote\n"
	    "                        needed; unchanged files cost nothing); "
	    "prints its id\n"
	    "      --checkpoints     list the checkpoints, newest first, with "
	    "what the\n"
	    "                        journal recorded since the one before\n"
	    "      --rollback ID     bring the workspace back to checkpoint "
	    "ID: changed\n"
	    "                        files restored, new ones removed (the "
	    "state before is\n"
	    "                        kept as a checkpoint); refused while a "
	    "command runs\n"
	    "  -h, --help            show this help and exit\n"
	    "  -V, --version         show the version and exit\n"
	    "\n"
	    "stdin is forwarded to the command, also from a terminal (the "
	    "terminal edits\n"
	    "lines, Ctrl-D ends the input); use -n for a command that must "
	    "not read it.\n"
	    "Ctrl-C, SIGTERM, SIGHUP and SIGQUIT are passed on to the "
	    "command's process\n"
	    "group; omni-exec waits for it to end and exits with its "
	    "status. With -t,\n"
	    "Ctrl-C travels to the command's terminal as a key.\n"
	    "\n"
	    "Exit status:\n"
	    "  N       the command's own exit status\n"
	    "  128+N   the command was killed by signal N (130 SIGINT, "
	    "137 SIGKILL,\n"
	    "          143 SIGTERM)\n"
	    "  124     the command timed out (--timeout)\n"
	    "  125     omni-exec or the session failed: not inside a mount, "
	    "no daemon,\n"
	    "          request refused, connection lost\n"
	    "  126     the command was found but could not be run\n"
	    "  127     the command was not found\n"
	    "  2       bad usage of omni-exec\n",
	    f);
}

static int add_env(struct omni__exec_options *o, const char *arg)
{
	const char *eq = strchr(arg, '=');
	char *s;

	if (eq == arg || *arg == '\0')
		return omni_error_set(
		    -EINVAL, "-e needs KEY=VALUE or KEY, not '%s'", arg);
	if (eq) {
		s = strdup(arg);
	} else {
		const char *v = getenv(arg);

		if (!v)
			return 0; /* like docker -e KEY: unset stays unset */
		size_t n = strlen(arg) + 1 + strlen(v) + 1;
		s = malloc(n);
		if (s)
			snprintf(s, n, "%s=%s", arg, v);
	}
	if (!s)
		return omni_error_set(-ENOMEM, "out of memory");
	char **l = realloc(o->env, (o->nenv + 2) * sizeof(*l));
	if (!l) {
		free(s);
		return omni_error_set(-ENOMEM, "out of memory");
	}
	l[o->nenv++] = s;
	l[o->nenv] = NULL;
	o->env = l;
	return 0;
}

static int parse_timeout(struct omni__exec_options *o, const char *arg)
{
	char *end;
	double s;

	errno = 0;
	s = strtod(arg, &end);
	if (end == arg || *end != '\0' || errno || !isfinite(s) || s < 0)
		return omni_error_set(-EINVAL,
		                      "--timeout needs a number of seconds, "
		                      "not '%s'",
		                      arg);
	double ms = s * 1000.0;
	if (ms >= (double)UINT32_MAX - 1)
		return omni_error_set(-EINVAL, "--timeout %s is too long", arg);
	/* Round up, so that a tiny timeout is not "none". */
	unsigned int whole = (unsigned int)ms;
	if ((double)whole < ms)
		whole++;
	o->timeout_s = s;
	o->timeout_ms = whole;
	return 0;
}

static int set_mode(struct omni__exec_options *o, enum omni_exec_mode mode,
                    const char *name)
{
	if (o->mode != OMNI_EXEC_MODE_RUN && o->mode != mode)
		return omni_error_set(-EINVAL,
		                      "%s cannot be combined with --ping, "
		                      "--stats, --sync, --save or the "
		                      "checkpoint options",
		                      name);
	o->mode = mode;
	return 0;
}

/* Join words with spaces (for --save MESSAGE...). */
static char *join_words(char **words)
{
	size_t n = 1;

	for (char **w = words; *w; w++)
		n += strlen(*w) + 1;
	char *s = malloc(n), *p = s;
	if (!s)
		return NULL;
	*p = '\0';
	for (char **w = words; *w; w++) {
		if (p != s)
			*p++ = ' ';
		size_t l = strlen(*w);
		memcpy(p, *w, l);
		p += l;
		*p = '\0';
	}
	return s;
}

/* A --ping, --stats, --sync or --save option. */
static int parse_mode_option(struct omni__exec_options *o, int c,
                             const char *arg)
{
	int rc;

	switch (c) {
	case OPT_PING:
		return set_mode(o, OMNI_EXEC_MODE_PING, "--ping");
	case OPT_STATS:
		return set_mode(o, OMNI_EXEC_MODE_STATS, "--stats");
	case OPT_CHECKPOINTS:
		return set_mode(o, OMNI_EXEC_MODE_CHECKPOINTS, "--checkpoints");
	case OPT_ROLLBACK:
		o->rollback_id = arg;
		return set_mode(o, OMNI_EXEC_MODE_ROLLBACK, "--rollback");
	case OPT_SYNC:
		return set_mode(o, OMNI_EXEC_MODE_SYNC, "--sync");
	default:
		rc = c == OPT_SAVE ? set_mode(o, OMNI_EXEC_MODE_SAVE, "--save")
		                   : set_mode(o, OMNI_EXEC_MODE_CHECKPOINT,
		                              "--checkpoint");
		if (rc < 0 || !arg)
			return rc;
		free(o->save_message);
		o->save_message = strdup(arg);
		if (!o->save_message)
			return omni_error_set(-ENOMEM, "out of memory");
		return 0;
	}
}

/* One option that getopt_long() returned; bad is the word it came from.
 * --help and --version only set their flag, so that they win over the
 * rest of the line. */
static int parse_option(struct omni__exec_options *o, int c, const char *bad,
                        bool *help, bool *version)
{
	switch (c) {
	case 'c':
		if (o->shell)
			return omni_error_set(-EINVAL, "-c given twice");
		o->shell = optarg;
		return 0;
	case 'C':
		o->mount_dir = optarg;
		return 0;
	case OPT_PROJECT:
		o->project = optarg;
		return 0;
	case 'e':
		return add_env(o, optarg);
	case OPT_TIMEOUT:
		return parse_timeout(o, optarg);
	case 't':
		o->tty = true;
		return 0;
	case 'n':
		o->no_stdin = true;
		return 0;
	case OPT_PING:
	case OPT_STATS:
	case OPT_SYNC:
	case OPT_SAVE:
	case OPT_CHECKPOINT:
	case OPT_CHECKPOINTS:
	case OPT_ROLLBACK:
		return parse_mode_option(o, c, optarg);
	case 'h':
		*help = true;
		return 0;
	case 'V':
		*version = true;
		return 0;
	case ':':
		return omni_error_set(-EINVAL, "option '%s' needs an argument",
		                      bad);
	default:
		if (optopt)
			return omni_error_set(-EINVAL, "unknown option '-%c'",
			                      optopt);
		return omni_error_set(-EINVAL, "unknown option '%s'", bad);
	}
}

/* The operands after the options, as the mode wants them. */
static int parse_operands(struct omni__exec_options *o, char **operands,
                          bool have_operands)
{
	switch (o->mode) {
	case OMNI_EXEC_MODE_RUN:
		if (o->shell && have_operands)
			return omni_error_set(-EINVAL,
			                      "-c takes one string; unexpected "
			                      "'%s'",
			                      operands[0]);
		if (!o->shell && !have_operands)
			return omni_error_set(-EINVAL, "no command given");
		if (!o->shell)
			o->argv = operands;
		return 0;
	case OMNI_EXEC_MODE_SAVE:
	case OMNI_EXEC_MODE_CHECKPOINT:
		if (o->shell || o->tty || o->nenv || o->timeout_ms)
			return omni_error_set(-EINVAL,
			                      "--save and --checkpoint take no "
			                      "command options");
		if (have_operands) {
			if (o->save_message)
				return omni_error_set(-EINVAL,
				                      "message given twice");
			o->save_message = join_words(operands);
			if (!o->save_message)
				return omni_error_set(-ENOMEM, "out of memory");
		}
		return 0;
	default:
		if (o->shell || o->tty || o->nenv || o->timeout_ms ||
		    have_operands)
			return omni_error_set(
			    -EINVAL, "--ping, --stats, --sync, --checkpoints "
			             "and --rollback take no command");
		return 0;
	}
}

int omni__exec_options_parse(struct omni__exec_options *o, int argc,
                             char **argv)
{
	bool help = false, version = false;
	int c, rc;

	memset(o, 0, sizeof(*o));
	optind = 0; /* full re-initialisation in glibc */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:c:C:e:tnhV", long_options,
	                        NULL)) != -1) {
		rc = parse_option(o, c, argv[optind - 1], &help, &version);
		if (rc < 0)
			return rc;
	}
	if (help) {
		o->mode = OMNI_EXEC_MODE_HELP;
		return 0;
	}
	if (version) {
		o->mode = OMNI_EXEC_MODE_VERSION;
		return 0;
	}
	if (o->mount_dir && o->project)
		return omni_error_set(-EINVAL,
		                      "use either -C/--mount or --project, "
		                      "not both");
	return parse_operands(o, argv + optind, optind < argc);
}

void omni__exec_options_finish(struct omni__exec_options *o)
{
	for (size_t i = 0; i < o->nenv; i++)
		free(o->env[i]);
	free(o->env);
	free(o->save_message);
	memset(o, 0, sizeof(*o));
}
