// The control plane about itself: version, uptime and the scheduled backups' last result
// (`berth control-plane status`).
import type { Hono } from 'hono';
import { BERTH_VERSION } from '../../shared/version.js';
import type { BackupScheduleStatus } from '../backup/scheduler.js';
import { SCHEMA_VERSION } from '../store/db.js';
import type { ApiDeps } from './deps.js';

export interface ControlPlaneStatus {
  version: string;
  schemaVersion: number;
  startedAt: string;
  servers: number;
  connectedServers: number;
  apps: number;
  /** null when no --backup-schedule is set. */
  backup: BackupScheduleStatus | null;
}

export function registerControlPlaneRoutes(app: Hono, deps: ApiDeps): void {
  const startedAt = new Date().toISOString();
  app.get('/api/control-plane/status', (c) => {
    const servers = deps.stores.servers.list();
    const body: ControlPlaneStatus = {
      version: BERTH_VERSION,
      schemaVersion: SCHEMA_VERSION,
      startedAt,
      servers: servers.length,
      connectedServers: servers.filter((s) => deps.hub.isConnected(s.name)).length,
      apps: (deps.stores.db.prepare('SELECT count(*) AS n FROM apps').get() as { n: number }).n,
      backup: deps.backups?.status() ?? null,
    };
    return c.json(body);
  });
}
