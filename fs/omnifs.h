/*
 * omnifs.h - the filesystem daemon's shared state (fs/ only).
 *
 * main.c fills a struct omnifs from the command line, starts the backend
 * session, and hands the struct to libfuse as the session's userdata.
 * ops.c, ops_node.c and ops_dir.c implement the low-level FUSE operations
 * on top of the backend's vfs calls (ops.h); ctl.c runs omni-exec commands and
 * calls omnifs_invalidate_all() after each.
 */
#ifndef OMNIFS_OMNIFS_H
#define OMNIFS_OMNIFS_H

#include <stdatomic.h>
#include <stdbool.h>

#include <fuse_lowlevel.h>

#include "inode.h"
#include "watch.h"
#include "omni/backend.h"

/* FUSE operations counted for `omni-exec --stats`. */
enum omnifs_op {
	OMNIFS_OP_LOOKUP,
	OMNIFS_OP_GETATTR,
	OMNIFS_OP_SETATTR,
	OMNIFS_OP_READLINK,
	OMNIFS_OP_MKNOD,
	OMNIFS_OP_MKDIR,
	OMNIFS_OP_UNLINK,
	OMNIFS_OP_RMDIR,
	OMNIFS_OP_SYMLINK,
	OMNIFS_OP_RENAME,
	OMNIFS_OP_LINK,
	OMNIFS_OP_OPEN,
	OMNIFS_OP_READ,
	OMNIFS_OP_WRITE,
	OMNIFS_OP_FLUSH,
	OMNIFS_OP_RELEASE,
	OMNIFS_OP_FSYNC,
	OMNIFS_OP_OPENDIR,
	OMNIFS_OP_READDIR,
	OMNIFS_OP_RELEASEDIR,
	OMNIFS_OP_STATFS,
	OMNIFS_OP_CREATE,
	OMNIFS_OP_FLOCK,
	OMNIFS_OP_FALLOCATE,
	OMNIFS_OP_FORGET,
	OMNIFS_OP_COUNT,
};

struct omnifs {
	struct omni_backend *backend;
	struct omnifs_inodes *inodes;
	struct fuse_session *se;
	double attr_timeout;
	double entry_timeout;
	double negative_timeout;
	/* The backend's files are host descriptors (local, docker): flock(2)
	 * is forwarded to them, and close needs no flush. */
	bool host_files;
	/* The inode table is one of backing files with descriptors
	 * (OMNI_CAP_NODES: local, docker), set by the init operation. */
	bool nodes;
	/* The backend is remote and wrapped in the cache (cache.h). */
	bool remote;
	/* The kernel can expire names without dropping them (Linux >= 6.2);
	 * older kernels drop them, which breaks getcwd() in a directory the
	 * invalidation touched until it is looked up again. */
	bool expire_only;
	/* The change watch of a host mount (watch.h), or NULL. */
	struct omnifs_watch *watch;
	/* -o writeback (1), -o no_writeback (-1), else 0: on when the
	 * watch runs. writeback says whether the kernel took it (op_init). */
	int writeback_mode;
	bool writeback;
	atomic_ullong op_count[OMNIFS_OP_COUNT];
	atomic_ullong invalidations;
};

/* The low-level operations table. */
extern const struct fuse_lowlevel_ops omnifs_ops;

/*
 * Tell the kernel to forget what it caches about every known inode and
 * name (attributes, page cache, dentries). Call after a command ran in the
 * sandbox. Never from inside a FUSE request.
 */
void omnifs_invalidate_all(struct omnifs *fs);

/*
 * The same for one workspace-relative path that changed in the sandbox
 * ("" for all): the kernel forgets the name in its directory (unless st
 * says it is a directory it knows) and the node's attributes and pages.
 * st is what the path is now, or NULL. Called from the backend's watch
 * thread.
 */
void omnifs_invalidate_path(struct omnifs *fs, const char *path,
                            const struct stat *st);

/* A text report of the counters (malloc'd), the backend's included. */
char *omnifs_stats_text(struct omnifs *fs);

#endif
