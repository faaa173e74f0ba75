// The built image goes to the cluster's registry: tagged REGISTRY/berth/APP:RELEASE, pushed with
// the registry's credentials (in the X-Registry-Auth header dockerode sends, never on a command
// line), and referred to from then on by the DIGEST the registry answered — workers pull exactly
// what was built, whatever happens to the tag.
import type Docker from 'dockerode';
import type { ClusterRegistrySpec } from '../../../shared/spec.js';
import { engineMessage } from '../swarm.js';
import { ClusterDeployError } from './service-spec.js';

/** Docker's auth config for the registry (absent: the registry needs no credentials). */
export function registryAuth(r: ClusterRegistrySpec): Docker.AuthConfig | undefined {
  if (!r.username || !r.password) return undefined;
  return { username: r.username, password: r.password, serveraddress: r.address };
}

/** REGISTRY/berth/APP */
export function registryRepo(r: Pick<ClusterRegistrySpec, 'address'>, app: string): string {
  return `${r.address}/berth/${app}`;
}

/** REGISTRY/berth/APP@sha256:… */
export function digestRef(r: Pick<ClusterRegistrySpec, 'address'>, app: string, digest: string): string {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new ClusterDeployError(`the registry answered an invalid digest ${JSON.stringify(digest.slice(0, 80))}`);
  return `${registryRepo(r, app)}@${digest}`;
}

export interface PushEvent {
  status?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { Tag?: string; Digest?: string };
}

/** Tag `image` for the registry and push it; resolves with the pushed image's digest reference. */
export async function pushImage(
  docker: Docker,
  o: { image: string; app: string; deploymentId: string; registry: ClusterRegistrySpec; log: (line: string) => void; signal: AbortSignal },
): Promise<string> {
  const repo = registryRepo(o.registry, o.app);
  const auth = registryAuth(o.registry);
  try {
    await docker.getImage(o.image).tag({ repo, tag: o.deploymentId });
  } catch (err) {
    throw new ClusterDeployError(`could not tag ${o.image} as ${repo}:${o.deploymentId}: ${engineMessage(err)}`);
  }
  o.log(`pushing ${repo}:${o.deploymentId}`);
  let digest: string | null = null;
  try {
    const stream = await docker.getImage(`${repo}:${o.deploymentId}`).push({ tag: o.deploymentId, abortSignal: o.signal, ...(auth ? { authconfig: auth } : {}) });
    await followEngine(docker, stream, (e) => {
      if (e.aux?.Digest) digest = e.aux.Digest;
    });
  } catch (err) {
    o.signal.throwIfAborted();
    throw new ClusterDeployError(`push to ${o.registry.address} failed: ${engineMessage(err)}`);
  }
  if (!digest) throw new ClusterDeployError(`push to ${o.registry.address} finished without a digest`);
  const ref = digestRef(o.registry, o.app, digest);
  o.log(`pushed ${ref}`);
  return ref;
}

/** Follow a push or pull stream of the engine to its end; an event with `error` rejects. */
export function followEngine(docker: Docker, stream: NodeJS.ReadableStream, onEvent: (e: PushEvent) => void = () => {}): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (err) => (err ? reject(err) : resolve()),
      (e: PushEvent) => {
        if (e.error) reject(new Error(e.errorDetail?.message ?? e.error));
        onEvent(e);
      },
    );
  });
}
