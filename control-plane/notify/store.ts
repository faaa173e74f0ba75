// Notification records in the control plane's SQLite: channels (target and signing secret sealed:
// a Slack URL is a credential), the outbox of deliveries, each attempt, watched state and the rate
// limit of repeated failures. The outbox is the durable part: a delivery survives a restart.
import { DEFAULT_EVENTS, type ChannelInfo, type ChannelKind, type DeliveryAttempt, type NotifyEventKind } from '../../shared/notify.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { SecretBox } from '../secret-box.js';
import { now, type Db } from '../store/db.js';
import type { NotifyEvent } from './event.js';

export interface Channel {
  name: string;
  kind: ChannelKind;
  target: string;
  secret: string | null;
  apps: string[];
  events: NotifyEventKind[];
  createdAt: string;
}

export interface OutboxRow {
  id: number;
  key: string;
  channel: string;
  event: NotifyEventKind;
  app: string | null;
  payload: string;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  next_at: string;
  created_at: string;
}

interface ChannelRow {
  name: string;
  kind: ChannelKind;
  target: Buffer;
  secret: Buffer | null;
  apps: string;
  events: string;
  created_at: string;
}

const ctx = (name: string, what: string) => `notify\0${name}\0${what}`;

export class NotifyStore {
  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {}

  // ---- channels -------------------------------------------------------------------------------
  addChannel(c: Omit<Channel, 'createdAt'>): Channel {
    if (this.channel(c.name)) throw new ConflictError(`notification channel "${c.name}" already exists`);
    const at = now();
    this.db
      .prepare('INSERT INTO notify_channels (name, kind, target, secret, apps, events, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(c.name, c.kind, this.box.seal(c.target, ctx(c.name, 'target')), c.secret === null ? null : this.box.seal(c.secret, ctx(c.name, 'secret')), JSON.stringify(c.apps), JSON.stringify(c.events), at);
    return { ...c, createdAt: at };
  }

  channel(name: string): Channel | undefined {
    const row = this.db.prepare('SELECT * FROM notify_channels WHERE name = ?').get(name) as ChannelRow | undefined;
    return row ? this.open(row) : undefined;
  }

  requireChannel(name: string): Channel {
    const c = this.channel(name);
    if (!c) throw new NotFoundError(`notification channel "${name}" does not exist`);
    return c;
  }

  channels(): Channel[] {
    return (this.db.prepare('SELECT * FROM notify_channels ORDER BY name').all() as ChannelRow[]).map((r) => this.open(r));
  }

  /** Removes the channel; its pending deliveries end as failed (nobody to deliver them to). */
  removeChannel(name: string): void {
    this.db.transaction(() => {
      if (this.db.prepare('DELETE FROM notify_channels WHERE name = ?').run(name).changes === 0) {
        throw new NotFoundError(`notification channel "${name}" does not exist`);
      }
      this.db.prepare(`UPDATE notify_outbox SET status = 'failed', finished_at = ? WHERE channel = ? AND status = 'pending'`).run(now(), name);
    })();
  }

  private open(r: ChannelRow): Channel {
    const events = JSON.parse(r.events) as NotifyEventKind[];
    return {
      name: r.name,
      kind: r.kind,
      target: this.box.open(r.target, ctx(r.name, 'target')),
      secret: r.secret ? this.box.open(r.secret, ctx(r.name, 'secret')) : null,
      apps: JSON.parse(r.apps) as string[],
      events: events.length > 0 ? events : [...DEFAULT_EVENTS],
      createdAt: r.created_at,
    };
  }

  // ---- outbox ---------------------------------------------------------------------------------
  /** Queue one event for one channel; the key makes a second enqueue of the same pair a no-op. */
  enqueue(channel: string, event: NotifyEvent, at = new Date(), nextAt = at): OutboxRow | undefined {
    const key = `${event.id}.${channel}`;
    const row = this.db
      .prepare(
        `INSERT INTO notify_outbox (key, channel, event, app, payload, status, next_at, created_at)
         VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT(key) DO NOTHING RETURNING *`,
      )
      .get(key, channel, event.event, event.app, JSON.stringify(event), nextAt.toISOString(), at.toISOString()) as OutboxRow | undefined;
    return row;
  }

  due(at: Date, limit: number): OutboxRow[] {
    return this.db
      .prepare(`SELECT * FROM notify_outbox WHERE status = 'pending' AND next_at <= ? ORDER BY next_at, id LIMIT ?`)
      .all(at.toISOString(), limit) as OutboxRow[];
  }

  outboxRow(id: number): OutboxRow | undefined {
    return this.db.prepare('SELECT * FROM notify_outbox WHERE id = ?').get(id) as OutboxRow | undefined;
  }

  /** Record an attempt and move the delivery on: delivered, retried at `nextAt`, or failed for good. */
  recordAttempt(row: OutboxRow, a: { result: DeliveryAttempt['result']; code: number | null; error: string | null; nextAt: Date | null }): DeliveryAttempt {
    const at = now();
    const attempt = row.attempts + 1;
    this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO notify_attempts (outbox_id, at, attempt, result, code, error, next_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(row.id, at, attempt, a.result, a.code, a.error, a.nextAt?.toISOString() ?? null);
      const status = a.result === 'retrying' ? 'pending' : a.result;
      this.db
        .prepare('UPDATE notify_outbox SET status = ?, attempts = ?, next_at = ?, finished_at = ? WHERE id = ?')
        .run(status, attempt, a.nextAt?.toISOString() ?? row.next_at, status === 'pending' ? null : at, row.id);
    })();
    return { at, channel: row.channel, event: row.event, app: row.app, idempotencyKey: row.key, attempt, result: a.result, code: a.code, error: a.error, nextAttemptAt: a.nextAt?.toISOString() ?? null };
  }

