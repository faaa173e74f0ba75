// Detection: which build image a repository needs when no config names one.
// Every name is checked inside the checkout: a committed `package.json -> /etc/...` link is an error, never read.
import { isRepoFile, readRepoFile } from '../build/repo-paths.js';
import { detectToolchain, nodeStartCommand } from './toolchain.js';
import type { BuildImage } from './types.js';

/** Dockerfile → dockerfile, requirements.txt / Pipfile / pyproject.toml → python, package.json → node, Gemfile → ruby (in that order), else null. */
export function detectImage(dir: string, dockerfile = 'Dockerfile'): { image: BuildImage; because: string } | null {
  if (isRepoFile(dir, dockerfile)) return { image: { kind: 'dockerfile' }, because: `found ${dockerfile}` };
  for (const file of ['requirements.txt', 'Pipfile', 'pyproject.toml']) {
    if (isRepoFile(dir, file)) return { image: { kind: 'python', version: null }, because: `found ${file}` };
  }
  if (isRepoFile(dir, 'package.json')) return { image: { kind: 'node', version: null }, because: 'found package.json' };
  if (isRepoFile(dir, 'Gemfile')) return { image: { kind: 'ruby', version: null }, because: 'found Gemfile' };
  return null;
}

const MAX_MANIFEST_BYTES = 1024 * 1024;

/** A node app's `npm start` (`yarn start`, `pnpm start`), when package.json has a start script: the conventional web command. */
export function nodeStartScript(dir: string): string | null {
  const text = readRepoFile(dir, 'package.json', 'package.json', MAX_MANIFEST_BYTES); // outside the try: a link out is an error
  if (text === null) return null;
  try {
    const pkg = JSON.parse(text) as { scripts?: Record<string, unknown> };
    return typeof pkg.scripts?.start === 'string' ? nodeStartCommand(detectToolchain('node', dir).manager) : null;
  } catch {
    return null;
  }
}
