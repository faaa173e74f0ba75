// The deploy journal: every deploy the agent accepted, its current phase and every transition
// with its time, so a restart can tell exactly what was in flight. It keeps the state machine of
// shared/deploy-status.ts: a transition the table does not allow throws IllegalTransitionError.
import { assertTransition, isTerminal, type DeployStatus } from '../../shared/deploy-status.js';
import type { DeployOrder } from '../../shared/protocol.js';
import { now, type Db } from './db.js';

export interface DeployRecord {
  id: string;
  app: string;
  status: DeployStatus;
  commit: string | null;
  reason: string | null;
  image: string | null;
  containerId: string | null;
  hostPort: number | null;
  containerPort: number | null;
  order: DeployOrder;
  /** Next log sequence number to use, so lines written after a restart never reuse a seq. */
  logSeq: number;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  /** When the current phase must have ended (null: no deadline, e.g. queued or finished). */
  deadlineAt: string | null;
  /** Image ids the deploy's build created (intermediate layers), oldest first. */
  buildImages: string[];
}

export interface DeployTransition {
  status: DeployStatus;
  reason: string | null;
  at: string;
  deadlineAt: string | null;
}

/** Fields a phase may record alongside (or without) a status change. */
export interface DeployPatch {
  commit?: string;
  reason?: string;
  image?: string;
  containerId?: string | null;
  hostPort?: number | null;
  containerPort?: number | null;
  /** When the phase entered by this transition must have ended. */
  deadlineAt?: string | null;
}

interface Row {
  id: string;
  app: string;
  status: string;
  commit_sha: string | null;
  reason: string | null;
  image: string | null;
  container_id: string | null;
  host_port: number | null;
  container_port: number | null;
  order_json: string;
  log_seq: number;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
  deadline_at: string | null;
  build_images: string | null;
}

const COLUMNS: Record<keyof DeployPatch, string> = {
  commit: 'commit_sha',
  reason: 'reason',
  image: 'image',
  containerId: 'container_id',
  hostPort: 'host_port',
  containerPort: 'container_port',
  deadlineAt: 'deadline_at',
};

function toRecord(row: Row): DeployRecord {
  return {
    id: row.id,
    app: row.app,
    status: row.status as DeployStatus,
    commit: row.commit_sha,
    reason: row.reason,
    image: row.image,
    containerId: row.container_id,
    hostPort: row.host_port,
    containerPort: row.container_port,
    order: JSON.parse(row.order_json) as DeployOrder,
    logSeq: row.log_seq,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
    deadlineAt: row.deadline_at,
    buildImages: parseList(row.build_images),
  };
}

