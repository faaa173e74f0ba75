// DATA/apps/APP/stack.yml on the cluster's manager: what runs for a cluster app, as a Compose v3
// file `docker stack deploy -c stack.yml NAME` takes, written after every switch (deploy, rollback,
// scale) — what docker-compose.yml is for a standalone app (agent/docker/compose-file.ts). It is
// rendered from the Swarm service specs the deploy created, so it says exactly what runs: the image
// by digest, replicas, placement, limits, restart policy, dnsrr, the web port in host mode, log
// caps, the app's (external) overlay network and berth's labels. The env (secrets) is never in it:
// it references stack.env next to it (0600, in the docker CLI's env-file format).
import type Docker from 'dockerode';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../shared/util/index.js';
import { appFilesDir } from '../../docker/compose-file.js';
import { LABEL } from '../../docker/labels.js';
import { yaml } from '../../runtime/lazy-yaml.js';

export const STACK_FILE = 'stack.yml';
export const STACK_ENV_FILE = 'stack.env';

export interface StackRelease {
  app: string;
  cluster: string;
  deploymentId: string;
  commit: string | null;
  /** The app's env as its services got it (written to stack.env, never into stack.yml). */
  env: Record<string, string>;
  /** The services of the release, as created. */
  services: readonly Docker.CreateServiceOptions[];
}

const SECOND_NS = 1_000_000_000;
/** Compose interpolates `$VAR` in the file itself: `$$` is a literal dollar. */
const literal = (s: string) => s.replaceAll('$', () => '$$');
const literalValues = (o: Record<string, string> | undefined) => Object.fromEntries(Object.entries(o ?? {}).map(([k, v]) => [k, literal(v)]));
const duration = (ns: number | undefined) => (ns === undefined ? undefined : `${ns / SECOND_NS}s`);

type ContainerSpec = NonNullable<Extract<Docker.TaskSpec, { ContainerSpec?: unknown }>['ContainerSpec']>;

function containerSpecOf(spec: Docker.CreateServiceOptions): ContainerSpec {
  const t = spec.TaskTemplate;
  return (t && 'ContainerSpec' in t ? t.ContainerSpec : undefined) ?? {};
}

/**
 * The docker CLI's env-file format (`docker stack deploy` reads env_file with it): KEY=VALUE, the
 * value taken literally to the end of the line. A value with a line break cannot be written in it:
 * such keys are left out and returned, and stack.yml names them.
 */
export function renderStackEnv(env: Record<string, string>): { text: string; omitted: string[] } {
  const omitted: string[] = [];
  const lines: string[] = [];
  for (const [k, v] of Object.entries(env).sort(([a], [b]) => a.localeCompare(b))) {
    if (/[\n\r\0]/.test(v)) omitted.push(k);
    else lines.push(`${k}=${v}\n`);
  }
  return { text: lines.join(''), omitted };
}

/** Environment entries of a service besides the app's env (the web process's PORT). */
function ownEnvironment(spec: Docker.CreateServiceOptions, appEnv: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of containerSpecOf(spec).Env ?? []) {
    const i = entry.indexOf('=');
    const [k, v] = [entry.slice(0, i), entry.slice(i + 1)];
    if (k === 'PORT' || appEnv[k] !== v) out[k] = literal(v);
  }
  return out;
}

function deploySection(spec: Docker.CreateServiceOptions): Record<string, unknown> {
  const t = spec.TaskTemplate ?? {};
  const limits = t.Resources?.Limits ?? {};
  const restart = t.RestartPolicy ?? {};
  const constraints = t.Placement?.Constraints ?? [];
  const hasLimits = limits.MemoryBytes !== undefined || limits.NanoCPUs !== undefined;
  return {
    mode: 'replicated',
    replicas: spec.Mode?.Replicated?.Replicas ?? 1,
    endpoint_mode: spec.EndpointSpec?.Mode ?? 'vip',
    labels: literalValues(spec.Labels),
    ...(constraints.length > 0 ? { placement: { constraints: [...constraints] } } : {}),
    ...(hasLimits
      ? {
          resources: {
            limits: {
              ...(limits.NanoCPUs !== undefined ? { cpus: String(limits.NanoCPUs / 1e9) } : {}),
              ...(limits.MemoryBytes !== undefined ? { memory: `${limits.MemoryBytes}b` } : {}),
            },
          },
        }
      : {}),
    restart_policy: {
      condition: restart.Condition ?? 'any',
      ...(restart.Delay !== undefined ? { delay: duration(restart.Delay) } : {}),
      ...(restart.MaxAttempts !== undefined ? { max_attempts: restart.MaxAttempts } : {}),
    },
  };
}

