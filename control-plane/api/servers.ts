// Servers: created by an admin with a one-time join token, enrolled by the agent that presents it.
import type { Hono } from 'hono';
import { createServerBody, joinBody, updateServerBody, type JoinResult, type ServerCreated, type ServerInfo } from '../../shared/api.js';
import { serverName } from '../../shared/validation.js';
import { newSecret, sha256 } from '../../shared/ids.js';
import { newCliSafeSecret } from '../tokens.js';
import { BadRequestError, UnauthorizedError } from '../errors.js';
import { serverInfo, type ServerRow } from '../store/servers.js';
import type { ApiDeps } from './deps.js';
import { answerPage, pageRequest, readJson, validParam } from './http.js';

export const JOIN_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * The line to run on a new server. The token is a shell variable assignment handed to sudo through
 * its environment: it is on no process's command line (`ps`), neither sudo's, the installer's nor the
 * agent's. The URL is our public one: https:// whenever that is.
 */
export function installCommand(url: string, joinToken: string, name: string): string {
  return `curl -fsSL ${url}/install.sh | BERTH_JOIN_TOKEN=${joinToken} sudo --preserve-env=BERTH_JOIN_TOKEN sh -s -- --name ${name}`;
}

export function registerServerRoutes(app: Hono, deps: ApiDeps): void {
  const { stores, hub } = deps;
  const log = deps.logger.child({ component: 'api' });
  /** A server's row with what only its live connection knows. */
  const info = (row: ServerRow): ServerInfo => {
    const disk = hub.diskFree(row.name);
    return { ...serverInfo(row, hub.isConnected(row.name)), ...(disk ? { disk } : {}) };
  };

  app.post('/api/servers', async (c) => {
    const { name, baseDomain } = await readJson(c, createServerBody, { name: 'server name', baseDomain: 'base domain' });
    const joinToken = newCliSafeSecret();
    stores.servers.create(name, sha256(joinToken), new Date(Date.now() + JOIN_TOKEN_TTL_MS).toISOString());
    if (baseDomain) stores.apps.setBaseDomain(name, baseDomain);
    log.info({ server: name, baseDomain }, 'server created');
    const body: ServerCreated = { name, joinToken, installCommand: installCommand(deps.url(), joinToken, name) };
    return c.json(body, 201);
  });

  // `?limit=N&cursor=NAME` pages through them by name (X-Next-Cursor names the next page; `after` is the old name of `cursor`).
  app.get('/api/servers', (c) => {
    const page = pageRequest((q) => c.req.query(q), serverName, 'after');
    const rows = answerPage(c, page, (limit) => stores.servers.list({ ...(limit ? { limit } : {}), ...(page.cursor ? { after: page.cursor } : {}) }), (s) => s.name);
    const body: ServerInfo[] = rows.map(info);
    return c.json(body);
  });

  // Issue 5: the base domain (every app on the server also answers APP.BASE_DOMAIN).
  app.patch('/api/servers/:name', async (c) => {
    const name = validParam(serverName, c.req.param('name'), 'server name');
    const { baseDomain } = await readJson(c, updateServerBody, { baseDomain: 'base domain' });
    stores.apps.setBaseDomain(name, baseDomain);
    log.info({ server: name, baseDomain }, 'server base domain set');
    hub.pushDesiredState(name);
    const body: ServerInfo = info(stores.servers.require(name));
    return c.json(body);
  });

  // Issue 16: refused while apps live on it; its agent is disconnected and cannot come back.
  app.delete('/api/servers/:name', (c) => {
    const name = validParam(serverName, c.req.param('name'), 'server name');
    stores.servers.remove(name);
    hub.disconnect(name);
    log.info({ server: name }, 'server removed');
    return c.json({ deleted: name });
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
