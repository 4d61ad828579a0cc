/*
 * backends/journal/journal.c - the journal's database and its writer
 * thread (see journal.h).
 *
 * Design. Callers are FUSE and control threads in the middle of a file
 * operation, so recording costs one malloc and a queue append under a
 * mutex; the SQLite work is the writer thread's. It sleeps until a second
 * has passed since the first record of the batch, or OMNI__JOURNAL_BATCH
 * records wait, or someone flushes or closes; then it takes the whole
 * queue and inserts it in one transaction with prepared statements.
 * No index: rows come in time order (id order), a query by time scans,
 * and an insert stays cheap (the journal's cost is on every change).
 * The database is in WAL mode with synchronous=NORMAL: a committed
 * transaction survives the daemon's death (kill -9), a power loss may
 * lose the last ones, and neither corrupts the file.
 *
 * Locking: j->lock guards the queue, the counters and the flags; the
 * database belongs to the writer thread (and to open/close, before and
 * after it runs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include <sqlite3.h>

#include "base/datapath.h"
#include "journal/journal.h"
#include "omni/error.h"
#include "omni/log.h"

/* Above this many waiting records, recording threads wait for the writer
 * (memory stays bounded; SQLite inserts far faster than FUSE makes
 * records, so this is only reached when the disk stalls). */
#define QUEUE_MAX (64 * OMNI__JOURNAL_BATCH)

enum kind { KIND_OP, KIND_CMD };

struct rec {
	struct rec *next;
	enum kind kind;
	long long time_ms;
	const char *s[3]; /* op: op, path, path2; cmd: argv, cwd */
	long long n[6];   /* op: size off len mode; cmd: dur out err */
	int i[3];         /* op: result; cmd: exit signal result */
	char text[];      /* the strings */
};

struct omni__journal {
	sqlite3 *db;
	sqlite3_stmt *ins_op, *ins_cmd;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake, done;
	struct rec *head, **tail;
	size_t queued;
	unsigned long long enqueued, committed, lost;
	bool stop, flush;
	int last_rc;
};

static _Thread_local bool quiet;

void omni__journal_quiet(bool q)
{
	quiet = q;
}

bool omni__journal_is_quiet(void)
{
	return quiet;
}

static long long wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int omni__journal_path(const char *data_path, const char *project, char *out,
                       size_t size)
{
	char base[PATH_MAX];
	int rc = omni__data_path(data_path, base, sizeof(base));

	if (rc < 0)
		return rc;
	rc = snprintf(out, size, "%s/.omnifs-journal/%s.sqlite", base, project);
	if (rc < 0 || (size_t)rc >= size)
		return omni_error_set(-ENAMETOOLONG, "journal: path too long");
	return 0;
}

/* --- the database --------------------------------------------------------- */

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

