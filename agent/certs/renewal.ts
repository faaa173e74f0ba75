// When to issue or renew which certificate: a pure decision function (all the rules, unit tested)
// and a small scheduler around it (node-cron daily + at start + a timer for the earliest backoff),
// which runs the due renewals one at a time, most urgent first, and records every attempt.
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from '../../shared/logger.js';
import { joinLines, oneLine } from '../../shared/util/index.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * A failed attempt's error as `berth status` shows it: every line of the message, joined (an ACME
 * problem's detail is often on its second line), not only the first as oneLine alone would.
 */
export function attemptError(err: unknown): string {
  return oneLine(joinLines(err instanceof Error ? err.message : String(err), ' '));
}

export interface RenewalPolicy {
  /** Renew when the certificate has less than this left (default 30 days). */
  thresholdMs: number;
  /** First retry delay after a failure (default 5 minutes); doubles with every further failure… */
  backoffBaseMs: number;
  /** …up to this cap (default 24 hours). */
  backoffMaxMs: number;
  /**
   * After a successful issuance, an "expiring" renewal of the same app waits at least this long
   * (default 1 hour): a threshold longer than the CA's certificate lifetime (or a clock jump) must
   * not turn into a renewal loop.
   */
  minRenewIntervalMs: number;
}

export const DEFAULT_POLICY: RenewalPolicy = {
  thresholdMs: 30 * DAY,
  backoffBaseMs: 5 * MINUTE,
  backoffMaxMs: 24 * HOUR,
  minRenewIntervalMs: HOUR,
};

export function resolvePolicy(p: Partial<RenewalPolicy> = {}): RenewalPolicy {
  const policy = { ...DEFAULT_POLICY, ...Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) };
  for (const [k, v] of Object.entries(policy)) {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`renewal policy ${k} must be a non-negative number of ms`);
  }
  return policy;
}

/**
 * Why a certificate must be (re-)issued, in order of urgency:
 * - missing: no (readable) certificate at all — the app has no HTTPS yet;
 * - expired: the certificate is past notAfter — HTTPS is broken right now;
 * - domains-changed: the desired domain set differs from the certificate's (a domain added has no
 *   HTTPS; a removed domain must leave the certificate);
 * - expiring: less than the threshold left.
 */
export type RenewalReason = 'missing' | 'expired' | 'domains-changed' | 'expiring';
const TIER: Record<RenewalReason, number> = { missing: 0, expired: 1, 'domains-changed': 2, expiring: 3 };

/** The facts about an installed certificate that the decision needs. */
export interface CertFacts {
  domains: string[];
  notAfter: Date;
}

/** The facts about previous attempts that the decision needs (a subset of RenewalRecord). */
export interface AttemptFacts {
  failures: number;
  lastAttemptAt: string | Date | null;
  attemptedDomains?: string[] | null;
  lastSuccessAt?: string | Date | null;
}

export interface RenewalInput {
  /** app → desired domains. Apps with no domains need no certificate and are skipped. */
  desired: Record<string, readonly string[]>;
  certs: Record<string, CertFacts | null | undefined>;
  attempts?: Record<string, AttemptFacts | null | undefined>;
  now: Date;
  policy?: Partial<RenewalPolicy>;
}

export interface RenewalTask {
  app: string;
  /** Desired domains, normalized (lower-case, unique, sorted): what to issue for. */
  domains: string[];
  reason: RenewalReason;
  /** The current certificate's expiry, when there is one. */
  notAfter: Date | null;
  /** Domains the certificate lacks / has in excess (for logs and status). */
  added: string[];
  removed: string[];
}

export interface DeferredTask extends RenewalTask {
  /** No new attempt before this: backing off after `failures` consecutive failures (or, with 0 failures, the minimum renewal interval). */
  retryAt: Date;
  failures: number;
}

