// A cluster's builder (`berth cluster builder`) against a real control plane (SQLite, HTTP, the hub)
// with real `ws` clients playing the manager's and the builder's agents: the builder gets a
// build-only order and the registry's credentials, its `done` with the pushed image becomes the
// manager's continuation order for the same deployment (one journal, one log, the states in
// order), a failure on the builder names it, and an offline or disconnecting builder fails the
// deploy at once. The real agents, engines and Swarm: test/cluster-deploy.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { builtElsewhere, builtImage } from '../../shared/cluster-build.js';
import { registrySpecFor } from '../../control-plane/clusters/registry-store.js';
import { cpDeployOrder } from '../../shared/protocol.js';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { adminApi, FakeAgent, lastDesiredState } from '../helpers/fake-agent.js';

type Answer = { ok: boolean; result?: Record<string, unknown>; error?: string };
const SHA = 'a'.repeat(40);
const DIGEST = `sha256:${'b'.repeat(64)}`;

/** Answer every cluster_request with `handler` until the agent closes. */
function serve(agent: FakeAgent, handler: (req: Record<string, any>) => Answer): void {
  void (async () => {
    while (agent.ws.readyState <= 1) {
      let msg: Record<string, any>;
      try {
        msg = await agent.next('cluster_request', 500);
      } catch {
        continue;
      }
      agent.send({ type: 'cluster_response', v: 1, requestId: msg.requestId, ...handler(msg.request) });
    }
  })();
}

const logLines = (seq0: number, texts: string[]) => texts.map((text, i) => ({ seq: seq0 + i, ts: new Date().toISOString(), stream: 'system', text }));

