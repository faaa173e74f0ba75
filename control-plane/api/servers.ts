// Servers: created by an admin with a one-time join token, enrolled by the agent that presents it.
import type { Hono } from 'hono';
import { createServerBody, joinBody, type JoinResult, type ServerCreated, type ServerInfo } from '../../shared/api.js';
import { newSecret, sha256 } from '../../shared/ids.js';
import { newCliSafeSecret } from '../tokens.js';
import { BadRequestError, UnauthorizedError } from '../errors.js';
import { serverInfo } from '../store/servers.js';
import type { ApiDeps } from './deps.js';
import { readJson } from './http.js';

export const JOIN_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

export function registerServerRoutes(app: Hono, deps: ApiDeps): void {
  const { stores, hub } = deps;
  const log = deps.logger.child({ component: 'api' });

  app.post('/api/servers', async (c) => {
    const { name } = await readJson(c, createServerBody, { name: 'server name' });
    const joinToken = newCliSafeSecret();
    stores.servers.create(name, sha256(joinToken), new Date(Date.now() + JOIN_TOKEN_TTL_MS).toISOString());
    log.info({ server: name }, 'server created');
    const body: ServerCreated = { name, joinToken, installCommand: `berth agent join ${deps.url()} ${joinToken} --name ${name}` };
    return c.json(body, 201);
  });

  app.get('/api/servers', (c) => {
    const body: ServerInfo[] = stores.servers.list().map((s) => serverInfo(s, hub.isConnected(s.name)));
    return c.json(body);
  });

  app.post('/api/agent/join', async (c) => {
    const req = await readJson(c, joinBody, { token: 'join token', name: 'server name', hostname: 'hostname' });
    const server = stores.servers.findByJoinToken(sha256(req.token));
    if (!server) throw new UnauthorizedError('join token is invalid, expired or already used');
    if (req.name !== undefined && req.name !== server.name) {
      throw new BadRequestError(`join token is for server "${server.name}", not "${req.name}"`);
    }
    const credential = newSecret();
    stores.servers.completeJoin(server.name, sha256(credential), req.hostname ?? null);
    log.info({ server: server.name, hostname: req.hostname }, 'agent joined');
    const body: JoinResult = { server: server.name, credential, controlPlaneUrl: deps.url() };
    return c.json(body);
  });
}
