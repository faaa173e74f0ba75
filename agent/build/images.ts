// Image bookkeeping for builds: the images a build creates, recorded as they appear so a failed
// deploy can remove them again (retention of good releases lives in releases/retention.ts).
//
// What may be removed, and nothing else: the deploy's image when it carries berth's labels for
// this server, and the intermediate layers a berth build itself created (recorded in the journal
// as they appear, never "Using cache" ones or the FROM image). Unlabelled images — whatever the
// operator runs on the host — are never touched.
import type Docker from 'dockerode';
import { LABEL } from '../docker/labels.js';
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

/** A byte count for the deploy log ("1.5 MiB"). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
