// What the user reads when a cluster step fails: every failure names the servers and the port.
import type { ClusterNodeInfo } from '../../shared/api.js';
import type { PortFailure, SwarmNodeState } from '../../shared/protocol.js';
import type { ClusterNodeRow } from './store.js';

/** "web2 cannot reach 172.31.5.2:2377/tcp (ECONNREFUSED); web2 cannot reach 172.31.5.2:7946/tcp (…)". */
export function unreachablePorts(server: string, failures: readonly PortFailure[]): string {
  return failures.map((f) => `${server} cannot reach ${f.addr}:${f.port}/${f.proto} (${f.error})`).join('; ');
}

/** The data path (VXLAN) one way, which a TCP probe cannot test. */
export function overlayUnreachable(from: string, to: string): string {
  return `${from} cannot reach ${to} over the overlay network (4789/udp)`;
}

/** A recorded node merged with the manager's live view of it (undefined: the manager is offline). */
export function nodeInfo(row: ClusterNodeRow, live: SwarmNodeState[] | undefined): ClusterNodeInfo {
  const seen = live?.find((n) => n.id === row.node_id);
  const base = { server: row.server, role: row.role, nodeId: row.node_id, joinedAt: row.joined_at };
  if (!live) {
    return { ...base, state: null, availability: null, addr: null, leader: false, runningTasks: null, reachability: 'unknown', error: row.reach_error };
  }
  if (!seen) {
    return { ...base, state: 'missing', availability: null, addr: null, leader: false, runningTasks: null, reachability: 'unreachable', error: `${row.server} is not a node of the swarm any more (node ${row.node_id})` };
  }
  const ready = seen.state === 'ready';
  const error = row.reach_error ?? (ready ? null : `${row.server} is ${seen.state} as the manager sees it`);
  return {
    ...base,
    state: seen.state,
    availability: seen.availability,
    addr: seen.addr,
    leader: seen.leader,
    runningTasks: seen.runningTasks,
    reachability: error ? 'unreachable' : 'reachable',
    error,
  };
}
