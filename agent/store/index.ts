// The agent's own state in DATA/agent.db: desired state, deploy journal, releases, outbox, reconcile runs, cron runs.
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { openDb, securePrivateDir, type Db } from './db.js';
import { DeployJournal, type DeployRecord } from './deploys.js';
import { DesiredStateStore } from './desired.js';
import { Outbox, DEFAULT_OUTBOX_LIMIT } from './outbox.js';
import { ReconcileRunStore } from './reconcile-runs.js';
import { CronRunStore } from './cron-runs.js';
import { ReleaseStore, type Release, type ReleaseSnapshot } from './releases.js';
import { CorruptRowError, CorruptRowLog } from './rows.js';
import type { Logger } from '../../shared/logger.js';

export type { DeployRecord, DeployPatch, DeployTransition } from './deploys.js';
export type { Release, ReleaseProcess, ReleaseSnapshot } from './releases.js';
export type { StoredDesiredState } from './desired.js';
export type { OutboxEntry } from './outbox.js';
export type { ReconcileRun } from './reconcile-runs.js';
export type { CronRunRecord, CronRunStatus, CronTrigger, NewCronRun } from './cron-runs.js';
export { CronRunStore, DeployJournal, DesiredStateStore, Outbox, ReconcileRunStore, ReleaseStore };
export { CorruptRowError } from './rows.js';

export const AGENT_DB_FILE = 'agent.db';

export interface StoreOptions {
  /** Max outbox rows (default 10 000). */
  outboxLimit?: number;
  /** Where corrupt rows are reported (error level); default: a logger of its own (berth-agent). */
  logger?: Logger;
}

export interface RecoveryResult {
  failed: DeployRecord[];
  completed: DeployRecord[];
  queued: DeployRecord[];
}

export class AgentStore {
  readonly desired: DesiredStateStore;
  readonly deploys: DeployJournal;
  readonly releases: ReleaseStore;
  readonly outbox: Outbox;
  readonly reconcileRuns: ReconcileRunStore;
  readonly cronRuns: CronRunStore;
  private closed = false;

  private constructor(
    readonly db: Db,
    opts: StoreOptions,
  ) {
    const corrupt = new CorruptRowLog(opts.logger);
    this.desired = new DesiredStateStore(db, corrupt);
    this.deploys = new DeployJournal(db);
    this.releases = new ReleaseStore(db, corrupt);
    this.outbox = new Outbox(db, opts.outboxLimit ?? DEFAULT_OUTBOX_LIMIT, corrupt);
    this.reconcileRuns = new ReconcileRunStore(db, corrupt);
    this.cronRuns = new CronRunStore(db, corrupt);
  }

  /**
   * The kept release (config, env) the live release was made from: its own deploy's snapshot, or
   * for a rollback (live under the rollback's deployment id) the snapshot it brought back. Null
   * also when that snapshot is corrupt (the store logged it): no cron job runs from a config or env
   * that cannot be read.
   */
  liveSnapshot(release: Release): ReleaseSnapshot | null {
    try {
      const own = this.releases.snapshot(release.deploymentId);
      if (own) return own;
      const source = this.deploys.get(release.deploymentId)?.order.rollbackOf;
      const restored = source ? this.releases.snapshot(source) : null;
      if (restored) return restored;
      return this.releases.history(release.app).find((s) => s.image === release.image) ?? null;
    } catch (err) {
      if (err instanceof CorruptRowError) return null;
      throw err;
    }
  }

  /** Read-only view of a stopped agent's database (`berth status`): no migrations, no writes. */
  static openReadOnly(dataDir: string, opts: Pick<StoreOptions, 'logger'> = {}): AgentStore {
    const db = new Database(join(dataDir, AGENT_DB_FILE), { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 2000');
    return new AgentStore(db, opts);
  }

  static open(dataDir: string, opts: StoreOptions = {}): AgentStore {
    securePrivateDir(dataDir);
    return new AgentStore(openDb(join(dataDir, AGENT_DB_FILE)), opts);
  }

  /**
   * After a restart, finish every deploy the previous process had started: one that already is its
   * app's current release got past the health gate and is completed (reconciliation routes to it);
   * any other is failed with the phase it was in. Queued ones never started and are returned to be resumed.
   */
  recoverInterrupted(): RecoveryResult {
    return this.db.transaction(() => {
      const result: RecoveryResult = { failed: [], completed: [], queued: [] };
      for (const d of this.deploys.unfinished()) {
        if (d.status === 'queued') {
          result.queued.push(d);
        } else if (this.releases.get(d.app)?.deploymentId === d.id) {
          result.completed.push(this.deploys.transition(d.id, 'done'));
        } else {
          result.failed.push(this.deploys.transition(d.id, 'failed', { reason: `agent restarted while the deploy was ${d.status}` }));
        }
      }
      return result;
    })();
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
