// A deploy triggered by a Git push never takes an app backwards. The control plane skips pushes of
// commits it has seen deployed, but it has no checkout: only here can a commit that was never
// deployed be recognised as an ancestor of the live one (a replayed push of an older commit).
import { isAncestor } from '../build/git.js';

/** The deploy was not wanted after all: it ends `cancelled` with this message as its reason. */
export class DeploySkipped extends Error {
  override name = 'DeploySkipped';
}

/**
 * Throws DeploySkipped when `commit` is the live release's commit or an ancestor of it. When git
 * cannot tell (the live commit is gone from the cache), the deploy goes ahead and says so.
 */
export async function refuseOlderThanLive(opts: {
  cacheDir: string;
  commit: string;
  live: { commit: string | null; deploymentId: string } | null | undefined;
  log: (line: string) => void;
  signal?: AbortSignal;
}): Promise<void> {
  const live = opts.live?.commit;
  if (!live || !/^[0-9a-f]{40}$/.test(live) || !/^[0-9a-f]{40}$/.test(opts.commit)) return;
  const older = await isAncestor({ cacheDir: opts.cacheDir, commit: opts.commit, of: live, signal: opts.signal });
  const release = `release ${opts.live!.deploymentId}`;
  if (older === null) {
    opts.log(`could not tell whether commit ${opts.commit.slice(0, 12)} is older than the live commit ${live.slice(0, 12)} (${release}): deploying it`);
    return;
  }
  if (!older) return;
  const what = opts.commit === live ? 'is the live commit' : `is an ancestor of the live commit ${live.slice(0, 12)}`;
  throw new DeploySkipped(
    `skipped: commit ${opts.commit.slice(0, 12)} ${what} (${release}); a push never deploys an older commit — use berth deploy --commit or berth rollback`,
  );
}
