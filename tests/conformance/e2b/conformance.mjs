// Conformance checks: the official `e2b` JS SDK against the local E2B test
// server (tests/servers/e2b/server.js).
//
// Needs E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL (run.sh sets them; the
// server must have been started with --api-key equal to E2B_API_KEY so the
// wrong-key check can see a 401). Runs every step of section 6.3 of
// /work/shared/protocols/e2b.md, plus PTY, watchDir, octet-stream upload,
// binary and 5 MB round trips, stdin, signed URLs, Range/304 on /files and the
// /_test hooks. Prints `ok - name` / `not ok - name: reason` per check and
// ends with `N passed, M failed`; exits 1 if anything failed.

import crypto from 'node:crypto';
import {
  Sandbox,
  CommandExitError,
  FileNotFoundError,
  InvalidArgumentError,
  TimeoutError,
  SandboxNotFoundError,
  AuthenticationError,
  NotFoundError,
} from 'e2b';

const BASE = process.env.E2B_API_URL;
const API_KEY = process.env.E2B_API_KEY;
if (!BASE || !API_KEY || !process.env.E2B_SANDBOX_URL) {
  console.error('E2B_API_KEY, E2B_API_URL and E2B_SANDBOX_URL must be set');
  process.exit(2);
}

let passed = 0;
let failed = 0;

/** Run one named check; any exception is a failure. */
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    const why = (e && e.message ? e.message : String(e)).replace(/\s+/g, ' ').slice(0, 400);
    console.log(`not ok - ${name}: ${why}`);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg || 'assertion failed');
}

function eq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const b = JSON.stringify(expected);
  if (a !== b) throw new Error(`${what}: expected ${b}, got ${a}`);
}

/** Expect `promise` to reject with an instance of `cls`; returns the error. */
async function rejects(promise, cls, what) {
  let err = null;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  if (!err) throw new Error(`${what}: expected ${cls.name}, but it succeeded`);
  if (!(err instanceof cls)) throw new Error(`${what}: expected ${cls.name}, got ${err.constructor.name}: ${err.message}`);
  return err;
}

