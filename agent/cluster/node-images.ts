// Every node of a cluster (workers and the manager) removes the berth images of the cluster's
// registry that no container uses any more (issue 15: "workers prune berth images no task uses").
// Swarm pulls a release's image on each node that runs one of its tasks, by digest; once the release's
// services are drained the image would stay for ever. What is ours, and nothing else:
//   - an image labelled berth.managed=true (the build labels every image it makes, and the labels
//     travel with the image through the registry), and
//   - only its references in the cluster's registry repository of the same app, REGISTRY/berth/APP
//     (by digest, or by tag on the manager that pushed it). An image that also has another name keeps it.
// An image is removed once it was unused at two checks at least the interval apart (Swarm pulls an
// image before it creates the task's container: a check between the two never removes it). On the
// manager, the images retention keeps for rollback (agent/releases/retention.ts keptImages) and the
// images of apps with a deploy running or draining are never removed.
import type Docker from 'dockerode';
import type { Logger } from '../../shared/logger.js';
import type { ServerSpec } from '../../shared/spec.js';
import { dockerMessageOf, dockerStatusOf } from '../docker/errors.js';
import { LABEL } from '../docker/labels.js';
import { PeriodicPass } from './periodic-pass.js';
import { keptImages } from '../releases/retention.js';
import type { AgentStore } from '../store/index.js';

export interface NodeImagesDeps {
  docker: Docker;
  store: AgentStore;
  logger: Logger;
  desired: () => ServerSpec | null;
  /** Apps with a deploy running or draining (their images are in use even with no container yet). */
  busyApps: () => ReadonlySet<string>;
  keepReleases: number;
  /** Between checks, and the least time an image is seen unused before it is removed. */
  intervalMs: number;
}

/** An image with the references of it that berth may remove. */
export interface PrunableImage {
  id: string;
  app: string;
  refs: string[];
}

/**
 * The berth images of `registry` that no container uses (pure): per image, its references in
 * REGISTRY/berth/APP (APP from its berth.app label). `protect`: references never removed (the
 * manager's kept releases); `busyApps`: apps whose images all stay.
 */
export function unusedRegistryImages(
  images: readonly Pick<Docker.ImageInfo, 'Id' | 'RepoTags' | 'RepoDigests' | 'Labels'>[],
  usedImageIds: ReadonlySet<string>,
  o: { registry: string; protect: ReadonlySet<string>; busyApps: ReadonlySet<string> },
): PrunableImage[] {
  const out: PrunableImage[] = [];
  for (const img of images) {
    const app = img.Labels?.[LABEL.managed] === 'true' ? img.Labels?.[LABEL.app] : undefined;
    if (!app || usedImageIds.has(img.Id) || o.busyApps.has(app)) continue;
    const repo = `${o.registry}/berth/${app}`;
    const all = [...(img.RepoDigests ?? []), ...(img.RepoTags ?? [])];
    if (all.some((r) => o.protect.has(r))) continue;
    const refs = all.filter((r) => r.startsWith(`${repo}@sha256:`) || r.startsWith(`${repo}:`));
    if (refs.length > 0) out.push({ id: img.Id, app, refs });
  }
  return out;
}

export class NodeImagePruner extends PeriodicPass {
  /** Image id → when it was first seen unused (it goes once it still is an interval later). */
  private readonly unusedSince = new Map<string, number>();

  constructor(private readonly deps: NodeImagesDeps) {
    super(deps.intervalMs);
  }

  /** One check; never throws. */
  protected runPass(): Promise<void> {
    return this.check().catch((err: unknown) => this.deps.logger.warn({ err: dockerMessageOf(err) }, 'could not prune the cluster images of this node'));
  }

  private async check(): Promise<void> {
    const { docker, store } = this.deps;
    const cluster = this.deps.desired()?.cluster;
    const registry = cluster?.registry?.address;
    if (!cluster || !registry) return;
    const [images, containers] = await Promise.all([docker.listImages({ filters: { label: [`${LABEL.managed}=true`] } }), docker.listContainers({ all: true })]);
    const busyApps = new Set(this.deps.busyApps());
    const protect = new Set<string>();
    if (cluster.role === 'manager' && store.isOpen) {
      for (const r of store.releases.all()) for (const ref of keptImages(store, r.app, this.deps.keepReleases)) protect.add(ref);
      for (const d of store.deploys.unfinished()) busyApps.add(d.app);
    }
    const unused = unusedRegistryImages(images, new Set(containers.map((c) => c.ImageID)), { registry, protect, busyApps });
    const now = Date.now();
    const seen = new Set(unused.map((i) => i.id));
    for (const id of this.unusedSince.keys()) if (!seen.has(id)) this.unusedSince.delete(id);
    for (const img of unused) {
      const since = this.unusedSince.get(img.id);
      if (since === undefined) this.unusedSince.set(img.id, now);
      else if (now - since >= this.deps.intervalMs) await this.remove(img);
    }
  }

  private async remove(img: PrunableImage): Promise<void> {
    this.unusedSince.delete(img.id);
    const removed: string[] = [];
    for (const ref of img.refs) {
      try {
        await this.deps.docker.getImage(ref).remove();
        removed.push(ref);
      } catch (err) {
        // 409: a container was created from it meanwhile; 404: gone with another reference.
        if (dockerStatusOf(err) === 409) return;
        if (dockerStatusOf(err) !== 404) throw err;
      }
    }
    if (removed.length > 0) this.deps.logger.info({ app: img.app, image: img.id.slice(0, 19), refs: removed }, 'removed a cluster image no container uses');
  }
}
