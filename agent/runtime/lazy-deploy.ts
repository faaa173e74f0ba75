// The deploy runner (fetch, config, build, release, start, health, switch: git, yaml, tar-fs,
// dockerignore and every phase) loads on the first deploy order, not at agent start: an idle agent
// never needs it (docs/benchmarks.md, "Agent memory"). Imported once, then cached by the module loader.
import type { runDeploy as RunDeploy } from '../deploy/runner.js';

/** `runDeploy`, loaded on first use. */
export async function loadDeployRunner(): Promise<typeof RunDeploy> {
  return (await import('../deploy/runner.js')).runDeploy;
}

/** Run one deploy with the runner loaded on first use (same arguments as `runDeploy`). */
export const runDeployLazily: typeof RunDeploy = async (...args) => (await loadDeployRunner())(...args);
