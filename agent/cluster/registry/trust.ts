// Every node of a cluster trusts its registry's CA the way Docker reads it per pull:
// /etc/docker/certs.d/HOST:PORT/ca.crt. No daemon restart, no insecure-registries.
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, isAbsolute } from 'node:path';
import { registryAddress } from '../../../shared/spec.js';
import { ensureDir, writeFileAtomic } from '../../../shared/util/index.js';

export const DEFAULT_DOCKER_CERTS_DIR = '/etc/docker/certs.d';

export class RegistryTrustError extends Error {
  override name = 'RegistryTrustError';
}

/** certs.d/ADDRESS/ca.crt, refused unless the address is a registry address and the path stays one level under `certsDir`. */
export function caPathFor(certsDir: string, address: string): string {
  if (!registryAddress.safeParse(address).success) throw new RegistryTrustError(`"${address}" is not a registry address (host:port)`);
  const dir = join(certsDir, address);
  const rel = relative(certsDir, dir);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel) || rel.includes('/')) throw new RegistryTrustError(`"${address}" leaves ${certsDir}`);
  return join(dir, 'ca.crt');
}

/** Write the CA (world-readable, it is public) when it differs; true when it was written. */
export function installCa(certsDir: string, address: string, caPem: string): boolean {
  const file = caPathFor(certsDir, address);
  if (existsSync(file) && readFileSync(file, 'utf8') === caPem) return false;
  ensureDir(join(file, '..'), 0o755);
  writeFileAtomic(file, caPem, 0o644);
  return true;
}
