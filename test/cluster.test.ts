// Cluster formation through berth's agents (issue 15, slice 1) on the real multi-node test bed:
// four Docker engines in containers, an agent in each, a control plane on the host. Servers join
// with `berth cluster …` only (no SSH, no docker CLI from the test to form the swarm); a server that
// cannot reach the manager's ports is refused by name with nothing half-joined; `cluster rm` drains;
// a blocked overlay data path is named; no join token reaches a log or the database; an offline
// agent is a 409. One shared bed for the file. docs/cluster.md, docs/testing.md.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StatusReport } from '../agent/status/report.js';
import type { ClusterDetails, ClusterInfo, ClusterNodeInfo, ClusterNodeRemoved } from '../shared/api.js';
import { eventually } from './helpers/http.js';
import { cli, startSwarmWithAgents, type SwarmWithAgents } from './helpers/swarm-agents.js';
import { ensureSwarmNodeImage } from './helpers/swarm-node-image.js';
import { stepTimer } from './helpers/timings.js';

describe('cluster formation through the agents', { timeout: 15 * 60_000 }, () => {
  let bed: SwarmWithAgents;
  const { timings, timed } = stepTimer();
  const json = async <T>(args: string[]): Promise<T> => {
    const res = await cli(bed, [...args, '--json']);
    assert.equal(res.code, 0, `berth ${args.join(' ')}: ${res.stderr}`);
    return JSON.parse(res.stdout) as T;
  };
  const show = () => json<ClusterDetails>(['cluster', 'show', 'prod']);
  const ip = (server: string) => bed.agent(server).node.ip;
  /** The engine's own view: inactive = in no swarm, active = in one. */
  const localState = async (server: string) => ((await bed.agent(server).node.docker.info()) as { Swarm: { LocalNodeState: string } }).Swarm.LocalNodeState;

  before(async () => {
    await timed('node image (0 when it exists)', () => ensureSwarmNodeImage());
    bed = await timed('4 nodes with enrolled agents', () => startSwarmWithAgents({ nodes: 4 }));
  });

  after(async () => {
    for (const [k, ms] of Object.entries(timings)) process.stderr.write(`# ${k}: ${ms} ms\n`);
    await bed?.close();
  });

  it('three servers form a swarm through their agents; show lists them Ready with roles', async (t) => {
    const created = await timed('cluster create', () => json<ClusterDetails>(['cluster', 'create', 'prod', '--manager', 'web1']));
    // No --advertise: the manager advertises the address its agent reaches the control plane from.
    assert.equal(created.advertise, ip('web1'));
    assert.equal(created.addrPool, '172.29.0.0/16');
    const added = await timed('two joins (preflight, token relay, join, rotate, Ready, overlay check)', async () => [
      await json<ClusterNodeInfo>(['cluster', 'add', 'prod', 'web2']),
      await json<ClusterNodeInfo>(['cluster', 'add', 'prod', 'web3']),
    ]);
    for (const n of added) assert.deepEqual([n.role, n.state, n.reachability, n.error], ['worker', 'ready', 'reachable', null], JSON.stringify(n));

    const c = await show();
    assert.equal(c.managerOnline, true);
    assert.deepEqual(
      c.nodes.map((n) => [n.server, n.role, n.state, n.availability, n.reachability, n.leader, n.addr]),
      [
        ['web1', 'manager', 'ready', 'active', 'reachable', true, ip('web1')],
        ['web2', 'worker', 'ready', 'active', 'reachable', false, ip('web2')],
        ['web3', 'worker', 'ready', 'active', 'reachable', false, ip('web3')],
      ],
    );
    // The engines agree: the manager's own `docker node ls` (read, not used to form anything).
    const states = await bed.swarm.nodeStates();
    assert.deepEqual([...states.keys()].sort(), ['web1', 'web2', 'web3'].map((s) => bed.agent(s).node.name).sort());
    assert.equal(states.get(bed.agent('web1').node.name)?.managerStatus, 'Leader');
    assert.equal(await localState('web4'), 'inactive');
    // `berth status` on each node: its role and the swarm's health; the manager lists every node.
    const status = async (server: string) => (JSON.parse(await bed.nodeBerth(server, ['status', '--json'])) as StatusReport).cluster;
    const onManager = await eventually(() => status('web1'), (c) => c?.nodes?.length === 3, 20_000);
    assert.deepEqual([onManager!.name, onManager!.role, onManager!.swarmState, onManager!.health, onManager!.managers], ['prod', 'manager', 'active', 'healthy', 1]);
    const onWorker = await eventually(() => status('web2'), (c) => c !== null, 20_000);
    assert.deepEqual([onWorker!.role, onWorker!.swarmState, onWorker!.health, onWorker!.nodes], ['worker', 'active', 'healthy', null]);
    assert.equal((JSON.parse(await bed.nodeBerth('web4', ['status', '--json'])) as StatusReport).cluster, null, 'a server in no cluster says so');
    const list = await json<ClusterInfo[]>(['cluster', 'ls']);
    assert.deepEqual(list.map((x) => [x.name, x.manager, x.nodeCount]), [['prod', 'web1', 3]]);
    for (const [k, ms] of Object.entries(timings)) t.diagnostic(`${k}: ${ms} ms`);
  });

  it("a server that cannot reach the manager's 2377/tcp is refused by name, with nothing half-joined", async () => {
    const web4 = bed.agent('web4').node;
    await bed.swarm.exec(web4, ['iptables', '-A', 'OUTPUT', '-d', ip('web1'), '-p', 'tcp', '--dport', '2377', '-j', 'REJECT']);
    try {
      const res = await cli(bed, ['cluster', 'add', 'prod', 'web4']);
      assert.notEqual(res.code, 0, res.stdout);
      assert.match(res.stderr, new RegExp(`web4 cannot reach ${ip('web1').replace(/\./g, '\\.')}:2377/tcp`));
      // Only what is blocked is named: 7946 answered.
      assert.doesNotMatch(res.stderr, /7946/);
      assert.equal(await localState('web4'), 'inactive');
      assert.equal((await bed.swarm.nodeStates()).size, 3);
      assert.deepEqual((await show()).nodes.map((n) => n.server), ['web1', 'web2', 'web3']);
    } finally {
      await bed.swarm.exec(web4, ['iptables', '-D', 'OUTPUT', '-d', ip('web1'), '-p', 'tcp', '--dport', '2377', '-j', 'REJECT']);
    }
  });

  it('no join token appears in the control plane log, the agent logs or the SQLite files', async () => {
    // Every token of this swarm starts with SWMTKN-1-; the current ones are read here only to check for them too.
    const current = (await bed.swarm.exec(bed.agent('web1').node, ['docker', 'swarm', 'join-token', '-q', 'worker'])).trim();
    assert.match(current, /^SWMTKN-1-/);
    const cpLog = readFileSync(bed.cpLog, 'utf8');
    // The logs are the right ones: the token steps are in them, by name only.
    assert.match(cpLog, /server joined the cluster/);
    const agentLogs = bed.agents.map((a) => readFileSync(a.logFile, 'utf8'));
    assert.ok(agentLogs.some((l) => /"op":"join_token"/.test(l)), 'the manager logged its join_token step');
    assert.ok(agentLogs.some((l) => /"op":"join"/.test(l)), 'a worker logged its join step');
    const dbFiles = readdirSync(bed.cpData).filter((f) => f.startsWith('control-plane.db'));
    assert.ok(dbFiles.includes('control-plane.db'));
    const haystacks: Array<[string, string]> = [
      ['control-plane.log', cpLog],
      ...bed.agents.map((a, i): [string, string] => [a.logFile, agentLogs[i]!]),
      ...dbFiles.map((f): [string, string] => [f, readFileSync(join(bed.cpData, f)).toString('latin1')]),
    ];
    for (const [name, text] of haystacks) {
      assert.ok(!text.includes('SWMTKN-'), `a join token in ${name}`);
      assert.ok(!text.includes(current.slice(-25)), `the current token's secret in ${name}`);
    }
  });

  it('cluster rm drains a worker (its tasks move away), then it leaves and is removed', async () => {
    const manager = bed.agent('web1').node;
    await bed.swarm.exec(manager, [
      'docker', 'service', 'create', '--detach', '--name', 'drainme', '--replicas', '3', '--no-resolve-image', '--stop-grace-period', '1s',
      '--label', 'berth-test=cluster', 'berth-test/busybox:latest', 'sleep', '3600',
    ]);
    const tasksOn = async () => {
      const out = await bed.swarm.exec(manager, ['docker', 'service', 'ps', 'drainme', '--filter', 'desired-state=running', '--format', '{{.Node}} {{.CurrentState}}']);
      return out.trim().split('\n').filter((l) => /Running/.test(l)).map((l) => l.split(' ')[0]!);
    };
    const before = await eventually(tasksOn, (nodes) => nodes.length === 3, 60_000, 500);
    const web3 = bed.agent('web3').node.name;
    assert.ok(before.includes(web3), `a task on web3 before the drain: ${before.join(', ')}`);

    const removed = await timed('cluster rm (drain, leave, node rm)', () => json<ClusterNodeRemoved>(['cluster', 'rm', 'prod', 'web3']));
    assert.deepEqual(removed, { cluster: 'prod', server: 'web3', drainedTasks: before.filter((n) => n === web3).length });
    const afterRm = await eventually(tasksOn, (nodes) => nodes.length === 3, 60_000, 500);
    assert.ok(!afterRm.includes(web3), `no task left on web3: ${afterRm.join(', ')}`);
    assert.equal(await localState('web3'), 'inactive');
    assert.ok(!(await bed.swarm.nodeStates()).has(web3), 'web3 is no node of the swarm any more');
    assert.deepEqual((await show()).nodes.map((n) => n.server), ['web1', 'web2']);
    await bed.swarm.exec(manager, ['docker', 'service', 'rm', 'drainme']);
  });

  it('a node whose overlay traffic (4789/udp) is blocked joins but is reported unreachable by name', async () => {
    const web3 = bed.agent('web3').node;
    await bed.swarm.exec(web3, ['iptables', '-A', 'OUTPUT', '-p', 'udp', '--dport', '4789', '-j', 'DROP']);
    try {
      const res = await timed('add with overlay blocked', () => cli(bed, ['cluster', 'add', 'prod', 'web3']));
      assert.notEqual(res.code, 0, res.stdout);
      assert.match(res.stderr, /web3 cannot reach web1 over the overlay network \(4789\/udp\)/);
      const node = (await show()).nodes.find((n) => n.server === 'web3');
      assert.equal(node?.state, 'ready', 'the swarm itself (TCP) works');
      assert.equal(node?.reachability, 'unreachable');
      assert.match(node?.error ?? '', /web3 cannot reach web1 over the overlay network \(4789\/udp\)/);
      const table = await cli(bed, ['cluster', 'show', 'prod']);
      assert.match(table.stdout, /web3\s+worker\s+ready\s+active\s+unreachable/);
    } finally {
      await bed.swarm.exec(web3, ['iptables', '-D', 'OUTPUT', '-p', 'udp', '--dport', '4789', '-j', 'DROP']);
    }
  });

  it('a server joins as a manager, and cluster rm demotes it before it leaves', async () => {
    const added = await json<ClusterNodeInfo>(['cluster', 'add', 'prod', 'web4', '--role', 'manager']);
    assert.deepEqual([added.role, added.state, added.reachability], ['manager', 'ready', 'reachable']);
    const web4 = bed.agent('web4').node.name;
    assert.equal((await bed.swarm.nodeStates()).get(web4)?.managerStatus, 'Reachable');
    const removed = await json<ClusterNodeRemoved>(['cluster', 'rm', 'prod', 'web4']);
    assert.equal(removed.server, 'web4');
    assert.equal(await localState('web4'), 'inactive');
    const states = await bed.swarm.nodeStates();
    assert.ok(!states.has(web4));
    // The first manager still leads: quorum was never lost.
    assert.equal(states.get(bed.agent('web1').node.name)?.managerStatus, 'Leader');
  });

  it("an offline agent is a 409 naming its server", async () => {
    await bed.stopAgent('web4');
    const res = await cli(bed, ['cluster', 'add', 'prod', 'web4']);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /server "web4" is offline/);
    const http = await fetch(`${bed.cpUrl}/api/clusters/prod/nodes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bed.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ server: 'web4' }),
    });
    assert.equal(http.status, 409);
    assert.match(((await http.json()) as { error: string }).error, /server "web4" is offline/);
    assert.equal(await localState('web4'), 'inactive');
  });
});
