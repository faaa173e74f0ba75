// The agent's one outbound WebSocket to the control plane. It keeps itself alive (heartbeats, a
// watchdog that notices a silent link, jittered exponential backoff) and makes delivery of deploy
// progress and logs survive disconnects: those go through the SQLite outbox, flushed in order on
// every connect.
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import WebSocket from 'ws';
import type { Logger } from '../shared/logger.js';
import { AGENT_WS_PATH, cpMessage, HEARTBEAT_INTERVAL_MS, parseMessage, PROTOCOL_VERSION, type AgentMessage, type CancelOrder, type ClusterRequest, type CronRequest, type DeployOrder, type LogsRequest } from '../shared/protocol.js';
import type { ServerSpec } from '../shared/spec.js';
import { sleep } from '../shared/util/index.js';
import { BERTH_VERSION } from '../shared/version.js';
import type { Outbox } from './store/outbox.js';

export interface ConnectionOptions {
  /** The control plane's http(s) URL. */
  url: string;
  credential: string;
  outbox: Outbox;
  logger: Logger;
  hostname?: string;
  heartbeatIntervalMs?: number;
  /** The link is declared dead after this long without any frame (default 3 heartbeat intervals). */
  deadAfterMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface ConnectionState {
  status: 'idle' | 'connecting' | 'connected' | 'disconnected' | 'closed';
  url: string;
  connectedSince: string | null;
  /** When the control plane welcomed this connection (it accepted the credential and the hello); null before. */
  acceptedAt: string | null;
  lastSeenAt: string | null;
  nextRetryAt: string | null;
  lastError: string | null;
  /** Messages waiting in the outbox. */
  pending: number;
}

interface ConnectionEvents {
  connected: [];
  disconnected: [reason: string];
  desired_state: [spec: ServerSpec];
  deploy: [order: DeployOrder];
  cancel: [cancel: CancelOrder];
  deploy_status_request: [deploymentIds: string[]];
  logs_request: [req: LogsRequest];
  logs_cancel: [requestId: string];
  cron_request: [req: CronRequest];
  cluster_request: [req: ClusterRequest];
}

// Worth keeping across a disconnect; everything else (heartbeats, observed state) is re-sent fresh.
const DURABLE: ReadonlySet<AgentMessage['type']> = new Set(['deploy_progress', 'deploy_log']);
const FLUSH_BATCH = 200;
const MAX_FRAME_BYTES = 32 * 1024 * 1024;

/** http://host/x → ws://host/x/api/agent/ws (https → wss). */
export function agentWsUrl(controlPlaneUrl: string): string {
  const url = new URL(controlPlaneUrl);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = url.pathname.replace(/\/+$/, '') + AGENT_WS_PATH;
  url.search = '';
  url.hash = '';
  return url.toString();
}

export class AgentConnection extends EventEmitter<ConnectionEvents> {
  private readonly wsUrl: string;
  private readonly heartbeatMs: number;
  private readonly deadAfterMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private ws: WebSocket | null = null;
  private attempt = 0;
  private status: ConnectionState['status'] = 'idle';
  private connectedSince: Date | null = null;
  private acceptedAt: Date | null = null;
  private lastSeen: Date | null = null;
  private nextRetry: Date | null = null;
  private lastError: string | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private flushing = false;
  private flushAgain = false;

  constructor(private readonly opts: ConnectionOptions) {
    super();
    this.wsUrl = agentWsUrl(opts.url);
    this.heartbeatMs = opts.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS;
    this.deadAfterMs = opts.deadAfterMs ?? 3 * this.heartbeatMs;
    this.minBackoffMs = opts.minBackoffMs ?? 1_000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
  }

  start(): void {
    if (this.status !== 'idle') return;
    this.connect();
  }

  get connected(): boolean {
    return this.status === 'connected' && this.ws?.readyState === WebSocket.OPEN;
  }

  state(): ConnectionState {
    let pending = 0;
    try {
      pending = this.opts.outbox.count();
    } catch {
      // store closed: report 0
    }
    return {
      status: this.status,
      url: this.opts.url,
      connectedSince: this.connectedSince?.toISOString() ?? null,
      acceptedAt: this.acceptedAt?.toISOString() ?? null,
      lastSeenAt: this.lastSeen?.toISOString() ?? null,
      nextRetryAt: this.nextRetry?.toISOString() ?? null,
      lastError: this.lastError,
      pending,
    };
  }

  /** Deploy progress and logs are queued durably and delivered in order; other messages only go out while connected. */
  send(msg: AgentMessage): void {
    if (DURABLE.has(msg.type)) {
      this.opts.outbox.push(msg);
      void this.flush();
      return;
    }
    if (this.connected) this.ws!.send(JSON.stringify(msg));
  }

  /** Best effort before closing: give the outbox up to `timeoutMs` to reach the control plane. */
  async drainOutbox(timeoutMs = 1_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    void this.flush();
    while (this.connected && Date.now() < deadline && (this.flushing || this.opts.outbox.count() > 0)) {
      await sleep(10);
    }
  }

