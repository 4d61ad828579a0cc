/*
 * util.js - shared helpers of the GCS test server: the GCS error JSON shape,
 * JSON responses, the `fields` partial-response selector, `matchGlob`
 * patterns, byte-order name comparison and RFC 3339 timestamps.
 */
'use strict';

/* Default `reason` for each HTTP status, as GCS reports them. */
const REASONS = {
  400: 'invalid',
  401: 'required',
  403: 'forbidden',
  404: 'notFound',
  405: 'methodNotAllowed',
  408: 'requestTimeout',
  409: 'conflict',
  411: 'lengthRequired',
  412: 'conditionNotMet',
  416: 'requestedRangeNotSatisfiable',
  429: 'rateLimitExceeded',
  500: 'backendError',
  502: 'badGateway',
  503: 'backendError',
  504: 'gatewayTimeout',
};

/* An error that the dispatcher turns into the GCS error JSON. */
class ApiError extends Error {
  constructor(code, message, reason, extra) {
    super(message);
    this.code = code;
    this.reason = reason || REASONS[code] || 'unknown';
    this.extra = extra || {}; // extra fields for errors[0], e.g. location
    this.headers = {};
  }
}

function errorBody(code, message, reason, extra) {
  return {
    error: {
      code,
      message,
      errors: [Object.assign({ domain: 'global', reason: reason || REASONS[code] || 'unknown', message }, extra || {})],
    },
  };
}

function sendJson(res, status, obj, headers) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, Object.assign({
    'Content-Type': 'application/json; charset=UTF-8',
    'Content-Length': body.length,
    'Cache-Control': 'no-cache, no-store, max-age=0, must-revalidate',
  }, headers || {}));
  res.end(body);
}

function sendError(res, code, message, reason, extra, headers) {
  sendJson(res, code, errorBody(code, message, reason, extra), headers);
}

/*
 * `fields` selector (Google partial response syntax): comma-separated
 * list; `a/b` selects a sub-field; `a(b,c)` selects sub-fields of `a`
 * (applied to every element when `a` is an array).  Returns a tree
 * {name: subtree|null}; null means "whole value".
 */
function parseFields(spec) {
  let i = 0;
  function parseList(closing) {
    const tree = {};
    for (;;) {
      let name = '';
      while (i < spec.length && !',()/'.includes(spec[i])) name += spec[i++];
      name = name.trim();
      if (!name) throw new ApiError(400, `Invalid field selection ${spec}`, 'invalidParameter');
      let sub = null;
      if (spec[i] === '/') {
        i++;
        sub = parseList('/');
      } else if (spec[i] === '(') {
        i++;
        sub = parseList(')');
        if (spec[i] !== ')') throw new ApiError(400, `Invalid field selection ${spec}`, 'invalidParameter');
        i++;
      }
      tree[name] = mergeTree(tree[name], sub);
      if (closing === '/') return tree; // a/b selects exactly one path
      if (spec[i] === ',') { i++; continue; }
      return tree;
    }
  }
  const tree = parseList(null);
  if (i !== spec.length) throw new ApiError(400, `Invalid field selection ${spec}`, 'invalidParameter');
  return tree;
}

function mergeTree(a, b) {
  if (a === undefined) return b;
  if (a === null || b === null) return null;
  const out = Object.assign({}, a);
  for (const k of Object.keys(b)) out[k] = mergeTree(out[k], b[k]);
  return out;
}

function applyFields(value, tree) {
  if (tree === null || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => applyFields(v, tree));
  const out = {};
  for (const k of Object.keys(tree)) {
    if (k === '*') return value;
    if (Object.prototype.hasOwnProperty.call(value, k)) out[k] = applyFields(value[k], tree[k]);
  }
  return out;
}

/*
 * matchGlob (GCS list): `*` = any run without `/`, `**` = any run, `?` =
 * one character except `/`, `[abc]`/`[!a-z]` classes, `{a,b}` alternatives.
 */
function globToRegExp(glob) {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i];
    if (ch === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') { i++; re += '(?:.*/)?'; } else re += '.*';
      } else re += '[^/]*';
    } else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) { re += '\\['; continue; }
      let cls = glob.slice(i + 1, end);
      if (cls[0] === '!') cls = '^' + cls.slice(1);
      re += '[' + cls.replace(/\\/g, '\\\\') + ']';
      i = end;
    } else if (ch === '{') {
      const end = glob.indexOf('}', i);
      if (end < 0) { re += '\\{'; continue; }
      const alts = glob.slice(i + 1, end).split(',').map((a) => a.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
      re += '(?:' + alts.join('|') + ')';
      i = end;
    } else re += ch.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp('^' + re + '$', 's');
}

/* GCS orders names by their UTF-8 bytes (JS `<` uses UTF-16 units). */
function compareNames(a, b) {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/* RFC 3339 with milliseconds, as GCS writes timeCreated/updated. */
function rfc3339(ms) {
  return new Date(ms).toISOString();
}

/* Percent-encode a name as one path segment (everything but unreserved). */
function encodeSegment(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

module.exports = {
  ApiError, errorBody, sendJson, sendError, parseFields, applyFields,
  globToRegExp, compareNames, rfc3339, encodeSegment, REASONS,
};
