// A bare server to a running berth from a static release host, no berth control plane involved: this
// checkout packaged (scripts/package.sh) and turned into a release host (scripts/release-host.mjs, with a
// publisher key made here), served by a plain static file server (test/helpers/static-server.ts) on the
// test's network, and installed with `install.sh --all-in-one` into a fresh Debian 12 container with
// systemd as PID 1 (the installer test bed: host network, the host's Docker engine, a private nginx on a
// free port). Checks: a swapped tarball, a tarball whose checksum was changed to match, and a forged
// signature are refused before anything is unpacked (nothing under the install paths changes); the real
// release installs, ends with the control plane URL, the dashboard and where the admin token is, deploys
// a sample app end to end; the local control plane serves later agents' installs from its own copy;
// re-running the line changes nothing; a plain agent (a second container, no systemd) installs from the
// release host with --url of that control plane and connects to it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { releaseStatement } from '../shared/release-signature.js';
import { berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { httpGet } from './helpers/http.js';
import {
  buildReleaseHost,
  commitSampleApp,
  containerRun,
  containerSh,
  deploySampleApp,
  ensureSystemdInstallerImage,
  packageRelease,
  PACKAGE_VERSION as VERSION,
  removeInstallerContainer,
  sampleVersion,
  serverConnected,
  showRun,
  startInstallerContainer,
} from './helpers/installer-image.js';
import { setManifestField } from './helpers/tamper-proxy.js';
import { StaticServer } from './helpers/static-server.js';
import { freePort, makeTmpDir } from './helpers/tmp.js';

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const field = (manifest: string, key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(manifest)?.[1] ?? '';
/** Where the test's Git remote is mounted in the container (outside /tmp: the agent unit has PrivateTmp=). */
const REMOTE = '/srv/berth-test/remote.git';
/** Everything the installer writes, listed with sizes and times (a directory created and removed again changes its parent's). */
const INSTALL_PATHS = '/opt /etc/berth /etc/systemd/system /usr/local/bin /var/lib/berth /var/lib/berth-control-plane';
const SNAPSHOT = `ls -laR --time-style=full-iso ${INSTALL_PATHS} 2>&1; cat /etc/berth/* 2>&1`;

describe('install.sh from a static release host (no control plane): --all-in-one under systemd', { timeout: 15 * 60_000 }, () => {
  let tmp = '';
  let host: StaticServer;
  let container = '';
  let agentContainer = '';
  let repo: TestRepo;
  let httpPort = 0;
  let goodUrl = '';
  let publisherPem = '';
  const suffix = Math.random().toString(36).slice(2, 8);
  const name = `rh-${suffix}`;
  const app = `rh-web-${suffix}`;
  const domain = `rh-${suffix}.example.test`;
  let cpPort = 0;
  let local = '';
  let installLine = '';
  let env: Record<string, string> = {};
  let joinToken = '';

  /** `www/NAME`: the good release host with `changes` (file → new content) and links to every other file. */
  function variant(www: string, variantName: string, changes: Record<string, Buffer | string>): string {
    const dir = join(www, variantName);
    mkdirSync(dir);
    for (const f of readdirSync(join(www, 'good'))) {
      if (f in changes) writeFileSync(join(dir, f), changes[f]!);
      else symlinkSync(join(www, 'good', f), join(dir, f));
    }
    return `${host.url}/${variantName}`;
  }

  before(async () => {
    await ensureDocker();
    await Promise.all([ensureSystemdInstallerImage(), ensureBusyboxImage()]);
    tmp = makeTmpDir('release-host-test');
    const www = join(tmp, 'www');
    const good = join(www, 'good');
    mkdirSync(good, { recursive: true });
    host = await StaticServer.start(www);
    goodUrl = `${host.url}/good`;
    // The publisher's signing key: a file given to the build.
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const keyFile = join(tmp, 'publisher-key.pem');
    writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    publisherPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const started = Date.now();
    await packageRelease(good);
    await buildReleaseHost(good, goodUrl, keyFile);
    process.stderr.write(`# packaged and built the release host in ${Date.now() - started} ms\n`);

    repo = new TestRepo(join(tmp, 'repo'));
    httpPort = await freePort();
    container = await startInstallerContainer('release-host', httpPort, [`${repo.bare}:${REMOTE}`], { systemd: true });
    cpPort = await freePort();
    local = `http://127.0.0.1:${cpPort}`;
    installLine = `curl -fsSL ${goodUrl}/install.sh | sh -s -- --all-in-one --listen 127.0.0.1:${cpPort} --public-url ${local} --name ${name}`;
  });

  after(async () => {
    if (agentContainer) await removeInstallerContainer(agentContainer, [`${name}-2`]);
    if (container) await removeInstallerContainer(container, [name]);
    await host?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the release host is plain files: install.sh with its URL and the publisher key baked in, latest.json, a signed manifest, checksums', async () => {
    const files = readdirSync(join(tmp, 'www/good')).sort();
    const tarball = `berth-${VERSION}-linux-${process.arch}.tar.gz`;
    for (const f of ['install.sh', 'install.sh.sig', 'latest.json', 'release.pub', 'SHA256SUMS', 'SHA256SUMS.sig', tarball, `${tarball}.sha256`, `berth-${VERSION}-linux-${process.arch}.manifest`]) {
      assert.ok(files.includes(f), `${f} in ${files.join(' ')}`);
    }
    const script = await (await fetch(`${goodUrl}/install.sh`)).text();
    const keyB64 = publisherPem.replace(/-----[A-Z ]+-----|\s/g, '');
    assert.match(script, new RegExp(`^BERTH_RELEASE_URL_BAKED='${esc(goodUrl)}'$`, 'm'));
    assert.match(script, new RegExp(`^BERTH_RELEASE_KEY_BAKED='${esc(keyB64)}'$`, 'm'));
    assert.match(script, /^BERTH_URL_BAKED=''$/m);
    assert.equal(JSON.parse(await (await fetch(`${goodUrl}/latest.json`)).text()).version, VERSION);
    assert.equal(await (await fetch(`${goodUrl}/release.pub`)).text(), publisherPem);
    // The manifest's release signature is the control plane's format, made with the publisher key.
    const manifest = await (await fetch(`${goodUrl}/berth-${VERSION}-linux-${process.arch}.manifest`)).text();
    const sums = readFileSync(join(tmp, 'www/good/SHA256SUMS'), 'utf8');
    const tarSha = createHash('sha256').update(readFileSync(join(tmp, 'www/good', tarball))).digest('hex');
    assert.equal(field(manifest, 'berth_sha256'), tarSha);
    assert.match(sums, new RegExp(`^${tarSha}  ${esc(tarball)}$`, 'm'));
    assert.match(manifest, /^node_file=node-v\d+\.\d+\.\d+-linux-(x64|arm64)$/m);
  });

  it('refuses a swapped tarball, a checksum changed to match it, and a forged signature before anything is unpacked', async () => {
    const www = join(tmp, 'www');
    const manifestName = `berth-${VERSION}-linux-${process.arch}.manifest`;
    const tarball = `berth-${VERSION}-linux-${process.arch}.tar.gz`;
    const manifest = readFileSync(join(www, 'good', manifestName), 'utf8');
    const swapped = Buffer.concat([readFileSync(join(www, 'good', tarball)), Buffer.from('tampered')]);
    const swappedSha = createHash('sha256').update(swapped).digest('hex');
    const forger = generateKeyPairSync('ed25519').privateKey;
    const forged = sign(null, Buffer.from(releaseStatement({ file: tarball, sha256: field(manifest, 'berth_sha256'), version: VERSION, nodeAbi: field(manifest, 'berth_node_abi') })), forger).toString('base64');
    const notSigned = new RegExp(`step "release host" failed: berth ${esc(VERSION)} from http://127\\.0\\.0\\.1:\\d+/[a-z-]+ is not signed by the publisher's release key baked into this installer: refusing to install it; nothing was unpacked or changed`);
    const cases = [
      { label: 'a swapped tarball', url: variant(www, 'swapped-tarball', { [tarball]: swapped }), refused: /step "download" failed: checksum mismatch for berth-.*\.tar\.gz/ },
      { label: 'a swapped tarball and its checksum', url: variant(www, 'swapped-checksum', { [tarball]: swapped, [manifestName]: setManifestField(manifest, 'berth_sha256', swappedSha) }), refused: notSigned },
      { label: 'a forged signature', url: variant(www, 'forged-signature', { [manifestName]: setManifestField(manifest, 'berth_signature', forged) }), refused: notSigned },
    ];
    const before = await containerSh(container, SNAPSHOT);
    assert.match(before.stdout, /No such file or directory/, 'nothing installed yet');
    for (const c of cases) {
      const seen = host.requests.length;
      const r = await containerSh(container, `${installLine} --release-url ${c.url}`, 300_000);
      assert.notEqual(r.code, 0, `${c.label}: ${showRun(r)}`);
      assert.match(r.stderr, c.refused, `${c.label}: ${showRun(r)}`);
      if (c.refused === notSigned) {
        assert.match(r.stderr, /altered on the way, or the publisher's release key changed\. If you moved to a new release host on purpose, compare its key \(http:\/\/127\.0\.0\.1:\d+\/[a-z-]+\/release\.pub\) out of band/, c.label);
      }
      assert.doesNotMatch(r.stdout, /==> unpack/, c.label);
      assert.equal((await containerSh(container, SNAPSHOT)).stdout, before.stdout, `${c.label}: nothing under ${INSTALL_PATHS} changed`);
      // The release came from the variant (not from the baked URL).
      assert.ok(host.requests.slice(seen).some((p) => p.startsWith(new URL(c.url).pathname + '/berth-')), `${c.label}: ${host.requests.slice(seen).join(' ')}`);
    }
  });

  it('installs --all-in-one from the release host: both units run, it prints the control plane URL, dashboard and admin token location, and a sample app deploys', { timeout: 10 * 60_000 }, async (t) => {
    const started = Date.now();
    const r = await containerSh(container, installLine, 600_000);
    t.diagnostic(`all-in-one install from the static release host took ${Date.now() - started} ms`);
    assert.equal(r.code, 0, showRun(r));
    assert.match(r.stdout, new RegExp(`==> release host: contacting ${esc(goodUrl)}`));
    assert.match(r.stdout, /release signature checked \(the publisher's release key baked into this installer\)/);
    assert.match(r.stdout, /using Node\.js v\d+\.\d+\.\d+ from the release host/, 'Debian 12 ships Node.js 18: the release host offers one');
    assert.match(r.stdout, /pinned the publisher's release key in \/etc\/berth\/release\.pub/);
    assert.match(r.stdout, /restarted berth-control-plane\.service/);
    assert.match(r.stdout, /restarted berth-agent\.service/);
    assert.match(r.stdout, new RegExp(`berth ${esc(VERSION)} is installed: server "${name}" is enrolled with ${esc(local)}`));
    assert.match(r.stdout, new RegExp(`^berth: control plane: ${esc(local)} \\(admin token in /var/lib/berth-control-plane/admin-token\\)$`, 'm'));
    assert.match(r.stdout, new RegExp(`^berth:   dashboard: ${esc(local)}/ui `, 'm'));
    const token = (await containerRun(container, ['cat', '/var/lib/berth-control-plane/admin-token'])).stdout.trim();
    assert.match(r.stdout, new RegExp(`berth login ${esc(local)} ${esc(token)}$`, 'm'));
    // No berth control plane was asked for anything: only the release host's files.
    assert.deepEqual(host.requests.filter((p) => p.startsWith('/good/') && /\/(healthz|install\/)/.test(p)), []);
    // It trusts the publisher's key and its own control plane's (which signs what it serves to the next servers).
    const pinned = (await containerRun(container, ['cat', '/etc/berth/release.pub'])).stdout;
    const ownKey = await (await fetch(`${local}/install/release.pub`)).text();
    assert.equal(pinned, publisherPem + ownKey);
    assert.equal((await fetch(`${local}/ui`)).status < 400, true, 'the dashboard answers');

    env = { BERTH_URL: local, BERTH_TOKEN: token, XDG_CONFIG_HOME: join(tmp, 'client') };
    assert.deepEqual((await serverConnected(env, name)).map((s) => s.name), [name]);
    commitSampleApp(repo, 1);
    const deployStarted = Date.now();
    const d = await deploySampleApp(env, { app, server: name, domain, repo, repoUrl: `file://${REMOTE}`, create: true });
    t.diagnostic(`first deploy took ${Date.now() - deployStarted} ms`);
    assert.equal(d.status, 'done');
    const res = await httpGet(httpPort, domain);
    assert.equal(res.status, 200);
    assert.equal(sampleVersion(res.body), '1');

    // A control plane started this way serves later agents' installs from its own copy of the release.
    const manifest = await (await fetch(`${local}/install/manifest?arch=${process.arch}`)).text();
    assert.match(manifest, new RegExp(`^berth_version=${esc(VERSION)}$`, 'm'));
    const served = await (await fetch(`${local}/install.sh`)).text();
    assert.match(served, new RegExp(`^BERTH_URL_BAKED='${esc(local)}'$`, 'm'));
    assert.match(served, /^BERTH_RELEASE_URL_BAKED=''$/m);
    const added = await berthJson<{ installCommand: string; joinToken: string }>(['server', 'add', `${name}-2`], env);
    joinToken = added.joinToken;
    assert.match(added.installCommand, new RegExp(`^curl -fsSL ${esc(local)}/install\\.sh \\| BERTH_JOIN_TOKEN=`));
  });

  it('re-running the line changes nothing: same release, same processes, one server', { timeout: 5 * 60_000 }, async () => {
    const state = async () =>
      (await containerSh(container, [
        'readlink /opt/berth/current /opt/berth/bin/node',
        'ls -1 /opt/berth/releases',
        'systemctl show -p MainPID --value berth-agent.service berth-control-plane.service',
        'md5sum /etc/berth/* /usr/local/bin/berth /var/lib/berth/agent.json /etc/systemd/system/berth-*.service | cut -c1-32',
      ].join(' && '))).stdout;
    const before = await state();
    const r = await containerSh(container, installLine, 300_000);
    assert.equal(r.code, 0, showRun(r));
    assert.match(r.stdout, /already unpacked/);
    assert.match(r.stdout, new RegExp(`already enrolled as server "${name}"`));
    assert.doesNotMatch(r.stdout, /restarted berth-/);
    assert.equal(await state(), before);
    assert.equal(sampleVersion((await httpGet(httpPort, domain)).body), '1');
    const servers = await berthJson<Array<{ name: string }>>(['server', 'ls'], env);
    assert.deepEqual(servers.map((s) => s.name).sort(), [name, `${name}-2`].sort(), 'no second enrolment');
  });

  it('a plain agent from the release host (--url CONTROL_PLANE): the release from the host, enrolled with that control plane', { timeout: 5 * 60_000 }, async (t) => {
    // A second, plain container (no systemd: the agent runs in the background) joining the all-in-one control plane above.
    agentContainer = await startInstallerContainer('release-host-agent', await freePort());
    const started = Date.now();
    const r = await containerSh(agentContainer, `curl -fsSL ${goodUrl}/install.sh | BERTH_JOIN_TOKEN=${joinToken} sh -s -- --url ${local} --name ${name}-2`, 600_000);
    t.diagnostic(`plain agent install from the static release host took ${Date.now() - started} ms`);
    assert.equal(r.code, 0, showRun(r));
    assert.match(r.stdout, new RegExp(`==> release host: contacting ${esc(goodUrl)}`));
    assert.match(r.stdout, /release signature checked \(the publisher's release key baked into this installer\)/);
    assert.match(r.stdout, /pinned the publisher's release key in \/etc\/berth\/release\.pub/);
    assert.match(r.stdout, new RegExp(`berth ${esc(VERSION)} is installed: server "${name}-2" is enrolled with ${esc(local)}`));
    assert.equal((await containerRun(agentContainer, ['cat', '/etc/berth/release.pub'])).stdout, publisherPem);
    const servers = await serverConnected(env, `${name}-2`);
    assert.deepEqual(servers.filter((s) => s.connected).map((s) => s.name).sort(), [name, `${name}-2`].sort());
  });
});
