/*
 * fork.h - omnifs --from PROJECT[@CHECKPOINT] (fs/ only): a new session
 * whose workspace begins as a copy of another project's checkpoint
 * (backends/state/checkpoint.h), on whatever backend the new one uses.
 */
#ifndef OMNIFS_FORK_H
#define OMNIFS_FORK_H

#include "omni/backend.h"

/* Fill the running, empty workspace of b from from ("PROJECT" or
 * "PROJECT@CHECKPOINT"). 0, or -errno with omni_error_last() set. */
int omnifs_fork(struct omni_backend *b, const char *from);

#endif
