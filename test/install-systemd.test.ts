// install.sh's systemd path end to end: the real units under a real systemd. One Debian 12 container
// boots systemd as PID 1 (debootstrap image with systemd, systemd-sysv and dbus, built once and reused
// while its tag exists; --cap-add SYS_ADMIN, tmpfs /run, the cgroup tree), shares the host's network and
// Docker engine like the other installer containers, and has /etc/berth/agent.env pre-seeded with a
// private nginx on a free port (nginx.service is masked: nothing binds the host's :80/:443). Against a
// control plane on loopback serving real release tarballs (scripts/package.sh), it checks:
// the install (berth-agent.service active, enabled, hardened, logging JSON to journald, connected and
// accepted, deploying a sample app served by the agent's nginx); `systemctl restart berth-agent` under
// load (zero failed requests, app containers untouched); `berth upgrade` to a newer release and to a
// broken one (rolled back: the previous release and its unit run again) under load; and --uninstall
// (unit stopped, disabled, removed; apps keep running). A second container of the same image runs
// `install.sh --all-in-one`: berth-control-plane.service + berth-agent.service installed, upgraded under
// load (both restarted on the new release) and uninstalled.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import {
  commitSampleApp,
  containerRun,
  containerSh,
  deploySampleApp,
  ensureSystemdInstallerImage,
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
import { freePort, makeTmpDir } from './helpers/tmp.js';

const execFileP = promisify(execFile);

function bump(version: string, by: number): string {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  assert.ok(m, `package version ${version}`);
  return `${m[1]}.${m[2]}.${Number(m[3]) + by}`;
}
const FIRST = PACKAGE_VERSION;
const NEXT = bump(PACKAGE_VERSION, 1);
const BROKEN = bump(PACKAGE_VERSION, 2);
const esc = (s: string) => s.replace(/[.+]/g, '\\$&');
const UNIT = '/etc/systemd/system/berth-agent.service';
const CAP_SYS_RESOURCE = 24;
/** Where the test's Git remote is mounted in the container. */
const REMOTE = '/srv/berth-test/remote.git';

interface Status {
  agent: { running: boolean; version: string; pid: number | null };
  controlPlane: { state: string; acceptedAt: string | null };
  apps: Array<{ name: string; health: string }>;
}

// How many processes run `node …/dist/cli/main.js agent`.
const AGENT_COUNT =
  'n=0; for f in /proc/[0-9]*/cmdline; do c=$(tr "\\0" " " < "$f" 2>/dev/null) || continue; case "$c" in *node\\ */dist/cli/main.js\\ agent\\ ) n=$((n+1));; esac; done; echo $n';

