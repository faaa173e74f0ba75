// `berth status` on a node of a cluster (issue 15): its role, whether its engine is in the swarm
// and sees its managers, and — on a manager, the only place Swarm answers it — every node's state.
// Asked of the engine each time: the swarm changes without the agent (a node dies, one rejoins).
import type Docker from 'dockerode';
import type { SwarmNodeState } from '../../shared/protocol.js';
import type { ClusterSpec, ServerSpec } from '../../shared/spec.js';
import type { Release } from '../store/index.js';
import type { ClusterTaskState } from './report.js';

export interface ClusterStatus {
  name: string;
  role: ClusterSpec['role'];
  /** The engine's own view: inactive | pending | active | error | locked ('unknown': Docker could not be asked). */
  swarmState: string;
  /** The engine's error with the swarm (e.g. it cannot reach a manager); null: none. */
  swarmError: string | null;
  /** Managers this node knows of, and how many of them are reachable (managers only; null on workers). */
  managers: number | null;
  /** Every node (managers only: workers cannot list them); null on workers or when it could not be read. */
  nodes: SwarmNodeState[] | null;
  /** healthy: in the swarm and (on a manager) every node ready; degraded: some node is not; down: this node is not in the swarm. */
  health: 'healthy' | 'degraded' | 'down' | 'unknown';
}

interface SwarmInfo {
  LocalNodeState?: string;
  Error?: string;
  ControlAvailable?: boolean;
  Managers?: number;
}

/** Pure: the health word from what the engine said. */
export function clusterHealth(swarmState: string, nodes: SwarmNodeState[] | null): ClusterStatus['health'] {
  if (swarmState === 'unknown') return 'unknown';
  if (swarmState !== 'active') return 'down';
  if (nodes && nodes.some((n) => n.state !== 'ready' || (n.role === 'manager' && n.managerReachability !== 'reachable'))) return 'degraded';
  return 'healthy';
}

export async function clusterStatus(docker: Docker, spec: ClusterSpec | undefined): Promise<ClusterStatus | null> {
  if (!spec) return null;
  let swarm: SwarmInfo = {};
  let swarmState = 'unknown';
  try {
    swarm = ((await docker.info()) as { Swarm?: SwarmInfo }).Swarm ?? {};
    swarmState = swarm.LocalNodeState || 'inactive';
  } catch {
    // Docker cannot be asked: the report's dockerError says so
  }
  let nodes: SwarmNodeState[] | null = null;
  // Loaded here: a standalone agent never loads cluster code (test/agent-start-modules.test.ts).
  if (swarm.ControlAvailable) nodes = await import('../cluster/swarm.js').then(({ inspectNodes }) => inspectNodes(docker)).catch(() => null);
  return {
    name: spec.name,
    role: spec.role,
    swarmState,
    swarmError: swarm.Error ? swarm.Error.split('\n')[0]!.slice(0, 300) : null,
    managers: swarm.ControlAvailable ? (swarm.Managers ?? null) : null,
    nodes,
    health: clusterHealth(swarmState, nodes),
  };
}

/**
 * On a cluster's manager: the tasks Swarm wants running for each cluster app's live release, by app
 * (wherever they run: only the manager's engine can list them). Undefined elsewhere or when Swarm
 * cannot be asked (the report then says `unknown`).
 */
export async function clusterAppTasks(docker: Docker, spec: ServerSpec | undefined, releases: readonly Release[]): Promise<Record<string, ClusterTaskState[]> | undefined> {
  const cluster = spec?.cluster;
  if (!spec || cluster?.role !== 'manager') return undefined;
  const apps = spec.apps.filter((a) => a.cluster === cluster.name);
  if (apps.length === 0) return undefined;
  try {
    // Loaded here: a standalone agent never loads cluster code (test/agent-start-modules.test.ts).
    const [{ listAppServices, listNodes, listServiceTasks }, { nodeLabel }] = await Promise.all([import('../cluster/deploy/services.js'), import('../cluster/deploy/task-state.js')]);
    const nodes = await listNodes(docker);
    const out: Record<string, ClusterTaskState[]> = {};
    for (const app of apps) {
      const live = releases.find((r) => r.app === app.name)?.deploymentId;
      const services = live ? (await listAppServices(docker, app.name)).filter((s) => s.release === live) : [];
      const tasks = await listServiceTasks(
        docker,
        services.map((s) => s.id),
      );
      out[app.name] = tasks.flatMap((t) => {
        const svc = services.find((s) => s.id === t.ServiceID);
        if (!svc || t.DesiredState !== 'running') return [];
        return [{ process: svc.process, name: `${svc.name}.${t.Slot ?? t.ID.slice(0, 12)}`, slot: t.Slot ?? 0, node: nodeLabel(nodes, t.NodeID), state: t.Status?.State ?? 'unknown' }];
      });
    }
    return out;
  } catch {
    return undefined; // not (or no longer) a manager, or Docker cannot be asked: the report's dockerError/cluster says so
  }
}
