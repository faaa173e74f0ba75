// Cluster deploys built on the cluster's builder (issue 15, `berth cluster builder`). The control plane
// drives two phases of ONE deployment (one journal, one log): the builder's agent gets a build-only
// order (fetching → building, the image pushed to the cluster's registry) and reports `done` with the
// pushed digest; that is recorded and the manager's agent gets a continuation order for the same id
// that starts from the digest (releasing → starting → health_checking → switching → done), as a
// rollback starts from a kept one. A builder's failure fails the deployment naming it; a builder that
// is offline when the deploy is triggered, or disconnects while building, fails it at once.
import { isTerminal } from '../../shared/deploy-status.js';
import type { AgentMessage, DeployOrder } from '../../shared/protocol.js';
import type { AppRow } from '../store/apps.js';
import type { DeploymentRow, ProgressResult } from '../store/deployments.js';
import type { Stores } from '../store/index.js';

type Progress = Extract<AgentMessage, { type: 'deploy_progress' }>;

/** A new deploy of a cluster app whose cluster has a builder is built there (never a rollback or scale: they build nothing). */
export function assignBuilder(stores: Stores, app: AppRow, deploymentId: string, rollbackOf?: string): string | null {
  if (!app.cluster || rollbackOf) return null;
  const builder = stores.clusters.get(app.cluster)?.builder ?? null;
  if (!builder || builder === app.server) return null;
  stores.clusterBuilds.assign(deploymentId, builder);
  return builder;
}

export function builderOfflineReason(builder: string, cluster: string): string {
  return `build on ${builder} failed: ${builder} is offline (the builder of cluster ${cluster}; its agent must be connected to build, or build on the manager: berth cluster builder ${cluster} --manager)`;
}

export function builderGoneReason(builder: string): string {
  return `build on ${builder} failed: its agent disconnected while building; deploy again once it is back`;
}

/** The server whose agent runs the deployment now: its builder until the image is pushed, then its own server. */
export function deployTarget(stores: Stores, d: DeploymentRow): string {
  const b = stores.clusterBuilds.get(d.id);
  return b && !b.built ? b.builder : d.server;
}

/** What the order carries for the agent it goes to: build-only for the builder, the pushed image for the manager. */
export function remoteBuildOrder(stores: Stores, d: DeploymentRow): Pick<DeployOrder, 'buildOnly' | 'built'> {
  const b = stores.clusterBuilds.get(d.id);
  if (!b) return {};
  if (!b.built || !d.commit) return { buildOnly: true };
  return { built: { ...b.built, builder: b.builder, commit: d.commit, logSeq: b.logSeq } };
}

/** The deploy log lines `server` sends for deployment `id` count as the deployment's own server's when `server` builds it. */
export function logServerFor(stores: Stores, server: string, id: string): string {
  const b = stores.clusterBuilds.get(id);
  return b?.builder === server ? (stores.deployments.get(id)?.server ?? server) : server;
}

/**
 * A `deploy_progress` from `server`, when it is the deployment's builder (null otherwise: an ordinary
 * report). Its phases become the deployment's; its failure names it; its `done` with the pushed image
 * is recorded (the deployment stays `building`) and `onBuilt` sends the manager the continuation.
 */
export function applyBuilderProgress(stores: Stores, server: string, msg: Progress, onBuilt: (row: DeploymentRow) => void): ProgressResult | null {
  const b = stores.clusterBuilds.get(msg.deploymentId);
  const row = stores.deployments.get(msg.deploymentId);
  if (!b || b.builder !== server || !row) return null;
  // The manager has taken over: a builder's replayed report changes nothing.
  if (b.built) return 'unchanged';
  const { built, type: _t, v: _v, ts: _ts, ...report } = msg;
  if (msg.status !== 'done') {
    const reason = msg.status === 'failed' ? `build on ${server} failed: ${(msg.reason ?? 'no reason given').replace(/^build failed: /, '')}` : msg.reason;
    return stores.deployments.applyProgress(row.server, { ...report, ...(reason ? { reason } : {}) });
  }
  const commit = msg.commit ?? row.commit;
  if (!built || !commit || commit.length !== 40) {
    return stores.deployments.applyProgress(row.server, { ...report, status: 'failed', reason: `build on ${server} failed: the builder finished without reporting the pushed image` });
  }
  if (isTerminal(row.status)) return 'already_finished';
  const result = stores.db.transaction(() => {
    // The builder's lines are all in (it flushes them before reporting done): the manager's come after.
    stores.clusterBuilds.recordBuilt(row.id, built, stores.deployments.nextLogSeq(row.id));
    return stores.deployments.applyProgress(row.server, { ...report, status: 'building', commit });
  })();
  onBuilt(stores.deployments.get(row.id)!);
  return result;
}

/**
 * On an agent's hello, the cluster builds it must be sent or asked about. `started` are the
 * deployments of its own server started and unfinished: those its builder still builds are left out;
 * one the builder finished and the manager has not reported on is sent again (an agent answers a
 * replayed order from its journal). The builds this agent runs as a builder: a queued one is sent, a
 * started one asked about.
 */
export function remoteBuildsOnHello(stores: Stores, server: string, started: DeploymentRow[]): { send: DeploymentRow[]; ask: string[] } {
  const send: DeploymentRow[] = [];
  const ask: string[] = [];
  for (const d of started) {
    const b = stores.clusterBuilds.get(d.id);
    if (!b) ask.push(d.id);
    else if (b.built && d.status === 'building') send.push(d);
    else if (b.built) ask.push(d.id);
  }
  for (const id of stores.clusterBuilds.building(server)) {
    const d = stores.deployments.get(id);
    if (d?.status === 'queued') send.push(d);
    else if (d) ask.push(d.id);
  }
  return { send, ask };
}

/** The builder's agent disconnected: the deployments it was building fail at once (nothing waits for it). */
export function failBuildsOf(stores: Stores, builder: string): DeploymentRow[] {
  const failed: DeploymentRow[] = [];
  for (const id of stores.clusterBuilds.building(builder)) {
    const row = stores.deployments.failUnfinished(id, builderGoneReason(builder));
    if (row) failed.push(row);
  }
  return failed;
}
