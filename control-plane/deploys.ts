// Triggering a deploy, whatever asked for it (CLI/API, a Git push, a CI pipeline): record it
// `queued`, supersede the app's older deploys that are still queued (and tell the agent), and hand
// the order to the hub, which sends it now or when the agent next says hello.
import type { DeploymentInfo } from '../shared/api.js';
import { isTerminal } from '../shared/deploy-status.js';
import type { Logger } from '../shared/logger.js';
import type { DeploymentEvents } from './events.js';
import type { AgentHub } from './hub.js';
import type { AppRow } from './store/apps.js';
import { deploymentInfo, type DeploymentRow } from './store/deployments.js';
import type { Stores } from './store/index.js';

export type DeployTrigger = 'manual' | 'push' | 'webhook';

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
  opts: { commit: string | null; trigger: DeployTrigger; inTransaction?: (row: DeploymentRow) => void },
): Triggered {
  const { stores, hub, events } = deps;
  const { row, superseded } = stores.db.transaction(() => {
    const created = stores.deployments.create({ app: app.name, server: app.server, commit: opts.commit, trigger: opts.trigger });
    opts.inTransaction?.(created);
    return { row: created, superseded: stores.deployments.supersedeQueued(app.name, created.id) };
  })();
  for (const s of superseded) {
    hub.sendCancel(s);
    events.deployment(deploymentInfo(s));
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
