// The reconcile planner: desired state + what the agent released + what it observes → the actions
// that close the gap. Pure (no I/O) so every case is a unit test. Only berth-labelled containers are
// ever observed, so nothing foreign can be acted on.
import type { ServerSpec } from '../../shared/spec.js';
import type { AppSite } from '../nginx/index.js';
import type { BerthContainer } from '../docker/containers.js';
import type { Release, ReleaseProcess } from '../store/releases.js';
import type { BerthVolume } from '../docker/volumes.js';
import type { SwarmObject } from '../docker/swarm-objects.js';

export interface Observed {
  containers: BerthContainer[];
  /** Server block files on disk; content null = listed but unreadable. */
  nginxApps: Array<{ app: string; content: string | null }>;
  /**
   * Certificates (absent when HTTPS is off): apps whose certificate must be (re-)issued now, with
   * the reason, and the domains each app known to the certificate store wants.
   */
  certs?: { due: ReadonlyMap<string, string>; wanted: ReadonlyMap<string, readonly string[]> };
  /** berth's volumes on this server (observed only while the desired state lists apps to purge). */
  volumes?: readonly BerthVolume[];
  /** Apps with a DATA/apps/APP directory (docker-compose.yml, app.env). */
  appFiles?: readonly string[];
  /**
   * On a cluster's manager: the Swarm services and overlay networks of the cluster apps this server
   * deployed (swarm-objects.ts; only berth's, labelled with this server). Absent elsewhere.
   */
  services?: readonly SwarmObject[];
  networks?: readonly SwarmObject[];
  /**
   * On a cluster's manager: the site its upstream watcher last routed per cluster app (null: none,
   * the app has no domains); an app missing from it is not routed yet. Absent on other servers.
   */
  clusterSites?: ReadonlyMap<string, AppSite | null>;
}

export type RenderSite = (app: string, site: AppSite) => string;

export type Action =
  /** A container of the current release exists but is not running: start it (a web one: then resync nginx, its port may change). */
  | { type: 'restart-container'; app: string; containerId: string; deploymentId: string; process: string; domains: string[]; reason: string }
  /** A container of the current release is gone: create a new one from the release image (a web one: then resync nginx). */
  | { type: 'start-release-container'; app: string; release: Release; process: string; replica: number; domains: string[]; reason: string }
  /** A running web container of the current release is not the one recorded (e.g. re-created before a crash): record it. */
  | { type: 'adopt-container'; app: string; deploymentId: string; containerId: string; hostPort: number; reason: string }
  | { type: 'remove-container'; app: string; containerId: string; deploymentId: string; reason: string }
  | { type: 'write-nginx'; app: string; site: AppSite; reason: string }
  | { type: 'remove-nginx'; app: string; reason: string }
  | { type: 'forget-release'; app: string; reason: string }
  /** Issue/renew the app's certificate for `domains` ([] = stop renewing it); a new one is put into nginx for `site`. */
  | { type: 'ensure-cert'; app: string; domains: string[]; site: AppSite | null; reason: string }
  /** The app is gone: delete its certificate. */
  | { type: 'remove-cert'; app: string; reason: string }
  /** The app is gone: delete DATA/apps/APP (its docker-compose.yml and app.env, which holds secrets). */
  | { type: 'remove-app-files'; app: string; reason: string }
  /** A cluster app is gone: remove one of its Swarm services (its tasks stop on every node). */
  | { type: 'remove-service'; app: string; serviceId: string; name: string; reason: string }
  /** A cluster app is gone: remove its overlay network (after its services). */
  | { type: 'remove-network'; app: string; networkId: string; name: string; reason: string }
  /** The app is gone and its volumes were to be purged: delete one (after the app's containers). */
  | { type: 'remove-volume'; app: string; volume: string; name: string; reason: string }
  /**
   * The live release's stored row is corrupt (Release.corrupt): the app is left as it is — nothing is
   * created, restarted, removed or re-routed from a release whose env or processes cannot be read.
   * Not an operation: the executor reports it as an error of the pass.
   */
  | { type: 'skip-corrupt-release'; app: string; deploymentId: string; reason: string };

export interface PlanOptions {
  /** Apps with a deploy running or draining: left entirely alone. */
  busyApps?: ReadonlySet<string>;
}

// Docker states in which a container is on its way by itself (restart policy) or must not be touched.
const SELF_HEALING = new Set(['running', 'restarting', 'paused', 'removing']);
const STARTABLE = new Set(['created', 'exited']);

