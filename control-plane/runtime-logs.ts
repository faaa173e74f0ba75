// `berth logs`: the control plane holds no runtime logs. A request is relayed to the app's agent,
// which streams its containers' output back; this registry routes those frames to the waiting
// HTTP response, and only from the server the request was sent to.
import type { RuntimeLogLine } from '../shared/protocol.js';

export interface LogsListener {
  lines(lines: RuntimeLogLine[]): void;
  end(error?: string): void;
}

interface Pending {
  server: string;
  listener: LogsListener;
}

export class RuntimeLogRelay {
  private readonly pending = new Map<string, Pending>();

  open(requestId: string, server: string, listener: LogsListener): void {
    this.pending.set(requestId, { server, listener });
  }

  /** Lines from `server` for `requestId`; false when the request is unknown or belongs to another server. */
  deliver(server: string, requestId: string, lines: RuntimeLogLine[]): boolean {
    const p = this.pending.get(requestId);
    if (!p || p.server !== server) return false;
    p.listener.lines(lines);
    return true;
  }

  finish(server: string, requestId: string, error?: string): boolean {
    const p = this.pending.get(requestId);
    if (!p || p.server !== server) return false;
    this.pending.delete(requestId);
    p.listener.end(error);
    return true;
  }

  /** The agent went away: every request it was serving ends with that reason. */
  dropServer(server: string, reason: string): void {
    for (const [id, p] of this.pending) {
      if (p.server !== server) continue;
      this.pending.delete(id);
      p.listener.end(reason);
    }
  }

  close(requestId: string): void {
    this.pending.delete(requestId);
  }
}
