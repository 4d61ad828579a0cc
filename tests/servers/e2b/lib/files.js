// envd `/files` endpoints for the E2B test server.
//
// GET /files?path=&username=      download, like envd: Go ServeContent
//   semantics (Last-Modified, Range -> 206 incl. multipart/byteranges,
//   If-Modified-Since -> 304, If-Range, 416) or a gzip body when the client
//   accepts gzip and sent no Range/conditional header.
// POST /files?path=&username=     upload: multipart/form-data (every part
//   named `file`; target = `path` query or the part's filename, relative to
//   the user's home) or application/octet-stream (raw body, `path` required),
//   optional Content-Encoding: gzip. Parent dirs are created (0755, chowned),
//   files are truncated/created 0644 and chowned to the user. Answers a JSON
//   array of {name, path, type:"file"}. X-Metadata-<key> headers are kept
//   per inode and reported as EntryInfo.metadata.
// Errors are envd's plain JSON {"code":<http>,"message":"..."}.
'use strict';

const fs = require('fs');
const fsp = require('fs/promises');
const path = require('path').posix;
const zlib = require('zlib');
const crypto = require('crypto');
const { pipeline } = require('stream/promises');
const { resolveUserPath, resolveInRoot, ensureDirs } = require('./fsutil');

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function sendJsonError(res, status, message) {
  const body = Buffer.from(JSON.stringify({ code: status, message }) + '\n');
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length });
  res.end(body);
}

function expectedSignature(token, query, operation) {
  const p = query.get('path') || '';
  const username = query.get('username') || '';
  const exp = query.get('signature_expiration');
  let raw = `${p}:${operation}:${username}:${token}`;
  if (exp) raw += `:${exp}`;
  return 'v1_' + crypto.createHash('sha256').update(raw).digest('base64').replace(/=+$/, '');
}

/** Whether the URL's signature was made with this sandbox's access token. */
function signatureMatches(sb, query, operation) {
  return !!sb.accessToken && query.get('signature') === expectedSignature(sb.accessToken, query, operation);
}

/** Check the access token header or a v1 signature (secure sandboxes). */
function validateSigning(sb, req, query, operation) {
  if (!sb.accessToken) return;
  const header = req.headers['x-access-token'];
  if (header !== undefined) {
    if (header === sb.accessToken) return;
    throw new HttpError(401, 'access token present in header but does not match');
  }
  const signature = query.get('signature');
  if (!signature) throw new HttpError(401, 'missing signature query parameter');
  const exp = query.get('signature_expiration');
  const expected = expectedSignature(sb.accessToken, query, operation);
  if (signature !== expected) throw new HttpError(401, 'invalid signature');
  if (exp && parseInt(exp, 10) < Math.floor(Date.now() / 1000)) throw new HttpError(401, 'signature is already expired');
}

function lookupUser(sb, query) {
  const name = query.get('username') || sb.defaultUser;
  const user = sb.lookupUser(name);
  if (!user) throw new HttpError(401, `error looking up user '${name}': user: unknown user ${name}`);
  return user;
}

function resolvePath(sb, user, p) {
  try {
    return resolveUserPath(p, user, sb.defaultWorkdir);
  } catch (e) {
    throw new HttpError(400, `error resolving path: ${e.message}`);
  }
}

// --- content type --------------------------------------------------------

const EXT_TYPES = {
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.xml': 'text/xml; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.avif': 'image/avif',
  '.pdf': 'application/pdf',
  '.wasm': 'application/wasm',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
  '.tar': 'application/x-tar',
};

function typeByExtension(p) {
  return EXT_TYPES[path.extname(p).toLowerCase()] || '';
}

