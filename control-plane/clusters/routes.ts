// Clusters (issue 15, slice 1: formation through the agents).
//   POST   /api/clusters                       {name, manager, advertise?, addrPool?, registryPort?} → 201 ClusterDetails (with a berth-managed registry)
//   GET    /api/clusters                       → ClusterInfo[]
//   GET    /api/clusters/:name                 → ClusterDetails (nodes merged with the manager's live view)
//   POST   /api/clusters/:name/nodes           {server, role?} → 201 ClusterNodeInfo (reachability of the overlay check)
//   DELETE /api/clusters/:name/nodes/:server   → ClusterNodeRemoved (drained first; a builder's builds go back to the manager)
//   PUT    /api/clusters/:name/builder         {server | null} → ClusterDetails (which node builds the cluster's apps)
// A server whose agent is offline: 409 naming it. A step an agent refused: 409 with its reason.
import type { Hono } from 'hono';
import { addClusterNodeBody, clusterName, createClusterBody, setClusterBuilderBody, type ClusterDetails, type ClusterInfo, type ClusterNodeInfo, type ClusterNodeRemoved } from '../../shared/api.js';
import { serverName } from '../../shared/validation.js';
import type { ApiDeps } from '../api/deps.js';
import { ConflictError } from '../errors.js';
import { readJson, validParam } from '../api/http.js';
import { ClusterFormation } from './formation.js';
import { clusterInfo } from './store.js';

/** busybox has what the overlay check runs (sh, httpd, nc); override for registries without Docker Hub. */
export const DEFAULT_CHECK_IMAGE = 'busybox:1.36';

export function registerClusterRoutes(app: Hono, deps: ApiDeps): void {
  const clusters = deps.stores.clusters;
  const formation = new ClusterFormation({
    hub: deps.hub,
    clusters,
    servers: deps.stores.servers,
    registries: deps.stores.clusterRegistries,
    logger: deps.logger,
    checkImage: process.env.BERTH_CLUSTER_CHECK_IMAGE || DEFAULT_CHECK_IMAGE,
  });

  // Registered before the server routes: a server in a cluster is removed from it first (its
  // cluster_nodes row would otherwise be left pointing at nothing).
  app.delete('/api/servers/:name', async (c, next) => {
    const m = clusters.membership(c.req.param('name'));
    if (m) throw new ConflictError(`server "${m.server}" is in cluster "${m.cluster}": remove it first (berth cluster rm ${m.cluster} ${m.server})`);
    await next();
  });

  app.post('/api/clusters', async (c) => {
    const body = await readJson(c, createClusterBody, { name: 'cluster name', manager: 'manager server', advertise: 'advertise address', addrPool: 'address pool' });
    const created: ClusterDetails = await formation.create(body.name, body.manager, {
      ...(body.advertise ? { advertise: body.advertise } : {}),
      ...(body.addrPool ? { addrPool: body.addrPool } : {}),
      ...(body.registryPort ? { registryPort: body.registryPort } : {}),
    });
    return c.json(created, 201);
  });

  app.get('/api/clusters', (c) => {
    const body: ClusterInfo[] = clusters.list().map((r) => clusterInfo(r, r.node_count));
    return c.json(body);
  });

  app.get('/api/clusters/:name', async (c) => {
    const body: ClusterDetails = await formation.details(validParam(clusterName, c.req.param('name'), 'cluster name'));
    return c.json(body);
  });

  app.post('/api/clusters/:name/nodes', async (c) => {
    const name = validParam(clusterName, c.req.param('name'), 'cluster name');
    const { server, role, builder } = await readJson(c, addClusterNodeBody, { server: 'server name', role: 'role', builder: 'builder' });
    const body: ClusterNodeInfo = await formation.add(name, server, role, builder === true);
    return c.json(body, 201);
  });

  app.put('/api/clusters/:name/builder', async (c) => {
    const name = validParam(clusterName, c.req.param('name'), 'cluster name');
    const { server } = await readJson(c, setClusterBuilderBody, { server: 'server name' });
    const body: ClusterDetails = await formation.setBuilder(name, server);
    return c.json(body);
  });

  app.delete('/api/clusters/:name/nodes/:server', async (c) => {
    const name = validParam(clusterName, c.req.param('name'), 'cluster name');
    const server = validParam(serverName, c.req.param('server'), 'server name');
    const body: ClusterNodeRemoved = await formation.remove(name, server);
    return c.json(body);
  });
}
