// One deploy, start to finish: fetch + config → build → release command → start every process →
// health check → switch nginx → done, every transition journaled (with its deadline) and reported.
// A rollback skips the first three: a kept release's image, config and env go through the same
// start, health gate and switch. Any failure removes the new containers (and a failed build's
// images) and leaves the live release and nginx exactly as they were. Env values are masked in
// everything this writes to the deploy log.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { DeployStatus } from '../../shared/deploy-status.js';
import type { Logger } from '../../shared/logger.js';
import { PROTOCOL_VERSION, type AgentMessage, type DeployOrder } from '../../shared/protocol.js';
import type { AppSpec } from '../../shared/spec.js';
import { writeDeployKey } from '../deploy-key.js';
import { appRoot, ConfigError, loadAppConfig, type AppConfig } from '../config/index.js';
import { checkoutTo, fetchSource } from '../git.js';
import { berthLabels, LABEL } from '../docker/labels.js';
import type { AppSite } from '../nginx.js';
import { listBerthContainers, removeContainer, type StartedContainer } from '../docker/containers.js';
import { runReleaseCommand as runRelease } from '../docker/release-command.js';
import { ensureVolumes, volumeMounts } from '../docker/volumes.js';
import { writeAppFiles } from '../docker/compose-file.js';
import type { AgentSettings } from '../settings.js';
import { staticReleaseDir } from '../static.js';
import type { AgentStore, DeployPatch, Release } from '../store/index.js';
import { buildLimits, runBuildPhase } from './build-phase.js';
import { DeployCancelled } from './cancel.js';
import { DeploySkipped, refuseOlderThanLive } from './push-guard.js';
import { withDeadline, type PhaseLimit } from './deadline.js';
import { checkFreeDisk } from './disk.js';
import { BuildImageTracker, formatBytes, pruneApp, removeBuildLeftovers } from './images.js';
import { DeployLogStream, redactUrls } from './log-stream.js';
import { makeMasker } from '../../shared/secret-mask.js';
import type { RunOutcome } from './queue.js';
import { checkHealth, healthBudgetMs, releaseProcesses, startProcesses } from './start-phase.js';

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

/** What a deploy runs: built just now, or a kept release brought back by a rollback. */
interface Prepared {
  image: string | null;
  staticRoot: string | null;
  port: number | undefined;
  config: AppConfig;
  env: Record<string, string>;
  commit: string;
  /** A rollback: the deployment whose release is re-activated. */
  rollbackOf?: string;
}

export class RollbackError extends Error {
  override name = 'RollbackError';
}

/** Slack on top of a phase's own budget (a one-off's timeout, the health budget) for cleaning up. */
const PHASE_SLACK_MS = 30_000;

