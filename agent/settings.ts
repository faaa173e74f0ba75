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
  /** Base images of the generated Dockerfiles; "{version}" is replaced by the version the app asks for. */
  baseImagePython: string;
  baseImageNode: string;
  baseImageRuby: string;
  /** Where static sites are published (one directory per release); must be world-traversable for nginx. */
  staticDir: string;
  /** Ceiling for a release command (and a build command), in ms. */
  releaseTimeoutMs: number;
  /** Static-site releases kept on disk (the live one included) for rollback. */
  keepReleases: number;
}

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

const path = z.string().trim().min(1, 'must not be empty');
// Written into a generated Dockerfile's FROM line: a plain image reference, nothing else.
const image = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._\/:@{}-]{0,254}$/, 'must be an image reference like python:3.12-slim (letters, digits, "._/:@-", "{version}")');
// Written into nginx config as a `root`: plain path characters only.
const webPath = z
  .string()
  .trim()
  .regex(/^\/[A-Za-z0-9._\/-]*$/, 'must be an absolute path of letters, digits and "._/-"')
  .refine((p) => p !== '/' && !p.split('/').includes('..'), 'must not be "/" or contain ".."');

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
  BERTH_BASE_IMAGE_PYTHON: ['baseImagePython', image, 'python:3.12-slim'],
  BERTH_BASE_IMAGE_NODE: ['baseImageNode', image, 'node:20-slim'],
  BERTH_BASE_IMAGE_RUBY: ['baseImageRuby', image, 'ruby:3.3-slim'],
  // Outside BERTH_DATA on purpose: the data dir is private (0700), nginx workers must read these.
  BERTH_STATIC_DIR: ['staticDir', webPath, '/var/lib/berth-static'],
  BERTH_RELEASE_TIMEOUT_S: ['releaseTimeoutMs', int(1, 86_400).transform((s) => s * 1000), '1800'],
  BERTH_KEEP_RELEASES: ['keepReleases', int(1, 100), '5'],
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
