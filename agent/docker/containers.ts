// Running app containers: create and start them with berth labels, list, stop and remove them.
// Only containers labelled berth.managed=true are ever listed or removed. (Health gates: health.ts.)
import type Docker from 'dockerode';
import { createServer } from 'node:net';
import { appName, envKey } from '../../shared/validation.js';
import { containerCreateOptions, shellCommand } from './container-spec.js';
import { alreadyGone, dockerMessageOf as messageOf, dockerStatusOf as statusOf } from './errors.js';
import { berthLabels, LABEL } from './labels.js';
import type { ResourceLimits } from './limits.js';
import { bestEffort } from '../../shared/util/index.js';

export class ProcessError extends Error {
  override name = 'ProcessError';
}

export interface StartWebOptions {
  app: string;
  deploymentId: string;
  image: string;
  env: Record<string, string>;
  /** Port the app listens on inside the container; default: the image's first EXPOSEd TCP port, else 8000. */
  port?: number;
  /** Owning server name, written as the berth.server label. */
  server?: string;
  /** Shell command (run with /bin/sh -c); absent/null = the image's own CMD. */
  command?: string | null;
  /** 1-based replica number (scale > 1 runs several containers of a process). */
  replica?: number;
  /** The app's named volumes, mounted read-write (volumes.ts: volumeMounts). */
  volumes?: Docker.MountSettings[];
  /** The process's memory / CPU caps (berth.yml `memory:` / `cpus:`). */
  limits?: Partial<ResourceLimits>;
}

export interface StartProcessOptions extends StartWebOptions {
  /** Process name from the config; only "web" is published and gets PORT. */
  process: string;
}
export interface StartedContainer {
  id: string;
  name: string;
  /** Port published on 127.0.0.1 that nginx proxies to (0 for processes other than web). */
  hostPort: number;
  containerPort: number;
  process: string;
  replica: number;
}

export interface BerthContainer {
  id: string;
  name: string;
  app: string;
  process: string;
  deploymentId: string;
  /** Docker state: created | running | exited | restarting | … */
  state: string;
  hostPort: number | null;
  /** berth.replica (1 when absent: containers from before scale existed). */
  replica?: number;
}

const DEFAULT_PORT = 8000;

export function webContainerName(app: string, deploymentId: string): string {
  return `berth-${app}-web-${deploymentId}`;
}

/** berth-APP-PROCESS-DEPLOYMENT[-N]: the first web container keeps the short name it always had. */
export function processContainerName(app: string, process: string, deploymentId: string, replica = 1): string {
  return process === 'web' && replica === 1 ? webContainerName(app, deploymentId) : `berth-${app}-${process}-${deploymentId}-${replica}`;
}

const PROCESS_NAME_RE = /^[a-z][a-z0-9_-]{0,29}$/;
const DEPLOYMENT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** The labels of one process container. */
export function processLabels(app: string, deploymentId: string, process: string, replica: number, server?: string): Record<string, string> {
  return berthLabels(app, deploymentId, {
    [LABEL.process]: process,
    [LABEL.replica]: String(replica),
    ...(server ? { [LABEL.server]: server } : {}),
  });
}

/** The image's first EXPOSEd TCP port (lowest number), or null. */
function exposedPort(exposed: Record<string, unknown> | undefined): number | null {
  const ports = Object.keys(exposed ?? {})
    .map((k) => /^(\d+)(?:\/tcp)?$/.exec(k))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  return ports[0] ?? null;
}

/**
 * A loopback port that is free right now. The host port is chosen here instead of letting Docker
 * pick one, because Docker re-picks a random port each time the container restarts (crash +
 * restart policy, daemon restart), which would silently break the nginx upstream.
 */
function pickHostPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new ProcessError('no free port on 127.0.0.1'))));
    });
  });
}

/** Create and start the `web` container of a release: PORT set, published on 127.0.0.1, restart unless-stopped. */
export function startWebContainer(docker: Docker, opts: StartWebOptions): Promise<StartedContainer> {
  return startProcessContainer(docker, { ...opts, process: 'web' });
}

/** Names, ids and env keys become container names, labels and env lines: refuse anything else. */
function validateStart(opts: StartProcessOptions, replica: number): void {
  if (!appName.safeParse(opts.app).success) throw new ProcessError(`invalid app name "${opts.app}"`);
  if (!DEPLOYMENT_ID_RE.test(opts.deploymentId)) throw new ProcessError(`invalid deployment id "${opts.deploymentId}"`);
  if (!PROCESS_NAME_RE.test(opts.process)) throw new ProcessError(`invalid process name "${opts.process}"`);
  if (!Number.isInteger(replica) || replica < 1 || replica > 1000) throw new ProcessError(`invalid replica ${replica}`);
  for (const key of Object.keys(opts.env)) {
    if (!envKey.safeParse(key).success) throw new ProcessError(`invalid env key "${key}"`);
  }
}

