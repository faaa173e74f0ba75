// One deploy, start to finish: fetch + config → build → release command → start every process →
// health check → switch nginx → done, every transition journaled and reported. Any failure removes
// the new containers and leaves the live release and nginx exactly as they were. Env values are
// masked in everything this writes to the deploy log.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { DeployStatus } from '../../shared/deploy-status.js';
import type { Logger } from '../../shared/logger.js';
import { PROTOCOL_VERSION, type AgentMessage, type DeployOrder } from '../../shared/protocol.js';
import type { AppSpec } from '../../shared/spec.js';
import { ConfigError, loadAppConfig, type AppConfig } from '../config/index.js';
import { checkoutTo, fetchSource } from '../git.js';
import { berthLabels, LABEL } from '../labels.js';
import type { AppSite } from '../nginx.js';
import { listBerthContainers, removeContainer, type StartedContainer } from '../processes.js';
import { runRelease } from '../release.js';
import type { AgentSettings } from '../settings.js';
import { pruneStaticReleases, staticReleaseDir } from '../static.js';
import type { AgentStore, DeployPatch } from '../store/index.js';
import { runBuildPhase } from './build-phase.js';
import { DeployCancelled } from './cancel.js';
import { DeployLogStream, redactUrls } from './log-stream.js';
import { makeMasker } from './mask.js';
import type { RunOutcome } from './queue.js';
import { checkHealth, releaseProcesses, startProcesses } from './start-phase.js';

/** The part of Nginx a deploy needs (main passes a serialised wrapper). */
export interface NginxApplier {
  applyApp(app: string, site: AppSite | null): Promise<void>;
}

export interface RunnerDeps {
  docker: Docker;
  nginx: NginxApplier;
  store: AgentStore;
  settings: AgentSettings;
  logger: Logger;
  send: (msg: AgentMessage) => void;
  /** The app's domains now (from the latest desired state), falling back to the order's snapshot. */
  domainsFor: (app: AppSpec) => string[];
}

const FAILURE_PREFIX: Partial<Record<DeployStatus, string>> = {
  queued: 'deploy failed',
  fetching: 'fetch failed',
  building: 'build failed',
  releasing: 'release failed',
  starting: 'start failed',
  health_checking: 'health check failed',
  switching: 'switch failed',
};

