// What a deploy runs, made ready before anything starts: built from Git just now (fetching →
// building → releasing), or a kept release brought back by a rollback (rollback.ts).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { appRoot, type AppConfig } from '../config/index.js';
import { runBuildPhase, type BuildPhaseResult } from './build-phase.js';
import { imageTag, type DeployRun } from './deploy-run.js';
import { checkFreeDisk } from './disk.js';
import { fetchPhase } from './fetch-phase.js';
import { BuildImageTracker } from '../build/images.js';
import { releasePhase } from './release-phase.js';

/** What a deploy runs: built just now, or a kept release brought back by a rollback. */
export interface Prepared {
  image: string | null;
  staticRoot: string | null;
  port: number | undefined;
  config: AppConfig;
  env: Record<string, string>;
  commit: string;
  /** A rollback: the deployment whose release is re-activated. */
  rollbackOf?: string;
  /** Cluster mode: the image as built on this node (`image` is then the pushed digest reference). */
  localImage?: string;
}

/**
 * A cluster deploy (agent/cluster/deploy/): the built image is pushed inside the building phase
 * (its deadline covers the push), and the release command runs on the app's overlay network.
 */
export interface ClusterBuild {
  /** Push the built image; resolves with the reference the services use (REGISTRY/berth/APP@sha256:…). */
  push: (image: string, signal: AbortSignal) => Promise<string>;
  /** The app's overlay network for the release command; absent on a builder (the manager runs it). */
  network?: (signal: AbortSignal) => Promise<string>;
}

/** fetching → building → releasing: the new release's image (or static directory) from Git. */
export async function prepareBuild(run: DeployRun, cluster?: ClusterBuild): Promise<Prepared> {
  const { settings, logger } = run.deps;
  const buildDir = join(settings.dataDir, 'builds', run.id);
  try {
    const { commit, config } = await fetchPhase(run, buildDir);
    const built = await buildingPhase(run, { commit, config, buildDir, ...(cluster ? { cluster } : {}) });
    if (config.release && built.image && (!cluster || cluster.network)) {
      const network = cluster?.network ? await cluster.network(run.signal) : undefined;
      await releasePhase(run, { image: built.image, config, commit, ...(network ? { network } : {}) });
    }
    const pushed = built.pushed ? { image: built.pushed, localImage: built.image! } : { image: built.image };
    return { ...pushed, staticRoot: built.staticRoot, port: built.port, config, env: run.env, commit };
  } finally {
    await rm(buildDir, { recursive: true, force: true }).catch((err) => logger.warn({ err }, 'could not remove the build directory'));
  }
}

/** building: the image (and a static site's files); every image the build makes is journaled at once. */
function buildingPhase(run: DeployRun, o: { commit: string; config: AppConfig; buildDir: string; cluster?: ClusterBuild }): Promise<BuildPhaseResult & { pushed?: string }> {
  const { docker, store, settings, logger } = run.deps;
  const { id, app, stream } = run;
  return run.runPhase('building', { commit: o.commit }, async (signal) => {
    const free = await checkFreeDisk(docker, { dataDir: settings.dataDir, minFreeMb: settings.minFreeDiskMb });
    if (free.length > 0) logger.debug({ free }, 'free disk before the build');
    const tracker = new BuildImageTracker((imageId) => store.deploys.addBuildImage(id, imageId));
    const built = await runBuildPhase(docker, {
      app,
      deploymentId: id,
      commit: o.commit,
      checkout: appRoot(o.buildDir, run.order.app.rootDir),
      config: o.config,
      env: run.env,
      tag: imageTag(app, id),
      settings,
      log: (l) => {
        tracker.line(l);
        stream.build(l);
      },
      system: (l) => stream.system(l),
      signal,
    });
    // A static site is served from the manager's disk: its files are the release, nothing is pushed.
    if (!o.cluster || !built.image || built.staticRoot) return built;
    return { ...built, pushed: await o.cluster.push(built.image, signal) };
  });
}
