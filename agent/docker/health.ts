// Health gates of a container just started: the web process must accept connections (and answer
// the config's HTTP check) and stay up; a worker must stay running. A failure names the reason —
// exit code, OOM kill, restart, timeout — with the container's last log lines.
import type Docker from 'dockerode';
import { sleep } from '../../shared/util/index.js';
import { dockerMessageOf as messageOf, dockerStatusOf as statusOf } from './errors.js';
import { lastExitCode } from './events.js';
import { outOfMemory, wasOomKilled } from './limits.js';
import { demuxLines } from './log-demux.js';
import { acceptsConnections, httpProbe } from './probes.js';

export class HealthCheckError extends Error {
  override name = 'HealthCheckError';
}

const LOG_TAIL_LINES = 20;

export interface WaitHealthyOptions {
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
}

/** The container's last log lines (stdout and stderr), for error messages. */
export async function containerLogTail(docker: Docker, containerId: string, lines = LOG_TAIL_LINES): Promise<string[]> {
  try {
    const raw = (await docker.getContainer(containerId).logs({ stdout: true, stderr: true, tail: lines, follow: false })) as unknown;
    return demuxLines(raw)
      .map((l) => l.text)
      .filter((l) => l.trim() !== '')
      .slice(-lines);
  } catch {
    return [];
  }
}

/** A HealthCheckError with `reason` and the container's last log lines. */
async function withLogTail(docker: Docker, containerId: string, reason: string): Promise<HealthCheckError> {
  const tail = await containerLogTail(docker, containerId);
  const logs = tail.length ? `\nlast ${tail.length} log lines:\n${tail.join('\n')}` : '\n(the container wrote no output)';
  return new HealthCheckError(`${reason}${logs}`);
}

/** "out of memory (limit 64 MB)", from the container's own cap. */
function oomReason(info: Docker.ContainerInspectInfo): string {
  return outOfMemory(info.HostConfig?.Memory || null);
}

/**
 * Wait until the container is running, accepts TCP on hostPort and stays up for stableMs; throws
 * HealthCheckError with the reason and the container's last log lines. Meant for a container just
 * started: any restart since it was created counts as a crash. With `httpPath`, GET that path with
 * the app's Host header (straight to the container's published port, not through nginx) must
 * answer 2xx/3xx first, probed every `intervalMs`, at most `attempts` times when set.
 */
export function waitHealthy(docker: Docker, opts: WaitHealthyOptions): Promise<void> {
  return new HealthGate(docker, opts).run();
}

/** One health gate's state: when the web process first passed, what the probes answered so far. */
class HealthGate {
  private readonly deadline: number;
  private readonly intervalMs: number;
  private acceptingSince: number | null = null;
  private announced = false;
  private lastHttp = '';
  private failedProbes = 0;
  private nextProbeAt = 0;

  constructor(
    private readonly docker: Docker,
    private readonly opts: WaitHealthyOptions,
  ) {
    this.deadline = Date.now() + opts.timeoutMs;
    this.intervalMs = Math.max(50, opts.intervalMs ?? 1000);
  }

  async run(): Promise<void> {
    const { signal } = this.opts;
    const container = this.docker.getContainer(this.opts.containerId);
    for (;;) {
      signal?.throwIfAborted();
      const info = await this.inspect(container);
      await this.failIfCrashed(info);
      if (info.State.Status === 'running') {
        if (this.acceptingSince === null && Date.now() >= this.nextProbeAt) await this.probe(info);
        if (this.acceptingSince !== null && Date.now() - this.acceptingSince >= this.opts.stableMs) {
          this.opts.log('web process is healthy');
          return;
        }
      }
      if (Date.now() > this.deadline) throw await this.failure(this.timeoutReason());
      // Container state is re-read often (a crash fails fast); HTTP probes keep to their interval.
      const waitForProbe = this.acceptingSince === null && this.nextProbeAt > Date.now();
      await sleep(waitForProbe ? Math.min(200, this.nextProbeAt - Date.now()) : 100, signal);
      signal?.throwIfAborted();
    }
  }

  private failure(reason: string): Promise<HealthCheckError> {
    return withLogTail(this.docker, this.opts.containerId, reason);
  }

  private async inspect(container: Docker.Container): Promise<Docker.ContainerInspectInfo> {
    const short = this.opts.containerId.slice(0, 12);
    try {
      return await container.inspect();
    } catch (err) {
      if (statusOf(err) === 404) throw new HealthCheckError(`container ${short} disappeared`);
      throw new HealthCheckError(`could not inspect container ${short}: ${messageOf(err)}`);
    }
  }

