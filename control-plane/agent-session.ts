// One authenticated agent connection: parses every frame, applies it to this server's records
// only, and answers garbage with an `error` message instead of dropping the connection.
import WebSocket from 'ws';
import type { Logger } from '../shared/logger.js';
import { agentMessage, parseMessage, PROTOCOL_VERSION, type AgentMessage, type ClusterResponse, type CpMessage, type CronResponse, type DiskFree } from '../shared/protocol.js';
import { appSpecOf, serverSpecOf } from './desired-state.js';
import type { DeploymentEvents } from './events.js';
import { deploymentInfo, type DeploymentRow } from './store/deployments.js';
import { LogThrottle } from '../shared/log-rate-limit.js';
import type { NotifyHooks } from './notify/index.js';
import type { RuntimeLogRelay } from './runtime-logs.js';
import type { Stores } from './store/index.js';
import { applyBuilderProgress, deployTarget, logServerFor, remoteBuildOrder, remoteBuildsOnHello } from './clusters/remote-build.js';

/** Superseded/cancelled deployments are re-announced to a reconnecting agent for this long. */
export const CANCEL_REPLAY_MS = 24 * 60 * 60 * 1000;

/** A connection that keeps sending frames we cannot parse is broken or hostile: close it. */
export const MAX_BAD_FRAMES = 50;

export interface ObservedState {
  specRevision: number | null;
  containers: Extract<AgentMessage, { type: 'observed_state' }>['containers'];
  receivedAt: string;
}

export interface SessionDeps {
  stores: Stores;
  logger: Logger;
  events?: DeploymentEvents;
  onObservedState(server: string, state: ObservedState): void;
  runtimeLogs?: RuntimeLogRelay;
  /** An answer to a `berth cron` request; false when nobody is waiting for it (any more). */
  onCronResponse?(server: string, msg: CronResponse): boolean;
  /** An answer to a cluster step (issue 15); false when nobody is waiting for it (any more). */
  onClusterResponse?(server: string, msg: ClusterResponse): boolean;
  /** Shared by every connection of the hub, so reconnecting does not reset the log budget. */
  badFrameLog?: LogThrottle;
  /** Notifications (issue 18): told the facts that may be worth telling someone. */
  notify?: NotifyHooks;
  /** A cluster's builder pushed a deployment's image: the manager's agent gets the rest of the deploy. */
  onRemoteBuilt?(d: DeploymentRow): void;
}

/** Bad-frame log lines per server and minute, whatever the number of connections. */
export const BAD_FRAME_LOG_BURST = 3;
export const badFrameThrottle = () => new LogThrottle(BAD_FRAME_LOG_BURST, 60_000);

export class AgentSession {
  /** Set once the agent said hello; desired state and deploy orders are only sent after that. */
  ready = false;
  missedPongs = 0;
  /**
   * The agent's last free-disk report on this connection (shown by GET /api/servers). Kept when a
   * report comes without one (the agent could not measure that pass); gone with the connection.
   */
  disk: DiskFree[] | undefined;
  private badFrames = 0;
  private closingForBadFrames = false;
  /** Only when the hub shares none (tests): one per connection would be 10,000 maps for nothing. */
  private ownThrottle: LogThrottle | null = null;
  private readonly log: Logger;

  constructor(
    readonly server: string,
    readonly ws: WebSocket,
    private readonly deps: SessionDeps,
  ) {
    this.log = deps.logger.child({ server });
    ws.on('message', (data) => this.onFrame(data));
    ws.on('pong', () => {
      this.missedPongs = 0;
    });
  }

  send(msg: CpMessage): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  sendDesiredState(): void {
    const spec = serverSpecOf(this.deps.stores, this.server);
    if (spec) this.send({ type: 'desired_state', v: PROTOCOL_VERSION, spec });
  }

  sendDeploy(d: DeploymentRow): void {
    const app = this.deps.stores.apps.get(d.app);
    // A cluster build goes to the builder, then the rest to the manager (clusters/remote-build.ts).
    if (!app || deployTarget(this.deps.stores, d) !== this.server) return;
    this.send({
      type: 'deploy',
      v: PROTOCOL_VERSION,
      deploymentId: d.id,
      app: appSpecOf(this.deps.stores, app),
      ...(d.commit ? { commit: d.commit } : {}),
      ...(d.rollback_of ? { rollbackOf: d.rollback_of } : {}),
      ...(d.trigger === 'scale' ? { rescale: true } : {}),
      // Only a push may not go backwards; explicit deploys and rollbacks deploy any commit.
      ...(d.trigger === 'push' ? { skipIfAncestorOfLive: true } : {}),
      // Monorepos: a push deploys only when a watched file changed since the live release (the agent checks with git).
      ...(d.trigger === 'push' ? watchOf(this.deps.stores, d.app) : {}),
      ...remoteBuildOrder(this.deps.stores, d),
    });
  }

  /** Tell the agent to drop a deployment the control plane no longer wants. */
  sendCancel(d: DeploymentRow): void {
    if (deployTarget(this.deps.stores, d) !== this.server || (d.status !== 'superseded' && d.status !== 'cancelled')) return;
    this.send({ type: 'cancel', v: PROTOCOL_VERSION, deploymentId: d.id, status: d.status, ...(d.reason ? { reason: d.reason } : {}) });
  }

