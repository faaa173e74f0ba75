// Disk hygiene for deploys: the images a build creates, removed again when its deploy fails; and
// retention after a successful deploy — the last N good releases (images, static directories,
// snapshots) are kept for rollback without a rebuild, older ones are pruned.
//
// What may be removed, and nothing else: images and containers labelled berth.managed=true for
// this app and this server, and the intermediate layers a berth build itself created (recorded in
// the journal as they appear, never "Using cache" ones or the FROM image). Unlabelled images and
// containers — whatever the operator runs on the host — are never touched.
import type Docker from 'dockerode';
import { existsSync, lstatSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LABEL } from '../docker/labels.js';
import { listBerthContainers, removeContainer } from '../docker/containers.js';
import type { AgentSettings } from '../settings.js';
import type { AgentStore } from '../store/index.js';
import { dockerMessageOf as messageOf, dockerStatusOf as statusOf } from '../docker/errors.js';


const STEP_RE = /^Step \d+\/\d+ : (\S+)/i;
const LAYER_RE = /^\s*---> ([0-9a-f]{12,64})\s*$/;
const CACHED_RE = /^\s*---> Using cache\s*$/;

/**
 * Reads the classic builder's output and reports every image a step *created*: the `---> ID` that
 * ends a step, unless the step was a cache hit (the image existed before) or a FROM (the base).
 */
export class BuildImageTracker {
  private fromStep = false;
  private cached = false;

  constructor(private readonly onCreated: (imageId: string) => void) {}

  line(text: string): void {
    const step = STEP_RE.exec(text);
    if (step) {
      this.fromStep = step[1]!.toUpperCase() === 'FROM';
      this.cached = false;
      return;
    }
    if (CACHED_RE.test(text)) {
      this.cached = true;
      return;
    }
    const layer = LAYER_RE.exec(text);
    if (layer && !this.fromStep && !this.cached) this.onCreated(layer[1]!);
  }
}

const untagged = (tags: string[] | undefined) => (tags ?? []).filter((t) => t !== '<none>:<none>').length === 0;

/**
 * After a failed deploy: remove its image (`tag`, only when it carries berth's labels) and the
 * intermediate images its build created, newest first. A layer that gained a tag or a child since
 * (another build reused it as cache) is in use and stays. Returns how many images were removed.
 */
export async function removeBuildLeftovers(docker: Docker, opts: { tag: string | null; imageIds: readonly string[]; server: string }): Promise<number> {
  let removed = 0;
  if (opts.tag) {
    try {
      const info = await docker.getImage(opts.tag).inspect();
      const labels = info.Config?.Labels ?? {};
      if (labels[LABEL.managed] === 'true' && (!opts.server || labels[LABEL.server] === opts.server)) {
        // Untags; the image (and its untagged parents nothing else uses) goes with its last tag.
        await docker.getImage(opts.tag).remove();
        removed++;
      }
    } catch (err) {
      if (statusOf(err) !== 404 && statusOf(err) !== 409) throw new Error(`could not remove image ${opts.tag}: ${messageOf(err)}`);
    }
  }
  for (const id of [...opts.imageIds].reverse()) {
    try {
      const info = await docker.getImage(id).inspect();
      if (!untagged(info.RepoTags)) continue;
      // noprune: only what this build recorded is removed, never a parent it did not create.
      await docker.getImage(id).remove({ noprune: true });
      removed++;
    } catch (err) {
      // 404: already gone (pruned with the tagged image); 409: a child or a container uses it.
      if (statusOf(err) !== 404 && statusOf(err) !== 409) throw new Error(`could not remove image ${id.slice(0, 12)}: ${messageOf(err)}`);
    }
  }
  return removed;
}

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

/**
 * Keep the app's last `settings.keepReleases` good releases (by latest activation; the live one
 * always) and prune the rest: berth images of this app and server, stopped berth containers that
 * are neither live nor part of a deploy in flight, static release directories, and the snapshots
 * of pruned releases. Deploys still in flight for the app keep everything they made.
 */
