// One-off containers (the release command, the build command): run to completion with their
// output streamed line by line, bounded by a timeout and the deploy's abort signal.
import type Docker from 'dockerode';
import { PassThrough } from 'node:stream';
import { dockerMessageOf as messageOf } from './errors.js';
import { hostConfigLimits, wasOomKilled, type ResourceLimits } from './limits.js';

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
  /** The app's named volumes, read-write (see volumes.ts volumeMounts). */
  volumes?: Docker.MountSettings[];
  log: (line: string) => void;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Keep the stopped container (the caller commits or removes it). */
  keep?: boolean;
  /** Memory and CPU caps (the build's). */
  limits?: ResourceLimits;
}

export interface OneOffResult {
  exitCode: number;
  /** The kernel killed it at its memory cap. */
  oomKilled: boolean;
  container: Docker.Container;
}


/** Split a byte stream into lines for `log` (\r progress rewrites collapse to their last state). */
function lineSink(log: (line: string) => void): PassThrough {
  const sink = new PassThrough();
  let partial = '';
  sink.on('data', (chunk: Buffer) => {
    partial += chunk.toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) log(p.replace(/\r+$/, '').replace(/^.*\r/, ''));
  });
  sink.on('end', () => {
    if (partial.trim()) log(partial);
    partial = '';
  });
  return sink;
}

/** Run the container to completion; resolves with its exit code, rejects on timeout, abort or a Docker error. */
export async function runOneOff(docker: Docker, opts: OneOffOptions): Promise<OneOffResult> {
  opts.signal?.throwIfAborted();
  // A leftover of the same name (an interrupted earlier attempt of this deploy) is in the way.
  await docker
    .getContainer(opts.name)
    .inspect()
    .then(async (info) => {
      if (info.Config?.Labels?.['berth.managed'] !== 'true') throw new OneOffError(`a container named ${opts.name} already exists and is not berth's`);
      await docker.getContainer(opts.name).remove({ force: true });
    })
    .catch((err: { statusCode?: number }) => {
      if (err instanceof OneOffError) throw err;
      if (err?.statusCode !== 404) throw new OneOffError(`could not check for ${opts.name}: ${messageOf(err)}`);
    });

  let container: Docker.Container;
  try {
    container = await docker.createContainer({
      name: opts.name,
      Image: opts.image,
      Cmd: opts.cmd,
      ...(opts.entrypoint ? { Entrypoint: opts.entrypoint } : {}),
      Env: Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`),
      Labels: opts.labels,
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: {
        Init: true,
        Mounts: [...(opts.mounts ?? []).map((m) => ({ Type: 'bind' as const, Source: m.source, Target: m.target, ReadOnly: true })), ...(opts.volumes ?? [])],
        LogConfig: { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '1' } },
        ...hostConfigLimits(opts.limits),
      },
    });
  } catch (err) {
    throw new OneOffError(`could not create ${opts.name}: ${messageOf(err)}`);
  }

  const remove = () => container.remove({ force: true }).catch(() => {});
  try {
    const stream = (await container.attach({ stream: true, stdout: true, stderr: true })) as NodeJS.ReadableStream;
    const out = lineSink(opts.log);
    const err = lineSink(opts.log);
    docker.modem.demuxStream(stream, out, err);
    const ended = new Promise<void>((resolve) => {
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
    });

    await container.start();
    let stopReason: Error | null = null;
    const stop = (reason: Error) => {
      stopReason ??= reason;
      container.kill().catch(() => {});
    };
    const onAbort = () => stop(opts.signal?.reason instanceof Error ? opts.signal.reason : new OneOffError('cancelled'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => stop(new OneOffError(`timed out after ${Math.round(opts.timeoutMs / 1000)} s`)), opts.timeoutMs);
    let waited: { StatusCode?: number };
    try {
      waited = (await container.wait()) as { StatusCode?: number };
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
    // The last lines may still be in flight on the attach stream.
    await Promise.race([ended, new Promise((r) => setTimeout(r, 2000))]);
    out.end();
    err.end();
    if (stopReason) throw stopReason;
    const final = opts.limits?.memory ? await container.inspect().catch(() => null) : null;
    const oomKilled = final ? await wasOomKilled(docker, final, waited.StatusCode ?? null) : false;
    if (!opts.keep) await remove();
    return { exitCode: waited.StatusCode ?? -1, oomKilled, container };
  } catch (err) {
    await remove();
    if (err instanceof OneOffError || opts.signal?.aborted) throw err;
    throw new OneOffError(`${opts.name} failed: ${messageOf(err)}`);
  }
}