export function plan(
  desired: ServerSpec | null,
  releases: readonly Release[],
  observed: Observed,
  render: RenderSite,
  opts: PlanOptions = {},
): Action[] {
  // Never received a desired state: nothing is known to be unwanted, so nothing is touched.
  if (!desired) return [];
  const busy = opts.busyApps ?? new Set<string>();
  const specApps = new Map(desired.apps.map((a) => [a.name, a]));
  const releaseOf = new Map(releases.map((r) => [r.app, r]));
  const nginxOf = new Map(observed.nginxApps.map((n) => [n.app, n.content]));
  const containersOf = groupByApp(observed.containers);
  const certsOf = observed.certs;
  const appFiles = new Set(observed.appFiles ?? []);
  // Only apps listed for purge: any other app's volumes are never acted on, whatever else is true.
  const purge = new Set(desired.purgeVolumes ?? []);
  const volumesOf = groupByApp((observed.volumes ?? []).filter((v) => purge.has(v.app)));
  const servicesOf = groupByApp(observed.services);
  const networksOf = groupByApp(observed.networks);
  const apps = [
    ...new Set([
      ...specApps.keys(),
      ...releaseOf.keys(),
      ...nginxOf.keys(),
      ...containersOf.keys(),
      ...(certsOf?.wanted.keys() ?? []),
      ...appFiles,
      ...volumesOf.keys(),
      ...servicesOf.keys(),
      ...networksOf.keys(),
    ]),
  ].sort();
  const actions: Action[] = [];
  for (const app of apps) {
    if (busy.has(app)) continue;
    const containers = containersOf.get(app) ?? [];
    const spec = specApps.get(app);
    if (!spec) {
      actions.push(...planRemoved(app, { nginx: nginxOf.has(app), containers, release: releaseOf.has(app), cert: !!certsOf?.wanted.has(app), appFiles: appFiles.has(app), services: servicesOf.get(app) ?? [], networks: networksOf.get(app) ?? [], volumes: volumesOf.get(app) ?? [] }));
      continue;
    }
    const release = releaseOf.get(app);
    // A cluster app's services are routed by the manager's upstream watcher (cluster/deploy/upstreams.ts): only its
    // certificate is planned here, for that site. A static one is served from disk: reconciled like a standalone one.
    if (spec.cluster && !release?.staticRoot) {
      const site = clusterSite(observed.clusterSites, app, spec.domains);
      if (site !== undefined) actions.push(...planCert(app, spec.domains, site, certsOf));
      continue;
    }
    // Never deployed (or deployed before this agent's journal): what runs is unknown, so it is left as is.
    if (!release) continue;
    // A container re-created from a corrupt row would start with no env (or the wrong processes).
    if (release.corrupt) {
      actions.push({ type: 'skip-corrupt-release', app, deploymentId: release.deploymentId, reason: release.corrupt.message });
      continue;
    }
    actions.push(...planRelease(app, spec.domains, release, containers, nginxOf.get(app) ?? null, render, certsOf));
  }
  return actions;
}

/** What is left of an app removed from the desired state. */
interface Leftovers {
  nginx: boolean;
  containers: readonly BerthContainer[];
  release: boolean;
  cert: boolean;
  appFiles: boolean;
  /** A cluster app's Swarm services and overlay network (observed on its manager). */
  services: readonly SwarmObject[];
  networks: readonly SwarmObject[];
  /** Only when its volumes are to be purged. */
  volumes: readonly BerthVolume[];
}

/** Removed from the desired state: stop routing first, then remove what runs, then its release and files. */
function planRemoved(app: string, left: Leftovers): Action[] {
  const why = 'app is no longer in the desired state';
  const actions: Action[] = [];
  if (left.nginx) actions.push({ type: 'remove-nginx', app, reason: why });
  // A cluster app: its services (every release's), then its network, which they were attached to.
  for (const s of left.services) actions.push({ type: 'remove-service', app, serviceId: s.id, name: s.name, reason: why });
  for (const n of left.networks) actions.push({ type: 'remove-network', app, networkId: n.id, name: n.name, reason: why });
  for (const c of left.containers) actions.push({ type: 'remove-container', app, containerId: c.id, deploymentId: c.deploymentId, reason: why });
  if (left.release) actions.push({ type: 'forget-release', app, reason: why });
  if (left.cert) actions.push({ type: 'remove-cert', app, reason: why });
  if (left.appFiles) actions.push({ type: 'remove-app-files', app, reason: why });
  // Last: a volume in use cannot be removed, so the app's containers go first (the executor
  // skips these when removing one of them failed).
  for (const v of left.volumes) actions.push({ type: 'remove-volume', app, volume: v.dockerName, name: v.name, reason: 'the app was removed with --purge-volumes' });
  return actions;
}

function groupByApp<T extends { app: string }>(items: readonly T[] | undefined): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items ?? []) {
    const list = out.get(item.app);
    if (list) list.push(item);
    else out.set(item.app, [item]);
  }
  return out;
}

