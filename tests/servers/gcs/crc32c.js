/*
 * crc32c.js - CRC-32C (Castagnoli) checksum for the GCS test server.
 *
 * GCS reports the `crc32c` of an object as the base64 encoding of the 4-byte
 * big-endian CRC-32C value (reflected polynomial 0x82F63B78, initial value
 * and final XOR 0xFFFFFFFF).  This module provides an incremental,
 * table-driven (slicing-by-4) implementation plus the base64 helper.
 *
 * Check value: crc32c("123456789") === 0xE3069283.
 */
'use strict';

const POLY = 0x82f63b78;

/* T[k][n]: CRC of byte n followed by k zero bytes (slicing-by-4 tables). */
const T = [new Uint32Array(256), new Uint32Array(256), new Uint32Array(256), new Uint32Array(256)];
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[0][n] = c >>> 0;
}
for (let n = 0; n < 256; n++) {
  for (let k = 1; k < 4; k++) {
    const prev = T[k - 1][n];
    T[k][n] = ((prev >>> 8) ^ T[0][prev & 0xff]) >>> 0;
  }
}

/*
 * Continue a CRC over `buf`.  `crc` is a previous result of this function
 * (0 to start).  Returns the finished CRC as an unsigned 32-bit number, so
 * update(update(0, a), b) === update(0, concat(a, b)).
 */
function update(crc, buf) {
  let c = (~crc) >>> 0;
  const len = buf.length;
  let i = 0;
  const [t0, t1, t2, t3] = T;
  for (; i + 4 <= len; i += 4) {
    c ^= buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24);
    c = t3[c & 0xff] ^ t2[(c >>> 8) & 0xff] ^ t1[(c >>> 16) & 0xff] ^ t0[c >>> 24];
  }
  for (; i < len; i++) c = t0[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (~c) >>> 0;
}

/* CRC-32C of a whole buffer as an unsigned 32-bit number. */
function crc32c(buf) {
  return update(0, buf);
}

/* The GCS representation: base64 of the big-endian 4-byte value. */
function toBase64(value) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0, 0);
  return b.toString('base64');
}

module.exports = { crc32c, update, toBase64 };
