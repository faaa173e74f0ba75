// Messages for the control plane that must not be lost while the link is down (deploy progress and
// log lines). Bounded: when full, the oldest log batches go first, progress reports last.
import type { AgentMessage } from '../../shared/protocol.js';
import { z } from 'zod';
import { now, type Db } from './db.js';
import { CorruptRowError, CorruptRowLog, jsonColumn } from './rows.js';

/**
 * Only the envelope is checked here: the message was built from the typed protocol by this agent,
 * and the control plane validates every message it receives in full.
 */
const envelope = z.looseObject({ type: z.string() });

export const DEFAULT_OUTBOX_LIMIT = 10_000;

export interface OutboxEntry {
  id: number;
  msg: AgentMessage;
}

export class Outbox {
  private size: number;

  constructor(
    private readonly db: Db,
    readonly limit = DEFAULT_OUTBOX_LIMIT,
    private readonly corruptLog = new CorruptRowLog(),
  ) {
    this.size = (db.prepare(`SELECT COUNT(*) AS n FROM outbox`).get() as { n: number }).n;
  }

  push(msg: AgentMessage): void {
    this.db.transaction(() => {
      this.db.prepare(`INSERT INTO outbox (kind, body, created_at) VALUES (?, ?, ?)`).run(msg.type, JSON.stringify(msg), now());
      this.size++;
      if (this.size > this.limit) this.trim();
    })();
  }

  /**
   * The oldest `limit` entries, in the order they were pushed. A corrupt entry can never be delivered:
   * it is logged and dropped, so it cannot block the ones behind it.
   */
  peek(limit = 100): OutboxEntry[] {
    const rows = this.db.prepare(`SELECT id, body FROM outbox ORDER BY id LIMIT ?`).all(limit) as Array<{ id: number; body: string }>;
    const entries: OutboxEntry[] = [];
    const corrupt: number[] = [];
    for (const r of rows) {
      try {
        const msg = jsonColumn(envelope, r.body, { table: 'outbox', key: String(r.id), column: 'body' });
        if (msg === undefined) throw new CorruptRowError({ table: 'outbox', key: String(r.id), column: 'body' }, 'is NULL');
        entries.push({ id: r.id, msg: msg as AgentMessage });
      } catch (err) {
        if (!(err instanceof CorruptRowError)) throw err;
        this.corruptLog.report(err, 'dropped: the message cannot be delivered');
        corrupt.push(r.id);
      }
    }
    this.remove(corrupt);
    return entries;
  }

  /** Delivered: drop them. */
  remove(ids: number[]): void {
    if (ids.length === 0) return;
    const del = this.db.prepare(`DELETE FROM outbox WHERE id = ?`);
    this.db.transaction(() => {
      for (const id of ids) this.size -= del.run(id).changes;
    })();
  }

  count(): number {
    return this.size;
  }

  private trim(): void {
    const excess = this.size - this.limit;
    const logs = this.db
      .prepare(`DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE kind = 'deploy_log' ORDER BY id LIMIT ?)`)
      .run(excess).changes;
    this.size -= logs;
    if (this.size > this.limit) {
      this.size -= this.db.prepare(`DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)`).run(this.size - this.limit).changes;
    }
  }
}
