// The release command: once per deploy, in a one-off container of the new image with the app's
// env, after the build and before any traffic moves. Non-zero exit or timeout fails the deploy.
import type Docker from 'dockerode';
import { shellCommand } from './container-spec.js';
import { OneOffError, runOneOff } from './one-off.js';
import { outOfMemory, type ResourceLimits } from './limits.js';

export class ReleaseCommandError extends Error {
  override name = 'ReleaseCommandError';
}

export function releaseCommandContainerName(app: string, deploymentId: string): string {
  return `berth-${app}-release-${deploymentId}`;
}

export async function runReleaseCommand(
  docker: Docker,
  opts: {
    app: string;
    deploymentId: string;
    image: string;
    command: string;
    env: Record<string, string>;
    labels: Record<string, string>;
    /** The app's named volumes (volumes.ts volumeMounts): what the release command writes there, the processes see. */
    volumes?: Docker.MountSettings[];
    log: (line: string) => void;
    timeoutMs: number;
    signal?: AbortSignal;
    /** The build's caps: the release is a one-off job like the build. */
    limits?: ResourceLimits;
    /** A cluster app's overlay network: the release command reaches what the services will. */
    network?: string;
  },
): Promise<void> {
  let exitCode: number;
  let oomKilled: boolean;
  try {
    ({ exitCode, oomKilled } = await runOneOff(docker, {
      name: releaseCommandContainerName(opts.app, opts.deploymentId),
      image: opts.image,
      // The image's entrypoint stays (it may set up the environment); the command replaces CMD.
      cmd: shellCommand(opts.command),
      env: opts.env,
      labels: opts.labels,
      ...(opts.volumes && opts.volumes.length > 0 ? { volumes: opts.volumes } : {}),
      log: opts.log,
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      ...(opts.limits ? { limits: opts.limits } : {}),
      ...(opts.network ? { network: opts.network } : {}),
    }));
  } catch (err) {
    if (err instanceof OneOffError) throw new ReleaseCommandError(`release command ${err.message.replace(/^berth-\S+ /, '')}`);
    throw err;
  }
  if (oomKilled) throw new ReleaseCommandError(`release command ran ${outOfMemory(opts.limits?.memory)} and was killed (raise build.memory in berth.yml or BERTH_BUILD_MEMORY)`);
  if (exitCode !== 0) throw new ReleaseCommandError(`release command exited with code ${exitCode}`);
}
