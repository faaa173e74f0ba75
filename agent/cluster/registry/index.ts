// The cluster's registry as this node's agent keeps it (issue 15), from `spec.cluster.registry`,
// whenever a desired state arrives, at start and on every reconcile pass: every node trusts the CA
// (certs.d), the manager with `serve` runs the berth-managed registry. Idempotent and cheap when
// nothing changed (a file compare and one container inspect). Secrets are never logged.
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Logger } from '../../../shared/logger.js';
import type { ClusterSpec } from '../../../shared/spec.js';
import { oneLine, SerialQueue } from '../../../shared/util/index.js';
import { installCa } from './trust.js';
import { ContainerRunner, HostRunner, type RegistryRunner } from './serve.js';

export { pruneRepository, type PruneReport, type RegistryAccess } from './retention.js';
export { ContainerRunner, HostRunner, type RegistryRunner } from './serve.js';

export interface RegistrySettings {
  dataDir: string;
  server: string;
  registryRunner: 'container' | 'host';
  registryImage: string;
  dockerCertsDir: string;
}

/** The runner the agent's settings choose; the container runner keeps its files under DATA/registry. */
export function registryRunnerFor(settings: RegistrySettings, docker: Docker): RegistryRunner {
  return settings.registryRunner === 'host'
    ? new HostRunner()
    : new ContainerRunner({ docker, hostConfDir: join(settings.dataDir, 'registry'), image: settings.registryImage, server: settings.server });
}

export class RegistryKeeper {
  readonly runner: RegistryRunner;
  private readonly queue = new SerialQueue();
  private pending = false;
  private latest: ClusterSpec | undefined;
  private lastError = '';

  constructor(
    private readonly settings: RegistrySettings,
    docker: Docker,
    private readonly logger: Logger,
    runner?: RegistryRunner,
  ) {
    this.runner = runner ?? registryRunnerFor(settings, docker);
  }

  /** Bring trust and the registry in line with `cluster` (coalesced: at most one run queued, with the latest spec). */
  apply(cluster: ClusterSpec | undefined): Promise<void> {
    if (!cluster?.registry) return Promise.resolve();
    this.latest = cluster;
    if (this.pending) return Promise.resolve();
    this.pending = true;
    return this.queue.run(async () => {
      this.pending = false;
      const spec = this.latest!;
      await this.applyNow(spec).catch((err: unknown) => {
        const error = oneLine(err);
        // Logged when it changes: a registry image that cannot be pulled is not repeated every pass.
        if (error !== this.lastError) this.logger.warn({ cluster: spec.name, error }, 'could not set up the cluster registry');
        this.lastError = error;
      });
    });
  }

  private async applyNow(cluster: ClusterSpec): Promise<void> {
    const reg = cluster.registry!;
    if (reg.caPem && installCa(this.settings.dockerCertsDir, reg.address, reg.caPem)) {
      this.logger.info({ cluster: cluster.name, address: reg.address }, 'registry CA installed for Docker');
    }
    if (cluster.role !== 'manager' || !reg.serve) return;
    const result = await this.runner.ensure(cluster.name, reg.serve);
    if (result !== 'unchanged') this.logger.info({ cluster: cluster.name, address: reg.address, runner: this.runner.kind, result }, 'cluster registry running');
    this.lastError = '';
  }
}