function planRelease(
  app: string,
  domains: string[],
  release: Release,
  containers: BerthContainer[],
  nginxContent: string | null,
  render: RenderSite,
  certs?: Observed['certs'],
): Action[] {
  const actions: Action[] = [];
  for (const c of containers) {
    if (c.deploymentId !== release.deploymentId) {
      actions.push({ type: 'remove-container', app, containerId: c.id, deploymentId: c.deploymentId, reason: `not part of the current release (${release.deploymentId})` });
    }
  }
  const current = containers.filter((c) => c.deploymentId === release.deploymentId);

  // A static site is served from disk: nothing of it runs.
  if (release.staticRoot) {
    for (const c of current) actions.push({ type: 'remove-container', app, containerId: c.id, deploymentId: c.deploymentId, reason: 'a static site runs no containers' });
    const site: AppSite = { domains, staticRoot: release.staticRoot };
    actions.push(...planNginx(app, domains, nginxContent, render, site));
    actions.push(...planCert(app, domains, site, certs));
    return actions;
  }

  // Releases recorded before processes existed know only their web container: others are left alone.
  // The counts are the release's as deployed (a `berth scale` override applied, then health-gated),
  // never the spec's override: a new override reaches the containers only through its scale deployment.
  const legacy = release.processes === undefined;
  const processes = release.processes ?? [{ name: 'web', command: null, scale: 1 }];
  const wanted = new Map(processes.map((p) => [p.name, p]));
  if (!legacy) {
    for (const c of current) {
      const p = wanted.get(c.process);
      if (!p || p.scale === 0) {
        actions.push({ type: 'remove-container', app, containerId: c.id, deploymentId: c.deploymentId, reason: `process ${c.process} is not in the release's config` });
      }
    }
  }

  const web = { pending: false, ports: [] as number[] };
  for (const p of processes) actions.push(...planProcess(app, domains, release, p, current, web));

  // The start/restart actions resync nginx themselves once the new ports are known.
  if (web.pending) return actions;
  const site: AppSite | null =
    web.ports.length === 0 ? null : web.ports.length === 1 ? { domains, upstreamPort: web.ports[0]! } : { domains, upstreamPort: web.ports[0]!, upstreamPorts: web.ports };
  actions.push(...planNginx(app, domains, nginxContent, render, site));
  actions.push(...planCert(app, domains, site, certs));
  return actions;
}

/**
 * One process of the live release at its scale: surplus and duplicate containers removed, missing
 * ones started, stopped ones restarted, the running web container adopted. `web` collects the
 * ports to route to, or that routing must wait (a web container is being started).
 */
function planProcess(
  app: string,
  domains: string[],
  release: Release,
  p: ReleaseProcess,
  current: BerthContainer[],
  web: { pending: boolean; ports: number[] },
): Action[] {
  const actions: Action[] = [];
  const mine = current.filter((c) => c.process === p.name);
  for (const c of mine) {
    if ((c.replica ?? 1) > p.scale && p.scale > 0) {
      actions.push({ type: 'remove-container', app, containerId: c.id, deploymentId: c.deploymentId, reason: `${p.name} is scaled to ${p.scale}` });
    }
  }
  for (let replica = 1; replica <= p.scale; replica++) {
    const candidates = mine.filter((c) => (c.replica ?? 1) === replica);
    const recorded = p.name === 'web' && replica === 1 ? release.containerId : null;
    const primary =
      candidates.find((c) => c.id === recorded && c.state !== 'dead') ?? candidates.find((c) => c.state === 'running') ?? candidates.find((c) => c.state !== 'dead');
    for (const c of candidates) {
      if (c === primary) continue;
      const why = c.state === 'dead' ? 'container is dead' : `duplicate ${p.name} container of the current release`;
      actions.push({ type: 'remove-container', app, containerId: c.id, deploymentId: c.deploymentId, reason: why });
    }
    const label = p.scale > 1 ? `${p.name} container ${replica}` : `${p.name} container`;
    if (!primary) {
      actions.push({ type: 'start-release-container', app, release, process: p.name, replica, domains, reason: `the ${label} of the current release is missing` });
      if (p.name === 'web') web.pending = true;
      continue;
    }
    if (STARTABLE.has(primary.state)) {
      actions.push({ type: 'restart-container', app, containerId: primary.id, deploymentId: release.deploymentId, process: p.name, domains, reason: `${label} is ${primary.state}` });
      if (p.name === 'web') web.pending = true;
      continue;
    }
    if (p.name !== 'web') continue;
    if (!SELF_HEALING.has(primary.state)) {
      web.pending = true; // an unknown state: observe again next pass
      continue;
    }
    let port = replica === 1 ? release.hostPort : (primary.hostPort ?? 0);
    if (replica === 1 && primary.state === 'running' && primary.hostPort !== null && (primary.id !== release.containerId || primary.hostPort !== release.hostPort)) {
      actions.push({ type: 'adopt-container', app, deploymentId: release.deploymentId, containerId: primary.id, hostPort: primary.hostPort, reason: 'the running web container differs from the recorded one' });
      port = primary.hostPort;
    }
    if (port > 0) web.ports.push(port);
  }
  return actions;
}

