// A rollback skips fetching, building and releasing: a kept release's image, config and env are
// brought back and go through the same start, health gate and switch as a new build.
import { existsSync } from 'node:fs';
import type { AppConfig } from '../config/index.js';
import type { DeployRun } from './deploy-run.js';
import type { Prepared } from './prepare.js';

/** The kept release cannot be brought back (not kept, no usable snapshot, its image or files gone). */
export class RollbackError extends Error {
  override name = 'RollbackError';
}

/** The release of deployment `source`, checked to still be whole on this server. `rescale`: the live one, for `berth scale`. */
export async function prepareRollback(run: DeployRun, source: string, rescale = false): Promise<Prepared> {
  const { docker, store, settings } = run.deps;
  const { app, stream } = run;
  const snap = store.releases.snapshot(source);
  if (!snap || snap.app !== app) {
    throw new RollbackError(
      `release ${source} is not kept on this server (the last ${settings.keepReleases} good releases are, BERTH_KEEP_RELEASES); deploy its commit instead`,
    );
  }
  const config = snapshotConfig(snap.config);
  if (!config) throw new RollbackError(`release ${source} has no usable config snapshot; deploy its commit instead`);
  const what = `release ${source} (commit ${snap.commit?.slice(0, 12) ?? '?'}, deployed ${snap.createdAt})`;
  stream.system(
    rescale
      ? `scaling the live ${what}: its image, config and env start again at the new counts; nothing is fetched or built, and the release command is not run`
      : `rolling back to ${what}: its image, config and env are re-activated; nothing is fetched or built, and the release command is not run`,
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
export function snapshotConfig(raw: unknown): AppConfig | null {
  if (!raw || typeof raw !== 'object') return null;
  const c = raw as Partial<AppConfig>;
  if (!c.processes || typeof c.processes !== 'object' || !c.build) return null;
  // Releases kept before cron and volumes existed have neither.
  return { ...(c as AppConfig), healthcheck: c.healthcheck ?? null, cron: c.cron ?? {}, volumes: c.volumes ?? {}, notes: [] };
}
