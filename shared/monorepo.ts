// Monorepos: an app built from a subdirectory of its repository (`--root-dir`), deployed by a push
// only when the push changed a file its `--watch` globs match. Both are validated here, at the API
// edge: a root dir reaches the agent as a path inside the checkout, globs only ever become regexes.
import { posix } from 'node:path';
import { z } from 'zod';

/** A subdirectory of the repository: relative, no "..", plain path characters. */
export const rootDir = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(255, 'must be at most 255 characters')
  .regex(/^[A-Za-z0-9._@+\/-]+$/, 'must be a path of letters, digits and "._@+/-" inside the repository')
  .refine((p) => !p.startsWith('/'), 'must be relative to the repository root')
  .transform((p) => posix.normalize(p).replace(/\/+$/, '') || '.')
  .refine((p) => p !== '..' && !p.startsWith('../'), 'must stay inside the repository (no "..")');

/** A path glob: `*` within a path segment, `**` across them, `?` one character. */
export const watchGlob = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(255, 'must be at most 255 characters')
  .regex(/^[A-Za-z0-9._@+\/*?-]+$/, 'must be a path glob of letters, digits, "._@+/-", "*", "**" and "?"');

export const watchList = z.array(watchGlob).min(1, 'give at least one pattern').max(50, 'at most 50 patterns');

/** The regex of a glob: `api/**` matches everything under api/, `*.md` a top-level markdown file. */
export function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === '*' && glob[i + 1] === '*') {
      // "**/" matches zero or more directories; a trailing "**" everything below.
      if (glob[i + 2] === '/') {
        re += '(?:.*/)?';
        i += 2;
      } else {
        re += '.*';
        i += 1;
      }
    } else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** The first changed file a watch glob matches, or null when the push touched none of them. */
export function firstWatched(files: readonly string[], globs: readonly string[]): string | null {
  const res = globs.map(globRegExp);
  return files.find((f) => res.some((re) => re.test(f.replace(/^\/+/, '')))) ?? null;
}
