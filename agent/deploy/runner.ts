// One deploy, start to finish: fetch → build → start → health check → switch nginx → done, every
// transition journaled and reported. Any failure removes the new container and leaves the live
// release and nginx exactly as they were.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { DeployStatus } from '../../shared/deploy-status.js';
import type { Logger } from '../../shared/logger.js';
import { PROTOCOL_VERSION, type AgentMessage, type DeployOrder } from '../../shared/protocol.js';
import type { AppSpec } from '../../shared/spec.js';
import { buildImage } from '../build.js';
import { checkoutTo, fetchSource } from '../git.js';
import { berthLabels, LABEL } from '../labels.js';
import type { AppSite } from '../nginx.js';
import { listBerthContainers, removeContainer, startWebContainer, waitHealthy, type StartedContainer } from '../processes.js';
import type { AgentSettings } from '../settings.js';
import type { AgentStore, DeployPatch } from '../store/index.js';
import { DeployLogStream, redactUrls } from './log-stream.js';
import type { RunOutcome } from './queue.js';

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

  const stream = new DeployLogStream(
    id,
    record.logSeq,
    deps.send,
    (next) => store.deploys.setLogSeq(id, next),
    (err) => log.warn({ err }, 'could not send deploy log lines'),
  );
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
  let started: StartedContainer | null = null;
  try {
    transition('fetching');
    stream.system(`fetching ${order.app.repo} (branch ${order.app.branch}${order.commit ? `, commit ${order.commit}` : ''})`);
    const fetched = await fetchSource({ cacheDir, repo: order.app.repo, branch: order.app.branch, commit: order.commit, log: (l) => stream.system(l), signal });
    commit = fetched.commit;
    stream.system(`deploying commit ${commit}`);

    transition('building', { commit });
    const tag = imageTag(app, id);
    try {
      await checkoutTo({ cacheDir, commit, dest: buildDir });
      signal.throwIfAborted();
      stream.system(`building image ${tag}`);
      await buildImage(docker, {
        contextDir: buildDir,
        tag,
        labels: berthLabels(app, id, { [LABEL.commit]: commit, [LABEL.server]: deps.settings.server }),
        log: (l) => stream.build(l),
        signal,
      });
    } finally {
      await rm(buildDir, { recursive: true, force: true }).catch((err) => log.warn({ err }, 'could not remove the build directory'));
    }

    transition('starting', { image: tag });
    started = await startWebContainer(docker, { app, deploymentId: id, image: tag, env: {}, server: deps.settings.server });
    store.deploys.update(id, { containerId: started.id, hostPort: started.hostPort, containerPort: started.containerPort });
    stream.system(`started container ${started.name} (port ${started.containerPort}, published on 127.0.0.1:${started.hostPort})`);

    transition('health_checking');
    await waitHealthy(docker, {
      containerId: started.id,
      hostPort: started.hostPort,
      timeoutMs: settings.healthTimeoutMs,
      stableMs: settings.healthStableMs,
      log: (l) => stream.system(l),
      signal,
    });
    stream.system('health check passed');
    signal.throwIfAborted();

    transition('switching');
    const domains = deps.domainsFor(order.app);
    // Recorded before nginx moves: if the agent dies mid-switch, recovery sees a healthy current
    // release and reconciliation finishes routing to it rather than to a container being removed.
    const previous = store.releases.activate({
      app,
      deploymentId: id,
      image: tag,
      containerId: started.id,
      hostPort: started.hostPort,
      containerPort: started.containerPort,
      commit,
    });
    try {
      await deps.nginx.applyApp(app, { domains, upstreamPort: started.hostPort });
    } catch (err) {
      store.releases.restore(app, previous);
      throw err;
    }
    stream.system(domains.length > 0 ? `now serving ${domains.join(', ')} from commit ${commit.slice(0, 12)}` : `release ${id} is live (the app has no domains yet)`);
    transition('done');
    return { drain: drainPrevious(deps, app, id, closing, (msg) => log.info(msg)) };
  } catch (err) {
    const aborted = signal.aborted;
    const reason = aborted ? `agent stopped while the deploy was ${phase}` : `${FAILURE_PREFIX[phase] ?? 'deploy failed'}: ${oneLine(err)}`;
    if (!aborted) log.warn({ err }, 'deploy failed');
    if (started) {
      await removeContainer(docker, started.id, { graceSeconds: 0 }).catch((e) => log.warn({ err: e }, 'could not remove the new container'));
      store.deploys.update(id, { containerId: null });
    }
    try {
      stream.system(reason);
      transition('failed', { reason });
    } catch (e) {
      log.error({ err: e, reason }, 'could not journal the failed deploy');
    }
    return {};
  }
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
