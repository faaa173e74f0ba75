// The building phase of a deploy: the image (generated Dockerfile for a language, or the repo's own),
// then build.command inside it, then — for a static site — the built directory published to disk.
import type Docker from 'dockerode';
import { realpathSync } from 'node:fs';
import { join, relative } from 'node:path';
import { BuildError, buildImage } from '../build/image.js';
import { runBuildCommand } from '../build/build-command.js';
import type { AppConfig } from '../config/index.js';
import { DEFAULT_PORT } from '../config/types.js';
import { buildArgsFor } from '../build/dockerfile-args.js';
import { baseImageFor, generateDockerfile, pruneAfterBuild } from '../build/dockerfile.js';
import { berthLabels, LABEL } from '../docker/labels.js';
import type { AgentSettings } from '../settings.js';
import { readRepoFile, resolveInsideRepo } from '../build/repo-paths.js';
import { publishFromDir, publishFromImage } from '../build/static-site.js';
import { describeLimits, type ResourceLimits } from '../docker/limits.js';
import { detectToolchain, type PackageManager } from '../config/toolchain.js';

const MAX_DOCKERFILE_BYTES = 1024 * 1024;

export interface BuildPhaseOptions {
  app: string;
  deploymentId: string;
  commit: string;
  /** The checkout (repo root). */
  checkout: string;
  config: AppConfig;
  env: Record<string, string>;
  /** berth/APP:ID */
  tag: string;
  settings: AgentSettings;
  log: (line: string) => void;
  system: (line: string) => void;
  signal: AbortSignal;
}

export interface BuildPhaseResult {
  /** The image to run (null: a site of plain files, nothing was built). */
  image: string | null;
  /** A static site's published release directory. */
  staticRoot: string | null;
  /** The port the web process listens on, when berth decides it (generated images). */
  port: number | undefined;
}

/** The build's caps: berth.yml's build.memory / build.cpus, else the server's BERTH_BUILD_MEMORY / _CPUS. */
export function buildLimits(config: AppConfig, settings: Pick<AgentSettings, 'buildMemory' | 'buildCpus'>): ResourceLimits {
  return { memory: config.build.memory ?? settings.buildMemory, cpus: config.build.cpus ?? settings.buildCpus };
}

function limitsLine(config: AppConfig, limits: ResourceLimits): string {
  const from = config.build.memory !== null || config.build.cpus !== null ? 'build.memory / build.cpus in the app config' : 'the server default, BERTH_BUILD_MEMORY / BERTH_BUILD_CPUS';
  return `build limits: ${describeLimits(limits)} (${from})`;
}

export async function runBuildPhase(docker: Docker, o: BuildPhaseOptions): Promise<BuildPhaseResult> {
  const { config } = o;
  // Resolved again here (loadAppConfig checked it too): the build reads only inside the checkout.
  const contextDir = resolveInsideRepo(o.checkout, config.build.context, `build.context "${config.build.context}"`) ?? join(o.checkout, config.build.context);
  if (config.build.image.kind === 'none') return publishWithoutBuild(o);

  const server: Record<string, string> = o.settings.server ? { [LABEL.server]: o.settings.server } : {};
  const step: BuildStep = { docker, o, contextDir, labels: berthLabels(o.app, o.deploymentId, { [LABEL.commit]: o.commit, ...server }), limits: buildLimits(config, o.settings) };
  const port = config.build.image.kind === 'dockerfile' ? await buildFromDockerfile(step) : await buildForLanguage(step);
  if (config.build.command) await runBuildCommandStep(step);
  const staticRoot = config.build.static ? await publishStaticFromImage(docker, o) : null;
  return { image: o.tag, staticRoot, port };
}

/** What every build step needs: the options, the checked context directory, labels and caps. */
interface BuildStep {
  docker: Docker;
  o: BuildPhaseOptions;
  contextDir: string;
  labels: Record<string, string>;
  limits: ResourceLimits;
}

/** `build.static` with no image: the files are copied from the checkout, nothing is built. */
function publishWithoutBuild(o: BuildPhaseOptions): BuildPhaseResult {
  const { config, settings } = o;
  const site = publishFromDir({ checkout: o.checkout, path: config.build.static!, staticDir: settings.staticDir, app: o.app, deploymentId: o.deploymentId });
  logDropped(site.dropped, o.system);
  o.system(`published ${site.files} files of ${config.build.static} (no build needed) to ${site.dir}`);
  return { image: null, staticRoot: site.dir, port: undefined };
}

/** The repository's own Dockerfile; returns the port berth.yml gives, if any. */
async function buildFromDockerfile({ docker, o, contextDir, labels, limits }: BuildStep): Promise<number | undefined> {
  const { config } = o;
  const dfRel = relative(contextDir, join(realpathSync(o.checkout), config.build.dockerfile));
  const outside = dfRel.startsWith('..');
  const dockerfile = readRepoFile(o.checkout, config.build.dockerfile, `build.dockerfile "${config.build.dockerfile}"`, MAX_DOCKERFILE_BYTES);
  if (dockerfile === null) throw new BuildError(`no Dockerfile: "${config.build.dockerfile}" not found in the repository`);
  // Only what the Dockerfile declares with ARG: Docker records consumed args in the image history.
  const buildArgs = buildArgsFor(dockerfile, o.env);
  o.system(`building image ${o.tag} from ${config.build.dockerfile} (context ${config.build.context})`);
  o.system(limitsLine(config, limits));
  if (Object.keys(buildArgs).length > 0) o.system(`build args from the app's env (declared by ARG): ${Object.keys(buildArgs).join(', ')}`);
  await buildImage(docker, {
    contextDir,
    ...(outside ? { dockerfileContent: dockerfile } : { dockerfile: dfRel }),
    tag: o.tag,
    labels,
    buildArgs,
    limits,
    log: o.log,
    signal: o.signal,
  });
  return config.build.port ?? undefined;
}

