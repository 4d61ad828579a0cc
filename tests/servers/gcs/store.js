/*
 * store.js - bucket/object/upload-session storage of the GCS test server.
 *
 * Everything lives in memory.  With a data directory every change is also
 * written through to disk (atomically: temporary file + rename), and the
 * directory is loaded at start-up, so a test can stop and restart the
 * server and find its buckets, objects and unfinished resumable uploads:
 *
 *   DIR/buckets/<hex(bucket)>/bucket.json        bucket record
 *   DIR/buckets/<hex(bucket)>/o/<sha256(name)>.json   object record (name, dataFile, ...)
 *   DIR/buckets/<hex(bucket)>/o/<sha256(name)>.<generation>.data   object bytes
 *
 * The bytes are written first under a per-generation file name and the
 * record is switched to them by one rename, so a crash never pairs a
 * record with the wrong bytes.
 *   DIR/uploads/<upload_id>.json / .part         resumable session + bytes so far
 *
 * Only live objects are kept (no versioning): each write gets a new,
 * strictly increasing generation (microseconds since the epoch).
 */
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { crc32c, toBase64 } = require('./crc32c');

class Store {
  constructor(dataDir) {
    this.dataDir = dataDir || null;
    this.buckets = new Map(); // name -> {record, objects: Map(name -> object)}
    this.sessions = new Map(); // upload_id -> session
    this.lastGeneration = 0;
    if (this.dataDir) this._load();
  }

  /* ---------- generations ---------- */

  nextGeneration() {
    const g = Math.max(Date.now() * 1000, this.lastGeneration + 1);
    this.lastGeneration = g;
    return g;
  }

  /* ---------- buckets ---------- */

  getBucket(name) {
    return this.buckets.get(name) || null;
  }

  listBuckets() {
    return [...this.buckets.values()];
  }

  createBucket(name, fields) {
    const now = Date.now();
    const record = Object.assign({}, fields || {}, {
      name,
      timeCreated: now,
      updated: now,
      metageneration: 1,
      generation: this.nextGeneration(),
    });
    const bucket = { record, objects: new Map() };
    this.buckets.set(name, bucket);
    this.saveBucket(bucket);
    return bucket;
  }

  deleteBucket(name) {
    this.buckets.delete(name);
    if (this.dataDir) fs.rmSync(this._bucketDir(name), { recursive: true, force: true });
  }

  /* ---------- objects ---------- */

  getObject(bucketName, name) {
    const b = this.buckets.get(bucketName);
    return (b && b.objects.get(name)) || null;
  }

  /*
   * Store `data` under `name`, replacing any live object.  `meta` holds the
   * user-settable fields (contentType, metadata, contentEncoding, ...).
   */
  putObject(bucketName, name, data, meta) {
    const b = this.buckets.get(bucketName);
    const old = b.objects.get(name);
    const now = Date.now();
    const obj = Object.assign({}, meta, {
      bucket: bucketName,
      name,
      generation: this.nextGeneration(),
      metageneration: 1,
      size: data.length,
      md5Hash: meta.omitMd5 ? undefined : crypto.createHash('md5').update(data).digest('base64'),
      crc32c: toBase64(crc32c(data)),
      timeCreated: now,
      updated: now,
      data,
    });
    delete obj.omitMd5;
    if (obj.md5Hash === undefined) delete obj.md5Hash;
    b.objects.set(name, obj);
    this._saveObject(obj, true);
    if (old) this._removeDataFile(old);
    return obj;
  }

  /* Apply a metadata change in place (metageneration + 1). */
  updateObjectMeta(obj, changes) {
    Object.assign(obj, changes);
    for (const k of Object.keys(obj)) if (obj[k] === undefined) delete obj[k];
    obj.metageneration += 1;
    obj.updated = Date.now();
    this._saveObject(obj, false);
    return obj;
  }

  deleteObject(bucketName, name) {
    const b = this.buckets.get(bucketName);
    if (!b || !b.objects.delete(name)) return false;
    this._removeObjectFiles(bucketName, name);
    return true;
  }

  /* Names of a bucket's live objects (unsorted). */
  objectNames(bucketName) {
    const b = this.buckets.get(bucketName);
    return b ? [...b.objects.keys()] : [];
  }

  /* ---------- resumable upload sessions ---------- */

  createSession(fields) {
    const id = crypto.randomBytes(24).toString('base64url');
    const s = Object.assign({ id, created: Date.now(), received: 0, chunks: [], total: null, done: null }, fields);
    this.sessions.set(id, s);
    this._saveSession(s);
    return s;
  }

  getSession(id) {
    return this.sessions.get(id) || null;
  }

  /* Append newly persisted bytes to a session. */
  appendToSession(s, buf) {
    if (!buf.length) return;
    s.chunks.push(buf);
    s.received += buf.length;
    if (this.dataDir) fs.appendFileSync(this._sessionPath(s.id, '.part'), buf);
    this._saveSession(s);
  }

  sessionData(s) {
    if (s.chunks.length !== 1) s.chunks = [Buffer.concat(s.chunks, s.received)];
    return s.chunks[0];
  }

