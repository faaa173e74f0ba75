// Triggers (issue 6), with real parts: push webhooks signed the way GitHub, GitLab, Gitea/Forgejo
// and Bitbucket Cloud sign them, the CI deploy webhook, and live logs — against a control plane and
// an agent running as processes, a real Docker engine and a private nginx. A fuzz pass hits the
// webhook endpoints of an in-process control plane with thousands of malformed requests.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../control-plane/main.js';
import { HOOKS_PREFIX } from '../control-plane/webhooks/routes.js';
import { busyboxDockerfile, type DeploymentJson } from './helpers/fixtures.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { Stack } from './helpers/stack.js';
import { AUTH_HEADER, AUTH_HEADERS, delivery, hmac, HOSTS, post, ZERO, type Delivery, type Host, type PushSpec } from './helpers/push-delivery.js';
import { makeTmpDir } from './helpers/tmp.js';

// ---- end to end ----------------------------------------------------------------------------------

const APP = 'hooks-web';
const DOMAIN = 'hooks.e2e.test';
const dockerfile = busyboxDockerfile;
type Deployment = DeploymentJson;

describe('webhooks end to end: Git hosts, CI, live logs, offline agent', () => {
  let stack: Stack;
  let repo: TestRepo;
  let pushUrl = '';
  let deployUrl = '';
  let secrets = { push: '', deploy: '' };

  const api = async <T = any>(path: string): Promise<T> => {
    const res = await fetch(stack.cpUrl + path, { headers: { authorization: `Bearer ${stack.adminToken}` } });
    assert.equal(res.status, 200, `GET ${path}`);
    return (await res.json()) as T;
  };
  const deployments = () => api<Deployment[]>(`/api/apps/${APP}/deployments`);
  const waitFinished = (id: string, timeoutMs = 60_000) =>
    eventually(
      () => api<Deployment>(`/api/deployments/${id}`),
      (d) => ['done', 'failed', 'cancelled', 'superseded'].includes(d.status),
      timeoutMs,
      100,
    );
  const page = async () => (await httpGet(stack.httpPort, DOMAIN)).body;

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('hooks');
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ Dockerfile: dockerfile(), 'index.html': 'first\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
  });

  after(async () => {
    await stack?.destroy();
  });

  it('app show prints the webhook URLs and secrets; rotate replaces them', async () => {
    const shown = await berth(['app', 'show', APP], stack.env);
    assert.equal(shown.code, 0, shown.stderr);
    const json = await berthJson<{ webhooks: { push: string; deploy: string }; webhookSecrets: { push: string; deploy: string } }>(['app', 'show', APP], stack.env);
    assert.equal(json.webhooks.push, `${stack.cpUrl}/hooks/${APP}/push`);
    assert.equal(json.webhooks.deploy, `${stack.cpUrl}/hooks/${APP}/deploy`);
    for (const v of [json.webhooks.push, json.webhookSecrets.push, json.webhooks.deploy, json.webhookSecrets.deploy]) assert.ok(shown.stdout.includes(v), `app show prints ${v}`);
    const listed = await berthJson<Array<Record<string, unknown>>>(['app', 'ls'], stack.env);
    assert.equal(JSON.stringify(listed).includes(json.webhookSecrets.push), false, 'listings never carry secrets');

    const rotated = await berthJson<typeof json>(['app', 'webhook', 'rotate', APP, '--push'], stack.env);
    assert.notEqual(rotated.webhookSecrets.push, json.webhookSecrets.push);
    assert.equal(rotated.webhookSecrets.deploy, json.webhookSecrets.deploy, '--push leaves the deploy token');
    const old = await post(rotated.webhooks.push, delivery('github', json.webhookSecrets.push, { ref: 'refs/heads/main', after: 'b'.repeat(40) }));
    assert.equal(old.status, 401, 'the old push secret stops working at once');
    const both = await berthJson<typeof json>(['app', 'webhook', 'rotate', APP], stack.env);
    assert.notEqual(both.webhookSecrets.deploy, json.webhookSecrets.deploy);
    pushUrl = both.webhooks.push;
    deployUrl = both.webhooks.deploy;
    secrets = both.webhookSecrets;
    assert.deepEqual(await deployments(), []);
  });

  it('a signed push from each Git host deploys exactly the pushed commit', async () => {
    for (const host of HOSTS) {
      const pushed = repo.commit({ 'index.html': `pushed via ${host}\n` }, `via ${host}`);
      // The branch moves on before the webhook arrives: the pushed commit, not the head, must deploy.
      repo.commit({ 'index.html': `newer than the ${host} push\n` }, 'newer');
      const res = await post(pushUrl, delivery(host, secrets.push, { ref: 'refs/heads/main', after: pushed }));
      assert.equal(res.status, 202, `${host}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.deployed, true);
      assert.equal(res.body.host, host);
      assert.equal(res.body.agentConnected, true);
      assert.equal(res.body.deployment.commit, pushed);
      assert.equal(res.body.deployment.trigger, 'push');
      assert.equal(res.body.statusUrl, `${stack.cpUrl}/api/deployments/${res.body.deployment.id}`);
      const final = await waitFinished(res.body.deployment.id);
      assert.equal(final.status, 'done', `${host}: ${final.reason}\n${stack.tail('agent.log', 20)}`);
      assert.equal(final.commit, pushed);
      assert.equal(await page(), `pushed via ${host}\n`);
    }
  });

  it('refuses wrong, missing and truncated signatures, tampered and oversized bodies, and creates nothing', async () => {
    const before = (await deployments()).length;
    const target = repo.commit({ 'index.html': 'must never deploy\n' });
    for (const host of HOSTS) {
      const good = () => delivery(host, secrets.push, { ref: 'refs/heads/main', after: target });
      const cases: Array<[string, Delivery, number, RegExp]> = [];
      cases.push(['wrong secret', delivery(host, 'not-the-secret', { ref: 'refs/heads/main', after: target }), 401, /does not match/]);
      const missing = good();
      for (const h of AUTH_HEADERS[host]) delete missing.headers[h];
      cases.push(['missing signature', missing, 401, /^missing /]);
      if (host !== 'gitlab') {
        const truncated = good();
        truncated.headers[AUTH_HEADER[host]] = truncated.headers[AUTH_HEADER[host]]!.slice(0, -8);
        cases.push(['truncated signature', truncated, 400, /^malformed /]);
      } else {
        const truncated = good();
        truncated.headers['x-gitlab-token'] = secrets.push.slice(0, -4);
        cases.push(['truncated token', truncated, 401, /does not match/]);
      }
      const tampered = good();
      const text = tampered.body.toString('utf8').replace(target, target.slice(0, -1) + (target.endsWith('0') ? '1' : '0'));
      tampered.body = Buffer.from(text);
      // GitLab signs nothing (it sends the secret itself), so a tampered body cannot be told apart there.
      if (host !== 'gitlab') cases.push(['tampered body', tampered, 401, /does not match/]);
      const oversized = good();
      oversized.body = Buffer.concat([oversized.body.subarray(0, -1), Buffer.from(`, "padding": "${'x'.repeat(6 * 1024 * 1024)}"}`)]);
      cases.push(['oversized body', oversized, 413, /larger than 1 MB/]);
      for (const [what, d, status, error] of cases) {
        const res = await post(pushUrl, d);
        assert.equal(res.status, status, `${host} ${what}: ${JSON.stringify(res.body)}`);
        assert.match(res.body.error, error, `${host} ${what}`);
      }
    }
    const unknownHost = await post(pushUrl, { headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') });
    assert.equal(unknownHost.status, 400);
    assert.match(unknownHost.body.error, /not a push webhook berth knows/);
    // An app that does not exist answers like a wrong signature: no oracle for app names.
    const noApp = await post(`${stack.cpUrl}/hooks/no-such-app/push`, delivery('github', secrets.push, { ref: 'refs/heads/main', after: target }));
    assert.equal(noApp.status, 401);
    assert.match(noApp.body.error, /X-Hub-Signature-256 does not match/);
    assert.equal((await deployments()).length, before, 'nothing was created');
    assert.equal((await fetch(`${stack.cpUrl}/healthz`)).status, 200);
  });

  it('a redelivered event deploys once; another branch, a tag, a branch deletion and a ping deploy nothing', async () => {
    const count = (await deployments()).length;
    const sha = repo.commit({ 'index.html': 'delivered once\n' });
    const d = delivery('github', secrets.push, { ref: 'refs/heads/main', after: sha });
    const first = await post(pushUrl, d);
    assert.equal(first.status, 202);
    const again = await post(pushUrl, d);
    assert.equal(again.status, 200);
    assert.equal(again.body.deployed, false);
    assert.equal(again.body.duplicate, true);
    assert.equal(again.body.deployment.id, first.body.deployment.id);
    assert.match(again.body.message, /already handled/);
    // Bitbucket's and GitLab's redeliveries too.
    for (const host of ['bitbucket', 'gitlab'] as const) {
      const id = randomUUID();
      const other = repo.commit({ 'index.html': `once via ${host}\n` });
      const a = await post(pushUrl, delivery(host, secrets.push, { ref: 'refs/heads/main', after: other, deliveryId: id }));
      const b = await post(pushUrl, delivery(host, secrets.push, { ref: 'refs/heads/main', after: other, deliveryId: id }));
      assert.deepEqual([a.status, b.status, b.body.duplicate], [202, 200, true], host);
    }

    const ignored: Array<[Host, PushSpec, RegExp]> = [
      ['github', { ref: 'refs/heads/feature/x', after: sha }, /push to branch feature\/x: the app deploys branch main/],
      ['github', { ref: 'refs/tags/v1.0.0', after: sha }, /tag push \(v1\.0\.0\)/],
      ['github', { ref: 'refs/heads/main', after: ZERO }, /branch main was deleted/],
      ['github', { ref: 'refs/heads/main', after: sha, event: 'ping' }, /ping/],
      ['github', { ref: 'refs/heads/main', after: sha, event: 'issues' }, /event "issues" is not a push/],
      ['gitlab', { ref: 'refs/heads/develop', after: sha }, /push to branch develop/],
      ['gitlab', { ref: 'refs/tags/v2', after: sha }, /tag push \(v2\)/],
      ['gitea', { ref: 'refs/heads/main', after: ZERO }, /branch main was deleted/],
      ['gitea', { ref: 'refs/heads/other', after: sha }, /push to branch other/],
      ['bitbucket', { ref: 'refs/heads/other', after: sha }, /push to branch other/],
      ['bitbucket', { ref: 'refs/tags/v3', after: sha }, /tag push \(v3\)/],
      ['bitbucket', { ref: 'refs/heads/main', after: ZERO }, /branch main was deleted/],
      ['bitbucket', { ref: 'refs/heads/main', after: sha, event: 'repo:updated' }, /is not a push/],
    ];
    for (const [host, spec, reason] of ignored) {
      const res = await post(pushUrl, delivery(host, secrets.push, spec));
      assert.equal(res.status, 200, `${host} ${JSON.stringify(spec)}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.deployed, false);
      assert.match(res.body.message, reason);
    }
    const list = await deployments();
    assert.equal(list.length, count + 3, 'one deployment per distinct delivery, none for the ignored events');
    // The later pushes superseded the earlier ones still queued; the newest one runs.
    const final = await waitFinished(list[0]!.id);
    assert.equal(final.status, 'done', final.reason ?? '');
    for (const d of list.slice(0, 3)) assert.ok(['done', 'superseded'].includes((await waitFinished(d.id)).status));
  });

  it('the deploy webhook: 401 without the token, ?wait=1 answers 200 when live and 422 when the build fails', async () => {
    const count = (await deployments()).length;
    for (const headers of [{}, { authorization: 'Bearer wrong-token' }, { authorization: `Bearer ${secrets.push}` }] as Array<Record<string, string>>) {
      const res = await fetch(`${deployUrl}?wait=1`, { method: 'POST', headers, body: '{}' });
      assert.equal(res.status, 401);
      assert.match(((await res.json()) as { error: string }).error, /deploy token/);
    }
    assert.equal((await deployments()).length, count, 'a refused call creates nothing');

    const good = repo.commit({ 'index.html': 'deployed by CI\n' });
    const auth = { authorization: `Bearer ${secrets.deploy}`, 'content-type': 'application/json' };
    const ok = await fetch(`${deployUrl}?wait=1`, { method: 'POST', headers: auth, body: JSON.stringify({ commit: good, branch: 'main' }) });
    const okBody = (await ok.json()) as any;
    assert.equal(ok.status, 200, JSON.stringify(okBody));
    assert.equal(okBody.deployment.status, 'done');
    assert.equal(okBody.deployment.commit, good);
    assert.equal(okBody.deployment.trigger, 'webhook');
    assert.equal(await page(), 'deployed by CI\n');
    // Its status URL answers with the same token, and nothing without it.
    const status = await fetch(okBody.statusUrl, { headers: { authorization: `Bearer ${secrets.deploy}` } });
    assert.equal(status.status, 200);
    assert.deepEqual(((await status.json()) as any).phases.map((p: any) => p.status).slice(-2), ['switching', 'done']);
    assert.equal((await fetch(okBody.statusUrl)).status, 401);

    const otherBranch = await fetch(deployUrl, { method: 'POST', headers: auth, body: JSON.stringify({ branch: 'feature' }) });
    assert.equal(otherBranch.status, 200);
    assert.equal(((await otherBranch.json()) as any).deployed, false);

    const broken = repo.commit({ Dockerfile: dockerfile('RUN echo about-to-fail && false'), 'index.html': 'broken\n' });
    // Without ?wait the call returns at once with where to look.
    const queued = await fetch(deployUrl, { method: 'POST', headers: auth, body: JSON.stringify({ commit: broken.slice(0, 12) }) });
    const queuedBody = (await queued.json()) as any;
    assert.equal(queued.status, 202);
    assert.equal(queuedBody.deployment.status, 'queued');
    assert.match(queuedBody.eventsUrl, /\/events$/);
    // Follow it live through the CLI: the build output streams, and it exits non-zero.
    const follow = await berth(['deployments', 'logs', queuedBody.deployment.id, '-f'], stack.env);
    assert.notEqual(follow.code, 0);
    assert.match(follow.stdout, /about-to-fail/);
    assert.match(follow.stderr, /==> failed \(build failed/);
    const failing = await fetch(`${deployUrl}?wait=1`, { method: 'POST', headers: auth, body: '' });
    const failBody = (await failing.json()) as any;
    assert.equal(failing.status, 422, JSON.stringify(failBody));
    assert.equal(failBody.deployment.status, 'failed');
    assert.match(failBody.message, /failed: build failed/);
    assert.equal(await page(), 'deployed by CI\n', 'the old version keeps serving');

    // The full log stays on the control plane.
    const logs = await berthJson<{ deployment: Deployment; lines: Array<{ text: string }> }>(['deployments', 'logs', failBody.deployment.id], stack.env);
    assert.equal(logs.deployment.status, 'failed');
    assert.ok(logs.lines.some((l) => l.text.includes('about-to-fail')));
  });

  it('berth deploy --wait streams the log live; --commit still works', async () => {
    const fixed = repo.commit({ Dockerfile: dockerfile(), 'index.html': 'fixed\n' });
    const res = await berth(['deploy', APP, '--commit', fixed.slice(0, 10), '--wait'], stack.env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /deploying commit/);
    assert.match(res.stderr, /==> building[\s\S]*==> health_checking[\s\S]*==> done/);
    assert.equal(await page(), 'fixed\n');
  });

  it('a push while the agent is stopped is queued, says so, and deploys once the agent is back', async () => {
    await stack.stopAgent();
    const sha = repo.commit({ 'index.html': 'deployed after the agent came back\n' });
    const res = await post(pushUrl, delivery('gitea', secrets.push, { ref: 'refs/heads/main', after: sha }));
    assert.equal(res.status, 202);
    assert.equal(res.body.agentConnected, false);
    assert.match(res.body.message, /offline: the deploy is queued and runs when its agent reconnects/);
    const ci = await fetch(deployUrl, { method: 'POST', headers: { authorization: `Bearer ${secrets.deploy}` }, body: JSON.stringify({ commit: sha }) });
    const ciBody = (await ci.json()) as any;
    assert.equal(ci.status, 202);
    assert.equal(ciBody.agentConnected, false);
    // The newer trigger superseded the queued push.
    assert.equal((await api<Deployment>(`/api/deployments/${res.body.deployment.id}`)).status, 'superseded');
    await stack.startAgent();
    const final = await waitFinished(ciBody.deployment.id);
    assert.equal(final.status, 'done', final.reason ?? '');
    assert.equal(final.commit, sha);
    assert.equal(await page(), 'deployed after the agent came back\n');
    rmSync(join(stack.root, 'repo'), { recursive: true, force: true });
  });
});

