// The control plane's own secrets (admin token, encryption key, release signing key) each live in one
// file in its data dir: created once on first start, never overwritten, always 0600.
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { Logger } from '../shared/logger.js';

/**
 * The text of `file`, created with `create()` (mode 0600) when it does not exist yet. `wx`: a file
 * another process just wrote is never overwritten. A file left readable by others is restricted.
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
