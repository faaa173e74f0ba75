// Every cron run the agent started, skipped or adopted: start, end, exit code, output tail. A
// scheduled run claims its slot (app, job, minute) first; a slot that is already claimed — the same
// minute fired again after an agent restart — is never run twice.
import { z } from 'zod';
import { now, type Db } from './db.js';
import { checkedColumn, CorruptRowError, CorruptRowLog, jsonColumn, type RowRef } from './rows.js';

const CRON_RUN_STATUSES = ['running', 'succeeded', 'failed', 'timed_out', 'skipped'] as const;
const CRON_TRIGGERS = ['schedule', 'manual'] as const;
export type CronRunStatus = (typeof CRON_RUN_STATUSES)[number];
export type CronTrigger = (typeof CRON_TRIGGERS)[number];

export interface CronRunRecord {
  id: string;
  app: string;
  job: string;
  trigger: CronTrigger;
  /** The schedule slot (ISO minute) a scheduled run fired for; null for manual runs. */
  scheduledAt: string | null;
  status: CronRunStatus;
  deploymentId: string | null;
  /** The run's container name (berth-APP-cron-JOB-ID). */
  container: string | null;
  timeoutS: number | null;
  startedAt: string;
  finishedAt: string | null;
  exitCode: number | null;
  reason: string | null;
  outputTail: string[];
}

interface Row {
  id: string;
  app: string;
  job: string;
  trigger: string;
  scheduled_at: string | null;
  status: string;
  deployment_id: string | null;
  container: string | null;
  timeout_s: number | null;
  started_at: string;
  finished_at: string | null;
  exit_code: number | null;
  reason: string | null;
  output: string;
}

/** Runs kept per job (the newest). */
export const KEEP_RUNS_PER_JOB = 100;

/** Shown instead of an output tail that cannot be read (it is only ever displayed). */
export const CORRUPT_OUTPUT_LINE = '(the stored output of this run is corrupt)';

/**
 * The record of a cron_runs row. A status or trigger berth does not know makes the row corrupt
 * (CorruptRowError); an unreadable output tail is logged and shown as CORRUPT_OUTPUT_LINE.
 */
function toRecord(r: Row, corruptLog: CorruptRowLog): CronRunRecord {
  const ref = (column: string): RowRef => ({ table: 'cron_runs', key: r.id, column });
  let outputTail: string[];
  try {
    outputTail = jsonColumn(z.array(z.string()), r.output, ref('output')) ?? [];
  } catch (err) {
    if (!(err instanceof CorruptRowError)) throw err;
    corruptLog.report(err, 'its output is not shown');
    outputTail = [CORRUPT_OUTPUT_LINE];
  }
  return {
    id: r.id,
    app: r.app,
    job: r.job,
    trigger: checkedColumn(z.enum(CRON_TRIGGERS), r.trigger, ref('trigger')),
    scheduledAt: r.scheduled_at,
    status: checkedColumn(z.enum(CRON_RUN_STATUSES), r.status, ref('status')),
    deploymentId: r.deployment_id,
    container: r.container,
    timeoutS: r.timeout_s,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    exitCode: r.exit_code,
    reason: r.reason,
    outputTail,
  };
}

export interface NewCronRun {
  id: string;
  app: string;
  job: string;
  trigger: CronTrigger;
  scheduledAt: string | null;
  status: 'running' | 'skipped';
  deploymentId: string | null;
  container: string | null;
  timeoutS: number | null;
  reason?: string | null;
}

export class CronRunStore {
  constructor(
    private readonly db: Db,
    private readonly corruptLog = new CorruptRowLog(),
  ) {}

  /** The records of `rows`; a corrupt one is left out (and logged). */
  private records(rows: Row[]): CronRunRecord[] {
    return rows.flatMap((r) => {
      try {
        return [toRecord(r, this.corruptLog)];
      } catch (err) {
        if (!(err instanceof CorruptRowError)) throw err;
        this.corruptLog.report(err, 'left out of the cron runs');
        return [];
      }
    });
  }

