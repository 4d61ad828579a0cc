// Filesystem helpers for the E2B test server.
//
// - resolveUserPath(): envd's path rules (spec section 7): empty -> default
//   workdir, `~` -> the user's home, relative -> joined to the home, cleaned.
// - resolveInRoot(): maps an absolute sandbox path onto the host path inside
//   the sandbox root, resolving symlinks the way a chrooted process would see
//   them (absolute link targets restart at the sandbox root, `..` never leaves
//   it). Every intermediate component of the returned host path is a real
//   directory inside the root, so the server's own file operations cannot
//   escape the sandbox.
// - entryInfo(): builds the proto3-JSON EntryInfo message envd returns.
// - ensureDirs(): mkdir -p inside the sandbox with each new dir chowned.
'use strict';

const fsp = require('fs/promises');
const path = require('path').posix;
const { RpcError } = require('./connect');

const MAX_SYMLINKS = 40;

/** Error used for path problems; `kind` picks the transport error later. */
class PathError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind; // 'invalid' | 'loop'
  }
}

/**
 * Apply envd's user path rules. Returns an absolute, cleaned sandbox path.
 * Throws PathError('invalid') for `~otheruser`.
 */
function resolveUserPath(p, user, defaultWorkdir) {
  p = p == null ? '' : String(p);
  if (p === '' && defaultWorkdir) p = defaultWorkdir;
  if (p.startsWith('~')) {
    if (p === '~' || p.startsWith('~/')) {
      p = user.home + p.slice(1);
    } else {
      throw new PathError('invalid', `path '${p}' cannot be expanded: only '~' for the current user's home is supported`);
    }
  }
  if (!p.startsWith('/')) p = path.join(user.home, p);
  let clean = path.normalize(p);
  if (clean.length > 1 && clean.endsWith('/')) clean = clean.slice(0, -1);
  return clean;
}

/**
 * Resolve an absolute sandbox path inside `root` (host directory).
 * followFinal: whether a symlink in the last component is followed.
 * Returns { host, real, exists } where `real` is the symlink-free sandbox
 * path. Components that do not exist are appended lexically.
 */
async function resolveInRoot(root, sandboxPath, followFinal = true) {
  let parts = sandboxPath.split('/').filter((x) => x && x !== '.');
  const out = [];
  let links = 0;
  let missing = false;
  while (parts.length) {
    const name = parts.shift();
    if (name === '.') continue;
    if (name === '..') {
      out.pop();
      continue;
    }
    if (missing) {
      out.push(name);
      continue;
    }
    const candidate = root + '/' + out.concat(name).join('/');
    let st;
    try {
      st = await fsp.lstat(candidate);
    } catch (e) {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') {
        missing = true;
        out.push(name);
        continue;
      }
      throw e;
    }
    if (st.isSymbolicLink() && (parts.length > 0 || followFinal)) {
      if (++links > MAX_SYMLINKS) {
        throw new PathError('loop', `too many levels of symbolic links: ${sandboxPath}`);
      }
      const target = await fsp.readlink(candidate);
      if (target.startsWith('/')) out.length = 0;
      parts = target.split('/').filter((x) => x && x !== '.').concat(parts);
      continue;
    }
    if (parts.length > 0 && !st.isDirectory()) {
      // A file used as a directory: later operations fail with ENOTDIR.
      missing = true;
    }
    out.push(name);
  }
  const rel = out.join('/');
  return { host: rel ? root + '/' + rel : root, real: '/' + rel, exists: !missing };
}

/** Format a bigint nanosecond timestamp like Go's protojson Timestamp. */
function formatTimestampNs(ns) {
  const secs = ns / 1000000000n;
  const nanos = Number(ns % 1000000000n);
  const iso = new Date(Number(secs) * 1000).toISOString().slice(0, 19);
  let frac = '';
  if (nanos !== 0) {
    const s9 = String(nanos).padStart(9, '0');
    if (nanos % 1000000 === 0) frac = '.' + s9.slice(0, 3);
    else if (nanos % 1000 === 0) frac = '.' + s9.slice(0, 6);
    else frac = '.' + s9;
  }
  return iso + frac + 'Z';
}

const S_IFMT = 0o170000;
const S_IFSOCK = 0o140000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFBLK = 0o060000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;
const S_IFIFO = 0o010000;

