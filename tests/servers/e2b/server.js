#!/usr/bin/env node
// Local E2B-compatible test server: control plane + envd on one HTTP port.
//
//   node tests/servers/e2b/server.js [--port N] [--host H] [--port-file F]
//        [--delay-ms N] [--state-dir DIR] [--api-key KEY] [--template NAME]...
//        [--verbose]
//
// Point the official SDK at it with E2B_API_URL=E2B_SANDBOX_URL=http://H:PORT
// and E2B_API_KEY=e2b_<40 hex>. envd requests select their sandbox with the
// `E2b-Sandbox-Id` header (or a `49983-<id>.<domain>` Host). Each sandbox is
// a chroot-able root built from read-only bind mounts of the host (see
// lib/sandboxes.js); the server must run as root.
//
// Test hooks (no auth, not counted, no injected delay):
//   GET  /_test/stats      {"requests":{key:n},"total":n,"bySandbox":{id:{"requests":{},"total":n}},
//                           "statuses":{key:{"200":n}}}
//   POST /_test/reset      zero the counters
//   GET|POST /_test/delay  {"ms":N} read / set the delay added to every request
//   POST /_test/fault      {"mode":"none"|"hang"|"error","status":503} injected failures
//   POST /_test/exec       {"sandboxId","cmd","user"?,"cwd"?,"timeoutMs"?}
//                          -> {"exitCode","stdout","stderr"} (bash -c as root by default)
//   GET  /_test/sandboxes  {"sandboxes":[{"sandboxId","root","templateID","state",...}]}
// Keys of "requests": envd RPCs as "filesystem.Filesystem/ListDir",
// "process.Process/Start"...; REST as "GET /files", "POST /files",
// "POST /sandboxes", "GET /sandboxes/{id}", "GET /health"...
'use strict';

const http = require('http');
const fs = require('fs');
const fsp = require('fs/promises');
const os = require('os');
const path = require('path');

const connect = require('./lib/connect');
const { SandboxManager, mountsUnder, unmountAll } = require('./lib/sandboxes');
const { ControlPlane, ApiError, matchRoute, isControlPlanePath, sendJson, sendError } = require('./lib/controlplane');
const filesystem = require('./lib/filesystem');
const processSvc = require('./lib/process');
const files = require('./lib/files');

const USAGE = `usage: node server.js [options]

  --port N          port to listen on (0 = pick a free one; default 0)
  --host H          address to bind (default 127.0.0.1)
  --port-file F     write the chosen port to F (atomically) once listening
  --delay-ms N      delay added to every non-test request (default 0)
  --state-dir DIR   where sandbox roots are made (default: a fresh temp dir,
                    removed on exit)
  --api-key KEY     accept only this X-API-Key (default: any e2b_<40 hex>)
  --template NAME   another known template besides "base" (repeatable)
  --verbose         log requests to stderr
  --help            this text

Test hooks: GET /_test/stats, POST /_test/reset, POST /_test/delay {"ms":N},
POST /_test/fault {"mode":"none|hang|error","status":N},
POST /_test/exec {"sandboxId","cmd"}, GET /_test/sandboxes.
`;

function parseArgs(argv) {
  const o = { port: 0, host: '127.0.0.1', portFile: null, delayMs: 0, stateDir: null, apiKey: null, templates: [], verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const val = () => (a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : argv[++i]);
    switch (name) {
      case '--port':
        o.port = parseInt(val(), 10);
        break;
      case '--host':
        o.host = val();
        break;
      case '--port-file':
        o.portFile = val();
        break;
      case '--delay-ms':
        o.delayMs = parseInt(val(), 10) || 0;
        break;
      case '--state-dir':
        o.stateDir = val();
        break;
      case '--api-key':
        o.apiKey = val();
        break;
      case '--template':
        o.templates.push(val());
        break;
      case '--verbose':
        o.verbose = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      default:
        process.stderr.write(`unknown argument: ${a}\n${USAGE}`);
        process.exit(2);
    }
  }
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) {
    process.stderr.write('--port must be 0..65535\n');
    process.exit(2);
  }
  return o;
}

