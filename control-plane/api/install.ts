// What a new server needs to install berth, served without authentication (a join token is what
// protects enrolment): the installer with this control plane's URL baked in, a manifest naming the
// release for an architecture, the release tarball + checksum, and the Node.js binary this control
// plane runs on (servers whose distribution ships an older Node take it from here).
//
//   GET /install.sh                          install.sh with our public URL and release key baked in,
//                                            signed as served (X-Berth-Signature: what `berth upgrade` checks)
//   GET /install/manifest?arch=x64|arm64[&version=V]   key=value lines (install.sh reads them); version
//                                            picks one release (`berth upgrade --version V`); the release
//                                            and the Node.js binary come with their signatures
//   GET /install/release.pub                 the release key (PEM), to compare with a server's /etc/berth/release.pub
//   GET /install/releases/FILE               berth-VERSION-linux-ARCH.tar.gz | .tar.gz.sha256 | .json
//   GET /install/node?arch=…                 our own node binary (linux, same arch only); /install/node.sha256
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Context, Hono } from 'hono';
import { rateLimitedLog } from '../../shared/log-rate-limit.js';
import { INSTALLER_SIGNATURE_HEADER, nodeStatement, releaseStatement } from '../../shared/release-signature.js';
import { BERTH_VERSION } from '../../shared/version.js';
import type { ReleaseSigner } from '../release-signing.js';
import type { ApiDeps } from './deps.js';

/** The package root (where package.json, install.sh and release/ live): dist/control-plane/api → ../../.. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Where release tarballs are looked up: --release-dir, else $BERTH_RELEASE_DIR, else PACKAGE_ROOT/release. */
export function defaultReleaseDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.BERTH_RELEASE_DIR ? resolve(env.BERTH_RELEASE_DIR) : join(PACKAGE_ROOT, 'release');
}

const RELEASE_FILE = /^berth-([0-9A-Za-z.+-]{1,64})-linux-(x64|arm64)(\.tar\.gz|\.tar\.gz\.sha256|\.json)$/;
const SAFE_VALUE = /^[0-9A-Za-z.+_-]{1,128}$/;

export interface ReleaseInfo {
  version: string;
  arch: string;
  file: string;
  sha256: string;
  nodeVersion: string;
  nodeAbi: string;
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/);
  const pb = b.split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const nx = /^\d+$/.test(x) ? Number(x) : NaN;
    const ny = /^\d+$/.test(y) ? Number(y) : NaN;
    const c = !Number.isNaN(nx) && !Number.isNaN(ny) ? nx - ny : x.localeCompare(y);
    if (c !== 0) return c;
  }
  return 0;
}

/** Every complete release in `dir` for `arch`, newest first. */
export function listReleases(dir: string, arch: string): ReleaseInfo[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const found: ReleaseInfo[] = [];
  for (const name of names) {
    const m = RELEASE_FILE.exec(name);
    if (!m || m[2] !== arch || m[3] !== '.json') continue;
    try {
      const info = JSON.parse(readFileSync(join(dir, name), 'utf8')) as Partial<ReleaseInfo>;
      const values = [info.version, info.file, info.sha256, info.nodeVersion, info.nodeAbi];
      if (!values.every((v) => typeof v === 'string' && SAFE_VALUE.test(v))) continue;
      if (!RELEASE_FILE.test(info.file!) || !existsSync(join(dir, info.file!))) continue;
      found.push({ ...(info as ReleaseInfo), arch });
    } catch {
      // an unreadable sidecar: not a release
    }
  }
  return found.sort((a, b) => compareVersions(b.version, a.version));
}

/** The release for `arch`: exactly `version` when given, else the one matching our own version, else the newest. */
export function findRelease(dir: string, arch: string, version?: string): ReleaseInfo | undefined {
  return pickRelease(listReleases(dir, arch), version);
}

function pickRelease(found: ReleaseInfo[], version?: string): ReleaseInfo | undefined {
  if (version !== undefined) return found.find((r) => r.version === version);
  return found.find((r) => r.version === BERTH_VERSION) ?? found[0];
}

/**
 * A release's install-manifest lines, signed with `signer` (what install.sh checks before downloading):
 * served by the control plane at /install/manifest and written as berth-VERSION-linux-ARCH.manifest
 * files onto a static release host (scripts/release-host.mjs).
 */
export function releaseManifestLines(rel: ReleaseInfo, signer: Pick<ReleaseSigner, 'sign'>): string[] {
  return [
    `berth_version=${rel.version}`,
    `berth_file=${rel.file}`,
    `berth_sha256=${rel.sha256}`,
    `berth_node_version=${rel.nodeVersion}`,
    `berth_node_abi=${rel.nodeAbi}`,
    `berth_signature=${signer.sign(releaseStatement(rel))}`,
  ];
}

/** The manifest lines offering a Node.js binary for linux-`arch` (its SHA-256 signed with `signer`). */
export function nodeManifestLines(node: { arch: string; nodeVersion: string; nodeAbi: string; sha256: string }, signer: Pick<ReleaseSigner, 'sign'>): string[] {
  return [
    `node_available=1`,
    `node_version=${node.nodeVersion}`,
    `node_abi=${node.nodeAbi}`,
    `node_sha256=${node.sha256}`,
    `node_signature=${signer.sign(nodeStatement(node))}`,
  ];
}

let nodeSha: { key: string; sha: string } | undefined;

