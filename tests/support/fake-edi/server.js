#!/usr/bin/env node
// Fake NHN EDI 2.0 (Meldingstjener REST API v2) and HelseID token endpoint: the one fake EDI server,
// used by the transport tests (plugins/nhn/tests/edi) and the daemon integration tests.
//
//   node server.js --client-id ID --client-key PUBLIC.pem [--token-lifetime 300]
//                  [--api-version 2] [--require-token-nonce] [--require-api-nonce]
//
// Plain HTTP on 127.0.0.1, port chosen by the OS; the first line on stdout is "LISTENING <port>".
// No npm dependencies: Node's crypto verifies RS256/PS256/ES256 and computes JWK thumbprints.
//
// HelseID:  POST /connect/token  (client_credentials, private_key_jwt, DPoP; issues DPoP tokens)
// EDI 2.0:  POST /Messages, GET /Messages, GET /Messages/{id}, GET /Messages/{id}/business-document,
//           PUT /Messages/{id}/read/{herId}, GET /Messages/{id}/status, GET /Messages/{id}/apprec,
//           POST /Messages/{id}/apprec/{appRecSenderHerId}
// Test-only control endpoints (no auth):
//   GET  /_test/messages          messages sent to us, business document decoded ("xml")
//   POST /_test/inbox             queue an incoming message {receiverHerId, senderHerId, xml, isAppRec}
//   GET  /_test/inbox             the incoming messages with read flags and the Apprecs answered
//   POST /_test/apprec/{id}       set the Apprec(s) of a sent message: object or array of ApprecInfo
//   POST /_test/faults            queue faults: {"status":500,"count":2}, {"status":429,
//                                 "retry_after":1}, {"delay_ms":3000}, {"drop":true}; object or array
//   POST /_test/config            {require_token_nonce, require_api_nonce, token_lifetime, api_version}
//   POST /_test/revoke            forget every issued token (the next API call gets 401)
//   GET  /_test/stats             token requests, decoded assertions and proofs, rejections
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');

// ---------------------------------------------------------------- arguments
const args = { tokenLifetime: 300, apiVersion: '2', requireTokenNonce: false, requireApiNonce: false };
for (let i = 2; i < process.argv.length; ++i) {
  const a = process.argv[i];
  const next = () => process.argv[++i];
  if (a === '--client-id') args.clientId = next();
  else if (a === '--client-key') args.clientKeyFile = next();
  else if (a === '--token-lifetime') args.tokenLifetime = Number(next());
  else if (a === '--api-version') args.apiVersion = next();
  else if (a === '--require-token-nonce') args.requireTokenNonce = true;
  else if (a === '--require-api-nonce') args.requireApiNonce = true;
  else {
    process.stderr.write(`unknown argument ${a}\n`);
    process.exit(2);
  }
}
if (!args.clientId || !args.clientKeyFile) {
  process.stderr.write('usage: server.js --client-id ID --client-key PUBLIC.pem\n');
  process.exit(2);
}
const clientKey = crypto.createPublicKey(fs.readFileSync(args.clientKeyFile));

// ---------------------------------------------------------------- state
const state = {
  config: {
    require_token_nonce: args.requireTokenNonce,
    require_api_nonce: args.requireApiNonce,
    token_lifetime: args.tokenLifetime,
    api_version: args.apiVersion,
  },
  tokenNonce: b64url(crypto.randomBytes(16)),
  apiNonce: b64url(crypto.randomBytes(16)),
  assertionJtis: new Set(),
  proofJtis: new Set(),
  tokens: new Map(),     // access token -> { jkt, exp }
  sent: new Map(),       // id -> sent message
  inbox: new Map(),      // id -> incoming message
  faults: [],
  stats: {
    token_requests: 0, tokens_issued: 0, nonce_challenges: 0, api_calls: 0, proofs_accepted: 0,
    assertions: [], proofs: [], rejections: [], requests: [],
  },
};