// ---------------------------------------------------------------------------
// Request counters

class Stats {
  constructor() {
    this.reset();
  }
  reset() {
    this.requests = {};
    this.total = 0;
    this.bySandbox = {};
    this.statuses = {};
  }
  count(key, sandboxId) {
    this.requests[key] = (this.requests[key] || 0) + 1;
    this.total++;
    if (sandboxId) {
      const s = (this.bySandbox[sandboxId] = this.bySandbox[sandboxId] || { requests: {}, total: 0 });
      s.requests[key] = (s.requests[key] || 0) + 1;
      s.total++;
    }
  }
  status(key, code) {
    const s = (this.statuses[key] = this.statuses[key] || {});
    s[code] = (s[code] || 0) + 1;
  }
  toJSON() {
    return { requests: this.requests, total: this.total, bySandbox: this.bySandbox, statuses: this.statuses };
  }
}

// ---------------------------------------------------------------------------

const RPC_RE = /^\/(filesystem\.Filesystem|process\.Process)\/([A-Za-z]+)$/;
const ENVD_REST = new Set(['/files', '/init', '/envs', '/metrics', '/health']);
const TOKEN_EXEMPT = new Set(['/health', '/files', '/init']);
const STREAMING = {
  'filesystem.Filesystem/WatchDir': filesystem.streaming.WatchDir,
  'process.Process/Start': processSvc.streaming.Start,
  'process.Process/Connect': processSvc.streaming.Connect,
};
const UNARY = {};
for (const [m, fn] of Object.entries(filesystem.unary)) UNARY[`filesystem.Filesystem/${m}`] = fn;
for (const [m, fn] of Object.entries(processSvc.unary)) UNARY[`process.Process/${m}`] = fn;

function sandboxIdOf(req) {
  const h = req.headers['e2b-sandbox-id'];
  if (h) return String(h);
  const host = String(req.headers.host || '');
  const m = /^\d+-([a-z0-9]+)\./.exec(host);
  return m ? m[1] : null;
}

/** Classify a request: {kind:'test'|'envd'|'cp', key}. */
function classify(req, url) {
  const p = url.pathname;
  if (p.startsWith('/_test/')) return { kind: 'test' };
  const rpc = RPC_RE.exec(p);
  if (rpc) return { kind: 'envd', key: `${rpc[1]}/${rpc[2]}` };
  if (ENVD_REST.has(p) && (p !== '/health' || req.headers['e2b-sandbox-id'] || /^\d+-/.test(String(req.headers.host || '')))) {
    return { kind: 'envd', key: `${req.method} ${p}` };
  }
  if (p === '/health') return { kind: 'health', key: 'GET /health' };
  const route = matchRoute(req.method, p);
  if (route) return { kind: 'cp', key: route.key, route };
  if (isControlPlanePath(p)) return { kind: 'cp', key: `${req.method} ${p}`, route: null };
  return { kind: 'unknown', key: `${req.method} ${p}` };
}

/** Read and parse a JSON body for the control plane. */
function jsonReader(req) {
  let cached;
  return async (optional = false) => {
    if (cached) return cached;
    const buf = await connect.readBody(req);
    if (!buf.length) {
      if (optional) return (cached = {});
      throw new ApiError(400, 'Error when parsing request: request body has an error: value is required but missing');
    }
    try {
      cached = JSON.parse(buf.toString('utf8'));
    } catch (e) {
      throw new ApiError(400, `Error when parsing request: ${e.message}`);
    }
    if (!cached || typeof cached !== 'object' || Array.isArray(cached)) {
      throw new ApiError(400, 'Error when parsing request: body must be a JSON object');
    }
    return cached;
  };
}

