// `berth scale` (issue 16): PUT sets replicas per process, DELETE goes back to the repo's `scale:`.
// Either records the override and queues a deployment (trigger `scale`) that restarts the live
// release at those counts through the health gate and switch, without a rebuild.
import type { Hono } from 'hono';
import { z } from 'zod';
import { parseScaleBody, type ScaleResult } from '../../shared/api.js';
import type { ScaleOverride } from '../../shared/spec.js';
import { appName } from '../../shared/validation.js';
import { triggerScale } from '../deploys.js';
import { deploymentInfo } from '../store/deployments.js';
import type { ApiDeps } from './deps.js';
import { readJson, validParam } from './http.js';

/** Any JSON object: parseScaleBody says what is wrong with it, naming the process. */
const anyObject = z.record(z.string(), z.unknown());

export function registerScaleRoutes(app: Hono, deps: ApiDeps): void {
  const { stores, hub } = deps;
  const log = deps.logger.child({ component: 'api' });

  const scale = (name: string | undefined, change: ScaleOverride | 'reset'): ScaleResult => {
    const target = stores.apps.require(validParam(appName, name, 'app name'));
    const { row, agentConnected, override } = triggerScale(deps, target, change);
    log.info({ app: target.name, scale: override, deploymentId: row.id }, change === 'reset' ? 'scale reset' : 'scale set');
    hub.pushDesiredState(target.server);
    return { ...deploymentInfo(row), agentConnected, scale: { override } };
  };

  app.put('/api/apps/:name/scale', async (c) => {
    const name = c.req.param('name');
    stores.apps.require(validParam(appName, name, 'app name'));
    const change = parseScaleBody(await readJson(c, anyObject, {}));
    return c.json(scale(name, change), 201);
  });

  app.delete('/api/apps/:name/scale', (c) => c.json(scale(c.req.param('name'), 'reset'), 201));
}
