// A fake NHN EDI 2.0 API and HelseID token endpoint for tests (127.0.0.1 only, Node.js, no
// dependencies). It checks what the real services check — the client assertion (signature with
// the client's public key, exp at most 60 s ahead, unique jti) and a DPoP proof on every request
// (signature with its embedded JWK, htm, htu, ath) — answers with the shapes of the OpenAPI
// description, and injects faults on command.
//
//   node server.js PUBLIC_KEY.pem  →  prints "LISTENING <port>" when ready
//
// Test controls: GET /_test/sent (messages received, decoded), POST /_test/inbox (an XML business
// document for us to fetch), POST /_test/faults ([{status, count, retry_after}, {drop: true,
// count}, {delay_ms, count}], each for POST /Messages unless it names method and path), GET /_test/state (counters), GET /_test/apprecs.
'use strict';
const http = require('http');
const crypto = require('crypto');
const fs = require('fs');

const publicKey = crypto.createPublicKey(fs.readFileSync(process.argv[2]));
const seenJti = new Set();
const tokens = new Map();  // access token → jwk thumbprint
const sent = [];
const inbox = [];
const apprecs = [];
let faults = [];
const state = { tokenRequests: 0, apiRequests: 0, rejected: [] };

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const json = (res, status, body, headers = {}) => {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(body === undefined ? '' : JSON.stringify(body));
};

function verifyJws(jws, key) {
  const parts = jws.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
  const payload = JSON.parse(Buffer.from(parts[1], 'base64url'));
  const signed = Buffer.from(parts[0] + '.' + parts[1]);
  const sig = Buffer.from(parts[2], 'base64url');
  const k = key || crypto.createPublicKey({ key: header.jwk, format: 'jwk' });
  let ok;
  if (header.alg === 'ES256') ok = crypto.verify('sha256', signed, { key: k, dsaEncoding: 'ieee-p1363' }, sig);
  else if (header.alg === 'RS256') ok = crypto.verify('sha256', signed, k, sig);
  else throw new Error('unsupported alg ' + header.alg);
  if (!ok) throw new Error('bad signature');
  return { header, payload };
}

function thumbprint(jwk) {
  const canon = jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return b64url(crypto.createHash('sha256').update(JSON.stringify(canon)).digest());
}

function checkDpop(req, method, url, accessToken) {
  const proof = req.headers['dpop'];
  if (!proof) throw new Error('no DPoP proof');
  const { header, payload } = verifyJws(proof);
  if (header.typ !== 'dpop+jwt') throw new Error('DPoP typ must be dpop+jwt');
  if (payload.htm !== method) throw new Error(`DPoP htm ${payload.htm} != ${method}`);
  if (payload.htu !== url) throw new Error(`DPoP htu ${payload.htu} != ${url}`);
  if (!payload.jti || seenJti.has('dpop:' + payload.jti)) throw new Error('DPoP jti missing or reused');
  seenJti.add('dpop:' + payload.jti);
  if (Math.abs(Date.now() / 1000 - payload.iat) > 300) throw new Error('DPoP iat out of range');
  if (accessToken !== undefined) {
    const ath = b64url(crypto.createHash('sha256').update(accessToken).digest());
    if (payload.ath !== ath) throw new Error('DPoP ath does not match the access token');
    if (tokens.get(accessToken) !== thumbprint(header.jwk)) throw new Error('token not bound to this DPoP key');
  }
  return header.jwk;
}