  /**
   * Record a new run (or a skipped slot). Returns false — and records nothing — when it is a
   * scheduled run whose slot (app, job, scheduledAt) was already claimed.
   */
  insert(run: NewCronRun): boolean {
    return this.db.transaction(() => {
      const at = now();
      const res = this.db
        .prepare(
          `INSERT INTO cron_runs (id, app, job, trigger, scheduled_at, status, deployment_id, container, timeout_s, started_at, finished_at, reason)
           VALUES (@id, @app, @job, @trigger, @scheduledAt, @status, @deploymentId, @container, @timeoutS, @startedAt, @finishedAt, @reason)
           ON CONFLICT (app, job, scheduled_at) DO NOTHING`,
        )
        .run({
          id: run.id,
          app: run.app,
          job: run.job,
          trigger: run.trigger,
          scheduledAt: run.scheduledAt,
          status: run.status,
          deploymentId: run.deploymentId,
          container: run.container,
          timeoutS: run.timeoutS,
          startedAt: at,
          finishedAt: run.status === 'skipped' ? at : null,
          reason: run.reason ?? null,
        });
      if (res.changes === 0) return false;
      this.db
        .prepare(
          `DELETE FROM cron_runs WHERE app = ? AND job = ? AND status != 'running' AND id NOT IN
             (SELECT id FROM cron_runs WHERE app = ? AND job = ? ORDER BY started_at DESC, rowid DESC LIMIT ?)`,
        )
        .run(run.app, run.job, run.app, run.job, KEEP_RUNS_PER_JOB);
      return true;
    })();
  }

  /** A running run ended. Only a `running` row changes (an end is recorded once). */
  finish(id: string, end: { status: Exclude<CronRunStatus, 'running' | 'skipped'>; exitCode: number | null; reason?: string | null; outputTail: string[]; finishedAt?: string }): boolean {
    const res = this.db
      .prepare(`UPDATE cron_runs SET status = ?, exit_code = ?, reason = ?, output = ?, finished_at = ? WHERE id = ? AND status = 'running'`)
      .run(end.status, end.exitCode, end.reason ?? null, JSON.stringify(end.outputTail), end.finishedAt ?? now(), id);
    return res.changes > 0;
  }

  get(id: string): CronRunRecord | null {
    const row = this.db.prepare(`SELECT * FROM cron_runs WHERE id = ?`).get(id) as Row | undefined;
    return this.records(row ? [row] : [])[0] ?? null;
  }

  /** Runs still marked running (after a restart: to adopt or close). */
  running(): CronRunRecord[] {
    return this.records(this.db.prepare(`SELECT * FROM cron_runs WHERE status = 'running' ORDER BY started_at`).all() as Row[]);
  }

  /** The newest run of a job (any status), or null. */
  last(app: string, job: string): CronRunRecord | null {
    const row = this.db.prepare(`SELECT * FROM cron_runs WHERE app = ? AND job = ? ORDER BY started_at DESC, rowid DESC LIMIT 1`).get(app, job) as Row | undefined;
    return this.records(row ? [row] : [])[0] ?? null;
  }

  /** An app's runs (or one job's), newest first. */
  list(app: string, opts: { job?: string; limit?: number } = {}): CronRunRecord[] {
    const limit = opts.limit ?? 20;
    const rows = opts.job
      ? this.db.prepare(`SELECT * FROM cron_runs WHERE app = ? AND job = ? ORDER BY started_at DESC, rowid DESC LIMIT ?`).all(app, opts.job, limit)
      : this.db.prepare(`SELECT * FROM cron_runs WHERE app = ? ORDER BY started_at DESC, rowid DESC LIMIT ?`).all(app, limit);
    return this.records(rows as Row[]);
  }
}
