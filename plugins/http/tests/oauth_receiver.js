// An OAuth2 token endpoint (client credentials, RFC 6749 §4.4) and a webhook that takes only the
// tokens it issued, for the http plugin's sink tests (node:http, no packages).
// usage: node oauth_receiver.js RECORD_FILE CLIENT_ID SECRET_FILE USES_PER_TOKEN
//   POST /token: HTTP Basic client_id:secret (form-encoded, RFC 6749 §2.3.1) and
//     grant_type=client_credentials -> {"access_token", "token_type": "Bearer", "expires_in": 3600};
//     a wrong client -> 401 {"error": "invalid_client"}.
//   POST /hooks/samband: 200 with a valid token; a token is revoked after USES_PER_TOKEN uses
//     (0: never), after which it is 401.
// Appends one JSON line per request to RECORD_FILE and prints "listening PORT".
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const [record, clientId, secretFile, usesArg] = process.argv.slice(2);
const secret = fs.readFileSync(secretFile, 'utf8').replace(/[\r\n]+$/, '');
const usesPerToken = Number(usesArg);
const tokens = new Map();  // token -> uses left (Infinity: never revoked)
const log = (o) => fs.appendFileSync(record, JSON.stringify(o) + '\n');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const auth = req.headers.authorization || '';
    if (req.url === '/token') {
      const m = /^Basic (.+)$/.exec(auth);
      let ok = false;
      if (m) {
        const [id, pw] = Buffer.from(m[1], 'base64').toString('utf8').split(':').map(decodeURIComponent);
        ok = id === clientId && pw === secret;
      }
      const form = new URLSearchParams(body);
      ok = ok && form.get('grant_type') === 'client_credentials' &&
           req.headers['content-type'] === 'application/x-www-form-urlencoded';
      log({path: '/token', ok, scope: form.get('scope') || ''});
      if (!ok) {
        res.writeHead(401, {'content-type': 'application/json'});
        return res.end('{"error":"invalid_client"}');
      }
      const token = crypto.randomBytes(16).toString('hex');
      tokens.set(token, usesPerToken > 0 ? usesPerToken : Infinity);
      res.writeHead(200, {'content-type': 'application/json', 'cache-control': 'no-store'});
      return res.end(JSON.stringify({access_token: token, token_type: 'Bearer', expires_in: 3600}));
    }
    const m = /^Bearer (.+)$/.exec(auth);
    const left = m ? tokens.get(m[1]) : undefined;
    const ok = left !== undefined && left > 0;
    if (ok) tokens.set(m[1], left - 1);
    log({path: req.url, ok, key: req.headers['idempotency-key'] || '', token: m ? m[1] : ''});
    res.writeHead(ok ? 200 : 401, {'content-type': 'text/plain'});
    res.end(ok ? 'ok' : 'token unknown or revoked');
  });
});
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
