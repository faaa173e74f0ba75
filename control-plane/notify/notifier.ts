// The notification pipeline: an event is scrubbed of the apps' env values, held back if it repeats a
// failure told less than a window ago (counted, and summed up in one message when the window ends),
// then queued in the outbox once per matching channel. The worker delivers from there.
import { makeMasker } from '../../shared/secret-mask.js';
import type { Logger } from '../../shared/logger.js';
import type { NotifyEventKind } from '../../shared/notify.js';
import type { Stores } from '../store/index.js';
import type { NotifyEvent } from './event.js';
import type { Channel, NotifyStore } from './store.js';

export const DEFAULT_RATE_WINDOW_MS = 10 * 60 * 1000;

/** Failures: repeats of these within the window are counted instead of sent. */
const RATE_LIMITED: ReadonlySet<NotifyEventKind> = new Set(['deploy.failed', 'cert.failing', 'cron.failed', 'disk.low', 'server.offline']);

export class NotifyPipeline {
  constructor(
    private readonly store: NotifyStore,
    private readonly stores: Stores,
    private readonly logger: Logger,
    private readonly rateWindowMs: number,
  ) {}

  /**
   * Tell every channel that wants it. Returns how many deliveries were queued (0 when held back).
   * `variant` tells apart failures of one kind that are not identical (a renewal failing, and failing 7 days before expiry).
   */
  emit(event: NotifyEvent, variant = ''): number {
    const clean = this.scrub(event);
    if (RATE_LIMITED.has(clean.event) && this.heldBack(clean, variant)) return 0;
    return this.fanOut(clean);
  }

  /** To one channel, whatever its filters (`berth notify test`). */
  emitTo(channel: Channel, event: NotifyEvent) {
    // Not due for the worker: the caller makes the first attempt itself (retries are then scheduled).
    return this.store.enqueue(channel.name, this.scrub(event), new Date(), new Date(Date.now() + 3_600_000));
  }

  /** Rate windows that ended with failures held back: one message each, carrying the count. */
  flushSummaries(at: Date): void {
    for (const w of this.store.expiredWithSuppressed(new Date(at.getTime() - this.rateWindowMs))) {
      const last = JSON.parse(w.lastEvent) as NotifyEvent;
      this.store.openWindow(w.key, at);
      this.fanOut({ ...last, repeated: w.suppressed });
    }
  }

  private heldBack(e: NotifyEvent, variant: string): boolean {
    const key = `${e.event}:${e.app ?? `server/${e.server ?? ''}`}${variant ? `:${variant}` : ''}`;
    const w = this.store.rate(key);
    const at = new Date(e.occurredAt);
    if (w && at.getTime() - Date.parse(w.windowStart) < this.rateWindowMs) {
      this.store.suppress(key, e);
      this.logger.info({ event: e.event, app: e.app, server: e.server, suppressed: w.suppressed + 1 }, 'notification held back by the rate limit');
      return true;
    }
    this.store.openWindow(key, at);
    return false;
  }

  private fanOut(e: NotifyEvent): number {
    let queued = 0;
    for (const c of this.store.channels()) {
      if (!c.events.includes(e.event) || !this.appMatches(c, e)) continue;
      if (this.store.enqueue(c.name, e)) queued++;
    }
    return queued;
  }

  /** An app filter passes the app's events, and its server's events (offline, disk) when it runs there. */
  private appMatches(c: Channel, e: NotifyEvent): boolean {
    if (c.apps.length === 0) return true;
    if (e.app) return c.apps.includes(e.app);
    if (!e.server) return false;
    return this.stores.apps.listByServer(e.server).some((a) => c.apps.includes(a.name));
  }

  /** Never an env value in a message: every string is masked with the env of the apps it may quote. */
  private scrub(e: NotifyEvent): NotifyEvent {
    const apps = e.app ? [e.app] : e.server ? this.stores.apps.listByServer(e.server).map((a) => a.name) : [];
    const env: Record<string, string> = {};
    let n = 0;
    for (const app of apps) {
      try {
        for (const { value } of this.stores.env.list(app)) env[`v${n++}`] = value;
      } catch (err) {
        this.logger.warn({ err, app }, 'could not read env values to mask a notification');
      }
    }
    const mask = makeMasker(env);
    const data: NotifyEvent['data'] = {};
    for (const [k, v] of Object.entries(e.data)) data[k] = typeof v === 'string' ? mask(v) : v;
    return { ...e, title: mask(e.title), text: mask(e.text), data };
  }
}
