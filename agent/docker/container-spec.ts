// The one place that turns "what this container is" into Docker's create options. Every container
// berth creates comes from here: process containers (web and workers), one-off runs (release
// command, build command), cron runs, and the throwaway container a static site is copied out of.
// Callers say only what differs; how each kind runs (restart, log caps, init) is decided here.
import type Docker from 'dockerode';
import { LABEL } from './labels.js';
import { hostConfigLimits, type ResourceLimits } from './limits.js';

export class ContainerSpecError extends Error {
  override name = 'ContainerSpecError';
}

/**
 * - `process`: runs until stopped (web and worker processes): comes back after a crash or a Docker restart.
 * - `job`: runs once to completion (release command, build command, cron run): never restarted.
 * - `inert`: created and never started (files are copied out of its image): nothing about running it.
 */
export type ContainerKind = 'process' | 'job' | 'inert';

/** How every process container runs (docker-compose.yml describes the same: compose-file.ts). */
export const PROCESS_RESTART_POLICY = 'unless-stopped';
// Unbounded json logs are how hosts fill their disks. A job's output is read as it runs (or once,
// at its end, for cron), so one file is enough.
export const PROCESS_LOG_OPTIONS: Readonly<Record<string, string>> = { 'max-size': '10m', 'max-file': '3' };
export const JOB_LOG_OPTIONS: Readonly<Record<string, string>> = { 'max-size': '10m', 'max-file': '1' };

export interface ContainerSpec {
  kind: ContainerKind;
  image: string;
  /** Absent: Docker names it (only for `inert` containers, which are removed right away). */
  name?: string;
  /** Replaces the image's CMD; absent = the image's own. */
  cmd?: string[];
  /** Replaces the image's ENTRYPOINT; absent = the image's own. */
  entrypoint?: string[];
  env?: Record<string, string>;
  /** Every label of the container (berthLabels / processLabels): berth.managed=true is required. */
  labels: Record<string, string>;
  /** Read-only bind mounts: host file/dir → container path. */
  binds?: Array<{ source: string; target: string }>;
  /** The app's named volumes, read-write (volumes.ts: volumeMounts). */
  volumes?: Docker.MountSettings[];
  /** Memory / CPU caps; absent or null fields = uncapped. */
  limits?: Partial<ResourceLimits>;
  /** Publish `containerPort`/tcp on 127.0.0.1:`hostPort` (the web process, for nginx). */
  publish?: { containerPort: number; hostPort: number };
  /** Attach stdout and stderr (a one-off run streams its output while it runs). */
  attach?: boolean;
  /** A network to run on instead of the default bridge (a cluster app's attachable overlay network). */
  network?: string;
}

/** A process's command as the container runs it (null = the image's CMD). */
export function shellCommand(command: string): string[] {
  return ['/bin/sh', '-c', command];
}

/** Docker's create options for `spec` (pure). */
export function containerCreateOptions(spec: ContainerSpec): Docker.ContainerCreateOptions {
  // Last line of defence: listing and removal only ever touch containers carrying this label.
  if (spec.labels[LABEL.managed] !== 'true') throw new ContainerSpecError(`container ${spec.name ?? `of ${spec.image}`} lacks the ${LABEL.managed}=true label`);
  const env = Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`);
  const portKey = spec.publish ? `${spec.publish.containerPort}/tcp` : null;
  return {
    ...(spec.name ? { name: spec.name } : {}),
    Image: spec.image,
    ...(spec.cmd ? { Cmd: spec.cmd } : {}),
    ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
    ...(env.length > 0 ? { Env: env } : {}),
    Labels: { ...spec.labels },
    ...(portKey ? { ExposedPorts: { [portKey]: {} } } : {}),
    ...(spec.attach ? { AttachStdout: true, AttachStderr: true } : {}),
    ...(spec.kind === 'inert' ? {} : { HostConfig: hostConfig(spec, portKey) }),
  };
}

function hostConfig(spec: ContainerSpec, portKey: string | null): Docker.HostConfig {
  const mounts = [...(spec.binds ?? []).map((m) => ({ Type: 'bind' as const, Source: m.source, Target: m.target, ReadOnly: true })), ...(spec.volumes ?? [])];
  const isProcess = spec.kind === 'process';
  return {
    ...(isProcess ? { RestartPolicy: { Name: PROCESS_RESTART_POLICY, MaximumRetryCount: 0 } } : {}),
    // tini as PID 1 forwards SIGTERM, so `sh -c` style commands stop gracefully.
    Init: true,
    LogConfig: { Type: 'json-file', Config: { ...(isProcess ? PROCESS_LOG_OPTIONS : JOB_LOG_OPTIONS) } },
    ...(mounts.length > 0 ? { Mounts: mounts } : {}),
    ...hostConfigLimits(spec.limits),
    ...(spec.network ? { NetworkMode: spec.network } : {}),
    ...(portKey && spec.publish ? { PortBindings: { [portKey]: [{ HostIp: '127.0.0.1', HostPort: String(spec.publish.hostPort) }] } } : {}),
  };
}
