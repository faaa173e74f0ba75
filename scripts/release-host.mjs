#!/usr/bin/env node
// Turn a release directory (scripts/package.sh's tarballs, .sha256 and .json) into a static release host:
// a directory any web server serves as it is (GitHub Releases, an S3 bucket, nginx), from which
// `curl -fsSL RELEASE_URL/install.sh | sudo sh -s -- --all-in-one` installs berth with no control plane.
// Adds, next to the tarballs:
//
//   install.sh                           RELEASE_URL and the publisher's public key baked in
//   install.sh.sig                       Ed25519 signature of install.sh (base64)
//   berth-VERSION-linux-ARCH.manifest    the key=value lines a control plane serves at /install/manifest,
//                                        signed the same way (berth_signature: shared/release-signature.ts)
//   node-vX.Y.Z-linux-ARCH               this build's Node.js binary (signed in the manifests' node_* lines):
//                                        servers whose distribution ships an older Node.js take it from here
//   latest.json                          {"version": newest release, "versions": [...], ...}
//   release.pub                          the publisher's public key (PEM)
//   SHA256SUMS, SHA256SUMS.sig           every file's checksum, and its signature
//
// The signing key is the publisher's Ed25519 private key (PEM, PKCS#8): --signing-key FILE or
// BERTH_RELEASE_KEY=FILE (make one with `openssl genpkey -algorithm ed25519 -out release-key.pem`).
// Without one a throwaway key signs this build, with a warning: servers installed from it accept only
// releases signed by that key, which is gone once this exits.
//
//   node scripts/release-host.mjs [--out DIR] [--release-url URL] [--signing-key FILE] [--no-node]
import { createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_RELEASE_URL = 'https://releases.berth.dev';

function fail(message) {
  process.stderr.write(`release-host: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const opts = {
    out: join(ROOT, 'release'),
    releaseUrl: process.env.BERTH_RELEASE_URL || DEFAULT_RELEASE_URL,
    signingKey: process.env.BERTH_RELEASE_KEY || '',
    node: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => inline ?? argv[++i] ?? fail(`${flag} needs a value`);
    if (flag === '--out') opts.out = resolve(value());
    else if (flag === '--release-url') opts.releaseUrl = value();
    else if (flag === '--signing-key') opts.signingKey = value();
    else if (flag === '--no-node') opts.node = false;
    else fail(`unknown option ${flag} (use --out DIR, --release-url URL, --signing-key FILE, --no-node)`);
  }
  opts.releaseUrl = opts.releaseUrl.replace(/\/+$/, '');
  // It goes into a single-quoted sh string in install.sh: nothing that could break out of it.
  if (!/^https?:\/\/[A-Za-z0-9.:\[\]_~%\/-]+$/.test(opts.releaseUrl)) fail(`invalid --release-url "${opts.releaseUrl}" (http:// or https://, no quotes or spaces)`);
  return opts;
}

const dist = (path) => import(join(ROOT, 'dist', path));
const [{ listReleases, releaseManifestLines, nodeManifestLines, compareVersions }, { signerFromPrivateKey }] = await Promise.all([
  dist('control-plane/api/install.js'),
  dist('control-plane/release-signing.js'),
]).catch((err) => fail(`dist/ is missing or stale: run \`npx tsc -p .\` (or \`npm run build\`) first (${err.message})`));

function loadSigner(file) {
  if (!file) {
    process.stderr.write(
      'release-host: WARNING: no signing key given (--signing-key FILE or BERTH_RELEASE_KEY=FILE): this build is signed with a THROWAWAY key.\n' +
        'release-host: servers installed from it accept only releases signed with that key, which is not kept: fine to try things, not to publish.\n' +
        'release-host: make a key once with `openssl genpkey -algorithm ed25519 -out release-key.pem`, keep it secret, and build with BERTH_RELEASE_KEY=release-key.pem.\n',
    );
    return { signer: signerFromPrivateKey(generateKeyPairSync('ed25519').privateKey), throwaway: true };
  }
  let key;
  try {
    key = createPrivateKey(readFileSync(file, 'utf8'));
  } catch (err) {
    fail(`cannot read the signing key ${file}: ${err.message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') fail(`${file} holds a ${key.asymmetricKeyType} key, not Ed25519`);
  return { signer: signerFromPrivateKey(key), throwaway: false };
}

const sha256File = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Write atomically (a server reading the directory while it is rebuilt sees the old file or the new one). */
function put(dir, name, content, mode = 0o644) {
  writeFileSync(join(dir, `.${name}.tmp`), content, { mode });
  renameSync(join(dir, `.${name}.tmp`), join(dir, name));
}

/** This build's Node.js binary, copied into the release host when it can run on the servers (linux, >= 20). */
function publishNode(out, arch) {
  if (process.platform !== 'linux' || process.arch !== arch || Number(process.versions.node.split('.')[0]) < 20) return undefined;
  const file = `node-${process.version}-linux-${arch}`;
  const target = join(out, file);
  const sha256 = sha256File(process.execPath);
  if (!existsSync(target) || sha256File(target) !== sha256) {
    copyFileSync(process.execPath, join(out, `.${file}.tmp`));
    renameSync(join(out, `.${file}.tmp`), target);
  }
  return { arch, file, nodeVersion: process.version, nodeAbi: process.versions.modules, sha256 };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!existsSync(opts.out)) fail(`${opts.out} does not exist: run scripts/package.sh (or npm run build) first`);
  const { signer, throwaway } = loadSigner(opts.signingKey);
  const releases = ['x64', 'arm64'].flatMap((arch) => listReleases(opts.out, arch));
  if (releases.length === 0) fail(`no release tarball in ${opts.out}: run scripts/package.sh first`);

  // One manifest per release (stale ones of releases no longer here are removed).
  for (const name of readdirSync(opts.out)) if (/^berth-.*\.manifest$/.test(name)) rmSync(join(opts.out, name));
  const nodes = new Map();
  for (const rel of releases) {
    if (opts.node && !nodes.has(rel.arch)) nodes.set(rel.arch, publishNode(opts.out, rel.arch));
    const node = nodes.get(rel.arch);
    const lines = [...releaseManifestLines(rel, signer)];
    if (node) lines.push(...nodeManifestLines(node, signer), `node_file=${node.file}`);
    else lines.push('node_available=0');
    put(opts.out, `berth-${rel.version}-linux-${rel.arch}.manifest`, lines.join('\n') + '\n');
  }
  // Node.js binaries of earlier builds that no manifest names any more.
  const named = new Set([...nodes.values()].filter(Boolean).map((n) => n.file));
  for (const name of readdirSync(opts.out)) if (/^node-v[0-9.]+-linux-(x64|arm64)$/.test(name) && !named.has(name)) rmSync(join(opts.out, name));

  const versions = [...new Set(releases.map((r) => r.version))].sort((a, b) => compareVersions(b, a));
  const latest = {
    version: versions[0],
    versions,
    releases: releases.map((r) => ({ version: r.version, arch: r.arch, file: r.file, sha256: r.sha256, manifest: `berth-${r.version}-linux-${r.arch}.manifest` })),
  };
  // One key per line: install.sh reads "version" with sed, before any Node.js is there.
  put(opts.out, 'latest.json', `{\n  "version": ${JSON.stringify(latest.version)},\n  "versions": ${JSON.stringify(latest.versions)},\n  "releases": ${JSON.stringify(latest.releases)}\n}\n`);

  const script = readFileSync(join(ROOT, 'install.sh'), 'utf8')
    .replace(/^BERTH_URL_BAKED=.*$/m, `BERTH_URL_BAKED=''`)
    .replace(/^BERTH_RELEASE_URL_BAKED=.*$/m, `BERTH_RELEASE_URL_BAKED='${opts.releaseUrl}'`)
    .replace(/^BERTH_RELEASE_KEY_BAKED=.*$/m, `BERTH_RELEASE_KEY_BAKED='${signer.publicKeyBase64}'`);
  if (!script.includes(`BERTH_RELEASE_KEY_BAKED='${signer.publicKeyBase64}'`)) fail('install.sh has no BERTH_RELEASE_KEY_BAKED line to fill in');
  put(opts.out, 'install.sh', script, 0o755);
  put(opts.out, 'install.sh.sig', signer.sign(script) + '\n');
  put(opts.out, 'release.pub', signer.publicKeyPem);

  const listed = readdirSync(opts.out)
    .filter((n) => !n.startsWith('.') && n !== 'SHA256SUMS' && n !== 'SHA256SUMS.sig' && statSync(join(opts.out, n)).isFile())
    .sort();
  const sums = listed.map((n) => `${sha256File(join(opts.out, n))}  ${n}\n`).join('');
  put(opts.out, 'SHA256SUMS', sums);
  put(opts.out, 'SHA256SUMS.sig', signer.sign(sums) + '\n');

  process.stdout.write(
    `release host ready in ${opts.out}: install.sh for ${opts.releaseUrl}, latest ${latest.version}, ` +
      `${releases.length} release(s), ${named.size} Node.js binar${named.size === 1 ? 'y' : 'ies'}, key ${signer.publicKeyBase64}${throwaway ? ' (THROWAWAY)' : ''}\n` +
      `upload every file in it to ${opts.releaseUrl}/ ; then: curl -fsSL ${opts.releaseUrl}/install.sh | sudo sh -s -- --all-in-one\n`,
  );
}

main();
