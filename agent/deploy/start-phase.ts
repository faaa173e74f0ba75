// Starting a release's processes (web replicas published for nginx, the others without ports) and
// gating on their health: web answers on its port (or the configured HTTP path) and stays up; every
// other process stays up for the stable period.
import type Docker from 'dockerode';
import type { AppConfig } from '../config/index.js';
import { startProcessContainer, type StartedContainer } from '../docker/containers.js';
import { waitHealthy, waitStable } from '../docker/health.js';
import type { ReleaseProcess } from '../store/index.js';

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

export interface HealthOptions {
  healthcheck: AppConfig['healthcheck'];
  /** Budget without a healthcheck in the config (BERTH_HEALTH_TIMEOUT_MS). */
  timeoutMs: number;
  stableMs: number;
  /** Default pause between HTTP probes (BERTH_HEALTH_INTERVAL_MS). */
  intervalMs: number;
  /** The app's domains: the first is the Host header of HTTP probes, as nginx would send it. */
  domains: string[];
  log: (line: string) => void;
  signal: AbortSignal;
}

/** The health gate's whole budget: what the health_checking phase's deadline is derived from. */
export function healthBudgetMs(o: Pick<HealthOptions, 'healthcheck' | 'timeoutMs' | 'stableMs'>): number {
  return (o.healthcheck ? o.healthcheck.timeoutS * 1000 : o.timeoutMs) + o.stableMs;
}

export async function checkHealth(docker: Docker, started: StartedContainer[], o: HealthOptions): Promise<void> {
  const timeoutMs = o.healthcheck ? o.healthcheck.timeoutS * 1000 : o.timeoutMs;
  const hc = o.healthcheck;
  await Promise.all(
    started.map((c) =>
      c.process === 'web'
        ? waitHealthy(docker, {
            containerId: c.id,
            hostPort: c.hostPort,
            timeoutMs,
            stableMs: o.stableMs,
            log: o.log,
            signal: o.signal,
            ...(hc
              ? {
                  httpPath: hc.path,
                  intervalMs: hc.intervalS !== undefined ? Math.round(hc.intervalS * 1000) : o.intervalMs,
                  ...(hc.attempts !== undefined ? { attempts: hc.attempts } : {}),
                  ...(o.domains[0] ? { host: o.domains[0] } : {}),
                }
              : {}),
          })
        : waitStable(docker, { containerId: c.id, name: c.name, stableMs: o.stableMs, timeoutMs, signal: o.signal }).then(() =>
            o.log(`${c.name} is running`),
          ),
    ),
  );
}
