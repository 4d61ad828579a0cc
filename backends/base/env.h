/*
 * backends/base/env.h - "KEY=VALUE" environment lists: merging, and the
 * credentials a host command must not inherit (private).
 *
 * A command's environment is a base list (the process's environ for the
 * local process runner, the session's env= options for the local and
 * docker backends) with the request's own variables on top. An extra
 * "KEY=VALUE" replaces every base entry of the same KEY (the base entry is left
 * out, so the result never holds the name twice); other base entries keep their
 * order, and the extras follow in theirs. A base entry without '=' counts
 * its whole text as the name.
 *
 * Credentials. A command the local backend runs on the host gets the
 * daemon's environment without the credentials omnifs itself reads and
 * the usual secret names: E2B_*, GOOGLE_*, OMNIAGENTS_*, AWS_*,
 * GITHUB_TOKEN, *_TOKEN, *_API_KEY and *_SECRET* (names compare
 * case-sensitively). Only the inherited environment is filtered: the
 * session's env= and the request's own variables pass whatever their
 * names, since the caller gives them on purpose.
 */
#ifndef OMNI_BASE_ENV_H
#define OMNI_BASE_ENV_H

#include <stdbool.h>

/*
 * base then extra (either may be NULL) merged as above, into a new
 * NULL-terminated array of the same string pointers (nothing is copied:
 * the strings must outlive the array). Free the array alone with free().
 * NULL when out of memory.
 */
const char **omni__env_merge(const char *const *base, const char *const *extra);

/* Does the name of entry ("NAME=VALUE" or "NAME") mark a credential? */
bool omni__env_secret(const char *entry);

/*
 * base (may be NULL) without its credentials, as a new NULL-terminated
 * array of the same string pointers; free the array alone. NULL when out
 * of memory.
 */
const char **omni__env_public(const char *const *base);

#endif