  /** Newest first. */
  attempts(limit: number, channel?: string): DeliveryAttempt[] {
    const rows = this.db
      .prepare(
        `SELECT a.at, o.channel, o.event, o.app, o.key, a.attempt, a.result, a.code, a.error, a.next_at
         FROM notify_attempts a JOIN notify_outbox o ON o.id = a.outbox_id
         WHERE (? IS NULL OR o.channel = ?) ORDER BY a.id DESC LIMIT ?`,
      )
      .all(channel ?? null, channel ?? null, limit) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      at: r.at as string,
      channel: r.channel as string,
      event: r.event as NotifyEventKind,
      app: (r.app as string | null) ?? null,
      idempotencyKey: r.key as string,
      attempt: r.attempt as number,
      result: r.result as DeliveryAttempt['result'],
      code: (r.code as number | null) ?? null,
      error: (r.error as string | null) ?? null,
      nextAttemptAt: (r.next_at as string | null) ?? null,
    }));
  }

  /** Finished deliveries older than `before` (with their attempts) are dropped: the log stays bounded. */
  prune(before: string): number {
    // A finished deployment's "already told" mark is no longer needed once no report of it can come.
    this.db.prepare(`DELETE FROM notify_state WHERE key LIKE 'deploy:%' AND updated_at < ?`).run(before);
    return this.db.prepare(`DELETE FROM notify_outbox WHERE status != 'pending' AND finished_at < ?`).run(before).changes;
  }

  // ---- watched state and rate limit -----------------------------------------------------------
  state(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM notify_state WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  setState(key: string, value: string): void {
    this.db
      .prepare('INSERT INTO notify_state (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at')
      .run(key, value, now());
  }

  rate(key: string): { windowStart: string; suppressed: number; lastEvent: string | null } | undefined {
    const r = this.db.prepare('SELECT window_start, suppressed, last_event FROM notify_rate WHERE key = ?').get(key) as
      | { window_start: string; suppressed: number; last_event: string | null }
      | undefined;
    return r ? { windowStart: r.window_start, suppressed: r.suppressed, lastEvent: r.last_event } : undefined;
  }

  openWindow(key: string, at: Date): void {
    this.db
      .prepare(
        `INSERT INTO notify_rate (key, window_start, suppressed, last_event) VALUES (?, ?, 0, NULL)
         ON CONFLICT(key) DO UPDATE SET window_start = excluded.window_start, suppressed = 0, last_event = NULL`,
      )
      .run(key, at.toISOString());
  }

  suppress(key: string, event: NotifyEvent): void {
    this.db.prepare('UPDATE notify_rate SET suppressed = suppressed + 1, last_event = ? WHERE key = ?').run(JSON.stringify(event), key);
  }

  /** Windows that ended before `before` with failures held back: each becomes one summary message. */
  expiredWithSuppressed(before: Date): Array<{ key: string; suppressed: number; lastEvent: string }> {
    return (
      this.db
        .prepare('SELECT key, suppressed, last_event FROM notify_rate WHERE suppressed > 0 AND last_event IS NOT NULL AND window_start <= ?')
        .all(before.toISOString()) as Array<{ key: string; suppressed: number; last_event: string }>
    ).map((r) => ({ key: r.key, suppressed: r.suppressed, lastEvent: r.last_event }));
  }
}

/** The target as listings show it: e-mail as is, a URL as scheme://host/… (Slack and Discord URLs hold a token). */
export function maskTarget(c: Pick<Channel, 'kind' | 'target'>): string {
  if (c.kind === 'email') return c.target;
  try {
    const u = new URL(c.target);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '/' : '/…'}`;
  } catch {
    return '…';
  }
}

export function channelInfo(c: Channel): ChannelInfo {
  return { name: c.name, kind: c.kind, target: maskTarget(c), apps: c.apps, events: c.events, createdAt: c.createdAt };
}
