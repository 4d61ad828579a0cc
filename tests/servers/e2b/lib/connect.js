// Connect-RPC protocol helpers for the E2B test server (envd side).
//
// Implements just what envd's services need over HTTP/1.1:
//   - unary JSON calls (request body = JSON message, response = JSON message or
//     a Connect error JSON with the HTTP status mapped from the error code);
//   - server-streaming calls with the 5-byte envelope framing
//     ([flags:1][length:4 big-endian][JSON payload]) and the mandatory
//     end-of-stream envelope (flag 0x02) that carries the error, if any;
//   - keepalive pings after `Keepalive-Ping-Interval` seconds of silence and a
//     deadline taken from `Connect-Timeout-Ms`;
//   - incremental decoding of request envelopes (client streaming).
'use strict';

/** Connect error code -> HTTP status used for unary errors. */
const CODE_TO_HTTP = {
  canceled: 499,
  unknown: 500,
  invalid_argument: 400,
  deadline_exceeded: 504,
  not_found: 404,
  already_exists: 409,
  permission_denied: 403,
  resource_exhausted: 429,
  failed_precondition: 400,
  aborted: 409,
  out_of_range: 400,
  unimplemented: 501,
  internal: 500,
  unavailable: 503,
  data_loss: 500,
  unauthenticated: 401,
};

/** An error that is reported to the client as a Connect error. */
class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code in CODE_TO_HTTP ? code : 'unknown';
  }
  toJSON() {
    return { code: this.code, message: this.message };
  }
}

/** Wrap anything thrown by a handler into an RpcError. */
function toRpcError(err) {
  if (err instanceof RpcError) return err;
  return new RpcError('internal', err && err.message ? err.message : String(err));
}

const FLAG_COMPRESSED = 0x01;
const FLAG_END_STREAM = 0x02;

/** Encode one envelope. */
function envelope(flags, obj) {
  const payload = Buffer.from(JSON.stringify(obj), 'utf8');
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

/**
 * Incremental envelope decoder: push() raw bytes, get back complete
 * envelopes as {flags, data(Buffer)}.
 */
class EnvelopeDecoder {
  constructor() {
    this.buf = Buffer.alloc(0);
  }
  push(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out = [];
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (this.buf.length < 5 + len) break;
      out.push({ flags: this.buf[0], data: this.buf.subarray(5, 5 + len) });
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }
  get pending() {
    return this.buf.length;
  }
}

/** Parse a JSON message body the way connect-go's JSON codec does. */
function parseMessage(buf) {
  if (!buf || buf.length === 0) {
    throw new RpcError('invalid_argument', 'unmarshal message: zero-length payload is not a valid JSON object');
  }
  let msg;
  try {
    msg = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new RpcError('invalid_argument', `unmarshal message: ${e.message}`);
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    throw new RpcError('invalid_argument', 'unmarshal message: expected a JSON object');
  }
  return msg;
}

/** Send a unary success response. */
function sendUnary(res, obj) {
  const body = Buffer.from(JSON.stringify(obj), 'utf8');
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
  res.end(body);
}

/** Send a unary error response (Connect JSON error body). */
function sendUnaryError(res, err) {
  const e = toRpcError(err);
  const body = Buffer.from(JSON.stringify(e.toJSON()), 'utf8');
  res.writeHead(CODE_TO_HTTP[e.code] || 500, {
    'Content-Type': 'application/json',
    'Content-Length': body.length,
  });
  res.end(body);
}

/**
 * Server-stream writer. Writes 200 + `application/connect+json` headers on
 * construction, then envelopes. Handles keepalive pings and the deadline.
 *
 *   const s = new ServerStream(req, res, { keepalive: () => ({keepalive:{}}) });
 *   s.send(msg); s.end(); / s.end(rpcError);
 *   s.deadlineAt                // epoch ms of the Connect-Timeout-Ms deadline (0 = none)
 *   s.onClose = () => {...}     // called once when the client goes away or the stream ends
 */
class ServerStream {
  constructor(req, res, opts = {}) {
    this.res = res;
    this.ended = false;
    this.keepaliveMsg = opts.keepalive || null;
    this.onClose = null;
    this.closeFired = false;

    res.writeHead(200, { 'Content-Type': 'application/connect+json' });
    if (typeof res.flushHeaders === 'function') res.flushHeaders();

    const ka = parseFloat(req.headers['keepalive-ping-interval']);
    this.keepaliveMs = (Number.isFinite(ka) && ka > 0 ? ka : 90) * 1000;
    this.kaTimer = null;
    this.armKeepalive();

    this.deadlineTimer = null;
    const timeoutMs = parseInt(req.headers['connect-timeout-ms'], 10);
    this.timeoutMs = Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 0;
    this.deadlineAt = this.timeoutMs ? Date.now() + this.timeoutMs : 0;
    if (this.timeoutMs) {
      this.deadlineTimer = setTimeout(() => {
        this.deadlineTimer = null;
        if (this.ended) return;
        this.end(new RpcError('deadline_exceeded', 'context deadline exceeded'));
      }, this.timeoutMs);
    }

    res.on('close', () => this.fireClose());
  }

  armKeepalive() {
    if (!this.keepaliveMsg) return;
    if (this.kaTimer) clearTimeout(this.kaTimer);
    this.kaTimer = setTimeout(() => {
      this.kaTimer = null;
      if (this.ended) return;
      this.send(this.keepaliveMsg());
    }, this.keepaliveMs);
  }

  /** Write one message envelope. Returns false if the stream is already over. */
  send(obj) {
    if (this.ended || this.res.destroyed) return false;
    this.res.write(envelope(0, obj));
    this.armKeepalive();
    return true;
  }

  /** Write the end-of-stream envelope (with an error if given) and finish. */
  end(err) {
    if (this.ended) return;
    this.ended = true;
    this.clearTimers();
    if (!this.res.destroyed) {
      const body = err ? { error: toRpcError(err).toJSON() } : {};
      this.res.end(envelope(FLAG_END_STREAM, body));
    }
    this.fireClose();
  }

  clearTimers() {
    if (this.kaTimer) clearTimeout(this.kaTimer);
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.kaTimer = this.deadlineTimer = null;
  }

  fireClose() {
    if (this.closeFired) return;
    this.closeFired = true;
    this.clearTimers();
    if (!this.ended) this.ended = true; // client went away: nothing more to write
    if (this.onClose) this.onClose();
  }
}

/** Read the whole request body into a Buffer. */
function readBody(req, limit = 64 * 1024 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new RpcError('resource_exhausted', 'request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Media type of a request without parameters, lower-cased. */
function mediaType(req) {
  return String(req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
}

module.exports = {
  CODE_TO_HTTP,
  RpcError,
  toRpcError,
  envelope,
  EnvelopeDecoder,
  parseMessage,
  sendUnary,
  sendUnaryError,
  ServerStream,
  readBody,
  mediaType,
  FLAG_COMPRESSED,
  FLAG_END_STREAM,
};