// ---- fuzz ------------------------------------------------------------------------------------------

/** Small deterministic PRNG (mulberry32), so a failing run can be replayed from its seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const printable = (n: number) => Array.from({ length: n }, () => String.fromCharCode(0x20 + int(0x5f))).join('').trim();
  return { next, int, pick, bytes, printable };
}

function mutate(r: ReturnType<typeof prng>, buf: Buffer): Buffer {
  const b = Buffer.from(buf);
  switch (r.int(6)) {
    case 0: // flip bytes
      for (let i = 0, n = 1 + r.int(8); i < n && b.length; i++) b[r.int(b.length)] = r.int(256);
      return b;
    case 1: // truncate
      return b.subarray(0, r.int(b.length + 1));
    case 2: {
      // insert junk
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), r.pick([r.bytes(1 + r.int(32)), Buffer.from(r.pick(['{', '}', '[', ']', '"', '\\', ',', ':', 'null', '1e999', '\u0000', '"\ud800"']))]), b.subarray(at)]);
    }
    case 3: {
      // delete a slice
      const at = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + r.int(16))]);
    }
    case 4: // duplicate a slice
      return Buffer.concat([b, b.subarray(r.int(b.length + 1))]);
    default: // swap a JSON value for another type
      return Buffer.from(
        b.toString('utf8').replace(r.pick(['"ref"', '"after"', '"push"', '"changes"', '"object_kind"', '"new"', '"target"', '"hash"']), `"${r.printable(4)}"`).replace(/"refs\/heads\/main"/, r.pick(['null', '[]', '{}', '12', '"refs/heads/"', '"refs/heads/main/.."'])),
      );
  }
}

describe('webhook fuzz: thousands of malformed requests, no 5xx, no crash, nothing deployed', () => {
  let cp: RunningControlPlane;
  let secrets = { push: '', deploy: '' };
  const APP_BRANCH = 'fuzz-production-zz9';
  // A fixed seed keeps CI deterministic; set BERTH_FUZZ_SEED to explore other inputs.
  const seed = Number(process.env.BERTH_FUZZ_SEED ?? 20261126);

  before(async () => {
    cp = await startControlPlane({ dataDir: join(makeTmpDir('berth-fuzz-'), 'cp'), listen: '127.0.0.1:0', logger: pino({ level: 'silent' }) });
    const h = { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' };
    await fetch(`${cp.url}/api/servers`, { method: 'POST', headers: h, body: JSON.stringify({ name: 'fuzz-srv' }) });
    const app = await fetch(`${cp.url}/api/apps`, { method: 'POST', headers: h, body: JSON.stringify({ name: 'fuzz', repo: 'https://example.com/f.git', branch: APP_BRANCH, server: 'fuzz-srv' }) });
    secrets = ((await app.json()) as any).webhookSecrets;
  });
  after(async () => {
    await cp?.close();
  });

  it(`survives a bounded fuzz pass (seed ${seed})`, async (t) => {
    const r = prng(seed);
    const N = 3000;
    const deadline = Date.now() + 45_000;
    const statuses = new Map<number, number>();
    const headerNames = [
      'x-github-event', 'x-github-delivery', 'x-hub-signature-256', 'x-hub-signature', 'x-gitlab-event', 'x-gitlab-token', 'x-gitlab-event-uuid',
      'idempotency-key', 'x-gitea-event', 'x-gitea-signature', 'x-gitea-delivery', 'x-forgejo-event', 'x-event-key', 'x-request-uuid', 'content-type',
      'authorization', 'last-event-id',
    ];
    const one = (): { path: string; method: string; headers: Record<string, string>; body?: Buffer } => {
      const kind = r.int(10);
      if (kind <= 4) {
        // A real delivery (to another branch, so even a valid one deploys nothing), mutated; half re-signed.
        const host = r.pick(HOSTS);
        const d = delivery(host, r.next() < 0.5 ? secrets.push : r.printable(20), { ref: 'refs/heads/main', after: r.bytes(20).toString('hex'), event: r.next() < 0.05 ? r.printable(8) : undefined });
        let body = r.next() < 0.85 ? mutate(r, d.body) : d.body;
        if (r.next() < 0.5) body = mutate(r, body);
        if (r.next() < 0.5) {
          const fresh = delivery(host, secrets.push, { ref: 'refs/heads/main', after: ZERO }); // its signature headers, recomputed below
          Object.assign(d.headers, fresh.headers);
          d.headers['x-hub-signature-256'] = `sha256=${hmac('sha256', secrets.push, body)}`;
          d.headers['x-gitea-signature'] = hmac('sha256', secrets.push, body);
          d.headers['x-hub-signature'] = host === 'bitbucket' ? `sha256=${hmac('sha256', secrets.push, body)}` : d.headers['x-hub-signature']!;
        }
        if (r.next() < 0.3) d.headers[r.pick(headerNames)] = r.printable(r.int(80));
        if (r.next() < 0.1) delete d.headers[r.pick(Object.keys(d.headers))];
        if (r.next() < 0.05) d.headers['content-type'] = 'application/x-www-form-urlencoded';
        return { path: '/hooks/fuzz/push', method: 'POST', headers: d.headers, body };
      }
      if (kind <= 6) {
        // The deploy webhook: bad tokens, or the real token with bodies that never name the app's branch.
        const original = Buffer.from(JSON.stringify({ branch: 'fuzz-other', commit: r.bytes(20).toString('hex') }));
        let body = mutate(r, original);
        // An empty body with the right token is a valid "deploy the branch head": not what this probes.
        if (body.toString('utf8').trim() === '') body = original;
        // Likewise a mutation that still parses but no longer names another branch would be a valid
        // request: such bodies only ever go with a wrong token.
        let mayDeploy = false;
        try {
          const j = JSON.parse(body.toString('utf8')) as { branch?: unknown } | null;
          mayDeploy = !(j !== null && typeof j === 'object' && typeof j.branch === 'string' && j.branch !== APP_BRANCH);
        } catch {
          // not JSON: refused whatever the token
        }
        const good = !mayDeploy && r.next() < 0.5;
        const q = r.pick(['', '?wait=1&timeout=1', `?wait=${r.printable(3)}`, `?timeout=${r.printable(4)}`, `?token=${r.printable(10)}`, '?wait=1&timeout=99999']);
        const headers: Record<string, string> = { 'content-type': r.pick(['application/json', 'text/plain', r.printable(10)]) };
        if (good || r.next() < 0.5) headers.authorization = good ? `Bearer ${secrets.deploy}` : `${r.pick(['Bearer ', 'Basic ', ''])}${r.printable(r.int(60))}`;
        return { path: `/hooks/fuzz/deploy${q}`, method: 'POST', headers, body };
      }
      if (kind === 7) {
        // Random headers and bytes.
        const headers: Record<string, string> = {};
        for (let i = 0, n = r.int(6); i < n; i++) headers[r.pick(headerNames)] = r.printable(r.int(120));
        return { path: r.pick(['/hooks/fuzz/push', '/hooks/fuzz/deploy']), method: 'POST', headers, body: r.bytes(r.int(2048)) };
      }
      if (kind === 8) {
        // Odd paths and methods under /hooks.
        const seg = () => r.pick(['fuzz', 'FUZZ', '..', '%2e%2e', 'push', 'deploy', 'deployments', r.printable(6).replace(/[\s?#%]/g, 'x'), '%00', encodeURIComponent(r.printable(8))]);
        const path = `/hooks/${seg()}/${seg()}${r.next() < 0.5 ? `/${seg()}` : ''}${r.next() < 0.3 ? `/${seg()}` : ''}`;
        const method = r.pick(['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS']);
        // The odd-path generator can land exactly on the deploy webhook; with the real token and no body
        // that is a valid "deploy the branch head", which is not what this probes.
        const realDeployCall = method === 'POST' && /^\/hooks\/fuzz\/deploy\/?$/.test(path);
        const token = !realDeployCall && r.next() < 0.3 ? secrets.deploy : r.printable(10);
        return { path, method, headers: { authorization: `Bearer ${token}` } };
      }
      // Status and event streams of deployments that do not exist.
      return {
        path: `/hooks/fuzz/deployments/${r.pick([r.bytes(6).toString('hex'), r.printable(12).replace(/[\s?#%/]/g, 'x'), 'abcdefgh12'])}${r.next() < 0.5 ? '/events' : ''}${r.next() < 0.3 ? `?after=${r.printable(3)}` : ''}`,
        method: 'GET',
        headers: { authorization: `Bearer ${r.next() < 0.5 ? secrets.deploy : r.printable(10)}` },
      };
    };

    let sent = 0;
    const worker = async () => {
      while (sent < N && Date.now() < deadline) {
        sent++;
        const req = one();
        const res = await fetch(cp.url + req.path, {
          method: req.method,
          headers: req.headers,
          ...(req.body && req.method !== 'GET' && req.method !== 'HEAD' ? { body: new Uint8Array(req.body) } : {}),
        });
        const text = await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.ok(res.status < 500, `seed ${seed}: ${req.method} ${req.path} → ${res.status} ${text.slice(0, 200)}`);
        // A path like /hooks/%2e%2e/%2e%2e is normalised by the URL parser before it is sent: it is no
        // webhook request (it reaches the dashboard), so only answers under /hooks/ must be JSON.
        const isHook = new URL(cp.url + req.path).pathname.startsWith(HOOKS_PREFIX);
        if (isHook && req.method !== 'HEAD' && res.status !== 204) assert.doesNotThrow(() => JSON.parse(text), `non-JSON answer to ${req.method} ${req.path}: ${text.slice(0, 100)}`);
        assert.notEqual(res.status, 202, `seed ${seed}: deployed from ${req.method} ${req.path} ${JSON.stringify(req.headers)} ${req.body?.toString('utf8').slice(0, 300)} → ${text.slice(0, 300)}`);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    assert.ok(sent >= Math.min(N, 1000), `only ${sent} requests within the time bound`);
    t.diagnostic(`${sent} requests, answers by status: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);

    // Raw garbage on the socket: the HTTP parser refuses it; the server stays up.
    for (const raw of ['POST /hooks/fuzz/push HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', 'POST /hooks/fuzz/push HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: pu\u0000sh\r\n\r\n', '\u0016\u0003\u0001garbage\r\n\r\n', 'POST /hooks/fuzz/push HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n']) {
      await new Promise<void>((resolve) => {
        const s = netConnect(Number(new URL(cp.url).port), '127.0.0.1', () => s.end(raw));
        s.on('data', (d) => assert.doesNotMatch(String(d), /^HTTP\/1\.1 5/));
        s.on('close', () => resolve());
        s.on('error', () => resolve());
        s.setTimeout(2000, () => s.destroy());
      });
    }

    const h = { authorization: `Bearer ${cp.adminToken}` };
    assert.equal((await fetch(`${cp.url}/healthz`)).status, 200, 'still serving');
    const list = (await (await fetch(`${cp.url}/api/apps/fuzz/deployments`, { headers: h })).json()) as unknown[];
    assert.deepEqual(list, [], 'no deployment was created');
    // Something of everything was exercised: refusals, acknowledgements and validation errors.
    for (const s of [200, 400, 401, 404]) assert.ok((statuses.get(s) ?? 0) > 0, `no ${s} answers in ${JSON.stringify([...statuses])}`);
  });
});
