// A cluster app's deploy, run by the cluster manager's agent with the standalone state machine and
// journal: fetching → building (then the image is pushed to the cluster's registry and referred to
// by digest) → releasing (the release command once, on this manager, on the app's overlay network)
// → starting (one new Swarm service per process) → health_checking (berth's own gate on every new
// task) → switching (the manager's nginx to every healthy web task) → done; the previous release's
// services go after the drain delay. Any failure removes the services this deploy created and leaves
// the live release and nginx as they were. Swarm's own update and rollback are never used: a berth
// rollback (or `berth scale`) starts new services from a kept release's digest, through the same gate.
// With a builder node (`berth cluster builder`), the builder runs fetching → building + push
// (cluster-build.ts) and this manager gets the same deployment with the pushed digest
// (built-elsewhere.ts): releasing → … → done from it, nothing fetched or built here.
import type { DeployOrder } from '../../../shared/protocol.js';
import type { ClusterRegistrySpec, ClusterSpec } from '../../../shared/spec.js';
import type Docker from 'dockerode';
import { bestEffort, oneLine, sleep } from '../../../shared/util/index.js';
import { imagePort } from '../../docker/containers.js';
import { DeployRun, NEVER, type RunnerDeps } from '../../deploy/deploy-run.js';
import { endFailedDeploy } from '../../deploy/failure.js';
import { healthBudgetMs } from '../../deploy/health-phase.js';
import { keepForRollback } from '../../deploy/live-release.js';
import { prepareBuild, type Prepared } from '../../deploy/prepare.js';
import { prepareRollback } from '../../deploy/rollback.js';
import { pruneAfterDeploy } from '../../deploy/drain.js';
import { registryLock } from '../registry/lock.js';
import { pruneRegistry } from './registry-retention.js';
import type { RunOutcome } from '../../deploy/queue.js';
import { applyScale } from '../../deploy/scale.js';
import { releaseProcesses } from '../../deploy/start-phase.js';
import type { ReleaseProcess } from '../../store/index.js';
import { pushImage, registryAuth } from './registry-push.js';
import { ensureImage, prepareBuilt } from './built-elsewhere.js';
import { runClusterBuild } from './cluster-build.js';
import { releasePhase } from '../../deploy/release-phase.js';
import { appNetworkName, ClusterDeployError, serviceLabels, serviceSpec } from './service-spec.js';
import { createService, ensureAppNetwork, listAppServices, listNodes, localNodeId, placementFor, removeServices, waitTasksRunning } from './services.js';
import { writeStackFiles } from './stack-file.js';
import { checkTaskHealth } from './task-health.js';
import type { ExpectedService } from './task-state.js';
import { serversOf, type TaskEndpoint } from './upstream-plan.js';
import { volumeMounts, ensureVolumes } from '../../docker/volumes.js';

/** The cluster and registry a deploy of `order` needs on this server, or why it cannot run here. */
export function clusterFor(deps: RunnerDeps, order: DeployOrder): { cluster: ClusterSpec; registry: ClusterRegistrySpec } {
  const name = order.app.cluster!;
  const cluster = deps.cluster?.();
  if (!cluster || cluster.name !== name || cluster.role !== 'manager') {
    throw new ClusterDeployError(`this server is not the manager of cluster ${name}: a cluster app is deployed by its cluster's manager`);
  }
  if (!cluster.registry) throw new ClusterDeployError(`cluster ${name} has no registry yet (berth cluster registry ${name} …)`);
  return { cluster, registry: cluster.registry };
}

export async function runClusterDeploy(deps: RunnerDeps, order: DeployOrder, signal: AbortSignal, closing: AbortSignal): Promise<RunOutcome> {
  // On the cluster's builder: fetch, build and push only (cluster-build.ts).
  if (order.buildOnly) return runClusterBuild(deps, order, signal);
  const run = new DeployRun(deps, order, signal);
  const created: ExpectedService[] = [];
  const specs: Docker.CreateServiceOptions[] = [];
  try {
    const { cluster, registry } = clusterFor(deps, order);
    const network = appNetworkName(run.app);
    const server = deps.settings.server || undefined;
    const networkLabels = serviceLabels({ app: run.app, cluster: cluster.name, deploymentId: run.id, server }, 'network');
    const prepared = await prepare(run, registry, async () => (await ensureAppNetwork(deps.docker, network, networkLabels), network));
    run.commit = prepared.commit;
    // A static site is served from disk by the manager's nginx, as standalone: no services.
    run.staticRoot = prepared.staticRoot;
    const staticSite = !!prepared.staticRoot;
    if (!prepared.image && !staticSite) throw new ClusterDeployError('the build made no image');
    const processes = applyScale(staticSite ? [] : releaseProcesses(prepared.config), order.app.scale, { rescale: order.rescale === true, staticSite, log: (l) => run.stream.system(l) });
    const web = processes.some((p) => p.name === 'web');
    // Built on the builder: its engine read the port from the image (this one pulls it when starting).
    const containerPort = !web ? null : order.built ? order.built.containerPort : await imagePort(deps.docker, prepared.localImage ?? prepared.image!, prepared.port);
    const domains = deps.domainsFor(order.app);

    if (staticSite) await run.runPhase('starting', {}, async () => run.stream.system('a static site: served from disk by the manager, no services'));
    else await startServices(run, { cluster, registry, prepared, processes, containerPort, network, networkLabels, created, specs });
    const endpoints = await healthGate(run, prepared, created, containerPort, domains);
    signal.throwIfAborted();
    await switchToRelease(run, { prepared, processes, containerPort, endpoints, domains });
    keepForRollback(run, prepared, processes, containerPort);
    if (!staticSite) await writeStack(run, cluster.name, specs);
    run.stream.system(servingLine(run, domains, endpoints));
    run.transition('done');
    return { drain: drainOldServices(run, closing).then(() => (closing.aborted ? undefined : retention(run, registry))) };
  } catch (err) {
    await bestEffort(
      'removing the services of the failed deploy',
      removeServices(
        deps.docker,
        created.map((s) => s.id),
      ),
      { logger: run.log },
    );
    if (created.length > 0) run.stream.system(`removed ${created.length} service(s) of this deploy`);
    await endFailedDeploy(run, err);
    return {};
  }
}

