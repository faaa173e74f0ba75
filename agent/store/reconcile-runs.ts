// A record of every reconcile pass (time, actions, errors) for `berth status` and debugging.
import { now, type Db } from './db.js';

export interface ReconcileRun {
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  actions: string[];
  errors: string[];
}

const KEEP_RUNS = 500;

export class ReconcileRunStore {
  constructor(private readonly db: Db) {}

  record(run: Omit<ReconcileRun, 'finishedAt'> & { finishedAt?: string }): void {
    this.db.transaction(() => {
      this.db
        .prepare(`INSERT INTO reconcile_runs (started_at, finished_at, duration_ms, actions, errors) VALUES (?, ?, ?, ?, ?)`)
        .run(run.startedAt, run.finishedAt ?? now(), run.durationMs, JSON.stringify(run.actions), JSON.stringify(run.errors));
      this.db.prepare(`DELETE FROM reconcile_runs WHERE id <= (SELECT MAX(id) FROM reconcile_runs) - ?`).run(KEEP_RUNS);
    })();
  }

  last(limit = 1): ReconcileRun[] {
    const rows = this.db.prepare(`SELECT * FROM reconcile_runs ORDER BY id DESC LIMIT ?`).all(limit) as Array<{
      started_at: string;
      finished_at: string;
      duration_ms: number;
      actions: string;
      errors: string;
    }>;
    return rows.map((r) => ({
      startedAt: r.started_at,
      finishedAt: r.finished_at,
      durationMs: r.duration_ms,
      actions: JSON.parse(r.actions) as string[],
      errors: JSON.parse(r.errors) as string[],
    }));
  }
}
