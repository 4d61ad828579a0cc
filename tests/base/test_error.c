/*
 * tests/base/test_error.c - omni/error.h: omni_error_set() returns its code and
 * records a message; omni_error_set_errno() appends strerror; messages and
 * codes are per thread; omni_error_clear() forgets; overlong messages are
 * truncated, never overflowed; omni__error_save() and omni__error_restore()
 * keep a message across cleanup.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "base/error.h"

TestSuite(error, .fini = omni_test_leak_check, .timeout = 30);

Test(error, set_returns_its_code)
{
	cr_assert_eq(omni_error_set(-ENOENT, "no such file: %s", "a.txt"),
	             -ENOENT);
	cr_assert_str_eq(omni_error_last(), "no such file: a.txt");
	cr_assert_eq(omni_error_code(), -ENOENT);
	cr_assert_eq(omni_error_set(-EIO, "%d %s", 42, "x"), -EIO);
	cr_assert_str_eq(omni_error_last(), "42 x");
	cr_assert_eq(omni_error_code(), -EIO);
}

Test(error, fresh_thread_state_is_empty)
{
	cr_assert_str_eq(omni_error_last(), "");
	cr_assert_eq(omni_error_code(), 0);
}

Test(error, clear_forgets)
{
	omni_error_set(-EACCES, "denied");
	omni_error_clear();
	cr_assert_str_eq(omni_error_last(), "");
	cr_assert_eq(omni_error_code(), 0);
}

Test(error, set_errno_appends_strerror)
{
	char want[256];

	cr_assert_eq(omni_error_set_errno(-ENOENT, "open %s", "f.txt"),
	             -ENOENT);
	snprintf(want, sizeof(want), "open f.txt: %s", strerror(ENOENT));
	cr_assert_str_eq(omni_error_last(), want);
	cr_assert_eq(omni_error_code(), -ENOENT);

	/* A positive errno is accepted for the text as well. */
	cr_assert_eq(omni_error_set_errno(EPERM, "chmod"), EPERM);
	snprintf(want, sizeof(want), "chmod: %s", strerror(EPERM));
	cr_assert_str_eq(omni_error_last(), want);
}

Test(error, long_messages_are_truncated)
{
	char big[2048];
	const char *msg;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_eq(omni_error_set(-E2BIG, "%s", big), -E2BIG);
	msg = omni_error_last();
	cr_assert_gt(strlen(msg), 100);
	cr_assert_lt(strlen(msg), sizeof(big) - 1);
	cr_assert_eq(msg[0], 'x');

	/* set_errno on an already full message still terminates it. */
	cr_assert_eq(omni_error_set_errno(-EIO, "%s", big), -EIO);
	cr_assert_lt(strlen(omni_error_last()), sizeof(big) - 1);
}

struct thread_view {
	char seen_before[128];
	int code_before;
	char seen_after[128];
	int code_after;
};

static void *other_thread(void *arg)
{
	struct thread_view *v = arg;

	snprintf(v->seen_before, sizeof(v->seen_before), "%s",
	         omni_error_last());
	v->code_before = omni_error_code();
	omni_error_set(-EPIPE, "thread message");
	snprintf(v->seen_after, sizeof(v->seen_after), "%s", omni_error_last());
	v->code_after = omni_error_code();
	return NULL;
}

Test(error, message_is_per_thread)
{
	struct thread_view v;
	pthread_t t;

	memset(&v, 0, sizeof(v));
	omni_error_set(-ENOENT, "main message");
	cr_assert_eq(pthread_create(&t, NULL, other_thread, &v), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);

	/* The other thread started clean and set its own message ... */
	cr_assert_str_eq(v.seen_before, "");
	cr_assert_eq(v.code_before, 0);
	cr_assert_str_eq(v.seen_after, "thread message");
	cr_assert_eq(v.code_after, -EPIPE);
	/* ... which did not touch ours. */
	cr_assert_str_eq(omni_error_last(), "main message");
	cr_assert_eq(omni_error_code(), -ENOENT);
}

Test(error, omni_assert_ok_accepts_counts)
{
	/* The helper treats any value >= 0 as success. */
	omni_assert_ok(0);
	omni_assert_ok(5);
	omni_assert_err(omni_error_set(-EINVAL, "bad"), -EINVAL);
}

Test(error, message_may_quote_the_previous_one)
{
	/* Wrapping the last message in a new one is a common idiom
	 * (exec/client.c): the arguments then point into the message buffer
	 * that is being written. */
	char want[256];

	omni_error_set(-ENOENT, "inner reason");
	cr_assert_eq(
	    omni_error_set(-EIO, "outer context (%s)", omni_error_last()),
	    -EIO);
	cr_assert_str_eq(omni_error_last(), "outer context (inner reason)");

	omni_error_set(-ENOENT, "inner reason");
	omni_error_set_errno(-EACCES, "%s, then more", omni_error_last());
	snprintf(want, sizeof(want), "inner reason, then more: %s",
	         strerror(EACCES));
	cr_assert_str_eq(omni_error_last(), want);
}

Test(error, save_and_restore_across_cleanup)
{
	struct omni__error_saved saved;

	omni_error_set(-ENOENT, "the first failure");
	omni__error_save(&saved);
	cr_assert_eq(saved.code, -ENOENT);
	cr_assert_str_eq(saved.msg, "the first failure");
	/* Cleanup that fails in turn. */
	omni_error_set(-EIO, "cleanup failed too");
	cr_assert_eq(omni__error_restore(&saved, -EEXIST), -EEXIST);
	cr_assert_str_eq(omni_error_last(), "the first failure");
	cr_assert_eq(omni_error_code(), -EEXIST);
	/* The saved copy can be quoted in a new message. */
	omni_error_set(-EIO, "cleanup failed too");
	omni_error_set(saved.code, "loading: %s", saved.msg);
	cr_assert_str_eq(omni_error_last(), "loading: the first failure");
}

Test(error, save_keeps_a_full_length_message)
{
	struct omni__error_saved saved;
	char big[2048];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	omni_error_set(-EIO, "%s", big);
	char want[sizeof(saved.msg)];
	snprintf(want, sizeof(want), "%s", omni_error_last());
	omni__error_save(&saved);
	omni_error_clear();
	omni__error_restore(&saved, -EIO);
	cr_assert_str_eq(omni_error_last(), want);
	cr_assert_eq(strlen(omni_error_last()), sizeof(saved.msg) - 1);
}
