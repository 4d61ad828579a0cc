// envd `filesystem.Filesystem` service for the E2B test server.
//
// Unary: Stat, MakeDir, Move, ListDir (with depth), Remove, CreateWatcher,
// GetWatcherEvents, RemoveWatcher. Server stream: WatchDir.
// All paths follow envd's user rules (fsutil.resolveUserPath) and are mapped
// into the sandbox root with fsutil.resolveInRoot, so nothing escapes it.
//
// Watching: one non-recursive fs.watch (inotify) per directory; each
// notification re-examines the named entry (or the whole directory when no
// name is given) against a snapshot and turns differences into envd events:
// new entry -> CREATE (+ WRITE when a non-empty file appeared), content
// change -> WRITE, mode/owner change -> CHMOD, vanished -> REMOVE, and a
// vanished + appeared pair with the same inode -> RENAME (old name) + CREATE
// (new name), the way fsnotify reports a rename. If fs.watch cannot be used
// the watcher falls back to polling every 200 ms.
'use strict';

const fs = require('fs');
const fsp = require('fs/promises');
const path = require('path').posix;
const crypto = require('crypto');
const { RpcError, ServerStream } = require('./connect');
const { resolveUserPath, resolveInRoot, entryInfo, ensureDirs, pathErrorToRpc } = require('./fsutil');
const { mountsUnder } = require('./sandboxes');

const ERRNO_TEXT = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'file exists',
  ENOTEMPTY: 'directory not empty',
  EISDIR: 'is a directory',
  ELOOP: 'too many levels of symbolic links',
  EXDEV: 'invalid cross-device link',
  EBUSY: 'device or resource busy',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EINVAL: 'invalid argument',
  ENAMETOOLONG: 'file name too long',
};
function errText(e) {
  return ERRNO_TEXT[e.code] || e.message;
}

function userPath(ctx, p) {
  try {
    return resolveUserPath(p, ctx.user, ctx.sb.defaultWorkdir);
  } catch (e) {
    throw pathErrorToRpc(e);
  }
}

async function inRoot(ctx, p, followFinal) {
  try {
    return await resolveInRoot(ctx.sb.root, p, followFinal);
  } catch (e) {
    if (e.kind === 'loop') throw new RpcError('invalid_argument', e.message);
    throw e;
  }
}

/** Map over `items` with at most `limit` concurrent promises, keeping order. */
async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

const byteOrder = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// ---------------------------------------------------------------------------
// Watcher engine

const EV = {
  CREATE: 'EVENT_TYPE_CREATE',
  WRITE: 'EVENT_TYPE_WRITE',
  REMOVE: 'EVENT_TYPE_REMOVE',
  RENAME: 'EVENT_TYPE_RENAME',
  CHMOD: 'EVENT_TYPE_CHMOD',
};

function snapOf(st) {
  return {
    dev: st.dev,
    ino: st.ino,
    isDir: st.isDirectory(),
    isFile: st.isFile(),
    size: st.size,
    mtimeMs: st.mtimeMs,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
  };
}

class DirWatcher {
  /**
   * sb: sandbox; logical: watched sandbox path; host: its host path.
   * onEvents(list) receives arrays of FilesystemEvent JSON objects.
   */
  constructor(sb, logical, host, { recursive, includeEntry }, onEvents) {
    this.sb = sb;
    this.logical = logical;
    this.host = host;
    this.recursive = !!recursive;
    this.includeEntry = !!includeEntry;
    this.onEvents = onEvents;
    this.snap = new Map(); // rel path ('' = root) -> snapOf()
    this.fsWatchers = new Map(); // rel dir -> fs.FSWatcher
    this.dirty = new Map(); // rel dir -> Set(names) | null (= whole dir)
    this.flushTimer = null;
    this.pollTimer = null;
    this.closed = false;
    this.busy = Promise.resolve();
    this.recentlyGone = new Map(); // rel -> time it was reported removed (late inotify echoes)
    // Recursive watches stop at mount points (/usr, /proc, /dev/pts...).
    this.mountPoints = new Set(mountsUnder(sb.root));
  }