async function testHook(method, path, body) {
  const res = await fetch(BASE + path, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

// ---------------------------------------------------------------------------

let sbx = null;
let reachable = false;
await check('test server reachable (/_test/reset)', async () => {
  await testHook('POST', '/_test/reset');
  reachable = true;
});
if (!reachable) {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
}
const HOME = '/home/user';
const hello = `${HOME}/hello.txt`;

// 1. create
await check('create sandbox (metadata, envs, timeoutMs)', async () => {
  sbx = await Sandbox.create({ timeoutMs: 60000, metadata: { k: 'v' }, envs: { A: 'B' } });
  assert(/^i[a-z0-9]{20}$/.test(sbx.sandboxId), `unexpected sandbox id ${sbx.sandboxId}`);
  const stats = await testHook('GET', '/_test/stats');
  eq(stats.requests['POST /v2/sandboxes'], 1, 'create requests seen by the server');
  const live = await testHook('GET', '/_test/sandboxes');
  assert(live.sandboxes.some((s) => s.sandboxId === sbx.sandboxId), 'sandbox not listed by /_test/sandboxes');
});
if (!sbx) {
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}

// 2-3. write + read
await check('files.write returns entry info', async () => {
  const info = await sbx.files.write(hello, 'hello');
  eq(info.path, hello, 'path');
  eq(info.name, 'hello.txt', 'name');
  eq(info.type, 'file', 'type');
});
await check('files.read absolute path', async () => {
  eq(await sbx.files.read(hello), 'hello', 'content');
});
await check('files.read relative path resolves to home', async () => {
  eq(await sbx.files.read('hello.txt'), 'hello', 'content');
});

await check('non-ASCII and quoted names: write, read, list, download header', async () => {
  for (const name of ['café ✓ naïve.txt', 'quote "me" and \\.txt', '日本語']) {
    const p = `${HOME}/${name}`;
    const info = await sbx.files.write(p, `content of ${name}`);
    eq(info.name, name, 'name');
    eq(await sbx.files.read(p), `content of ${name}`, 'content');
    const names = (await sbx.files.list(HOME)).map((e) => e.name);
    eq(names.includes(name), true, 'listed');
    const url = await sbx.downloadUrl(p);
    const r = await fetch(url);
    eq(r.status, 200, 'download status');
    eq(await r.text(), `content of ${name}`, 'downloaded');
    const cd = r.headers.get('content-disposition') || '';
    const ascii = /^[\x20-\x7e]*$/.test(name);
    eq(ascii ? cd.includes('filename="') : cd.includes("filename*=utf-8''"), true, `disposition ${cd}`);
  }
});

// 4. multi-file write
await check('files.write many files creates parents', async () => {
  const res = await sbx.files.write([
    { path: 'a/b/c.txt', data: 'x' },
    { path: '/tmp/d.txt', data: 'yy' },
  ]);
  eq(res.length, 2, 'result count');
  eq(res.map((r) => r.path), [`${HOME}/a/b/c.txt`, '/tmp/d.txt'], 'paths');
  eq(await sbx.files.read(`${HOME}/a/b/c.txt`), 'x', 'c.txt');
  eq(await sbx.files.read('/tmp/d.txt'), 'yy', 'd.txt');
  const dir = await sbx.files.getInfo(`${HOME}/a/b`);
  eq(dir.type, 'dir', 'parent type');
  eq(dir.owner, 'user', 'parent owner');
  eq(dir.mode, 0o755, 'parent mode');
});

// 5. exists
await check('files.exists', async () => {
  eq(await sbx.files.exists(hello), true, 'existing file');
  eq(await sbx.files.exists(`${HOME}/nope`), false, 'missing file');
});

// 6. getInfo
await check('files.getInfo of a file', async () => {
  const i = await sbx.files.getInfo(hello);
  eq(i.type, 'file', 'type');
  eq(i.size, 5, 'size');
  eq(i.mode, 420, 'mode');
  eq(i.permissions, '-rw-r--r--', 'permissions');
  eq(i.owner, 'user', 'owner');
  eq(i.group, 'user', 'group');
  eq(i.path, hello, 'path');
  assert(i.modifiedTime instanceof Date && Math.abs(i.modifiedTime - Date.now()) < 120000, 'modifiedTime not recent');
});

// 7. list
await check('files.list depth 1', async () => {
  const entries = await sbx.files.list(HOME);
  const h = entries.find((e) => e.name === 'hello.txt');
  const a = entries.find((e) => e.name === 'a');
  assert(h && h.type === 'file' && h.path === hello, 'hello.txt missing or wrong');
  assert(a && a.type === 'dir', 'a missing or not a dir');
  assert(!entries.some((e) => e.path === `${HOME}/a/b`), 'depth 1 listed a/b');
});
await check('files.list depth 2', async () => {
  const entries = await sbx.files.list(HOME, { depth: 2 });
  assert(entries.some((e) => e.path === `${HOME}/a/b` && e.type === 'dir'), 'a/b missing');
  assert(!entries.some((e) => e.path === `${HOME}/a/b/c.txt`), 'depth 2 listed a/b/c.txt');
});

// 8. makeDir
await check('files.makeDir new then existing', async () => {
  eq(await sbx.files.makeDir(`${HOME}/newdir`), true, 'first makeDir');
  eq(await sbx.files.makeDir(`${HOME}/newdir`), false, 'second makeDir');
  eq((await sbx.files.getInfo(`${HOME}/newdir`)).owner, 'user', 'owner');
});

// 9. rename
await check('files.rename', async () => {
  const e = await sbx.files.rename(hello, `${HOME}/renamed.txt`);
  eq(e.path, `${HOME}/renamed.txt`, 'returned path');
  eq(await sbx.files.exists(hello), false, 'old path exists');
  eq(await sbx.files.exists(`${HOME}/renamed.txt`), true, 'new path exists');
});

// 10. remove
await check('files.remove (twice)', async () => {
  await sbx.files.remove(`${HOME}/renamed.txt`);
  eq(await sbx.files.exists(`${HOME}/renamed.txt`), false, 'still exists');
  await sbx.files.remove(`${HOME}/renamed.txt`);
});

// 11. read errors
await check('files.read of a missing file throws FileNotFoundError', async () => {
  await rejects(sbx.files.read(`${HOME}/nope`), FileNotFoundError, 'read missing');
});
await check('files.read of a directory throws InvalidArgumentError', async () => {
  await rejects(sbx.files.read(HOME), InvalidArgumentError, 'read dir');
});

// 12-14. commands
await check('commands.run echo with onStdout', async () => {
  const chunks = [];
  const r = await sbx.commands.run('echo hello', { onStdout: (d) => chunks.push(d) });
  eq(r.stdout, 'hello\n', 'stdout');
  eq(r.exitCode, 0, 'exitCode');
  assert(chunks.join('') === 'hello\n', 'onStdout was not called with the output');
});
await check('commands.run cwd', async () => {
  eq((await sbx.commands.run('pwd', { cwd: '/tmp' })).stdout, '/tmp\n', 'pwd');
});
await check('commands.run default cwd is home', async () => {
  eq((await sbx.commands.run('pwd')).stdout, `${HOME}\n`, 'pwd');
});
await check('commands.run missing cwd is InvalidArgumentError', async () => {
  await rejects(sbx.commands.run('pwd', { cwd: '/nope' }), InvalidArgumentError, 'cwd /nope');
});
await check('commands.run per-command envs', async () => {
  eq((await sbx.commands.run('echo $FOO', { envs: { FOO: 'bar' } })).stdout, 'bar\n', 'FOO');
});
await check('commands.run sandbox envVars', async () => {
  eq((await sbx.commands.run('echo $A')).stdout, 'B\n', 'A');
});
await check('commands.run default user is user', async () => {
  eq((await sbx.commands.run('whoami')).stdout, 'user\n', 'whoami');
  eq((await sbx.commands.run('echo $HOME:$USER')).stdout, '/home/user:user\n', 'HOME/USER');
});
await check('commands.run as root', async () => {
  eq((await sbx.commands.run('whoami', { user: 'root' })).stdout, 'root\n', 'whoami');
});
await check('commands.run non-zero exit throws CommandExitError', async () => {
  const e = await rejects(sbx.commands.run('echo err 1>&2; exit 3'), CommandExitError, 'exit 3');
  eq(e.exitCode, 3, 'exitCode');
  eq(e.stderr, 'err\n', 'stderr');
});
await check('sandbox root is isolated (absolute paths, chroot)', async () => {
  await sbx.files.write('/tmp/iso.txt', 'inside');
  eq((await sbx.commands.run('cat /tmp/iso.txt; echo; test -d /work && echo leak || echo isolated')).stdout, 'inside\nisolated\n', 'view');
  const r = await sbx.commands.run('touch /usr/x 2>&1 || true');
  assert(/Read-only/i.test(r.stdout), `/usr is writable: ${r.stdout}`);
});

// 15. background + kill
await check('background command kill', async () => {
  const h = await sbx.commands.run('sleep 30', { background: true });
  assert(h.pid > 0, 'no pid');
  const listed = await sbx.commands.list();
  assert(listed.some((p) => p.pid === h.pid), 'not in commands.list');
  eq(await h.kill(), true, 'kill result');
  const e = await rejects(h.wait(), CommandExitError, 'wait after kill');
  eq(e.exitCode, -1, 'exitCode');
  eq(await sbx.commands.kill(h.pid), false, 'second kill');
});

// 16. timeout
await check('commands.run timeoutMs throws TimeoutError', async () => {
  const t0 = Date.now();
  await rejects(sbx.commands.run('sleep 5', { timeoutMs: 500 }), TimeoutError, 'sleep 5');
  assert(Date.now() - t0 < 4000, 'timeout took too long');
  // The kill happens at the deadline; the exit is reaped a moment later.
  await waitFor(
    async () => !(await sbx.commands.list()).some((p) => p.args && p.args.includes('sleep 5')),
    2000,
    'the process to be gone after the deadline',
  );
});

// stdin
await check('commands stdin: sendStdin + closeStdin', async () => {
  const h = await sbx.commands.run('cat', { background: true, stdin: true });
  await sbx.commands.sendStdin(h.pid, 'piped input\n');
  await h.closeStdin();
  const r = await h.wait();
  eq(r.stdout, 'piped input\n', 'stdout');
});
await check('commands.connect to a running command', async () => {
  const h = await sbx.commands.run('sleep 0.5; echo late', { background: true });
  const out = [];
  const h2 = await sbx.commands.connect(h.pid, { onStdout: (d) => out.push(d) });
  const r = await h2.wait();
  eq(out.join(''), 'late\n', 'output seen through connect');
  eq(r.exitCode, 0, 'exitCode');
  await h.wait();
});

// PTY
await check('pty: create, input, resize, output, kill', async () => {
  const dec = new TextDecoder();
  let out = '';
  const h = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => (out += dec.decode(d, { stream: true })) });
  assert(h.pid > 0, 'no pid');
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode('echo pty-$((6*7)); tty\n'));
  await waitFor(() => out.includes('pty-42'), 5000, 'pty output');
  await waitFor(() => /\/dev\/pts\/\d+/.test(out), 5000, 'tty name');
  await sbx.pty.resize(h.pid, { cols: 100, rows: 30 });
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode('stty size\n'));
  await waitFor(() => out.includes('30 100'), 5000, 'stty size after resize');
  eq(await sbx.pty.kill(h.pid), true, 'kill');
  const e = await rejects(h.wait(), CommandExitError, 'pty wait after kill');
  eq(e.exitCode, -1, 'exitCode');
});

