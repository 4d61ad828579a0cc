/*
 * tests/base/test_base64.c - base/base64.h: the RFC 4648 test vectors in
 * both alphabets, round trips of every length up to 300 bytes, strict and
 * lenient decoding, and the size checks.
 */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "base/base64.h"

TestSuite(base64, .fini = omni_test_leak_check, .timeout = 30);

Test(base64, rfc4648_vectors)
{
	static const char *const plain[] = { "",     "f",     "fo",    "foo",
		                             "foob", "fooba", "foobar" };
	static const char *const std[] = {
		"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"
	};
	static const char *const url[] = { "",        "Zg",     "Zm8",
		                           "Zm9v",    "Zm9vYg", "Zm9vYmE",
		                           "Zm9vYmFy" };
	char out[32];
	unsigned char back[32];

	for (size_t i = 0; i < 7; i++) {
		size_t n = strlen(plain[i]);
		cr_assert_eq(
		    omni__base64_encode(plain[i], n, false, out, sizeof(out)),
		    (int)strlen(std[i]));
		cr_assert_str_eq(out, std[i]);
		cr_assert_eq(
		    omni__base64_encode(plain[i], n, true, out, sizeof(out)),
		    (int)strlen(url[i]));
		cr_assert_str_eq(out, url[i]);
		cr_assert_eq(omni__base64_decode(std[i], back, sizeof(back)),
		             (int)n);
		cr_assert(memcmp(back, plain[i], n) == 0);
		/* Padding is optional. */
		cr_assert_eq(omni__base64_decode(url[i], back, sizeof(back)),
		             (int)n);
		cr_assert(memcmp(back, plain[i], n) == 0);
	}
}

Test(base64, url_alphabet)
{
	const unsigned char data[] = { 0xfb, 0xff, 0xbf };
	char out[8];
	unsigned char back[8];

	omni__base64_encode(data, 3, false, out, sizeof(out));
	cr_assert_str_eq(out, "+/+/");
	omni__base64_encode(data, 3, true, out, sizeof(out));
	cr_assert_str_eq(out, "-_-_");
	/* Strict decoding knows only the standard alphabet... */
	cr_assert_eq(omni__base64_decode("-_-_", back, sizeof(back)), -EINVAL);
	/* ...lenient decoding both, even mixed. */
	cr_assert_eq(omni__base64_decode_n("-/+_", 4, OMNI__BASE64_LENIENT,
	                                   back, sizeof(back)),
	             3);
	cr_assert(memcmp(back, data, 3) == 0);
}

Test(base64, round_trips)
{
	unsigned char data[300], back[300];
	char text[OMNI__BASE64_LEN(sizeof(data)) + 1];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + 3);
	for (size_t n = 0; n <= sizeof(data); n++) {
		for (int url = 0; url < 2; url++) {
			int len = omni__base64_encode(data, n, url, text,
			                              sizeof(text));
			cr_assert_eq((size_t)len, strlen(text));
			if (!url)
				cr_assert_eq((size_t)len, OMNI__BASE64_LEN(n));
			ssize_t m = omni__base64_decode_n(
			    text, (size_t)len, url ? OMNI__BASE64_LENIENT : 0,
			    back, sizeof(back));
			cr_assert_eq(m, (ssize_t)n);
			cr_assert(memcmp(data, back, n) == 0);
		}
	}
}

Test(base64, strict_and_lenient_endings)
{
	unsigned char back[16];

	/* Strict: only '=' after the first '='. */
	cr_assert_eq(omni__base64_decode("Zg==", back, sizeof(back)), 1);
	cr_assert_eq(omni__base64_decode("Zg==Zg", back, sizeof(back)),
	             -EINVAL);
	cr_assert_eq(omni__base64_decode("a!b", back, sizeof(back)), -EINVAL);
	/* Lenient: stops at the first '='. */
	cr_assert_eq(omni__base64_decode_n("Zg==Zg", 6, OMNI__BASE64_LENIENT,
	                                   back, sizeof(back)),
	             1);
	cr_assert_eq(omni__base64_decode_n("a$b=", 4, OMNI__BASE64_LENIENT,
	                                   back, sizeof(back)),
	             -EINVAL);
	/* decode_n reads n characters, not up to a NUL. */
	cr_assert_eq(
	    omni__base64_decode_n("Zm9vYmFy", 4, 0, back, sizeof(back)), 3);
	cr_assert(memcmp(back, "foo", 3) == 0);
}

Test(base64, sizes_are_checked)
{
	char out[9];
	unsigned char back[2];

	/* "foobar" needs 8 characters and the NUL. */
	cr_assert_eq(omni__base64_encode("foobar", 6, false, out, 8),
	             -ENAMETOOLONG);
	cr_assert_eq(omni__base64_encode("foobar", 6, false, out, 9), 8);
	cr_assert_eq(omni__base64_decode("Zm9v", back, sizeof(back)),
	             -ENAMETOOLONG);
	cr_assert_eq(omni__base64_decode_n("Zm9v", 4, OMNI__BASE64_LENIENT,
	                                   back, sizeof(back)),
	             -ENAMETOOLONG);
}
