// The cluster API against a real control plane (SQLite, HTTP, the hub) with real `ws` clients
// playing the agents' side of cluster_request / cluster_response: validation, offline servers,
// a refused preflight that leaves nothing behind, the token relayed once then rotated, and no
// token in the database. The real agents and Swarm: test/cluster.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { adminApi, FakeAgent, lastDesiredState } from '../helpers/fake-agent.js';

const TOKEN = 'SWMTKN-1-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcd-fakesecretfakesecret01';
type Handler = (req: Record<string, any>) => { ok: boolean; result?: Record<string, unknown>; error?: string };

/** Answer every cluster_request with `handler` (recording the ops) until the agent closes. */
function serve(agent: FakeAgent, handler: Handler, ops: string[]): void {
  void (async () => {
    for (;;) {
      let msg: Record<string, any>;
      try {
        msg = await agent.next('cluster_request', 60_000);
      } catch {
        return;
      }
      ops.push(msg.request.op);
      agent.send({ type: 'cluster_response', v: 1, requestId: msg.requestId, ...handler(msg.request) });
    }
  })();
}

describe('cluster API with agents on the wire', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-cluster-api-'));
  let cp: RunningControlPlane;
  let api: ReturnType<typeof adminApi>;
  const agents: FakeAgent[] = [];
  const ops: { m1: string[]; w1: string[]; w2: string[] } = { m1: [], w1: [], w2: [] };
  /** The manager probing a new node back (its 7946/tcp). */
  let m1Preflight: ReturnType<Handler> = { ok: true, result: { failures: [] } };
  let w2Preflight: Handler = () => ({ ok: true, result: { failures: [], localAddr: '192.0.2.12' } });

  const join_ = async (name: string, handler: Handler) => {
    const created = await api('POST', '/api/servers', { name });
    assert.equal(created.status, 201);
    const joined = await fetch(`${cp.url}/api/agent/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: created.body.joinToken, name }) });
    const { credential } = (await joined.json()) as { credential: string };
    const agent = await FakeAgent.join(cp.url, credential);
    agents.push(agent);
    serve(agent, handler, ops[name as keyof typeof ops]);
  };

  const nodes: Array<{ id: string; state: string }> = [{ id: 'node1', state: 'ready' }];
  const swarmView = () => ({
    ok: true,
    result: { nodes: nodes.map((n) => ({ id: n.id, hostname: n.id, role: n.id === 'node1' ? 'manager' : 'worker', availability: 'active', state: n.state, addr: '192.0.2.1', managerReachability: '', leader: n.id === 'node1', runningTasks: 0 })) },
  });

  before(async () => {
    cp = await startControlPlane({ dataDir: join(dir, 'data'), listen: '127.0.0.1:0', logger: pino({ level: 'silent' }) });
    api = adminApi(cp);
    await join_('m1', (req) => {
      switch (req.op) {
        case 'init':
          return { ok: true, result: { nodeId: 'node1', advertise: '192.0.2.1' } };
        case 'join_token':
          return { ok: true, result: { joinToken: TOKEN } };
        case 'inspect':
          return swarmView();
        case 'preflight':
          return m1Preflight;
        case 'overlay_serve':
          return { ok: true, result: { address: '172.29.0.2' } };
        default:
          return { ok: true, result: {} };
      }
    });
    const worker = (id: string, preflight: () => Handler): Handler => (req) => {
      if (req.op === 'preflight') return preflight()(req);
      if (req.op === 'join') {
        assert.equal(req.joinToken, TOKEN, 'the token from the manager is relayed as it is');
        nodes.push({ id, state: 'ready' });
        return { ok: true, result: { nodeId: id } };
      }
      if (req.op === 'overlay_serve') return { ok: true, result: { address: '172.29.0.9' } };
      return { ok: true, result: {} };
    };
    await join_('w1', worker('node2', () => () => ({ ok: true, result: { failures: [], localAddr: '192.0.2.11' } })));
    await join_('w2', worker('node3', () => w2Preflight));
    await api('POST', '/api/servers', { name: 'never' }); // created, never joined: offline
  });

  after(async () => {
    for (const a of agents) a.close();
    await cp?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('validates bodies and names with 400s that name the field', async () => {
    assert.match((await api('POST', '/api/clusters', { name: 'Prod!', manager: 'm1' })).body.error, /invalid cluster name/);
    assert.match((await api('POST', '/api/clusters', { name: 'prod' })).body.error, /missing manager server/);
    assert.match((await api('POST', '/api/clusters', { name: 'prod', manager: 'm1', advertise: 'a b' })).body.error, /invalid advertise address/);
    assert.equal((await api('POST', '/api/clusters/prod/nodes', { server: 'w1', role: 'king' })).status, 400);
    assert.equal((await api('GET', '/api/clusters/nope')).status, 404);
  });

  it('an offline manager is a 409 naming it, and nothing is recorded', async () => {
    const r = await api('POST', '/api/clusters', { name: 'prod', manager: 'never' });
    assert.equal(r.status, 409);
    assert.match(r.body.error, /server "never" is offline/);
    assert.deepEqual((await api('GET', '/api/clusters')).body, []);
  });

  it('creates a cluster through the manager, relays a token once per join and rotates it', async () => {
    const created = await api('POST', '/api/clusters', { name: 'prod', manager: 'm1' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual([created.body.advertise, created.body.addrPool, created.body.nodes.length], ['192.0.2.1', '172.29.0.0/16', 1]);
    const added = await api('POST', '/api/clusters/prod/nodes', { server: 'w1' });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    assert.deepEqual([added.body.server, added.body.role, added.body.reachability], ['w1', 'worker', 'reachable']);
    assert.deepEqual(ops.w1.slice(0, 2), ['preflight', 'join']);
    const i = ops.m1.indexOf('join_token');
    assert.ok(i >= 0 && ops.m1[i + 1] === 'rotate_token', `rotated right after the relay: ${ops.m1.join(',')}`);
    assert.equal((await api('POST', '/api/clusters/prod/nodes', { server: 'w1' })).status, 409, 'a server is in one cluster at most');
    assert.match((await api('POST', '/api/clusters', { name: 'other', manager: 'w1' })).body.error, /server "w1" is already in cluster "prod"/);
  });

  it('a preflight failure is refused by name before any token is asked for', async () => {
    w2Preflight = () => ({ ok: true, result: { failures: [{ addr: '192.0.2.1', port: 2377, proto: 'tcp', error: 'ECONNREFUSED' }] } });
    const tokensBefore = ops.m1.filter((o) => o === 'join_token').length;
    const r = await api('POST', '/api/clusters/prod/nodes', { server: 'w2' });
    assert.equal(r.status, 409);
    assert.match(r.body.error, /^w2 cannot reach 192\.0\.2\.1:2377\/tcp \(ECONNREFUSED\)/);
    assert.equal(ops.m1.filter((o) => o === 'join_token').length, tokensBefore);
    assert.ok(!ops.w2.includes('join'));
    assert.deepEqual((await api('GET', '/api/clusters/prod')).body.nodes.map((n: { server: string }) => n.server), ['m1', 'w1']);
  });

  it("a node the manager cannot reach back joins but is unreachable, naming the manager and the port", async () => {
    w2Preflight = () => ({ ok: true, result: { failures: [], localAddr: '192.0.2.12' } });
    m1Preflight = { ok: true, result: { failures: [{ addr: '192.0.2.12', port: 7946, proto: 'tcp', error: 'EHOSTUNREACH' }] } };
    const r = await api('POST', '/api/clusters/prod/nodes', { server: 'w2' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.reachability, 'unreachable');
    assert.equal(r.body.error, 'm1 cannot reach 192.0.2.12:7946/tcp (EHOSTUNREACH)');
    const shown = (await api('GET', '/api/clusters/prod')).body.nodes.find((n: { server: string }) => n.server === 'w2');
    assert.equal(shown.reachability, 'unreachable');
  });

  it('refuses to remove a server that is in a cluster, naming the cluster', async () => {
    const r = await api('DELETE', '/api/servers/w1');
    assert.equal(r.status, 409);
    assert.match(r.body.error, /server "w1" is in cluster "prod": remove it first \(berth cluster rm prod w1\)/);
    assert.equal((await api('DELETE', '/api/servers/never')).status, 200, 'a server in no cluster is removed as before');
  });

  it('an agent that goes away mid-step fails the request at once with a 409 naming it, and nothing is recorded', async () => {
    const created = await api('POST', '/api/servers', { name: 'flaky' });
    const joined = await fetch(`${cp.url}/api/agent/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: created.body.joinToken, name: 'flaky' }) });
    const agent = await FakeAgent.join(cp.url, ((await joined.json()) as { credential: string }).credential);
    const pending = api('POST', '/api/clusters', { name: 'gone', manager: 'flaky' });
    const req = await agent.next('cluster_request');
    assert.equal(req.request.op, 'init');
    agent.ws.terminate();
    const r = await pending;
    assert.equal(r.status, 409);
    assert.match(r.body.error, /the agent of server "flaky" disconnected before answering/);
    assert.equal((await api('GET', '/api/clusters/gone')).status, 404);
  });

  it('creates apps on a cluster (deployed by its manager), and refuses ambiguous or impossible ones', async () => {
    const repo = 'https://git.example.com/org/web.git';
    const both = await api('POST', '/api/apps', { name: 'both', repo, server: 'm1', cluster: 'prod' });
    assert.equal(both.status, 400);
    assert.match(both.body.error, /exactly one of server \(--server\) and cluster \(--cluster\)/);
    assert.equal((await api('POST', '/api/apps', { name: 'neither', repo })).status, 400);
    assert.equal((await api('POST', '/api/apps', { name: 'lost', repo, cluster: 'nope' })).status, 404);
    const created = await api('POST', '/api/apps', { name: 'web', repo, cluster: 'prod' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual([created.body.cluster, created.body.server], ['prod', 'm1']);
    const standalone = await api('POST', '/api/apps', { name: 'solo', repo, server: 'w1' });
    assert.equal(standalone.status, 201);
    assert.ok(!('cluster' in standalone.body), 'a standalone app has no cluster field (its JSON is as before)');
    const listed = (await api('GET', '/api/apps')).body.find((a: { name: string }) => a.name === 'web');
    assert.equal(listed.cluster, 'prod');
    const moved = await api('PATCH', '/api/apps/web', { server: 'w1' });
    assert.equal(moved.status, 409);
    assert.match(moved.body.error, /runs on cluster "prod"/);
    // The manager's desired state carries the app as a cluster app; the worker's does not run it.
    await api('POST', '/api/apps/web/domains', { domain: 'web.example.com' });
    const spec = (await lastDesiredState(agents[0]!)).spec;
    assert.equal(spec.apps.find((a: { name: string }) => a.name === 'web').cluster, 'prod');
    assert.deepEqual([spec.cluster.name, spec.cluster.role], ['prod', 'manager']);
  });

  it('an external registry: the manager gets the credentials, workers only the address and CA, the API and database never the password', async () => {
    const password = 'registry-password-0123456789';
    const caPem = '-----BEGIN CERTIFICATE-----\nMIIBfakefakefake\n-----END CERTIFICATE-----\n';
    assert.equal((await api('PUT', '/api/clusters/prod/registry', { address: 'Registry.Example.com:5000', username: 'u', password })).status, 400, 'upper case');
    assert.equal((await api('PUT', '/api/clusters/prod/registry', { address: 'r.example.com:5000/../x', username: 'u', password })).status, 400, 'a path');
    const managed = await api('GET', '/api/clusters/prod/registry');
    assert.deepEqual([managed.body.mode, managed.body.address, managed.body.privateCa], ['managed', '192.0.2.1:5000', true], 'cluster create made a managed one');
    assert.equal((await api('GET', '/api/clusters/nope/registry')).status, 404);
    const set = await api('PUT', '/api/clusters/prod/registry', { address: 'r.example.com:5000', username: 'pusher', password, caPem });
    assert.equal(set.status, 200, JSON.stringify(set.body));
    assert.deepEqual([set.body.mode, set.body.address, set.body.privateCa], ['external', 'r.example.com:5000', true]);
    assert.ok(!JSON.stringify((await api('GET', '/api/clusters/prod/registry')).body).includes(password));
    const manager = (await lastDesiredState(agents[0]!)).spec.cluster;
    assert.deepEqual([manager.registry.address, manager.registry.username, manager.registry.password, manager.registry.caPem], ['r.example.com:5000', 'pusher', password, caPem]);
    const worker = (await lastDesiredState(agents[1]!)).spec.cluster;
    assert.deepEqual([worker.role, worker.registry.address, worker.registry.caPem], ['worker', 'r.example.com:5000', caPem]);
    assert.equal(worker.registry.password, undefined, 'workers pull through Swarm with the manager’s credentials');
    assert.equal(manager.registry.serve, undefined, 'an external registry is not served by the manager');
    for (const f of readdirSync(join(dir, 'data')).filter((x) => x.startsWith('control-plane.db'))) {
      assert.ok(!readFileSync(join(dir, 'data', f)).toString('latin1').includes(password), `${f} holds the registry password in clear`);
    }
  });

  it('keeps no join token in the database', async () => {
    for (const f of readdirSync(join(dir, 'data')).filter((x) => x.startsWith('control-plane.db'))) {
      assert.ok(!readFileSync(join(dir, 'data', f)).toString('latin1').includes('SWMTKN-'), f);
    }
  });
});
