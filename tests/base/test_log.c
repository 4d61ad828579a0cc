/*
 * tests/base/test_log.c - omni/log.h: the level is tested before the arguments
 * are evaluated, a sink gets the formatted message (with [file:line] from
 * DEBUG on), the default sink writes "prefix: level: message" lines to
 * stderr, and omni_log_set_prefix(NULL) restores "omni".
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "helpers.h"

TestSuite(log, .fini = omni_test_leak_check, .timeout = 30);

struct captured {
	int calls;
	enum omni_log_level level;
	char msg[2048];
};

static void capture(enum omni_log_level level, const char *msg, void *payload)
{
	struct captured *c = payload;

	c->calls++;
	c->level = level;
	snprintf(c->msg, sizeof(c->msg), "%s", msg);
}

Test(log, default_threshold_is_warn)
{
	cr_assert_eq(omni_log_threshold, OMNI_LOG_WARN);
}

Test(log, sink_gets_messages_at_or_below_the_threshold)
{
	struct captured c = { 0 };
	int evaluated = 0;

	omni_log_set_sink(capture, &c);
	omni_log_set_level(OMNI_LOG_INFO);
	cr_assert_eq(omni_log_threshold, OMNI_LOG_INFO);

	omni_log(OMNI_LOG_ERROR, "broken %d", 1);
	cr_assert_eq(c.calls, 1);
	cr_assert_eq(c.level, OMNI_LOG_ERROR);
	cr_assert_str_eq(c.msg, "broken 1");

	omni_log(OMNI_LOG_INFO, "info %s", "text");
	cr_assert_eq(c.calls, 2);
	cr_assert_str_eq(c.msg, "info text");

	/* Above the threshold: not called, arguments not evaluated. */
	omni_log(OMNI_LOG_DEBUG, "debug %d", ++evaluated);
	omni_log(OMNI_LOG_TRACE, "trace %d", ++evaluated);
	cr_assert_eq(c.calls, 2);
	cr_assert_eq(evaluated, 0);
	omni_log_set_sink(NULL, NULL);
}

Test(log, debug_lines_carry_file_and_line)
{
	struct captured c = { 0 };
	char want[64];
	int line;

	omni_log_set_sink(capture, &c);
	omni_log_set_level(OMNI_LOG_TRACE);
	line = __LINE__ + 1;
	omni_log(OMNI_LOG_DEBUG, "where %s", "am I");
	snprintf(want, sizeof(want), "[test_log.c:%d] where am I", line);
	cr_assert_eq(c.calls, 1);
	cr_assert_eq(c.level, OMNI_LOG_DEBUG);
	cr_assert_str_eq(c.msg, want);
	omni_log(OMNI_LOG_TRACE, "t");
	cr_assert_eq(c.level, OMNI_LOG_TRACE);
	cr_assert_not_null(strstr(c.msg, "test_log.c:"));
	omni_log_set_sink(NULL, NULL);
}

Test(log, long_messages_are_truncated)
{
	struct captured c = { 0 };
	char big[4096];

	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	omni_log_set_sink(capture, &c);
	omni_log(OMNI_LOG_ERROR, "%s", big);
	cr_assert_eq(c.calls, 1);
	cr_assert_gt(strlen(c.msg), 100);
	cr_assert_lt(strlen(c.msg), sizeof(big) - 1);
	omni_log_set_sink(NULL, NULL);
}

Test(log, default_sink_writes_stderr, .init = cr_redirect_stderr)
{
	omni_log_set_sink(NULL, NULL);
	omni_log_set_level(OMNI_LOG_INFO);
	omni_log_set_prefix("omnitest");
	omni_log(OMNI_LOG_WARN, "first %d", 1);
	omni_log_set_prefix(NULL);
	omni_log(OMNI_LOG_ERROR, "second");
	omni_log(OMNI_LOG_INFO, "third");
	omni_log(OMNI_LOG_DEBUG, "not shown");
	fflush(stderr);
	cr_assert_stderr_eq_str("omnitest: warning: first 1\n"
	                        "omni: error: second\n"
	                        "omni: info: third\n");
}
