// Cluster steps relayed to agents (issue 15): one `cluster_request` out, one `cluster_response`
// back per request id, like `berth cron`. Live only: an offline agent is an error at once, never a
// queued order. Join tokens pass through here in memory only.
import { newId } from '../../shared/ids.js';
import { PROTOCOL_VERSION, type ClusterOp, type ClusterResponse, type CpMessage } from '../../shared/protocol.js';
import { ControlPlaneError } from '../errors.js';

/** A step's default bound; joins and overlay checks pass longer ones. */
export const CLUSTER_ANSWER_TIMEOUT_MS = 30_000;

interface Pending {
  server: string;
  resolve(msg: ClusterResponse): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** The agent is not connected (or went away mid-step): the operation cannot go on. */
export class ServerOfflineError extends ControlPlaneError {
  override name = 'ServerOfflineError';
  constructor(message: string) {
    super(409, message);
  }
}

export class ClusterRelay {
  private readonly pending = new Map<string, Pending>();

  /** `send` is the server's live session, or null when it is offline. */
  request(server: string, send: ((msg: CpMessage) => void) | null, request: ClusterOp, timeoutMs = CLUSTER_ANSWER_TIMEOUT_MS): Promise<ClusterResponse> {
    if (!send) return Promise.reject(new ServerOfflineError(`server "${server}" is offline: its agent must be connected for cluster changes`));
    const requestId = newId();
    return new Promise<ClusterResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new ServerOfflineError(`the agent of server "${server}" did not answer "${request.op}" within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      timer.unref();
      this.pending.set(requestId, { server, resolve, reject, timer });
      send({ type: 'cluster_request', v: PROTOCOL_VERSION, requestId, request });
    });
  }

  /** An agent's answer; false when unknown (timed out) or from another server. */
  answered(server: string, msg: ClusterResponse): boolean {
    const p = this.pending.get(msg.requestId);
    if (!p || p.server !== server) return false;
    this.pending.delete(msg.requestId);
    clearTimeout(p.timer);
    p.resolve(msg);
    return true;
  }

  /** The server's agent disconnected: its unanswered steps fail now. */
  dropServer(server: string): void {
    for (const [id, p] of this.pending) {
      if (p.server !== server) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new ServerOfflineError(`the agent of server "${server}" disconnected before answering`));
    }
  }
}
