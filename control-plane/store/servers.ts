// Servers and their enrolment secrets. Join tokens and agent credentials are stored only as
// sha256 hashes: a copy of the database never lets anyone enrol or impersonate an agent.
import type { ServerInfo } from '../../shared/api.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { now, type Db } from './db.js';

export interface ServerRow {
  name: string;
  created_at: string;
  join_token_hash: string | null;
  join_token_expires_at: string | null;
  joined_at: string | null;
  credential_hash: string | null;
  last_seen_at: string | null;
  agent_version: string | null;
  hostname: string | null;
  spec_revision: number;
  /** Apps on this server also answer APP.BASE_DOMAIN (null: no default hostnames). */
  base_domain: string | null;
}

export class ServerStore {
  /**
   * Heartbeat times not yet written: a heartbeat every 10 s from 10,000 agents would be 1,000 committed
   * (fsynced) writes a second. They are written together by `flushSeen` (the hub calls it every few
   * seconds and when an agent disconnects); every read here sees them at once.
   */
  private readonly pendingSeen = new Map<string, string>();
  /**
   * Every server, by name, as last read outside a transaction: `GET /api/servers` with 10,000 servers
   * would otherwise read 110,000 values from SQLite per call. Dropped by every write (all writes to
   * `servers` are in this class); never filled inside a transaction, so a write rolled back later is
   * never cached.
   */
  private cached: ServerRow[] | null = null;
  /** `cached` by name, built when first needed. */
  private cachedByName: Map<string, ServerRow> | null = null;

  constructor(private readonly db: Db) {}

  create(name: string, joinTokenHash: string, joinTokenExpiresAt: string): ServerRow {
    if (this.get(name)) throw new ConflictError(`server "${name}" already exists`);
    this.cached = null;
    this.db
      .prepare('INSERT INTO servers (name, created_at, join_token_hash, join_token_expires_at) VALUES (?, ?, ?, ?)')
      .run(name, now(), joinTokenHash, joinTokenExpiresAt);
    return this.require(name);
  }

  get(name: string): ServerRow | undefined {
    return this.withSeen(this.db.prepare('SELECT * FROM servers WHERE name = ?').get(name) as ServerRow | undefined);
  }

  require(name: string): ServerRow {
    const row = this.get(name);
    if (!row) throw new NotFoundError(`server "${name}" does not exist`);
    return row;
  }

  /** By name; a page of at most `limit` after the name `after` when asked. The rows are shared: do not change them. */
  list(page: { limit?: number; after?: string } = {}): ServerRow[] {
    let rows = this.cached;
    if (!rows) {
      rows = this.db.prepare('SELECT * FROM servers ORDER BY name').all() as ServerRow[];
      if (!this.db.inTransaction) {
        this.cached = rows;
        this.cachedByName = null;
      }
    }
    if (this.pendingSeen.size > 0) for (const r of rows) this.withSeen(r);
    if (page.after === undefined && page.limit === undefined) return rows.slice();
    const from = page.after === undefined ? 0 : firstAfter(rows, page.after);
    return rows.slice(from, page.limit === undefined ? undefined : from + page.limit);
  }

  /** A server whose join token hashes to `hash` and has not expired. */
  findByJoinToken(hash: string, at = new Date()): ServerRow | undefined {
    const row = this.db.prepare('SELECT * FROM servers WHERE join_token_hash = ?').get(hash) as ServerRow | undefined;
    if (!row?.join_token_expires_at || Date.parse(row.join_token_expires_at) <= at.getTime()) return undefined;
    return this.withSeen(row);
  }

  findByCredential(hash: string): ServerRow | undefined {
    return this.withSeen(this.db.prepare('SELECT * FROM servers WHERE credential_hash = ?').get(hash) as ServerRow | undefined);
  }

  /** Consume the join token and store the new credential's hash, in one statement. */
  completeJoin(name: string, credentialHash: string, hostname: string | null): void {
    this.cached = null;
    this.db
      .prepare(
        `UPDATE servers SET join_token_hash = NULL, join_token_expires_at = NULL, joined_at = ?,
           credential_hash = ?, hostname = COALESCE(?, hostname) WHERE name = ?`,
      )
      .run(now(), credentialHash, hostname, name);
  }