describe('cluster builder: the control plane drives the build on the builder, the rest on the manager', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-cluster-builder-'));
  let cp: RunningControlPlane;
  let api: ReturnType<typeof adminApi>;
  const agents: Record<string, FakeAgent> = {};
  const credentials: Record<string, string> = {};
  const nodes: Array<{ id: string; state: string }> = [{ id: 'node1', state: 'ready' }];
  const swarmView = (): Answer => ({
    ok: true,
    result: { nodes: nodes.map((n) => ({ id: n.id, hostname: n.id, role: n.id === 'node1' ? 'manager' : 'worker', availability: 'active', state: n.state, addr: '192.0.2.1', managerReachability: '', leader: n.id === 'node1', runningTasks: 0 })) },
  });
  const manager = (req: Record<string, any>): Answer => {
    if (req.op === 'init') return { ok: true, result: { nodeId: 'node1', advertise: '192.0.2.1' } };
    if (req.op === 'join_token') return { ok: true, result: { joinToken: 'SWMTKN-1-test' } };
    if (req.op === 'inspect') return swarmView();
    if (req.op === 'preflight') return { ok: true, result: { failures: [] } };
    if (req.op === 'remove_node') nodes.splice(nodes.findIndex((n) => n.id === req.nodeId), 1);
    if (req.op === 'overlay_serve') return { ok: true, result: { address: '172.29.0.2' } };
    return { ok: true, result: {} };
  };
  const worker = (id: string) => (req: Record<string, any>): Answer => {
    if (req.op === 'preflight') return { ok: true, result: { failures: [], localAddr: '192.0.2.11' } };
    if (req.op === 'join') {
      nodes.push({ id, state: 'ready' });
      return { ok: true, result: { nodeId: id } };
    }
    if (req.op === 'leave') nodes.find((n) => n.id === id)!.state = 'down';
    if (req.op === 'overlay_serve') return { ok: true, result: { address: '172.29.0.9' } };
    return { ok: true, result: {} };
  };

  const connect = async (name: string, handler: (req: Record<string, any>) => Answer) => {
    const agent = await FakeAgent.join(cp.url, credentials[name]!);
    agents[name] = agent;
    serve(agent, handler);
    return agent;
  };
  const enrol = async (name: string, handler: (req: Record<string, any>) => Answer) => {
    const created = await api('POST', '/api/servers', { name });
    assert.equal(created.status, 201);
    const joined = await fetch(`${cp.url}/api/agent/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: created.body.joinToken, name }) });
    credentials[name] = ((await joined.json()) as { credential: string }).credential;
    return connect(name, handler);
  };
  const deploy = async () => {
    const r = await api('POST', '/api/apps/shop/deploy', {});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body as { id: string; status: string; reason: string | null };
  };
  const deployment = async (id: string) => (await api('GET', `/api/deployments/${id}`)).body;

  before(async () => {
    cp = await startControlPlane({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', logger: pino({ level: 'silent' }) });
    api = adminApi(cp);
    await enrol('m1', manager);
    await enrol('b1', worker('node2'));
    await enrol('w1', worker('node3'));
    assert.equal((await api('POST', '/api/clusters', { name: 'prod', manager: 'm1' })).status, 201);
    assert.equal((await api('POST', '/api/clusters/prod/nodes', { server: 'w1' })).status, 201);
    assert.equal((await api('POST', '/api/apps', { name: 'shop', repo: 'https://git.example.com/shop.git', cluster: 'prod' })).status, 201);
  });

  after(async () => {
    for (const a of Object.values(agents)) a.close();
    await cp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('without a builder the manager builds: a plain order, and `builder` is the manager', async () => {
    const list = (await api('GET', '/api/clusters')).body;
    assert.equal(list[0].builder, 'm1');
    const d = await deploy();
    const order = await agents.m1!.next('deploy');
    assert.equal(order.deploymentId, d.id);
    assert.equal(order.buildOnly, undefined);
    assert.equal(order.built, undefined);
    agents.m1!.progress(d.id, 'failed', { reason: 'not this test' });
    await agents.m1!.sync();
  });

  it('`cluster add --builder`: the new node builds, and gets the registry credentials (never `serve`); other workers do not', async () => {
    const added = await api('POST', '/api/clusters/prod/nodes', { server: 'b1', builder: true });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const details = (await api('GET', '/api/clusters/prod')).body;
    assert.equal(details.builder, 'b1');
    const spec = (await lastDesiredState(agents.b1!)).spec;
    assert.equal(spec.cluster.builder, true);
    assert.equal(spec.cluster.role, 'worker');
    assert.ok(spec.cluster.registry.username && spec.cluster.registry.password, 'the builder can push');
    assert.equal(spec.cluster.registry.serve, undefined, 'the registry runs on the manager only');
    const other = (await lastDesiredState(agents.w1!)).spec;
    assert.equal(other.cluster.builder, undefined);
    assert.equal(other.cluster.registry.password, undefined, 'a plain worker never gets the password');
  });

  it('a deploy: build-only order to the builder, then the continuation to the manager from the pushed digest; one log, the states in order', async () => {
    const d = await deploy();
    const order = cpDeployOrder.parse(await agents.b1!.next('deploy'));
    assert.equal(order.deploymentId, d.id);
    assert.equal(order.buildOnly, true);
    assert.equal(order.app.repo, 'https://git.example.com/shop.git', 'the builder gets what the fetch needs in the order');
    await agents.m1!.none('deploy', 200);
    agents.b1!.progress(d.id, 'fetching');
    agents.b1!.send({ type: 'deploy_log', v: 1, deploymentId: d.id, lines: logLines(0, ['building on b1', 'fetched', 'pushed']) });
    agents.b1!.progress(d.id, 'building', { commit: SHA });
    const image = `192.0.2.1:5000/berth/shop@${DIGEST}`;
    const config = { source: 'berth.yml', build: { image: { kind: 'dockerfile' }, dockerfile: 'Dockerfile' }, processes: { web: { command: null, scale: 1 } }, release: 'true' };
    agents.b1!.progress(d.id, 'done', { commit: SHA, built: { image, config, containerPort: 8080 } });
    const cont = cpDeployOrder.parse(await agents.m1!.next('deploy'));
    assert.equal(cont.deploymentId, d.id);
    assert.equal(cont.buildOnly, undefined);
    assert.deepEqual(builtElsewhere.parse(cont.built), { image, config, containerPort: 8080, builder: 'b1', commit: SHA, logSeq: 3 });
    assert.equal((await deployment(d.id)).status, 'building', "the builder's done is not the deployment's");
    // A replay of the builder's done changes nothing and sends nothing more.
    agents.b1!.progress(d.id, 'done', { commit: SHA });
    await agents.b1!.sync();
    await agents.m1!.none('deploy', 200);
    for (const s of ['releasing', 'starting', 'health_checking', 'switching']) agents.m1!.progress(d.id, s);
    agents.m1!.send({ type: 'deploy_log', v: 1, deploymentId: d.id, lines: logLines(3, ['built on b1', 'release command finished']) });
    agents.m1!.progress(d.id, 'done', { commit: SHA });
    await agents.m1!.sync();
    const end = await deployment(d.id);
    assert.equal(end.status, 'done');
    assert.deepEqual(
      end.phases.map((p: { status: string }) => p.status),
      ['queued', 'fetching', 'building', 'releasing', 'starting', 'health_checking', 'switching', 'done'],
    );
    const logs = (await api('GET', `/api/deployments/${d.id}/logs`)).body.lines.map((l: { text: string }) => l.text);
    assert.deepEqual(logs, ['building on b1', 'fetched', 'pushed', 'built on b1', 'release command finished']);
  });

  it("a failure on the builder fails the deployment naming it; the manager is never asked", async () => {
    const d = await deploy();
    await agents.b1!.next('deploy');
    agents.b1!.progress(d.id, 'fetching');
    agents.b1!.progress(d.id, 'building', { commit: SHA });
    agents.b1!.progress(d.id, 'failed', { reason: 'build failed: RUN exit 1' });
    await agents.b1!.sync();
    const end = await deployment(d.id);
    assert.equal(end.status, 'failed');
    assert.equal(end.reason, 'build on b1 failed: RUN exit 1');
    await agents.m1!.none('deploy', 200);
    // A done without the pushed image is a failure too.
    const d2 = await deploy();
    await agents.b1!.next('deploy');
    agents.b1!.progress(d2.id, 'done', { commit: SHA });
    await agents.b1!.sync();
    assert.match((await deployment(d2.id)).reason, /^build on b1 failed: the builder finished without reporting the pushed image/);
  });

  it('the manager reconnecting while the builder builds is not asked about it (it would answer "no record")', async () => {
    const d = await deploy();
    await agents.b1!.next('deploy');
    agents.b1!.progress(d.id, 'building', { commit: SHA });
    await agents.b1!.sync();
    agents.m1!.close();
    await agents.m1!.closed;
    const m1 = await connect('m1', manager);
    await m1.sync();
    await m1.none('deploy_status_request', 200);
    assert.equal((await deployment(d.id)).status, 'building');
    agents.b1!.progress(d.id, 'failed', { reason: 'build failed: cleaning up' });
    await agents.b1!.sync();
  });

  it('a builder that disconnects while building fails the deploy at once; an offline builder fails a new one at once', async () => {
    const d = await deploy();
    await agents.b1!.next('deploy');
    agents.b1!.progress(d.id, 'building', { commit: SHA });
    await agents.b1!.sync();
    agents.b1!.ws.terminate();
    await agents.b1!.closed;
    let now = await deployment(d.id);
    for (let i = 0; i < 50 && now.status !== 'failed'; i++) now = await new Promise((r) => setTimeout(r, 20)).then(() => deployment(d.id));
    assert.equal(now.status, 'failed');
    assert.match(now.reason, /^build on b1 failed: its agent disconnected while building/);
    const offline = await deploy();
    assert.equal(offline.status, 'failed');
    assert.match(offline.reason!, /^build on b1 failed: b1 is offline \(the builder of cluster prod/);
    await agents.m1!.none('deploy', 200);
    await connect('b1', worker('node2'));
  });

  it('`cluster builder --manager` (server null) builds on the manager again; the old builder loses the credentials', async () => {
    assert.equal((await api('PUT', '/api/clusters/prod/builder', { server: 'nope' })).status, 409);
    const r = await api('PUT', '/api/clusters/prod/builder', { server: null });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.builder, 'm1');
    const spec = (await lastDesiredState(agents.b1!)).spec;
    assert.equal(spec.cluster.builder, undefined);
    assert.equal(spec.cluster.registry.password, undefined);
    const d = await deploy();
    const order = await agents.m1!.next('deploy');
    assert.equal(order.deploymentId, d.id);
    assert.equal(order.buildOnly, undefined);
    agents.m1!.progress(d.id, 'failed', { reason: 'not this test' });
    await agents.m1!.sync();
  });

  it('removing the builder node with `cluster rm` builds on the manager again', async () => {
    assert.equal((await api('PUT', '/api/clusters/prod/builder', { server: 'b1' })).body.builder, 'b1');
    const removed = await api('DELETE', '/api/clusters/prod/nodes/b1');
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.equal((await api('GET', '/api/clusters/prod')).body.builder, 'm1');
  });
});

describe('cluster builder: the shapes on the wire', () => {
  it('the pushed image is only ever a digest reference of the berth repository', () => {
    const ok = { image: `10.0.0.1:5000/berth/shop@${DIGEST}`, config: {}, containerPort: null };
    assert.equal(builtImage.safeParse(ok).success, true);
    for (const image of ['10.0.0.1:5000/berth/shop:latest', `10.0.0.1:5000/other/shop@${DIGEST}`, `10.0.0.1:5000/berth/shop@sha256:abc`, `--help/berth/shop@${DIGEST}`]) {
      assert.equal(builtImage.safeParse({ ...ok, image }).success, false, image);
    }
    assert.equal(builtElsewhere.safeParse({ ...ok, builder: 'b1', commit: SHA, logSeq: -1 }).success, false);
  });

  it('registrySpecFor: the builder gets the credentials to push, never serve; a plain worker neither', () => {
    const reg = { cluster: 'prod', mode: 'managed' as const, address: '10.0.0.1:5000', username: 'berth', password: 'pw', caPem: null, caKeyPem: null, certPem: 'c', keyPem: 'k', htpasswd: 'h', updatedAt: '' };
    assert.deepEqual(registrySpecFor(reg, 'worker', true), { address: '10.0.0.1:5000', username: 'berth', password: 'pw' });
    assert.deepEqual(registrySpecFor(reg, 'worker'), { address: '10.0.0.1:5000' });
    assert.equal(registrySpecFor(reg, 'manager', true).serve?.port, 5000);
  });
});
