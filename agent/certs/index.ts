// CertManager: the one object the agent uses for certificates.
//
//   const certs = new CertManager({ dataDir, webroot, acme: acmeConfigFromEnv(), log, onRenewed });
//   certs.start();                         // renewal: daily + now + after backoffs
//   const c = await certs.ensure(app, domains);   // {certPath, keyPath, notAfter, domains} | null
//   certs.status();                        // for `berth status` and the API
//   await certs.stop();
//
// All issuance (ensure() and the scheduler) runs through one queue: one ACME order at a time.
// In the agent (agent/main.ts) the reconcile loop asks observe() which apps are due and runs
// ensureReport() as its `ensure-cert` action; rejected() undoes a certificate nginx refused;
// readCertStatus() reads the same status from disk without an agent (`berth status`).
import { join } from 'node:path';
import type { Logger } from '../../shared/logger.js';
import { AcmeIssuer, LETSENCRYPT_PRODUCTION, validateDomains, type AcmeConfig, type IssuedPair } from './acme.js';
import { oneLine, SerialQueue } from '../../shared/util/index.js';
import {
  RenewalScheduler,
  attemptError,
  nextAttemptFor,
  sameDomains,
  planRenewals,
  renewalDueAt,
  resolvePolicy,
  type AttemptReport,
  type RenewalInput,
  type RenewalPolicy,
  type RenewalReason,
  type RenewalRunSummary,
  type RenewalTask,
} from './renewal.js';
import { CertStore, type CertInfo } from './store.js';

export { AcmeError, acmeConfigFromEnv, checkDirectory, LETSENCRYPT_PRODUCTION } from './acme.js';
export type { AcmeConfig } from './acme.js';
export { CertStore, CertStoreError } from './store.js';
export type { CertInfo, RenewalRecord } from './store.js';
export { planRenewals, DEFAULT_POLICY } from './renewal.js';
export type { RenewalPolicy, RenewalTask, RenewalReason, RenewalRunSummary } from './renewal.js';

/** What nginx needs for an app's HTTPS server block. */
export interface CertResult {
  /** Stable path of the full chain (leaf + intermediates): `ssl_certificate`. */
  certPath: string;
  /** Stable path of the private key: `ssl_certificate_key`. */
  keyPath: string;
  notAfter: Date;
  /**
   * Domains the certificate covers. After a failed re-issue for an added domain this is the old
   * set: serve HTTPS (and redirect HTTP → HTTPS) only for these.
   */
  domains: string[];
}

export type CertState = 'valid' | 'renewal-due' | 'expired' | 'missing';

/** One app's certificate state: `berth status --json` / API shape (camelCase, ISO dates; fields only ever added). */
export interface CertStatus {
  app: string;
  /** Domains the app wants. */
  domains: string[];
  /** Domains the installed certificate covers ([] when none). */
  certDomains: string[];
  state: CertState;
  issuer: string | null;
  notBefore: string | null;
  notAfter: string | null;
  /** Whole days left (negative once expired); null without a certificate. */
  daysLeft: number | null;
  lastAttemptAt: string | null;
  lastResult: 'ok' | 'failed' | null;
  lastError: string | null;
  lastSuccessAt: string | null;
  /** Consecutive failures. */
  failures: number;
  /** When berth will try next (backoff after failures, else the renewal date); null when nothing is planned. */
  nextAttemptAt: string | null;
  /** Why a new certificate is wanted (missing | expired | domains-changed | expiring); null when none is. */
  reason: string | null;
}

export interface CertManagerOptions {
  /** BERTH_DATA: certificates, account and records live in DATA/certs. */
  dataDir: string;
  /** Directory nginx serves for /.well-known/acme-challenge/ (files go to WEBROOT/.well-known/acme-challenge/). */
  webroot: string;
  acme: AcmeConfig;
  policy?: Partial<RenewalPolicy>;
  /** node-cron expression of the daily renewal run (default: a random minute between 00:00 and 05:59). */
  cron?: string;
  log?: Logger;
  /**
   * Called after the scheduler installed a renewed certificate (not for ensure(), whose caller gets
   * the result): reload nginx here. The certificate paths are unchanged, so a reload is enough.
   * Runs inside the issuance queue: use `store` directly (not rollback()) to select the previous
   * certificate again. Throwing records the attempt as failed (with backoff).
   */
  onRenewed?: (app: string, cert: CertResult) => void | Promise<void>;
  /** Clock (tests). */
  now?: () => Date;
  /** Issuer override (tests). */
  issue?: (domains: string[]) => Promise<IssuedPair>;
}

