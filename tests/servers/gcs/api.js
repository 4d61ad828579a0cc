/*
 * api.js - request handlers of the GCS test server (JSON API subset).
 *
 * Each handler gets a context `ctx`:
 *   { req, res, method, query (URLSearchParams), bucket, object (decoded
 *     names from the path), base ("http://host:port" as the client sees us),
 *     store, hooks, cutoff (armed /_test/cutoff rule or null), dest {bucket,
 *     object} for copy/rewrite }
 * and either answers on ctx.res or throws an ApiError (answered by the
 * dispatcher with the GCS error JSON).  Behaviour follows
 * /work/shared/protocols/gcs-git.md Part A.
 */
'use strict';

const crypto = require('crypto');
const { crc32c, toBase64 } = require('./crc32c');
const { parseMultipart } = require('./multipart');
const {
  ApiError, sendJson, parseFields, applyFields, globToRegExp, compareNames, rfc3339, encodeSegment,
} = require('./util');

const CHUNK_GRANULARITY = 256 * 1024; // non-final resumable chunks: multiples of this
const MAX_LIST_PAGE = 1000;

/* Object fields a client may set (uploads, patch, update, copy). */
const WRITABLE_FIELDS = ['contentType', 'contentEncoding', 'contentDisposition', 'contentLanguage',
  'cacheControl', 'metadata', 'customTime', 'storageClass'];

/* ------------------------------------------------------------------ */
/* request bodies                                                      */
/* ------------------------------------------------------------------ */

/*
 * Read the whole request body.  Resolves {data, complete}; complete is
 * false when the client went away mid-body or when an armed cutoff rule
 * dropped the connection after `afterBytes` bytes (data then holds exactly
 * the bytes "received" before the cut).
 */
function readBody(req, cutoff) {
  return new Promise((resolve) => {
    const chunks = [];
    let n = 0;
    let done = false;
    const finish = (complete) => {
      if (done) return;
      done = true;
      resolve({ data: Buffer.concat(chunks, n), complete });
    };
    const cut = () => {
      req.pause();
      req.socket.destroy();
      finish(false);
    };
    if (cutoff && cutoff.afterBytes <= 0) { cut(); return; }
    req.on('data', (c) => {
      if (done) return;
      if (cutoff && n + c.length >= cutoff.afterBytes) {
        const take = cutoff.afterBytes - n;
        chunks.push(c.subarray(0, take));
        n += take;
        cut();
        return;
      }
      chunks.push(c);
      n += c.length;
    });
    req.on('end', () => { if (cutoff) cut(); else finish(true); });
    req.on('close', () => finish(false));
    req.on('error', () => finish(false));
  });
}

/* Read a body that must arrive complete; returns null if it did not. */
async function readFullBody(ctx) {
  const { data, complete } = await readBody(ctx.req, ctx.cutoff);
  return complete ? data : null;
}

function parseJsonBody(buf, allowEmpty) {
  if (!buf || buf.length === 0 || !buf.toString('utf8').trim()) {
    if (allowEmpty) return {};
    throw new ApiError(400, 'Required request body is missing.', 'required');
  }
  try {
    const v = JSON.parse(buf.toString('utf8'));
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
    return v;
  } catch (e) {
    throw new ApiError(400, `Parse Error: ${e.message}`, 'parseError');
  }
}

/* ------------------------------------------------------------------ */
/* resources                                                           */
/* ------------------------------------------------------------------ */

function objectEtag(obj) {
  // Real GCS uses an opaque base64 value that changes with generation and
  // metageneration; this one does too.
  return Buffer.from(`${obj.generation}/${obj.metageneration}`).toString('base64');
}

function objectResource(obj, base) {
  const encName = encodeSegment(obj.name);
  const r = {
    kind: 'storage#object',
    id: `${obj.bucket}/${obj.name}/${obj.generation}`,
    selfLink: `${base}/storage/v1/b/${encodeSegment(obj.bucket)}/o/${encName}`,
    mediaLink: `${base}/download/storage/v1/b/${encodeSegment(obj.bucket)}/o/${encName}?generation=${obj.generation}&alt=media`,
    name: obj.name,
    bucket: obj.bucket,
    generation: String(obj.generation),
    metageneration: String(obj.metageneration),
    contentType: obj.contentType,
    storageClass: obj.storageClass || 'STANDARD',
    size: String(obj.size),
    crc32c: obj.crc32c,
    etag: objectEtag(obj),
    timeCreated: rfc3339(obj.timeCreated),
    updated: rfc3339(obj.updated),
    timeStorageClassUpdated: rfc3339(obj.timeCreated),
  };
  if (obj.md5Hash) r.md5Hash = obj.md5Hash;
  if (obj.componentCount) r.componentCount = obj.componentCount;
  for (const k of ['contentEncoding', 'contentDisposition', 'contentLanguage', 'cacheControl', 'customTime']) {
    if (obj[k] !== undefined && obj[k] !== null) r[k] = obj[k];
  }
  if (obj.metadata && Object.keys(obj.metadata).length) r.metadata = obj.metadata;
  return r;
}

