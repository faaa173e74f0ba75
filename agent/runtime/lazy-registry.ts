// The cluster registry keeper loads when the desired state first has a registry: a standalone agent
// never loads cluster code (test/agent-start-modules.test.ts).
import type Docker from 'dockerode';
import type { Logger } from '../../shared/logger.js';
import type { ClusterSpec } from '../../shared/spec.js';
import type { RegistryKeeper, RegistrySettings } from '../cluster/registry/index.js';

export class LazyRegistryKeeper {
  private keeper: Promise<RegistryKeeper> | undefined;

  constructor(
    private readonly settings: RegistrySettings,
    private readonly docker: Docker,
    private readonly logger: Logger,
  ) {}

  /** The keeper, loaded on first use (e.g. for the deploy's registry retention). */
  get(): Promise<RegistryKeeper> {
    this.keeper ??= import('../cluster/registry/index.js').then(({ RegistryKeeper }) => new RegistryKeeper(this.settings, this.docker, this.logger));
    this.keeper.catch(() => (this.keeper = undefined));
    return this.keeper;
  }

  /** `RegistryKeeper.apply`; nothing is loaded while the server is in no cluster with a registry. */
  async apply(cluster: ClusterSpec | undefined): Promise<void> {
    if (!cluster?.registry) return;
    try {
      await (await this.get()).apply(cluster);
    } catch (err) {
      this.logger.error({ err }, 'could not load the cluster registry code');
    }
  }
}
