// The webhook endpoints, outside /api (they do not take the admin token):
//   POST /hooks/APP/push     — Git host push webhooks, signed with the app's push secret
//   POST /hooks/APP/deploy   — the deploy webhook for CI pipelines, with the app's deploy token
//   GET  /hooks/APP/deployments/ID[/events] — status / live log of a deployment, with the deploy token
// Every rejection is a 4xx with a one-line `{error}` and creates nothing.
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { deployWebhookBody, type DeploymentDetails, type WebhookResult } from '../../shared/api.js';
import type { DeployStatus } from '../../shared/deploy-status.js';
import { newSecret, secretEquals } from '../../shared/ids.js';
import type { Logger } from '../../shared/logger.js';
import { deploymentId } from '../../shared/protocol.js';
import { appName } from '../../shared/validation.js';
import type { ApiDeps } from '../api/deps.js';
import { deploymentEventStream } from '../api/sse.js';
import { afterSeq } from '../api/deployments.js';
import { bearerToken } from '../bearer.js';
import { triggerDeploy, waitForEnd, type Triggered } from '../deploys.js';
import type { AppRow } from '../store/apps.js';
import { deploymentInfo, type DeploymentRow } from '../store/deployments.js';
import { HookError, readRawBody, ReadSlots } from './body.js';
import { replayVerdict } from './replay.js';
import { decide, deliveryId, detectHost, HOST_LABEL, parsePush, verifySignature, type Headers } from './hosts.js';
import { changedFiles, watchVerdict } from './watch.js';

export const HOOKS_PREFIX = '/hooks/';
/**
 * Push payloads carry commit lists (GitHub: at most 20 commits, Bitbucket a few per change), so real
 * pushes are a few KB to a few hundred KB; anything larger is read unauthenticated for nothing.
 */
export const MAX_PUSH_BODY_BYTES = 1024 * 1024;
/** Push bodies read at once across all apps, before their signature can be checked. */
export const MAX_UNAUTHENTICATED_READS = 32;
/** What a request beyond MAX_UNAUTHENTICATED_READS is told (Retry-After, seconds): hosts retry failed deliveries. */
export const BUSY_RETRY_AFTER_S = 5;
export const MAX_DEPLOY_BODY_BYTES = 64 * 1024;
export const DEFAULT_WAIT_S = 20 * 60;
export const MAX_WAIT_S = 60 * 60;

export function webhookUrls(base: string, app: string): { push: string; deploy: string } {
  return { push: `${base}${HOOKS_PREFIX}${app}/push`, deploy: `${base}${HOOKS_PREFIX}${app}/deploy` };
}

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

/** Rejections are logged, but at most a few a minute: a flood of bad requests must not flood the log. */
class RejectLog {
  private windowStart = 0;
  private logged = 0;
  private suppressed = 0;
  constructor(private readonly log: Logger) {}
  note(fields: Record<string, unknown>, msg: string): void {
    const t = Date.now();
    if (t - this.windowStart > 60_000) {
      if (this.suppressed > 0) this.log.warn({ suppressed: this.suppressed }, 'more webhook requests were rejected (not logged)');
      this.windowStart = t;
      this.logged = 0;
      this.suppressed = 0;
    }
    if (this.logged++ < 10) this.log.warn(fields, msg);
    else this.suppressed++;
  }
}

