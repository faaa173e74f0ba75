// Deploys and their history. A deploy is recorded as `queued` and handed to the hub, which sends
// it now if the agent is connected or on the agent's next hello. A deployment's log and phase
// changes can be followed live as Server-Sent Events.
import type { Hono } from 'hono';
import { z } from 'zod';
import { deployBody, rollbackBody, type CancelResult, type DeploymentDetails, type DeploymentInfo, type DeploymentLogs } from '../../shared/api.js';
import { deploymentId } from '../../shared/protocol.js';
import { appName } from '../../shared/validation.js';
import { cancelDeployment, resolveRollbackTarget, triggerDeploy } from '../deploys.js';
import { deploymentInfo } from '../store/deployments.js';
import type { ApiDeps } from './deps.js';
import { answerPage, pageRequest, readJson, validParam } from './http.js';
import { deploymentEventStream } from './sse.js';

export const afterSeq = z
  .string()
  .regex(/^-?\d{1,15}$/, 'after must be an integer')
  .transform(Number)
  .pipe(z.number().min(-1, 'after must be -1 or more'));

export function registerDeploymentRoutes(app: Hono, deps: ApiDeps): void {
  const { stores } = deps;

  app.post('/api/apps/:name/deploy', async (c) => {
    const target = stores.apps.require(validParam(appName, c.req.param('name'), 'app name'));
    const { commit } = await readJson(c, deployBody, { commit: 'commit' }, { optional: true });
    const { row, agentConnected } = triggerDeploy(deps, target, { commit: commit ?? null, trigger: 'manual' });
    const body: DeploymentInfo & { agentConnected: boolean } = { ...deploymentInfo(row), agentConnected };
    return c.json(body, 201);
  });

  // A rollback is a deployment: queued, then starting → health_checking → switching → done, with
  // no fetching or building; it supersedes queued deploys like any newer trigger.
  app.post('/api/apps/:name/rollback', async (c) => {
    const target = stores.apps.require(validParam(appName, c.req.param('name'), 'app name'));
    const { deploymentId: requested } = await readJson(c, rollbackBody, { deploymentId: 'deployment id' }, { optional: true });
    const release = resolveRollbackTarget(stores, target.name, requested);
    // The commit goes along: an agent that predates rollbacks rebuilds that commit instead.
    const { row, agentConnected } = triggerDeploy(deps, target, { commit: release.commit, trigger: 'rollback', rollbackOf: release.id });
    const body: DeploymentInfo & { agentConnected: boolean } = { ...deploymentInfo(row), agentConnected };
    return c.json(body, 201);
  });

  app.post('/api/deployments/:id/cancel', async (c) => {
    const id = validParam(deploymentId, c.req.param('id'), 'deployment id');
    const { deployment, pending } = await cancelDeployment(deps, id);
    const body: CancelResult = { ...deployment, cancelPending: pending };
    return c.json(body, pending ? 202 : 200);
  });

  app.get('/api/apps/:name/deployments', (c) => {
    const target = stores.apps.require(validParam(appName, c.req.param('name'), 'app name'));
    // `?limit=N&cursor=ID` pages back in time (X-Next-Cursor names the next page; `before` is the old name of `cursor`).
    const page = pageRequest((q) => c.req.query(q), deploymentId, 'before');
    const rows = answerPage(c, page, (limit) => stores.deployments.listByApp(target.name, { ...(limit ? { limit } : {}), ...(page.cursor ? { before: page.cursor } : {}) }), (d) => d.id);
    const body: DeploymentInfo[] = rows.map(deploymentInfo);
    return c.json(body);
  });

  app.get('/api/deployments/:id', (c) => {
    const row = stores.deployments.require(validParam(deploymentId, c.req.param('id'), 'deployment id'));
    const body: DeploymentDetails = { ...deploymentInfo(row), phases: stores.deployments.phases(row.id) };
    return c.json(body);
  });

  app.get('/api/deployments/:id/logs', (c) => {
    const id = validParam(deploymentId, c.req.param('id'), 'deployment id');
    const rawAfter = c.req.query('after');
    const after = rawAfter === undefined ? -1 : validParam(afterSeq, rawAfter, 'after');
    const body: DeploymentLogs = stores.deployments.logs(id, after);
    return c.json(body);
  });

  app.get('/api/deployments/:id/events', (c) => {
    const row = stores.deployments.require(validParam(deploymentId, c.req.param('id'), 'deployment id'));
    const rawAfter = c.req.query('after') ?? c.req.header('last-event-id');
    const after = rawAfter === undefined ? -1 : validParam(afterSeq, rawAfter, 'after');
    return deploymentEventStream(c, deps, row.id, after);
  });
}
