// build.command: run inside the freshly built image with the app's env, and the result committed
// as the deploy's image. Not a `RUN` step: the classic builder would record build-arg values in
// the image history. Here the env reaches the command through a read-only bind-mounted file that
// never becomes part of the image, and the command itself is an argument, never spliced into a script.
import type Docker from 'dockerode';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDir, writeFileAtomic } from '../../shared/util/index.js';
import { envKey } from '../../shared/validation.js';
import { OneOffError, runOneOff } from '../docker/one-off.js';
import { outOfMemory, type ResourceLimits } from '../docker/limits.js';
import { bestEffort } from '../../shared/util/index.js';
import { alreadyGone } from '../docker/errors.js';

export class BuildCommandError extends Error {
  override name = 'BuildCommandError';
}

const ENV_TARGET = '/run/berth-build.env';
// $0 is a label, $1 the user's command, $2 berth's own prune step (or empty): `set -a` exports
// every variable the env file assigns.
const WRAPPER = `set -a && . ${ENV_TARGET} && set +a && /bin/sh -c "$1" && if [ -n "$2" ]; then echo "berth: $2" && /bin/sh -c "$2"; fi`;

/** `KEY='value'` lines a POSIX shell can source: single quotes keep every value literal. */
export function shellEnvFile(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => {
      if (!envKey.safeParse(k).success) throw new BuildCommandError(`invalid env key "${k}"`);
      return `${k}='${v.split("'").join(`'\\''`)}'\n`;
    })
    .join('');
}

const NO_COMMAND = ['/bin/sh', '-c', 'echo "this image has no command of its own: set processes in berth.yml" >&2; exit 1'];

export interface BuildCommandOptions {
  /** The image to run in (the dependency + code build). */
  image: string;
  /** Repository and tag of the committed result. */
  repo: string;
  tag: string;
  command: string;
  /** berth's fixed step run after the command (dev dependencies pruned), never from the config. */
  after?: string;
  env: Record<string, string>;
  /** A private scratch directory for the env file (removed afterwards). */
  workDir: string;
  containerName: string;
  labels: Record<string, string>;
  log: (line: string) => void;
  timeoutMs: number;
  signal?: AbortSignal;
  limits?: ResourceLimits;
}

export async function runBuildCommand(docker: Docker, opts: BuildCommandOptions): Promise<{ imageId: string }> {
  const base = await docker.getImage(opts.image).inspect();
  const hasEntrypoint = Array.isArray(base.Config?.Entrypoint) && base.Config.Entrypoint.length > 0;
  ensureDir(opts.workDir, 0o700);
  const envFile = join(opts.workDir, 'build.env');
  // World-readable file in a private directory: the app user in the container can read it, no one on the host can reach it.
  writeFileAtomic(envFile, shellEnvFile(opts.env), 0o444);
  try {
    const { exitCode, oomKilled, container } = await runOneOff(docker, {
      name: opts.containerName,
      image: opts.image,
      // Past the image's entrypoint (if any): the command runs exactly as given.
      ...(hasEntrypoint ? { entrypoint: ['/bin/sh'], cmd: ['-c', WRAPPER, 'berth-build', opts.command, opts.after ?? ''] } : { cmd: ['/bin/sh', '-c', WRAPPER, 'berth-build', opts.command, opts.after ?? ''] }),
      labels: opts.labels,
      mounts: [{ source: envFile, target: ENV_TARGET }],
      log: opts.log,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      keep: true,
      ...(opts.limits ? { limits: opts.limits } : {}),
    }).catch((err: unknown) => {
      if (err instanceof OneOffError) throw new BuildCommandError(`build command ${err.message}`);
      throw err;
    });
    try {
      if (oomKilled) throw new BuildCommandError(`${outOfMemory(opts.limits?.memory)}: the build command was killed at the build's memory cap (raise build.memory in berth.yml or BERTH_BUILD_MEMORY)`);
      if (exitCode !== 0) throw new BuildCommandError(`build command exited with code ${exitCode}`);
      // The committed config is the container's: put the image's own entrypoint and command back.
      // (An empty list would not clear them: commit fills empty fields from the container.)
      const cmd = base.Config?.Cmd?.length ? base.Config.Cmd : NO_COMMAND;
      const changes = [...(hasEntrypoint ? [`ENTRYPOINT ${JSON.stringify(base.Config!.Entrypoint)}`] : []), `CMD ${JSON.stringify(cmd)}`];
      const committed = (await container.commit({ repo: opts.repo, tag: opts.tag, changes, pause: true })) as { Id?: string };
      if (!committed.Id) throw new BuildCommandError('committing the build command result produced no image');
      return { imageId: committed.Id };
    } finally {
      await bestEffort(`removing build-command container ${container.id}`, container.remove({ force: true }), { ignore: alreadyGone });
    }
  } finally {
    rmSync(opts.workDir, { recursive: true, force: true });
  }
}
