// Notifications (issue 18): the one object the rest of the control plane talks to. Its hooks are
// called where facts arrive (agent sessions, the stale-deploy sweep) and never throw into them; its
// timers deliver the outbox, send rate-limit summaries and watch for servers gone silent.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from '../../shared/logger.js';
import { newSecret } from '../../shared/ids.js';
import type { ChannelCreated, DeliveryAttempt } from '../../shared/notify.js';
import type { CertStatusEntry, CronLastRun, DiskFree } from '../../shared/protocol.js';
import { BadRequestError, ConfigError } from '../errors.js';
import type { SecretBox } from '../secret-box.js';
import type { DeploymentRow } from '../store/deployments.js';
import type { Stores } from '../store/index.js';
import { testEvent } from './event.js';
import { DEFAULT_RATE_WINDOW_MS, NotifyPipeline } from './notifier.js';
import type { SmtpSettings } from './send.js';
import { channelInfo, NotifyStore, type Channel } from './store.js';
import { Watcher } from './watch.js';
import { DEFAULT_RETRY, DeliveryWorker, type RetryPolicy } from './worker.js';

export type { SmtpSettings } from './send.js';

/** What agent sessions and the rest of the control plane call; every hook is safe to call blindly. */
export interface NotifyHooks {
  deployment(row: DeploymentRow): void;
  agentHello(server: string): void;
  certStatus(server: string, certs: readonly CertStatusEntry[]): void;
  observed(server: string, facts: { disk?: readonly DiskFree[] | undefined; cron?: readonly CronLastRun[] | undefined }): void;
}

export interface NotifySettings {
  smtp: SmtpSettings | null;
  /** A server whose agent sent nothing for this long is told offline (default 5 min). */
  offlineAfterMs: number;
  rateWindowMs?: number;
  retry?: Partial<RetryPolicy>;
  /** How often the outbox is looked at (default 1 s). */
  tickMs?: number;
}

export const DEFAULT_OFFLINE_AFTER_MS = 5 * 60 * 1000;
/** Finished deliveries are kept this long for `berth notify log`. */
const KEEP_FINISHED_MS = 30 * 24 * 60 * 60 * 1000;

/** BERTH_SMTP_* and BERTH_NOTIFY_OFFLINE_MINUTES; a bad value stops the control plane from starting. */
export function notifySettingsFromEnv(env: NodeJS.ProcessEnv = process.env): NotifySettings {
  const minutes = env.BERTH_NOTIFY_OFFLINE_MINUTES ? Number(env.BERTH_NOTIFY_OFFLINE_MINUTES) : 5;
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 10_080) throw new ConfigError(`invalid BERTH_NOTIFY_OFFLINE_MINUTES "${env.BERTH_NOTIFY_OFFLINE_MINUTES}": a number of minutes, e.g. 5`);
  return { smtp: smtpFromEnv(env), offlineAfterMs: Math.round(minutes * 60_000) };
}

function smtpFromEnv(env: NodeJS.ProcessEnv): SmtpSettings | null {
  const host = env.BERTH_SMTP_HOST;
  if (!host) return null;
  const security = (env.BERTH_SMTP_SECURITY ?? 'starttls') as SmtpSettings['security'];
  if (!['starttls', 'tls', 'none'].includes(security)) throw new ConfigError(`invalid BERTH_SMTP_SECURITY "${security}": starttls, tls or none`);
  if (security === 'none' && !/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(host)) throw new ConfigError('BERTH_SMTP_SECURITY=none is only allowed for a loopback SMTP server');
  const port = Number(env.BERTH_SMTP_PORT ?? (security === 'tls' ? 465 : 587));
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`invalid BERTH_SMTP_PORT "${env.BERTH_SMTP_PORT}"`);
  let password: string | undefined;
  if (env.BERTH_SMTP_PASSWORD_FILE) {
    try {
      password = readFileSync(env.BERTH_SMTP_PASSWORD_FILE, 'utf8').split(/\r?\n/)[0];
    } catch (err) {
      throw new ConfigError(`cannot read BERTH_SMTP_PASSWORD_FILE: ${(err as Error).message}`);
    }
  }
  return {
    host,
    port,
    security,
    from: env.BERTH_SMTP_FROM ?? `berth@${hostname()}`,
    ...(env.BERTH_SMTP_USER ? { user: env.BERTH_SMTP_USER } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(env.BERTH_SMTP_CA_FILE ? { caFile: env.BERTH_SMTP_CA_FILE } : {}),
  };
}