static int open_db(struct omni__journal *j, const char *path)
{
	int rc = make_parent(path);

	if (rc < 0)
		return rc;
	if (sqlite3_open_v2(path, &j->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                        SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK)
		return db_error(j->db, "cannot open", path);
	sqlite3_busy_timeout(j->db, 5000);
	if (sqlite3_exec(j->db, schema, NULL, NULL, NULL) != SQLITE_OK)
		return db_error(j->db, "cannot make the tables", path);
	if (sqlite3_prepare_v2(j->db,
	                       "INSERT INTO ops(time,op,path,path2,size,off,"
	                       "len,mode,result) VALUES(?,?,?,?,?,?,?,?,?)",
	                       -1, &j->ins_op, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(j->db,
	                       "INSERT INTO commands(time,argv,cwd,exit,signal,"
	                       "duration_ms,stdout_bytes,stderr_bytes,result) "
	                       "VALUES(?,?,?,?,?,?,?,?,?)",
	                       -1, &j->ins_cmd, NULL) != SQLITE_OK)
		return db_error(j->db, "cannot prepare", path);
	return 0;
}

static void bind_num(sqlite3_stmt *st, int col, long long v)
{
	if (v < 0)
		sqlite3_bind_null(st, col);
	else
		sqlite3_bind_int64(st, col, v);
}

static int insert(struct omni__journal *j, const struct rec *r)
{
	sqlite3_stmt *st = r->kind == KIND_OP ? j->ins_op : j->ins_cmd;

	sqlite3_bind_int64(st, 1, r->time_ms);
	if (r->kind == KIND_OP) {
		for (int c = 0; c < 3; c++)
			sqlite3_bind_text(st, 2 + c, r->s[c], -1,
			                  SQLITE_STATIC);
		for (int c = 0; c < 4; c++)
			bind_num(st, 5 + c, r->n[c]);
		sqlite3_bind_int(st, 9, r->i[0]);
	} else {
		sqlite3_bind_text(st, 2, r->s[0], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, r->s[1], -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 4, r->i[0]);
		sqlite3_bind_int(st, 5, r->i[1]);
		for (int c = 0; c < 3; c++)
			bind_num(st, 6 + c, r->n[c]);
		sqlite3_bind_int(st, 9, r->i[2]);
	}
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* One transaction for the whole batch; the records are freed. */
static int commit_batch(struct omni__journal *j, struct rec *batch)
{
	int rc = sqlite3_exec(j->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK
	             ? 0
	             : -EIO;

	while (batch) {
		struct rec *next = batch->next;
		if (rc == 0)
			rc = insert(j, batch);
		free(batch);
		batch = next;
	}
	if (rc == 0 &&
	    sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = -EIO;
	if (rc < 0) {
		omni_log(OMNI_LOG_WARN, "journal: commit failed: %s",
		         sqlite3_errmsg(j->db));
		sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
	}
	return rc;
}

/* --- the writer ----------------------------------------------------------- */

static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *writer(void *arg)
{
	struct omni__journal *j = arg;

	pthread_mutex_lock(&j->lock);
	for (;;) {
		if (!j->head && !j->stop && !j->flush)
			pthread_cond_wait(&j->wake, &j->lock);
		if (j->head && !j->stop && !j->flush &&
		    j->queued < OMNI__JOURNAL_BATCH) {
			/* The batch's first record came now: at most a
			 * second until it is committed. */
			struct timespec ts;
			deadline_in(&ts, 1000);
			while (!j->stop && !j->flush &&
			       j->queued < OMNI__JOURNAL_BATCH &&
			       pthread_cond_timedwait(&j->wake, &j->lock,
			                              &ts) == 0) {
			}
		}
		struct rec *batch = j->head;
		unsigned long long upto = j->enqueued;
		bool stop = j->stop;
		j->head = NULL;
		j->tail = &j->head;
		j->queued = 0;
		j->flush = false;
		pthread_cond_broadcast(&j->done); /* room in the queue */
		pthread_mutex_unlock(&j->lock);
		int rc = batch ? commit_batch(j, batch) : 0;
		pthread_mutex_lock(&j->lock);
		j->committed = upto;
		j->last_rc = rc;
		pthread_cond_broadcast(&j->done);
		if (stop && !j->head)
			break;
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

static void free_journal(struct omni__journal *j)
{
	sqlite3_finalize(j->ins_op);
	sqlite3_finalize(j->ins_cmd);
	sqlite3_close(j->db);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->wake);
	pthread_cond_destroy(&j->done);
	free(j);
}

int omni__journal_open(struct omni__journal **out, const char *path)
{
	struct omni__journal *j = calloc(1, sizeof(*j));
	int rc;

	*out = NULL;
	if (!j)
		return omni_error_set(-ENOMEM, "journal: out of memory");
	pthread_mutex_init(&j->lock, NULL);
	pthread_cond_init(&j->wake, NULL);
	pthread_cond_init(&j->done, NULL);
	j->tail = &j->head;
	if ((rc = open_db(j, path)) < 0) {
		free_journal(j);
		return rc;
	}
	if ((rc = pthread_create(&j->thread, NULL, writer, j)) != 0) {
		free_journal(j);
		return omni_error_set(-rc, "journal: cannot start the writer");
	}
	*out = j;
	return 0;
}

/* --- recording ------------------------------------------------------------ */

static struct rec *new_rec(enum kind kind, const char *const s[3])
{
	size_t len[3] = { 0, 0, 0 }, total = 0;

	for (int c = 0; c < 3; c++)
		if (s[c])
			total += (len[c] = strlen(s[c])) + 1;
	struct rec *r = malloc(sizeof(*r) + total);
	if (!r)
		return NULL;
	char *p = r->text;
	r->next = NULL;
	r->kind = kind;
	r->time_ms = wall_ms();
	for (int c = 0; c < 3; c++) {
		r->s[c] = NULL;
		if (s[c]) {
			memcpy(p, s[c], len[c] + 1);
			r->s[c] = p;
			p += len[c] + 1;
		}
	}
	return r;
}

static void enqueue(struct omni__journal *j, struct rec *r)
{
	pthread_mutex_lock(&j->lock);
	if (!r) {
		j->lost++;
		pthread_mutex_unlock(&j->lock);
		return;
	}
	while (j->queued >= QUEUE_MAX && !j->stop)
		pthread_cond_wait(&j->done, &j->lock);
	*j->tail = r;
	j->tail = &r->next;
	j->enqueued++;
	/* The writer sleeps until its deadline; wake it for the first
	 * record of a batch and for a full one only. */
	if (++j->queued == 1 || j->queued == OMNI__JOURNAL_BATCH)
		pthread_cond_signal(&j->wake);
	pthread_mutex_unlock(&j->lock);
}

void omni__journal_record_op(struct omni__journal *j,
                             const struct omni__journal_op *op)
{
	const char *s[3] = { op->op, op->path, op->path2 };
	struct rec *r;

	if (!j || quiet)
		return;
	if ((r = new_rec(KIND_OP, s))) {
		r->n[0] = op->size;
		r->n[1] = op->off;
		r->n[2] = op->len;
		r->n[3] = op->mode;
		r->i[0] = op->result;
	}
	enqueue(j, r);
}

void omni__journal_record_cmd(struct omni__journal *j,
                              const struct omni__journal_cmd *cmd)
{
	const char *s[3] = { cmd->argv ? cmd->argv : "[]", cmd->cwd, NULL };
	struct rec *r;

	if (!j)
		return;
	if ((r = new_rec(KIND_CMD, s))) {
		if (cmd->time_ms > 0)
			r->time_ms = cmd->time_ms;
		r->n[0] = cmd->duration_ms;
		r->n[1] = cmd->stdout_bytes;
		r->n[2] = cmd->stderr_bytes;
		r->i[0] = cmd->exit_code;
		r->i[1] = cmd->signal;
		r->i[2] = cmd->result;
	}
	enqueue(j, r);
}

int omni__journal_flush(struct omni__journal *j)
{
	int rc;

	if (!j)
		return 0;
	pthread_mutex_lock(&j->lock);
	unsigned long long want = j->enqueued;
	j->flush = true;
	pthread_cond_signal(&j->wake);
	while (j->committed < want)
		pthread_cond_wait(&j->done, &j->lock);
	rc = j->last_rc;
	pthread_mutex_unlock(&j->lock);
	return rc;
}

void omni__journal_close(struct omni__journal *j)
{
	if (!j)
		return;
	pthread_mutex_lock(&j->lock);
	j->stop = true;
	pthread_cond_broadcast(&j->wake);
	pthread_cond_broadcast(&j->done);
	pthread_mutex_unlock(&j->lock);
	pthread_join(j->thread, NULL);
	if (j->lost)
		omni_log(OMNI_LOG_WARN,
		         "journal: %llu records lost (out of memory)", j->lost);
	free_journal(j);
}
