// Small file helpers shared by the agent's certificate engine and the control plane's TLS: atomic writes (temp file + fsync + rename) with an
// explicit mode that the process umask cannot loosen or tighten.
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** mkdir -p, then force `mode` on the leaf directory (mkdir's mode is filtered by the umask). */
export function ensureDir(dir: string, mode: number): void {
  mkdirSync(dir, { recursive: true, mode });
  chmodSync(dir, mode);
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

/** First line of an error's message, trimmed: what a one-line status/CLI error shows. */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const line = msg.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
  return line.length > 500 ? `${line.slice(0, 497)}...` : line || 'unknown error';
}
