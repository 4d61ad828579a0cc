/*
 * backends/core/progress.h - a one-line progress report of a long transfer
 *(private).
 *
 * The state managers count files and bytes as they save or load a
 * snapshot; when the backend's options ask for progress (omnifs without
 * -q), a line such as
 *
 *	omnifs: saving snapshot to git: 120 files, 3.4 MiB
 *
 * is redrawn in place on a terminal (at most ten times a second) or
 * printed every few seconds otherwise, and a closing line says what was
 * done and how long it took. Without progress nothing is printed; the
 * library then only logs at DEBUG.
 */
#ifndef OMNI_PROGRESS_H
#define OMNI_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

struct omni__progress {
	FILE *out;        /* NULL: silent */
	bool tty;         /* out is a terminal: redraw one line */
	bool drawn;       /* a line without '\n' is on screen */
	char what[160];   /* "saving snapshot to git" */
	const char *unit; /* what is counted: "file" (default), "object" */
	long long files, bytes;
	long long start_ms, last_ms;
};

/* Start a report on stderr when enabled (else a silent one). */
void omni__progress_start(struct omni__progress *p, bool enabled,
                          const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Count files and bytes done (deltas) and redraw when it is time. */
void omni__progress_add(struct omni__progress *p, long long files,
                        long long bytes);

/* Print the closing line (what, totals, time); fmt may be NULL to just
 * end the line. Safe to call on a silent report. */
void omni__progress_done(struct omni__progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "3.4 MiB" */
void omni__human_size(long long bytes, char *out, size_t size);

#endif
