#!/usr/bin/env node
// An independent MLLP peer for the hl7v2 tests, built on @medplum/hl7 4.5.2 (never our code).
//
//   node medplum.js send --port P --file F [--encoding latin1]
//       sends the message in F (UTF-8 text, segments separated by \r, unframed) with
//       Hl7Client.sendAndWait, encoded on the wire as --encoding (default utf-8),
//       and prints the ACK (segments on their own lines); exits 1 on a timeout or error.
//   node medplum.js serve --port-file F --log L [--answers AE,NONE,AA] [--encoding latin1]
//       @medplum/hl7's Hl7Connection on each connection of a server on 127.0.0.1 (Hl7Server
//       itself listens on every interface), an OS-chosen port written to F once listening;
//       answers each message with the next code (AA, AE, AR, CA, CE, CR, or NONE for no answer;
//       the last repeats) via Hl7Message.buildAck, logging "MSH-10 code MSH-9" per message to L.
'use strict';
const fs = require('node:fs');
const { Hl7Message } = require('@medplum/core');
const net = require('node:net');
const { Hl7Client, Hl7Connection } = require('@medplum/hl7');

function args() {
  const out = { _: process.argv[2] };
  for (let i = 3; i < process.argv.length; i += 2) out[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
  return out;
}

async function send(a) {
  const text = fs.readFileSync(a.file, 'utf8');  // the text; the client encodes it as --encoding
  const client = new Hl7Client({ host: '127.0.0.1', port: Number(a.port), encoding: a.encoding, connectTimeout: 5000 });
  try {
    const ack = await client.sendAndWait(Hl7Message.parse(text), { timeoutMs: 20000 });
    process.stdout.write(ack.toString().split('\r').join('\n') + '\n');
  } finally {
    await client.close();
  }
}

function serve(a) {
  const answers = (a.answers || 'AA').split(',');
  let count = 0;
  const server = net.createServer((socket) => {
    const connection = new Hl7Connection(socket, a.encoding || 'utf-8');
    connection.addEventListener('message', ({ message }) => {
      const code = answers[Math.min(count, answers.length - 1)];
      count++;
      const msh = message.getSegment('MSH');
      fs.appendFileSync(a.log, `${msh.getField(10).toString()} ${code} ${msh.getField(9).toString()}\n`);
      if (code !== 'NONE') connection.send(message.buildAck({ ackCode: code }));
    });
    connection.addEventListener('error', () => {});
  });
  server.listen(0, '127.0.0.1', () => {
    const tmp = a['port-file'] + '.tmp';
    fs.writeFileSync(tmp, String(server.address().port));
    fs.renameSync(tmp, a['port-file']);
  });
  process.on('SIGTERM', () => process.exit(0));
}

const a = args();
if (a._ === 'send') {
  // Exit at once: sendAndWait leaves its timeout timer running after the ACK resolves it.
  send(a).then(() => process.exit(0), (e) => {
    process.stderr.write(`medplum send: ${e.message}\n`);
    process.exit(1);
  });
} else if (a._ === 'serve') {
  serve(a);
} else {
  process.stderr.write('usage: medplum.js send|serve …\n');
  process.exit(2);
}
