// Zero-downtime deploys end to end, with real parts only (control plane + agent processes, the
// Docker engine, a private nginx, Git): a web app with a /up path and its version in every
// response is redeployed, rolled back and broken on purpose while a bounded HTTP load runs through
// nginx on loopback — keep-alive and fresh-connection clients — and every response is checked.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import type { DeploymentJson } from './helpers/fixtures.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { HttpLoad, judgeSequence, type LoadReport } from './helpers/load.js';
import { Stack } from './helpers/stack.js';
import { makeTmpDir } from './helpers/tmp.js';

const APP = 'zd-web';
const DOMAIN = 'zd.example.test';
const KEEP = 3;

interface Phase {
  status: string;
  at: string;
  reason: string | null;
}
interface Details extends DeploymentJson {
  phases: Phase[];
  rollbackOf?: string | null;
}

// busybox httpd serves the repo's files: / answers "version N", /up answers while the file exists.
const dockerfile = (extra = '', cmd = 'exec httpd -f -p $PORT -h /www') => `FROM berth-test/busybox:latest
COPY . /www
${extra}
CMD ["sh", "-c", "${cmd}"]
`;
const BERTH_YML = 'healthcheck: { path: /up, timeout: 30, interval: 0.2 }\n';

function docker(args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8' }).trim();
}
const lines = (s: string) => s.split('\n').filter(Boolean);

