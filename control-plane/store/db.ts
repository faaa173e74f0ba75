// The control plane's SQLite database: opened in WAL mode with foreign keys on, and migrated in
// code. Migrations are an append-only list; `user_version` records how many have run. They only go
// forward, each in its own transaction, after a copy of the database is taken (DATA/backups/).
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

/** The control plane's database file in its data directory. */
export const DB_FILE = 'control-plane.db';

/** Append only: never edit a migration that has shipped, add a new one. */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE servers (
    name                  TEXT PRIMARY KEY,
    created_at            TEXT NOT NULL,
    join_token_hash       TEXT UNIQUE,
    join_token_expires_at TEXT,
    joined_at             TEXT,
    credential_hash       TEXT UNIQUE,
    last_seen_at          TEXT,
    agent_version         TEXT,
    hostname              TEXT,
    spec_revision         INTEGER NOT NULL DEFAULT 0
  ) STRICT;

  CREATE TABLE apps (
    name       TEXT PRIMARY KEY,
    repo       TEXT NOT NULL,
    branch     TEXT NOT NULL,
    server     TEXT NOT NULL REFERENCES servers(name),
    created_at TEXT NOT NULL
  ) STRICT;
  CREATE INDEX apps_by_server ON apps(server);

  CREATE TABLE domains (
    domain     TEXT PRIMARY KEY,
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    created_at TEXT NOT NULL
  ) STRICT;
  CREATE INDEX domains_by_app ON domains(app);

  CREATE TABLE deployments (
    id          TEXT PRIMARY KEY,
    app         TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    server      TEXT NOT NULL REFERENCES servers(name),
    status      TEXT NOT NULL,
    "commit"    TEXT,
    reason      TEXT,
    "trigger"   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    finished_at TEXT
  ) STRICT;
  CREATE INDEX deployments_by_app ON deployments(app);
  CREATE INDEX deployments_by_server_status ON deployments(server, status);

  CREATE TABLE deployment_logs (
    deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    ts            TEXT NOT NULL,
    stream        TEXT NOT NULL,
    text          TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
  ) STRICT, WITHOUT ROWID;
  `,
  // 2: env vars and webhook secrets (sealed with DATA/secret.key), webhook deliveries seen, and
  // every deployment's phase timeline.
  `
  CREATE TABLE cp_meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
  ) STRICT;

  CREATE TABLE app_env (
    app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (app, key)
  ) STRICT, WITHOUT ROWID;

  CREATE TABLE app_webhooks (
    app          TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
    push_secret  BLOB NOT NULL,
    deploy_token BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    rotated_at   TEXT
  ) STRICT;

  CREATE TABLE webhook_deliveries (
    app           TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
    delivery      TEXT NOT NULL,
    host          TEXT NOT NULL,
    deployment_id TEXT,
    received_at   TEXT NOT NULL,
    PRIMARY KEY (app, delivery)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries(received_at);

  CREATE TABLE deployment_phases (
    id            INTEGER PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    status        TEXT NOT NULL,
    reason        TEXT,
    at            TEXT NOT NULL
  ) STRICT;
  CREATE INDEX deployment_phases_by_deployment ON deployment_phases(deployment_id);
  `,
  // 3 (issue 5): a server's base domain (every app on it also answers APP.BASE_DOMAIN), and the
  // certificate state each agent reports per app (a JSON document, fields only ever added).
  `
  ALTER TABLE servers ADD COLUMN base_domain TEXT;

  CREATE TABLE app_certs (
    app         TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
    server      TEXT NOT NULL,
    status      TEXT NOT NULL,
    reported_at TEXT NOT NULL
  ) STRICT;
  CREATE INDEX app_certs_by_server ON app_certs(server);
  `,
  // 4 (issue 4): a rollback is a deployment that re-activates the release another one made.
  `
  ALTER TABLE deployments ADD COLUMN rollback_of TEXT;
  `,
  // 5 (issue 9): `berth app rm --purge-volumes`: removed apps whose volumes their server's agent
  // deletes (sent in the desired state, so it happens even if the agent was offline at the time).
  // Not tied to apps(name): the app row is gone. Re-creating the app on that server clears it.
  `
  CREATE TABLE volume_purges (
    server       TEXT NOT NULL REFERENCES servers(name) ON DELETE CASCADE,
    app          TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    PRIMARY KEY (server, app)
  ) STRICT, WITHOUT ROWID;
  `,
  // 6 (issue 13): a repo URL with credentials is stored sealed (secret-box.ts); \`repo\` holds it masked.
  `
  ALTER TABLE apps ADD COLUMN repo_sealed BLOB;
  `,
  // (issue 18) notifications: channels (targets and signing secrets sealed), the durable outbox of
  // deliveries, every attempt, the last known state of what is watched (so a restart does not alert
  // twice) and the rate limit of repeated failures.
  `
  CREATE TABLE notify_channels (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    target     BLOB NOT NULL,
    secret     BLOB,
    apps       TEXT NOT NULL,
    events     TEXT NOT NULL,
    created_at TEXT NOT NULL
  ) STRICT;
  CREATE TABLE notify_outbox (
    id           INTEGER PRIMARY KEY,
    key          TEXT NOT NULL UNIQUE,
    channel      TEXT NOT NULL,
    event        TEXT NOT NULL,
    app          TEXT,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    finished_at  TEXT
  ) STRICT;
  CREATE INDEX notify_outbox_due ON notify_outbox(status, next_at);
  CREATE TABLE notify_attempts (
    id        INTEGER PRIMARY KEY,
    outbox_id INTEGER NOT NULL REFERENCES notify_outbox(id) ON DELETE CASCADE,
    at        TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    result    TEXT NOT NULL,
    code      INTEGER,
    error     TEXT,
    next_at   TEXT
  ) STRICT;
  CREATE INDEX notify_attempts_by_outbox ON notify_attempts(outbox_id);
  CREATE TABLE notify_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
  ) STRICT;
  CREATE TABLE notify_rate (
    key          TEXT PRIMARY KEY,
    window_start TEXT NOT NULL,
    suppressed   INTEGER NOT NULL DEFAULT 0,
    last_event   TEXT
  ) STRICT;
  `,
  // (issue 17): monorepos: the app's subdirectory and the watch globs (JSON array) a push must touch;
  // private repos: the app's SSH deploy key (the private half sealed with the secret box).
  `
  CREATE TABLE app_monorepo (
    app      TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
    root_dir TEXT,
    watch    TEXT
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE app_deploy_keys (
    app            TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
    public_key     TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    known_hosts    TEXT
  ) STRICT, WITHOUT ROWID;
  `,
  // (issue 20) scale: the stale-deployment sweep (every minute) reads only unfinished deployments
  // instead of scanning the whole history; the same expression as its query, so SQLite uses it.
  `
  CREATE INDEX deployments_unfinished ON deployments(updated_at)
    WHERE status NOT IN ('queued', 'done', 'failed', 'cancelled', 'superseded');
  `,
  // (issue 15) clusters: a Swarm formed through the agents. A server is in at most one cluster
  // (cluster_nodes.server is the key). No join token is ever stored: they are read live and rotated.
  `
  CREATE TABLE clusters (
    name       TEXT PRIMARY KEY,
    manager    TEXT NOT NULL REFERENCES servers(name),
    advertise  TEXT NOT NULL,
    addr_pool  TEXT NOT NULL,
    created_at TEXT NOT NULL
  ) STRICT;
  CREATE TABLE cluster_nodes (
    server        TEXT PRIMARY KEY REFERENCES servers(name),
    cluster       TEXT NOT NULL REFERENCES clusters(name) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('manager', 'worker')),
    node_id       TEXT NOT NULL,
    joined_at     TEXT NOT NULL,
    reach_error   TEXT
  ) STRICT;
  CREATE INDEX cluster_nodes_by_cluster ON cluster_nodes(cluster);
  `,
  // (issue 16) `berth scale`: replicas per process (a JSON object) that override the repo's
  // `scale:` until reset; the deploy order carries them to the agent.
  `
  CREATE TABLE app_scale (
    app        TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
    scale      TEXT NOT NULL,
    updated_at TEXT NOT NULL
  ) STRICT, WITHOUT ROWID;
  `,
  // (issue 15) cluster apps and the cluster's registry. An app on a cluster keeps `server` = the
  // cluster's manager (its agent deploys it); `cluster` says it runs as Swarm services. The
  // registry's password and TLS key are sealed like env values; mode 'managed': the manager's agent
  // runs it with cert/key/htpasswd from here; 'external': the user's own registry (no cert/key).
  `
  ALTER TABLE apps ADD COLUMN cluster TEXT REFERENCES clusters(name);
  CREATE INDEX apps_by_cluster ON apps(cluster) WHERE cluster IS NOT NULL;
  CREATE TABLE cluster_registries (
    cluster         TEXT PRIMARY KEY REFERENCES clusters(name) ON DELETE CASCADE,
    mode            TEXT NOT NULL CHECK (mode IN ('managed', 'external')),
    address         TEXT NOT NULL,
    username        TEXT NOT NULL,
    password_sealed BLOB NOT NULL,
    ca_pem          TEXT,
    ca_key_sealed   BLOB,
    cert_pem        TEXT,
    key_sealed      BLOB,
    htpasswd        TEXT,
    updated_at      TEXT NOT NULL
  ) STRICT, WITHOUT ROWID;
  `,
  // (issue 16) what the agent reports about a deployment's commit: its subject line (cleaned) and the
  // repo's `scale:` per process (JSON), for the dashboard and `berth app show`.
  `
  ALTER TABLE deployments ADD COLUMN commit_message TEXT;
  ALTER TABLE deployments ADD COLUMN repo_scale TEXT;
  `,
  // (issue 20) scale, found by bench/control-plane-scale with 1,000,000 deployments: each agent's hello
  // read every deployment of its server to find the started ones (now a partial index of only those),
  // and the withdrawn ones of the last hour (now a range on finished_at); a push webhook read every
  // deployment of its app to find an earlier one of the same commit (now (app, commit), and a partial
  // index for the rare abbreviated commits).
  `
  CREATE INDEX deployments_started_by_server ON deployments(server)
    WHERE status NOT IN ('queued', 'done', 'failed', 'cancelled', 'superseded');
  DROP INDEX deployments_by_server_status;
  CREATE INDEX deployments_by_server_status ON deployments(server, status, finished_at);
  CREATE INDEX deployments_by_app_commit ON deployments(app, "commit");
  CREATE INDEX deployments_abbreviated_commit ON deployments(app) WHERE length("commit") BETWEEN 7 AND 39;
  `,
  // (issue 15) a cluster's builder: the node that fetches, builds and pushes its apps' images (NULL:
  // the manager). A deployment built there is recorded in deployment_builds: its builder, then the
  // pushed image it reported (JSON) and the log line number the manager's part starts at.
  `
  ALTER TABLE clusters ADD COLUMN builder TEXT REFERENCES servers(name);
  CREATE TABLE deployment_builds (
    deployment_id TEXT PRIMARY KEY REFERENCES deployments(id) ON DELETE CASCADE,
    builder       TEXT NOT NULL,
    built         TEXT,
    log_seq       INTEGER
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX deployment_builds_running ON deployment_builds(builder) WHERE built IS NULL;
  `,
];

export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** The schema version this berth writes and understands. */
export const SCHEMA_VERSION = MIGRATIONS.length;
/** Pre-migration copies go to DATA/backups/ (next to the database file). */
export const PRE_MIGRATION_DIR = 'backups';
/**
 * The database holds every secret's ciphertext, agent credential hashes and deploy logs: owner only.
 * SQLite creates -wal and -shm with the main file's mode, so the main file is made 0600 before it is
 * opened; all three are forced to 0600 after (files left looser by an older berth or a restore).
 */
function restrictModes(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
}

export function openDatabase(file: string): Db {
  const onDisk = file !== ':memory:';
  if (onDisk) {
    closeSync(openSync(file, 'a', 0o600));
    restrictModes(file);
  }
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    if (onDisk) restrictModes(file);
    cacheStatements(db);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Distinct SQL texts kept compiled; the stores' texts are fixed (a few hundred at most), others are compiled each time. */
const MAX_CACHED_STATEMENTS = 1000;

/**
 * better-sqlite3 compiles the SQL again on every `prepare()`, and the stores call it per query: with
 * thousands of agents saying hello, compiling was the control plane's largest CPU cost
 * (bench/control-plane-scale). The same text now gets the same compiled statement. Safe because no
 * caller switches a statement's mode (pluck, raw, expand, safeIntegers) or iterates one.
 */
function cacheStatements(db: Db): void {
  const cache = new Map<string, Database.Statement>();
  const compile = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    let stmt = cache.get(sql);
    if (!stmt) {
      stmt = compile(sql);
      if (cache.size < MAX_CACHED_STATEMENTS) cache.set(sql, stmt);
    }
    return stmt;
  }) as Db['prepare'];
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    // A newer berth wrote this database; running old code on it could corrupt it.
    throw new MigrationError(
      `database schema version ${current} is newer than this berth supports (${SCHEMA_VERSION}): run the berth version that wrote it, or restore a backup made with this one`,
    );
  }
  if (current === SCHEMA_VERSION) return;
  // An existing database (not a new one) is copied before its schema changes: a migration that goes
  // wrong, or a berth downgrade, can go back to this file.
  if (current > 0) copyBeforeMigration(db, current);
  for (let i = current; i < SCHEMA_VERSION; i++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[i]!);
      db.pragma(`user_version = ${i + 1}`);
    })();
  }
}

/** A consistent copy (VACUUM INTO: SQLite's own online copy, synchronous) at DATA/backups/pre-migration-vN-TIME.db, 0600. */
function copyBeforeMigration(db: Db, version: number): string {
  const dir = join(dirname(db.name), PRE_MIGRATION_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `pre-migration-v${version}-${new Date().toISOString().replace(/[-:.]/g, '')}.db`);
  db.prepare('VACUUM INTO ?').run(file);
  chmodSync(file, 0o600);
  return file;
}

export const now = (): string => new Date().toISOString();
