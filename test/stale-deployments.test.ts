// No deployment stays "running" forever on the control plane: when an agent starts a deploy and its
// server then disappears for good, the control plane fails the deployment after a while. A queued
// deployment (never started) waits for the agent instead, and a connected agent is left to its own
// phase deadlines. Real control plane, real SQLite, a real ws client as the agent.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../control-plane/main.js';
import { adminApi, FakeAgent } from './helpers/fake-agent.js';
import { eventually } from './helpers/http.js';
import { makeTmpDir } from './helpers/tmp.js';

const STALE_MS = 1500;

describe('stale deployments of a vanished server are failed by the control plane', () => {
  let cp: RunningControlPlane;
  let credential = '';
  // cp is assigned in before(): resolve it at call time.
  const api = (method: string, path: string, body?: unknown) => adminApi(cp)(method, path, body);

  before(async () => {
    cp = await startControlPlane({
      dataDir: join(makeTmpDir('berth-stale-'), 'data'),
      listen: '127.0.0.1:0',
      logger: pino({ level: 'silent' }),
      staleDeploymentMs: STALE_MS,
      staleSweepIntervalMs: 200,
    });
    const server = (await api('POST', '/api/servers', { name: 'gone' })).body;
    const joined = await fetch(cp.url + '/api/agent/join', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: server.joinToken }) });
    credential = ((await joined.json()) as { credential: string }).credential;
    for (const name of ['web', 'api']) {
      assert.equal((await api('POST', '/api/apps', { name, repo: 'https://example.com/x.git', server: 'gone' })).status, 201);
    }
  });

  after(async () => {
    await cp?.close();
  });

  it('fails a started deployment once its agent is gone and silent; keeps a queued one and a connected agent’s', async () => {
    const agent = await FakeAgent.join(cp.url, credential);
    const building = (await api('POST', '/api/apps/web/deploy', {})).body;
    assert.equal((await agent.next('deploy')).deploymentId, building.id);
    agent.progress(building.id, 'fetching');
    agent.progress(building.id, 'building');
    await agent.sync();

    // Connected but slow: left to the agent's own deadlines, however long it takes.
    await new Promise((r) => setTimeout(r, STALE_MS + 600));
    assert.equal((await api('GET', `/api/deployments/${building.id}`)).body.status, 'building');

    // The server vanishes; a deploy of another app is ordered meanwhile and stays queued for it.
    agent.ws.terminate();
    await eventually(async () => (await api('GET', '/api/servers')).body[0].connected, (c) => c === false, 5000);
    const queued = (await api('POST', '/api/apps/api/deploy', {})).body;
    const failed = await eventually(async () => (await api('GET', `/api/deployments/${building.id}`)).body, (d) => d.status === 'failed', STALE_MS * 4);
    assert.match(failed.reason, /agent of server "gone" went away during building/);
    assert.ok(failed.finishedAt, 'a failed deployment is finished');
    assert.equal((await api('GET', `/api/deployments/${queued.id}`)).body.status, 'queued', 'a queued deployment waits for the agent');

    // When the agent comes back, the queued one is delivered; its late report on the failed one is refused.
    const back = await FakeAgent.join(cp.url, credential);
    assert.equal((await back.next('deploy')).deploymentId, queued.id);
    back.progress(building.id, 'done');
    assert.match((await back.next('error')).message, /already finished/);
    assert.equal((await api('GET', `/api/deployments/${building.id}`)).body.status, 'failed');
    back.ws.close();
  });
});
