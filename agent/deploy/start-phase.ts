// The starting phase of a deploy: a release's processes (web replicas published for nginx, the
// others without ports), each journaled as soon as it exists so a failure can remove it.
import type Docker from 'dockerode';
import type { AppConfig } from '../config/index.js';
import { startProcessContainer, type StartedContainer } from '../docker/containers.js';
import type { ReleaseProcess } from '../store/index.js';
import { ensureVolumes, volumeMounts } from '../docker/volumes.js';
import type { DeployRun } from './deploy-run.js';
import type { Prepared } from './prepare.js';

export interface StartPhaseOptions {
  app: string;
  deploymentId: string;
  image: string;
  env: Record<string, string>;
  port: number | undefined;
  processes: ReleaseProcess[];
  /** The app's named volumes, mounted in every container. */
  volumes?: Docker.MountSettings[];
  server: string;
  /** Called with each container as soon as it exists, so a failure can remove it. */
  onStarted: (c: StartedContainer) => void;
  log: (line: string) => void;
  /** The starting phase's signal: checked before each container. */
  signal?: AbortSignal;
}

/** The config's processes in start order: web first, then the others by name. */
export function releaseProcesses(config: AppConfig): ReleaseProcess[] {
  return Object.entries(config.processes)
    .map(([name, p]) => ({ name, command: p.command, scale: p.scale, ...(p.memory ? { memory: p.memory } : {}), ...(p.cpus ? { cpus: p.cpus } : {}) }))
    .sort((a, b) => (a.name === 'web' ? -1 : b.name === 'web' ? 1 : a.name.localeCompare(b.name)));
}

export async function startProcesses(docker: Docker, o: StartPhaseOptions): Promise<StartedContainer[]> {
  const started: StartedContainer[] = [];
  for (const p of o.processes) {
    for (let replica = 1; replica <= p.scale; replica++) {
      o.signal?.throwIfAborted();
      const c = await startProcessContainer(docker, {
        app: o.app,
        deploymentId: o.deploymentId,
        image: o.image,
        env: o.env,
        process: p.name,
        replica,
        command: p.command,
        port: o.port,
        server: o.server || undefined,
        ...(o.volumes && o.volumes.length > 0 ? { volumes: o.volumes } : {}),
        limits: { memory: p.memory ?? null, cpus: p.cpus ?? null },
      });
      o.onStarted(c);
      started.push(c);
      o.log(
        p.name === 'web'
          ? `started ${c.name} (port ${c.containerPort}, published on 127.0.0.1:${c.hostPort})`
          : `started ${c.name}`,
      );
    }
  }
  return started;
}

/** starting: every process of the release (none for a static site or a release scaled to zero). */
export function startPhase(run: DeployRun, prepared: Prepared, processes: ReleaseProcess[]): Promise<void> {
  const { docker, store, settings } = run.deps;
  const { app, id, stream } = run;
  const { image, config } = prepared;
  return run.runPhase('starting', image ? { image } : {}, async (signal) => {
    if (image && processes.some((p) => p.scale > 0)) {
      // Existing volumes keep their data (a rollback's config may name one the newer release dropped).
      await ensureVolumes(docker, app, config.volumes, settings.server || undefined);
      await startProcesses(docker, {
        app,
        deploymentId: id,
        image,
        env: run.env,
        port: prepared.port,
        processes,
        volumes: volumeMounts(app, config.volumes),
        server: settings.server,
        onStarted: (c) => {
          run.started.push(c);
          if (c.process === 'web' && c.replica === 1) store.deploys.update(id, { containerId: c.id, hostPort: c.hostPort, containerPort: c.containerPort });
        },
        log: (l) => stream.system(l),
        signal,
      });
    } else if (!prepared.staticRoot) {
      stream.system('no processes to start');
    }
  });
}
