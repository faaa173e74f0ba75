// One cron run's container: created from the app's then-current release (its image, env and
// volumes, the build's caps) through the container-spec builder, and read back when it has exited
// (exit code, end time, the tail of its output). The scheduler decides when; this is the Docker part.
import type Docker from 'dockerode';
import type { CronRunInfo } from '../../shared/protocol.js';
import type { CronJobConfig } from '../config/types.js';
import { containerCreateOptions, shellCommand } from '../docker/container-spec.js';
import { dockerMessageOf, dockerStatusOf } from '../docker/errors.js';
import { berthLabels, LABEL } from '../docker/labels.js';
import { outOfMemory, wasOomKilled, type ResourceLimits } from '../docker/limits.js';
import { demuxLines } from '../docker/log-demux.js';
import { ensureVolumes, volumeMounts, type VolumeConfig } from '../docker/volumes.js';
import type { AgentStore, CronRunRecord, Release } from '../store/index.js';
import { cronJobsOf } from './schedule.js';

/** Lines of output kept per run, and characters per line. */
export const TAIL_LINES = 50;
const TAIL_LINE_CHARS = 1000;

/** Why a run was stopped before it ended by itself (the message is recorded as its reason). */
export class RunStopped extends Error {
  override name = 'RunStopped';
  constructor(
    message: string,
    readonly status: 'timed_out' | 'failed',
  ) {
    super(message);
  }
}

/** What a run of a job needs, resolved from the app's current release at the moment it starts. */
export interface JobTarget {
  release: Release;
  job: CronJobConfig;
  env: Record<string, string>;
  volumes: VolumeConfig;
  /** The build's caps (a cron run is a one-off job of the app, like its release command). */
  limits: ResourceLimits;
  /** A cluster app's overlay network (berth-APP): the run reaches what its services reach. Absent: the default bridge. */
  network?: string;
}

/** The fields of a stored app config the caps are read from (stored JSON: checked, never trusted). */
interface StoredBuildCaps {
  build?: { memory?: unknown; cpus?: unknown } | null;
}

const positive = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null);

/** berth.yml's build.memory / build.cpus, else the server's default caps of one-off jobs. */
export function cronLimits(config: StoredBuildCaps | null | undefined, defaults: ResourceLimits | undefined): ResourceLimits {
  return {
    memory: positive(config?.build?.memory) ?? defaults?.memory ?? null,
    cpus: positive(config?.build?.cpus) ?? defaults?.cpus ?? null,
  };
}

/** A job of the app's live release, with what a run of it needs; null when the app has no release or no such job. */
export function jobTarget(store: AgentStore, app: string, job: string, defaultLimits: ResourceLimits | undefined, network?: string | null): JobTarget | null {
  const release = store.releases.get(app);
  if (!release) return null;
  const snapshot = store.liveSnapshot(release);
  const config = snapshot?.config as ({ volumes?: VolumeConfig } & StoredBuildCaps) | null | undefined;
  const jobConfig = cronJobsOf(config)[job];
  if (!jobConfig) return null;
  return {
    release,
    job: jobConfig,
    env: release.env ?? snapshot?.env ?? {},
    volumes: release.volumes ?? config?.volumes ?? {},
    limits: cronLimits(config, defaultLimits),
    ...(network ? { network } : {}),
  };
}

export function cronContainerName(app: string, job: string, runId: string): string {
  return `berth-${app}-cron-${job}-${runId}`;
}

/** Docker's create options of a cron run (pure). */
export function cronRunOptions(o: { name: string; app: string; job: string; server: string; target: JobTarget }): Docker.ContainerCreateOptions {
  const { target } = o;
  return containerCreateOptions({
    kind: 'job',
    name: o.name,
    image: target.release.image,
    // The image's entrypoint stays (it may set up the environment); the command replaces CMD.
    cmd: shellCommand(target.job.command),
    env: target.env,
    labels: berthLabels(o.app, target.release.deploymentId, { [LABEL.cron]: o.job, ...(o.server ? { [LABEL.server]: o.server } : {}) }),
    volumes: volumeMounts(o.app, target.volumes),
    limits: target.limits,
    ...(target.network ? { network: target.network } : {}),
  });
}

