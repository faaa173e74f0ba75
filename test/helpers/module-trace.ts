// Preload (`NODE_OPTIONS=--import …/module-trace.js`, with BERTH_TRACE_MODULES=FILE): on SIGUSR2 the
// process writes every module it has loaded so far to FILE — ES modules as the loader hook below saw
// them, CommonJS files from the require cache — one path or URL a line. Only observes; loads nothing.
import { appendFileSync, writeFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const out = process.env.BERTH_TRACE_MODULES;
if (out) {
  writeFileSync(`${out}.esm`, '');
  register(new URL('./module-trace-hooks.js', import.meta.url));
  const require = createRequire(import.meta.url);
  process.on('SIGUSR2', () => {
    // An entry Node's loader did not fill (no `paths`: a stand-in put there by agent/docker/client.ts
    // until first use) is listed with " (stand-in)": the module's own code has not run.
    const cjs = Object.entries(require.cache).map(([path, mod]) => (mod?.paths ? path : `${path} (stand-in)`));
    appendFileSync(out, [...cjs, ''].join('\n'));
  });
}
