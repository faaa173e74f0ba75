// One deploy, start to finish: fetch + config → build → release command → start every process →
// health check → switch nginx → done, every transition journaled (with its deadline) and reported.
// A rollback skips the first three: a kept release's image, config and env go through the same
// start, health gate and switch; so does a scale deployment (`berth scale`, scale.ts): the live
// release at new replica counts. Any failure removes the new containers (and a failed build's
// images) and leaves the live release and nginx exactly as they were. Env values are masked in
// everything this writes to the deploy log.
//
// Each phase is its own module: fetch-phase.ts, build-phase.ts (via prepare.ts), release-phase.ts,
// start-phase.ts, health-phase.ts, switch-phase.ts; rollback.ts replaces the first three.
// The allowed transitions are the table in shared/deploy-status.ts.
import { join } from 'node:path';
import type { DeployOrder } from '../../shared/protocol.js';
import { runClusterDeploy } from '../cluster/deploy/cluster-deploy.js';
import { DeployRun, type RunnerDeps } from './deploy-run.js';
import { drainAndPrune } from './drain.js';
import { endFailedDeploy } from './failure.js';
import { healthPhase } from './health-phase.js';
import { recordLiveRelease } from './live-release.js';
import { prepareBuild, type Prepared } from './prepare.js';
import type { RunOutcome } from './queue.js';
import { prepareRollback } from './rollback.js';
import { applyScale } from './scale.js';
import { readCommitSubject, repoScaleOf } from './commit-info.js';
import { releaseProcesses, startPhase } from './start-phase.js';
import { switchPhase } from './switch-phase.js';

/**
 * Run `order` (journaled as queued) to its end. `signal` aborts it (a cancel, or the agent
 * stopping); `closing` stops only the drain of the previous release after it is done.
 */
export async function runDeploy(deps: RunnerDeps, order: DeployOrder, signal: AbortSignal, closing: AbortSignal): Promise<RunOutcome> {
  // A cluster app runs as Swarm services: the same states and journal, other phases (agent/cluster/deploy/).
  if (order.app.cluster) return runClusterDeploy(deps, order, signal, closing);
  const run = new DeployRun(deps, order, signal);
  try {
    const prepared = order.rollbackOf ? await prepareRollback(run, order.rollbackOf, order.rescale === true) : await prepareBuild(run);
    run.commit = prepared.commit;
    if (order.rollbackOf) await describeKeptRelease(run, prepared);
    run.staticRoot = prepared.staticRoot;
    run.useEnv(prepared.env);
    const domains = deps.domainsFor(order.app);
    const processes = applyScale(prepared.staticRoot ? [] : releaseProcesses(prepared.config), order.app.scale, {
      rescale: order.rescale === true,
      staticSite: !!prepared.staticRoot,
      log: (l) => run.stream.system(l),
    });

    await startPhase(run, prepared, processes);
    await healthPhase(run, prepared.config, domains);
    signal.throwIfAborted();
    const live = await switchPhase(run, prepared, processes, domains);
    await recordLiveRelease(run, prepared, processes, live, domains);
    run.transition('done');
    return { drain: drainAndPrune(run, closing) };
  } catch (err) {
    await endFailedDeploy(run, err);
    return {};
  }
}

/** A rollback or scale: the kept release's commit subject (from the Git cache, when it still has it) and its repo's scale. */
async function describeKeptRelease(run: DeployRun, prepared: Prepared): Promise<void> {
  run.commitMessage = (await readCommitSubject(join(run.deps.settings.dataDir, 'git', run.app), prepared.commit, run.signal)) ?? undefined;
  if (!prepared.staticRoot) run.repoScale = repoScaleOf(prepared.config);
}
