// Deploy scheduling: one deploy at a time per app (later ones wait their turn, in arrival order),
// different apps in parallel up to the build concurrency. An app also counts as busy while its
// previous release drains, so the reconciler keeps its hands off it.
import type { DeployOrder } from '../../shared/protocol.js';
import type { Logger } from '../../shared/logger.js';

export interface RunOutcome {
  /** Settles when the previous release's containers are drained and removed. */
  drain?: Promise<void>;
}

export type RunDeploy = (order: DeployOrder, signal: AbortSignal) => Promise<RunOutcome>;

interface Running {
  order: DeployOrder;
  abort: AbortController;
  done: Promise<void>;
}

export class DeployQueue {
  private readonly waiting: DeployOrder[] = [];
  private readonly running = new Map<string, Running>();
  private readonly draining = new Map<string, number>();
  private readonly drains = new Set<Promise<void>>();
  private readonly stop = new AbortController();
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly opts: {
      concurrency: number;
      run: RunDeploy;
      logger: Logger;
      /** Called after each deploy finishes (done or failed). */
      onFinished?: (order: DeployOrder) => void;
    },
  ) {}

  enqueue(order: DeployOrder): void {
    if (this.stop.signal.aborted) return;
    this.waiting.push(order);
    this.pump();
  }

  /**
   * Stop a deploy the control plane no longer wants: a waiting one is dropped (it never runs), a
   * running one is aborted with `reason` (the runner journals it). Returns where it was, or null.
   */
  cancel(deploymentId: string, reason: Error): 'waiting' | 'running' | null {
    const i = this.waiting.findIndex((o) => o.deploymentId === deploymentId);
    if (i >= 0) {
      this.waiting.splice(i, 1);
      this.checkIdle();
      return 'waiting';
    }
    for (const r of this.running.values()) {
      if (r.order.deploymentId === deploymentId) {
        r.abort.abort(reason);
        return 'running';
      }
    }
    return null;
  }

  /** Apps a deploy is running or draining for. */
  busyApps(): Set<string> {
    return new Set([...this.running.keys(), ...this.draining.keys()]);
  }

  isBusy(app: string): boolean {
    return this.running.has(app) || this.draining.has(app);
  }

  /** Deploy ids running now and waiting, for status. */
  snapshot(): { running: string[]; waiting: string[] } {
    return { running: [...this.running.values()].map((r) => r.order.deploymentId), waiting: this.waiting.map((o) => o.deploymentId) };
  }

  /** Resolves when nothing runs, waits or drains (tests). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Abort running deploys and drains, drop waiting ones (they stay queued in the journal and resume on next start). */
  async close(timeoutMs = 5_000): Promise<void> {
    this.stop.abort();
    this.waiting.length = 0;
    for (const r of this.running.values()) r.abort.abort();
    const all = Promise.allSettled([...[...this.running.values()].map((r) => r.done), ...this.drains]);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** The signal aborted on close (drains listen to it). */
  get closing(): AbortSignal {
    return this.stop.signal;
  }

  private pump(): void {
    for (let i = 0; i < this.waiting.length && this.running.size < this.opts.concurrency; ) {
      const order = this.waiting[i]!;
      if (this.running.has(order.app.name)) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      this.start(order);
    }
  }

  private start(order: DeployOrder): void {
    const app = order.app.name;
    const abort = new AbortController();
    const done = (async () => {
      try {
        const outcome = await this.opts.run(order, abort.signal);
        if (outcome.drain) this.trackDrain(order, outcome.drain);
      } catch (err) {
        // The runner journals its own failures; reaching here is a bug, never a reason to stall the queue.
        this.opts.logger.error({ err, deploymentId: order.deploymentId }, 'deploy runner crashed');
      } finally {
        this.running.delete(app);
        try {
          this.opts.onFinished?.(order);
        } catch (err) {
          this.opts.logger.error({ err }, 'deploy finished handler failed');
        }
        if (!this.stop.signal.aborted) this.pump();
        this.checkIdle();
      }
    })();
    this.running.set(app, { order, abort, done });
  }

  private trackDrain(order: DeployOrder, drain: Promise<void>): void {
    const app = order.app.name;
    this.draining.set(app, (this.draining.get(app) ?? 0) + 1);
    const tracked = drain
      .catch((err) => this.opts.logger.warn({ err, app }, 'draining the previous release failed'))
      .finally(() => {
        const n = (this.draining.get(app) ?? 1) - 1;
        if (n <= 0) this.draining.delete(app);
        else this.draining.set(app, n);
        this.drains.delete(tracked);
        // The app was left alone while draining: let the reconciler catch up on changes made meanwhile.
        try {
          this.opts.onFinished?.(order);
        } catch (err) {
          this.opts.logger.error({ err }, 'deploy finished handler failed');
        }
        this.checkIdle();
      });
    this.drains.add(tracked);
  }

  private isIdle(): boolean {
    return this.waiting.length === 0 && this.running.size === 0 && this.draining.size === 0;
  }

  private checkIdle(): void {
    if (!this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
