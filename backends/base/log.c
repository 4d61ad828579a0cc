/*
 * backends/base/log.c - leveled logging (omni/log.h).
 *
 * The threshold is a plain global read without a lock: it is set once at
 * start-up, before threads exist. The sink is called with a formatted line;
 * the default writes one write(2) per line to stderr so that lines from
 * several threads do not interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "omni/log.h"

enum omni_log_level omni_log_threshold = OMNI_LOG_WARN;

static omni_log_sink log_sink;
static void *log_payload;
static const char *log_prefix = "omni";

static const char *const level_names[] = {
	[OMNI_LOG_ERROR] = "error", [OMNI_LOG_WARN] = "warning",
	[OMNI_LOG_INFO] = "info",   [OMNI_LOG_DEBUG] = "debug",
	[OMNI_LOG_TRACE] = "trace",
};

void omni_log_set_level(enum omni_log_level level)
{
	omni_log_threshold = level;
}

void omni_log_set_sink(omni_log_sink sink, void *payload)
{
	log_sink = sink;
	log_payload = payload;
}

void omni_log_set_prefix(const char *prefix)
{
	log_prefix = prefix ? prefix : "omni";
}

void omni__log(enum omni_log_level level, const char *file, int line,
               const char *fmt, ...)
{
	char msg[1024];
	size_t used = 0;
	va_list ap;

	if (level >= OMNI_LOG_DEBUG) {
		const char *base = strrchr(file, '/');

		snprintf(msg, sizeof(msg), "[%s:%d] ", base ? base + 1 : file,
		         line);
		used = strlen(msg);
	}
	va_start(ap, fmt);
	vsnprintf(msg + used, sizeof(msg) - used, fmt, ap);
	va_end(ap);

	if (log_sink) {
		log_sink(level, msg, log_payload);
		return;
	}

	char lineout[1200];
	int n = snprintf(lineout, sizeof(lineout), "%s: %s: %s\n", log_prefix,
	                 level_names[level], msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(lineout))
		n = sizeof(lineout) - 1;
	ssize_t w = write(STDERR_FILENO, lineout, (size_t)n);
	(void)w;
}
