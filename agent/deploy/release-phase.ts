// The releasing phase of a deploy: the config's release command (e.g. migrations) run once in the
// new image, before any process of the new release starts. Skipped when there is none.
import type { AppConfig } from '../config/index.js';
import { berthLabels, LABEL } from '../docker/labels.js';
import { runReleaseCommand } from '../docker/release-command.js';
import { ensureVolumes, volumeMounts } from '../docker/volumes.js';
import { buildLimits } from './build-phase.js';
import type { DeployRun } from './deploy-run.js';

/** `before`: work in the same phase first (a cluster manager pulls an image its builder pushed). */
export function releasePhase(run: DeployRun, o: { image: string; config: AppConfig; commit: string; network?: string; before?: (signal: AbortSignal) => Promise<void> }): Promise<void> {
  const { app, id, stream } = run;
  const { docker, settings } = run.deps;
  const { image, config, commit } = o;
  return run.runPhase('releasing', { image }, async (signal) => {
    await o.before?.(signal);
    // The release command sees the volumes the processes will (e.g. it migrates data kept there).
    await ensureVolumes(docker, app, config.volumes, settings.server || undefined);
    stream.system(`running the release command: ${config.release}`);
    await runReleaseCommand(docker, {
      app,
      deploymentId: id,
      image,
      command: config.release!,
      env: run.env,
      volumes: volumeMounts(app, config.volumes),
      labels: berthLabels(app, id, { [LABEL.commit]: commit, [LABEL.process]: 'release', ...(settings.server ? { [LABEL.server]: settings.server } : {}) }),
      log: (l) => stream.release(l),
      timeoutMs: settings.releaseTimeoutMs,
      signal,
      limits: buildLimits(config, settings),
      ...(o.network ? { network: o.network } : {}),
    });
    stream.system('release command finished');
  });
}
