// What each agent is told to run: built from the database on demand, so it is never stale, and
// only ever from the apps of the agent's own server.
import type { AppSpec, ServerSpec } from '../shared/spec.js';
import { normalizeDomain } from '../shared/validation.js';
import type { AppRow } from './store/apps.js';
import type { Stores } from './store/index.js';
import { registrySpecFor } from './clusters/registry-store.js';

export function appSpecOf(stores: Stores, app: AppRow): AppSpec {
  const { rootDir } = stores.apps.monorepo(app.name);
  const scale = stores.scale.get(app.name);
  return {
    name: app.name,
    // The full URL (credentials unsealed) goes only to the app's own agent, like env values.
    repo: stores.apps.repoUrl(app),
    branch: app.branch,
    // Explicit domains plus the default hostname APP.BASE_DOMAIN when the server has a base domain.
    // A name stored before it became reserved is left out: the agent refuses a spec that has one.
    domains: stores.apps.servedDomains(app).filter((d) => normalizeDomain(d).ok),
    // Decrypted only here, on the way to the app's own agent (over its authenticated connection).
    env: stores.env.record(app.name),
    ...(rootDir !== undefined ? { rootDir } : {}),
    ...(app.cluster ? { cluster: app.cluster } : {}),
    // `berth scale`: only when set, so agents and checks that predate it see the spec they always did.
    ...(scale ? { scale } : {}),
    // Unsealed only here, on the way to the app's own agent, like the env values.
    ...deployKeySpec(stores.apps.deployKey(app.name)),
  };
}

export function serverSpecOf(stores: Stores, server: string): ServerSpec | undefined {
  // One read transaction: the revision and the apps come from the same snapshot.
  return stores.db.transaction(() => {
    const row = stores.servers.get(server);
    if (!row) return undefined;
    const purges = stores.apps.volumePurges(server);
    return {
      server: row.name,
      revision: row.spec_revision,
      apps: stores.apps.listByServer(server).map((a) => appSpecOf(stores, a)),
      // Only when there is one: agents and checks that predate volumes see the spec they always did.
      ...(purges.length > 0 ? { purgeVolumes: purges } : {}),
      ...clusterSpecOf(stores, row.name),
    };
  })();
}

/** This server's cluster (only when it is in one): its role, and the registry as its role needs it. */
function clusterSpecOf(stores: Stores, server: string): Pick<ServerSpec, 'cluster'> {
  const node = stores.clusters.membership(server);
  if (!node) return {};
  const registry = stores.clusterRegistries.get(node.cluster);
  // The cluster's builder pushes its builds: it gets the registry's credentials too.
  const builder = stores.clusters.get(node.cluster)?.builder === server;
  return {
    cluster: { name: node.cluster, role: node.role, ...(builder ? { builder: true } : {}), ...(registry ? { registry: registrySpecFor(registry, node.role, builder) } : {}) },
  };
}

function deployKeySpec(key: { privateKey: () => string; knownHosts: string | null } | null): Pick<AppSpec, 'deployKey' | 'knownHosts'> {
  if (!key) return {};
  return { deployKey: key.privateKey(), ...(key.knownHosts !== null ? { knownHosts: key.knownHosts } : {}) };
}
