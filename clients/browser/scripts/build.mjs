// Builds the committed artefacts into the folder given as argument (dist/, or a temp folder for
// check-dist): the minified ES module bundle and the type declarations.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { resolve } from 'node:path';

const out = resolve(process.argv[2] ?? 'dist');
rmSync(out, { recursive: true, force: true }); // no stale files from renamed sources
await build({
  entryPoints: ['src/index.ts'],
  outfile: `${out}/tessera-browser.js`,
  bundle: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  legalComments: 'none',
  charset: 'utf8',
  logLevel: 'warning',
});
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json', '--outDir', out], { stdio: 'inherit' });