/** Create the app's volumes if needed, then create and start the run's container; resolves with its id. */
export async function startRunContainer(docker: Docker, o: { name: string; app: string; job: string; server: string; target: JobTarget }): Promise<string> {
  await ensureVolumes(docker, o.app, o.target.volumes, o.server || undefined);
  const container = await docker.createContainer(cronRunOptions(o));
  await container.start();
  return container.id;
}

/** The last TAIL_LINES lines (each cut at TAIL_LINE_CHARS), env values masked. */
export class OutputTail {
  private readonly lines: string[] = [];
  constructor(private readonly mask: (s: string) => string) {}
  push = (line: string): void => {
    this.lines.push(this.mask(line.length > TAIL_LINE_CHARS ? line.slice(0, TAIL_LINE_CHARS) + '…' : line));
    if (this.lines.length > TAIL_LINES) this.lines.shift();
  };
  get(): string[] {
    return [...this.lines];
  }
}

/** What an exited run container said: exit code, end time, and the memory cap it was killed at, if it was. */
export interface RunExit {
  exitCode: number | null;
  finishedAt?: string;
  /** "out of memory (limit 64 MB)" when the kernel killed it at its memory cap. */
  outOfMemory?: string;
}

/**
 * What an exited run container says about its run: exit code, end time, an OOM kill, and its output
 * (from Docker's log, so it is there after an agent restart too) into `tail`. A container that is
 * gone says nothing; `warn` hears about any other failure.
 */
export async function readExitedRun(docker: Docker, container: Docker.Container, tail: OutputTail, warn: (message: string) => void): Promise<RunExit> {
  const exit: RunExit = { exitCode: null };
  try {
    const info = await container.inspect();
    exit.exitCode = typeof info.State?.ExitCode === 'number' ? info.State.ExitCode : null;
    if (info.State?.FinishedAt && !info.State.FinishedAt.startsWith('0001')) exit.finishedAt = new Date(info.State.FinishedAt).toISOString();
    // A SIGKILL berth sent (a timeout) is recorded as such by runEnd before this is looked at.
    if (exit.exitCode && (await wasOomKilled(docker, info, exit.exitCode))) exit.outOfMemory = outOfMemory(info.HostConfig?.Memory || null);
    const raw = (await container.logs({ stdout: true, stderr: true, follow: false, tail: TAIL_LINES })) as unknown;
    for (const line of demuxLines(raw)) tail.push(line.text);
  } catch (err) {
    if (dockerStatusOf(err) !== 404) warn(dockerMessageOf(err));
  }
  return exit;
}

export type RunEnd = Parameters<AgentStore['cronRuns']['finish']>[1];

/** How a run whose container exited is recorded: the reason it was stopped, else an OOM kill, else its exit code. */
export function runEnd(stopped: RunStopped | null, exit: RunExit, outputTail: string[]): RunEnd {
  const { exitCode } = exit;
  if (stopped) return { status: stopped.status, exitCode, reason: stopped.message, outputTail };
  if (exitCode === 0) return { status: 'succeeded', exitCode, outputTail };
  const reason =
    exitCode === null
      ? 'the run container vanished; its exit code is unknown'
      : exit.outOfMemory
        ? `ran ${exit.outOfMemory} and was killed (exit code ${exitCode}; raise build.memory in berth.yml or BERTH_BUILD_MEMORY)`
        : `exited with code ${exitCode}`;
  return { status: 'failed', exitCode, reason, outputTail };
}

export function runInfo(r: CronRunRecord): CronRunInfo {
  return {
    id: r.id,
    app: r.app,
    job: r.job,
    trigger: r.trigger,
    status: r.status,
    scheduledAt: r.scheduledAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    exitCode: r.exitCode,
    reason: r.reason,
    outputTail: r.outputTail,
    deploymentId: r.deploymentId,
  };
}
