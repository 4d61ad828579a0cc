/*
 * backends/state/tar_snapshot.h - a workspace as a tar.gz archive and back
 * (private), through the backend operations and libarchive. Used by the gcs
 * state manager for its snapshots, its pending uploads and its backups.
 *
 * Archives are POSIX pax (restricted) in gzip, with workspace-relative
 * names ("src/a.c", no "./"), regular files with their permission bits,
 * modification times and exact bytes, symlinks with their targets, and
 * directories (so empty ones survive). Owners are not recorded: the
 * files belong to whoever runs the sandbox. Reading also accepts what
 * other tar writers make (the documented Python manager's archives hold
 * only regular files, no directories).
 */
#ifndef OMNI_TAR_SNAPSHOT_H
#define OMNI_TAR_SNAPSHOT_H

#include <stdint.h>

#include "state/snapshot.h"

struct omni__tar_info {
	long long files; /* regular files and symlinks */
	long long bytes; /* their content */
	char digest[33]; /* omni__digest of the entries */
	/* Of the archive file itself (written or checked). */
	long long size;
	unsigned char md5[16];
	uint32_t crc32c;
};

/*
 * Write the workspace (scanned with scan_flags, see snapshot.h) as a
 * tar.gz into the host descriptor fd, from its current offset. Counts
 * into progress (may be NULL).
 */
int omni__tar_write(struct omni_backend *b, unsigned int scan_flags, int fd,
                    struct omni__progress *progress,
                    struct omni__tar_info *info);

/*
 * Read the whole archive in fd (from offset 0) without writing anything:
 * every header and every byte is decoded, every name checked (no
 * absolute paths, no ".."), entries and bytes counted against the
 * restore limits (snapshot.h). -EPROTO for a damaged archive, -EINVAL
 * for an unsafe name, -EFBIG past a limit, with the archive's name
 * (what) in the message.
 */
int omni__tar_check(int fd, const char *what, struct omni__tar_info *info);

/* Stage the archive's entries through a (begun) apply; the caller then
 * calls omni__apply_finish(), which moves them into the workspace. */
int omni__tar_apply(struct omni__apply *a, int fd, const char *what);

#endif