/** The port the process listens on in its container: the option, else the image's EXPOSE, else 8000. */
function containerPortOf(docker: Docker, opts: StartProcessOptions): Promise<number> {
  return imagePort(docker, opts.image, opts.port);
}

/** The web port of `image` (a local image): `port` when given, else its first EXPOSEd TCP port, else 8000. */
export async function imagePort(docker: Docker, image: string, given: number | undefined): Promise<number> {
  const opts = { image, port: given };
  let imageInfo: Docker.ImageInspectInfo;
  try {
    imageInfo = await docker.getImage(opts.image).inspect();
  } catch (err) {
    if (statusOf(err) === 404) throw new ProcessError(`image ${opts.image} not found`);
    throw new ProcessError(`could not inspect image ${opts.image}: ${messageOf(err)}`);
  }
  const port = opts.port ?? exposedPort(imageInfo.Config?.ExposedPorts) ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ProcessError(`invalid port ${port}`);
  return port;
}

/**
 * Docker's create options of one process container (pure): web gets PORT and, with `hostPort`, its
 * port published on 127.0.0.1.
 */
export function processCreateOptions(opts: StartProcessOptions, containerPort: number, hostPort?: number): Docker.ContainerCreateOptions {
  const replica = opts.replica ?? 1;
  const isWeb = opts.process === 'web';
  return containerCreateOptions({
    kind: 'process',
    name: processContainerName(opts.app, opts.process, opts.deploymentId, replica),
    image: opts.image,
    env: isWeb ? { ...opts.env, PORT: String(containerPort) } : opts.env,
    labels: processLabels(opts.app, opts.deploymentId, opts.process, replica, opts.server),
    ...(opts.command ? { cmd: shellCommand(opts.command) } : {}),
    ...(opts.volumes ? { volumes: opts.volumes } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(isWeb && hostPort !== undefined ? { publish: { containerPort, hostPort } } : {}),
  });
}

/**
 * Create and start one container of a process. `web` gets PORT and a port published on 127.0.0.1;
 * other processes get neither. All restart unless stopped, so they come back after a crash or a
 * Docker restart.
 */
export async function startProcessContainer(docker: Docker, opts: StartProcessOptions): Promise<StartedContainer> {
  const replica = opts.replica ?? 1;
  validateStart(opts, replica);
  const isWeb = opts.process === 'web';
  const containerPort = await containerPortOf(docker, opts);
  const name = processContainerName(opts.app, opts.process, opts.deploymentId, replica);
  const started = { name, containerPort, process: opts.process, replica };
  if (!isWeb) {
    const container = await createReplacing(docker, name, opts, processCreateOptions(opts, containerPort));
    await startOrRemove(container, name);
    return { ...started, id: container.id, hostPort: 0 };
  }
  // A port picked here can be taken before Docker binds it; retry with another one.
  for (let attempt = 1; ; attempt++) {
    const hostPort = await pickHostPort();
    const container = await createReplacing(docker, name, opts, processCreateOptions(opts, containerPort, hostPort));
    try {
      await startOrRemove(container, name);
    } catch (err) {
      if (attempt < 4 && /port is already allocated|address already in use/i.test((err as Error).message)) continue;
      throw err;
    }
    return { ...started, id: container.id, hostPort };
  }
}

/** Start the container; one that fails to start is removed. */
async function startOrRemove(container: Docker.Container, name: string): Promise<void> {
  try {
    await container.start();
  } catch (err) {
    await bestEffort(`removing ${container.id}`, container.remove({ force: true }), { ignore: alreadyGone });
    throw new ProcessError(`could not start ${name}: ${messageOf(err)}`);
  }
}

/** Create the container; a leftover of the same deploy (e.g. a retried start) is replaced. */
async function createReplacing(
  docker: Docker,
  name: string,
  opts: StartWebOptions,
  spec: Docker.ContainerCreateOptions,
): Promise<Docker.Container> {
  try {
    return await docker.createContainer(spec);
  } catch (err) {
    if (statusOf(err) !== 409) throw new ProcessError(`could not create ${name}: ${messageOf(err)}`);
  }
  const existing = docker.getContainer(name);
  const info = await existing.inspect().catch(() => null);
  const labels = info?.Config?.Labels ?? {};
  if (labels[LABEL.managed] !== 'true' || labels[LABEL.app] !== opts.app || labels[LABEL.deployment] !== opts.deploymentId) {
    throw new ProcessError(`a container named ${name} already exists and is not this deploy's`);
  }
  await existing.remove({ force: true }).catch((e) => {
    if (statusOf(e) !== 404) throw new ProcessError(`could not replace ${name}: ${messageOf(e)}`);
  });
  try {
    return await docker.createContainer(spec);
  } catch (err) {
    throw new ProcessError(`could not create ${name}: ${messageOf(err)}`);
  }
}

/** Every container carrying berth.managed=true (optionally only one app's). Never returns foreign containers. */
/** Set by Swarm on a service's task containers: Swarm owns them (a cluster deploy's services), never the standalone code. */
const SWARM_TASK_LABEL = 'com.docker.swarm.task.id';

/**
 * `swarmTasks: false` leaves out Swarm's task containers. Their berth labels come from the image: on
 * a cluster's builder the image is labelled with the builder's name, so without this the builder's
 * reconciler would take the tasks Swarm runs there for an app of its own server that is not in its
 * desired state.
 */
export async function listBerthContainers(docker: Docker, filter: { app?: string; server?: string; swarmTasks?: boolean } = {}): Promise<BerthContainer[]> {
  const labels = [`${LABEL.managed}=true`];
  if (filter.app !== undefined) labels.push(`${LABEL.app}=${filter.app}`);
  if (filter.server) labels.push(`${LABEL.server}=${filter.server}`);
  let list: Docker.ContainerInfo[];
  try {
    list = await docker.listContainers({ all: true, filters: { label: labels } });
  } catch (err) {
    throw new ProcessError(`could not list containers: ${messageOf(err)}`);
  }
  const ours = list.filter(
    (c) =>
      c.Labels?.[LABEL.managed] === 'true' &&
      // Cron runs are one-offs the scheduler owns (and times out); the reconciler never touches them.
      c.Labels?.[LABEL.cron] === undefined &&
      (filter.app === undefined || c.Labels?.[LABEL.app] === filter.app) &&
      (!filter.server || c.Labels?.[LABEL.server] === filter.server) &&
      (filter.swarmTasks !== false || c.Labels?.[SWARM_TASK_LABEL] === undefined),
  );
  return Promise.all(
    ours.map(async (c) => ({
      id: c.Id,
      name: (c.Names?.[0] ?? '').replace(/^\//, ''),
      app: c.Labels[LABEL.app] ?? '',
      process: c.Labels[LABEL.process] ?? '',
      deploymentId: c.Labels[LABEL.deployment] ?? '',
      state: c.State,
      replica: Number(c.Labels[LABEL.replica]) || 1,
      hostPort: c.Ports?.find((p) => p.IP === '127.0.0.1' && p.PublicPort)?.PublicPort ?? (await configuredHostPort(docker, c.Id)),
    })),
  );
}

/**
 * Docker lists no ports for a container that is restarting or stopped; the configured binding
 * (an explicit port, see pickHostPort) is where it will listen again.
 */
async function configuredHostPort(docker: Docker, id: string): Promise<number | null> {
  try {
    const info = await docker.getContainer(id).inspect();
    const bindings = (info.HostConfig?.PortBindings ?? {}) as Record<string, Array<{ HostIp?: string; HostPort?: string }> | null>;
    for (const list of Object.values(bindings)) {
      const port = Number(list?.find((b) => b.HostIp === '127.0.0.1' && Number(b.HostPort) > 0)?.HostPort);
      if (port) return port;
    }
  } catch {
    // removed meanwhile
  }
  return null;
}

/** Stop (SIGTERM, then SIGKILL after graceSeconds) and remove a berth container; a missing container is not an error. */
export async function removeContainer(docker: Docker, id: string, opts: { graceSeconds: number }): Promise<void> {
  const container = docker.getContainer(id);
  let info: Docker.ContainerInspectInfo;
  try {
    info = await container.inspect();
  } catch (err) {
    if (statusOf(err) === 404) return;
    throw new ProcessError(`could not inspect container ${id}: ${messageOf(err)}`);
  }
  // Last line of defence: never stop or remove something berth did not create.
  if (info.Config?.Labels?.[LABEL.managed] !== 'true') throw new ProcessError(`refusing to remove ${id}: not a berth container`);
  try {
    await container.stop({ t: Math.max(0, Math.round(opts.graceSeconds)) });
  } catch (err) {
    const code = statusOf(err);
    if (code === 404) return;
    if (code !== 304) throw new ProcessError(`could not stop container ${id}: ${messageOf(err)}`); // 304: already stopped
  }
  try {
    await container.remove({ force: true });
  } catch (err) {
    const code = statusOf(err);
    // 409 "removal already in progress" ends the same way.
    if (code !== 404 && !(code === 409 && /already in progress/i.test(messageOf(err)))) {
      throw new ProcessError(`could not remove container ${id}: ${messageOf(err)}`);
    }
  }
}
