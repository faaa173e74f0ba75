// Triggering a deploy, whatever asked for it (CLI/API, a Git push, a CI pipeline): record it
// `queued`, supersede the app's older deploys that are still queued (and tell the agent), and hand
// the order to the hub, which sends it now or when the agent next says hello.
import type { DeploymentInfo } from '../shared/api.js';
import { isTerminal } from '../shared/deploy-status.js';
import type { Logger } from '../shared/logger.js';
import type { ScaleOverride } from '../shared/spec.js';
import type { DeploymentEvents } from './events.js';
import type { AgentHub } from './hub.js';
import type { AppRow } from './store/apps.js';
import { deploymentInfo, type DeploymentRow } from './store/deployments.js';
import type { Stores } from './store/index.js';
import { ConflictError, NotFoundError } from './errors.js';
import { assignBuilder, builderOfflineReason, deployTarget } from './clusters/remote-build.js';

export type DeployTrigger = 'manual' | 'push' | 'webhook' | 'rollback' | 'scale';

export interface TriggerDeps {
  stores: Stores;
  hub: AgentHub;
  events: DeploymentEvents;
  logger: Logger;
}

export interface Triggered {
  row: DeploymentRow;
  agentConnected: boolean;
  superseded: DeploymentRow[];
}

/**
 * `beforeCreate` runs inside the same transaction (e.g. remembering a webhook delivery), so a
 * concurrent redelivery can never create a second deployment.
 */
export function triggerDeploy(
  deps: TriggerDeps,
  app: AppRow,
  opts: { commit: string | null; trigger: DeployTrigger; inTransaction?: (row: DeploymentRow) => void; rollbackOf?: string },
): Triggered {
  const { stores, hub, events } = deps;
  const { row, superseded, builder } = stores.db.transaction(() => {
    const created = stores.deployments.create({ app: app.name, server: app.server, commit: opts.commit, trigger: opts.trigger, rollbackOf: opts.rollbackOf ?? null });
    opts.inTransaction?.(created);
    // A cluster with a builder: the build part of the deploy goes to it (clusters/remote-build.ts).
    const builder = assignBuilder(stores, app, created.id, opts.rollbackOf);
    return { row: created, superseded: stores.deployments.supersedeQueued(app.name, created.id), builder };
  })();
  for (const s of superseded) {
    hub.sendCancel(s);
    events.deployment(deploymentInfo(s));
  }
  if (builder && !hub.isConnected(builder)) {
    // Nothing waits for a builder that is away: the deploy fails now, naming it.
    const failed = stores.deployments.failUnfinished(row.id, builderOfflineReason(builder, app.cluster!)) ?? row;
    events.deployment(deploymentInfo(failed));
    deps.logger.warn({ app: row.app, deploymentId: row.id, builder }, 'deployment failed: the builder is offline');
    return { row: failed, agentConnected: false, superseded };
  }
  const agentConnected = hub.sendDeploy(row);
  deps.logger.info(
    { app: row.app, deploymentId: row.id, trigger: opts.trigger, agentConnected, superseded: superseded.map((s) => s.id) },
    'deployment queued',
  );
  return { row, agentConnected, superseded };
}

