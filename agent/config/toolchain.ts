// What a repository's own files say about how to build it, as Heroku-style platforms read them: the
// runtime version (.nvmrc, .python-version, runtime.txt, .ruby-version, …) and the package manager
// (from the lockfile). Every value read here ends up in an image tag or a generated Dockerfile, so
// each one is parsed down to plain digits (or a fixed tool name) and anything else is ignored.
import { isRepoFile, readRepoFile } from '../build/repo-paths.js';
import type { LanguageKind } from './types.js';

const MAX_FILE_BYTES = 1024 * 1024;

export type PackageManager = 'npm' | 'yarn' | 'yarn-berry' | 'pnpm' | 'pip' | 'pip-project' | 'poetry' | 'uv' | 'pipenv' | 'bundler';

export interface Toolchain {
  manager: PackageManager | null;
  /** The file that chose it ("pnpm-lock.yaml"), for the build log. */
  because: string;
  /** Manifests copied (and installed) before the rest of the code, so the install layer stays cached. */
  manifests: string[];
  /** An exact tool version the repo pins (package.json `packageManager`, Gemfile.lock `BUNDLED WITH`). */
  toolVersion: string | null;
}

export interface DetectedVersion {
  version: string;
  /** "from .nvmrc" */
  because: string;
}

const read = (dir: string, file: string) => readRepoFile(dir, file, file, MAX_FILE_BYTES);

function packageJson(dir: string): { engines?: { node?: unknown }; packageManager?: unknown } | null {
  const text = read(dir, 'package.json');
  if (text === null) return null;
  try {
    const pkg = JSON.parse(text) as unknown;
    return pkg && typeof pkg === 'object' ? (pkg as { engines?: { node?: unknown }; packageManager?: unknown }) : null;
  } catch {
    return null;
  }
}

/** "v20.11.1", "20", ">=18 <21", "^20.x" → "20"; "lts/*" and other names → null. */
export function nodeMajor(spec: string): string | null {
  const m = /^\s*(?:[v^~=>]|>=)*\s*(\d{1,2})(?:\.|\s|$|x)/.exec(spec.trim().split(/\s*\|\|\s*/)[0] ?? '');
  return m ? String(Number(m[1])) : null;
}

/** "3.11.4", "python-3.11.4", ">=3.10,<4" → "3.11" / "3.10"; null without a 3.X version. */
export function pythonMinor(spec: string): string | null {
  const m = /(?:^|[^\d.])(3)\.(\d{1,2})(?![\d])/.exec(spec);
  return m ? `3.${Number(m[2])}` : null;
}

/** "3.2.2", "ruby-3.2.2", `ruby "~> 3.2"` → "3.2". */
export function rubyMinor(spec: string): string | null {
  const m = /(?:^|[^\d.])(\d)\.(\d{1,2})(?![\d])/.exec(spec);
  return m ? `${m[1]}.${Number(m[2])}` : null;
}

/** The runtime version the repository asks for, first match wins; null = the server's default. */
export function detectRuntimeVersion(kind: LanguageKind, dir: string): DetectedVersion | null {
  const firstLine = (file: string) => read(dir, file)?.split(/\r?\n/).find((l) => l.trim() && !l.trim().startsWith('#'))?.trim() ?? null;
  const tryFile = (file: string, parse: (s: string) => string | null, label = file): DetectedVersion | null => {
    const text = firstLine(file);
    const v = text === null ? null : parse(text);
    return v ? { version: v, because: `from ${label}` } : null;
  };
  switch (kind) {
    case 'node': {
      const found = tryFile('.nvmrc', nodeMajor) ?? tryFile('.node-version', nodeMajor);
      if (found) return found;
      const engines = packageJson(dir)?.engines?.node;
      const v = typeof engines === 'string' ? nodeMajor(engines) : null;
      return v ? { version: v, because: 'from package.json engines.node' } : null;
    }
    case 'python': {
      const found = tryFile('.python-version', pythonMinor) ?? tryFile('runtime.txt', (s) => (/^python-/.test(s) ? pythonMinor(s) : null));
      if (found) return found;
      const m = /^\s*requires-python\s*=\s*["']([^"'\n]{1,100})["']/m.exec(read(dir, 'pyproject.toml') ?? '');
      const v = m ? pythonMinor(m[1]!) : null;
      return v ? { version: v, because: 'from pyproject.toml requires-python' } : null;
    }
    case 'ruby': {
      const found = tryFile('.ruby-version', rubyMinor);
      if (found) return found;
      const m = /^\s*ruby\s+["']([^"'\n]{1,40})["']/m.exec(read(dir, 'Gemfile') ?? '');
      const v = m ? rubyMinor(m[1]!) : null;
      return v ? { version: v, because: 'from the Gemfile ruby line' } : null;
    }
  }
}

