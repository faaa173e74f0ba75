// Cluster formation through berth's agents (issue 15, slice 1) on the real multi-node test bed:
// four Docker engines in containers, an agent in each, a control plane on the host. Servers join
// with `berth cluster …` only (no SSH, no docker CLI from the test to form the swarm); a server that
// cannot reach the manager's ports is refused by name with nothing half-joined; `cluster rm` drains;
// a blocked overlay data path is named; no join token reaches a log or the database; an offline
// agent is a 409. The berth-managed registry `cluster create` starts on the manager is checked on
// the same bed while the nodes are joined: TLS from the cluster CA every agent installed (no daemon
// restart), 401 without credentials, a push from the manager, a worker pulls by digest only after
// logging in, nothing secret in the database in clear, pruneRepository + GC shrink the storage.
// One shared bed for the file. docs/cluster.md, docs/testing.md.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ContainerRunner, pruneRepository, type RegistryAccess } from '../agent/cluster/registry/index.js';
import type { StatusReport } from '../agent/status/report.js';
import { ClusterRegistryStore, type ClusterRegistry } from '../control-plane/clusters/registry-store.js';
import { SecretBox } from '../control-plane/secret-box.js';
import { DB_FILE, type Db } from '../control-plane/store/db.js';
import type { ClusterDetails, ClusterInfo, ClusterNodeInfo, ClusterNodeRemoved } from '../shared/api.js';
import { eventually } from './helpers/http.js';
import { CHECK_IMAGE, cli, startSwarmWithAgents, type SwarmWithAgents } from './helpers/swarm-agents.js';
import { ensureSwarmNodeImage } from './helpers/swarm-node-image.js';
import { stepTimer } from './helpers/timings.js';

