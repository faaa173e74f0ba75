// Detection: which build image a repository needs when no config names one.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BuildImage } from './types.js';

const isFile = (p: string) => existsSync(p) && statSync(p).isFile();

/** Dockerfile → dockerfile, requirements.txt → python, package.json → node, Gemfile → ruby (in that order), else null. */
export function detectImage(dir: string, dockerfile = 'Dockerfile'): { image: BuildImage; because: string } | null {
  if (isFile(join(dir, dockerfile))) return { image: { kind: 'dockerfile' }, because: `found ${dockerfile}` };
  if (isFile(join(dir, 'requirements.txt'))) return { image: { kind: 'python', version: null }, because: 'found requirements.txt' };
  if (isFile(join(dir, 'package.json'))) return { image: { kind: 'node', version: null }, because: 'found package.json' };
  if (isFile(join(dir, 'Gemfile'))) return { image: { kind: 'ruby', version: null }, because: 'found Gemfile' };
  return null;
}

/** A node app's `npm start`, when package.json has a start script: the conventional web command. */
export function nodeStartScript(dir: string): string | null {
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { scripts?: Record<string, unknown> };
    return typeof pkg.scripts?.start === 'string' ? 'npm start' : null;
  } catch {
    return null;
  }
}
