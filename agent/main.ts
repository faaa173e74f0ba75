// `berth agent`: loads settings and credentials, opens the store, and starts the runtime (Docker,
// nginx, certificates, the control-plane connection, the deploy queue, the reconcile loop: see
// runtime/), the message handlers (runtime/handlers.ts) and the `berth status` socket.
// First import: puts dockerode's rarely used transports behind stand-ins before anything loads it.
import './docker/client.js';
import { createLogger, type Logger } from '../shared/logger.js';
import type { CertStatus } from './certs/index.js';
import type { AgentConnection, ConnectionState } from './connection.js';
import type { CronScheduler } from './cron/index.js';
import { loadCredentials } from './join.js';
import { handleControlPlaneMessages } from './runtime/handlers.js';
import { AgentRuntime } from './runtime/runtime.js';
import { loadSettings, type AgentSettings } from './settings.js';
import { startStatusSocket } from './status/socket.js';
import { AgentStore } from './store/index.js';
import { setCleanupLogger } from '../shared/util/index.js';

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

export async function runAgent(opts: { dataDir?: string; logger?: Logger } = {}): Promise<RunningAgent> {
  const settings = loadSettings({ dataDir: opts.dataDir });
  const logger = opts.logger ?? createLogger('berth-agent');
  setCleanupLogger(logger.child({ component: 'cleanup' }));
  const creds = loadCredentials(settings.dataDir);
  settings.server = creds.server;
  const store = AgentStore.open(settings.dataDir, { logger: logger.child({ component: 'store' }) });
  const cleanup: Array<() => Promise<void> | void> = [() => store.close()];
  try {
    const rt = await AgentRuntime.start({ settings, logger, creds, store });
    await rt.resume();
    cleanup.push(() => rt.cron.close());
    handleControlPlaneMessages(rt);
    rt.startLoops();
    // `berth status` asks the running agent over a root-only Unix socket.
    const startedAt = new Date().toISOString();
    const statusSocket = await startStatusSocket(settings.dataDir, () => rt.status(startedAt), logger.child({ component: 'status' }));
    logger.info({ dataDir: settings.dataDir, controlPlane: creds.controlPlaneUrl, server: creds.server }, 'agent started');
    return runningAgent(rt, statusSocket);
  } catch (err) {
    for (const fn of cleanup) await fn();
    throw err;
  }
}

function runningAgent(rt: AgentRuntime, statusSocket: { close(): Promise<void> }): RunningAgent {
  let closing: Promise<void> | null = null;
  return {
    settings: rt.settings,
    connection: rt.connection,
    store: rt.store,
    connectionState: () => rt.connection.state(),
    reconcile: () => rt.reconciler.request(),
    certStatus: () => rt.certs?.status() ?? [],
    cron: rt.cron,
    close() {
      closing ??= (async () => {
        rt.logger.info('agent stopping');
        await statusSocket.close();
        await rt.stop();
        rt.store.close();
        rt.logger.info('agent stopped');
      })();
      return closing;
    },
  };
}
