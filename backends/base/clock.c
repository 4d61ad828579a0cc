/*
 * backends/base/clock.c - the monotonic clock in milliseconds (see clock.h).
 *
 * One clock_gettime(CLOCK_MONOTONIC) call (a vDSO call on Linux, no
 * system call), truncated to whole milliseconds. Locking: none.
 */
#include <time.h>

#include "base/clock.h"

long long omni__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
