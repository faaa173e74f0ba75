// Running app containers: create/start with berth labels, health-gate them, list, stop and remove.
// Only containers labelled berth.managed=true are ever listed or removed.
import type Docker from 'dockerode';
import { request as httpRequest } from 'node:http';
import { connect, createServer } from 'node:net';
import { berthLabels, LABEL } from './labels.js';
import { appName, envKey } from '../../shared/validation.js';
import { dockerMessageOf as messageOf, dockerStatusOf as statusOf } from './errors.js';
import { hostConfigLimits, outOfMemory, wasOomKilled, type ResourceLimits } from './limits.js';

export class ProcessError extends Error {
  override name = 'ProcessError';
}
export class HealthCheckError extends Error {
  override name = 'HealthCheckError';
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
  /** The app's named volumes, mounted read-write (volumes.ts volumeMounts). */
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
const LOG_TAIL_LINES = 20;


export function webContainerName(app: string, deploymentId: string): string {
  return `berth-${app}-web-${deploymentId}`;
}

/** berth-APP-PROCESS-DEPLOYMENT[-N]: the first web container keeps the short name it always had. */
export function processContainerName(app: string, process: string, deploymentId: string, replica = 1): string {
  return process === 'web' && replica === 1 ? webContainerName(app, deploymentId) : `berth-${app}-${process}-${deploymentId}-${replica}`;
}

const PROCESS_NAME_RE = /^[a-z][a-z0-9_-]{0,29}$/;

/** How every process container runs (docker-compose.yml describes the same: compose.ts). */
export const PROCESS_RESTART_POLICY = 'unless-stopped';
export const PROCESS_LOG_OPTIONS: Readonly<Record<string, string>> = { 'max-size': '10m', 'max-file': '3' };

/** A process's command as the container runs it (null = the image's CMD). */
export function processCommand(command: string): string[] {
  return ['/bin/sh', '-c', command];
}

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

/**
 * Create and start one container of a process. `web` gets PORT and a port published on 127.0.0.1;
 * other processes get neither. All restart unless stopped, so they come back after a crash or a
 * Docker restart.
 */
export async function startProcessContainer(docker: Docker, opts: StartProcessOptions): Promise<StartedContainer> {
  if (!appName.safeParse(opts.app).success) throw new ProcessError(`invalid app name "${opts.app}"`);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(opts.deploymentId)) throw new ProcessError(`invalid deployment id "${opts.deploymentId}"`);
  if (!PROCESS_NAME_RE.test(opts.process)) throw new ProcessError(`invalid process name "${opts.process}"`);
  const replica = opts.replica ?? 1;
  if (!Number.isInteger(replica) || replica < 1 || replica > 1000) throw new ProcessError(`invalid replica ${replica}`);
  for (const key of Object.keys(opts.env)) {
    if (!envKey.safeParse(key).success) throw new ProcessError(`invalid env key "${key}"`);
  }
  const isWeb = opts.process === 'web';

  let imageInfo: Docker.ImageInspectInfo;
  try {
    imageInfo = await docker.getImage(opts.image).inspect();
  } catch (err) {
    if (statusOf(err) === 404) throw new ProcessError(`image ${opts.image} not found`);
    throw new ProcessError(`could not inspect image ${opts.image}: ${messageOf(err)}`);
  }
  const containerPort = opts.port ?? exposedPort(imageInfo.Config?.ExposedPorts) ?? DEFAULT_PORT;
  if (!Number.isInteger(containerPort) || containerPort < 1 || containerPort > 65535) throw new ProcessError(`invalid port ${containerPort}`);
  const portKey = `${containerPort}/tcp`;
  const name = processContainerName(opts.app, opts.process, opts.deploymentId, replica);
  const env = Object.entries(isWeb ? { ...opts.env, PORT: String(containerPort) } : opts.env).map(([k, v]) => `${k}=${v}`);
  const labels = processLabels(opts.app, opts.deploymentId, opts.process, replica, opts.server);
  const hostConfig: Docker.HostConfig = {
    RestartPolicy: { Name: PROCESS_RESTART_POLICY, MaximumRetryCount: 0 },
    // tini as PID 1 forwards SIGTERM, so `sh -c` style commands stop gracefully.
    Init: true,
    // Unbounded json logs are how hosts fill their disks.
    LogConfig: { Type: 'json-file', Config: { ...PROCESS_LOG_OPTIONS } },
    ...(opts.volumes && opts.volumes.length > 0 ? { Mounts: opts.volumes } : {}),
    ...hostConfigLimits(opts.limits),
  };
  const command = opts.command ? { Cmd: processCommand(opts.command) } : {};

