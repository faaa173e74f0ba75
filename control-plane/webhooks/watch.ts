// Monorepos: a push deploys an app with `--watch` globs only when one of the files it changed
// matches. The changed files come from the push payload (GitHub, Gitea/Forgejo and GitLab list
// them per commit); when the payload does not list them all, the push deploys, as it would without
// globs — a missed deploy is worse than an extra one.
import { z } from 'zod';
import { firstWatched } from '../../shared/monorepo.js';
import { decodeBody, type GitHost, type Headers } from './hosts.js';

const MAX_FILES = 10_000;
const files = z.array(z.string().max(4096)).max(MAX_FILES).optional();
const commit = z.object({ added: files, modified: files, removed: files });
const payload = z.object({ commits: z.array(commit).max(1000).optional(), total_commits_count: z.number().int().optional() });
/** GitHub lists at most 20 commits of a push: a push of 20 may have had more. */
const GITHUB_COMMIT_CAP = 20;

/** The files the push changed, or null when the payload does not say (all of them). */
export function changedFiles(host: GitHost, h: Headers, body: Buffer): string[] | null {
  if (host === 'bitbucket') return null;
  const decoded = decodeBody(h, body);
  if (!decoded.ok) return null;
  const p = payload.safeParse(decoded.data);
  if (!p.success || !p.data.commits || p.data.commits.length === 0) return null;
  const commits = p.data.commits;
  if (host !== 'gitlab' && commits.length >= GITHUB_COMMIT_CAP) return null;
  if (host === 'gitlab' && (p.data.total_commits_count ?? commits.length) > commits.length) return null;
  const out = new Set<string>();
  for (const c of commits) {
    if (!c.added && !c.modified && !c.removed) return null;
    for (const f of [...(c.added ?? []), ...(c.modified ?? []), ...(c.removed ?? [])]) out.add(f);
  }
  return [...out];
}

export type WatchVerdict = { deploy: true; note: string | null } | { deploy: false; message: string };

/** Whether a push deploys an app with these watch globs (none: every push deploys). */
export function watchVerdict(globs: string[] | undefined, changed: string[] | null): WatchVerdict {
  if (!globs || globs.length === 0) return { deploy: true, note: null };
  if (changed === null) return { deploy: true, note: 'the payload does not list the changed files: deploying without checking the watch patterns' };
  const hit = firstWatched(changed, globs);
  if (hit !== null) return { deploy: true, note: `${hit} matches the watch patterns` };
  return {
    deploy: false,
    message: `skipped: the push changed ${changed.length} file${changed.length === 1 ? '' : 's'}, none matching the app's watch patterns (${globs.join(', ')})`,
  };
}
