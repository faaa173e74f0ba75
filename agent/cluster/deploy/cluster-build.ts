// A build-only order on the cluster's builder (issue 15, `berth cluster builder`): fetching →
// building (with the build's memory/CPU caps, as everywhere), the image pushed to the cluster's
// registry, then `done` reported with the pushed digest, the app config and the web port. The control
// plane hands those to the manager's agent, which releases, starts and switches from the digest.
import type { DeployOrder } from '../../../shared/protocol.js';
import type { ClusterRegistrySpec } from '../../../shared/spec.js';
import { imagePort } from '../../docker/containers.js';
import { DeployRun, type RunnerDeps } from '../../deploy/deploy-run.js';
import { endFailedDeploy } from '../../deploy/failure.js';
import { prepareBuild } from '../../deploy/prepare.js';
import type { RunOutcome } from '../../deploy/queue.js';
import { releaseProcesses } from '../../deploy/start-phase.js';
import { registryLock } from '../registry/lock.js';
import { pushImage } from './registry-push.js';
import { ClusterDeployError } from './service-spec.js';

/** The registry a build for `order`'s cluster pushes to, or why this server cannot build for it. */
export function builderRegistry(deps: RunnerDeps, order: DeployOrder): ClusterRegistrySpec {
  const name = order.app.cluster!;
  const cluster = deps.cluster?.();
  if (!cluster || cluster.name !== name) throw new ClusterDeployError(`this server is not a node of cluster ${name}: it cannot build for it`);
  if (!cluster.registry) throw new ClusterDeployError(`cluster ${name} has no registry yet (berth cluster registry ${name} …)`);
  return cluster.registry;
}

export async function runClusterBuild(deps: RunnerDeps, order: DeployOrder, signal: AbortSignal): Promise<RunOutcome> {
  const run = new DeployRun(deps, order, signal);
  try {
    const registry = builderRegistry(deps, order);
    const here = deps.settings.server || 'this server';
    run.stream.system(`building on ${here}, the builder of cluster ${order.app.cluster}: the manager releases and starts the pushed image`);
    const prepared = await prepareBuild(run, {
      push: (image, s) => registryLock.run(() => pushImage(deps.docker, { image, app: run.app, deploymentId: run.id, registry, log: (l) => run.stream.system(l), signal: s })),
    });
    run.commit = prepared.commit;
    if (!prepared.image || !prepared.localImage) throw new ClusterDeployError('a static site cannot run in a cluster yet: deploy it to a server');
    const web = releaseProcesses(prepared.config).some((p) => p.name === 'web');
    const containerPort = web ? await imagePort(deps.docker, prepared.localImage, prepared.port) : null;
    run.built = { image: prepared.image, config: { ...prepared.config, notes: [] }, containerPort };
    // The image and its layers stay on the builder: the next build's cache.
    deps.store.deploys.clearBuildImages(run.id);
    run.stream.system(`built on ${here} and pushed: the manager deploys ${prepared.image}`);
    run.transition('done');
  } catch (err) {
    await endFailedDeploy(run, err);
  }
  return {};
}