  if (!isWeb) {
    const container = await createReplacing(docker, name, opts, { name, Image: opts.image, Env: env, Labels: labels, HostConfig: hostConfig, ...command });
    try {
      await container.start();
    } catch (err) {
      await container.remove({ force: true }).catch(() => {});
      throw new ProcessError(`could not start ${name}: ${messageOf(err)}`);
    }
    return { id: container.id, name, hostPort: 0, containerPort, process: opts.process, replica };
  }

  // A port picked here can be taken before Docker binds it; retry with another one.
  for (let attempt = 1; ; attempt++) {
    const hostPort = await pickHostPort();
    const container = await createReplacing(docker, name, opts, {
      name,
      Image: opts.image,
      Env: env,
      Labels: labels,
      ExposedPorts: { [portKey]: {} },
      ...command,
      HostConfig: { ...hostConfig, PortBindings: { [portKey]: [{ HostIp: '127.0.0.1', HostPort: String(hostPort) }] } },
    });
    try {
      await container.start();
    } catch (err) {
      const msg = messageOf(err);
      await container.remove({ force: true }).catch(() => {});
      if (attempt < 4 && /port is already allocated|address already in use/i.test(msg)) continue;
      throw new ProcessError(`could not start ${name}: ${msg}`);
    }
    return { id: container.id, name, hostPort, containerPort, process: 'web', replica };
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

/** Split Docker's multiplexed (non-TTY) log stream into text. */
function demuxLogs(buf: Buffer): string {
  let out = '';
  let i = 0;
  while (i + 8 <= buf.length) {
    const type = buf[i];
    const len = buf.readUInt32BE(i + 4);
    if (type !== 0 && type !== 1 && type !== 2) return out + buf.subarray(i).toString('utf8'); // TTY: raw
    out += buf.subarray(i + 8, i + 8 + len).toString('utf8');
    i += 8 + len;
  }
  return out;
}

/** The container's last log lines (stdout and stderr), for error messages. */
export async function containerLogTail(docker: Docker, containerId: string, lines = LOG_TAIL_LINES): Promise<string[]> {
  try {
    const raw = (await docker.getContainer(containerId).logs({ stdout: true, stderr: true, tail: lines, follow: false })) as unknown;
    const text = Buffer.isBuffer(raw) ? demuxLogs(raw) : String(raw);
    return text
      .split('\n')
      .map((l) => l.replace(/\r$/, ''))
      .filter((l) => l.trim() !== '')
      .slice(-lines);
  } catch {
    return [];
  }
}

/** Resolves true when something accepts a TCP connection at host:port within timeoutMs. */
function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * The published port alone proves nothing: docker-proxy accepts connections on it even when
 * the app is not listening yet (and then closes them). So the app itself is probed on its
 * container address, and the published port is probed as the path nginx will use.
 */
async function acceptsConnections(info: Docker.ContainerInspectInfo, hostPort: number): Promise<boolean> {
  const internal = internalAddress(info, hostPort);
  if (internal && !(await tcpProbe(internal.ip, internal.port, 1000))) return false;
  return tcpProbe('127.0.0.1', hostPort, 1000);
}

/** The container's bridge address and the container port published as hostPort (null in host networking). */
function internalAddress(info: Docker.ContainerInspectInfo, hostPort: number): { ip: string; port: number } | null {
  const ip = Object.values(info.NetworkSettings?.Networks ?? {}).find((n) => n?.IPAddress)?.IPAddress ?? '';
  if (!ip) return null;
  const bindings = (info.HostConfig?.PortBindings ?? {}) as Record<string, Array<{ HostPort?: string }> | null>;
  for (const [key, list] of Object.entries(bindings)) {
    if (list?.some((b) => Number(b.HostPort) === hostPort)) return { ip, port: Number(key.split('/')[0]) };
  }
  return null;
}

/** "out of memory (limit 64 MB)", from the container's own cap. */
function oomReason(info: Docker.ContainerInspectInfo): string {
  return outOfMemory(info.HostConfig?.Memory || null);
}

/** The exit code of the container's latest `die` event (null when none is found). */
async function lastExitCode(docker: Docker, containerId: string, created: string): Promise<number | null> {
  try {
    const since = Math.floor((Date.parse(created) || Date.now() - 3600_000) / 1000) - 1;
    const until = Math.ceil(Date.now() / 1000) + 1;
    const stream = (await docker.getEvents({ since, until, filters: { container: [containerId], event: ['die'] } })) as NodeJS.ReadableStream;
    let text = '';
    for await (const chunk of stream) text += chunk.toString();
    let code: number | null = null;
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      const ev = JSON.parse(line) as { Actor?: { Attributes?: { exitCode?: string } } };
      const c = Number(ev.Actor?.Attributes?.exitCode);
      if (Number.isInteger(c)) code = c;
    }
    return code;
  } catch {
    return null;
  }
}

/**
 * Wait until the container is running, accepts TCP on hostPort and stays up for stableMs; throws
 * HealthCheckError with the reason and the container's last log lines. Meant for a container just
 * started: any restart since it was created counts as a crash. With `httpPath`, GET that path with
 * the app's Host header (straight to the container's published port, not through nginx) must
 * answer 2xx/3xx first, probed every `intervalMs`, at most `attempts` times when set.
 */
export async function waitHealthy(
  docker: Docker,
  opts: {
    containerId: string;
    hostPort: number;
    /** The whole budget: the container must pass within this. */
    timeoutMs: number;
    stableMs: number;
    log: (line: string) => void;
    signal?: AbortSignal;
    /** An HTTP path that must answer 2xx/3xx (the config's healthcheck.path); absent = TCP only. */
    httpPath?: string;
    /** Host header of the HTTP probe (the app's first domain); absent = 127.0.0.1:PORT. */
    host?: string;
    /** Pause between two HTTP probes (default 1 s). */
    intervalMs?: number;
    /** Fail after this many failed HTTP probes (default: keep probing until the budget is spent). */
    attempts?: number;
  },
): Promise<void> {
  const { containerId, hostPort, signal } = opts;
  const container = docker.getContainer(containerId);
  const deadline = Date.now() + opts.timeoutMs;
  const intervalMs = Math.max(50, opts.intervalMs ?? 1000);
  let acceptingSince: number | null = null;
  let announced = false;
  let lastHttp = '';
  let failedProbes = 0;
  let nextProbeAt = 0;

  const fail = async (reason: string): Promise<never> => {
    const tail = await containerLogTail(docker, containerId);
    const logs = tail.length ? `\nlast ${tail.length} log lines:\n${tail.join('\n')}` : '\n(the container wrote no output)';
    throw new HealthCheckError(`${reason}${logs}`);
  };

  for (;;) {
    signal?.throwIfAborted();
    let info: Docker.ContainerInspectInfo;
    try {
      info = await container.inspect();
    } catch (err) {
      if (statusOf(err) === 404) throw new HealthCheckError(`container ${containerId.slice(0, 12)} disappeared`);
      throw new HealthCheckError(`could not inspect container ${containerId.slice(0, 12)}: ${messageOf(err)}`);
    }
    const state = info.State;
    if (state.Status === 'exited' || state.Status === 'dead' || state.Restarting) {
      const oom = (await wasOomKilled(docker, info, state.ExitCode)) ? ` (killed: ${oomReason(info)})` : '';
      await fail(`the web process exited with code ${state.ExitCode}${oom}${state.Error ? `: ${state.Error}` : ''}`);
    }
    if ((info.RestartCount ?? 0) > 0) {
      // Running again after a restart: Docker has reset State.ExitCode, its events still know it.
      const code = await lastExitCode(docker, containerId, info.Created);
      const oom = (await wasOomKilled(docker, info, code)) ? ` (killed: ${oomReason(info)})` : '';
      await fail(`the web process exited${code === null ? '' : ` with code ${code}`}${oom} and was restarted by Docker`);
    }

    if (state.Status === 'running') {
      if (acceptingSince === null && Date.now() >= nextProbeAt) {
        if (await acceptsConnections(info, hostPort)) {
          let passed = true;
          if (opts.httpPath !== undefined) {
            // Each probe gets what is left of the budget, at most 5 s: a hung app fails one probe, not the gate.
            const probeTimeout = Math.max(200, Math.min(5000, deadline - Date.now()));
            lastHttp = await httpProbe(hostPort, opts.httpPath, opts.host, probeTimeout);
            passed = /^[23]\d\d$/.test(lastHttp);
            if (!passed) {
              failedProbes++;
              if (!announced) {
                announced = true;
                opts.log(`waiting for GET ${opts.httpPath}${opts.host ? ` (Host: ${opts.host})` : ''} to answer 2xx/3xx on port ${hostPort} (now: ${lastHttp})`);
              }
              if (opts.attempts !== undefined && failedProbes >= opts.attempts) {
                await fail(`GET ${opts.httpPath} failed ${failedProbes} health probe${failedProbes === 1 ? '' : 's'} in a row (last: ${lastHttp})`);
              }
              nextProbeAt = Date.now() + intervalMs;
            }
          }
          if (passed) {
            acceptingSince = Date.now();
            opts.log(
              `web process ${opts.httpPath !== undefined ? `answers GET ${opts.httpPath} (${lastHttp})` : 'accepts connections'} on port ${hostPort}; checking it stays up for ${Math.round(opts.stableMs / 100) / 10} s`,
            );
          }
        } else if (!announced) {
          announced = true;
          opts.log(`waiting for the web process to accept connections on port ${hostPort}`);
        }
      }
      if (acceptingSince !== null && Date.now() - acceptingSince >= opts.stableMs) {
        opts.log('web process is healthy');
        return;
      }
    }

    if (Date.now() > deadline) {
      await fail(
        acceptingSince !== null
          ? `the health check timed out after ${Math.round(opts.timeoutMs / 1000)} s`
          : opts.httpPath !== undefined && lastHttp
            ? `GET ${opts.httpPath} did not answer 2xx/3xx within ${Math.round(opts.timeoutMs / 1000)} s (last: ${lastHttp})`
            : `the web process did not accept connections on its port within ${Math.round(opts.timeoutMs / 1000)} s (does it listen on $PORT?)`,
      );
    }
    // Container state is re-read often (a crash fails fast); HTTP probes keep to their interval.
    await sleep(acceptingSince === null && nextProbeAt > Date.now() ? Math.min(200, nextProbeAt - Date.now()) : 100, signal);
  }
}

/** GET http://127.0.0.1:port/path → the status code as text, or what went wrong. */
function httpProbe(port: number, path: string, host: string | undefined, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const headers: Record<string, string> = { 'user-agent': 'berth-healthcheck' };
    if (host) headers.host = host;
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: timeoutMs, headers }, (res) => {
      res.resume();
      resolve(String(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${Math.round(timeoutMs / 100) / 10} s`)));
    req.on('error', (err) => resolve(err.message));
    req.end();
  });
}

/**
 * A process without a port (a worker) passes when it has been running for stableMs without
 * exiting or being restarted; throws HealthCheckError with its last log lines otherwise.
 */
export async function waitStable(
  docker: Docker,
  opts: { containerId: string; name: string; stableMs: number; timeoutMs: number; signal?: AbortSignal },
): Promise<void> {
  const container = docker.getContainer(opts.containerId);
  const deadline = Date.now() + Math.max(opts.timeoutMs, opts.stableMs + 1000);
  let runningSince: number | null = null;
  for (;;) {
    opts.signal?.throwIfAborted();
    let info: Docker.ContainerInspectInfo;
    try {
      info = await container.inspect();
    } catch (err) {
      throw new HealthCheckError(`${opts.name} ${statusOf(err) === 404 ? 'disappeared' : `could not be inspected: ${messageOf(err)}`}`);
    }
    const st = info.State;
    if (st.Status === 'exited' || st.Status === 'dead' || st.Restarting || (info.RestartCount ?? 0) > 0) {
      const tail = await containerLogTail(docker, opts.containerId);
      const logs = tail.length ? `\nlast ${tail.length} log lines:\n${tail.join('\n')}` : '\n(the container wrote no output)';
      const code = st.Status === 'exited' ? ` with code ${st.ExitCode}` : '';
      const oom = await wasOomKilled(docker, info, st.Status === 'exited' ? st.ExitCode : await lastExitCode(docker, opts.containerId, info.Created));
      throw new HealthCheckError(`${opts.name} exited${code}${oom ? ` (killed: ${oomReason(info)})` : ''}${logs}`);
    }
    if (st.Status === 'running') {
      runningSince ??= Date.now();
      if (Date.now() - runningSince >= opts.stableMs) return;
    }
    if (Date.now() > deadline) throw new HealthCheckError(`${opts.name} did not start running within ${Math.round(opts.timeoutMs / 1000)} s`);
    await sleep(200, opts.signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Every container carrying berth.managed=true (optionally only one app's). Never returns foreign containers. */
export async function listBerthContainers(docker: Docker, filter: { app?: string; server?: string } = {}): Promise<BerthContainer[]> {
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
      (!filter.server || c.Labels?.[LABEL.server] === filter.server),
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
