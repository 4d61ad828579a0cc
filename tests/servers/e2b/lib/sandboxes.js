// Sandbox lifecycle for the E2B test server.
//
// Each sandbox gets a private root directory under the state dir:
//   <state>/<sandboxID>/root
//     usr                 read-only bind mount of the host's /usr
//     bin, sbin, lib...   symlinks (merged-/usr hosts) or read-only binds
//     etc                 private: passwd/group with `root` and `user` (1000),
//                         a minimal profile, and a few copied host files
//                         (ld.so.cache, alternatives, terminfo, certs, ...)
//     dev                 null/zero/full/random/urandom/tty/ptmx bind-mounted
//                         from the host, plus the host's /dev/pts
//     proc                a proc mount
//     tmp, var/tmp        1777; home/user (1000:1000), root (0700)
// Processes run chrooted into it (see process.js). The sandbox also keeps
// its user table (parsed from its own /etc/passwd and /etc/group), envd
// defaults (user, workdir, env vars, access token), its timeout timer, and
// the processes and watchers that must be stopped on kill.
'use strict';

const fs = require('fs');
const fsp = require('fs/promises');
const path = require('path');
const crypto = require('crypto');
const { execFile } = require('child_process');

const ENVD_VERSION = '0.6.13';
const CLIENT_ID = '6532622b';
const MAX_TIMEOUT_S = 24 * 3600;

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 * 1024 * 1024, ...opts }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr, err });
    });
  });
}

/** Random sandbox id: `i` + 20 chars of [a-z0-9]. */
function newSandboxId() {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = crypto.randomBytes(20);
  let id = 'i';
  for (const b of bytes) id += alphabet[b % alphabet.length];
  return id;
}

/** Mount points (from /proc/self/mountinfo) at or below `dir`, deepest first. */
function mountsUnder(dir) {
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch (_) {
    return [];
  }
  const unescape = (s) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  const out = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = unescape(f[4]);
    if (mp === dir || mp.startsWith(dir + '/')) out.push(mp);
  }
  // Deepest first; duplicates (stacked mounts) are kept so each gets unmounted.
  return out.sort((a, b) => b.length - a.length);
}

/** SIGKILL every process whose root directory is `root` (chrooted there). */
function killChrooted(root) {
  let n = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let r;
    try {
      r = fs.readlinkSync(`/proc/${name}/root`);
    } catch (_) {
      continue;
    }
    if (r === root || r.startsWith(root + '/')) {
      try {
        process.kill(parseInt(name, 10), 'SIGKILL');
        n++;
      } catch (_) {
        // gone
      }
    }
  }
  return n;
}

/** Unmount everything at or below `dir`. Returns the list still mounted. */
async function unmountAll(dir) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const mps = mountsUnder(dir);
    if (!mps.length) return [];
    for (const mp of mps) {
      const r = await run('umount', [mp]);
      if (r.code !== 0) await run('umount', ['-l', mp]);
    }
  }
  return mountsUnder(dir);
}

// Shell script that builds the sandbox root. $1 = root directory.
const SETUP_SCRIPT = `
set -e
R="$1"
mkdir -p "$R"
cd "$R"
mkdir usr
mount --bind -o ro /usr usr
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then
    ln -s "$(readlink "/$d")" "$d"
  elif [ -d "/$d" ]; then
    mkdir "$d"
    mount --bind -o ro "/$d" "$d"
  fi
done
mkdir -p etc/ssl dev/pts dev/shm proc sys tmp var/tmp var/log var/cache home/user root opt srv mnt media run
chmod 1777 tmp var/tmp dev/shm
chmod 0700 root
chmod 0755 home/user home
chown 1000:1000 home/user
for f in ld.so.cache ld.so.conf ld.so.conf.d nsswitch.conf hosts resolv.conf host.conf gai.conf \\
         localtime timezone debian_version os-release alternatives inputrc shells services \\
         protocols networks mime.types terminfo skel magic magic.mime login.defs \\
         ca-certificates.conf environment python3 python3.11 python3.12 locale.alias; do
  if [ -e "/etc/$f" ] || [ -L "/etc/$f" ]; then cp -a "/etc/$f" etc/ 2>/dev/null || true; fi
done
if [ -d /etc/ssl/certs ]; then cp -a /etc/ssl/certs etc/ssl/ 2>/dev/null || true; fi
for n in null zero full random urandom tty ptmx; do
  if [ -e "/dev/$n" ]; then
    : > "dev/$n"
    mount --bind "/dev/$n" "dev/$n"
  fi
done
if [ -d /dev/pts ]; then mount --bind /dev/pts dev/pts; fi
ln -s /proc/self/fd dev/fd
ln -s /proc/self/fd/0 dev/stdin
ln -s /proc/self/fd/1 dev/stdout
ln -s /proc/self/fd/2 dev/stderr
ln -s /proc/self/mounts etc/mtab
mount -t proc proc proc 2>/dev/null || true
`;

