// The live release per app: what nginx should route to and what the reconciler keeps running.
import { now, type Db } from './db.js';

export interface Release {
  app: string;
  deploymentId: string;
  image: string;
  containerId: string;
  hostPort: number;
  containerPort: number | null;
  commit: string | null;
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
}

const toRelease = (r: Row): Release => ({
  app: r.app,
  deploymentId: r.deployment_id,
  image: r.image,
  containerId: r.container_id,
  hostPort: r.host_port,
  containerPort: r.container_port,
  commit: r.commit_sha,
  activatedAt: r.activated_at,
});

export class ReleaseStore {
  constructor(private readonly db: Db) {}

  get(app: string): Release | null {
    const row = this.db.prepare(`SELECT * FROM releases WHERE app = ?`).get(app) as Row | undefined;
    return row ? toRelease(row) : null;
  }

  all(): Release[] {
    return (this.db.prepare(`SELECT * FROM releases ORDER BY app`).all() as Row[]).map(toRelease);
  }

  /** Make `release` the app's current one; returns the one it replaced (to restore on a failed switch). */
  activate(release: Omit<Release, 'activatedAt'> & { activatedAt?: string }): Release | null {
    return this.db.transaction(() => {
      const previous = this.get(release.app);
      this.db
        .prepare(
          `INSERT INTO releases (app, deployment_id, image, container_id, host_port, container_port, commit_sha, activated_at)
           VALUES (@app, @deploymentId, @image, @containerId, @hostPort, @containerPort, @commit, @activatedAt)
           ON CONFLICT (app) DO UPDATE SET deployment_id = excluded.deployment_id, image = excluded.image,
             container_id = excluded.container_id, host_port = excluded.host_port,
             container_port = excluded.container_port, commit_sha = excluded.commit_sha, activated_at = excluded.activated_at`,
        )
        .run({ ...release, activatedAt: release.activatedAt ?? now() });
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
}
