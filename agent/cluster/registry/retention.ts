// Registry retention (issue 15): a repository keeps only the manifests given (the app's kept
// releases); the others are deleted through the registry's HTTP API (TLS with the cluster's CA,
// basic auth), then garbage collection reclaims their layers. Tags are how manifests are found: the
// distribution API has no list of a repository's untagged manifests, so every pushed image must
// carry a tag (the release's) to be pruned.
import { request } from 'node:https';
import { isIP } from 'node:net';
import type { ClusterRegistrySpec } from '../../../shared/spec.js';
import type { RegistryRunner } from './serve.js';

/** What retention needs of the registry: where it is, the CA it is trusted by, and the credentials. */
export type RegistryAccess = Pick<ClusterRegistrySpec, 'address' | 'caPem' | 'username' | 'password'>;

export class RegistryApiError extends Error {
  override name = 'RegistryApiError';
}

const MANIFEST_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');
const REPO_RE = /^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request to the registry (bounded: 30 s, 4 MB of answer). */
export function registryRequest(reg: RegistryAccess, method: string, path: string, accept?: string): Promise<Answer> {
  const colon = reg.address.lastIndexOf(':');
  const host = reg.address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  const auth = reg.username && reg.password ? { Authorization: `Basic ${Buffer.from(`${reg.username}:${reg.password}`).toString('base64')}` } : {};
  return new Promise((resolve, reject) => {
    const req = request(
      { host, port: Number(reg.address.slice(colon + 1)), method, path, ...(reg.caPem ? { ca: reg.caPem } : {}), ...(isIP(host) ? {} : { servername: host }), headers: { ...auth, ...(accept ? { Accept: accept } : {}) }, timeout: 30_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
          if (body.length > 4 * 1024 * 1024) req.destroy(new RegistryApiError(`${method} ${path}: answer too large`));
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new RegistryApiError(`${method} ${path}: no answer within 30 s`)));
    req.on('error', (err) => reject(err instanceof RegistryApiError ? err : new RegistryApiError(`${method} ${path} on ${reg.address}: ${err.message}`)));
    req.end();
  });
}

/** tag → manifest digest of every tag of `repo` (an unknown repository has none). */
export async function listTagDigests(reg: RegistryAccess, repo: string): Promise<Map<string, string>> {
  if (!REPO_RE.test(repo)) throw new RegistryApiError(`"${repo}" is not a repository name`);
  const list = await registryRequest(reg, 'GET', `/v2/${repo}/tags/list`);
  if (list.status === 404) return new Map();
  if (list.status !== 200) throw new RegistryApiError(`listing the tags of ${repo} answered ${list.status}`);
  const tags = ((JSON.parse(list.body) as { tags?: unknown }).tags ?? []) as unknown[];
  const out = new Map<string, string>();
  for (const tag of tags) {
    if (typeof tag !== 'string' || !TAG_RE.test(tag)) continue;
    const head = await registryRequest(reg, 'HEAD', `/v2/${repo}/manifests/${tag}`, MANIFEST_TYPES);
    const digest = head.headers['docker-content-digest'];
    if (head.status === 200 && typeof digest === 'string' && DIGEST_RE.test(digest)) out.set(tag, digest);
  }
  return out;
}

export interface PruneReport {
  /** Manifest digests deleted (with every tag that pointed at them). */
  deleted: string[];
  kept: string[];
  /** Output of `registry garbage-collect`; absent when nothing was deleted (no GC run). */
  gc?: string;
}

/**
 * Delete every manifest of `repo` not in `keepDigests`, then garbage-collect through `runner` (which
 * stops the registry for the few seconds GC takes). Nothing deleted: no GC, no interruption.
 */
export async function pruneRepository(reg: RegistryAccess, repo: string, keepDigests: string[], runner: Pick<RegistryRunner, 'collectGarbage'>): Promise<PruneReport> {
  for (const d of keepDigests) if (!DIGEST_RE.test(d)) throw new RegistryApiError(`"${d}" is not a sha256 digest`);
  const keep = new Set(keepDigests);
  const digests = new Set((await listTagDigests(reg, repo)).values());
  const deleted: string[] = [];
  const kept: string[] = [];
  for (const digest of digests) {
    if (keep.has(digest)) {
      kept.push(digest);
      continue;
    }
    const res = await registryRequest(reg, 'DELETE', `/v2/${repo}/manifests/${digest}`);
    if (res.status !== 202 && res.status !== 404) throw new RegistryApiError(`deleting ${repo}@${digest} answered ${res.status}`);
    deleted.push(digest);
  }
  if (deleted.length === 0) return { deleted, kept };
  return { deleted, kept, gc: await runner.collectGarbage() };
}