/** A generated Dockerfile on berth's base image for the language; returns the port the web process gets. */
async function buildForLanguage({ docker, o, contextDir, labels, limits }: BuildStep): Promise<number> {
  const { config, settings } = o;
  const kind = config.build.image.kind as Exclude<AppConfig['build']['image']['kind'], 'none' | 'dockerfile'>;
  const img = config.build.image as Extract<AppConfig['build']['image'], { version: string | null }>;
  const version = img.version;
  const base = baseImageFor(kind, version, settings);
  // The first lines of the build log: what was detected and chosen, and why.
  const why = img.from ?? (version ? `${config.source}: build.image` : `the server default, BERTH_BASE_IMAGE_${kind.toUpperCase()}`);
  o.system(`base image: ${base.image} for ${kind}${version ? ` ${version}` : ''} (${why})`);
  if (base.note) o.system(base.note);
  const tc = detectToolchain(kind, contextDir);
  o.system(tc.manager ? `dependencies: ${describeManager(tc.manager, tc.toolVersion)} (${tc.because})` : `dependencies: none to install (${tc.because})`);
  o.system(limitsLine(config, limits));
  const port = config.build.port ?? DEFAULT_PORT;
  const volumeTargets = Object.values(config.volumes).map((v) => v.target);
  const dockerfile = generateDockerfile({ kind, baseImage: base.image, contextDir, port, volumeTargets, prodOnly: !config.build.command });
  o.system(`building image ${o.tag} for ${kind}${version ? ` ${version}` : ''} on ${base.image}`);
  await buildImage(docker, { contextDir, dockerfileContent: dockerfile, tag: o.tag, labels, limits, log: o.log, signal: o.signal });
  return port;
}

/** `build.command` in a container of the new image, committed over the same tag. */
async function runBuildCommandStep({ docker, o, contextDir, labels, limits }: BuildStep): Promise<void> {
  const { config, settings } = o;
  const kind = config.build.image.kind;
  o.signal.throwIfAborted();
  o.system(`running the build command: ${config.build.command}`);
  const [repo, tag] = [o.tag.slice(0, o.tag.lastIndexOf(':')), o.tag.slice(o.tag.lastIndexOf(':') + 1)];
  const after = kind !== 'dockerfile' && kind !== 'none' ? pruneAfterBuild(kind, contextDir) : null;
  await runBuildCommand(docker, {
    image: o.tag,
    repo,
    tag,
    command: config.build.command!,
    ...(after ? { after } : {}),
    env: o.env,
    workDir: join(settings.dataDir, 'builds', `${o.deploymentId}-env`),
    containerName: `berth-${o.app}-build-${o.deploymentId}`,
    // No berth.process label: the committed image would inherit it from this container.
    labels,
    log: o.log,
    timeoutMs: settings.releaseTimeoutMs,
    signal: o.signal,
    limits,
  });
  o.system('build command finished');
}

/** `build.static` from the built image (after its build command): copied out into the release directory. */
async function publishStaticFromImage(docker: Docker, o: BuildPhaseOptions): Promise<string> {
  const { config, settings } = o;
  const site = await publishFromImage(docker, {
    image: o.tag,
    path: config.build.static!,
    staticDir: settings.staticDir,
    app: o.app,
    deploymentId: o.deploymentId,
    server: settings.server,
    signal: o.signal,
  });
  o.system(`published ${site.files} files of ${config.build.static} to ${site.dir}`);
  return site.dir;
}

function describeManager(m: PackageManager, version: string | null): string {
  const names: Record<PackageManager, string> = {
    npm: 'npm',
    yarn: 'yarn (classic), through corepack or npm',
    'yarn-berry': 'yarn 2+, through corepack or npm',
    pnpm: 'pnpm, through corepack or npm',
    pip: 'pip',
    'pip-project': 'pip install . (pyproject.toml without a lockfile)',
    poetry: 'Poetry',
    uv: 'uv',
    pipenv: 'Pipenv',
    bundler: 'bundler',
  };
  return `${names[m]}${version ? ` ${version}` : ''}`;
}

const MAX_DROPPED_LINES = 20;

/** One deploy-log line per path left out of a static site, so a link that was not published is never a mystery. */
function logDropped(dropped: string[], system: (line: string) => void): void {
  for (const d of dropped.slice(0, MAX_DROPPED_LINES)) system(`not published: ${d}`);
  if (dropped.length > MAX_DROPPED_LINES) system(`not published: ${dropped.length - MAX_DROPPED_LINES} more paths that are not regular files or directories`);
}