// ---------------------------------------------------------------- helpers
function b64url(buf) {
  return Buffer.from(buf).toString('base64url');
}
function now() {
  return Math.floor(Date.now() / 1000);
}
function errorMessage(error, validationErrors = null) {
  return { error, errorCode: validationErrors ? 1000 : 0, validationErrors, stackTrace: null,
           requestId: crypto.randomUUID() };
}
function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { ...(text ? { 'Content-Type': 'application/json; charset=utf-8' } : {}),
                          'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
function reject(res, where, status, body, headers = {}) {
  state.stats.rejections.push({ where, status, body });
  send(res, status, body, headers);
}
function readBody(req, limit = 100 * 1024 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) { reject(new Error('body too large')); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
function parseJson(text) {
  try { return JSON.parse(text); } catch { return undefined; }
}

// RFC 7638 thumbprint over the required members in lexicographic order.
function thumbprint(jwk) {
  let canonical;
  if (jwk.kty === 'RSA') canonical = { e: jwk.e, kty: 'RSA', n: jwk.n };
  else if (jwk.kty === 'EC') canonical = { crv: jwk.crv, kty: 'EC', x: jwk.x, y: jwk.y };
  else throw new Error(`unsupported kty ${jwk.kty}`);
  return b64url(crypto.createHash('sha256').update(JSON.stringify(canonical)).digest());
}

// Decodes and verifies a compact JWS; throws with a reason.
function verifyJwt(token, keyFor) {
  if (typeof token !== 'string') throw new Error('missing JWT');
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  const sig = Buffer.from(parts[2], 'base64url');
  const key = keyFor(header);
  const input = Buffer.from(`${parts[0]}.${parts[1]}`);
  let ok;
  if (header.alg === 'RS256') {
    ok = crypto.verify('sha256', input, { key }, sig);
  } else if (header.alg === 'PS256') {
    ok = crypto.verify('sha256', input,
                       { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig);
  } else if (header.alg === 'ES256') {
    if (sig.length !== 64) throw new Error('ES256 signature must be 64 bytes (r||s)');
    ok = crypto.verify('sha256', input, { key, dsaEncoding: 'ieee-p1363' }, sig);
  } else {
    throw new Error(`alg ${header.alg} not allowed`);
  }
  if (!ok) throw new Error('bad signature');
  return { header, claims };
}

// Checks a DPoP proof (RFC 9449 §4.3); returns its JWK thumbprint or throws with a reason.
function checkProof(req, url, accessToken, expectedNonce) {
  const proof = req.headers['dpop'];
  if (!proof) throw new Error('missing DPoP header');
  const { header, claims } = verifyJwt(proof, (h) => {
    if (h.typ !== 'dpop+jwt') throw new Error(`typ must be dpop+jwt, not ${h.typ}`);
    if (!h.jwk || h.jwk.d || h.jwk.p) throw new Error('jwk missing or contains private members');
    return crypto.createPublicKey({ key: h.jwk, format: 'jwk' });
  });
  const htu = `http://${req.headers.host}${url.pathname}`;
  if (claims.htm !== req.method) throw new Error(`htm ${claims.htm} != ${req.method}`);
  if (claims.htu !== htu) throw new Error(`htu ${claims.htu} != ${htu}`);
  if (typeof claims.iat !== 'number' || Math.abs(claims.iat - now()) > 60) {
    throw new Error('iat missing or not within 60 s');
  }
  if (typeof claims.jti !== 'string' || claims.jti.length < 16) throw new Error('jti missing');
  if (state.proofJtis.has(claims.jti)) throw new Error('DPoP proof jti replayed');
  if (accessToken !== undefined) {
    const ath = b64url(crypto.createHash('sha256').update(accessToken).digest());
    if (claims.ath !== ath) throw new Error('ath does not match the access token');
  } else if (claims.ath !== undefined) {
    throw new Error('ath on a token request');
  }
  if (expectedNonce !== undefined && claims.nonce !== expectedNonce) {
    const e = new Error('nonce required');
    e.nonce = true;
    throw e;
  }
  state.proofJtis.add(claims.jti);
  state.stats.proofs.push({ header, claims });
  return thumbprint(header.jwk);
}

// ---------------------------------------------------------------- HelseID token endpoint
async function tokenEndpoint(req, res, url) {
  state.stats.token_requests += 1;
  const form = new URLSearchParams(await readBody(req, 64 * 1024));
  const fail = (status, error, description, headers = {}) =>
    reject(res, 'token', status, { error, error_description: description }, headers);
  if (req.headers['content-type'] !== 'application/x-www-form-urlencoded') {
    return fail(400, 'invalid_request', 'form body expected');
  }
  if (form.get('grant_type') !== 'client_credentials') {
    return fail(400, 'unsupported_grant_type', 'client_credentials only');
  }
  if (form.get('client_id') !== args.clientId) return fail(400, 'invalid_client', 'unknown client_id');
  if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
    return fail(400, 'invalid_client', 'client_assertion_type must be jwt-bearer');
  }
  // The client assertion (private_key_jwt).
  let assertion;
  try {
    assertion = verifyJwt(form.get('client_assertion'), () => clientKey);
  } catch (e) {
    return fail(400, 'invalid_client', `client assertion: ${e.message}`);
  }
  const c = assertion.claims;
  const issuer = `http://${req.headers.host}`;
  const t = now();
  const problems = [];
  if (c.iss !== args.clientId || c.sub !== args.clientId) problems.push('iss and sub must be the client_id');
  if (c.aud !== issuer && c.aud !== `${issuer}/` && c.aud !== `${issuer}/connect/token`) {
    problems.push(`aud ${c.aud} is not ${issuer}`);
  }
  if (typeof c.exp !== 'number' || c.exp <= t) problems.push('exp missing or passed');
  else if (c.exp - t > 60) problems.push('exp more than 60 s ahead');
  if (typeof c.iat !== 'number' || c.exp - c.iat > 60) problems.push('iat missing or lifetime over 60 s');
  if (typeof c.nbf !== 'number' || c.nbf > t + 5) problems.push('nbf missing or in the future');
  if (typeof c.jti !== 'string' || !c.jti) problems.push('jti missing');
  else if (state.assertionJtis.has(c.jti)) problems.push('jti replayed');
  if (problems.length) return fail(400, 'invalid_client', problems.join('; '));
  state.assertionJtis.add(c.jti);
  state.stats.assertions.push(assertion);

  // The DPoP proof, with HelseID's nonce dance when configured.
  let jkt;
  try {
    jkt = checkProof(req, url, undefined,
                     state.config.require_token_nonce ? state.tokenNonce : undefined);
  } catch (e) {
    if (e.nonce) {
      state.stats.nonce_challenges += 1;
      return fail(400, 'use_dpop_nonce', 'Authorization server requires nonce in DPoP proof',
                  { 'DPoP-Nonce': state.tokenNonce });
    }
    return fail(400, 'invalid_dpop_proof', e.message);
  }
  const token = b64url(crypto.randomBytes(32));
  state.tokens.set(token, { jkt, exp: t + state.config.token_lifetime });
  state.stats.tokens_issued += 1;
  send(res, 200, { access_token: token, token_type: 'DPoP', expires_in: state.config.token_lifetime,
                   scope: form.get('scope') || 'nhn:msh/api' });
}

// ---------------------------------------------------------------- EDI 2.0
function checkApiAuth(req, res, url) {
  const auth = req.headers['authorization'] || '';
  const m = /^DPoP (.+)$/.exec(auth);
  if (!m) {
    reject(res, 'api', 401, errorMessage('DPoP authorization required'),
           { 'WWW-Authenticate': 'DPoP error="invalid_token"' });
    return false;
  }
  const token = state.tokens.get(m[1]);
  if (!token || token.exp <= now()) {
    reject(res, 'api', 401, errorMessage('Invalid or expired token'),
           { 'WWW-Authenticate': 'DPoP error="invalid_token"' });
    return false;
  }
  try {
    const jkt = checkProof(req, url, m[1], state.config.require_api_nonce ? state.apiNonce : undefined);
    if (jkt !== token.jkt) throw new Error('proof key does not match the token binding (cnf.jkt)');
  } catch (e) {
    if (e.nonce) {
      state.stats.nonce_challenges += 1;
      reject(res, 'api', 401, errorMessage('DPoP nonce required'),
             { 'WWW-Authenticate': 'DPoP error="use_dpop_nonce"', 'DPoP-Nonce': state.apiNonce });
    } else {
      reject(res, 'api', 401, errorMessage(`DPoP proof refused: ${e.message}`),
             { 'WWW-Authenticate': 'DPoP error="invalid_dpop_proof"' });
    }
    return false;
  }
  state.stats.proofs_accepted += 1;
  if (req.headers['api-version'] !== state.config.api_version) {
    reject(res, 'api', 400, errorMessage('Model validation error occurred',
                                         [`api-version header must be ${state.config.api_version}`]));
    return false;
  }
  if (!req.headers['nhn-source-system']) {
    reject(res, 'api', 400, errorMessage('Model validation error occurred',
                                         ['nhn-source-system header is required']));
    return false;
  }
  return true;
}

const notFound = () => errorMessage('Could not find database document');

function messageView(m, withMetadata = true) {
  if (!withMetadata) return { id: m.id, receiverHerId: m.receiverHerId };
  return { id: m.id, contentType: m.contentType, receiverHerId: m.receiverHerId,
           senderHerId: m.senderHerId, businessDocumentId: m.businessDocumentId,
           businessDocumentGenDate: m.businessDocumentGenDate, isAppRec: m.isAppRec };
}

// HER-ids of the receiver in a MsgHead: the Ident/Id values typed HER inside <Receiver>.
function receiverHerIds(xml) {
  const block = /<(?:\w+:)?Receiver>([\s\S]*?)<\/(?:\w+:)?Receiver>/.exec(xml);
  if (!block) return [];
  const ids = [];
  const re = /<(?:\w+:)?Id>\s*(\d+)\s*<\/(?:\w+:)?Id>\s*<(?:\w+:)?TypeId[^>]*V="HER"/g;
  let m;
  while ((m = re.exec(block[1])) !== null) ids.push(Number(m[1]));
  return ids.length ? [ids[ids.length - 1]] : [];
}

async function api(req, res, url) {
  state.stats.api_calls += 1;
  const path = url.pathname;
  const parts = path.split('/').filter(Boolean);  // ['Messages', id?, sub?, arg?]
  const method = req.method;

  if (parts.length === 1 && method === 'POST') {
    const body = parseJson(await readBody(req));
    const errors = [];
    if (!body || typeof body !== 'object') errors.push('Request body must be a PostMessageRequest');
    else {
      if (typeof body.businessDocument !== 'string' || !body.businessDocument) errors.push('BusinessDocument is required');
      if (body.contentType !== 'application/xml') errors.push('ContentType must be application/xml');
      if (body.contentTransferEncoding !== 'base64') errors.push('ContentTransferEncoding must be base64');
      for (const k of Object.keys(body)) {
        if (!['businessDocument', 'contentType', 'contentTransferEncoding', 'ebXmlOverrides',
              'receiverHerIdsSubset'].includes(k)) errors.push(`Unknown property ${k}`);
      }
    }
    let xml;
    if (!errors.length) {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body.businessDocument)) errors.push('BusinessDocument is not base64');
      else {
        xml = Buffer.from(body.businessDocument, 'base64').toString('utf8');
        if (!/^(\uFEFF)?<\?xml[^>]*encoding="utf-8"/i.test(xml)) {
          errors.push('BusinessDocument must be an XML document declared as UTF-8');
        }
      }
    }
    if (errors.length) return reject(res, 'api', 400, errorMessage('Model validation error occurred', errors));
    const id = crypto.randomUUID();
    const msgId = (/<(?:\w+:)?MsgId>([^<]+)</.exec(xml) || [])[1] || null;
    const receivers = Array.isArray(body.receiverHerIdsSubset) && body.receiverHerIdsSubset.length
      ? body.receiverHerIdsSubset : receiverHerIds(xml);
    state.sent.set(id, { id, xml, contentType: body.contentType, msgId, receivers,
                         receiverHerIdsSubset: body.receiverHerIdsSubset ?? null, apprecs: new Map(),
                         sourceSystem: req.headers['nhn-source-system'] });
    return send(res, 201, id, { Location: `/Messages/${id}` });
  }

  if (parts.length === 1 && method === 'GET') {
    const receivers = url.searchParams.getAll('ReceiverHerIds').map(Number);
    if (!receivers.length || receivers.some((n) => !Number.isInteger(n) || n <= 0)) {
      return reject(res, 'api', 400, errorMessage('Model validation error occurred',
                                                  ['ReceiverHerIds is required']));
    }
    const count = Number(url.searchParams.get('MessagesToFetch') ?? 10);
    if (!Number.isInteger(count) || count < 1 || count > 100) {
      return reject(res, 'api', 400, errorMessage('Model validation error occurred',
                                                  ['MessagesToFetch must be between 1 and 100']));
    }
    const meta = url.searchParams.get('IncludeMetadata') === 'true';
    const sender = url.searchParams.get('SenderHerId');
    const unread = [...state.inbox.values()]
      .filter((m) => !m.read && receivers.includes(m.receiverHerId))
      .filter((m) => sender === null || m.senderHerId === Number(sender))
      .slice(0, count)
      .map((m) => messageView(m, meta));
    return send(res, 200, unread);
  }

  const id = parts[1];
  const incoming = state.inbox.get(id);
  const sent = state.sent.get(id);
  if (!incoming && !sent) return reject(res, 'api', 404, notFound());

  if (parts.length === 2 && method === 'GET') {
    if (incoming) return send(res, 200, messageView(incoming));
    return send(res, 200, { id: sent.id, contentType: sent.contentType, receiverHerId: sent.receivers[0] ?? null,
                            senderHerId: null, businessDocumentId: sent.msgId, isAppRec: false });
  }
  if (parts.length === 3 && parts[2] === 'business-document' && method === 'GET') {
    const xml = incoming ? incoming.xml : sent.xml;
    return send(res, 200, { businessDocument: Buffer.from(xml, 'utf8').toString('base64'),
                            contentType: 'application/xml', contentTransferEncoding: 'base64' });
  }
  if (parts.length === 4 && parts[2] === 'read' && method === 'PUT') {
    const her = Number(parts[3]);
    if (!incoming) return reject(res, 'api', 404, notFound());
    if (her !== incoming.receiverHerId) {
      return reject(res, 'api', 403, errorMessage(`Not authorized for HerId(s): ${parts[3]}`));
    }
    incoming.read = true;
    res.writeHead(204);
    return res.end();
  }
  if (parts.length === 3 && parts[2] === 'status' && method === 'GET') {
    if (!sent) return send(res, 200, [{ receiverHerId: incoming.receiverHerId, transportDeliveryState: 'Acknowledged', appRecStatus: null }]);
    return send(res, 200, sent.receivers.map((r) => {
      const a = sent.apprecs.get(r);
      return { receiverHerId: r, transportDeliveryState: a ? 'Acknowledged' : 'Unconfirmed',
               appRecStatus: a ? a.appRecStatus : null };
    }));
  }
  if (parts.length === 3 && parts[2] === 'apprec' && method === 'GET') {
    if (!sent) return send(res, 200, []);
    return send(res, 200, sent.receivers.map((r) => {
      const a = sent.apprecs.get(r);
      return a ? { receiverHerId: r, appRecStatus: a.appRecStatus, appRecErrorList: a.appRecErrorList ?? [] }
               : { receiverHerId: r, appRecStatus: null, appRecErrorList: null };
    }));
  }
  if (parts.length === 4 && parts[2] === 'apprec' && method === 'POST') {
    if (!incoming) return reject(res, 'api', 404, notFound());
    const senderHer = Number(parts[3]);
    const body = parseJson(await readBody(req, 1024 * 1024));
    const errors = [];
    if (!body || !['Ok', 'Rejected', 'OkErrorInMessagePart'].includes(body.appRecStatus)) {
      errors.push('AppRecStatus must be Ok, Rejected or OkErrorInMessagePart');
    }
    if (body && body.appRecStatus !== 'Ok' && !(Array.isArray(body.appRecErrorList) && body.appRecErrorList.length)) {
      errors.push('AppRecErrorList is required when the status is not Ok');
    }
    if (!Number.isInteger(senderHer) || senderHer <= 0) errors.push('appRecSenderHerId must be positive');
    if (errors.length) return reject(res, 'api', 400, errorMessage('Model validation error occurred', errors));
    const apprecId = crypto.randomUUID();
    incoming.apprecsSent.push({ id: apprecId, senderHerId: senderHer, ...body });
    return send(res, 201, apprecId, { Location: `/Messages/${apprecId}` });
  }
  return reject(res, 'api', 404, errorMessage(`No route for ${method} ${path}`));
}