/**
 * After the server block (it serves the HTTP-01 challenge): a certificate for a served app whose
 * certificate is missing, expiring or for other domains; none before anything is served.
 */
function planCert(app: string, domains: string[], site: AppSite | null, certs: Observed['certs']): Action[] {
  if (!certs) return [];
  const wanted = certs.wanted.get(app);
  if (domains.length === 0 || site === null) {
    return wanted && wanted.length > 0 ? [{ type: 'ensure-cert', app, domains: [], site: null, reason: 'nothing is served: stop renewing its certificate' }] : [];
  }
  const reason = certs.due.get(app);
  if (reason) return [{ type: 'ensure-cert', app, domains, site, reason: `certificate ${reason}` }];
  // Backing off, but the wanted domains changed: record them (status shows the right set).
  return wanted !== undefined && sameSet(wanted, domains) ? [] : [{ type: 'ensure-cert', app, domains, site, reason: 'the domains changed' }];
}

/**
 * The site the manager's watcher routes for a cluster app, when it is the app's current one: its
 * domains are the spec's (else the watcher is about to re-render, and the certificate waits for it).
 * Undefined: not known (not the manager, not routed yet, or out of date).
 */
function clusterSite(sites: Observed['clusterSites'], app: string, domains: readonly string[]): AppSite | null | undefined {
  const site = sites?.get(app);
  if (site === undefined) return undefined;
  if (site === null) return domains.length === 0 ? null : undefined;
  return sameSet(site.domains, domains) ? site : undefined;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = [...a].sort();
  const sb = [...b].sort();
  return sa.length === sb.length && sa.every((d, i) => d === sb[i]);
}

/** The server block that should exist (none without domains or without anything to serve). */
function planNginx(app: string, domains: string[], nginxContent: string | null, render: RenderSite, site: AppSite | null): Action[] {
  if (domains.length === 0 || site === null) {
    return nginxContent !== null ? [{ type: 'remove-nginx', app, reason: domains.length === 0 ? 'the app has no domains' : 'the release has no web process' }] : [];
  }
  if (nginxContent === null) return [{ type: 'write-nginx', app, site, reason: 'server block is missing' }];
  if (nginxContent !== render(app, site)) return [{ type: 'write-nginx', app, site, reason: 'server block differs from the desired one' }];
  return [];
}

/** One line per action, for logs and the reconcile_runs record. */
export function describeAction(a: Action): string {
  switch (a.type) {
    case 'restart-container':
      return `restart container ${a.containerId.slice(0, 12)} of ${a.app} (${a.reason})`;
    case 'start-release-container':
      return `start a ${a.process} container${a.replica > 1 ? ` (#${a.replica})` : ''} for ${a.app} release ${a.release.deploymentId} (${a.reason})`;
    case 'adopt-container':
      return `record container ${a.containerId.slice(0, 12)} as ${a.app}'s web container (${a.reason})`;
    case 'remove-container':
      return `remove container ${a.containerId.slice(0, 12)} of ${a.app} deployment ${a.deploymentId} (${a.reason})`;
    case 'write-nginx':
      return `write nginx config of ${a.app} → ${a.site.staticRoot ?? (a.site.upstreamPorts ?? [a.site.upstreamPort]).map((p) => `127.0.0.1:${p}`).join(', ')} (${a.reason})`;
    case 'remove-nginx':
      return `remove nginx config of ${a.app} (${a.reason})`;
    case 'forget-release':
      return `forget the release of ${a.app} (${a.reason})`;
    case 'ensure-cert':
      return a.domains.length ? `issue a certificate for ${a.app}: ${a.domains.join(', ')} (${a.reason})` : `stop renewing the certificate of ${a.app} (${a.reason})`;
    case 'remove-cert':
      return `delete the certificate of ${a.app} (${a.reason})`;
    case 'remove-app-files':
      return `delete the docker-compose.yml and env file of ${a.app} (${a.reason})`;
    case 'remove-service':
      return `remove service ${a.name} of ${a.app} (${a.reason})`;
    case 'remove-network':
      return `remove network ${a.name} of ${a.app} (${a.reason})`;
    case 'remove-volume':
      return `delete volume ${a.volume} (${a.name}) of ${a.app} and its data (${a.reason})`;
    case 'skip-corrupt-release':
      return `leave ${a.app} release ${a.deploymentId} as it is, nothing is re-created from it (${a.reason}): deploy the app again or roll it back`;
  }
}