const EXACT_VERSION = /^\d{1,4}\.\d{1,4}\.\d{1,4}(?:-[0-9A-Za-z.]{1,40})?$/;

/** `"packageManager": "pnpm@9.1.0+sha512.…"` → { name, version } when it is a plain version. */
function pinnedManager(dir: string): { name: string; version: string } | null {
  const pm = packageJson(dir)?.packageManager;
  if (typeof pm !== 'string') return null;
  const m = /^(npm|yarn|pnpm)@([^+\s]+)/.exec(pm.trim());
  return m && EXACT_VERSION.test(m[2]!) ? { name: m[1]!, version: m[2]! } : null;
}

/** The dependency installer the lockfile names (null: nothing to install). */
export function detectToolchain(kind: LanguageKind, dir: string): Toolchain {
  const has = (name: string) => isRepoFile(dir, name);
  const none: Toolchain = { manager: null, because: 'no dependency manifest', manifests: [], toolVersion: null };
  switch (kind) {
    case 'node': {
      if (!has('package.json')) return none;
      const pinned = pinnedManager(dir);
      const extra = ['.npmrc'].filter(has);
      if (has('pnpm-lock.yaml') || pinned?.name === 'pnpm') {
        return { manager: 'pnpm', because: has('pnpm-lock.yaml') ? 'pnpm-lock.yaml' : 'package.json packageManager', manifests: ['package.json', ...['pnpm-lock.yaml', 'pnpm-workspace.yaml', '.npmrc'].filter(has)], toolVersion: pinned?.name === 'pnpm' ? pinned.version : null };
      }
      if (has('yarn.lock') || pinned?.name === 'yarn') {
        const version = pinned?.name === 'yarn' ? pinned.version : null;
        const berry = (version !== null && Number(version.split('.')[0]) >= 2) || has('.yarnrc.yml');
        return {
          manager: berry ? 'yarn-berry' : 'yarn',
          because: has('yarn.lock') ? `yarn.lock${berry ? ' (yarn 2+)' : ''}` : 'package.json packageManager',
          manifests: ['package.json', ...['yarn.lock', '.yarnrc.yml', '.yarnrc', ...extra].filter(has)],
          toolVersion: version,
        };
      }
      const lock = ['package-lock.json', 'npm-shrinkwrap.json'].filter(has);
      return { manager: 'npm', because: lock[0] ?? 'package.json (no lockfile)', manifests: ['package.json', ...lock, ...extra], toolVersion: null };
    }
    case 'python': {
      if (has('requirements.txt')) return { manager: 'pip', because: 'requirements.txt', manifests: ['requirements.txt'], toolVersion: null };
      if (has('pyproject.toml') && has('poetry.lock')) return { manager: 'poetry', because: 'poetry.lock', manifests: ['pyproject.toml', 'poetry.lock'], toolVersion: null };
      if (has('pyproject.toml') && has('uv.lock')) return { manager: 'uv', because: 'uv.lock', manifests: ['pyproject.toml', 'uv.lock'], toolVersion: null };
      if (has('Pipfile.lock')) return { manager: 'pipenv', because: 'Pipfile.lock', manifests: ['Pipfile', 'Pipfile.lock'].filter(has), toolVersion: null };
      // The project itself is the package: installed with the code, after it is copied.
      if (has('pyproject.toml')) return { manager: 'pip-project', because: 'pyproject.toml', manifests: [], toolVersion: null };
      return none;
    }
    case 'ruby': {
      if (!has('Gemfile')) return none;
      const lock = has('Gemfile.lock') ? read(dir, 'Gemfile.lock') : null;
      const bundled = lock ? /^BUNDLED WITH\r?\n\s+(\S+)/m.exec(lock)?.[1] : undefined;
      return {
        manager: 'bundler',
        because: lock !== null ? `Gemfile.lock${bundled ? ` (bundler ${bundled})` : ''}` : 'Gemfile',
        manifests: ['Gemfile', ...(lock !== null ? ['Gemfile.lock'] : [])],
        toolVersion: bundled && EXACT_VERSION.test(bundled) ? bundled : null,
      };
    }
  }
}

/** The conventional start command for a node app with a `start` script, by package manager. */
export function nodeStartCommand(manager: PackageManager | null): string {
  return manager === 'yarn' || manager === 'yarn-berry' ? 'yarn start' : manager === 'pnpm' ? 'pnpm start' : 'npm start';
}
