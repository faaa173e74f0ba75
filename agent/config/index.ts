// Loading an app's configuration from its checkout: berth.yml, else appliku.yml, else Procfile,
// else detection. A berth.yml without processes still takes them (and the release) from a
// Procfile, so a Heroku-style repo only needs berth.yml for what the Procfile cannot say.
import { lstatSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { parseAppliku } from './appliku.js';
import { parseBerthYml, type PartialConfig } from './berth-yml.js';
import { detectImage, nodeStartScript } from './detect.js';
import { detectRuntimeVersion } from './toolchain.js';
import { z } from 'zod';
import { oneLine } from '../../shared/util/index.js';
import { parseConfig, repoPath } from './fields.js';
import { parseProcfile } from './procfile.js';
import { isRepoFile, readRepoFile, RepoPathError, resolveInsideRepo } from '../build/repo-paths.js';
import { AppConfigError, type AppConfig, type BuildImage, type ConfigSource, type ProcessConfig } from './types.js';

export { AppConfigError } from './types.js';
export type { AppConfig, BuildImage, ConfigSource, LanguageKind, ProcessConfig } from './types.js';

const MAX_CONFIG_BYTES = 256 * 1024;

/** A config file's text, or null when the repo has none; a link leading outside the checkout is an error naming the file. */
function readSmall(dir: string, file: string): string | null {
  return contained(() => readRepoFile(dir, file, file, MAX_CONFIG_BYTES));
}

/** Repository path checks (realpath, kept inside the checkout), reported as config errors. */
function contained<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof RepoPathError) throw new AppConfigError(err.message);
    throw err;
  }
}

function readYaml(text: string, file: string): unknown {
  try {
    // maxAliasCount guards against "billion laughs" alias bombs.
    return parseYaml(text, { maxAliasCount: 100, uniqueKeys: true });
  } catch (err) {
    if (err instanceof YAMLParseError) {
      const pos = err.linePos?.[0];
      throw new AppConfigError(`${file}: invalid YAML${pos ? ` at line ${pos.line}, column ${pos.col}` : ''}: ${oneLine(err).replace(/ at line \d+, column \d+:?$/, '')}`);
    }
    throw new AppConfigError(`${file}: invalid YAML: ${oneLine(err)}`);
  }
}

/**
 * The directory the app is built from: the checkout, or a subdirectory (monorepos) named by
 * `berth app create --root-dir`, else by `build.root` in the repository root's berth.yml. Resolved
 * inside the checkout like every repository path.
 */
export function appRoot(checkout: string, rootDir: string | undefined, log?: (line: string) => void): string {
  let dir = rootDir;
  let from = 'the app\'s root directory, --root-dir';
  if (dir === undefined) {
    dir = rootFromBerthYml(checkout);
    from = 'build.root in berth.yml';
  }
  if (dir === undefined || dir === '.') return checkout;
  const name = dir;
  const real = contained(() => resolveInsideRepo(checkout, name, `the app's root directory "${name}"`));
  if (real === null || !lstatSync(real).isDirectory()) throw new AppConfigError(`the app's root directory "${name}" (${from}) is not a directory of the repository at this commit`);
  log?.(`building from the repository's subdirectory ${name} (${from})`);
  return real;
}

/** `build.root` of the repository root's berth.yml, which must then say nothing else (the app's own config lives in that directory). */
function rootFromBerthYml(checkout: string): string | undefined {
  const file = readSmall(checkout, 'berth.yml') !== null ? 'berth.yml' : 'berth.yaml';
  const text = readSmall(checkout, file);
  if (text === null) return undefined;
  const data = readYaml(text, file) as { build?: { root?: unknown } } | null;
  const root = data && typeof data === 'object' && data.build && typeof data.build === 'object' ? data.build.root : undefined;
  if (root === undefined) return undefined;
  const parsed = parseConfig(z.object({ build: z.object({ root: repoPath }) }), data, file);
  const others = [...Object.keys(data!).filter((k) => k !== 'build'), ...Object.keys(data!.build!).filter((k) => k !== 'root').map((k) => `build.${k}`)];
  if (others.length > 0) {
    throw new AppConfigError(`${file}: key "build.root" moves the app to "${parsed.build.root}", so this file says nothing else: move ${others.map((k) => `"${k}"`).join(', ')} to ${parsed.build.root}/berth.yml`);
  }
  return parsed.build.root;
}

function webExample(image: BuildImage | undefined): string {
  if (image?.kind === 'python') return 'gunicorn app:app --bind 0.0.0.0:$PORT';
  if (image?.kind === 'ruby') return 'bundle exec puma -p $PORT';
  return 'node server.js';
}

/** Read and validate the app's config in `dir` (a checkout). Throws AppConfigError naming the file and key. */
export function loadAppConfig(dir: string): AppConfig {
  const notes: string[] = [];
  const { source, partial } = readConfigSource(dir, notes);
  const context = partial.context ?? '.';
  const contextDir = contained(() => resolveInsideRepo(dir, context, `${source}: key "build.context": "${context}"`));
  if (contextDir === null || !lstatSync(contextDir).isDirectory()) throw new AppConfigError(`${source}: key "build.context": directory "${context}" does not exist in the repository`);
  // A Dockerfile path given without a context is relative to the repo root, as is the context itself.
  const dockerfile = partial.dockerfile ?? (context === '.' ? 'Dockerfile' : `${context}/Dockerfile`);
  const found: Found = { dir, source, partial, context, contextDir, dockerfile, notes };
  const image = buildImageOf(found);
  return {
    source,
    build: {
      image: image ?? { kind: 'none' },
      command: partial.command ?? null,
      dockerfile,
      context,
      static: partial.static ?? null,
      port: partial.port ?? null,
      memory: partial.memory ?? null,
      cpus: partial.cpus ?? null,
    },
    release: partial.release ?? null,
    processes: processesOf(found, image),
    healthcheck: partial.healthcheck ?? null,
    cron: partial.cron ?? {},
    volumes: partial.volumes ?? {},
    notes,
  };
}