/**
 * Certificate status read straight from DATA/certs, without a running agent (for `berth status` on
 * the server). Same shape as CertManager.status().
 */
export function readCertStatus(dataDir: string, policy: Partial<RenewalPolicy> = {}): CertStatus[] {
  const m = new CertManager({ dataDir, webroot: join(dataDir, 'certs', 'unused-webroot'), acme: { directoryUrl: LETSENCRYPT_PRODUCTION }, policy });
  return m.status();
}

export class CertManager {
  readonly store: CertStore;
  readonly issuer: AcmeIssuer;
  private readonly opts: CertManagerOptions;
  private readonly policy: RenewalPolicy;
  private readonly now: () => Date;
  private readonly scheduler: RenewalScheduler;
  private readonly issueFn: (domains: string[]) => Promise<IssuedPair>;
  /** One ACME order at a time, across ensure() and the scheduler. */
  private readonly queue = new SerialQueue();

  constructor(opts: CertManagerOptions) {
    this.opts = opts;
    this.policy = resolvePolicy(opts.policy);
    this.now = opts.now ?? (() => new Date());
    const certsDir = join(opts.dataDir, 'certs');
    this.store = new CertStore(certsDir, opts.log);
    this.issuer = new AcmeIssuer(opts.acme, { certsDir, webroot: opts.webroot, ...(opts.log ? { log: opts.log } : {}) });
    this.issueFn = opts.issue ?? ((domains) => this.issuer.issue(domains));
    this.scheduler = new RenewalScheduler({
      load: () => this.renewalInput(),
      renew: (task) => this.serialized(() => this.renewScheduled(task)),
      record: (report, next) => this.record(report, next),
      policy: this.policy,
      ...(opts.cron ? { cron: opts.cron } : {}),
      ...(opts.log ? { log: opts.log } : {}),
      now: this.now,
    });
  }

  /** Paths nginx should use for `app` (stable across renewals; they exist once a certificate is installed). */
  paths(app: string): { certPath: string; keyPath: string } {
    return this.store.paths(app);
  }

  /**
   * Make sure `app` has a certificate for `domains`: returns the current one when it is fine,
   * otherwise issues one now (unless backing off after failures). On failure it returns the old
   * certificate while it is still unexpired (it is never removed), else null; the error is in
   * status(). `domains` = [] means the app needs no certificate: null.
   */
  async ensure(app: string, domains: string[]): Promise<CertResult | null> {
    const wanted = domains.length ? validateDomains(domains) : [];
    this.store.setDesired(app, wanted);
    if (wanted.length === 0) return null;
    // Fast path without queueing behind another app's order: nothing to do for this one.
    if (!this.isDue(app)) return this.usable(app);
    return this.serialized(async () => {
      // Planned inside the queue: a renewal that just finished is seen.
      const plan = planRenewals({ ...this.renewalInput([app]), now: this.now(), policy: this.policy });
      const task = plan.due[0];
      if (task) {
        const at = this.now();
        try {
          const info = await this.issueAndInstall(task);
          this.record({ app, reason: task.reason, domains: task.domains, at, finishedAt: this.now(), ok: true, notAfter: info.notAfter }, renewalDueAt(info.notAfter, this.policy));
        } catch (err) {
          const report: AttemptReport = { app, reason: task.reason, domains: task.domains, at, finishedAt: this.now(), ok: false, error: attemptError(err) };
          this.record(report, this.scheduler.nextAttemptAfter(report));
          this.opts.log?.warn({ app, domains: task.domains, err: report.error }, 'certificate not issued');
        }
      }
      return this.usable(app);
    });
  }

  /**
   * Why `app` needs an order for `domains` right now (missing, expired, domains-changed, expiring),
   * or null when it is fine or backing off after failures. Pure apart from reading the store.
   */
  dueReason(app: string, domains: string[]): string | null {
    let wanted: string[];
    try {
      wanted = domains.length ? validateDomains(domains) : [];
    } catch {
      return null;
    }
    if (wanted.length === 0) return null;
    const rec = this.store.record(app);
    const plan = planRenewals({
      desired: { [app]: wanted },
      certs: { [app]: this.store.get(app) },
      attempts: rec ? { [app]: rec } : {},
      now: this.now(),
      policy: this.policy,
    });
    return plan.due[0]?.reason ?? null;
  }

