// E2B control-plane REST API for the test server (what api.e2b.app serves).
//
// Routes (all need X-API-Key; errors are {"code":<http>,"message":"..."}):
//   POST   /sandboxes, /v2/sandboxes           create  -> 201 Sandbox
//   GET    /sandboxes, /v2/sandboxes           list    -> 200 [ListedSandbox] (+ X-Next-Token)
//   GET    /sandboxes/{id}                     detail  -> 200 SandboxDetail
//   DELETE /sandboxes/{id}                     kill    -> 204
//   POST   /sandboxes/{id}/timeout             {timeout} -> 204
//   POST   /sandboxes/{id}/refreshes           {duration} -> 204
//   POST   /sandboxes/{id}/connect, /v2/...    {timeout?} -> 200 (running) / 201 (resumed)
//   POST   /sandboxes/{id}/pause               -> 204 (409 if already paused)
//   POST   /sandboxes/{id}/resume              -> 201
//   GET    /sandboxes/{id}/metrics             -> 200 []
'use strict';

const { ENVD_VERSION, CLIENT_ID, MAX_TIMEOUT_S } = require('./sandboxes');

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const INVALID_KEY = 'Invalid API key, please visit https://e2b.dev/docs/api-key for more information.';

function sendJson(res, status, obj, headers = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': body.length, ...headers });
  res.end(body);
}

function sendError(res, status, message) {
  sendJson(res, status, { code: status, message });
}

/** Route table: [method, regexp, stats key, handler name]. */
const ROUTES = [
  ['POST', /^\/sandboxes$/, 'POST /sandboxes', 'create'],
  ['POST', /^\/v2\/sandboxes$/, 'POST /v2/sandboxes', 'createV2'],
  ['GET', /^\/sandboxes$/, 'GET /sandboxes', 'list'],
  ['GET', /^\/v2\/sandboxes$/, 'GET /v2/sandboxes', 'listV2'],
  ['GET', /^\/sandboxes\/([^/]+)$/, 'GET /sandboxes/{id}', 'get'],
  ['DELETE', /^\/sandboxes\/([^/]+)$/, 'DELETE /sandboxes/{id}', 'kill'],
  ['POST', /^\/sandboxes\/([^/]+)\/timeout$/, 'POST /sandboxes/{id}/timeout', 'timeout'],
  ['POST', /^\/sandboxes\/([^/]+)\/refreshes$/, 'POST /sandboxes/{id}/refreshes', 'refresh'],
  ['POST', /^\/sandboxes\/([^/]+)\/connect$/, 'POST /sandboxes/{id}/connect', 'connect'],
  ['POST', /^\/v2\/sandboxes\/([^/]+)\/connect$/, 'POST /v2/sandboxes/{id}/connect', 'connectV2'],
  ['POST', /^\/sandboxes\/([^/]+)\/pause$/, 'POST /sandboxes/{id}/pause', 'pause'],
  ['POST', /^\/sandboxes\/([^/]+)\/resume$/, 'POST /sandboxes/{id}/resume', 'resume'],
  ['GET', /^\/sandboxes\/([^/]+)\/metrics$/, 'GET /sandboxes/{id}/metrics', 'metrics'],
];

/** Find the route for a request: {key, name, id} or null. */
function matchRoute(method, pathname) {
  for (const [m, re, key, name] of ROUTES) {
    if (m !== method) continue;
    const mm = re.exec(pathname);
    if (mm) return { key, name, id: mm[1] ? decodeURIComponent(mm[1]) : undefined };
  }
  return null;
}

function isControlPlanePath(pathname) {
  return /^\/(v2\/)?sandboxes(\/|$)/.test(pathname);
}

class ControlPlane {
  constructor(mgr, { apiKey }) {
    this.mgr = mgr;
    this.apiKey = apiKey || null;
  }

  checkKey(req) {
    const key = req.headers['x-api-key'];
    if (!key) return false;
    if (this.apiKey) return key === this.apiKey;
    return /^e2b_[0-9a-f]{40}$/.test(key);
  }

  sandboxJSON(sb) {
    return {
      templateID: sb.templateID,
      sandboxID: sb.id,
      alias: sb.alias,
      clientID: CLIENT_ID,
      envdVersion: ENVD_VERSION,
      ...(sb.accessToken ? { envdAccessToken: sb.accessToken } : {}),
      trafficAccessToken: null,
      domain: null,
    };
  }

