// Rebuilds into a temp folder and fails if the committed dist/ differs: the Rust server embeds
// dist/tessera-browser.js, so a source change without a rebuild would ship stale code.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const files = (dir) => readdirSync(dir, { recursive: true, withFileTypes: true })
  .filter((d) => d.isFile())
  .map((d) => join(d.parentPath ?? d.path, d.name).slice(dir.length + 1))
  .sort();
const tmp = mkdtempSync(join(tmpdir(), 'tessera-dist-'));
try {
  execFileSync(process.execPath, ['scripts/build.mjs', tmp], { stdio: 'inherit' });
  const want = files(tmp);
  const have = files('dist');
  const diff = [...new Set([...want, ...have])].filter(
    (f) => !want.includes(f) || !have.includes(f) || !readFileSync(join(tmp, f)).equals(readFileSync(join('dist', f))),
  );
  if (diff.length) {
    console.error(`dist/ is stale (run npm run build): ${diff.join(', ')}`);
    process.exit(1);
  }
  console.log(`dist/ matches a fresh build (${want.length} files)`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
