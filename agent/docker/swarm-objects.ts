// berth's Swarm objects as the reconciler of a cluster's manager observes them (issue 15): the
// services and overlay networks of cluster apps this server deployed. Only objects labelled
// berth.managed=true AND berth.server=THIS server (and, for networks, berth.cluster) are ever
// listed — a second manager sees the same swarm and must never act on another server's apps — and
// removal only ever gets ids from this listing. Plain dockerode: no cluster code is loaded for it.
import type Docker from 'dockerode';
import { sleep } from '../../shared/util/index.js';
import { dockerStatusOf } from './errors.js';
import { LABEL } from './labels.js';

/** A berth service or network of a cluster app. */
export interface SwarmObject {
  id: string;
  name: string;
  app: string;
}

const CLUSTER_LABEL = 'berth.cluster';

function owned(labels: Record<string, string> | undefined, server: string): string | null {
  if (!labels || labels[LABEL.managed] !== 'true' || labels[LABEL.server] !== server || !labels[CLUSTER_LABEL]) return null;
  return labels[LABEL.app] || null;
}

/** The cluster apps' services and overlay networks this server made (server: its non-empty name). */
export async function listBerthSwarmObjects(docker: Docker, server: string): Promise<{ services: SwarmObject[]; networks: SwarmObject[] }> {
  const label = [`${LABEL.managed}=true`, `${LABEL.server}=${server}`, CLUSTER_LABEL];
  const [services, networks] = await Promise.all([
    docker.listServices({ filters: { label } }) as Promise<Array<{ ID: string; Spec?: { Name?: string; Labels?: Record<string, string> } }>>,
    docker.listNetworks({ filters: { label, driver: ['overlay'] } }),
  ]);
  const out = { services: [] as SwarmObject[], networks: [] as SwarmObject[] };
  // Re-checked on each object: listing filters are the engine's, this is ours.
  for (const s of services) {
    const app = owned(s.Spec?.Labels, server);
    if (app) out.services.push({ id: s.ID, name: s.Spec?.Name ?? s.ID, app });
  }
  for (const n of networks) {
    const app = owned(n.Labels, server);
    if (app && n.Driver === 'overlay') out.networks.push({ id: n.Id, name: n.Name, app });
  }
  return out;
}

/**
 * Remove a service or a network by id; already gone is fine. A network is refused while the tasks
 * of the services just removed still stop on their nodes ("has active endpoints"): retried for
 * `networkWaitMs` at most, then the error is the pass's (the next pass tries again).
 */
export async function removeSwarmObject(docker: Docker, kind: 'service' | 'network', id: string, networkWaitMs = 20_000): Promise<void> {
  const deadline = Date.now() + (kind === 'network' ? networkWaitMs : 0);
  for (;;) {
    try {
      await (kind === 'service' ? docker.getService(id).remove() : docker.getNetwork(id).remove());
      return;
    } catch (err) {
      if (dockerStatusOf(err) === 404) return;
      if (Date.now() >= deadline) throw err;
    }
    await sleep(500);
  }
}
