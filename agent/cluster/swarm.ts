// The Swarm steps of cluster formation through the local engine's API (dockerode). The swarm is
// berth's once the user asked for a cluster; nothing else on the engine is touched.
import type Docker from 'dockerode';
import type { SwarmNodeState } from '../../shared/protocol.js';

/** Swarm's management port: every node listens on it; workers reach managers there. */
export const SWARM_PORT = 2377;

export class SwarmError extends Error {
  override name = 'SwarmError';
}

/** A join token never leaves this module in an error text (the engine does not echo them, but be sure). */
export function scrubTokens(text: string): string {
  return text.replace(/SWMTKN-[A-Za-z0-9-]+/g, '[redacted]');
}

/** The engine's own message ("This node is already part of a swarm…") rather than dockerode's wrapper. */
export function engineMessage(err: unknown): string {
  const e = err as { json?: { message?: string } | null; reason?: string; message?: string };
  const text = e?.json?.message ?? e?.message ?? String(err);
  return scrubTokens(text.split('\n')[0]!.trim());
}

async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new SwarmError(`${what} failed: ${engineMessage(err)}`);
  }
}

/** host:port with the Swarm port when none was given (IPv6 hosts in brackets). */
export function withSwarmPort(addr: string): string {
  if (/^\[.*\]:\d+$/.test(addr) || /^[^:]+:\d+$/.test(addr)) return addr;
  return addr.includes(':') && !addr.startsWith('[') ? `[${addr}]:${SWARM_PORT}` : `${addr}:${SWARM_PORT}`;
}

interface SwarmInfo {
  Version: { Index: number };
  Spec: Record<string, unknown>;
  JoinTokens: { Worker: string; Manager: string };
}

export async function nodeId(docker: Docker): Promise<string> {
  const info = (await step('docker info', () => docker.info())) as { Swarm?: { NodeID?: string } };
  return info.Swarm?.NodeID ?? '';
}

/** `swarm init`, advertising `advertise` (host or host:port); the overlay networks take addresses from `pool`. */
export async function initSwarm(docker: Docker, opts: { advertise: string; pool: string; maskLength: number }): Promise<string> {
  await step('swarm init', () =>
    docker.swarmInit({
      ListenAddr: `0.0.0.0:${SWARM_PORT}`,
      AdvertiseAddr: withSwarmPort(opts.advertise),
      DefaultAddrPool: [opts.pool],
      SubnetSize: opts.maskLength,
    }),
  );
  return nodeId(docker);
}

/** The current join token for `role`, read from the manager each time (never kept). */
export async function joinToken(docker: Docker, role: 'manager' | 'worker'): Promise<string> {
  const swarm = (await step('swarm inspect', () => docker.swarmInspect())) as SwarmInfo;
  return role === 'manager' ? swarm.JoinTokens.Manager : swarm.JoinTokens.Worker;
}

/** Replace the `role` join token: the one just used (and relayed) stops working. */
export async function rotateToken(docker: Docker, role: 'manager' | 'worker'): Promise<void> {
  const swarm = (await step('swarm inspect', () => docker.swarmInspect())) as SwarmInfo;
  const rotate = role === 'manager' ? { rotateManagerToken: true } : { rotateWorkerToken: true };
  await step('join token rotation', () => docker.swarmUpdate({ _query: { version: swarm.Version.Index, ...rotate }, _body: swarm.Spec }));
}

export async function joinSwarm(docker: Docker, opts: { managerAddr: string; joinToken: string; advertise?: string }): Promise<string> {
  await step('swarm join', () =>
    docker.swarmJoin({
      ListenAddr: `0.0.0.0:${SWARM_PORT}`,
      ...(opts.advertise ? { AdvertiseAddr: withSwarmPort(opts.advertise) } : {}),
      RemoteAddrs: [withSwarmPort(opts.managerAddr)],
      JoinToken: opts.joinToken,
    }),
  );
  return nodeId(docker);
}

export async function leaveSwarm(docker: Docker, force: boolean): Promise<void> {
  await step('swarm leave', () => docker.swarmLeave({ force }));
}

interface NodeInfo {
  ID: string;
  Version: { Index: number };
  Spec: { Role?: string; Availability?: string } & Record<string, unknown>;
  Description?: { Hostname?: string };
  Status?: { State?: string; Addr?: string };
  ManagerStatus?: { Leader?: boolean; Reachability?: string };
}

/** Stop scheduling on the node and move its tasks elsewhere; `demote`: it stops being a manager too. */
export async function drainNode(docker: Docker, id: string, demote = false): Promise<void> {
  const node = docker.getNode(id);
  const info = (await step(`node inspect ${id}`, () => node.inspect())) as NodeInfo;
  const spec = { ...info.Spec, Availability: 'drain', ...(demote ? { Role: 'worker' } : {}) };
  await step(`node update ${id}`, () => node.update({ _query: { version: info.Version.Index }, _body: spec }));
}

export async function removeNode(docker: Docker, id: string, force: boolean): Promise<void> {
  await step(`node rm ${id}`, () => docker.getNode(id).remove({ force }));
}

/** `docker node ls` with each node's running tasks. */
export async function inspectNodes(docker: Docker): Promise<SwarmNodeState[]> {
  const nodes = (await step('node ls', () => docker.listNodes())) as NodeInfo[];
  const tasks = (await step('task ls', () => docker.listTasks({ filters: { 'desired-state': ['running'] } }))) as Array<{ NodeID?: string; Status?: { State?: string } }>;
  const running = new Map<string, number>();
  for (const t of tasks) if (t.NodeID && t.Status?.State === 'running') running.set(t.NodeID, (running.get(t.NodeID) ?? 0) + 1);
  return nodes.map((n) => ({
    id: n.ID,
    hostname: n.Description?.Hostname ?? '',
    role: n.Spec.Role === 'manager' ? 'manager' : 'worker',
    availability: n.Spec.Availability ?? 'unknown',
    state: n.Status?.State ?? 'unknown',
    addr: n.Status?.Addr ?? '',
    managerReachability: n.ManagerStatus?.Reachability ?? '',
    leader: n.ManagerStatus?.Leader === true,
    runningTasks: running.get(n.ID) ?? 0,
  }));
}