function bucketResource(bucket, base) {
  const rec = bucket.record;
  const r = {
    kind: 'storage#bucket',
    selfLink: `${base}/storage/v1/b/${encodeSegment(rec.name)}`,
    id: rec.name,
    name: rec.name,
    projectNumber: '0',
    generation: String(rec.generation),
    metageneration: String(rec.metageneration),
    location: rec.location || 'US',
    locationType: 'multi-region',
    storageClass: rec.storageClass || 'STANDARD',
    etag: Buffer.from(String(rec.metageneration)).toString('base64'),
    timeCreated: rfc3339(rec.timeCreated),
    updated: rfc3339(rec.updated),
    iamConfiguration: { uniformBucketLevelAccess: { enabled: true }, publicAccessPrevention: 'inherited' },
  };
  if (rec.labels && Object.keys(rec.labels).length) r.labels = rec.labels;
  if (rec.versioning) r.versioning = rec.versioning;
  return r;
}

/* Send a resource honouring the `fields` partial-response parameter. */
function sendResource(ctx, status, resource, headers) {
  const fields = ctx.query.get('fields');
  sendJson(ctx.res, status, fields ? applyFields(resource, parseFields(fields)) : resource, headers);
}

/* ------------------------------------------------------------------ */
/* validation, lookups, preconditions                                  */
/* ------------------------------------------------------------------ */

function validateObjectName(name) {
  if (name === null || name === undefined || name === '') {
    throw new ApiError(400, 'Required', 'required');
  }
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > 1024) throw new ApiError(400, 'The maximum object length is 1024 characters, but got a name with ' + bytes + ' characters', 'invalid');
  if (/[\r\n]/.test(name) || name === '.' || name === '..' || name.startsWith('.well-known/acme-challenge/')) {
    throw new ApiError(400, 'Invalid object name.', 'invalid');
  }
  if (Buffer.from(name, 'utf8').toString('utf8') !== name) throw new ApiError(400, 'Object name must be valid UTF-8.', 'invalid');
}

function validateBucketName(name) {
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(name) ||
      name.split('.').some((p) => p.length > 63) || (!name.includes('.') && name.length > 63)) {
    throw new ApiError(400, 'Invalid bucket name: \'' + name + '\'', 'invalid');
  }
}

function needBucket(ctx, name) {
  const b = ctx.store.getBucket(name === undefined ? ctx.bucket : name);
  if (!b) throw new ApiError(404, 'The specified bucket does not exist.', 'notFound');
  return b;
}

function noSuchObject(bucket, name) {
  return new ApiError(404, `No such object: ${bucket}/${name}`, 'notFound');
}

function parseLongParam(q, key) {
  const v = q.get(key);
  if (v === null || v === '') return null;
  if (!/^-?\d+$/.test(v)) throw new ApiError(400, `Invalid argument for ${key}: ${v}`, 'invalid');
  return Number(v);
}

/* Look up the live object named in the path; honours `generation=`. */
function needObject(ctx, bucketName, name, genParam) {
  needBucket(ctx, bucketName);
  const obj = ctx.store.getObject(bucketName, name);
  const gen = parseLongParam(ctx.query, genParam || 'generation');
  if (!obj || (gen !== null && gen !== obj.generation)) throw noSuchObject(bucketName, name);
  return obj;
}

/*
 * Check ifGenerationMatch / ifGenerationNotMatch / ifMetagenerationMatch /
 * ifMetagenerationNotMatch (names prefixed with `prefix`, e.g. "ifSource")
 * against `obj` (null = no live object).  Writes fail with 412; for reads a
 * failed *NotMatch answers 304 Not Modified, as GCS does.
 */
