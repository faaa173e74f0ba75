// Webhook replay (issue 13): a captured, validly signed push re-sent with a fresh delivery id must
// not deploy again, nor roll an app back to an older commit. Control-plane side against an
// in-process control plane and a FakeAgent (no Docker); the agent's ancestor check against a real
// agent, real git and Docker.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../control-plane/main.js';
import { adminApi, FakeAgent } from './helpers/fake-agent.js';
import { AUTH_HEADERS, delivery, hmac, HOSTS, post, withFreshId, type Delivery, type Host } from './helpers/push-delivery.js';
import { makeTmpDir } from './helpers/tmp.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureDocker } from './helpers/docker.js';
import type { DeploymentJson } from './helpers/fixtures.js';
import { TestRepo } from './helpers/git-repo.js';
import { Stack } from './helpers/stack.js';
import { eventually, httpGet } from './helpers/http.js';
import { MAX_UNAUTHENTICATED_READS } from '../control-plane/webhooks/routes.js';

const sha = () => randomBytes(20).toString('hex');
const MAIN = 'refs/heads/main';

/** An in-process control plane with a FakeAgent enrolled as server replay-srv, and one app per Git host (replay-HOST). */
async function controlPlaneWithApps(prefix: string): Promise<{ cp: RunningControlPlane; agent: FakeAgent; secrets: Map<Host, string>; deployTokens: Map<Host, string> }> {
  const cp = await startControlPlane({ dataDir: join(makeTmpDir(prefix), 'cp'), listen: '127.0.0.1:0', logger: pino({ level: 'silent' }) });
  const api = adminApi(cp);
  const server = await api('POST', '/api/servers', { name: 'replay-srv' });
  const joined = await fetch(`${cp.url}/api/agent/join`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: server.body.joinToken, name: 'replay-srv', hostname: 'replay.local' }),
  });
  const agent = await FakeAgent.join(cp.url, ((await joined.json()) as { credential: string }).credential);
  const secrets = new Map<Host, string>();
  const deployTokens = new Map<Host, string>();
  for (const host of HOSTS) {
    const app = await api('POST', '/api/apps', { name: `replay-${host}`, repo: 'https://example.com/acme/web.git', branch: 'main', server: 'replay-srv' });
    assert.equal(app.status, 201, JSON.stringify(app.body));
    secrets.set(host, app.body.webhookSecrets.push);
    deployTokens.set(host, app.body.webhookSecrets.deploy);
  }
  return { cp, agent, secrets, deployTokens };
}

