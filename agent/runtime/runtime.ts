// The running agent's parts wired together: Docker, nginx, certificates, the control-plane
// connection, cron, the deploy queue and the reconcile loop, and the reports they send. Apps keep
// being reconciled from the stored desired state whether or not the control plane is reachable.
import type Docker from 'dockerode';
import DockerClient from '../docker/client.js';
import type { Logger } from '../../shared/logger.js';
import { PROTOCOL_VERSION, type AgentMessage } from '../../shared/protocol.js';
import type { ServerSpec } from '../../shared/spec.js';
import { BERTH_VERSION } from '../../shared/version.js';
import type { CertManager } from '../certs/index.js';
import { AgentConnection } from '../connection.js';
import { CronScheduler } from '../cron/index.js';
import { DeployQueue } from '../deploy/queue.js';
import { recoverJournal } from '../deploy/recovery.js';
import type { AgentCredentials } from '../join.js';
import { Nginx } from '../nginx/index.js';
import type { BerthContainer } from '../docker/containers.js';
import { appNetworkName } from '../docker/labels.js';
import { Reconciler } from '../reconcile/reconciler.js';
import { RuntimeLogs } from '../docker/runtime-logs.js';
import { LazyRegistryKeeper } from './lazy-registry.js';
import type { AgentSettings } from '../settings.js';
import { notifyFacts } from '../status/facts.js';
import { gatherStatus } from '../status/gather.js';
import type { AgentStore } from '../store/index.js';
import { certPort, createCertManager } from './certs.js';
import { runDeployLazily } from './lazy-deploy.js';
import { LazyNodeImagePruner, LazyUpstreamWatcher } from './lazy-cluster.js';

export interface AgentBase {
  settings: AgentSettings;
  logger: Logger;
  creds: AgentCredentials;
  store: AgentStore;
}

export class AgentRuntime {
  readonly settings: AgentSettings;
  readonly logger: Logger;
  readonly creds: AgentCredentials;
  readonly store: AgentStore;
  readonly docker: Docker;
  readonly certs: CertManager | null;
  readonly connection: AgentConnection;
  /** Cron jobs of the live releases; re-synced after every deploy, rollback, desired-state change and reconcile pass. */
  readonly cron: CronScheduler;
  readonly queue: DeployQueue;
  readonly reconciler: Reconciler;
  /** `berth logs`: live only, never through the outbox. */
  readonly runtimeLogs: RuntimeLogs;
  /** On a cluster's manager: the cluster apps' nginx upstreams follow their running web tasks. */
  readonly upstreams: LazyUpstreamWatcher;
  /** The cluster's registry: the CA trusted on every node, the berth-managed registry run on the manager. */
  readonly registry: LazyRegistryKeeper;
  /** On every node of a cluster: the registry's berth images no container uses are removed. */
  readonly nodeImages: LazyNodeImagePruner;
  private lastCertReport = '';

  /** nginx first: it must run before anything is routed (and the CertManager exists only then). */
  static async start(base: AgentBase): Promise<AgentRuntime> {
    const { settings, logger } = base;
    let runtime: AgentRuntime | undefined;
    const nginx = new Nginx(
      {
        prefix: settings.nginxPrefix,
        httpPort: settings.httpPort,
        httpsPort: settings.httpsPort,
        acmeWebroot: settings.acmeWebroot,
        tlsFor: (app) => runtime?.certs?.current(app) ?? null,
      },
      logger.child({ component: 'nginx' }),
    );
    await nginx.ensureRunning();
    runtime = new AgentRuntime(base, nginx);
    return runtime;
  }