/** A cluster's registry as the control plane stored it, read with the control plane's own key (the test needs the password). */
function storedRegistry(bed: SwarmWithAgents, cluster: string): ClusterRegistry {
  const db = new Database(join(bed.cpData, DB_FILE), { readonly: true });
  try {
    const key = Buffer.from(readFileSync(join(bed.cpData, 'secret.key'), 'utf8').trim(), 'base64');
    return new ClusterRegistryStore(db as unknown as Db, new SecretBox(key)).get(cluster)!;
  } finally {
    db.close();
  }
}

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
  // The berth-managed registry (cluster create starts it on the manager, port 5000).
  let created: ClusterDetails;
  let address = '';
  let reg: ClusterRegistry;
  const digests: Record<string, string> = {};
  const dockerdPids: Record<string, string> = {};
  const joined = ['web1', 'web2', 'web3'];
  const exec = (server: string, argv: string[], input?: string) => bed.swarm.exec(bed.agent(server).node, argv, { timeoutMs: 120_000, ...(input !== undefined ? { input } : {}) });
  const tryExec = (server: string, argv: string[]) => bed.swarm.tryExec(bed.agent(server).node, argv, { timeoutMs: 120_000 });
  const caFile = () => `/etc/docker/certs.d/${address}/ca.crt`;
  /** /v2/ through TLS verified with the CA the node's agent installed: 401 when up with auth on. */
  const v2Status = (server: string) => tryExec(server, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', caFile(), `https://${address}/v2/`]);
  const storageKb = async () => Number((await exec('web1', ['docker', 'exec', 'berth-registry', 'du', '-sk', '/var/lib/registry'])).split(/\s/)[0]);
  const login = (server: string) => exec(server, ['docker', 'login', address, '-u', reg.username, '--password-stdin'], reg.password);
  const access = (): RegistryAccess => ({ address, caPem: reg.caPem!, username: reg.username, password: reg.password });
  /** GET a manifest of demo by digest from the host, over TLS verified with the cluster CA, with the credentials. */
  const manifestStatus = (digest: string) =>
    new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        { host: ip('web1'), port: 5000, path: `/v2/demo/manifests/${digest}`, ca: reg.caPem!, auth: `${reg.username}:${reg.password}`, headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' }, timeout: 15_000 },
        (res) => (res.resume(), resolve(res.statusCode ?? 0)),
      );
      req.on('timeout', () => req.destroy(new Error('manifest request timed out')));
      req.on('error', reject);
      req.end();
    });

  before(async () => {
    await timed('node image (0 when it exists)', () => ensureSwarmNodeImage());
    bed = await timed('4 nodes with enrolled agents', () => startSwarmWithAgents({ nodes: 4 }));
    for (const s of joined) dockerdPids[s] = (await exec(s, ['pidof', 'dockerd'])).trim();
  });

  after(async () => {
    for (const [k, ms] of Object.entries(timings)) process.stderr.write(`# ${k}: ${ms} ms\n`);
    await bed?.close();
  });

  it('three servers form a swarm through their agents; show lists them Ready with roles', async (t) => {
    created = await timed('cluster create', () => json<ClusterDetails>(['cluster', 'create', 'prod', '--manager', 'web1']));
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

  // The berth-managed registry, checked while web1 (manager), web2 and web3 are joined and healthy.
  it('cluster create made a managed registry on the manager: TLS from the cluster CA, 401 without credentials', async () => {
    address = `${ip('web1')}:5000`;
    assert.deepEqual(created.registry, { address, mode: 'managed' });
    const shown = await show();
    assert.deepEqual(shown.registry, { address, mode: 'managed' });
    reg = storedRegistry(bed, 'prod');
    assert.equal(reg.address, address);
    assert.equal(JSON.stringify(shown).includes(reg.password), false, 'no password in cluster show');

    await timed('registry up (401 over verified TLS on the joined nodes)', () =>
      Promise.all(joined.map((s) => eventually(() => v2Status(s), (r) => r.stdout === '401', 90_000, 500))),
    ).catch((err: Error) => assert.fail(`${err.message}\n${bed.tail('web1')}`));
    for (const s of joined) assert.equal(await exec(s, ['cat', caFile()]), reg.caPem, `the CA on ${s}`);
    // The registry container: berth's labels, restart policy, the port, a labelled volume, the config read-only.
    const info = await bed.agent('web1').node.docker.getContainer('berth-registry').inspect();
    assert.equal(info.Config.Labels['berth.registry'], 'prod');
    assert.equal(info.HostConfig.RestartPolicy?.Name, 'unless-stopped');
    assert.deepEqual(info.HostConfig.PortBindings?.['5000/tcp'], [{ HostIp: '', HostPort: '5000' }]);
    assert.ok(info.Mounts.some((m) => m.Name === 'berth-registry-data' && m.Destination === '/var/lib/registry'), JSON.stringify(info.Mounts));
    assert.ok(info.Mounts.some((m) => m.Destination === '/etc/berth-registry' && m.RW === false), JSON.stringify(info.Mounts));
    const volume = (await bed.agent('web1').node.docker.getVolume('berth-registry-data').inspect()) as { Labels: Record<string, string> };
    assert.equal(volume.Labels['berth.registry'], 'prod');
    assert.equal((await exec('web1', ['stat', '-c', '%a', '/var/lib/berth/registry/server.key'])).trim(), '600');
    // A wrong password is refused too.
    const wrong = await tryExec('web1', ['sh', '-c', 'echo wrong-password | docker login "$1" -u berth --password-stdin', 'sh', address]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /unauthorized|401/i);
  });

  it('a push with the credentials works from the manager; a worker pulls by digest, never without credentials', async () => {
    await login('web1');
    const push = async (tag: string) => {
      await exec('web1', ['docker', 'push', `${address}/demo:${tag}`]);
      const ref = (await exec('web1', ['docker', 'image', 'inspect', '--format', '{{join .RepoDigests "\\n"}}', `${address}/demo:${tag}`])).split('\n').find((d) => d.startsWith(`${address}/demo@sha256:`));
      assert.ok(ref, `digest of demo:${tag}`);
      digests[tag] = ref.trim().split('@')[1]!;
    };
    await timed('push v1 and v2 (4 MB of its own)', async () => {
      await exec('web1', ['docker', 'tag', CHECK_IMAGE, `${address}/demo:v1`]);
      await push('v1');
      await exec('web1', ['docker', 'build', '-q', '-t', `${address}/demo:v2`, '-'], `FROM ${CHECK_IMAGE}\nRUN dd if=/dev/urandom of=/blob bs=1024 count=4096\n`);
      await push('v2');
    });
    assert.notEqual(digests.v1, digests.v2);

    const unauth = await tryExec('web2', ['docker', 'pull', `${address}/demo@${digests.v1}`]);
    assert.notEqual(unauth.code, 0, 'an unauthenticated pull is refused');
    assert.match(unauth.stderr, /no basic auth credentials|unauthorized/i);
    await login('web2');
    await timed('worker pulls by digest', () => exec('web2', ['docker', 'pull', `${address}/demo@${digests.v2}`]));
    // Trusted through certs.d, read per pull: no engine was restarted since the bed started.
    for (const s of joined) assert.equal((await exec(s, ['pidof', 'dockerd'])).trim(), dockerdPids[s], `dockerd on ${s} was not restarted`);
  });

  it('the database and the logs hold no registry password or private key in clear', () => {
    const files = [DB_FILE, `${DB_FILE}-wal`].map((f) => join(bed.cpData, f)).filter(existsSync);
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    const body = (pem: string) => pem.split('\n').filter((l) => l && !l.startsWith('-----'))[1]!;
    // The public CA is stored in clear: the search itself finds what is there.
    assert.ok(bytes.includes(body(reg.caPem!)), 'the CA certificate is found in the database files');
    assert.equal(bytes.includes(reg.password), false, 'registry password in clear');
    assert.equal(bytes.includes(body(reg.keyPem!)), false, 'TLS key in clear');
    assert.equal(bytes.includes(body(reg.caKeyPem!)), false, 'CA key in clear');
    const logs = [bed.cpLog, ...bed.agents.map((a) => a.logFile)].map((f) => readFileSync(f, 'utf8')).join('\n');
    assert.ok(logs.includes('cluster registry running'), 'the logs searched are the ones the agents write');
    for (const secret of [reg.password, body(reg.keyPem!), body(reg.caKeyPem!)]) assert.equal(logs.includes(secret), false, 'a registry secret in a log');
  });

  it('pruneRepository deletes the manifests not kept and garbage collection shrinks the storage', async () => {
    const before = await storageKb();
    const runner = new ContainerRunner({ docker: bed.agent('web1').node.docker, hostConfDir: '/var/lib/berth/registry', image: '', server: 'web1' });
    const report = await timed('prune + GC', () => pruneRepository(access(), 'demo', [digests.v1!], runner));
    assert.deepEqual(report.deleted, [digests.v2]);
    assert.deepEqual(report.kept, [digests.v1]);
    const afterKb = await storageKb();
    assert.ok(afterKb < before - 3_000, `storage ${before} KB → ${afterKb} KB (the 4 MB layer reclaimed)`);
    await eventually(() => v2Status('web1'), (r) => r.stdout === '401', 60_000, 500);
    // The registry itself: the kept manifest is served, the deleted one is unknown.
    assert.deepEqual([await manifestStatus(digests.v1!), await manifestStatus(digests.v2!)], [200, 404]);
    // The kept digest still pulls on the worker, the deleted one is gone. (The worker's engine may
    // still hold v2's manifest from its own pull, in its local content store: then the config blob
    // GC removed is what the registry no longer knows.)
    await exec('web2', ['docker', 'image', 'rm', '-f', `${address}/demo@${digests.v2}`]).catch(() => undefined);
    await exec('web2', ['docker', 'pull', `${address}/demo@${digests.v1}`]);
    const gone = await tryExec('web2', ['docker', 'pull', `${address}/demo@${digests.v2}`]);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /manifest unknown|not found|unknown blob/i);
    // Nothing left to delete: no GC, no interruption.
    assert.deepEqual(await pruneRepository(access(), 'demo', [digests.v1!], runner), { deleted: [], kept: [digests.v1] });
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
