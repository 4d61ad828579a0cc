/*
 * options.h - omni-exec's command line: parsing (getopt_long), the usage
 * text and the exit codes. Kept out of main.c so that the tests can parse
 * argument vectors without running anything.
 */
#ifndef OMNI_EXEC_OPTIONS_H
#define OMNI_EXEC_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit codes of omni-exec itself; the command's own status passes through
 * unchanged (and 128+N for a signal). */
enum omni_exec_exit {
	OMNI_EXEC_EXIT_OK = 0,
	OMNI_EXEC_EXIT_USAGE = 2,        /* bad command line */
	OMNI_EXEC_EXIT_TIMEOUT = 124,    /* --timeout expired */
	OMNI_EXEC_EXIT_FAILURE = 125,    /* omni-exec or the session failed */
	OMNI_EXEC_EXIT_CANNOT_RUN = 126, /* found but not executable */
	OMNI_EXEC_EXIT_NOT_FOUND = 127,  /* no such command */
};

enum omni_exec_mode {
	OMNI_EXEC_MODE_RUN = 0,
	OMNI_EXEC_MODE_PING,
	OMNI_EXEC_MODE_STATS,
	OMNI_EXEC_MODE_SAVE,
	OMNI_EXEC_MODE_CHECKPOINT,  /* --checkpoint [MESSAGE] */
	OMNI_EXEC_MODE_CHECKPOINTS, /* --checkpoints */
	OMNI_EXEC_MODE_ROLLBACK,    /* --rollback ID */
	OMNI_EXEC_MODE_SYNC,
	OMNI_EXEC_MODE_HELP,
	OMNI_EXEC_MODE_VERSION,
};

struct omni__exec_options {
	enum omni_exec_mode mode;
	/* The command: argv (points into the parsed vector) or shell. */
	char **argv;
	const char *shell;
	const char *mount_dir; /* -C / --mount */
	const char *project;   /* --project */
	/* -e: "KEY=VALUE" strings, NULL-terminated (malloc'd list; each
	 * string malloc'd). */
	char **env;
	size_t nenv;
	unsigned int timeout_ms; /* 0: none */
	double timeout_s;
	bool tty;      /* -t */
	bool no_stdin; /* -n */
	/* --save, --checkpoint: NULL or the message (malloc'd). */
	char *save_message;
	const char *rollback_id; /* --rollback */
};

/*
 * Parse argv (getopt_long; options stop at the first operand or "--").
 * Returns 0, or -EINVAL with a message (omni_error_last()) for misuse, or
 * -ENOMEM. Finish o even on failure.
 */
int omni__exec_options_parse(struct omni__exec_options *o, int argc,
                             char **argv);
void omni__exec_options_finish(struct omni__exec_options *o);

/* The help text (full) or the short usage lines. */
void omni__exec_usage(FILE *f, bool full);

#endif