function checkPreconditions(conds, obj, { read = false, prefix = 'if' } = {}) {
  const gm = conds[`${prefix}GenerationMatch`];
  const gnm = conds[`${prefix}GenerationNotMatch`];
  const mm = conds[`${prefix}MetagenerationMatch`];
  const mnm = conds[`${prefix}MetagenerationNotMatch`];
  const gen = obj ? obj.generation : 0;
  const fail = () => { throw new ApiError(412, 'At least one of the pre-conditions you specified did not hold.', 'conditionNotMet', { locationType: 'header', location: 'If-Match' }); };
  const notModified = () => { throw new ApiError(304, 'Not Modified', 'notModified'); };
  if (gm !== null && gm !== undefined && gm !== gen) fail();
  if (mm !== null && mm !== undefined && (!obj || obj.metageneration !== mm)) fail();
  if (gnm !== null && gnm !== undefined && gnm === gen) (read ? notModified : fail)();
  if (mnm !== null && mnm !== undefined && obj && obj.metageneration === mnm) (read ? notModified : fail)();
}

function preconditionsFromQuery(q, prefix = 'if') {
  const out = {};
  for (const k of ['GenerationMatch', 'GenerationNotMatch', 'MetagenerationMatch', 'MetagenerationNotMatch']) {
    out[prefix + k] = parseLongParam(q, prefix + k);
  }
  return out;
}

/* Take the writable fields out of a JSON metadata object. */
function writableFields(meta, fallbackContentType) {
  const out = {};
  for (const k of WRITABLE_FIELDS) {
    if (meta[k] !== undefined && meta[k] !== null) out[k] = meta[k];
  }
  if (out.metadata !== undefined) {
    if (typeof out.metadata !== 'object' || Array.isArray(out.metadata)) {
      throw new ApiError(400, 'Invalid value for metadata: must be a map of strings.', 'invalid');
    }
    const m = {};
    for (const [k, v] of Object.entries(out.metadata)) if (v !== null && v !== undefined) m[k] = String(v);
    out.metadata = m;
  }
  if (!out.contentType) out.contentType = fallbackContentType || 'application/octet-stream';
  return out;
}

/*
 * Verify client-supplied hashes against the data.  `hashes` holds base64
 * crc32c and/or md5 (from the X-Goog-Hash header or JSON metadata).
 */
function verifyHashes(data, hashes) {
  if (hashes.crc32c) {
    const got = toBase64(crc32c(data));
    if (got !== hashes.crc32c) {
      throw new ApiError(400, `Provided CRC32C "${hashes.crc32c}" doesn't match calculated CRC32C "${got}".`, 'invalid');
    }
  }
  if (hashes.md5) {
    const got = crypto.createHash('md5').update(data).digest('base64');
    if (got !== hashes.md5) {
      throw new ApiError(400, `Provided MD5 hash "${hashes.md5}" doesn't match calculated MD5 hash "${got}".`, 'invalid');
    }
  }
}

/* Parse an X-Goog-Hash header ("crc32c=..,md5=..", may repeat). */
function parseGoogHash(header) {
  const out = {};
  if (!header) return out;
  for (const item of String(header).split(',')) {
    const i = item.indexOf('=');
    if (i > 0) out[item.slice(0, i).trim().toLowerCase()] = item.slice(i + 1).trim();
  }
  return out;
}

/* ------------------------------------------------------------------ */
/* buckets                                                             */
/* ------------------------------------------------------------------ */

async function bucketInsert(ctx) {
  const body = await readFullBody(ctx);
  if (body === null) return;
  const meta = parseJsonBody(body, false);
  validateBucketName(meta.name);
  if (ctx.store.getBucket(meta.name)) {
    throw new ApiError(409, 'Your previous request to create the named bucket succeeded and you already own it.', 'conflict');
  }
  const fields = {};
  for (const k of ['location', 'storageClass', 'labels', 'versioning']) if (meta[k] !== undefined) fields[k] = meta[k];
  const b = ctx.store.createBucket(meta.name, fields);
  sendResource(ctx, 200, bucketResource(b, ctx.base));
}

async function bucketGet(ctx) {
  sendResource(ctx, 200, bucketResource(needBucket(ctx), ctx.base));
}

async function bucketList(ctx) {
  const prefix = ctx.query.get('prefix') || '';
  const all = ctx.store.listBuckets().filter((b) => b.record.name.startsWith(prefix))
    .sort((a, b) => compareNames(a.record.name, b.record.name));
  const { page, nextPageToken } = paginate(ctx, all.map((b) => ({ key: b.record.name, b })));
  const out = { kind: 'storage#buckets' };
  if (page.length) out.items = page.map((e) => bucketResource(e.b, ctx.base));
  if (nextPageToken) out.nextPageToken = nextPageToken;
  sendResource(ctx, 200, out);
}