  hostOf(rel) {
    return rel ? this.host + '/' + rel : this.host;
  }

  async start() {
    await this.scanTree('', false);
    this.sb.watchers.add(this);
  }

  /** Add `rel` (a dir) and, if recursive, everything under it to the snapshot. */
  async scanTree(rel, collect, out) {
    let names = [];
    try {
      names = await fsp.readdir(this.hostOf(rel));
    } catch (_) {
      return;
    }
    this.watchDir(rel);
    names.sort(byteOrder);
    for (const name of names) {
      const child = rel ? rel + '/' + name : name;
      let st;
      try {
        st = await fsp.lstat(this.hostOf(child));
      } catch (_) {
        continue;
      }
      const s = snapOf(st);
      this.snap.set(child, s);
      if (collect) out.push({ rel: child, s });
      if (s.isDir && this.recursive && !this.mountPoints.has(this.hostOf(child))) await this.scanTree(child, collect, out);
    }
  }

  watchDir(rel) {
    if (this.closed || this.fsWatchers.has(rel) || this.pollTimer) return;
    try {
      const w = fs.watch(this.hostOf(rel), { persistent: false }, (_type, name) => {
        this.markDirty(rel, name ? String(name) : null);
      });
      w.on('error', () => {
        this.unwatchDir(rel);
        this.markDirty(rel, null);
      });
      this.fsWatchers.set(rel, w);
    } catch (e) {
      if (rel === '' || e.code === 'ENOSPC' || e.code === 'EMFILE') this.startPolling();
    }
  }

  unwatchDir(rel) {
    const w = this.fsWatchers.get(rel);
    if (w) {
      try {
        w.close();
      } catch (_) {
        // ignore
      }
      this.fsWatchers.delete(rel);
    }
  }

  startPolling() {
    if (this.pollTimer || this.closed) return;
    for (const rel of [...this.fsWatchers.keys()]) this.unwatchDir(rel);
    this.pollTimer = setInterval(() => {
      this.markDirty('', null);
      for (const [rel, s] of this.snap) {
        if (s.isDir && this.recursive && !this.mountPoints.has(this.hostOf(rel))) this.markDirty(rel, null);
      }
    }, 200);
    if (this.pollTimer.unref) this.pollTimer.unref();
  }

