// `berth scale` end to end, with real parts (control plane + agent processes, the Docker engine, a
// private nginx, Git): a busybox app with a web and a worker process is scaled without a rebuild
// through the health gate, keeps its override across a normal deploy, is reset, refuses bad input,
// and a scale whose new containers never become healthy leaves the live release serving.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import type { DeploymentJson } from './helpers/fixtures.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { Stack } from './helpers/stack.js';

// Unique per run: the app's volume is named after it, and parallel runs share one Docker engine.
const APP = `sc-${Math.random().toString(36).slice(2, 8)}`;
const DOMAIN = `${APP}.example.test`;
const VOLUME = `berth-${APP}_data`;

// busybox httpd serves the repo's files; a web container refuses to start while /data/broken
// exists on the app's volume (how the test makes a scale's new containers fail their health gate).
const DOCKERFILE = `FROM berth-test/busybox:latest
COPY . /www
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
`;
const BERTH_YML = `processes:
  web: "if [ -f /data/broken ]; then echo broken; exit 1; fi; exec httpd -f -p $PORT -h /www"
  worker: "exec sleep 3600"
volumes:
  data: { target: /data }
healthcheck: { path: /up, timeout: 30, interval: 0.2 }
`;

interface ScaleJson extends DeploymentJson {
  rollbackOf: string | null;
  scale: { override: Record<string, number> | null };
}

function docker(args: string[]): string {
  return execFileSync('docker', args, { encoding: 'utf8' }).trim();
}

