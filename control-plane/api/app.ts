// The HTTP API as one Hono app: size limit, admin auth on /api/*, the route modules, and a single
// error handler so every failure is `{error: "one line"}` with the right status.
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import type { ApiError } from '../../shared/api.js';
import { ValidationError } from '../../shared/validation.js';
import { BERTH_VERSION } from '../../shared/version.js';
import { ControlPlaneError } from '../errors.js';
import { registerAppRoutes } from './apps.js';
import { adminAuth } from './auth.js';
import type { ApiDeps } from './deps.js';
import { registerDeploymentRoutes } from './deployments.js';
import { registerEnvRoutes } from './env.js';
import { HOOKS_PREFIX, registerWebhookRoutes } from '../webhooks/routes.js';
import { registerServerRoutes } from './servers.js';
import { registerInstallRoutes } from './install.js';
import { registerLogRoutes } from './logs.js';
import { registerCronRoutes } from './cron.js';
import { registerControlPlaneRoutes } from './control-plane.js';
import { registerNotifyRoutes } from './notify.js';
import { registerScaleRoutes } from './scale.js';
import { registerDashboard } from '../dashboard/index.js';
import { registerClusterRoutes } from '../clusters/routes.js';
import { registerClusterRegistryRoutes } from '../clusters/registry-routes.js';

export const MAX_BODY_BYTES = 1024 * 1024;

export function createApi(deps: ApiDeps): Hono {
  const app = new Hono();
  const log = deps.logger.child({ component: 'api' });
  const fail = (message: string): ApiError => ({ error: message });

  const apiBodyLimit = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    // The unread rest of the body makes the connection unusable: tell the client not to reuse it.
    onError: (c) => c.json(fail('request body is larger than 1 MB'), 413, { Connection: 'close' }),
  });
  // Webhooks read their raw body themselves (signatures are over the exact bytes) with their own limit.
  app.use('*', (c, next) => (c.req.path.startsWith(HOOKS_PREFIX) ? next() : apiBodyLimit(c, next)));
  app.get('/healthz', (c) => c.json({ ok: true, version: BERTH_VERSION }));
  app.use('/api/*', adminAuth(deps.adminToken));

  registerClusterRoutes(app, deps); // first: it guards DELETE /api/servers/:name
  registerClusterRegistryRoutes(app, deps);
  registerServerRoutes(app, deps);
  registerAppRoutes(app, deps);
  registerScaleRoutes(app, deps);
  registerDeploymentRoutes(app, deps);
  registerEnvRoutes(app, deps);
  registerWebhookRoutes(app, deps);
  registerInstallRoutes(app, deps);
  registerLogRoutes(app, deps);
  registerCronRoutes(app, deps);
  registerControlPlaneRoutes(app, deps);
  registerNotifyRoutes(app, deps);
  registerDashboard(app, deps);

  app.notFound((c) => c.json(fail(`no such route: ${c.req.method} ${c.req.path}`), 404));
  app.onError((err, c) => {
    if (err instanceof ControlPlaneError) {
      if (err.status === 401) c.header('WWW-Authenticate', 'Bearer');
      return c.json(fail(err.message), err.status);
    }
    if (err instanceof ValidationError) return c.json(fail(err.message), 400);
    if (err instanceof HTTPException && err.status < 500) return c.json(fail(err.message || 'bad request'), err.status);
    log.error({ err, method: c.req.method, path: c.req.path }, 'request failed');
    return c.json(fail('internal error'), 500);
  });
  return app;
}