  /** Exited, dead, restarting, or restarted since it was created: the gate fails. */
  private async failIfCrashed(info: Docker.ContainerInspectInfo): Promise<void> {
    const state = info.State;
    if (state.Status === 'exited' || state.Status === 'dead' || state.Restarting) {
      const oom = (await wasOomKilled(this.docker, info, state.ExitCode)) ? ` (killed: ${oomReason(info)})` : '';
      throw await this.failure(`the web process exited with code ${state.ExitCode}${oom}${state.Error ? `: ${state.Error}` : ''}`);
    }
    if ((info.RestartCount ?? 0) > 0) {
      // Running again after a restart: Docker has reset State.ExitCode, its events still know it.
      const code = await lastExitCode(this.docker, this.opts.containerId, info.Created);
      const oom = (await wasOomKilled(this.docker, info, code)) ? ` (killed: ${oomReason(info)})` : '';
      throw await this.failure(`the web process exited${code === null ? '' : ` with code ${code}`}${oom} and was restarted by Docker`);
    }
  }

  /** One round of probes: TCP, then the HTTP check when configured. Passing starts the stability clock. */
  private async probe(info: Docker.ContainerInspectInfo): Promise<void> {
    const { hostPort, httpPath } = this.opts;
    if (!(await acceptsConnections(info, hostPort))) {
      this.announce(`waiting for the web process to accept connections on port ${hostPort}`);
      return;
    }
    if (httpPath !== undefined && !(await this.httpPasses(httpPath))) return;
    this.acceptingSince = Date.now();
    const what = httpPath !== undefined ? `answers GET ${httpPath} (${this.lastHttp})` : 'accepts connections';
    this.opts.log(`web process ${what} on port ${hostPort}; checking it stays up for ${Math.round(this.opts.stableMs / 100) / 10} s`);
  }

  /** GET the health path once; a failed probe counts towards `attempts` and waits for the interval. */
  private async httpPasses(path: string): Promise<boolean> {
    const { hostPort, host, attempts } = this.opts;
    // Each probe gets what is left of the budget, at most 5 s: a hung app fails one probe, not the gate.
    const probeTimeout = Math.max(200, Math.min(5000, this.deadline - Date.now()));
    this.lastHttp = await httpProbe(hostPort, path, host, probeTimeout);
    if (/^[23]\d\d$/.test(this.lastHttp)) return true;
    this.failedProbes++;
    this.announce(`waiting for GET ${path}${host ? ` (Host: ${host})` : ''} to answer 2xx/3xx on port ${hostPort} (now: ${this.lastHttp})`);
    if (attempts !== undefined && this.failedProbes >= attempts) {
      const probes = `${this.failedProbes} health probe${this.failedProbes === 1 ? '' : 's'}`;
      throw await this.failure(`GET ${path} failed ${probes} in a row (last: ${this.lastHttp})`);
    }
    this.nextProbeAt = Date.now() + this.intervalMs;
    return false;
  }

  /** Say once what the gate is waiting for. */
  private announce(line: string): void {
    if (this.announced) return;
    this.announced = true;
    this.opts.log(line);
  }

  private timeoutReason(): string {
    const { httpPath, timeoutMs } = this.opts;
    const seconds = Math.round(timeoutMs / 1000);
    if (this.acceptingSince !== null) return `the health check timed out after ${seconds} s`;
    if (httpPath !== undefined && this.lastHttp) return `GET ${httpPath} did not answer 2xx/3xx within ${seconds} s (last: ${this.lastHttp})`;
    return `the web process did not accept connections on its port within ${seconds} s (does it listen on $PORT?)`;
  }
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
      const code = st.Status === 'exited' ? ` with code ${st.ExitCode}` : '';
      const oom = await wasOomKilled(docker, info, st.Status === 'exited' ? st.ExitCode : await lastExitCode(docker, opts.containerId, info.Created));
      throw await withLogTail(docker, opts.containerId, `${opts.name} exited${code}${oom ? ` (killed: ${oomReason(info)})` : ''}`);
    }
    if (st.Status === 'running') {
      runningSince ??= Date.now();
      if (Date.now() - runningSince >= opts.stableMs) return;
    }
    if (Date.now() > deadline) throw new HealthCheckError(`${opts.name} did not start running within ${Math.round(opts.timeoutMs / 1000)} s`);
    await sleep(200, opts.signal);
    opts.signal?.throwIfAborted();
  }
}