/** envd user from Basic auth; returns {user} or {error: RpcError}. */
function envdUser(sb, req) {
  const auth = req.headers.authorization;
  let name = sb.defaultUser;
  if (auth && /^basic /i.test(auth)) {
    const decoded = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
    const c = decoded.indexOf(':');
    name = c >= 0 ? decoded.slice(0, c) : decoded;
  }
  const user = sb.lookupUser(name);
  if (!user) return { error: new connect.RpcError('unauthenticated', `invalid username: '${name}'`) };
  return { user };
}

function corsHeaders(req, res) {
  res.setHeader('Access-Control-Allow-Origin', req.headers.origin || '*');
  res.setHeader(
    'Access-Control-Expose-Headers',
    'Connect-Protocol-Version, Connect-Timeout-Ms, Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Location, Cache-Control, X-Content-Type-Options',
  );
}

class Server {
  constructor(opts) {
    this.opts = opts;
    this.delayMs = opts.delayMs || 0;
    this.fault = { mode: 'none', status: 503 };
    this.stats = new Stats();
    this.mgr = new SandboxManager({ stateDir: opts.stateDir, templates: opts.templates, verbose: opts.verbose });
    this.cp = new ControlPlane(this.mgr, { apiKey: opts.apiKey });
    this.hung = new Set();
    this.http = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (opts.verbose) process.stderr.write(`e2b-test-server: ${e.stack || e}\n`);
        if (!res.headersSent) sendError(res, 500, e.message);
        else res.destroy();
      });
    });
    this.http.keepAliveTimeout = 65000;
    this.http.headersTimeout = 70000;
    this.http.requestTimeout = 0;
  }

  async handle(req, res) {
    const url = new URL(req.url, 'http://localhost');
    const c = classify(req, url);
    if (c.kind === 'test') return this.handleTest(req, res, url);

    const sandboxId = c.kind === 'envd' ? sandboxIdOf(req) : c.route && c.route.id;
    this.stats.count(c.key, sandboxId);
    res.on('finish', () => this.stats.status(c.key, res.statusCode));
    if (this.opts.verbose) {
      const t0 = Date.now();
      res.on('finish', () => process.stderr.write(`${req.method} ${req.url} ${sandboxId || '-'} -> ${res.statusCode} ${Date.now() - t0}ms\n`));
    }
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.fault.mode === 'hang') {
      // Black hole: keep the connection open without answering.
      this.hung.add(res);
      res.on('close', () => this.hung.delete(res));
      req.resume();
      return;
    }
    if (this.fault.mode === 'error') {
      req.resume();
      return sendError(res, this.fault.status, 'injected failure');
    }

    switch (c.kind) {
      case 'envd':
        return this.handleEnvd(req, res, url, c.key, sandboxId);
      case 'cp':
        return this.cp.handle(req, res, url, c.route, jsonReader(req));
      case 'health':
        res.writeHead(204);
        return res.end();
      default:
        req.resume();
        return sendError(res, 404, `no route for ${req.method} ${url.pathname}`);
    }
  }

  async handleEnvd(req, res, url, key, sandboxId) {
    corsHeaders(req, res);
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'GET, POST, PUT, DELETE, OPTIONS',
        'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] || '*',
        'Access-Control-Max-Age': '7200',
      });
      return res.end();
    }
    let sb = sandboxId ? this.mgr.get(sandboxId) : null;
    if (!sandboxId && url.pathname === '/files' && url.searchParams.get('signature')) {
      // A presigned URL carries no headers; with E2B_SANDBOX_URL set the SDK
      // builds it on our bare address, so find the sandbox whose token signs it.
      sb = this.mgr.list().find((s) => files.signatureMatches(s, url.searchParams, req.method === 'POST' ? 'write' : 'read')) || null;
    }
    if (!sb || sb.killed || sb.state !== 'running') {
      req.resume();
      return sendJson(res, 502, { sandboxId: sandboxId || '', message: 'The sandbox was not found', code: 502 });
    }
    const p = url.pathname;
    if (sb.accessToken && !TOKEN_EXEMPT.has(p) && req.headers['x-access-token'] !== sb.accessToken) {
      req.resume();
      const body = Buffer.from(
        JSON.stringify({ code: 401, message: 'unauthorized access, please provide a valid access token or method signing if supported' }) + '\n',
      );
      res.writeHead(401, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length });
      return res.end(body);
    }

    if (p === '/health') {
      req.resume();
      res.writeHead(204);
      return res.end();
    }
    if (p === '/files') {
      if (req.method === 'GET' || req.method === 'HEAD') return files.getFiles(sb, req, res, url.searchParams);
      if (req.method === 'POST') return files.postFiles(sb, req, res, url.searchParams);
      req.resume();
      return files.sendJsonError(res, 405, 'method not allowed');
    }
    if (p === '/init' && req.method === 'POST') return this.handleInit(sb, req, res);
    if (p === '/envs' && req.method === 'GET') {
      req.resume();
      return sendJson(res, 200, sb.envVars);
    }
    if (p === '/metrics' && req.method === 'GET') {
      req.resume();
      const mem = os.totalmem();
      return sendJson(res, 200, {
        ts: Math.floor(Date.now() / 1000),
        cpu_count: os.cpus().length,
        cpu_used_pct: 0,
        mem_total: mem,
        mem_used: mem - os.freemem(),
        mem_cache: 0,
        mem_total_mib: Math.floor(mem / 1048576),
        mem_used_mib: Math.floor((mem - os.freemem()) / 1048576),
        disk_used: 0,
        disk_total: 0,
      });
    }
    if (!RPC_RE.test(p)) {
      req.resume();
      return files.sendJsonError(res, 405, 'method not allowed');
    }
    return this.handleRpc(sb, req, res, key);
  }

  async handleInit(sb, req, res) {
    let body = {};
    try {
      const buf = await connect.readBody(req);
      if (buf.length) body = JSON.parse(buf.toString('utf8'));
    } catch (e) {
      return files.sendJsonError(res, 400, `error decoding init request: ${e.message}`);
    }
    if (body.envVars && typeof body.envVars === 'object') Object.assign(sb.envVars, body.envVars);
    if (typeof body.accessToken === 'string') sb.accessToken = body.accessToken || null;
    if (typeof body.defaultUser === 'string' && body.defaultUser) sb.defaultUser = body.defaultUser;
    if (typeof body.defaultWorkdir === 'string' && body.defaultWorkdir) sb.defaultWorkdir = body.defaultWorkdir;
    res.writeHead(204);
    res.end();
  }

  async handleRpc(sb, req, res, key) {
    if (req.method !== 'POST') {
      req.resume();
      res.writeHead(405, { Allow: 'POST' });
      return res.end();
    }
    const media = connect.mediaType(req);
    const auth = envdUser(sb, req);
    const ctx = { sb, user: auth.user, authError: auth.error };

    if (key === 'process.Process/StreamInput') {
      if (media !== 'application/connect+json') return unsupportedMedia(req, res, 'application/connect+json');
      return processSvc.streamInput(ctx, req, res);
    }
    const streamFn = STREAMING[key];
    if (streamFn) {
      if (media !== 'application/connect+json') return unsupportedMedia(req, res, 'application/connect+json');
      let msg;
      let err = null;
      try {
        const body = await connect.readBody(req);
        const envs = new connect.EnvelopeDecoder().push(body);
        if (!envs.length) throw new connect.RpcError('invalid_argument', 'protocol error: incomplete envelope');
        if (envs[0].flags & connect.FLAG_COMPRESSED) throw new connect.RpcError('internal', 'protocol error: compressed message without encoding');
        msg = connect.parseMessage(envs[0].data);
      } catch (e) {
        err = e;
      }
      if (err) {
        const s = new connect.ServerStream(req, res);
        return s.end(err);
      }
      return streamFn(ctx, msg, req, res);
    }
    const fn = UNARY[key];
    if (!fn) {
      req.resume();
      return connect.sendUnaryError(res, new connect.RpcError('unimplemented', `${key} is not implemented`));
    }
    if (media !== 'application/json') return unsupportedMedia(req, res, 'application/json');
    try {
      const msg = connect.parseMessage(await connect.readBody(req));
      if (ctx.authError) throw ctx.authError;
      return connect.sendUnary(res, await fn(ctx, msg));
    } catch (e) {
      if (!(e instanceof connect.RpcError) && this.opts.verbose) process.stderr.write(`e2b-test-server: ${key}: ${e.stack || e}\n`);
      return connect.sendUnaryError(res, e);
    }
  }

  // -------------------------------------------------------------------------
  // Test hooks

  async handleTest(req, res, url) {
    const p = url.pathname;
    let body = {};
    if (req.method === 'POST') {
      const buf = await connect.readBody(req);
      try {
        body = buf.length ? JSON.parse(buf.toString('utf8')) : {};
      } catch (e) {
        return sendError(res, 400, `bad JSON: ${e.message}`);
      }
    } else req.resume();

    if (p === '/_test/stats' && req.method === 'GET') return sendJson(res, 200, this.stats.toJSON());
    if (p === '/_test/reset' && req.method === 'POST') {
      this.stats.reset();
      return sendJson(res, 200, { ok: true });
    }
    if (p === '/_test/delay') {
      if (req.method === 'POST') {
        const ms = Number(body.ms);
        if (!Number.isFinite(ms) || ms < 0) return sendError(res, 400, 'ms must be a number >= 0');
        this.delayMs = ms;
      }
      return sendJson(res, 200, { ms: this.delayMs });
    }
    if (p === '/_test/fault') {
      if (req.method === 'POST') {
        const mode = body.mode || 'none';
        if (!['none', 'hang', 'error'].includes(mode)) return sendError(res, 400, 'mode must be none, hang or error');
        this.fault = { mode, status: Number(body.status) || 503 };
        if (mode !== 'hang') {
          for (const r of [...this.hung]) r.destroy();
          this.hung.clear();
        }
      }
      return sendJson(res, 200, this.fault);
    }
    if (p === '/_test/sandboxes' && req.method === 'GET') {
      return sendJson(res, 200, {
        sandboxes: this.mgr.list().map((sb) => ({
          sandboxId: sb.id,
          root: sb.root,
          templateID: sb.templateID,
          state: sb.state,
          startedAt: sb.startedAt.toISOString(),
          endAt: sb.endAt.toISOString(),
          envdAccessToken: sb.accessToken,
          processes: [...sb.processes.keys()],
        })),
      });
    }
    if (p === '/_test/exec' && req.method === 'POST') return this.testExec(res, body);
    return sendError(res, 404, `no test hook ${req.method} ${p}`);
  }

  async testExec(res, body) {
    let sb = body.sandboxId ? this.mgr.get(String(body.sandboxId)) : null;
    if (!body.sandboxId && this.mgr.list().length === 1) sb = this.mgr.list()[0];
    if (!sb) return sendError(res, 404, `sandbox ${body.sandboxId || '(none given)'} not found`);
    if (typeof body.cmd !== 'string') return sendError(res, 400, 'cmd (string) is required');
    const user = sb.lookupUser(body.user || 'root');
    if (!user) return sendError(res, 400, `unknown user ${body.user}`);
    const rec = new processSvc.ProcRecord(sb, { config: { cmd: '/bin/bash', args: ['-c', body.cmd] }, isPty: false });
    rec.hidden = true;
    const out = { stdout: [], stderr: [] };
    const done = new Promise((resolve) => {
      rec.listeners.add((ev) => {
        if (ev.data && ev.data.stdout) out.stdout.push(Buffer.from(ev.data.stdout, 'base64'));
        if (ev.data && ev.data.stderr) out.stderr.push(Buffer.from(ev.data.stderr, 'base64'));
        if (ev.end) resolve(ev.end);
      });
    });
    try {
      await processSvc.launch(rec, { user, cwd: body.cwd || '/', env: sb.baseEnv(user), stdin: false, pty: null });
    } catch (e) {
      return sendError(res, 500, e.message);
    }
    sb.hiddenProcs.add(rec);
    rec.beginDelivery();
    const timeoutMs = Number(body.timeoutMs) || 60000;
    const timer = setTimeout(() => rec.signal('SIGKILL'), timeoutMs);
    const end = await done;
    clearTimeout(timer);
    return sendJson(res, 200, {
      exitCode: end.exitCode || 0,
      status: end.status,
      stdout: Buffer.concat(out.stdout).toString('utf8'),
      stderr: Buffer.concat(out.stderr).toString('utf8'),
    });
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port, this.opts.host, () => resolve(this.http.address().port));
    });
  }

  async close() {
    this.http.close();
    for (const r of this.hung) r.destroy();
    if (typeof this.http.closeAllConnections === 'function') this.http.closeAllConnections();
    await this.mgr.shutdown();
  }
}

