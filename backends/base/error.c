/*
 * backends/base/error.c - the per-thread error message behind omni/error.h.
 *
 * One fixed buffer per thread; no allocation, so it works in out-of-memory
 * paths and in the static omni-agent. Messages longer than the buffer are
 * truncated. omni__error_save() and omni__error_restore() (base/error.h)
 * copy that buffer aside and back, for cleanup code that runs between a
 * failure and its report.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"

static _Thread_local char error_msg[512];
static _Thread_local int error_code;

/* Format into a scratch buffer first: the arguments may point into
 * error_msg itself ("... (%s)", omni_error_last()), and vsnprintf's
 * source and destination must not overlap. */
static void format_msg(const char *fmt, va_list ap)
{
	char tmp[sizeof(error_msg)];

	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	memcpy(error_msg, tmp, strlen(tmp) + 1);
}

int omni_error_set(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	format_msg(fmt, ap);
	va_end(ap);
	error_code = err;
	return err;
}

int omni_error_set_errno(int err, const char *fmt, ...)
{
	char reason[128];
	size_t used;
	va_list ap;

	/* Format strerror first: fmt's arguments may point into error_msg. */
	snprintf(reason, sizeof(reason), ": %s",
	         strerror(err < 0 ? -err : err));
	va_start(ap, fmt);
	format_msg(fmt, ap);
	va_end(ap);
	used = strlen(error_msg);
	if (used < sizeof(error_msg) - 1)
		snprintf(error_msg + used, sizeof(error_msg) - used, "%s",
		         reason);
	error_code = err;
	return err;
}

const char *omni_error_last(void)
{
	return error_msg;
}

int omni_error_code(void)
{
	return error_code;
}

void omni_error_clear(void)
{
	error_msg[0] = '\0';
	error_code = 0;
}

void omni__error_save(struct omni__error_saved *saved)
{
	_Static_assert(sizeof(saved->msg) == sizeof(error_msg),
	               "a saved message holds any message");
	memcpy(saved->msg, error_msg, sizeof(error_msg));
	saved->code = error_code;
}

int omni__error_restore(const struct omni__error_saved *saved, int err)
{
	memcpy(error_msg, saved->msg, sizeof(error_msg));
	error_code = err;
	return err;
}
