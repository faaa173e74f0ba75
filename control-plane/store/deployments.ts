// Deployments and their log lines. Agents report progress and logs for deployments by id; every
// write here is scoped to the reporting agent's server, so one agent can never touch another's.
import type { DeploymentInfo, DeploymentLogs, DeploymentPhase } from '../../shared/api.js';
import { isTerminal, type DeployStatus } from '../../shared/deploy-status.js';
import { newId } from '../../shared/ids.js';
import type { LogLine } from '../../shared/protocol.js';
import { BadRequestError, NotFoundError } from '../errors.js';
import { now, type Db } from './db.js';

export interface DeploymentRow {
  id: string;
  app: string;
  server: string;
  status: DeployStatus;
  commit: string | null;
  reason: string | null;
  trigger: string;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
  /** A rollback: the deployment whose release it re-activates. */
  rollback_of: string | null;
  /** Issue 16, from the agent: the commit's subject line, and the repo's `scale:` (JSON object). */
  commit_message?: string | null;
  repo_scale?: string | null;
}

export const MAX_LOG_LINES_PER_PAGE = 5000;

/** Deployments per app whose log lines are kept (BERTH_DEPLOYMENT_LOGS_KEEP); older ones keep metadata and phases only. */
export const DEFAULT_KEEP_DEPLOYMENT_LOGS = 100;
/** Deployments past the kept window looked at when one more finishes (it pushes at most one out). */
const COMPACT_WINDOW = 100;
/** cp_meta key: the window the whole history was last compacted to (a smaller one compacts again at start). */
const COMPACTED_KEY = 'deployment_logs_kept';

export type ProgressResult = 'updated' | 'unchanged' | 'not_found' | 'already_finished';

export class DeploymentStore {
  constructor(
    private readonly db: Db,
    /** Retention: only the newest this many deployments of each app keep their log lines. */
    readonly keepLogs = DEFAULT_KEEP_DEPLOYMENT_LOGS,
  ) {}

  /**
   * Delete the log lines of the app's finished deployments that fell out of the kept window. Called
   * whenever one finishes, so the work is bounded (COMPACT_WINDOW rows), whatever the history's size.
   */
  compactLogs(app: string): number {
    return this.db
      .prepare(
        `DELETE FROM deployment_logs WHERE deployment_id IN (
           SELECT id FROM (SELECT id, finished_at FROM deployments WHERE app = ? ORDER BY rowid DESC LIMIT ? OFFSET ?)
           WHERE finished_at IS NOT NULL)`,
      )
      .run(app, COMPACT_WINDOW, this.keepLogs).changes;
  }

  /**
   * The whole history at once (at start, only when the window shrank or was never applied): one scan of
   * the deployments. Returns the number of log lines deleted.
   */
  compactAllLogs(): number {
    const done = this.db.prepare('SELECT value FROM cp_meta WHERE key = ?').get(COMPACTED_KEY) as { value: Buffer } | undefined;
    if (done && Number(done.value.toString()) <= this.keepLogs) return 0;
    return this.db.transaction(() => {
      const deleted = this.db
        .prepare(
          `DELETE FROM deployment_logs WHERE deployment_id IN (
             SELECT id FROM (SELECT id, finished_at, row_number() OVER (PARTITION BY app ORDER BY rowid DESC) AS n FROM deployments)
             WHERE n > ? AND finished_at IS NOT NULL)`,
        )
        .run(this.keepLogs).changes;
      this.db
        .prepare('INSERT INTO cp_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value')
        .run(COMPACTED_KEY, Buffer.from(String(this.keepLogs)));
      return deleted;
    })();
  }

