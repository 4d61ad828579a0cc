/*
 * backends/core/hash.h - checksums and encodings the state managers need
 * (private): CRC-32C (Castagnoli, as Google Cloud Storage reports it), MD5
 * through OpenSSL's EVP interface, and hex. Base64, which the same callers
 * need, is libc-only and lives in base/base64.h (included here).
 */
#ifndef OMNI_HASH_H
#define OMNI_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base64.h"

/*
 * CRC-32C of data, continuing from crc (start with 0). The value is the
 * usual one (reflected polynomial 0x82F63B78, inverted in and out), so
 * omni__crc32c(0, "123456789", 9) == 0xE3069283.
 */
uint32_t omni__crc32c(uint32_t crc, const void *data, size_t len);

/* Incremental MD5. init returns 0 or -ENOMEM; final writes 16 bytes and
 * frees the context (so does finish, for an abandoned one). */
struct omni__md5 {
	void *ctx; /* EVP_MD_CTX */
};
int omni__md5_init(struct omni__md5 *m);
void omni__md5_update(struct omni__md5 *m, const void *data, size_t len);
void omni__md5_final(struct omni__md5 *m, unsigned char out[16]);
void omni__md5_finish(struct omni__md5 *m);

/* Lower-case hex of len bytes into out (2 * len + 1 bytes). */
void omni__hex(const unsigned char *data, size_t len, char *out);

#endif
