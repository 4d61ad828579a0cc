#!/usr/bin/env node
/*
 * server.js - a local Google-Cloud-Storage-compatible HTTP server for the
 * omnifs tests (Node 20, standard library only).
 *
 * It speaks the subset of the GCS JSON API described in
 * /work/shared/protocols/gcs-git.md Part A: buckets insert/get/list/patch/
 * delete; object uploads (media, multipart, resumable with chunks and status
 * queries), download (alt=media, /download/..., Range), metadata get, list
 * (prefix, delimiter, paging, start/endOffset, matchGlob, fields), delete,
 * patch/update, copyTo/rewriteTo/compose; generation preconditions; the
 * GCS error JSON; optional bearer-token check; test hooks under /_test/
 * (see testhooks.js); optional persistence to a directory (see store.js).
 *
 * Paths are accepted with and without the /storage/v1 prefix, because the
 * Node client with STORAGE_EMULATOR_HOST sends JSON calls to /b/... .
 *
 * Run `node server.js --help` for the command line.
 */
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const { Store } = require('./store');
const { TestHooks } = require('./testhooks');
const { handlers, readBody } = require('./api');
const { ApiError, sendError, errorBody } = require('./util');

const USAGE = `usage: node server.js [options]

  --port N            port to listen on (default 0 = pick a free port)
  --host ADDR         address to bind (default 127.0.0.1)
  --port-file FILE    write the chosen port to FILE (atomically) once listening
  --data-dir DIR      persist buckets/objects/upload sessions in DIR
                      (default: memory only)
  --bucket NAME       create bucket NAME at start-up (repeatable)
  --require-token T   require "Authorization: Bearer T" on API requests (else 401);
                      without it no authentication is checked
  --list-page-size N  return at most N list entries per page (default: 1000)
  --verbose           log every request to stderr
  --help              show this text

Prints "gcs-test-server listening on http://HOST:PORT" when ready and exits
cleanly on SIGTERM/SIGINT.  Test hooks: GET /_test/stats, POST /_test/reset,
POST /_test/fail, POST /_test/cutoff, POST /_test/corrupt, POST /_test/config,
GET /_test/objects?bucket=B, GET /_test/faults, GET /_test/sessions.
`;

function parseArgs(argv) {
  const opts = {
    port: 0, host: '127.0.0.1', portFile: null, dataDir: null, buckets: [], token: null, listPageSize: 0, verbose: false,
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) { value = arg.slice(eq + 1); arg = arg.slice(0, eq); }
    const need = () => {
      if (value !== undefined) return value;
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    const int = (v) => {
      if (!/^\d+$/.test(v)) throw new Error(`${arg} needs a non-negative integer, got "${v}"`);
      return Number(v);
    };
    switch (arg) {
      case '--help': case '-h': opts.help = true; break;
      case '--port': opts.port = int(need()); if (opts.port > 65535) throw new Error('--port out of range'); break;
      case '--host': opts.host = need(); break;
      case '--port-file': opts.portFile = need(); break;
      case '--data-dir': opts.dataDir = need(); break;
      case '--bucket': opts.buckets.push(need()); break;
      case '--require-token': opts.token = need(); break;
      case '--list-page-size': opts.listPageSize = int(need()); break;
      case '--verbose': opts.verbose = true; break;
      default: throw new Error(`unknown argument: ${argv[i]}`);
    }
  }
  return opts;
}

/*
 * Map a request to {kind, bucket, object, dest} from its raw path (names
 * still percent-encoded, so "%2F" inside a name is not a separator).
 */
