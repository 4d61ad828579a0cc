// envd `process.Process` service for the E2B test server.
//
// Processes run chrooted into the sandbox root as the requested user:
//   pipes: /usr/sbin/chroot --userspec=UID:GID --groups=G ROOT
//          /bin/sh -c 'cd -- "$1" || exit 1; shift; exec "$@"' sh CWD CMD ARGS...
//   pty:   python3 pty_helper.py (allocates a real pty, see that file)
// Each process is its own process group (session), so signals reach its
// children too. Events are fanned out to every Start/Connect stream:
//   {"start":{"pid":N}}, {"data":{"stdout"|"stderr"|"pty":b64}}, {"end":{...}}
// wrapped as {"event":{...}} on the wire. Exited processes are remembered for
// 30 s so Connect can replay start + end.
'use strict';

const fs = require('fs');
const fsp = require('fs/promises');
const path = require('path');
const { spawn } = require('child_process');
const { RpcError, ServerStream, EnvelopeDecoder, parseMessage, FLAG_END_STREAM, envelope } = require('./connect');
const { resolveUserPath, resolveInRoot, pathErrorToRpc } = require('./fsutil');

const STDIO_CHUNK = 32 * 1024;
const PTY_CHUNK = 16 * 1024;
const FINISHED_TTL_MS = 30000;
const EXIT_DRAIN_MS = 200;

const CHROOT = ['/usr/sbin/chroot', '/usr/bin/chroot', '/sbin/chroot'].find((p) => fs.existsSync(p)) || 'chroot';
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => fs.existsSync(p)) || 'python3';
const PTY_HELPER = path.join(__dirname, '..', 'pty_helper.py');

// Go's names for signals (syscall.Signal.String on Linux), used in "status".
const GO_SIGNAL_NAMES = {
  SIGHUP: 'hangup',
  SIGINT: 'interrupt',
  SIGQUIT: 'quit',
  SIGILL: 'illegal instruction',
  SIGTRAP: 'trace/breakpoint trap',
  SIGABRT: 'aborted',
  SIGBUS: 'bus error',
  SIGFPE: 'floating point exception',
  SIGKILL: 'killed',
  SIGUSR1: 'user defined signal 1',
  SIGSEGV: 'segmentation fault',
  SIGUSR2: 'user defined signal 2',
  SIGPIPE: 'broken pipe',
  SIGALRM: 'alarm clock',
  SIGTERM: 'terminated',
  SIGSTKFLT: 'stack fault',
  SIGCHLD: 'child exited',
  SIGCONT: 'continued',
  SIGSTOP: 'stopped (signal)',
  SIGTSTP: 'stopped',
  SIGTTIN: 'stopped (tty input)',
  SIGTTOU: 'stopped (tty output)',
  SIGURG: 'urgent I/O condition',
  SIGXCPU: 'CPU time limit exceeded',
  SIGXFSZ: 'file size limit exceeded',
  SIGVTALRM: 'virtual timer expired',
  SIGPROF: 'profiling timer expired',
  SIGWINCH: 'window changed',
  SIGIO: 'I/O possible',
  SIGPWR: 'power failure',
  SIGSYS: 'bad system call',
};

/** The `end` event for an exit code / signal, as envd (Go ProcessState) writes it. */
function endEvent(code, signal) {
  if (signal) {
    const s = `signal: ${GO_SIGNAL_NAMES[signal] || signal}`;
    return { exitCode: -1, status: s, error: s };
  }
  const s = `exit status ${code}`;
  if (code === 0) return { exited: true, status: s };
  return { exitCode: code, exited: true, status: s, error: s };
}

