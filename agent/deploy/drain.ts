// After a deploy is done: the previous release's containers finish their in-flight requests and
// go, then retention prunes releases beyond the last N. The app counts as busy meanwhile (queue.ts).
import { sleep } from '../../shared/util/index.js';
import { listBerthContainers, removeContainer } from '../docker/containers.js';
import type { DeployRun, RunnerDeps } from './deploy-run.js';
import { formatBytes } from '../build/images.js';
import { pruneApp } from '../releases/retention.js';

/** Drain, then prune; on shutdown (`closing`) the rest is left to the next start's reconcile pass. */
export async function drainAndPrune(run: DeployRun, closing: AbortSignal): Promise<void> {
  await drainPrevious(run.deps, run.app, run.id, closing, (msg) => run.log.info(msg));
  if (closing.aborted) return;
  await pruneAfterDeploy(run);
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

/** Retention after a good deploy: the last N releases stay for rollback, older images and files go. */
export async function pruneAfterDeploy(run: DeployRun): Promise<void> {
  const { stream, log } = run;
  try {
    const report = await pruneApp(run.deps, run.app);
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