/** A small subset of Go's http.DetectContentType. */
function sniff(buf) {
  const starts = (sig) => buf.length >= sig.length && buf.subarray(0, sig.length).equals(Buffer.from(sig, 'latin1'));
  if (starts('\x89PNG\r\n\x1a\n')) return 'image/png';
  if (starts('\xff\xd8\xff')) return 'image/jpeg';
  if (starts('GIF87a') || starts('GIF89a')) return 'image/gif';
  if (starts('%PDF-')) return 'application/pdf';
  if (starts('PK\x03\x04')) return 'application/zip';
  if (starts('\x1f\x8b\x08')) return 'application/x-gzip';
  const head = buf.subarray(0, 512).toString('latin1').trimStart().toLowerCase();
  if (head.startsWith('<!doctype html') || head.startsWith('<html')) return 'text/html; charset=utf-8';
  for (const b of buf.subarray(0, 512)) {
    if (b <= 0x08 || b === 0x0b || (b >= 0x0e && b <= 0x1a) || (b >= 0x1c && b <= 0x1f)) return 'application/octet-stream';
  }
  return 'text/plain; charset=utf-8';
}

/** Pick gzip or identity from Accept-Encoding like envd. Throws 406. */
function negotiateEncoding(header) {
  if (!header) return '';
  const items = header.split(',').map((v) => {
    const [name, ...params] = v.trim().split(';');
    let q = 1;
    for (const prm of params) {
      const m = /^\s*q=([0-9.]+)\s*$/i.exec(prm);
      if (m) q = parseFloat(m[1]);
    }
    return { enc: name.trim().toLowerCase(), q };
  });
  items.sort((a, b) => b.q - a.q);
  const identityRejected = items.some((i) => i.enc === 'identity' && i.q === 0);
  for (const i of items) {
    if (i.q === 0) continue;
    if (i.enc === 'identity') return '';
    if (i.enc === '*') return identityRejected ? 'gzip' : '';
    if (i.enc === 'gzip') return 'gzip';
  }
  if (!identityRejected) return '';
  throw new HttpError(406, 'no acceptable encoding found, supported: [gzip]');
}

/** Parse a Range header against `size`. Returns null (serve all), 'invalid', 'nooverlap' or [{start,end}]. */
function parseRange(header, size) {
  if (!header) return null;
  if (!header.startsWith('bytes=')) return 'invalid';
  const ranges = [];
  let noOverlap = false;
  for (let spec of header.slice(6).split(',')) {
    spec = spec.trim();
    if (!spec) continue;
    const dash = spec.indexOf('-');
    if (dash < 0) return 'invalid';
    const a = spec.slice(0, dash).trim();
    const b = spec.slice(dash + 1).trim();
    let start;
    let end;
    if (a === '') {
      if (b === '' || !/^\d+$/.test(b)) return 'invalid';
      let n = parseInt(b, 10);
      if (n > size) n = size;
      start = size - n;
      end = size - 1;
      if (n === 0) {
        noOverlap = true;
        continue;
      }
    } else {
      if (!/^\d+$/.test(a)) return 'invalid';
      start = parseInt(a, 10);
      if (start >= size) {
        noOverlap = true;
        continue;
      }
      if (b === '') end = size - 1;
      else {
        if (!/^\d+$/.test(b)) return 'invalid';
        end = parseInt(b, 10);
        if (start > end) return 'invalid';
        if (end >= size) end = size - 1;
      }
    }
    ranges.push({ start, end });
  }
  if (!ranges.length) return noOverlap ? 'nooverlap' : 'invalid';
  const total = ranges.reduce((s, r) => s + (r.end - r.start + 1), 0);
  if (total > size) return null; // Go: "the total of ranges is larger than the file"; serve whole
  return ranges;
}

function httpDate(ms) {
  return new Date(Math.floor(ms / 1000) * 1000).toUTCString();
}

// --- GET -----------------------------------------------------------------