// watchDir
await check('watchDir sees a file created by commands.run', async () => {
  const dir = `${HOME}/watched`;
  await sbx.files.makeDir(dir);
  const events = [];
  const w = await sbx.files.watchDir(dir, (ev) => events.push(ev));
  try {
    await sbx.commands.run(`echo hi > ${dir}/new.txt`);
    await waitFor(() => events.some((e) => e.name === 'new.txt' && e.type === 'create'), 5000, 'create event');
    await waitFor(() => events.some((e) => e.name === 'new.txt' && e.type === 'write'), 5000, 'write event');
    await sbx.commands.run(`rm ${dir}/new.txt`);
    await waitFor(() => events.some((e) => e.name === 'new.txt' && e.type === 'remove'), 5000, 'remove event');
  } finally {
    await w.stop();
  }
});
await check('watchDir recursive with entries', async () => {
  const dir = `${HOME}/watched2`;
  await sbx.files.makeDir(`${dir}/sub`);
  const events = [];
  const w = await sbx.files.watchDir(dir, (ev) => events.push(ev), { recursive: true, includeEntry: true });
  try {
    await sbx.files.write(`${dir}/sub/f.txt`, 'abc');
    await waitFor(() => events.some((e) => e.name === 'sub/f.txt' && e.type === 'create'), 5000, 'create event');
    const ev = events.find((e) => e.name === 'sub/f.txt' && e.type === 'create');
    assert(ev.entry && ev.entry.path === `${dir}/sub/f.txt`, 'event entry missing');
    await sbx.files.rename(`${dir}/sub/f.txt`, `${dir}/g.txt`);
    await waitFor(() => events.some((e) => e.name === 'sub/f.txt' && e.type === 'rename'), 5000, 'rename event');
    await waitFor(() => events.some((e) => e.name === 'g.txt' && e.type === 'create'), 5000, 'create after rename');
  } finally {
    await w.stop();
  }
});