export interface RenewalPlan {
  /** Run now, in this order (most urgent first). */
  due: RenewalTask[];
  /** Would be due but backing off after failures, earliest retry first. */
  deferred: DeferredTask[];
  /** Up to date: app → when it becomes due for renewal (notAfter − threshold). */
  upToDate: Record<string, Date>;
  /** The earliest moment anything planned here becomes due (a retry or a renewal date); null = nothing. */
  nextCheckAt: Date | null;
}

export function normalizeDomains(domains: readonly string[]): string[] {
  return [...new Set(domains.map((d) => d.trim().toLowerCase()).filter(Boolean))].sort();
}

export function sameDomains(a: readonly string[], b: readonly string[]): boolean {
  const x = normalizeDomains(a);
  const y = normalizeDomains(b);
  return x.length === y.length && x.every((d, i) => d === y[i]);
}

/** Delay before the next attempt after `failures` consecutive failures: base · 2^(failures−1), capped. */
export function backoffDelay(failures: number, policy: Partial<RenewalPolicy> = {}): number {
  if (failures <= 0) return 0;
  const p = resolvePolicy(policy);
  // 2^(n-1) overflows to Infinity for large n, which Math.min caps correctly.
  return Math.min(p.backoffBaseMs * 2 ** (failures - 1), p.backoffMaxMs);
}

/** When a certificate valid until `notAfter` becomes due for renewal. */
export function renewalDueAt(notAfter: Date, policy: Partial<RenewalPolicy> = {}): Date {
  return new Date(notAfter.getTime() - resolvePolicy(policy).thresholdMs);
}

const time = (t: string | Date | null | undefined): number | null => {
  if (t === null || t === undefined) return null;
  const ms = (t instanceof Date ? t : new Date(t)).getTime();
  return Number.isNaN(ms) ? null : ms;
};

/** Decide, for every app that wants domains, whether its certificate must be issued now. Pure. */
export function planRenewals(input: RenewalInput): RenewalPlan {
  const policy = resolvePolicy(input.policy);
  const now = input.now.getTime();
  const due: RenewalTask[] = [];
  const deferred: DeferredTask[] = [];
  const upToDate: Record<string, Date> = {};

  for (const app of Object.keys(input.desired).sort()) {
    const domains = normalizeDomains(input.desired[app] ?? []);
    if (domains.length === 0) continue;
    const cert = input.certs[app] ?? null;

    let reason: RenewalReason | null;
    let added: string[] = [];
    let removed: string[] = [];
    if (!cert) {
      reason = 'missing';
      added = domains;
    } else {
      const have = normalizeDomains(cert.domains);
      added = domains.filter((d) => !have.includes(d));
      removed = have.filter((d) => !domains.includes(d));
      const notAfter = cert.notAfter.getTime();
      if (notAfter <= now) reason = 'expired';
      else if (added.length || removed.length) reason = 'domains-changed';
      else if (notAfter - policy.thresholdMs <= now) reason = 'expiring';
      else reason = null;
    }

    if (reason === null) {
      upToDate[app] = renewalDueAt(cert!.notAfter, policy);
      continue;
    }
    const task: RenewalTask = { app, domains, reason, notAfter: cert ? cert.notAfter : null, added, removed };

    // Back off after failures — unless the domain set changed since the failed attempt (a user who
    // fixes a typo in a domain should not wait hours for the next try).
    const att = input.attempts?.[app];
    const last = time(att?.lastAttemptAt);
    const failures = att?.failures ?? 0;
    const sameAsAttempted = !att?.attemptedDomains || sameDomains(att.attemptedDomains, domains);
    if (failures > 0 && last !== null && sameAsAttempted) {
      const retryAt = last + backoffDelay(failures, policy);
      if (retryAt > now) {
        deferred.push({ ...task, retryAt: new Date(retryAt), failures });
        continue;
      }
    }
    const lastOk = time(att?.lastSuccessAt);
    if (reason === 'expiring' && failures === 0 && lastOk !== null && lastOk + policy.minRenewIntervalMs > now) {
      deferred.push({ ...task, retryAt: new Date(lastOk + policy.minRenewIntervalMs), failures: 0 });
      continue;
    }
    due.push(task);
  }

  const nf = (t: RenewalTask) => (t.notAfter ? t.notAfter.getTime() : -Infinity);
  due.sort((a, b) => TIER[a.reason] - TIER[b.reason] || nf(a) - nf(b) || a.app.localeCompare(b.app));
  deferred.sort((a, b) => a.retryAt.getTime() - b.retryAt.getTime() || a.app.localeCompare(b.app));

  const candidates = [
    ...(due.length ? [now] : []),
    ...deferred.map((d) => d.retryAt.getTime()),
    ...Object.values(upToDate).map((d) => d.getTime()),
  ];
  const nextCheckAt = candidates.length ? new Date(Math.max(now, Math.min(...candidates))) : null;
  return { due, deferred, upToDate, nextCheckAt };
}

