/*
 * backends/core/progress.c - the progress line of long transfers (see
 * progress.h).
 *
 * Locking: a report belongs to the one operation (and thread) that made
 * it; stderr's own lock keeps lines whole.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "core/progress.h"

/* Non-terminal output gets a line this often at most. */
#define PLAIN_INTERVAL_MS 5000
#define TTY_INTERVAL_MS   100

void omni__human_size(long long bytes, char *out, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(out, size, "%lld B", bytes);
		return;
	}
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(out, size, "%.1f %s", v, units[u]);
}

void omni__progress_start(struct omni__progress *p, bool enabled,
                          const char *fmt, ...)
{
	va_list ap;

	memset(p, 0, sizeof(*p));
	p->out = enabled ? stderr : NULL;
	p->tty = enabled && isatty(fileno(stderr));
	va_start(ap, fmt);
	vsnprintf(p->what, sizeof(p->what), fmt, ap);
	va_end(ap);
	p->unit = "file";
	p->start_ms = p->last_ms = omni__now_ms();
}

static void draw(struct omni__progress *p)
{
	char size[32];

	omni__human_size(p->bytes, size, sizeof(size));
	fprintf(p->out, "%somnifs: %s: %lld %s%s, %s%s",
	        p->tty ? "\r\033[K" : "", p->what, p->files, p->unit,
	        p->files == 1 ? "" : "s", size, p->tty ? "" : "\n");
	fflush(p->out);
	p->drawn = p->tty;
}

void omni__progress_add(struct omni__progress *p, long long files,
                        long long bytes)
{
	p->files += files;
	p->bytes += bytes;
	if (!p->out)
		return;
	long long now = omni__now_ms();
	if (now - p->last_ms < (p->tty ? TTY_INTERVAL_MS : PLAIN_INTERVAL_MS))
		return;
	p->last_ms = now;
	draw(p);
}

void omni__progress_done(struct omni__progress *p, const char *fmt, ...)
{
	char msg[256], size[32];
	va_list ap;

	if (!p->out)
		return;
	if (!fmt) {
		if (p->drawn)
			fputc('\n', p->out);
		p->drawn = false;
		fflush(p->out);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	omni__human_size(p->bytes, size, sizeof(size));
	fprintf(p->out, "%somnifs: %s (%lld %s%s, %s, %.1f s)\n",
	        p->drawn ? "\r\033[K" : "", msg, p->files, p->unit,
	        p->files == 1 ? "" : "s", size,
	        (double)(omni__now_ms() - p->start_ms) / 1000.0);
	fflush(p->out);
	p->drawn = false;
}
