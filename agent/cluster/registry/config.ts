// The registry's files (distribution 2.x config.yml, TLS certificate and key, htpasswd), rendered from
// the `serve` part of the cluster spec. Paths are as the registry process sees them: inside its
// container (the container runner) or on the host (Debian's docker-registry as a service).
import { createHash } from 'node:crypto';
import type { ClusterRegistrySpec } from '../../../shared/spec.js';

export type ServeSpec = NonNullable<ClusterRegistrySpec['serve']>;

export interface RegistryLayout {
  /** Directory holding config.yml, server.crt, server.key and htpasswd. */
  confDir: string;
  /** Where image data is kept (filesystem storage driver). */
  storageDir: string;
}

export interface RegistryFile {
  name: 'config.yml' | 'server.crt' | 'server.key' | 'htpasswd';
  content: string;
  mode: number;
}

const PLAIN_PATH = /^\/[A-Za-z0-9._\/-]*$/;

/** distribution's config.yml: filesystem storage with deletes on, TLS, htpasswd auth, no other listener. */
export function renderRegistryConfig(layout: RegistryLayout, port: number, cluster: string): string {
  for (const p of [layout.confDir, layout.storageDir]) if (!PLAIN_PATH.test(p)) throw new Error(`registry path "${p}" must be absolute, of letters, digits and "._/-"`);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`registry port ${port} is not a port`);
  if (!/^[a-z0-9-]+$/.test(cluster)) throw new Error(`cluster name "${cluster}" is not plain`);
  return `# Written by berth (cluster ${cluster}): changes are overwritten.
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${layout.storageDir}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
http:
  addr: 0.0.0.0:${port}
  tls:
    certificate: ${layout.confDir}/server.crt
    key: ${layout.confDir}/server.key
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: berth-${cluster}
    path: ${layout.confDir}/htpasswd
`;
}

/** The four files; the key is private (0600), the rest readable by the registry's user. */
export function registryFiles(layout: RegistryLayout, serve: ServeSpec, cluster: string): RegistryFile[] {
  return [
    { name: 'config.yml', content: renderRegistryConfig(layout, serve.port, cluster), mode: 0o644 },
    { name: 'server.crt', content: serve.certPem, mode: 0o644 },
    { name: 'server.key', content: serve.keyPem, mode: 0o600 },
    { name: 'htpasswd', content: serve.htpasswd.endsWith('\n') ? serve.htpasswd : `${serve.htpasswd}\n`, mode: 0o644 },
  ];
}

/** One hash of everything the running registry depends on: a change means a restart. */
export function filesHash(files: RegistryFile[], extra: string[] = []): string {
  const h = createHash('sha256');
  for (const f of files) h.update(`${f.name}\0${f.mode}\0${f.content}\0`);
  for (const e of extra) h.update(`${e}\0`);
  return h.digest('hex').slice(0, 32);
}
