// The live release per app: what nginx should route to and what the reconciler keeps running —
// plus a history of good releases (image + config + env) to roll back to without a rebuild.
// The JSON columns are checked on every read (rows.ts): a NULL column or a missing key is a row
// older than the field (the defaults are documented on the fields below); anything unreadable is a
// CorruptRowError, never an empty env.
import { z } from 'zod';
import { now, type Db } from './db.js';
import { CorruptRowError, CorruptRowLog, jsonColumn, type RowRef } from './rows.js';

/** One process of a release as the reconciler runs it. */
export interface ReleaseProcess {
  name: string;
  /** Shell command; null = the image's CMD. */
  command: string | null;
  scale: number;
  /** Memory cap in bytes / CPU cap (berth.yml); absent = none. */
  memory?: number;
  cpus?: number;
}

export interface Release {
  app: string;
  deploymentId: string;
  image: string;
  /** The first web container ('' when the release has none: a static site or workers only). */
  containerId: string;
  hostPort: number;
  containerPort: number | null;
  commit: string | null;
  activatedAt: string;
  /** Processes to keep running; absent on releases recorded before processes existed (= web only, scale 1). */
  processes?: ReleaseProcess[];
  /** A static site's release directory, served by nginx from disk (no containers). */
  staticRoot?: string | null;
  /** The env the release was deployed with: a container the reconciler re-creates gets the same. */
  env?: Record<string, string>;
  /** The app's volumes (config name → mount target): a container the reconciler re-creates mounts the same. */
  volumes?: Record<string, { target: string }>;
  /**
   * Set when the stored row could not be read (spec_json or env_json corrupt): the fields that come
   * from the corrupt column are absent, and nothing may be re-created from this release.
   */
  corrupt?: CorruptRowError;
}

/** A good release kept for rollback. */
export interface ReleaseSnapshot {
  deploymentId: string;
  app: string;
  image: string;
  commit: string | null;
  /** The app config the release was deployed with (AppConfig as JSON). */
  config: unknown;
  processes: ReleaseProcess[];
  staticRoot: string | null;
  containerPort: number | null;
  env: Record<string, string>;
  createdAt: string;
  /** When it was last made live (its deploy, or a rollback to it). */
  activatedAt: string;
}

interface Row {
  app: string;
  deployment_id: string;
  image: string;
  container_id: string;
  host_port: number;
  container_port: number | null;
  commit_sha: string | null;
  activated_at: string;
  spec_json: string | null;
  env_json: string | null;
}

// Loose objects: keys a newer berth added survive a read and a re-write (restore) unchanged.
const processJson = z.looseObject({
  name: z.string(),
  command: z.string().nullable(),
  scale: z.number().int().min(0),
  memory: z.number().optional(),
  cpus: z.number().optional(),
});
/** spec_json. Every key may be missing in rows older than it (defaults: see Release / ReleaseSnapshot). */
const specJson = z.looseObject({
  processes: z.array(processJson).optional(),
  staticRoot: z.string().nullable().optional(),
  containerPort: z.number().int().nullable().optional(),
  volumes: z.record(z.string(), z.looseObject({ target: z.string() })).optional(),
});
/** What is written to spec_json. */
interface SpecJson {
  processes?: ReleaseProcess[];
  staticRoot?: string | null;
  containerPort?: number | null;
  volumes?: Record<string, { target: string }>;
}
const envJson = z.record(z.string(), z.string());
/** config_json: any JSON (the AppConfig of its day; rollback checks it with snapshotConfig). */
const configJson = z.unknown();

const KEEP_HISTORY = 20;
// Retention and "previous release" follow the latest activation: a rollback makes an old release the newest.
const BY_ACTIVATION = 'COALESCE(activated_at, created_at) DESC, rowid DESC';

interface HistoryRow {
  deployment_id: string;
  app: string;
  image: string;
  commit_sha: string | null;
  config_json: string;
  spec_json: string;
  env_json: string;
  created_at: string;
  activated_at: string | null;
}

