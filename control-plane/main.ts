// Starting and stopping the control plane: data dir, admin token, database, HTTP(S) API and the
// agents' WebSocket hub, all on one port.
import { deploymentInfo } from './store/deployments.js';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { createLogger, type Logger } from '../shared/logger.js';
import { loadOrCreateAdminToken } from './admin-token.js';
import { createApi } from './api/app.js';
import { ConfigError } from './errors.js';
import { DeploymentEvents } from './events.js';
import { AgentHub } from './hub.js';
import { loadOrCreateReleaseSigner } from './release-signing.js';
import { loadOrCreateSecretKey, SecretBox } from './secret-box.js';
import { openStores } from './store/index.js';
import { DB_FILE } from './store/db.js';
import { Notifier, notifySettingsFromEnv, type NotifySettings } from './notify/index.js';
import { BackupScheduler, backupSettingsFromEnv, checkBackupSettings, type ScheduledBackupSettings } from './backup/scheduler.js';
import { DEFAULT_SERVER_TIMEOUTS, type ServerTimeouts } from './tls/listener.js';
import { serve } from './tls/serve.js';
import { checkTransport, type TlsOptions } from './tls/transport.js';
import { startRegistryRenewal } from './clusters/registry-renewal.js';

export interface ControlPlaneOptions {
  dataDir: string;
  /** "HOST:PORT"; PORT may be 0 for any free port. IPv6 hosts in brackets: "[::1]:8080". */
  listen: string;
  /** The URL agents and clients use to reach us (e.g. behind a proxy); default http://HOST:PORT. */
  publicUrl?: string;
  /** Release tarballs served to install.sh (default: $BERTH_RELEASE_DIR, else release/ next to the install). */
  releaseDir?: string;
  logger?: Logger;
  /** A started deployment whose agent is offline and silent this long is failed (default 3 h: longer than any phase deadline). */
  staleDeploymentMs?: number;
  /** How often to look for such deployments (default 60 s). */
  staleSweepIntervalMs?: number;
  /** Scheduled encrypted backups (default: from BERTH_BACKUP_*; null: off). */
  backup?: ScheduledBackupSettings | null;
  /** Notifications: SMTP server, offline threshold (default: from BERTH_SMTP_*, BERTH_NOTIFY_OFFLINE_MINUTES). */
  notify?: NotifySettings;
  /** Serve HTTPS: certificate files, or the control plane's own ACME certificate. */
  tls?: TlsOptions;
  /** Allow plain HTTP on a non-loopback address without an https:// public URL (refused otherwise). */
  insecureHttp?: boolean;
  /** Request timeouts (default DEFAULT_SERVER_TIMEOUTS; tests shorten them). */
  serverTimeouts?: Partial<ServerTimeouts>;
}

export const DEFAULT_STALE_DEPLOYMENT_MS = 3 * 60 * 60 * 1000;

export interface RunningControlPlane {
  url: string;
  adminToken: string;
  /** The request timeouts in force. */
  timeouts: ServerTimeouts;
  close(): Promise<void>;
}

export { DB_FILE };

export async function startControlPlane(opts: ControlPlaneOptions): Promise<RunningControlPlane> {
  const logger = opts.logger ?? createLogger('control-plane');
  const { host, port } = parseListen(opts.listen);
  const backup = opts.backup === undefined ? backupSettingsFromEnv() : opts.backup;
  if (backup) checkBackupSettings(backup); // before anything is opened: a bad setting stops the start
  const notifySettings = opts.notify ?? notifySettingsFromEnv();
  checkTransport({ host, port, tls: !!opts.tls, publicUrl: opts.publicUrl, insecureHttp: opts.insecureHttp });
  const timeouts = { ...DEFAULT_SERVER_TIMEOUTS, ...opts.serverTimeouts };
  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  // On every start, not only when created: a data dir loosened by hand (or by a restore) holds the
  // admin token, the secrets key and the database.
  chmodSync(opts.dataDir, 0o700);
  const { token: adminToken } = loadOrCreateAdminToken(opts.dataDir, logger);
  const secretBox = new SecretBox(loadOrCreateSecretKey(opts.dataDir, logger));
  const releaseSigner = loadOrCreateReleaseSigner(opts.dataDir, logger);
  const stores = openStores(join(opts.dataDir, DB_FILE), { secretBox });
  const events = new DeploymentEvents(logger);
  const notifier = new Notifier({ stores, box: secretBox, logger, url: () => url, isConnected: (s) => hub.isConnected(s) }, notifySettings);
  const hub = new AgentHub({ stores, logger, events, notify: notifier });
  const backups = backup ? new BackupScheduler(backup, { db: stores.db, dataDir: opts.dataDir, logger: logger.child({ component: 'backup' }) }) : undefined;

  let url = opts.publicUrl?.replace(/\/+$/, '') ?? '';
  const api = createApi({ stores, hub, events, logger, adminToken, url: () => url, releaseDir: opts.releaseDir, backups, releaseSigner, notify: notifier });
  let serving: Awaited<ReturnType<typeof serve>>;
  try {
    serving = await serve({
      host,
      port,
      handler: getRequestListener(api.fetch, { hostname: host }),
      onUpgrade: hub.handleUpgrade,
      ...(opts.tls ? { tls: opts.tls } : {}),
      dataDir: opts.dataDir,
      publicUrl: () => url,
      timeouts,
      logger,
    });
  } catch (err) {
    await hub.close();
    stores.db.close();
    throw err;
  }
  if (!url) url = defaultUrl(host, serving.port, opts.tls);
  logger.info({ url, listen: `${host}:${serving.port}`, dataDir: opts.dataDir, tls: opts.tls?.kind ?? 'none' }, 'control plane listening');

  // No deployment stays "running" forever: if its server vanished mid-deploy and never came back,
  // the agent cannot fail it, so the control plane does (a reconnecting agent fails it itself).
  const staleMs = opts.staleDeploymentMs ?? DEFAULT_STALE_DEPLOYMENT_MS;
  const sweep = setInterval(() => {
    try {
      for (const d of stores.deployments.failStale(new Date(Date.now() - staleMs).toISOString(), (s) => hub.isConnected(s))) {
        logger.warn({ deploymentId: d.id, app: d.app, server: d.server }, d.reason ?? 'stale deployment failed');
        events.deployment(deploymentInfo(d));
        notifier.deployment(d);
      }
    } catch (err) {
      logger.error({ err }, 'stale deployment sweep failed');
    }
  }, opts.staleSweepIntervalMs ?? 60_000);
  sweep.unref();
  backups?.start();
  notifier.start();
  const stopRenewal = startRegistryRenewal({ stores, hub, logger });

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      clearInterval(sweep);
      stopRenewal();
      await backups?.stop();
      await notifier.stop();
      await hub.close();
      await serving.close();
      stores.db.close();
      logger.info('control plane stopped');
    })());

  return { url, adminToken, timeouts: serving.timeouts, close };
}

/** http(s)://HOST:PORT; with TLS the certificate's name (--domain) rather than the listen address. */
function defaultUrl(host: string, port: number, tls: TlsOptions | undefined): string {
  const name = tls?.kind === 'acme' ? tls.domain : host.includes(':') ? `[${host}]` : host;
  if (!tls) return `http://${name}:${port}`;
  return port === 443 ? `https://${name}` : `https://${name}:${port}`;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(listen.trim());
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new ConfigError(`invalid listen address "${listen}": expected HOST:PORT, e.g. 127.0.0.1:8080`);
  return { host: (m[1] ?? m[2])!, port };
}