// uploads/downloads
await check('files.write with useOctetStream', async () => {
  const stats0 = await testHook('GET', '/_test/stats');
  const info = await sbx.files.write(`${HOME}/octet/o.txt`, 'octet data', { useOctetStream: true });
  eq(info.path, `${HOME}/octet/o.txt`, 'path');
  eq(await sbx.files.read(`${HOME}/octet/o.txt`), 'octet data', 'content');
  const stats1 = await testHook('GET', '/_test/stats');
  eq(stats1.requests['POST /files'] - stats0.requests['POST /files'], 1, 'uploads');
});
await check('files.write gzip', async () => {
  await sbx.files.write(`${HOME}/gz.txt`, 'gzip body '.repeat(100), { gzip: true });
  eq(await sbx.files.read(`${HOME}/gz.txt`), 'gzip body '.repeat(100), 'content');
});
await check('binary round trip (all 256 byte values, format bytes)', async () => {
  const data = new Uint8Array(512);
  for (let i = 0; i < 512; i++) data[i] = i % 256;
  await sbx.files.write(`${HOME}/bin.dat`, data.buffer);
  const back = await sbx.files.read(`${HOME}/bin.dat`, { format: 'bytes' });
  assert(back instanceof Uint8Array, 'not a Uint8Array');
  eq(back.length, 512, 'length');
  assert(Buffer.from(back).equals(Buffer.from(data)), 'bytes differ');
  await sbx.files.write(`${HOME}/bin2.dat`, data.buffer, { useOctetStream: true });
  const back2 = await sbx.files.read(`${HOME}/bin2.dat`, { format: 'bytes' });
  assert(Buffer.from(back2).equals(Buffer.from(data)), 'octet-stream bytes differ');
});
await check('5 MB round trip', async () => {
  const big = crypto.randomBytes(5 * 1024 * 1024);
  const info = await sbx.files.write(`${HOME}/big.bin`, big.buffer.slice(big.byteOffset, big.byteOffset + big.length));
  eq(info.path, `${HOME}/big.bin`, 'path');
  const back = await sbx.files.read(`${HOME}/big.bin`, { format: 'bytes' });
  eq(back.length, big.length, 'length');
  eq(sha(back), sha(big), 'sha256');
  const r = await sbx.commands.run(`sha256sum ${HOME}/big.bin`);
  eq(r.stdout.split(' ')[0], sha(big), 'sha256 inside the sandbox');
});
await check('files as root user', async () => {
  const info = await sbx.files.write('root-file.txt', 'r', { user: 'root' });
  eq(info.path, '/root/root-file.txt', 'path');
  eq((await sbx.files.getInfo('/root/root-file.txt')).owner, 'root', 'owner');
});
await check('symlink reported with target type', async () => {
  await sbx.commands.run(`ln -s ${HOME}/a /tmp/link-to-a && ln -s /nonexistent /tmp/broken`);
  const i = await sbx.files.getInfo('/tmp/link-to-a');
  eq(i.type, 'dir', 'type');
  eq(i.symlinkTarget, `${HOME}/a`, 'symlinkTarget');
  const names = (await sbx.files.list('/tmp')).map((e) => e.name);
  assert(names.includes('link-to-a') && !names.includes('broken'), `unexpected listing ${names}`);
});
await check('signed download and upload URLs', async () => {
  await sbx.files.write(`${HOME}/signed.txt`, 'signed!');
  const dl = await sbx.downloadUrl(`${HOME}/signed.txt`);
  const res = await fetch(dl);
  eq(res.status, 200, 'download status');
  eq(await res.text(), 'signed!', 'download body');
  const ul = await sbx.uploadUrl(`${HOME}/uploaded.txt`);
  const fd = new FormData();
  fd.append('file', new Blob(['via url']), 'uploaded.txt');
  const up = await fetch(ul, { method: 'POST', body: fd });
  eq(up.status, 200, 'upload status');
  eq(await sbx.files.read(`${HOME}/uploaded.txt`), 'via url', 'uploaded content');
  const bad = await fetch(dl.replace(/signature=[^&]+/, 'signature=v1_bad'), { headers: { 'E2b-Sandbox-Id': sbx.sandboxId } });
  eq(bad.status, 401, 'bad signature status');
});
await check('GET /files Range, 304 and access token', async () => {
  const live = await testHook('GET', '/_test/sandboxes');
  const token = live.sandboxes.find((s) => s.sandboxId === sbx.sandboxId).envdAccessToken;
  await sbx.files.write(`${HOME}/range.txt`, '0123456789');
  const url = `${BASE}/files?path=${encodeURIComponent(`${HOME}/range.txt`)}`;
  // identity: with gzip accepted envd compresses and skips ServeContent.
  const h = { 'E2b-Sandbox-Id': sbx.sandboxId, 'X-Access-Token': token, 'Accept-Encoding': 'identity' };
  const r1 = await fetch(url, { headers: { ...h, Range: 'bytes=2-5' } });
  eq(r1.status, 206, 'range status');
  eq(await r1.text(), '2345', 'range body');
  eq(r1.headers.get('content-range'), 'bytes 2-5/10', 'content-range');
  const r2 = await fetch(url, { headers: h });
  const lm = r2.headers.get('last-modified');
  await r2.text();
  assert(lm, 'no Last-Modified');
  const r3 = await fetch(url, { headers: { ...h, 'If-Modified-Since': lm } });
  eq(r3.status, 304, 'conditional status');
  const r4 = await fetch(`${BASE}/filesystem.Filesystem/Stat`, {
    method: 'POST',
    headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'Content-Type': 'application/json' },
    body: JSON.stringify({ path: '/tmp' }),
  });
  eq(r4.status, 401, 'RPC without access token');
});
await check('/_test/exec and request counters', async () => {
  const r = await testHook('POST', '/_test/exec', { sandboxId: sbx.sandboxId, cmd: 'echo behind > /tmp/behind.txt; id -u' });
  eq(r.exitCode, 0, 'exitCode');
  eq(r.stdout, '0\n', 'runs as root');
  await testHook('POST', '/_test/reset');
  eq(await sbx.files.read('/tmp/behind.txt'), 'behind\n', 'file made behind the back');
  await sbx.files.list('/tmp');
  const s = await testHook('GET', '/_test/stats');
  eq(s.requests, { 'GET /files': 1, 'filesystem.Filesystem/ListDir': 1 }, 'counters');
  eq(s.total, 2, 'total');
  await testHook('POST', '/_test/delay', { ms: 150 });
  const t0 = Date.now();
  await sbx.files.exists('/tmp');
  const dt = Date.now() - t0;
  await testHook('POST', '/_test/delay', { ms: 0 });
  assert(dt >= 140, `delay not applied (${dt} ms)`);
});