/** Resolve with the deployment once it has finished, or with its state so far at the deadline. */
export function waitForEnd(deps: { stores: Stores; events: DeploymentEvents }, id: string, timeoutMs: number, signal?: AbortSignal): Promise<DeploymentInfo | undefined> {
  return new Promise((resolve) => {
    const current = () => {
      try {
        const row = deps.stores.deployments.get(id);
        return row ? deploymentInfo(row) : undefined;
      } catch {
        return undefined; // the control plane is shutting down (database closed)
      }
    };
    const now = current();
    if (!now || isTerminal(now.status)) return resolve(now);
    let settled = false;
    const finish = (d: DeploymentInfo | undefined) => {
      if (settled) return;
      settled = true;
      unsubscribe();
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(d);
    };
    const unsubscribe = deps.events.subscribe(id, (e) => {
      if (e.type === 'deployment' && isTerminal(e.deployment.status)) finish(e.deployment);
    });
    const timer = setTimeout(() => finish(current()), timeoutMs);
    timer.unref();
    const onAbort = () => finish(current());
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The release a deployment made live: its own, or for a rollback the one it re-activated. */
const releaseOf = (d: DeploymentRow) => d.rollback_of ?? d.id;

/**
 * The deployment whose release a rollback re-activates. Given an id: that deployment (or, for a
 * rollback, the one it rolled back to), which must have gone live. Without: one release further
 * back than the live one — repeated rollbacks keep walking back; `berth rollback APP ID` goes anywhere.
 */
export function resolveRollbackTarget(stores: Stores, app: string, requested?: string): DeploymentRow {
  const done = stores.deployments.doneByApp(app);
  const live = done[0];
  if (requested !== undefined) {
    const row = stores.deployments.get(requested);
    if (!row || row.app !== app) throw new NotFoundError(`deployment "${requested}" is not a deployment of app "${app}"`);
    if (row.status !== 'done') {
      throw new ConflictError(`deployment ${requested} ${row.status === 'failed' ? 'failed' : `is ${row.status}`}: only a deployment that went live can be rolled back to`);
    }
    const target = row.rollback_of ? stores.deployments.get(row.rollback_of) : row;
    if (!target) throw new NotFoundError(`the release deployment ${requested} rolled back to (${row.rollback_of}) no longer exists`);
    if (live && releaseOf(live) === target.id) throw new ConflictError(`the release of deployment ${target.id} is already live`);
    return target;
  }
  if (!live) throw new ConflictError(`app "${app}" has no live release to roll back from`);
  const releases = done.filter((d) => !d.rollback_of);
  const at = releases.findIndex((d) => d.id === releaseOf(live));
  const target = at >= 0 ? releases[at + 1] : releases.find((d) => d.id !== releaseOf(live));
  if (!target) throw new ConflictError(`app "${app}" has no earlier good release to roll back to`);
  return target;
}

/**
 * `berth scale`: record the app's new override (`reset`: none, the repo's `scale:` again) and, in the
 * same transaction, queue a deployment (trigger `scale`) that brings the live release back at those
 * counts through the health gate and switch, without a rebuild. Later deploys and rollbacks carry the
 * override too. Refused, changing nothing, without a live release, while a deployment of the app is
 * unfinished, or for web=0 while the app has domains.
 */
export function triggerScale(deps: TriggerDeps, app: AppRow, change: ScaleOverride | 'reset'): Triggered & { override: ScaleOverride | null } {
  const { stores } = deps;
  const live = stores.deployments.doneByApp(app.name)[0];
  if (!live) throw new ConflictError(`app "${app.name}" has no live release to scale: deploy it first`);
  // After a move the new server keeps no copy of the release that was live on the old one.
  if (live.server !== app.server) throw new ConflictError(`app "${app.name}" has no live release on ${app.server} yet (it moved from ${live.server}): deploy it there first`);
  // Queued behind a deploy, it would bring back the release that deploy replaces (or supersede a build).
  const pending = stores.deployments.listByApp(app.name, { limit: 50 }).find((d) => !isTerminal(d.status));
  if (pending) throw new ConflictError(`deployment ${pending.id} of ${app.name} is ${pending.status}: scale once it has finished, or cancel it`);
  const current = stores.scale.get(app.name);
  if (change === 'reset' && !current) throw new ConflictError(`app "${app.name}" has no scale set with berth scale: the repo's scale already applies`);
  const override = change === 'reset' ? null : { ...current, ...change };
  const domains = stores.apps.servedDomains(app);
  // nginx would route the domains to nothing: a web scale of 0 is for apps that serve no domain.
  if (override?.web === 0 && domains.length > 0) {
    throw new ConflictError(`web must keep at least 1 container while ${app.name} has domains (${domains.join(', ')}): remove them first`);
  }
  const triggered = triggerDeploy(deps, app, {
    commit: live.commit,
    trigger: 'scale',
    rollbackOf: releaseOf(live),
    inTransaction: () => (override ? stores.scale.set(app, override) : stores.scale.clear(app)),
  });
  return { ...triggered, override };
}

/** Reason recorded for a deployment cancelled through the API. */
export const USER_CANCEL_REASON = 'cancelled by a user';

/**
 * Cancel a deployment. One that has not started (or whose agent is offline) is cancelled here and
 * the agent is told; one running on a connected agent is aborted there, and the agent's report is
 * what the deployment ends as — `cancelled`, or `done` when it had already switched. Waits up to
 * `waitMs` for that report.
 */
export async function cancelDeployment(deps: TriggerDeps, id: string, waitMs = 15_000): Promise<{ deployment: DeploymentInfo; pending: boolean }> {
  const { stores, hub, events } = deps;
  const row = stores.deployments.require(id);
  if (isTerminal(row.status)) throw new ConflictError(`deployment ${id} has already finished (${row.status})`);
  if (row.status === 'queued' || !hub.isConnected(deployTarget(stores, row))) {
    const cancelled = stores.deployments.cancel(id, USER_CANCEL_REASON);
    if (!cancelled) {
      const now = stores.deployments.require(id);
      return { deployment: deploymentInfo(now), pending: false };
    }
    // A queued order may already be in the agent's journal (or run there before its next report): it is told either way.
    hub.sendCancel(cancelled);
    events.deployment(deploymentInfo(cancelled));
    deps.logger.info({ app: row.app, deploymentId: id }, 'deployment cancelled');
    return { deployment: deploymentInfo(cancelled), pending: false };
  }
  // Running: only the agent knows whether it can still stop before the switch.
  hub.sendCancel({ ...row, status: 'cancelled', reason: USER_CANCEL_REASON });
  deps.logger.info({ app: row.app, deploymentId: id, status: row.status }, 'asked the agent to cancel a running deployment');
  const final = await waitForEnd(deps, id, waitMs);
  const current = final ?? deploymentInfo(stores.deployments.require(id));
  return { deployment: current, pending: !isTerminal(current.status) };
}
