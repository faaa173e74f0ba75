// Release retention after a successful deploy (and when an app is removed): the last N good
// releases (images, static directories, snapshots) are kept for rollback without a rebuild,
// older ones are pruned.
//
// What may be removed, and nothing else: images and containers labelled berth.managed=true for
// this app and this server, and static release directories named after a deployment. Unlabelled
// images and containers — whatever the operator runs on the host — are never touched.
import type Docker from 'dockerode';
import { existsSync, lstatSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LABEL } from '../docker/labels.js';
import { listBerthContainers, removeContainer } from '../docker/containers.js';
import type { AgentSettings } from '../settings.js';
import type { AgentStore } from '../store/index.js';
import type { Release, ReleaseSnapshot } from '../store/releases.js';
import { dockerMessageOf as messageOf, dockerStatusOf as statusOf } from '../docker/errors.js';

export interface PruneReport {
  /** Image references removed (tags, or ids of untagged labelled images). */
  images: string[];
  containers: string[];
  staticDirs: string[];
  /** Kept releases (deployment ids), the most recently activated first. */
  kept: string[];
  /** Bytes Docker reports as freed by the image removals (layers no longer used by anything). */
  reclaimedBytes: number;
}

type Deps = { docker: Docker; store: AgentStore; settings: AgentSettings };

/** What retention keeps: the releases within the limit, the live one, and every deploy in flight. */
interface Keep {
  current: Release | null;
  kept: ReleaseSnapshot[];
  dropped: ReleaseSnapshot[];
  /** Image references (tags or ids) of kept releases and the live one. */
  images: Set<string>;
  /** Deployment ids whose containers and images stay: deploys in flight and the live release. */
  busy: Set<string>;
}

/**
 * Keep the app's last `settings.keepReleases` good releases (by latest activation; the live one
 * always) and prune the rest: berth images of this app and server, stopped berth containers that
 * are neither live nor part of a deploy in flight, static release directories, and the snapshots
 * of pruned releases. Deploys still in flight for the app keep everything they made.
 */
export async function pruneApp(deps: Deps, app: string, opts: { keepReleases?: number } = {}): Promise<PruneReport> {
  const keep = whatToKeep(deps.store, app, opts.keepReleases ?? deps.settings.keepReleases);
  const report: PruneReport = { images: [], containers: [], staticDirs: [], kept: keep.kept.map((s) => s.deploymentId), reclaimedBytes: 0 };
  // Containers first: an image a stopped container still references cannot be removed.
  report.containers = await pruneContainers(deps, app, keep);
  Object.assign(report, await pruneImages(deps, app, keep));
  report.staticDirs = pruneStaticDirs(deps.settings.staticDir, app, keep);
  // A snapshot is only worth keeping while its image is: beyond retention, it goes too.
  const gone = keep.dropped.filter((s) => !keep.images.has(s.image)).map((s) => s.deploymentId);
  if (gone.length > 0) deps.store.releases.forgetSnapshots(gone);
  return report;
}

/** The image references retention keeps for `app`: the last `keepReleases` releases' and the live one's. */
export function keptImages(store: AgentStore, app: string, keepReleases: number): Set<string> {
  return whatToKeep(store, app, keepReleases).images;
}

function whatToKeep(store: AgentStore, app: string, keepReleases: number): Keep {
  const current = store.releases.get(app);
  const history = store.releases.history(app, 1000);
  const kept = history.slice(0, keepReleases);
  const images = new Set(kept.map((s) => s.image).filter(Boolean));
  if (current?.image) images.add(current.image);
  const busy = store.deploys.unfinishedIds(app);
  if (current) busy.add(current.deploymentId);
  return { current, kept, dropped: history.slice(keepReleases), images, busy };
}

/** Stopped berth containers of the app that belong to neither the live release nor a deploy in flight. */
async function pruneContainers(deps: Deps, app: string, keep: Keep): Promise<string[]> {
  const removed: string[] = [];
  for (const c of await listBerthContainers(deps.docker, { app, server: deps.settings.server })) {
    if (keep.busy.has(c.deploymentId) || c.state === 'running' || c.state === 'restarting' || c.state === 'paused') continue;
    await removeContainer(deps.docker, c.id, { graceSeconds: 0 });
    removed.push(c.name);
  }
  return removed;
}

