// Replay protection for push webhooks. A Git host's signature covers the body but not the delivery
// id, so a captured push can be re-sent with a fresh id: the delivery-id check alone would deploy its
// (possibly old, vulnerable) commit again. What the control plane can decide on its own, without a
// checkout, is decided here; whether a commit is an ancestor of the live one is checked by the agent
// (DeployOrder.skipIfAncestorOfLive).
import type { WebhookSkipReason } from '../../shared/api.js';
import type { DeploymentRow } from '../store/deployments.js';
import type { Stores } from '../store/index.js';

export type ReplayVerdict = { skip: false } | { skip: true; reason: WebhookSkipReason; message: string; earlier: DeploymentRow | undefined };

/**
 * Why this push must not deploy, if it must not: the same body deployed before (whatever became of
 * that deployment), or its commit live, deployed earlier or being deployed now. A commit whose
 * deployments all failed or were cancelled/superseded may be pushed again (a legitimate retry), but
 * only with a new body.
 */
export function replayVerdict(stores: Stores, app: string, commit: string | null, body: Buffer): ReplayVerdict {
  const seen = stores.webhooks.payload(app, body);
  if (seen) {
    const earlier = seen.deployment_id ? stores.deployments.get(seen.deployment_id) : undefined;
    const which = seen.deployment_id ? ` (deployment ${seen.deployment_id})` : '';
    return { skip: true, reason: 'duplicate_payload', message: `skipped: this exact push payload was already deployed${which}; a payload deploys at most once`, earlier };
  }
  if (commit === null) return { skip: false };
  const earlier = stores.deployments.liveOrPendingWithCommit(app, commit);
  if (!earlier) return { skip: false };
  const short = commit.slice(0, 12);
  if (earlier.status !== 'done') {
    return { skip: true, reason: 'commit_deploying', message: `skipped: commit ${short} is being deployed already (deployment ${earlier.id}, ${earlier.status})`, earlier };
  }
  const live = stores.deployments.doneByApp(app, 1)[0];
  if (live && live.commit === earlier.commit) {
    return { skip: true, reason: 'commit_live', message: `skipped: commit ${short} is already live (deployment ${live.id})`, earlier: live };
  }
  return {
    skip: true,
    reason: 'commit_deployed',
    message: `skipped: commit ${short} was deployed earlier (deployment ${earlier.id}); a push never re-deploys an earlier commit — use berth deploy --commit or berth rollback`,
    earlier,
  };
}
