// POST /hooks/APP/push — Git host push webhooks, signed with the app's push secret. The steps, in
// order: read the body and verify its signature (known app or not, the same steps), parse the push
// and pick the commit of the app's branch, refuse a redelivery, skip a replayed or unwatched push,
// order the deploy.
import type { Context, Hono } from 'hono';
import type { WebhookResult } from '../../shared/api.js';
import { triggerDeploy } from '../deploys.js';
import type { AppRow } from '../store/apps.js';
import { deploymentInfo } from '../store/deployments.js';
import { deployedResult, headersOf, HOOKS_PREFIX, MAX_PUSH_BODY_BYTES, type HookContext } from './hook-context.js';
import { decide, deliveryId, detectHost, HOST_LABEL, parsePush, verifySignature, type GitHost, type Headers } from './hosts.js';
import { replayVerdict } from './replay.js';
import { changedFiles, watchVerdict } from './watch.js';

/** A push whose signature matched the app's push secret. */
interface SignedPush {
  target: AppRow;
  host: GitHost;
  h: Headers;
  body: Buffer;
}

/** What the push asks to deploy: a pinned commit (null: the branch head) and the line that says so. */
interface Pushed {
  commit: string | null;
  note: string;
}

export function registerPushRoute(app: Hono, hc: HookContext): void {
  app.post(`${HOOKS_PREFIX}:app/push`, async (c) => {
    const push = await verifiedPush(hc, c);
    if (push instanceof Response) return push;
    // Authenticated from here on.
    const pushed = pushedCommit(hc, c, push);
    if (pushed instanceof Response) return pushed;
    const delivery = deliveryId(push.host, push.h, push.body);
    if (!delivery.ok) return hc.fail(c, 400, delivery.error, { app: push.target.name, host: push.host });

    // No await from here on: the duplicate check and the deployment's creation cannot interleave
    // with a concurrent redelivery.
    const seen = redelivered(hc, c, push, delivery.id);
    if (seen) return seen;
    const note = skippedOrNote(hc, c, push, delivery.id, pushed);
    if (note instanceof Response) return note;
    return orderDeploy(hc, c, push, delivery.id, { commit: pushed.commit, note });
  });

  app.on(['GET', 'HEAD'], `${HOOKS_PREFIX}:app/push`, (c) =>
    c.json({ error: `this is berth's push webhook for an app: Git hosts POST here (see berth app show)` }, 405, { Allow: 'POST' }),
  );
}

/** Read the body and check its signature; an unknown app answers exactly what a wrong signature answers. */
async function verifiedPush(hc: HookContext, c: Context): Promise<SignedPush | Response> {
  const name = hc.nameIn(c);
  if (name instanceof Response) return name;
  // Known app or not, the same steps in the same order: the answer never tells whether it exists.
  const body = await hc.readUnauthenticated(c, MAX_PUSH_BODY_BYTES);
  if (body instanceof Response) return body;
  const { stores } = hc.deps;
  const target = stores.apps.get(name);
  const h = headersOf(c);
  const host = detectHost(h);
  if (!host) {
    return hc.fail(c, 400, 'not a push webhook berth knows: expected the headers GitHub, GitLab, Gitea/Forgejo or Bitbucket Cloud send (X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event, X-Event-Key)', { app: name });
  }
  const verdict = verifySignature(host, h, body, target ? stores.webhooks.secrets(target.name).push : hc.unknownAppSecret);
  if (!verdict.ok) return hc.fail(c, verdict.status, verdict.error, { app: name, host });
  if (!target) return hc.fail(c, 401, 'push webhook refused', { app: name, host }); // unreachable: nobody has unknownAppSecret
  return { target, host, h, body };
}

/** The commit pushed to the app's branch; else the answer (nothing to deploy, or a bad payload). */
function pushedCommit(hc: HookContext, c: Context, { target, host, h, body }: SignedPush): Pushed | Response {
  const event = parsePush(host, h, body);
  if (event.kind === 'bad') return hc.fail(c, 400, event.error, { app: target.name, host });
  const ack = (message: string) => {
    hc.log.info({ app: target.name, host, message }, 'webhook acknowledged, nothing to deploy');
    const res: WebhookResult = { deployed: false, message, host };
    return c.json(res, 200);
  };
  if (event.kind === 'ignore') return ack(event.reason);
  const decision = decide(event.updates, target.branch);
  if (!decision.deploy) return ack(decision.reason);
  const commit = decision.commit;
  if (/^[0-9a-f]{40}$/.test(commit)) return { commit, note: `deploying commit ${commit.slice(0, 12)} pushed to ${target.branch}` };
  // SHA-256 repositories: the pushed id cannot be pinned (yet); the branch head is what was pushed.
  if (!/^[0-9a-f]{64}$/.test(commit)) return hc.fail(c, 400, `invalid commit id in the ${HOST_LABEL[host]} payload: expected 40 hex digits`, { app: target.name, host });
  return { commit: null, note: `deploying the head of ${target.branch} (commit ids of SHA-256 repositories are not pinned)` };
}

/** The answer to a delivery id handled before (a Git host's retry); null for a new delivery. */
function redelivered(hc: HookContext, c: Context, { target, host }: SignedPush, delivery: string): Response | null {
  const { stores } = hc.deps;
  const seen = stores.webhooks.delivery(target.name, delivery);
  if (!seen) return null;
  const earlier = seen.deployment_id ? stores.deployments.get(seen.deployment_id) : undefined;
  hc.log.info({ app: target.name, host, delivery, deploymentId: seen.deployment_id }, 'webhook redelivered; not deploying again');
  const res: WebhookResult = {
    deployed: false,
    duplicate: true,
    message: `delivery ${delivery} was already handled${seen.deployment_id ? ` (deployment ${seen.deployment_id})` : ''}: not deploying again`,
    host,
    ...(earlier ? { deployment: deploymentInfo(earlier) } : {}),
  };
  return c.json(res, 200);
}

/** The answer for a replayed push or one that touched no watched path; else the deploy's note. */
function skippedOrNote(hc: HookContext, c: Context, { target, host, h, body }: SignedPush, delivery: string, pushed: Pushed): Response | string {
  const { stores } = hc.deps;
  const replay = replayVerdict(stores, target.name, pushed.commit, body);
  if (replay.skip) {
    hc.log.info({ app: target.name, host, delivery, reason: replay.reason, deploymentId: replay.earlier?.id }, 'push webhook replayed or old; not deploying');
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
    hc.log.info({ app: target.name, host, delivery, reason: 'no_watched_change' }, 'push webhook touched no watched path; not deploying');
    const res: WebhookResult = { deployed: false, skipped: true, reason: 'no_watched_change', message: watched.message, host };
    return c.json(res, 200);
  }
  return watched.note ? `${pushed.note} (${watched.note})` : pushed.note;
}

/** Create the deployment and remember the delivery in one transaction. */
function orderDeploy(hc: HookContext, c: Context, { target, host, body }: SignedPush, delivery: string, pushed: Pushed): Response {
  const { deps } = hc;
  const t = triggerDeploy(deps, target, {
    commit: pushed.commit,
    trigger: 'push',
    inTransaction: (row) => deps.stores.webhooks.remember({ app: target.name, delivery, host, deploymentId: row.id, body }),
  });
  hc.log.info({ app: target.name, host, delivery, deploymentId: t.row.id, commit: pushed.commit }, 'push webhook: deploying');
  return c.json(deployedResult(t, { message: pushed.note, host, statusUrl: `${deps.url()}/api/deployments/${t.row.id}` }), 202);
}
