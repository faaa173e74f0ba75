// No deployment stays "running" forever on the control plane: when an agent starts a deploy and its
// server then disappears for good, the control plane fails the deployment after a while. A queued
// deployment (never started) waits for the agent instead, and a connected agent is left to its own
// phase deadlines. Real control plane, real SQLite, a real ws client as the agent.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import pino from 'pino';
import { answerStatusRequest } from '../../agent/deploy/status-report.js';
import type { DeployRecord } from '../../agent/store/deploys.js';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { adminApi, FakeAgent } from '../helpers/fake-agent.js';
import { eventually } from '../helpers/http.js';
import { makeTmpDir } from '../helpers/tmp.js';

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

describe('a reconnecting agent is asked where the deployments it started stand', () => {
  let cp: RunningControlPlane;
  let credential = '';
  const api = (method: string, path: string, body?: unknown) => adminApi(cp)(method, path, body);

  before(async () => {
    // The default stale window (hours): only the agent's answer can end these deployments here.
    cp = await startControlPlane({ dataDir: join(makeTmpDir('berth-status-request-'), 'data'), listen: '127.0.0.1:0', logger: pino({ level: 'silent' }) });
    const server = (await api('POST', '/api/servers', { name: 'away' })).body;
    const joined = await fetch(cp.url + '/api/agent/join', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: server.joinToken }) });
    credential = ((await joined.json()) as { credential: string }).credential;
    for (const name of ['one', 'two', 'three']) {
      assert.equal((await api('POST', '/api/apps', { name, repo: 'https://example.com/x.git', server: 'away' })).status, 201);
    }
  });

  after(async () => {
    await cp?.close();
  });

  it('ends them as the agent’s journal says — or failed when it has no record — and leaves queued ones to the queue', async () => {
    const agent = await FakeAgent.join(cp.url, credential);
    const started: string[] = [];
    for (const app of ['one', 'two']) {
      const d = (await api('POST', `/api/apps/${app}/deploy`, {})).body;
      assert.equal((await agent.next('deploy')).deploymentId, d.id);
      agent.progress(d.id, 'building');
      started.push(d.id);
    }
    await agent.sync();
    agent.ws.terminate();
    await eventually(async () => (await api('GET', '/api/servers')).body[0].connected, (c) => c === false, 5000);
    const queued = (await api('POST', '/api/apps/three/deploy', {})).body;

    const back = await FakeAgent.join(cp.url, credential);
    const request = await back.next('deploy_status_request');
    assert.deepEqual(request.deploymentIds, started, 'both started deployments are asked about, the queued one is not');
    assert.equal((await back.next('deploy')).deploymentId, queued.id, 'the queued one is delivered as an order');
    // The agent answers from its journal (see agent/deploy/status-report.ts).
    const [first, second] = answerStatusRequest(started, (id) => (id === started[0] ? journalRecord(id, 'done') : null));
    back.send(first);
    back.send(second);
    await back.sync();
    assert.equal((await api('GET', `/api/deployments/${started[0]}`)).body.status, 'done');
    const unknown = (await api('GET', `/api/deployments/${started[1]}`)).body;
    assert.equal(unknown.status, 'failed');
    assert.match(unknown.reason, /no record of this deployment/);
    back.ws.close();
  });

  it('an agent does not answer for a deployment it still has queued', () => {
    assert.deepEqual(answerStatusRequest(['q1'], (id) => journalRecord(id, 'queued')), []);
    const [running] = answerStatusRequest(['r1'], (id) => journalRecord(id, 'health_checking'));
    assert.equal(running?.status, 'health_checking');
  });
});

/** A journal record of the agent's deploy store, as much as the status report reads. */
function journalRecord(id: string, status: DeployRecord['status']): DeployRecord {
  const at = new Date().toISOString();
  return { id, app: 'one', status, commit: 'a'.repeat(40), reason: null, image: null, containerId: null, hostPort: null, containerPort: null, order: {} as DeployRecord['order'], logSeq: 0, createdAt: at, updatedAt: at, finishedAt: status === 'done' ? at : null, deadlineAt: null, buildImages: [] };
}
