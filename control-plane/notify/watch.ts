// Turning facts the control plane receives into events, once: what was last told about each watched
// thing (a deployment, a certificate, a cron job, a disk, a server) is kept in notify_state, so a
// repeated report, a reconnect or a control-plane restart never tells the same thing twice.
import { isTerminal } from '../../shared/deploy-status.js';
import type { CertStatusEntry, CronLastRun, DiskFree } from '../../shared/protocol.js';
import type { DeploymentRow } from '../store/deployments.js';
import type { Stores } from '../store/index.js';
import { certFailingEvent, certRenewedEvent, cronEvent, deployEvent, diskLowEvent, serverEvent, type CertFacts } from './event.js';
import type { NotifyPipeline } from './notifier.js';
import type { NotifyStore } from './store.js';

/** A failing renewal is told again (once) when the certificate is this close to expiring. */
export const CERT_URGENT_DAYS = 7;

export class Watcher {
  constructor(
    private readonly store: NotifyStore,
    private readonly stores: Stores,
    private readonly pipeline: NotifyPipeline,
    private readonly url: () => string,
  ) {}

  deployment(row: DeploymentRow): void {
    if (row.status !== 'failed' && row.status !== 'done') return;
    const key = `deploy:${row.id}`;
    if (this.store.state(key)) return;
    this.store.setState(key, row.status);
    // The phase it failed in: the last one before `failed` in its timeline.
    const phase = this.stores.deployments.phases(row.id).filter((p) => !isTerminal(p.status)).at(-1)?.status ?? null;
    this.pipeline.emit(
      deployEvent({
        id: row.id,
        app: row.app,
        server: row.server,
        status: row.status,
        phase: row.status === 'failed' ? phase : null,
        reason: row.reason,
        commit: row.commit,
        trigger: row.trigger,
        rollbackOf: row.rollback_of,
        logUrl: `${this.url()}/api/deployments/${row.id}/logs`,
      }),
    );
  }

  /** A certificate snapshot: first failure, failing within 7 days of expiry, renewed after failures. */
  certs(server: string, entries: readonly CertStatusEntry[]): void {
    const own = new Set(this.stores.apps.listByServer(server).map((a) => a.name));
    for (const e of entries) {
      if (!own.has(e.app) || e.lastResult === null) continue;
      const key = `cert:${e.app}`;
      const prev = this.store.state(key);
      const facts: CertFacts = { app: e.app, server, domains: e.domains, notAfter: e.notAfter, daysLeft: e.daysLeft, failures: e.failures, lastError: e.lastError, nextAttemptAt: e.nextAttemptAt };
      if (e.lastResult === 'failed') {
        const urgent = e.daysLeft !== null && e.daysLeft <= CERT_URGENT_DAYS;
        if (prev === 'urgent' || (prev === 'failing' && !urgent)) continue;
        this.store.setState(key, urgent ? 'urgent' : 'failing');
        this.pipeline.emit(certFailingEvent(facts, urgent), urgent ? 'urgent' : '');
      } else {
        this.store.setState(key, 'ok');
        if (prev === 'failing' || prev === 'urgent') this.pipeline.emit(certRenewedEvent(facts));
      }
    }
  }

  /** Disk below the agent's threshold (any of its data locations): told once per server, again only after it recovered. */
  disk(server: string, disks: readonly DiskFree[]): void {
    const low = disks.filter((d) => d.minFreeMb > 0 && d.freeMb < d.minFreeMb).sort((a, b) => a.freeMb - b.freeMb);
    const key = `disk:${server}`;
    const prev = this.store.state(key);
    if ((low.length > 0) === (prev === 'low')) return;
    this.store.setState(key, low.length > 0 ? 'low' : 'ok');
    if (low[0]) this.pipeline.emit(diskLowEvent(server, { ...low[0], path: low.map((d) => d.path).join(', ') }));
  }

  /** A cron job's first failure and its recovery, never every failed run. */
  cron(server: string, runs: readonly CronLastRun[]): void {
    const own = new Set(this.stores.apps.listByServer(server).map((a) => a.name));
    for (const r of runs) {
      if (!own.has(r.app)) continue;
      const key = `cron:${r.app}:${r.job}`;
      const prev = this.store.state(key);
      const failed = r.status !== 'succeeded';
      if (failed === (prev === 'failed')) continue;
      this.store.setState(key, failed ? 'failed' : 'ok');
      if (failed || prev === 'failed') this.pipeline.emit(cronEvent({ server, ...r }, !failed));
    }
  }

  online(server: string): void {
    const key = `server:${server}`;
    if (this.store.state(key) !== 'offline') return;
    this.store.setState(key, 'online');
    this.pipeline.emit(serverEvent(server, true, this.stores.servers.get(server)?.last_seen_at ?? null, 0));
  }

  /** Servers silent longer than the threshold (counted from our own start at the earliest). */
  sweepOffline(isConnected: (s: string) => boolean, offlineAfterMs: number, since: number, at = Date.now()): void {
    for (const s of this.stores.servers.list()) {
      if (!s.last_seen_at || isConnected(s.name)) continue;
      if (at - Math.max(Date.parse(s.last_seen_at), since) < offlineAfterMs) continue;
      const key = `server:${s.name}`;
      if (this.store.state(key) === 'offline') continue;
      this.store.setState(key, 'offline');
      this.pipeline.emit(serverEvent(s.name, false, s.last_seen_at, offlineAfterMs));
    }
  }
}
