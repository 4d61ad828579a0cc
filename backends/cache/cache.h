/*
 * backends/cache/cache.h - the cache decorator in front of a remote
 * backend (private to libomni; the omnifs daemon puts it in front of e2b).
 *
 * omni__cache_wrap() returns a backend of its own (a decorator, like
 * sshfs's cache_wrap) that implements every operation of the ops table
 * on top of the remote one: attributes and listings are kept for a time
 * to live, file content is fetched whole into a private local file on
 * open and uploaded when it changed, so the FUSE layer sees a backend
 * with host descriptors and each POSIX call costs at most one request,
 * most of them none. See cache.c for the design.
 */
#ifndef OMNI_CACHE_CACHE_H
#define OMNI_CACHE_CACHE_H

#include <stddef.h>

#include "omni/backend.h"

struct omni__cache_options {
	/* Seconds attributes, listings and file content are trusted. */
	double ttl;
	/* The same while the backend's change watch is connected (its
	 * events invalidate what changed). */
	double watch_ttl;
	/* Clean file copies kept after their last close. */
	size_t max_clean_files;
	unsigned long long max_clean_bytes;
	/* Write-back ("writes" mode): close keeps a changed file (on local
	 * disk, in spool, when one is given) and returns; uploads run in
	 * the background, several at once, and the modes and times set on
	 * files not yet uploaded go in one command per flush. false: close
	 * uploads (and waits). */
	bool writeback;
	/* The folder that keeps pending uploads across restarts ("": kept
	 * in memory only); start uploads what an earlier session left. */
	char spool[4096];
	/* Seconds shutdown spends on pending uploads before it keeps the
	 * rest in spool. */
	double shutdown_wait;
};

#define OMNI__CACHE_OPTIONS_INIT                                               \
	{                                                                      \
		.ttl = 5.0, .watch_ttl = 60.0, .max_clean_files = 4096,        \
		.max_clean_bytes = 512ull << 20, .shutdown_wait = 30.0,        \
	}

/*
 * Wrap inner in a cache. The cache owns inner from then on, even on
 * failure, and frees it with itself. Starting the cache starts inner;
 * shutting it down uploads what is dirty, then shuts inner down.
 */
int omni__cache_wrap(struct omni_backend **out, struct omni_backend *inner,
                     const struct omni__cache_options *opts);

/* Is b a cache made by omni__cache_wrap()? */
bool omni__cache_is(const struct omni_backend *b);

/*
 * Upload every file changed through the cache and not yet uploaded (one
 * request per dirty file, several at once, none when all are clean),
 * then the modes and times waiting for them (one command). Returns the
 * first error; files that failed stay dirty. It waits for uploads the
 * background has under way: when it returns 0, the sandbox has
 * everything that was written before the call.
 */
int omni__cache_flush_all(struct omni_backend *cache);

/*
 * Upload what an earlier session left pending in opts.spool (a daemon
 * killed, an unmount during an outage), with its modes and times; what
 * cannot be uploaded stays, and a message says where. Called once the
 * session has started, after the snapshot load, so the newer copies win.
 */
void omni__cache_recover(struct omni_backend *cache);

/* Uploads and attribute changes not yet in the sandbox. */
size_t omni__cache_pending(struct omni_backend *cache);

#endif