const PASSWD = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
user:x:1000:1000::/home/user:/bin/bash
`;
const GROUP = `root:x:0:
daemon:x:1:
adm:x:4:user
sudo:x:27:user
users:x:100:user
nogroup:x:65534:
user:x:1000:
`;
const PROFILE = `# /etc/profile of an E2B test-server sandbox (sh and bash login shells)
PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH
if [ "\${PS1-}" ] && [ "\${BASH-}" ] && [ "$BASH" != "/bin/sh" ] && [ -f /etc/bash.bashrc ]; then
  . /etc/bash.bashrc
fi
if [ -d /etc/profile.d ]; then
  for i in /etc/profile.d/*.sh; do
    if [ -r "$i" ]; then . "$i"; fi
  done
  unset i
fi
`;
const BASHRC = `# /etc/bash.bashrc of an E2B test-server sandbox
[ -z "$PS1" ] && return
shopt -s checkwinsize
PS1='\\u@e2b:\\w\\$ '
`;

class Sandbox {
  constructor(mgr, opts) {
    this.mgr = mgr;
    this.id = opts.id;
    this.templateID = opts.templateID;
    this.alias = opts.alias;
    this.metadata = opts.metadata || {};
    this.envVars = { ...(opts.envVars || {}) };
    this.accessToken = opts.secure === false ? null : crypto.randomBytes(24).toString('hex');
    this.allowInternetAccess = opts.allowInternetAccess !== false;
    this.autoPause = !!opts.autoPause;
    this.startedAt = new Date();
    this.endAt = new Date(Date.now() + opts.timeoutS * 1000);
    this.state = 'running';
    this.dir = path.join(mgr.stateDir, this.id);
    this.root = path.join(this.dir, 'root');
    this.defaultUser = 'user';
    this.defaultWorkdir = '/home/user';
    this.processes = new Map(); // pid -> process record (process.js)
    this.finished = new Map(); // pid -> exited record kept for Connect replay
    this.hiddenProcs = new Set(); // /_test/exec processes (not listed by List)
    this.watchers = new Set(); // objects with close()
    this.pollWatchers = new Map(); // watcherId -> watcher (CreateWatcher)
    this.inodeMetadata = new Map(); // "dev:ino" -> {k: v}
    this.timer = null;
    this.userCache = null;
    this.userCacheCheckedAt = 0;
    this.killed = false;
  }

  async setup() {
    await fsp.mkdir(this.dir, { recursive: true, mode: 0o755 });
    const r = await run('/bin/sh', ['-c', SETUP_SCRIPT, 'sh', this.root]);
    if (r.code !== 0) {
      throw new Error(`sandbox root setup failed: ${(r.stderr || '').trim()}`);
    }
    const etc = path.join(this.root, 'etc');
    await fsp.writeFile(path.join(etc, 'passwd'), PASSWD, { mode: 0o644 });
    await fsp.writeFile(path.join(etc, 'group'), GROUP, { mode: 0o644 });
    await fsp.writeFile(path.join(etc, 'hostname'), 'e2b.local\n', { mode: 0o644 });
    await fsp.writeFile(path.join(etc, 'profile'), PROFILE, { mode: 0o644 });
    await fsp.writeFile(path.join(etc, 'bash.bashrc'), BASHRC, { mode: 0o644 });
    await fsp.mkdir(path.join(etc, 'profile.d'), { recursive: true });
  }

  /** Re-read the sandbox's /etc/passwd and /etc/group when they change. */
  users() {
    const now = Date.now();
    if (this.userCache && now - this.userCacheCheckedAt < 500) return this.userCache;
    this.userCacheCheckedAt = now;
    const pw = path.join(this.root, 'etc/passwd');
    const gr = path.join(this.root, 'etc/group');
    let stamp = '';
    try {
      stamp = `${fs.statSync(pw).mtimeMs}:${fs.statSync(gr).mtimeMs}`;
    } catch (_) {
      stamp = 'missing';
    }
    if (this.userCache && this.userCache.stamp === stamp) return this.userCache;
    const byName = new Map();
    const byUid = new Map();
    const groupByGid = new Map();
    const groupsOf = new Map();
    const read = (f) => {
      try {
        return fs.readFileSync(f, 'utf8');
      } catch (_) {
        return '';
      }
    };
    for (const line of read(gr).split('\n')) {
      const f = line.split(':');
      if (f.length < 3 || !f[0]) continue;
      const gid = parseInt(f[2], 10);
      if (!groupByGid.has(gid)) groupByGid.set(gid, f[0]);
      for (const m of (f[3] || '').split(',').filter(Boolean)) {
        if (!groupsOf.has(m)) groupsOf.set(m, []);
        groupsOf.get(m).push(gid);
      }
    }
    for (const line of read(pw).split('\n')) {
      const f = line.split(':');
      if (f.length < 7 || !f[0]) continue;
      const u = {
        name: f[0],
        uid: parseInt(f[2], 10),
        gid: parseInt(f[3], 10),
        home: f[5] || '/',
        shell: f[6] || '/bin/sh',
      };
      u.groups = [u.gid, ...(groupsOf.get(u.name) || []).filter((g) => g !== u.gid)];
      if (!byName.has(u.name)) byName.set(u.name, u);
      if (!byUid.has(u.uid)) byUid.set(u.uid, u.name);
    }
    this.userCache = { stamp, byName, byUid, groupByGid };
    return this.userCache;
  }

  lookupUser(name) {
    return this.users().byName.get(name) || null;
  }
  userName(uid) {
    const n = this.users().byUid.get(uid);
    return n === undefined ? String(uid) : n;
  }
  groupName(gid) {
    const n = this.users().groupByGid.get(gid);
    return n === undefined ? String(gid) : n;
  }

  /** Per-inode user metadata (stand-in for envd's user xattrs). */
  metadataFor(st) {
    return this.inodeMetadata.get(`${st.dev}:${st.ino}`);
  }
  setMetadata(st, md) {
    const key = `${st.dev}:${st.ino}`;
    if (md && Object.keys(md).length) this.inodeMetadata.set(key, md);
    else this.inodeMetadata.delete(key);
  }

  /** Environment handed to every process, before per-request envs. */
  baseEnv(user) {
    return {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: user.home,
      USER: user.name,
      LOGNAME: user.name,
      ...this.envVars,
      E2B_SANDBOX: 'true',
      E2B_SANDBOX_ID: this.id,
      E2B_TEMPLATE_ID: this.templateID,
    };
  }

  armTimer() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.killed || this.state !== 'running') return;
    const ms = Math.max(0, this.endAt.getTime() - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      if (Date.now() + 5 < this.endAt.getTime()) return this.armTimer();
      this.mgr.expire(this);
    }, Math.min(ms, 0x7fffffff));
    if (this.timer.unref) this.timer.unref();
  }

  setTimeoutSeconds(s) {
    this.endAt = new Date(Date.now() + s * 1000);
    this.armTimer();
  }

  /** Signal every live process group of the sandbox. */
  signalAll(sig) {
    for (const p of [...this.processes.values(), ...this.hiddenProcs]) {
      try {
        p.signal(sig);
      } catch (_) {
        // already gone
      }
    }
  }

  async pause() {
    this.state = 'paused';
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.signalAll('SIGSTOP');
  }

  resume(timeoutS) {
    this.state = 'running';
    this.signalAll('SIGCONT');
    this.setTimeoutSeconds(timeoutS);
  }

  /** Kill processes, stop watchers, unmount and delete the root. */
  async destroy() {
    if (this.killed) return;
    this.killed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of [...this.watchers]) {
      try {
        w.close();
      } catch (_) {
        // ignore
      }
    }
    this.watchers.clear();
    this.pollWatchers.clear();
    this.signalAll('SIGCONT');
    this.signalAll('SIGKILL');
    const deadline = Date.now() + 3000;
    while ((this.processes.size || this.hiddenProcs.size) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    // Daemons that left their process group are found by their chroot.
    if (killChrooted(this.root)) await new Promise((r) => setTimeout(r, 100));
    for (const p of [...this.processes.values(), ...this.hiddenProcs]) {
      try {
        p.abandon();
      } catch (_) {
        // ignore
      }
    }
    const left = await unmountAll(this.dir);
    if (left.length) {
      process.stderr.write(`e2b-test-server: could not unmount ${left.join(', ')}; leaving ${this.dir}\n`);
      return;
    }
    await fsp.rm(this.dir, { recursive: true, force: true }).catch((e) => {
      process.stderr.write(`e2b-test-server: removing ${this.dir}: ${e.message}\n`);
    });
  }
}

