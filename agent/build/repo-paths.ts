// Paths taken from a repository. The agent runs as root and a checkout can hold committed symbolic
// links (`site -> /etc`, `berth.yml -> /etc/shadow`), so every path a config names is resolved with
// realpath and must stay inside the checkout; files are opened without following a final link.
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve } from 'node:path';

/** A repository path that leads outside the checkout, or is not what it must be. `path` is as the repo named it. */
export class RepoPathError extends Error {
  override name = 'RepoPathError';
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/** `p` is `root` or below it (both absolute). Not a `startsWith('..')` test: "..foo" is a fine name. */
export function isInside(root: string, p: string): boolean {
  const r = relative(root, p);
  return r === '' || (r !== '..' && !r.startsWith('../') && !isAbsolute(r));
}

const code = (err: unknown) => (err as NodeJS.ErrnoException).code;

function lexists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * The real path of `rel` inside the checkout `root`, or null when nothing is there. Throws
 * RepoPathError (naming `what`) when it, or a link on the way, leads outside the checkout.
 */
export function resolveInsideRepo(root: string, rel: string, what: string): string | null {
  const realRoot = realpathSync(root);
  const abs = resolve(realRoot, rel);
  if (!isInside(realRoot, abs)) throw new RepoPathError(rel, `${what} points outside the repository`);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch (err) {
    if (code(err) === 'ELOOP') throw new RepoPathError(rel, `${what} is a loop of symbolic links`);
    if (code(err) !== 'ENOENT' && code(err) !== 'ENOTDIR') throw err;
    // A link to nothing is named as such: "not found" would hide that it points somewhere else.
    if (lexists(abs)) throw new RepoPathError(rel, `${what} is a symbolic link to nothing inside the repository`);
    return null;
  }
  if (!isInside(realRoot, real)) throw new RepoPathError(rel, `${what} points outside the repository through a symbolic link`);
  return real;
}

/** `rel` is a regular file inside the checkout (false when missing or not a file; throws when it leads outside). */
export function isRepoFile(root: string, rel: string, what = rel): boolean {
  const real = resolveInsideRepo(root, rel, what);
  return real !== null && lstatSync(real).isFile();
}

/** `rel` is a directory inside the checkout, reached through no symbolic link at all. */
export function repoDirNoLinks(root: string, rel: string, what: string): string | null {
  const real = resolveInsideRepo(root, rel, what);
  if (real === null) return null;
  if (real !== resolve(realpathSync(root), rel)) throw new RepoPathError(rel, `${what} is reached through a symbolic link: name the directory itself`);
  if (!lstatSync(real).isDirectory()) throw new RepoPathError(rel, `${what} is not a directory`);
  return real;
}

/**
 * The text of the regular file `rel` inside the checkout, or null when there is none. Opened with
 * O_NOFOLLOW (and O_NONBLOCK, so a FIFO cannot hang the agent) and checked again on the open file.
 */
export function readRepoFile(root: string, rel: string, what: string, maxBytes: number): string | null {
  const real = resolveInsideRepo(root, rel, what);
  if (real === null) return null;
  let fd: number;
  try {
    fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (code(err) === 'ELOOP') throw new RepoPathError(rel, `${what} became a symbolic link while being read`);
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new RepoPathError(rel, `${what} is not a regular file`);
    if (st.size > maxBytes) throw new RepoPathError(rel, `${what} is larger than ${Math.floor(maxBytes / 1024)} KiB`);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
