/*
 * backends/journal/journal_query.c - reading a journal (see journal.h):
 * the records printed for omnifs --log, and the summary omni-exec
 * --checkpoints shows between two checkpoints.
 *
 * Design. The database is opened read-only on its own connection, so a
 * running daemon's writer is not disturbed (WAL lets readers and the
 * writer work at once). Operations and commands come from one query,
 * merged by time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "journal/journal.h"
#include "omni/error.h"

static int open_ro(const char *path, sqlite3 **db)
{
	*db = NULL;
	if (access(path, F_OK) < 0)
		return omni_error_set(-ENOENT, "no journal at %s", path);
	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		int rc = omni_error_set(-EIO, "journal %s: %s", path,
		                        sqlite3_errmsg(*db));
		sqlite3_close(*db);
		*db = NULL;
		return rc;
	}
	sqlite3_busy_timeout(*db, 5000);
	return 0;
}

/* The time as 2026-01-31T12:00:00.123Z. */
static void iso_time(long long ms, char *out, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char s[32];

	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, size, "%s.%03lldZ", s, ms % 1000);
}

static const char *col_text(sqlite3_stmt *st, int c)
{
	const unsigned char *s = sqlite3_column_text(st, c);
	return s ? (const char *)s : NULL;
}

static bool col_null(sqlite3_stmt *st, int c)
{
	return sqlite3_column_type(st, c) == SQLITE_NULL;
}

static const char *result_text(int result, char *buf, size_t size)
{
	if (result == 0)
		return "ok";
	snprintf(buf, size, "%s", strerror(-result));
	return buf;
}

/* Columns: 0 kind, 1 time, 2 op|argv, 3 path|cwd, 4 path2, 5 size|exit,
 * 6 off|signal, 7 len|duration, 8 mode|stdout, 9 stderr, 10 result. */
static const char query[] =
    "SELECT 0, time, op, path, path2, size, off, len, mode, NULL, result, id"
    " FROM ops WHERE time >= ?1"
    " UNION ALL SELECT 1, time, argv, cwd, NULL, exit, signal, duration_ms,"
    " stdout_bytes, stderr_bytes, result, id FROM commands WHERE time >= ?1"
    " ORDER BY 2, 1, 12";

static void print_text(sqlite3_stmt *st, FILE *out)
{
	char when[40], err[128];
	int result = sqlite3_column_int(st, 10);

	iso_time(sqlite3_column_int64(st, 1), when, sizeof(when));
	if (sqlite3_column_int(st, 0) == 1) {
		fprintf(out,
		        "%s  exec      %s  cwd=%s exit=%d %lldms out=%lld "
		        "err=%lld%s%s\n",
		        when, col_text(st, 2),
		        col_text(st, 3) ? col_text(st, 3) : "",
		        sqlite3_column_int(st, 5),
		        (long long)sqlite3_column_int64(st, 7),
		        (long long)sqlite3_column_int64(st, 8),
		        (long long)sqlite3_column_int64(st, 9),
		        result ? " " : "",
		        result ? result_text(result, err, sizeof(err)) : "");
		return;
	}
	fprintf(out, "%s  %-8s  %s", when, col_text(st, 2),
	        col_text(st, 3) ? col_text(st, 3) : "");
	if (col_text(st, 4))
		fprintf(out, " -> %s", col_text(st, 4));
	if (!col_null(st, 5))
		fprintf(out, "  size=%lld",
		        (long long)sqlite3_column_int64(st, 5));
	if (!col_null(st, 6))
		fprintf(out, " range=[%lld,%lld)",
		        (long long)sqlite3_column_int64(st, 6),
		        (long long)(sqlite3_column_int64(st, 6) +
		                    sqlite3_column_int64(st, 7)));
	if (!col_null(st, 8))
		fprintf(out, " mode=%llo",
		        (unsigned long long)sqlite3_column_int64(st, 8));
	fprintf(out, "  %s\n", result_text(result, err, sizeof(err)));
}

static void add_num(cJSON *o, const char *name, sqlite3_stmt *st, int c)
{
	if (!col_null(st, c))
		cJSON_AddNumberToObject(o, name,
		                        (double)sqlite3_column_int64(st, c));
}

