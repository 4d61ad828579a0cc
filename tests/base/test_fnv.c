/*
 * tests/base/test_fnv.c - base/fnv.h: omni__fnv1a64() from the standard
 * offset basis gives the published 64-bit FNV-1a values; from our own seed
 * it gives the values the inode numbers have always had; and another
 * start value seeds it (as the inode table mixes in the parent's number).
 */
#include <stdint.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "base/fnv.h"

TestSuite(fnv, .fini = omni_test_leak_check, .timeout = 30);

Test(fnv, known_vectors)
{
	static const struct {
		const char *in;
		uint64_t want;
	} cases[] = {
		{ "", 0xcbf29ce484222325ull },
		{ "a", 0xaf63dc4c8601ec8cull },
		{ "foobar", 0x85944171f73967e8ull },
	};

	cr_assert_eq(OMNI__FNV64_OFFSET, 0xcbf29ce484222325ull);
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
		cr_assert_eq(omni__fnv1a64(OMNI__FNV64_OFFSET, cases[i].in),
		             cases[i].want, "FNV-1a of \"%s\"", cases[i].in);
}

Test(fnv, our_seed_keeps_old_values)
{
	cr_assert_eq(OMNI__FNV64_SEED, 0x14650fb0739d0383ull);
	cr_assert_eq(omni__fnv1a64(OMNI__FNV64_SEED, ""), OMNI__FNV64_SEED);
	cr_assert_eq(omni__fnv1a64(OMNI__FNV64_SEED, "a"),
	             0x44bd8ad473cd9906ull);
	cr_assert_eq(omni__fnv1a64(OMNI__FNV64_SEED, "/tmp/workspace"),
	             0x3f9e6168c8bd8dbfull);
}

Test(fnv, start_value_seeds_and_continues)
{
	uint64_t ab = omni__fnv1a64(OMNI__FNV64_OFFSET, "ab");

	/* Hashing "b" from the hash of "a" is hashing "ab". */
	cr_assert_eq(omni__fnv1a64(omni__fnv1a64(OMNI__FNV64_OFFSET, "a"), "b"),
	             ab);
	cr_assert_neq(omni__fnv1a64(OMNI__FNV64_OFFSET ^ 2, "ab"), ab);
	/* Bytes above 0x7f count as unsigned. */
	cr_assert_eq(omni__fnv1a64(0, "\xff"), 0xffull * OMNI__FNV64_PRIME);
}
