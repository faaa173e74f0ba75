// Applying a plan: each action is isolated (one app's failure never blocks the others). The loop
// around it (observe → plan → apply → record) is reconciler.ts.
import type Docker from 'dockerode';
import type { Logger } from '../../shared/logger.js';
import type { ServerSpec } from '../../shared/spec.js';
import { oneLine } from '../../shared/util/index.js';
import type { AppSite } from '../nginx/index.js';
import { removeAppFiles, writeAppFiles } from '../docker/compose-file.js';
import { removeDeployKey } from '../build/deploy-key.js';
import { pruneApp } from '../releases/retention.js';
import { listBerthContainers, removeContainer, startProcessContainer, type BerthContainer } from '../docker/containers.js';
import { removeVolume, volumeMounts } from '../docker/volumes.js';
import { removeSwarmObject } from '../docker/swarm-objects.js';
import type { Release } from '../store/releases.js';
import type { AgentSettings } from '../settings.js';
import type { AgentStore } from '../store/index.js';
import { describeAction, type Action, type Observed } from './planner.js';

/** The part of Nginx reconciliation needs (main passes a serialised wrapper). */
export interface NginxPort {
  applyApp(app: string, site: AppSite | null): Promise<void>;
  readAppFile(app: string): string | null;
  render(app: string, site: AppSite): string;
  listApps(): string[];
  /** Reload without file changes (a new certificate behind the stable paths), verifying `verifyApps` serve it. */
  reload?(what: string, verifyApps?: string[]): Promise<void>;
}

/** Certificates, when HTTPS is on (main adapts the CertManager). */
export interface CertPort {
  /** Due apps and the domains each known app wants (Observed.certs). */
  observe(apps: ReadonlyArray<{ name: string; domains: readonly string[] }>): NonNullable<Observed['certs']>;
  /** Issue/renew if due; `changed` = another certificate is installed now; `error` = this attempt failed. */
  ensure(app: string, domains: string[]): Promise<{ changed: boolean; error: string | null }>;
  /** nginx refused the new certificate: select the previous one again (a failed attempt, with backoff). */
  rejected(app: string, why: string): Promise<void>;
  remove(app: string): Promise<void>;
}

export interface ExecutorDeps {
  docker: Docker;
  nginx: NginxPort;
  store: AgentStore;
  settings: AgentSettings;
  logger: Logger;
  /** Checked before every action: a deploy may have started since the plan was made. */
  isBusy: (app: string) => boolean;
  /** Set when HTTPS is on. */
  certs?: CertPort;
}

export interface ExecutionResult {
  applied: string[];
  errors: string[];
}

export async function executeActions(deps: ExecutorDeps, actions: Action[]): Promise<ExecutionResult> {
  const result: ExecutionResult = { applied: [], errors: [] };
  // No certificate orders for an app whose server block could not be written this pass: the
  // config is broken somewhere, and a new certificate could not be put into use anyway.
  const nginxFailed = new Set<string>();
  // A volume still mounted by a container that could not be removed cannot go either.
  const containerRemovalFailed = new Set<string>();
  // A network still used by a service that could not be removed cannot go either.
  const serviceRemovalFailed = new Set<string>();
  for (const action of actions) {
    const what = describeAction(action);
    if (deps.isBusy(action.app)) continue;
    if (action.type === 'ensure-cert' && action.domains.length > 0 && nginxFailed.has(action.app)) {
      result.errors.push(`${what}: skipped, the app's nginx config could not be applied`);
      continue;
    }
    if (action.type === 'remove-volume' && containerRemovalFailed.has(action.app)) {
      result.errors.push(`${what}: skipped, a container of the app could not be removed`);
      continue;
    }
    if (action.type === 'remove-network' && serviceRemovalFailed.has(action.app)) {
      result.errors.push(`${what}: skipped, a service of the app could not be removed`);
      continue;
    }
    if (action.type === 'skip-corrupt-release') {
      // Reported on every pass (the reconcile run records it); the store logged the row at error level.
      result.errors.push(what);
      deps.logger.warn({ app: action.app, deploymentId: action.deploymentId }, what);
      continue;
    }
    try {
      await apply(deps, action);
      result.applied.push(what);
      deps.logger.info({ app: action.app, action: action.type }, what);
    } catch (err) {
      const message = `${what}: ${oneLine(err)}`;
      result.errors.push(message);
      if (action.type === 'write-nginx' || action.type === 'restart-container' || action.type === 'start-release-container') nginxFailed.add(action.app);
      if (action.type === 'remove-container') containerRemovalFailed.add(action.app);
      if (action.type === 'remove-service') serviceRemovalFailed.add(action.app);
      deps.logger.warn({ err, app: action.app, action: action.type }, `reconcile action failed: ${what}`);
    }
  }
  return result;
}