function route(method, rawPath, query, headers) {
  let p = rawPath;
  let upload = false;
  let download = false;
  if (p.startsWith('/upload/storage/v1/')) { upload = true; p = p.slice('/upload/storage/v1'.length); } else if (p.startsWith('/download/storage/v1/')) { download = true; p = p.slice('/download/storage/v1'.length); } else if (p.startsWith('/storage/v1/')) p = p.slice('/storage/v1'.length);
  const dec = (s) => {
    try { return decodeURIComponent(s); } catch (e) { throw new ApiError(400, `Malformed percent-encoding in path: ${s}`, 'invalid'); }
  };
  const unknown = { kind: 'unknown' };
  if (p === '/b' || p === '/b/') {
    if (upload || download) return unknown;
    if (method === 'GET') return { kind: 'bucket:list' };
    if (method === 'POST') return { kind: 'bucket:insert' };
    return unknown;
  }
  let m = /^\/b\/([^/]+)\/?$/.exec(p);
  if (m && !upload && !download) {
    const bucket = dec(m[1]);
    if (method === 'GET') return { kind: 'bucket:get', bucket };
    if (method === 'DELETE') return { kind: 'bucket:delete', bucket };
    if (method === 'PATCH' || method === 'PUT') return { kind: 'bucket:patch', bucket };
    return unknown;
  }
  m = /^\/b\/([^/]+)\/o\/?$/.exec(p);
  if (m) {
    const bucket = dec(m[1]);
    if (upload) {
      if (query.has('upload_id')) {
        if (method === 'PUT' || method === 'POST') {
          // "Content-Range: bytes */N" (empty body) asks for the upload status
          const status = /^\s*bytes\s+\*/i.test(headers['content-range'] || '');
          return { kind: status ? 'upload:resumable-status' : 'upload:resumable-chunk', bucket };
        }
        if (method === 'DELETE') return { kind: 'upload:resumable-cancel', bucket };
        return unknown;
      }
      if (method !== 'POST') return unknown;
      let type = query.get('uploadType');
      if (!type) type = /^multipart\//i.test(headers['content-type'] || '') ? 'multipart' : 'media';
      if (type === 'media') return { kind: 'upload:media', bucket };
      if (type === 'multipart') return { kind: 'upload:multipart', bucket };
      if (type === 'resumable') return { kind: 'upload:resumable-init', bucket };
      return { kind: 'upload:unsupported', bucket, bad: `Unsupported uploadType: ${type}` };
    }
    if (download) return unknown;
    if (method === 'GET') return { kind: 'list', bucket };
    return unknown;
  }
  m = /^\/b\/([^/]+)\/o\/(.+)$/.exec(p);
  if (m && !upload) {
    const bucket = dec(m[1]);
    const rest = m[2];
    if (!download && method === 'POST') {
      const c = /^(.+)\/(copyTo|rewriteTo)\/b\/([^/]+)\/o\/(.+)$/.exec(rest);
      if (c) {
        return {
          kind: c[2] === 'copyTo' ? 'copy' : 'rewrite', bucket, object: dec(c[1]), dest: { bucket: dec(c[3]), object: dec(c[4]) },
        };
      }
      const k = /^(.+)\/compose$/.exec(rest);
      if (k) return { kind: 'compose', bucket, object: dec(k[1]) };
      return unknown;
    }
    const object = dec(rest);
    if (method === 'GET' || method === 'HEAD') {
      return { kind: download || query.get('alt') === 'media' ? 'download' : 'get', bucket, object };
    }
    if (download) return unknown;
    if (method === 'DELETE') return { kind: 'delete', bucket, object };
    if (method === 'PATCH') return { kind: 'patch', bucket, object };
    if (method === 'PUT') return { kind: 'update', bucket, object };
  }
  return unknown;
}