async function bucketPatch(ctx) {
  const body = await readFullBody(ctx);
  if (body === null) return;
  const b = needBucket(ctx);
  const meta = parseJsonBody(body, true);
  const rec = b.record;
  if (meta.labels !== undefined) {
    rec.labels = ctx.method === 'PUT' ? {} : Object.assign({}, rec.labels);
    for (const [k, v] of Object.entries(meta.labels || {})) {
      if (v === null) delete rec.labels[k]; else rec.labels[k] = String(v);
    }
  }
  for (const k of ['versioning', 'storageClass']) if (meta[k] !== undefined) rec[k] = meta[k];
  rec.metageneration += 1;
  rec.updated = Date.now();
  ctx.store.saveBucket(b);
  sendResource(ctx, 200, bucketResource(b, ctx.base));
}

async function bucketDelete(ctx) {
  const b = needBucket(ctx);
  if (b.objects.size) throw new ApiError(409, 'The bucket you tried to delete is not empty.', 'conflict');
  ctx.store.deleteBucket(ctx.bucket);
  ctx.res.writeHead(204);
  ctx.res.end();
}

/* ------------------------------------------------------------------ */
/* uploads                                                             */
/* ------------------------------------------------------------------ */

/* Store a completely received upload after all checks; answers 200. */
function commitUpload(ctx, { bucket, name, data, fields, conds, hashes }) {
  needBucket(ctx, bucket);
  validateObjectName(name);
  verifyHashes(data, hashes);
  checkPreconditions(conds, ctx.store.getObject(bucket, name));
  const obj = ctx.store.putObject(bucket, name, data, fields);
  const resource = objectResource(obj, ctx.base);
  sendResource(ctx, 200, resource);
  return resource;
}

async function uploadMedia(ctx) {
  const data = await readFullBody(ctx);
  if (data === null) return;
  const name = ctx.query.get('name');
  const fields = writableFields({ contentEncoding: ctx.query.get('contentEncoding') || undefined },
    ctx.req.headers['content-type']);
  commitUpload(ctx, {
    bucket: ctx.bucket, name, data, fields,
    conds: preconditionsFromQuery(ctx.query),
    hashes: parseGoogHash(ctx.req.headers['x-goog-hash']),
  });
}

async function uploadMultipart(ctx) {
  const body = await readFullBody(ctx);
  if (body === null) return;
  const parts = parseMultipart(body, ctx.req.headers['content-type']);
  if (parts.length < 2) throw new ApiError(400, 'Multipart upload needs a metadata part and a media part.', 'badContent');
  const meta = parseJsonBody(parts[0].body, true);
  const data = parts[1].body;
  const name = ctx.query.get('name') || meta.name;
  const fields = writableFields(meta, parts[1].headers['content-type']);
  const hashes = parseGoogHash(ctx.req.headers['x-goog-hash']);
  if (meta.crc32c) hashes.crc32c = meta.crc32c;
  if (meta.md5Hash) hashes.md5 = meta.md5Hash;
  commitUpload(ctx, { bucket: ctx.bucket, name, data, fields, conds: preconditionsFromQuery(ctx.query), hashes });
}

async function uploadResumableInit(ctx) {
  const body = await readFullBody(ctx);
  if (body === null) return;
  const meta = parseJsonBody(body, true);
  const name = ctx.query.get('name') || meta.name;
  needBucket(ctx);
  validateObjectName(name);
  const conds = preconditionsFromQuery(ctx.query);
  checkPreconditions(conds, ctx.store.getObject(ctx.bucket, name));
  const h = ctx.req.headers;
  let total = null;
  if (h['x-upload-content-length'] !== undefined && h['x-upload-content-length'] !== '') {
    if (!/^\d+$/.test(h['x-upload-content-length'])) throw new ApiError(400, 'Invalid X-Upload-Content-Length header.', 'invalid');
    total = Number(h['x-upload-content-length']);
  }
  const fields = writableFields(
    Object.assign({ contentEncoding: ctx.query.get('contentEncoding') || undefined }, meta),
    h['x-upload-content-type'] || meta.contentType);
  const s = ctx.store.createSession({ bucket: ctx.bucket, name, fields, conds, total });
  const location = `${ctx.base}/upload/storage/v1/b/${encodeSegment(ctx.bucket)}/o?uploadType=resumable` +
    `&name=${encodeSegment(name)}&upload_id=${s.id}`;
  ctx.res.writeHead(200, {
    Location: location,
    'X-GUploader-UploadID': s.id,
    'Content-Length': 0,
    'Content-Type': 'text/plain; charset=utf-8',
  });
  ctx.res.end();
}

