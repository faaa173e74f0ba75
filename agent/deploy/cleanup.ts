// Undoing a deploy that failed (or was cancelled): the live release and nginx stay exactly as they
// were; the new containers go, and so do a failed build's images and files (a rollback's belong to
// a kept release and stay).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { removeContainer } from '../docker/containers.js';
import { staticReleaseDir } from '../build/static-site.js';
import { imageTag, type DeployRun } from './deploy-run.js';
import { removeBuildLeftovers } from '../build/images.js';
import { bestEffort } from '../../shared/util/index.js';

export async function cleanupFailedDeploy(run: DeployRun): Promise<void> {
  const { docker, store, settings } = run.deps;
  const { app, id, log } = run;
  // A failed (or overrun) switch: the previous release is current again before its replacement goes.
  if (run.switched.activated && store.releases.get(app)?.deploymentId === id) store.releases.restore(app, run.switched.previous);
  for (const c of run.started) {
    await removeContainer(docker, c.id, { graceSeconds: 0 }).catch((e) => log.warn({ err: e }, 'could not remove a new container'));
  }
  if (run.started.length > 0) store.deploys.update(id, { containerId: null });
  if (run.order.rollbackOf) return;
  const { staticRoot } = run;
  if (staticRoot && store.releases.get(app)?.staticRoot !== staticRoot) {
    await bestEffort(`removing ${staticRoot}`, rm(staticRoot, { recursive: true, force: true }), { logger: log });
  } else if (!staticRoot) {
    // A failure while publishing may leave a half-made release directory.
    const dir = staticReleaseDirSafe(settings.staticDir, app, id);
    await bestEffort(`removing ${dir}`, rm(dir, { recursive: true, force: true }), { logger: log });
  }
  // The image and the layers this build made are no release: they go with the deploy.
  const imageIds = store.deploys.get(id)?.buildImages ?? [];
  await removeBuildLeftovers(docker, { tag: imageTag(app, id), imageIds, server: settings.server })
    .then(() => store.deploys.clearBuildImages(id))
    .catch((e) => log.warn({ err: e }, 'could not remove the images of the failed build'));
}

/** The release directory a failed publish may have left (an app or id it refuses: a path that cannot exist). */
function staticReleaseDirSafe(staticDir: string, app: string, id: string): string {
  try {
    return staticReleaseDir(staticDir, app, id);
  } catch {
    return join(staticDir, app, '.invalid');
  }
}
