/*
 * backends/core/session.c - the session object (core/session.h): one
 * backend, its state manager and the optional cache in front of it, with
 * the load on start and the save on shutdown; the table of backend names
 * and the documented constructors and snapshot calls of omni/backend.h,
 * which go through the session of the backend they are given.
 *
 * Order of events, as the design has it. Start: start what the session
 * shows (the cache starts the backend behind it), then load the newest
 * snapshot through it; a failed load stops it again, so nothing runs on
 * a half-restored workspace. Shutdown: save a snapshot through what the
 * session shows (the cache still holds what is not uploaded yet, so the
 * snapshot has it), then stop it (the cache uploads what is dirty, then
 * stops the backend).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "omni/sys/backend_impl.h"
#include "base/error.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/state.h"
#include "core/registry.h"
#include "core/session.h"
#include "journal/hook.h"
#include "journal/journal.h"

struct omni__session {
	/* The backend made for the session; owned by the cache when there
	 * is one, else by the session. */
	struct omni_backend *backend;
	/* The cache in front of it, or NULL. */
	struct omni_backend *cache;
	struct omni_state *state;
};

/* --- the session ---------------------------------------------------------- */

int omni__session_new(struct omni__session **out, struct omni_backend *backend,
                      struct omni_state *state)
{
	struct omni__session *s;
	int rc;

	*out = NULL;
	if (!backend || backend->session) {
		/* A backend of another session stays with it. */
		omni_state_free(state);
		return omni_error_set(-EINVAL, "session: %s",
		                      backend ? "the backend has a session"
		                              : "no backend");
	}
	if (!state && (rc = omni_state_noop(&state)) < 0) {
		omni_backend_free(backend);
		return rc;
	}
	if (!(s = calloc(1, sizeof(*s)))) {
		omni_backend_free(backend);
		omni_state_free(state);
		return omni_error_set(-ENOMEM, "session: out of memory");
	}
	s->backend = backend;
	s->state = state;
	backend->session = s;
	*out = s;
	return 0;
}

static const struct {
	const char *name;
	omni__backend_open_fn open;
} backend_table[] = {
	{ "local", omni__local_backend_open },
	{ "docker", omni__docker_backend_open },
	{ "e2b", omni__e2b_backend_open },
};

static const char *const backend_names[] = { "local", "docker", "e2b", NULL };

const char *const *omni_backend_names(void)
{
	return backend_names;
}

static int open_with(struct omni__session **out, omni__backend_open_fn open,
                     const char *project_id,
                     const struct omni_backend_options *opts,
                     struct omni_state *state)
{
	struct omni_backend *b;
	int rc = open(&b, project_id, opts);

	*out = NULL;
	if (rc < 0) {
		omni_state_free(state);
		return rc;
	}
	return omni__session_new(out, b, state);
}

int omni__session_open(struct omni__session **out, const char *name,
                       const char *project_id,
                       const struct omni_backend_options *opts,
                       struct omni_state *state)
{
	*out = NULL;
	for (size_t i = 0; i < sizeof(backend_table) / sizeof(*backend_table);
	     i++) {
		if (strcmp(backend_table[i].name, name ? name : "") == 0)
			return open_with(out, backend_table[i].open, project_id,
			                 opts, state);
	}
	omni_state_free(state);
	return omni_error_set(
	    -EINVAL, "unknown backend '%s' (known: local, docker, e2b)",
	    name ? name : "");
}

int omni__session_add_cache(struct omni__session *s,
                            const struct omni__cache_options *opts)
{
	struct omni_backend *inner = s->backend, *cache;
	int rc;

	if (s->cache || !inner || omni__backend_running(inner))
		return omni_error_set(-EBUSY,
		                      "session: a cache goes in front of a "
		                      "backend once, before start");
	/* The cache owns the backend from now on, even on failure. */
	inner->session = NULL;
	s->backend = NULL;
	if ((rc = omni__cache_wrap(&cache, inner, opts)) < 0)
		return rc;
	s->backend = inner;
	s->cache = cache;
	inner->session = s;
	cache->session = s;
	/* The manager reads these from what it saves through. */
	return omni__backend_inherit_options(cache, inner);
}

struct omni_backend *omni__session_backend(const struct omni__session *s)
{
	return s->cache ? s->cache : s->backend;
}

struct omni_state *omni__session_state(const struct omni__session *s)
{
	return s->state;
}

bool omni__session_cached(const struct omni__session *s)
{
	return s->cache != NULL;
}