/*
 * Content-Range of a resumable PUT: "bytes A-B/T", "bytes A-*\/T",
 * "bytes A-B/*", "bytes A-*\/*", "bytes *\/T", "bytes *\/*".
 * Returns {start, end, total} with null for "*" / absent parts.
 */
function parseContentRange(value) {
  const m = /^\s*bytes\s+(?:(\d+)-(\d+|\*)|\*)\/(\d+|\*)\s*$/i.exec(value);
  if (!m) throw new ApiError(400, `Invalid Content-Range header: ${value}`, 'invalid');
  const num = (x) => (x === undefined || x === '*' ? null : Number(x));
  const r = { start: num(m[1]), end: num(m[2]), total: num(m[3]) };
  if (r.start !== null && r.end !== null && r.end < r.start) throw new ApiError(400, `Invalid Content-Range header: ${value}`, 'invalid');
  return r;
}

function sendIncomplete(ctx, s) {
  const headers = { 'Content-Length': 0, 'X-GUploader-UploadID': s.id };
  if (s.received > 0) headers.Range = `bytes=0-${s.received - 1}`;
  ctx.res.writeHead(308, 'Resume Incomplete', headers);
  ctx.res.end();
}

/* Complete a session: build the object from its bytes. */
function finalizeSession(ctx, s, hashes) {
  const data = ctx.store.sessionData(s);
  try {
    const resource = commitUpload(ctx, { bucket: s.bucket, name: s.name, data, fields: s.fields, conds: s.conds, hashes });
    ctx.store.finishSession(s, { object: resource });
  } catch (e) {
    if (e instanceof ApiError) ctx.store.finishSession(s, { error: { code: e.code, message: e.message } });
    throw e;
  }
}

/* PUT session-URI: a chunk, the whole data, or a status query. */
async function uploadResumablePut(ctx) {
  const s = ctx.store.getSession(ctx.query.get('upload_id'));
  const { data, complete } = await readBody(ctx.req, ctx.cutoff);
  if (!s) {
    if (complete) throw new ApiError(404, 'No such upload session (unknown or expired upload_id).', 'notFound');
    return;
  }
  if (s.done) {
    if (!complete) return;
    if (s.done.object) { sendResource(ctx, 200, s.done.object); return; }
    throw new ApiError(410, `The upload session has ended: ${s.done.error.message}`, 'gone');
  }
  const h = ctx.req.headers;
  const cr = h['content-range'] !== undefined
    ? parseContentRange(h['content-range'])
    : (data.length ? { start: 0, end: data.length - 1, total: data.length } : { start: null, end: null, total: 0 });

  if (cr.total !== null) {
    if (s.total !== null && s.total !== cr.total) {
      if (!complete) return;
      throw new ApiError(400, `Content-Range total ${cr.total} differs from the size declared before (${s.total}).`, 'invalid');
    }
  }

  if (cr.start === null) {
    // status query: "bytes */T" or "bytes */*", empty body
    if (!complete) return;
    if (data.length) throw new ApiError(400, 'A "bytes */N" status query must have an empty body.', 'invalid');
    if (cr.total !== null && cr.total < s.received) throw new ApiError(400, `Upload already has ${s.received} bytes, more than the declared total ${cr.total}.`, 'invalid');
    if (cr.total !== null && cr.total === s.received) {
      s.total = cr.total;
      finalizeSession(ctx, s, parseGoogHash(h['x-goog-hash']));
      return;
    }
    sendIncomplete(ctx, s);
    return;
  }

  // data request
  const start = cr.start;
  if (start > s.received) {
    if (!complete) return;
    throw new ApiError(400, `Invalid request. According to the Content-Range header, the upload offset is ${start} byte(s), which exceeds already uploaded size of ${s.received} byte(s).`, 'invalid');
  }
  if (complete && cr.end !== null && data.length !== cr.end - start + 1) {
    throw new ApiError(400, `Content-Range ${h['content-range']} announces ${cr.end - start + 1} bytes but the body has ${data.length}.`, 'invalid');
  }
  const endExclusive = start + data.length; // what the request body covers
  let total = cr.total !== null ? cr.total : s.total;
  if (total === null && cr.end === null && complete) total = endExclusive; // "bytes A-*/*": ends with the body
  if (total !== null && endExclusive > total) {
    if (!complete) return;
    throw new ApiError(400, `Content-Range ${h['content-range']} goes past the total size ${total}.`, 'invalid');
  }
  const isFinal = complete && total !== null && endExclusive === total;
  if (complete && !isFinal && cr.end !== null && data.length % CHUNK_GRANULARITY !== 0) {
    throw new ApiError(400, `Invalid request. The number of bytes uploaded is required to be equal or greater than ${CHUNK_GRANULARITY}, except for the final request (it's recommended to be the exact multiple of ${CHUNK_GRANULARITY}). The received request contained ${data.length} bytes, which does not meet this requirement.`, 'invalid');
  }
  // keep only bytes not already persisted (a resend may overlap)
  const skip = s.received - start;
  const fresh = skip < data.length ? data.subarray(skip) : Buffer.alloc(0);
  if (!complete) {
    // connection lost mid-body (or cut by /_test/cutoff): keep what arrived
    if (!ctx.cutoff || ctx.cutoff.persist !== false) ctx.store.appendToSession(s, fresh);
    return;
  }
  ctx.store.appendToSession(s, fresh);
  if (isFinal) {
    s.total = total;
    finalizeSession(ctx, s, parseGoogHash(h['x-goog-hash']));
    return;
  }
  sendIncomplete(ctx, s);
}

