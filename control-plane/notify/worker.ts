// Delivers the outbox: due deliveries are sent one at a time, each attempt recorded. A failure that
// is worth retrying is tried again with exponential backoff (jittered, capped) until a day after the
// event; a receiver's refusal (4xx other than 429) ends the delivery at once.
import type { DeliveryAttempt } from '../../shared/notify.js';
import type { Logger } from '../../shared/logger.js';
import type { NotifyEvent } from './event.js';
import { deliver, type Outcome, type SmtpSettings } from './send.js';
import type { NotifyStore, OutboxRow } from './store.js';
import { oneLine } from '../../shared/util/index.js';

export interface RetryPolicy {
  /** First retry after this long; doubled each time. */
  baseMs: number;
  maxMs: number;
  /** No attempt later than this after the event was queued. */
  giveUpAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseMs: 30_000, maxMs: 60 * 60 * 1000, giveUpAfterMs: 24 * 60 * 60 * 1000 };
const BATCH = 20;

export class DeliveryWorker {
  private busy: Promise<void> | null = null;

  constructor(
    private readonly store: NotifyStore,
    private readonly smtp: SmtpSettings | null,
    private readonly retry: RetryPolicy,
    private readonly logger: Logger,
  ) {}

  /** Send everything due now; a call while a pass runs waits for that pass. */
  pass(at = new Date()): Promise<void> {
    this.busy ??= this.run(at).finally(() => (this.busy = null));
    return this.busy;
  }

  private async run(at: Date): Promise<void> {
    for (const row of this.store.due(at, BATCH)) await this.attempt(row);
  }

  /** One attempt of one delivery, recorded; returns what `berth notify log` shows for it. */
  async attempt(row: OutboxRow): Promise<DeliveryAttempt> {
    const channel = this.store.channel(row.channel);
    if (!channel) return this.store.recordAttempt(row, { result: 'failed', code: null, error: `channel "${row.channel}" was removed`, nextAt: null });
    let outcome: Outcome;
    try {
      outcome = await deliver(channel, JSON.parse(row.payload) as NotifyEvent, row.key, this.smtp, this.logger);
    } catch (err) {
      outcome = { ok: false, retry: true, code: null, error: oneLine(err) };
    }
    const result = this.store.recordAttempt(row, this.next(row, outcome));
    const log = { channel: row.channel, event: row.event, key: row.key, attempt: result.attempt, code: result.code };
    if (result.result === 'delivered') this.logger.info(log, 'notification delivered');
    else this.logger.warn({ ...log, error: result.error, nextAttemptAt: result.nextAttemptAt }, `notification ${result.result === 'failed' ? 'not delivered (given up)' : 'delivery failed; will retry'}`);
    return result;
  }

  private next(row: OutboxRow, o: Outcome): { result: DeliveryAttempt['result']; code: number | null; error: string | null; nextAt: Date | null } {
    if (o.ok) return { result: 'delivered', code: o.code, error: null, nextAt: null };
    if (!o.retry) return { result: 'failed', code: o.code, error: `${o.error} (not retried: the receiver refuses this message)`, nextAt: null };
    const backoff = Math.min(this.retry.baseMs * 2 ** row.attempts, this.retry.maxMs);
    const delay = Math.max(o.retryAfterMs ?? 0, backoff * (0.9 + Math.random() * 0.2));
    const nextAt = new Date(Date.now() + delay);
    if (nextAt.getTime() - Date.parse(row.created_at) > this.retry.giveUpAfterMs) {
      return { result: 'failed', code: o.code, error: `${o.error} (given up: retried for ${Math.round(this.retry.giveUpAfterMs / 3_600_000)} h)`, nextAt: null };
    }
    return { result: 'retrying', code: o.code, error: o.error, nextAt };
  }
}
