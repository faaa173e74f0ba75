// Certificate state reported by agents (`cert_status`), one JSON document per app. An agent only
// ever writes rows of its own server's apps; a snapshot replaces that server's previous rows.
import { certStatusEntry, type CertStatusEntry } from '../../shared/protocol.js';
import { now, type Db } from './db.js';

export interface StoredCertStatus {
  status: CertStatusEntry;
  reportedAt: string;
}

export class CertStatusStore {
  constructor(private readonly db: Db) {}

  /** Replace `server`'s certificate state with this snapshot (entries for apps of other servers are ignored). */
  replaceForServer(server: string, entries: CertStatusEntry[]): number {
    return this.db.transaction(() => {
      const ownApps = new Set((this.db.prepare('SELECT name FROM apps WHERE server = ?').all(server) as Array<{ name: string }>).map((r) => r.name));
      const at = now();
      const upsert = this.db.prepare(
        `INSERT INTO app_certs (app, server, status, reported_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(app) DO UPDATE SET server = excluded.server, status = excluded.status, reported_at = excluded.reported_at`,
      );
      const kept = new Set<string>();
      for (const e of entries) {
        if (!ownApps.has(e.app) || kept.has(e.app)) continue;
        upsert.run(e.app, server, JSON.stringify(e), at);
        kept.add(e.app);
      }
      const existing = this.db.prepare('SELECT app FROM app_certs WHERE server = ?').all(server) as Array<{ app: string }>;
      const drop = this.db.prepare('DELETE FROM app_certs WHERE app = ?');
      for (const r of existing) if (!kept.has(r.app)) drop.run(r.app);
      return kept.size;
    })();
  }

  forApp(app: string): StoredCertStatus | null {
    const row = this.db.prepare('SELECT status, reported_at FROM app_certs WHERE app = ?').get(app) as { status: string; reported_at: string } | undefined;
    if (!row) return null;
    try {
      const parsed = certStatusEntry.safeParse(JSON.parse(row.status));
      return parsed.success ? { status: parsed.data, reportedAt: row.reported_at } : null;
    } catch {
      return null;
    }
  }
}
