// Static sites: the built directory is copied out of the image (or the checkout, for plain files)
// into a fresh per-release directory that nginx serves straight from disk — no container runs.
// A release directory is complete before nginx is pointed at it (the nginx transaction is the
// atomic switch), files are world-readable for nginx's unprivileged workers, and links are
// dropped so a site can never expose files outside its own directory.
import type Docker from 'dockerode';
import { chmodSync, constants, copyFileSync, lstatSync, mkdirSync, readdirSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-fs';
import { ensureDir, ensureDirAtLeast } from '../../shared/util/index.js';
import { alreadyGone, dockerStatusOf } from '../docker/errors.js';
import { containerCreateOptions } from '../docker/container-spec.js';
import { berthLabels, LABEL } from '../docker/labels.js';
import { isInside, RepoPathError, repoDirNoLinks } from './repo-paths.js';
import { bestEffort } from '../../shared/util/index.js';

export class StaticSiteError extends Error {
  override name = 'StaticSiteError';
}

const DEPLOY_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** DIR/APP/DEPLOYMENT: where a static release lives. */
export function staticReleaseDir(staticDir: string, app: string, deploymentId: string): string {
  if (!DEPLOY_ID_RE.test(deploymentId)) throw new StaticSiteError(`invalid deployment id "${deploymentId}"`);
  return join(staticDir, app, deploymentId);
}

/** nginx workers run as nobody: every directory above the site must let others pass. */
export function assertTraversable(dir: string): void {
  for (let d = resolve(dir); ; d = dirname(d)) {
    const st = statSync(d);
    if ((st.mode & 0o001) === 0) throw new StaticSiteError(`nginx workers cannot reach ${dir}: ${d} is not world-traversable (chmod o+x ${d}, or set BERTH_STATIC_DIR elsewhere)`);
    if (d === dirname(d)) return;
  }
}

function prepareParent(staticDir: string, app: string): string {
  const appDir = join(staticDir, app);
  ensureDirAtLeast(staticDir, 0o755);
  ensureDir(appDir, 0o755);
  assertTraversable(appDir);
  return appDir;
}

/**
 * Make a tree world-readable (dirs 755, files 644) and drop anything that is not a file or directory.
 * Everything is lstat-ed first and links are never followed: chmod and rm act inside `root` only.
 */
function normalizeTree(root: string): { files: number } {
  if (!lstatSync(root).isDirectory()) throw new StaticSiteError(`the staging directory ${root} is not a plain directory`);
  let files = 0;
  const walk = (dir: string) => {
    chmodSync(dir, 0o755);
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) {
        chmodSync(p, 0o644);
        files++;
      } else rmSync(p, { force: true }); // a link itself, never its target
    }
  };
  walk(root);
  return { files };
}

export interface PublishResult {
  dir: string;
  files: number;
  /** What was left out of a site copied from the checkout (links, FIFOs, ...), "path: why", for the deploy log. */
  dropped: string[];
}

