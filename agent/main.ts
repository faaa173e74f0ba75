// `berth agent`: wires settings, credentials, the store, Docker, nginx, the connection, the deploy
// queue and the reconcile loop together. Apps keep being reconciled from the stored desired state
// whether or not the control plane is reachable.
import Docker from './docker-client.js';
import { createLogger, type Logger } from '../shared/logger.js';
import { PROTOCOL_VERSION, type AgentMessage, type DeployOrder } from '../shared/protocol.js';
import type { ServerSpec } from '../shared/spec.js';
import { AgentConnection, type ConnectionState } from './connection.js';
import { CertManager, type CertStatus } from './certs/index.js';
import { answerCron, CronScheduler } from './cron/index.js';
import { isTerminal } from '../shared/deploy-status.js';
import { DeployCancelled } from './deploy/cancel.js';
import { DeployLogStream } from './deploy/log-stream.js';
import { DeployQueue } from './deploy/queue.js';
import { recoverJournal } from './deploy/recovery.js';
import { runDeploy } from './deploy/runner.js';
import { loadCredentials } from './join.js';
import { RuntimeLogs } from './runtime-logs.js';
import { notifyFacts } from './status/facts.js';
import { gatherStatus } from './status/gather.js';
import { startStatusSocket } from './status/socket.js';
import { BERTH_VERSION } from '../shared/version.js';
import { Nginx, type AppSite } from './nginx.js';
import { listBerthContainers, type BerthContainer } from './processes.js';
import { Reconciler, type CertPort, type NginxPort } from './reconcile/reconciler.js';
import { loadSettings, type AgentSettings } from './settings.js';
import { AgentStore } from './store/index.js';
import { answerStatusRequest, journalProgress } from './deploy/status-report.js';

export { joinControlPlane, loadCredentials } from './join.js';

export interface RunningAgent {
  settings: AgentSettings;
  connection: AgentConnection;
  store: AgentStore;
  /** Connection state for `berth status`. */
  connectionState(): ConnectionState;
  /** Ask for a reconcile pass now (resolves when it, or the one running, is done). */
  reconcile(): Promise<void>;
  /** Every app's certificate (empty with HTTPS off): for `berth status`. */
  certStatus(): CertStatus[];
  /** The cron scheduler (jobs of the live releases, their runs). */
  cron: CronScheduler;
  close(): Promise<void>;
}

/** Nginx calls from deploys and reconcile passes run one at a time: each is a test+reload of the whole config. */
function serialised(nginx: Nginx): NginxPort {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    applyApp(app: string, site: AppSite | null) {
      const next = tail.then(() => nginx.applyApp(app, site));
      tail = next.catch(() => undefined);
      return next;
    },
    readAppFile: (app) => nginx.readAppFile(app),
    render: (app, site) => nginx.render(app, site),
    listApps: () => nginx.listApps(),
    reload(what: string, verifyApps?: string[]) {
      const next = tail.then(() => nginx.reload(what, verifyApps));
      tail = next.catch(() => undefined);
      return next;
    },
  };
}

/** The reconcile loop's view of the CertManager. */
function certPort(certs: CertManager): CertPort {
  return {
    observe: (apps) => certs.observe(apps),
    ensure: async (app, domains) => {
      const r = await certs.ensureReport(app, domains);
      return { changed: r.changed, error: r.error };
    },
    rejected: async (app, why) => {
      await certs.rejected(app, why);
    },
    remove: (app) => certs.remove(app),
  };
}

function observedState(spec: ServerSpec | null, containers: BerthContainer[]): AgentMessage {
  return {
    type: 'observed_state',
    v: PROTOCOL_VERSION,
    specRevision: spec?.revision ?? null,
    containers: containers.slice(0, 10_000).map((c) => ({ app: c.app, process: c.process, deploymentId: c.deploymentId, state: c.state })),
  };
}

