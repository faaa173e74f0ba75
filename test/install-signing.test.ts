// Signed releases and tokens kept off command lines, end to end: install.sh and `berth upgrade` in a
// Debian 12 container against a real control plane serving a real release (scripts/package.sh), with
// a man in the middle (test/helpers/tamper-proxy.ts) that swaps the tarball and its checksum, forges a
// signature with another key, or holds the join request so the processes can be looked at meanwhile;
// and a second control plane (another key) that an upgrade is pointed at.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { releaseStatement } from '../shared/release-signature.js';
import { berthJson } from './helpers/cli.js';
import { ensureDocker } from './helpers/docker.js';
import {
  containerRun,
  containerSh as sh,
  ensureInstallerImage,
  PACKAGE_VERSION as VERSION,
  removeInstallerContainer,
  type Run,
  serverConnected,
  showRun as show,
  startInstallerContainer,
  startReleaseServer,
} from './helpers/installer-image.js';
import { Stack } from './helpers/stack.js';
import { setManifestField, TamperProxy } from './helpers/tamper-proxy.js';
import { freePort } from './helpers/tmp.js';

/**
 * LINE typed into a shell in the container: read from stdin like an interactive shell reads it, so the
 * line itself is on no command line (unlike `sh -c LINE`) and only what it runs can show there.
 */