describe('push webhook replay: the control plane deploys a payload once and never an earlier commit', () => {
  let cp: RunningControlPlane;
  let api: ReturnType<typeof adminApi>;
  let agent: FakeAgent;
  let secrets: Map<Host, string>;
  const hookUrl = (host: Host) => `${cp.url}/hooks/replay-${host}/push`;

  before(async () => {
    ({ cp, agent, secrets } = await controlPlaneWithApps('berth-replay-'));
    api = adminApi(cp);
  });
  after(async () => {
    agent?.close();
    await cp?.close();
  });

  /** Post a push that must deploy; the FakeAgent receives its order and reports it ended `status`. */
  const deployed = async (host: Host, d: Delivery, commit: string, status: 'done' | 'failed' | null = 'done') => {
    const res = await post(hookUrl(host), d);
    assert.equal(res.status, 202, `${host}: ${JSON.stringify(res.body)}`);
    const order = await agent.next('deploy');
    assert.equal(order.deploymentId, res.body.deployment.id);
    assert.equal(order.commit, commit);
    assert.equal(order.skipIfAncestorOfLive, true, 'a push order tells the agent to refuse older commits');
    if (status) {
      agent.progress(order.deploymentId, 'fetching', { commit });
      agent.progress(order.deploymentId, status, { commit, ...(status === 'failed' ? { reason: 'build failed: test' } : {}) });
      await agent.sync();
    }
    return res.body.deployment.id as string;
  };
  const skipped = async (host: Host, d: Delivery, reason: string, deploymentId: string) => {
    const res = await post(hookUrl(host), d);
    assert.equal(res.status, 200, `${host}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.deployed, false, `${host} ${reason}`);
    assert.equal(res.body.skipped, true, `${host} ${reason}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.reason, reason, `${host}: ${res.body.message}`);
    assert.match(res.body.message, /^skipped: /);
    assert.equal(res.body.deployment?.id, deploymentId, `${host} ${reason}: names the earlier deployment`);
    return res;
  };
  const push = (host: Host, after: string) => delivery(host, secrets.get(host)!, { ref: MAIN, after, before: sha() });

  for (const host of HOSTS) {
    it(`${host}: a replay with a fresh delivery id, the live commit, an earlier commit, the same body twice: nothing deploys; a new commit does`, async () => {
      const c1 = sha();
      const first = push(host, c1);
      const d1 = await deployed(host, first, c1);

      // The captured delivery, byte for byte, under a new delivery id.
      await skipped(host, withFreshId(first), 'duplicate_payload', d1);
      // Another body naming the live commit.
      await skipped(host, push(host, c1), 'commit_live', d1);

      const c2 = sha();
      const d2 = await deployed(host, push(host, c2), c2);
      // The older commit, pushed again with a new body, and its captured body replayed: neither rolls back.
      const old = await skipped(host, push(host, c1), 'commit_deployed', d1);
      assert.match(old.body.message, /berth deploy --commit or berth rollback/);
      await skipped(host, withFreshId(first), 'duplicate_payload', d1);

      // The same new body twice at once (two delivery ids): exactly one deployment.
      const c3 = sha();
      const third = push(host, c3);
      const both = await Promise.all([post(hookUrl(host), third), post(hookUrl(host), withFreshId(third))]);
      assert.deepEqual(both.map((r) => r.status).sort(), [200, 202], JSON.stringify(both.map((r) => r.body)));
      const created = both.find((r) => r.status === 202)!.body.deployment.id as string;
      assert.equal(both.find((r) => r.status === 200)!.body.reason, 'duplicate_payload');
      const order = await agent.next('deploy');
      assert.equal(order.deploymentId, created);
      // While it runs, another body for the same commit is no second deploy.
      agent.progress(created, 'fetching', { commit: c3 });
      await agent.sync();
      await skipped(host, push(host, c3), 'commit_deploying', created);
      agent.progress(created, 'done', { commit: c3 });
      await agent.sync();

      // A failed commit may be pushed again with a new body (a retry); its failed body stays spent.
      const c4 = sha();
      const failedPush = push(host, c4);
      const d4 = await deployed(host, failedPush, c4, 'failed');
      await skipped(host, withFreshId(failedPush), 'duplicate_payload', d4);
      const d5 = await deployed(host, push(host, c4), c4);

      const list = await api('GET', `/api/apps/replay-${host}/deployments`);
      assert.deepEqual(
        list.body.map((d: { id: string }) => d.id),
        [d5, d4, created, d2, d1],
        'one deployment per genuinely new push, none for the replays',
      );
      await agent.none('deploy');
    });
  }

  it('only push orders ask the agent to refuse older commits; explicit deploys and rollbacks of an earlier commit do not', async () => {
    const deployments = await api('GET', '/api/apps/replay-github/deployments');
    const earlier = deployments.body.at(-1) as { id: string; commit: string };
    const pushed = sha();
    await deployed('github', push('github', pushed), pushed); // asserts skipIfAncestorOfLive on the order
    const manual = await api('POST', '/api/apps/replay-github/deploy', { commit: earlier.commit });
    assert.equal(manual.status, 201, JSON.stringify(manual.body));
    const order = await agent.next('deploy');
    assert.deepEqual([order.deploymentId, order.commit, order.skipIfAncestorOfLive], [manual.body.id, earlier.commit, undefined]);
    agent.progress(order.deploymentId, 'done', { commit: earlier.commit });
    await agent.sync();
    const rollback = await api('POST', '/api/apps/replay-github/rollback', {});
    assert.equal(rollback.status, 201, JSON.stringify(rollback.body));
    const back = await agent.next('deploy');
    assert.equal(back.skipIfAncestorOfLive, undefined);
    assert.equal(typeof back.rollbackOf, 'string');
  });
});