function unsupportedMedia(req, res, expected) {
  req.resume();
  res.writeHead(415, { 'Accept-Post': expected });
  res.end();
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  process.umask(0o022);
  let ownStateDir = false;
  if (opts.stateDir) {
    opts.stateDir = path.resolve(opts.stateDir);
    await fsp.mkdir(opts.stateDir, { recursive: true });
  } else {
    opts.stateDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'e2b-test-server-'));
    ownStateDir = true;
  }
  // Mount points in /proc/self/mountinfo and /proc/PID/root use real paths;
  // compare against the same spelling so cleanup never misses a mount.
  opts.stateDir = fs.realpathSync(opts.stateDir);
  // The sandbox roots live inside; make sure processes can traverse it.
  await fsp.chmod(opts.stateDir, 0o755).catch(() => {});

  const server = new Server(opts);
  let port;
  try {
    port = await server.listen();
  } catch (e) {
    process.stderr.write(`e2b-test-server: cannot listen on ${opts.host}:${opts.port}: ${e.message}\n`);
    if (ownStateDir) await fsp.rm(opts.stateDir, { recursive: true, force: true });
    process.exit(1);
  }

  let stopping = false;
  const stop = async (code) => {
    if (stopping) return;
    stopping = true;
    try {
      await server.close();
      const left = await unmountAll(opts.stateDir);
      if (ownStateDir && !left.length) await fsp.rm(opts.stateDir, { recursive: true, force: true });
      if (opts.portFile) await fsp.rm(opts.portFile, { force: true });
    } catch (e) {
      process.stderr.write(`e2b-test-server: cleanup: ${e.message}\n`);
      code = code || 1;
    }
    process.exit(code);
  };
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));
  process.on('SIGHUP', () => stop(0));
  // A bug in one request handler should not take the whole test run down.
  process.on('uncaughtException', (e) => {
    process.stderr.write(`e2b-test-server: uncaught: ${e.stack || e}\n`);
  });
  process.on('unhandledRejection', (e) => {
    process.stderr.write(`e2b-test-server: unhandled rejection: ${(e && e.stack) || e}\n`);
  });

  if (opts.portFile) {
    const tmp = `${opts.portFile}.tmp.${process.pid}`;
    fs.writeFileSync(tmp, `${port}\n`);
    fs.renameSync(tmp, opts.portFile);
  }
  if (mountsUnder(opts.stateDir).length && opts.verbose) {
    process.stderr.write(`e2b-test-server: note: ${opts.stateDir} already has mounts from an earlier run\n`);
  }
  process.stdout.write(`e2b-test-server listening on http://${opts.host}:${port}\n`);
}

main().catch((e) => {
  process.stderr.write(`e2b-test-server: ${e.stack || e}\n`);
  process.exit(1);
});