/* DELETE session-URI: cancel (GCS answers 499). */
async function uploadResumableCancel(ctx) {
  const s = ctx.store.getSession(ctx.query.get('upload_id'));
  if (!s) throw new ApiError(404, 'No such upload session (unknown or expired upload_id).', 'notFound');
  ctx.store.deleteSession(s);
  ctx.res.writeHead(499, 'Client Closed Request', { 'Content-Length': 0 });
  ctx.res.end();
}

/* ------------------------------------------------------------------ */
/* objects: download, get, list, delete, patch/update, copy/rewrite    */
/* ------------------------------------------------------------------ */

/* Parse a single "bytes=" range against `size`; null = serve everything. */
function parseRange(header, size) {
  if (!header) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null; // unsupported/multi-range: whole object
  if (size === 0) return null;
  let first;
  let last;
  if (m[1] === '') { // suffix: last N bytes
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    first = Math.max(0, size - n);
    last = size - 1;
  } else {
    first = Number(m[1]);
    last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < first) return null; // syntactically invalid: ignore
  }
  if (first >= size) return 'unsatisfiable';
  return { first, last };
}

async function objectDownload(ctx) {
  const obj = needObject(ctx, ctx.bucket, ctx.object);
  checkPreconditions(preconditionsFromQuery(ctx.query), obj, { read: true });
  const headers = {
    'Content-Type': obj.contentType || 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    ETag: `"${objectEtag(obj)}"`,
    'Last-Modified': new Date(obj.updated).toUTCString(),
    'Cache-Control': obj.cacheControl || 'no-cache, no-store, max-age=0, must-revalidate',
    'x-goog-generation': String(obj.generation),
    'x-goog-metageneration': String(obj.metageneration),
    'x-goog-hash': `crc32c=${obj.crc32c}` + (obj.md5Hash ? `,md5=${obj.md5Hash}` : ''),
    'x-goog-stored-content-length': String(obj.size),
    // the Node client validates a download only when this header says the
    // stored bytes are served as they are
    'x-goog-stored-content-encoding': obj.contentEncoding || 'identity',
    'x-goog-storage-class': obj.storageClass || 'STANDARD',
  };
  if (obj.contentEncoding) headers['Content-Encoding'] = obj.contentEncoding; // served as stored, no transcoding
  if (obj.contentDisposition) headers['Content-Disposition'] = obj.contentDisposition;
  if (obj.contentLanguage) headers['Content-Language'] = obj.contentLanguage;
  for (const [k, v] of Object.entries(obj.metadata || {})) {
    if (/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(k) && !/[\r\n]/.test(v)) headers[`x-goog-meta-${k}`] = v;
  }
  const range = parseRange(ctx.req.headers.range, obj.size);
  if (range === 'unsatisfiable') {
    throw Object.assign(new ApiError(416, 'The requested range cannot be satisfied.', 'requestedRangeNotSatisfiable'),
      { headers: { 'Content-Range': `bytes */${obj.size}` } });
  }
  let body = obj.data;
  let status = 200;
  if (range) {
    body = obj.data.subarray(range.first, range.last + 1);
    status = 206;
    headers['Content-Range'] = `bytes ${range.first}-${range.last}/${obj.size}`;
  }
  if (body.length && ctx.hooks.takeCorruption()) {
    body = Buffer.from(body);
    body[body.length >> 1] ^= 0xff; // flip one byte; hash headers stay correct
  }
  headers['Content-Length'] = body.length;
  ctx.res.writeHead(status, headers);
  ctx.res.end(body);
}

