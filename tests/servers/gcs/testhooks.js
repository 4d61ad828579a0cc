/*
 * testhooks.js - request counters, fault injection and inspection endpoints
 * of the GCS test server (everything under /_test/, never counted, never
 * authenticated).
 *
 *   GET  /_test/stats     {"requests": {"<METHOD> <kind>": n, ...}, "total": n}
 *   POST /_test/reset     zero the counters; optional body
 *                         {"faults": true} also disarms pending faults,
 *                         {"data": true} also deletes all buckets/objects/sessions
 *   POST /_test/fail      {"status": 503, "count": 2, "match": "upload"}
 *   POST /_test/cutoff    {"count": 1, "match": "upload", "afterBytes": 1000, "persist": true}
 *   POST /_test/corrupt   {"count": 1}
 *   POST /_test/config    {"listPageSize": 3}   (0 or null = no cap)
 *   GET  /_test/faults    pending fault rules
 *   GET  /_test/objects?bucket=B
 *                         {"bucket": "B", "objects": [{"name", "size", "generation",
 *                          "metageneration", "contentType", "crc32c", "md5Hash"}]}
 *                         (without bucket=: all buckets, each entry has "bucket")
 *   GET  /_test/sessions  resumable sessions: id, bucket, name, received, total, done
 *
 * `match` is a substring of "<METHOD> <kind>" (e.g. "upload",
 * "PUT upload:resumable-chunk", "download"); omitted or "" matches every
 * counted request.  Rules are consumed in the order they were armed.
 */
'use strict';

const { sendJson, sendError, compareNames } = require('./util');

class TestHooks {
  constructor(store) {
    this.store = store;
    this.counts = {};
    this.total = 0;
    this.faults = []; // {type: 'fail'|'cutoff', match, remaining, status, afterBytes, persist}
    this.corruptRemaining = 0;
    this.config = { listPageSize: 0 };
  }

  /* Count a request to the emulated API. */
  count(key) {
    this.counts[key] = (this.counts[key] || 0) + 1;
    this.total += 1;
  }

  /* The first armed rule matching `key`, consumed; or null. */
  takeFault(key) {
    const i = this.faults.findIndex((f) => !f.match || key.includes(f.match));
    if (i < 0) return null;
    const f = this.faults[i];
    f.remaining -= 1;
    if (f.remaining <= 0) this.faults.splice(i, 1);
    return f;
  }

  takeCorruption() {
    if (this.corruptRemaining <= 0) return false;
    this.corruptRemaining -= 1;
    return true;
  }

  /* Serve /_test/...; `body` is the parsed JSON request body (or {}). */
  handle(req, res, pathname, query, body) {
    const route = `${req.method} ${pathname}`;
    const count = (v, dflt) => {
      const n = v === undefined ? dflt : Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error('"count" must be a non-negative integer');
      return n;
    };
    try {
      switch (route) {
        case 'GET /_test/stats':
          return sendJson(res, 200, { requests: this.counts, total: this.total });
        case 'POST /_test/reset':
          this.counts = {};
          this.total = 0;
          if (body.faults) { this.faults = []; this.corruptRemaining = 0; }
          if (body.data) this.store.wipe();
          return sendJson(res, 200, { ok: true });
        case 'POST /_test/fail': {
          const status = Number(body.status === undefined ? 503 : body.status);
          if (!Number.isInteger(status) || status < 100 || status > 599) throw new Error('"status" must be an HTTP status');
          const n = count(body.count, 1);
          if (n) this.faults.push({ type: 'fail', status, remaining: n, match: String(body.match || '') });
          return sendJson(res, 200, { ok: true, pending: this.faults });
        }
        case 'POST /_test/cutoff': {
          const n = count(body.count, 1);
          const afterBytes = Number(body.afterBytes === undefined ? 0 : body.afterBytes);
          if (!Number.isInteger(afterBytes) || afterBytes < 0) throw new Error('"afterBytes" must be a non-negative integer');
          if (n) {
            this.faults.push({
              type: 'cutoff', remaining: n, match: String(body.match || ''), afterBytes, persist: body.persist !== false,
            });
          }
          return sendJson(res, 200, { ok: true, pending: this.faults });
        }
        case 'POST /_test/corrupt':
          this.corruptRemaining += count(body.count, 1);
          return sendJson(res, 200, { ok: true, corruptRemaining: this.corruptRemaining });
        case 'POST /_test/config':
          if (body.listPageSize !== undefined) {
            const n = Number(body.listPageSize || 0);
            if (!Number.isInteger(n) || n < 0) throw new Error('"listPageSize" must be a non-negative integer');
            this.config.listPageSize = n;
          }
          return sendJson(res, 200, { ok: true, config: this.config });
        case 'GET /_test/faults':
          return sendJson(res, 200, { faults: this.faults, corruptRemaining: this.corruptRemaining });
        case 'GET /_test/objects':
          return this._objects(res, query.get('bucket'));
        case 'GET /_test/sessions':
          return sendJson(res, 200, {
            sessions: [...this.store.sessions.values()].map((s) => ({
              id: s.id, bucket: s.bucket, name: s.name, received: s.received, total: s.total, done: !!s.done,
            })),
          });
        default:
          return sendError(res, 404, `Unknown test hook ${route}`, 'notFound');
      }
    } catch (e) {
      return sendError(res, 400, e.message, 'invalid');
    }
  }

  _objects(res, bucketName) {
    const describe = (o, withBucket) => {
      const d = {
        name: o.name, size: o.size, generation: String(o.generation), metageneration: String(o.metageneration),
        contentType: o.contentType, crc32c: o.crc32c,
      };
      if (o.md5Hash) d.md5Hash = o.md5Hash;
      return withBucket ? Object.assign({ bucket: o.bucket }, d) : d;
    };
    const sorted = (b) => [...b.objects.values()].sort((x, y) => compareNames(x.name, y.name));
    if (bucketName) {
      const b = this.store.getBucket(bucketName);
      if (!b) return sendError(res, 404, 'The specified bucket does not exist.', 'notFound');
      return sendJson(res, 200, { bucket: bucketName, objects: sorted(b).map((o) => describe(o, false)) });
    }
    const objects = [];
    for (const b of this.store.listBuckets()) objects.push(...sorted(b).map((o) => describe(o, true)));
    return sendJson(res, 200, { objects });
  }
}

module.exports = { TestHooks };
