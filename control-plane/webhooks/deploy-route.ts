// The deploy webhook for CI pipelines, with the app's deploy token:
//   POST /hooks/APP/deploy[?wait=1&timeout=S]  — deploy a commit (or the branch head), optionally
//                                                 answering only when the deployment has ended
//   GET  /hooks/APP/deployments/ID[/events]    — status / live log of one of the app's deployments
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { deployWebhookBody, type DeploymentDetails, type WebhookResult } from '../../shared/api.js';
import type { DeployStatus } from '../../shared/deploy-status.js';
import { deploymentId } from '../../shared/protocol.js';
import { afterSeq } from '../api/deployments.js';
import { deploymentEventStream } from '../api/sse.js';
import { triggerDeploy, waitForEnd, type Triggered } from '../deploys.js';
import type { AppRow } from '../store/apps.js';
import { deploymentInfo, type DeploymentRow } from '../store/deployments.js';
import { deployedResult, HOOKS_PREFIX, MAX_DEPLOY_BODY_BYTES, type HookContext } from './hook-context.js';

export const DEFAULT_WAIT_S = 20 * 60;
export const MAX_WAIT_S = 60 * 60;

/** The HTTP status a `?wait=1` deploy webhook answers with, by how the deployment ended. */
export function waitStatus(status: DeployStatus): 200 | 409 | 422 | 504 {
  if (status === 'done') return 200;
  if (status === 'failed') return 422;
  if (status === 'superseded' || status === 'cancelled') return 409;
  return 504;
}

const flag = z.enum(['', '0', '1', 'true', 'false'], { message: 'must be 1 or 0' }).transform((v) => v === '' || v === '1' || v === 'true');
const waitSeconds = z
  .string()
  .regex(/^\d{1,5}$/, 'must be a whole number of seconds')
  .transform(Number)
  .pipe(z.number().int().min(1, 'must be at least 1 second').max(MAX_WAIT_S, `must be at most ${MAX_WAIT_S} seconds`));

type DeployRequest = z.infer<typeof deployWebhookBody>;

export function registerDeployRoutes(app: Hono, hc: HookContext): void {
  const { stores } = hc.deps;
  app.post(`${HOOKS_PREFIX}:app/deploy`, async (c) => {
    const found = hc.authorize(c);
    if (found instanceof Response) return found;
    // Authenticated: this read does not take an unauthenticated slot.
    const raw = await hc.read(c, MAX_DEPLOY_BODY_BYTES);
    if (raw instanceof Response) return raw;
    // The app may have been deleted while the body arrived: its token went with it.
    const target = stores.apps.get(found.name);
    if (!target) return hc.fail(c, 401, 'deploy token is invalid', { app: found.name });
    const request = deployRequest(hc, c, raw);
    if (request instanceof Response) return request;
    const wait = waitQuery(hc, c);
    if (wait instanceof Response) return wait;
    return orderDeploy(hc, c, target, request, wait);
  });

  app.get(`${HOOKS_PREFIX}:app/deployments/:id`, (c) => {
    const row = deploymentOfApp(hc, c);
    if (row instanceof Response) return row;
    const body: DeploymentDetails = { ...deploymentInfo(row), phases: stores.deployments.phases(row.id) };
    return c.json(body);
  });

  app.get(`${HOOKS_PREFIX}:app/deployments/:id/events`, (c) => {
    const row = deploymentOfApp(hc, c);
    if (row instanceof Response) return row;
    const rawAfter = c.req.query('after') ?? c.req.header('last-event-id');
    const after = rawAfter === undefined ? { success: true as const, data: -1 } : afterSeq.safeParse(rawAfter);
    if (!after.success) return hc.fail(c, 400, 'invalid after: must be an integer of -1 or more');
    return deploymentEventStream(c, hc.deps, row.id, after.data);
  });
}

