// A vendor's webhook receiver for the http plugin's tests (node:http or node:https, no packages).
// usage: node receiver.js RECORD_FILE SECRET_FILE PLAN [TLS_DIR [AUTH]]
//   PLAN: comma-separated statuses answered in turn, the last one repeated (e.g. "503,503,200");
//   a 429 carries Retry-After: 1; a status followed by "d" (e.g. "503d") carries Retry-After as an
//   HTTP date 2 s ahead; a 0 records the request and never answers (a hung receiver).
//   TLS_DIR: serve HTTPS (node:https) with TLS_DIR/server.pem and server.key, and require a client
//   certificate signed by TLS_DIR/ca.pem (mutual TLS): a client without one never gets a request in.
//   An empty TLS_DIR serves plain HTTP.
//   AUTH: "hmac" (the default, below) or "bearer": `Authorization: Bearer <secret>` instead.
// Checks the HMAC signature itself (X-Samband-Signature: t=UNIX,v1=hex(HMAC-SHA256(secret,
// t + "." + body))) and answers 401 when it is missing or wrong. Appends one JSON line per request
// to RECORD_FILE and prints "listening PORT" once bound to 127.0.0.1:0.
'use strict';
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const crypto = require('node:crypto');
const fs = require('node:fs');
const [record, secretFile, plan, tlsDir, auth = 'hmac'] = process.argv.slice(2);
const secret = fs.readFileSync(secretFile, 'utf8').trim();
const statuses = plan.split(',').map((s) => parseInt(s, 10));
const dated = plan.split(',').map((s) => s.endsWith('d'));
let n = 0;
const handler = (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const sig = req.headers['x-samband-signature'] || '';
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig);
    let ok = false;
    if (auth === 'bearer') {
      const got = Buffer.from(req.headers['authorization'] || '');
      const want = Buffer.from('Bearer ' + secret);
      ok = got.length === want.length && crypto.timingSafeEqual(got, want);
    } else if (m) {
      const want = crypto.createHmac('sha256', secret).update(m[1] + '.').update(body).digest();
      ok = crypto.timingSafeEqual(want, Buffer.from(m[2], 'hex'));
    }
    const i = Math.min(n, statuses.length - 1);
    const status = ok ? statuses[i] : 401;
    if (ok) n += 1;
    fs.appendFileSync(record, JSON.stringify({
      key: req.headers['idempotency-key'] || '', signed: ok, status,
      type: (() => { try { return JSON.parse(body).type; } catch (e) { return ''; } })(),
    }) + '\n');
    if (status === 0) return;  // hang: keep the connection open, answer nothing
    const headers = {'content-type': 'text/plain'};
    if (status === 429) headers['retry-after'] = '1';
    if (ok && dated[i]) headers['retry-after'] = new Date(Date.now() + 2000).toUTCString();
    res.writeHead(status, headers);
    res.end(status === 401 ? (auth === 'bearer' ? 'token missing or wrong' : 'signature missing or wrong') : status === 422 ? 'field subject.fnr: unknown patient' : 'ok');
  });
};
const server = tlsDir
  ? https.createServer({
    cert: fs.readFileSync(path.join(tlsDir, 'server.pem')),
    key: fs.readFileSync(path.join(tlsDir, 'server.key')),
    ca: fs.readFileSync(path.join(tlsDir, 'ca.pem')),
    requestCert: true,
    rejectUnauthorized: true,
  }, handler)
  : http.createServer(handler);
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
