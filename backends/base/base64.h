/*
 * backends/base/base64.h - base64 (RFC 4648), standard and URL-safe (private).
 *
 * Who uses it: the GCS state manager (object MD5 and CRC-32C checksums, as
 * the JSON API reports them), its service-account login (JWTs are
 * base64url without padding), and the e2b backend (process input and
 * output in Connect JSON, the Basic authorization header).
 *
 * Decoding comes in two strictnesses. Strict (omni__base64_decode) takes
 * the standard alphabet only and nothing but '=' after the first '='.
 * Lenient (OMNI__BASE64_LENIENT) takes both alphabets, even mixed, and
 * stops at the first '=': envd's output streams are read that way. Both
 * return the byte count, -EINVAL for a character outside the alphabet, or
 * -ENAMETOOLONG when out is too small (n characters decode to at most
 * 3 * n / 4 bytes).
 */
#ifndef OMNI_BASE_BASE64_H
#define OMNI_BASE_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Characters (without the NUL) of the padded encoding of len bytes. */
#define OMNI__BASE64_LEN(len) (((len) + 2) / 3 * 4)

/*
 * Base64 of len bytes into out (NUL-terminated). url selects the URL-safe
 * alphabet without padding (JWT). Returns the length, or -ENAMETOOLONG
 * when out is too small (it needs OMNI__BASE64_LEN(len) + 1 bytes).
 */
int omni__base64_encode(const void *data, size_t len, bool url, char *out,
                        size_t size);

/* Decode the NUL-terminated standard base64 in (padding optional),
 * strictly; see above for the results. */
int omni__base64_decode(const char *in, unsigned char *out, size_t size);

/* Decoding flags of omni__base64_decode_n(). */
#define OMNI__BASE64_LENIENT 1u

/* Decode the n characters at in (no NUL needed); flags 0 is strict. */
ssize_t omni__base64_decode_n(const char *in, size_t n, unsigned int flags,
                              void *out, size_t size);

#endif