function splitChunks(buf, size) {
  const out = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

/** One running (or recently exited) process. */
class ProcRecord {
  constructor(sb, { config, tag, isPty }) {
    this.sb = sb;
    this.config = config;
    this.tag = tag;
    this.isPty = isPty;
    this.pid = 0;
    this.pgid = 0;
    this.child = null;
    this.ctl = null;
    this.stdinOpen = false;
    this.listeners = new Set();
    this.queue = []; // events before delivery begins
    this.delivering = false;
    this.end = null;
  }

  emit(ev) {
    if (!this.delivering) {
      this.queue.push(ev);
      return;
    }
    for (const fn of [...this.listeners]) fn(ev);
  }

  beginDelivery() {
    this.delivering = true;
    const q = this.queue;
    this.queue = [];
    for (const ev of q) this.emit(ev);
  }

  signal(sig) {
    // pgid 0 would mean "our own process group": never signal before launch.
    if (this.end || !(this.pgid > 1)) return;
    try {
      process.kill(-this.pgid, sig);
    } catch (e) {
      if (e.code !== 'ESRCH') throw e;
      try {
        process.kill(this.pid, sig);
      } catch (_) {
        // gone
      }
    }
  }

  writeStdin(buf) {
    if (this.isPty || !this.stdinOpen || !this.child.stdin || this.child.stdin.destroyed) {
      throw new RpcError('internal', 'error writing to stdin: stdin not enabled or closed');
    }
    this.child.stdin.write(buf);
  }

  writePty(buf) {
    if (!this.isPty) throw new RpcError('internal', 'error writing to tty: tty not assigned to process');
    if (!this.child.stdin || this.child.stdin.destroyed) {
      throw new RpcError('internal', 'error writing to tty: pty closed');
    }
    this.child.stdin.write(buf);
  }

  resize(cols, rows) {
    if (!this.isPty) throw new RpcError('internal', 'error resizing tty: tty not assigned to process');
    if (!this.ctl || this.ctl.destroyed) throw new RpcError('internal', 'error resizing tty: pty closed');
    this.ctl.write(`resize ${cols >>> 0} ${rows >>> 0}\n`);
  }

  closeStdin() {
    if (this.isPty) {
      throw new RpcError('unknown', 'error closing stdin: cannot close stdin of a PTY process, send Ctrl-D (0x04) instead');
    }
    if (!this.stdinOpen) throw new RpcError('unknown', 'error closing stdin: stdin not enabled or closed');
    this.stdinOpen = false;
    this.child.stdin.end();
  }

  /** Called by sandbox teardown for a process that refused to die. */
  abandon() {
    if (!this.end) this.finish(null, 'SIGKILL');
  }

  finish(code, signal) {
    if (this.end) return;
    this.end = endEvent(code, signal);
    if (this.onFinish) this.onFinish();
    this.emit({ end: this.end });
    this.listeners.clear();
    if (this.hidden) {
      this.sb.hiddenProcs.delete(this);
      return;
    }
    this.sb.processes.delete(this.pid);
    this.sb.finished.set(this.pid, this);
    const t = setTimeout(() => {
      if (this.sb.finished.get(this.pid) === this) this.sb.finished.delete(this.pid);
    }, FINISHED_TTL_MS);
    if (t.unref) t.unref();
  }
}

/** Start the OS process for `rec`. Resolves once the pid is known. */
function launch(rec, { user, cwd, env, stdin, pty }) {
  const sb = rec.sb;
  const groups = (user.groups && user.groups.length ? user.groups : [user.gid]).join(',');
  const argv = [rec.config.cmd, ...(rec.config.args || [])];
  let child;
  if (pty) {
    const cols = (pty.size && pty.size.cols) || 80;
    const rows = (pty.size && pty.size.rows) || 24;
    child = spawn(
      PYTHON,
      ['-I', PTY_HELPER, sb.root, String(user.uid), String(user.gid), groups, cwd, String(cols), String(rows), '--', ...argv],
      { env, detached: true, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] },
    );
  } else {
    child = spawn(
      CHROOT,
      [
        `--userspec=${user.uid}:${user.gid}`,
        `--groups=${groups}`,
        sb.root,
        '/bin/sh',
        '-c',
        'cd -- "$1" || exit 1; shift; exec "$@"',
        'sh',
        cwd,
        ...argv,
      ],
      { env, detached: true, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] },
    );
  }
  rec.child = child;
  rec.stdinOpen = !pty && !!stdin;
  if (child.stdin) child.stdin.on('error', () => {});

  return new Promise((resolve, reject) => {
    let resolved = false;
    child.once('error', (e) => {
      if (!resolved) {
        resolved = true;
        reject(new RpcError('internal', `error starting process: ${e.message}`));
      }
    });

    const openStreams = new Set();
    let exitInfo = null;
    let drainTimer = null;
    const maybeFinish = () => {
      if (!exitInfo || !resolved) return;
      if (openStreams.size && !drainTimer) {
        drainTimer = setTimeout(() => {
          for (const s of openStreams) s.destroy();
          openStreams.clear();
          maybeFinish();
        }, EXIT_DRAIN_MS);
        return;
      }
      if (openStreams.size) return;
      if (drainTimer) clearTimeout(drainTimer);
      if (rec.ctl) rec.ctl.destroy();
      rec.finish(exitInfo.code, exitInfo.signal);
    };
    const watchStream = (stream, kind, chunk) => {
      openStreams.add(stream);
      stream.on('data', (buf) => {
        for (const c of splitChunks(buf, chunk)) rec.emit({ data: { [kind]: c.toString('base64') } });
      });
      const done = () => {
        if (openStreams.delete(stream)) maybeFinish();
      };
      stream.on('end', done);
      stream.on('close', done);
      stream.on('error', done);
    };
    if (pty) {
      watchStream(child.stdout, 'pty', PTY_CHUNK);
      child.stderr.on('data', (b) => {
        if (sb.mgr.verbose) process.stderr.write(`pty_helper[${child.pid}]: ${b}`);
      });
    } else {
      watchStream(child.stdout, 'stdout', STDIO_CHUNK);
      watchStream(child.stderr, 'stderr', STDIO_CHUNK);
    }
    child.on('exit', (code, signal) => {
      exitInfo = { code: code == null ? -1 : code, signal };
      if (!resolved) {
        // Died before we learnt its pid (pty helper failed to start).
        resolved = true;
        if (!rec.pid) {
          rec.pid = child.pid;
          rec.pgid = child.pid;
        }
        resolve();
      }
      maybeFinish();
    });

    if (pty) {
      rec.ctl = child.stdio[3];
      rec.ctl.on('error', () => {});
      let buf = '';
      rec.ctl.on('data', (d) => {
        buf += d.toString();
        const m = /^pid (\d+)\n/.exec(buf);
        if (m && !resolved) {
          resolved = true;
          rec.pid = parseInt(m[1], 10);
          rec.pgid = rec.pid;
          resolve();
          maybeFinish();
        }
      });
    } else if (child.pid) {
      resolved = true;
      rec.pid = child.pid;
      rec.pgid = child.pid;
      resolve();
    }
  });
}