const tagsOf = (tags: string[] | undefined) => (tags ?? []).filter((t) => t !== '<none>:<none>');

/** The app's berth images on this server that no kept release or deploy in flight uses, and the bytes freed. */
async function pruneImages(deps: Deps, app: string, keep: Keep): Promise<Pick<PruneReport, 'images' | 'reclaimedBytes'>> {
  const { docker, settings } = deps;
  const labels = [`${LABEL.managed}=true`, `${LABEL.app}=${app}`, ...(settings.server ? [`${LABEL.server}=${settings.server}`] : [])];
  const images = await docker.listImages({ filters: { label: labels } });
  // A cluster release is kept by its registry digest reference (REGISTRY/berth/APP@sha256:…): RepoDigests.
  const kept = (img: Docker.ImageInfo) => tagsOf(img.RepoTags).some((t) => keep.images.has(t)) || (img.RepoDigests ?? []).some((d) => keep.images.has(d)) || keep.images.has(img.Id);
  const keptIds = new Set(images.filter(kept).map((img) => img.Id));
  const before = images.length > keptIds.size ? await layersSize(docker) : null;
  const removed: string[] = [];
  for (const img of images) {
    // Re-checked on the image itself: listing filters are the engine's, this is ours.
    if (img.Labels?.[LABEL.managed] !== 'true' || img.Labels?.[LABEL.app] !== app) continue;
    if (settings.server && img.Labels?.[LABEL.server] !== settings.server) continue;
    if (keptIds.has(img.Id) || keep.busy.has(img.Labels?.[LABEL.deployment] ?? '')) continue;
    removed.push(...(await removeImage(docker, img.Id, tagsOf(img.RepoTags))));
  }
  let reclaimedBytes = 0;
  if (before !== null && removed.length > 0) {
    const after = await layersSize(docker);
    if (after !== null) reclaimedBytes = Math.max(0, before - after);
  }
  return { images: removed, reclaimedBytes };
}

/** Remove one image by each of its tags (or by id when untagged); returns the references removed. */
async function removeImage(docker: Docker, id: string, tags: string[]): Promise<string[]> {
  const removed: string[] = [];
  try {
    if (tags.length === 0) {
      await docker.getImage(id).remove();
      removed.push(id.replace(/^sha256:/, '').slice(0, 12));
    } else {
      for (const t of tags) {
        await docker.getImage(t).remove();
        removed.push(t);
      }
    }
  } catch (err) {
    // 409: still used (a container, or a kept image built on top of it); 404: gone with another.
    if (statusOf(err) !== 404 && statusOf(err) !== 409) throw new Error(`could not remove image ${tags[0] ?? id.slice(0, 19)}: ${messageOf(err)}`);
  }
  return removed;
}

/** Static sites: only release directories named after a deployment, never the staging of one in flight. */
function pruneStaticDirs(staticDir: string, app: string, keep: Keep): string[] {
  const protect = new Set<string>([...keep.kept.map((s) => s.deploymentId), ...keep.busy]);
  const keepDirs = new Set<string>([...keep.kept.map((s) => s.staticRoot), keep.current?.staticRoot].filter((d): d is string => !!d));
  const appDir = join(staticDir, app);
  const removed: string[] = [];
  if (!existsSync(appDir)) return removed;
  for (const name of readdirSync(appDir)) {
    const path = join(appDir, name);
    if (!/^[a-z0-9]{8,40}$/.test(name) || protect.has(name) || keepDirs.has(path)) continue;
    if (!lstatSync(path).isDirectory()) continue;
    rmSync(path, { recursive: true, force: true });
    removed.push(path);
  }
  return removed;
}

/** Total size of the engine's image layers (null when the engine cannot tell). */
async function layersSize(docker: Docker): Promise<number | null> {
  try {
    const df = (await docker.df()) as { LayersSize?: number };
    return typeof df.LayersSize === 'number' ? df.LayersSize : null;
  } catch {
    return null;
  }
}