export interface NotifierDeps {
  stores: Stores;
  box: SecretBox;
  logger: Logger;
  url(): string;
  isConnected(server: string): boolean;
}

export class Notifier implements NotifyHooks {
  readonly store: NotifyStore;
  private readonly pipeline: NotifyPipeline;
  private readonly watcher: Watcher;
  private readonly worker: DeliveryWorker;
  private readonly log: Logger;
  private readonly startedAt = Date.now();
  private timers: NodeJS.Timeout[] = [];
  private lastPrune = 0;

  constructor(
    private readonly deps: NotifierDeps,
    private readonly settings: NotifySettings,
  ) {
    this.log = deps.logger.child({ component: 'notify' });
    this.store = new NotifyStore(deps.stores.db, deps.box);
    this.pipeline = new NotifyPipeline(this.store, deps.stores, this.log, settings.rateWindowMs ?? DEFAULT_RATE_WINDOW_MS);
    this.watcher = new Watcher(this.store, deps.stores, this.pipeline, deps.url);
    this.worker = new DeliveryWorker(this.store, settings.smtp, { ...DEFAULT_RETRY, ...settings.retry }, this.log);
  }

  start(): void {
    const tick = setInterval(() => void this.tick(), this.settings.tickMs ?? 1000);
    const offlineEvery = Math.min(Math.max(Math.round(this.settings.offlineAfterMs / 4), 100), 30_000);
    const offline = setInterval(() => this.safely('offline sweep', () => this.watcher.sweepOffline(this.deps.isConnected, this.settings.offlineAfterMs, this.startedAt)), offlineEvery);
    this.timers = [tick, offline];
    for (const t of this.timers) t.unref();
  }

  /** Stops the timers and waits for a delivery under way; what is left stays in the outbox. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    // Best effort: what it could not send stays in the outbox for the next start.
    await this.worker.pass(new Date(0)).catch((err: unknown) => this.log.warn({ err }, 'the last notification pass before stopping failed'));
  }

  private async tick(): Promise<void> {
    const at = new Date();
    this.safely('rate-limit summaries', () => this.pipeline.flushSummaries(at));
    if (at.getTime() - this.lastPrune > 3_600_000) {
      this.lastPrune = at.getTime();
      this.safely('prune', () => this.store.prune(new Date(at.getTime() - KEEP_FINISHED_MS).toISOString()));
    }
    await this.worker.pass(at).catch((err) => this.log.error({ err }, 'notification delivery pass failed'));
  }

  // ---- hooks (never throw into the caller) ----------------------------------------------------
  deployment(row: DeploymentRow): void {
    this.safely('deployment', () => this.watcher.deployment(row));
  }
  agentHello(server: string): void {
    this.safely('online', () => this.watcher.online(server));
  }
  certStatus(server: string, certs: readonly CertStatusEntry[]): void {
    this.safely('certificates', () => this.watcher.certs(server, certs));
  }
  observed(server: string, facts: { disk?: readonly DiskFree[] | undefined; cron?: readonly CronLastRun[] | undefined }): void {
    if (facts.disk) this.safely('disk', () => this.watcher.disk(server, facts.disk!));
    if (facts.cron) this.safely('cron', () => this.watcher.cron(server, facts.cron!));
  }

  // ---- channels (the API) ---------------------------------------------------------------------
  addChannel(c: Omit<Channel, 'createdAt' | 'secret'>): ChannelCreated {
    if (c.kind === 'email' && !this.settings.smtp) {
      throw new BadRequestError('no SMTP server is configured: start the control plane with BERTH_SMTP_HOST (and BERTH_SMTP_FROM, BERTH_SMTP_USER, BERTH_SMTP_PASSWORD_FILE) to send e-mail');
    }
    for (const app of c.apps) this.deps.stores.apps.require(app);
    const secret = c.kind === 'webhook' ? newSecret(32) : null;
    const created = this.store.addChannel({ ...c, secret });
    this.log.info({ channel: c.name, kind: c.kind, apps: c.apps, events: c.events }, 'notification channel added');
    return { ...channelInfo(this.store.requireChannel(created.name)), ...(secret ? { secret } : {}) };
  }

  /** Send a test message to one channel now and say how it went (retried later like any other if it fails). */
  async test(name: string): Promise<DeliveryAttempt> {
    const channel = this.store.requireChannel(name);
    const row = this.pipeline.emitTo(channel, testEvent(name));
    if (!row) throw new Error('could not queue the test message');
    return this.worker.attempt(row);
  }

  private safely(what: string, fn: () => unknown): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err, what }, 'notification hook failed');
    }
  }
}