  /**
   * An agent said hello. A reconnect of the same agent (nothing new but the time) is a heartbeat: after a
   * control-plane restart 10,000 agents say hello within seconds, and each committed write is an fsync.
   */
  recordHello(name: string, agentVersion: string, hostname: string): void {
    const row = this.db.prepare('SELECT agent_version, hostname FROM servers WHERE name = ?').get(name) as Pick<ServerRow, 'agent_version' | 'hostname'> | undefined;
    if (row && row.agent_version === agentVersion && row.hostname === hostname) return this.touch(name);
    this.pendingSeen.delete(name);
    this.cached = null;
    this.db
      .prepare('UPDATE servers SET agent_version = ?, hostname = ?, last_seen_at = ? WHERE name = ?')
      .run(agentVersion, hostname, now(), name);
  }

  /** A heartbeat: remembered now, written by the next `flushSeen`. */
  touch(name: string): void {
    this.pendingSeen.set(name, now());
  }

  /**
   * Write heartbeat times received since they were last written, in one transaction: all of them,
   * only `only`'s, or the oldest `limit`. Returns how many are still pending.
   */
  flushSeen(opts: { only?: string; limit?: number } = {}): number {
    let batch: Array<[string, string]>;
    if (opts.only !== undefined) {
      const at = this.pendingSeen.get(opts.only);
      batch = at === undefined ? [] : [[opts.only, at]];
    } else {
      batch = [];
      for (const entry of this.pendingSeen) {
        if (batch.length >= (opts.limit ?? Infinity)) break;
        batch.push(entry);
      }
    }
    if (batch.length > 0) {
      const update = this.db.prepare('UPDATE servers SET last_seen_at = ? WHERE name = ?');
      this.db.transaction(() => {
        for (const [name, at] of batch) update.run(at, name);
      })();
      for (const [name] of batch) this.pendingSeen.delete(name);
      // Only timestamps changed: the cached rows take them (re-reading 10,000 rows after each
      // batch made paged `GET /api/servers` calls slow).
      if (this.cached) {
        this.cachedByName ??= new Map(this.cached.map((r) => [r.name, r]));
        for (const [name, at] of batch) {
          const row = this.cachedByName.get(name);
          if (row) row.last_seen_at = at;
        }
      }
    }
    return this.pendingSeen.size;
  }

  private withSeen<T extends ServerRow | undefined>(row: T): T {
    const seen = row && this.pendingSeen.get(row.name);
    if (row && seen) row.last_seen_at = seen;
    return row;
  }

  /**
   * Set (or with null, remove) the base domain; bumps the revision. The caller checks that no
   * resulting default hostname belongs to another app (AppStore.setBaseDomain does).
   */
  setBaseDomainRow(name: string, baseDomain: string | null): void {
    this.cached = null;
    this.db.prepare('UPDATE servers SET base_domain = ? WHERE name = ?').run(baseDomain, name);
    this.bumpRevision(name);
  }

  /**
   * Remove a server (issue 16): refused while apps live on it. The deployments that ran there
   * (of apps since moved elsewhere) go with it: their releases lived on that machine only.
   */
  remove(name: string): ServerRow {
    return this.db.transaction(() => {
      const row = this.require(name);
      const apps = (this.db.prepare('SELECT name FROM apps WHERE server = ? ORDER BY name LIMIT 6').all(name) as Array<{ name: string }>).map((a) => a.name);
      if (apps.length > 0) {
        const listed = apps.length > 5 ? `${apps.slice(0, 5).join(', ')}, …` : apps.join(', ');
        throw new ConflictError(`server "${name}" still runs apps (${listed}): delete them (berth app rm) or move them (berth app set APP --server OTHER) first`);
      }
      this.cached = null;
      this.pendingSeen.delete(name);
      this.db.prepare('DELETE FROM deployments WHERE server = ?').run(name);
      this.db.prepare('DELETE FROM servers WHERE name = ?').run(name);
      return row;
    })();
  }

  /** Called inside the transaction that changes the server's apps or domains. */
  bumpRevision(name: string): void {
    this.cached = null;
    this.db.prepare('UPDATE servers SET spec_revision = spec_revision + 1 WHERE name = ?').run(name);
  }
}

/** Index of the first row whose name sorts after `name` (server names are ASCII: JS order is SQLite's). */
function firstAfter(rows: readonly ServerRow[], name: string): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (rows[mid]!.name <= name) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function serverInfo(row: ServerRow, connected: boolean): ServerInfo {
  return {
    name: row.name,
    connected,
    joinedAt: row.joined_at,
    lastSeenAt: row.last_seen_at,
    agentVersion: row.agent_version,
    hostname: row.hostname,
    createdAt: row.created_at,
    ...(row.base_domain ? { baseDomain: row.base_domain } : {}),
  };
}
