// A record of every reconcile pass (time, actions, errors) for `berth status` and debugging.
import { z } from 'zod';
import { now, type Db } from './db.js';
import { CorruptRowError, CorruptRowLog, jsonColumn, type RowRef } from './rows.js';

const lines = z.array(z.string());

export interface ReconcileRun {
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  actions: string[];
  errors: string[];
}

const KEEP_RUNS = 500;

export class ReconcileRunStore {
  constructor(
    private readonly db: Db,
    private readonly corruptLog = new CorruptRowLog(),
  ) {}

  record(run: Omit<ReconcileRun, 'finishedAt'> & { finishedAt?: string }): void {
    this.db.transaction(() => {
      this.db
        .prepare(`INSERT INTO reconcile_runs (started_at, finished_at, duration_ms, actions, errors) VALUES (?, ?, ?, ?, ?)`)
        .run(run.startedAt, run.finishedAt ?? now(), run.durationMs, JSON.stringify(run.actions), JSON.stringify(run.errors));
      this.db.prepare(`DELETE FROM reconcile_runs WHERE id <= (SELECT MAX(id) FROM reconcile_runs) - ?`).run(KEEP_RUNS);
    })();
  }

  /** The newest `limit` passes, newest first; a corrupt record is left out (and logged). */
  last(limit = 1): ReconcileRun[] {
    const rows = this.db.prepare(`SELECT * FROM reconcile_runs ORDER BY id DESC LIMIT ?`).all(limit) as Array<{
      id: number;
      started_at: string;
      finished_at: string;
      duration_ms: number;
      actions: string;
      errors: string;
    }>;
    return rows.flatMap((r) => {
      const ref = (column: string): RowRef => ({ table: 'reconcile_runs', key: String(r.id), column });
      try {
        const list = (column: 'actions' | 'errors') => {
          const value = jsonColumn(lines, r[column], ref(column));
          // NOT NULL columns: a NULL was not written by berth.
          if (value === undefined) throw new CorruptRowError(ref(column), 'is NULL');
          return value;
        };
        return [{ startedAt: r.started_at, finishedAt: r.finished_at, durationMs: r.duration_ms, actions: list('actions'), errors: list('errors') }];
      } catch (err) {
        if (!(err instanceof CorruptRowError)) throw err;
        this.corruptLog.report(err, 'left out of the reconcile history');
        return [];
      }
    });
  }
}
