// Building images with dockerode from a checkout, honouring .dockerignore the way `docker build`
// does: the build context, the build itself, and its progress stream read to an outcome
// (build-progress.ts: a failing RUN only shows up in that stream).
import type Docker from 'dockerode';
import { existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import dockerignore from '@balena/dockerignore';
import tar from 'tar-fs';
import { isRepoFile, readRepoFile } from './repo-paths.js';
import { dockerMessageOf } from '../docker/errors.js';
import type { ResourceLimits } from '../docker/limits.js';
import { BuildError, buildOutcome, BuildProgress, type ProgressEvent } from './build-progress.js';

export { BuildError } from './build-progress.js';

// A CommonJS module whose typings declare an ES default export: under NodeNext the default
// import is `module.exports`, and the package sets `factory.default = factory` for this case.
const ignore = dockerignore.default;

/** Name under which a Dockerfile given as text travels in the build context. */
export const INLINE_DOCKERFILE = '.berth.Dockerfile';

const MAX_DOCKERIGNORE_BYTES = 1024 * 1024;

export interface BuildOptions {
  contextDir: string;
  /** Dockerfile path relative to contextDir (default "Dockerfile"). */
  dockerfile?: string;
  /** Dockerfile text to build with instead of a file in the context (generated, or one from outside the context). */
  dockerfileContent?: string;
  tag: string;
  labels: Record<string, string>;
  buildArgs?: Record<string, string>;
  /** Memory and CPU caps of every build step's container. */
  limits?: ResourceLimits;
  /** Called once per output line of the build. */
  log: (line: string) => void;
  signal?: AbortSignal;
}

/**
 * The context-relative paths (POSIX separators) to send: everything not excluded by
 * .dockerignore, plus the Dockerfile and .dockerignore themselves, which Docker always sends.
 * Directories are walked even when excluded, because a later `!pattern` can re-include a file
 * inside them (as Docker does); an excluded directory is only sent as the parent of such a file.
 */
export function contextFiles(contextDir: string, dockerfile: string): Set<string> {
  const ig = ignore({ ignorecase: false });
  const rules = readRepoFile(contextDir, '.dockerignore', '.dockerignore', MAX_DOCKERIGNORE_BYTES) ?? '';
  ig.add(rules);
  // Without `!` exceptions an excluded directory can be skipped whole (think node_modules/).
  const hasExceptions = rules.split(/\r?\n/).some((l) => l.trim().startsWith('!'));
  const always = new Set([toPosix(normalize(dockerfile)), '.dockerignore']);
  const keep = new Set<string>();

  const addWithParents = (rel: string) => {
    keep.add(rel);
    for (let i = rel.lastIndexOf('/'); i > 0; i = rel.lastIndexOf('/', i - 1)) keep.add(rel.slice(0, i));
  };
  const walk = (relDir: string) => {
    const abs = relDir ? join(contextDir, relDir) : contextDir;
    for (const name of readdirSync(abs)) {
      const rel = relDir ? `${relDir}/${name}` : name;
      const st = lstatSync(join(contextDir, rel));
      const excluded = !always.has(rel) && ig.ignores(rel);
      if (st.isDirectory()) {
        if (!excluded) addWithParents(rel);
        if (!excluded || hasExceptions) walk(rel);
      } else if (!excluded) {
        addWithParents(rel);
      }
    }
  };
  walk('');
  return keep;
}

/** The Dockerfile is a regular file of the context, reached through no link that leaves it. */
function dockerfileInContext(contextDir: string, dfRel: string): boolean {
  try {
    return isRepoFile(contextDir, dfRel, `the Dockerfile "${toPosix(dfRel)}"`);
  } catch (err) {
    throw new BuildError((err as Error).message);
  }
}

function toPosix(p: string): string {
  return sep === '/' ? p : p.split(sep).join('/');
}

/** Build and tag an image; rejects with BuildError carrying the build's own error message. */
export async function buildImage(docker: Docker, opts: BuildOptions): Promise<{ imageId: string }> {
  const { signal } = opts;
  signal?.throwIfAborted();
  const { context, dockerfile } = buildContext(opts);
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.buildImage(context as unknown as NodeJS.ReadableStream, {
      t: opts.tag,
      labels: opts.labels,
      dockerfile,
      buildargs: opts.buildArgs ?? {},
      rm: true,
      // Also remove intermediate containers of a failed step: they would carry no berth labels.
      forcerm: true,
      ...buildLimitOptions(opts.limits),
      abortSignal: signal,
    } as Docker.ImageBuildOptions);
  } catch (err) {
    context.destroy();
    if (signal?.aborted) throw signal.reason;
    throw new BuildError(`docker build failed: ${dockerMessageOf(err)}`);
  }
  const progress = new BuildProgress(opts.log);
  await followBuild(docker, stream, progress, signal);
  const report = progress.end();
  if (signal?.aborted) throw signal.reason;
  const tagged = !report.failure && !report.imageId && report.successfullyBuilt ? await imageIdOf(docker, opts.tag) : null;
  return { imageId: buildOutcome(report, opts.limits, tagged) };
}

