// A cluster's `cluster` block in its nodes' desired state changed (a node joined or left, the
// registry was made or replaced): every node gets a new revision, and the connected ones get it now.
import type { AgentHub } from '../hub.js';
import type { ServerStore } from '../store/servers.js';
import type { ClusterStore } from './store.js';

export function pushClusterSpecs(o: { clusters: ClusterStore; servers: ServerStore; hub: AgentHub }, cluster: string, extra: string[] = []): void {
  const servers = [...new Set([...o.clusters.nodes(cluster).map((n) => n.server), ...extra])];
  for (const s of servers) o.servers.bumpRevision(s);
  for (const s of servers) o.hub.pushDesiredState(s);
}
