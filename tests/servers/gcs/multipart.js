/*
 * multipart.js - parser for the `multipart/related` bodies (RFC 2387) of
 * GCS `uploadType=multipart` uploads: part 1 is the JSON object metadata,
 * part 2 the media.  Works on a fully buffered body.
 */
'use strict';

const { ApiError } = require('./util');

/* Extract the boundary parameter from a Content-Type header value. */
function boundaryOf(contentType) {
  const m = /;\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(contentType || '');
  return m ? m[1] || m[2] : null;
}

/* Split a body into parts: [{headers: {lower-name: value}, body: Buffer}]. */
function parseMultipart(body, contentType) {
  const boundary = boundaryOf(contentType);
  if (!/^multipart\//i.test(contentType || '') || !boundary) {
    throw new ApiError(400, 'Multipart upload requires a multipart/related Content-Type with a boundary.', 'badContent');
  }
  const delim = Buffer.from('--' + boundary);
  const parts = [];
  let pos = body.indexOf(delim);
  if (pos < 0) throw new ApiError(400, 'Multipart body has no boundary line.', 'badContent');
  for (;;) {
    pos += delim.length;
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) break; // closing "--boundary--"
    // skip transport padding and the line break after the delimiter
    while (body[pos] === 0x20 || body[pos] === 0x09) pos++;
    if (body[pos] === 0x0d) pos++;
    if (body[pos] === 0x0a) pos++;
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delim]), pos);
    const nextLf = next < 0 ? body.indexOf(Buffer.concat([Buffer.from('\n'), delim]), pos) : -1;
    if (next < 0 && nextLf < 0) throw new ApiError(400, 'Multipart body is not terminated.', 'badContent');
    const end = next >= 0 ? next : nextLf;
    parts.push(parsePart(body.subarray(pos, end)));
    pos = end + (next >= 0 ? 2 : 1);
  }
  return parts;
}

function parsePart(raw) {
  // a part that starts with the blank line has no headers
  if (raw[0] === 0x0a) return { headers: {}, body: raw.subarray(1) };
  if (raw[0] === 0x0d && raw[1] === 0x0a) return { headers: {}, body: raw.subarray(2) };
  // the header block ends at the first blank line (CRLF or bare LF style)
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  let sep = crlf;
  let sepLen = 4;
  if (lf >= 0 && (crlf < 0 || lf < crlf)) { sep = lf; sepLen = 2; }
  if (sep < 0) throw new ApiError(400, 'Multipart part has no header/body separator.', 'badContent');
  const headers = {};
  for (const line of raw.subarray(0, sep).toString('utf8').split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { headers, body: raw.subarray(sep + sepLen) };
}

module.exports = { parseMultipart, boundaryOf };