describe('zero-downtime deploys, failures, agent crashes, rollback and retention', { timeout: 900_000 }, () => {
  let stack: Stack;
  let repo: TestRepo;
  /** Deployment id of each good version, by version number. */
  const good = new Map<number, string>();
  let live = 0;
  // Docker objects berth must never touch, made up front.
  const foreign = { image: '', dangling: '', container: '' };

  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${stack.cpUrl}${path}`, { headers: { authorization: `Bearer ${stack.adminToken}` } });
    assert.equal(res.status, 200, `GET ${path}: ${res.status}`);
    return (await res.json()) as T;
  };
  const details = (id: string) => api<Details>(`/api/deployments/${id}`);
  const logText = async (id: string) => (await api<{ lines: Array<{ text: string; stream: string }> }>(`/api/deployments/${id}/logs`)).lines;
  const appContainers = () =>
    lines(docker(['ps', '-a', '--format', '{{.Label "berth.deployment"}} {{.State}} {{.Names}}', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.server=${stack.serverName}`]));
  const appImages = () =>
    lines(docker(['images', '--format', '{{.Repository}}:{{.Tag}}', '--filter', 'label=berth.managed=true', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.server=${stack.serverName}`])).sort();

  const startLoad = async () => {
    const load = new HttpLoad({
      port: stack.httpPort,
      host: DOMAIN,
      keepAliveClients: 3,
      freshClients: 2,
      maxRequests: 400_000,
      maxDurationMs: 240_000,
      pauseMs: 2,
      version: (body) => /^version (\d+)$/m.exec(body)?.[1] ?? null,
    });
    // Flowing before anything changes: the first responses prove the starting version.
    await eventually(async () => load.answered, (n) => n >= 20, 10_000, 20);
    return load;
  };
  const assertNoFailures = (t: TestContext, report: LoadReport) => {
    t.diagnostic(
      `load: ${report.sent} requests in ${(report.durationMs / 1000).toFixed(1)} s, ${report.ok} ok, ${report.non2xx} non-2xx, ` +
        `${report.connectionErrors} connection errors, ${report.staleConnectionRetries} stale keep-alive connections re-sent`,
    );
    assert.equal(report.hitBound, false, 'the load ran until stopped (its bounds were not reached)');
    assert.deepEqual(report.failures, [], 'no failed request');
    assert.equal(report.non2xx, 0);
    assert.equal(report.connectionErrors, 0);
    assert.ok(report.ok > 100, `enough requests were answered (${report.ok})`);
  };
  /** Every client saw exactly these versions; keep-alive clients each in one flip per deploy. */
  const assertVersions = (t: TestContext, report: LoadReport, expected: number[]) => {
    const want = expected.map(String);
    let flipBacks = 0;
    for (const c of report.clients) {
      const j = judgeSequence(c, want);
      assert.deepEqual(j.unexpected, [], `${c.name} saw versions out of order: ${JSON.stringify(j.seen)}`);
      if (c.keepAlive) assert.ok(j.exact, `${c.name} saw each version once, in order: ${JSON.stringify(j.seen)} (expected ${JSON.stringify(want)})`);
      flipBacks += j.flipBacks;
    }
    // A fresh connection can land on an nginx worker of the outgoing generation for a few ms of a
    // reload: reported, and only ever the version right before the new one (checked above).
    t.diagnostic(`versions ${want.join(' → ')}: ${flipBacks} response(s) from nginx's outgoing workers during reloads (fresh connections)`);
  };

  async function commitVersion(n: number, files: Record<string, string | null> = {}): Promise<string> {
    return repo.commit({ Dockerfile: dockerfile(), 'berth.yml': BERTH_YML, 'index.html': `version ${n}\n`, up: 'ok\n', ...files }, `version ${n}`);
  }
  async function deployOk(n: number): Promise<string> {
    const res = await berth(['deploy', APP, '--wait', '--json'], stack.env, 300_000);
    assert.equal(res.code, 0, `deploy of version ${n} failed: ${res.stderr}\n${stack.tail('agent.log', 40)}`);
    const d = JSON.parse(res.stdout) as DeploymentJson;
    assert.equal(d.status, 'done');
    good.set(n, d.id);
    live = n;
    return d.id;
  }

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('zd', { agentEnv: { BERTH_KEEP_RELEASES: String(KEEP) } });
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    // An image named like berth's own but without its labels, an unlabelled dangling image and an
    // unlabelled container: retention must leave all three alone.
    const tag = `berth/${APP}:by-hand-${stack.serverName}`;
    docker(['tag', 'berth-test/busybox:latest', tag]);
    foreign.image = tag;
    const ctx = makeTmpDir('berth-zd-foreign-');
    writeFileSync(join(ctx, 'Dockerfile'), `FROM berth-test/busybox:latest\nRUN echo ${stack.serverName} > /marker\n`);
    foreign.dangling = docker(['build', '-q', ctx]);
    foreign.container = docker(['run', '-d', '--name', `zd-by-hand-${stack.serverName}`, '--label', 'purpose=not-berth', tag, 'sleep', '900']);
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
    await commitVersion(1);
    await deployOk(1);
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'version 1\n');
  });

  after(async () => {
    await stack?.destroy();
    for (const args of [
      ['rm', '-f', foreign.container],
      ['rmi', foreign.image],
      ['rmi', foreign.dangling],
    ]) {
      if (args[args.length - 1]) {
        try {
          docker(args);
        } catch {
          // already gone
        }
      }
    }
  });

  it('back-to-back redeploys under load: no failed request, each version flips in once', async (t) => {
    const load = await startLoad();
    try {
      for (let n = 2; n <= 5; n++) {
        await commitVersion(n);
        await deployOk(n);
        // Back to back, but every client has seen the version before the next one is triggered.
        await load.until(String(n));
      }
    } finally {
      const report = await load.stop();
      assertNoFailures(t, report);
      assertVersions(t, report, [1, 2, 3, 4, 5]);
    }
    // The health gate probed /up with the app's Host header, at the configured interval.
    const log = (await logText(good.get(5)!)).map((l) => l.text).join('\n');
    assert.match(log, /answers GET \/up \(200\)/);
  });

  it(`keeps exactly the last ${KEEP} releases; an unlabelled image, dangling image and container are untouched`, async () => {
    const want = [3, 4, 5].map((n) => `berth/${APP}:${good.get(n)}`).sort();
    await eventually(async () => appImages(), (imgs) => JSON.stringify(imgs) === JSON.stringify(want), 30_000);
    // Written to the deployment's log once the cleanup after its drain has finished.
    const cleanup = new RegExp(`cleanup: kept the last ${KEEP} release\\(s\\); removed \\d+ image\\(s\\).*reclaimed`);
    await eventually(async () => (await logText(good.get(5)!)).map((l) => l.text).join('\n'), (log) => cleanup.test(log), 20_000);
    assert.equal(docker(['inspect', '-f', '{{.State.Status}}', foreign.container]), 'running');
    assert.ok(docker(['image', 'inspect', '-f', '{{.Id}}', foreign.image]));
    assert.ok(docker(['image', 'inspect', '-f', '{{.Id}}', foreign.dangling]));
    // Only the live release runs.
    await eventually(async () => appContainers(), (cs) => cs.length === 1 && cs[0]!.startsWith(`${good.get(5)} running`), 20_000);
  });

  it('a version that never becomes healthy fails at health_checking; the old one serves throughout, nothing is left', async (t) => {
    const load = await startLoad();
    let id = '';
    try {
      // No /up: every probe answers 404, and after 5 of them the gate gives up.
      await commitVersion(6, { up: null, 'berth.yml': 'healthcheck: { path: /up, timeout: 30, interval: 0.2, attempts: 5 }\n' });
      const res = await berth(['deploy', APP, '--wait', '--json'], stack.env, 300_000);
      assert.notEqual(res.code, 0, 'deploy --wait fails');
      id = (JSON.parse(res.stdout) as DeploymentJson).id;
    } finally {
      const report = await load.stop();
      assertNoFailures(t, report);
      assertVersions(t, report, [live]);
    }
    const d = await details(id);
    assert.equal(d.status, 'failed');
    assert.match(d.reason ?? '', /^health check failed: GET \/up failed 5 health probes in a row \(last: 404\)/);
    assert.deepEqual(
      d.phases.map((p) => p.status),
      ['queued', 'fetching', 'building', 'starting', 'health_checking', 'failed'],
    );
    assert.deepEqual(appContainers().map((c) => c.split(' ')[0]), [good.get(live)], 'the new container is gone, the live one stays');
    assert.ok(!appImages().includes(`berth/${APP}:${id}`), 'the failed build left no image');
  });

  it('SIGKILL of the agent mid-build: after a restart the deploy is failed with a reason, nothing of it remains, the old version served throughout', async (t) => {
    const load = await startLoad();
    let id = '';
    try {
      await commitVersion(7, { Dockerfile: dockerfile(`RUN echo building-${stack.serverName} && sleep 25`) });
      const created = await berthJson<DeploymentJson>(['deploy', APP], stack.env);
      id = created.id;
      // Killed while the slow RUN step runs: its COPY layer already exists.
      await eventually(async () => (await logText(id)).map((l) => l.text).join('\n'), (log) => log.includes(`building-${stack.serverName}`), 60_000, 100);
      await stack.stopAgent('SIGKILL');
      await new Promise((r) => setTimeout(r, 1000));
      await stack.startAgent();
      await eventually(() => details(id), (d) => d.status === 'failed', 60_000);
    } finally {
      const report = await load.stop();
      assertNoFailures(t, report);
      assertVersions(t, report, [live]);
    }
    const d = await details(id);
    assert.equal(d.reason, 'agent restarted while the deploy was building');
    assert.deepEqual(appContainers().map((c) => c.split(' ')[0]), [good.get(live)]);
    assert.ok(!appImages().includes(`berth/${APP}:${id}`));
    // The layers the build had made (its COPY step) are removed too; the base image is not.
    const log = (await logText(id)).map((l) => l.text);
    const copyStep = log.findIndex((l) => /^Step \d+\/\d+ : COPY/.test(l));
    const layer = log.slice(copyStep + 1).map((l) => /^\s*---> ([0-9a-f]{12})$/.exec(l)?.[1]).find(Boolean);
    if (layer && !log.slice(copyStep, copyStep + 3).some((l) => /Using cache/.test(l))) {
      await eventually(
        async () => {
          try {
            execFileSync('docker', ['image', 'inspect', layer], { stdio: 'ignore' });
            return 'present';
          } catch {
            return 'gone';
          }
        },
        (s) => s === 'gone',
        30_000,
      );
    }
    assert.ok(docker(['image', 'inspect', '-f', '{{.Id}}', 'berth-test/busybox:latest']));
  });

  it('SIGKILL of the agent mid-health-check: the deploy ends failed, its container is removed, the old version served throughout', async (t) => {
    const load = await startLoad();
    let id = '';
    try {
      // Listens only after 20 s: the gate is still waiting when the agent dies.
      await commitVersion(8, { Dockerfile: dockerfile('', 'sleep 20; exec httpd -f -p $PORT -h /www') });
      id = (await berthJson<DeploymentJson>(['deploy', APP], stack.env)).id;
      await eventually(async () => (await logText(id)).map((l) => l.text).join('\n'), (log) => /waiting for the web process to accept connections/.test(log), 60_000, 100);
      assert.equal((await details(id)).status, 'health_checking');
      assert.ok(appContainers().some((c) => c.startsWith(`${id} running`)), 'the new container is running when the agent dies');
      await stack.stopAgent('SIGKILL');
      await new Promise((r) => setTimeout(r, 1000));
      await stack.startAgent();
      await eventually(() => details(id), (d) => d.status === 'failed', 60_000);
      await eventually(async () => appContainers().map((c) => c.split(' ')[0]), (ids) => ids.length === 1 && ids[0] === good.get(live), 30_000);
    } finally {
      const report = await load.stop();
      assertNoFailures(t, report);
      assertVersions(t, report, [live]);
    }
    assert.equal((await details(id)).reason, 'agent restarted while the deploy was health_checking');
    assert.ok(!appImages().includes(`berth/${APP}:${id}`));
  });

  it('rollback serves the previous release within seconds, under load, without building', async (t) => {
    const imagesBefore = appImages();
    const load = await startLoad();
    let result: { code: number; stdout: string; stderr: string };
    const started = Date.now();
    try {
      result = await berth(['rollback', APP, '--json'], stack.env, 120_000);
      if (result.code === 0) await load.until('4');
    } finally {
      const report = await load.stop();
      assertNoFailures(t, report);
      assertVersions(t, report, [5, 4]);
    }
    assert.equal(result.code, 0, `${result.stderr}\n${stack.tail('agent.log', 40)}`);
    t.diagnostic(`berth rollback took ${Date.now() - started} ms until the old release served and the deployment was done`);
    const d = JSON.parse(result.stdout) as Details;
    assert.equal(d.status, 'done');
    assert.equal(d.rollbackOf, good.get(4));
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'version 4\n');
    const full = await details(d.id);
    assert.equal(full.trigger, 'rollback');
    assert.deepEqual(
      full.phases.map((p) => p.status),
      ['queued', 'starting', 'health_checking', 'switching', 'done'],
      'a rollback neither fetches nor builds',
    );
    const log = await logText(d.id);
    assert.ok(!log.some((l) => l.stream === 'build'), 'no build output');
    assert.ok(log.some((l) => /nothing is fetched or built/.test(l.text)));
    assert.deepEqual(appImages(), imagesBefore, 'no image was built or removed');
    live = 4;
  });

  it('repeated rollbacks walk back; an explicit id goes anywhere kept; a pruned release fails clearly', async () => {
    const back = await berthJson<Details>(['rollback', APP], stack.env);
    assert.equal(back.rollbackOf, good.get(3));
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'version 3\n');

    const forward = await berthJson<Details>(['rollback', APP, good.get(5)!], stack.env);
    assert.equal(forward.status, 'done');
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'version 5\n');
    live = 5;

    // Version 2 went live once, but only the last 3 releases are kept on the server.
    const pruned = await berth(['rollback', APP, good.get(2)!, '--json'], stack.env, 120_000);
    assert.notEqual(pruned.code, 0);
    const failed = JSON.parse(pruned.stdout) as Details;
    assert.equal(failed.status, 'failed');
    assert.match(failed.reason ?? '', /^rollback failed: release \w+ is not kept on this server/);
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'version 5\n');

    const refused = await berth(['rollback', APP, good.get(5)!], stack.env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /already live/);
    assert.equal(refused.stderr.trim().split('\n').length, 1);

    // Rollbacks re-activate kept releases: still exactly KEEP images.
    assert.equal(appImages().length, KEEP);
  });

  it('cancels a running deploy (berth deploy --cancel) and a queued one (berth deployments cancel)', async () => {
    await commitVersion(9, { Dockerfile: dockerfile(`RUN echo slow-${stack.serverName} && sleep 30`) });
    const running = await berthJson<DeploymentJson>(['deploy', APP], stack.env);
    await eventually(async () => (await logText(running.id)).map((l) => l.text).join('\n'), (log) => log.includes(`slow-${stack.serverName}`), 60_000, 100);
    // Triggered while the first one builds: it waits its turn (a running deploy is never superseded).
    const queued = await berthJson<DeploymentJson>(['deploy', APP], stack.env);

    const one = await berth(['deployments', 'cancel', queued.id, '--json'], stack.env);
    assert.equal(one.code, 0, one.stderr);
    assert.equal((JSON.parse(one.stdout) as Array<{ status: string }>)[0]!.status, 'cancelled');

    const all = await berth(['deploy', '--cancel', APP, '--json'], stack.env);
    assert.equal(all.code, 0, all.stderr);
    const [r] = JSON.parse(all.stdout) as Array<{ id: string; status: string; cancelPending: boolean }>;
    assert.equal(r!.id, running.id);
    assert.equal(r!.status, 'cancelled');
    const d = await details(running.id);
    assert.match(d.reason ?? '', /cancelled by a user \(while building\)/);
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'version 5\n');
    assert.ok(!appImages().includes(`berth/${APP}:${running.id}`));

    const none = await berth(['deploy', '--cancel', APP], stack.env);
    assert.notEqual(none.code, 0);
    assert.match(none.stderr, /no queued or running deployment/);
    const done = await berth(['deployments', 'cancel', running.id], stack.env);
    assert.notEqual(done.code, 0);
    assert.match(done.stderr, /already finished \(cancelled\)/);
  });

  it('a phase that overruns its deadline fails the deploy with the phase and the setting named', async () => {
    // A fresh agent with a 3 s build deadline: a 30 s RUN step cannot make it.
    await stack.stopAgent();
    stack.extraAgentEnv.BERTH_BUILD_TIMEOUT_S = '3';
    await stack.startAgent();
    try {
      await commitVersion(10, { Dockerfile: dockerfile(`RUN echo deadline-${stack.serverName} && sleep 30`) });
      const res = await berth(['deploy', APP, '--wait', '--json'], stack.env, 120_000);
      assert.notEqual(res.code, 0);
      const d = JSON.parse(res.stdout) as DeploymentJson;
      assert.equal(d.status, 'failed');
      assert.match(d.reason ?? '', /^build failed: the building phase did not finish within its deadline of 3 s \(BERTH_BUILD_TIMEOUT_S\)/);
      assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'version 5\n');
    } finally {
      await stack.stopAgent();
      delete stack.extraAgentEnv.BERTH_BUILD_TIMEOUT_S;
      await stack.startAgent();
    }
  });
});
