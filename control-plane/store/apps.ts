// Apps and their domains. Every change bumps the owning server's spec revision in the same
// transaction, so the revision an agent sees always matches the apps it describes.
import type { AppInfo, DomainInfo } from '../../shared/api.js';
import { hasUrlCredentials, maskUrlCredentials } from '../../shared/repo-url.js';
import { normalizeDomain } from '../../shared/validation.js';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.js';
import type { SecretBox } from '../secret-box.js';
import { generateDeployKey, isSshRepo } from '../../shared/deploy-key.js';

/** The secret box context of an app's deploy key: a sealed key cannot be passed off as another app's. */
const deployKeyContext = (app: string) => `deploy-key:${app}`;
import { now, type Db } from './db.js';
import type { ServerStore } from './servers.js';

export interface AppRow {
  name: string;
  /** The repo URL as shown: credentials in it are masked (the full URL is `repo_sealed`, see `repoUrl`). */
  repo: string;
  /** The full repo URL sealed with the secret box, when it carries credentials. */
  repo_sealed: Buffer | null;
  branch: string;
  server: string;
  /** Cluster mode (issue 15): the cluster whose Swarm runs it (`server` is then the cluster's manager); null: standalone. */
  cluster: string | null;
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
    private readonly box: SecretBox,
  ) {}

  /** `cluster`: a cluster app (issue 15); `server` must then be the cluster's manager (the caller resolves it). */
  create(app: { name: string; repo: string; branch: string; server: string; cluster?: string; rootDir?: string; watch?: string[]; knownHosts?: string }): AppRow {
    return this.db.transaction(() => {
      const server = this.servers.require(app.server);
      if (this.get(app.name)) throw new ConflictError(`app "${app.name}" already exists`);
      // Its default hostname must not be a domain of another app (one app per domain, everywhere).
      const host = defaultHostname(app.name, server.base_domain);
      const owner = host ? this.domainOwner(host) : undefined;
      if (host && owner) throw new ConflictError(`app "${app.name}" would answer ${host} (server ${server.name}'s base domain), which already belongs to app "${owner}"`);
      const { shown, sealed } = this.sealRepo(app.name, app.repo);
      this.db
        .prepare('INSERT INTO apps (name, repo, repo_sealed, branch, server, cluster, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(app.name, shown, sealed, app.branch, app.server, app.cluster ?? null, now());
      if (app.rootDir !== undefined || app.watch !== undefined) {
        this.db.prepare('INSERT INTO app_monorepo (app, root_dir, watch) VALUES (?, ?, ?)').run(app.name, app.rootDir ?? null, app.watch ? JSON.stringify(app.watch) : null);
      }
      if (app.knownHosts !== undefined && !isSshRepo(app.repo)) throw new BadRequestError('--known-hosts is for SSH repositories (git@host:path or ssh://)');
      if (isSshRepo(app.repo)) {
        // An SSH repository gets its own deploy key; the Git host is told the public half (berth app show).
        const key = generateDeployKey(app.name);
        this.db
          .prepare('INSERT INTO app_deploy_keys (app, public_key, private_sealed, known_hosts) VALUES (?, ?, ?, ?)')
          .run(app.name, key.publicKey, this.box.seal(key.privateKey, deployKeyContext(app.name)), app.knownHosts ?? null);
      }
      // A purge ordered for an earlier app of this name on this server must not hit the new one's volumes.
      this.db.prepare('DELETE FROM volume_purges WHERE server = ? AND app = ?').run(app.server, app.name);
      this.servers.bumpRevision(app.server);
      return this.require(app.name);
    })();
  }

  /**
   * Change an app after creation (issue 16): its repository, branch or server. A move to another
   * server bumps both servers' revisions: the old one removes the app (its volumes stay there), the
   * new one runs it from its next deploy. Refused while a deployment of it is unfinished, and when
   * its default hostname on the new server belongs to another app. Returns the row before and after.
   */
  update(name: string, change: { repo?: string; branch?: string; server?: string; knownHosts?: string }): { before: AppRow; after: AppRow } {
    return this.db.transaction(() => {
      const before = this.require(name);
      const moving = change.server !== undefined && change.server !== before.server;
      if (moving && before.cluster) throw new ConflictError(`app "${name}" runs on cluster "${before.cluster}": it has no server of its own to move to`);
      if (moving) this.checkMove(before, change.server!);
      const repo = change.repo ?? this.repoUrl(before);
      if (change.knownHosts !== undefined && !isSshRepo(repo)) throw new BadRequestError('--known-hosts is for SSH repositories (git@host:path or ssh://)');
      if (change.repo !== undefined) {
        const { shown, sealed } = this.sealRepo(name, change.repo);
        this.db.prepare('UPDATE apps SET repo = ?, repo_sealed = ? WHERE name = ?').run(shown, sealed, name);
        this.keepDeployKeyFor(name, change.repo);
      }
      if (change.knownHosts !== undefined) this.db.prepare('UPDATE app_deploy_keys SET known_hosts = ? WHERE app = ?').run(change.knownHosts, name);
      if (change.branch !== undefined) this.db.prepare('UPDATE apps SET branch = ? WHERE name = ?').run(change.branch, name);
      if (moving) {
        this.db.prepare('UPDATE apps SET server = ? WHERE name = ?').run(change.server, name);
        // A purge ordered for an earlier app of this name there must not hit the moved app's volumes.
        this.db.prepare('DELETE FROM volume_purges WHERE server = ? AND app = ?').run(change.server, name);
        this.servers.bumpRevision(change.server!);
      }
      this.servers.bumpRevision(before.server);
      return { before, after: this.require(name) };
    })();
  }

  private checkMove(app: AppRow, to: string): void {
    const server = this.servers.require(to);
    const running = this.db.prepare("SELECT id FROM deployments WHERE app = ? AND status NOT IN ('done', 'failed', 'cancelled', 'superseded') LIMIT 1").get(app.name) as { id: string } | undefined;
    if (running) throw new ConflictError(`deployment ${running.id} of app "${app.name}" is still running: wait for it or cancel it (berth cancel ${running.id}) before moving the app`);
    const host = defaultHostname(app.name, server.base_domain);
    const owner = host ? this.domainOwner(host) : undefined;
    if (host && owner && owner !== app.name) throw new ConflictError(`app "${app.name}" would answer ${host} (server ${to}'s base domain), which already belongs to app "${owner}"`);
  }

  /** An SSH repository needs the app's deploy key (made now if it had none); any other kind needs none. */
  private keepDeployKeyFor(name: string, repo: string): void {
    const has = this.deployKey(name) !== null;
    if (!isSshRepo(repo)) {
      if (has) this.db.prepare('DELETE FROM app_deploy_keys WHERE app = ?').run(name);
      return;
    }
    if (has) return;
    const key = generateDeployKey(name);
    this.db.prepare('INSERT INTO app_deploy_keys (app, public_key, private_sealed, known_hosts) VALUES (?, ?, ?, NULL)').run(name, key.publicKey, this.box.seal(key.privateKey, deployKeyContext(name)));
  }

  /** The full repo URL, credentials included: only for the desired state sent to the app's own agent. */
  repoUrl(app: AppRow): string {
    return app.repo_sealed ? this.box.open(app.repo_sealed, repoContext(app.name)) : app.repo;
  }

  /**
   * Seal the credentials of repo URLs stored in clear by an earlier berth (run at every start; a
   * no-op once done). The database is then vacuumed so the old pages holding them are rewritten.
   */
  sealRepoCredentials(): void {
    const legacy = (this.db.prepare('SELECT name, repo FROM apps WHERE repo_sealed IS NULL').all() as Array<{ name: string; repo: string }>).filter((a) =>
      hasUrlCredentials(a.repo),
    );
    if (legacy.length === 0) return;
    const update = this.db.prepare('UPDATE apps SET repo = ?, repo_sealed = ? WHERE name = ?');
    this.db.transaction(() => {
      for (const a of legacy) {
        const { shown, sealed } = this.sealRepo(a.name, a.repo);
        update.run(shown, sealed, a.name);
      }
    })();
    this.db.exec('VACUUM');
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  private sealRepo(app: string, repo: string): { shown: string; sealed: Buffer | null } {
    return hasUrlCredentials(repo) ? { shown: maskUrlCredentials(repo), sealed: this.box.seal(repo, repoContext(app)) } : { shown: repo, sealed: null };
  }

  get(name: string): AppRow | undefined {
    return this.db.prepare('SELECT * FROM apps WHERE name = ?').get(name) as AppRow | undefined;
  }

  require(name: string): AppRow {
    const row = this.get(name);
    if (!row) throw new NotFoundError(`app "${name}" does not exist`);
    return row;
  }

  /** By name; a page of at most `limit` apps after the name `after` when asked (the cursor is the last name seen). */
  list(page: { limit?: number; after?: string } = {}): AppRow[] {
    return this.db
      .prepare('SELECT * FROM apps WHERE name > ? ORDER BY name LIMIT ?')
      .all(page.after ?? '', page.limit ?? -1) as AppRow[];
  }

  listByServer(server: string): AppRow[] {
    return this.db.prepare('SELECT * FROM apps WHERE server = ? ORDER BY name').all(server) as AppRow[];
  }

  /**
   * Deletes the app with its domains and deployments (cascade); returns the row it deleted. With
   * `purgeVolumes` its server's agent is also told to delete the app's volumes (their data).
   */
  delete(name: string, opts: { purgeVolumes?: boolean } = {}): AppRow {
    return this.db.transaction(() => {
      const app = this.require(name);
      this.db.prepare('DELETE FROM apps WHERE name = ?').run(name);
      if (opts.purgeVolumes) {
        this.db
          .prepare('INSERT INTO volume_purges (server, app, requested_at) VALUES (?, ?, ?) ON CONFLICT (server, app) DO UPDATE SET requested_at = excluded.requested_at')
          .run(app.server, name, now());
      }
      this.servers.bumpRevision(app.server);
      return app;
    })();
  }

  /** Removed apps of a server whose volumes are to be deleted (ServerSpec.purgeVolumes). */
  volumePurges(server: string): string[] {
    return (this.db.prepare('SELECT app FROM volume_purges WHERE server = ? ORDER BY app').all(server) as Array<{ app: string }>).map((r) => r.app);
  }

  domains(app: string): DomainRow[] {
    return this.db.prepare('SELECT * FROM domains WHERE app = ? ORDER BY domain').all(app) as DomainRow[];
  }

  addDomain(appName: string, domain: string): { app: AppRow; domain: DomainRow } {
    return this.db.transaction(() => {
      const app = this.require(appName);
      const owner = this.db.prepare('SELECT app FROM domains WHERE domain = ?').get(domain) as { app: string } | undefined;
      if (owner) throw new ConflictError(`domain "${domain}" already belongs to app "${owner.app}"`);
      const byDefault = this.defaultHostnameOwner(domain);
      if (byDefault === appName) throw new ConflictError(`domain "${domain}" is already the default hostname of app "${appName}"`);
      if (byDefault) throw new ConflictError(`domain "${domain}" already belongs to app "${byDefault}" (its default hostname)`);
      this.db.prepare('INSERT INTO domains (domain, app, created_at) VALUES (?, ?, ?)').run(domain, appName, now());
      this.servers.bumpRevision(app.server);
      const row = this.db.prepare('SELECT * FROM domains WHERE domain = ?').get(domain) as DomainRow;
      return { app, domain: row };
    })();
  }

  removeDomain(appName: string, domain: string): AppRow {
    return this.db.transaction(() => {
      const app = this.require(appName);
      if (this.defaultDomain(app) === domain) {
        throw new ConflictError(`domain "${domain}" is the default hostname of app "${appName}" (server ${app.server}'s base domain): remove the base domain with \`berth server set ${app.server} --no-base-domain\``);
      }
      const result = this.db.prepare('DELETE FROM domains WHERE domain = ? AND app = ?').run(domain, appName);
      if (result.changes === 0) throw new NotFoundError(`domain "${domain}" does not belong to app "${appName}"`);
      this.servers.bumpRevision(app.server);
      return app;
    })();
  }

  /** APP.BASE_DOMAIN when the app's server has a base domain (and the result is a valid name). */
  defaultDomain(app: AppRow): string | null {
    return defaultHostname(app.name, this.servers.get(app.server)?.base_domain ?? null);
  }

  /** Explicit domains plus the default hostname: what the app's server block answers. */
  servedDomains(app: AppRow): string[] {
    const explicit = this.domains(app.name).map((d) => d.domain);
    const def = this.defaultDomain(app);
    return def && !explicit.includes(def) ? [...explicit, def] : explicit;
  }

  /** The app that has `domain` added explicitly. */
  private domainOwner(domain: string): string | undefined {
    return (this.db.prepare('SELECT app FROM domains WHERE domain = ?').get(domain) as { app: string } | undefined)?.app;
  }

  /** The app whose default hostname `domain` is (APP.BASE where APP's server has base domain BASE). */
  private defaultHostnameOwner(domain: string): string | undefined {
    const dot = domain.indexOf('.');
    if (dot < 1) return undefined;
    const row = this.db
      .prepare('SELECT apps.name AS name FROM apps JOIN servers ON servers.name = apps.server WHERE apps.name = ? AND servers.base_domain = ?')
      .get(domain.slice(0, dot), domain.slice(dot + 1)) as { name: string } | undefined;
    return row?.name;
  }

  /**
   * Set or remove a server's base domain. Refused when an app's new default hostname is already a
   * domain of another app.
   */
  setBaseDomain(server: string, baseDomain: string | null): void {
    this.db.transaction(() => {
      this.servers.require(server);
      if (baseDomain) {
        for (const app of this.listByServer(server)) {
          const host = defaultHostname(app.name, baseDomain);
          const owner = host ? this.domainOwner(host) : undefined;
          if (host && owner && owner !== app.name) throw new ConflictError(`app "${app.name}" would answer ${host}, which already belongs to app "${owner}"`);
          const other = host ? this.defaultHostnameOwner(host) : undefined;
          if (other && other !== app.name) throw new ConflictError(`${host} is already the default hostname of app "${other}"`);
        }
      }
      this.servers.setBaseDomainRow(server, baseDomain);
    })();
  }

  /** The app's SSH deploy key: the public half, and the private one unsealed (only for the app's own agent). */
  deployKey(name: string): { publicKey: string; privateKey: () => string; knownHosts: string | null } | null {
    const r = this.db.prepare('SELECT public_key, private_sealed, known_hosts FROM app_deploy_keys WHERE app = ?').get(name) as
      | { public_key: string; private_sealed: Buffer; known_hosts: string | null }
      | undefined;
    return r ? { publicKey: r.public_key, privateKey: () => this.box.open(r.private_sealed, deployKeyContext(name)), knownHosts: r.known_hosts } : null;
  }

  /** Monorepo settings (`--root-dir`, `--watch`); empty for an app built from its whole repository. */
  monorepo(name: string): { rootDir?: string; watch?: string[] } {
    const r = this.db.prepare('SELECT app, root_dir, watch FROM app_monorepo WHERE app = ?').get(name) as MonorepoRow | undefined;
    return r ? monorepoOf(r) : {};
  }

  /**
   * `info` of many apps with two queries in all (one per app made GET /api/apps with 20,000 apps run
   * 60,000 queries): their domains and their servers' base domains.
   */
  infoMany(rows: readonly AppRow[]): AppInfo[] {
    if (rows.length === 0) return [];
    const names = JSON.stringify(rows.map((r) => r.name));
    const domains = new Map<string, string[]>();
    const domainRows = this.db
      .prepare('SELECT app, domain FROM domains WHERE app IN (SELECT value FROM json_each(?)) ORDER BY domain')
      .all(names) as Array<{ app: string; domain: string }>;
    for (const d of domainRows) (domains.get(d.app) ?? domains.set(d.app, []).get(d.app)!).push(d.domain);
    const bases = new Map(
      (
        this.db
          .prepare('SELECT name, base_domain FROM servers WHERE base_domain IS NOT NULL AND name IN (SELECT value FROM json_each(?))')
          .all(JSON.stringify([...new Set(rows.map((r) => r.server))])) as Array<{ name: string; base_domain: string }>
      ).map((s) => [s.name, s.base_domain]),
    );
    const monorepos = new Map(
      (this.db.prepare('SELECT app, root_dir, watch FROM app_monorepo WHERE app IN (SELECT value FROM json_each(?))').all(names) as MonorepoRow[]).map((r) => [r.app, monorepoOf(r)]),
    );
    const keys = new Map(
      (this.db.prepare('SELECT app, public_key FROM app_deploy_keys WHERE app IN (SELECT value FROM json_each(?))').all(names) as Array<{ app: string; public_key: string }>).map((r) => [r.app, r.public_key]),
    );
    return rows.map((row) =>
      appInfo(row, domains.get(row.name) ?? [], defaultHostname(row.name, bases.get(row.server)), monorepos.get(row.name) ?? {}, keys.get(row.name) ?? null),
    );
  }

  info(row: AppRow): AppInfo {
    return appInfo(row, this.domains(row.name).map((d) => d.domain), this.defaultDomain(row), this.monorepo(row.name), this.deployKey(row.name)?.publicKey ?? null);
  }
}

interface MonorepoRow {
  app: string;
  root_dir: string | null;
  watch: string | null;
}

function monorepoOf(r: MonorepoRow): { rootDir?: string; watch?: string[] } {
  return { ...(r.root_dir !== null ? { rootDir: r.root_dir } : {}), ...(r.watch !== null ? { watch: JSON.parse(r.watch) as string[] } : {}) };
}

function appInfo(row: AppRow, domains: string[], defaultDomain: string | null, monorepo: { rootDir?: string; watch?: string[] }, deployKey: string | null): AppInfo {
  return {
    name: row.name,
    repo: row.repo,
    branch: row.branch,
    server: row.server,
    domains,
    webhooks: {},
    createdAt: row.created_at,
    // Only present when there is one (older clients and checks compare app objects exactly).
    ...(defaultDomain ? { defaultDomain } : {}),
    ...monorepo,
    ...(deployKey ? { deployKey } : {}),
    ...(row.cluster ? { cluster: row.cluster } : {}),
  };
}

/** Additional data of a sealed repo URL: a ciphertext copied onto another app's row does not open. */
const repoContext = (app: string) => `app-repo\0${app}`;

/** APP.BASE, or null when there is no base domain or the result is not a valid domain (too long). */
export function defaultHostname(app: string, baseDomain: string | null | undefined): string | null {
  if (!baseDomain) return null;
  const r = normalizeDomain(`${app}.${baseDomain}`);
  return r.ok ? r.domain : null;
}

export function domainInfo(row: DomainRow): DomainInfo {
  return { domain: row.domain, app: row.app, createdAt: row.created_at };
}
