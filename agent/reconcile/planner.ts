// The reconcile planner: desired state + what the agent released + what it observes → the actions
// that close the gap. Pure (no I/O) so every case is a unit test. Only berth-labelled containers are
// ever observed, so nothing foreign can be acted on.
import type { ServerSpec } from '../../shared/spec.js';
import type { AppSite } from '../nginx.js';
import type { BerthContainer } from '../processes.js';
import type { Release } from '../store/releases.js';

export interface Observed {
  containers: BerthContainer[];
  /** Server block files on disk; content null = listed but unreadable. */
  nginxApps: Array<{ app: string; content: string | null }>;
}

export type RenderSite = (app: string, site: AppSite) => string;

export type Action =
  /** The current release's web container exists but is not running: start it (then resync nginx, its port may change). */
  | { type: 'restart-container'; app: string; containerId: string; deploymentId: string; domains: string[]; reason: string }
  /** The current release's web container is gone: create a new one from the release image (then resync nginx). */
  | { type: 'start-release-container'; app: string; release: Release; domains: string[]; reason: string }
  /** A running web container of the current release is not the one recorded (e.g. re-created before a crash): record it. */
  | { type: 'adopt-container'; app: string; deploymentId: string; containerId: string; hostPort: number; reason: string }
  | { type: 'remove-container'; app: string; containerId: string; deploymentId: string; reason: string }
  | { type: 'write-nginx'; app: string; site: AppSite; reason: string }
  | { type: 'remove-nginx'; app: string; reason: string }
  | { type: 'forget-release'; app: string; reason: string };

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
  const containersOf = new Map<string, BerthContainer[]>();
  for (const c of observed.containers) {
    const list = containersOf.get(c.app) ?? [];
    list.push(c);
    containersOf.set(c.app, list);
  }

  const apps = [...new Set([...specApps.keys(), ...releaseOf.keys(), ...nginxOf.keys(), ...containersOf.keys()])].sort();
  const actions: Action[] = [];
  for (const app of apps) {
    if (busy.has(app)) continue;
    const containers = containersOf.get(app) ?? [];
    const spec = specApps.get(app);
    if (!spec) {
      // Removed from the desired state: stop routing first, then remove its containers and release.
      const why = 'app is no longer in the desired state';
      if (nginxOf.has(app)) actions.push({ type: 'remove-nginx', app, reason: why });
      for (const c of containers) actions.push({ type: 'remove-container', app, containerId: c.id, deploymentId: c.deploymentId, reason: why });
      if (releaseOf.has(app)) actions.push({ type: 'forget-release', app, reason: why });
      continue;
    }
    const release = releaseOf.get(app);
    // Never deployed (or deployed before this agent's journal): what runs is unknown, so it is left as is.
    if (!release) continue;
    actions.push(...planRelease(app, spec.domains, release, containers, nginxOf.get(app) ?? null, render));
  }
  return actions;
}

function planRelease(app: string, domains: string[], release: Release, containers: BerthContainer[], nginxContent: string | null, render: RenderSite): Action[] {
  const actions: Action[] = [];
  for (const c of containers) {
    if (c.deploymentId !== release.deploymentId) {
      actions.push({ type: 'remove-container', app, containerId: c.id, deploymentId: c.deploymentId, reason: `not part of the current release (${release.deploymentId})` });
    }
  }
  const webs = containers.filter((c) => c.deploymentId === release.deploymentId && c.process === 'web');
  const primary =
    webs.find((c) => c.id === release.containerId && c.state !== 'dead') ?? webs.find((c) => c.state === 'running') ?? webs.find((c) => c.state !== 'dead');
  for (const c of webs) {
    if (c === primary) continue;
    actions.push({ type: 'remove-container', app, containerId: c.id, deploymentId: c.deploymentId, reason: c.state === 'dead' ? 'container is dead' : 'duplicate web container of the current release' });
  }

  if (!primary) {
    actions.push({ type: 'start-release-container', app, release, domains, reason: 'the web container of the current release is missing' });
    return actions;
  }
  if (STARTABLE.has(primary.state)) {
    actions.push({ type: 'restart-container', app, containerId: primary.id, deploymentId: release.deploymentId, domains, reason: `web container is ${primary.state}` });
    return actions;
  }
  if (!SELF_HEALING.has(primary.state)) return actions; // an unknown state: observe again next pass

  let upstreamPort = release.hostPort;
  if (primary.state === 'running' && primary.hostPort !== null && (primary.id !== release.containerId || primary.hostPort !== release.hostPort)) {
    actions.push({ type: 'adopt-container', app, deploymentId: release.deploymentId, containerId: primary.id, hostPort: primary.hostPort, reason: 'the running web container differs from the recorded one' });
    upstreamPort = primary.hostPort;
  }
  // No domains: nothing to route, so the right server block is none at all.
  if (domains.length === 0) {
    if (nginxContent !== null) actions.push({ type: 'remove-nginx', app, reason: 'the app has no domains' });
    return actions;
  }
  const site: AppSite = { domains, upstreamPort };
  if (nginxContent === null) actions.push({ type: 'write-nginx', app, site, reason: 'server block is missing' });
  else if (nginxContent !== render(app, site)) actions.push({ type: 'write-nginx', app, site, reason: 'server block differs from the desired one' });
  return actions;
}

/** One line per action, for logs and the reconcile_runs record. */
export function describeAction(a: Action): string {
  switch (a.type) {
    case 'restart-container':
      return `restart container ${a.containerId.slice(0, 12)} of ${a.app} (${a.reason})`;
    case 'start-release-container':
      return `start a web container for ${a.app} release ${a.release.deploymentId} (${a.reason})`;
    case 'adopt-container':
      return `record container ${a.containerId.slice(0, 12)} as ${a.app}'s web container (${a.reason})`;
    case 'remove-container':
      return `remove container ${a.containerId.slice(0, 12)} of ${a.app} deployment ${a.deploymentId} (${a.reason})`;
    case 'write-nginx':
      return `write nginx config of ${a.app} → 127.0.0.1:${a.site.upstreamPort} (${a.reason})`;
    case 'remove-nginx':
      return `remove nginx config of ${a.app} (${a.reason})`;
    case 'forget-release':
      return `forget the release of ${a.app} (${a.reason})`;
  }
}