/** When the next attempt for `app` will happen under `plan` (now when due, null when it needs nothing). */
export function nextAttemptFor(plan: RenewalPlan, app: string, now: Date): Date | null {
  if (plan.due.some((t) => t.app === app)) return now;
  const d = plan.deferred.find((t) => t.app === app);
  if (d) return d.retryAt;
  return plan.upToDate[app] ?? null;
}

// ---------------------------------------------------------------------------------------------
// Scheduler

export interface AttemptReport {
  app: string;
  reason: RenewalReason;
  domains: string[];
  at: Date;
  finishedAt: Date;
  ok: boolean;
  error?: string;
  /** From the renew callback on success: the new certificate's expiry (sets the next renewal date). */
  notAfter?: Date;
}

export interface RenewalRunSummary {
  startedAt: Date;
  attempts: AttemptReport[];
  deferred: number;
  nextCheckAt: Date | null;
}

export interface RenewalSchedulerOptions {
  /** Current desired domains, certificates and attempt history (read fresh before every run). */
  load: () => Omit<RenewalInput, 'now' | 'policy'>;
  /**
   * Issue/renew one app's certificate; throw on failure. May return the new expiry, or
   * `skipped: true` when it found nothing to do after all (then nothing is recorded).
   */
  renew: (task: RenewalTask) => Promise<{ notAfter?: Date; skipped?: boolean } | void>;
  /** Persist one attempt (called for every attempt, success or failure). */
  record: (report: AttemptReport, nextAttemptAt: Date | null) => void;
  policy?: Partial<RenewalPolicy>;
  /** node-cron expression for the daily run (default: a random minute between 00:00 and 05:59). */
  cron?: string;
  /** Run once right after start() (default true). */
  runAtStart?: boolean;
  log?: Logger;
  now?: () => Date;
}