  async close(): Promise<void> {
    if (this.status === 'closed') return;
    this.status = 'closed';
    this.clearTimers();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.nextRetry = null;
    const ws = this.ws;
    this.ws = null;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 1_000);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(1000, 'agent stopping');
    });
  }

  private connect(): void {
    this.status = 'connecting';
    this.nextRetry = null;
    const log = this.opts.logger;
    const ws = new WebSocket(this.wsUrl, {
      headers: { Authorization: `Bearer ${this.opts.credential}` },
      handshakeTimeout: 10_000,
      maxPayload: MAX_FRAME_BYTES,
    });
    this.ws = ws;

    ws.on('open', () => {
      this.status = 'connected';
      this.connectedSince = new Date();
      this.seen();
      this.lastError = null;
      log.info({ url: this.opts.url }, 'connected to the control plane');
      ws.send(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, agentVersion: BERTH_VERSION, hostname: this.opts.hostname ?? hostname() } satisfies AgentMessage));
      this.heartbeatTimer = setInterval(() => this.heartbeat(ws), this.heartbeatMs);
      this.watchdog = setTimeout(() => this.dead(ws), this.deadAfterMs);
      void this.flush();
      this.safeEmit('connected');
    });
    ws.on('message', (data) => {
      this.seen();
      this.receive(data.toString());
    });
    ws.on('pong', () => this.seen());
    ws.on('ping', () => this.seen());
    ws.on('error', (err) => {
      this.lastError = err.message;
      log.warn({ err: err.message, url: this.opts.url }, 'control plane connection error');
    });
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return; // a connection we already gave up on
      this.ws = null;
      this.clearTimers();
      const wasConnected = this.status === 'connected';
      this.connectedSince = null;
      this.acceptedAt = null;
      if (this.status === 'closed') return;
      this.status = 'disconnected';
      const why = reason.toString() || this.lastError || `code ${code}`;
      if (wasConnected) {
        log.warn({ code, reason: why }, 'disconnected from the control plane');
        this.safeEmit('disconnected', why);
      }
      this.scheduleReconnect();
    });
  }

  private receive(raw: string): void {
    const parsed = parseMessage(cpMessage, raw);
    if (!parsed.ok) {
      this.opts.logger.warn({ error: parsed.error }, 'ignored an invalid message from the control plane');
      return;
    }
    // A valid message proves the link and the credential work: the next failure starts backing off afresh.
    this.attempt = 0;
    const msg = parsed.msg;
    switch (msg.type) {
      case 'welcome':
        this.acceptedAt = new Date();
        this.opts.logger.info({ server: msg.server }, 'control plane accepted this agent');
        return;
      case 'desired_state':
        this.safeEmit('desired_state', msg.spec);
        return;
      case 'deploy':
        this.safeEmit('deploy', msg);
        return;
      case 'cancel':
        this.safeEmit('cancel', msg);
        return;
      case 'deploy_status_request':
        this.safeEmit('deploy_status_request', msg.deploymentIds);
        return;
      case 'logs_request':
        this.safeEmit('logs_request', msg);
        return;
      case 'logs_cancel':
        this.safeEmit('logs_cancel', msg.requestId);
        return;
      case 'cron_request':
        this.safeEmit('cron_request', msg);
        return;
      case 'cluster_request':
        this.safeEmit('cluster_request', msg);
        return;
      case 'heartbeat':
        return;
      case 'error':
        this.opts.logger.warn({ message: msg.message }, 'the control plane reported an error');
        return;
    }
  }

  /** A listener's bug must never take the socket handler (and the agent) down. */
  private safeEmit<K extends keyof ConnectionEvents>(event: K, ...args: ConnectionEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: ConnectionEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.opts.logger.error({ err, event }, 'connection event handler failed');
    }
  }

  private seen(): void {
    this.lastSeen = new Date();
    this.watchdog?.refresh();
  }

  private heartbeat(ws: WebSocket): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    // The app-level heartbeat keeps the control plane's view fresh; the ping's pong proves the peer
    // is alive even if it never sends anything on its own.
    ws.send(JSON.stringify({ type: 'heartbeat', v: PROTOCOL_VERSION, ts: new Date().toISOString() } satisfies AgentMessage));
    ws.ping();
  }

  private dead(ws: WebSocket): void {
    if (this.ws !== ws) return;
    this.lastError = `nothing received from the control plane for ${Math.round(this.deadAfterMs / 1000)} s`;
    this.opts.logger.warn({ url: this.opts.url }, `${this.lastError}: reconnecting`);
    ws.terminate();
  }

  private scheduleReconnect(): void {
    const ceiling = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(this.attempt, 30));
    // Equal jitter: at least half the ceiling, so a fleet of agents never reconnects in lockstep.
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    this.attempt++;
    this.nextRetry = new Date(Date.now() + delay);
    this.opts.logger.info({ delayMs: delay, attempt: this.attempt }, 'reconnecting to the control plane');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.status !== 'closed') this.connect();
    }, delay);
  }

  private clearTimers(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.watchdog) clearTimeout(this.watchdog);
    this.heartbeatTimer = null;
    this.watchdog = null;
  }

  /** Send the outbox in order; rows are deleted only once written to the socket. */
  private async flush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    this.flushing = true;
    try {
      do {
        this.flushAgain = false;
        while (this.connected) {
          const ws = this.ws!;
          const batch = this.opts.outbox.peek(FLUSH_BATCH);
          if (batch.length === 0) break;
          const sent: number[] = [];
          await Promise.all(
            batch.map(
              (entry) =>
                new Promise<void>((resolve) =>
                  ws.send(JSON.stringify(entry.msg), (err) => {
                    if (!err) sent.push(entry.id);
                    resolve();
                  }),
                ),
            ),
          );
          this.opts.outbox.remove(sent);
          if (sent.length < batch.length) break; // the socket failed mid-batch: the rest waits for the next connect
        }
      } while (this.flushAgain && this.connected);
    } catch (err) {
      this.opts.logger.warn({ err }, 'could not flush the outbox');
    } finally {
      this.flushing = false;
    }
  }
}