/** SHA-256 of the node binary we run on (cached per path+size+mtime). */
function ownNodeSha256(): string {
  const st = statSync(process.execPath);
  const key = `${process.execPath}:${st.size}:${st.mtimeMs}`;
  if (nodeSha?.key !== key) nodeSha = { key, sha: createHash('sha256').update(readFileSync(process.execPath)).digest('hex') };
  return nodeSha.sha;
}

function canServeNode(arch: string): boolean {
  return process.platform === 'linux' && process.arch === arch && Number(process.versions.node.split('.')[0]) >= 20;
}

function text(c: Context, body: string, status: 200 | 400 | 404 = 200): Response {
  return c.body(body, status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
}

function sendFile(c: Context, file: string, type: string): Response {
  const size = statSync(file).size;
  const body = Readable.toWeb(createReadStream(file)) as unknown as ReadableStream;
  return c.body(body, 200, { 'Content-Type': type, 'Content-Length': String(size), 'Cache-Control': 'no-store' });
}

function archParam(c: Context): string | undefined {
  const arch = c.req.query('arch') ?? 'x64';
  return arch === 'x64' || arch === 'arm64' ? arch : undefined;
}

export function registerInstallRoutes(app: Hono, deps: ApiDeps & { releaseDir?: string }): void {
  const releaseDir = deps.releaseDir ?? defaultReleaseDir();
  const log = deps.logger.child({ component: 'install' });
  const signer = deps.releaseSigner;
  // Anyone can ask for a release we do not have: one warning a minute, not one per request.
  const noReleaseWarning = rateLimitedLog();

  app.get('/install.sh', (c) => {
    const file = join(PACKAGE_ROOT, 'install.sh');
    if (!existsSync(file)) return text(c, `echo "berth: this control plane has no install.sh (${file} is missing)" >&2; exit 1\n`, 404);
    const url = deps.url();
    // The URL goes into a single-quoted sh string: refuse anything that could break out of it.
    const safe = /^https?:\/\/[A-Za-z0-9.:\[\]_~%\/-]+$/.test(url) ? url : '';
    const script = readFileSync(file, 'utf8')
      .replace(/^BERTH_URL_BAKED=.*$/m, `BERTH_URL_BAKED='${safe}'`)
      // Releases come from us, never from a release host a copy of the script may have had baked in.
      .replace(/^BERTH_RELEASE_URL_BAKED=.*$/m, `BERTH_RELEASE_URL_BAKED=''`)
      .replace(/^BERTH_RELEASE_KEY_BAKED=.*$/m, `BERTH_RELEASE_KEY_BAKED='${signer.publicKeyBase64}'`);
    return c.body(script, 200, {
      'Content-Type': 'text/x-shellscript; charset=utf-8',
      'Cache-Control': 'no-store',
      [INSTALLER_SIGNATURE_HEADER]: signer.sign(script),
    });
  });

  app.get('/install/release.pub', (c) => text(c, signer.publicKeyPem));

  app.get('/install/manifest', (c) => {
    const arch = archParam(c);
    if (!arch) return text(c, 'error=unsupported architecture (x64 or arm64)\n', 400);
    const version = c.req.query('version');
    if (version !== undefined && !SAFE_VALUE.test(version)) return text(c, 'error=invalid version\n', 400);
    const all = listReleases(releaseDir, arch);
    const rel = pickRelease(all, version);
    const lines: string[] = [];
    if (rel) {
      lines.push(...releaseManifestLines(rel, signer));
    } else {
      noReleaseWarning((suppressed) =>
        log.warn({ releaseDir, arch, version, suppressed }, 'install manifest asked for, but no such release tarball is there (build one with `npm run build`)'),
      );
      lines.push(
        version !== undefined && all.length > 0
          ? `error=no berth release ${version} for linux-${arch} on this control plane (it has ${all.map((r) => r.version).join(', ')})`
          : `error=no berth release for linux-${arch} on this control plane (looked in ${releaseDir.replace(/[^A-Za-z0-9._\/-]/g, '_')}; run npm run build there)`,
      );
    }
    // Every version this control plane can serve, newest first (`berth upgrade --version V` picks one).
    lines.push(`berth_versions=${all.map((r) => r.version).join(',')}`);
    if (canServeNode(arch)) {
      lines.push(...nodeManifestLines({ arch, nodeVersion: process.version, nodeAbi: process.versions.modules, sha256: ownNodeSha256() }, signer));
    } else {
      lines.push('node_available=0');
    }
    return text(c, lines.join('\n') + '\n', rel ? 200 : 404);
  });

  app.get('/install/releases/:file', (c) => {
    const name = c.req.param('file');
    const m = RELEASE_FILE.exec(name);
    const file = join(releaseDir, name);
    if (!m || !existsSync(file)) return text(c, `no such release file: ${m ? name : '(invalid name)'}\n`, 404);
    return sendFile(c, file, m[3] === '.tar.gz' ? 'application/gzip' : m[3] === '.json' ? 'application/json' : 'text/plain; charset=utf-8');
  });

  app.get('/install/node', (c) => {
    const arch = archParam(c);
    if (!arch || !canServeNode(arch)) return text(c, `this control plane runs ${process.platform}-${process.arch} and cannot serve node for linux-${c.req.query('arch') ?? 'x64'}\n`, 404);
    return sendFile(c, process.execPath, 'application/octet-stream');
  });

  app.get('/install/node.sha256', (c) => {
    const arch = archParam(c);
    if (!arch || !canServeNode(arch)) return text(c, 'no node binary for this platform here\n', 404);
    return text(c, `${ownNodeSha256()}  node\n`);
  });
}
