// The cluster-mode test bed itself (test/helpers/swarm.ts): three Docker engines in containers join one
// Swarm; a TLS registry with credentials on the manager serves an image by digest to a dnsrr service
// with host-mode published ports; every task answers on its own node and over an overlay network; the
// registry refuses anonymous pulls; a stopped worker rejoins by itself. One shared swarm for the file.
// docs/testing.md, "Cluster test bed".
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureBusyboxImage } from './helpers/docker.js';
import { eventually } from './helpers/http.js';
import { startSwarm, type Swarm } from './helpers/swarm.js';
import { ensureSwarmNodeImage } from './helpers/swarm-node-image.js';
import { pushImage, startRegistry, type Registry } from './helpers/swarm-registry.js';
import { serviceTasks, type SwarmTask } from './helpers/swarm-tasks.js';
import { stepTimer } from './helpers/timings.js';

describe('swarm test bed', { timeout: 15 * 60_000 }, () => {
  let swarm: Swarm;
  let registry: Registry;
  /** The running tasks of the `web` service the digest test creates. */
  let webTasks: SwarmTask[] = [];
  const { timings, timed } = stepTimer();

  before(async () => {
    await ensureBusyboxImage();
    await timed('node image (0 when it exists)', () => ensureSwarmNodeImage());
    swarm = await timed('swarm start (3 nodes)', () => startSwarm({ nodes: 3 }));
    registry = await timed('registry start', () => startRegistry(swarm));
  });

  after(() => swarm?.close());

  it('three engines join one swarm: a leader and two workers, all Ready', async (t) => {
    const states = await swarm.nodeStates();
    assert.deepEqual([...states.keys()].sort(), swarm.nodes.map((n) => n.name).sort());
    for (const [name, s] of states) assert.equal(s.status, 'Ready', `${name}: ${JSON.stringify(s)}`);
    assert.equal(states.get(swarm.manager.name)?.managerStatus, 'Leader');
    for (const w of swarm.workers) assert.equal(states.get(w.name)?.managerStatus, '', `${w.name} is a worker`);
    // Each node's engine answers the host through its own socket.
    const infos = await Promise.all(swarm.nodes.map((n) => n.docker.info() as Promise<{ Name: string; Swarm: { NodeAddr: string } }>));
    assert.deepEqual(infos.map((i) => [i.Name, i.Swarm.NodeAddr]), swarm.nodes.map((n) => [n.name, n.ip]));
    for (const [k, ms] of Object.entries(timings)) t.diagnostic(`${k}: ${ms} ms`);
  });

  it('a dnsrr service at scale 3 pulls by digest from the TLS registry and answers on every node', async (t) => {
    const ref = await pushImage(swarm, registry, 'berth-test/busybox:latest', 'berth-swarm-test/web:1');
    assert.match(ref, new RegExp(`^${registry.address.replace(/\./g, '\\.')}/berth-swarm-test/web@sha256:[0-9a-f]{64}$`));
    // Attachable, so a one-off container on the manager can join it (the later overlay test).
    await swarm.exec(swarm.manager, ['docker', 'network', 'create', '--driver', 'overlay', '--attachable', 'apps'], { timeoutMs: 30_000 });
    const started = Date.now();
    await swarm.exec(swarm.manager, [
      'docker', 'service', 'create', '--detach', '--name', 'web', '--with-registry-auth', '--network', 'apps',
      '--endpoint-mode', 'dnsrr', '--publish', 'mode=host,target=8000', '--replicas', '3', '--stop-grace-period', '1s',
      ref, 'sh', '-c', 'hostname > /www/index.html && exec httpd -f -p 8000 -h /www',
    ], { timeoutMs: 60_000 });

    const tasks = await eventually(
      () => serviceTasks(swarm, 'web'),
      (list) => list.length === 3 && list.every((x) => x.state === 'running'),
      120_000,
      500,
    );
    t.diagnostic(`3 tasks running ${Date.now() - started} ms after service create`);

    const hosts = new Set(tasks.map((x) => x.node));
    assert.ok(hosts.size >= 2, `tasks spread over ${[...hosts].join(', ')}`);
    for (const task of tasks) {
      assert.equal(task.image, ref, 'the service runs the pushed digest');
      assert.equal(task.nodeAddr, swarm.node(task.node).ip, `${task.node}'s address`);
      const port = task.hostPorts.get(8000);
      assert.ok(port, `no host-mode port for ${task.id} on ${task.node}`);
      // From the manager over the test network (busybox wget crashes on non-loopback addresses): the body is the task's hostname.
      const body = await swarm.exec(swarm.manager, ['curl', '-sS', '--max-time', '5', `http://${task.nodeAddr}:${port}/`], { timeoutMs: 15_000 });
      assert.equal(body.trim(), task.containerId.slice(0, 12), `task on ${task.node} answers on ${task.nodeAddr}:${port}`);
    }
    webTasks = tasks;
    const memory = await swarm.memoryUsage();
    for (const [name, bytes] of Object.entries(memory)) t.diagnostic(`memory ${name}: ${(bytes / 1048576).toFixed(0)} MB`);
  });

  it('a one-off container on the manager reaches every task over the overlay network by the service name', async () => {
    assert.equal(webTasks.length, 3, 'needs the service of the previous test');
    // busybox nslookup and nc: busybox wget crashes on non-loopback addresses in this libc-less image.
    const script = 'for ip in $(nslookup tasks.web | awk \'/^Address/ && !/:53$/ {print $NF}\'); do printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 "$ip" 8000 | tail -n 1; done';
    const out = await swarm.exec(swarm.manager, ['docker', 'run', '--rm', '--network', 'apps', 'berth-test/busybox:latest', 'sh', '-c', script], { timeoutMs: 60_000 });
    const answers = out.split('\n').map((l) => l.trim()).filter(Boolean).sort();
    assert.deepEqual(answers, webTasks.map((x) => x.containerId.slice(0, 12)).sort());
  });

  it('the registry refuses anonymous pulls and serves them with credentials', async () => {
    const worker = swarm.node(2);
    const ref = await pushImage(swarm, registry, 'berth-test/busybox:latest', 'berth-swarm-test/private:1');
    const digest = ref.split('@')[1];
    const url = `https://${registry.address}/v2/berth-swarm-test/private/manifests/${digest}`;
    const status = (auth: string[]) =>
      swarm
        .exec(worker, ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', registry.nodeCaPath, ...auth, url], { timeoutMs: 15_000 })
        .then((s) => s.trim());
    assert.equal(await status([]), '401');
    assert.equal(await status(['-u', `${registry.username}:wrong-${registry.password}`]), '401');
    assert.equal(await status(['-u', `${registry.username}:${registry.password}`]), '200');
    // The worker's engine never logged in and has never pulled this repository.
    const pull = await swarm.tryExec(worker, ['docker', 'pull', ref], { timeoutMs: 60_000 });
    assert.notEqual(pull.code, 0, `anonymous pull succeeded: ${pull.stdout}`);
    assert.match(pull.stderr, /no basic auth credentials|unauthorized/i);
  });

  it('a stopped worker goes Down and rejoins by itself when its container starts again', async (t) => {
    const worker = swarm.node(3);
    await swarm.stopNode(worker);
    await eventually(() => swarm.nodeStates(), (s) => s.get(worker.name)?.status === 'Down', 60_000, 500);
    const started = Date.now();
    await swarm.startNode(worker); // waits for its engine and for the manager to list it Ready, nothing else
    t.diagnostic(`${worker.name} Ready again ${Date.now() - started} ms after docker start`);
    const info = (await worker.docker.info()) as { Swarm: { LocalNodeState: string; NodeAddr: string } };
    assert.deepEqual([info.Swarm.LocalNodeState, info.Swarm.NodeAddr], ['active', worker.ip]);
  });
});
