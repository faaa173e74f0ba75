// `berth upgrade` end to end: three real release tarballs (the package's version, a newer one, and a
// newer one whose agent exits as it starts) served by a control plane on loopback; berth installed
// into a fresh Debian 12 container (host network, the host's Docker socket, no systemd: the agent runs
// in the background with a pid file) with the command `berth server add` prints; a sample app deployed
// through the installed agent and served by its nginx; then, under a bounded HTTP load on loopback:
// an upgrade to the newer release (zero failed requests, the new version reported and connected, and
// it deploys), and an upgrade to the broken one (the command fails clearly, `current` points back,
// the agent is connected again, zero failed requests).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { httpGet } from './helpers/http.js';
import {
  commitSampleApp,
  containerRun,
  containerSh,
  deploySampleApp,
  ensureInstallerImage,
  PACKAGE_VERSION,
  removeInstallerContainer,
  sampleVersion,
  serverConnected,
  startReleaseServer,
  startSampleLoad,
  finishSampleLoad,
  showRun,
  startInstallerContainer,
  asRoot,
} from './helpers/installer-image.js';
import { Stack } from './helpers/stack.js';
import { freePort } from './helpers/tmp.js';

/** PACKAGE_VERSION with its patch number raised by `by` (0.1.0 → 0.1.1): a newer release. */
function bump(version: string, by: number): string {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  assert.ok(m, `package version ${version}`);
  return `${m[1]}.${m[2]}.${Number(m[3]) + by}`;
}
const FIRST = PACKAGE_VERSION;
const NEXT = bump(PACKAGE_VERSION, 1);
const BROKEN = bump(PACKAGE_VERSION, 2);
const HANGS = bump(PACKAGE_VERSION, 3);
const esc = (s: string) => s.replace(/[.+]/g, '\\$&');

interface Status {
  agent: { running: boolean; version: string; pid: number | null };
  controlPlane: { state: string; url: string | null };
  apps: Array<{ name: string; health: string }>;
}

