// Cluster mode (Swarm steps, the TCP preflight, overlay checks) loads on the first cluster_request,
// the manager's upstream watcher once the desired state makes this server a manager:
// most agents never form a cluster (docs/benchmarks.md, "Agent memory").
import type { answerCluster as AnswerCluster } from '../cluster/index.js';
import type { UpstreamWatcher, UpstreamWatcherDeps } from '../cluster/deploy/upstreams.js';
import type { ServerSpec } from '../../shared/spec.js';
import type { AppSite } from '../nginx/index.js';

/** `answerCluster`, loaded on first use. */
export const answerClusterLazily: typeof AnswerCluster = async (...args) => (await import('../cluster/index.js')).answerCluster(...args);

/**
 * The manager's upstream watcher (agent/cluster/deploy/upstreams.ts), loaded and started once the
 * desired state says this server manages a cluster: a standalone agent runs no 2 s timer for it.
 */
export class LazyUpstreamWatcher {
  private watcher: Promise<UpstreamWatcher> | undefined;
  private loaded: UpstreamWatcher | undefined;
  private closed = false;

  constructor(private readonly deps: UpstreamWatcherDeps) {}

  /** Start it if this server is (now) a cluster's manager; later calls are free. */
  follow(spec: ServerSpec | null): void {
    if (this.watcher || this.closed || spec?.cluster?.role !== 'manager') return;
    this.watcher = import('../cluster/deploy/upstreams.js').then(({ UpstreamWatcher }) => {
      const w = new UpstreamWatcher(this.deps);
      this.loaded = w;
      if (!this.closed) w.start();
      return w;
    });
    this.watcher.catch((err: unknown) => {
      this.deps.logger.error({ err }, 'could not load the cluster upstream watcher');
      this.watcher = undefined;
    });
  }

  /** What the watcher last routed per cluster app (undefined until it is loaded: this is no manager). */
  sites(): ReadonlyMap<string, AppSite | null> | undefined {
    return this.loaded?.sites();
  }

  async close(): Promise<void> {
    this.closed = true;
    await (await this.watcher?.catch(() => undefined))?.close();
  }
}
