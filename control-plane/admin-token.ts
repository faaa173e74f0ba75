// The admin API token: created once on first start, then read from DATA/admin-token (0600).
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newCliSafeSecret } from './tokens.js';
import type { Logger } from '../shared/logger.js';
import { ConfigError } from './errors.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

export function loadOrCreateAdminToken(dataDir: string, logger: Logger): { token: string; created: boolean } {
  const file = join(dataDir, ADMIN_TOKEN_FILE);
  try {
    // `wx`: never overwrite a token another process just wrote.
    const token = newCliSafeSecret();
    writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
    logger.info({ file }, 'created admin token');
    return { token, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if ((statSync(file).mode & 0o077) !== 0) {
    logger.warn({ file }, 'admin token file was readable by others; restricting it to 0600');
    chmodSync(file, 0o600);
  }
  const token = readFileSync(file, 'utf8').trim();
  if (!token) throw new ConfigError(`${file} is empty; delete it to create a new admin token`);
  return { token, created: false };
}