async function getFiles(sb, req, res, query) {
  try {
    validateSigning(sb, req, query, 'read');
    const user = lookupUser(sb, query);
    const p = resolvePath(sb, user, query.get('path') || '');
    const r = await resolveInRoot(sb.root, p, true).catch(() => ({ exists: false }));
    let st = null;
    if (r.exists) {
      try {
        st = await fsp.stat(r.host);
      } catch (e) {
        if (e.code !== 'ENOENT' && e.code !== 'ENOTDIR') {
          throw new HttpError(500, `error checking if path exists '${p}': ${e.message}`);
        }
      }
    }
    if (!st) throw new HttpError(404, `path '${p}' does not exist`);
    if (st.isDirectory()) throw new HttpError(400, `path '${p}' is a directory`);
    const encoding = negotiateEncoding(req.headers['accept-encoding']);
    res.setHeader('Vary', 'Accept-Encoding');
    const h = req.headers;
    const conditional = h.range || h['if-modified-since'] || h['if-none-match'] || h['if-range'];
    const base = path.basename(p);
    const disposition = contentDisposition(base);

    if (encoding === 'gzip' && !conditional) {
      res.writeHead(200, {
        'Content-Encoding': 'gzip',
        'Content-Type': typeByExtension(p) || 'application/octet-stream',
        'Content-Disposition': disposition,
      });
      if (req.method === 'HEAD') return res.end();
      await pipeline(fs.createReadStream(r.host), zlib.createGzip(), res).catch(() => res.destroy());
      return;
    }
    await serveContent(req, res, r.host, p, st, disposition);
  } catch (e) {
    if (e instanceof HttpError) return sendJsonError(res, e.status, e.message);
    return sendJsonError(res, 500, e.message);
  }
}

/**
 * Content-Disposition for a download, as envd's Go code makes it
 * (mime.FormatMediaType): a token is sent bare, other printable ASCII as a
 * quoted string, and anything else in the RFC 2231/5987 extended form
 * filename*=utf-8''<percent-encoded>, since a header value cannot carry
 * raw non-ASCII bytes.
 */
