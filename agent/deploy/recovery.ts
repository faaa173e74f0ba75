// Agent start: no deploy stays "running" forever. Deploys the previous process left mid-way are
// finished in the journal and reported; their half-started containers, build dirs and the images
// their build had made so far are removed.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Logger } from '../../shared/logger.js';
import type { AgentMessage } from '../../shared/protocol.js';
import { listBerthContainers, removeContainer } from '../docker/containers.js';
import type { AgentSettings } from '../settings.js';
import type { AgentStore, DeployRecord } from '../store/index.js';
import { removeBuildLeftovers } from '../build/images.js';
import { DeployLogStream } from './log-stream.js';
import { imageTag } from './deploy-run.js';
import { announceTransition } from './transition.js';
import { bestEffort } from '../../shared/util/index.js';

export interface RecoveryDeps {
  docker: Docker;
  store: AgentStore;
  settings: AgentSettings;
  logger: Logger;
  send: (msg: AgentMessage) => void;
}

/** Returns the deploys that were queued but never started, oldest first, to be run again. */
export async function recoverJournal(deps: RecoveryDeps): Promise<DeployRecord[]> {
  const { store, logger } = deps;
  // Nothing is in flight at start, so every build dir is a leftover.
  await rm(join(deps.settings.dataDir, 'builds'), { recursive: true, force: true }).catch((err) => logger.warn({ err }, 'could not clean the builds directory'));

  const result = store.recoverInterrupted();
  for (const d of [...result.failed, ...result.completed]) announceRecovered(deps, d);
  if (result.failed.length > 0) await removeInterruptedContainers(deps, result.failed);
  for (const d of result.failed) await removeInterruptedBuild(deps, d);
  if (result.queued.length > 0) logger.info({ deploys: result.queued.map((d) => d.id) }, 'resuming queued deploys');
  return result.queued;
}

/** The deploy's log says how it ended, then its (already journaled) end is reported. */
function announceRecovered(deps: RecoveryDeps, d: DeployRecord): void {
  const stream = new DeployLogStream(d.id, d.logSeq, deps.send, (next) => deps.store.deploys.setLogSeq(d.id, next));
  stream.system(
    d.status === 'failed'
      ? (d.reason ?? 'agent restarted during the deploy')
      : 'agent restarted during the switch; the new release had passed its health check and stays live',
  );
  stream.flush();
  announceTransition(deps, d, 'recovered an interrupted deploy', 'warn');
}

/** The containers the failed deploys had started (none of them is a current release). */
async function removeInterruptedContainers(deps: RecoveryDeps, failed: DeployRecord[]): Promise<void> {
  const { store, logger } = deps;
  const failedIds = new Set(failed.map((d) => d.id));
  try {
    for (const c of await listBerthContainers(deps.docker, { server: deps.settings.server, swarmTasks: false })) {
      if (!failedIds.has(c.deploymentId)) continue;
      if (store.releases.get(c.app)?.deploymentId === c.deploymentId) continue;
      await removeContainer(deps.docker, c.id, { graceSeconds: 0 });
      logger.info({ container: c.name, deploymentId: c.deploymentId }, 'removed a container of an interrupted deploy');
    }
  } catch (err) {
    // Not fatal: those containers are not the current release, so reconciliation removes them later.
    logger.warn({ err }, 'could not remove containers of interrupted deploys');
  }
}

/** A build the agent died in leaves its image (if it got that far), the layers it made so far and static files. */
async function removeInterruptedBuild(deps: RecoveryDeps, d: DeployRecord): Promise<void> {
  if (d.order.rollbackOf) return; // a rollback builds nothing; its image is a kept release's
  const { store, logger } = deps;
  for (const dir of [join(deps.settings.staticDir, d.app, d.id), join(deps.settings.staticDir, d.app, `.staging-${d.id}`)]) {
    await bestEffort(`removing ${dir}`, rm(dir, { recursive: true, force: true }), { logger });
  }
  try {
    const removed = await removeBuildLeftovers(deps.docker, { tag: imageTag(d.app, d.id), imageIds: d.buildImages, server: deps.settings.server });
    store.deploys.clearBuildImages(d.id);
    if (removed > 0) logger.info({ deploymentId: d.id, images: removed }, 'removed the images of an interrupted build');
  } catch (err) {
    logger.warn({ err, deploymentId: d.id }, 'could not remove the images of an interrupted build');
  }
}
