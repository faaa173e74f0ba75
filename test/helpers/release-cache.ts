// scripts/package.sh's tarballs, made once per content for the whole test run: install, install-systemd,
// upgrade, install-signing and install-release-host each serve the same releases, and package.sh copies
// and prunes node_modules every time (10–40 s each on the shared machine). Its archive is deterministic
// (sorted names, fixed owner and mtime, gzip -n), so unchanged inputs give the same bytes: an entry is
// keyed by a hash of what package.sh reads (the compiled tree, package.json and its lockfiles, install.sh,
// README, systemd/, docs/, package.sh itself), the version and the Node that runs it. node_modules is
// represented by npm's own record of what is installed (node_modules/.package-lock.json) and the compiled
// better-sqlite3 addon. The first use of a key runs package.sh (and its own checks) as before.
// BERTH_TEST_RELEASE_CACHE=0 turns the cache off.
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CACHE_DIR = join(tmpdir(), 'berth-test-release-cache');
/** Entries kept (most recently used first); each is one tarball of ~10–20 MB. */
const KEEP = 6;
const INPUT_FILES = ['scripts/package.sh', 'package.json', 'package-lock.json', 'install.sh', 'README.md', 'node_modules/.package-lock.json', 'node_modules/better-sqlite3/build/Release/better_sqlite3.node'];
const INPUT_TREES = ['dist/cli', 'dist/agent', 'dist/control-plane', 'dist/shared', 'systemd', 'docs'];

function hashTree(h: Hash, root: string, rel: string): void {
  const dir = join(root, rel);
  if (!existsSync(dir)) {
    h.update(`absent ${rel}\0`);
    return;
  }
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const path = `${rel}/${e.name}`;
    if (e.isDirectory()) hashTree(h, root, path);
    else h.update(`${path}\0`).update(readFileSync(join(root, path))).update('\0');
  }
}

/** The cache key of `version`'s tarball built from the tree at `root`. */
export function releaseKey(root: string, version: string): string {
  const h = createHash('sha256').update(`${version}\0${process.version}\0${process.platform}\0${process.arch}\0`);
  for (const f of INPUT_FILES) {
    const path = join(root, f);
    h.update(`${f}\0`).update(existsSync(path) ? readFileSync(path) : 'absent').update('\0');
  }
  for (const t of INPUT_TREES) hashTree(h, root, t);
  return h.digest('hex').slice(0, 32);
}

/**
 * Put `version`'s tarball, .sha256 and .json into `outDir`: copied from the cache when its inputs
 * are unchanged, else made by `build(dir)` (package.sh --out dir) and kept. Says which.
 */
export async function cachedRelease(
  root: string,
  outDir: string,
  version: string,
  build: (dir: string) => Promise<void>,
  cacheDir = CACHE_DIR,
): Promise<'cached' | 'built'> {
  mkdirSync(outDir, { recursive: true });
  if (process.env.BERTH_TEST_RELEASE_CACHE === '0') return (await build(outDir), 'built');
  const key = releaseKey(root, version);
  const entry = join(cacheDir, key);
  let how: 'cached' | 'built' = 'cached';
  if (!existsSync(join(entry, 'done'))) {
    how = 'built';
    const work = join(cacheDir, `.tmp-${randomBytes(6).toString('hex')}`);
    mkdirSync(work, { recursive: true });
    try {
      await build(work);
      // The tree changed while package.sh copied it (a compile meanwhile): use this build once, keep nothing.
      if (releaseKey(root, version) !== key) {
        for (const f of readdirSync(work)) copyFileSync(join(work, f), join(outDir, f));
        return 'built';
      }
      writeFileSync(join(work, 'done'), '');
      try {
        renameSync(work, entry);
      } catch (err) {
        // Another test process made the same entry meanwhile: the same bytes, keep theirs.
        if (!existsSync(join(entry, 'done'))) throw err;
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }
  const now = new Date();
  utimesSync(entry, now, now);
  for (const f of readdirSync(entry)) if (f !== 'done') copyFileSync(join(entry, f), join(outDir, f));
  evict(cacheDir);
  return how;
}

/** Keep the KEEP most recently used entries (and no leftovers of interrupted builds older than an hour). */
function evict(cacheDir: string): void {
  const entries = readdirSync(cacheDir).map((name) => ({ name, mtime: statSync(join(cacheDir, name)).mtimeMs }));
  const kept = entries.filter((e) => !e.name.startsWith('.')).sort((a, b) => b.mtime - a.mtime);
  const stale = entries.filter((e) => e.name.startsWith('.tmp-') && e.mtime < Date.now() - 3_600_000);
  for (const e of [...kept.slice(KEEP), ...stale]) rmSync(join(cacheDir, e.name), { recursive: true, force: true });
}