int omni__session_start(struct omni__session *s)
{
	struct omni_backend *b = omni__session_backend(s);
	int rc;

	if (!b)
		return omni_error_set(-EINVAL, "session: no backend");
	if (omni_backend_get_status(b) == OMNI_STATUS_RUNNING)
		return 0;
	if ((rc = omni__backend_run(b)) < 0)
		return rc;
	rc = omni_state_load_latest(s->state, b);
	if (rc < 0) {
		/* Never run on a half-restored workspace. */
		struct omni__error_saved saved;
		omni__error_save(&saved);
		omni__backend_stop(b);
		return omni_error_set(rc, "loading the latest snapshot: %s",
		                      saved.msg);
	}
	omni_log(OMNI_LOG_DEBUG, "%s session '%s' started (%s)",
	         omni_backend_name(b), omni_backend_project_id(b),
	         rc > 0 ? "snapshot loaded" : "no snapshot");
	return 0;
}

int omni__session_shutdown(struct omni__session *s)
{
	struct omni_backend *b = omni__session_backend(s);
	struct omni__error_saved saved = { .code = 0 };
	int rc, src;

	if (!b || !omni__backend_running(b))
		return 0;
	src = omni_state_save(s->state, b, "session shutdown", NULL);
	if (src < 0)
		omni__error_save(&saved);
	omni__journal_detach(b);
	rc = omni__backend_stop(b);
	if (src < 0)
		return omni_error_set(src, "saving the snapshot: %s",
		                      saved.msg);
	return rc;
}

int omni__session_journal(struct omni__session *s)
{
	struct omni_backend *b = omni__session_backend(s);
	char path[PATH_MAX];
	int rc;

	if (!b || !omni__backend_running(b) || b->journal)
		return omni_error_set(-EINVAL, "journal: the session must run, "
		                               "without a journal");
	rc = omni__journal_path(b->opts.data_path, b->project_id, path,
	                        sizeof(path));
	return rc < 0 ? rc : omni__journal_attach(b, path);
}

void omni__session_free(struct omni__session *s)
{
	struct omni_backend *b;

	if (!s)
		return;
	omni__session_shutdown(s);
	/* The cache frees the backend behind it (which, not being what the
	 * session shows, is simply shut down and destroyed). */
	if ((b = omni__session_backend(s)))
		omni__backend_destroy(b);
	omni_state_free(s->state);
	free(s);
}

/* --- the documented constructors ------------------------------------------ */

/* A session made with the constructor open (registry.h), or with the
 * backend called name when open is NULL; the caller gets its backend. */
static int open_public(struct omni_backend **out, const char *name,
                       omni__backend_open_fn open, const char *project_id,
                       const struct omni_backend_options *opts,
                       struct omni_state *state)
{
	struct omni__session *s;
	int rc = open ? open_with(&s, open, project_id, opts, state)
	              : omni__session_open(&s, name, project_id, opts, state);

	*out = rc < 0 ? NULL : omni__session_backend(s);
	return rc;
}

int omni_backend_new(struct omni_backend **out, const char *name,
                     const char *project_id,
                     const struct omni_backend_options *opts,
                     struct omni_state *state)
{
	return open_public(out, name, NULL, project_id, opts, state);
}

int omni_local_backend_new(struct omni_backend **out, const char *project_id,
                           struct omni_state *state)
{
	return open_public(out, NULL, omni__local_backend_open, project_id,
	                   NULL, state);
}

int omni_docker_backend_new(struct omni_backend **out, const char *project_id,
                            const struct omni_backend_options *opts,
                            struct omni_state *state)
{
	return open_public(out, NULL, omni__docker_backend_open, project_id,
	                   opts, state);
}

int omni_e2b_backend_new(struct omni_backend **out, const char *project_id,
                         const struct omni_backend_options *opts,
                         struct omni_state *state)
{
	return open_public(out, NULL, omni__e2b_backend_open, project_id, opts,
	                   state);
}

/* --- snapshots through the session ---------------------------------------- */

/* The session of b; NULL (with a message) for a backend without one. */
static struct omni__session *session_of(struct omni_backend *b)
{
	if (!b->session)
		omni_error_set(-EINVAL, "%s backend: not part of a session",
		               omni_backend_name(b));
	return b->session;
}

struct omni_state *omni_backend_state(struct omni_backend *b)
{
	return b->session ? b->session->state : NULL;
}

int omni_backend_save_snapshot(struct omni_backend *b, const char *message,
                               char **id_out)
{
	struct omni__session *s = session_of(b);

	if (id_out)
		*id_out = NULL;
	if (!s)
		return -EINVAL;
	return omni_state_save(s->state, omni__session_backend(s), message,
	                       id_out);
}

int omni_backend_load_latest_snapshot(struct omni_backend *b)
{
	struct omni__session *s = session_of(b);

	if (!s)
		return -EINVAL;
	return omni_state_load_latest(s->state, omni__session_backend(s));
}

int omni_backend_list_snapshots(struct omni_backend *b,
                                struct omni_snapshot_list *out)
{
	struct omni__session *s = session_of(b);

	memset(out, 0, sizeof(*out));
	if (!s)
		return -EINVAL;
	return omni_state_list(s->state, omni__session_backend(s), out);
}
