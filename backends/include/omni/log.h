/*
 * omni/log.h - leveled logging with a replaceable sink.
 *
 * The library itself logs only at DEBUG and TRACE; user-facing reports
 * belong to the programs' main.c.  The level is tested before the
 * arguments are formatted, so a disabled log line costs one comparison.
 * The default sink writes "omnifs: LEVEL: message" lines to stderr.
 */
#ifndef OMNI_LOG_H
#define OMNI_LOG_H

#include <stdarg.h>

enum omni_log_level {
	OMNI_LOG_ERROR = 0,
	OMNI_LOG_WARN,
	OMNI_LOG_INFO,
	OMNI_LOG_DEBUG,
	OMNI_LOG_TRACE,
};

typedef void (*omni_log_sink)(enum omni_log_level level, const char *msg,
                              void *payload);

extern enum omni_log_level omni_log_threshold;

/* Set the most verbose level that is printed (default WARN). */
void omni_log_set_level(enum omni_log_level level);

/* Replace the sink; NULL restores the stderr sink. */
void omni_log_set_sink(omni_log_sink sink, void *payload);

/* Prefix for the stderr sink (default "omni"). The string is borrowed. */
void omni_log_set_prefix(const char *prefix);

void omni__log(enum omni_log_level level, const char *file, int line,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define omni_log(level, ...)                                                   \
	do {                                                                   \
		if ((level) <= omni_log_threshold)                             \
			omni__log((level), __FILE__, __LINE__, __VA_ARGS__);   \
	} while (0)

#endif