  /** What the reconcile planner needs: due apps (with the reason) and the domains each known app's record wants. */
  observe(apps: ReadonlyArray<{ name: string; domains: readonly string[] }>): { due: Map<string, string>; wanted: Map<string, string[]> } {
    const due = new Map<string, string>();
    for (const a of apps) {
      const reason = this.dueReason(a.name, [...a.domains]);
      if (reason) due.set(a.name, reason);
    }
    const wanted = new Map(Object.entries(this.store.records()).map(([app, rec]) => [app, rec.domains]));
    for (const app of this.store.apps()) if (!wanted.has(app)) wanted.set(app, []);
    return { due, wanted };
  }

  /**
   * ensure() and report what happened: `changed` when a different certificate is now installed,
   * `error` when this call's attempt failed (the old certificate, if any, stays).
   */
  async ensureReport(app: string, domains: string[]): Promise<{ cert: CertResult | null; changed: boolean; error: string | null }> {
    const before = this.store.get(app)?.fingerprint256 ?? null;
    const startedAt = this.now().getTime();
    const cert = await this.ensure(app, domains);
    const after = this.store.get(app)?.fingerprint256 ?? null;
    const rec = this.store.record(app);
    const attempted = rec?.lastAttemptAt ? Date.parse(rec.lastAttemptAt) >= startedAt : false;
    const error = attempted && rec?.lastResult === 'failed' ? (rec.lastError ?? 'certificate not issued') : null;
    return { cert, changed: before !== after, error };
  }

  /** The installed certificate of `app` if it is unexpired, whatever domains it covers. */
  current(app: string): CertResult | null {
    return this.usable(app);
  }

  /** Certificate state of every app that wants domains or has a certificate, sorted by app. */
  status(): CertStatus[] {
    const now = this.now();
    const input = this.renewalInput();
    const plan = planRenewals({ ...input, now, policy: this.policy });
    const apps = new Set([...Object.keys(input.desired), ...this.store.apps()]);
    const out: CertStatus[] = [];
    for (const app of [...apps].sort()) {
      const rec = this.store.record(app);
      const cert = this.store.get(app);
      const wanted = rec?.domains ?? [];
      if (!cert && wanted.length === 0) continue;
      let state: CertState;
      if (!cert) state = 'missing';
      else if (cert.notAfter.getTime() <= now.getTime()) state = 'expired';
      else if (plan.due.some((t) => t.app === app) || plan.deferred.some((t) => t.app === app)) state = 'renewal-due';
      else state = 'valid';
      const next = wanted.length ? nextAttemptFor(plan, app, now) : null;
      const task = plan.due.find((t) => t.app === app) ?? plan.deferred.find((t) => t.app === app);
      out.push({
        app,
        domains: wanted,
        certDomains: cert?.domains ?? [],
        state,
        issuer: cert?.issuer ?? null,
        notBefore: cert ? cert.notBefore.toISOString() : null,
        notAfter: cert ? cert.notAfter.toISOString() : null,
        daysLeft: cert ? Math.floor((cert.notAfter.getTime() - now.getTime()) / 86_400_000) : null,
        lastAttemptAt: rec?.lastAttemptAt ?? null,
        lastResult: rec?.lastResult ?? null,
        lastError: rec?.lastError ?? null,
        lastSuccessAt: rec?.lastSuccessAt ?? null,
        failures: rec?.failures ?? 0,
        nextAttemptAt: next ? next.toISOString() : null,
        reason: task?.reason ?? null,
      });
    }
    return out;
  }

  /** Start the renewal schedule: a run now, daily, and after each backoff. */
  start(): void {
    this.scheduler.start();
  }

  /** Stop the schedule; waits for an order in progress. */
  async stop(): Promise<void> {
    await this.scheduler.stop();
    await this.queue.run(() => undefined); // after everything queued before it (their callers see their errors)
  }

  /** Run the renewal pass now (what the daily job does); resolves with what was attempted. */
  renewNow(): Promise<RenewalRunSummary> {
    return this.scheduler.runOnce();
  }