static int print_json(sqlite3_stmt *st, FILE *out)
{
	static const char *const op_names[] = { "size", "off", "len", "mode" };
	static const char *const cmd_names[] = { "exit", "signal",
		                                 "duration_ms", "stdout_bytes",
		                                 "stderr_bytes" };
	cJSON *o = cJSON_CreateObject();
	bool cmd = sqlite3_column_int(st, 0) == 1;
	char when[40], *text;

	if (!o)
		return -ENOMEM;
	iso_time(sqlite3_column_int64(st, 1), when, sizeof(when));
	cJSON_AddStringToObject(o, "time", when);
	cJSON_AddStringToObject(o, "type", cmd ? "command" : "op");
	if (cmd) {
		cJSON *argv = cJSON_Parse(col_text(st, 2));
		cJSON_AddItemToObject(o, "argv",
		                      argv ? argv : cJSON_CreateNull());
		cJSON_AddStringToObject(o, "cwd",
		                        col_text(st, 3) ? col_text(st, 3) : "");
		for (int c = 0; c < 5; c++)
			add_num(o, cmd_names[c], st, 5 + c);
	} else {
		cJSON_AddStringToObject(o, "op", col_text(st, 2));
		cJSON_AddStringToObject(o, "path",
		                        col_text(st, 3) ? col_text(st, 3) : "");
		if (col_text(st, 4))
			cJSON_AddStringToObject(o, "path2", col_text(st, 4));
		for (int c = 0; c < 4; c++)
			add_num(o, op_names[c], st, 5 + c);
	}
	cJSON_AddNumberToObject(o, "result", sqlite3_column_int(st, 10));
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (!text)
		return -ENOMEM;
	fprintf(out, "%s\n", text);
	free(text);
	return 0;
}

int omni__journal_print(const char *path, long long since_ms, bool json,
                        FILE *out)
{
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	int rc = open_ro(path, &db), step;

	if (rc < 0)
		return rc;
	if (sqlite3_prepare_v2(db, query, -1, &st, NULL) != SQLITE_OK) {
		rc = omni_error_set(-EIO, "journal %s: %s", path,
		                    sqlite3_errmsg(db));
		sqlite3_close(db);
		return rc;
	}
	sqlite3_bind_int64(st, 1, since_ms);
	while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
		if (json)
			rc = print_json(st, out);
		else
			print_text(st, out);
	}
	if (rc == 0 && step != SQLITE_DONE)
		rc = omni_error_set(-EIO, "journal %s: %s", path,
		                    sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* --- the summary between two times ---------------------------------------- */

static const char summary_query[] =
    "SELECT count(*),"
    " sum(op IN ('create','mkdir','symlink','link','mknod')),"
    " sum(op IN ('write','truncate')),"
    " sum(op IN ('unlink','rmdir')),"
    " sum(op = 'rename'),"
    " (SELECT count(*) FROM commands WHERE time >= ?1 AND time < ?2)"
    " FROM ops WHERE time >= ?1 AND time < ?2 AND result = 0";

int omni__journal_summary(const char *path, long long from_ms, long long to_ms,
                          char *out, size_t size)
{
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	int rc = open_ro(path, &db);

	if (rc < 0)
		return rc;
	if (sqlite3_prepare_v2(db, summary_query, -1, &st, NULL) != SQLITE_OK ||
	    (sqlite3_bind_int64(st, 1, from_ms),
	     sqlite3_bind_int64(st, 2, to_ms > 0 ? to_ms : (1LL << 62)),
	     sqlite3_step(st)) != SQLITE_ROW) {
		rc = omni_error_set(-EIO, "journal %s: %s", path,
		                    sqlite3_errmsg(db));
	} else {
		snprintf(out, size,
		         "%lld ops (%lld created, %lld written, %lld removed, "
		         "%lld renamed), %lld commands",
		         (long long)sqlite3_column_int64(st, 0),
		         (long long)sqlite3_column_int64(st, 1),
		         (long long)sqlite3_column_int64(st, 2),
		         (long long)sqlite3_column_int64(st, 3),
		         (long long)sqlite3_column_int64(st, 4),
		         (long long)sqlite3_column_int64(st, 5));
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}
