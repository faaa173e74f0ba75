// One-off containers (the release command, the build command): run to completion with their
// output streamed line by line, bounded by a timeout and the deploy's abort signal.
import type Docker from 'dockerode';
import { containerCreateOptions } from './container-spec.js';
import { alreadyGone, dockerMessageOf as messageOf, dockerStatusOf as statusOf } from './errors.js';
import { LABEL } from './labels.js';
import { wasOomKilled, type ResourceLimits } from './limits.js';
import { LogDemuxer } from './log-demux.js';
import { sleep } from '../../shared/util/index.js';
import { bestEffort } from '../../shared/util/index.js';

export class OneOffError extends Error {
  override name = 'OneOffError';
}

export interface OneOffOptions {
  name: string;
  image: string;
  cmd: string[];
  entrypoint?: string[];
  env?: Record<string, string>;
  labels: Record<string, string>;
  /** Read-only bind mounts: host file/dir → container path. */
  mounts?: Array<{ source: string; target: string }>;
  /** The app's named volumes, read-write (volumes.ts: volumeMounts). */
  volumes?: Docker.MountSettings[];
  log: (line: string) => void;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Keep the stopped container (the caller commits or removes it). */
  keep?: boolean;
  /** Memory and CPU caps (the build's). */
  limits?: ResourceLimits;
  /** A network to run on (a cluster app's overlay network); absent: the default bridge. */
  network?: string;
}

export interface OneOffResult {
  exitCode: number;
  /** The kernel killed it at its memory cap. */
  oomKilled: boolean;
  container: Docker.Container;
}

/** A leftover of the same name (an interrupted earlier attempt of this deploy) is in the way: remove it, if it is berth's. */
async function removeLeftover(docker: Docker, name: string): Promise<void> {
  let info: Docker.ContainerInspectInfo;
  try {
    info = await docker.getContainer(name).inspect();
  } catch (err) {
    if (statusOf(err) === 404) return;
    throw new OneOffError(`could not check for ${name}: ${messageOf(err)}`);
  }
  if (info.Config?.Labels?.[LABEL.managed] !== 'true') throw new OneOffError(`a container named ${name} already exists and is not berth's`);
  try {
    await docker.getContainer(name).remove({ force: true });
  } catch (err) {
    if (statusOf(err) !== 404) throw new OneOffError(`could not check for ${name}: ${messageOf(err)}`);
  }
}

/** Docker's create options of a one-off run (pure). */
export function oneOffCreateOptions(opts: OneOffOptions): Docker.ContainerCreateOptions {
  return containerCreateOptions({
    kind: 'job',
    name: opts.name,
    image: opts.image,
    cmd: opts.cmd,
    ...(opts.entrypoint ? { entrypoint: opts.entrypoint } : {}),
    ...(opts.env ? { env: opts.env } : {}),
    labels: opts.labels,
    ...(opts.mounts ? { binds: opts.mounts } : {}),
    ...(opts.volumes ? { volumes: opts.volumes } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.network ? { network: opts.network } : {}),
    attach: true,
  });
}

async function createJob(docker: Docker, opts: OneOffOptions): Promise<Docker.Container> {
  try {
    return await docker.createContainer(oneOffCreateOptions(opts));
  } catch (err) {
    throw new OneOffError(`could not create ${opts.name}: ${messageOf(err)}`);
  }
}

/**
 * Stream the container's output to `log` line by line (\r progress rewrites collapse to their last
 * state). `drain()` waits (at most 2 s) for the last lines still in flight, then flushes.
 */
async function streamOutput(container: Docker.Container, log: (line: string) => void): Promise<{ drain(): Promise<void> }> {
  const stream = (await container.attach({ stream: true, stdout: true, stderr: true })) as NodeJS.ReadableStream;
  let open = true;
  const demux = new LogDemuxer((_stream, line) => log(line.replace(/\r+$/, '').replace(/^.*\r/, '')));
  stream.on('data', (chunk: Buffer) => {
    if (open) demux.push(chunk);
  });
  const ended = new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', () => resolve());
  });
  return {
    async drain() {
      await Promise.race([ended, sleep(2000)]);
      open = false;
      demux.end();
    },
  };
}

/** Wait for the container to exit; it is killed at the timeout or on abort, and that reason is returned. */
async function waitForExit(container: Docker.Container, opts: OneOffOptions): Promise<{ statusCode: number | null; stopReason: Error | null }> {
  let stopReason: Error | null = null;
  const stop = (reason: Error) => {
    stopReason ??= reason;
    void bestEffort(`killing ${container.id}`, container.kill(), { ignore: alreadyGone });
  };
  const onAbort = () => stop(opts.signal?.reason instanceof Error ? opts.signal.reason : new OneOffError('cancelled'));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => stop(new OneOffError(`timed out after ${Math.round(opts.timeoutMs / 1000)} s`)), opts.timeoutMs);
  try {
    const waited = (await container.wait()) as { StatusCode?: number };
    return { statusCode: waited.StatusCode ?? null, stopReason };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** Run the container to completion; resolves with its exit code, rejects on timeout, abort or a Docker error. */
export async function runOneOff(docker: Docker, opts: OneOffOptions): Promise<OneOffResult> {
  opts.signal?.throwIfAborted();
  await removeLeftover(docker, opts.name);
  const container = await createJob(docker, opts);
  const remove = () => bestEffort(`removing ${container.id}`, container.remove({ force: true }), { ignore: alreadyGone });
  try {
    const output = await streamOutput(container, opts.log);
    await container.start();
    const { statusCode, stopReason } = await waitForExit(container, opts);
    await output.drain();
    if (stopReason) throw stopReason;
    const final = opts.limits?.memory ? await container.inspect().catch(() => null) : null;
    const oomKilled = final ? await wasOomKilled(docker, final, statusCode) : false;
    if (!opts.keep) await remove();
    return { exitCode: statusCode ?? -1, oomKilled, container };
  } catch (err) {
    await remove();
    if (err instanceof OneOffError || opts.signal?.aborted) throw err;
    throw new OneOffError(`${opts.name} failed: ${messageOf(err)}`);
  }
}
