// DATA/apps/APP/docker-compose.yml: what runs for the app, written after every deploy and rollback
// (and again when the reconciler re-creates a container), so a user can read it or take the app
// elsewhere with `docker compose up`. The env (secrets) is never in it: it references app.env
// next to it (0600, the directory 0700). Both files are replaced atomically (temp file + rename).
import { readdirSync } from 'node:fs';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { yaml } from '../runtime/lazy-yaml.js';
import { writeFileAtomic } from '../../shared/util/index.js';
import { appName } from '../../shared/validation.js';
import { berthLabels, LABEL } from './labels.js';
import { JOB_LOG_OPTIONS, PROCESS_LOG_OPTIONS, PROCESS_RESTART_POLICY, shellCommand } from './container-spec.js';
import { processLabels } from './containers.js';
import type { ReleaseProcess } from '../store/releases.js';
import { volumeDockerName, volumeLabels, type VolumeConfig } from './volumes.js';

export class ComposeError extends Error {
  override name = 'ComposeError';
}

export const COMPOSE_FILE = 'docker-compose.yml';
export const ENV_FILE = 'app.env';

/** DATA/apps/APP (the name is validated: it becomes a path). */
export function appFilesDir(dataDir: string, app: string): string {
  if (!appName.safeParse(app).success) throw new ComposeError(`invalid app name "${app}"`);
  return join(dataDir, 'apps', app);
}

/** What the compose file is rendered from: the live release and where its web replicas are published. */
export interface ComposeRelease {
  app: string;
  /** The owning server (berth.server label), when the agent has one. */
  server?: string;
  deploymentId: string;
  commit: string | null;
  /** '' for a static site (no containers). */
  image: string;
  processes: ReleaseProcess[];
  /** The port web listens on in its container ($PORT). */
  containerPort: number | null;
  staticRoot: string | null;
  volumes: VolumeConfig;
  /** The release command (not running: a service in the "release" profile, run with `docker compose run`). */
  releaseCommand: string | null;
  /** Published loopback port of each web replica (1-based). */
  webPorts: ReadonlyMap<number, number>;
}

/** Compose interpolates `$VAR` in the file itself: `$$` is a literal dollar, as the container got it. */
const literal = (s: string) => s.replaceAll('$', () => '$$');

/** Service name of one container: the process name, then PROCESS-N for further replicas. */
export function composeServiceName(process: string, replica: number): string {
  return replica === 1 ? process : `${process}-${replica}`;
}

type ServiceBase = (labels: Record<string, string>, logOptions?: Record<string, string>) => Record<string, unknown>;

/** What every service has: the image, the env file, init, labels, log caps, the app's volumes. */
function serviceBase(r: ComposeRelease): ServiceBase {
  const mounts = Object.entries(r.volumes).map(([name, v]) => ({ type: 'volume', source: name, target: literal(v.target) }));
  const labelsOf = (labels: Record<string, string>) => Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, literal(v)]));
  return (labels, logOptions = PROCESS_LOG_OPTIONS) => ({
    image: r.image,
    env_file: [ENV_FILE],
    init: true,
    labels: labelsOf(labels),
    logging: { driver: 'json-file', options: { ...logOptions } },
    ...(mounts.length > 0 ? { volumes: mounts.map((m) => ({ ...m })) } : {}),
  });
}

/** One service per process replica, as the container runs (web: PORT and its loopback port). */
function processServices(r: ComposeRelease, base: ServiceBase): Record<string, unknown> {
  const services: Record<string, unknown> = {};
  for (const p of r.processes) {
    for (let replica = 1; replica <= p.scale; replica++) {
      const isWeb = p.name === 'web';
      const port = r.containerPort ?? 8000;
      const hostPort = isWeb ? r.webPorts.get(replica) : undefined;
      services[composeServiceName(p.name, replica)] = {
        ...base(processLabels(r.app, r.deploymentId, p.name, replica, r.server)),
        ...(p.command ? { command: shellCommand(p.command).map(literal) } : {}),
        ...(isWeb ? { environment: { PORT: String(port) } } : {}),
        ...(isWeb && hostPort ? { ports: [{ target: port, host_ip: '127.0.0.1', published: String(hostPort), protocol: 'tcp' }] } : {}),
        restart: PROCESS_RESTART_POLICY,
      };
    }
  }
  return services;
}

