/*
 * backends/core/hash.c - CRC-32C, MD5 and hex (see hash.h).
 *
 * CRC-32C is computed eight bytes at a time with eight lookup tables
 * ("slicing-by-8"): the tables are built once, on first use, under
 * pthread_once, from the reflected Castagnoli polynomial. OpenSSL has no
 * CRC-32C; GCS reports one for every object, so uploads and downloads are
 * checked with it (and with MD5, which OpenSSL does have).
 *
 * Locking: the tables are written once before any reader sees them
 * (pthread_once); everything else works on the caller's data.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/hash.h"

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] =
			    (crc_table[t - 1][i] >> 8) ^
			    crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t omni__crc32c(uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (len >= 8) {
		uint32_t lo =
		    crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
		           (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
		              (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

int omni__md5_init(struct omni__md5 *m)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	m->ctx = NULL;
	if (!ctx)
		return -ENOMEM;
	if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1) {
		EVP_MD_CTX_free(ctx);
		return -ENOMEM;
	}
	m->ctx = ctx;
	return 0;
}

void omni__md5_update(struct omni__md5 *m, const void *data, size_t len)
{
	if (m->ctx && len)
		EVP_DigestUpdate(m->ctx, data, len);
}

void omni__md5_final(struct omni__md5 *m, unsigned char out[16])
{
	unsigned int n = 16;

	memset(out, 0, 16);
	if (m->ctx)
		EVP_DigestFinal_ex(m->ctx, out, &n);
	omni__md5_finish(m);
}

void omni__md5_finish(struct omni__md5 *m)
{
	EVP_MD_CTX_free(m->ctx);
	m->ctx = NULL;
}

void omni__hex(const unsigned char *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 15];
	}
	out[2 * len] = '\0';
}