  private constructor(base: AgentBase, nginx: Nginx) {
    ({ settings: this.settings, logger: this.logger, creds: this.creds, store: this.store } = base);
    const { settings, logger, store } = this;
    const docker = (this.docker = new DockerClient({ socketPath: settings.dockerSocket }));
    this.certs = createCertManager(settings, logger, nginx, () => {
      this.reportCerts();
      void this.reconciler.request(); // a renewal for another domain set changes the server block
    });
    this.connection = new AgentConnection({
      url: this.creds.controlPlaneUrl,
      credential: this.creds.credential,
      outbox: store.outbox,
      logger: logger.child({ component: 'connection' }),
      heartbeatIntervalMs: settings.heartbeatMs,
      maxBackoffMs: settings.reconnectMaxMs,
    });
    this.cron = new CronScheduler({
      docker,
      store,
      server: settings.server,
      logger: logger.child({ component: 'cron' }),
      desiredApps: () => desiredAppNames(this.desired()),
      // A cron run is capped like a build unless the app's config says otherwise.
      defaultLimits: { memory: settings.buildMemory, cpus: settings.buildCpus },
      clusterNetwork: (app) => clusterAppNetwork(this.desired(), app),
    });
    this.registry = new LazyRegistryKeeper(settings, docker, logger.child({ component: 'registry' }));
    const deployDeps = { docker, nginx, store, settings, logger, send: this.send, domainsFor: this.domainsFor, cluster: () => this.desired()?.cluster };
    this.queue = new DeployQueue({
      concurrency: settings.buildConcurrency,
      logger,
      run: (order, signal) => runDeployLazily(deployDeps, order, signal, this.queue.closing),
      onFinished: () => this.appsChanged(),
    });
    this.reconciler = new Reconciler({
      docker,
      nginx,
      store,
      settings,
      logger: logger.child({ component: 'reconcile' }),
      desired: () => this.desired(),
      busyApps: () => this.queue.busyApps(),
      clusterSites: () => this.upstreams.sites(),
      ...(this.certs ? { certs: certPort(this.certs) } : {}),
      onPass: (pass) => {
        this.followDesired();
        if (this.connection.connected && pass.containers) void this.sendObserved(pass.containers);
        this.reportCerts();
      },
    });
    ({ upstreams: this.upstreams, nodeImages: this.nodeImages } = this.clusterLoops(nginx));
    this.runtimeLogs = new RuntimeLogs({ docker, server: settings.server, logger: logger.child({ component: 'runtime-logs' }), send: (msg) => this.connection.send(msg), clusterRelease: this.clusterRelease });
  }

  /** The cluster loops, each loaded and started once the desired state wants it (never on a standalone agent). */
  private clusterLoops(nginx: Nginx): { upstreams: LazyUpstreamWatcher; nodeImages: LazyNodeImagePruner } {
    const { docker, store, logger, settings } = this;
    const desired = () => this.desired();
    const busyApps = () => this.queue.busyApps();
    return {
      upstreams: new LazyUpstreamWatcher({
        docker,
        nginx,
        store,
        logger: logger.child({ component: 'cluster-upstreams' }),
        desired,
        busyApps,
        ...(this.certs ? { onRouted: () => void this.reconciler.request() } : {}), // its certificate is planned for that site
      }),
      nodeImages: new LazyNodeImagePruner({
        docker,
        store,
        logger: logger.child({ component: 'cluster-images' }),
        desired,
        busyApps,
        keepReleases: settings.keepReleases,
        intervalMs: settings.imagePruneIntervalMs,
      }),
    };
  }

  /** Queue a message for the control plane; a full outbox is logged, never thrown at the caller. */
  readonly send = (msg: AgentMessage): void => {
    try {
      this.connection.send(msg);
    } catch (err) {
      this.logger.warn({ err, type: msg.type }, 'could not queue a message for the control plane');
    }
  };

  desired(): ServerSpec | null {
    return this.store.desired.get()?.spec ?? null;
  }

  /** A cluster app this server deploys and serves (it is its cluster's manager): its live release, null before one; else undefined. */
  private readonly clusterRelease = (app: string): string | null | undefined => {
    const desired = this.desired();
    const cluster = desired?.cluster;
    if (cluster?.role !== 'manager' || !desired!.apps.some((a) => a.name === app && a.cluster === cluster.name)) return undefined;
    return this.store.releases.get(app)?.deploymentId ?? null;
  };

