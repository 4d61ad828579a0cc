/*
 * backends/journal/journal.c - recording into the journal: the buffer
 * the calling threads append to, and the writer thread that empties it
 * into the database (journal_db.c). See journal.h.
 *
 * Design. Callers are FUSE and control threads in the middle of a file
 * operation, so a record costs them a clock read, a mutex held for two
 * memcpy, and nothing else: no allocation, no system call, no SQLite.
 * Records are packed one after the other (journal_db.h) into 64 KiB
 * chunks, taken from a list of spare ones; the writer takes the whole
 * list of filled chunks at once, inserts the records in one transaction
 * where they lie, and gives the chunks back.
 *
 * The writer commits INTERVAL_MS after the first record of a batch, or
 * as soon as COMMIT_BYTES of chunks wait, or on a flush or the close:
 * a record is committed well within a second, so a crash loses at most
 * the last second. While records keep coming the writer sleeps on its
 * deadline and nobody wakes it; only the first record after it went idle
 * (and a full batch) signals the condition. Above QUEUE_BYTES held
 * (the disk stalls) recording threads wait for the writer, so memory
 * stays bounded.
 *
 * Locking: j->lock guards the chunk lists, the counters and the flags;
 * the database belongs to the writer thread (and to open and close,
 * before and after it runs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/datapath.h"
#include "journal/journal.h"
#include "journal/journal_db.h"
#include "omni/error.h"
#include "omni/log.h"

#define INTERVAL_MS  500
#define CHUNK_SIZE   (64 * 1024)
#define COMMIT_BYTES (16 * CHUNK_SIZE)
#define QUEUE_BYTES  (512 * CHUNK_SIZE)
#define SPARE_CHUNKS 16

struct chunk {
	struct chunk *next;
	size_t used, cap;
	uint64_t data[]; /* records, 8-byte aligned */
};

struct omni__journal {
	struct omni__journal_db *db;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;       /* the writer waits (CLOCK_MONOTONIC) */
	pthread_cond_t done;       /* flushes and recorders wait */
	struct chunk *head, *tail; /* filled, waiting for the writer */
	struct chunk *spare;
	size_t nspare;
	size_t waiting;        /* bytes of the chunks from head to tail */
	size_t held;           /* waiting or being committed */
	struct timespec first; /* when the waiting batch began */
	unsigned long long recorded, committed, lost;
	bool idle, stop, flush;
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

/* --- chunks --------------------------------------------------------------- */

/* Give a committed list of chunks back: to the spares, or freed. */
static void give_back(struct omni__journal *j, struct chunk *c)
{
	while (c) {
		struct chunk *next = c->next;
		j->held -= c->cap;
		if (c->cap == CHUNK_SIZE && j->nspare < SPARE_CHUNKS) {
			c->next = j->spare;
			j->spare = c;
			j->nspare++;
		} else {
			free(c);
		}
		c = next;
	}
}

/* A chunk at the end of the waiting list with room for size bytes, or
 * NULL (out of memory). Waits for the writer while QUEUE_BYTES are held.
 * With j->lock. */
static struct chunk *room(struct omni__journal *j, size_t size)
{
	struct chunk *c;