class SandboxManager {
  constructor({ stateDir, templates, verbose }) {
    this.stateDir = stateDir;
    this.templates = new Set(['base', ...(templates || [])]);
    this.sandboxes = new Map();
    this.verbose = !!verbose;
  }

  get(id) {
    return this.sandboxes.get(id) || null;
  }

  list() {
    return [...this.sandboxes.values()];
  }

  async create(opts) {
    let id;
    do id = newSandboxId();
    while (this.sandboxes.has(id));
    const sb = new Sandbox(this, { ...opts, id });
    try {
      await sb.setup();
    } catch (e) {
      await sb.destroy();
      throw e;
    }
    this.sandboxes.set(id, sb);
    sb.armTimer();
    return sb;
  }

  async kill(id) {
    const sb = this.sandboxes.get(id);
    if (!sb) return false;
    this.sandboxes.delete(id);
    await sb.destroy();
    return true;
  }

  expire(sb) {
    if (this.verbose) process.stderr.write(`e2b-test-server: sandbox ${sb.id} timed out\n`);
    if (sb.autoPause) {
      sb.pause();
      return;
    }
    this.kill(sb.id).catch(() => {});
  }

  async shutdown() {
    await Promise.all([...this.sandboxes.keys()].map((id) => this.kill(id)));
  }
}

module.exports = {
  Sandbox,
  SandboxManager,
  ENVD_VERSION,
  CLIENT_ID,
  MAX_TIMEOUT_S,
  mountsUnder,
  unmountAll,
  run,
};