/** The snapshot of a release_history row; throws CorruptRowError when a column cannot be read. */
const toSnapshot = (r: HistoryRow): ReleaseSnapshot => {
  const ref = (column: string): RowRef => ({ table: 'release_history', key: r.deployment_id, column });
  const spec = jsonColumn(specJson, r.spec_json, ref('spec_json')) ?? {};
  const env = jsonColumn(envJson, r.env_json, ref('env_json'));
  // env_json is NOT NULL in this table: a NULL here was not written by berth.
  if (env === undefined) throw new CorruptRowError(ref('env_json'), 'is NULL');
  return {
    deploymentId: r.deployment_id,
    app: r.app,
    image: r.image,
    commit: r.commit_sha,
    config: jsonColumn(configJson, r.config_json, ref('config_json')) ?? null,
    processes: spec.processes ?? [],
    staticRoot: spec.staticRoot ?? null,
    containerPort: spec.containerPort ?? null,
    env,
    createdAt: r.created_at,
    activatedAt: r.activated_at ?? r.created_at,
  };
};

/** The raw JSON columns of releases read from corrupt rows: written back as they were by restore(). */
const rawColumns = new WeakMap<Release, { spec: string | null; env: string | null }>();

/**
 * The release of a releases row. NULL spec_json/env_json (rows from before issue 3) leave the fields
 * absent: web only at scale 1, no env. A corrupt column sets `corrupt` instead and leaves out only
 * the fields that come from it; `onCorrupt` is told.
 */
function toRelease(r: Row, onCorrupt: (err: CorruptRowError) => void): Release {
  const ref = (column: string): RowRef => ({ table: 'releases', key: r.app, column });
  let corrupt: CorruptRowError | undefined;
  const read = <T>(fn: () => T | undefined): T | undefined => {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof CorruptRowError)) throw err;
      corrupt ??= err;
      onCorrupt(err);
      return undefined;
    }
  };
  const spec = read(() => jsonColumn(specJson, r.spec_json, ref('spec_json')));
  const env = read(() => jsonColumn(envJson, r.env_json, ref('env_json')));
  const release: Release = {
    app: r.app,
    deploymentId: r.deployment_id,
    image: r.image,
    containerId: r.container_id,
    hostPort: r.host_port,
    containerPort: r.container_port,
    commit: r.commit_sha,
    activatedAt: r.activated_at,
    ...(spec?.processes ? { processes: spec.processes } : {}),
    ...(spec?.staticRoot !== undefined ? { staticRoot: spec.staticRoot } : {}),
    ...(env ? { env } : {}),
    ...(spec?.volumes ? { volumes: spec.volumes } : {}),
    ...(corrupt ? { corrupt } : {}),
  };
  if (corrupt) rawColumns.set(release, { spec: r.spec_json, env: r.env_json });
  return release;
}

export class ReleaseStore {
  private readonly corruptLog: CorruptRowLog;

  constructor(
    private readonly db: Db,
    corruptLog?: CorruptRowLog,
  ) {
    this.corruptLog = corruptLog ?? new CorruptRowLog();
  }

  private readonly liveCorrupt = (err: CorruptRowError) =>
    this.corruptLog.report(err, 'none of its containers will be re-created from it (deploy the app again, or roll it back)');

  /** The app's live release; one read from a corrupt row has `corrupt` set. */
  get(app: string): Release | null {
    const row = this.db.prepare(`SELECT * FROM releases WHERE app = ?`).get(app) as Row | undefined;
    return row ? toRelease(row, this.liveCorrupt) : null;
  }

  all(): Release[] {
    return (this.db.prepare(`SELECT * FROM releases ORDER BY app`).all() as Row[]).map((r) => toRelease(r, this.liveCorrupt));
  }

  /** Make `release` the app's current one; returns the one it replaced (to restore on a failed switch). */
  activate(release: Omit<Release, 'activatedAt'> & { activatedAt?: string }): Release | null {
    return this.db.transaction(() => {
      const previous = this.get(release.app);
      const spec: SpecJson | null =
        release.processes || release.staticRoot !== undefined || release.volumes
          ? { processes: release.processes, staticRoot: release.staticRoot ?? null, ...(release.volumes ? { volumes: release.volumes } : {}) }
          : null;
      // A release read from a corrupt row (restore() after a failed switch) goes back exactly as it was;
      // a copy of one, whose raw columns are unknown, would be written as a row without env: refused.
      const raw = rawColumns.get(release as Release);
      if (release.corrupt && !raw) throw release.corrupt;
      this.db
        .prepare(
          `INSERT INTO releases (app, deployment_id, image, container_id, host_port, container_port, commit_sha, activated_at, spec_json, env_json)
           VALUES (@app, @deploymentId, @image, @containerId, @hostPort, @containerPort, @commit, @activatedAt, @spec, @env)
           ON CONFLICT (app) DO UPDATE SET deployment_id = excluded.deployment_id, image = excluded.image,
             container_id = excluded.container_id, host_port = excluded.host_port,
             container_port = excluded.container_port, commit_sha = excluded.commit_sha, activated_at = excluded.activated_at,
             spec_json = excluded.spec_json, env_json = excluded.env_json`,
        )
        .run({
          app: release.app,
          deploymentId: release.deploymentId,
          image: release.image,
          containerId: release.containerId,
          hostPort: release.hostPort,
          containerPort: release.containerPort,
          commit: release.commit,
          activatedAt: release.activatedAt ?? now(),
          spec: raw ? raw.spec : spec ? JSON.stringify(spec) : null,
          env: raw ? raw.env : release.env ? JSON.stringify(release.env) : null,
        });
      return previous;
    })();
  }