  listedJSON(sb) {
    return {
      templateID: sb.templateID,
      alias: sb.alias,
      sandboxID: sb.id,
      clientID: CLIENT_ID,
      startedAt: sb.startedAt.toISOString(),
      endAt: sb.endAt.toISOString(),
      cpuCount: 2,
      memoryMB: 512,
      diskSizeMB: 10240,
      state: sb.state,
      envdVersion: ENVD_VERSION,
      metadata: sb.metadata,
      volumeMounts: [],
    };
  }

  detailJSON(sb) {
    return {
      ...this.listedJSON(sb),
      ...(sb.accessToken ? { envdAccessToken: sb.accessToken } : {}),
      domain: null,
      allowInternetAccess: sb.allowInternetAccess,
      lifecycle: { autoResume: false, onTimeout: sb.autoPause ? 'pause' : 'kill' },
    };
  }

  /** Handle a control-plane request; `route` from matchRoute, body parsed lazily. */
  async handle(req, res, url, route, readJson) {
    if (!this.checkKey(req)) return sendError(res, 401, INVALID_KEY);
    if (!route) return sendError(res, 404, `no route for ${req.method} ${url.pathname}`);
    try {
      if (route.id !== undefined && !/^[a-z0-9]+$/.test(route.id)) throw new ApiError(400, 'Invalid sandbox ID');
      const sb = route.id !== undefined ? this.mgr.get(route.id) : null;
      if (route.id !== undefined && !sb) {
        throw new ApiError(404, `Sandbox "${route.id}" doesn't exist or you don't have access to it`);
      }
      return await this[route.name](req, res, url, sb, readJson);
    } catch (e) {
      if (e instanceof ApiError) return sendError(res, e.status, e.message);
      return sendError(res, 500, e.message);
    }
  }

  static timeoutFrom(body, field, dflt) {
    const v = body[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw new ApiError(400, `Error when parsing request: ${field} must be an integer`);
    }
    if (v <= 0) throw new ApiError(400, 'Timeout must be greater than 0');
    if (v > MAX_TIMEOUT_S) throw new ApiError(400, `Timeout cannot be greater than ${MAX_TIMEOUT_S / 3600} hours`);
    return v;
  }

