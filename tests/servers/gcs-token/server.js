#!/usr/bin/env node
/*
 * server.js - a tiny OAuth 2 token endpoint and GCE metadata server for
 * the omnifs gcs tests (Node 20, standard library only). It hands out one
 * access token, the one the GCS test server is started with
 * (--require-token), to clients that prove themselves:
 *
 *   POST /token  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
 *                &assertion=JWT   the JWT must be RS256-signed with the
 *                                 key whose public half is --public-key,
 *                                 iss = --client-email, aud = this URL,
 *                                 a devstorage scope, unexpired
 *   POST /token  grant_type=refresh_token&client_id&client_secret
 *                &refresh_token   must match --client-id/-secret and
 *                                 --refresh-token
 *   GET  /computeMetadata/v1/instance/service-accounts/default/token
 *                                 needs Metadata-Flavor: Google, answers
 *                                 with the same header
 *   GET  /_test/stats             {"jwt": n, "refresh": n, "metadata": n,
 *                                  "refused": n}
 *
 * Errors are OAuth's {"error": "invalid_grant", "error_description": ...}
 * with status 400 (401 for a bad client). Usage:
 *
 *   node server.js --token T [--port 0] [--port-file F] [--public-key PEM]
 *        [--client-email E] [--client-id I --client-secret S
 *        --refresh-token R] [--expires-in SECONDS]
 *
 * SIGTERM and SIGINT stop it with status 0; so does the exit of the
 * process that started it (a test that died without cleaning up).
 */
'use strict';

const http = require('http');
const fs = require('fs');
const crypto = require('crypto');

const o = { port: 0, host: '127.0.0.1', expiresIn: 3600 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const v = () => argv[++i];
  switch (a) {
    case '--port': o.port = Number(v()); break;
    case '--port-file': o.portFile = v(); break;
    case '--token': o.token = v(); break;
    case '--public-key': o.publicKey = fs.readFileSync(v(), 'utf8'); break;
    case '--client-email': o.clientEmail = v(); break;
    case '--client-id': o.clientId = v(); break;
    case '--client-secret': o.clientSecret = v(); break;
    case '--refresh-token': o.refreshToken = v(); break;
    case '--expires-in': o.expiresIn = Number(v()); break;
    default: throw new Error(`unknown argument: ${a}`);
  }
}
if (!o.token) throw new Error('--token is required');

const stats = { jwt: 0, refresh: 0, metadata: 0, refused: 0 };

function reply(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function refuse(res, why, status = 400) {
  stats.refused++;
  reply(res, status, { error: status === 401 ? 'invalid_client' : 'invalid_grant', error_description: why });
}

function granted(res, extra = {}) {
  reply(res, 200, { access_token: o.token, expires_in: o.expiresIn, token_type: 'Bearer' }, extra);
}

function b64urlDecode(s) {
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

/* Why the JWT is not acceptable, or null. */
function checkJwt(jwt, aud) {
  const parts = (jwt || '').split('.');
  if (parts.length !== 3) return 'not a JWT';
  let header;
  let claims;
  try {
    header = JSON.parse(b64urlDecode(parts[0]).toString('utf8'));
    claims = JSON.parse(b64urlDecode(parts[1]).toString('utf8'));
  } catch (e) {
    return 'undecodable JWT';
  }
  if (header.alg !== 'RS256') return `alg ${header.alg}, want RS256`;
  if (!o.publicKey) return 'no public key configured';
  const ok = crypto.verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), o.publicKey, b64urlDecode(parts[2]));
  if (!ok) return 'Invalid JWT Signature.';
  const now = Math.floor(Date.now() / 1000);
  if (o.clientEmail && claims.iss !== o.clientEmail) return `iss ${claims.iss}`;
  if (claims.aud !== aud) return `aud ${claims.aud}, want ${aud}`;
  if (!/devstorage|cloud-platform/.test(claims.scope || '')) return `scope ${claims.scope}`;
  if (!(claims.exp > now) || !(claims.iat <= now + 60) || claims.exp - claims.iat > 3600) return 'bad iat/exp';
  return null;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (url.pathname === '/_test/stats') return reply(res, 200, stats);
    if (url.pathname === '/computeMetadata/v1/instance/service-accounts/default/token') {
      if (req.headers['metadata-flavor'] !== 'Google') {
        stats.refused++;
        return reply(res, 403, { error: 'missing Metadata-Flavor: Google' });
      }
      stats.metadata++;
      return granted(res, { 'Metadata-Flavor': 'Google' });
    }
    if (url.pathname !== '/token' || req.method !== 'POST') return reply(res, 404, { error: 'not_found' });
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    const grant = form.get('grant_type');
    if (grant === 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      const aud = `http://${req.headers.host}/token`;
      const why = checkJwt(form.get('assertion'), aud);
      if (why) return refuse(res, why);
      stats.jwt++;
      return granted(res);
    }
    if (grant === 'refresh_token') {
      if (form.get('client_id') !== o.clientId || form.get('client_secret') !== o.clientSecret) return refuse(res, 'The OAuth client was not found.', 401);
      if (form.get('refresh_token') !== o.refreshToken) return refuse(res, 'Token has been expired or revoked.');
      stats.refresh++;
      return granted(res);
    }
    return refuse(res, `unsupported grant_type ${grant}`);
  });
});

server.listen(o.port, o.host, () => {
  const port = server.address().port;
  if (o.portFile) {
    fs.writeFileSync(`${o.portFile}.tmp`, `${port}\n`);
    fs.renameSync(`${o.portFile}.tmp`, o.portFile);
  }
  process.stdout.write(`gcs-token-test-server listening on http://${o.host}:${port}\n`);
});

// A test that dies without cleaning up must not leave us behind: when the
// process that started us goes away, so do we.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 1000).unref();

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