describe('berth upgrade', { timeout: 20 * 60_000 }, () => {
  let stack: Stack;
  let container = '';
  let httpPort = 0;
  let repo: TestRepo;
  let releaseDir = '';
  const suffix = Math.random().toString(36).slice(2, 8);
  const server = `upg-${suffix}`;
  const app = `upg-web-${suffix}`;
  const domain = `upg-${suffix}.example.test`;

  const status = async (): Promise<Status> => {
    const r = await containerRun(container, ['berth', 'status', '--json'], 60_000);
    assert.equal(r.code, 0, showRun(r));
    return JSON.parse(r.stdout) as Status;
  };
  const current = async () => (await containerRun(container, ['readlink', '/opt/berth/current'])).stdout.trim();
  const connectedOnControlPlane = () => serverConnected(stack.env, server);
  const startLoad = () => startSampleLoad(httpPort, domain);
  const finishLoad = finishSampleLoad;

  before(async () => {
    await ensureDocker();
    await Promise.all([ensureInstallerImage(), ensureBusyboxImage()]);
    ({ stack, releaseDir } = await startReleaseServer('upgrade', {
      next: NEXT,
      broken: [
        { version: BROKEN, how: 'exits' },
        { version: HANGS, how: 'hangs' },
      ],
    }));
    repo = new TestRepo(join(stack.root, 'repo'));
    httpPort = await freePort();
    // The Git remote is mounted at the same path: the agent in the container fetches the file:// URL.
    container = await startInstallerContainer('upgrade', httpPort, [repo.bare]);
  });

  after(async () => {
    if (container) await removeInstallerContainer(container, [server]);
    await stack?.destroy();
    if (releaseDir) rmSync(join(releaseDir, '..'), { recursive: true, force: true });
  });

  it(`installs ${FIRST} with the server add command, and a sample app deploys to it`, { timeout: 10 * 60_000 }, async () => {
    // The control plane offers its own version by default, though it has newer ones.
    const manifest = await (await fetch(`${stack.cpUrl}/install/manifest?arch=${process.arch}`)).text();
    assert.match(manifest, new RegExp(`^berth_version=${esc(FIRST)}$`, 'm'));
    assert.match(manifest, new RegExp(`^berth_versions=${[HANGS, BROKEN, NEXT, FIRST].map(esc).join(',')}$`, 'm'));
    const pinned = await (await fetch(`${stack.cpUrl}/install/manifest?arch=${process.arch}&version=${NEXT}`)).text();
    assert.match(pinned, new RegExp(`^berth_version=${esc(NEXT)}$`, 'm'));
    const missing = await fetch(`${stack.cpUrl}/install/manifest?arch=${process.arch}&version=9.9.9`);
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), new RegExp(`^error=no berth release 9\\.9\\.9 for linux-${process.arch} on this control plane \\(it has ${esc(HANGS)}, `, 'm'));
    assert.equal((await fetch(`${stack.cpUrl}/install/manifest?arch=${process.arch}&version=a%3Bb`)).status, 400);

    const added = await berthJson<{ installCommand: string }>(['server', 'add', server], stack.env);
    let started = Date.now();
    const r = await containerSh(container, asRoot(added.installCommand), 600_000);
    process.stderr.write(`# install took ${Date.now() - started} ms\n`);
    assert.equal(r.code, 0, showRun(r));
    assert.match(r.stdout, new RegExp(`berth ${esc(FIRST)} is installed: server "${server}" is enrolled`));
    assert.match(r.stdout, /check: +berth status/, 'the final message says how to check');
    const s = await status();
    assert.equal(s.agent.version, FIRST);
    assert.equal(s.controlPlane.state, 'connected');
    await connectedOnControlPlane();

    commitSampleApp(repo, 1);
    started = Date.now();
    const d = await deploySampleApp(stack.env, { app, server, domain, repo, create: true });
    process.stderr.write(`# first deploy through the installed agent took ${Date.now() - started} ms\n`);
    assert.equal(d.status, 'done');
    const res = await httpGet(httpPort, domain);
    assert.equal(res.status, 200);
    assert.equal(sampleVersion(res.body), '1');
    const app1 = (await status()).apps.find((a) => a.name === app);
    assert.equal(app1?.health, 'healthy');
  });

  it(`berth upgrade --version ${NEXT} switches current and restarts the agent while the app serves: zero failed requests`, { timeout: 5 * 60_000 }, async (t) => {
    const pidBefore = (await status()).agent.pid;
    const load = await startLoad();
    const started = Date.now();
    const r = await containerRun(container, ['berth', 'upgrade', '--version', NEXT], 300_000);
    t.diagnostic(`berth upgrade took ${Date.now() - started} ms`);
    assert.equal(r.code, 0, showRun(r));
    assert.match(r.stdout, new RegExp(`upgrading berth ${esc(FIRST)} to ${esc(NEXT)}`));
    assert.match(r.stdout, new RegExp(`==> unpack: into /opt/berth/releases/${esc(NEXT)}`));
    assert.match(r.stdout, new RegExp(`berth is upgraded from ${esc(FIRST)} to ${esc(NEXT)}: server "${server}" is connected`));
    await finishLoad(t, load, 'the upgrade');

    assert.equal(await current(), `releases/${NEXT}`);
    const s = await status();
    assert.equal(s.agent.version, NEXT);
    assert.equal(s.controlPlane.state, 'connected');
    assert.notEqual(s.agent.pid, pidBefore, 'a new agent process');
    await connectedOnControlPlane();
    const v = await containerRun(container, ['berth', '--version']);
    assert.equal(v.stdout.trim(), NEXT);

    // The upgraded agent deploys: a new commit goes live.
    commitSampleApp(repo, 2);
    const d = await deploySampleApp(stack.env, { app, server, domain, repo, create: false });
    assert.equal(d.status, 'done');
    assert.equal(sampleVersion((await httpGet(httpPort, domain)).body), '2');

    // Nothing newer than the installed release: a no-op that says so.
    const again = await containerRun(container, ['berth', 'upgrade', '--json'], 120_000);
    assert.equal(again.code, 0, showRun(again));
    assert.deepEqual(JSON.parse(again.stdout), { previousVersion: NEXT, version: NEXT, controlPlaneUrl: stack.cpUrl, changed: false });
    assert.match(again.stderr, new RegExp(`the control plane offers ${esc(FIRST)}, which is older: nothing to upgrade`));
  });

  it(`a broken ${BROKEN} is rolled back automatically: the command fails clearly, the agent is back on ${NEXT}, zero failed requests`, { timeout: 5 * 60_000 }, async (t) => {
    const load = await startLoad();
    const started = Date.now();
    const r = await containerRun(container, ['berth', 'upgrade', '--version', BROKEN], 300_000);
    t.diagnostic(`the failed upgrade and its rollback took ${Date.now() - started} ms`);
    assert.notEqual(r.code, 0, showRun(r));
    // The last line is the command's own one-line error.
    const last = r.stderr.trim().split('\n').pop();
    assert.equal(
      last,
      `berth: upgrade failed: step "agent" failed: berth ${BROKEN} did not start: its agent exited right after starting; rolled back to ${NEXT}, which is running and connected again`,
      showRun(r),
    );
    assert.match(r.stderr, /deliberately broken build/, "the failing agent's log is shown");
    assert.match(r.stdout, new RegExp(`switched /opt/berth/current back to releases/${esc(NEXT)}`));
    await finishLoad(t, load, 'the failed upgrade and its rollback');

    assert.equal(await current(), `releases/${NEXT}`);
    const s = await status();
    assert.equal(s.agent.version, NEXT);
    assert.equal(s.controlPlane.state, 'connected');
    await connectedOnControlPlane();
    assert.equal(sampleVersion((await httpGet(httpPort, domain)).body), '2');
    // The previous releases are kept for the next rollback; the broken one stays for inspection.
    const rels = (await containerRun(container, ['ls', '-1', '/opt/berth/releases'])).stdout.split('\n').filter(Boolean).sort();
    assert.deepEqual(rels, [FIRST, NEXT, BROKEN].sort());
  });

  it(`a ${HANGS} whose agent never connects is rolled back when --timeout runs out`, { timeout: 3 * 60_000 }, async () => {
    const r = await containerRun(container, ['berth', 'upgrade', '--version', HANGS, '--timeout', '5'], 180_000);
    assert.notEqual(r.code, 0, showRun(r));
    assert.equal(
      r.stderr.trim().split('\n').pop(),
      `berth: upgrade failed: step "agent" failed: berth ${HANGS} did not start: its agent did not connect to ${stack.cpUrl} within 5 s; rolled back to ${NEXT}, which is running and connected again`,
      showRun(r),
    );
    assert.equal(await current(), `releases/${NEXT}`);
    const s = await status();
    assert.deepEqual([s.agent.version, s.controlPlane.state], [NEXT, 'connected']);
    assert.equal(sampleVersion((await httpGet(httpPort, domain)).body), '2');
    // Exactly one agent process: the hanging one was stopped before the previous release started again.
    const agents = await containerSh(container, 'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f" 2>/dev/null; echo; done | grep -c "dist/cli/main.js agent $"');
    assert.equal(agents.stdout.trim(), '1', showRun(agents));
  });
});
