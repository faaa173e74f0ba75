// Deployments built on their cluster's builder (issue 15): which server builds each one, and once it
// pushed, the image it reported and where the manager's part of the deploy log starts.
import { builtImage, type BuiltImage } from '../../shared/cluster-build.js';
import type { Db } from '../store/db.js';

export interface RemoteBuild {
  deploymentId: string;
  builder: string;
  /** null while the builder builds (or never reported). */
  built: BuiltImage | null;
  logSeq: number;
}

interface Row {
  deployment_id: string;
  builder: string;
  built: string | null;
  log_seq: number | null;
}

export class ClusterBuildStore {
  constructor(private readonly db: Db) {}

  assign(deploymentId: string, builder: string): void {
    this.db.prepare('INSERT INTO deployment_builds (deployment_id, builder) VALUES (?, ?)').run(deploymentId, builder);
  }

  get(deploymentId: string): RemoteBuild | undefined {
    const row = this.db.prepare('SELECT * FROM deployment_builds WHERE deployment_id = ?').get(deploymentId) as Row | undefined;
    if (!row) return undefined;
    // Written by this control plane from a checked report; a row that no longer parses counts as not built.
    const parsed = row.built === null ? null : builtImage.safeParse(JSON.parse(row.built));
    return { deploymentId: row.deployment_id, builder: row.builder, built: parsed?.success ? parsed.data : null, logSeq: row.log_seq ?? 0 };
  }

  /** The builder's report: the pushed image; the manager's log lines are numbered from `logSeq`. */
  recordBuilt(deploymentId: string, built: BuiltImage, logSeq: number): void {
    this.db.prepare('UPDATE deployment_builds SET built = ?, log_seq = ? WHERE deployment_id = ?').run(JSON.stringify(built), logSeq, deploymentId);
  }

  /** Unfinished deployments `builder` is building (or was sent to build). */
  building(builder: string): string[] {
    return (
      this.db
        .prepare(
          `SELECT b.deployment_id AS id FROM deployment_builds b JOIN deployments d ON d.id = b.deployment_id
           WHERE b.builder = ? AND b.built IS NULL AND d.status NOT IN ('done', 'failed', 'cancelled', 'superseded') ORDER BY d.rowid`,
        )
        .all(builder) as Array<{ id: string }>
    ).map((r) => r.id);
  }
}