/* Does this request carry the required bearer token? Returns an ApiError or null. */
function checkAuth(opts, req, kind) {
  if (!opts.token) return null;
  // a resumable session URI is itself the credential (as on GCS)
  if (kind === 'upload:resumable-chunk' || kind === 'upload:resumable-status' || kind === 'upload:resumable-cancel') return null;
  const h = req.headers.authorization;
  if (!h) {
    const e = new ApiError(401, 'Anonymous caller does not have storage access to the Google Cloud Storage resource. Login Required.', 'required', { locationType: 'header', location: 'Authorization' });
    e.headers = { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/"' };
    return e;
  }
  const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(h);
  if (!m || m[1] !== opts.token) {
    const e = new ApiError(401, 'Invalid Credentials', 'authError', { locationType: 'header', location: 'Authorization' });
    e.headers = { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"' };
    return e;
  }
  return null;
}

function respondError(res, e) {
  if (res.headersSent || res.destroyed) { res.destroy(); return; }
  if (e.code === 304) { res.writeHead(304, e.headers || {}); res.end(); return; }
  sendError(res, e.code, e.message, e.reason, e.extra, e.headers);
}

function createServer(opts) {
  const store = new Store(opts.dataDir);
  const hooks = new TestHooks(store);
  hooks.config.listPageSize = opts.listPageSize || 0;
  for (const b of opts.buckets) if (!store.getBucket(b)) store.createBucket(b, {});

  async function handle(req, res) {
    const qi = req.url.indexOf('?');
    const rawPath = qi < 0 ? req.url : req.url.slice(0, qi);
    const query = new URLSearchParams(qi < 0 ? '' : req.url.slice(qi + 1));
    const base = `http://${req.headers.host || `${opts.host}:${server.address().port}`}`;

    if (rawPath.startsWith('/_test/')) {
      const { data } = await readBody(req, null);
      let body = {};
      if (data.length) {
        try { body = JSON.parse(data.toString('utf8')) || {}; } catch (e) { sendError(res, 400, 'Test hook body is not JSON.', 'parseError'); return; }
      }
      hooks.handle(req, res, rawPath, query, body);
      return;
    }

    const r = route(req.method, rawPath, query, req.headers);
    const key = `${req.method} ${r.kind}`;
    hooks.count(key);
    if (opts.verbose) {
      let cr = req.headers['content-range'] ? ` Content-Range: ${req.headers['content-range']}` : '';
      if (req.headers['x-goog-hash']) cr += ` X-Goog-Hash: ${req.headers['x-goog-hash']}`;
      process.stderr.write(`gcs-test-server: ${req.method} ${req.url} -> ${r.kind}${cr}\n`);
    }

    const fault = hooks.takeFault(key);
    if (fault && fault.type === 'fail') {
      await readBody(req, null); // let the client finish sending, then fail
      const e = new ApiError(fault.status, `Injected failure (${fault.status}) from /_test/fail.`);
      respondError(res, e);
      return;
    }
    const cutoff = fault && fault.type === 'cutoff' ? fault : null;

    const authError = checkAuth(opts, req, r.kind);
    if (authError) { await readBody(req, null); respondError(res, authError); return; }

    if (r.bad) { await readBody(req, null); respondError(res, new ApiError(400, r.bad, 'invalid')); return; }
    const handler = handlers[r.kind];
    if (!handler) {
      await readBody(req, cutoff);
      respondError(res, new ApiError(404, `Not Found: ${req.method} ${rawPath}`, 'notFound'));
      return;
    }
    const ctx = {
      req, res, method: req.method, query, bucket: r.bucket, object: r.object, dest: r.dest, base, store, hooks, cutoff,
    };
    if (cutoff && !['upload:media', 'upload:multipart', 'upload:resumable-init', 'upload:resumable-chunk',
      'upload:resumable-status', 'bucket:insert', 'patch', 'update', 'copy', 'rewrite', 'compose', 'bucket:patch'].includes(r.kind)) {
      // requests that have no body to read are cut right away
      req.socket.destroy();
      return;
    }
    await handler(ctx);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (e instanceof ApiError) {
        // make sure the whole request was read before answering
        if (!req.complete) { req.resume(); req.once('end', () => respondError(res, e)); return; }
        respondError(res, e);
        return;
      }
      process.stderr.write(`gcs-test-server: internal error on ${req.method} ${req.url}: ${e && e.stack}\n`);
      if (!res.headersSent) {
        const body = JSON.stringify(errorBody(500, `Internal error: ${e && e.message}`, 'backendError'));
        res.writeHead(500, { 'Content-Type': 'application/json; charset=UTF-8' });
        res.end(body);
      } else res.destroy();
    });
  });
  server.keepAliveTimeout = 30000;
  server.requestTimeout = 0; // large uploads are fine
  return { server, store, hooks };
}

function writePortFile(file, port) {
  const dir = path.dirname(path.resolve(file));
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${file}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, `${port}\n`);
  fs.renameSync(tmp, file);
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`gcs-test-server: ${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (opts.help) { process.stdout.write(USAGE); return; }
  for (const b of opts.buckets) {
    if (!/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(b)) {
      process.stderr.write(`gcs-test-server: invalid bucket name: ${b}\n`);
      process.exit(2);
    }
  }
  if (opts.dataDir) fs.mkdirSync(opts.dataDir, { recursive: true });
  const { server } = createServer(opts);
  server.on('error', (e) => {
    process.stderr.write(`gcs-test-server: ${e.message}\n`);
    process.exit(1);
  });
  server.listen(opts.port, opts.host, () => {
    const port = server.address().port;
    if (opts.portFile) writePortFile(opts.portFile, port);
    const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
    process.stdout.write(`gcs-test-server listening on http://${host}:${port}\n`);
  });
  let stopping = false;
  const stop = (sig) => {
    if (stopping) return;
    stopping = true;
    if (opts.verbose) process.stderr.write(`gcs-test-server: ${sig}, stopping\n`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (require.main === module) main();

module.exports = { createServer, parseArgs, route };