function parseList(text: string | null): string[] {
  if (!text) return [];
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

export class DeployJournal {
  constructor(private readonly db: Db) {}

  /** Record a new deploy as queued; false when this id is already in the journal (a replayed order). */
  create(order: DeployOrder): boolean {
    const at = now();
    return this.db.transaction(() => {
      const inserted = this.db
        .prepare(
          `INSERT OR IGNORE INTO deploys (id, app, status, commit_sha, order_json, created_at, updated_at, log_seq)
           VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)`,
        )
        // Built on the cluster's builder: its log lines came first, this agent's are numbered after them.
        .run(order.deploymentId, order.app.name, order.commit ?? null, JSON.stringify(order), at, at, order.built?.logSeq ?? 0);
      if (inserted.changes === 0) return false;
      this.db.prepare(`INSERT INTO deploy_transitions (deploy_id, status, at) VALUES (?, 'queued', ?)`).run(order.deploymentId, at);
      return true;
    })();
  }

  get(id: string): DeployRecord | null {
    const row = this.db.prepare(`SELECT * FROM deploys WHERE id = ?`).get(id) as Row | undefined;
    return row ? toRecord(row) : null;
  }

  /**
   * Move to `status` (timestamped in deploy_transitions), recording `patch` in the same transaction.
   * Throws IllegalTransitionError when the state machine does not allow the move (nothing is written).
   */
  transition(id: string, status: DeployStatus, patch: DeployPatch = {}): DeployRecord {
    const at = now();
    return this.db.transaction(() => {
      const current = this.db.prepare(`SELECT status FROM deploys WHERE id = ?`).get(id) as { status: DeployStatus } | undefined;
      if (!current) throw new Error(`deploy ${id} is not in the journal`);
      assertTransition(id, current.status, status);
      const sets = ['status = @status', 'updated_at = @at'];
      const params: Record<string, unknown> = { id, status, at };
      if (isTerminal(status)) sets.push('finished_at = @at');
      // A phase's deadline ends with it: a finished deploy (or one entering a phase without one) has none.
      const p: DeployPatch = { ...patch, deadlineAt: isTerminal(status) ? null : (patch.deadlineAt ?? null) };
      this.patchSql(p, sets, params);
      this.db.prepare(`UPDATE deploys SET ${sets.join(', ')} WHERE id = @id`).run(params);
      this.db
        .prepare(`INSERT INTO deploy_transitions (deploy_id, status, reason, at, deadline_at) VALUES (?, ?, ?, ?, ?)`)
        .run(id, status, patch.reason ?? null, at, p.deadlineAt ?? null);
      return this.get(id)!;
    })();
  }

  /** Record fields without a status change (e.g. the container id as soon as it exists). */
  update(id: string, patch: DeployPatch): void {
    const sets = ['updated_at = @at'];
    const params: Record<string, unknown> = { id, at: now() };
    this.patchSql(patch, sets, params);
    this.db.prepare(`UPDATE deploys SET ${sets.join(', ')} WHERE id = @id`).run(params);
  }

  setLogSeq(id: string, nextSeq: number): void {
    this.db.prepare(`UPDATE deploys SET log_seq = MAX(log_seq, ?) WHERE id = ?`).run(nextSeq, id);
  }

  transitions(id: string): DeployTransition[] {
    return this.db
      .prepare(`SELECT status, reason, at, deadline_at AS deadlineAt FROM deploy_transitions WHERE deploy_id = ? ORDER BY id`)
      .all(id) as DeployTransition[];
  }

  /** Remember an image the deploy's build created, as soon as it exists (a crash must not orphan it). */
  addBuildImage(id: string, imageId: string): void {
    this.db
      .prepare(`UPDATE deploys SET build_images = json_insert(COALESCE(build_images, '[]'), '$[#]', ?) WHERE id = ?`)
      .run(imageId, id);
  }

  /** The build's images were removed (or handed over to a release). */
  clearBuildImages(id: string): void {
    this.db.prepare(`UPDATE deploys SET build_images = NULL WHERE id = ?`).run(id);
  }

  /** Deploys of an app that have not finished (their images and containers are in use). */
  unfinishedIds(app: string): Set<string> {
    const rows = this.db.prepare(`SELECT id FROM deploys WHERE app = ? AND finished_at IS NULL`).all(app) as Array<{ id: string }>;
    return new Set(rows.map((r) => r.id));
  }

  /** Deploys not in a terminal state, oldest first. */
  unfinished(): DeployRecord[] {
    return (this.db.prepare(`SELECT * FROM deploys WHERE finished_at IS NULL ORDER BY created_at, rowid`).all() as Row[]).map(toRecord);
  }

  /** Most recent deploys first, optionally of one app. */
  recent(opts: { app?: string; limit?: number } = {}): DeployRecord[] {
    const limit = opts.limit ?? 20;
    const rows = opts.app
      ? this.db.prepare(`SELECT * FROM deploys WHERE app = ? ORDER BY created_at DESC, rowid DESC LIMIT ?`).all(opts.app, limit)
      : this.db.prepare(`SELECT * FROM deploys ORDER BY created_at DESC, rowid DESC LIMIT ?`).all(limit);
    return (rows as Row[]).map(toRecord);
  }

  private patchSql(patch: DeployPatch, sets: string[], params: Record<string, unknown>): void {
    for (const [key, column] of Object.entries(COLUMNS) as Array<[keyof DeployPatch, string]>) {
      if (patch[key] === undefined) continue;
      sets.push(`${column} = @${key}`);
      params[key] = patch[key];
    }
  }
}