function typeIntoShell(container: string, line: string, timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn('docker', ['exec', '-i', container, 'sh'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.end(`${line}\n`);
  });
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const field = (manifest: string, key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(manifest)?.[1] ?? '';
// Every process's command line in the container, one per line (NULs as spaces).
const CMDLINES = 'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f" 2>/dev/null; echo; done';

describe('signed releases and tokens off the command line (install.sh, berth upgrade)', { timeout: 20 * 60_000 }, () => {
  let stack: Stack;
  let other: Stack;
  let releaseDir: string;
  let container = '';
  const server = `sig-${Math.random().toString(36).slice(2, 8)}`;
  const proxies: TamperProxy[] = [];

  /** A proxy in front of the control plane that hands out a different tarball and the manifest naming its checksum. */
  async function swappingProxy(): Promise<TamperProxy> {
    const tampered = Buffer.concat([readFileSync(join(releaseDir, `berth-${VERSION}-linux-${process.arch}.tar.gz`)), Buffer.from('tampered')]);
    const sha = createHash('sha256').update(tampered).digest('hex');
    const p = await TamperProxy.start(stack.cpUrl, {
      rewrite: (path, body) => {
        if (path.startsWith('/install/manifest')) return Buffer.from(setManifestField(body.toString(), 'berth_sha256', sha));
        if (path.startsWith('/install/releases/') && path.endsWith('.tar.gz')) return tampered;
        return undefined;
      },
    });
    proxies.push(p);
    return p;
  }

  before(async () => {
    await ensureDocker();
    await ensureInstallerImage();
    ({ stack, releaseDir } = await startReleaseServer('signing'));
    // Another control plane serving the same releases with its own key (its own data dir).
    other = await Stack.create('signing-other');
    await other.startControlPlane();
    container = await startInstallerContainer('signing', await freePort());
    // sudo, so the install line runs exactly as printed (sudo handing the token on through its environment).
    const sudo = await sh(container, 'DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo >/dev/null', 300_000);
    assert.equal(sudo.code, 0, show(sudo));
  });

  after(async () => {
    for (const p of proxies) await p.close();
    if (container) await removeInstallerContainer(container, [server]);
    await other?.destroy();
    await stack?.destroy();
  });

  it('refuses a swapped tarball, or a release signed with another key, before unpacking anything', async () => {
    const fetchInstaller = await sh(container, `curl -fsSL ${stack.cpUrl}/install.sh -o /tmp/install.sh`);
    assert.equal(fetchInstaller.code, 0, show(fetchInstaller));
    const refused = new RegExp(
      `step "control plane" failed: berth ${esc(VERSION)} from http://127\\.0\\.0\\.1:\\d+ is not signed by the control plane's release key baked into this installer: refusing to install it; nothing was unpacked or changed`,
    );
    const nothingInstalled = async () => {
      const r = await sh(container, 'ls -A /opt/berth/releases 2>/dev/null; test ! -e /opt/berth/current && test ! -e /etc/berth/release.pub && echo clean');
      assert.equal(r.stdout.trim(), 'clean', `nothing unpacked, activated or pinned: ${show(r)}`);
    };

    const swap = await swappingProxy();
    let r = await sh(container, `BERTH_JOIN_TOKEN=unused sh /tmp/install.sh --url ${swap.url} --name ${server}`);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, refused, show(r));
    assert.match(r.stderr, /altered on the way, or the control plane's release key changed/);
    await nothingInstalled();

    // The right tarball and checksum, but a signature made with another key.
    const forger = generateKeyPairSync('ed25519').privateKey;
    const forge = await TamperProxy.start(stack.cpUrl, {
      rewrite: (path, body) => {
        if (!path.startsWith('/install/manifest')) return undefined;
        const m = body.toString();
        const statement = releaseStatement({ file: field(m, 'berth_file'), sha256: field(m, 'berth_sha256'), version: field(m, 'berth_version'), nodeAbi: field(m, 'berth_node_abi') });
        return Buffer.from(setManifestField(m, 'berth_signature', sign(null, Buffer.from(statement), forger).toString('base64')));
      },
    });
    proxies.push(forge);
    r = await sh(container, `BERTH_JOIN_TOKEN=unused sh /tmp/install.sh --url ${forge.url} --name ${server}`);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, refused, show(r));
    await nothingInstalled();
  });

  it('installs with the printed line: the join token is on no command line, and the release key is pinned', { timeout: 12 * 60_000 }, async () => {
    const added = await berthJson<{ joinToken: string; installCommand: string }>(['server', 'add', server], stack.env);
    // Hold the join request until every process in the container has been looked at.
    let arrived!: () => void;
    const joinArrived = new Promise<void>((r) => (arrived = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const watcher = await TamperProxy.start(stack.cpUrl, {
      hold: async (path) => {
        if (!path.startsWith('/api/agent/join')) return;
        arrived();
        await released;
      },
    });
    proxies.push(watcher);
    // As printed, plus --url: through the proxy holding the join.
    const install = typeIntoShell(container, `${added.installCommand} --url ${watcher.url}`, 600_000);
    await Promise.race([joinArrived, install.then((r) => assert.fail(`the install ended before joining: ${show(r)}`))]);
    const seen = await sh(container, CMDLINES);
    release();
    const r = await install;
    assert.equal(r.code, 0, show(r));

    const cmdlines = seen.stdout.split('\n').filter(Boolean);
    assert.ok(cmdlines.some((c) => /dist\/cli\/main\.js agent join /.test(c)), `the join was running when looked at:\n${cmdlines.join('\n')}`);
    assert.ok(cmdlines.some((c) => c.startsWith('sudo --preserve-env=BERTH_JOIN_TOKEN sh -s -- --name')), 'the installer runs under sudo as printed');
    assert.deepEqual(cmdlines.filter((c) => c.includes(added.joinToken)), [], 'no command line holds the join token');
    assert.match(r.stdout, /release signature checked \(the control plane's release key baked into this installer\)/);
    assert.match(r.stdout, /pinned the control plane's release key in \/etc\/berth\/release\.pub/);
    const pinned = await sh(container, 'cat /etc/berth/release.pub');
    assert.equal(pinned.stdout, readFileSync(join(stack.cpData, 'release-key.pub'), 'utf8'));
    await serverConnected(stack.env, server);
  });

  it('berth upgrade refuses a control plane with another key and a swapped release; the pinned key still upgrades', { timeout: 8 * 60_000 }, async () => {
    const current = async () => (await sh(container, 'readlink /opt/berth/current')).stdout.trim();
    assert.equal(await current(), `releases/${VERSION}`);

    let r = await containerRun(container, ['berth', 'upgrade', '--url', other.cpUrl], 120_000);
    assert.notEqual(r.code, 0, show(r));
    assert.match(
      r.stderr,
      new RegExp(`^berth: the installer from ${esc(other.cpUrl)} is not signed by the release key this server pinned at install \\(/etc/berth/release\\.pub\\): refusing to run it`, 'm'),
      show(r),
    );
    assert.equal(await current(), `releases/${VERSION}`);

    // The installer passes through untouched (validly signed); the release it is offered does not.
    const swap = await swappingProxy();
    r = await containerRun(container, ['berth', 'upgrade', '--url', swap.url], 120_000);
    assert.notEqual(r.code, 0, show(r));
    assert.match(
      r.stderr,
      new RegExp(`upgrade failed: step "control plane" failed: berth ${esc(VERSION)} from ${esc(swap.url)} is not signed by the release key this server pinned at install \\(/etc/berth/release\\.pub\\)`),
      show(r),
    );
    assert.equal(await current(), `releases/${VERSION}`);

    // The control plane it was installed from (same key) is accepted.
    r = await containerRun(container, ['berth', 'upgrade', '--url', stack.cpUrl, '--json'], 180_000);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stderr, /release signature checked \(the release key this server pinned at install/);
  });
});