  private onFrame(data: WebSocket.RawData): void {
    // Frames still arriving after the bad-frame limit closed the connection are neither handled nor logged.
    if (this.closingForBadFrames) return;
    const parsed = parseMessage(agentMessage, Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer));
    if (!parsed.ok) {
      this.onBadFrame(parsed.error);
      return;
    }
    try {
      this.handle(parsed.msg);
    } catch (err) {
      // A database error must not take the hub down; the agent retries what it did not get acked.
      this.log.error({ err, type: parsed.msg.type }, 'failed to handle agent message');
      this.sendError(`internal error handling ${parsed.msg.type}`);
    }
  }

  /**
   * Answer a bad frame with an error; close the connection after MAX_BAD_FRAMES. Logged a few times
   * per connection and, across reconnections, at most BAD_FRAME_LOG_BURST lines per server a minute.
   */
  private onBadFrame(error: string): void {
    this.badFrames++;
    const throttle = this.deps.badFrameLog ?? (this.ownThrottle ??= badFrameThrottle());
    if (this.badFrames <= 3) {
      const suppressed = throttle.take(`${this.server}\0frame`);
      if (suppressed !== null) this.log.warn({ error, badFrames: this.badFrames, ...(suppressed ? { suppressed } : {}) }, 'bad frame from agent');
    }
    this.sendError(error);
    if (this.badFrames < MAX_BAD_FRAMES) return;
    this.closingForBadFrames = true;
    const suppressed = throttle.take(`${this.server}\0close`);
    if (suppressed !== null) this.log.warn({ badFrames: this.badFrames, ...(suppressed ? { suppressed } : {}) }, 'too many bad frames; closing the agent connection');
    this.ws.close(1008, 'too many invalid messages');
  }

  private handle(msg: AgentMessage): void {
    const { stores } = this.deps;
    switch (msg.type) {
      case 'hello': {
        stores.servers.recordHello(this.server, msg.agentVersion, msg.hostname);
        this.log.info({ agentVersion: msg.agentVersion, hostname: msg.hostname }, 'agent said hello');
        this.ready = true;
        this.deps.notify?.agentHello(this.server);
        this.send({ type: 'welcome', v: PROTOCOL_VERSION, server: this.server });
        this.sendDesiredState();
        // Withdrawn while the agent was away: it may hold them in its own journal from before.
        const since = new Date(Date.now() - CANCEL_REPLAY_MS).toISOString();
        for (const d of stores.deployments.recentlyWithdrawn(this.server, since).reverse()) this.sendCancel(d);
        for (const d of stores.deployments.queuedForServer(this.server)) this.sendDeploy(d);
        // Started ones: the agent's journal says how they ended (they may have finished while this
        // control plane was away, or before the backup it was restored from was taken).
        // Cluster builds: the builder's part is asked of the builder, a continuation the manager may have missed is sent again.
        const { send, ask } = remoteBuildsOnHello(stores, this.server, stores.deployments.startedUnfinishedForServer(this.server));
        for (const d of send) this.sendDeploy(d);
        if (ask.length > 0) this.send({ type: 'deploy_status_request', v: PROTOCOL_VERSION, deploymentIds: ask.slice(-1000) });
        return;
      }
      case 'heartbeat':
        stores.servers.touch(this.server);
        this.send({ type: 'heartbeat', v: PROTOCOL_VERSION, ts: new Date().toISOString() });
        return;
      case 'deploy_progress': {
        const result =
          applyBuilderProgress(stores, this.server, msg, (d) => this.deps.onRemoteBuilt?.(d)) ?? stores.deployments.applyProgress(this.server, msg);
        if (result === 'not_found') this.sendError(`deployment "${msg.deploymentId}" does not exist on this server`);
        else if (result === 'already_finished') this.sendError(`deployment "${msg.deploymentId}" has already finished`);
        else if (result === 'updated') {
          this.log.info({ deploymentId: msg.deploymentId, status: msg.status }, 'deploy progress');
          const row = stores.deployments.get(msg.deploymentId);
          if (row) this.deps.events?.deployment(deploymentInfo(row));
          if (row) this.deps.notify?.deployment(row);
        }
        return;
      }
      case 'deploy_log': {
        const added = stores.deployments.appendLogs(logServerFor(stores, this.server, msg.deploymentId), msg.deploymentId, msg.lines);
        if (!added) this.sendError(`deployment "${msg.deploymentId}" does not exist on this server`);
        else if (added.length > 0) this.deps.events?.logs(msg.deploymentId, added);
        return;
      }
      case 'logs_data':
        // Unknown ids are requests the client already left: the agent is told to stop them.
        if (!this.deps.runtimeLogs?.deliver(this.server, msg.requestId, msg.lines)) {
          this.send({ type: 'logs_cancel', v: PROTOCOL_VERSION, requestId: msg.requestId });
        }
        return;
      case 'logs_end':
        this.deps.runtimeLogs?.finish(this.server, msg.requestId, msg.error);
        return;
      case 'cron_response':
        // Unknown ids are requests that already timed out: nothing to do.
        this.deps.onCronResponse?.(this.server, msg);
        return;
      case 'cluster_response':
        // Never logged: a join_token answer carries a secret.
        this.deps.onClusterResponse?.(this.server, msg);
        return;
      case 'observed_state':
        if (msg.disk) this.disk = msg.disk;
        this.deps.onObservedState(this.server, {
          specRevision: msg.specRevision,
          containers: msg.containers,
          receivedAt: new Date().toISOString(),
        });
        this.deps.notify?.observed(this.server, msg);
        return;
      case 'cert_status':
        // Only this server's apps are written (the store ignores others').
        stores.certs.replaceForServer(this.server, msg.certs);
        this.deps.notify?.certStatus(this.server, msg.certs);
        return;
    }
  }

  private sendError(message: string): void {
    this.send({ type: 'error', v: PROTOCOL_VERSION, message });
  }
}

/** The app's `--watch` globs for a push deploy order; {} when it has none. */
function watchOf(stores: Stores, app: string): { watch?: string[] } {
  const watch = stores.apps.monorepo(app).watch;
  return watch && watch.length > 0 ? { watch } : {};
}