// 17. timeout/info/isRunning
await check('setTimeout, getInfo, isRunning, list', async () => {
  await sbx.setTimeout(120000);
  const info = await sbx.getInfo();
  eq(info.sandboxId, sbx.sandboxId, 'sandboxId');
  eq(info.metadata, { k: 'v' }, 'metadata');
  eq(info.state, 'running', 'state');
  eq(info.templateId, 'base', 'templateId');
  const left = info.endAt.getTime() - Date.now();
  assert(left > 100000 && left <= 121000, `endAt not ~120 s away (${left} ms)`);
  eq(await sbx.isRunning(), true, 'isRunning');
  const page = await Sandbox.list({ query: { metadata: { k: 'v' } } }).nextItems();
  assert(page.some((s) => s.sandboxId === sbx.sandboxId), 'not in Sandbox.list');
  const none = await Sandbox.list({ query: { metadata: { k: 'other' } } }).nextItems();
  assert(!none.some((s) => s.sandboxId === sbx.sandboxId), 'metadata filter ignored');
});
await check('unknown template and bad API key are rejected', async () => {
  const e = await rejects(Sandbox.create('no-such-template'), Error, 'unknown template');
  assert(/not found/.test(e.message), `unexpected message ${e.message}`);
  await rejects(Sandbox.list({ apiKey: `e2b_${'f'.repeat(40)}` }).nextItems(), AuthenticationError, 'bad key');
});

// 18. kill
await check('kill, kill again, connect after kill', async () => {
  const id = sbx.sandboxId;
  eq(await sbx.kill(), true, 'kill');
  eq(await Sandbox.kill(id), false, 'second kill');
  await rejects(Sandbox.connect(id), SandboxNotFoundError, 'connect');
  eq(await sbx.isRunning(), false, 'isRunning after kill');
  await rejects(Sandbox.getInfo(id), NotFoundError, 'getInfo after kill');
  const live = await testHook('GET', '/_test/sandboxes');
  assert(!live.sandboxes.some((s) => s.sandboxId === id), 'sandbox still live');
});
await check('sandbox expires after its timeout', async () => {
  const s2 = await Sandbox.create({ timeoutMs: 1000 });
  await waitFor(async () => !(await s2.isRunning()), 5000, 'expiry');
  await rejects(Sandbox.getInfo(s2.sandboxId), NotFoundError, 'getInfo after expiry');
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