async function apply(deps: ExecutorDeps, action: Action): Promise<void> {
  const { docker, nginx, store, settings } = deps;
  switch (action.type) {
    case 'restart-container':
      return restartContainer(deps, action);
    case 'start-release-container':
      return startReleaseContainer(deps, action);
    case 'adopt-container':
      store.releases.updateContainer(action.app, action.deploymentId, action.containerId, action.hostPort);
      return;
    case 'remove-container':
      await removeContainer(docker, action.containerId, { graceSeconds: settings.stopGraceS });
      return;
    case 'write-nginx':
      await nginx.applyApp(action.app, action.site);
      return;
    case 'remove-nginx':
      await nginx.applyApp(action.app, null);
      return;
    case 'forget-release': {
      // The app is gone: so is everything kept to roll it back (images, static releases, and the
      // snapshots holding its env). Its containers were removed earlier in this pass.
      store.releases.forget(action.app);
      const pruned = await pruneApp(deps, action.app, { keepReleases: 0 });
      if (pruned.images.length + pruned.staticDirs.length > 0) {
        deps.logger.info({ app: action.app, images: pruned.images, staticDirs: pruned.staticDirs }, 'removed the images and releases of a removed app');
      }
      return;
    }
    case 'ensure-cert': {
      if (!deps.certs) return;
      const { changed, error } = await deps.certs.ensure(action.app, action.domains);
      if (changed && action.site) await useNewCertificate(deps, action.app, action.site);
      if (error) throw new Error(error);
      return;
    }
    case 'remove-cert':
      await deps.certs?.remove(action.app);
      return;
    case 'remove-app-files':
      await removeAppFiles(settings.dataDir, action.app);
      await removeDeployKey(settings.dataDir, action.app);
      return;
    case 'remove-volume':
      await removeVolume(docker, action.volume);
      return;
    case 'remove-service':
      await removeSwarmObject(docker, 'service', action.serviceId);
      return;
    case 'remove-network':
      await removeSwarmObject(docker, 'network', action.networkId);
      return;
    case 'skip-corrupt-release':
      return; // reported by executeActions, never applied
  }
}

/** Start a stopped container of the current release; a web one: record its port and route to it. */
async function restartContainer(deps: ExecutorDeps, action: Extract<Action, { type: 'restart-container' }>): Promise<void> {
  const { docker, nginx, store, settings } = deps;
  await docker
    .getContainer(action.containerId)
    .start()
    .catch((err: { statusCode?: number }) => {
      if (err?.statusCode !== 304) throw err; // 304: it came back up on its own meanwhile
    });
  if (action.process !== 'web') return;
  const containers = await listBerthContainers(docker, { app: action.app, server: settings.server });
  const now = containers.find((c) => c.id === action.containerId);
  if (!now?.hostPort) throw new Error('the restarted container has no published port');
  if ((now.replica ?? 1) === 1) store.releases.updateContainer(action.app, action.deploymentId, action.containerId, now.hostPort);
  await syncNginx(nginx, action.app, webSite(action.domains, containers, action.deploymentId));
}

