// In-process fan-out of what happens to deployments (phase changes and new log lines) to whoever
// follows them live: SSE streams, `?wait=1` webhook calls. The database stays the record; this only
// carries what arrives after a follower has read the record.
import type { DeploymentInfo } from '../shared/api.js';
import type { LogLine } from '../shared/protocol.js';
import type { Logger } from '../shared/logger.js';

export type DeploymentEvent = { type: 'deployment'; deployment: DeploymentInfo } | { type: 'log'; line: LogLine };
export type DeploymentListener = (event: DeploymentEvent) => void;

export class DeploymentEvents {
  private readonly listeners = new Map<string, Set<DeploymentListener>>();

  constructor(private readonly logger?: Logger) {}

  /** Returns the unsubscribe function. */
  subscribe(deploymentId: string, fn: DeploymentListener): () => void {
    let set = this.listeners.get(deploymentId);
    if (!set) this.listeners.set(deploymentId, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.listeners.get(deploymentId) === set) this.listeners.delete(deploymentId);
    };
  }

  deployment(d: DeploymentInfo): void {
    this.emit(d.id, { type: 'deployment', deployment: d });
  }

  logs(deploymentId: string, lines: readonly LogLine[]): void {
    if (!this.listeners.has(deploymentId)) return;
    for (const line of lines) this.emit(deploymentId, { type: 'log', line });
  }

  /** Followers right now (tests, status). */
  followers(deploymentId?: string): number {
    if (deploymentId !== undefined) return this.listeners.get(deploymentId)?.size ?? 0;
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  private emit(id: string, event: DeploymentEvent): void {
    const set = this.listeners.get(id);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(event);
      } catch (err) {
        // One broken follower must not keep the others (or the agent's session) from their events.
        this.logger?.warn({ err, deploymentId: id }, 'deployment event listener failed');
      }
    }
  }
}