  markDirty(rel, name) {
    if (this.closed) return;
    if (name === null) this.dirty.set(rel, null);
    else {
      const cur = this.dirty.get(rel);
      if (cur === null) {
        // whole dir already scheduled
      } else if (cur) cur.add(name);
      else this.dirty.set(rel, new Set([name]));
    }
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        this.busy = this.busy.then(() => this.flush()).catch(() => {});
      }, 25);
    }
  }

  async flush() {
    if (this.closed) return;
    const dirty = this.dirty;
    this.dirty = new Map();
    const removed = []; // {rel, s}
    const added = []; // {rel, s}
    const changed = []; // {rel, type}

    // Names to examine, per directory. Names that inotify reported are
    // remembered: one that is neither known nor present any more was created
    // and removed again between two flushes.
    const checks = [];
    const notified = new Set();
    for (const [dir, names] of dirty) {
      // A vanished directory is handled through its parent (its watcher also
      // reports its own deletion under its own name, which is not a child).
      if (dir !== '' && !this.snap.has(dir)) continue;
      if (dir !== '' && !(await fsp.lstat(this.hostOf(dir)).catch(() => null))) continue;
      let list;
      if (names === null) {
        let onDisk = [];
        try {
          onDisk = await fsp.readdir(this.hostOf(dir));
        } catch (_) {
          onDisk = [];
        }
        const known = [];
        const prefix = dir ? dir + '/' : '';
        for (const rel of this.snap.keys()) {
          if (rel.startsWith(prefix) && rel !== dir && !rel.slice(prefix.length).includes('/')) {
            known.push(rel.slice(prefix.length));
          }
        }
        list = [...new Set([...onDisk, ...known])];
      } else {
        list = [...names];
        for (const n of list) notified.add(dir ? dir + '/' + n : n);
      }
      list.sort(byteOrder);
      for (const name of list) checks.push(dir ? dir + '/' + name : name);
    }

    const transient = [];
    for (const rel of checks) {
      const old = this.snap.get(rel);
      let st = null;
      try {
        st = await fsp.lstat(this.hostOf(rel));
      } catch (_) {
        st = null;
      }
      if (!st) {
        if (old) removed.push({ rel, s: old });
        else if (notified.has(rel) && !this.recentlyGone.has(rel)) transient.push(rel);
        continue;
      }
      const s = snapOf(st);
      if (!old || old.ino !== s.ino || old.dev !== s.dev) {
        if (old) removed.push({ rel, s: old });
        added.push({ rel, s });
        continue;
      }
      this.snap.set(rel, s);
      if (!s.isDir && (old.size !== s.size || old.mtimeMs !== s.mtimeMs)) changed.push({ rel, type: EV.WRITE });
      if (old.mode !== s.mode || old.uid !== s.uid || old.gid !== s.gid) changed.push({ rel, type: EV.CHMOD });
    }

    const now = Date.now();
    for (const [rel, t] of this.recentlyGone) if (now - t > 1000) this.recentlyGone.delete(rel);
    for (const { rel } of removed) this.recentlyGone.set(rel, now);

    const events = [];
    // Removals (including everything known below removed directories).
    const renamedFrom = new Map(); // "dev:ino" -> rel
    for (const { rel, s } of removed) {
      const below = [];
      if (s.isDir) {
        for (const k of this.snap.keys()) if (k.startsWith(rel + '/')) below.push(k);
        below.sort((a, b) => b.length - a.length);
        for (const k of below) {
          this.snap.delete(k);
          this.unwatchDir(k);
          this.recentlyGone.set(k, now);
        }
        this.unwatchDir(rel);
      }
      this.snap.delete(rel);
      renamedFrom.set(`${s.dev}:${s.ino}`, { rel, below });
    }
    const addedKeys = new Set(added.map(({ s }) => `${s.dev}:${s.ino}`));
    for (const { rel, s } of removed) {
      const info = renamedFrom.get(`${s.dev}:${s.ino}`);
      if (addedKeys.has(`${s.dev}:${s.ino}`)) {
        events.push({ rel, type: EV.RENAME });
      } else {
        for (const k of info.below) events.push({ rel: k, type: EV.REMOVE });
        events.push({ rel, type: EV.REMOVE });
      }
    }
    // Additions (new directories are scanned so their contents are reported).
    const removedKeys = new Set(removed.map(({ s }) => `${s.dev}:${s.ino}`));
    for (const { rel, s } of added) {
      this.snap.set(rel, s);
      events.push({ rel, type: EV.CREATE });
      // A new non-empty file was also written, unless it was renamed here.
      if (s.isFile && s.size > 0 && !removedKeys.has(`${s.dev}:${s.ino}`)) events.push({ rel, type: EV.WRITE });
      if (s.isDir && this.recursive) {
        const inner = [];
        await this.scanTree(rel, true, inner);
        for (const it of inner) {
          events.push({ rel: it.rel, type: EV.CREATE });
          if (it.s.isFile && it.s.size > 0) events.push({ rel: it.rel, type: EV.WRITE });
        }
      }
    }
    for (const c of changed) events.push(c);
    for (const rel of transient) events.push({ rel, type: EV.CREATE }, { rel, type: EV.REMOVE });
    if (!events.length || this.closed) return;

    const out = [];
    for (const ev of events) {
      const msg = { name: ev.rel, type: ev.type };
      if (this.includeEntry && (ev.type === EV.CREATE || ev.type === EV.WRITE || ev.type === EV.CHMOD)) {
        try {
          msg.entry = await entryInfo(this.sb, path.join(this.logical, ev.rel), this.hostOf(ev.rel));
        } catch (_) {
          // vanished meanwhile
        }
      }
      out.push(msg);
    }
    this.onEvents(out);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    for (const rel of [...this.fsWatchers.keys()]) this.unwatchDir(rel);
    this.sb.watchers.delete(this);
    if (this.onClose) this.onClose();
  }
}

