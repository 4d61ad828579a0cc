/*
 * backends/journal/journal.h - what the agent did: the session's journal of
 * mutating file operations and commands (private: the library, fs/).
 *
 * A journal is an SQLite database in WAL mode, one per project, kept in
 * the data folder as <data>/.omnifs-journal/<project>.sqlite, so it can be
 * read with the sqlite3 shell while the session runs:
 *
 *	ops(id, time, op, path, path2, size, off, len, mode, result)
 *	commands(id, time, argv, cwd, exit, signal, duration_ms,
 *	         stdout_bytes, stderr_bytes, result)
 *
 * time is milliseconds since the epoch (UTC); result 0 or a negative errno;
 * argv a JSON array. omni__journal_record_*() copy what they are given into
 * a buffer and return at once (no allocation, no system call); a writer
 * thread commits the buffer in one transaction half a second after the
 * first record of a batch (sooner when a megabyte of records waits), so a
 * crash loses at most the last second and, WAL and SQLite's atomic commit
 * doing their part, never corrupts the file.
 *
 * The hooks of backend.c (journal/hook.h) call these for a session whose
 * face backend has a journal; omnifs --log reads with
 * omni__journal_print().
 */
#ifndef OMNI_JOURNAL_H
#define OMNI_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct omni__journal;

/* One file operation. Strings may be NULL; numbers -1 when they do not
 * apply. */
struct omni__journal_op {
	const char *op;    /* "create", "write", "rename", ... */
	const char *path;  /* workspace-relative, "" for the root */
	const char *path2; /* rename and link target, symlink content */
	long long size;    /* bytes written, new size */
	long long off;     /* write: the lowest offset written */
	long long len;     /* write: the range's length (highest end - off) */
	long long mode;    /* create, mkdir, chmod: the mode; chown: uid */
	int result;        /* 0 or -errno */
};

/* One command. argv is a JSON array (text). */
struct omni__journal_cmd {
	long long time_ms; /* when it started */
	const char *argv;
	const char *cwd;
	int exit_code, signal, result;
	long long duration_ms, stdout_bytes, stderr_bytes;
};

/* <data>/.omnifs-journal/<project>.sqlite for the data path given (NULL:
 * the default of base/datapath.h). */
int omni__journal_path(const char *data_path, const char *project, char *out,
                       size_t size);

/* Open (create) the database at path, make its tables, start the writer. */
int omni__journal_open(struct omni__journal **out, const char *path);

/* Record (time: now). Never fails the caller: a record that cannot be
 * kept (out of memory) is counted and logged at close. */
void omni__journal_record_op(struct omni__journal *j,
                             const struct omni__journal_op *op);
void omni__journal_record_cmd(struct omni__journal *j,
                              const struct omni__journal_cmd *cmd);

/* Wait until what was recorded before the call is committed. 0 or the
 * last commit's error. */
int omni__journal_flush(struct omni__journal *j);

/* Commit what was recorded, stop the writer, close the database. NULL ok. */
void omni__journal_close(struct omni__journal *j);

/* Records of ops and commands since since_ms (0: all), oldest first,
 * printed to out as text lines or, json, as one JSON object a line. */
int omni__journal_print(const char *path, long long since_ms, bool json,
                        FILE *out);

/* A summary of the file operations in [from_ms, to_ms) (to_ms 0: now):
 * "N ops (C created, W written, D removed, R renamed), K commands", into
 * out. */
int omni__journal_summary(const char *path, long long from_ms, long long to_ms,
                          char *out, size_t size);

/* Records of the calling thread are not journaled while quiet is set (a
 * rollback restoring files through the vfs ops, for one). */
void omni__journal_quiet(bool quiet);
bool omni__journal_is_quiet(void);

#endif
