// Where the manager's nginx sends a cluster app's traffic (pure): every running web task on a ready
// node, as NODE_ADDRESS:PUBLISHED_PORT, sorted so the same set always renders the same config.
import { nodeName, type SwarmNode, type SwarmTask } from './task-state.js';

/** One web task nginx can reach. */
export interface TaskEndpoint {
  taskId: string;
  nodeId: string;
  node: string;
  /** host:port */
  server: string;
}

/** The address other nodes reach `n` at (a manager may report 0.0.0.0: its manager address then). */
export function nodeAddress(n: SwarmNode): string | null {
  const addr = n.Status?.Addr ?? '';
  if (addr && addr !== '0.0.0.0') return addr;
  const m = /^(.*):\d+$/.exec(n.ManagerStatus?.Addr ?? '');
  return m?.[1] ? m[1] : null;
}

/** The host port a task published for `containerPort` (host mode), or null while it has none. */
export function publishedPort(t: SwarmTask, containerPort: number): number | null {
  const p = t.Status?.PortStatus?.Ports?.find((x) => x.TargetPort === containerPort && x.PublishedPort);
  return p?.PublishedPort ?? null;
}

/** Running web tasks on ready nodes, one endpoint each, sorted by server. */
export function planUpstreams(tasks: readonly SwarmTask[], nodes: readonly SwarmNode[], containerPort: number): TaskEndpoint[] {
  const byId = new Map(nodes.map((n) => [n.ID, n]));
  const out: TaskEndpoint[] = [];
  for (const t of tasks) {
    if (t.DesiredState !== 'running' || t.Status?.State !== 'running' || !t.NodeID) continue;
    const node = byId.get(t.NodeID);
    if (!node || node.Status?.State !== 'ready') continue;
    const addr = nodeAddress(node);
    const port = publishedPort(t, containerPort);
    if (!addr || !port) continue;
    out.push({ taskId: t.ID, nodeId: node.ID, node: nodeName(node), server: `${addr.includes(':') ? `[${addr}]` : addr}:${port}` });
  }
  return out.sort((a, b) => (a.server < b.server ? -1 : a.server > b.server ? 1 : 0));
}

/** The servers of a plan, in order, without duplicates. */
export function serversOf(plan: readonly TaskEndpoint[]): string[] {
  return [...new Set(plan.map((e) => e.server))];
}