  /* Record the session's outcome: {object: resourceJSON} or {error: ...}. */
  finishSession(s, outcome) {
    s.done = outcome;
    s.chunks = [];
    if (this.dataDir) fs.rmSync(this._sessionPath(s.id, '.part'), { force: true });
    this._saveSession(s);
  }

  deleteSession(s) {
    this.sessions.delete(s.id);
    if (this.dataDir) {
      fs.rmSync(this._sessionPath(s.id, '.json'), { force: true });
      fs.rmSync(this._sessionPath(s.id, '.part'), { force: true });
    }
  }

  /* Drop everything (test hook `reset` with {"data": true}). */
  wipe() {
    for (const name of [...this.buckets.keys()]) this.deleteBucket(name);
    for (const s of [...this.sessions.values()]) this.deleteSession(s);
  }

  /* ---------- persistence ---------- */

  _bucketDir(name) {
    return path.join(this.dataDir, 'buckets', Buffer.from(name, 'utf8').toString('hex'));
  }

  _objectBase(bucketName, name) {
    const h = crypto.createHash('sha256').update(name, 'utf8').digest('hex');
    return path.join(this._bucketDir(bucketName), 'o', h);
  }

  _sessionPath(id, ext) {
    return path.join(this.dataDir, 'uploads', id + ext);
  }

  _writeAtomic(file, data) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp.${process.pid}`;
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  }

  saveBucket(bucket) {
    if (!this.dataDir) return;
    this._writeAtomic(path.join(this._bucketDir(bucket.record.name), 'bucket.json'), JSON.stringify(bucket.record));
  }

  _dataFile(obj) {
    return `${this._objectBase(obj.bucket, obj.name)}.${obj.generation}.data`;
  }

  _saveObject(obj, withData) {
    if (!this.dataDir) return;
    if (withData) this._writeAtomic(this._dataFile(obj), obj.data);
    const rec = Object.assign({}, obj, { dataFile: path.basename(this._dataFile(obj)) });
    delete rec.data;
    this._writeAtomic(this._objectBase(obj.bucket, obj.name) + '.json', JSON.stringify(rec));
  }

  _removeDataFile(obj) {
    if (this.dataDir) fs.rmSync(this._dataFile(obj), { force: true });
  }

  _removeObjectFiles(bucketName, name) {
    if (!this.dataDir) return;
    const base = this._objectBase(bucketName, name);
    const prefix = path.basename(base) + '.';
    fs.rmSync(base + '.json', { force: true });
    if (!fs.existsSync(path.dirname(base))) return;
    for (const f of fs.readdirSync(path.dirname(base))) {
      if (f.startsWith(prefix) && f.endsWith('.data')) fs.rmSync(path.join(path.dirname(base), f), { force: true });
    }
  }

  _saveSession(s) {
    if (!this.dataDir) return;
    const rec = Object.assign({}, s);
    delete rec.chunks;
    this._writeAtomic(this._sessionPath(s.id, '.json'), JSON.stringify(rec));
  }

  _load() {
    const bdir = path.join(this.dataDir, 'buckets');
    fs.mkdirSync(bdir, { recursive: true });
    for (const ent of fs.readdirSync(bdir)) {
      let record;
      try {
        record = JSON.parse(fs.readFileSync(path.join(bdir, ent, 'bucket.json'), 'utf8'));
      } catch (e) {
        continue; // not a complete bucket directory
      }
      const bucket = { record, objects: new Map() };
      this.buckets.set(record.name, bucket);
      this.lastGeneration = Math.max(this.lastGeneration, record.generation || 0);
      const odir = path.join(bdir, ent, 'o');
      if (!fs.existsSync(odir)) continue;
      for (const f of fs.readdirSync(odir)) {
        if (!f.endsWith('.json')) continue;
        try {
          const obj = JSON.parse(fs.readFileSync(path.join(odir, f), 'utf8'));
          obj.data = fs.readFileSync(path.join(odir, obj.dataFile));
          delete obj.dataFile;
          if (obj.data.length !== obj.size) continue; // damaged: ignore
          bucket.objects.set(obj.name, obj);
          this.lastGeneration = Math.max(this.lastGeneration, obj.generation);
        } catch (e) {
          /* incomplete object files: skip */
        }
      }
    }
    const udir = path.join(this.dataDir, 'uploads');
    fs.mkdirSync(udir, { recursive: true });
    for (const f of fs.readdirSync(udir)) {
      if (!f.endsWith('.json')) continue;
      try {
        const s = JSON.parse(fs.readFileSync(path.join(udir, f), 'utf8'));
        s.chunks = [];
        if (!s.done) {
          let part = Buffer.alloc(0);
          try { part = fs.readFileSync(this._sessionPath(s.id, '.part')); } catch (e) { /* no bytes yet */ }
          if (part.length > s.received) {
            // bytes appended but not yet recorded when the server stopped
            part = part.subarray(0, s.received);
            fs.truncateSync(this._sessionPath(s.id, '.part'), s.received);
          }
          s.received = part.length;
          if (part.length) s.chunks.push(part);
        }
        this.sessions.set(s.id, s);
      } catch (e) {
        /* skip unreadable session */
      }
    }
  }
}

module.exports = { Store };
