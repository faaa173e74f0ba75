// The WebSocket hub: authenticates agents at the HTTP upgrade (before any WebSocket exists), keeps
// one live connection per server, pings them, and pushes desired state and deploy orders.
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { sha256 } from '../shared/ids.js';
import type { Logger } from '../shared/logger.js';
import { newId } from '../shared/ids.js';
import { AGENT_WS_PATH, PROTOCOL_VERSION, type ClusterOp, type ClusterResponse, type CronRequest, type CronResponse, type DiskFree, type LogsRequest } from '../shared/protocol.js';
import { AgentSession, badFrameThrottle, type ObservedState } from './agent-session.js';
import { bearerToken } from './bearer.js';
import { ClusterRelay } from './clusters/relay.js';
import { AgentUnavailableError } from './errors.js';
import type { DeploymentEvents } from './events.js';
import type { NotifyHooks } from './notify/index.js';
import { PingWheel } from './ping-wheel.js';
import { RuntimeLogRelay, type LogsListener } from './runtime-logs.js';
import type { DeploymentRow } from './store/deployments.js';
import type { Stores } from './store/index.js';
import { deployTarget, failBuildsOf } from './clusters/remote-build.js';
import { deploymentInfo } from './store/deployments.js';

export const MAX_FRAME_BYTES = 1024 * 1024;
export const PING_INTERVAL_MS = 15_000;
/** Heartbeat times are written to the database in one batch this often (see ServerStore.touch). */
export const SEEN_FLUSH_MS = 5_000;
/** Heartbeat rows written per transaction by the periodic flush. */
const SEEN_BATCH = 500;
/** A connection is dead after this many pings in a row went unanswered. */
const MAX_MISSED_PONGS = 2;
/** Close code for a connection replaced by a newer one from the same server. */
export const CLOSE_REPLACED = 4000;
/** The server was removed (`berth server rm`): its credential no longer exists. */
export const CLOSE_REMOVED = 4003;
/** How long a `berth cron` request waits for its agent's answer. */
export const CRON_ANSWER_TIMEOUT_MS = 15_000;

