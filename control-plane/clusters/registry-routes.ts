// A cluster's registry through the API (issue 15).
//   PUT /api/clusters/:name/registry  {address, username, password, caPem?} → ClusterRegistryInfo (an external registry)
//   GET /api/clusters/:name/registry  → ClusterRegistryInfo (404 when it has none)
// The password and keys never leave the control plane except to the cluster's own agents.
import type { Hono } from 'hono';
import { clusterName, setClusterRegistryBody, type ClusterRegistryInfo } from '../../shared/api.js';
import type { ApiDeps } from '../api/deps.js';
import { readJson, validParam } from '../api/http.js';
import { NotFoundError } from '../errors.js';
import type { ClusterRegistry } from './registry-store.js';
import { pushClusterSpecs } from './specs.js';

export function registryInfo(r: ClusterRegistry): ClusterRegistryInfo {
  return { cluster: r.cluster, mode: r.mode, address: r.address, username: r.username, privateCa: r.caPem !== null, updatedAt: r.updatedAt };
}

export function registerClusterRegistryRoutes(app: Hono, deps: ApiDeps): void {
  const { stores } = deps;
  app.put('/api/clusters/:name/registry', async (c) => {
    const name = validParam(clusterName, c.req.param('name'), 'cluster name');
    const body = await readJson(c, setClusterRegistryBody, { address: 'registry address', username: 'registry username', password: 'registry password', caPem: 'CA certificate' });
    stores.clusters.require(name);
    stores.clusterRegistries.set({
      cluster: name,
      mode: 'external',
      address: body.address,
      username: body.username,
      password: body.password,
      caPem: body.caPem ?? null,
      caKeyPem: null,
      certPem: null,
      keyPem: null,
      htpasswd: null,
    });
    deps.logger.info({ cluster: name, address: body.address }, 'cluster registry set (external)');
    pushClusterSpecs({ clusters: stores.clusters, servers: stores.servers, hub: deps.hub }, name);
    return c.json(registryInfo(stores.clusterRegistries.get(name)!));
  });

  app.get('/api/clusters/:name/registry', (c) => {
    const name = validParam(clusterName, c.req.param('name'), 'cluster name');
    stores.clusters.require(name);
    const reg = stores.clusterRegistries.get(name);
    if (!reg) throw new NotFoundError(`cluster "${name}" has no registry yet`);
    return c.json(registryInfo(reg));
  });
}
