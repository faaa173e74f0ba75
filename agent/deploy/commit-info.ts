// What a deploy learns from Git about the commit it deploys, besides its SHA. Issue 16: the commit's
// subject line (text from the repository: hostile, cleaned to one short line) and the repo's
// `scale:` per process, so `berth app show` can say "the repo says N". Issue 17 (monorepos): whether
// a push changed a watched file since the live release.
import { cleanCommitSubject } from '../../shared/commit-subject.js';
import { firstWatched } from '../../shared/monorepo.js';
import { scaleOverride, type ScaleOverride } from '../../shared/spec.js';
import { gitInCache } from '../build/git.js';
import type { AppConfig } from '../config/index.js';
import { DeploySkipped } from './push-guard.js';

/** The subject of `commit` in the bare cache (`git log -1 --format=%s`), cleaned; null when git cannot say. */
export async function readCommitSubject(cacheDir: string, commit: string, signal?: AbortSignal): Promise<string | null> {
  if (!/^[0-9a-f]{40}$/.test(commit)) return null;
  try {
    const r = await gitInCache(cacheDir, ['log', '-1', '--no-show-signature', '--format=%s', commit, '--'], signal);
    if (r.code !== 0) return null;
    // Only the start is ever shown: a megabyte of subject costs no more than its first lines.
    const subject = cleanCommitSubject(r.stdout.slice(0, 8192));
    return subject || null;
  } catch (err) {
    if (signal?.aborted) throw err;
    return null;
  }
}

/** The config's `scale:` per process (before any `berth scale` override); undefined when it does not fit the protocol. */
export function repoScaleOf(config: AppConfig): ScaleOverride | undefined {
  const scale = Object.fromEntries(Object.entries(config.processes).map(([name, p]) => [name, p.scale]));
  const ok = scaleOverride.safeParse(scale);
  return ok.success ? ok.data : undefined;
}

/**
 * The files that differ between the trees of `from` and `to` (`git diff --name-only`, renames as a
 * deletion and an addition so both paths count); null when git cannot tell (e.g. `from` is not in the cache).
 */
export async function changedBetween(cacheDir: string, from: string, to: string, signal?: AbortSignal): Promise<string[] | null> {
  if (!/^[0-9a-f]{40}$/.test(from) || !/^[0-9a-f]{40}$/.test(to)) return null;
  const r = await gitInCache(cacheDir, ['diff', '--name-only', '-z', '--no-renames', '--no-ext-diff', '--no-textconv', from, to, '--'], signal);
  if (r.code !== 0) return null;
  return r.stdout.split('\0').filter((f) => f.length > 0);
}

/**
 * A push to an app with watch globs: throws DeploySkipped when no file changed since the live
 * release's commit matches them. Deploys (and says why) when that cannot be told.
 */
export async function skipUnlessWatchedChange(opts: {
  cacheDir: string;
  commit: string;
  globs: readonly string[];
  live: { commit: string | null; deploymentId: string } | null | undefined;
  log: (line: string) => void;
  signal?: AbortSignal;
}): Promise<void> {
  const { live, globs } = opts;
  const patterns = globs.join(', ');
  if (!live?.commit) {
    opts.log(`no live release to compare with: deploying without checking the watch patterns (${patterns})`);
    return;
  }
  const since = `the live commit ${live.commit.slice(0, 12)} (release ${live.deploymentId})`;
  const changed = await changedBetween(opts.cacheDir, live.commit, opts.commit, opts.signal);
  if (changed === null) {
    opts.log(`could not tell which files changed since ${since}: deploying without checking the watch patterns (${patterns})`);
    return;
  }
  const hit = firstWatched(changed, globs);
  if (hit !== null) {
    opts.log(`${hit} changed since ${since} and matches the watch patterns`);
    return;
  }
  const n = changed.length;
  throw new DeploySkipped(`skipped: ${n} file${n === 1 ? '' : 's'} changed since ${since}, none matching the app's watch patterns (${patterns}); nothing was built`);
}
