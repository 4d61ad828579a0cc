/*
 * tests/base/test_clock.c - base/clock.h: omni__now_ms() never goes back,
 * moves with real time (a sleep of 50 ms shows as 50 ms or a little more),
 * and agrees with CLOCK_MONOTONIC read directly.
 */
#include <time.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "base/clock.h"

TestSuite(clock, .fini = omni_test_leak_check, .timeout = 30);

Test(clock, never_goes_back)
{
	long long last = omni__now_ms();

	for (int i = 0; i < 100000; i++) {
		long long now = omni__now_ms();
		cr_assert_geq(now, last);
		last = now;
	}
}

Test(clock, follows_a_sleep)
{
	struct timespec ts = { 0, 50 * 1000000L };
	long long before = omni__now_ms();

	nanosleep(&ts, NULL);
	long long took = omni__now_ms() - before;
	cr_assert_geq(took, 49, "slept 50 ms, the clock says %lld", took);
	cr_assert_lt(took, 5000);
}

Test(clock, is_the_monotonic_clock)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	long long direct = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	long long ours = omni__now_ms();
	cr_assert_geq(ours, direct);
	cr_assert_lt(ours - direct, 1000);
}