export async function runAgent(opts: { dataDir?: string; logger?: Logger } = {}): Promise<RunningAgent> {
  const settings = loadSettings({ dataDir: opts.dataDir });
  const logger = opts.logger ?? createLogger('berth-agent');
  const creds = loadCredentials(settings.dataDir);
  settings.server = creds.server;
  const store = AgentStore.open(settings.dataDir);
  const cleanup: Array<() => Promise<void> | void> = [() => store.close()];
  try {
    const docker = new Docker({ socketPath: settings.dockerSocket });
    // Exactly one CertManager per process: acme-client's HTTP client is process-wide. HTTPS off
    // (BERTH_HTTPS_PORT=0): no certificates, no ACME traffic.
    let certs: CertManager | null = null;
    const rawNginx = new Nginx(
      {
        prefix: settings.nginxPrefix,
        httpPort: settings.httpPort,
        httpsPort: settings.httpsPort,
        acmeWebroot: settings.acmeWebroot,
        tlsFor: (app) => certs?.current(app) ?? null,
      },
      logger.child({ component: 'nginx' }),
    );
    await rawNginx.ensureRunning();
    const nginx = serialised(rawNginx);
    if (settings.httpsPort > 0) {
      certs = new CertManager({
        dataDir: settings.dataDir,
        webroot: settings.acmeWebroot,
        acme: {
          directoryUrl: settings.acmeDirectory,
          ...(settings.acmeCa ? { caFile: settings.acmeCa } : {}),
          ...(settings.acmeEmail ? { email: settings.acmeEmail } : {}),
          skipChallengeVerification: settings.acmeSkipPrecheck,
          challengeHttpPort: settings.httpPort,
        },
        policy: { thresholdMs: Math.round(settings.certRenewDays * 86_400_000), minRenewIntervalMs: settings.certMinRenewIntervalMs },
        log: logger.child({ component: 'certs' }),
        // Same paths, new files: a reload picks the certificate up. If nginx refuses it, the
        // previous one is selected again (the store directly: this runs inside the issuance queue).
        onRenewed: async (app) => {
          try {
            await nginx.reload!(`the renewed certificate of ${app}`, [app]);
          } catch (err) {
            certs!.store.rollback(app);
            await nginx.reload!(`the previous certificate of ${app}`, [app]).catch((again) => logger.error({ app, err: again }, 'nginx did not take the previous certificate either'));
            throw err;
          }
          reportCerts();
          void reconciler.request(); // a renewal for another domain set changes the server block
        },
      });
    }
    const certManager = certs;

    const connection = new AgentConnection({
      url: creds.controlPlaneUrl,
      credential: creds.credential,
      outbox: store.outbox,
      logger: logger.child({ component: 'connection' }),
      heartbeatIntervalMs: settings.heartbeatMs,
      maxBackoffMs: settings.reconnectMaxMs,
    });
    const send = (msg: AgentMessage) => {
      try {
        connection.send(msg);
      } catch (err) {
        logger.warn({ err, type: msg.type }, 'could not queue a message for the control plane');
      }
    };
    const desired = () => store.desired.get()?.spec ?? null;

    // Cron jobs of the live releases; re-synced after every deploy, rollback, desired-state change
    // and reconcile pass (a job removed from the config stops, a new release's jobs use its image).
    const cronScheduler = new CronScheduler({
      docker,
      store,
      server: settings.server,
      logger: logger.child({ component: 'cron' }),
      desiredApps: () => {
        const spec = desired();
        return spec ? new Set(spec.apps.map((a) => a.name)) : null;
      },
    });

    const queue: DeployQueue = new DeployQueue({
      concurrency: settings.buildConcurrency,
      logger,
      run: (order, signal) =>
        runDeploy(
          {
            docker,
            nginx,
            store,
            settings,
            logger,
            send,
            domainsFor: (app) => desired()?.apps.find((a) => a.name === app.name)?.domains ?? app.domains,
          },
          order,
          signal,
          queue.closing,
        ),
      onFinished: () => {
        cronScheduler.sync();
        void reconciler.request();
      },
    });

    // Observed containers, with the disk and cron facts notifications are made of (issue 18).
    const sendObserved = async (containers: BerthContainer[]) =>
      send({ ...observedState(desired(), containers), ...(await notifyFacts(docker, store, settings.dataDir, settings.minFreeDiskMb)) } as AgentMessage);

    // Certificate state for the control plane (`berth domain ls`): sent on connect and when it changed.
    let lastCertReport = '';
    const reportCerts = (force = false) => {
      if (!certManager || !connection.connected) return;
      try {
        const list = certManager.status();
        const json = JSON.stringify(list);
        if (!force && json === lastCertReport) return;
        lastCertReport = json;
        send({ type: 'cert_status', v: PROTOCOL_VERSION, certs: list.slice(0, 10_000) });
      } catch (err) {
        logger.warn({ err }, 'could not report certificate status');
      }
    };

    const reconciler: Reconciler = new Reconciler({
      docker,
      nginx,
      store,
      settings,
      logger: logger.child({ component: 'reconcile' }),
      desired,
      busyApps: () => queue.busyApps(),
      ...(certManager ? { certs: certPort(certManager) } : {}),
      onPass: (pass) => {
        cronScheduler.sync();
        if (connection.connected && pass.containers) void sendObserved(pass.containers);
        reportCerts();
      },
    });

    for (const d of await recoverJournal({ docker, store, settings, logger, send })) queue.enqueue(d.order);
    // Runs left going by a previous agent process are adopted before any schedule can fire again.
    await cronScheduler.start();
    cleanup.push(() => cronScheduler.close());

    const finishUnstarted = (id: string, status: 'cancelled' | 'superseded', reason: string) => {
      const record = store.deploys.get(id);
      if (!record || isTerminal(record.status)) return;
      const stream = new DeployLogStream(id, record.logSeq, send, (next) => store.deploys.setLogSeq(id, next));
      stream.system(reason);
      stream.flush();
      store.deploys.transition(id, status, { reason });
      send({ type: 'deploy_progress', v: PROTOCOL_VERSION, deploymentId: id, status, ...(record.commit ? { commit: record.commit } : {}), reason, ts: new Date().toISOString() });
    };

    const acceptOrder = (order: DeployOrder) => {
      if (!store.deploys.create(order)) {
        // A replay (e.g. after a reconnect): report where it stands instead of running it twice.
        const existing = store.deploys.get(order.deploymentId);
        logger.info({ deploymentId: order.deploymentId, status: existing?.status }, 'ignored a deploy order already in the journal');
        if (existing && existing.status !== 'queued') send(journalProgress(existing));
        return;
      }
      logger.info({ deploymentId: order.deploymentId, app: order.app.name }, 'deploy queued');
      queue.enqueue(order);
    };

    connection.on('deploy', acceptOrder);
    connection.on('deploy_status_request', (ids) => {
      for (const answer of answerStatusRequest(ids, (id) => store.deploys.get(id))) send(answer);
    });
    // `berth logs`: live only, never through the outbox; a dropped link ends every stream.
    const runtimeLogs = new RuntimeLogs({ docker, server: settings.server, logger: logger.child({ component: 'runtime-logs' }), send: (msg) => connection.send(msg) });
    connection.on('logs_request', (req) => void runtimeLogs.serve(req));
    connection.on('logs_cancel', (requestId) => runtimeLogs.cancel(requestId));
    connection.on('disconnected', () => runtimeLogs.cancelAll());
    // `berth cron`: answered at once from the scheduler (live only, like logs).
    connection.on('cron_request', (req) => connection.send(answerCron(cronScheduler, req)));
    connection.on('cancel', (cancel) => {
      const record = store.deploys.get(cancel.deploymentId);
      // Unknown or already finished: nothing to stop (the control plane re-sends cancels on every hello).
      if (!record || isTerminal(record.status)) return;
      const reason = new DeployCancelled(cancel.status, cancel.reason);
      const where = queue.cancel(cancel.deploymentId, reason);
      logger.info({ deploymentId: cancel.deploymentId, status: cancel.status, where }, 'deploy cancelled by the control plane');
      // A running deploy journals its own end when its abort lands; a waiting (or not yet
      // scheduled) one never runs, so it is finished here.
      if (where !== 'running') finishUnstarted(record.id, cancel.status, reason.message);
    });
    connection.on('desired_state', (spec) => {
      if (spec.server !== creds.server) {
        logger.error({ expected: creds.server, got: spec.server }, 'ignored a desired state for another server');
        return;
      }
      store.desired.save(spec);
      logger.info({ revision: spec.revision, apps: spec.apps.length }, 'desired state received');
      cronScheduler.sync();
      void reconciler.request();
    });
    connection.on('connected', () => {
      reportCerts(true);
      listBerthContainers(docker, { server: settings.server })
        .then((containers) => sendObserved(containers))
        .catch((err) => logger.warn({ err }, 'could not observe containers for the control plane'));
    });

    connection.start();
    reconciler.start();
    // Renewal: a run now, daily, and after backoffs; every attempt recorded (status, control plane).
    certManager?.start();
    // `berth status` asks the running agent over a root-only Unix socket.
    const startedAt = new Date().toISOString();
    const statusSocket = await startStatusSocket(
      settings.dataDir,
      () =>
        gatherStatus({
          store,
          docker,
          agent: { running: true, version: BERTH_VERSION, pid: process.pid, startedAt, dataDir: settings.dataDir, server: settings.server },
          connection: connection.state(),
          controlPlaneUrl: creds.controlPlaneUrl,
          certs: certManager?.status() ?? [],
        }),
      logger.child({ component: 'status' }),
    );
    logger.info({ dataDir: settings.dataDir, controlPlane: creds.controlPlaneUrl, server: creds.server }, 'agent started');

    let closing: Promise<void> | null = null;
    return {
      settings,
      connection,
      store,
      connectionState: () => connection.state(),
      reconcile: () => reconciler.request(),
      certStatus: () => certManager?.status() ?? [],
      cron: cronScheduler,
      close() {
        closing ??= (async () => {
          logger.info('agent stopping');
          await statusSocket.close();
          runtimeLogs.cancelAll();
          // Runs keep going in Docker; the next start adopts them.
          cronScheduler.close();
          await queue.close();
          await certManager?.stop();
          await reconciler.close();
          await connection.drainOutbox();
          await connection.close();
          store.close();
          logger.info('agent stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    for (const fn of cleanup) await fn();
    throw err;
  }
}