interface PendingCron {
  server: string;
  resolve(msg: CronResponse): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export interface HubOptions {
  stores: Stores;
  logger: Logger;
  /** Phase changes and log lines from agents are published here for live followers. */
  events?: DeploymentEvents;
  pingIntervalMs?: number;
  /** Notifications (issue 18). */
  notify?: NotifyHooks;
}

export class AgentHub {
  // No compression (its zlib contexts cost ~300 KB per connection) and no client set of ws's own:
  // `live` already holds every connection.
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false, clientTracking: false });
  /** The current connection of each server. */
  private readonly current = new Map<string, AgentSession>();
  /** Every open session, including replaced ones still closing: all of them get pinged. */
  private readonly live = new Set<AgentSession>();
  private readonly observed = new Map<string, ObservedState>();
  /** `berth logs` requests waiting for their agent's frames. */
  readonly runtimeLogs = new RuntimeLogRelay();
  /** `berth cron` requests waiting for their agent's answer. */
  private readonly cronPending = new Map<string, PendingCron>();
  /** Cluster steps (issue 15) waiting for their agent's answer. */
  private readonly cluster = new ClusterRelay();
  /** Pings every session in `live` once per ping interval, a slice at a time. */
  private readonly pinger: PingWheel<AgentSession>;
  private readonly seenFlusher: NodeJS.Timeout;
  private readonly log: Logger;
  private readonly badFrameLog = badFrameThrottle();
  /** A periodic heartbeat write is in progress (it yields between batches). */
  private flushing = false;
  /** Set by close(): the connections it ends are no builders going away. */
  private closing = false;

  constructor(private readonly opts: HubOptions) {
    this.log = opts.logger.child({ component: 'hub' });
    this.pinger = new PingWheel(opts.pingIntervalMs ?? PING_INTERVAL_MS, (s) => this.ping(s));
    this.seenFlusher = setInterval(() => this.flushSeenGradually(), SEEN_FLUSH_MS);
    this.seenFlusher.unref();
  }

  /** The http server's `upgrade` listener. */
  handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => {}); // a client vanishing mid-handshake is not our error
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      return reject(socket, 400, 'invalid request URL');
    }
    if (path !== AGENT_WS_PATH) return reject(socket, 404, 'not found');
    const credential = bearerToken(req.headers.authorization);
    if (!credential) return reject(socket, 401, 'missing agent credential (Authorization: Bearer <credential>)');
    const server = this.opts.stores.servers.findByCredential(sha256(credential));
    if (!server) return reject(socket, 401, 'agent credential is invalid');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.attach(server.name, ws));
  };

  isConnected(server: string): boolean {
    return this.current.has(server);
  }

  /** Push the server's current desired state to its agent, if it is connected. */
  pushDesiredState(server: string): void {
    const session = this.current.get(server);
    if (session?.ready) session.sendDesiredState();
  }

  /** Send a deploy order now if the agent is connected; otherwise it goes out on its next hello. */
  sendDeploy(d: DeploymentRow): boolean {
    const session = this.current.get(deployTarget(this.opts.stores, d));
    if (!session) return false;
    if (session.ready) session.sendDeploy(d);
    return true;
  }

  /** Tell the agent to drop a superseded/cancelled deployment now; it is told again on its next hello. */
  sendCancel(d: DeploymentRow): void {
    const session = this.current.get(deployTarget(this.opts.stores, d));
    if (session?.ready) session.sendCancel(d);
  }

  /**
   * Ask the server's agent for an app's runtime logs. Returns a function that stops the request, or
   * null when the agent is not connected (runtime logs live on the server, nowhere else).
   */
  requestLogs(server: string, req: Omit<LogsRequest, 'type' | 'v'>, listener: LogsListener): (() => void) | null {
    const session = this.current.get(server);
    if (!session?.ready) return null;
    this.runtimeLogs.open(req.requestId, server, listener);
    session.send({ type: 'logs_request', v: PROTOCOL_VERSION, ...req });
    return () => {
      this.runtimeLogs.close(req.requestId);
      this.current.get(server)?.send({ type: 'logs_cancel', v: PROTOCOL_VERSION, requestId: req.requestId });
    };
  }

  /**
   * Ask the server's agent about an app's cron jobs (list, run one now, read runs). Rejects with
   * AgentUnavailableError when the agent is offline, disconnects, or does not answer in time.
   */
  requestCron(server: string, req: Omit<CronRequest, 'type' | 'v' | 'requestId'>, timeoutMs = CRON_ANSWER_TIMEOUT_MS): Promise<CronResponse> {
    const session = this.current.get(server);
    if (!session?.ready) {
      return Promise.reject(new AgentUnavailableError(`server "${server}" is offline: cron jobs run on its agent, try again when it is connected`));
    }
    const requestId = newId();
    return new Promise<CronResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.cronPending.delete(requestId);
        reject(new AgentUnavailableError(`the agent of server "${server}" did not answer within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      timer.unref();
      this.cronPending.set(requestId, { server, resolve, reject, timer });
      session.send({ type: 'cron_request', v: PROTOCOL_VERSION, requestId, ...req });
    });
  }

  /** An agent's answer to a cron request; false when unknown or from another server. */
  private cronAnswered(server: string, msg: CronResponse): boolean {
    const p = this.cronPending.get(msg.requestId);
    if (!p || p.server !== server) return false;
    this.cronPending.delete(msg.requestId);
    clearTimeout(p.timer);
    p.resolve(msg);
    return true;
  }

  /**
   * Ask the server's agent to do one cluster step (swarm init, join, drain, …). Rejects with a 409
   * naming the server when its agent is offline, disconnects, or does not answer in time.
   */
  requestCluster(server: string, request: ClusterOp, timeoutMs?: number): Promise<ClusterResponse> {
    const session = this.current.get(server);
    return this.cluster.request(server, session?.ready ? (msg) => session.send(msg) : null, request, timeoutMs);
  }

  /** Close a removed server's connection; its credential is gone, so it cannot come back. */
  disconnect(server: string): void {
    this.current.get(server)?.ws.close(CLOSE_REMOVED, 'this server was removed from the control plane');
    this.observed.delete(server);
  }

  /** The connected agent's last free-disk report; undefined while it is offline or has sent none. */
  diskFree(server: string): DiskFree[] | undefined {
    return this.current.get(server)?.disk;
  }

  observedState(server: string): ObservedState | undefined {
    return this.observed.get(server);
  }

  async close(): Promise<void> {
    this.closing = true;
    this.pinger.stop();
    clearInterval(this.seenFlusher);
    this.flushSeen();
    for (const s of this.live) s.ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private attach(server: string, ws: WebSocket): void {
    const previous = this.current.get(server);
    if (previous) {
      this.log.info({ server }, 'agent reconnected; closing its previous connection');
      previous.ws.close(CLOSE_REPLACED, 'replaced by a newer connection');
    }
    const session = new AgentSession(server, ws, {
      stores: this.opts.stores,
      logger: this.opts.logger,
      ...(this.opts.events ? { events: this.opts.events } : {}),
      onObservedState: (s, state) => this.observed.set(s, state),
      runtimeLogs: this.runtimeLogs,
      onCronResponse: (s, msg) => this.cronAnswered(s, msg),
      onClusterResponse: (s, msg) => this.cluster.answered(s, msg),
      badFrameLog: this.badFrameLog,
      ...(this.opts.notify ? { notify: this.opts.notify } : {}),
      onRemoteBuilt: (d) => this.sendDeploy(d),
    });
    this.current.set(server, session);
    this.live.add(session);
    this.pinger.add(session);
    this.log.info({ server }, 'agent connected');
    ws.on('error', (err) => this.log.warn({ server, err: err.message }, 'agent connection error'));
    ws.on('close', (code) => {
      this.live.delete(session);
      this.pinger.delete(session);
      if (this.current.get(server) === session) {
        this.current.delete(server);
        this.runtimeLogs.dropServer(server, `the agent of server "${server}" disconnected`);
        for (const [id, p] of this.cronPending) {
          if (p.server !== server) continue;
          this.cronPending.delete(id);
          clearTimeout(p.timer);
          p.reject(new AgentUnavailableError(`the agent of server "${server}" disconnected before answering`));
        }
        this.cluster.dropServer(server);
        if (!this.closing) this.failBuilds(server);
        // Its last heartbeat is what "offline since" is computed from: written now, not in a few seconds.
        this.flushSeen(server);
        this.log.info({ server, code }, 'agent disconnected');
      }
    });
  }

  /** A cluster's builder went away: what it was building fails now instead of waiting for it. */
  private failBuilds(server: string): void {
    try {
      for (const row of failBuildsOf(this.opts.stores, server)) {
        this.log.warn({ server, deploymentId: row.id, app: row.app }, 'the builder disconnected: deployment failed');
        this.opts.events?.deployment(deploymentInfo(row));
      }
    } catch (err) {
      this.log.error({ err, server }, 'could not fail the builds of a disconnected builder');
    }
  }

  /** Write pending heartbeat times: all of them, or only `server`'s. */
  private flushSeen(server?: string): void {
    try {
      this.opts.stores.servers.flushSeen(server === undefined ? {} : { only: server });
    } catch (err) {
      // Only timestamps are lost (the next heartbeat brings new ones); the hub keeps running.
      this.log.error({ err }, 'failed to write agent heartbeat times');
    }
  }

  /**
   * The periodic write, SEEN_BATCH rows per transaction with the event loop free in between: 5,000
   * rows in one transaction held it for 35–340 ms (bench/control-plane-scale, 10,000 agents).
   */
  private flushSeenGradually(): void {
    if (this.flushing) return;
    this.flushing = true;
    const step = () => {
      try {
        if (this.opts.stores.servers.flushSeen({ limit: SEEN_BATCH }) > 0) return void setImmediate(step);
      } catch (err) {
        this.log.error({ err }, 'failed to write agent heartbeat times');
      }
      this.flushing = false;
    };
    step();
  }

  private ping(s: AgentSession): void {
    if (s.missedPongs >= MAX_MISSED_PONGS) {
      this.log.warn({ server: s.server }, 'agent missed pings; dropping its connection');
      s.ws.terminate();
      return;
    }
    s.missedPongs++;
    s.ws.ping();
  }
}

/** Answer a refused upgrade with a plain HTTP response carrying the usual `{error}` body. */
function reject(socket: Duplex, status: number, error: string): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