/** Validate a watch request and build (but not start) a DirWatcher. */
async function makeWatcher(ctx, msg, onEvents) {
  const p = userPath(ctx, msg.path);
  const r = await inRoot(ctx, p, true);
  let st = null;
  if (r.exists) st = await fsp.stat(r.host).catch(() => null);
  if (!st) throw new RpcError('not_found', `path ${p} not found`);
  if (!st.isDirectory()) throw new RpcError('invalid_argument', `path ${p} not a directory`);
  return new DirWatcher(ctx.sb, p, r.host, msg, onEvents);
}

// ---------------------------------------------------------------------------
// Handlers. ctx = { sb, user }.

const unary = {
  async Stat(ctx, msg) {
    const p = userPath(ctx, msg.path);
    const r = await inRoot(ctx, p, false);
    let lst;
    try {
      lst = await fsp.lstat(r.host, { bigint: true });
    } catch (e) {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') {
        throw new RpcError('not_found', `file not found: lstat ${p}: no such file or directory`);
      }
      throw new RpcError('internal', `error getting file info: lstat ${p}: ${errText(e)}`);
    }
    return { entry: await entryInfo(ctx.sb, p, r.host, lst) };
  },

  async MakeDir(ctx, msg) {
    const p = userPath(ctx, msg.path);
    const r = await inRoot(ctx, p, true);
    if (r.exists) {
      const st = await fsp.stat(r.host).catch(() => null);
      if (st && st.isDirectory()) throw new RpcError('already_exists', `directory already exists: ${p}`);
      if (st) throw new RpcError('invalid_argument', `path already exists but it is not a directory: ${p}`);
    }
    try {
      await ensureDirs(ctx.sb.root, p, ctx.user.uid, ctx.user.gid);
    } catch (e) {
      if (e.code === 'ENOTDIR') throw new RpcError('invalid_argument', `error creating directory: mkdir ${p}: not a directory`);
      throw new RpcError('internal', `error creating directory: mkdir ${p}: ${errText(e)}`);
    }
    const r2 = await inRoot(ctx, p, false);
    return { entry: await entryInfo(ctx.sb, p, r2.host) };
  },

  async Move(ctx, msg) {
    const src = userPath(ctx, msg.source);
    const dst = userPath(ctx, msg.destination);
    const rs = await inRoot(ctx, src, false);
    const srcSt = rs.exists ? await fsp.lstat(rs.host).catch(() => null) : null;
    if (!srcSt) throw new RpcError('not_found', `source file not found: rename ${src} ${dst}: no such file or directory`);
    try {
      await ensureDirs(ctx.sb.root, path.dirname(dst), ctx.user.uid, ctx.user.gid);
    } catch (e) {
      throw new RpcError('internal', `error creating destination parent: ${errText(e)}`);
    }
    const rd = await inRoot(ctx, dst, false);
    try {
      await fsp.rename(rs.host, rd.host);
    } catch (e) {
      if (e.code === 'ENOENT') throw new RpcError('not_found', `source file not found: rename ${src} ${dst}: ${errText(e)}`);
      throw new RpcError('internal', `error renaming: rename ${src} ${dst}: ${errText(e)}`);
    }
    return { entry: await entryInfo(ctx.sb, dst, rd.host) };
  },

  async ListDir(ctx, msg) {
    const p = userPath(ctx, msg.path);
    let depth = parseInt(msg.depth, 10) || 0;
    if (depth < 1) depth = 1;
    const r = await inRoot(ctx, p, true);
    let st = null;
    if (r.exists) st = await fsp.stat(r.host).catch(() => null);
    if (!st) throw new RpcError('not_found', `path not found: lstat ${p}: no such file or directory`);
    if (!st.isDirectory()) throw new RpcError('invalid_argument', `path is not a directory: ${p}`);
    const entries = [];
    const walk = async (hostDir, logicalDir, level) => {
      let names;
      try {
        names = await fsp.readdir(hostDir);
      } catch (e) {
        if (level === 1) throw new RpcError('internal', `error reading directory ${logicalDir}: ${errText(e)}`);
        return;
      }
      names.sort(byteOrder);
      const infos = await mapLimit(names, 64, async (name) => {
        const h = hostDir + '/' + name;
        const l = logicalDir === '/' ? '/' + name : logicalDir + '/' + name;
        try {
          const lst = await fsp.lstat(h, { bigint: true });
          return { h, l, lst, e: await entryInfo(ctx.sb, l, h, lst) };
        } catch (_) {
          return null; // vanished during the walk
        }
      });
      for (const it of infos) {
        if (!it) continue;
        entries.push(it.e);
        if (level < depth && it.lst.isDirectory()) await walk(it.h, it.l, level + 1);
      }
    };
    await walk(r.host, p, 1);
    return entries.length ? { entries } : {};
  },

  async Remove(ctx, msg) {
    const p = userPath(ctx, msg.path);
    const r = await inRoot(ctx, p, false);
    if (!r.exists) return {};
    const mps = mountsUnder(r.host);
    if (mps.length || r.host === ctx.sb.root) {
      throw new RpcError('internal', `error removing file or directory: unlinkat ${p}: device or resource busy`);
    }
    try {
      await fsp.rm(r.host, { recursive: true, force: true });
    } catch (e) {
      throw new RpcError('internal', `error removing file or directory: unlinkat ${p}: ${errText(e)}`);
    }
    return {};
  },

  async CreateWatcher(ctx, msg) {
    const queue = [];
    const w = await makeWatcher(ctx, msg, (evs) => {
      queue.push(...evs);
      if (queue.length > 100000) queue.splice(0, queue.length - 100000);
    });
    await w.start();
    const id = crypto.randomBytes(8).toString('hex');
    w.queue = queue;
    w.onClose = () => ctx.sb.pollWatchers.delete(id);
    ctx.sb.pollWatchers.set(id, w);
    return { watcherId: id };
  },

  async GetWatcherEvents(ctx, msg) {
    const w = ctx.sb.pollWatchers.get(String(msg.watcherId || ''));
    if (!w) throw new RpcError('not_found', `watcher with id ${msg.watcherId} not found`);
    await w.busy; // let an in-flight batch land first
    const events = w.queue.splice(0, w.queue.length);
    return events.length ? { events } : {};
  },

  async RemoveWatcher(ctx, msg) {
    const w = ctx.sb.pollWatchers.get(String(msg.watcherId || ''));
    if (!w) throw new RpcError('not_found', `watcher with id ${msg.watcherId} not found`);
    w.close();
    return {};
  },
};

const streaming = {
  async WatchDir(ctx, msg, req, res) {
    const stream = new ServerStream(req, res, { keepalive: () => ({ keepalive: {} }) });
    let w = null;
    try {
      if (ctx.authError) throw ctx.authError;
      w = await makeWatcher(ctx, msg, (evs) => {
        for (const ev of evs) stream.send({ filesystem: ev });
      });
      await w.start();
      if (stream.ended) {
        w.close();
        return;
      }
      w.onClose = () => stream.end(ctx.sb.killed ? new RpcError('unavailable', 'sandbox was killed') : undefined);
      stream.onClose = () => w.close();
      stream.send({ start: {} });
    } catch (e) {
      if (w) w.close();
      stream.end(e);
    }
  },
};

module.exports = { unary, streaming, DirWatcher };