/** Find a process by selector {pid} or {tag}. */
function findProcess(sb, selector, includeFinished = false) {
  selector = selector || {};
  const want = (p) => (selector.tag !== undefined && selector.pid === undefined ? p.tag === selector.tag : p.pid === Number(selector.pid));
  for (const p of sb.processes.values()) if (want(p)) return p;
  if (includeFinished) for (const p of sb.finished.values()) if (want(p)) return p;
  return null;
}

function notFound(selector) {
  selector = selector || {};
  if (selector.tag !== undefined && selector.pid === undefined) {
    return new RpcError('not_found', `process with tag ${selector.tag} not found`);
  }
  return new RpcError('not_found', `process with pid ${Number(selector.pid) || 0} not found`);
}

function getProcess(sb, selector) {
  const p = findProcess(sb, selector);
  if (!p) throw notFound(selector);
  return p;
}

function decodeBytes(s) {
  return Buffer.from(String(s || ''), 'base64');
}

function handleInput(proc, input) {
  input = input || {};
  if (input.pty !== undefined) return proc.writePty(decodeBytes(input.pty));
  if (input.stdin !== undefined) return proc.writeStdin(decodeBytes(input.stdin));
  throw new RpcError('unimplemented', 'invalid input type');
}

function parseSignal(sig) {
  if (sig === 'SIGNAL_SIGKILL' || sig === 9 || sig === '9') return 'SIGKILL';
  if (sig === 'SIGNAL_SIGTERM' || sig === 15 || sig === '15') return 'SIGTERM';
  throw new RpcError('unimplemented', `invalid signal: ${sig === undefined ? 'SIGNAL_UNSPECIFIED' : sig}`);
}

function configJSON(c) {
  const out = { cmd: c.cmd };
  if (c.args && c.args.length) out.args = c.args;
  if (c.envs && Object.keys(c.envs).length) out.envs = c.envs;
  if (c.cwd !== undefined) out.cwd = c.cwd;
  return out;
}

// ---------------------------------------------------------------------------
// Handlers. ctx = { sb, user } (user = resolved Basic-auth user or default).

const unary = {
  async List(ctx) {
    const processes = [];
    for (const p of ctx.sb.processes.values()) {
      const item = { config: configJSON(p.config), pid: p.pid };
      if (p.tag !== undefined) item.tag = p.tag;
      processes.push(item);
    }
    return processes.length ? { processes } : {};
  },

  async SendInput(ctx, msg) {
    handleInput(getProcess(ctx.sb, msg.process), msg.input);
    return {};
  },

  async SendSignal(ctx, msg) {
    const proc = getProcess(ctx.sb, msg.process);
    proc.signal(parseSignal(msg.signal));
    return {};
  },

  async Update(ctx, msg) {
    const proc = getProcess(ctx.sb, msg.process);
    if (msg.pty) {
      const size = msg.pty.size || {};
      proc.resize(size.cols || 0, size.rows || 0);
    }
    return {};
  },

  async CloseStdin(ctx, msg) {
    getProcess(ctx.sb, msg.process).closeStdin();
    return {};
  },
};

