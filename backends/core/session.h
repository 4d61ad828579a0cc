/*
 * backends/core/session.h - the session object: one backend, its state
 * manager and, for a remote backend under omnifs, the cache in front of it
 * (private: the library and fs/main.c).
 *
 * The session owns all three. Start starts what it shows (the cache when
 * there is one, else the backend) and loads the newest snapshot through
 * it; shutdown saves a snapshot through it and stops it (the cache first
 * uploads what is dirty, then stops the backend behind it); free does a
 * shutdown first. Snapshots go through what the session shows, so they
 * hold what the mount shows, data not yet uploaded included.
 *
 * The documented constructors (omni_backend_new(), omni_local_backend_new()
 * ...) make a session and hand out the backend it shows;
 * omni_backend_start/shutdown/free and the snapshot calls on that backend
 * come here.
 */
#ifndef OMNI_CORE_SESSION_H
#define OMNI_CORE_SESSION_H

#include <stdbool.h>

#include "cache/cache.h"
#include "omni/backend.h"

struct omni__session;

/* What the registry's constructors look like (core/registry.h). */
typedef int (*omni__backend_open_fn)(struct omni_backend **out,
                                     const char *project_id,
                                     const struct omni_backend_options *opts);

/*
 * A session over backend (not started, not part of another session) with
 * state as its manager (NULL: the none manager). Takes both, even on
 * failure, except a backend that has a session already (-EINVAL).
 */
int omni__session_new(struct omni__session **out, struct omni_backend *backend,
                      struct omni_state *state);

/* Make the backend named name ("local", "docker", "e2b"), then a session
 * over it. Takes state even on failure. */
int omni__session_open(struct omni__session **out, const char *name,
                       const char *project_id,
                       const struct omni_backend_options *opts,
                       struct omni_state *state);

/*
 * Put the cache of cache/cache.h in front of the backend, before start:
 * from then on the session shows the cache. The cache takes the data path
 * and progress setting the state manager reads. -EBUSY when the session
 * runs or has a cache already. On any other failure the backend is gone
 * (the cache took it) and the session can only be freed.
 */
int omni__session_add_cache(struct omni__session *s,
                            const struct omni__cache_options *opts);

/* What the session shows (the cache, else the backend), its manager, and
 * whether it has a cache. Borrowed. */
struct omni_backend *omni__session_backend(const struct omni__session *s);
struct omni_state *omni__session_state(const struct omni__session *s);
bool omni__session_cached(const struct omni__session *s);

/* Start, loading the newest snapshot; a running session is left alone.
 * When the load fails the backend is stopped again and the error is
 * "loading the latest snapshot: ...". */
int omni__session_start(struct omni__session *s);

/* Save a snapshot, then stop (stopped even when the save fails, whose
 * error is returned). A session that is not running is left alone. */
int omni__session_shutdown(struct omni__session *s);

/* Start the journal (journal/journal.h) of the running session: every
 * mutating call and command through what it shows is recorded in
 * <data>/.omnifs-journal/<project>.sqlite until shutdown. */
int omni__session_journal(struct omni__session *s);

/* Shut down, then free the backend, the cache and the manager. NULL ok. */
void omni__session_free(struct omni__session *s);

/* --- what backend.c gives the session ------------------------------------ */

/* Start b (its start slot) and record RUNNING. */
int omni__backend_run(struct omni_backend *b);
/* Stop b (its shutdown slot) and record STOPPED; the slot's result. */
int omni__backend_stop(struct omni_backend *b);
/* Free b (its destroy slot), stopped or not, session or not. */
void omni__backend_destroy(struct omni_backend *b);
/* The status recorded by run and stop, not the live probe of the status
 * slot: a docker container that died behind our back still has its files
 * on the host, and they are saved on shutdown all the same. */
bool omni__backend_running(struct omni_backend *b);
/* Give `to` the data path and progress setting of `from` (a decorator
 * takes those of the backend it wraps). */
int omni__backend_inherit_options(struct omni_backend *to,
                                  const struct omni_backend *from);

#endif
