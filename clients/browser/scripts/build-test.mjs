// The unit tests run against a readable (unminified) bundle of the same sources, in a gitignored folder.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/index.ts'],
  outfile: '.test-build/tessera-browser.js',
  bundle: true,
  format: 'esm',
  target: 'es2020',
  logLevel: 'warning',
});
