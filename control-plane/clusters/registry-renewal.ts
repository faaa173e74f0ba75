// Renewing a berth-managed registry's server certificate before it expires (it is valid 2 years):
// the cluster's CA (its key kept sealed for this) signs a new one for the same address, the nodes'
// desired state gets a new revision, and the manager's agent rewrites the registry's files and
// restarts it (agent/cluster/registry/). The nodes trust the CA, which does not change: nothing to
// do on them. Checked when the control plane starts and twice a day.
import { X509Certificate } from 'node:crypto';
import type { Logger } from '../../shared/logger.js';
import { oneLine } from '../../shared/util/index.js';
import type { AgentHub } from '../hub.js';
import type { Stores } from '../store/index.js';
import { issueServerCert, loadRegistryCa } from './registry-ca.js';
import { pushClusterSpecs } from './specs.js';

/** Renew when less than this is left (Let's Encrypt-style: well before the end, with many chances). */
export const RENEW_BEFORE_MS = 30 * 24 * 3600_000;
const CHECK_EVERY_MS = 12 * 3600_000;

export interface RenewalDeps {
  stores: Pick<Stores, 'clusters' | 'clusterRegistries' | 'servers'>;
  hub: AgentHub;
  logger: Logger;
}

/** Renew every managed registry certificate that expires within RENEW_BEFORE_MS of `now`; returns the clusters renewed. */
export async function renewRegistryCerts(deps: RenewalDeps, now = new Date()): Promise<string[]> {
  const renewed: string[] = [];
  for (const { name } of deps.stores.clusters.list()) {
    const reg = deps.stores.clusterRegistries.get(name);
    if (reg?.mode !== 'managed' || !reg.certPem || !reg.caPem || !reg.caKeyPem) continue;
    const expires = Date.parse(new X509Certificate(reg.certPem).validTo);
    if (expires - now.getTime() > RENEW_BEFORE_MS) continue;
    try {
      const server = await issueServerCert(await loadRegistryCa(reg.caPem, reg.caKeyPem), reg.address, now);
      deps.stores.clusterRegistries.set({ ...reg, certPem: server.certPem, keyPem: server.keyPem });
      pushClusterSpecs({ clusters: deps.stores.clusters, servers: deps.stores.servers, hub: deps.hub }, name);
      renewed.push(name);
      deps.logger.info({ cluster: name, address: reg.address, expired: new Date(expires).toISOString() }, 'renewed the cluster registry certificate');
    } catch (err) {
      deps.logger.error({ cluster: name, err: oneLine(err) }, 'could not renew the cluster registry certificate');
    }
  }
  return renewed;
}

/** Check now and every CHECK_EVERY_MS; returns the function that stops it. */
export function startRegistryRenewal(deps: RenewalDeps): () => void {
  const check = () => void renewRegistryCerts(deps).catch((err: unknown) => deps.logger.error({ err: oneLine(err) }, 'registry certificate check failed'));
  check();
  const timer = setInterval(check, CHECK_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}
