// After the switch the release is live: it is kept for rollbacks, described in the app's
// docker-compose.yml, and announced in the deploy log.
import { writeAppFiles } from '../docker/compose-file.js';
import type { ReleaseProcess } from '../store/index.js';
import type { DeployRun } from './deploy-run.js';
import { reasonLine } from './failure.js';
import type { Prepared } from './prepare.js';
import type { Switched } from './switch-phase.js';

export async function recordLiveRelease(run: DeployRun, prepared: Prepared, processes: ReleaseProcess[], live: Switched, domains: string[]): Promise<void> {
  keepForRollback(run, prepared, processes, live.webs[0]?.containerPort ?? null);
  await writeComposeFile(run, prepared, processes, live);
  const { site } = live;
  run.stream.system(
    domains.length > 0 && site
      ? `now serving ${domains.join(', ')} from commit ${run.commit?.slice(0, 12) ?? '?'}${prepared.rollbackOf ? ` (release ${prepared.rollbackOf})` : ''}`
      : `release ${run.id} is live${site ? ' (the app has no domains yet)' : ' (no web process: nothing is routed)'}`,
  );
}

/** A build's release is kept (a rollback only marks the kept one it re-activated as used again). */
export function keepForRollback(run: DeployRun, prepared: Prepared, processes: ReleaseProcess[], containerPort: number | null): void {
  const { store } = run.deps;
  if (prepared.rollbackOf) {
    store.releases.touchSnapshot(prepared.rollbackOf);
    return;
  }
  store.releases.recordSnapshot({
    deploymentId: run.id,
    app: run.app,
    image: prepared.image ?? '',
    commit: run.commit ?? null,
    config: { ...prepared.config, notes: undefined },
    processes,
    staticRoot: prepared.staticRoot,
    containerPort,
    env: run.env,
  });
  // The build's layers now belong to a kept release: pruned with its image, not as leftovers.
  store.deploys.clearBuildImages(run.id);
}

/** The release is live: docker-compose.yml describes it now. A failure to write it is reported, not fatal. */
async function writeComposeFile(run: DeployRun, prepared: Prepared, processes: ReleaseProcess[], live: Switched): Promise<void> {
  const { settings } = run.deps;
  try {
    const { composeFile } = await writeAppFiles(
      settings.dataDir,
      {
        app: run.app,
        ...(settings.server ? { server: settings.server } : {}),
        deploymentId: run.id,
        commit: run.commit ?? null,
        image: prepared.image ?? '',
        processes,
        containerPort: live.webs[0]?.containerPort ?? prepared.port ?? null,
        staticRoot: prepared.staticRoot,
        volumes: prepared.config.volumes ?? {},
        releaseCommand: prepared.config.release,
        webPorts: new Map(live.webs.map((w) => [w.replica, w.hostPort])),
      },
      run.env,
    );
    run.stream.system(`wrote ${composeFile}`);
  } catch (err) {
    run.stream.system(`could not write the app's docker-compose.yml: ${reasonLine(err)}`);
    run.log.warn({ err }, 'could not write docker-compose.yml');
  }
}
