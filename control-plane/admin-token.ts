// The admin API token: created once on first start, then read from DATA/admin-token (0600).
import { join } from 'node:path';
import { newCliSafeSecret } from './tokens.js';
import type { Logger } from '../shared/logger.js';
import { ConfigError } from './errors.js';
import { loadOrCreateSecretFile } from '../shared/util/index.js';

export const ADMIN_TOKEN_FILE = 'admin-token';

export function loadOrCreateAdminToken(dataDir: string, logger: Logger): { token: string; created: boolean } {
  const file = join(dataDir, ADMIN_TOKEN_FILE);
  const { text, created } = loadOrCreateSecretFile(file, 'admin token', () => newCliSafeSecret() + '\n', logger);
  const token = text.trim();
  if (!token) throw new ConfigError(`${file} is empty; delete it to create a new admin token`);
  return { token, created };
}
