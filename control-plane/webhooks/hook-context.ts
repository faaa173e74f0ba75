// What every webhook route shares: the rate-limited rejection log, one-line error answers, bounded
// body reads (with a cap on unauthenticated ones), and the deploy-token check. An unknown app goes
// through exactly the same steps as a known one, so no answer tells whether an app exists.
import type { Context } from 'hono';
import type { WebhookResult } from '../../shared/api.js';
import { newSecret, secretEquals } from '../../shared/ids.js';
import type { Logger } from '../../shared/logger.js';
import { appName } from '../../shared/validation.js';
import type { ApiDeps } from '../api/deps.js';
import { bearerToken } from '../bearer.js';
import type { Triggered } from '../deploys.js';
import type { AppRow } from '../store/apps.js';
import { deploymentInfo } from '../store/deployments.js';
import { HookError, readRawBody, ReadSlots } from './body.js';
import type { Headers } from './hosts.js';

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

export type FailStatus = 400 | 401 | 404 | 413 | 503;

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

/** Header lookup of a request, by lower-case name. */
export const headersOf =
  (c: Context): Headers =>
  (name) =>
    c.req.header(name);

export class HookContext {
  readonly log: Logger;
  private readonly rejects: RejectLog;
  /**
   * An app that does not exist is checked against this secret, which nobody has: its webhooks answer
   * exactly what a wrong signature or token answers, so they cannot be used to find out app names.
   */
  readonly unknownAppSecret = newSecret();
  private readonly unauthenticatedReads = new ReadSlots(MAX_UNAUTHENTICATED_READS);

  constructor(readonly deps: ApiDeps) {
    this.log = deps.logger.child({ component: 'webhooks' });
    this.rejects = new RejectLog(this.log);
  }

  /** A one-line `{error}` rejection (logged, rate-limited; a 404 is not worth a log line). */
  fail(c: Context, status: FailStatus, error: string, extra: Record<string, unknown> = {}): Response {
    if (status !== 404) this.rejects.note({ path: c.req.path, status, error, ...extra }, 'webhook rejected');
    if (status === 401) c.header('WWW-Authenticate', 'Bearer');
    return c.json({ error }, status);
  }

  /** The app name in the path, or the error response for a name no app can have (which reveals nothing). */
  nameIn(c: Context): string | Response {
    const name = c.req.param('app');
    return appName.safeParse(name).success ? name! : this.fail(c, 404, `no webhook here: "${String(name).slice(0, 60)}" is not a valid app name`);
  }

  /** The raw body, at most `limit` bytes; else the error response. */
  async read(c: Context, limit: number): Promise<Buffer | Response> {
    try {
      return await readRawBody(c, limit, this.log);
    } catch (err) {
      if (!(err instanceof HookError)) throw err;
      // The unread rest of a body makes the connection unusable.
      if (err.closeConnection) c.header('Connection', 'close');
      return this.fail(c, err.status as 400 | 413, err.message);
    }
  }

  /** A bounded body from a sender not yet authenticated; turned away unread when too many are being read. */
  async readUnauthenticated(c: Context, limit: number): Promise<Buffer | Response> {
    const release = this.unauthenticatedReads.acquire();
    if (!release) {
      // Nothing of the body is read: the connection cannot be reused.
      c.header('Retry-After', String(BUSY_RETRY_AFTER_S));
      c.header('Connection', 'close');
      return this.fail(c, 503, `too many webhook requests are being received at once: retry in ${BUSY_RETRY_AFTER_S} seconds`);
    }
    try {
      return await this.read(c, limit);
    } finally {
      release();
    }
  }

  /**
   * The app in the path, for a caller holding its deploy token (`Authorization: Bearer`, or `?token=`
   * for tools that can only call a URL); else the error response — the same for an unknown app.
   */
  authorize(c: Context): AppRow | Response {
    const name = this.nameIn(c);
    if (name instanceof Response) return name;
    const { stores } = this.deps;
    const target = stores.apps.get(name);
    const token = bearerToken(c.req.header('authorization')) ?? c.req.query('token');
    if (!token) return this.fail(c, 401, "missing deploy token: send Authorization: Bearer <the app's deploy token> (berth app show)", { app: name });
    const expected = target ? stores.webhooks.secrets(target.name).deploy : this.unknownAppSecret;
    if (token.length > 1024 || !secretEquals(token, expected) || !target) return this.fail(c, 401, 'deploy token is invalid', { app: name });
    return target;
  }
}

/** The answer to a webhook that ordered a deploy. */
export function deployedResult(t: Triggered, extra: { message: string; host?: string; statusUrl: string; eventsUrl?: string }): WebhookResult {
  return {
    deployed: true,
    message: t.agentConnected ? extra.message : `${extra.message}; the app's server is offline: the deploy is queued and runs when its agent reconnects`,
    ...(extra.host ? { host: extra.host } : {}),
    deployment: deploymentInfo(t.row),
    agentConnected: t.agentConnected,
    statusUrl: extra.statusUrl,
    ...(extra.eventsUrl ? { eventsUrl: extra.eventsUrl } : {}),
  };
}
