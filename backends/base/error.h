/*
 * backends/base/error.h - keeping an error's message across cleanup
 * (private; the error API itself is omni/error.h).
 *
 * A failure often has cleanup after it (remove the half-made container,
 * unlink the temporary file, shut the backend down) and that cleanup may
 * set its own message, or fail itself, replacing the one that explains
 * the first failure. So the first message is kept aside:
 *
 *	struct omni__error_saved saved;
 *
 *	omni__error_save(&saved);
 *	container_remove(db, db->id);
 *	return omni__error_restore(&saved, rc);
 *
 * or quoted in a new message: omni_error_set(rc, "loading: %s",
 * saved.msg). The first failure's code is kept too (saved.code), for the
 * places that restore only when there was one.
 */
#ifndef OMNI_BASE_ERROR_H
#define OMNI_BASE_ERROR_H

#include "omni/error.h"

/* The calling thread's message and code at one moment (plain storage). */
struct omni__error_saved {
	int code;
	char msg[512];
};

/* Copy the calling thread's message and code into *saved. */
void omni__error_save(struct omni__error_saved *saved);

/* Make saved's message the calling thread's again, with the code err;
 * returns err (so "return omni__error_restore(&saved, rc);"). */
int omni__error_restore(const struct omni__error_saved *saved, int err);

#endif