/** What loading has found so far: the config source, what it says, and where the build context is. */
interface Found {
  dir: string;
  source: ConfigSource;
  partial: PartialConfig;
  context: string;
  /** The build context's real path inside the checkout. */
  contextDir: string;
  dockerfile: string;
  notes: string[];
}

/** The first config the repository has: berth.yml (with a Procfile's processes), else appliku.yml, else Procfile, else nothing. */
function readConfigSource(dir: string, notes: string[]): { source: ConfigSource; partial: PartialConfig } {
  const berthYml = readSmall(dir, 'berth.yml') ?? null;
  const berthYaml = berthYml === null ? readSmall(dir, 'berth.yaml') : null;
  const applikuYml = berthYml === null && berthYaml === null ? (readSmall(dir, 'appliku.yml') ?? readSmall(dir, 'appliku.yaml')) : null;
  const procfileText = readSmall(dir, 'Procfile');

  if (berthYml !== null || berthYaml !== null) {
    const file = berthYml !== null ? 'berth.yml' : 'berth.yaml';
    const partial = parseBerthYml(readYaml((berthYml ?? berthYaml)!, file), file);
    if (!partial.processes && procfileText !== null && partial.static === undefined) {
      const proc = parseProcfile(procfileText);
      partial.processes = proc.processes;
      if (proc.release !== null) {
        if (partial.release !== undefined) notes.push('Procfile: the "release" line is ignored: berth.yml sets release');
        else partial.release = proc.release;
      }
      notes.push(`processes from Procfile (${Object.keys(proc.processes).join(', ') || 'none'}): berth.yml has no "processes"`);
    }
    return { source: 'berth.yml', partial };
  }
  if (applikuYml !== null) {
    const parsed = parseAppliku(readYaml(applikuYml, 'appliku.yml'));
    notes.push(...parsed.notes);
    return { source: 'appliku.yml', partial: parsed };
  }
  if (procfileText !== null) {
    const proc = parseProcfile(procfileText);
    return { source: 'Procfile', partial: { processes: proc.processes, ...(proc.release !== null ? { release: proc.release } : {}) } };
  }
  return { source: 'detected', partial: {} };
}

/** The build image: as configured, else detected from the repository (undefined: a static site of plain files). */
function buildImageOf(f: Found): BuildImage | undefined {
  const { dir, source, partial, context, contextDir, dockerfile, notes } = f;
  let image = partial.image;
  if (!image) {
    const found = contained(() => detectImage(dir, dockerfile) ?? (context !== '.' ? detectImage(contextDir) : null));
    if (found) {
      image = found.image;
      notes.push(`build image: ${image.kind} (${found.because})`);
    } else if (partial.static === undefined) {
      throw new AppConfigError(
        `${source === 'detected' ? 'repository' : source}: cannot tell how to build this app: set build.image (python-X.Y, node-NN, ruby-X.Y or dockerfile) in berth.yml, or add a Dockerfile, requirements.txt, package.json or Gemfile`,
      );
    }
  }
  if (image && image.kind !== 'dockerfile' && image.kind !== 'none' && image.version === null) {
    // berth.yml's version wins; else the repo's own version files; else the server's default.
    const kind = image.kind;
    const detected = contained(() => detectRuntimeVersion(kind, contextDir));
    if (detected) {
      image = { kind, version: detected.version, from: detected.because };
      notes.push(`${kind} ${detected.version} (${detected.because})`);
    }
  }
  if (image?.kind === 'dockerfile') {
    const found = contained(() => isRepoFile(dir, dockerfile, `${source}: key "build.dockerfile": "${dockerfile}"`));
    if (!found) throw new AppConfigError(`${source}: key "build.dockerfile": "${dockerfile}" not found in the repository`);
  } else if (partial.dockerfile !== undefined) {
    notes.push(`build.dockerfile is ignored: the build image is ${image ? image.kind : 'none (plain static files)'}`);
  }
  return image;
}

/** The processes to run: as configured, else the conventional web process; a static site runs none. */
function processesOf(f: Found, image: BuildImage | undefined): Record<string, ProcessConfig> {
  const { source, partial, contextDir, notes } = f;
  const processes = partial.processes ?? {};
  if (partial.static !== undefined) {
    if (Object.keys(processes).length > 0) {
      throw new AppConfigError(`${source}: key "processes": a static site (build.static) is served by nginx from disk and runs no processes; remove one of them`);
    }
    if (!image && partial.command) throw new AppConfigError(`${source}: key "build.command": needs a build image (build.image) to run in`);
    if (!image && partial.release) throw new AppConfigError(`${source}: key "release": needs a build image (build.image) to run in`);
  } else if (!processes.web && Object.keys(processes).length === 0) {
    // No processes named anywhere: the conventional web process, when there is one.
    if (image?.kind === 'dockerfile') processes.web = { command: null, scale: 1 };
    else if (image?.kind === 'node' && contained(() => nodeStartScript(contextDir))) {
      const start = contained(() => nodeStartScript(contextDir))!;
      processes.web = { command: start, scale: 1 };
      notes.push(`web process: ${start} (package.json has a start script)`);
    } else {
      throw new AppConfigError(
        `${source === 'detected' ? 'repository' : source}: no web process: add processes.web to berth.yml, or a Procfile with a "web:" line (e.g. "web: ${webExample(image)}")${image?.kind === 'node' ? ', or a "start" script to package.json' : ''}`,
      );
    }
  }
  return processes;
}