/** The request body: empty, or a JSON object with only `commit` and `branch`; else the error response. */
function deployRequest(hc: HookContext, c: Context, raw: Buffer): DeployRequest | Response {
  let data: unknown = {};
  const text = raw.toString('utf8');
  if (text.trim() !== '') {
    try {
      data = JSON.parse(text);
    } catch {
      return hc.fail(c, 400, 'request body is not valid JSON (send {"commit": "SHA", "branch": "NAME"}, both optional)');
    }
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return hc.fail(c, 400, 'request body must be a JSON object');
  const parsed = deployWebhookBody.safeParse(data);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.code === 'unrecognized_keys' ? `field ${issue.keys.map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}` : String(issue?.path[0] ?? 'body');
  return hc.fail(c, 400, `invalid ${field}: ${issue?.code === 'unrecognized_keys' ? 'only "commit" and "branch" are accepted' : (issue?.message ?? 'invalid value')}`);
}

/** `?wait=` and `?timeout=`: whether to answer only once the deployment ended, and for how long at most. */
function waitQuery(hc: HookContext, c: Context): { wait: boolean; timeoutS: number } | Response {
  const q = <T>(name: string, schema: z.ZodType<T>, fallback: T) => {
    const v = c.req.query(name);
    if (v === undefined) return { ok: true as const, value: fallback };
    const r = schema.safeParse(v);
    return r.success ? { ok: true as const, value: r.data } : { ok: false as const, error: `invalid ${name}: ${r.error.issues[0]?.message ?? 'invalid value'}` };
  };
  const wait = q('wait', flag, false);
  const timeout = q('timeout', waitSeconds, DEFAULT_WAIT_S);
  if (!wait.ok) return hc.fail(c, 400, wait.error);
  if (!timeout.ok) return hc.fail(c, 400, timeout.error);
  return { wait: wait.value, timeoutS: timeout.value };
}

async function orderDeploy(hc: HookContext, c: Context, target: AppRow, { commit, branch }: DeployRequest, opts: { wait: boolean; timeoutS: number }): Promise<Response> {
  if (branch !== undefined && branch !== target.branch) {
    const res: WebhookResult = { deployed: false, message: `branch ${branch} is not the app's branch (${target.branch}): nothing deployed` };
    hc.log.info({ app: target.name, branch }, 'deploy webhook for another branch; nothing to deploy');
    return c.json(res, 200);
  }
  const t = triggerDeploy(hc.deps, target, { commit: commit ?? null, trigger: 'webhook' });
  const base = `${hc.deps.url()}${HOOKS_PREFIX}${target.name}/deployments/${t.row.id}`;
  const result = deployedResult(t, {
    message: commit ? `deploying commit ${commit}` : `deploying the head of ${target.branch}`,
    statusUrl: base,
    eventsUrl: `${base}/events`,
  });
  if (!opts.wait) return c.json(result, 202);
  return waitAndAnswer(hc, c, t, result, base, opts.timeoutS);
}

/** `?wait=1`: the answer once the deployment has ended (or when `timeoutS` passed, or the caller left). */
async function waitAndAnswer(hc: HookContext, c: Context, t: Triggered, result: WebhookResult, base: string, timeoutS: number): Promise<Response> {
  const final = await waitForEnd(hc.deps, t.row.id, timeoutS * 1000, c.req.raw.signal);
  const status = waitStatus(final?.status ?? 'cancelled');
  const outcome =
    status === 200
      ? `deployment ${t.row.id} is live`
      : status === 504
        ? `deployment ${t.row.id} has not finished within ${timeoutS} s (it is ${final?.status}); keep polling ${base}`
        : `deployment ${t.row.id} ${final?.status ?? 'vanished'}${final?.reason ? `: ${final.reason}` : ''}`;
  const res: WebhookResult = { ...result, message: outcome, ...(final ? { deployment: final } : {}) };
  return c.json(res, status);
}

/** The :id deployment of the :app in the path, for a caller holding the app's deploy token; else the error response. */
function deploymentOfApp(hc: HookContext, c: Context): DeploymentRow | Response {
  const target = hc.authorize(c);
  if (target instanceof Response) return target;
  const id = deploymentId.safeParse(c.req.param('id'));
  const row = id.success ? hc.deps.stores.deployments.get(id.data) : undefined;
  if (!row || row.app !== target.name) return hc.fail(c, 404, `app ${target.name} has no deployment "${String(c.req.param('id')).slice(0, 60)}"`);
  return row;
}