function body(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

const server = http.createServer(async (req, res) => {
  const u = new URL(req.url, `http://${req.headers.host}`);
  const base = `http://${req.headers.host}`;
  const text = await body(req);
  try {
    // ---- test controls ----
    if (u.pathname === '/_test/sent') return json(res, 200, sent);
    if (u.pathname === '/_test/apprecs') return json(res, 200, apprecs);
    if (u.pathname === '/_test/state') return json(res, 200, { ...state, sent: sent.length });
    if (u.pathname === '/_test/faults') { faults = faults.concat(JSON.parse(text)); return json(res, 204); }
    if (u.pathname === '/_test/inbox') {
      const id = crypto.randomUUID();
      inbox.push({ id, xml: text, read: false, receiverHerId: Number(u.searchParams.get('receiver') || 9900011) });
      return json(res, 201, id);
    }
    // ---- faults, for API calls ----
    // Faults hit sends (POST /Messages) unless a fault names another method and path.
    const faulted = faults.length > 0 && (faults[0].method || 'POST') === req.method &&
      (faults[0].path || '/Messages') === u.pathname;
    if (faulted) {
      const f = faults[0];
      if (--f.count <= 0) faults.shift();
      if (f.drop) { req.socket.destroy(); return; }
      if (f.delay_ms) await new Promise((r) => setTimeout(r, f.delay_ms));
      if (f.status) {
        const h = f.retry_after !== undefined ? { 'Retry-After': String(f.retry_after) } : {};
        return json(res, f.status, { errorCode: 'fake', errorMessage: f.message || `injected ${f.status}` }, h);
      }
    }
    // ---- HelseID ----
    if (u.pathname === '/connect/token' && req.method === 'POST') {
      state.tokenRequests++;
      const form = new URLSearchParams(text);
      if (form.get('grant_type') !== 'client_credentials') throw new Error('grant_type must be client_credentials');
      if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer')
        throw new Error('client_assertion_type');
      const { payload } = verifyJws(form.get('client_assertion'), publicKey);
      const now = Date.now() / 1000;
      if (payload.iss !== payload.sub || payload.iss !== form.get('client_id')) throw new Error('iss/sub/client_id');
      if (payload.aud !== `${base}/connect/token`) throw new Error('aud ' + payload.aud);
      if (!(payload.exp > now && payload.exp - now <= 61)) throw new Error('exp must be within 60 s');
      if (!payload.jti || seenJti.has(payload.jti)) throw new Error('client assertion jti missing or reused');
      seenJti.add(payload.jti);
      const jwk = checkDpop(req, 'POST', `${base}/connect/token`);
      const token = b64url(crypto.randomBytes(24));
      tokens.set(token, thumbprint(jwk));
      return json(res, 200, { access_token: token, token_type: 'DPoP', expires_in: 60, scope: form.get('scope') });
    }
    // ---- EDI 2.0 ----
    if (!u.pathname.startsWith('/Messages')) return json(res, 404, { errorMessage: 'no such path' });
    state.apiRequests++;
    const auth = req.headers['authorization'] || '';
    if (!auth.startsWith('DPoP ')) return json(res, 401, { errorMessage: 'DPoP token required' });
    const token = auth.slice(5);
    if (!tokens.has(token)) return json(res, 401, { errorMessage: 'unknown token' });
    checkDpop(req, req.method, base + u.pathname, token);
    if (req.headers['api-version'] !== '2') return json(res, 400, { errorMessage: 'api-version header must be 2' });
    if (!req.headers['nhn-source-system']) return json(res, 400, { errorMessage: 'nhn-source-system header required' });
    const seg = u.pathname.split('/').filter(Boolean);
    if (req.method === 'POST' && seg.length === 1) {
      const m = JSON.parse(text);
      if (m.contentTransferEncoding !== 'base64' || !m.businessDocument) return json(res, 400, { errorMessage: 'bad PostMessageRequest' });
      const xml = Buffer.from(m.businessDocument, 'base64').toString('utf8');
      const id = crypto.randomUUID();
      sent.push({ id, xml });
      return json(res, 201, id);
    }
    if (req.method === 'GET' && seg.length === 1) {
      const her = Number(u.searchParams.get('ReceiverHerIds'));
      return json(res, 200, inbox.filter((m) => !m.read && m.receiverHerId === her).map((m) => ({ id: m.id, receiverHerId: m.receiverHerId })));
    }
    const m = inbox.find((x) => x.id === seg[1]);
    if (req.method === 'GET' && seg[2] === 'business-document') {
      if (!m) return json(res, 404, { errorMessage: 'no message ' + seg[1] });
      return json(res, 200, { businessDocument: Buffer.from(m.xml).toString('base64'), contentType: 'application/xml', contentTransferEncoding: 'base64' });
    }
    if (req.method === 'PUT' && seg[2] === 'read') {
      if (!m) return json(res, 404, { errorMessage: 'no message ' + seg[1] });
      m.read = true;
      return json(res, 204);
    }
    if (req.method === 'POST' && seg[2] === 'apprec') {
      apprecs.push({ id: seg[1], sender: seg[3], ...JSON.parse(text) });
      return json(res, 201, crypto.randomUUID());
    }
    if (req.method === 'GET' && seg[2] === 'status') return json(res, 200, [{ receiverHerId: 9900101, transportDeliveryState: 'Acknowledged', appRecStatus: null }]);
    return json(res, 404, { errorMessage: 'no such operation' });
  } catch (e) {
    state.rejected.push(String(e.message));
    return json(res, u.pathname === '/connect/token' ? 400 : 401, { error: 'invalid_request', errorMessage: String(e.message) });
  }
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