export async function pruneApp(
  deps: { docker: Docker; store: AgentStore; settings: AgentSettings },
  app: string,
  opts: { keepReleases?: number } = {},
): Promise<PruneReport> {
  const { docker, store, settings } = deps;
  const keepReleases = opts.keepReleases ?? settings.keepReleases;
  const report: PruneReport = { images: [], containers: [], staticDirs: [], kept: [], reclaimedBytes: 0 };
  const current = store.releases.get(app);
  const history = store.releases.history(app, 1000);
  const kept = history.slice(0, keepReleases);
  const dropped = history.slice(keepReleases);
  report.kept = kept.map((s) => s.deploymentId);
  const keepImages = new Set(kept.map((s) => s.image).filter(Boolean));
  if (current?.image) keepImages.add(current.image);
  const busy = store.deploys.unfinishedIds(app);
  if (current) busy.add(current.deploymentId);

  // Containers first: an image a stopped container still references cannot be removed.
  for (const c of await listBerthContainers(docker, { app, server: settings.server })) {
    if (busy.has(c.deploymentId) || c.state === 'running' || c.state === 'restarting' || c.state === 'paused') continue;
    await removeContainer(docker, c.id, { graceSeconds: 0 });
    report.containers.push(c.name);
  }

  const labels = [`${LABEL.managed}=true`, `${LABEL.app}=${app}`, ...(settings.server ? [`${LABEL.server}=${settings.server}`] : [])];
  const images = await docker.listImages({ filters: { label: labels } });
  const keptIds = new Set<string>();
  for (const img of images) {
    const tags = (img.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    if (tags.some((t) => keepImages.has(t)) || keepImages.has(img.Id)) keptIds.add(img.Id);
  }
  const before = images.length > keptIds.size ? await layersSize(docker) : null;
  for (const img of images) {
    // Re-checked on the image itself: listing filters are the engine's, this is ours.
    if (img.Labels?.[LABEL.managed] !== 'true' || img.Labels?.[LABEL.app] !== app) continue;
    if (settings.server && img.Labels?.[LABEL.server] !== settings.server) continue;
    if (keptIds.has(img.Id) || busy.has(img.Labels?.[LABEL.deployment] ?? '')) continue;
    const tags = (img.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    try {
      if (tags.length === 0) {
        await docker.getImage(img.Id).remove();
        report.images.push(img.Id.replace(/^sha256:/, '').slice(0, 12));
      } else {
        for (const t of tags) {
          await docker.getImage(t).remove();
          report.images.push(t);
        }
      }
    } catch (err) {
      // 409: still used (a container, or a kept image built on top of it); 404: gone with another.
      if (statusOf(err) !== 404 && statusOf(err) !== 409) throw new Error(`could not remove image ${tags[0] ?? img.Id.slice(0, 19)}: ${messageOf(err)}`);
    }
  }
  if (before !== null && report.images.length > 0) {
    const after = await layersSize(docker);
    if (after !== null) report.reclaimedBytes = Math.max(0, before - after);
  }

  // Static sites: only release directories named after a deployment, never the staging of one in flight.
  const protect = new Set<string>([...kept.map((s) => s.deploymentId), ...busy]);
  const keepDirs = new Set<string>([...kept.map((s) => s.staticRoot), current?.staticRoot].filter((d): d is string => !!d));
  const appDir = join(settings.staticDir, app);
  if (existsSync(appDir)) {
    for (const name of readdirSync(appDir)) {
      const path = join(appDir, name);
      if (!/^[a-z0-9]{8,40}$/.test(name) || protect.has(name) || keepDirs.has(path)) continue;
      if (!lstatSync(path).isDirectory()) continue;
      rmSync(path, { recursive: true, force: true });
      report.staticDirs.push(path);
    }
  }

  // A snapshot is only worth keeping while its image is: beyond retention, it goes too.
  const gone = dropped.filter((s) => !keepImages.has(s.image)).map((s) => s.deploymentId);
  if (gone.length > 0) store.releases.forgetSnapshots(gone);
  return report;
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

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