function contentDisposition(base) {
  if (/^[\w!#$&+.^`|~-]+$/.test(base)) return `inline; filename=${base}`;
  if (/^[\x20-\x7e]*$/.test(base)) {
    return `inline; filename="${base.replace(/(["\\])/g, '\\$1')}"`;
  }
  const enc = Array.from(Buffer.from(base, 'utf8'))
    .map((b) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9!#$&+.^_`|~-]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    })
    .join('');
  return `inline; filename*=utf-8''${enc}`;
}

/** Go http.ServeContent, for a regular file. */
async function serveContent(req, res, host, p, st, disposition) {
  const size = st.size;
  const mtimeSec = Math.floor(st.mtimeMs / 1000);
  const h = req.headers;
  let ctype = typeByExtension(p);
  if (!ctype) {
    const fh = await fsp.open(host, 'r');
    try {
      const buf = Buffer.alloc(Math.min(512, size));
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      ctype = sniff(buf.subarray(0, bytesRead));
    } finally {
      await fh.close();
    }
  }
  const headers = {
    'Last-Modified': httpDate(st.mtimeMs),
    'Accept-Ranges': 'bytes',
    'Content-Disposition': disposition,
  };

  // Preconditions (no ETag is ever set, like envd).
  const im = h['if-match'];
  if (im && im.trim() !== '*') return finishStatus(res, 412, headers);
  if (!im && h['if-unmodified-since']) {
    const t = Date.parse(h['if-unmodified-since']);
    if (!Number.isNaN(t) && mtimeSec > Math.floor(t / 1000)) return finishStatus(res, 412, headers);
  }
  const inm = h['if-none-match'];
  if (inm) {
    if (inm.trim() === '*' && (req.method === 'GET' || req.method === 'HEAD')) return finishStatus(res, 304, headers);
  } else if ((req.method === 'GET' || req.method === 'HEAD') && h['if-modified-since']) {
    const t = Date.parse(h['if-modified-since']);
    if (!Number.isNaN(t) && mtimeSec <= Math.floor(t / 1000)) return finishStatus(res, 304, headers);
  }

  let rangeHeader = h.range;
  if (rangeHeader && h['if-range']) {
    const ir = h['if-range'].trim();
    const t = Date.parse(ir);
    if (ir.startsWith('"') || ir.startsWith('W/') || Number.isNaN(t) || Math.floor(t / 1000) !== mtimeSec) rangeHeader = undefined;
  }
  const ranges = parseRange(rangeHeader, size);
  if (ranges === 'invalid' || ranges === 'nooverlap') {
    const msg = ranges === 'invalid' ? 'invalid range' : 'invalid range: failed to overlap';
    const body = Buffer.from(msg + '\n');
    res.writeHead(416, {
      'Content-Range': `bytes */${size}`,
      'Content-Type': 'text/plain; charset=utf-8',
      'X-Content-Type-Options': 'nosniff',
      'Content-Length': body.length,
    });
    return res.end(body);
  }

  if (!ranges) {
    res.writeHead(200, { ...headers, 'Content-Type': ctype, 'Content-Length': size });
    if (req.method === 'HEAD' || size === 0) return res.end();
    await pipeline(fs.createReadStream(host), res).catch(() => res.destroy());
    return;
  }
  if (ranges.length === 1) {
    const { start, end } = ranges[0];
    res.writeHead(206, {
      ...headers,
      'Content-Type': ctype,
      'Content-Range': `bytes ${start}-${end}/${size}`,
      'Content-Length': end - start + 1,
    });
    if (req.method === 'HEAD') return res.end();
    await pipeline(fs.createReadStream(host, { start, end }), res).catch(() => res.destroy());
    return;
  }
  // Several ranges: multipart/byteranges.
  const boundary = crypto.randomBytes(12).toString('hex');
  const parts = ranges.map(({ start, end }) => ({
    head: Buffer.from(`\r\n--${boundary}\r\nContent-Type: ${ctype}\r\nContent-Range: bytes ${start}-${end}/${size}\r\n\r\n`),
    start,
    end,
  }));
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const length = parts.reduce((s, x) => s + x.head.length + (x.end - x.start + 1), 0) + tail.length;
  res.writeHead(206, { ...headers, 'Content-Type': `multipart/byteranges; boundary=${boundary}`, 'Content-Length': length });
  if (req.method === 'HEAD') return res.end();
  for (const part of parts) {
    res.write(part.head);
    await pipeline(fs.createReadStream(host, { start: part.start, end: part.end }), res, { end: false }).catch(() => res.destroy());
  }
  res.end(tail);
}

function finishStatus(res, status, headers) {
  const h = { 'Last-Modified': headers['Last-Modified'] };
  res.writeHead(status, h);
  res.end();
}

// --- POST ----------------------------------------------------------------

/** Parse Content-Disposition parameters (quoted strings, RFC 2231 filename*). */
function parseDisposition(value) {
  const params = {};
  const re = /;\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g;
  let m;
  while ((m = re.exec(value))) {
    const key = m[1].toLowerCase();
    let v = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3].trim();
    if (key.endsWith('*')) {
      const mm = /^[^']*'[^']*'(.*)$/.exec(v);
      try {
        v = decodeURIComponent(mm ? mm[1] : v);
      } catch (_) {
        // keep raw
      }
      params[key.slice(0, -1)] = v;
    } else if (!(key in params)) params[key] = v;
  }
  return params;
}

/**
 * Streaming multipart/form-data parser. onPart(headers) returns a sink
 * {write(buf): Promise, end(): Promise} or null to skip the part.
 */
async function parseMultipart(stream, boundary, onPart) {
  const delim = Buffer.from('\r\n--' + boundary);
  let buf = Buffer.from('\r\n');
  let state = 'preamble';
  let sink = null;
  const keep = delim.length + 4;
  let failure = null;
  for await (const chunk of stream) {
    // Never leave this loop early: that would destroy the request socket
    // before we can answer. After an error the rest is just drained.
    if (failure || state === 'done') continue;
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    try {
      await consume();
    } catch (e) {
      failure = e;
      if (sink && sink.abort) await sink.abort();
      sink = null;
    }
  }
  if (failure) throw failure;
  if (state !== 'done') throw new HttpError(500, 'error reading form: multipart: NextPart: EOF');

  async function consume() {
    for (;;) {
      if (state === 'preamble' || state === 'body') {
        const idx = buf.indexOf(delim);
        if (idx < 0) {
          if (buf.length > keep) {
            const cut = buf.length - keep;
            if (state === 'body' && sink) await sink.write(buf.subarray(0, cut));
            buf = buf.subarray(cut);
          }
          return;
        }
        if (state === 'body' && sink) {
          if (idx > 0) await sink.write(buf.subarray(0, idx));
          const s = sink;
          sink = null;
          await s.end();
        }
        sink = null;
        buf = buf.subarray(idx + delim.length);
        state = 'delim';
      }
      if (state === 'delim') {
        // Optional linear whitespace, then "--" (end) or CRLF (next part).
        let i = 0;
        while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x09)) i++;
        if (buf.length < i + 2) return;
        if (buf[i] === 0x2d && buf[i + 1] === 0x2d) {
          state = 'done';
          return;
        }
        if (buf[i] !== 0x0d || buf[i + 1] !== 0x0a) throw new HttpError(500, 'error reading form: multipart: expecting a new Part');
        buf = buf.subarray(i + 2);
        state = 'headers';
      }
      if (state === 'headers') {
        const idx = buf.indexOf('\r\n\r\n');
        if (idx < 0) {
          if (buf.length > 1 << 20) throw new HttpError(500, 'error reading form: multipart: header too large');
          return;
        }
        const headers = {};
        for (const line of buf.subarray(0, idx).toString('utf8').split('\r\n')) {
          const c = line.indexOf(':');
          if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
        }
        buf = buf.subarray(idx + 4);
        sink = await onPart(headers);
        state = 'body';
      }
    }
  }
}

/** Open the target for writing (parents created, ownership set). */
async function openTarget(sb, user, p) {
  try {
    await ensureDirs(sb.root, path.dirname(p), user.uid, user.gid);
  } catch (e) {
    throw new HttpError(e.code === 'ENOSPC' ? 507 : 500, `error ensuring directories: ${e.message}`);
  }
  const r = await resolveInRoot(sb.root, p, true);
  const st = await fsp.stat(r.host).catch(() => null);
  if (st && st.isDirectory()) throw new HttpError(400, `path is a directory: ${p}`);
  let fh;
  try {
    const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW;
    fh = await fsp.open(r.host, flags, 0o666);
    await fh.chown(user.uid, user.gid);
  } catch (e) {
    if (fh) await fh.close().catch(() => {});
    if (e.code === 'ENOSPC') throw new HttpError(507, `not enough inodes available: ${e.message}`);
    throw new HttpError(500, `error opening file: ${e.message}`);
  }
  let written = 0;
  return {
    host: r.host,
    async write(buf) {
      try {
        let off = 0;
        while (off < buf.length) {
          const { bytesWritten } = await fh.write(buf, off, buf.length - off, written);
          off += bytesWritten;
          written += bytesWritten;
        }
      } catch (e) {
        if (e.code === 'ENOSPC' || e.code === 'EDQUOT') throw new HttpError(507, 'not enough disk space available');
        throw new HttpError(500, `error writing file: ${e.message}`);
      }
    },
    async end() {
      await fh.close();
    },
    async abort() {
      await fh.close().catch(() => {});
    },
  };
}

function metadataHeaders(req) {
  const md = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.startsWith('x-metadata-') && k.length > 11) md[k.slice(11)] = Array.isArray(v) ? v.join(', ') : v;
  }
  return md;
}