/**
 * What the deploy runs: a kept release (a rollback or `berth scale`: its digest, config and env;
 * nothing built or pushed), the image the cluster's builder pushed (releasing from it here), or a
 * build on this manager (fetching → building + push → releasing).
 */
async function prepare(run: DeployRun, registry: ClusterRegistrySpec, network: (signal: AbortSignal) => Promise<string>): Promise<Prepared> {
  const { order, deps } = run;
  if (order.rollbackOf) return prepareRollback(run, order.rollbackOf, order.rescale === true);
  if (order.built) {
    const prepared = prepareBuilt(run, order.built, registry);
    if (prepared.config.release) {
      const pull = (signal: AbortSignal) => ensureImage(deps.docker, { image: prepared.image!, registry, log: (l) => run.stream.system(l), signal });
      await releasePhase(run, { image: prepared.image!, config: prepared.config, commit: prepared.commit, network: await network(run.signal), before: pull });
    }
    return prepared;
  }
  return prepareBuild(run, {
    push: (image, s) => registryLock.run(() => pushImage(deps.docker, { image, app: run.app, deploymentId: run.id, registry, log: (l) => run.stream.system(l), signal: s })),
    network,
  });
}

interface StartInput {
  cluster: ClusterSpec;
  registry: ClusterRegistrySpec;
  prepared: Prepared;
  processes: ReleaseProcess[];
  containerPort: number | null;
  network: string;
  networkLabels: Record<string, string>;
  /** Filled with each service as soon as it exists, so a failure can remove it. */
  created: ExpectedService[];
  /** The created services' specs (stack.yml is rendered from them). */
  specs: Docker.CreateServiceOptions[];
}

/** starting: the app's network, then one service per process with replicas (volumes pinned to this node). */
function startServices(run: DeployRun, o: StartInput): Promise<void> {
  const { docker, settings } = run.deps;
  const { app, id, stream } = run;
  return run.runPhase('starting', { image: o.prepared.image! }, async (signal) => {
    await ensureAppNetwork(docker, o.network, o.networkLabels);
    // Built on the builder: the manager keeps the image too (a later rollback starts from it here).
    if (run.order.built) await ensureImage(docker, { image: o.prepared.image!, registry: o.registry, log: (l) => stream.system(l), signal });
    const [nodes, managerNodeId] = await Promise.all([listNodes(docker), localNodeId(docker)]);
    const volumes = volumeMounts(app, o.prepared.config.volumes);
    if (volumes.length > 0) await ensureVolumes(docker, app, o.prepared.config.volumes, settings.server || undefined);
    const auth = registryAuth(o.registry);
    for (const p of o.processes) {
      if (p.scale === 0) continue;
      signal.throwIfAborted();
      const placement = placementFor(nodes, volumes.length > 0, managerNodeId);
      const spec = serviceSpec({ app, cluster: o.cluster.name, server: settings.server || undefined, deploymentId: id, process: p, imageRef: o.prepared.image!, env: run.env, containerPort: o.containerPort, network: o.network, placement, volumes, stopGraceS: settings.stopGraceS });
      const serviceId = await createService(docker, spec, auth);
      o.created.push({ id: serviceId, process: p.name, replicas: p.scale });
      o.specs.push(spec);
      stream.system(`created service ${spec.Name} (${p.scale} task${p.scale === 1 ? '' : 's'}, ${placement.kind === 'workers' ? 'on workers' : placement.kind === 'node' ? 'on this manager: it has volumes' : 'on any node'})`);
    }
    if (o.created.length === 0) stream.system('no processes to start');
  });
}