describe('berth scale: replicas without a rebuild, through the health gate', { timeout: 600_000 }, () => {
  let stack: Stack;
  let repo: TestRepo;

  /** Running containers of a process: deployment id and image id of each. */
  const running = (process: string) =>
    docker(['ps', '--format', '{{.Label "berth.deployment"}} {{.Image}}', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.process=${process}`, '--filter', `label=berth.server=${stack.serverName}`])
      .split('\n')
      .filter(Boolean);
  const imageIds = () => docker(['images', '-q', '--no-trunc', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.server=${stack.serverName}`]).split('\n').filter(Boolean).sort();
  const counts = async (want: { web: number; worker: number }) =>
    eventually(async () => ({ web: running('web').length, worker: running('worker').length }), (c) => c.web === want.web && c.worker === want.worker, 60_000);
  const serves = async (text: string) => assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, text);
  const scale = async (args: string[]) => {
    const res = await berth(['scale', APP, ...args, '--wait', '--json'], stack.env, 180_000);
    return { ...res, json: res.stdout ? (JSON.parse(res.stdout) as ScaleJson) : null };
  };
  const deploy = async () => {
    const res = await berth(['deploy', APP, '--wait', '--json'], stack.env, 300_000);
    assert.equal(res.code, 0, `deploy failed: ${res.stderr}\n${stack.tail('agent.log', 40)}`);
    return JSON.parse(res.stdout) as DeploymentJson;
  };
  const override = async () => (await berthJson<{ scale?: { override: Record<string, number> | null } }>(['app', 'show', APP], stack.env)).scale?.override ?? null;

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('scale');
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
    await repo.commit({ Dockerfile: DOCKERFILE, 'berth.yml': BERTH_YML, 'index.html': 'version 1\n', up: 'ok\n' }, 'version 1');
    await deploy();
    await serves('version 1\n');
    await counts({ web: 1, worker: 1 });
  });

  after(async () => {
    await stack?.destroy();
    try {
      docker(['volume', 'rm', '-f', VOLUME]);
    } catch {
      // never created
    }
  });

  it('worker=2 web=2: a scale deployment of the live release, no new image, served by both web replicas', async () => {
    const images = imageIds();
    const live = running('web')[0]!.split(' ')[1];
    const res = await scale(['worker=2', 'web=2']);
    assert.equal(res.code, 0, `scale failed: ${res.stderr}\n${stack.tail('agent.log', 40)}`);
    const d = res.json!;
    assert.equal(d.status, 'done');
    assert.equal(d.trigger, 'scale');
    assert.deepEqual(d.scale.override, { worker: 2, web: 2 });
    await counts({ web: 2, worker: 2 });
    // Same image for every new container, and no image built.
    assert.deepEqual(imageIds(), images);
    for (const c of [...running('web'), ...running('worker')]) assert.equal(c, `${d.id} ${live}`);
    const log = (await berthJson<{ lines: Array<{ text: string }> }>(['deployments', 'logs', d.id], stack.env)).lines.map((l) => l.text).join('\n');
    assert.match(log, /scaling the live release/);
    assert.match(log, /worker: 2 containers \(set with berth scale; the repo says 1\)/);
    assert.doesNotMatch(log, /Step \d|building/i);
    // nginx balances over both web replicas, and serves.
    const site = readFileSync(join(stack.nginxPrefix, 'sites', `berth-${APP}.conf`), 'utf8');
    assert.equal(site.match(/server 127\.0\.0\.1:\d+;/g)?.length, 2, site);
    await serves('version 1\n');
    assert.deepEqual(await override(), { worker: 2, web: 2 });
    const shown = await berth(['app', 'show', APP], stack.env);
    assert.match(shown.stdout, /scale\s+worker=2, web=2 \(set with berth scale/);
    const history = await berthJson<ScaleJson[]>(['deployments', APP], stack.env);
    assert.equal(history[0]!.id, d.id);
  });

  it('a normal deploy afterwards builds the new commit and keeps the override; so does a rollback', async () => {
    await repo.commit({ 'index.html': 'version 2\n' }, 'version 2');
    const d = await deploy();
    await counts({ web: 2, worker: 2 });
    for (const c of [...running('web'), ...running('worker')]) assert.ok(c.startsWith(`${d.id} `), c);
    await serves('version 2\n');
    // A rollback brings back the older release at the counts set now, then forward again.
    const back = await berthJson<ScaleJson>(['rollback', APP], stack.env);
    assert.equal(back.status, 'done', back.reason ?? '');
    await serves('version 1\n');
    await counts({ web: 2, worker: 2 });
    const forward = await berthJson<ScaleJson>(['rollback', APP, d.id], stack.env);
    assert.equal(forward.status, 'done', forward.reason ?? '');
    await serves('version 2\n');
    await counts({ web: 2, worker: 2 });
  });

  it('refuses bad input with a clear error and changes nothing', async () => {
    const before = { web: running('web').sort(), worker: running('worker').sort() };
    const deployments = (await berthJson<ScaleJson[]>(['deployments', APP], stack.env)).length;
    const cases: Array<[string[], RegExp]> = [
      [['Web!=2'], /invalid process name "Web!"/],
      [['worker=-1'], /invalid scale for worker: expected 0 or more/],
      [['worker=33'], /at most 32 containers/],
      [['worker'], /expected PROCESS=N/],
      [['web=0'], /web must keep at least 1 container while .* has domains/],
      [[], /nothing to scale/],
    ];
    for (const [args, message] of cases) {
      const res = await berth(['scale', APP, ...args], stack.env);
      assert.notEqual(res.code, 0, args.join(' '));
      assert.match(res.stderr, message);
    }
    const unknownApp = await berth(['scale', 'no-such-app', 'web=2'], stack.env);
    assert.notEqual(unknownApp.code, 0);
    assert.match(unknownApp.stderr, /app "no-such-app" (does not exist|not found)|no app/i);
    assert.equal((await berthJson<ScaleJson[]>(['deployments', APP], stack.env)).length, deployments);
    assert.deepEqual(await override(), { worker: 2, web: 2 });
    assert.deepEqual({ web: running('web').sort(), worker: running('worker').sort() }, before);
  });

  it('a scale while a deployment of the app is unfinished is refused (it would bring back the release that one replaces)', async () => {
    const queued = await berthJson<ScaleJson>(['deploy', APP], stack.env);
    const refused = await berth(['scale', APP, 'worker=1'], stack.env);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, new RegExp(`deployment ${queued.id} of ${APP} is (queued|fetching|building|starting|health_checking|switching): scale once it has finished, or cancel it`));
    const done = await berthJson<{ deployment: ScaleJson }>(['deployments', 'logs', queued.id, '-f'], stack.env);
    assert.equal(done.deployment.status, 'done');
    assert.deepEqual(await override(), { worker: 2, web: 2 });
    await counts({ web: 2, worker: 2 });
  });

  it('a process the live release does not have fails the scale deployment clearly; the release keeps serving', async () => {
    const res = await scale(['cron=1']);
    assert.notEqual(res.code, 0);
    assert.equal(res.json?.status, 'failed');
    assert.match(res.json?.reason ?? '', /the live release has no process "cron" \(it has web, worker\)/);
    await counts({ web: 2, worker: 2 });
    await serves('version 2\n');
    // Take the name back out: reset, then the counts again (reset is tested on its own below).
    assert.equal((await scale(['--reset'])).code, 0);
    assert.equal((await scale(['web=2', 'worker=2'])).code, 0);
  });

  it('a scale whose new web containers fail the health gate leaves the live release serving', async () => {
    await counts({ web: 2, worker: 2 }); // the previous release's containers drained
    const [liveWeb] = docker(['ps', '-q', '--filter', `label=berth.app=${APP}`, '--filter', 'label=berth.process=web', '--filter', `label=berth.server=${stack.serverName}`]).split('\n');
    const liveContainers = [...running('web'), ...running('worker')].sort();
    docker(['exec', liveWeb!, 'touch', '/data/broken']);
    try {
      const res = await scale(['web=3']);
      assert.notEqual(res.code, 0);
      assert.equal(res.json?.status, 'failed');
      assert.match(res.json?.reason ?? '', /health/i);
      await serves('version 2\n');
      await eventually(async () => [...running('web'), ...running('worker')].sort(), (cs) => JSON.stringify(cs) === JSON.stringify(liveContainers), 30_000);
    } finally {
      docker(['exec', liveWeb!, 'rm', '-f', '/data/broken']);
    }
  });

  it('the dashboard shows which scale applies and sets one from the processes section', async () => {
    const origin = new URL(stack.cpUrl).origin;
    const login = await fetch(`${stack.cpUrl}/ui/login`, { method: 'POST', redirect: 'manual', headers: { origin }, body: new URLSearchParams({ token: stack.adminToken }) });
    assert.equal(login.status, 303);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const pageHtml = await (await fetch(`${stack.cpUrl}/ui/apps/${APP}`, { headers: { cookie } })).text();
    // The failed web=3 above is still the recorded override: the page says what applies.
    assert.match(pageHtml, /overriding the repository(&#39;|')s <code>scale:<\/code>: <code>web=3<\/code>, <code>worker=2<\/code>/);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(pageHtml)![1]!;
    const post = (path: string, form: Record<string, string>) =>
      fetch(`${stack.cpUrl}${path}`, { method: 'POST', redirect: 'manual', headers: { cookie, origin }, body: new URLSearchParams({ _csrf: csrf, ...form }) });
    const bad = await post(`/ui/apps/${APP}/scale`, { process: 'worker', count: '-2' });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /invalid scale for worker/);
    const res = await post(`/ui/apps/${APP}/scale`, { process: 'worker', count: '1' });
    assert.equal(res.status, 303);
    const id = /deployment=([a-z0-9]+)/.exec(res.headers.get('location') ?? '')![1]!;
    const done = await eventually(async () => (await berthJson<ScaleJson>(['deployments', 'logs', id], stack.env).catch(() => null)) as unknown as { deployment: ScaleJson } | null, (d) => d?.deployment.status === 'done' || d?.deployment.status === 'failed', 120_000, 500);
    assert.equal(done!.deployment.status, 'done', done!.deployment.reason ?? '');
    assert.equal(done!.deployment.trigger, 'scale');
    await counts({ web: 3, worker: 1 });
    await serves('version 2\n');
  });

  it('--reset goes back to the repo scale through another scale deployment', async () => {
    const res = await scale(['--reset']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.json?.trigger, 'scale');
    assert.equal(res.json?.scale.override, null);
    await counts({ web: 1, worker: 1 });
    await serves('version 2\n');
    assert.equal(await override(), null);
    assert.match((await berth(['app', 'show', APP], stack.env)).stdout, /scale\s+the repo's/);
    const again = await berth(['scale', APP, '--reset'], stack.env);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /no scale set with berth scale/);
  });
});