/** setTimeout's limit is 2^31−1 ms (~24.8 days); later wake-ups are left to the daily cron. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class RenewalScheduler {
  private readonly opts: RenewalSchedulerOptions;
  private readonly policy: RenewalPolicy;
  private readonly now: () => Date;
  private readonly cronExpr: string;
  private task: ScheduledTask | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<RenewalRunSummary> | null = null;
  private queued: Promise<RenewalRunSummary> | null = null;
  /** Set by stop(): a run in progress finishes its current renewal and skips the rest. */
  private halted = false;

  constructor(opts: RenewalSchedulerOptions) {
    this.opts = opts;
    this.policy = resolvePolicy(opts.policy);
    this.now = opts.now ?? (() => new Date());
    this.cronExpr = opts.cron ?? `${Math.floor(Math.random() * 60)} ${Math.floor(Math.random() * 6)} * * *`;
    if (!cron.validate(this.cronExpr)) throw new RangeError(`invalid renewal cron expression ${JSON.stringify(this.cronExpr)}`);
  }

  /** Start the daily schedule (and a run now, unless runAtStart is false). Idempotent. */
  start(): void {
    if (this.task) return;
    this.halted = false;
    this.task = cron.schedule(this.cronExpr, () => void this.runSafely(), { name: 'berth-cert-renewal', noOverlap: true });
    if (this.opts.runAtStart !== false) void this.runSafely();
  }

  /** Stop scheduling and wait for a run in progress to finish its current renewal. */
  async stop(): Promise<void> {
    this.halted = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const task = this.task;
    this.task = null;
    if (task) await task.destroy();
    await this.queued?.catch(() => undefined);
    await this.running?.catch(() => undefined);
  }

  /** Next daily run (null when stopped). */
  nextScheduledRun(): Date | null {
    return this.task?.getNextRun() ?? null;
  }

  /** True while a run is in progress. */
  get busy(): boolean {
    return this.running !== null;
  }

  private runSafely(): Promise<RenewalRunSummary | null> {
    return this.runOnce().catch((err) => {
      this.opts.log?.error({ err: oneLine(err) }, 'certificate renewal run failed');
      return null;
    });
  }

  /**
   * Plan and run every due renewal, one at a time, most urgent first. A call while a run is in
   * progress gets one more run after it (calls in between share it), so no request is missed.
   */
  runOnce(): Promise<RenewalRunSummary> {
    if (this.running) {
      this.queued ??= this.running
        .catch(() => undefined)
        .then(() => {
          this.queued = null;
          return this.runOnce();
        });
      return this.queued;
    }
    this.running = this.runPass().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async runPass(): Promise<RenewalRunSummary> {
    const startedAt = this.now();
    const plan = planRenewals({ ...this.opts.load(), now: startedAt, policy: this.policy });
    const attempts: AttemptReport[] = [];
    for (const task of plan.due) {
      if (this.halted) break;
      const at = this.now();
      this.opts.log?.info({ app: task.app, reason: task.reason, domains: task.domains }, 'renewing certificate');
      let report: AttemptReport;
      try {
        const res = await this.opts.renew(task);
        if (res?.skipped) continue;
        report = { app: task.app, reason: task.reason, domains: task.domains, at, finishedAt: this.now(), ok: true, ...(res?.notAfter ? { notAfter: res.notAfter } : {}) };
        this.opts.log?.info({ app: task.app, notAfter: res?.notAfter }, 'certificate renewed');
      } catch (err) {
        report = { app: task.app, reason: task.reason, domains: task.domains, at, finishedAt: this.now(), ok: false, error: attemptError(err) };
        this.opts.log?.warn({ app: task.app, err: report.error }, 'certificate renewal failed');
      }
      this.opts.record(report, this.nextAttemptAfter(report));
      attempts.push(report);
    }
    const after = planRenewals({ ...this.opts.load(), now: this.now(), policy: this.policy });
    this.armTimer(after.nextCheckAt);
    return { startedAt, attempts, deferred: plan.deferred.length, nextCheckAt: after.nextCheckAt };
  }

  /** What gets recorded as the next attempt after `report`. */
  nextAttemptAfter(report: AttemptReport): Date | null {
    if (!report.ok) {
      // failures so far for this app = recorded ones + this one; the record() callback increments it
      const att = this.opts.load().attempts?.[report.app];
      const failures = (att?.failures ?? 0) + 1;
      return new Date(report.finishedAt.getTime() + backoffDelay(failures, this.policy));
    }
    return report.notAfter ? renewalDueAt(report.notAfter, this.policy) : null;
  }

  /** Wake up for the earliest retry/renewal that falls before the next daily run. */
  private armTimer(at: Date | null): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.task === null || this.halted || !at) return;
    const delay = Math.max(0, at.getTime() - this.now().getTime());
    if (delay > MAX_TIMER_MS) return;
    // Something due right now after a pass means a renewal just failed with no backoff (or the clock
    // jumped): never spin — wait a little (up to a second, less only with a sub-second test backoff).
    const floor = Math.max(10, Math.min(1000, this.policy.backoffBaseMs));
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.runSafely();
    }, Math.max(delay, floor));
    this.timer.unref();
  }
}