async function applyMetadata(sb, host, md) {
  if (!Object.keys(md).length) return;
  const st = await fsp.stat(host).catch(() => null);
  if (st) sb.setMetadata(st, md);
}

async function postFiles(sb, req, res, query) {
  let body = req;
  try {
    validateSigning(sb, req, query, 'write');
    const ce = String(req.headers['content-encoding'] || '').split(';')[0].trim().toLowerCase();
    if (ce && ce !== 'identity') {
      if (ce !== 'gzip') {
        throw new HttpError(400, `error decompressing request body: unsupported Content-Encoding: ${req.headers['content-encoding']}, supported: [gzip]`);
      }
      body = req.pipe(zlib.createGunzip());
      body.on('error', () => {});
    }
    const user = lookupUser(sb, query);
    const md = metadataHeaders(req);
    const ctype = String(req.headers['content-type'] || '');
    const media = ctype.split(';')[0].trim().toLowerCase();
    const results = [];

    if (media === 'application/octet-stream') {
      if (!query.has('path')) throw new HttpError(400, 'path query parameter is required for raw body upload');
      const p = resolvePath(sb, user, query.get('path'));
      const sink = await openTarget(sb, user, p);
      let failure = null;
      try {
        for await (const chunk of body) {
          if (failure) continue; // keep draining, see parseMultipart
          try {
            await sink.write(chunk);
          } catch (e) {
            failure = e;
          }
        }
      } catch (e) {
        failure = failure || new HttpError(400, `error reading request body: ${e.message}`);
      }
      if (failure) {
        await sink.abort();
        throw failure;
      }
      await sink.end();
      await applyMetadata(sb, sink.host, md);
      results.push({ path: p, name: path.basename(p), type: 'file', ...(Object.keys(md).length ? { metadata: md } : {}) });
    } else if (media.startsWith('multipart/')) {
      const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(ctype);
      if (!m) throw new HttpError(500, 'error parsing multipart form: no multipart boundary param in Content-Type');
      const boundary = m[1] || m[2];
      let failure = null;
      await parseMultipart(body, boundary, async (headers) => {
        if (failure) return null;
        const disp = headers['content-disposition'] || '';
        const params = parseDisposition(disp);
        if (params.name !== 'file') return null;
        try {
          const target = query.has('path') ? query.get('path') : params.filename || '';
          const p = resolvePath(sb, user, target);
          if (results.some((x) => x.path === p)) {
            throw new HttpError(
              400,
              `you cannot upload multiple files to the same path '${p}' in one upload request, only the first specified file was uploaded`,
            );
          }
          const sink = await openTarget(sb, user, p);
          return {
            write: (b) => sink.write(b),
            abort: () => sink.abort(),
            end: async () => {
              await sink.end();
              await applyMetadata(sb, sink.host, md);
              results.push({ path: p, name: path.basename(p), type: 'file', ...(Object.keys(md).length ? { metadata: md } : {}) });
            },
          };
        } catch (e) {
          failure = e;
          return null;
        }
      });
      if (failure) throw failure;
    } else {
      throw new HttpError(400, `unsupported content type: ${ctype}, expected multipart/form-data or application/octet-stream`);
    }
    const out = Buffer.from(JSON.stringify(results));
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': out.length });
    res.end(out);
  } catch (e) {
    // Drain what is left of the body so the client reads our answer.
    if (!req.readableEnded && !req.destroyed) {
      req.resume();
      await new Promise((r) => {
        req.once('end', r);
        req.once('close', r);
        req.once('error', r);
      });
    }
    if (e instanceof HttpError) return sendJsonError(res, e.status, e.message);
    return sendJsonError(res, 500, e.message);
  }
}

module.exports = { getFiles, postFiles, signatureMatches, HttpError, sendJsonError, parseRange, negotiateEncoding };
