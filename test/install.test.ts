// install.sh end to end: a real release tarball (scripts/package.sh) served by a real control plane on
// loopback, installed into fresh Debian 12 containers (debootstrap image, host network, the host's Docker
// socket mounted). The container has no systemd as PID 1, so the agent runs in the background with a pid
// file; its nginx is a private one on a free port (pre-seeded /etc/berth/agent.env) so nothing binds :80.
// Upgrades and rollback of an agent are test/upgrade.test.ts; the all-in-one upgrade is here.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import {
  commitSampleApp,
  containerRun,
  containerSh as sh,
  deploySampleApp,
  ensureInstallerImage,
  PACKAGE_VERSION as VERSION,
  removeInstallerContainer,
  sampleVersion,
  serverConnected,
  startReleaseServer,
  startSampleLoad,
  finishSampleLoad,
  showRun as show,
  startInstallerContainer,
  asRoot,
} from './helpers/installer-image.js';
import { Stack } from './helpers/stack.js';
import { freePort, makeTmpDir } from './helpers/tmp.js';

const execFileP = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** A newer release for the all-in-one upgrade. */
const NEXT = VERSION.replace(/^(\d+\.\d+\.)(\d+)/, (_m, head: string, patch: string) => `${head}${Number(patch) + 1}`);

// How many processes run `node …/dist/cli/main.js agent` (the shell running this is not one of them).
const AGENT_COUNT =
  'n=0; for f in /proc/[0-9]*/cmdline; do c=$(tr "\\0" " " < "$f" 2>/dev/null) || continue; case "$c" in *node\\ */dist/cli/main.js\\ agent\\ ) n=$((n+1));; esac; done; echo $n';


