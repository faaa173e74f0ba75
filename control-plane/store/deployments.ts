// Deployments and their log lines. Agents report progress and logs for deployments by id; every
// write here is scoped to the reporting agent's server, so one agent can never touch another's.
import type { DeploymentInfo, DeploymentLogs } from '../../shared/api.js';
import { isTerminal, type DeployStatus } from '../../shared/deploy-status.js';
import { newId } from '../../shared/ids.js';
import type { LogLine } from '../../shared/protocol.js';
import { NotFoundError } from '../errors.js';
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
}

export const MAX_LOG_LINES_PER_PAGE = 5000;

export type ProgressResult = 'updated' | 'not_found' | 'already_finished';

export class DeploymentStore {
  constructor(private readonly db: Db) {}

  create(d: { app: string; server: string; commit: string | null; trigger: string }): DeploymentRow {
    const id = newId();
    const at = now();
    this.db
      .prepare(
        `INSERT INTO deployments (id, app, server, status, "commit", reason, "trigger", created_at, updated_at)
         VALUES (?, ?, ?, 'queued', ?, NULL, ?, ?, ?)`,
      )
      .run(id, d.app, d.server, d.commit, d.trigger, at, at);
    return this.get(id)!;
  }

  get(id: string): DeploymentRow | undefined {
    return this.db.prepare('SELECT * FROM deployments WHERE id = ?').get(id) as DeploymentRow | undefined;
  }

  require(id: string): DeploymentRow {
    const row = this.get(id);
    if (!row) throw new NotFoundError(`deployment "${id}" does not exist`);
    return row;
  }

  /** Newest first (rowid is insertion order; timestamps can tie within a millisecond). */
  listByApp(app: string): DeploymentRow[] {
    return this.db.prepare('SELECT * FROM deployments WHERE app = ? ORDER BY rowid DESC').all(app) as DeploymentRow[];
  }

  /** Deployments waiting for this server's agent, oldest first: the order they must run in. */
  queuedForServer(server: string): DeploymentRow[] {
    return this.db
      .prepare(`SELECT * FROM deployments WHERE server = ? AND status = 'queued' ORDER BY rowid`)
      .all(server) as DeploymentRow[];
  }

  /** Apply an agent's progress report; a finished deployment is never reopened by a late report. */
  applyProgress(
    server: string,
    p: { deploymentId: string; status: DeployStatus; commit?: string | undefined; reason?: string | undefined },
  ): ProgressResult {
    const row = this.get(p.deploymentId);
    if (!row || row.server !== server) return 'not_found';
    if (isTerminal(row.status)) return 'already_finished';
    const at = now();
    this.db
      .prepare(
        `UPDATE deployments SET status = ?, "commit" = COALESCE(?, "commit"), reason = COALESCE(?, reason),
           updated_at = ?, finished_at = ? WHERE id = ?`,
      )
      .run(p.status, p.commit ?? null, p.reason ?? null, at, isTerminal(p.status) ? at : null, p.deploymentId);
    return 'updated';
  }

  /** Store log lines idempotently (agents may replay); false when the deployment is not this server's. */
  appendLogs(server: string, deploymentId: string, lines: readonly LogLine[]): boolean {
    const row = this.get(deploymentId);
    if (!row || row.server !== server) return false;
    const insert = this.db.prepare(
      'INSERT OR IGNORE INTO deployment_logs (deployment_id, seq, ts, stream, text) VALUES (?, ?, ?, ?, ?)',
    );
    this.db.transaction(() => {
      for (const l of lines) insert.run(deploymentId, l.seq, l.ts, l.stream, l.text);
    })();
    return true;
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
  };
}
