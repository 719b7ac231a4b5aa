// Validates FHIR R4 NDJSON (or one Bundle per line) from stdin against the
// official HL7 FHIR R4 JSON schema, via @asymmetrik/fhir-json-schema-validator.
const readline = require('readline');
const Validator = require('@asymmetrik/fhir-json-schema-validator');
const v = new Validator();
let n = 0, bad = 0;
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) return;
  n++;
  const res = JSON.parse(line);
  const errs = v.validate(res, true);
  if (errs.length) { bad++; if (bad <= 5) console.log(n, res.resourceType, JSON.stringify(errs.slice(0, 3))); }
});
rl.on('close', () => { console.log(`${n} resources, ${bad} invalid (FHIR R4 JSON schema)`); process.exit(bad ? 1 : 0); });
