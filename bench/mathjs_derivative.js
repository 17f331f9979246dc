// math.js `derivative` over the expressions of a JSON file: the Node baseline of bench/run.py.
// Usage: node bench/mathjs_derivative.js expressions.json  ->  {"count": N, "seconds": S, ...}
// Each entry is [text, variable]; every expression is parsed and differentiated once (the text
// path a caller of math.js takes), and the result printed with toString(), as chainrule returns text.
'use strict';
const fs = require('fs');
const { derivative } = require('mathjs');

const entries = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const simplify = process.argv[3] !== 'nosimplify';
// Warm the JIT on other expressions than the timed ones.
for (let k = 0; k < 20; k += 1) derivative(`sin(${k + 2}*x)^2 + x^3`, 'x').toString();
let failed = 0;
const start = process.hrtime.bigint();
for (const [text, variable] of entries) {
  try {
    derivative(text, variable, { simplify }).toString();
  } catch (error) {
    failed += 1;
  }
}
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
const mathjs = require('mathjs/package.json');
console.log(JSON.stringify({ count: entries.length, failed, seconds, simplify, version: mathjs.version }));
