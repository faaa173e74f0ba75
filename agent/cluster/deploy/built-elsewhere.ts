// A cluster deploy whose image the cluster's builder made (issue 15, `berth cluster builder`): the
// manager's continuation order carries the pushed digest, the app config and the web port. Nothing is
// fetched or built here; the manager pulls the digest (the release command runs it, and a later
// rollback needs it on this engine) and goes on with releasing → starting → … → done.
import type Docker from 'dockerode';
import type { BuiltElsewhere } from '../../../shared/cluster-build.js';
import type { ClusterRegistrySpec } from '../../../shared/spec.js';
import type { DeployRun } from '../../deploy/deploy-run.js';
import type { Prepared } from '../../deploy/prepare.js';
import { snapshotConfig } from '../../deploy/rollback.js';
import { engineMessage } from '../swarm.js';
import { followEngine, registryAuth } from './registry-push.js';
import { ClusterDeployError } from './service-spec.js';

/** What the continuation deploys: the builder's image and config, with this order's env. */
export function prepareBuilt(run: DeployRun, built: BuiltElsewhere, registry: ClusterRegistrySpec): Prepared {
  // Pulled and run with the registry's credentials: only this app's repository in this cluster's registry.
  const expected = `${registry.address}/berth/${run.app}@sha256:`;
  if (!built.image.startsWith(expected)) throw new ClusterDeployError(`the build on ${built.builder} reported ${built.image}, not an image of ${expected.slice(0, -8)}`);
  const config = snapshotConfig(built.config);
  if (!config) throw new ClusterDeployError(`the build on ${built.builder} reported no usable app config`);
  run.stream.system(`built on ${built.builder}: ${built.image} (commit ${built.commit.slice(0, 12)}); nothing is fetched or built on this manager`);
  return { image: built.image, staticRoot: null, port: built.containerPort ?? undefined, config, env: run.env, commit: built.commit };
}

/** The image on this engine: pulled by digest from the cluster's registry (with its credentials) when missing. */
export async function ensureImage(docker: Docker, o: { image: string; registry: ClusterRegistrySpec; log: (line: string) => void; signal: AbortSignal }): Promise<void> {
  const present = await docker
    .getImage(o.image)
    .inspect()
    .then(() => true, () => false);
  if (present) return;
  o.log(`pulling ${o.image}`);
  const auth = registryAuth(o.registry);
  try {
    const stream = (await docker.pull(o.image, { abortSignal: o.signal, ...(auth ? { authconfig: auth } : {}) })) as NodeJS.ReadableStream;
    await followEngine(docker, stream);
  } catch (err) {
    o.signal.throwIfAborted();
    throw new ClusterDeployError(`pulling ${o.image} from ${o.registry.address} failed: ${engineMessage(err)}`);
  }
  o.log(`pulled ${o.image}`);
}