describe('unauthenticated webhook requests: 1 MB push bodies, a cap on concurrent reads, no app-existence oracle', () => {
  let cp: RunningControlPlane;
  let agent: FakeAgent;
  let secrets: Map<Host, string>;
  let deployTokens: Map<Host, string>;
  const sockets: Socket[] = [];

  before(async () => {
    ({ cp, agent, secrets, deployTokens } = await controlPlaneWithApps('berth-hook-limits-'));
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    agent?.close();
    await cp?.close();
  });

  it('an unknown app answers exactly what a wrong or missing signature or token answers', async () => {
    for (const host of HOSTS) {
      const forged = delivery(host, 'not-the-secret', { ref: MAIN, after: sha() });
      const unsigned = delivery(host, secrets.get(host)!, { ref: MAIN, after: sha() });
      for (const h of AUTH_HEADERS[host]) delete unsigned.headers[h];
      for (const [what, d] of [['wrong signature', forged], ['missing signature', unsigned]] as const) {
        const known = await post(`${cp.url}/hooks/replay-${host}/push`, d);
        const unknown = await post(`${cp.url}/hooks/no-such-app/push`, d);
        assert.equal(known.status, 401, `${host} ${what}: ${JSON.stringify(known.body)}`);
        assert.deepEqual([unknown.status, unknown.body], [known.status, known.body], `${host} ${what}: an unknown app answers the same`);
      }
    }
    const tokens: Array<[string, Record<string, string>]> = [
      ['no token', {}],
      ['wrong token', { authorization: 'Bearer wrong-token' }],
      ['another app’s token', { authorization: `Bearer ${deployTokens.get('github')}` }],
    ];
    for (const path of ['deploy', 'deployments/abcdefgh12']) {
      for (const [what, headers] of tokens) {
        const ask = async (app: string) => {
          const res = await fetch(`${cp.url}/hooks/${app}/${path}`, { method: path === 'deploy' ? 'POST' : 'GET', headers, ...(path === 'deploy' ? { body: '{}' } : {}) });
          return [res.status, await res.json()];
        };
        const known = await ask('replay-gitlab');
        assert.equal(known[0], 401, `${path} ${what}`);
        assert.deepEqual(await ask('no-such-app'), known, `${path} ${what}: an unknown app answers the same`);
      }
    }
    // A name no app can have is a plain validation error: it reveals nothing about which apps exist.
    const invalid = await post(`${cp.url}/hooks/Not_An_App/push`, unsignedGithub());
    assert.equal(invalid.status, 404);
    assert.match(invalid.body.error, /is not a valid app name/);
    await agent.none('deploy');
  });

  const unsignedGithub = () => delivery('github', 'not-the-secret', { ref: MAIN, after: sha() });

  it('a validly signed push body over 1 MB is refused with 413 and deploys nothing', async () => {
    for (const host of HOSTS) {
      const d = delivery(host, secrets.get(host)!, { ref: MAIN, after: sha() });
      const padded = Buffer.concat([d.body.subarray(0, -1), Buffer.from(`, "padding": "${'x'.repeat(1024 * 1024)}"}`)]);
      const signed = delivery(host, secrets.get(host)!, { ref: MAIN, after: sha() });
      // Re-sign the padded body the way the host would.
      const headers = { ...signed.headers };
      for (const h of AUTH_HEADERS[host]) {
        if (!(h in headers) || h === 'x-gitlab-token') continue;
        const value = hmac(h === 'x-hub-signature' && host !== 'bitbucket' ? 'sha1' : 'sha256', secrets.get(host)!, padded);
        headers[h] = h.startsWith('x-hub-signature') ? `${h === 'x-hub-signature' && host !== 'bitbucket' ? 'sha1' : 'sha256'}=${value}` : value;
      }
      const res = await post(`${cp.url}/hooks/replay-${host}/push`, { headers, body: padded });
      assert.equal(res.status, 413, `${host}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error, 'request body is larger than 1 MB');
    }
    await agent.none('deploy');
  });

  it(`at most ${MAX_UNAUTHENTICATED_READS} push bodies are read at once: the next request gets 503 with Retry-After, unread`, async () => {
    const port = Number(new URL(cp.url).port);
    // Stalled uploads: headers and a first byte, then nothing. Half to an app that does not exist.
    for (let i = 0; i < MAX_UNAUTHENTICATED_READS; i++) {
      const app = i % 2 === 0 ? 'replay-github' : `nobody-${i}`;
      const s = netConnect(port, '127.0.0.1');
      s.on('error', () => {});
      sockets.push(s);
      await new Promise<void>((resolve) => s.once('connect', () => resolve()));
      s.write(`POST /hooks/${app}/push HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
    }
    // Every stalled upload has reached its handler once a later request on a fresh connection is answered.
    assert.equal((await fetch(`${cp.url}/healthz`)).status, 200);
    const res = await fetch(`${cp.url}/hooks/replay-gitea/push`, { method: 'POST', headers: unsignedGithub().headers, body: new Uint8Array(unsignedGithub().body) });
    const text = await res.text();
    assert.equal(res.status, 503, text);
    assert.equal(res.headers.get('retry-after'), '5');
    assert.equal(res.headers.get('connection'), 'close');
    assert.match((JSON.parse(text) as { error: string }).error, /too many webhook requests/);
    // Authenticated routes are not held up by them.
    const ci = await fetch(`${cp.url}/hooks/replay-gitlab/deploy`, { method: 'POST', headers: { authorization: `Bearer ${deployTokens.get('gitlab')}` }, body: JSON.stringify({ branch: 'other' }) });
    assert.equal(ci.status, 200);

    // The stalled clients go away: their slots are free again.
    for (const s of sockets.splice(0)) s.destroy();
    const after = await eventually(
      async () => (await post(`${cp.url}/hooks/replay-gitea/push`, unsignedGithub())).status,
      (status) => status !== 503,
      5000,
      50,
    );
    assert.equal(after, 401);
    await agent.none('deploy');
  });
});

describe('the agent does not deploy a push of an ancestor of the live commit (real git, real agent, nginx)', () => {
  const APP = 'replay-site';
  const DOMAIN = 'replay.e2e.test';
  let stack: Stack;
  let repo: TestRepo;
  let secret = '';
  const pushUrl = () => `${stack.cpUrl}/hooks/${APP}/push`;
  const site = (text: string) => ({ 'berth.yml': 'build: { static: public }\n', 'public/index.html': `${text}\n` });
  const page = async () => (await httpGet(stack.httpPort, DOMAIN)).body;
  const finished = (id: string) =>
    eventually(
      async () => (await (await fetch(`${stack.cpUrl}/api/deployments/${id}`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as DeploymentJson,
      (d) => ['done', 'failed', 'cancelled', 'superseded'].includes(d.status),
      60_000,
      100,
    );
  /** Commits made before the live one: never deployed, so only a checkout knows they are older. */
  const older = new Map<Host, string>();

  before(async () => {
    await ensureDocker();
    stack = await Stack.create('replay');
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    for (const host of HOSTS) older.set(host, repo.commit(site(`older, for ${host}`), `older ${host}`));
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    const created = await berthJson<{ webhookSecrets: { push: string } }>(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    secret = created.webhookSecrets.push;
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
  });
  after(async () => {
    await stack?.destroy();
  });

  it('each host: the pushed ancestor ends cancelled with the reason and the live release keeps serving; berth deploy --commit, berth rollback and new pushes still deploy', async () => {
    const live = repo.commit(site('live'), 'live');
    const first = await post(pushUrl(), delivery('github', secret, { ref: MAIN, after: live }));
    assert.equal(first.status, 202, JSON.stringify(first.body));
    assert.equal((await finished(first.body.deployment.id)).status, 'done', stack.tail('agent.log', 20));
    assert.equal(await page(), 'live\n');

    for (const host of HOSTS) {
      const old = older.get(host)!;
      // The control plane has never seen this commit: only the agent's checkout can tell it is older.
      const res = await post(pushUrl(), delivery(host, secret, { ref: MAIN, after: old }));
      assert.equal(res.status, 202, `${host}: ${JSON.stringify(res.body)}`);
      const final = await finished(res.body.deployment.id);
      assert.equal(final.status, 'cancelled', `${host}: ${final.status} ${final.reason}`);
      assert.equal(final.reason, `skipped: commit ${old.slice(0, 12)} is an ancestor of the live commit ${live.slice(0, 12)} (release ${first.body.deployment.id}); a push never deploys an older commit — use berth deploy --commit or berth rollback`);
      const logs = await berthJson<{ lines: Array<{ text: string }> }>(['deployments', 'logs', final.id], stack.env);
      assert.ok(logs.lines.some((l) => l.text === final.reason), `${host}: the deploy log says why`);
      assert.equal(await page(), 'live\n', `${host}: the live release keeps serving`);
    }

    // Explicit deploys and rollbacks still deploy an older commit; a new push still deploys.
    const old = older.get('gitea')!;
    const manual = await berth(['deploy', APP, '--commit', old, '--wait'], stack.env);
    assert.equal(manual.code, 0, manual.stderr);
    assert.equal(await page(), 'older, for gitea\n');

    const fresh = repo.commit(site('new'), 'new');
    const res = await post(pushUrl(), delivery('bitbucket', secret, { ref: MAIN, after: fresh }));
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.equal((await finished(res.body.deployment.id)).status, 'done');
    assert.equal(await page(), 'new\n');

    const rolled = await berth(['rollback', APP], stack.env);
    assert.equal(rolled.code, 0, rolled.stderr);
    assert.equal(await page(), 'older, for gitea\n');
  });
});