export async function runDeploy(deps: RunnerDeps, order: DeployOrder, signal: AbortSignal, closing: AbortSignal): Promise<RunOutcome> {
  const { store, settings, docker, logger } = deps;
  const id = order.deploymentId;
  const app = order.app.name;
  const log = logger.child({ deploymentId: id, app });
  const record = store.deploys.get(id);
  if (!record) throw new Error(`deploy ${id} is not in the journal`);
  // Orders journaled before env existed carry none.
  let env: Record<string, string> = order.app.env ?? {};
  let mask = makeMasker(env);

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
  let healthBudget = settings.healthTimeoutMs + settings.healthStableMs;
  const limits = (status: DeployStatus): PhaseLimit | null => {
    switch (status) {
      case 'fetching':
        return { phase: status, ms: settings.fetchTimeoutMs, setting: 'BERTH_FETCH_TIMEOUT_S' };
      case 'building':
        return { phase: status, ms: settings.buildTimeoutMs, setting: 'BERTH_BUILD_TIMEOUT_S' };
      case 'releasing':
        return { phase: status, ms: settings.releaseTimeoutMs + PHASE_SLACK_MS, setting: 'BERTH_RELEASE_TIMEOUT_S' };
      case 'starting':
        return { phase: status, ms: settings.startTimeoutMs, setting: 'BERTH_START_TIMEOUT_S' };
      case 'health_checking':
        return { phase: status, ms: healthBudget + PHASE_SLACK_MS, setting: 'healthcheck.timeout in berth.yml, or BERTH_HEALTH_TIMEOUT_MS' };
      case 'switching':
        return { phase: status, ms: settings.switchTimeoutMs, setting: 'BERTH_SWITCH_TIMEOUT_S' };
      default:
        return null;
    }
  };
  const transition = (status: DeployStatus, patch: DeployPatch = {}) => {
    stream.flush(); // the log lines of a phase reach the control plane before its end
    const limit = limits(status);
    store.deploys.transition(id, status, { ...patch, deadlineAt: limit ? new Date(Date.now() + limit.ms).toISOString() : null });
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
  /** Enter `status` and run its work under the phase's deadline. */
  const runPhase = <T>(status: DeployStatus, patch: DeployPatch, work: (signal: AbortSignal) => Promise<T>, parent: AbortSignal = signal): Promise<T> => {
    transition(status, patch);
    return withDeadline(limits(status)!, parent, work);
  };

  const started: StartedContainer[] = [];
  let staticRoot: string | null = null;
  let builtTag: string | null = null;
  /** Once the switch recorded this release as current: what to put back if the switch fails. */
  const switched: { previous: Release | null; activated: boolean } = { previous: null, activated: false };
  try {
    const prepared = order.rollbackOf
      ? await prepareRollback(deps, order.rollbackOf, { app, stream })
      : await prepareBuild(deps, order, { id, app, env, stream, runPhase, onCommit: (c) => (commit = c), onTag: (t) => (builtTag = t) });
    commit = prepared.commit;
    staticRoot = prepared.staticRoot;
    if (prepared.env !== env) {
      // A rollback runs with the env its release was deployed with: mask those values too.
      env = prepared.env;
      mask = makeMasker({ ...(order.app.env ?? {}), ...env });
      stream.setMask(mask);
    }
    const { config, image, port } = prepared;
    const domains = deps.domainsFor(order.app);

    const processes = staticRoot ? [] : releaseProcesses(config);
    await runPhase('starting', image ? { image } : {}, async (phaseSignal) => {
      if (image && processes.some((p) => p.scale > 0)) {
        // Existing volumes keep their data (a rollback's config may name one the newer release dropped).
        await ensureVolumes(docker, app, config.volumes, settings.server || undefined);
        await startProcesses(docker, {
          app,
          deploymentId: id,
          image,
          env,
          port,
          processes,
          volumes: volumeMounts(app, config.volumes),
          server: settings.server,
          onStarted: (c) => {
            started.push(c);
            if (c.process === 'web' && c.replica === 1) store.deploys.update(id, { containerId: c.id, hostPort: c.hostPort, containerPort: c.containerPort });
          },
          log: (l) => stream.system(l),
          signal: phaseSignal,
        });
      } else if (!staticRoot) {
        stream.system('no processes to start');
      }
    });

    healthBudget = healthBudgetMs({ healthcheck: config.healthcheck, timeoutMs: settings.healthTimeoutMs, stableMs: settings.healthStableMs });
    await runPhase('health_checking', {}, async (phaseSignal) => {
      if (started.length === 0) return;
      await checkHealth(docker, started, {
        healthcheck: config.healthcheck,
        timeoutMs: settings.healthTimeoutMs,
        stableMs: settings.healthStableMs,
        intervalMs: settings.healthIntervalMs,
        domains,
        log: (l) => stream.system(l),
        signal: phaseSignal,
      });
      stream.system('health check passed');
    });
    signal.throwIfAborted();

    const webs = started.filter((c) => c.process === 'web').sort((a, b) => a.replica - b.replica);
    const first = webs[0];
    let site: AppSite | null = null;
    if (staticRoot) site = { domains, staticRoot };
    else if (first) site = webs.length === 1 ? { domains, upstreamPort: first.hostPort } : { domains, upstreamPort: first.hostPort, upstreamPorts: webs.map((w) => w.hostPort) };
    // Past the health gate the switch is not cancelled halfway: nginx either moves or stays (its
    // own transaction), so only the phase deadline can stop it, never a cancel or a shutdown.
    await runPhase(
      'switching',
      {},
      async () => {
        // Recorded before nginx moves: if the agent dies mid-switch, recovery sees a healthy current
        // release and reconciliation finishes routing to it rather than to a container being removed.
        switched.previous = store.releases.activate({
          app,
          deploymentId: id,
          image: image ?? '',
          containerId: first?.id ?? '',
          hostPort: first?.hostPort ?? 0,
          containerPort: first?.containerPort ?? null,
          commit: commit ?? null,
          processes,
          staticRoot,
          env,
          volumes: config.volumes ?? {},
        });
        switched.activated = true;
        await deps.nginx.applyApp(app, site && domains.length > 0 ? site : null);
      },
      NEVER,
    );
    if (prepared.rollbackOf) {
      store.releases.touchSnapshot(prepared.rollbackOf);
    } else {
      store.releases.recordSnapshot({
        deploymentId: id,
        app,
        image: image ?? '',
        commit: commit ?? null,
        config: { ...config, notes: undefined },
        processes,
        staticRoot,
        containerPort: first?.containerPort ?? null,
        env,
      });
      // The build's layers now belong to a kept release: pruned with its image, not as leftovers.
      store.deploys.clearBuildImages(id);
    }
    // The release is live: docker-compose.yml describes it now. A failure to write it is reported, not fatal.
    try {
      const { composeFile } = await writeAppFiles(
        settings.dataDir,
        {
          app,
          ...(settings.server ? { server: settings.server } : {}),
          deploymentId: id,
          commit: commit ?? null,
          image: image ?? '',
          processes,
          containerPort: first?.containerPort ?? port ?? null,
          staticRoot,
          volumes: config.volumes ?? {},
          releaseCommand: config.release,
          webPorts: new Map(webs.map((w) => [w.replica, w.hostPort])),
        },
        env,
      );
      stream.system(`wrote ${composeFile}`);
    } catch (err) {
      stream.system(`could not write the app's docker-compose.yml: ${oneLine(err)}`);
      log.warn({ err }, 'could not write docker-compose.yml');
    }
    stream.system(
      domains.length > 0 && site
        ? `now serving ${domains.join(', ')} from commit ${commit?.slice(0, 12) ?? '?'}${prepared.rollbackOf ? ` (release ${prepared.rollbackOf})` : ''}`
        : `release ${id} is live${site ? ' (the app has no domains yet)' : ' (no web process: nothing is routed)'}`,
    );
    transition('done');
    const note = (msg: string) => log.info(msg);
    return {
      drain: (async () => {
        await drainPrevious(deps, app, id, closing, note);
        if (closing.aborted) return;
        await pruneAfterDeploy(deps, app, stream, log);
      })(),
    };
  } catch (err) {
    const cancelled = signal.aborted && signal.reason instanceof DeployCancelled ? signal.reason : null;
    const aborted = signal.aborted && !cancelled;
    // A push of an older commit: not deployed, and not a failure either.
    const skipped = !signal.aborted && err instanceof DeploySkipped ? err : null;
    const reason = cancelled
      ? mask(`${cancelled.message} (while ${phase})`)
      : aborted
        ? `agent stopped while the deploy was ${phase}`
        : skipped
          ? skipped.message
        : err instanceof ConfigError
          ? mask(`invalid app config: ${oneLine(err)}`)
          : err instanceof RollbackError
            ? mask(`rollback failed: ${oneLine(err)}`)
          : mask(`${FAILURE_PREFIX[phase] ?? 'deploy failed'}: ${oneLine(err)}`);
    // Not the error itself: its message can carry container output, and so env values.
    if (skipped) log.info({ reason }, 'push deploy skipped');
    else if (!aborted && !cancelled) log.warn({ reason, error: err instanceof Error ? err.name : typeof err }, 'deploy failed');
    // A failed (or overrun) switch: the previous release is current again before its replacement goes.
    if (switched.activated && store.releases.get(app)?.deploymentId === id) store.releases.restore(app, switched.previous);
    for (const c of started) {
      await removeContainer(docker, c.id, { graceSeconds: 0 }).catch((e) => log.warn({ err: e }, 'could not remove a new container'));
    }
    if (started.length > 0) store.deploys.update(id, { containerId: null });
    if (!order.rollbackOf) {
      if (staticRoot && store.releases.get(app)?.staticRoot !== staticRoot) {
        await rm(staticRoot, { recursive: true, force: true }).catch(() => {});
      } else if (!staticRoot) {
        // A failure while publishing may leave a half-made release directory.
        await rm(staticReleaseDirSafe(settings.staticDir, app, id), { recursive: true, force: true }).catch(() => {});
      }
      // The image and the layers this build made are no release: they go with the deploy.
      const imageIds = store.deploys.get(id)?.buildImages ?? [];
      await removeBuildLeftovers(docker, { tag: builtTag ?? imageTag(app, id), imageIds, server: settings.server })
        .then(() => store.deploys.clearBuildImages(id))
        .catch((e) => log.warn({ err: e }, 'could not remove the images of the failed build'));
    }
    try {
      // The detail after the first line (a crashed process's last output) goes to the log, masked like everything else.
      const detail = err instanceof Error && !aborted && !cancelled && !skipped ? err.message.split('\n').slice(1).join('\n').trim() : '';
      if (detail) stream.system(detail);
      stream.system(reason);
      transition(cancelled ? cancelled.status : skipped ? 'cancelled' : 'failed', { reason });
    } catch (e) {
      log.error({ err: e, reason }, 'could not journal the failed deploy');
    }
    return {};
  }
}

/** A signal that never aborts: for work a cancel must not interrupt halfway (the switch). */
const NEVER = new AbortController().signal;

interface PhaseRunner {
  <T>(status: DeployStatus, patch: DeployPatch, work: (signal: AbortSignal) => Promise<T>, parent?: AbortSignal): Promise<T>;
}

/** fetching → building → releasing: the new release's image (or static directory) from Git. */
async function prepareBuild(
  deps: RunnerDeps,
  order: DeployOrder,
  ctx: { id: string; app: string; env: Record<string, string>; stream: DeployLogStream; runPhase: PhaseRunner; onCommit: (c: string) => void; onTag: (t: string) => void },
): Promise<Prepared> {
  const { docker, store, settings, logger } = deps;
  const { id, app, env, stream, runPhase } = ctx;
  const cacheDir = join(settings.dataDir, 'git', app);
  const buildDir = join(settings.dataDir, 'builds', id);
  const tag = imageTag(app, id);
  try {
    const { commit, config } = await runPhase('fetching', {}, async (signal) => {
      stream.system(`fetching ${order.app.repo} (branch ${order.app.branch}${order.commit ? `, commit ${order.commit}` : ''})`);
      const deployKey = order.app.deployKey ? writeDeployKey(settings.dataDir, app, order.app.deployKey, order.app.knownHosts) : undefined;
      if (deployKey) stream.system(`using the app's deploy key ${deployKey.fingerprint}`);
      const fetched = await fetchSource({ cacheDir, repo: order.app.repo, branch: order.app.branch, commit: order.commit, log: (l) => stream.system(l), signal, ...(deployKey ? { deployKey } : {}) });
      ctx.onCommit(fetched.commit);
      if (order.skipIfAncestorOfLive) {
        await refuseOlderThanLive({ cacheDir, commit: fetched.commit, live: store.releases.get(app), log: (l) => stream.system(l), signal });
      }
      stream.system(`deploying commit ${fetched.commit}`);
      await checkoutTo({ cacheDir, commit: fetched.commit, dest: buildDir });
      // The config is read before anything is built: a bad key fails the deploy here, named.
      const loaded = loadAppConfig(appRoot(buildDir, order.app.rootDir, (l) => stream.system(l)));
      describeConfig(loaded, (l) => stream.system(l));
      return { commit: fetched.commit, config: loaded };
    });

    const built = await runPhase('building', { commit }, async (signal) => {
      const free = await checkFreeDisk(docker, { dataDir: settings.dataDir, minFreeMb: settings.minFreeDiskMb });
      if (free.length > 0) logger.debug({ free }, 'free disk before the build');
      ctx.onTag(tag);
      const tracker = new BuildImageTracker((imageId) => store.deploys.addBuildImage(id, imageId));
      return runBuildPhase(docker, {
        app,
        deploymentId: id,
        commit,
        checkout: appRoot(buildDir, order.app.rootDir),
        config,
        env,
        tag,
        settings,
        log: (l) => {
          tracker.line(l);
          stream.build(l);
        },
        system: (l) => stream.system(l),
        signal,
      });
    });
    if (config.release && built.image) {
      const image = built.image;
      await runPhase('releasing', { image }, async (signal) => {
        // The release command sees the volumes the processes will (e.g. it migrates data kept there).
        await ensureVolumes(docker, app, config.volumes, settings.server || undefined);
        stream.system(`running the release command: ${config.release}`);
        await runRelease(docker, {
          app,
          deploymentId: id,
          image,
          command: config.release!,
          env,
          volumes: volumeMounts(app, config.volumes),
          labels: berthLabels(app, id, { [LABEL.commit]: commit, [LABEL.process]: 'release', ...(settings.server ? { [LABEL.server]: settings.server } : {}) }),
          log: (l) => stream.release(l),
          timeoutMs: settings.releaseTimeoutMs,
          signal,
          limits: buildLimits(config, settings),
        });
        stream.system('release command finished');
      });
    }
    return { image: built.image, staticRoot: built.staticRoot, port: built.port, config, env, commit };
  } finally {
    await rm(buildDir, { recursive: true, force: true }).catch((err) => logger.warn({ err }, 'could not remove the build directory'));
  }
}

/** A rollback skips fetching, building and releasing: the kept release's image, config and env are brought back. */
async function prepareRollback(
  deps: RunnerDeps,
  source: string,
  ctx: { app: string; stream: DeployLogStream },
): Promise<Prepared> {
  const { docker, store, settings } = deps;
  const { app, stream } = ctx;
  const snap = store.releases.snapshot(source);
  if (!snap || snap.app !== app) {
    throw new RollbackError(
      `release ${source} is not kept on this server (the last ${settings.keepReleases} good releases are, BERTH_KEEP_RELEASES); deploy its commit instead`,
    );
  }
  const config = snapshotConfig(snap.config);
  if (!config) throw new RollbackError(`release ${source} has no usable config snapshot; deploy its commit instead`);
  stream.system(
    `rolling back to release ${source} (commit ${snap.commit?.slice(0, 12) ?? '?'}, deployed ${snap.createdAt}): ` +
      `its image, config and env are re-activated; nothing is fetched or built, and the release command is not run`,
  );
  if (snap.image) {
    try {
      await docker.getImage(snap.image).inspect();
    } catch {
      throw new RollbackError(`the image ${snap.image} of release ${source} is gone from this server; deploy its commit instead`);
    }
    stream.system(`image ${snap.image}`);
  }
  if (snap.staticRoot && !existsSync(snap.staticRoot)) {
    throw new RollbackError(`the files of release ${source} are gone from ${snap.staticRoot}; deploy its commit instead`);
  }
  return {
    image: snap.image || null,
    staticRoot: snap.staticRoot,
    port: snap.containerPort ?? undefined,
    config,
    env: snap.env,
    commit: snap.commit ?? '',
    rollbackOf: source,
  };
}

/** The stored config of a release, as much of it as a rollback needs (it may predate fields). */
function snapshotConfig(raw: unknown): AppConfig | null {
  if (!raw || typeof raw !== 'object') return null;
  const c = raw as Partial<AppConfig>;
  if (!c.processes || typeof c.processes !== 'object' || !c.build) return null;
  // Releases kept before cron and volumes existed have neither.
  return { ...(c as AppConfig), healthcheck: c.healthcheck ?? null, cron: c.cron ?? {}, volumes: c.volumes ?? {}, notes: [] };
}

/** Retention after a good deploy: the last N releases stay for rollback, older images and files go. */
async function pruneAfterDeploy(deps: RunnerDeps, app: string, stream: DeployLogStream, log: Logger): Promise<void> {
  try {
    const report = await pruneApp(deps, app);
    const removed = report.images.length + report.containers.length + report.staticDirs.length;
    if (removed === 0) return;
    const summary =
      `cleanup: kept the last ${report.kept.length} release(s); removed ${report.images.length} image(s)` +
      `${report.containers.length ? `, ${report.containers.length} stopped container(s)` : ''}` +
      `${report.staticDirs.length ? `, ${report.staticDirs.length} static release dir(s)` : ''}; reclaimed ${formatBytes(report.reclaimedBytes)}`;
    log.info({ images: report.images, containers: report.containers, staticDirs: report.staticDirs, reclaimedBytes: report.reclaimedBytes }, summary);
    stream.system(summary);
    stream.flush();
  } catch (err) {
    log.warn({ err }, 'could not prune old releases');
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
  const jobs = Object.entries(config.cron);
  if (jobs.length > 0) log(`cron jobs (scheduled once this release is live): ${jobs.map(([name, j]) => `${name} "${j.schedule}"${j.timezone ? ` ${j.timezone}` : ''}`).join(', ')}`);
  const volumes = Object.entries(config.volumes);
  if (volumes.length > 0) log(`volumes (kept across deploys): ${volumes.map(([name, v]) => `${name} → ${v.target}`).join(', ')}`);
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
