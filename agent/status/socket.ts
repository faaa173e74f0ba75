// The agent's local API for `berth status`: HTTP over a Unix socket in the data dir, mode 0600, so
// only root (the agent's user) can read it. Nothing listens on the network.
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { Logger } from '../../shared/logger.js';
import type { StatusReport } from './report.js';

export const STATUS_SOCKET = 'agent.sock';

export function statusSocketPath(dataDir: string): string {
  return join(dataDir, STATUS_SOCKET);
}

export async function startStatusSocket(dataDir: string, report: () => Promise<StatusReport>, log: Logger): Promise<{ close(): Promise<void> }> {
  const path = statusSocketPath(dataDir);
  // A socket file left by a killed agent would make listen() fail with EADDRINUSE.
  rmSync(path, { force: true });
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/status') {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
      return;
    }
    report()
      .then((r) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(r)))
      .catch((err: Error) => {
        log.warn({ err }, 'status report failed');
        res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: err.message }));
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        rmSync(path, { force: true });
      }),
  };
}
