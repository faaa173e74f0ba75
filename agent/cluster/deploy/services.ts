// A cluster release's Swarm objects through the manager's engine: the app's overlay network, one
// service per process, their tasks and the swarm's nodes, and removing services. Only services
// labelled berth.managed + berth.app are ever listed or removed.
import type Docker from 'dockerode';
import { sleep } from '../../../shared/util/index.js';
import { LABEL } from '../../docker/labels.js';
import { engineMessage } from '../swarm.js';
import { ClusterDeployError, CLUSTER_LABEL, type Placement } from './service-spec.js';
import { classifyTasks, type ExpectedService, type SwarmNode, type SwarmTask } from './task-state.js';

/** A berth service of an app, as listed. */
export interface AppService {
  id: string;
  name: string;
  process: string;
  release: string;
}

export async function listNodes(docker: Docker): Promise<SwarmNode[]> {
  try {
    return (await docker.listNodes()) as SwarmNode[];
  } catch (err) {
    throw new ClusterDeployError(`could not list the swarm's nodes (is this server the cluster's manager?): ${engineMessage(err)}`);
  }
}

/** This engine's node id in the swarm. */
export async function localNodeId(docker: Docker): Promise<string> {
  const info = (await docker.info()) as { Swarm?: { NodeID?: string } };
  const id = info.Swarm?.NodeID ?? '';
  if (!id) throw new ClusterDeployError('this server is not in a swarm');
  return id;
}

/** Workers when the swarm has ready, active ones; a process with volumes stays on this (the manager's) node. */
export function placementFor(nodes: readonly SwarmNode[], hasVolumes: boolean, managerNodeId: string): Placement {
  if (hasVolumes) return { kind: 'node', nodeId: managerNodeId };
  const workers = nodes.filter((n) => n.Spec?.Role === 'worker' && n.Status?.State === 'ready' && n.Spec?.Availability === 'active');
  return workers.length > 0 ? { kind: 'workers' } : { kind: 'any' };
}

/** The app's attachable overlay network (services and the release command), created once. */
export async function ensureAppNetwork(docker: Docker, name: string, labels: Record<string, string>): Promise<void> {
  const existing = await docker.listNetworks({ filters: { name: [name] } });
  const same = existing.find((n) => n.Name === name);
  if (same) {
    if (same.Labels?.[LABEL.managed] !== 'true') throw new ClusterDeployError(`a network named ${name} exists and is not berth's`);
    return;
  }
  try {
    await docker.createNetwork({ Name: name, Driver: 'overlay', Attachable: true, Labels: labels });
  } catch (err) {
    throw new ClusterDeployError(`could not create the overlay network ${name}: ${engineMessage(err)}`);
  }
}

/** Create a service; the registry credentials go in X-Registry-Auth so every node can pull. */
export async function createService(docker: Docker, spec: Docker.CreateServiceOptions, auth: Docker.AuthConfig | undefined): Promise<string> {
  try {
    // dockerode: createService(auth, opts) sends `auth` as X-Registry-Auth.
    const created = (await docker.createService(auth ?? {}, spec)) as { ID?: string; id?: string };
    const id = created.ID ?? created.id;
    if (!id) throw new Error('no service id in the answer');
    return id;
  } catch (err) {
    throw new ClusterDeployError(`could not create service ${spec.Name}: ${engineMessage(err)}`);
  }
}

export async function listAppServices(docker: Docker, app: string): Promise<AppService[]> {
  const list = (await docker.listServices({ filters: { label: [`${LABEL.managed}=true`, `${LABEL.app}=${app}`] } })) as Array<{ ID: string; Spec?: { Name?: string; Labels?: Record<string, string> } }>;
  return list
    .filter((s) => s.Spec?.Labels?.[LABEL.app] === app && s.Spec?.Labels?.[LABEL.managed] === 'true')
    .map((s) => ({ id: s.ID, name: s.Spec?.Name ?? s.ID, process: s.Spec?.Labels?.[LABEL.process] ?? '', release: s.Spec?.Labels?.[CLUSTER_LABEL.release] ?? '' }));
}

export async function listServiceTasks(docker: Docker, serviceIds: readonly string[]): Promise<SwarmTask[]> {
  if (serviceIds.length === 0) return [];
  return (await docker.listTasks({ filters: { service: [...serviceIds] } })) as SwarmTask[];
}

/** Remove services (already gone is fine); the first other failure is reported after trying all. */
export async function removeServices(docker: Docker, ids: readonly string[]): Promise<void> {
  let first: Error | null = null;
  for (const id of ids) {
    try {
      await docker.getService(id).remove();
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) continue;
      first ??= new ClusterDeployError(`could not remove service ${id}: ${engineMessage(err)}`);
    }
  }
  if (first) throw first;
}

/**
 * Wait until every desired task of `services` runs; fail fast on a failed, rejected or unplaceable
 * task, naming its error and node. Resolves with the running tasks.
 */
export async function waitTasksRunning(
  docker: Docker,
  services: readonly ExpectedService[],
  o: { timeoutMs: number; signal: AbortSignal; log: (line: string) => void },
): Promise<SwarmTask[]> {
  const deadline = Date.now() + o.timeoutMs;
  let last = '';
  for (;;) {
    o.signal.throwIfAborted();
    const [tasks, nodes] = await Promise.all([listServiceTasks(docker, services.map((s) => s.id)), listNodes(docker)]);
    const verdict = classifyTasks(services, tasks, nodes);
    if (verdict.state === 'failed') throw new ClusterDeployError(verdict.error);
    if (verdict.state === 'running') return verdict.tasks;
    if (verdict.detail !== last) o.log(`waiting for tasks: ${verdict.detail}`);
    last = verdict.detail;
    if (Date.now() > deadline) throw new ClusterDeployError(`tasks did not all start within ${Math.round(o.timeoutMs / 1000)} s (${verdict.detail})`);
    await sleep(500, o.signal);
  }
}
