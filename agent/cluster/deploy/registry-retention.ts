// Retention in the cluster's registry after a good deploy (issue 15): the app's repository keeps
// the digests of the releases kept on the manager (BERTH_KEEP_RELEASES, the live one always), the
// other manifests are deleted, and a berth-managed registry is garbage-collected so the space comes
// back. GC pauses that registry for a few seconds: it runs under the same lock as pushes, and
// workers retry a pull that meets the pause. An external registry's GC is its owner's to run.
import type { ClusterRegistrySpec } from '../../../shared/spec.js';
import type { DeployRun } from '../../deploy/deploy-run.js';
import { keptImages } from '../../releases/retention.js';
import { pruneRepository, registryRunnerFor, type RegistryRunner } from '../registry/index.js';
import { registryLock } from '../registry/lock.js';

/** The digests of `images` that are in the app's repository of `registryAddress`. */
export function keptDigests(images: readonly string[], registryAddress: string, app: string): string[] {
  const prefix = `${registryAddress}/berth/${app}@`;
  return [...new Set(images.filter((i) => i.startsWith(prefix)).map((i) => i.slice(prefix.length)))];
}

const externalGc: Pick<RegistryRunner, 'collectGarbage'> = { collectGarbage: async () => 'not run: an external registry collects its own garbage' };

export async function pruneRegistry(run: DeployRun, registry: ClusterRegistrySpec): Promise<void> {
  const { store, settings, docker } = run.deps;
  // The same releases the manager keeps the images of (agent/releases/retention.ts).
  const keep = keptDigests([...keptImages(store, run.app, settings.keepReleases)], registry.address, run.app);
  // Nothing of this registry is kept (e.g. the registry changed): deleting would empty the repository.
  if (keep.length === 0) return;
  try {
    const runner = registry.serve ? registryRunnerFor(settings, docker) : externalGc;
    const report = await registryLock.run(() => pruneRepository(registry, `berth/${run.app}`, keep, runner));
    if (report.deleted.length === 0) return;
    const line = `registry: kept ${report.kept.length} image(s) of ${run.app}, deleted ${report.deleted.length}${registry.serve ? ' and collected the garbage' : ''}`;
    run.log.info({ deleted: report.deleted, kept: report.kept }, line);
    run.stream.system(line);
    run.stream.flush();
  } catch (err) {
    run.log.warn({ err }, 'could not prune the cluster registry');
  }
}
