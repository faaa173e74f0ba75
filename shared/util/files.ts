// File helpers: atomic writes (temp file + fsync + rename) with an explicit mode that the process
// umask cannot loosen or tighten, and secret files that are 0600 from their first byte.
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../logger.js';

/** mkdir -p, then force `mode` on the leaf directory (mkdir's mode is filtered by the umask). */
export function ensureDir(dir: string, mode: number): void {
  mkdirSync(dir, { recursive: true, mode });
  chmodSync(dir, mode);
}

/**
 * mkdir -p, then add the bits of `mode` the leaf lacks, keeping any others: the ACME challenge dir of an
 * all-in-one machine is root:berth 1775 (install.sh) so the control plane's user can add its own tokens.
 * No chmod when nothing is missing, so a process that does not own the directory can use it too.
 */
export function ensureDirAtLeast(dir: string, mode: number): void {
  mkdirSync(dir, { recursive: true, mode });
  const have = statSync(dir).mode & 0o7777;
  if ((have & mode) !== mode) chmodSync(dir, have | mode);
}

/** fsync a directory so a rename inside it survives a power cut. Best effort. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Write `content` to `file` atomically with `mode`: readers see the old file or the new one, never a mix. */
export function writeFileAtomic(file: string, content: string | Buffer, mode: number): void {
  const tmp = join(dirname(file), `.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    chmodSync(tmp, mode);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dirname(file));
}

/** Write a secret (a credential, a key) atomically, 0600: never readable by others, not even half-written. */
export function writeSecretFile(file: string, content: string | Buffer): void {
  writeFileAtomic(file, content, 0o600);
}

/**
 * The text of the secret `file`, created with `create()` (mode 0600) when it does not exist yet. `wx`:
 * a file another process just wrote is never overwritten. A file left readable by others is restricted.
 */
export function loadOrCreateSecretFile(file: string, what: string, create: () => string, logger: Logger): { text: string; created: boolean } {
  try {
    const text = create();
    writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
    logger.info({ file }, `created the ${what}`);
    return { text, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if ((statSync(file).mode & 0o077) !== 0) {
    logger.warn({ file }, `${what} file was readable by others; restricting it to 0600`);
    chmodSync(file, 0o600);
  }
  return { text: readFileSync(file, 'utf8'), created: false };
}
