#!/usr/bin/env node
/*
 * server.js - a git smart-HTTP server for the omnifs tests: each request
 * runs `git http-backend` (CGI) on the repositories under --root, behind
 * an optional Basic-auth token check, on loopback (Node 20, standard
 * library only).
 *
 *   node server.js --root DIR [--port 0] [--host 127.0.0.1]
 *                  [--port-file FILE] [--token T] [--user U] [--verbose]
 *
 * --token T: every request needs "Authorization: Basic base64(user:T)"
 * (any user, or exactly U with --user); otherwise 401 with
 * WWW-Authenticate, which is what makes libgit2 ask its credentials
 * callback. Pushes are allowed (REMOTE_USER is set), and the receiving
 * repository's hooks run (pre-receive can refuse a push), unlike with
 * libgit2's local transport. GET /_test/stats answers
 * {"requests": n, "unauthorized": n, "pushes": n}. The chosen port is
 * written to --port-file (temporary file + rename) once listening.
 * SIGTERM and SIGINT stop it with status 0; so does the exit of the
 * process that started it (a test that died without cleaning up).
 */
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

function parseArgs(argv) {
  const o = { port: 0, host: '127.0.0.1', root: null, portFile: null, token: null, user: null, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--port': o.port = Number(val()); break;
      case '--host': o.host = val(); break;
      case '--root': o.root = path.resolve(val()); break;
      case '--port-file': o.portFile = val(); break;
      case '--token': o.token = val(); break;
      case '--user': o.user = val(); break;
      case '--verbose': o.verbose = true; break;
      default: throw new Error(`unknown argument: ${a}`);
    }
  }
  if (!o.root) throw new Error('--root DIR is required');
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const stats = { requests: 0, unauthorized: 0, pushes: 0 };

/* The user a request authenticated as, or null when it did not. */
function authenticate(req) {
  if (!opts.token) return 'test';
  const m = /^Basic\s+(\S+)$/i.exec(req.headers.authorization || '');
  if (!m) return null;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return null;
  const user = text.slice(0, colon);
  const pass = text.slice(colon + 1);
  if (pass !== opts.token || (opts.user && user !== opts.user)) return null;
  return user || 'test';
}

/* Run git http-backend for one request and relay its CGI answer. */
function cgi(req, res, user) {
  const url = new URL(req.url, 'http://localhost');
  const env = {
    PATH: process.env.PATH,
    HOME: opts.root,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_PROJECT_ROOT: opts.root,
    GIT_HTTP_EXPORT_ALL: '1',
    PATH_INFO: decodeURIComponent(url.pathname),
    QUERY_STRING: url.search.slice(1),
    REQUEST_METHOD: req.method,
    CONTENT_TYPE: req.headers['content-type'] || '',
    REMOTE_USER: user,
    REMOTE_ADDR: req.socket.remoteAddress || '127.0.0.1',
  };
  if (req.headers['content-length']) env.CONTENT_LENGTH = req.headers['content-length'];
  if (req.headers['content-encoding']) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
  if (req.headers['git-protocol']) env.GIT_PROTOCOL = req.headers['git-protocol'];
  if (url.pathname.endsWith('/git-receive-pack')) stats.pushes++;

  const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let head = Buffer.alloc(0);
  let headersDone = false;
  child.stdout.on('data', (chunk) => {
    if (headersDone) { res.write(chunk); return; }
    head = Buffer.concat([head, chunk]);
    let end = head.indexOf('\r\n\r\n');
    let sep = 4;
    if (end < 0) { end = head.indexOf('\n\n'); sep = 2; }
    if (end < 0) return;
    let status = 200;
    const headers = {};
    for (const line of head.slice(0, end).toString('latin1').split(/\r?\n/)) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (/^status$/i.test(name)) status = parseInt(value, 10) || 200;
      else headers[name] = value;
    }
    res.writeHead(status, headers);
    headersDone = true;
    const rest = head.slice(end + sep);
    if (rest.length) res.write(rest);
  });
  child.stderr.on('data', (d) => { if (opts.verbose) process.stderr.write(d); });
  child.on('close', (code) => {
    if (!headersDone) {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`git http-backend failed (${code})\n`);
      return;
    }
    res.end();
  });
  child.stdin.on('error', () => {});
  req.pipe(child.stdin);
}

const server = http.createServer((req, res) => {
  if (req.url === '/_test/stats') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  stats.requests++;
  if (opts.verbose) process.stderr.write(`${req.method} ${req.url}\n`);
  const user = authenticate(req);
  if (!user) {
    stats.unauthorized++;
    req.resume();
    res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="omnifs-test"', 'Content-Type': 'text/plain' });
    res.end('authentication required\n');
    return;
  }
  cgi(req, res, user);
});

server.listen(opts.port, opts.host, () => {
  const port = server.address().port;
  if (opts.portFile) {
    const tmp = `${opts.portFile}.tmp`;
    fs.writeFileSync(tmp, `${port}\n`);
    fs.renameSync(tmp, opts.portFile);
  }
  process.stdout.write(`git-http-test-server listening on http://${opts.host}:${port}\n`);
});

// A test that dies without cleaning up must not leave us behind: when the
// process that started us goes away, so do we.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 1000).unref();

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