  /** The release's web container was replaced (restarted with a new port, re-created, adopted). */
  updateContainer(app: string, deploymentId: string, containerId: string, hostPort: number): void {
    this.db
      .prepare(`UPDATE releases SET container_id = ?, host_port = ? WHERE app = ? AND deployment_id = ?`)
      .run(containerId, hostPort, app, deploymentId);
  }

  /** Put back exactly what was there before (null = no release). Only valid if nothing else changed it since. */
  restore(app: string, previous: Release | null): void {
    if (previous) this.activate(previous);
    else this.forget(app);
  }

  forget(app: string): void {
    this.db.prepare(`DELETE FROM releases WHERE app = ?`).run(app);
  }

  /** Record a good release for rollback; only the newest KEEP_HISTORY per app are kept. */
  recordSnapshot(s: Omit<ReleaseSnapshot, 'createdAt' | 'activatedAt'>): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT OR REPLACE INTO release_history (deployment_id, app, image, commit_sha, config_json, spec_json, env_json, created_at, activated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          s.deploymentId,
          s.app,
          s.image,
          s.commit,
          JSON.stringify(s.config),
          JSON.stringify({ processes: s.processes, staticRoot: s.staticRoot, containerPort: s.containerPort } satisfies SpecJson),
          JSON.stringify(s.env),
          now(),
          now(),
        );
      this.db
        .prepare(
          `DELETE FROM release_history WHERE app = ? AND deployment_id NOT IN
             (SELECT deployment_id FROM release_history WHERE app = ? ORDER BY ${BY_ACTIVATION} LIMIT ?)`,
        )
        .run(s.app, s.app, KEEP_HISTORY);
    })();
  }

  /** Good releases of an app, the most recently activated first. Corrupt ones are left out (and logged). */
  history(app: string, limit = KEEP_HISTORY): ReleaseSnapshot[] {
    const rows = this.db.prepare(`SELECT * FROM release_history WHERE app = ? ORDER BY ${BY_ACTIVATION} LIMIT ?`).all(app, limit) as HistoryRow[];
    return rows.flatMap((r) => {
      try {
        return [toSnapshot(r)];
      } catch (err) {
        if (!(err instanceof CorruptRowError)) throw err;
        this.corruptLog.report(err, 'left out of the kept releases: it cannot be rolled back to');
        return [];
      }
    });
  }

  /** One kept release (null: never recorded, or pruned since). Throws CorruptRowError (logged) when its row is corrupt. */
  snapshot(deploymentId: string): ReleaseSnapshot | null {
    const row = this.db.prepare(`SELECT * FROM release_history WHERE deployment_id = ?`).get(deploymentId) as HistoryRow | undefined;
    if (!row) return null;
    try {
      return toSnapshot(row);
    } catch (err) {
      if (err instanceof CorruptRowError) this.corruptLog.report(err, 'it cannot be rolled back to');
      throw err;
    }
  }

  /** A kept release was made live again (a rollback): it counts as the newest for retention. */
  touchSnapshot(deploymentId: string): void {
    this.db.prepare(`UPDATE release_history SET activated_at = ? WHERE deployment_id = ?`).run(now(), deploymentId);
  }

  /** Drop kept releases whose images were pruned: a rollback to them would fail anyway. */
  forgetSnapshots(deploymentIds: readonly string[]): void {
    const del = this.db.prepare(`DELETE FROM release_history WHERE deployment_id = ?`);
    this.db.transaction(() => {
      for (const id of deploymentIds) del.run(id);
    })();
  }
}
