// berth.yml: the native config file. Every key is optional; unknown keys are errors, so a typo
// fails the deploy with the key named instead of being silently ignored.
import { z } from 'zod';
import { buildImage, command, cpus, cronJob, memory, distinctTargets, healthPath, imagePath, parseConfig, port, processName, repoPath, scale, volumeName, volumeTarget } from './fields.js';
import { AppConfigError, DEFAULT_CRON_TIMEOUT_S, type BuildImage, type CronJobConfig, type ProcessConfig } from './types.js';

// `web: cmd` is short for `web: { command: cmd }`; normalising first keeps errors about the inner key.
const processEntry = z.preprocess(
  (v) => (typeof v === 'string' ? { command: v } : v),
  z.strictObject(
    { command, scale: scale.default(1), memory: memory.optional(), cpus: cpus.optional() },
    { error: 'expected a command, or a mapping with "command" and optional "scale", "memory", "cpus"' },
  ),
);

export const berthYmlSchema = z.strictObject(
  {
    build: z
      .strictObject({
        image: buildImage.optional(),
        command: command.optional(),
        dockerfile: repoPath.optional(),
        context: repoPath.optional(),
        static: imagePath.optional(),
        port: port.optional(),
        memory: memory.optional(),
        cpus: cpus.optional(),
        // Monorepos: read by appRoot() from the repository root's berth.yml, alone there.
        root: repoPath.optional(),
      })
      .optional(),
    release: command.optional(),
    processes: z.record(processName, processEntry).optional(),
    healthcheck: z
      .strictObject({
        path: healthPath.default('/'),
        timeout: z.number({ error: 'expected seconds (a number)' }).int('expected whole seconds').min(1, 'expected 1 to 3600 seconds').max(3600, 'expected 1 to 3600 seconds').default(30),
        interval: z.number({ error: 'expected seconds (a number)' }).min(0.05, 'expected 0.05 to 60 seconds').max(60, 'expected 0.05 to 60 seconds').optional(),
        attempts: z.number({ error: 'expected a number of probes' }).int('expected a whole number').min(1, 'expected 1 to 10000').max(10_000, 'expected 1 to 10000').optional(),
      })
      .optional(),
    cron: z.record(processName, cronJob).optional(),
    volumes: z.record(volumeName, z.strictObject({ target: volumeTarget })).superRefine(distinctTargets).optional(),
  },
  { error: 'expected a mapping of keys (build, release, processes, healthcheck, cron, volumes)' },
);

export interface PartialConfig {
  image?: BuildImage;
  command?: string;
  dockerfile?: string;
  context?: string;
  static?: string;
  port?: number;
  memory?: number;
  cpus?: number;
  release?: string;
  processes?: Record<string, ProcessConfig>;
  healthcheck?: { path: string; timeoutS: number; intervalS?: number; attempts?: number };
  cron?: Record<string, CronJobConfig>;
  volumes?: Record<string, { target: string }>;
}

/** A parsed cron entry with its defaults filled in. */
export function cronJobConfig(j: { schedule: string; command: string; timezone?: string; timeout?: number }): CronJobConfig {
  return { schedule: j.schedule, command: j.command, timezone: j.timezone ?? null, timeoutS: j.timeout ?? DEFAULT_CRON_TIMEOUT_S };
}

export function parseBerthYml(data: unknown, file = 'berth.yml'): PartialConfig {
  const c = parseConfig(berthYmlSchema, data ?? {}, file);
  const processes = c.processes
    ? Object.fromEntries(Object.entries(c.processes).map(([name, p]) => [
        name,
        { command: p.command, scale: p.scale, ...(p.memory !== undefined ? { memory: p.memory } : {}), ...(p.cpus !== undefined ? { cpus: p.cpus } : {}) },
      ]))
    : undefined;
  const { root, ...build } = c.build ?? {};
  if (root !== undefined) throw new AppConfigError(`${file}: key "build.root": moves the app to a subdirectory, so it is only read from the berth.yml at the repository root, alone`);
  return {
    ...build,
    ...(c.release !== undefined ? { release: c.release } : {}),
    ...(processes ? { processes } : {}),
    ...(c.healthcheck
      ? {
          healthcheck: {
            path: c.healthcheck.path,
            timeoutS: c.healthcheck.timeout,
            ...(c.healthcheck.interval !== undefined ? { intervalS: c.healthcheck.interval } : {}),
            ...(c.healthcheck.attempts !== undefined ? { attempts: c.healthcheck.attempts } : {}),
          },
        }
      : {}),
    ...(c.cron ? { cron: Object.fromEntries(Object.entries(c.cron).map(([name, j]) => [name, cronJobConfig(j)])) } : {}),
    ...(c.volumes ? { volumes: c.volumes } : {}),
  };
}
