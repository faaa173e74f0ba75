// A Docker engine restart (or a reboot) must not take apps down for long: containers come back by
// their restart policy or the agent's next reconcile pass, nginx routes to them again, no duplicates.
// This restarts the real dockerd (same command line) — only when this machine runs it without systemd.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StatusReport } from '../agent/status/report.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { afterReconcilePasses } from './helpers/reconcile-passes.js';
import { Stack } from './helpers/stack.js';

const APP = 'restart-web';
const DOMAIN = 'restart.e2e.test';
const RECONCILE_MS = 3000;

function dockerdPid(): number | null {
  try {
    return Number(execFileSync('pidof', ['dockerd'], { encoding: 'utf8' }).trim().split(' ')[0]) || null;
  } catch {
    return null;
  }
}

async function restartDockerd(): Promise<void> {
  const pid = dockerdPid();
  if (!pid) throw new Error('no dockerd process to restart');
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  process.kill(pid, 'SIGTERM');
  await eventually(async () => dockerdPid(), (p) => p === null, 60_000, 200);
  const log = openSync('/var/log/dockerd.log', 'a');
  spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log] }).unref();
  await eventually(async () => execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8' }), (v) => v.trim() !== '', 60_000, 200);
}

// Restarting the engine disturbs everything else using it, so it only runs when asked for:
// test/run (the README's test command, and CI) sets BERTH_TEST_RESTART_DOCKER=1. systemd-managed
// engines are restarted by systemd, not by tests; skip there (and when not root).
const canRestart = (() => {
  if (process.env.BERTH_TEST_RESTART_DOCKER !== '1') return false;
  const pid = dockerdPid();
  if (!pid || process.getuid?.() !== 0) return false;
  try {
    return !readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes('docker.service');
  } catch {
    return false;
  }
})();

describe('after a Docker engine restart the app serves again, without duplicates', { skip: canRestart ? false : 'set BERTH_TEST_RESTART_DOCKER=1 (test/run does) on a machine whose dockerd is not systemd-managed' }, () => {
  let stack: Stack;
  const webContainers = () =>
    execFileSync('docker', ['ps', '-q', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.server=${stack.serverName}`], { encoding: 'utf8' }).split('\n').filter(Boolean);

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('dockerd', { agentEnv: { BERTH_RECONCILE_INTERVAL_MS: String(RECONCILE_MS) } });
    stack.apps.add(APP);
    const repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ Dockerfile: 'FROM berth-test/busybox:latest\nCOPY index.html /www/index.html\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n', 'index.html': 'survives\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
    const res = await berth(['deploy', APP, '--wait'], stack.env);
    assert.equal(res.code, 0, res.stderr);
  });

  after(async () => {
    await stack?.destroy();
  });

  it('serves again within a reconcile interval of the engine coming back', async () => {
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'survives\n');
    await restartDockerd();
    await eventually(() => httpGet(stack.httpPort, DOMAIN, '/', 2000), (r) => r.status === 200 && r.body === 'survives\n', RECONCILE_MS * 3 + 10_000, 250);
    // Still exactly one web container after two whole reconcile passes that started once it served again.
    await afterReconcilePasses(stack.agentData, 2, RECONCILE_MS * 4);
    assert.equal(webContainers().length, 1, 'exactly one web container');
    const s = await berthJson<StatusReport>(['status', '--data', stack.agentData], stack.env);
    assert.equal(s.apps.find((a) => a.name === APP)?.health, 'healthy');
  });
});
