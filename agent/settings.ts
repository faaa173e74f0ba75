// Agent settings from the environment (PRODUCT.md "Agent settings"), validated up front so a typo
// in a unit file fails at start with the variable's name instead of misbehaving mid-deploy.
import { resolve } from 'node:path';
import { z } from 'zod';

export class SettingsError extends Error {
  override name = 'SettingsError';
}

export interface AgentSettings {
  dataDir: string;
  dockerSocket: string;
  /** Set: berth runs its own nginx under this prefix. Unset: the system nginx in /etc/nginx. */
  nginxPrefix?: string;
  httpPort: number;
  /** 0 = no HTTPS listener. */
  httpsPort: number;
  healthTimeoutMs: number;
  healthStableMs: number;
  drainMs: number;
  stopGraceS: number;
  reconcileIntervalMs: number;
  buildConcurrency: number;
  /** This agent's server name (from its credentials; '' before joining): scopes the Docker objects it owns. */
  server: string;
}

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const path = z.string().trim().min(1, 'must not be empty');

// env var → [settings key, schema, default]
const VARS = {
  BERTH_DATA: ['dataDir', path, '/var/lib/berth'],
  BERTH_DOCKER_SOCKET: ['dockerSocket', path, '/var/run/docker.sock'],
  BERTH_NGINX_PREFIX: ['nginxPrefix', path, undefined],
  BERTH_HTTP_PORT: ['httpPort', int(1, 65_535), '80'],
  BERTH_HTTPS_PORT: ['httpsPort', int(0, 65_535), '443'],
  BERTH_HEALTH_TIMEOUT_MS: ['healthTimeoutMs', int(100, 3_600_000), '30000'],
  BERTH_HEALTH_STABLE_MS: ['healthStableMs', int(0, 600_000), '3000'],
  BERTH_DRAIN_MS: ['drainMs', int(0, 3_600_000), '10000'],
  BERTH_STOP_GRACE_S: ['stopGraceS', int(0, 3_600), '10'],
  BERTH_RECONCILE_INTERVAL_MS: ['reconcileIntervalMs', int(1_000, 86_400_000), '30000'],
  BERTH_BUILD_CONCURRENCY: ['buildConcurrency', int(1, 64), '1'],
} as const;

/** Read settings from `env`; `dataDir` (from `--data`) wins over BERTH_DATA. Throws SettingsError naming the variable. */
export function loadSettings(opts: { dataDir?: string } = {}, env: NodeJS.ProcessEnv = process.env): AgentSettings {
  const out: Record<string, unknown> = {};
  for (const [name, [key, schema, fallback]] of Object.entries(VARS)) {
    const raw = env[name];
    // An empty variable means "unset", as in a unit file's `Environment=BERTH_NGINX_PREFIX=`.
    const value = raw === undefined || raw === '' ? fallback : raw;
    if (value === undefined) continue;
    const parsed = (schema as z.ZodType<unknown, string>).safeParse(value);
    if (!parsed.success) {
      throw new SettingsError(`invalid ${name}=${JSON.stringify(raw)}: ${parsed.error.issues[0]?.message ?? 'invalid value'}`);
    }
    out[key] = parsed.data;
  }
  if (opts.dataDir !== undefined) {
    if (opts.dataDir.trim() === '') throw new SettingsError('invalid --data: must not be empty');
    out.dataDir = opts.dataDir;
  }
  const settings = out as unknown as AgentSettings;
  settings.server = '';
  settings.dataDir = resolve(settings.dataDir);
  if (settings.nginxPrefix !== undefined) settings.nginxPrefix = resolve(settings.nginxPrefix);
  return settings;
}
