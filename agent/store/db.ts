// The agent's SQLite database: opened in WAL mode, schema migrated in code (PRAGMA user_version).
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';

export type Db = Database.Database;

// Append only: a released migration is never edited, a change is a new entry.
const MIGRATIONS: string[] = [
  `
  CREATE TABLE desired_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    revision    INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    received_at TEXT NOT NULL
  );
  CREATE TABLE deploys (
    id             TEXT PRIMARY KEY,
    app            TEXT NOT NULL,
    status         TEXT NOT NULL,
    commit_sha     TEXT,
    reason         TEXT,
    image          TEXT,
    container_id   TEXT,
    host_port      INTEGER,
    container_port INTEGER,
    order_json     TEXT NOT NULL,
    log_seq        INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    finished_at    TEXT
  );
  CREATE INDEX deploys_app ON deploys (app, created_at);
  CREATE INDEX deploys_unfinished ON deploys (status) WHERE finished_at IS NULL;
  CREATE TABLE deploy_transitions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    deploy_id TEXT NOT NULL REFERENCES deploys (id) ON DELETE CASCADE,
    status    TEXT NOT NULL,
    reason    TEXT,
    at        TEXT NOT NULL
  );
  CREATE INDEX deploy_transitions_deploy ON deploy_transitions (deploy_id, id);
  CREATE TABLE releases (
    app            TEXT PRIMARY KEY,
    deployment_id  TEXT NOT NULL,
    image          TEXT NOT NULL,
    container_id   TEXT NOT NULL,
    host_port      INTEGER NOT NULL,
    container_port INTEGER,
    commit_sha     TEXT,
    activated_at   TEXT NOT NULL
  );
  CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
  );
  CREATE INDEX outbox_kind ON outbox (kind, id);
  CREATE TABLE reconcile_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    actions     TEXT NOT NULL,
    errors      TEXT NOT NULL
  );
  `,
  // Issue 3: processes with scale, static sites, and a snapshot of every good release (image +
  // config + env) so a rollback needs no rebuild.
  `
  ALTER TABLE releases ADD COLUMN spec_json TEXT;
  ALTER TABLE releases ADD COLUMN env_json TEXT;
  CREATE TABLE release_history (
    deployment_id TEXT PRIMARY KEY,
    app           TEXT NOT NULL,
    image         TEXT NOT NULL,
    commit_sha    TEXT,
    config_json   TEXT NOT NULL,
    spec_json     TEXT NOT NULL,
    env_json      TEXT NOT NULL,
    created_at    TEXT NOT NULL
  );
  CREATE INDEX release_history_app ON release_history (app, created_at);
  `,
  // Issue 4: a deadline per phase (journaled so a restart can tell), the intermediate images a
  // build created (removed when the deploy fails), and when a kept release was last made live
  // (a rollback re-activates an old one; retention counts from the latest activation).
  `
  ALTER TABLE deploys ADD COLUMN deadline_at TEXT;
  ALTER TABLE deploys ADD COLUMN build_images TEXT;
  ALTER TABLE deploy_transitions ADD COLUMN deadline_at TEXT;
  ALTER TABLE release_history ADD COLUMN activated_at TEXT;
  `,
  // Issue 9: every cron run (scheduled, manual, skipped). A schedule slot fires once per job: the
  // unique (app, job, scheduled_at) makes a restarted agent unable to run the same slot twice.
  `
  CREATE TABLE cron_runs (
    id            TEXT PRIMARY KEY,
    app           TEXT NOT NULL,
    job           TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    scheduled_at  TEXT,
    status        TEXT NOT NULL,
    deployment_id TEXT,
    container     TEXT,
    timeout_s     INTEGER,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    exit_code     INTEGER,
    reason        TEXT,
    output        TEXT NOT NULL DEFAULT '[]'
  );
  CREATE UNIQUE INDEX cron_runs_slot ON cron_runs (app, job, scheduled_at);
  CREATE INDEX cron_runs_job ON cron_runs (app, job, started_at);
  CREATE INDEX cron_runs_running ON cron_runs (status) WHERE status = 'running';
  `,
];

/**
 * The data dir holds the agent credential, ACME keys and the database: owner-only on every start,
 * not only when created (a `chmod -R`, a restored backup or an older berth may have widened it).
 */
export function securePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/**
 * SQLite files are never world-readable: the database is created 0600 before SQLite opens it (its
 * -wal and -shm files copy that mode), and a file left wider by an earlier run is narrowed.
 */
function securePrivateDbFiles(file: string): void {
  closeSync(openSync(file, 'a', 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600);
}

export function openDb(file: string): Db {
  securePrivateDbFiles(file);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode survives a process crash (SIGKILL) intact; only an OS crash may lose the last commits.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db);
  return db;
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(`agent database schema version ${current} is newer than this berth (${MIGRATIONS.length}): upgrade berth`);
  }
  for (let version = current; version < MIGRATIONS.length; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version]!);
      db.pragma(`user_version = ${version + 1}`);
    })();
  }
}

export const now = (): string => new Date().toISOString();
