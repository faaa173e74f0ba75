// The yaml package (≈70 modules) loads when a docker-compose.yml is first written, not at agent start
// (docs/benchmarks.md, "Agent memory"). Synchronous on purpose: rendering the file stays a plain
// function. yaml ships CommonJS next to its ESM build, so require() gives the same API.
import { createRequire } from 'node:module';
import type YamlModule from 'yaml';

const require = createRequire(import.meta.url);
let loaded: typeof YamlModule | undefined;

/** The yaml package, loaded on first use. */
export function yaml(): typeof YamlModule {
  return (loaded ??= require('yaml') as typeof YamlModule);
}
