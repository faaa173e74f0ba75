// The webhook endpoints, outside /api (they do not take the admin token):
//   POST /hooks/APP/push     — Git host push webhooks, signed with the app's push secret (push-route.ts)
//   POST /hooks/APP/deploy   — the deploy webhook for CI pipelines, with the app's deploy token (deploy-route.ts)
//   GET  /hooks/APP/deployments/ID[/events] — status / live log of a deployment, with the deploy token
// Every rejection is a 4xx with a one-line `{error}` and creates nothing.
import type { Hono } from 'hono';
import type { ApiDeps } from '../api/deps.js';
import { registerDeployRoutes } from './deploy-route.js';
import { HookContext, HOOKS_PREFIX } from './hook-context.js';
import { registerPushRoute } from './push-route.js';

export { DEFAULT_WAIT_S, MAX_WAIT_S, waitStatus } from './deploy-route.js';
export { BUSY_RETRY_AFTER_S, HOOKS_PREFIX, MAX_DEPLOY_BODY_BYTES, MAX_PUSH_BODY_BYTES, MAX_UNAUTHENTICATED_READS } from './hook-context.js';

export function webhookUrls(base: string, app: string): { push: string; deploy: string } {
  return { push: `${base}${HOOKS_PREFIX}${app}/push`, deploy: `${base}${HOOKS_PREFIX}${app}/deploy` };
}

export function registerWebhookRoutes(app: Hono, deps: ApiDeps): void {
  const hc = new HookContext(deps);
  registerPushRoute(app, hc);
  registerDeployRoutes(app, hc);
}