// ---------------------------------------------------------------- faults
function takeFault(path) {
  const i = state.faults.findIndex((f) => path.startsWith(f.path || '/Messages'));
  if (i < 0) return null;
  const f = state.faults[i];
  f.count = (f.count ?? 1) - 1;
  if (f.count <= 0) state.faults.splice(i, 1);
  return f;
}

// Applies a fault; returns true when the request has been answered (or dropped).
async function applyFault(f, req, res) {
  if (f.delay_ms) await new Promise((r) => setTimeout(r, f.delay_ms));
  if (f.drop) {
    req.socket.destroy();
    return true;
  }
  if (f.status) {
    const headers = {};
    if (f.retry_after !== undefined) headers['Retry-After'] = String(f.retry_after);
    if (f.retry_after_date !== undefined) headers['Retry-After'] = f.retry_after_date;
    reject(res, 'fault', f.status, errorMessage(f.message || `Injected fault ${f.status}`), headers);
    return true;
  }
  return false;  // a pure delay: answer normally, late
}

// ---------------------------------------------------------------- test control
async function control(req, res, url) {
  const p = url.pathname;
  if (p === '/_test/messages' && req.method === 'GET') {
    return send(res, 200, [...state.sent.values()].map((m) => ({
      id: m.id, xml: m.xml, contentType: m.contentType, msgId: m.msgId, receivers: m.receivers,
      receiverHerIdsSubset: m.receiverHerIdsSubset, sourceSystem: m.sourceSystem })));
  }
  if (p === '/_test/inbox' && req.method === 'POST') {
    const b = parseJson(await readBody(req));
    if (!b || !Number.isInteger(b.receiverHerId) || typeof b.xml !== 'string') {
      return send(res, 400, { error: 'need receiverHerId and xml' });
    }
    const id = crypto.randomUUID();
    state.inbox.set(id, {
      id, receiverHerId: b.receiverHerId, senderHerId: b.senderHerId ?? null, xml: b.xml,
      contentType: 'application/xml', isAppRec: !!b.isAppRec,
      businessDocumentId: b.businessDocumentId ?? ((/<(?:\w+:)?MsgId>([^<]+)</.exec(b.xml) || [])[1] || null),
      businessDocumentGenDate: b.businessDocumentGenDate ?? new Date().toISOString().slice(0, 19),
      read: false, apprecsSent: [] });
    return send(res, 201, { id });
  }
  if (p === '/_test/inbox' && req.method === 'GET') {
    return send(res, 200, [...state.inbox.values()]);
  }
  const ap = /^\/_test\/apprec\/([^/]+)$/.exec(p);
  if (ap && req.method === 'POST') {
    const m = state.sent.get(ap[1]);
    if (!m) return send(res, 404, { error: 'no such sent message' });
    const b = parseJson(await readBody(req));
    for (const a of Array.isArray(b) ? b : [b]) {
      const r = a.receiverHerId ?? m.receivers[0];
      if (!m.receivers.includes(r)) m.receivers.push(r);
      m.apprecs.set(r, a);
    }
    return send(res, 204);
  }
  if (p === '/_test/faults' && req.method === 'POST') {
    const b = parseJson(await readBody(req));
    for (const f of Array.isArray(b) ? b : [b]) state.faults.push({ count: 1, ...f });
    return send(res, 204);
  }
  if (p === '/_test/config' && req.method === 'POST') {
    Object.assign(state.config, parseJson(await readBody(req)) || {});
    return send(res, 200, state.config);
  }
  if (p === '/_test/revoke' && req.method === 'POST') {
    state.tokens.clear();
    return send(res, 204);
  }
  if (p === '/_test/stats' && req.method === 'GET') return send(res, 200, state.stats);
  return send(res, 404, { error: 'unknown test endpoint' });
}

// ---------------------------------------------------------------- server
const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, `http://${req.headers.host || '127.0.0.1'}`);
    if (url.pathname.startsWith('/_test/')) return await control(req, res, url);
    state.stats.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const fault = takeFault(url.pathname);
    if (fault && await applyFault(fault, req, res)) return;
    if (res.destroyed) return;
    if (url.pathname === '/connect/token' && req.method === 'POST') return await tokenEndpoint(req, res, url);
    if (url.pathname === '/Messages' || url.pathname.startsWith('/Messages/')) {
      if (!checkApiAuth(req, res, url)) return;
      return await api(req, res, url);
    }
    send(res, 404, errorMessage(`No route for ${req.method} ${url.pathname}`));
  } catch (e) {
    if (!res.headersSent && !res.destroyed) send(res, 500, errorMessage(`fake server error: ${e.message}`));
  }
});
server.keepAliveTimeout = 1000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
