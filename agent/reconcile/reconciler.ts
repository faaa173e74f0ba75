// The reconcile loop: observe → plan → apply → record, on a timer and on request. Passes never
// overlap; a request during a pass gets exactly one more pass after it.
import type { ServerSpec } from '../../shared/spec.js';
import { oneLine } from '../../shared/util/index.js';
import { listAppFileDirs } from '../docker/compose-file.js';
import { listBerthContainers, type BerthContainer } from '../docker/containers.js';
import { listBerthVolumes } from '../docker/volumes.js';
import { listBerthSwarmObjects } from '../docker/swarm-objects.js';
import type { AppSite } from '../nginx/index.js';
import { executeActions, type ExecutorDeps } from './executor.js';
import { plan, type Observed } from './planner.js';

export type { CertPort, NginxPort } from './executor.js';

export interface PassResult {
  startedAt: string;
  durationMs: number;
  actions: string[];
  errors: string[];
  /** Berth containers after the pass (null when Docker could not be observed). */
  containers: BerthContainer[] | null;
}

export interface ReconcilerDeps extends Omit<ExecutorDeps, 'isBusy'> {
  desired: () => ServerSpec | null;
  busyApps: () => ReadonlySet<string>;
  /** On a cluster's manager: the site its upstream watcher last routed per cluster app (Observed.clusterSites). */
  clusterSites?: () => ReadonlyMap<string, AppSite | null> | undefined;
  onPass?: (pass: PassResult) => void;
}

export class Reconciler {
  private current: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** The desired-state revision under which no volume of a purged app was left. */
  private volumesPurgedAt: number | null = null;

  constructor(private readonly deps: ReconcilerDeps) {}

  /** Periodic passes every BERTH_RECONCILE_INTERVAL_MS, plus one right away. */
  start(): void {
    this.timer = setInterval(() => this.request(), this.deps.settings.reconcileIntervalMs);
    this.request();
  }

  /** Ask for a pass; while one runs, exactly one more follows it (requests coalesce). */
  request(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.current) {
      this.again = true;
      return this.current;
    }
    this.current = this.loop().finally(() => {
      this.current = null;
      if (this.again) void this.request(); // asked for between the loop's last check and here
    });
    return this.current;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.current;
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      const result = await this.pass();
      try {
        this.deps.onPass?.(result);
      } catch (err) {
        this.deps.logger.warn({ err }, 'reconcile pass handler failed');
      }
    } while (this.again && !this.closed);
  }

  /** One pass: observe → plan → apply → record. Never throws. */
  private async pass(): Promise<PassResult> {
    const { docker, store, logger } = this.deps;
    const started = Date.now();
    const startedAt = new Date(started).toISOString();
    let actions: string[] = [];
    let errors: string[] = [];
    let containers: BerthContainer[] | null = null;
    try {
      containers = await listBerthContainers(docker, { server: this.deps.settings.server, swarmTasks: false });
      const seen = await this.observe(containers);
      const planned = plan(seen.desired, store.releases.all(), seen.observed, (app, site) => this.deps.nginx.render(app, site), { busyApps: seen.busyApps });
      if (planned.length > 0) {
        const busyNow = () => this.deps.busyApps();
        ({ applied: actions, errors } = await executeActions({ ...this.deps, isBusy: (app) => busyNow().has(app) }, planned));
        // Best effort: the pass reports the containers as they were before it when Docker cannot list them now.
        const before = containers;
        containers = await listBerthContainers(docker, { server: this.deps.settings.server, swarmTasks: false }).catch((err: unknown) => {
          logger.warn({ err }, 'could not list the containers again after the reconcile pass: reporting them as they were before it');
          return before;
        });
      }
    } catch (err) {
      errors = [...errors, `cannot observe the server: ${oneLine(err)}`];
      logger.warn({ err }, 'reconcile pass could not observe the server');
    }
    const durationMs = Date.now() - started;
    if (store.isOpen) {
      try {
        store.reconcileRuns.record({ startedAt, durationMs, actions, errors });
      } catch (err) {
        logger.warn({ err }, 'could not record the reconcile pass');
      }
    }
    if (actions.length > 0 || errors.length > 0) logger.info({ actions: actions.length, errors: errors.length, durationMs }, 'reconcile pass');
    else logger.debug({ durationMs }, 'reconcile pass: nothing to do');
    return { startedAt, durationMs, actions, errors, containers };
  }

  /** What is on the server besides berth's containers: server blocks, certificates, volumes (while a purge is pending), app files. */
  private async observe(containers: BerthContainer[]): Promise<{ desired: ServerSpec | null; observed: Observed; busyApps: ReadonlySet<string> }> {
    const { docker, nginx, settings } = this.deps;
    const nginxApps = nginx.listApps().map((app) => ({ app, content: nginx.readAppFile(app) }));
    const desired = this.deps.desired();
    const certs = this.deps.certs && desired ? this.deps.certs.observe(desired.apps) : undefined;
    // Volumes matter only for a purge: listed while one is pending, and no more once none of the
    // purged apps has a volume left under this revision (the idle agent stays cheap).
    const purging = desired?.purgeVolumes?.filter((app) => !desired.apps.some((a) => a.name === app)) ?? [];
    const volumes =
      desired && purging.length > 0 && this.volumesPurgedAt !== desired.revision
        ? await listBerthVolumes(docker, settings.server ? { server: settings.server } : {})
        : undefined;
    const busyApps = this.deps.busyApps();
    // (A deploy still running for a purged app may yet create one: not done while it runs.)
    if (desired && volumes && !volumes.some((v) => purging.includes(v.app)) && !purging.some((app) => busyApps.has(app))) {
      this.volumesPurgedAt = desired.revision;
    }
    const appFiles = listAppFileDirs(settings.dataDir);
    // A cluster's manager: the services and networks of the cluster apps it deployed (a removed app's go).
    const swarm =
      desired?.cluster?.role === 'manager' && settings.server
        ? await listBerthSwarmObjects(docker, settings.server).catch((err: unknown) => {
            this.deps.logger.warn({ err }, 'could not list the cluster apps\' services: none is removed this pass');
            return undefined;
          })
        : undefined;
    const clusterSites = desired?.cluster?.role === 'manager' ? this.deps.clusterSites?.() : undefined;
    return {
      desired,
      busyApps,
      observed: { containers, nginxApps, appFiles, ...(certs ? { certs } : {}), ...(volumes ? { volumes } : {}), ...(swarm ?? {}), ...(clusterSites ? { clusterSites } : {}) },
    };
  }
}