/** One compose service from the Swarm service spec berth created for a process. */
function stackService(spec: Docker.CreateServiceOptions, appEnv: Record<string, string>): Record<string, unknown> {
  const c = containerSpecOf(spec);
  const environment = ownEnvironment(spec, appEnv);
  const ports = (spec.EndpointSpec?.Ports ?? []).map((p) => ({ target: p.TargetPort, protocol: p.Protocol ?? 'tcp', mode: p.PublishMode ?? 'ingress', ...(p.PublishedPort ? { published: p.PublishedPort } : {}) }));
  const networks = Object.fromEntries((spec.TaskTemplate?.Networks ?? []).map((n) => [n.Target, n.Aliases?.length ? { aliases: [...n.Aliases] } : null]));
  const volumes = (c.Mounts ?? []).filter((m) => m.Type === 'volume').map((m) => ({ type: 'volume', source: m.Source, target: literal(m.Target) }));
  const log = spec.TaskTemplate?.LogDriver;
  return {
    image: c.Image,
    ...(c.Args ? { command: c.Args.map(literal) } : {}),
    env_file: [STACK_ENV_FILE],
    ...(Object.keys(environment).length > 0 ? { environment } : {}),
    ...(c.Init ? { init: true } : {}),
    ...(c.StopGracePeriod !== undefined ? { stop_grace_period: duration(c.StopGracePeriod) } : {}),
    labels: literalValues(c.Labels),
    deploy: deploySection(spec),
    ...(ports.length > 0 ? { ports } : {}),
    networks,
    ...(volumes.length > 0 ? { volumes } : {}),
    ...(log?.Name ? { logging: { driver: log.Name, options: { ...(log.Options ?? {}) } } } : {}),
  };
}

/** The stack document (pure). Services are keyed by process name (their alias on the app's network). */
export function stackDocument(r: StackRelease): Record<string, unknown> {
  const services: Record<string, unknown> = {};
  const networks = new Set<string>();
  const volumes = new Set<string>();
  for (const spec of r.services) {
    const process = spec.Labels?.[LABEL.process] ?? spec.Name ?? 'service';
    services[process] = stackService(spec, r.env);
    for (const n of spec.TaskTemplate?.Networks ?? []) if (n.Target) networks.add(n.Target);
    for (const m of containerSpecOf(spec).Mounts ?? []) if (m.Type === 'volume' && m.Source) volumes.add(m.Source);
  }
  return {
    version: '3.8',
    'x-berth': { app: r.app, cluster: r.cluster, deployment: r.deploymentId, commit: r.commit },
    services,
    ...(networks.size > 0 ? { networks: Object.fromEntries([...networks].sort().map((n) => [n, { external: true }])) } : {}),
    ...(volumes.size > 0 ? { volumes: Object.fromEntries([...volumes].sort().map((v) => [v, { external: true }])) } : {}),
  };
}

export function renderStack(r: StackRelease, omittedEnv: readonly string[] = []): string {
  const head = [
    `# What berth runs for cluster app ${r.app} on cluster ${r.cluster}: release ${r.deploymentId}${r.commit ? ` (commit ${r.commit})` : ''}.`,
    '# Written by the manager\'s berth agent after every deploy, rollback and scale; edits are overwritten.',
    `# The env (secrets) is in ${STACK_ENV_FILE} next to this file, never here.`,
    ...(omittedEnv.length > 0 ? [`# Not in ${STACK_ENV_FILE} (a value with a line break cannot be written there): ${omittedEnv.join(', ')}.`] : []),
    `# Elsewhere: docker stack deploy -c ${STACK_FILE} ${r.app}  (on a swarm where the external overlay network exists)`,
    '',
  ].join('\n');
  // YAML 1.1 quoting: strings such as "no" or "on-failure" stay strings for every reader.
  return head + yaml().stringify(stackDocument(r), { lineWidth: 0, version: '1.1', aliasDuplicateObjects: false });
}

/** Write DATA/apps/APP/stack.env (0600) then stack.yml (0600) in a 0700 directory. */
export async function writeStackFiles(dataDir: string, r: StackRelease): Promise<{ stackFile: string; envFile: string }> {
  const dir = appFilesDir(dataDir, r.app);
  await mkdir(join(dataDir, 'apps'), { recursive: true, mode: 0o700 });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const envFile = join(dir, STACK_ENV_FILE);
  const stackFile = join(dir, STACK_FILE);
  const env = renderStackEnv(r.env);
  // The env first: the stack file never references an env file that is not there yet.
  writeFileAtomic(envFile, env.text, 0o600);
  writeFileAtomic(stackFile, renderStack(r, env.omitted), 0o600);
  return { stackFile, envFile };
}