  /** The app's domains now (from the latest desired state), falling back to the order's snapshot. */
  private readonly domainsFor = (app: { name: string; domains: string[] }): string[] => this.desired()?.apps.find((a) => a.name === app.name)?.domains ?? app.domains;

  /** A deploy finished or the desired state changed: cron follows the live releases, a reconcile pass runs. */
  appsChanged(): void {
    this.followDesired();
    void this.reconciler.request();
  }

  /** What follows the live releases and the desired state: cron, the cluster registry, the manager's upstream watcher. */
  private followDesired(): void {
    const desired = this.desired();
    this.cron.sync();
    void this.registry.apply(desired?.cluster);
    this.upstreams.follow(desired);
    this.nodeImages.follow(desired);
  }

  /** Finish the deploys a previous process left, resume the queued ones, adopt its cron runs. */
  async resume(): Promise<void> {
    const { docker, store, settings, logger, send } = this;
    for (const d of await recoverJournal({ docker, store, settings, logger, send })) this.queue.enqueue(d.order);
    // Runs left going by a previous agent process are adopted before any schedule can fire again.
    await this.cron.start();
  }

  startLoops(): void {
    this.connection.start();
    this.reconciler.start();
    this.upstreams.follow(this.desired());
    this.nodeImages.follow(this.desired());
    // Renewal: a run now, daily, and after backoffs; every attempt recorded (status, control plane).
    this.certs?.start();
  }

  /** Observed containers, with the disk and cron facts notifications are made of (issue 18). */
  async sendObserved(containers: BerthContainer[]): Promise<void> {
    const { docker, store, settings } = this;
    this.send({ ...observedState(this.desired(), containers), ...(await notifyFacts(docker, store, settings.dataDir, settings.minFreeDiskMb)) } as AgentMessage);
  }

  /** Certificate state for the control plane (`berth domain ls`): sent on connect (`force`) and when it changed. */
  reportCerts(force = false): void {
    if (!this.certs || !this.connection.connected) return;
    try {
      const list = this.certs.status();
      const json = JSON.stringify(list);
      if (!force && json === this.lastCertReport) return;
      this.lastCertReport = json;
      this.send({ type: 'cert_status', v: PROTOCOL_VERSION, certs: list.slice(0, 10_000) });
    } catch (err) {
      this.logger.warn({ err }, 'could not report certificate status');
    }
  }

  /** `berth status`, answered over the status socket. */
  status(startedAt: string) {
    const { store, docker, settings } = this;
    return gatherStatus({
      store,
      docker,
      agent: { running: true, version: BERTH_VERSION, pid: process.pid, startedAt, dataDir: settings.dataDir, server: settings.server },
      connection: this.connection.state(),
      controlPlaneUrl: this.creds.controlPlaneUrl,
      certs: this.certs?.status() ?? [],
    });
  }

  /** Everything stops; deploys in flight fail (journaled), cron runs keep going in Docker for the next start to adopt. */
  async stop(): Promise<void> {
    this.runtimeLogs.cancelAll();
    this.cron.close();
    await this.upstreams.close();
    await this.nodeImages.close();
    await this.queue.close();
    await this.certs?.stop();
    await this.reconciler.close();
    await this.connection.drainOutbox();
    await this.connection.close();
  }
}

/** A cluster app's overlay network when this server is its cluster's manager (cron runs attach to it); else null. */
function clusterAppNetwork(spec: ServerSpec | null, app: string): string | null {
  const a = spec?.apps.find((x) => x.name === app);
  return a?.cluster && spec?.cluster?.role === 'manager' && spec.cluster.name === a.cluster ? appNetworkName(app) : null;
}

function desiredAppNames(spec: ServerSpec | null): Set<string> | null {
  return spec ? new Set(spec.apps.map((a) => a.name)) : null;
}

function observedState(spec: ServerSpec | null, containers: BerthContainer[]): AgentMessage {
  return {
    type: 'observed_state',
    v: PROTOCOL_VERSION,
    specRevision: spec?.revision ?? null,
    containers: containers.slice(0, 10_000).map((c) => ({ app: c.app, process: c.process, deploymentId: c.deploymentId, state: c.state })),
  };
}
