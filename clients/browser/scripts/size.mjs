// Fails when the minified bundle reaches 5 KiB gzipped (the budget in issue #17).
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const LIMIT = 5120;
const size = gzipSync(readFileSync('dist/tessera-browser.js'), { level: 9 }).length;
console.log(`dist/tessera-browser.js: ${size} bytes minified+gzipped (limit < ${LIMIT})`);
if (size >= LIMIT) {
  console.error('bundle too large');
  process.exit(1);
}