describe('install.sh', { timeout: 20 * 60_000 }, () => {
  let stack: Stack;
  /** Test containers and the server names their agents used (for cleaning up what those made in Docker). */
  const containers: Array<{ name: string; servers: string[] }> = [];
  let releaseDir: string;

  async function newContainer(label: string, httpPort: number, mounts: string[] = [], servers: string[] = []): Promise<string> {
    const name = await startInstallerContainer(label, httpPort, mounts);
    containers.push({ name, servers });
    return name;
  }

  before(async () => {
    await ensureDocker();
    await Promise.all([ensureInstallerImage(), ensureBusyboxImage()]);
    ({ stack, releaseDir } = await startReleaseServer('install', { next: NEXT }));
  });

  after(async () => {
    for (const c of containers) await removeInstallerContainer(c.name, c.servers);
    if (releaseDir) rmSync(join(releaseDir, '..'), { recursive: true, force: true });
    await stack?.destroy();
  });

  it('packages a tarball with a checksum, and the control plane serves it with install.sh', async () => {
    const arch = process.arch;
    const file = `berth-${VERSION}-linux-${arch}.tar.gz`;
    const sum = readFileSync(join(releaseDir, `${file}.sha256`), 'utf8');
    assert.match(sum, new RegExp(`^[0-9a-f]{64}  ${file.replace(/\./g, '\\.')}\n$`));
    const script = await (await fetch(`${stack.cpUrl}/install.sh`)).text();
    assert.match(script, new RegExp(`^BERTH_URL_BAKED='${stack.cpUrl.replace(/[.]/g, '\\.')}'$`, 'm'));
    assert.match(script, /^set -eu$/m);
    const manifest = await (await fetch(`${stack.cpUrl}/install/manifest?arch=${arch}`)).text();
    assert.match(manifest, new RegExp(`^berth_file=${file.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(manifest, new RegExp(`^berth_sha256=${sum.slice(0, 64)}$`, 'm'));
    assert.match(manifest, /^node_available=1$/m);
    const tarball = await fetch(`${stack.cpUrl}/install/releases/${file}`);
    assert.equal(tarball.status, 200);
    const { createHash } = await import('node:crypto');
    assert.equal(createHash('sha256').update(Buffer.from(await tarball.arrayBuffer())).digest('hex'), sum.slice(0, 64));
    assert.equal((await fetch(`${stack.cpUrl}/install/releases/..%2Fadmin-token`)).status, 404);
    assert.equal((await fetch(`${stack.cpUrl}/install/manifest?arch=mips`)).status, 400);
    const nodeSum = await (await fetch(`${stack.cpUrl}/install/node.sha256?arch=${arch}`)).text();
    assert.equal(nodeSum, `${createHash('sha256').update(readFileSync(process.execPath)).digest('hex')}  node\n`);
  });

  it('refuses an unreachable control plane and an unsupported OS at the right step, installing nothing', async () => {
    const c = await newContainer('refuse', await freePort());
    const dead = await freePort();
    let r = await sh(c, `curl -fsSL ${stack.cpUrl}/install.sh -o /tmp/install.sh && sh /tmp/install.sh --url http://127.0.0.1:${dead} --token whatever`);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /step "control plane" failed: cannot reach the control plane at http:\/\/127\.0\.0\.1:\d+/, show(r));
    assert.match(r.stderr, /re-run the same command/);
    assert.equal((await sh(c, 'test ! -e /opt/berth && test ! -e /usr/local/bin/berth')).code, 0, 'nothing was installed');

    r = await sh(c, `printf 'ID=centos\\nVERSION_ID="7"\\n' > /etc/os-release && sh /tmp/install.sh --token whatever`);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /step "preflight" failed: unsupported operating system: centos 7 \(berth supports Debian 12 and Ubuntu 22\.04 \/ 24\.04\)/, show(r));
    assert.equal((await sh(c, 'test ! -e /opt/berth')).code, 0, 'nothing was installed');
  });

  it('installs the agent with the server add command; a bad token first fails at "join" without breaking the re-run', { timeout: 15 * 60_000 }, async () => {
    const c = await newContainer('agent', await freePort());
    const name = `inst-${Math.random().toString(36).slice(2, 8)}`;

    // A bad join token: the step is named, nothing is enrolled, the agent is not running.
    let started = Date.now();
    let r = await sh(c, `curl -fsSL ${stack.cpUrl}/install.sh | sh -s -- --token not-a-real-token --name ${name}`);
    process.stderr.write(`# install with a bad token failed in ${Date.now() - started} ms\n`);
    assert.notEqual(r.code, 0, show(r));
    assert.match(r.stderr, /step "join" failed: the control plane refused the join token: join token is invalid, expired or already used/, show(r));
    assert.match(r.stderr, /berth server add/);
    // Everything before the join is done (and kept for the re-run): the distribution's node 18 was refused.
    assert.match(r.stdout, /does not fit \(need Node\.js >= 20/, 'the distribution node 18 is refused');
    assert.match(r.stdout, /using Node\.js v\d+\.\d+\.\d+ from the control plane/);
    assert.equal((await sh(c, 'test ! -e /var/lib/berth/agent.json && test ! -e /run/berth/agent.pid')).code, 0);

    // The command `berth server add` prints, as a user would paste it (root in the container: no sudo).
    const added = await berthJson<{ name: string; joinToken: string; installCommand: string }>(['server', 'add', name], stack.env);
    assert.equal(
      added.installCommand,
      `curl -fsSL ${stack.cpUrl}/install.sh | BERTH_JOIN_TOKEN=${added.joinToken} sudo --preserve-env=BERTH_JOIN_TOKEN sh -s -- --name ${name}`,
    );
    const command = asRoot(added.installCommand);
    started = Date.now();
    r = await sh(c, command, 600_000);
    process.stderr.write(`# fresh install (apt nginx+git, node from the control plane) took ${Date.now() - started} ms\n`);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /already unpacked/);
    assert.match(r.stdout, /enrolled as server "/);
    assert.match(r.stdout, /installing from the distribution: nginx git/);
    assert.match(r.stdout, /no systemd as PID 1.*started the agent in the background/);
    assert.match(r.stdout, new RegExp(`berth ${VERSION.replace(/\./g, '\\.')} is installed: server "${name}" is enrolled`));

    started = Date.now();
    const servers = await eventually(
      () => berthJson<Array<{ name: string; connected: boolean }>>(['server', 'ls'], stack.env),
      (list) => list.some((s) => s.name === name && s.connected),
      30_000,
    );
    process.stderr.write(`# connected ${Date.now() - started} ms after the installer finished\n`);
    assert.equal(servers.filter((s) => s.name === name).length, 1);
    const state = async () =>
      (await sh(c, [
        'readlink /opt/berth/current', 'ls -1 /opt/berth/releases', 'cat /run/berth/agent.pid', 'readlink /opt/berth/bin/node',
        'md5sum /etc/berth/agent.env /usr/local/bin/berth /var/lib/berth/agent.json | cut -c1-32',
        AGENT_COUNT,
      ].join(' && '))).stdout;
    const before1 = await state();
    assert.match(before1, new RegExp(`^releases/${VERSION.replace(/\./g, '\\.')}\n`));
    assert.match(before1, /\n1\n$/, `exactly one agent process:\n${before1}`);
    const status = await sh(c, 'kill -0 "$(cat /run/berth/agent.pid)" && berth --version && grep -c "control plane accepted this agent" /var/log/berth/agent.log');
    assert.equal(status.code, 0, show(status));
    assert.match(status.stdout, new RegExp(`^${VERSION.replace(/\./g, '\\.')}\n`));

    // Re-running the same command (its token is used up by now) changes nothing and duplicates nothing.
    started = Date.now();
    r = await sh(c, command);
    process.stderr.write(`# re-run took ${Date.now() - started} ms\n`);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /already unpacked/);
    assert.match(r.stdout, /already enrolled as server/);
    assert.match(r.stdout, /Docker, nginx and git are present; leaving them alone/);
    assert.match(r.stdout, /the agent already runs/);
    assert.equal(await state(), before1);
    const after1 = await berthJson<Array<{ name: string; connected: boolean }>>(['server', 'ls'], stack.env);
    assert.deepEqual(after1.filter((s) => s.name === name).map((s) => s.connected), [true]);

    // --uninstall stops the agent and removes berth's files; data stays (no --purge).
    started = Date.now();
    r = await sh(c, `curl -fsSL ${stack.cpUrl}/install.sh | sh -s -- --uninstall`);
    process.stderr.write(`# uninstall took ${Date.now() - started} ms\n`);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /uninstalled\. Apps keep running/);
    const gone = await sh(c, `test ! -e /opt/berth && test ! -e /usr/local/bin/berth && test -f /var/lib/berth/agent.json && ${AGENT_COUNT}`);
    assert.equal(gone.code, 0, show(gone));
    assert.match(gone.stdout, /^0\n$/, 'no agent process is left');
  });

  it('--all-in-one gives a control plane + enrolled agent that deploys a sample app; berth upgrade moves both to a newer release while the app serves', { timeout: 10 * 60_000 }, async (t) => {
    const suffix = Math.random().toString(36).slice(2, 8);
    const name = `aio-${suffix}`;
    const app = `aio-web-${suffix}`;
    const domain = `aio-${suffix}.example.test`;
    const repoDir = makeTmpDir('aio-repo');
    const clientDir = makeTmpDir('aio-client');
    t.after(() => {
      rmSync(repoDir, { recursive: true, force: true });
      rmSync(clientDir, { recursive: true, force: true });
    });
    const repo = new TestRepo(repoDir);
    const httpPort = await freePort();
    // The Git remote is mounted at the same path: the agent in the container fetches the file:// URL.
    const c = await newContainer('aio', httpPort, [repo.bare], [name]);
    const port = await freePort();
    const local = `http://127.0.0.1:${port}`;
    let started = Date.now();
    const install = `curl -fsSL ${stack.cpUrl}/install.sh | sh -s -- --all-in-one --listen 127.0.0.1:${port} --public-url ${local} --name ${name}`;
    const r = await sh(c, install, 600_000);
    process.stderr.write(`# all-in-one install took ${Date.now() - started} ms\n`);
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /started the control plane in the background/);
    assert.match(r.stdout, new RegExp(`berth login ${local} [A-Za-z0-9_-]{20,}`));
    const token = (await sh(c, 'cat /var/lib/berth-control-plane/admin-token')).stdout.trim();
    const env = { BERTH_URL: local, BERTH_TOKEN: token, XDG_CONFIG_HOME: clientDir };
    const connected = () => serverConnected(env, name);
    assert.equal((await connected()).length, 1);
    // The local control plane serves the release it was installed from to the next servers.
    const manifest = await (await fetch(`${local}/install/manifest?arch=${process.arch}`)).text();
    assert.match(manifest, new RegExp(`^berth_version=${VERSION.replace(/\./g, '\\.')}$`, 'm'));
    assert.match(await (await fetch(`${local}/install.sh`)).text(), new RegExp(`^BERTH_URL_BAKED='${local.replace(/\./g, '\\.')}'$`, 'm'));
    // It trusts the releases of the control plane it came from and of its own (which signs what it serves).
    const pinned = (await sh(c, 'cat /etc/berth/release.pub')).stdout;
    const ownKey = await (await fetch(`${local}/install/release.pub`)).text();
    assert.equal(pinned, readFileSync(join(stack.cpData, 'release-key.pub'), 'utf8') + ownKey);

    // A sample app deploys through the local control plane to the local agent and is served by its nginx.
    commitSampleApp(repo, 1);
    started = Date.now();
    const d = await deploySampleApp(env, { app, server: name, domain, repo, create: true });
    process.stderr.write(`# first all-in-one deploy took ${Date.now() - started} ms\n`);
    assert.equal(d.status, 'done');
    assert.equal(sampleVersion((await httpGet(httpPort, domain)).body), '1');

    // Re-running is a no-op: same control plane, same single server.
    const again = await sh(c, install);
    assert.equal(again.code, 0, show(again));
    assert.match(again.stdout, /the control plane already runs/);
    assert.match(again.stdout, new RegExp(`already enrolled as server "${name}"`));
    assert.equal((await berthJson<unknown[]>(['server', 'ls'], env)).length, 1);

    // Upgrade with a release from another control plane: both daemons restart on it, the app keeps serving.
    const load = await startSampleLoad(httpPort, domain);
    started = Date.now();
    const up = await containerRun(c, ['berth', 'upgrade', '--url', stack.cpUrl, '--version', NEXT], 300_000);
    t.diagnostic(`all-in-one upgrade took ${Date.now() - started} ms`);
    assert.equal(up.code, 0, show(up));
    assert.match(up.stdout, /started the control plane in the background/);
    assert.match(up.stdout, new RegExp(`berth is upgraded from ${VERSION.replace(/\./g, '\\.')} to ${NEXT.replace(/\./g, '\\.')}: server "${name}" is connected to ${local.replace(/\./g, '\\.')}`));
    const health = (await (await fetch(`${local}/healthz`)).json()) as { version: string };
    assert.equal(health.version, NEXT);
    await connected();
    const status = JSON.parse((await containerRun(c, ['berth', 'status', '--json'])).stdout) as { agent: { version: string }; controlPlane: { state: string } };
    assert.deepEqual([status.agent.version, status.controlPlane.state], [NEXT, 'connected']);
    // …and now serves the new release to the servers added next.
    assert.match(await (await fetch(`${local}/install/manifest?arch=${process.arch}`)).text(), new RegExp(`^berth_version=${NEXT.replace(/\./g, '\\.')}$`, 'm'));
    await finishSampleLoad(t, load, 'the all-in-one upgrade');
  });

  it('the unit files pass systemd-analyze verify', async (t) => {
    try {
      await execFileP('systemd-analyze', ['--version']);
    } catch {
      t.skip('systemd-analyze is not installed (apt-get install -y systemd)');
      return;
    }
    // A throwaway root with the system's units and the paths the units name: verify checks ExecStart exists.
    const root = makeTmpDir('unit-verify');
    mkdirSync(join(root, 'lib/systemd'), { recursive: true });
    cpSync('/lib/systemd/system', join(root, 'lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
    mkdirSync(join(root, 'opt/berth/bin'), { recursive: true });
    writeFileSync(join(root, 'opt/berth/bin/node'), '#!/bin/sh\n', { mode: 0o755 });
    const units = ['berth-agent.service', 'berth-control-plane.service'];
    for (const u of units) {
      assert.ok(existsSync(join(ROOT, 'systemd', u)), u);
      cpSync(join(ROOT, 'systemd', u), join(root, 'etc/systemd/system', u));
    }
    const res = await execFileP('systemd-analyze', ['verify', `--root=${root}`, ...units.map((u) => `/etc/systemd/system/${u}`)]).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
    assert.equal(res.code, 0, res.out);
    assert.equal(res.out.trim(), '', res.out);
    const agentUnit = readFileSync(join(ROOT, 'systemd/berth-agent.service'), 'utf8');
    assert.match(agentUnit, /^Restart=always$/m);
    assert.match(agentUnit, /^KillMode=process$/m, 'stopping the agent must not kill the nginx it started');
    assert.match(agentUnit, /^OOMScoreAdjust=-\d+$/m);
    assert.match(agentUnit, /^ProtectSystem=strict$/m);
  });
});
