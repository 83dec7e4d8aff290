// An EPJ vendor's client for the http plugin's source tests (node:http, no packages).
// usage: node sender.js URL SECRET_FILE BODY_FILE SIGNATURE [IDEMPOTENCY_KEY]
//   SIGNATURE: "good" (t=UNIX,v1=hex(HMAC-SHA256(secret, t + "." + body))), "wrong" (signed with
//   another key) or "none". Prints "STATUS BODY" on one line.
'use strict';
const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const [url, secretFile, bodyFile, signature, key] = process.argv.slice(2);
const secret = fs.readFileSync(secretFile, 'utf8').trim();
const body = fs.readFileSync(bodyFile);
const headers = {'content-type': 'application/json', 'content-length': body.length};
if (key) headers['idempotency-key'] = key;
if (signature !== 'none') {
  const t = Math.floor(Date.now() / 1000).toString();
  const k = signature === 'good' ? secret : secret + 'x';
  const mac = crypto.createHmac('sha256', k).update(t + '.').update(body).digest('hex');
  headers['x-samband-signature'] = 't=' + t + ',v1=' + mac;
}
const req = http.request(url, {method: 'POST', headers}, (res) => {
  const chunks = [];
  res.on('data', (c) => chunks.push(c));
  res.on('end', () => console.log(res.statusCode + ' ' + Buffer.concat(chunks).toString().trim()));
});
req.on('error', (e) => { console.log('0 ' + e.message); });
req.end(body);
