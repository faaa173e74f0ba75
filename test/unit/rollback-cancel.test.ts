// Rollback and cancel on the control plane, against real parts (SQLite in a temp dir, HTTP on
// loopback, a `ws` client as the agent): which release a rollback picks, the order it sends, and
// how a cancel ends a queued, a running and an offline deployment.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { adminApi, FakeAgent } from '../helpers/fake-agent.js';
import { makeTmpDir } from '../helpers/tmp.js';

const logger = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });
const SHA = (c: string) => c.repeat(40);

describe('control plane: rollback and cancel', () => {
  let cp: RunningControlPlane;
  let credential: string;
  let agent: FakeAgent;
  const root = makeTmpDir('berth-rollback-cp-');

  // cp is assigned in before(): resolve it at call time.
  const api = (method: string, path: string, body?: unknown) => adminApi(cp)(method, path, body);
  /** A deploy the fake agent runs to `status` (reporting `commit`). */
  const deployed = async (status: 'done' | 'failed', commit: string): Promise<string> => {
    const d = (await api('POST', '/api/apps/shop/deploy', {})).body;
    assert.equal((await agent.next('deploy')).deploymentId, d.id);
    for (const s of ['fetching', 'building', 'starting', 'health_checking', 'switching', status]) agent.progress(d.id, s, { commit });
    await agent.sync();
    return d.id as string;
  };
  const rollback = async (deploymentId?: string) => api('POST', '/api/apps/shop/rollback', deploymentId ? { deploymentId } : undefined);
  /** The agent runs a rollback order to the end. */
  const runRollback = async (id: string) => {
    for (const s of ['starting', 'health_checking', 'switching', 'done']) agent.progress(id, s);
    await agent.sync();
  };

  before(async () => {
    cp = await startControlPlane({ dataDir: join(root, 'data'), listen: '127.0.0.1:0', logger });
    const server = (await api('POST', '/api/servers', { name: 'delta' })).body;
    const joinRes = await fetch(cp.url + '/api/agent/join', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: server.joinToken }) });
    credential = ((await joinRes.json()) as { credential: string }).credential;
    assert.equal((await api('POST', '/api/apps', { name: 'shop', repo: 'https://example.com/shop.git', server: 'delta' })).status, 201);
    agent = await FakeAgent.join(cp.url, credential);
  });
  after(async () => {
    agent?.close();
    await cp?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('refuses a rollback with nothing live, then walks back one release at a time', async () => {
    const none = await rollback();
    assert.equal(none.status, 409);
    assert.match(none.body.error, /no live release to roll back from/);

    const a = await deployed('done', SHA('a'));
    const only = await rollback();
    assert.equal(only.status, 409);
    assert.match(only.body.error, /no earlier good release/);

    const broken = await deployed('failed', SHA('f'));
    const b = await deployed('done', SHA('b'));

    const r1 = await rollback();
    assert.equal(r1.status, 201, JSON.stringify(r1.body));
    assert.equal(r1.body.trigger, 'rollback');
    assert.equal(r1.body.rollbackOf, a, 'the failed deploy in between is skipped');
    assert.equal(r1.body.commit, SHA('a'));
    const order = await agent.next('deploy');
    assert.deepEqual(
      { id: order.deploymentId, rollbackOf: order.rollbackOf, commit: order.commit },
      { id: r1.body.id, rollbackOf: a, commit: SHA('a') },
      'the order names the release, and its commit for agents that predate rollbacks',
    );
    await runRollback(r1.body.id);

    // Live is a's release now: nothing older to go back to.
    assert.match((await rollback()).body.error, /no earlier good release/);
    // An explicit id goes anywhere that went live…
    const r2 = await rollback(b);
    assert.equal(r2.status, 201);
    assert.equal(r2.body.rollbackOf, b);
    await agent.next('deploy');
    await runRollback(r2.body.id);
    // …a rollback's id means the release it brought back, which is live now.
    const again = await rollback(r2.body.id);
    assert.equal(again.status, 409);
    assert.match(again.body.error, /already live/);
    // …and never a deployment that failed, or one of another app.
    const failed = await rollback(broken);
    assert.equal(failed.status, 409);
    assert.match(failed.body.error, /failed: only a deployment that went live can be rolled back to/);
    const unknown = await rollback('zzzzzzzz0000');
    assert.equal(unknown.status, 404);
    assert.equal((await api('POST', '/api/apps/shop/rollback', { deploymentId: '../x' })).status, 400);

    const list = (await api('GET', '/api/apps/shop/deployments')).body as Array<{ trigger: string; rollbackOf: string | null }>;
    assert.deepEqual(
      list.map((d) => [d.trigger, d.rollbackOf]),
      [['rollback', b], ['rollback', a], ['manual', null], ['manual', null], ['manual', null]],
    );
  });

  it('cancels a queued deployment at once and tells the agent', async () => {
    const running = (await api('POST', '/api/apps/shop/deploy', {})).body;
    await agent.next('deploy');
    agent.progress(running.id, 'fetching');
    await agent.sync();
    const queued = (await api('POST', '/api/apps/shop/deploy', {})).body;
    await agent.next('deploy');

    const res = await api('POST', `/api/deployments/${queued.id}/cancel`);
    assert.equal(res.status, 200);
    assert.equal(res.body.status, 'cancelled');
    assert.equal(res.body.cancelPending, false);
    assert.equal(res.body.reason, 'cancelled by a user');
    assert.deepEqual(await agent.next('cancel'), { type: 'cancel', v: 1, deploymentId: queued.id, status: 'cancelled', reason: 'cancelled by a user' });

    // A running one: the agent decides — it reports `cancelled`, and that is the answer.
    const pending = api('POST', `/api/deployments/${running.id}/cancel`);
    const cancel = await agent.next('cancel');
    assert.equal(cancel.deploymentId, running.id);
    agent.progress(running.id, 'cancelled', { reason: 'cancelled by a user (while fetching)' });
    const done = await pending;
    assert.equal(done.status, 200);
    assert.equal(done.body.status, 'cancelled');
    assert.equal(done.body.reason, 'cancelled by a user (while fetching)');

    const again = await api('POST', `/api/deployments/${running.id}/cancel`);
    assert.equal(again.status, 409);
    assert.match(again.body.error, /already finished \(cancelled\)/);
  });

  it('a running deploy that switched before the cancel landed ends done', async () => {
    const d = (await api('POST', '/api/apps/shop/deploy', {})).body;
    await agent.next('deploy');
    agent.progress(d.id, 'switching');
    await agent.sync();
    const pending = api('POST', `/api/deployments/${d.id}/cancel`);
    await agent.next('cancel');
    agent.progress(d.id, 'done');
    const res = await pending;
    assert.equal(res.body.status, 'done');
    assert.equal(res.body.cancelPending, false);
  });

  it("cancels a running deployment of an offline agent here; the agent hears of it when it reconnects", async () => {
    const d = (await api('POST', '/api/apps/shop/deploy', {})).body;
    await agent.next('deploy');
    agent.progress(d.id, 'building');
    await agent.sync();
    agent.close();
    await new Promise((r) => setTimeout(r, 100));
    const res = await api('POST', `/api/deployments/${d.id}/cancel`);
    assert.equal(res.status, 200);
    assert.equal(res.body.status, 'cancelled');
    agent = await FakeAgent.join(cp.url, credential);
    let cancel = await agent.next('cancel');
    while (cancel.deploymentId !== d.id) cancel = await agent.next('cancel');
    assert.equal(cancel.status, 'cancelled');
  });
});