async function objectGet(ctx) {
  const obj = needObject(ctx, ctx.bucket, ctx.object);
  checkPreconditions(preconditionsFromQuery(ctx.query), obj, { read: true });
  sendResource(ctx, 200, objectResource(obj, ctx.base));
}

/*
 * Page through `entries` ({key}) sorted by key: maxResults (capped at 1000
 * and at the server's configured page size) and pageToken (opaque: base64
 * of the last key returned).
 */
function paginate(ctx, entries) {
  let max = parseLongParam(ctx.query, 'maxResults');
  if (max !== null && max < 0) throw new ApiError(400, `Invalid value for maxResults: ${max}`, 'invalid');
  if (!max) max = MAX_LIST_PAGE;
  max = Math.min(max, MAX_LIST_PAGE, ctx.hooks.config.listPageSize || Infinity);
  const token = ctx.query.get('pageToken');
  let after = null;
  if (token) {
    try {
      after = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')).k;
      if (typeof after !== 'string') throw new Error('bad token');
    } catch (e) {
      throw new ApiError(400, 'Invalid page token.', 'invalid');
    }
  }
  const page = [];
  let nextPageToken;
  for (const e of entries) {
    if (after !== null && compareNames(e.key, after) <= 0) continue;
    if (page.length && page[page.length - 1].key === e.key) continue; // same prefix again
    if (page.length === max) {
      nextPageToken = Buffer.from(JSON.stringify({ k: page[page.length - 1].key })).toString('base64url');
      break;
    }
    page.push(e);
  }
  return { page, nextPageToken };
}

async function objectList(ctx) {
  needBucket(ctx);
  const q = ctx.query;
  const prefix = q.get('prefix') || '';
  const delimiter = q.get('delimiter') || '';
  const startOffset = q.get('startOffset') || '';
  const endOffset = q.get('endOffset') || '';
  const includeTrailing = q.get('includeTrailingDelimiter') === 'true';
  const glob = q.get('matchGlob') ? globToRegExp(q.get('matchGlob')) : null;
  const names = ctx.store.objectNames(ctx.bucket)
    .filter((n) => n.startsWith(prefix) &&
      (!startOffset || compareNames(n, startOffset) >= 0) &&
      (!endOffset || compareNames(n, endOffset) < 0) &&
      (!glob || glob.test(n)))
    .sort(compareNames);
  // every name becomes an entry keyed by itself, or by its "directory"
  // prefix when a delimiter follows the prefix; keys stay sorted
  const entries = [];
  for (const n of names) {
    if (delimiter) {
      const i = n.indexOf(delimiter, prefix.length);
      if (i >= 0) {
        const p = n.slice(0, i + delimiter.length);
        if (includeTrailing && n === p) entries.push({ key: n, name: n, alsoPrefix: p });
        else entries.push({ key: p, prefix: p });
        continue;
      }
    }
    entries.push({ key: n, name: n });
  }
  const { page, nextPageToken } = paginate(ctx, entries);
  const items = [];
  const prefixes = [];
  for (const e of page) {
    if (e.name !== undefined) items.push(objectResource(ctx.store.getObject(ctx.bucket, e.name), ctx.base));
    if (e.prefix !== undefined) prefixes.push(e.prefix);
    if (e.alsoPrefix !== undefined) prefixes.push(e.alsoPrefix);
  }
  const out = { kind: 'storage#objects' };
  if (nextPageToken) out.nextPageToken = nextPageToken;
  if (prefixes.length) out.prefixes = prefixes;
  if (items.length) out.items = items;
  sendResource(ctx, 200, out);
}

async function objectDelete(ctx) {
  const obj = needObject(ctx, ctx.bucket, ctx.object);
  checkPreconditions(preconditionsFromQuery(ctx.query), obj);
  ctx.store.deleteObject(ctx.bucket, ctx.object);
  ctx.res.writeHead(204);
  ctx.res.end();
}

