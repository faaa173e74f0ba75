// Deploys and their history. A deploy is recorded as `queued` and handed to the hub, which sends
// it now if the agent is connected or on the agent's next hello.
import type { Hono } from 'hono';
import { z } from 'zod';
import { deployBody, type DeploymentInfo, type DeploymentLogs } from '../../shared/api.js';
import { deploymentId } from '../../shared/protocol.js';
import { appName } from '../../shared/validation.js';
import { deploymentInfo } from '../store/deployments.js';
import type { ApiDeps } from './deps.js';
import { readJson, validParam } from './http.js';

const afterSeq = z
  .string()
  .regex(/^\d{1,15}$/, 'after must be a non-negative integer')
  .transform(Number);

export function registerDeploymentRoutes(app: Hono, deps: ApiDeps): void {
  const { stores, hub } = deps;
  const log = deps.logger.child({ component: 'api' });

  app.post('/api/apps/:name/deploy', async (c) => {
    const target = stores.apps.require(validParam(appName, c.req.param('name'), 'app name'));
    const { commit } = await readJson(c, deployBody, { commit: 'commit' }, { optional: true });
    const row = stores.deployments.create({ app: target.name, server: target.server, commit: commit ?? null, trigger: 'manual' });
    const agentConnected = hub.sendDeploy(row);
    log.info({ app: row.app, deploymentId: row.id, agentConnected }, 'deployment queued');
    const body: DeploymentInfo & { agentConnected: boolean } = { ...deploymentInfo(row), agentConnected };
    return c.json(body, 201);
  });

  app.get('/api/apps/:name/deployments', (c) => {
    const target = stores.apps.require(validParam(appName, c.req.param('name'), 'app name'));
    const body: DeploymentInfo[] = stores.deployments.listByApp(target.name).map(deploymentInfo);
    return c.json(body);
  });

  app.get('/api/deployments/:id', (c) => {
    const body: DeploymentInfo = deploymentInfo(stores.deployments.require(validParam(deploymentId, c.req.param('id'), 'deployment id')));
    return c.json(body);
  });

  app.get('/api/deployments/:id/logs', (c) => {
    const id = validParam(deploymentId, c.req.param('id'), 'deployment id');
    const rawAfter = c.req.query('after');
    const after = rawAfter === undefined ? -1 : validParam(afterSeq, rawAfter, 'after');
    const body: DeploymentLogs = stores.deployments.logs(id, after);
    return c.json(body);
  });
}
