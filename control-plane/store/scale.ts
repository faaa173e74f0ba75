// `berth scale`: per-app replica counts that override the repo's `scale:` until reset. They are
// part of the app's spec (desired state and deploy orders), so a change bumps its server's revision.
import { scaleOverride, type ScaleOverride } from '../../shared/spec.js';
import { now, type Db } from './db.js';
import type { ServerStore } from './servers.js';

export class ScaleStore {
  constructor(
    private readonly db: Db,
    private readonly servers: ServerStore,
  ) {}

  /** The app's override; null when none is set. A row that does not parse (edited by hand) counts as none. */
  get(app: string): ScaleOverride | null {
    const row = this.db.prepare('SELECT scale FROM app_scale WHERE app = ?').get(app) as { scale: string } | undefined;
    if (!row) return null;
    try {
      const parsed = scaleOverride.safeParse(JSON.parse(row.scale));
      return parsed.success && Object.keys(parsed.data).length > 0 ? parsed.data : null;
    } catch {
      return null;
    }
  }

  /** Replace the app's override (call inside the transaction that orders its scale deployment). */
  set(app: { name: string; server: string }, scale: ScaleOverride): void {
    this.db
      .prepare(
        `INSERT INTO app_scale (app, scale, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (app) DO UPDATE SET scale = excluded.scale, updated_at = excluded.updated_at`,
      )
      .run(app.name, JSON.stringify(scale), now());
    this.servers.bumpRevision(app.server);
  }

  /** Back to the repo's `scale:`; false when there was no override. */
  clear(app: { name: string; server: string }): boolean {
    const changed = this.db.prepare('DELETE FROM app_scale WHERE app = ?').run(app.name).changes > 0;
    if (changed) this.servers.bumpRevision(app.server);
    return changed;
  }
}
