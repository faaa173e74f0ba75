// The agent keeps apps alive on its own (issue 7), with real processes and real faults: the control
// plane going away or freezing, containers removed or killed by hand, nginx files deleted or
// corrupted, the agent SIGKILLed again and again — and `berth status` telling the truth throughout.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { StatusReport } from '../agent/status/report.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { busyboxDockerfile } from './helpers/fixtures.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { afterReconcilePasses } from './helpers/reconcile-passes.js';
import { Stack } from './helpers/stack.js';

const WEB = 'res-web';
const OTHER = 'res-other';
const WEB_DOMAIN = 'web.res.test';
const OTHER_DOMAIN = 'other.res.test';
const RECONCILE_MS = 2000;

const containersOf = (stack: Stack, app: string, process?: string) =>
  execFileSync(
    'docker',
    ['ps', '-q', '--filter', `label=berth.app=${app}`, '--filter', `label=berth.server=${stack.serverName}`, ...(process ? ['--filter', `label=berth.process=${process}`] : [])],
    { encoding: 'utf8' },
  )
    .split('\n')
    .filter(Boolean);

describe('the agent keeps apps alive on its own, and berth status tells the truth', () => {
  let stack: Stack;
  const status = () => berthJson<StatusReport>(['status', '--data', stack.agentData], stack.env);
  const serving = async () => {
    const [a, b] = await Promise.all([httpGet(stack.httpPort, WEB_DOMAIN), httpGet(stack.httpPort, OTHER_DOMAIN)]);
    return a.status === 200 && a.body === 'web app\n' && b.status === 200 && b.body === 'other app\n';
  };
  /** Requests every 100 ms while `during` runs: every single one must succeed. */
  const keepsServing = async (during: () => Promise<void>) => {
    let stop = false;
    const failures: string[] = [];
    let sent = 0;
    const loop = (async () => {
      while (!stop && sent < 2000) {
        sent++;
        try {
          const r = await httpGet(stack.httpPort, WEB_DOMAIN, '/', 3000);
          if (r.status !== 200) failures.push(`HTTP ${r.status}`);
        } catch (err) {
          failures.push(String(err));
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    try {
      await during();
    } finally {
      stop = true;
      await loop;
    }
    assert.ok(sent > 5, 'the load loop ran');
    assert.deepEqual(failures, [], `${failures.length} of ${sent} requests failed`);
  };

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('resilience', {
      agentEnv: { BERTH_RECONCILE_INTERVAL_MS: String(RECONCILE_MS), BERTH_HEARTBEAT_MS: '1000', BERTH_RECONNECT_MAX_MS: '2000' },
    });
    stack.apps.add(WEB);
    stack.apps.add(OTHER);
    const webRepo = new TestRepo(join(stack.root, 'web-repo'));
    webRepo.commit({
      'berth.yml': 'build:\n  image: dockerfile\nprocesses:\n  web: exec httpd -f -p $PORT -h /www\n  worker: while true; do sleep 1; done\n',
      Dockerfile: 'FROM berth-test/busybox:latest\nCOPY index.html /www/index.html\n',
      'index.html': 'web app\n',
    });
    const otherRepo = new TestRepo(join(stack.root, 'other-repo'));
    otherRepo.commit({ Dockerfile: busyboxDockerfile(), 'index.html': 'other app\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    for (const [app, repo, domain] of [[WEB, webRepo, WEB_DOMAIN], [OTHER, otherRepo, OTHER_DOMAIN]] as const) {
      await berthJson(['app', 'create', app, '--repo', repo.url, '--server', stack.serverName], stack.env);
      await berthJson(['domain', 'add', app, domain], stack.env);
      const res = await berth(['deploy', app, '--wait'], stack.env);
      assert.equal(res.code, 0, `deploy of ${app} failed: ${res.stderr}\n${stack.tail('agent.log')}`);
    }
    assert.ok(await serving());
  });

  after(async () => {
    await stack?.destroy();
  });

  it('status --json reports the running agent, its connection and every process', async () => {
    const s = await status();
    assert.equal(s.agent.running, true);
    assert.equal(s.agent.server, stack.serverName);
    assert.ok(s.agent.uptimeSeconds !== null && s.agent.uptimeSeconds >= 0);
    assert.equal(s.controlPlane.state, 'connected');
    assert.equal(s.controlPlane.url, stack.cpUrl);
    const web = s.apps.find((a) => a.name === WEB)!;
    assert.equal(web.health, 'healthy');
    assert.deepEqual(web.processes.map((p) => [p.name, p.running, p.desired]).sort(), [['web', 1, 1], ['worker', 1, 1]]);
    assert.deepEqual(web.domains, [WEB_DOMAIN]);
    assert.equal(web.lastDeployment?.status, 'done');
    assert.ok(s.lastReconcile, 'the last reconcile pass is reported');
    assert.ok(s.disk && s.disk.images >= 2 && s.disk.bytes > 0, 'disk used by berth images');
    const human = await berth(['status', '--data', stack.agentData], stack.env);
    assert.equal(human.code, 0);
    assert.match(human.stdout, /agent\s+running/);
    assert.match(human.stdout, new RegExp(`${WEB}\\s+\\[healthy\\]`));
  });

  it('a removed web container and a killed worker come back within a reconcile interval, without duplicates', async () => {
    execFileSync('docker', ['rm', '-f', ...containersOf(stack, WEB, 'web')], { stdio: 'ignore' });
    execFileSync('docker', ['kill', ...containersOf(stack, WEB, 'worker')], { stdio: 'ignore' });
    await eventually(serving, (ok) => ok, RECONCILE_MS * 4, 200);
    await eventually(
      async () => [containersOf(stack, WEB, 'web').length, containersOf(stack, WEB, 'worker').length],
      ([w, k]) => w === 1 && k === 1,
      RECONCILE_MS * 4,
    );
    // Stays at exactly one of each over the next two whole passes.
    await afterReconcilePasses(stack.agentData, 2, RECONCILE_MS * 4);
    assert.deepEqual([containersOf(stack, WEB, 'web').length, containersOf(stack, WEB, 'worker').length], [1, 1]);
    const s = await status();
    assert.equal(s.apps.find((a) => a.name === WEB)?.health, 'healthy');
  });

  it('a deleted or corrupted nginx file is repaired by the next pass; the other app serves throughout', async () => {
    const file = join(stack.nginxPrefix, 'sites', `berth-${WEB}.conf`);
    const original = readFileSync(file, 'utf8');
    const otherOk: boolean[] = [];
    const watch = setInterval(() => void httpGet(stack.httpPort, OTHER_DOMAIN).then((r) => otherOk.push(r.status === 200), () => otherOk.push(false)), 100);
    try {
      // Repaired = the file is back as berth wrote it AND nginx serves from it. The file alone is not
      // enough: the agent swaps it in before testing and reloading, so it shows up a moment early.
      const repaired = async () => {
        const content = readFileSync(file, 'utf8');
        const page = await httpGet(stack.httpPort, WEB_DOMAIN);
        return content === original && page.status === 200 && page.body === 'web app\n';
      };
      rmSync(file);
      await eventually(repaired, (ok) => ok, RECONCILE_MS * 4).catch(() => assert.fail('deleted file not restored'));
      writeFileSync(file, 'server { this is not nginx; }\n');
      await eventually(repaired, (ok) => ok, RECONCILE_MS * 4).catch(() => assert.fail('corrupted file not repaired'));
    } finally {
      clearInterval(watch);
    }
    assert.ok(otherOk.length > 5 && otherOk.every(Boolean), `the other app kept serving (${otherOk.filter((x) => !x).length} failures)`);
  });

  it('control plane stopped: apps keep serving, status says disconnected, the agent reconnects and runs a deploy ordered meanwhile', async () => {
    await eventually(serving, (ok) => ok, RECONCILE_MS * 4); // start from a settled state
    await keepsServing(async () => {
      await stack.stopControlPlane();
      // Disconnected, with the reason of the last failed attempt and when the next one is due.
      const s = await eventually(status, (x) => x.controlPlane.state !== 'connected' && !!x.controlPlane.lastError && !!x.controlPlane.nextRetryAt, 10_000);
      assert.ok(['disconnected', 'connecting'].includes(s.controlPlane.state));
      assert.match(s.controlPlane.lastError ?? '', /ECONNREFUSED/);
      await new Promise((r) => setTimeout(r, 2500)); // a few reconnect attempts against nothing
      await stack.startControlPlane();
      // A deploy ordered on the new control plane process right away (the agent may not be back yet).
      const ordered = await berthJson<{ id: string }>(['deploy', OTHER], stack.env);
      await eventually(() => berthJson<Array<{ name: string; connected: boolean }>>(['server', 'ls'], stack.env), (l) => l.some((x) => x.connected), 15_000);
      await eventually(() => berthJson<Array<{ id: string; status: string }>>(['deployments', OTHER], stack.env), (l) => l.find((d) => d.id === ordered.id)?.status === 'done', 60_000);
    });
    assert.equal((await status()).controlPlane.state, 'connected');
  });

  it('a frozen control plane (SIGSTOP) is noticed by heartbeat; the agent reconnects after SIGCONT', async () => {
    await keepsServing(async () => {
      stack.cp!.proc.kill('SIGSTOP');
      try {
        const s = await eventually(status, (x) => x.controlPlane.state !== 'connected', 15_000);
        assert.notEqual(s.controlPlane.state, 'connected');
      } finally {
        stack.cp!.proc.kill('SIGCONT');
      }
      await eventually(status, (x) => x.controlPlane.state === 'connected', 20_000);
    });
  });

  it('SIGKILL the agent repeatedly: apps serve throughout, no duplicates, desired state kept, database intact', async () => {
    const before = (await status()).desiredState;
    await keepsServing(async () => {
      for (let i = 0; i < 4; i++) {
        await stack.stopAgent('SIGKILL');
        if (i === 0) {
          // Stopped: status reads the SQLite and Docker directly, and says so.
          const s = await status();
          assert.equal(s.agent.running, false);
          assert.equal(s.controlPlane.state, 'agent-stopped');
          assert.equal(s.apps.find((a) => a.name === WEB)?.health, 'healthy', 'containers keep running without the agent');
          const human = await berth(['status', '--data', stack.agentData], stack.env);
          assert.match(human.stdout, /STOPPED/);
        }
        await stack.startAgent();
        await new Promise((r) => setTimeout(r, 300 + i * 200));
      }
    });
    await afterReconcilePasses(stack.agentData, 2, RECONCILE_MS * 4);
    assert.deepEqual([containersOf(stack, WEB, 'web').length, containersOf(stack, WEB, 'worker').length, containersOf(stack, OTHER).length], [1, 1, 1]);
    assert.equal((await status()).desiredState?.revision, before?.revision, 'desired state survived');
    const db = new Database(join(stack.agentData, 'agent.db'), { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    } finally {
      db.close();
    }
  });
});
