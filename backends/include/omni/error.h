/*
 * omni/error.h - errors in libomni: a negative errno plus a per-thread message.
 *
 * Every fallible omni_* call returns 0 (or a count) on success and -errno on
 * failure; it never returns -1 and never reports through the global errno.
 * Where the failure happens, the code also records a human-readable message
 * in thread-local storage, which callers read on the same thread with
 * omni_error_last().  The message survives until the next omni_error_set()
 * or omni_error_clear() on that thread.
 *
 * Conventions used across the library (documented once here):
 *   -ENOENT     the path does not exist
 *   -EACCES     a path that would leave the workspace (.., an absolute path
 *               outside the working directory, a symlink leading out)
 *   -ETIMEDOUT  a command or request ran past its deadline
 *   -EPROTO     a malformed reply from a daemon or server
 *   -ENOSYS     the backend has no such operation
 *   -EIO        anything else
 */
#ifndef OMNI_ERROR_H
#define OMNI_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Record a message for the calling thread and return err unchanged, so
 * "return omni_error_set(-ENOENT, "no such file: %s", p);" is one line.
 * err should be a negative errno.
 */
int omni_error_set(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Like omni_error_set(), appending ": strerror(-err)" to the message. */
int omni_error_set_errno(int err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The calling thread's last message, or "" when none is set. Borrowed. */
const char *omni_error_last(void);

/* The errno of the calling thread's last omni_error_set(), or 0. */
int omni_error_code(void);

/* Forget the calling thread's message (after recovering from a failure). */
void omni_error_clear(void);

#ifdef __cplusplus
}
#endif

#endif
