// Clusters and their servers (issue 15). No join token is ever stored here: the manager's agent is
// asked for the current one when a server joins, and rotates it right after.
import type { ClusterInfo } from '../../shared/api.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { now, type Db } from '../store/db.js';

export interface ClusterRow {
  name: string;
  manager: string;
  advertise: string;
  addr_pool: string;
  created_at: string;
  /** The node that builds the cluster's apps; null: the manager. */
  builder: string | null;
}

export interface ClusterNodeRow {
  server: string;
  cluster: string;
  role: 'manager' | 'worker';
  node_id: string;
  joined_at: string;
  /** What the checks after its join could not reach (ports back from the manager, the overlay), naming the servers; null: all reached. */
  reach_error: string | null;
}

/** A cluster as GET /api/clusters shows it. */
export function clusterInfo(r: ClusterRow, nodeCount: number): ClusterInfo {
  return { name: r.name, manager: r.manager, advertise: r.advertise, addrPool: r.addr_pool, createdAt: r.created_at, nodeCount, builder: r.builder ?? r.manager };
}

export class ClusterStore {
  constructor(private readonly db: Db) {}

  get(name: string): ClusterRow | undefined {
    return this.db.prepare('SELECT * FROM clusters WHERE name = ?').get(name) as ClusterRow | undefined;
  }

  require(name: string): ClusterRow {
    const row = this.get(name);
    if (!row) throw new NotFoundError(`cluster "${name}" does not exist`);
    return row;
  }

  list(): Array<ClusterRow & { node_count: number }> {
    return this.db
      .prepare('SELECT c.*, (SELECT COUNT(*) FROM cluster_nodes n WHERE n.cluster = c.name) AS node_count FROM clusters c ORDER BY c.name')
      .all() as Array<ClusterRow & { node_count: number }>;
  }

  nodes(cluster: string): ClusterNodeRow[] {
    return this.db.prepare("SELECT * FROM cluster_nodes WHERE cluster = ? ORDER BY role = 'worker', server").all(cluster) as ClusterNodeRow[];
  }

  membership(server: string): ClusterNodeRow | undefined {
    return this.db.prepare('SELECT * FROM cluster_nodes WHERE server = ?').get(server) as ClusterNodeRow | undefined;
  }

  /** Refuse a server that is already in a cluster (this one or another). */
  assertFree(server: string): void {
    const m = this.membership(server);
    if (m) throw new ConflictError(`server "${server}" is already in cluster "${m.cluster}" (as ${m.role})`);
  }

  /** The cluster and its manager's node, in one transaction. */
  create(row: Omit<ClusterRow, 'created_at' | 'builder'>, managerNodeId: string): void {
    this.db.transaction(() => {
      if (this.get(row.name)) throw new ConflictError(`cluster "${row.name}" already exists`);
      this.assertFree(row.manager);
      const at = now();
      this.db.prepare('INSERT INTO clusters (name, manager, advertise, addr_pool, created_at) VALUES (?, ?, ?, ?, ?)').run(row.name, row.manager, row.advertise, row.addr_pool, at);
      this.db
        .prepare("INSERT INTO cluster_nodes (server, cluster, role, node_id, joined_at) VALUES (?, ?, 'manager', ?, ?)")
        .run(row.manager, row.name, managerNodeId, at);
    })();
  }

  addNode(cluster: string, server: string, role: 'manager' | 'worker', nodeId: string): void {
    this.db.transaction(() => {
      this.require(cluster);
      this.assertFree(server);
      this.db.prepare('INSERT INTO cluster_nodes (server, cluster, role, node_id, joined_at) VALUES (?, ?, ?, ?, ?)').run(server, cluster, role, nodeId, now());
    })();
  }

  setReachError(server: string, error: string | null): void {
    this.db.prepare('UPDATE cluster_nodes SET reach_error = ? WHERE server = ?').run(error, server);
  }

  /** A node of the cluster builds its apps (null or the manager: the manager builds). */
  setBuilder(cluster: string, server: string | null): void {
    const c = this.require(cluster);
    if (server !== null && server !== c.manager && this.membership(server)?.cluster !== cluster) throw new ConflictError(`server "${server}" is not in cluster "${cluster}": add it first (berth cluster add ${cluster} ${server})`);
    this.db.prepare('UPDATE clusters SET builder = ? WHERE name = ?').run(server === c.manager ? null : server, cluster);
  }

  /** The node leaves: builds go back to the manager if it was the builder. */
  removeNode(server: string): void {
    this.db.transaction(() => {
      this.db.prepare('UPDATE clusters SET builder = NULL WHERE builder = ?').run(server);
      this.db.prepare('DELETE FROM cluster_nodes WHERE server = ?').run(server);
    })();
  }
}
