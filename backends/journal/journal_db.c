/*
 * backends/journal/journal_db.c - the journal's SQLite database, as the
 * writer thread of journal.c fills it (see journal_db.h).
 *
 * Design. WAL mode with synchronous=NORMAL: a committed transaction
 * survives the daemon's death (kill -9), a power loss may lose the last
 * ones, and neither corrupts the file. Inserts go through two prepared
 * statements, strings bound where they lie in the record (no copy). No
 * index: rows come in time order (id order), a query by time scans, and
 * an insert stays cheap (the journal's cost is on every change).
 *
 * Locking: none; the connection belongs to the one thread that calls
 * these (the writer; open and close before and after it runs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "journal/journal_db.h"
#include "omni/error.h"
#include "omni/log.h"

struct omni__journal_db {
	sqlite3 *db;
	sqlite3_stmt *ins_op, *ins_cmd;
};

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS ops("
    " id INTEGER PRIMARY KEY, time INTEGER NOT NULL, op TEXT NOT NULL,"
    " path TEXT, path2 TEXT, size INTEGER, off INTEGER, len INTEGER,"
    " mode INTEGER, result INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS commands("
    " id INTEGER PRIMARY KEY, time INTEGER NOT NULL, argv TEXT NOT NULL,"
    " cwd TEXT, exit INTEGER, signal INTEGER, duration_ms INTEGER,"
    " stdout_bytes INTEGER, stderr_bytes INTEGER, result INTEGER NOT NULL);";

static int db_error(sqlite3 *db, const char *what, const char *path)
{
	return omni_error_set(-EIO, "journal %s: %s: %s", path, what,
	                      db ? sqlite3_errmsg(db) : "out of memory");
}

/* mkdir -p of the folder path is in (one level below the data path). */
static int make_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	for (slash = strchr(dir + 1, '/'); slash;
	     slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return omni_error_set(-errno,
			                      "journal: cannot create %s", dir);
		*slash = '/';
	}
	return 0;
}

static int prepare(struct omni__journal_db *d, const char *path)
{
	int rc = make_parent(path);

	if (rc < 0)
		return rc;
	if (sqlite3_open_v2(path, &d->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                        SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK)
		return db_error(d->db, "cannot open", path);
	sqlite3_busy_timeout(d->db, 5000);
	if (sqlite3_exec(d->db, schema, NULL, NULL, NULL) != SQLITE_OK)
		return db_error(d->db, "cannot make the tables", path);
	if (sqlite3_prepare_v2(d->db,
	                       "INSERT INTO ops(time,op,path,path2,size,off,"
	                       "len,mode,result) VALUES(?,?,?,?,?,?,?,?,?)",
	                       -1, &d->ins_op, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(d->db,
	                       "INSERT INTO commands(time,argv,cwd,exit,signal,"
	                       "duration_ms,stdout_bytes,stderr_bytes,result) "
	                       "VALUES(?,?,?,?,?,?,?,?,?)",
	                       -1, &d->ins_cmd, NULL) != SQLITE_OK)
		return db_error(d->db, "cannot prepare", path);
	return 0;
}

int omni__journal_db_open(struct omni__journal_db **out, const char *path)
{
	struct omni__journal_db *d = calloc(1, sizeof(*d));
	int rc;

	*out = NULL;
	if (!d)
		return omni_error_set(-ENOMEM, "journal: out of memory");
	if ((rc = prepare(d, path)) < 0) {
		omni__journal_db_close(d);
		return rc;
	}
	*out = d;
	return 0;
}

void omni__journal_db_close(struct omni__journal_db *d)
{
	if (!d)
		return;
	sqlite3_finalize(d->ins_op);
	sqlite3_finalize(d->ins_cmd);
	sqlite3_close(d->db);
	free(d);
}

/* --- inserting ------------------------------------------------------------ */

static void bind_num(sqlite3_stmt *st, int col, long long v)
{
	if (v < 0)
		sqlite3_bind_null(st, col);
	else
		sqlite3_bind_int64(st, col, v);
}

/* The record's strings bound to columns col, col + 1, ... (count). */
static void bind_strings(sqlite3_stmt *st, int col,
                         const struct omni__journal_rec *r, int count)
{
	const char *p = r->text;

	for (int k = 0; k < count; k++) {
		if (r->len[k] == OMNI__JOURNAL_NULL) {
			sqlite3_bind_null(st, col + k);
			continue;
		}
		sqlite3_bind_text(st, col + k, p, (int)r->len[k],
		                  SQLITE_STATIC);
		p += r->len[k] + 1;
	}
}

int omni__journal_db_begin(struct omni__journal_db *d)
{
	return sqlite3_exec(d->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK
	           ? 0
	           : -EIO;
}

int omni__journal_db_insert(struct omni__journal_db *d,
                            const struct omni__journal_rec *r)
{
	sqlite3_stmt *st = r->kind == OMNI__JOURNAL_OP ? d->ins_op : d->ins_cmd;

	/* Every parameter is bound below, so none is left from the last
	 * row and no clear_bindings is needed. */
	sqlite3_bind_int64(st, 1, r->time_ms);
	if (r->kind == OMNI__JOURNAL_OP) {
		bind_strings(st, 2, r, 3);
		for (int c = 0; c < 4; c++)
			bind_num(st, 5 + c, r->n[c]);
		sqlite3_bind_int(st, 9, r->i[0]);
	} else {
		bind_strings(st, 2, r, 2);
		sqlite3_bind_int(st, 4, r->i[0]);
		sqlite3_bind_int(st, 5, r->i[1]);
		for (int c = 0; c < 3; c++)
			bind_num(st, 6 + c, r->n[c]);
		sqlite3_bind_int(st, 9, r->i[2]);
	}
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int omni__journal_db_end(struct omni__journal_db *d, int rc)
{
	if (rc == 0 &&
	    sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = -EIO;
	if (rc < 0) {
		omni_log(OMNI_LOG_WARN, "journal: commit failed: %s",
		         sqlite3_errmsg(d->db));
		sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
	}
	return rc;
}
