/*
 * backends/journal/journal_db.h - the journal's database as its writer
 * thread uses it, and the record both sides share (private: journal.c,
 * journal_db.c).
 *
 * A record is what a recording thread copies into the journal's buffer:
 * a fixed head, then its strings, each NUL-terminated, the whole padded
 * to 8 bytes so the next head is aligned. No pointers, so a record is
 * written with two memcpy and read where it lies.
 */
#ifndef OMNI_JOURNAL_DB_H
#define OMNI_JOURNAL_DB_H

#include <stdint.h>

enum omni__journal_kind { OMNI__JOURNAL_OP, OMNI__JOURNAL_CMD };

/* len[] of a string that is NULL. */
#define OMNI__JOURNAL_NULL UINT32_MAX

struct omni__journal_rec {
	uint32_t size; /* head, strings and padding */
	uint32_t kind; /* enum omni__journal_kind */
	uint32_t len[3];
	int32_t i[3];
	int64_t time_ms;
	int64_t n[4];
	char text[];
};

/* Fields by kind:
 *	op:  strings op, path, path2;  n size, off, len, mode;  i result
 *	cmd: strings argv, cwd;  n duration_ms, stdout_bytes, stderr_bytes;
 *	     i exit, signal, result */

/* Bytes a record with strings of these lengths takes (a multiple of 8). */
static inline uint32_t omni__journal_rec_size(const uint32_t len[3])
{
	uint32_t size = (uint32_t)sizeof(struct omni__journal_rec);

	for (int k = 0; k < 3; k++)
		if (len[k] != OMNI__JOURNAL_NULL)
			size += len[k] + 1;
	return (size + 7) & ~(uint32_t)7;
}

struct omni__journal_db;

/* Open (create) the database at path, with its tables. */
int omni__journal_db_open(struct omni__journal_db **out, const char *path);
/* One transaction: begin, insert each record, end (commit, or roll back
 * after a failure: rc < 0). 0 or -EIO. */
int omni__journal_db_begin(struct omni__journal_db *db);
int omni__journal_db_insert(struct omni__journal_db *db,
                            const struct omni__journal_rec *r);
int omni__journal_db_end(struct omni__journal_db *db, int rc);
/* NULL ok. */
void omni__journal_db_close(struct omni__journal_db *db);

#endif