export function registerWebhookRoutes(app: Hono, deps: ApiDeps): void {
  const { stores } = deps;
  const log = deps.logger.child({ component: 'webhooks' });
  const rejects = new RejectLog(log);

  const fail = (c: Context, status: 400 | 401 | 404 | 413 | 503, error: string, extra: Record<string, unknown> = {}) => {
    if (status !== 404) rejects.note({ path: c.req.path, status, error, ...extra }, 'webhook rejected');
    if (status === 401) c.header('WWW-Authenticate', 'Bearer');
    return c.json({ error }, status);
  };
  const bodyFailed = (c: Context, err: HookError) => {
    // The unread rest of a body makes the connection unusable.
    if (err.closeConnection) c.header('Connection', 'close');
    return fail(c, err.status as 400 | 413, err.message);
  };
  /**
   * An app that does not exist is checked against this secret, which nobody has: its webhooks answer
   * exactly what a wrong signature or token answers, so they cannot be used to find out app names.
   */
  const unknownAppSecret = newSecret();
  const unauthenticatedReads = new ReadSlots(MAX_UNAUTHENTICATED_READS);
  /** The app name in the path, or the error response for a name no app can have (which reveals nothing). */
  const nameIn = (c: Context): string | Response => {
    const name = c.req.param('app');
    return appName.safeParse(name).success ? name! : fail(c, 404, `no webhook here: "${String(name).slice(0, 60)}" is not a valid app name`);
  };
  const read = async (c: Context, limit: number): Promise<Buffer | Response> => {
    try {
      return await readRawBody(c, limit);
    } catch (err) {
      if (err instanceof HookError) return bodyFailed(c, err);
      throw err;
    }
  };
  /** A bounded body from a sender not yet authenticated; turned away unread when too many are being read. */
  const readUnauthenticated = async (c: Context, limit: number): Promise<Buffer | Response> => {
    const release = unauthenticatedReads.acquire();
    if (!release) {
      // Nothing of the body is read: the connection cannot be reused.
      c.header('Retry-After', String(BUSY_RETRY_AFTER_S));
      c.header('Connection', 'close');
      return fail(c, 503, `too many webhook requests are being received at once: retry in ${BUSY_RETRY_AFTER_S} seconds`);
    }
    try {
      return await read(c, limit);
    } finally {
      release();
    }
  };
  const headers = (c: Context): Headers => (name) => c.req.header(name);

  const respond = (t: Triggered, extra: { message: string; host?: string; statusUrl: string; eventsUrl?: string }): WebhookResult => ({
    deployed: true,
    message: t.agentConnected ? extra.message : `${extra.message}; the app's server is offline: the deploy is queued and runs when its agent reconnects`,
    ...(extra.host ? { host: extra.host } : {}),
    deployment: deploymentInfo(t.row),
    agentConnected: t.agentConnected,
    statusUrl: extra.statusUrl,
    ...(extra.eventsUrl ? { eventsUrl: extra.eventsUrl } : {}),
  });

  // ---- push webhooks ------------------------------------------------------------------------
  app.post(`${HOOKS_PREFIX}:app/push`, async (c) => {
    const name = nameIn(c);
    if (name instanceof Response) return name;
    // Known app or not, the same steps in the same order: the answer never tells whether it exists.
    const body = await readUnauthenticated(c, MAX_PUSH_BODY_BYTES);
    if (body instanceof Response) return body;
    const target = stores.apps.get(name);
    const h = headers(c);
    const host = detectHost(h);
    if (!host) {
      return fail(c, 400, 'not a push webhook berth knows: expected the headers GitHub, GitLab, Gitea/Forgejo or Bitbucket Cloud send (X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event, X-Event-Key)', { app: name });
    }
    const verdict = verifySignature(host, h, body, target ? stores.webhooks.secrets(target.name).push : unknownAppSecret);
    if (!verdict.ok) return fail(c, verdict.status, verdict.error, { app: name, host });
    if (!target) return fail(c, 401, 'push webhook refused', { app: name, host }); // unreachable: nobody has unknownAppSecret

    // Authenticated from here on.
    const event = parsePush(host, h, body);
    if (event.kind === 'bad') return fail(c, 400, event.error, { app: target.name, host });
    const ack = (message: string) => {
      log.info({ app: target.name, host, message }, 'webhook acknowledged, nothing to deploy');
      const res: WebhookResult = { deployed: false, message, host };
      return c.json(res, 200);
    };
    if (event.kind === 'ignore') return ack(event.reason);
    const decision = decide(event.updates, target.branch);
    if (!decision.deploy) return ack(decision.reason);
    let commit: string | null = decision.commit;
    let note = `deploying commit ${commit.slice(0, 12)} pushed to ${target.branch}`;
    if (!/^[0-9a-f]{40}$/.test(commit)) {
      // SHA-256 repositories: the pushed id cannot be pinned (yet); the branch head is what was pushed.
      if (!/^[0-9a-f]{64}$/.test(commit)) return fail(c, 400, `invalid commit id in the ${HOST_LABEL[host]} payload: expected 40 hex digits`, { app: target.name, host });
      note = `deploying the head of ${target.branch} (commit ids of SHA-256 repositories are not pinned)`;
      commit = null;
    }
    const delivery = deliveryId(host, h, body);
    if (!delivery.ok) return fail(c, 400, delivery.error, { app: target.name, host });

    // No await from here on: the duplicate check and the deployment's creation cannot interleave
    // with a concurrent redelivery.
    const seen = stores.webhooks.delivery(target.name, delivery.id);
    if (seen) {
      const earlier = seen.deployment_id ? stores.deployments.get(seen.deployment_id) : undefined;
      log.info({ app: target.name, host, delivery: delivery.id, deploymentId: seen.deployment_id }, 'webhook redelivered; not deploying again');
      const res: WebhookResult = {
        deployed: false,
        duplicate: true,
        message: `delivery ${delivery.id} was already handled${seen.deployment_id ? ` (deployment ${seen.deployment_id})` : ''}: not deploying again`,
        host,
        ...(earlier ? { deployment: deploymentInfo(earlier) } : {}),
      };
      return c.json(res, 200);
    }
    const replay = replayVerdict(stores, target.name, commit, body);
    if (replay.skip) {
      log.info({ app: target.name, host, delivery: delivery.id, reason: replay.reason, deploymentId: replay.earlier?.id }, 'push webhook replayed or old; not deploying');
      const res: WebhookResult = {
        deployed: false,
        skipped: true,
        reason: replay.reason,
        message: replay.message,
        host,
        ...(replay.earlier ? { deployment: deploymentInfo(replay.earlier) } : {}),
      };
      return c.json(res, 200);
    }
    const watched = watchVerdict(stores.apps.monorepo(target.name).watch, changedFiles(host, h, body));
    if (!watched.deploy) {
      log.info({ app: target.name, host, delivery: delivery.id, reason: 'no_watched_change' }, 'push webhook touched no watched path; not deploying');
      const res: WebhookResult = { deployed: false, skipped: true, reason: 'no_watched_change', message: watched.message, host };
      return c.json(res, 200);
    }
    if (watched.note) note = `${note} (${watched.note})`;
    const t = triggerDeploy(deps, target, {
      commit,
      trigger: 'push',
      inTransaction: (row) => stores.webhooks.remember({ app: target.name, delivery: delivery.id, host, deploymentId: row.id, body }),
    });
    log.info({ app: target.name, host, delivery: delivery.id, deploymentId: t.row.id, commit }, 'push webhook: deploying');
    return c.json(respond(t, { message: note, host, statusUrl: `${deps.url()}/api/deployments/${t.row.id}` }), 202);
  });

  app.on(['GET', 'HEAD'], `${HOOKS_PREFIX}:app/push`, (c) =>
    c.json({ error: `this is berth's push webhook for an app: Git hosts POST here (see berth app show)` }, 405, { Allow: 'POST' }),
  );

  // ---- deploy webhook (CI) ------------------------------------------------------------------
  /**
   * The app in the path, for a caller holding its deploy token (`Authorization: Bearer`, or `?token=`
   * for tools that can only call a URL); else the error response — the same for an unknown app.
   */
  const authorize = (c: Context): AppRow | Response => {
    const name = nameIn(c);
    if (name instanceof Response) return name;
    const target = stores.apps.get(name);
    const token = bearerToken(c.req.header('authorization')) ?? c.req.query('token');
    if (!token) return fail(c, 401, "missing deploy token: send Authorization: Bearer <the app's deploy token> (berth app show)", { app: name });
    const expected = target ? stores.webhooks.secrets(target.name).deploy : unknownAppSecret;
    if (token.length > 1024 || !secretEquals(token, expected) || !target) return fail(c, 401, 'deploy token is invalid', { app: name });
    return target;
  };

  app.post(`${HOOKS_PREFIX}:app/deploy`, async (c) => {
    const found = authorize(c);
    if (found instanceof Response) return found;
    // Authenticated: this read does not take an unauthenticated slot.
    const raw = await read(c, MAX_DEPLOY_BODY_BYTES);
    if (raw instanceof Response) return raw;
    // The app may have been deleted while the body arrived: its token went with it.
    const target = stores.apps.get(found.name);
    if (!target) return fail(c, 401, 'deploy token is invalid', { app: found.name });

    let data: unknown = {};
    const text = raw.toString('utf8');
    if (text.trim() !== '') {
      try {
        data = JSON.parse(text);
      } catch {
        return fail(c, 400, 'request body is not valid JSON (send {"commit": "SHA", "branch": "NAME"}, both optional)');
      }
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return fail(c, 400, 'request body must be a JSON object');
    const parsed = deployWebhookBody.safeParse(data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue?.code === 'unrecognized_keys' ? `field ${issue.keys.map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}` : String(issue?.path[0] ?? 'body');
      return fail(c, 400, `invalid ${field}: ${issue?.code === 'unrecognized_keys' ? 'only "commit" and "branch" are accepted' : (issue?.message ?? 'invalid value')}`);
    }
    const q = (name: string, schema: z.ZodType<unknown>, fallback: unknown) => {
      const v = c.req.query(name);
      if (v === undefined) return { ok: true as const, value: fallback };
      const r = schema.safeParse(v);
      return r.success ? { ok: true as const, value: r.data } : { ok: false as const, error: `invalid ${name}: ${r.error.issues[0]?.message ?? 'invalid value'}` };
    };
    const wait = q('wait', flag, false);
    const timeout = q('timeout', waitSeconds, DEFAULT_WAIT_S);
    if (!wait.ok) return fail(c, 400, wait.error);
    if (!timeout.ok) return fail(c, 400, timeout.error);

    const { commit, branch } = parsed.data;
    if (branch !== undefined && branch !== target.branch) {
      const res: WebhookResult = { deployed: false, message: `branch ${branch} is not the app's branch (${target.branch}): nothing deployed` };
      log.info({ app: target.name, branch }, 'deploy webhook for another branch; nothing to deploy');
      return c.json(res, 200);
    }
    const t = triggerDeploy(deps, target, { commit: commit ?? null, trigger: 'webhook' });
    const base = `${deps.url()}${HOOKS_PREFIX}${target.name}/deployments/${t.row.id}`;
    const result = respond(t, {
      message: commit ? `deploying commit ${commit}` : `deploying the head of ${target.branch}`,
      statusUrl: base,
      eventsUrl: `${base}/events`,
    });
    if (!wait.value) return c.json(result, 202);

    const final = await waitForEnd(deps, t.row.id, (timeout.value as number) * 1000, c.req.raw.signal);
    const status = waitStatus(final?.status ?? 'cancelled');
    const outcome =
      status === 200
        ? `deployment ${t.row.id} is live`
        : status === 504
          ? `deployment ${t.row.id} has not finished within ${timeout.value as number} s (it is ${final?.status}); keep polling ${base}`
          : `deployment ${t.row.id} ${final?.status ?? 'vanished'}${final?.reason ? `: ${final.reason}` : ''}`;
    const res: WebhookResult = { ...result, message: outcome, ...(final ? { deployment: final } : {}) };
    return c.json(res, status);
  });

  /** The :id deployment of the :app in the path, for a caller holding the app's deploy token; else the error response. */
  const deploymentOfApp = (c: Context): DeploymentRow | Response => {
    const target = authorize(c);
    if (target instanceof Response) return target;
    const id = deploymentId.safeParse(c.req.param('id'));
    const row = id.success ? stores.deployments.get(id.data) : undefined;
    if (!row || row.app !== target.name) return fail(c, 404, `app ${target.name} has no deployment "${String(c.req.param('id')).slice(0, 60)}"`);
    return row;
  };

  app.get(`${HOOKS_PREFIX}:app/deployments/:id`, (c) => {
    const row = deploymentOfApp(c);
    if (row instanceof Response) return row;
    const body: DeploymentDetails = { ...deploymentInfo(row), phases: stores.deployments.phases(row.id) };
    return c.json(body);
  });

  app.get(`${HOOKS_PREFIX}:app/deployments/:id/events`, (c) => {
    const row = deploymentOfApp(c);
    if (row instanceof Response) return row;
    const rawAfter = c.req.query('after') ?? c.req.header('last-event-id');
    const after = rawAfter === undefined ? { success: true as const, data: -1 } : afterSeq.safeParse(rawAfter);
    if (!after.success) return fail(c, 400, 'invalid after: must be an integer of -1 or more');
    return deploymentEventStream(c, deps, row.id, after.data);
  });
}