/** health_checking: every task running (fail fast, naming the task's error), then berth's probes. */
async function healthGate(run: DeployRun, prepared: Prepared, created: ExpectedService[], containerPort: number | null, domains: string[]): Promise<TaskEndpoint[]> {
  const { docker, settings } = run.deps;
  const hc = prepared.config.healthcheck;
  // Workers pull the image first: the start timeout is added to the gate's own budget.
  run.healthBudgetMs = settings.startTimeoutMs + healthBudgetMs({ healthcheck: hc, timeoutMs: settings.healthTimeoutMs, stableMs: settings.healthStableMs });
  return run.runPhase('health_checking', {}, async (signal) => {
    if (created.length === 0) return [];
    const log = (l: string) => run.stream.system(l);
    await waitTasksRunning(docker, created, { timeoutMs: settings.startTimeoutMs, signal, log });
    log('every task is running');
    const endpoints = await checkTaskHealth(docker, created, {
      healthcheck: hc,
      timeoutMs: settings.healthTimeoutMs,
      stableMs: settings.healthStableMs,
      intervalMs: settings.healthIntervalMs,
      host: domains[0],
      containerPort,
      log,
      signal,
    });
    log('health check passed');
    return endpoints;
  });
}

/** What the deploy log says the release serves. */
function servingLine(run: DeployRun, domains: string[], endpoints: TaskEndpoint[]): string {
  const commit = run.commit?.slice(0, 12) ?? '?';
  if (run.staticRoot) return domains.length > 0 ? `now serving ${domains.join(', ')} from commit ${commit} (static site, from the manager's disk)` : `release ${run.id} is live (the app has no domains yet)`;
  return domains.length > 0 && endpoints.length > 0
    ? `now serving ${domains.join(', ')} from commit ${commit} on ${endpoints.length} task(s): ${serversOf(endpoints).join(', ')}`
    : `release ${run.id} is live${endpoints.length > 0 ? ' (the app has no domains yet)' : ' (no web process: nothing is routed)'}`;
}

/** switching: recorded as the live release, then the manager's nginx routes to every healthy web task (a static site: to its files). */
function switchToRelease(run: DeployRun, o: { prepared: Prepared; processes: ReleaseProcess[]; containerPort: number | null; endpoints: TaskEndpoint[]; domains: string[] }): Promise<void> {
  const { store, nginx } = run.deps;
  const servers = serversOf(o.endpoints);
  const firstPort = Number(servers[0]?.slice(servers[0].lastIndexOf(':') + 1) ?? 0);
  return run.runPhase(
    'switching',
    {},
    async () => {
      run.switched.previous = store.releases.activate({
        app: run.app,
        deploymentId: run.id,
        image: o.prepared.image ?? '',
        containerId: '',
        hostPort: firstPort,
        containerPort: o.containerPort,
        commit: run.commit ?? null,
        processes: o.processes,
        staticRoot: o.prepared.staticRoot,
        env: run.env,
        volumes: o.prepared.config.volumes ?? {},
      });
      run.switched.activated = true;
      const site = o.prepared.staticRoot ? { domains: o.domains, staticRoot: o.prepared.staticRoot } : servers.length > 0 ? { domains: o.domains, upstreamPort: firstPort, upstreamServers: servers } : null;
      await nginx.applyApp(run.app, o.domains.length > 0 ? site : null);
    },
    NEVER,
  );
}

/** DATA/apps/APP/stack.yml (and stack.env) say what runs now; a failure to write them is logged, the deploy stands. */
async function writeStack(run: DeployRun, cluster: string, services: Docker.CreateServiceOptions[]): Promise<void> {
  try {
    const { stackFile } = await writeStackFiles(run.deps.settings.dataDir, { app: run.app, cluster, deploymentId: run.id, commit: run.commit ?? null, env: run.env, services });
    run.log.info({ stackFile }, 'wrote the stack file');
  } catch (err) {
    run.log.warn({ err }, 'could not write stack.yml');
    run.stream.system(`could not write stack.yml: ${oneLine(err)}`);
  }
}

/** After the drain: the manager's images and the registry's manifests beyond the kept releases go. */
async function retention(run: DeployRun, registry: ClusterRegistrySpec): Promise<void> {
  await pruneAfterDeploy(run);
  await pruneRegistry(run, registry);
}

/**
 * After the drain delay, the services of the app's other releases go. They are listed NOW, before
 * the delay: the next deploy of the app may start meanwhile, and its new services are not old.
 */
async function drainOldServices(run: DeployRun, closing: AbortSignal): Promise<void> {
  const { docker, settings, store } = run.deps;
  try {
    const before = (await listAppServices(docker, run.app)).filter((s) => s.release !== run.id);
    if (before.length === 0) return;
    await sleep(settings.drainMs, closing);
    if (closing.aborted) return;
    // A rollback may have made one of them live again meanwhile.
    const live = store.releases.get(run.app)?.deploymentId;
    const old = before.filter((s) => s.release !== live);
    await removeServices(
      docker,
      old.map((s) => s.id),
    );
    for (const s of old) run.log.info(`removed service ${s.name} of deployment ${s.release}`);
  } catch (err) {
    run.log.warn({ err }, 'could not remove the previous release services');
  }
}