/* PATCH merges (metadata keys set to null are removed); PUT replaces. */
async function objectPatch(ctx) {
  const body = await readFullBody(ctx);
  if (body === null) return;
  const obj = needObject(ctx, ctx.bucket, ctx.object);
  checkPreconditions(preconditionsFromQuery(ctx.query), obj);
  const meta = parseJsonBody(body, true);
  const changes = {};
  const replace = ctx.method === 'PUT';
  for (const k of WRITABLE_FIELDS) {
    if (k === 'metadata') continue;
    if (meta[k] !== undefined) changes[k] = meta[k] === null ? undefined : meta[k];
    else if (replace && k !== 'contentType' && k !== 'storageClass') changes[k] = undefined;
  }
  if (changes.contentType === undefined && (replace || meta.contentType === null)) changes.contentType = 'application/octet-stream';
  if (meta.metadata !== undefined || replace) {
    const m = replace ? {} : Object.assign({}, obj.metadata || {});
    for (const [k, v] of Object.entries(meta.metadata || {})) {
      if (v === null) delete m[k]; else m[k] = String(v);
    }
    changes.metadata = m;
  }
  ctx.store.updateObjectMeta(obj, changes);
  sendResource(ctx, 200, objectResource(obj, ctx.base));
}

/* copyTo / rewriteTo: destination preconditions if*, source ifSource*. */
async function objectCopy(ctx, rewrite) {
  const body = await readFullBody(ctx);
  if (body === null) return;
  const src = needObject(ctx, ctx.bucket, ctx.object, 'sourceGeneration');
  checkPreconditions(preconditionsFromQuery(ctx.query, 'ifSource'), src, { prefix: 'ifSource' });
  needBucket(ctx, ctx.dest.bucket);
  validateObjectName(ctx.dest.object);
  checkPreconditions(preconditionsFromQuery(ctx.query), ctx.store.getObject(ctx.dest.bucket, ctx.dest.object));
  const meta = parseJsonBody(body, true);
  const base = {};
  for (const k of WRITABLE_FIELDS) if (src[k] !== undefined) base[k] = src[k];
  const hasOverride = WRITABLE_FIELDS.some((k) => meta[k] !== undefined);
  const fields = hasOverride ? writableFields(Object.assign({}, base, meta), src.contentType) : base;
  const obj = ctx.store.putObject(ctx.dest.bucket, ctx.dest.object, Buffer.from(src.data), fields);
  const resource = objectResource(obj, ctx.base);
  if (!rewrite) { sendResource(ctx, 200, resource); return; }
  sendResource(ctx, 200, {
    kind: 'storage#rewriteResponse',
    totalBytesRewritten: String(obj.size),
    objectSize: String(obj.size),
    done: true,
    resource,
  });
}

async function objectCompose(ctx) {
  const body = await readFullBody(ctx);
  if (body === null) return;
  needBucket(ctx);
  validateObjectName(ctx.object);
  const req = parseJsonBody(body, false);
  const sources = req.sourceObjects;
  if (!Array.isArray(sources) || sources.length < 1 || sources.length > 32) {
    throw new ApiError(400, 'sourceObjects must list 1 to 32 objects.', 'invalid');
  }
  const datas = [];
  let components = 0;
  for (const so of sources) {
    const o = ctx.store.getObject(ctx.bucket, so && so.name);
    if (!o || (so.generation !== undefined && String(so.generation) !== String(o.generation))) {
      throw noSuchObject(ctx.bucket, so && so.name);
    }
    const pre = so.objectPreconditions || {};
    if (pre.ifGenerationMatch !== undefined) checkPreconditions({ ifGenerationMatch: Number(pre.ifGenerationMatch) }, o);
    datas.push(o.data);
    components += o.componentCount || 1;
  }
  checkPreconditions(preconditionsFromQuery(ctx.query), ctx.store.getObject(ctx.bucket, ctx.object));
  const fields = writableFields(req.destination || {}, 'application/octet-stream');
  fields.omitMd5 = true; // composite objects have no MD5
  fields.componentCount = components;
  const obj = ctx.store.putObject(ctx.bucket, ctx.object, Buffer.concat(datas), fields);
  sendResource(ctx, 200, objectResource(obj, ctx.base));
}

module.exports = {
  handlers: {
    'bucket:insert': bucketInsert,
    'bucket:get': bucketGet,
    'bucket:list': bucketList,
    'bucket:patch': bucketPatch,
    'bucket:delete': bucketDelete,
    'upload:media': uploadMedia,
    'upload:multipart': uploadMultipart,
    'upload:resumable-init': uploadResumableInit,
    'upload:resumable-chunk': uploadResumablePut,
    'upload:resumable-status': uploadResumablePut,
    'upload:resumable-cancel': uploadResumableCancel,
    download: objectDownload,
    get: objectGet,
    list: objectList,
    delete: objectDelete,
    patch: objectPatch,
    update: objectPatch,
    copy: (ctx) => objectCopy(ctx, false),
    rewrite: (ctx) => objectCopy(ctx, true),
    compose: objectCompose,
  },
  readBody,
};
