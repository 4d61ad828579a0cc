/*
 * backends/base/fnv.h - the 64-bit FNV-1a hash of a string (private).
 *
 * Used where a path or a name needs a stable, well-spread number: inode
 * numbers made from paths (the e2b backend, the remote cache) and the
 * name buckets of omnifs's inode table. Not for anything an adversary
 * chooses to collide on purpose: FNV is fast, not keyed.
 *
 * The start value is a parameter. OMNI__FNV64_OFFSET is the standard
 * offset basis: omni__fnv1a64(OMNI__FNV64_OFFSET, "a") is 0xaf63dc4c8601ec8c
 * as published. libomni and omnifs start from OMNI__FNV64_SEED instead, the
 * value they have always used (the decimal basis 14695981039346656037 with
 * its last digit lost): it hashes just as well, and keeping it keeps the
 * inode numbers that e2b and the cache have handed out. The inode table
 * mixes the parent's inode number into the seed.
 */
#ifndef OMNI_BASE_FNV_H
#define OMNI_BASE_FNV_H

#include <stdint.h>

#define OMNI__FNV64_OFFSET 14695981039346656037ull
#define OMNI__FNV64_SEED   1469598103934665603ull
#define OMNI__FNV64_PRIME  1099511628211ull

/* FNV-1a over the bytes of the NUL-terminated s, starting from h. */
static inline uint64_t omni__fnv1a64(uint64_t h, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = (h ^ *p) * OMNI__FNV64_PRIME;
	return h;
}

#endif
