// Agent settings from the environment (PRODUCT.md "Agent settings"), validated up front so a typo
// in a unit file fails at start with the variable's name instead of misbehaving mid-deploy.
import { resolve } from 'node:path';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { formatMemory, MAX_MEMORY, MIN_MEMORY, parseMemorySize } from './docker/limits.js';

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
  /** Caps of a build (and its build and release commands), per app overridable in berth.yml; null = none. */
  buildMemory: number | null;
  buildCpus: number | null;
  /** This agent's server name (from its credentials; '' before joining): scopes the Docker objects it owns. */
  server: string;
  /** Heartbeat interval to the control plane; a link silent for 3 of them is declared dead. */
  heartbeatMs: number;
  /** Cap of the jittered exponential reconnect backoff. */
  reconnectMaxMs: number;
  /** Base images of the generated Dockerfiles; "{version}" is replaced by the version the app asks for. */
  baseImagePython: string;
  baseImageNode: string;
  baseImageRuby: string;
  /** Where static sites are published (one directory per release); must be world-traversable for nginx. */
  staticDir: string;
  /** Ceiling for a release command (and a build command), in ms. */
  releaseTimeoutMs: number;
  /** Good releases kept (images, static dirs, snapshots; the live one included) for rollback without a rebuild. */
  keepReleases: number;
  /** On a cluster's nodes: how often unused berth images of the cluster's registry are looked for (and how long one stays unused before it goes). */
  imagePruneIntervalMs: number;
  /** Per-phase deadlines of a deploy (ms); releasing uses releaseTimeoutMs, health_checking the health budget. */
  fetchTimeoutMs: number;
  buildTimeoutMs: number;
  startTimeoutMs: number;
  switchTimeoutMs: number;
  /** Pause between two HTTP health probes of a new web container (healthcheck.interval overrides it). */
  healthIntervalMs: number;
  /** A deploy fails before building when less than this is free where Docker and berth keep their data. */
  minFreeDiskMb: number;
  /** ACME directory URL (default Let's Encrypt production). */
  acmeDirectory: string;
  /** Extra CA file to trust for the ACME server (tests, private CAs). */
  acmeCa?: string;
  /** Contact e-mail of the ACME account. */
  acmeEmail?: string;
  /** Skip berth's own HTTP pre-check of a challenge before the CA validates it. */
  acmeSkipPrecheck: boolean;
  /** Served by nginx at /.well-known/acme-challenge/ on every host; world-traversable (outside the 0700 data dir). */
  acmeWebroot: string;
  /** Renew a certificate when it has less than this many days left (decimals allowed). */
  certRenewDays: number;
  /** After a successful issuance, no "expiring" renewal of the same app for this long (guards against a renewal loop). */
  certMinRenewIntervalMs: number;
  /** Cluster registry on a manager (issue 15): a Docker container (default) or Debian's docker-registry as a host service. */
  registryRunner: 'container' | 'host';
  /** Image of the registry container (container runner). */
  registryImage: string;
  /** Where Docker reads per-registry CAs (certs.d/HOST:PORT/ca.crt). */
  dockerCertsDir: string;
}

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

// "0" (or "none") turns a cap off; otherwise Docker sizes ("2g") / a number of CPUs.
const memoryCap = z
  .string()
  .trim()
  .transform((v, ctx) => {
    if (v === '0' || v.toLowerCase() === 'none') return null;
    const bytes = parseMemorySize(v);
    if (bytes === null || bytes < MIN_MEMORY || bytes > MAX_MEMORY) {
      ctx.addIssue({ code: 'custom', message: `must be a memory size between ${formatMemory(MIN_MEMORY)} and 1024 GB like 2g or 512m (or 0 for no cap)` });
      return z.NEVER;
    }
    return bytes;
  });
const cpuCap = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?$/, 'must be a number of CPUs like 1.5 (or 0 for no cap)')
  .transform(Number)
  .pipe(z.number().max(256, 'must be at most 256'))
  .transform((n) => (n === 0 ? null : n));
/** Leave half a core to the agent, nginx and the running apps (at least one CPU for the build). */
const DEFAULT_BUILD_CPUS = String(Math.max(1, availableParallelism() - 0.5));

const path = z.string().trim().min(1, 'must not be empty');
const bool = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^(1|0|true|false|yes|no)$/, 'must be 1/0, true/false or yes/no')
  .transform((v) => v === '1' || v === 'true' || v === 'yes');
const days = z
  .string()
  .trim()
  .regex(/^\d+(\.\d+)?$/, 'must be a number of days like 30 or 0.5')
  .transform(Number)
  .pipe(z.number().gt(0, 'must be more than 0').max(365, 'must be at most 365'));