/** The release command: a service in the "release" profile, run once per deploy before the processes start. */
function releaseService(r: ComposeRelease, command: string, base: ServiceBase): Record<string, unknown> {
  const labels = berthLabels(r.app, r.deploymentId, {
    [LABEL.process]: 'release',
    ...(r.commit ? { [LABEL.commit]: r.commit } : {}),
    ...(r.server ? { [LABEL.server]: r.server } : {}),
  });
  return {
    ...base(labels, JOB_LOG_OPTIONS),
    command: shellCommand(command).map(literal),
    // `docker compose run --rm release`.
    profiles: ['release'],
    restart: 'no',
  };
}

/** The compose document (pure). Each running container is one service, so ports and labels stay exact. */
export function composeDocument(r: ComposeRelease): Record<string, unknown> {
  const volumes = Object.keys(r.volumes);
  const base = serviceBase(r);
  const runs = r.image && !r.staticRoot;
  const services: Record<string, unknown> = runs ? processServices(r, base) : {};
  if (runs && r.releaseCommand) services.release = releaseService(r, r.releaseCommand, base);
  return {
    name: `berth-${r.app}`,
    'x-berth': {
      app: r.app,
      deployment: r.deploymentId,
      commit: r.commit,
      ...(r.staticRoot ? { static: r.staticRoot } : {}),
    },
    services,
    ...(volumes.length > 0
      ? { volumes: Object.fromEntries(volumes.map((name) => [name, { name: volumeDockerName(r.app, name), labels: volumeLabels(r.app, name, r.server) }])) }
      : {}),
  };
}

export function renderCompose(r: ComposeRelease): string {
  const head = [
    `# What berth runs for app ${r.app}: release ${r.deploymentId}${r.commit ? ` (commit ${r.commit})` : ''}.`,
    '# Written by the berth agent after every deploy and rollback; edits are overwritten.',
    `# The env (secrets) is in ${ENV_FILE} next to this file, never here.`,
    ...(r.staticRoot ? [`# A static site: nginx serves ${r.staticRoot} from disk, no container runs.`] : []),
    '# Elsewhere: docker compose up -d  (the release command: docker compose run --rm release)',
    '',
  ].join('\n');
  // YAML 1.1 quoting: strings such as "no" (restart) or "true" stay strings for every reader.
  return head + yaml().stringify(composeDocument(r), { lineWidth: 0, version: '1.1', aliasDuplicateObjects: false });
}

/**
 * The env as docker compose's env_file reads it: single-quoted values are taken literally (no
 * interpolation, newlines kept). A value with a single quote in it is double-quoted with escapes
 * (compose unescapes \\ \" \n \r and reads $$ as $); compose's parser cannot read back exactly a
 * value that has a single quote and also ends in a backslash or a double quote.
 */
export function renderEnvFile(env: Record<string, string>): string {
  return Object.entries(env)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => {
      if (!v.includes("'")) return `${k}='${v}'\n`;
      const escaped = v.replace(/[\\"\n\r$]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '$' ? '$$' : `\\${c}`));
      return `${k}="${escaped}"\n`;
    })
    .join('');
}

/** Write DATA/apps/APP/app.env (0600) then docker-compose.yml (0600) in a 0700 directory. */
export async function writeAppFiles(dataDir: string, r: ComposeRelease, env: Record<string, string>): Promise<{ composeFile: string; envFile: string }> {
  const dir = appFilesDir(dataDir, r.app);
  try {
    await mkdir(join(dataDir, 'apps'), { recursive: true, mode: 0o700 });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const envFile = join(dir, ENV_FILE);
    const composeFile = join(dir, COMPOSE_FILE);
    // The env first: the compose file never references an env file that is not there yet.
    writeFileAtomic(envFile, renderEnvFile(env), 0o600);
    writeFileAtomic(composeFile, renderCompose(r), 0o600);
    return { composeFile, envFile };
  } catch (err) {
    if (err instanceof ComposeError) throw err;
    throw new ComposeError(`could not write ${join(dir, COMPOSE_FILE)}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The app was removed: its compose file and env file (secrets) go. */
export async function removeAppFiles(dataDir: string, app: string): Promise<void> {
  await rm(appFilesDir(dataDir, app), { recursive: true, force: true });
}

/** Apps that have a DATA/apps/APP directory (for the reconciler's observation). */
export function listAppFileDirs(dataDir: string): string[] {
  try {
    return readdirSync(join(dataDir, 'apps'), { withFileTypes: true })
      .filter((d) => d.isDirectory() && appName.safeParse(d.name).success)
      .map((d) => d.name);
  } catch {
    return [];
  }
}
