// A cluster's image registry (issue 15): where its builds are pushed and its nodes pull from. The
// password, the CA's key and the TLS key are sealed like env values (context: cluster + field), so
// they are decrypted only on the way to the cluster's own agents.
import type { ClusterRegistrySpec } from '../../shared/spec.js';
import type { SecretBox } from '../secret-box.js';
import { now, type Db } from '../store/db.js';

export type RegistryMode = 'managed' | 'external';

/** A registry as the control plane keeps it (secrets in clear: never log, never return from the API). */
export interface ClusterRegistry {
  cluster: string;
  mode: RegistryMode;
  /** host:port, as images are named. */
  address: string;
  username: string;
  password: string;
  /** The CA nodes trust it by (absent: a publicly trusted certificate). */
  caPem: string | null;
  /** Managed only: the CA's key (to re-issue the server certificate), the server certificate and key, htpasswd lines. */
  caKeyPem: string | null;
  certPem: string | null;
  keyPem: string | null;
  htpasswd: string | null;
  updatedAt: string;
}

interface Row {
  cluster: string;
  mode: RegistryMode;
  address: string;
  username: string;
  password_sealed: Buffer;
  ca_pem: string | null;
  ca_key_sealed: Buffer | null;
  cert_pem: string | null;
  key_sealed: Buffer | null;
  htpasswd: string | null;
  updated_at: string;
}

const context = (cluster: string, field: string) => `cluster-registry\0${cluster}\0${field}`;

export class ClusterRegistryStore {
  constructor(
    private readonly db: Db,
    private readonly box: SecretBox,
  ) {}

  get(cluster: string): ClusterRegistry | undefined {
    const row = this.db.prepare('SELECT * FROM cluster_registries WHERE cluster = ?').get(cluster) as Row | undefined;
    if (!row) return undefined;
    const open = (sealed: Buffer | null, field: string) => (sealed ? this.box.open(sealed, context(cluster, field)) : null);
    return {
      cluster,
      mode: row.mode,
      address: row.address,
      username: row.username,
      password: open(row.password_sealed, 'password')!,
      caPem: row.ca_pem,
      caKeyPem: open(row.ca_key_sealed, 'ca_key'),
      certPem: row.cert_pem,
      keyPem: open(row.key_sealed, 'key'),
      htpasswd: row.htpasswd,
      updatedAt: row.updated_at,
    };
  }

  /** Create or replace the cluster's registry. */
  set(reg: Omit<ClusterRegistry, 'updatedAt'>): void {
    const seal = (value: string | null, field: string) => (value === null ? null : this.box.seal(value, context(reg.cluster, field)));
    this.db
      .prepare(
        `INSERT INTO cluster_registries (cluster, mode, address, username, password_sealed, ca_pem, ca_key_sealed, cert_pem, key_sealed, htpasswd, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (cluster) DO UPDATE SET mode = excluded.mode, address = excluded.address, username = excluded.username,
           password_sealed = excluded.password_sealed, ca_pem = excluded.ca_pem, ca_key_sealed = excluded.ca_key_sealed,
           cert_pem = excluded.cert_pem, key_sealed = excluded.key_sealed, htpasswd = excluded.htpasswd, updated_at = excluded.updated_at`,
      )
      .run(reg.cluster, reg.mode, reg.address, reg.username, seal(reg.password, 'password'), reg.caPem, seal(reg.caKeyPem, 'ca_key'), reg.certPem, seal(reg.keyPem, 'key'), reg.htpasswd, now());
  }

  remove(cluster: string): void {
    this.db.prepare('DELETE FROM cluster_registries WHERE cluster = ?').run(cluster);
  }
}

/**
 * What one node's agent is told about the registry: every node the address and the CA; the manager
 * the credentials too, and `serve` when the registry is berth-managed (it runs on the manager); the
 * cluster's builder the credentials (it pushes), never `serve`.
 */
export function registrySpecFor(reg: ClusterRegistry, role: 'manager' | 'worker', builder = false): ClusterRegistrySpec {
  const base: ClusterRegistrySpec = { address: reg.address, ...(reg.caPem ? { caPem: reg.caPem } : {}) };
  if (role !== 'manager') return builder ? { ...base, username: reg.username, password: reg.password } : base;
  const serve =
    reg.mode === 'managed' && reg.certPem && reg.keyPem && reg.htpasswd
      ? { serve: { port: Number(reg.address.slice(reg.address.lastIndexOf(':') + 1)), certPem: reg.certPem, keyPem: reg.keyPem, htpasswd: reg.htpasswd } }
      : {};
  return { ...base, username: reg.username, password: reg.password, ...serve };
}