/**
 * The build context as a tar stream: the context directory minus what .dockerignore excludes, with
 * a Dockerfile given as text added under INLINE_DOCKERFILE. Checks that the context exists and that
 * the Dockerfile is a file inside it (no link leading out); `dockerfile` is its context-relative path.
 */
function buildContext(opts: BuildOptions): { context: ReturnType<typeof tar.pack>; dockerfile: string } {
  const contextDir = resolve(opts.contextDir);
  const inline = opts.dockerfileContent;
  const dockerfile = inline !== undefined ? INLINE_DOCKERFILE : (opts.dockerfile ?? 'Dockerfile');
  if (!existsSync(contextDir) || !statSync(contextDir).isDirectory()) throw new BuildError(`build context ${contextDir} does not exist`);
  const dfAbs = resolve(contextDir, dockerfile);
  const dfRel = relative(contextDir, dfAbs);
  if (isAbsolute(dockerfile) || dfRel.startsWith('..') || dfRel === '') {
    throw new BuildError(`Dockerfile path "${dockerfile}" must be inside the build context`);
  }
  if (inline === undefined && !dockerfileInContext(contextDir, dfRel)) {
    throw new BuildError(`no Dockerfile: "${toPosix(dfRel)}" not found in the build context`);
  }

  let keep: Set<string>;
  try {
    keep = contextFiles(contextDir, dfRel);
    if (inline !== undefined) keep.delete(INLINE_DOCKERFILE); // a same-named file in the repo is replaced
  } catch (err) {
    throw new BuildError(`could not read the build context: ${(err as Error).message}`);
  }
  // tar-fs asks about every path it meets; anything outside the computed set is skipped.
  const context = tar.pack(contextDir, {
    ignore: (abs: string) => !keep.has(toPosix(relative(contextDir, abs))),
    ...(inline !== undefined
      ? {
          finalize: false,
          finish: (pack: { entry: (h: object, body: string) => void; finalize: () => void }) => {
            pack.entry({ name: INLINE_DOCKERFILE, mode: 0o644, mtime: new Date(0) }, inline);
            pack.finalize();
          },
        }
      : {}),
  } as tar.PackOptions);
  return { context, dockerfile: toPosix(dfRel) };
}

/** Read the progress stream to its end into `progress`; an abort ends it early (the caller throws the reason). */
async function followBuild(docker: Docker, stream: NodeJS.ReadableStream, progress: BuildProgress, signal: AbortSignal | undefined): Promise<void> {
  // Destroy with an error so followProgress settles; the engine cancels a build whose client goes away.
  const onAbort = () => (stream as unknown as { destroy?: (e?: Error) => void }).destroy?.(new BuildError('build cancelled'));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolvePromise, reject) => {
      docker.modem.followProgress(
        stream,
        (err: Error | null) => (err ? reject(err) : resolvePromise()),
        (ev: ProgressEvent) => progress.event(ev),
      );
    });
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw new BuildError(`docker build failed: ${dockerMessageOf(err)}`);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** The id of the image `tag` points at now, or null. */
async function imageIdOf(docker: Docker, tag: string): Promise<string | null> {
  try {
    return (await docker.getImage(tag).inspect()).Id;
  } catch {
    return null; // buildOutcome reports the missing image
  }
}

const CPU_PERIOD_US = 100_000;

/** The classic builder's per-step caps (swap capped to memory: no swap on top of the limit). */
function buildLimitOptions(l: ResourceLimits | undefined): Record<string, number> {
  return {
    ...(l?.memory ? { memory: l.memory, memswap: l.memory } : {}),
    ...(l?.cpus ? { cpuperiod: CPU_PERIOD_US, cpuquota: Math.round(l.cpus * CPU_PERIOD_US) } : {}),
  };
}