const url = z
  .string()
  .trim()
  .refine((u) => {
    try {
      return ['https:', 'http:'].includes(new URL(u).protocol);
    } catch {
      return false;
    }
  }, 'must be an https:// URL');
const email = z.string().trim().regex(/^[^\s@<>()",;:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/, 'must be an e-mail address like ops@example.com');
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

const PLAIN_PATH_RE = /^\/[A-Za-z0-9._\/-]*$/;

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
  BERTH_BUILD_MEMORY: ['buildMemory', memoryCap, '2g'],
  BERTH_BUILD_CPUS: ['buildCpus', cpuCap, DEFAULT_BUILD_CPUS],
  BERTH_HEARTBEAT_MS: ['heartbeatMs', int(100, 600_000), '10000'],
  BERTH_RECONNECT_MAX_MS: ['reconnectMaxMs', int(100, 600_000), '30000'],
  BERTH_BASE_IMAGE_PYTHON: ['baseImagePython', image, 'python:3.12-slim'],
  BERTH_BASE_IMAGE_NODE: ['baseImageNode', image, 'node:20-slim'],
  BERTH_BASE_IMAGE_RUBY: ['baseImageRuby', image, 'ruby:3.3-slim'],
  // Outside BERTH_DATA on purpose: the data dir is private (0700), nginx workers must read these.
  BERTH_STATIC_DIR: ['staticDir', webPath, '/var/lib/berth-static'],
  BERTH_RELEASE_TIMEOUT_S: ['releaseTimeoutMs', int(1, 86_400).transform((s) => s * 1000), '1800'],
  BERTH_KEEP_RELEASES: ['keepReleases', int(1, 100), '5'],
  BERTH_IMAGE_PRUNE_INTERVAL_MS: ['imagePruneIntervalMs', int(1_000, 86_400_000), '600000'],
  BERTH_FETCH_TIMEOUT_S: ['fetchTimeoutMs', int(1, 86_400).transform((s) => s * 1000), '600'],
  BERTH_BUILD_TIMEOUT_S: ['buildTimeoutMs', int(1, 86_400).transform((s) => s * 1000), '3600'],
  BERTH_START_TIMEOUT_S: ['startTimeoutMs', int(1, 86_400).transform((s) => s * 1000), '300'],
  BERTH_SWITCH_TIMEOUT_S: ['switchTimeoutMs', int(1, 86_400).transform((s) => s * 1000), '120'],
  BERTH_HEALTH_INTERVAL_MS: ['healthIntervalMs', int(50, 60_000), '1000'],
  BERTH_MIN_FREE_DISK_MB: ['minFreeDiskMb', int(0, 10_000_000), '1024'],
  BERTH_ACME_DIRECTORY: ['acmeDirectory', url, 'https://acme-v02.api.letsencrypt.org/directory'],
  BERTH_ACME_CA: ['acmeCa', path, undefined],
  BERTH_ACME_EMAIL: ['acmeEmail', email, undefined],
  BERTH_ACME_SKIP_PRECHECK: ['acmeSkipPrecheck', bool, '0'],
  // Outside BERTH_DATA for the same reason as BERTH_STATIC_DIR: nginx workers (nobody) read the tokens.
  BERTH_ACME_WEBROOT: ['acmeWebroot', webPath, '/var/lib/berth-acme'],
  BERTH_ACME_RENEW_DAYS: ['certRenewDays', days, '30'],
  BERTH_ACME_MIN_RENEW_INTERVAL_S: ['certMinRenewIntervalMs', int(0, 604_800).transform((s) => s * 1000), '3600'],
  BERTH_REGISTRY_RUNNER: ['registryRunner', z.enum(['container', 'host'], { error: 'must be container or host' }), 'container'],
  BERTH_REGISTRY_IMAGE: ['registryImage', image, 'registry:2'],
  BERTH_DOCKER_CERTS_DIR: ['dockerCertsDir', webPath, '/etc/docker/certs.d'],
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
  if (settings.acmeCa !== undefined) settings.acmeCa = resolve(settings.acmeCa);
  // Certificate paths (DATA/certs/APP/…) are written into nginx config unquoted.
  if (settings.httpsPort > 0 && !PLAIN_PATH_RE.test(settings.dataDir)) {
    throw new SettingsError(`invalid BERTH_DATA=${JSON.stringify(settings.dataDir)}: with HTTPS on it must be a path of letters, digits and "._/-" (certificate paths go into the nginx config); or set BERTH_HTTPS_PORT=0`);
  }
  if (settings.httpsPort > 0 && settings.httpsPort === settings.httpPort) {
    throw new SettingsError(`invalid BERTH_HTTPS_PORT=${settings.httpsPort}: must differ from BERTH_HTTP_PORT`);
  }
  return settings;
}
