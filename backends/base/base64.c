/*
 * backends/base/base64.c - base64 encoding and decoding (see base64.h).
 *
 * The encoder packs three bytes into four six-bit digits and pads the last
 * group with '=' (standard) or leaves it short (URL-safe). The decoder
 * shifts six bits at a time into an accumulator and takes a byte whenever
 * eight are there, so it needs no group bookkeeping and accepts input
 * with or without padding. Locking: none; everything works on the
 * caller's buffers.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "base/base64.h"

static const char b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int omni__base64_encode(const void *data, size_t len, bool url, char *out,
                        size_t size)
{
	const unsigned char *p = data;
	const char *alpha = url ? b64_url : b64_std;
	size_t n = 0;

	if (size < OMNI__BASE64_LEN(len) + 1)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t left = len - i;
		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		out[n++] = alpha[(v >> 18) & 63];
		out[n++] = alpha[(v >> 12) & 63];
		if (left > 1)
			out[n++] = alpha[(v >> 6) & 63];
		else if (!url)
			out[n++] = '=';
		if (left > 2)
			out[n++] = alpha[v & 63];
		else if (!url)
			out[n++] = '=';
	}
	out[n] = '\0';
	return (int)n;
}

/* The digit's value, or -1; lenient also takes the URL-safe "-_". */
static int b64_value(char c, bool lenient)
{
	const char *at = c ? strchr(b64_std, c) : NULL;

	if (at)
		return (int)(at - b64_std);
	if (lenient && c == '-')
		return 62;
	if (lenient && c == '_')
		return 63;
	return -1;
}

ssize_t omni__base64_decode_n(const char *in, size_t n, unsigned int flags,
                              void *out, size_t size)
{
	bool lenient = flags & OMNI__BASE64_LENIENT;
	unsigned char *o = out;
	uint32_t acc = 0;
	int bits = 0;
	size_t i = 0, len = 0;

	for (; i < n && in[i] != '='; i++) {
		int v = b64_value(in[i], lenient);
		if (v < 0)
			return -EINVAL;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (len >= size)
				return -ENAMETOOLONG;
			o[len++] = (unsigned char)(acc >> bits);
		}
	}
	if (lenient)
		return (ssize_t)len;
	while (i < n && in[i] == '=')
		i++;
	return i < n ? -EINVAL : (ssize_t)len;
}

int omni__base64_decode(const char *in, unsigned char *out, size_t size)
{
	return (int)omni__base64_decode_n(in, strlen(in), 0, out, size);
}