/** Extract `path` (relative to the image's working dir, or absolute) from the image into the release directory. */
export async function publishFromImage(
  docker: Docker,
  opts: { image: string; path: string; staticDir: string; app: string; deploymentId: string; server?: string; signal?: AbortSignal },
): Promise<PublishResult> {
  const info = await docker.getImage(opts.image).inspect();
  const workdir = info.Config?.WorkingDir || '/';
  const src = posix.resolve(workdir, opts.path);
  const appDir = prepareParent(opts.staticDir, opts.app);
  const dest = staticReleaseDir(opts.staticDir, opts.app, opts.deploymentId);
  const staging = join(appDir, `.staging-${opts.deploymentId}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { mode: 0o755 });

  // A created (never started) container is how Docker lets files be copied out of an image.
  const labels = berthLabels(opts.app, opts.deploymentId, { [LABEL.process]: 'static', ...(opts.server ? { [LABEL.server]: opts.server } : {}) });
  const container = await docker.createContainer(containerCreateOptions({ kind: 'inert', image: opts.image, cmd: ['true'], labels }));
  try {
    let archive: NodeJS.ReadableStream;
    try {
      archive = (await container.getArchive({ path: src })) as NodeJS.ReadableStream;
    } catch (err) {
      if (dockerStatusOf(err) === 404) {
        throw new StaticSiteError(`build.static: directory ${src} does not exist in the built image (did the build command create it?)`);
      }
      throw err;
    }
    await extractSite(archive, staging, opts.signal);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    if (err instanceof StaticSiteError) throw err;
    throw new StaticSiteError(`could not copy ${src} out of the image: ${(err as Error).message}`);
  } finally {
    await bestEffort(`removing ${container.id}`, container.remove({ force: true }), { ignore: alreadyGone });
  }
  return { ...finish(staging, dest), dropped: [] };
}

/**
 * Unpack a container archive of a site directory into `staging`: regular files and directories only
 * (no links, devices or hard links), the leading directory name stripped. tar-fs places every name
 * under `staging` (it joins names onto "/" first, so "../" cannot climb out).
 */
export async function extractSite(archive: NodeJS.ReadableStream, staging: string, signal?: AbortSignal): Promise<void> {
  await pipeline(
    archive as NodeJS.ReadableStream & AsyncIterable<Buffer>,
    tar.extract(staging, {
      map: (header) => {
        header.name = header.name.replace(/^[^/]*\/?/, '');
        return header;
      },
      ignore: (_name, header) => header?.type !== 'file' && header?.type !== 'directory',
      chown: false,
      dmode: 0o755,
      fmode: 0o644,
    } as tar.ExtractOptions),
    { signal },
  );
}

/**
 * Copy `path` (relative to the checkout) into the release directory: a site of plain files, no build.
 * The root must be a real directory of the checkout (no symbolic link on the way); inside it only
 * files and directories are copied, found with lstat, so no link is ever followed or kept.
 */
export function publishFromDir(opts: { checkout: string; path: string; staticDir: string; app: string; deploymentId: string }): PublishResult {
  let src: string | null;
  try {
    src = repoDirNoLinks(opts.checkout, opts.path, `build.static "${opts.path}"`);
  } catch (err) {
    if (err instanceof RepoPathError) throw new StaticSiteError(err.message);
    throw err;
  }
  if (src === null) throw new StaticSiteError(`build.static: directory "${opts.path}" does not exist in the repository`);
  const appDir = prepareParent(opts.staticDir, opts.app);
  const dest = staticReleaseDir(opts.staticDir, opts.app, opts.deploymentId);
  const staging = join(appDir, `.staging-${opts.deploymentId}`);
  rmSync(staging, { recursive: true, force: true });
  const dropped: string[] = [];
  copySite(src, staging, posix.normalize(opts.path), realpathSync(opts.checkout), dropped);
  return { ...finish(staging, dest), dropped };
}

/** Files and directories of `src` into `dest` (created); everything else is named in `dropped`. .git never reaches the site. */
function copySite(src: string, dest: string, shown: string, checkout: string, dropped: string[]): void {
  mkdirSync(dest, { mode: 0o755 });
  for (const name of readdirSync(src)) {
    if (name === '.git') continue;
    const from = join(src, name);
    const st = lstatSync(from);
    if (st.isDirectory()) copySite(from, join(dest, name), `${shown}/${name}`, checkout, dropped);
    else if (st.isFile()) copyFileSync(from, join(dest, name), constants.COPYFILE_EXCL);
    else dropped.push(`${shown}/${name}: ${whyDropped(from, st.isSymbolicLink(), checkout)}`);
  }
}

function whyDropped(path: string, isLink: boolean, checkout: string): string {
  if (!isLink) return 'not a regular file or directory';
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    return 'a symbolic link to nothing';
  }
  return isInside(checkout, real) ? 'a symbolic link (links are not published)' : 'a symbolic link pointing outside the repository';
}

function finish(staging: string, dest: string): Omit<PublishResult, 'dropped'> {
  const { files } = normalizeTree(staging);
  if (files === 0) {
    rmSync(staging, { recursive: true, force: true });
    throw new StaticSiteError('build.static: the directory is empty');
  }
  rmSync(dest, { recursive: true, force: true });
  renameSync(staging, dest); // complete before anything points at it
  return { dir: dest, files };
}