/** Go's os.FileMode.String() for a Unix st_mode. */
function goModeString(mode) {
  mode = Number(mode);
  const fmt = mode & S_IFMT;
  // Letters in Go's order "dalTLDpSugct?": only some apply to Unix modes.
  let prefix = '';
  if (fmt === S_IFDIR) prefix += 'd';
  if (fmt === S_IFLNK) prefix += 'L';
  if (fmt === S_IFBLK || fmt === S_IFCHR) prefix += 'D';
  if (fmt === S_IFIFO) prefix += 'p';
  if (fmt === S_IFSOCK) prefix += 'S';
  if (mode & 0o4000) prefix += 'u';
  if (mode & 0o2000) prefix += 'g';
  if (fmt === S_IFCHR) prefix += 'c';
  if (mode & 0o1000) prefix += 't';
  if (prefix === '') prefix = '-';
  const rwx = 'rwxrwxrwx';
  let perm = '';
  for (let i = 0; i < 9; i++) perm += mode & (1 << (8 - i)) ? rwx[i] : '-';
  return prefix + perm;
}

function fileTypeOf(mode) {
  const fmt = Number(mode) & S_IFMT;
  if (fmt === S_IFDIR) return 'FILE_TYPE_DIRECTORY';
  if (fmt === S_IFREG) return 'FILE_TYPE_FILE';
  if (fmt === S_IFLNK) return 'FILE_TYPE_SYMLINK';
  // envd reports other kinds (devices, fifos, sockets) as regular "files".
  return 'FILE_TYPE_FILE';
}

/**
 * Build EntryInfo for `sandboxPath` (logical, absolute) whose host location
 * is `hostPath` (its parent already resolved). `sb` supplies root, user and
 * group names and per-inode metadata. `lst` may be passed when known.
 */
async function entryInfo(sb, sandboxPath, hostPath, lst) {
  if (!lst) lst = await fsp.lstat(hostPath, { bigint: true });
  const e = {
    name: sandboxPath === '/' ? '/' : path.basename(sandboxPath),
    path: sandboxPath,
  };
  let type = fileTypeOf(lst.mode);
  let perm = Number(lst.mode) & 0o777;
  let symlinkTarget;
  if ((Number(lst.mode) & S_IFMT) === S_IFLNK) {
    symlinkTarget = sandboxPath;
    type = undefined;
    try {
      const r = await resolveInRoot(sb.root, sandboxPath, true);
      if (r.exists) {
        const st = await fsp.stat(r.host, { bigint: true });
        type = fileTypeOf(st.mode);
        perm = Number(st.mode) & 0o777;
        symlinkTarget = r.real;
      }
    } catch (_) {
      // Broken or looping link: type stays unspecified.
    }
  }
  if (type && type !== 'FILE_TYPE_UNSPECIFIED') e.type = type;
  if (lst.size !== 0n) e.size = lst.size.toString();
  if (perm !== 0) e.mode = perm;
  e.permissions = goModeString(lst.mode);
  e.owner = sb.userName(Number(lst.uid));
  e.group = sb.groupName(Number(lst.gid));
  e.modifiedTime = formatTimestampNs(lst.mtimeNs);
  if (symlinkTarget !== undefined) e.symlinkTarget = symlinkTarget;
  const md = sb.metadataFor(lst);
  if (md && Object.keys(md).length) e.metadata = md;
  return e;
}

/**
 * mkdir -p for a sandbox directory path; every directory created gets mode
 * 0755 and is chowned to uid:gid. Returns { host, created }.
 * Throws an Error with code ENOTDIR/EEXIST when a component is not a dir.
 */
async function ensureDirs(root, sandboxDir, uid, gid) {
  const r = await resolveInRoot(root, sandboxDir, true);
  const rel = r.host === root ? [] : r.host.slice(root.length + 1).split('/');
  let cur = root;
  let created = false;
  for (const comp of rel) {
    cur = cur + '/' + comp;
    let st = null;
    try {
      st = await fsp.lstat(cur);
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
    if (st) {
      if (!st.isDirectory()) {
        const err = new Error(`not a directory: ${cur.slice(root.length) || '/'}`);
        err.code = 'ENOTDIR';
        throw err;
      }
      continue;
    }
    try {
      await fsp.mkdir(cur, 0o755);
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      continue;
    }
    await fsp.chmod(cur, 0o755);
    await fsp.chown(cur, uid, gid);
    created = true;
  }
  return { host: r.host, real: r.real, created };
}

/** Convert a PathError into an RpcError (RPC services). */
function pathErrorToRpc(err) {
  if (err instanceof PathError) return new RpcError('invalid_argument', err.message);
  return err;
}

module.exports = {
  PathError,
  resolveUserPath,
  resolveInRoot,
  entryInfo,
  ensureDirs,
  formatTimestampNs,
  goModeString,
  fileTypeOf,
  pathErrorToRpc,
  S_IFMT,
  S_IFDIR,
  S_IFLNK,
  S_IFREG,
};
