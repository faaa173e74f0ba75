// An app's env vars, sealed at rest (AES-256-GCM, see secret-box.ts). Every change bumps the app's
// server spec revision in the same transaction, so the agent gets the new values with its next
// desired state; nothing is redeployed until the next deploy.
import type { EnvChange } from '../../shared/api.js';
import { BadRequestError } from '../errors.js';
import type { SecretBox } from '../secret-box.js';
import type { AppStore } from './apps.js';
import { now, type Db } from './db.js';
import type { ServerStore } from './servers.js';

/** Bounds that keep one app's env inside what execve/Docker accept and the desired-state frame small. */
export const MAX_ENV_KEYS = 1000;
export const MAX_ENV_BYTES = 512 * 1024;

const context = (app: string, key: string) => `env\0${app}\0${key}`;

export class EnvStore {
  constructor(
    private readonly db: Db,
    private readonly apps: AppStore,
    private readonly servers: ServerStore,
    private readonly box: SecretBox,
  ) {}

  /** Set and unset in one transaction; the revision is bumped only when something changed. */
  change(appName: string, set: Record<string, string>, unset: readonly string[]): EnvChange & { server: string } {
    return this.db.transaction(() => {
      const app = this.apps.require(appName);
      const both = Object.keys(set).filter((k) => unset.includes(k));
      if (both.length > 0) throw new BadRequestError(`env key ${both[0]} is both set and unset`);
      const del = this.db.prepare('DELETE FROM app_env WHERE app = ? AND key = ?');
      const removed: string[] = [];
      const notSet: string[] = [];
      for (const key of new Set(unset)) {
        if (del.run(app.name, key).changes > 0) removed.push(key);
        else notSet.push(key);
      }
      const upsert = this.db.prepare(
        `INSERT INTO app_env (app, key, value, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (app, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
      );
      const at = now();
      for (const [key, value] of Object.entries(set)) upsert.run(app.name, key, this.box.seal(value, context(app.name, key)), at);
      const keys = Object.keys(set);
      if (keys.length > 0) this.checkBounds(app.name);
      if (keys.length > 0 || removed.length > 0) this.servers.bumpRevision(app.server);
      return { app: app.name, server: app.server, set: keys.sort(), unset: removed.sort(), notSet: notSet.sort(), takesEffect: 'next_deploy' as const };
    })();
  }

  /** Decrypted, sorted by key. */
  list(appName: string): Array<{ key: string; value: string; updatedAt: string }> {
    const rows = this.db.prepare('SELECT key, value, updated_at FROM app_env WHERE app = ? ORDER BY key').all(appName) as Array<{
      key: string;
      value: Buffer;
      updated_at: string;
    }>;
    return rows.map((r) => ({ key: r.key, value: this.box.open(r.value, context(appName, r.key)), updatedAt: r.updated_at }));
  }

  /** Keys only (no decryption): for listings that mask values anyway. */
  keys(appName: string): Array<{ key: string; updatedAt: string }> {
    return (this.db.prepare('SELECT key, updated_at FROM app_env WHERE app = ? ORDER BY key').all(appName) as Array<{ key: string; updated_at: string }>).map(
      (r) => ({ key: r.key, updatedAt: r.updated_at }),
    );
  }

  /** The env an agent gets in the app's spec. */
  record(appName: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const { key, value } of this.list(appName)) out[key] = value;
    return out;
  }

  private checkBounds(app: string): void {
    const { n, bytes } = this.db
      .prepare('SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(key) + LENGTH(value)), 0) AS bytes FROM app_env WHERE app = ?')
      .get(app) as { n: number; bytes: number };
    if (n > MAX_ENV_KEYS) throw new BadRequestError(`app "${app}" would have more than ${MAX_ENV_KEYS} env vars`);
    if (bytes > MAX_ENV_BYTES + n * 29) throw new BadRequestError(`the env of app "${app}" would exceed ${MAX_ENV_BYTES / 1024} KiB`);
  }
}