	for (;;) {
		c = j->tail;
		if (c && c->cap - c->used >= size)
			return c;
		if (j->held < QUEUE_BYTES || j->stop)
			break;
		pthread_cond_wait(&j->done, &j->lock);
	}
	if (size <= CHUNK_SIZE && j->spare) {
		c = j->spare;
		j->spare = c->next;
		j->nspare--;
	} else {
		size_t cap = size > CHUNK_SIZE ? size : CHUNK_SIZE;
		if (!(c = malloc(sizeof(*c) + cap)))
			return NULL;
		c->cap = cap;
	}
	c->next = NULL;
	c->used = 0;
	if (j->tail) {
		j->tail->next = c;
	} else {
		j->head = c;
		clock_gettime(CLOCK_MONOTONIC, &j->first);
	}
	j->tail = c;
	j->held += c->cap;
	j->waiting += c->cap;
	if (j->waiting >= COMMIT_BYTES && j->waiting - c->cap < COMMIT_BYTES)
		pthread_cond_signal(&j->wake); /* a full batch */
	return c;
}

/* Append a record: head h (its size and lengths set here) and the
 * strings s. */
static void append(struct omni__journal *j, struct omni__journal_rec *h,
                   const char *const s[3])
{
	for (int k = 0; k < 3; k++)
		h->len[k] = s[k] ? (uint32_t)strlen(s[k]) : OMNI__JOURNAL_NULL;
	h->size = omni__journal_rec_size(h->len);

	pthread_mutex_lock(&j->lock);
	struct chunk *c = room(j, h->size);
	if (!c) {
		j->lost++;
		pthread_mutex_unlock(&j->lock);
		return;
	}
	char *p = (char *)c->data + c->used;
	c->used += h->size;
	memcpy(p, h, sizeof(*h));
	p += sizeof(*h);
	for (int k = 0; k < 3; k++) {
		if (s[k]) {
			memcpy(p, s[k], h->len[k] + 1);
			p += h->len[k] + 1;
		}
	}
	j->recorded++;
	if (j->idle) {
		j->idle = false;
		pthread_cond_signal(&j->wake);
	}
	pthread_mutex_unlock(&j->lock);
}

/* --- the writer ----------------------------------------------------------- */

/* Sleep, with j->lock, until a batch is due. */
static void wait_for_batch(struct omni__journal *j)
{
	while (!j->head && !j->stop && !j->flush) {
		j->idle = true;
		pthread_cond_wait(&j->wake, &j->lock);
	}
	j->idle = false;
	if (!j->head)
		return;
	struct timespec due = j->first;
	due.tv_sec += INTERVAL_MS / 1000;
	due.tv_nsec += (INTERVAL_MS % 1000) * 1000000L;
	if (due.tv_nsec >= 1000000000L) {
		due.tv_sec++;
		due.tv_nsec -= 1000000000L;
	}
	while (!j->stop && !j->flush && j->waiting < COMMIT_BYTES &&
	       pthread_cond_timedwait(&j->wake, &j->lock, &due) == 0) {
	}
}

/* One transaction for the chunks' records. */
static int commit(struct omni__journal_db *db, const struct chunk *c)
{
	int rc = omni__journal_db_begin(db);

	for (; c && rc == 0; c = c->next) {
		for (size_t off = 0; off < c->used && rc == 0;) {
			const struct omni__journal_rec *r =
			    (const void *)((const char *)c->data + off);
			rc = omni__journal_db_insert(db, r);
			off += r->size;
		}
	}
	return omni__journal_db_end(db, rc);
}

static void *writer(void *arg)
{
	struct omni__journal *j = arg;

	pthread_mutex_lock(&j->lock);
	for (;;) {
		wait_for_batch(j);
		struct chunk *batch = j->head;
		unsigned long long upto = j->recorded;
		bool stop = j->stop;
		j->head = j->tail = NULL;
		j->waiting = 0;
		j->flush = false;
		pthread_mutex_unlock(&j->lock);
		int rc = batch ? commit(j->db, batch) : 0;
		pthread_mutex_lock(&j->lock);
		give_back(j, batch);
		j->committed = upto;
		j->last_rc = rc;
		pthread_cond_broadcast(&j->done);
		if (stop && !j->head)
			break;
	}
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

/* --- open, flush, close --------------------------------------------------- */

static void free_journal(struct omni__journal *j)
{
	give_back(j, j->head);
	while (j->spare) {
		struct chunk *next = j->spare->next;
		free(j->spare);
		j->spare = next;
	}
	omni__journal_db_close(j->db);
	pthread_mutex_destroy(&j->lock);
	pthread_cond_destroy(&j->wake);
	pthread_cond_destroy(&j->done);
	free(j);
}

int omni__journal_open(struct omni__journal **out, const char *path)
{
	struct omni__journal *j = calloc(1, sizeof(*j));
	pthread_condattr_t attr;
	int rc;

	*out = NULL;
	if (!j)
		return omni_error_set(-ENOMEM, "journal: out of memory");
	pthread_mutex_init(&j->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&j->wake, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&j->done, NULL);
	if ((rc = omni__journal_db_open(&j->db, path)) < 0) {
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

int omni__journal_flush(struct omni__journal *j)
{
	int rc;

	if (!j)
		return 0;
	pthread_mutex_lock(&j->lock);
	unsigned long long want = j->recorded;
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

/* --- recording ------------------------------------------------------------ */

void omni__journal_record_op(struct omni__journal *j,
                             const struct omni__journal_op *op)
{
	if (!j || quiet)
		return;
	struct omni__journal_rec h = {
		.kind = OMNI__JOURNAL_OP,
		.time_ms = wall_ms(),
		.n = { op->size, op->off, op->len, op->mode },
		.i = { op->result },
	};
	const char *s[3] = { op->op, op->path, op->path2 };
	append(j, &h, s);
}

void omni__journal_record_cmd(struct omni__journal *j,
                              const struct omni__journal_cmd *cmd)
{
	if (!j)
		return;
	struct omni__journal_rec h = {
		.kind = OMNI__JOURNAL_CMD,
		.time_ms = cmd->time_ms > 0 ? cmd->time_ms : wall_ms(),
		.n = { cmd->duration_ms, cmd->stdout_bytes, cmd->stderr_bytes },
		.i = { cmd->exit_code, cmd->signal, cmd->result },
	};
	const char *s[3] = { cmd->argv ? cmd->argv : "[]", cmd->cwd, NULL };
	append(j, &h, s);
}
