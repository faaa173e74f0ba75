// Apps and their domains. Every change bumps the owning server's spec revision in the same
// transaction, so the revision an agent sees always matches the apps it describes.
import type { AppInfo, DomainInfo } from '../../shared/api.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { now, type Db } from './db.js';
import type { ServerStore } from './servers.js';

export interface AppRow {
  name: string;
  repo: string;
  branch: string;
  server: string;
  created_at: string;
}

export interface DomainRow {
  domain: string;
  app: string;
  created_at: string;
}

export class AppStore {
  constructor(
    private readonly db: Db,
    private readonly servers: ServerStore,
  ) {}

  create(app: { name: string; repo: string; branch: string; server: string }): AppRow {
    return this.db.transaction(() => {
      this.servers.require(app.server);
      if (this.get(app.name)) throw new ConflictError(`app "${app.name}" already exists`);
      this.db
        .prepare('INSERT INTO apps (name, repo, branch, server, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(app.name, app.repo, app.branch, app.server, now());
      this.servers.bumpRevision(app.server);
      return this.require(app.name);
    })();
  }

  get(name: string): AppRow | undefined {
    return this.db.prepare('SELECT * FROM apps WHERE name = ?').get(name) as AppRow | undefined;
  }

  require(name: string): AppRow {
    const row = this.get(name);
    if (!row) throw new NotFoundError(`app "${name}" does not exist`);
    return row;
  }

  list(): AppRow[] {
    return this.db.prepare('SELECT * FROM apps ORDER BY name').all() as AppRow[];
  }

  listByServer(server: string): AppRow[] {
    return this.db.prepare('SELECT * FROM apps WHERE server = ? ORDER BY name').all(server) as AppRow[];
  }

  /** Deletes the app with its domains and deployments (cascade); returns the row it deleted. */
  delete(name: string): AppRow {
    return this.db.transaction(() => {
      const app = this.require(name);
      this.db.prepare('DELETE FROM apps WHERE name = ?').run(name);
      this.servers.bumpRevision(app.server);
      return app;
    })();
  }

  domains(app: string): DomainRow[] {
    return this.db.prepare('SELECT * FROM domains WHERE app = ? ORDER BY domain').all(app) as DomainRow[];
  }

  addDomain(appName: string, domain: string): { app: AppRow; domain: DomainRow } {
    return this.db.transaction(() => {
      const app = this.require(appName);
      const owner = this.db.prepare('SELECT app FROM domains WHERE domain = ?').get(domain) as { app: string } | undefined;
      if (owner) throw new ConflictError(`domain "${domain}" already belongs to app "${owner.app}"`);
      this.db.prepare('INSERT INTO domains (domain, app, created_at) VALUES (?, ?, ?)').run(domain, appName, now());
      this.servers.bumpRevision(app.server);
      const row = this.db.prepare('SELECT * FROM domains WHERE domain = ?').get(domain) as DomainRow;
      return { app, domain: row };
    })();
  }

  removeDomain(appName: string, domain: string): AppRow {
    return this.db.transaction(() => {
      const app = this.require(appName);
      const result = this.db.prepare('DELETE FROM domains WHERE domain = ? AND app = ?').run(domain, appName);
      if (result.changes === 0) throw new NotFoundError(`domain "${domain}" does not belong to app "${appName}"`);
      this.servers.bumpRevision(app.server);
      return app;
    })();
  }

  info(row: AppRow): AppInfo {
    return {
      name: row.name,
      repo: row.repo,
      branch: row.branch,
      server: row.server,
      domains: this.domains(row.name).map((d) => d.domain),
      webhooks: {},
      createdAt: row.created_at,
    };
  }
}

export function domainInfo(row: DomainRow): DomainInfo {
  return { domain: row.domain, app: row.app, createdAt: row.created_at };
}
