// End to end, with real parts only: the compiled CLI starts a control plane and an agent as
// processes; a Dockerfile app in a bare Git repo is built by the real Docker engine and served
// through a private nginx. This is the walking skeleton a user sees.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import WebSocket from 'ws';
import { busyboxDockerfile, type DeploymentJson } from './helpers/fixtures.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { Stack } from './helpers/stack.js';
import { makeTmpDir } from './helpers/tmp.js';

const APP = 'e2e-web';
const DOMAIN = 'web.e2e.test';

const dockerfile = busyboxDockerfile;
type Deployment = DeploymentJson;

describe('walking skeleton: Git repo → image → container → nginx', () => {
  let stack: Stack;
  let repo: TestRepo;
  const commits: string[] = [];

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('e2e');
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    commits.push(
      repo.commit({
        Dockerfile: dockerfile(),
        '.dockerignore': 'secret.txt\n.git\n',
        'index.html': 'hello v1\n',
        'secret.txt': 'must not reach the image\n',
      }),
    );
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
  });

  after(async () => {
    await stack?.destroy();
  });

  it('creates an app and a domain through the CLI', async () => {
    const app = await berthJson<{ name: string; repo: string; branch: string; server: string; domains: string[] }>(
      ['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName],
      stack.env,
    );
    assert.deepEqual({ name: app.name, repo: app.repo, branch: app.branch, server: app.server }, { name: APP, repo: repo.url, branch: 'main', server: stack.serverName });
    const domain = await berthJson<{ domain: string; app: string }>(['domain', 'add', APP, DOMAIN.toUpperCase()], stack.env);
    assert.equal(domain.domain, DOMAIN, 'domains are stored lower-cased');
    const domains = await berthJson<Array<{ domain: string }>>(['domain', 'ls', APP], stack.env);
    assert.deepEqual(domains.map((d) => d.domain), [DOMAIN]);
  });

  it('deploys the branch head and serves it through nginx', async () => {
    const res = await berth(['deploy', APP, '--wait'], stack.env);
    assert.equal(res.code, 0, `deploy failed:\n${res.stdout}\n${res.stderr}\n${stack.tail('agent.log')}`);
    assert.match(res.stdout, /COPY \. \/www/, 'the build log is streamed live to the CLI');
    const page = await httpGet(stack.httpPort, DOMAIN);
    assert.equal(page.status, 200);
    assert.equal(page.body, 'hello v1\n');
    const secret = await httpGet(stack.httpPort, DOMAIN, '/secret.txt');
    assert.equal(secret.status, 404, '.dockerignore is honoured: secret.txt is not in the image');
    const other = await httpGet(stack.httpPort, 'unknown.e2e.test');
    assert.equal(other.status, 404, 'an unknown host is not routed to the app');

    const [latest] = await berthJson<Deployment[]>(['deployments', APP], stack.env);
    assert.equal(latest?.status, 'done');
    assert.equal(latest?.commit, commits[0]);
    assert.ok(latest?.finishedAt, 'a finished deploy has finishedAt');
  });

  it('deploys a new commit and serves the new version, leaving one web container', async () => {
    commits.push(repo.commit({ 'index.html': 'hello v2\n' }));
    const res = await berth(['deploy', APP, '--wait', '--json'], stack.env);
    assert.equal(res.code, 0, res.stderr);
    const deployment = JSON.parse(res.stdout) as Deployment;
    assert.equal(deployment.status, 'done');
    assert.equal(deployment.commit, commits[1]);
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'hello v2\n');
    // The old container is drained and removed shortly after the switch.
    await eventually(
      async () =>
        execFileSync('docker', ['ps', '-aq', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.server=${stack.serverName}`], { encoding: 'utf8' })
          .split('\n')
          .filter(Boolean).length,
      (n) => n === 1,
      20_000,
    );
  });

  it('a failing build fails the deploy with the build error in its log, and the old version keeps serving', async () => {
    commits.push(repo.commit({ Dockerfile: dockerfile('RUN echo about-to-fail && false'), 'index.html': 'hello broken\n' }));
    const res = await berth(['deploy', APP, '--wait'], stack.env);
    assert.notEqual(res.code, 0, 'deploy --wait exits non-zero on failure');
    assert.match(res.stderr, /failed/);
    assert.match(res.stdout, /about-to-fail/, 'the failing step output is in the streamed log');
    const [latest] = await berthJson<Deployment[]>(['deployments', APP], stack.env);
    assert.equal(latest?.status, 'failed');
    assert.match(latest?.reason ?? '', /build/i);
    const logs = (await (await fetch(`${stack.cpUrl}/api/deployments/${latest!.id}/logs`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as {
      lines: Array<{ text: string }>;
    };
    assert.ok(logs.lines.some((l) => /returned a non-zero code|non-zero/.test(l.text)), 'the control plane stored the build error');
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'hello v2\n', 'old version still served');
  });

  it('deploys a given commit with --commit (abbreviated SHA)', async () => {
    const res = await berth(['deploy', APP, '--commit', commits[0]!.slice(0, 10), '--wait', '--json'], stack.env);
    assert.equal(res.code, 0, res.stderr);
    assert.equal((JSON.parse(res.stdout) as Deployment).commit, commits[0]);
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'hello v1\n');
  });

  it('follows domain changes without a deploy', async () => {
    await berthJson(['domain', 'add', APP, 'www.e2e.test'], stack.env);
    await eventually(() => httpGet(stack.httpPort, 'www.e2e.test'), (r) => r.status === 200 && r.body === 'hello v1\n');
    await berthJson(['domain', 'rm', APP, 'www.e2e.test'], stack.env);
    await eventually(() => httpGet(stack.httpPort, 'www.e2e.test'), (r) => r.status === 404);
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'hello v1\n');
  });

  describe('bad input gets a clear error, creates nothing, and the daemons keep running', () => {
    const marker = join(makeTmpDir('berth-hostile-'), 'pwned');

    it('refuses invalid app names', async () => {
      for (const name of ['Bad_Name', '-leading', 'a'.repeat(64), 'x;rm -rf']) {
        const res = await berth(['app', 'create', '--repo', repo.url, '--server', stack.serverName, '--', name], stack.env);
        assert.notEqual(res.code, 0);
        assert.match(res.stderr, /invalid app name/, `for ${JSON.stringify(name)}: ${res.stderr}`);
        assert.equal(res.stderr.trim().split('\n').length, 1, 'one-line error');
      }
    });

    it('refuses hostile repo URLs', async () => {
      for (const url of [`--upload-pack=touch ${marker}`, `ext::sh -c touch% ${marker}`, `-oProxyCommand=touch ${marker}`, 'fd::17']) {
        const res = await berth(['app', 'create', 'hostile', `--repo=${url}`, '--server', stack.serverName], stack.env);
        assert.notEqual(res.code, 0, `accepted ${url}`);
        assert.match(res.stderr, /repo URL/, res.stderr);
      }
      assert.equal(existsSync(marker), false);
    });

    it('refuses an unknown server and a bad token', async () => {
      const unknown = await berth(['app', 'create', 'orphan', '--repo', repo.url, '--server', 'nope'], stack.env);
      assert.notEqual(unknown.code, 0);
      assert.match(unknown.stderr, /server "nope" does not exist/);
      const badToken = await berth(['app', 'ls'], { ...stack.env, BERTH_TOKEN: 'wrong' });
      assert.notEqual(badToken.code, 0);
      assert.match(badToken.stderr, /401|token/i);
      const apps = await berthJson<Array<{ name: string }>>(['app', 'ls'], stack.env);
      assert.deepEqual(apps.map((a) => a.name), [APP], 'nothing was created');
    });

    it('answers a malformed WebSocket message with an error and keeps serving', async () => {
      const creds = JSON.parse(readFileSync(join(stack.agentData, 'agent.json'), 'utf8')) as { credential: string };
      const wsUrl = stack.cpUrl.replace('http', 'ws') + '/api/agent/ws';
      const bad = new WebSocket(wsUrl, { headers: { authorization: 'Bearer not-a-credential' } });
      const badResult = await new Promise<string>((resolve) => {
        bad.on('unexpected-response', (_req, res) => resolve(String(res.statusCode)));
        bad.on('open', () => resolve('open'));
        bad.on('error', () => resolve('error'));
      });
      assert.equal(badResult, '401');
      // A second connection with the real credential replaces the agent's; the agent reconnects afterwards.
      const ws = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${creds.credential}` } });
      await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
      const reply = new Promise<string>((r) => ws.once('message', (m) => r(String(m))));
      ws.send('{"type":"deploy_progress","v":1,"deploymentId":"../../etc","status":"done"');
      assert.match(await reply, /"type":"error"/);
      ws.close();
      assert.equal((await fetch(`${stack.cpUrl}/healthz`)).status, 200);
      assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'hello v1\n');
      await eventually(
        () => berthJson<Array<{ name: string; connected: boolean }>>(['server', 'ls'], stack.env),
        (list) => list.some((s) => s.connected),
        40_000,
      );
    });
  });

  it('app rm removes its containers, images, kept releases and nginx config, and touches nothing it does not own', async () => {
    // A foreign container, and a berth-labelled one owned by another server on the same engine.
    const run = (labels: string[]) =>
      execFileSync('docker', ['run', '-d', ...labels.flatMap((l) => ['--label', l]), 'berth-test/busybox:latest', 'sleep', '300'], { encoding: 'utf8' }).trim();
    const foreign = run(['test=foreign']);
    const otherServer = run(['berth.managed=true', `berth.app=${APP}`, 'berth.deployment=other0001', 'berth.process=web', 'berth.server=another']);
    const images = () => execFileSync('docker', ['images', '-q', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.server=${stack.serverName}`], { encoding: 'utf8' }).trim();
    const snapshots = () => {
      const db = new Database(join(stack.agentData, 'agent.db'), { readonly: true });
      try {
        return (db.prepare('SELECT COUNT(*) AS n FROM release_history WHERE app = ?').get(APP) as { n: number }).n;
      } finally {
        db.close();
      }
    };
    assert.notEqual(images(), '', 'the deployed releases have images');
    assert.ok(snapshots() > 0, 'and kept snapshots for rollback');
    try {
      await berthJson(['app', 'rm', APP], stack.env);
      await eventually(() => httpGet(stack.httpPort, DOMAIN), (r) => r.status === 404, 30_000);
      await eventually(
        async () => execFileSync('docker', ['ps', '-aq', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.server=${stack.serverName}`], { encoding: 'utf8' }).trim(),
        (out) => out === '',
        30_000,
      );
      assert.equal(existsSync(join(stack.nginxPrefix, 'sites', `berth-${APP}.conf`)), false);
      assert.match(readFileSync(join(stack.nginxPrefix, 'sites', 'berth_base.conf'), 'utf8'), /berth-generation/, 'the base config stays');
      // Nothing kept for a rollback of an app that no longer exists: images and snapshots (with its env) go.
      await eventually(async () => images(), (out) => out === '', 30_000);
      // The snapshots go in the same prune, just after the images (the agent measures the disk between).
      await eventually(async () => snapshots(), (n) => n === 0, 10_000);
      const state = (id: string) => execFileSync('docker', ['inspect', '-f', '{{.State.Status}}', id], { encoding: 'utf8' }).trim();
      assert.equal(state(foreign), 'running', 'a container without berth labels is never touched');
      assert.equal(state(otherServer), 'running', "another server's berth container is never touched");
    } finally {
      execFileSync('docker', ['rm', '-f', foreign, otherServer], { stdio: 'ignore' });
      rmSync(join(stack.root, 'repo'), { recursive: true, force: true });
    }
  });
});