/** The first meaningful line of an error, credentials hidden: reasons are shown in one line. */
export function oneLine(err: unknown, max = 500): string {
  const message = err instanceof Error ? err.message : String(err);
  const line = message.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? (err instanceof Error ? err.name : 'unknown error');
  const clean = redactUrls(line.replace(/\s+/g, ' '));
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

export function imageTag(app: string, deploymentId: string): string {
  return `berth/${app}:${deploymentId}`;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export async function runDeploy(deps: RunnerDeps, order: DeployOrder, signal: AbortSignal, closing: AbortSignal): Promise<RunOutcome> {
  const { store, settings, docker, logger } = deps;
  const id = order.deploymentId;
  const app = order.app.name;
  const log = logger.child({ deploymentId: id, app });
  const record = store.deploys.get(id);
  if (!record) throw new Error(`deploy ${id} is not in the journal`);
  // Orders journaled before env existed carry none.
  const env: Record<string, string> = order.app.env ?? {};
  const mask = makeMasker(env);

  const stream = new DeployLogStream(
    id,
    record.logSeq,
    deps.send,
    (next) => store.deploys.setLogSeq(id, next),
    (err) => log.warn({ err }, 'could not send deploy log lines'),
  );
  stream.setMask(mask);
  let phase: DeployStatus = record.status;
  let commit: string | undefined = record.commit ?? order.commit;
  const transition = (status: DeployStatus, patch: DeployPatch = {}) => {
    stream.flush(); // the log lines of a phase reach the control plane before its end
    store.deploys.transition(id, status, patch);
    phase = status;
    deps.send({
      type: 'deploy_progress',
      v: PROTOCOL_VERSION,
      deploymentId: id,
      status,
      ...(commit ? { commit } : {}),
      ...(patch.reason ? { reason: patch.reason } : {}),
      ts: new Date().toISOString(),
    });
    log.info({ status, ...(patch.reason ? { reason: patch.reason } : {}) }, `deploy ${status}`);
  };

  const cacheDir = join(settings.dataDir, 'git', app);
  const buildDir = join(settings.dataDir, 'builds', id);
  const started: StartedContainer[] = [];
  let staticRoot: string | null = null;
  try {
    transition('fetching');
    stream.system(`fetching ${order.app.repo} (branch ${order.app.branch}${order.commit ? `, commit ${order.commit}` : ''})`);
    const fetched = await fetchSource({ cacheDir, repo: order.app.repo, branch: order.app.branch, commit: order.commit, log: (l) => stream.system(l), signal });
    commit = fetched.commit;
    stream.system(`deploying commit ${commit}`);

    let config: AppConfig;
    let image: string | null;
    let port: number | undefined;
    const tag = imageTag(app, id);
    try {
      await checkoutTo({ cacheDir, commit, dest: buildDir });
      // The config is read before anything is built: a bad key fails the deploy here, named.
      config = loadAppConfig(buildDir);
      describeConfig(config, (l) => stream.system(l));
      signal.throwIfAborted();

      transition('building', { commit });
      ({ image, staticRoot, port } = await runBuildPhase(docker, {
        app,
        deploymentId: id,
        commit,
        checkout: buildDir,
        config,
        env,
        tag,
        settings,
        log: (l) => stream.build(l),
        system: (l) => stream.system(l),
        signal,
      }));
    } finally {
      await rm(buildDir, { recursive: true, force: true }).catch((err) => log.warn({ err }, 'could not remove the build directory'));
    }
    signal.throwIfAborted();

    const labels = berthLabels(app, id, { [LABEL.commit]: commit, ...(settings.server ? { [LABEL.server]: settings.server } : {}) });
    if (config.release && image) {
      transition('releasing', { image });
      stream.system(`running the release command: ${config.release}`);
      await runRelease(docker, {
        app,
        deploymentId: id,
        image,
        command: config.release,
        env,
        labels: { ...labels, [LABEL.process]: 'release' },
        log: (l) => stream.release(l),
        timeoutMs: settings.releaseTimeoutMs,
        signal,
      });
      stream.system('release command finished');
    }

    const processes = staticRoot ? [] : releaseProcesses(config);
    transition('starting', image ? { image } : {});
    if (image && processes.some((p) => p.scale > 0)) {
      await startProcesses(docker, {
        app,
        deploymentId: id,
        image,
        env,
        port,
        processes,
        server: settings.server,
        onStarted: (c) => {
          started.push(c);
          if (c.process === 'web' && c.replica === 1) store.deploys.update(id, { containerId: c.id, hostPort: c.hostPort, containerPort: c.containerPort });
        },
        log: (l) => stream.system(l),
      });
    } else if (!staticRoot) {
      stream.system('no processes to start');
    }

    transition('health_checking');
    if (started.length > 0) {
      await checkHealth(docker, started, {
        healthcheck: config.healthcheck,
        timeoutMs: settings.healthTimeoutMs,
        stableMs: settings.healthStableMs,
        log: (l) => stream.system(l),
        signal,
      });
      stream.system('health check passed');
    }
    signal.throwIfAborted();

    transition('switching');
    const domains = deps.domainsFor(order.app);
    const webs = started.filter((c) => c.process === 'web').sort((a, b) => a.replica - b.replica);
    const first = webs[0];
    let site: AppSite | null = null;
    if (staticRoot) site = { domains, staticRoot };
    else if (first) site = webs.length === 1 ? { domains, upstreamPort: first.hostPort } : { domains, upstreamPort: first.hostPort, upstreamPorts: webs.map((w) => w.hostPort) };
    // Recorded before nginx moves: if the agent dies mid-switch, recovery sees a healthy current
    // release and reconciliation finishes routing to it rather than to a container being removed.
    const previous = store.releases.activate({
      app,
      deploymentId: id,
      image: image ?? '',
      containerId: first?.id ?? '',
      hostPort: first?.hostPort ?? 0,
      containerPort: first?.containerPort ?? null,
      commit,
      processes,
      staticRoot,
      env,
    });
    try {
      await deps.nginx.applyApp(app, site && domains.length > 0 ? site : null);
    } catch (err) {
      store.releases.restore(app, previous);
      throw err;
    }
    store.releases.recordSnapshot({
      deploymentId: id,
      app,
      image: image ?? '',
      commit,
      config: { ...config, notes: undefined },
      processes,
      staticRoot,
      containerPort: first?.containerPort ?? null,
      env,
    });
    stream.system(
      domains.length > 0 && site
        ? `now serving ${domains.join(', ')} from commit ${commit.slice(0, 12)}`
        : `release ${id} is live${site ? ' (the app has no domains yet)' : ' (no web process: nothing is routed)'}`,
    );
    transition('done');
    if (staticRoot) {
      try {
        pruneStaticReleases(settings.staticDir, app, settings.keepReleases, new Set([staticRoot]));
      } catch (err) {
        log.warn({ err }, 'could not prune old static releases');
      }
    }
    return { drain: drainPrevious(deps, app, id, closing, (msg) => log.info(msg)) };
  } catch (err) {
    const cancelled = signal.aborted && signal.reason instanceof DeployCancelled ? signal.reason : null;
    const aborted = signal.aborted && !cancelled;
    const reason = cancelled
      ? mask(`${cancelled.message} (while ${phase})`)
      : aborted
        ? `agent stopped while the deploy was ${phase}`
        : err instanceof ConfigError
          ? mask(`invalid app config: ${oneLine(err)}`)
          : mask(`${FAILURE_PREFIX[phase] ?? 'deploy failed'}: ${oneLine(err)}`);
    // Not the error itself: its message can carry container output, and so env values.
    if (!aborted && !cancelled) log.warn({ reason, error: err instanceof Error ? err.name : typeof err }, 'deploy failed');
    for (const c of started) {
      await removeContainer(docker, c.id, { graceSeconds: 0 }).catch((e) => log.warn({ err: e }, 'could not remove a new container'));
    }
    if (started.length > 0) store.deploys.update(id, { containerId: null });
    if (staticRoot && store.releases.get(app)?.staticRoot !== staticRoot) {
      await rm(staticRoot, { recursive: true, force: true }).catch(() => {});
    } else if (!staticRoot) {
      // A failure while publishing may leave a half-made release directory.
      await rm(staticReleaseDirSafe(settings.staticDir, app, id), { recursive: true, force: true }).catch(() => {});
    }
    try {
      // The detail after the first line (a crashed process's last output) goes to the log, masked like everything else.
      const detail = err instanceof Error && !aborted && !cancelled ? err.message.split('\n').slice(1).join('\n').trim() : '';
      if (detail) stream.system(detail);
      stream.system(reason);
      transition(cancelled ? cancelled.status : 'failed', { reason });
    } catch (e) {
      log.error({ err: e, reason }, 'could not journal the failed deploy');
    }
    return {};
  }
}

function staticReleaseDirSafe(staticDir: string, app: string, id: string): string {
  try {
    return staticReleaseDir(staticDir, app, id);
  } catch {
    return join(staticDir, app, '.invalid');
  }
}

/** One summary of what the config says, plus whatever the loader inferred. */
function describeConfig(config: AppConfig, log: (line: string) => void): void {
  const img = config.build.image;
  const image = img.kind === 'dockerfile' ? `dockerfile ${config.build.dockerfile}` : img.kind === 'none' ? 'none (plain static files)' : `${img.kind}${img.version ? `-${img.version}` : ''}`;
  const procs = Object.entries(config.processes)
    .map(([n, p]) => `${n}${p.scale !== 1 ? `×${p.scale}` : ''}`)
    .join(', ');
  log(
    `config from ${config.source}: build image ${image}${config.build.static ? `, static site ${config.build.static}` : ''}${procs ? `, processes ${procs}` : ''}${config.release ? ', release command' : ''}`,
  );
  for (const note of config.notes) log(note);
  if (Object.keys(config.cron).length > 0) log(`cron jobs in the config are not run yet by this berth version: ${Object.keys(config.cron).join(', ')}`);
  if (Object.keys(config.volumes).length > 0) log(`volumes in the config are not mounted yet by this berth version: ${Object.keys(config.volumes).join(', ')}`);
}

/** Let in-flight requests finish on the old release, then stop and remove every other container of the app. */
async function drainPrevious(deps: RunnerDeps, app: string, liveDeployment: string, closing: AbortSignal, note: (msg: string) => void): Promise<void> {
  const old = (await listBerthContainers(deps.docker, { app, server: deps.settings.server })).filter((c) => c.deploymentId !== liveDeployment);
  if (old.length === 0) return;
  await sleep(deps.settings.drainMs, closing);
  // On shutdown the old containers are left: the next start's reconcile pass removes them.
  if (closing.aborted) return;
  for (const c of old) {
    if (deps.store.releases.get(app)?.deploymentId === c.deploymentId) continue; // re-activated meanwhile
    await removeContainer(deps.docker, c.id, { graceSeconds: deps.settings.stopGraceS });
    note(`removed container ${c.name} of deployment ${c.deploymentId}`);
  }
}
