#!/usr/bin/env node
// First-load JavaScript budget: the scripts index.html loads (entry + modulepreloads),
// gzipped, must stay ≤ 300 KB. Lazy screens are reported but not counted.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const dist = join(import.meta.dirname, '..', 'dist');
const BUDGET = 300 * 1024;
const html = readFileSync(join(dist, 'index.html'), 'utf8');
const first = new Set([...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]));
let firstBytes = 0;
let lazyBytes = 0;
for (const f of readdirSync(join(dist, 'assets')).filter((f) => f.endsWith('.js'))) {
  const gz = gzipSync(readFileSync(join(dist, 'assets', f)), { level: 9 }).length;
  if (first.has(`assets/${f}`)) firstBytes += gz;
  else lazyBytes += gz;
}
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
console.log(`first-load JS (gzip): ${kb(firstBytes)} of ${kb(BUDGET)}; lazy screens (gzip): ${kb(lazyBytes)}`);
if (first.size === 0) {
  console.error('no script found in dist/index.html');
  process.exit(1);
}
process.exit(firstBytes <= BUDGET ? 0 : 1);
