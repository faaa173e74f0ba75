// Webhook replay (issue 13): a captured, validly signed push re-sent with a fresh delivery id must
// not deploy again, nor roll an app back to an older commit. Control-plane side against an
// in-process control plane and a FakeAgent (no Docker); the agent's ancestor check against a real
// agent, real git and Docker.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../control-plane/main.js';
import { adminApi, FakeAgent } from './helpers/fake-agent.js';
import { delivery, HOSTS, post, withFreshId, type Delivery, type Host } from './helpers/push-delivery.js';
import { makeTmpDir } from './helpers/tmp.js';

const sha = () => randomBytes(20).toString('hex');
const MAIN = 'refs/heads/main';

describe('push webhook replay: the control plane deploys a payload once and never an earlier commit', () => {
  let cp: RunningControlPlane;
  let api: ReturnType<typeof adminApi>;
  let agent: FakeAgent;
  const secrets = new Map<Host, string>();
  const hookUrl = (host: Host) => `${cp.url}/hooks/replay-${host}/push`;

  before(async () => {
    cp = await startControlPlane({ dataDir: join(makeTmpDir('berth-replay-'), 'cp'), listen: '127.0.0.1:0', logger: pino({ level: 'silent' }) });
    api = adminApi(cp);
    const server = await api('POST', '/api/servers', { name: 'replay-srv' });
    const joined = await fetch(`${cp.url}/api/agent/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: server.body.joinToken, name: 'replay-srv', hostname: 'replay.local' }),
    });
    agent = await FakeAgent.join(cp.url, ((await joined.json()) as { credential: string }).credential);
    for (const host of HOSTS) {
      const app = await api('POST', '/api/apps', { name: `replay-${host}`, repo: 'https://example.com/acme/web.git', branch: 'main', server: 'replay-srv' });
      assert.equal(app.status, 201, JSON.stringify(app.body));
      secrets.set(host, app.body.webhookSecrets.push);
    }
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
});