  /** Next daily run (null when not started). */
  nextScheduledRun(): Date | null {
    return this.scheduler.nextScheduledRun();
  }

  /**
   * Select the previous certificate generation again (the nginx transaction that loaded a renewed
   * certificate failed). Returns it, or null when there is no previous one.
   */
  async rollback(app: string): Promise<CertResult | null> {
    return this.serialized(async () => {
      this.store.rollback(app);
      return this.usable(app);
    });
  }

  /**
   * nginx refused the certificate ensure() just installed: select the previous one again and count
   * a failed attempt, so the next order waits for the backoff instead of repeating every pass.
   */
  async rejected(app: string, why: string): Promise<CertResult | null> {
    return this.serialized(async () => {
      const rec = this.store.record(app);
      this.store.rollback(app);
      const at = this.now();
      const reason = (rec?.lastReason ?? 'domains-changed') as RenewalReason;
      const report: AttemptReport = { app, reason, domains: rec?.attemptedDomains ?? rec?.domains ?? [], at, finishedAt: at, ok: false, error: `nginx refused the new certificate: ${oneLine(why)}` };
      this.record(report, this.scheduler.nextAttemptAfter(report));
      return this.usable(app);
    });
  }

  /** The app is gone: forget its domains and delete its certificate. */
  async remove(app: string): Promise<void> {
    await this.serialized(async () => this.store.remove(app));
  }

  // ---- internals ----

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
  }

  private renewalInput(only?: string[]): Omit<RenewalInput, 'now' | 'policy'> {
    const records = this.store.records();
    const desired: Record<string, string[]> = {};
    const certs: RenewalInput['certs'] = {};
    const attempts: NonNullable<RenewalInput['attempts']> = {};
    for (const [app, rec] of Object.entries(records)) {
      if (only && !only.includes(app)) continue;
      desired[app] = rec.domains;
      certs[app] = this.store.get(app);
      attempts[app] = rec;
    }
    return { desired, certs, attempts };
  }

  private async issueAndInstall(task: RenewalTask): Promise<CertInfo> {
    const pair = await this.issueFn(task.domains);
    // Validated before anything is replaced: key matches, chain in order, covers the domains, unexpired.
    return this.store.install(task.app, pair, { domains: task.domains, now: this.now() });
  }

  /** Whether `app` needs an order right now (due and not backing off). */
  private isDue(app: string): boolean {
    const plan = planRenewals({ ...this.renewalInput([app]), now: this.now(), policy: this.policy });
    return plan.due.length > 0;
  }

  private async renewScheduled(task: RenewalTask): Promise<{ notAfter?: Date; skipped?: boolean }> {
    // Re-check inside the queue: ensure() may have handled this app (or its domains changed) since
    // the plan was made. Skipped attempts are not recorded; a changed domain set is planned afresh.
    const rec = this.store.record(task.app);
    if (!rec || !sameDomains(rec.domains, task.domains) || !this.isDue(task.app)) return { skipped: true };
    const info = await this.issueAndInstall(task);
    const result: CertResult = { certPath: info.certPath, keyPath: info.keyPath, notAfter: info.notAfter, domains: info.domains };
    if (this.opts.onRenewed) {
      try {
        await this.opts.onRenewed(task.app, result);
      } catch (err) {
        // nginx did not take the renewed certificate: a failed attempt (backoff, shown in status).
        this.opts.log?.error({ app: task.app, err: oneLine(err) }, 'nginx did not take the renewed certificate');
        throw new Error(`renewed certificate not taken into use by nginx: ${oneLine(err)}`);
      }
    }
    return { notAfter: info.notAfter };
  }

  private record(report: AttemptReport, next: Date | null): void {
    this.store.recordAttempt(report.app, {
      at: report.at,
      finishedAt: report.finishedAt,
      domains: report.domains,
      reason: report.reason,
      ok: report.ok,
      ...(report.error ? { error: report.error } : {}),
      nextAttemptAt: next,
    });
  }

  private usable(app: string): CertResult | null {
    const cert = this.store.get(app);
    if (!cert || cert.notAfter.getTime() <= this.now().getTime()) return null;
    return { certPath: cert.certPath, keyPath: cert.keyPath, notAfter: cert.notAfter, domains: cert.domains };
  }
}
