// The health_checking phase of a deploy: the gate every new release passes before it is routed.
// web answers on its port (or the configured HTTP path) and stays up; every other process stays up
// for the stable period.
import type Docker from 'dockerode';
import type { AppConfig } from '../config/index.js';
import type { StartedContainer } from '../docker/containers.js';
import { waitHealthy, waitStable } from '../docker/health.js';
import type { DeployRun } from './deploy-run.js';

/** health_checking: the started containers pass the gate (nothing to check when none started). */
export async function healthPhase(run: DeployRun, config: AppConfig, domains: string[]): Promise<void> {
  const { docker, settings } = run.deps;
  run.healthBudgetMs = healthBudgetMs({ healthcheck: config.healthcheck, timeoutMs: settings.healthTimeoutMs, stableMs: settings.healthStableMs });
  await run.runPhase('health_checking', {}, async (signal) => {
    if (run.started.length === 0) return;
    await checkHealth(docker, run.started, {
      healthcheck: config.healthcheck,
      timeoutMs: settings.healthTimeoutMs,
      stableMs: settings.healthStableMs,
      intervalMs: settings.healthIntervalMs,
      domains,
      log: (l) => run.stream.system(l),
      signal,
    });
    run.stream.system('health check passed');
  });
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
