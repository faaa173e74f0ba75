// One handle on the database and the stores built on it.
import { openDatabase, type Db } from './db.js';
import { AppStore } from './apps.js';
import { DeploymentStore } from './deployments.js';
import { ServerStore } from './servers.js';

export interface Stores {
  db: Db;
  servers: ServerStore;
  apps: AppStore;
  deployments: DeploymentStore;
}

export function openStores(file: string): Stores {
  const db = openDatabase(file);
  const servers = new ServerStore(db);
  return { db, servers, apps: new AppStore(db, servers), deployments: new DeploymentStore(db) };
}