/** Create a missing container of the current release from its image, env and volumes; a web one: record and route to it. */
async function startReleaseContainer(deps: ExecutorDeps, action: Extract<Action, { type: 'start-release-container' }>): Promise<void> {
  const { docker, nginx, store, settings } = deps;
  const r = action.release;
  // The planner never plans this for a corrupt release; checked again so `r.env ?? {}` below can
  // only ever mean "a release recorded before env was kept".
  if (r.corrupt) throw r.corrupt;
  const proc = r.processes?.find((p) => p.name === action.process);
  const command = proc?.command ?? null;
  const started = await startProcessContainer(docker, {
    app: r.app,
    deploymentId: r.deploymentId,
    image: r.image,
    env: r.env ?? {},
    process: action.process,
    replica: action.replica,
    command,
    port: r.containerPort ?? undefined,
    server: settings.server,
    volumes: volumeMounts(r.app, r.volumes),
    limits: { memory: proc?.memory ?? null, cpus: proc?.cpus ?? null },
  });
  if (action.process !== 'web') return;
  if (action.replica === 1) store.releases.updateContainer(r.app, r.deploymentId, started.id, started.hostPort);
  const containers = await listBerthContainers(docker, { app: r.app, server: settings.server });
  await syncNginx(nginx, r.app, webSite(action.domains, containers, r.deploymentId));
  // The new container is published on another port: docker-compose.yml says so.
  await rewriteAppFiles(deps, r, containers, started.containerPort).catch((err: unknown) =>
    deps.logger.warn({ err, app: r.app }, 'could not rewrite docker-compose.yml'),
  );
}

/** docker-compose.yml of a live release whose containers changed (the release command from its kept snapshot). */
async function rewriteAppFiles(deps: ExecutorDeps, r: Release, containers: BerthContainer[], containerPort: number): Promise<void> {
  const { store, settings } = deps;
  const config = store.releases.snapshot(r.deploymentId)?.config as { release?: unknown } | null | undefined;
  const webPorts = new Map(
    containers
      .filter((c) => c.deploymentId === r.deploymentId && c.process === 'web' && c.hostPort && c.state !== 'dead')
      .map((c) => [c.replica ?? 1, c.hostPort!] as const),
  );
  await writeAppFiles(
    settings.dataDir,
    {
      app: r.app,
      ...(settings.server ? { server: settings.server } : {}),
      deploymentId: r.deploymentId,
      commit: r.commit,
      image: r.image,
      processes: r.processes ?? [{ name: 'web', command: null, scale: 1 }],
      containerPort,
      staticRoot: r.staticRoot ?? null,
      volumes: r.volumes ?? {},
      releaseCommand: typeof config?.release === 'string' ? config.release : null,
      webPorts,
    },
    r.env ?? {},
  );
}

/**
 * Put a newly installed certificate into nginx: rewrite the server block when its TLS part changes
 * (first certificate, other domains), else reload. If nginx refuses it, the previous certificate
 * is selected again and nginx put back on it.
 */
async function useNewCertificate(deps: ExecutorDeps, app: string, site: AppSite): Promise<void> {
  const { nginx } = deps;
  const apply = async () => {
    if (nginx.readAppFile(app) !== nginx.render(app, site)) await nginx.applyApp(app, site);
    else await nginx.reload?.(`the new certificate of ${app}`, [app]);
  };
  try {
    await apply();
  } catch (err) {
    const why = oneLine(err);
    await deps.certs!.rejected(app, why);
    await apply().catch((again: unknown) => deps.logger.error({ app, err: again }, 'nginx did not take the previous certificate either'));
    throw new Error(`nginx refused the new certificate, the previous one is kept: ${why}`);
  }
}

/** Route to every web container of the release that has a port (replica order); null = nothing to route. */
export function webSite(domains: string[], containers: BerthContainer[], deploymentId: string): AppSite | null {
  const ports = containers
    .filter((c) => c.deploymentId === deploymentId && c.process === 'web' && c.hostPort && c.state !== 'dead' && c.state !== 'exited')
    .sort((a, b) => (a.replica ?? 1) - (b.replica ?? 1))
    .map((c) => c.hostPort!);
  if (domains.length === 0 || ports.length === 0) return null;
  return ports.length === 1 ? { domains, upstreamPort: ports[0]! } : { domains, upstreamPort: ports[0]!, upstreamPorts: ports };
}

async function syncNginx(nginx: NginxPort, app: string, site: AppSite | null): Promise<void> {
  if (site === null) return; // no domains: the planner removes any server block on its next pass
  if (nginx.readAppFile(app) !== nginx.render(app, site)) await nginx.applyApp(app, site);
}