describe('install.sh with systemd as PID 1', { timeout: 20 * 60_000 }, () => {
  let stack: Stack;
  let container = '';
  let httpPort = 0;
  let repo: TestRepo;
  let releaseDir = '';
  const suffix = Math.random().toString(36).slice(2, 8);
  const server = `sd-${suffix}`;
  const app = `sd-web-${suffix}`;
  const domain = `sd-${suffix}.example.test`;

  const run = (argv: string[], timeoutMs?: number) => containerRun(container, argv, timeoutMs);
  const status = async (): Promise<Status> => {
    const r = await run(['berth', 'status', '--json'], 60_000);
    assert.equal(r.code, 0, showRun(r));
    return JSON.parse(r.stdout) as Status;
  };
  /** `systemctl show` properties of berth-agent.service. */
  const unit = async (...props: string[]): Promise<Record<string, string>> => {
    const r = await run(['systemctl', 'show', ...props.flatMap((p) => ['-p', p]), 'berth-agent.service']);
    assert.equal(r.code, 0, showRun(r));
    return Object.fromEntries(r.stdout.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  };
  const current = async () => (await run(['readlink', '/opt/berth/current'])).stdout.trim();
  const connectedOnControlPlane = () => serverConnected(stack.env, server);
  /** The agent the unit runs: its MainPID is the process `berth status` reports, running `version`, accepted by the control plane. */
  const assertUnitRuns = async (version: string) => {
    const u = await unit('ActiveState', 'SubState', 'MainPID', 'UnitFileState');
    assert.deepEqual([u.ActiveState, u.SubState, u.UnitFileState], ['active', 'running', 'enabled'], JSON.stringify(u));
    const s = await status();
    assert.equal(s.agent.running, true);
    assert.equal(s.agent.version, version);
    assert.equal(s.agent.pid, Number(u.MainPID), "berth status reports the unit's main process");
    assert.notEqual(s.controlPlane.acceptedAt, null, `the control plane accepted the agent: ${JSON.stringify(s.controlPlane)}`);
    return { pid: Number(u.MainPID), status: s };
  };
  /** The app's containers on the shared engine (this test's server label only): id and start time. */
  const appContainers = async (): Promise<string[]> => {
    const ids = (await execFileP('docker', ['ps', '-q', '--no-trunc', '--filter', 'label=berth.managed=true', '--filter', `label=berth.server=${server}`])).stdout
      .split('\n')
      .filter(Boolean);
    if (ids.length === 0) return [];
    const { stdout } = await execFileP('docker', ['inspect', '--format', '{{.Id}} {{.State.StartedAt}} {{.State.Running}} {{.RestartCount}}', ...ids]);
    return stdout.split('\n').filter(Boolean).sort();
  };
  const startLoad = () => startSampleLoad(httpPort, domain);
  const finishLoad = finishSampleLoad;

  before(async () => {
    await ensureDocker();
    await Promise.all([ensureSystemdInstallerImage(), ensureBusyboxImage()]);
    ({ stack, releaseDir } = await startReleaseServer('install-systemd', { next: NEXT, broken: [{ version: BROKEN, how: 'exits' }] }));
    repo = new TestRepo(join(stack.root, 'repo'));
    httpPort = await freePort();
    // The Git remote is mounted outside /tmp: the unit's PrivateTmp= gives the agent a /tmp of its own.
    container = await startInstallerContainer('systemd', httpPort, [`${repo.bare}:${REMOTE}`], { systemd: true });
  });

  after(async () => {
    if (container) await removeInstallerContainer(container, [server]);
    await stack?.destroy();
    if (stack) rmSync(stack.root, { recursive: true, force: true });
    if (releaseDir) rmSync(join(releaseDir, '..'), { recursive: true, force: true });
  });

  it('installs berth-agent.service: active, enabled, hardened, logging JSON to journald, accepted; a sample app deploys and is served', { timeout: 10 * 60_000 }, async (t) => {
    const pid1 = await run(['cat', '/proc/1/comm']);
    assert.equal(pid1.stdout.trim(), 'systemd', 'systemd is PID 1 in the test container');

    const added = await berthJson<{ installCommand: string }>(['server', 'add', server], stack.env);
    let started = Date.now();
    const r = await containerSh(container, asRoot(added.installCommand), 600_000);
    t.diagnostic(`install took ${Date.now() - started} ms`);
    assert.equal(r.code, 0, showRun(r));
    assert.match(r.stdout, /installing from the distribution: nginx git/);
    assert.match(r.stdout, /restarted berth-agent\.service/);
    assert.doesNotMatch(r.stdout, /no systemd as PID 1/);
    assert.match(r.stdout, new RegExp(`berth ${esc(FIRST)} is installed: server "${server}" is enrolled`));
    assert.match(r.stdout, /journalctl -u berth-agent -f/, 'the final message points at the journal');

    assert.equal((await run(['systemctl', 'is-active', 'berth-agent'])).stdout.trim(), 'active');
    assert.equal((await run(['systemctl', 'is-enabled', 'berth-agent'])).stdout.trim(), 'enabled');
    // The distribution's nginx the installer installed did not start (masked here: the host's :80 stays free).
    assert.notEqual((await run(['systemctl', 'is-active', 'nginx.service'])).stdout.trim(), 'active');
    const { pid } = await assertUnitRuns(FIRST);
    await connectedOnControlPlane();
    // The paths agent.env names (here a private nginx prefix) are writable for the agent through the installer's drop-in.
    assert.match((await unit('DropInPaths')).DropInPaths!, /\/etc\/systemd\/system\/berth-agent\.service\.d\/50-berth-paths\.conf/);
    assert.match((await run(['cat', '/etc/systemd/system/berth-agent.service.d/50-berth-paths.conf'])).stdout, /^ReadWritePaths=.* -\/var\/lib\/berth-nginx( |$)/m);

    // Re-running the same command changes nothing: the unit is not restarted.
    const again = await containerSh(container, asRoot(added.installCommand), 300_000);
    assert.equal(again.code, 0, showRun(again));
    assert.match(again.stdout, /already enrolled as server/);
    assert.doesNotMatch(again.stdout, /restarted berth-agent\.service/);
    assert.equal((await assertUnitRuns(FIRST)).pid, pid, 'the same agent process');

    // journald has the agent's own output, one JSON object per line.
    const journal = await run(['journalctl', '--no-pager', '-o', 'cat', 'SYSLOG_IDENTIFIER=berth-agent']);
    assert.equal(journal.code, 0, showRun(journal));
    const lines = journal.stdout.split('\n').filter((l) => l.trim());
    assert.ok(lines.length > 0, 'the journal has the agent log');
    const records = lines.map((l) => {
      try {
        return JSON.parse(l) as { msg?: string; level?: number };
      } catch {
        assert.fail(`a journal line of the agent is not JSON: ${l}`);
      }
    });
    assert.ok(records.some((j) => j.msg === 'control plane accepted this agent'), journal.stdout.slice(-2000));

    // OOMScoreAdjust= is applied to the agent process. Lowering a score needs CAP_SYS_RESOURCE, which a
    // real host's systemd has; when this container has not got it (these machines' Docker engine lacks
    // it), systemd keeps the unit running at the inherited score, and that is what is checked.
    const oom = await unit('OOMScoreAdjust');
    assert.equal(oom.OOMScoreAdjust, '-500');
    const caps = (await run(['sh', '-c', `grep '^CapEff:' /proc/1/status && cat /proc/${pid}/oom_score_adj /proc/1/oom_score_adj`])).stdout.split('\n');
    const canLower = (BigInt(`0x${caps[0]!.split(/\s+/)[1]}`) >> BigInt(CAP_SYS_RESOURCE)) & 1n;
    if (canLower) {
      assert.equal(caps[1], '-500', 'the agent runs with oom_score_adj -500');
    } else {
      t.diagnostic(`no CAP_SYS_RESOURCE in this container: the agent runs with oom_score_adj ${caps[1]} (PID 1: ${caps[2]}), -500 needs a real host`);
      assert.equal(caps[1], caps[2]);
    }

    // The hardening is in force for the agent (so the deploy below ran under it, not around it).
    const procStatus = (await run(['cat', `/proc/${pid}/status`])).stdout;
    assert.match(procStatus, /^NoNewPrivs:\s+1$/m, 'NoNewPrivileges=true');
    const ro = await run(['nsenter', '-t', String(pid), '-m', 'touch', '/opt/berth/.write-test']);
    assert.notEqual(ro.code, 0, 'ProtectSystem=strict: /opt is read-only for the agent');
    assert.match(ro.stderr, /Read-only file system/);

    commitSampleApp(repo, 1);
    started = Date.now();
    const d = await deploySampleApp(stack.env, { app, server, domain, repo, repoUrl: `file://${REMOTE}`, create: true });
    t.diagnostic(`first deploy through the systemd agent took ${Date.now() - started} ms`);
    assert.equal(d.status, 'done');
    const res = await httpGet(httpPort, domain);
    assert.equal(res.status, 200);
    assert.equal(sampleVersion(res.body), '1');
    assert.equal((await status()).apps.find((a) => a.name === app)?.health, 'healthy');
  });

  it('systemctl restart berth-agent under load: zero failed requests, app containers not restarted', { timeout: 5 * 60_000 }, async (t) => {
    const before = await assertUnitRuns(FIRST);
    const containersBefore = await appContainers();
    assert.ok(containersBefore.length > 0, 'the app has a running container');
    const load = await startLoad();
    const r = await run(['systemctl', 'restart', 'berth-agent'], 120_000);
    assert.equal(r.code, 0, showRun(r));
    const started = Date.now();
    // Bounded wait for the new process to be accepted by the control plane.
    await eventually(
      () => status(),
      (s) => s.agent.running && s.agent.pid !== before.pid && s.controlPlane.acceptedAt !== null,
      60_000,
      250,
    );
    t.diagnostic(`the restarted agent was accepted ${Date.now() - started} ms after systemctl returned`);
    await finishLoad(t, load, 'systemctl restart berth-agent');
    const afterRestart = await assertUnitRuns(FIRST);
    assert.notEqual(afterRestart.pid, before.pid, 'a new agent process');
    assert.deepEqual(await appContainers(), containersBefore, 'the same app containers, not restarted');
    assert.equal(sampleVersion((await httpGet(httpPort, domain)).body), '1');
    await connectedOnControlPlane();
  });

  it(`berth upgrade --version ${NEXT} restarts the unit on the new release under load: zero failed requests`, { timeout: 5 * 60_000 }, async (t) => {
    const before = await assertUnitRuns(FIRST);
    const containersBefore = await appContainers();
    const load = await startLoad();
    const started = Date.now();
    const r = await run(['berth', 'upgrade', '--version', NEXT], 300_000);
    t.diagnostic(`berth upgrade took ${Date.now() - started} ms`);
    assert.equal(r.code, 0, showRun(r));
    assert.match(r.stdout, new RegExp(`upgrading berth ${esc(FIRST)} to ${esc(NEXT)}`));
    assert.match(r.stdout, /restarted berth-agent\.service/);
    assert.match(r.stdout, new RegExp(`berth is upgraded from ${esc(FIRST)} to ${esc(NEXT)}: server "${server}" is connected`));
    await finishLoad(t, load, 'the upgrade');

    assert.equal(await current(), `releases/${NEXT}`);
    const now = await assertUnitRuns(NEXT);
    assert.notEqual(now.pid, before.pid, 'a new agent process');
    assert.equal((await run(['berth', '--version'])).stdout.trim(), NEXT);
    assert.deepEqual(await appContainers(), containersBefore, 'the app containers were not restarted');
    await connectedOnControlPlane();

    // The upgraded agent deploys: a new commit goes live.
    commitSampleApp(repo, 2);
    const d = await deploySampleApp(stack.env, { app, server, domain, repo, create: false });
    assert.equal(d.status, 'done');
    assert.equal(sampleVersion((await httpGet(httpPort, domain)).body), '2');
  });

  it(`a broken ${BROKEN} is rolled back under systemd: the unit runs ${NEXT} with its own unit file again, zero failed requests`, { timeout: 5 * 60_000 }, async (t) => {
    // Once the previous deploy's outgoing container is gone (drained and stopped), only the live one is left.
    const containersBefore = await eventually(() => appContainers(), (c) => c.length === 1, 30_000);
    const load = await startLoad();
    const started = Date.now();
    const r = await run(['berth', 'upgrade', '--version', BROKEN], 300_000);
    t.diagnostic(`the failed upgrade and its rollback took ${Date.now() - started} ms`);
    assert.notEqual(r.code, 0, showRun(r));
    assert.equal(
      r.stderr.trim().split('\n').pop(),
      `berth: upgrade failed: step "agent" failed: berth ${BROKEN} did not start: its agent exited right after starting; rolled back to ${NEXT}, which is running and connected again`,
      showRun(r),
    );
    assert.match(r.stderr, /deliberately broken build/, "the failing agent's own log lines are shown");
    assert.match(r.stdout, new RegExp(`switched /opt/berth/current back to releases/${esc(NEXT)}`));
    await finishLoad(t, load, 'the failed upgrade and its rollback');

    assert.equal(await current(), `releases/${NEXT}`);
    await assertUnitRuns(NEXT);
    // The unit file is the previous release's again, and it is the one systemd has loaded.
    const same = await run(['cmp', UNIT, `/opt/berth/releases/${NEXT}/systemd/berth-agent.service`]);
    assert.equal(same.code, 0, `the unit file was restored: ${showRun(same)}`);
    assert.equal((await unit('NeedDaemonReload')).NeedDaemonReload, 'no');
    assert.deepEqual(await appContainers(), containersBefore, 'the app containers were not restarted');
    await connectedOnControlPlane();
    assert.equal(sampleVersion((await httpGet(httpPort, domain)).body), '2');
  });

  it('--uninstall stops, disables and removes the unit; the app keeps running and serving', { timeout: 3 * 60_000 }, async () => {
    const containersBefore = await appContainers();
    const r = await containerSh(container, `curl -fsSL ${stack.cpUrl}/install.sh | sh -s -- --uninstall`, 120_000);
    assert.equal(r.code, 0, showRun(r));
    assert.match(r.stdout, /uninstalled\. Apps keep running/);

    assert.notEqual((await run(['systemctl', 'is-active', 'berth-agent'])).stdout.trim(), 'active');
    const enabled = await run(['systemctl', 'is-enabled', 'berth-agent']);
    assert.notEqual(enabled.code, 0, `not enabled: ${showRun(enabled)}`);
    const files = await containerSh(
      container,
      `test ! -e ${UNIT} && test ! -L /etc/systemd/system/multi-user.target.wants/berth-agent.service && test ! -e /etc/systemd/system/berth-agent.service.d && test ! -e /opt/berth && ${AGENT_COUNT}`,
    );
    assert.equal(files.code, 0, `the unit, its enablement and berth's files are gone: ${showRun(files)}`);
    assert.equal(files.stdout.trim(), '0', 'no agent process is left');
    assert.deepEqual(await appContainers(), containersBefore, 'the app containers still run, not restarted');
    const res = await httpGet(httpPort, domain);
    assert.equal(res.status, 200);
    assert.equal(sampleVersion(res.body), '2');
  });

  // --all-in-one under systemd: berth-control-plane.service next to berth-agent.service in a second
  // container (same image and flags), its agent enrolled with it; the releases are the ones packaged above.
  describe('--all-in-one with systemd as PID 1', () => {
    let aio = '';
    let aioHttp = 0;
    let aioRepo: TestRepo;
    let aioTmp = '';
    const name = `sd-aio-${suffix}`;
    const aioApp = `sd-aio-web-${suffix}`;
    const aioDomain = `sd-aio-${suffix}.example.test`;
    const AIO_REMOTE = '/srv/berth-test/aio-remote.git';
    const UNITS = ['berth-control-plane', 'berth-agent'] as const;
    let local = '';
    let env: Record<string, string> = {};
    const runIn = (argv: string[], timeoutMs?: number) => containerRun(aio, argv, timeoutMs);
    /** ActiveState, SubState, UnitFileState and MainPID of a unit. */
    const show = async (u: string) => {
      const r = await runIn(['systemctl', 'show', '-p', 'ActiveState', '-p', 'SubState', '-p', 'UnitFileState', '-p', 'MainPID', `${u}.service`]);
      assert.equal(r.code, 0, showRun(r));
      return Object.fromEntries(r.stdout.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    };
    /** Both units active, running and enabled; the control plane answers /healthz with `version`, the agent runs it and is accepted. */
    const assertBothRun = async (version: string) => {
      const pids: Record<string, number> = {};
      for (const u of UNITS) {
        const s = await show(u);
        assert.deepEqual([s.ActiveState, s.SubState, s.UnitFileState], ['active', 'running', 'enabled'], `${u}: ${JSON.stringify(s)}`);
        pids[u] = Number(s.MainPID);
      }
      const health = (await (await fetch(`${local}/healthz`)).json()) as { ok: boolean; version: string };
      assert.deepEqual(health, { ok: true, version });
      const st = await eventually(
        async () => {
          const r = await runIn(['berth', 'status', '--json'], 60_000);
          assert.equal(r.code, 0, showRun(r));
          return JSON.parse(r.stdout) as Status;
        },
        (s) => s.controlPlane.acceptedAt !== null,
        30_000,
      );
      assert.equal(st.agent.running, true);
      assert.equal(st.agent.version, version);
      assert.equal(st.agent.pid, pids['berth-agent'], "berth status reports the agent unit's main process");
      return pids;
    };
    const connected = () => serverConnected(env, name);

    before(async () => {
      aioTmp = makeTmpDir('install-systemd-aio');
      aioRepo = new TestRepo(join(aioTmp, 'repo'));
      aioHttp = await freePort();
      // Outside /tmp in the container: berth-agent.service's PrivateTmp= hides the container's /tmp.
      aio = await startInstallerContainer('systemd-aio', aioHttp, [`${aioRepo.bare}:${AIO_REMOTE}`], { systemd: true });
    });

    after(async () => {
      if (aio) await removeInstallerContainer(aio, [name]);
      if (aioTmp) rmSync(aioTmp, { recursive: true, force: true });
    });

    it('installs berth-control-plane.service and berth-agent.service: both active and enabled, the control plane answers with the printed admin token, the agent is accepted, a sample app deploys and is served', { timeout: 10 * 60_000 }, async (t) => {
      const port = await freePort();
      local = `http://127.0.0.1:${port}`;
      let started = Date.now();
      const r = await containerSh(aio, `curl -fsSL ${stack.cpUrl}/install.sh | sh -s -- --all-in-one --listen 127.0.0.1:${port} --public-url ${local} --name ${name}`, 600_000);
      t.diagnostic(`all-in-one install under systemd took ${Date.now() - started} ms`);
      assert.equal(r.code, 0, showRun(r));
      assert.match(r.stdout, /restarted berth-control-plane\.service/);
      assert.match(r.stdout, /restarted berth-agent\.service/);
      assert.doesNotMatch(r.stdout, /no systemd as PID 1/);
      assert.match(r.stdout, new RegExp(`berth ${esc(FIRST)} is installed: server "${name}" is enrolled with ${esc(local)}`));
      const login = new RegExp(`berth login ${esc(local)} ([A-Za-z0-9_-]{20,})$`, 'm').exec(r.stdout);
      assert.ok(login, `the admin token is printed: ${r.stdout}`);
      const token = login[1]!;
      assert.equal((await runIn(['cat', '/var/lib/berth-control-plane/admin-token'])).stdout.trim(), token);

      for (const u of UNITS) {
        assert.equal((await runIn(['systemctl', 'is-active', u])).stdout.trim(), 'active', u);
        assert.equal((await runIn(['systemctl', 'is-enabled', u])).stdout.trim(), 'enabled', u);
      }
      await assertBothRun(FIRST);
      // The printed token works against the control plane's API, and this machine is its one connected server.
      env = { BERTH_URL: local, BERTH_TOKEN: token, XDG_CONFIG_HOME: join(aioTmp, 'client') };
      assert.deepEqual((await connected()).map((s) => s.name), [name]);
      const denied = await fetch(`${local}/api/servers`, { headers: { authorization: 'Bearer not-the-token' } });
      assert.equal(denied.status, 401);
      // The unit's hardening is in force for the control plane (so the writes above ran under it): no new
      // privileges, and of root's capabilities only CAP_NET_BIND_SERVICE (bit 10) is left.
      const cpStatus = (await runIn(['cat', `/proc/${(await show('berth-control-plane')).MainPID}/status`])).stdout;
      assert.match(cpStatus, /^NoNewPrivs:\s+1$/m, 'NoNewPrivileges=true');
      assert.match(cpStatus, /^CapEff:\s+0000000000000400$/m, 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE');
      // The data directory and the admin token are private to root.
      const modes = await runIn(['stat', '-c', '%a %U', '/var/lib/berth-control-plane', '/var/lib/berth-control-plane/admin-token']);
      assert.equal(modes.stdout, '700 root\n600 root\n', showRun(modes));

      // journald has the control plane's own output, one JSON object per line.
      const journal = await runIn(['journalctl', '--no-pager', '-o', 'cat', 'SYSLOG_IDENTIFIER=berth-control-plane']);
      assert.equal(journal.code, 0, showRun(journal));
      const lines = journal.stdout.split('\n').filter((l) => l.trim());
      assert.ok(lines.length > 0, 'the journal has the control plane log');
      const records = lines.map((l) => {
        try {
          return JSON.parse(l) as { msg?: string; server?: string };
        } catch {
          assert.fail(`a journal line of the control plane is not JSON: ${l}`);
        }
      });
      assert.ok(records.some((j) => j.msg === 'agent connected' && j.server === name), journal.stdout.slice(-2000));

      commitSampleApp(aioRepo, 1);
      started = Date.now();
      const d = await deploySampleApp(env, { app: aioApp, server: name, domain: aioDomain, repo: aioRepo, repoUrl: `file://${AIO_REMOTE}`, create: true });
      t.diagnostic(`first deploy through the all-in-one control plane took ${Date.now() - started} ms`);
      assert.equal(d.status, 'done');
      const res = await httpGet(aioHttp, aioDomain);
      assert.equal(res.status, 200);
      assert.equal(sampleVersion(res.body), '1');
    });

    it(`berth upgrade --url … --version ${NEXT} restarts both units on ${NEXT} under load: zero failed requests`, { timeout: 5 * 60_000 }, async (t) => {
      const before = await assertBothRun(FIRST);
      const load = await startSampleLoad(aioHttp, aioDomain);
      const started = Date.now();
      const r = await runIn(['berth', 'upgrade', '--url', stack.cpUrl, '--version', NEXT], 300_000);
      t.diagnostic(`all-in-one upgrade under systemd took ${Date.now() - started} ms`);
      assert.equal(r.code, 0, showRun(r));
      assert.match(r.stdout, /restarted berth-control-plane\.service/);
      assert.match(r.stdout, /restarted berth-agent\.service/);
      assert.match(r.stdout, new RegExp(`berth is upgraded from ${esc(FIRST)} to ${esc(NEXT)}: server "${name}" is connected to ${esc(local)}`));
      await finishSampleLoad(t, load, 'the all-in-one upgrade under systemd');

      assert.equal((await runIn(['readlink', '/opt/berth/current'])).stdout.trim(), `releases/${NEXT}`);
      const now = await assertBothRun(NEXT);
      for (const u of UNITS) assert.notEqual(now[u], before[u], `${u} runs a new process`);
      await connected();
      // …and the control plane now serves the new release to the servers added next.
      assert.match(await (await fetch(`${local}/install/manifest?arch=${process.arch}`)).text(), new RegExp(`^berth_version=${esc(NEXT)}$`, 'm'));
      assert.equal(sampleVersion((await httpGet(aioHttp, aioDomain)).body), '1');
    });

    it('--uninstall stops, disables and removes both units; the app keeps serving', { timeout: 3 * 60_000 }, async () => {
      const r = await containerSh(aio, `curl -fsSL ${stack.cpUrl}/install.sh | sh -s -- --uninstall`, 120_000);
      assert.equal(r.code, 0, showRun(r));
      assert.match(r.stdout, /uninstalled\. Apps keep running/);
      for (const u of UNITS) {
        assert.notEqual((await runIn(['systemctl', 'is-active', u])).stdout.trim(), 'active', u);
        const enabled = await runIn(['systemctl', 'is-enabled', u]);
        assert.notEqual(enabled.code, 0, `${u} is not enabled: ${showRun(enabled)}`);
        const gone = await runIn(['test', '!', '-e', `/etc/systemd/system/${u}.service`]);
        assert.equal(gone.code, 0, `${u}.service is removed`);
        const wants = await runIn(['test', '!', '-L', `/etc/systemd/system/multi-user.target.wants/${u}.service`]);
        assert.equal(wants.code, 0, `${u}.service is no longer wanted by multi-user.target`);
      }
      assert.equal((await runIn(['test', '!', '-e', '/opt/berth'])).code, 0, '/opt/berth is removed');
      await assert.rejects(fetch(`${local}/healthz`), 'the control plane no longer answers');
      const res = await httpGet(aioHttp, aioDomain);
      assert.equal(res.status, 200);
      assert.equal(sampleVersion(res.body), '1');
    });
  });
});
