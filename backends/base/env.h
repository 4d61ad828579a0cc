/*
 * backends/base/env.h - merging "KEY=VALUE" environment lists (private).
 *
 * A command's environment is a base list (the process's environ for the
 * local process runner, the session's env= options for the local and
 * docker backends) with the request's own variables on top. An extra
 * "KEY=VALUE" replaces every base entry of the same KEY (the base entry is left
 * out, so the result never holds the name twice); other base entries keep their
 * order, and the extras follow in theirs. A base entry without '=' counts
 * its whole text as the name.
 */
#ifndef OMNI_BASE_ENV_H
#define OMNI_BASE_ENV_H

/*
 * base then extra (either may be NULL) merged as above, into a new
 * NULL-terminated array of the same string pointers (nothing is copied:
 * the strings must outlive the array). Free the array alone with free().
 * NULL when out of memory.
 */
const char **omni__env_merge(const char *const *base, const char *const *extra);

#endif