/** Attach a stream to a process's events. */
function pipeEvents(proc, stream) {
  const fn = (ev) => {
    stream.send({ event: ev });
    if (ev.end) stream.end();
  };
  proc.listeners.add(fn);
  stream.onClose = () => proc.listeners.delete(fn);
}

const streaming = {
  async Start(ctx, msg, req, res) {
    const stream = new ServerStream(req, res, { keepalive: () => ({ event: { keepalive: {} } }) });
    try {
      if (ctx.authError) throw ctx.authError;
      const { sb, user } = ctx;
      const p = msg.process || {};
      if (!p.cmd) throw new RpcError('invalid_argument', 'process.cmd is required');
      if (msg.tag === '_system') throw new RpcError('invalid_argument', "tag '_system' is reserved");
      let cwd;
      try {
        cwd = resolveUserPath(p.cwd || '', user, sb.defaultWorkdir);
      } catch (e) {
        throw pathErrorToRpc(e);
      }
      const r = await resolveInRoot(sb.root, cwd, true).catch(() => null);
      const st = r && r.exists ? await fsp.stat(r.host).catch(() => null) : null;
      if (!st || !st.isDirectory()) throw new RpcError('invalid_argument', `cwd '${cwd}' does not exist`);

      const env = { ...sb.baseEnv(user), ...(p.envs || {}) };
      const config = { cmd: p.cmd, args: Array.isArray(p.args) ? p.args.map(String) : [], envs: p.envs || {}, cwd: p.cwd };
      const rec = new ProcRecord(sb, { config, tag: msg.tag, isPty: !!msg.pty });
      await launch(rec, { user, cwd, env, stdin: msg.stdin !== false, pty: msg.pty || null });
      if (sb.killed) {
        rec.signal('SIGKILL');
        throw new RpcError('unavailable', 'sandbox is shutting down');
      }
      if (!rec.end) sb.processes.set(rec.pid, rec);
      stream.send({ event: { start: { pid: rec.pid } } });
      // The request deadline is also the process lifetime. It is kept apart
      // from the stream: the client usually aborts at the same moment, and
      // the process must die even when nobody is listening any more.
      if (stream.timeoutMs && !rec.end) {
        const lifetime = setTimeout(() => rec.signal('SIGKILL'), Math.max(0, stream.deadlineAt - Date.now()));
        rec.onFinish = () => clearTimeout(lifetime);
      }
      pipeEvents(rec, stream);
      rec.beginDelivery();
    } catch (e) {
      stream.end(e);
    }
  },

  async Connect(ctx, msg, req, res) {
    const stream = new ServerStream(req, res, { keepalive: () => ({ event: { keepalive: {} } }) });
    try {
      if (ctx.authError) throw ctx.authError;
      const proc = findProcess(ctx.sb, msg.process, true);
      if (!proc) throw notFound(msg.process);
      stream.send({ event: { start: { pid: proc.pid } } });
      if (proc.end) {
        stream.send({ event: { end: proc.end } });
        stream.end();
        return;
      }
      pipeEvents(proc, stream);
    } catch (e) {
      stream.end(e);
    }
  },
};

/** StreamInput: client-streaming; request is a series of envelopes. */
async function streamInput(ctx, req, res) {
  const decoder = new EnvelopeDecoder();
  let proc = null;
  let failure = ctx.authError || null;
  try {
    for await (const chunk of req) {
      if (failure) continue; // drain
      for (const env of decoder.push(chunk)) {
        if (failure) break;
        if (env.flags & FLAG_END_STREAM) continue;
        try {
          const m = parseMessage(env.data);
          if (m.start) proc = getProcess(ctx.sb, m.start.process);
          else if (m.data) {
            if (!proc) throw new RpcError('failed_precondition', 'first message must be start');
            handleInput(proc, m.data.input);
          } else if (!m.keepalive) throw new RpcError('unimplemented', 'invalid event type');
        } catch (e) {
          failure = e;
        }
      }
    }
  } catch (e) {
    failure = failure || new RpcError('unknown', `error streaming input: ${e.message}`);
  }
  res.writeHead(200, { 'Content-Type': 'application/connect+json' });
  if (failure) res.end(envelope(FLAG_END_STREAM, { error: { code: failure.code || 'internal', message: failure.message } }));
  else res.end(Buffer.concat([envelope(0, {}), envelope(FLAG_END_STREAM, {})]));
}

module.exports = { unary, streaming, streamInput, launch, ProcRecord, endEvent };
