// Cluster mode (Swarm steps, the TCP preflight, overlay checks) loads on the first cluster_request,
// the manager's upstream watcher once the desired state makes this server a manager, the image
// pruner once this server is in a cluster with a registry:
// most agents never form a cluster (docs/benchmarks.md, "Agent memory").
import type { answerCluster as AnswerCluster } from '../cluster/index.js';
import type { UpstreamWatcher, UpstreamWatcherDeps } from '../cluster/deploy/upstreams.js';
import type { ServerSpec } from '../../shared/spec.js';
import type { Logger } from '../../shared/logger.js';
import type { NodeImagePruner, NodeImagesDeps } from '../cluster/node-images.js';
import type { AppSite } from '../nginx/index.js';

/** `answerCluster`, loaded on first use. */
export const answerClusterLazily: typeof AnswerCluster = async (...args) => (await import('../cluster/index.js')).answerCluster(...args);

/** A cluster loop (a timer with start and close), loaded and started once the desired state wants it. */
class LazyClusterLoop<L extends { start(): void; close(): Promise<void> }> {
  private loop: Promise<L> | undefined;
  /** The loop once loaded. */
  protected loaded: L | undefined;
  private closed = false;

  constructor(
    private readonly what: string,
    private readonly logger: Logger,
    private readonly wanted: (spec: ServerSpec | null) => boolean,
    private readonly load: () => Promise<L>,
  ) {}

  /** Start it if the desired state (now) wants it; later calls are free. */
  follow(spec: ServerSpec | null): void {
    if (this.loop || this.closed || !this.wanted(spec)) return;
    this.loop = this.load().then((l) => {
      this.loaded = l;
      if (!this.closed) l.start();
      return l;
    });
    this.loop.catch((err: unknown) => {
      this.logger.error({ err }, `could not load the ${this.what}`);
      this.loop = undefined;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await (await this.loop?.catch(() => undefined))?.close();
  }
}

/**
 * The manager's upstream watcher (agent/cluster/deploy/upstreams.ts), loaded and started once the
 * desired state says this server manages a cluster: a standalone agent runs no 2 s timer for it.
 */
export class LazyUpstreamWatcher extends LazyClusterLoop<UpstreamWatcher> {
  constructor(deps: UpstreamWatcherDeps) {
    super('cluster upstream watcher', deps.logger, (spec) => spec?.cluster?.role === 'manager', async () => new (await import('../cluster/deploy/upstreams.js')).UpstreamWatcher(deps));
  }

  /** What the watcher last routed per cluster app (undefined until it is loaded: this is no manager). */
  sites(): ReadonlyMap<string, AppSite | null> | undefined {
    return this.loaded?.sites();
  }
}

/** Every node of a cluster with a registry removes the berth images of it no container uses (agent/cluster/node-images.ts). */
export class LazyNodeImagePruner extends LazyClusterLoop<NodeImagePruner> {
  constructor(deps: NodeImagesDeps) {
    super('cluster image pruner', deps.logger, (spec) => !!spec?.cluster?.registry, async () => new (await import('../cluster/node-images.js')).NodeImagePruner(deps));
  }
}
