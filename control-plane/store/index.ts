// One handle on the database and the stores built on it.
import { randomBytes } from 'node:crypto';
import { ConfigError } from '../errors.js';
import { SecretBox, SecretBoxError, SECRET_KEY_FILE } from '../secret-box.js';
import { openDatabase, type Db } from './db.js';
import { AppStore } from './apps.js';
import { CertStatusStore } from './certs.js';
import { DEFAULT_KEEP_DEPLOYMENT_LOGS, DeploymentStore } from './deployments.js';
import { EnvStore } from './env.js';
import { ScaleStore } from './scale.js';
import { ServerStore } from './servers.js';
import { WebhookStore } from './webhooks.js';
import { ClusterStore } from '../clusters/store.js';
import { ClusterRegistryStore } from '../clusters/registry-store.js';
import { ClusterBuildStore } from '../clusters/build-store.js';

export interface Stores {
  db: Db;
  servers: ServerStore;
  apps: AppStore;
  deployments: DeploymentStore;
  env: EnvStore;
  webhooks: WebhookStore;
  /** Certificate state reported by agents (issue 5). */
  certs: CertStatusStore;
  /** `berth scale` overrides (issue 16). */
  scale: ScaleStore;
  /** Clusters and their nodes (issue 15). */
  clusters: ClusterStore;
  /** Each cluster's image registry, secrets sealed (issue 15). */
  clusterRegistries: ClusterRegistryStore;
  /** Deployments built on their cluster's builder (issue 15). */
  clusterBuilds: ClusterBuildStore;
}

export interface StoreOptions {
  /** Seals secrets at rest. Without one a throwaway key is used: only for tests that never reopen the file. */
  secretBox?: SecretBox;
  /** Deployments per app whose log lines are kept (default: $BERTH_DEPLOYMENT_LOGS_KEEP, else 100). */
  keepDeploymentLogs?: number;
}

/** BERTH_DEPLOYMENT_LOGS_KEEP: a whole number from 1 up. */
export function keepDeploymentLogsFromEnv(raw = process.env.BERTH_DEPLOYMENT_LOGS_KEEP): number {
  if (raw === undefined || raw === '') return DEFAULT_KEEP_DEPLOYMENT_LOGS;
  const n = /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 1)) throw new ConfigError(`invalid BERTH_DEPLOYMENT_LOGS_KEEP "${raw}": must be a whole number of deployments, 1 or more`);
  return n;
}

const KEY_CHECK = 'secret_key_check';
const KEY_CHECK_PLAINTEXT = 'berth secret key check';

export function openStores(file: string, opts: StoreOptions = {}): Stores {
  const db = openDatabase(file);
  try {
    const box = opts.secretBox ?? new SecretBox(randomBytes(32));
    checkKey(db, box);
    const servers = new ServerStore(db);
    const apps = new AppStore(db, servers, box);
    apps.sealRepoCredentials();
    const deployments = new DeploymentStore(db, opts.keepDeploymentLogs ?? keepDeploymentLogsFromEnv());
    deployments.compactAllLogs();
    return {
      db,
      servers,
      apps,
      deployments,
      env: new EnvStore(db, apps, servers, box),
      webhooks: new WebhookStore(db, box),
      certs: new CertStatusStore(db),
      scale: new ScaleStore(db, servers),
      clusters: new ClusterStore(db),
      clusterRegistries: new ClusterRegistryStore(db, box),
      clusterBuilds: new ClusterBuildStore(db),
    };
  } catch (err) {
    db.close();
    throw err;
  }
}

/** Refuse to start with a key that does not match the database, instead of failing on the first secret read. */
function checkKey(db: Db, box: SecretBox): void {
  const row = db.prepare('SELECT value FROM cp_meta WHERE key = ?').get(KEY_CHECK) as { value: Buffer } | undefined;
  if (!row) {
    db.prepare('INSERT INTO cp_meta (key, value) VALUES (?, ?)').run(KEY_CHECK, box.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK));
    return;
  }
  try {
    if (box.open(row.value, KEY_CHECK) === KEY_CHECK_PLAINTEXT) return;
  } catch (err) {
    if (!(err instanceof SecretBoxError)) throw err;
  }
  throw new ConfigError(`${SECRET_KEY_FILE} does not match this database (was it replaced or lost?); restore the original key file`);
}
