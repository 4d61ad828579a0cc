/*
 * backends/base/clock.h - the monotonic clock in milliseconds (private).
 *
 * Deadlines, timeouts, idle timers and durations all over libomni,
 * omni-agent and omni-exec are measured with omni__now_ms(): CLOCK_MONOTONIC
 * never jumps with the wall clock (NTP, a user setting the date), so a
 * deadline computed as now + timeout always means that much time. Its zero
 * is arbitrary (boot): compare and subtract values, never show them as
 * dates.
 */
#ifndef OMNI_BASE_CLOCK_H
#define OMNI_BASE_CLOCK_H

/* Milliseconds on CLOCK_MONOTONIC. */
long long omni__now_ms(void);

#endif