  static stringMap(body, field) {
    const v = body[field];
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
      throw new ApiError(400, `Error when parsing request: ${field} must be an object of strings`);
    }
    return { ...v };
  }

  async doCreate(res, readJson, v2) {
    const body = await readJson();
    if (typeof body.templateID !== 'string' || !body.templateID) {
      throw new ApiError(400, 'Error when parsing request: property "templateID" is missing');
    }
    const template = body.templateID;
    if (!this.mgr.templates.has(template)) throw new ApiError(404, `template '${template}' not found`);
    const timeoutS = ControlPlane.timeoutFrom(body, 'timeout', v2 ? 300 : 15);
    const sb = await this.mgr.create({
      templateID: template,
      alias: template,
      timeoutS,
      metadata: ControlPlane.stringMap(body, 'metadata'),
      envVars: ControlPlane.stringMap(body, 'envVars'),
      secure: v2 ? true : body.secure !== false,
      allowInternetAccess: body.allow_internet_access !== false,
      autoPause: !!body.autoPause,
    });
    sendJson(res, 201, this.sandboxJSON(sb));
  }

  async create(req, res, url, sb, readJson) {
    return this.doCreate(res, readJson, false);
  }
  async createV2(req, res, url, sb, readJson) {
    return this.doCreate(res, readJson, true);
  }

  filtered(url, states) {
    let list = this.mgr.list();
    list = list.filter((s) => states.includes(s.state));
    const md = url.searchParams.get('metadata');
    if (md) {
      const want = [...new URLSearchParams(md)].map(([k, v]) => {
        const dec = (x) => {
          try {
            return decodeURIComponent(x);
          } catch (_) {
            return x;
          }
        };
        return [dec(k), dec(v)];
      });
      list = list.filter((s) => want.every(([k, v]) => s.metadata[k] === v));
    }
    const template = url.searchParams.get('template');
    if (template) list = list.filter((s) => s.templateID === template || s.alias === template);
    const after = url.searchParams.get('startedAfter');
    if (after && !Number.isNaN(Date.parse(after))) list = list.filter((s) => s.startedAt.getTime() > Date.parse(after));
    return list;
  }

  async list(req, res, url) {
    sendJson(res, 200, this.filtered(url, ['running']).map((s) => this.listedJSON(s)));
  }

  async listV2(req, res, url) {
    const states = url.searchParams.getAll('state').flatMap((s) => s.split(',')).filter(Boolean);
    let list = this.filtered(url, states.length ? states : ['running', 'paused']);
    const asc = url.searchParams.get('order') === 'asc';
    list.sort((a, b) => (a.startedAt - b.startedAt || (a.id < b.id ? -1 : 1)) * (asc ? 1 : -1));
    let limit = parseInt(url.searchParams.get('limit') || '100', 10);
    if (!Number.isFinite(limit) || limit < 1 || limit > 100) throw new ApiError(400, 'limit must be between 1 and 100');
    const token = url.searchParams.get('nextToken');
    if (token) {
      const lastId = Buffer.from(token, 'base64url').toString();
      const i = list.findIndex((s) => s.id === lastId);
      if (i < 0) throw new ApiError(400, 'Invalid next token');
      list = list.slice(i + 1);
    }
    const page = list.slice(0, limit);
    const headers = list.length > limit ? { 'X-Next-Token': Buffer.from(page[page.length - 1].id).toString('base64url') } : {};
    sendJson(res, 200, page.map((s) => this.listedJSON(s)), headers);
  }

  async get(req, res, url, sb) {
    sendJson(res, 200, this.detailJSON(sb));
  }

  async kill(req, res, url, sb) {
    await this.mgr.kill(sb.id);
    res.writeHead(204);
    res.end();
  }

  async timeout(req, res, url, sb, readJson) {
    const body = await readJson();
    if (body.timeout === undefined) throw new ApiError(400, 'Error when parsing request: property "timeout" is missing');
    sb.setTimeoutSeconds(ControlPlane.timeoutFrom(body, 'timeout', 15));
    res.writeHead(204);
    res.end();
  }

  async refresh(req, res, url, sb, readJson) {
    const body = await readJson(true);
    const d = body.duration === undefined ? 60 : body.duration;
    if (typeof d !== 'number' || d < 0 || d > 3600) throw new ApiError(400, 'Duration must be between 0 and 3600 seconds');
    if (Date.now() + d * 1000 > sb.endAt.getTime()) sb.setTimeoutSeconds(d);
    res.writeHead(204);
    res.end();
  }

  async doConnect(res, sb, body, dflt) {
    const t = ControlPlane.timeoutFrom(body, 'timeout', dflt);
    if (sb.state === 'paused') {
      sb.resume(t);
      return sendJson(res, 201, this.sandboxJSON(sb));
    }
    if (Date.now() + t * 1000 > sb.endAt.getTime()) sb.setTimeoutSeconds(t);
    return sendJson(res, 200, this.sandboxJSON(sb));
  }

  async connect(req, res, url, sb, readJson) {
    const body = await readJson();
    if (body.timeout === undefined) throw new ApiError(400, 'Error when parsing request: property "timeout" is missing');
    return this.doConnect(res, sb, body, 300);
  }

  async connectV2(req, res, url, sb, readJson) {
    return this.doConnect(res, sb, await readJson(true), 300);
  }

  async pause(req, res, url, sb, readJson) {
    await readJson(true);
    if (sb.state === 'paused') throw new ApiError(409, `Sandbox "${sb.id}" is already paused`);
    await sb.pause();
    res.writeHead(204);
    res.end();
  }

  async resume(req, res, url, sb, readJson) {
    const body = await readJson(true);
    if (sb.state !== 'paused') throw new ApiError(409, `Sandbox "${sb.id}" is already running`);
    sb.resume(ControlPlane.timeoutFrom(body, 'timeout', 15));
    sendJson(res, 201, this.sandboxJSON(sb));
  }

  async metrics(req, res) {
    sendJson(res, 200, []);
  }
}

module.exports = { ControlPlane, ApiError, matchRoute, isControlPlanePath, sendJson, sendError, INVALID_KEY };