  create(d: { app: string; server: string; commit: string | null; trigger: string; rollbackOf?: string | null }): DeploymentRow {
    const id = newId();
    const at = now();
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO deployments (id, app, server, status, "commit", reason, "trigger", created_at, updated_at, rollback_of)
           VALUES (?, ?, ?, 'queued', ?, NULL, ?, ?, ?, ?)`,
        )
        .run(id, d.app, d.server, d.commit, d.trigger, at, at, d.rollbackOf ?? null);
      this.recordPhase(id, 'queued', null, at);
    })();
    return this.get(id)!;
  }

  /**
   * A newer trigger for the app wins: every deployment of it still `queued` (not yet picked up by the
   * agent) except `newerId` becomes `superseded`. Returns the rows it changed.
   */
  supersedeQueued(app: string, newerId: string): DeploymentRow[] {
    return this.finishWhere(
      `app = ? AND status = 'queued' AND id != ?`,
      [app, newerId],
      'superseded',
      `superseded by deployment ${newerId}`,
    );
  }

  /** Mark every unfinished deployment of the app cancelled (the app is being deleted). */
  cancelUnfinished(app: string, reason: string): DeploymentRow[] {
    return this.finishWhere(
      `app = ? AND status NOT IN ('done', 'failed', 'cancelled', 'superseded')`,
      [app],
      'cancelled',
      reason,
    );
  }

  /** A user cancelled this deployment: finished as `cancelled` unless it finished first (then null). */
  cancel(id: string, reason: string): DeploymentRow | null {
    return this.finishWhere(`id = ? AND status NOT IN ('done', 'failed', 'cancelled', 'superseded')`, [id], 'cancelled', reason)[0] ?? null;
  }

  /** Failed by the control plane (e.g. its cluster's builder is offline) unless it finished first (then null). */
  failUnfinished(id: string, reason: string): DeploymentRow | null {
    return this.finishWhere(`id = ? AND status NOT IN ('done', 'failed', 'cancelled', 'superseded')`, [id], 'failed', reason)[0] ?? null;
  }

  /** The number after the deployment's last stored log line (0: none). */
  nextLogSeq(id: string): number {
    const row = this.db.prepare('SELECT MAX(seq) AS m FROM deployment_logs WHERE deployment_id = ?').get(id) as { m: number | null };
    return row.m === null ? 0 : row.m + 1;
  }

  /**
   * Deployments an agent started (past `queued`) and then stopped reporting on, with its server offline:
   * failed, so nothing stays "running" forever when a server never comes back. Queued ones are kept —
   * they run when the agent reconnects. Returns the rows it changed.
   */
  failStale(olderThan: string, isConnected: (server: string) => boolean): DeploymentRow[] {
    const candidates = this.db
      .prepare(`SELECT * FROM deployments WHERE status NOT IN ('queued', 'done', 'failed', 'cancelled', 'superseded') AND updated_at < ?`)
      .all(olderThan) as DeploymentRow[];
    const failed: DeploymentRow[] = [];
    for (const d of candidates) {
      if (isConnected(d.server)) continue; // a connected agent enforces its own phase deadlines
      const reason = `the agent of server "${d.server}" went away during ${d.status} and has not reported since ${d.updated_at}`;
      failed.push(...this.finishWhere(`id = ? AND status = ? AND updated_at = ?`, [d.id, d.status, d.updated_at], 'failed', reason));
    }
    return failed;
  }

  /** The app's deployments that went live, newest first (each made a release, or re-activated one). */
  doneByApp(app: string, limit = 1000): DeploymentRow[] {
    return this.db.prepare(`SELECT * FROM deployments WHERE app = ? AND status = 'done' ORDER BY rowid DESC LIMIT ?`).all(app, limit) as DeploymentRow[];
  }

  /**
   * The app's newest deployment of `commit` that went live or is still under way (failed, cancelled
   * and superseded ones never served it). A deployment queued with an abbreviated commit matches too.
   */
  liveOrPendingWithCommit(app: string, commit: string): DeploymentRow | undefined {
    // Two lookups, each on its own index (deployments_by_app_commit, deployments_abbreviated_commit):
    // one query with OR read every deployment of the app.
    type Found = DeploymentRow & { r: number };
    const exact = this.db
      .prepare(`SELECT rowid AS r, * FROM deployments WHERE app = ? AND "commit" = ? AND status NOT IN ('failed', 'cancelled', 'superseded') ORDER BY rowid DESC LIMIT 1`)
      .get(app, commit) as Found | undefined;
    const abbreviated = this.db
      .prepare(
        `SELECT rowid AS r, * FROM deployments WHERE app = ? AND length("commit") BETWEEN 7 AND 39 AND substr(?, 1, length("commit")) = "commit"
           AND status NOT IN ('failed', 'cancelled', 'superseded') ORDER BY rowid DESC LIMIT 1`,
      )
      .get(app, commit) as Found | undefined;
    const found = !exact || (abbreviated && abbreviated.r > exact.r) ? abbreviated : exact;
    if (!found) return undefined;
    const { r: _r, ...row } = found;
    return row;
  }

  /** Deployments of this server that ended as superseded/cancelled recently: re-announced to a reconnecting agent. */
  recentlyWithdrawn(server: string, since: string, limit = 200): DeploymentRow[] {
    return this.db
      .prepare(
        `SELECT * FROM deployments WHERE server = ? AND status IN ('superseded', 'cancelled') AND finished_at >= ?
         ORDER BY rowid DESC LIMIT ?`,
      )
      .all(server, since, limit) as DeploymentRow[];
  }

  phases(id: string): DeploymentPhase[] {
    return this.db
      .prepare('SELECT status, at, reason FROM deployment_phases WHERE deployment_id = ? ORDER BY id')
      .all(id) as DeploymentPhase[];
  }

  private finishWhere(where: string, params: unknown[], status: 'superseded' | 'cancelled' | 'failed', reason: string): DeploymentRow[] {
    return this.db.transaction(() => {
      const at = now();
      const rows = this.db
        .prepare(`UPDATE deployments SET status = ?, reason = ?, updated_at = ?, finished_at = ? WHERE ${where} RETURNING *`)
        .all(status, reason, at, at, ...params) as DeploymentRow[];
      for (const r of rows) this.recordPhase(r.id, status, reason, at);
      // Each finish moves the app's window by one: compacting here too keeps it from skipping rows when
      // many deployments end at once (a burst of superseded pushes, a cancel, the stale sweep).
      for (const app of new Set(rows.map((r) => r.app))) this.compactLogs(app);
      return rows;
    })();
  }

  private recordPhase(id: string, status: DeployStatus, reason: string | null, at: string): void {
    this.db.prepare('INSERT INTO deployment_phases (deployment_id, status, reason, at) VALUES (?, ?, ?, ?)').run(id, status, reason, at);
  }

  get(id: string): DeploymentRow | undefined {
    return this.db.prepare('SELECT * FROM deployments WHERE id = ?').get(id) as DeploymentRow | undefined;
  }

  require(id: string): DeploymentRow {
    const row = this.get(id);
    if (!row) throw new NotFoundError(`deployment "${id}" does not exist`);
    return row;
  }

  /**
   * Newest first (rowid is insertion order; timestamps can tie within a millisecond): at most `limit`,
   * older than deployment `before` when given (which must be one of the app's).
   */
  listByApp(app: string, page: { limit?: number; before?: string } = {}): DeploymentRow[] {
    let below = Number.MAX_SAFE_INTEGER;
    if (page.before !== undefined) {
      const cursor = this.db.prepare('SELECT rowid AS r, app FROM deployments WHERE id = ?').get(page.before) as { r: number; app: string } | undefined;
      if (!cursor || cursor.app !== app) throw new BadRequestError(`invalid cursor: deployment "${page.before}" is not one of app "${app}"'s`);
      below = cursor.r;
    }
    return this.db
      .prepare('SELECT * FROM deployments WHERE app = ? AND rowid < ? ORDER BY rowid DESC LIMIT ?')
      .all(app, below, page.limit ?? -1) as DeploymentRow[];
  }

  /** Deployments waiting for this server's agent, oldest first: the order they must run in. */
  /** Deployments on `server` that an agent has started and not finished (as far as this database knows). */
  startedUnfinishedForServer(server: string): DeploymentRow[] {
    return this.db
      .prepare(`SELECT * FROM deployments WHERE server = ? AND status NOT IN ('queued', 'done', 'failed', 'cancelled', 'superseded') ORDER BY rowid`)
      .all(server) as DeploymentRow[];
  }

  queuedForServer(server: string): DeploymentRow[] {
    return this.db
      .prepare(`SELECT * FROM deployments WHERE server = ? AND status = 'queued' ORDER BY rowid`)
      .all(server) as DeploymentRow[];
  }

  /** Apply an agent's progress report; a finished deployment is never reopened by a late report. */
  applyProgress(
    server: string,
    p: { deploymentId: string; status: DeployStatus; commit?: string | undefined; reason?: string | undefined; commitMessage?: string | undefined; repoScale?: Record<string, number> | undefined },
  ): ProgressResult {
    const row = this.get(p.deploymentId);
    if (!row || row.server !== server) return 'not_found';
    // The agent confirming what the control plane decided (e.g. `superseded` after a cancel) is no error.
    if (isTerminal(row.status)) return p.status === row.status ? 'unchanged' : 'already_finished';
    const at = now();
    this.db.transaction(() => {
      this.db
        .prepare(
          `UPDATE deployments SET status = ?, "commit" = COALESCE(?, "commit"), reason = COALESCE(?, reason),
             commit_message = COALESCE(?, commit_message), repo_scale = COALESCE(?, repo_scale),
             updated_at = ?, finished_at = ? WHERE id = ?`,
        )
        .run(
          p.status,
          p.commit ?? null,
          p.reason ?? null,
          p.commitMessage || null,
          p.repoScale ? JSON.stringify(p.repoScale) : null,
          at,
          isTerminal(p.status) ? at : null,
          p.deploymentId,
        );
      // A repeated report of the same phase (e.g. replayed after a reconnect) is not a new phase.
      if (p.status !== row.status) this.recordPhase(p.deploymentId, p.status, p.reason ?? null, at);
      if (isTerminal(p.status)) this.compactLogs(row.app);
    })();
    return 'updated';
  }

  /**
   * Store log lines idempotently (agents may replay). Returns the lines that were new (replays are
   * left out, so live followers see each line once), or false when the deployment is not this server's.
   */
  appendLogs(server: string, deploymentId: string, lines: readonly LogLine[]): LogLine[] | false {
    const row = this.get(deploymentId);
    if (!row || row.server !== server) return false;
    const insert = this.db.prepare(
      'INSERT OR IGNORE INTO deployment_logs (deployment_id, seq, ts, stream, text) VALUES (?, ?, ?, ?, ?)',
    );
    const added: LogLine[] = [];
    this.db.transaction(() => {
      for (const l of lines) if (insert.run(deploymentId, l.seq, l.ts, l.stream, l.text).changes > 0) added.push(l);
    })();
    return added;
  }

  logs(id: string, after: number): DeploymentLogs {
    const deployment = deploymentInfo(this.require(id));
    const lines = this.db
      .prepare('SELECT seq, ts, stream, text FROM deployment_logs WHERE deployment_id = ? AND seq > ? ORDER BY seq LIMIT ?')
      .all(id, after, MAX_LOG_LINES_PER_PAGE) as DeploymentLogs['lines'];
    return { deployment, lines };
  }
}

export function deploymentInfo(row: DeploymentRow): DeploymentInfo {
  return {
    id: row.id,
    app: row.app,
    status: row.status,
    commit: row.commit,
    reason: row.reason,
    trigger: row.trigger,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    rollbackOf: row.rollback_of ?? null,
    commitMessage: row.commit_message ?? null,
    repoScale: parseRepoScale(row.repo_scale),
  };
}

/** The stored repo scale; null when absent or unreadable (it is informational only). */
function parseRepoScale(json: string | null | undefined): Record<string, number> | null {
  if (!json) return null;
  try {
    const v = JSON.parse(json) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) return null;
    const out: Record<string, number> = {};
    for (const [k, n] of Object.entries(v)) if (typeof n === 'number') out[k] = n;
    return out;
  } catch {
    return null;
  }
}
