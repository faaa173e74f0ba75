// `berth status` on a cluster node: the health word from what the engine says (agent/status/cluster.ts),
// and on the manager the cluster apps' tasks (agent/status/report.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clusterHealth } from '../../agent/status/cluster.js';
import { buildStatusReport, type ClusterTaskState, type StatusInput } from '../../agent/status/report.js';
import type { SwarmNodeState } from '../../shared/protocol.js';

const node = (over: Partial<SwarmNodeState>): SwarmNodeState => ({
  id: 'n1', hostname: 'web1', role: 'worker', availability: 'active', state: 'ready', addr: '192.0.2.1', managerReachability: '', leader: false, runningTasks: 0, ...over,
});

describe('cluster health in berth status', () => {
  it('is healthy only when this node is in the swarm and every node it can see is ready', () => {
    assert.equal(clusterHealth('active', null), 'healthy', 'a worker cannot list nodes: being in the swarm is what it can tell');
    assert.equal(clusterHealth('active', [node({ role: 'manager', managerReachability: 'reachable', leader: true }), node({ id: 'n2' })]), 'healthy');
  });
  it('is degraded when a node is down or a manager unreachable, and down when this node left the swarm', () => {
    assert.equal(clusterHealth('active', [node({}), node({ id: 'n2', state: 'down' })]), 'degraded');
    assert.equal(clusterHealth('active', [node({ role: 'manager', managerReachability: 'unreachable' })]), 'degraded');
    assert.equal(clusterHealth('inactive', null), 'down');
    assert.equal(clusterHealth('error', null), 'down');
    assert.equal(clusterHealth('unknown', null), 'unknown');
  });
});

describe('berth status on the manager: cluster apps with their tasks', () => {
  const base = (over: Partial<StatusInput> = {}): StatusInput => ({
    agent: { running: true, version: '1', pid: 1, startedAt: '2026-01-01T00:00:00.000Z', dataDir: '/var/lib/berth', server: 'web1' },
    connection: null,
    controlPlaneUrl: null,
    desired: {
      receivedAt: '2026-01-01T00:00:00.000Z',
      spec: {
        server: 'web1',
        revision: 4,
        cluster: { name: 'prod', role: 'manager' },
        apps: [
          { name: 'shop', repo: 'https://example.com/x.git', branch: 'main', domains: ['shop.example.com'], env: {}, cluster: 'prod' },
          { name: 'blog', repo: 'https://example.com/y.git', branch: 'main', domains: [], env: {} },
        ],
      },
    },
    releases: [
      { app: 'shop', deploymentId: 'd1', image: 'reg/berth/shop@sha256:ab', containerId: '', hostPort: 30001, containerPort: 8000, commit: 'abc', activatedAt: '2026-01-01T00:00:00.000Z', processes: [{ name: 'web', command: null, scale: 3 }, { name: 'worker', command: 'w', scale: 1 }] },
      { app: 'blog', deploymentId: 'b1', image: 'berth/blog:b1', containerId: 'c1', hostPort: 41000, containerPort: 8000, commit: 'def', activatedAt: '2026-01-01T00:00:00.000Z', processes: [{ name: 'web', command: null, scale: 1 }] },
    ],
    deploys: [],
    containers: [{ id: 'c1', name: 'berth-blog-web-b1-1', app: 'blog', process: 'web', deploymentId: 'b1', state: 'running', hostPort: 41000, replica: 1 }],
    certs: [],
    lastReconcile: null,
    disk: null,
    now: new Date('2026-01-01T01:00:00.000Z'),
    ...over,
  });
  const task = (process: string, slot: number, node: string, state = 'running'): ClusterTaskState => ({ process, name: `berth-shop-${process}-d1.${slot}`, slot, node, state });

  it("counts the live release's tasks wherever they run, per process, with their nodes", () => {
    const tasks = [task('web', 2, 'web3'), task('web', 1, 'web2'), task('web', 3, 'web2', 'starting'), task('worker', 1, 'web3')];
    const r = buildStatusReport(base({ clusterTasks: { shop: tasks } }));
    const shop = r.apps.find((a) => a.name === 'shop')!;
    assert.equal(shop.cluster, 'prod');
    assert.deepEqual(
      shop.processes.map((p) => [p.name, p.running, p.desired]),
      [['web', 2, 3], ['worker', 1, 1]],
    );
    assert.deepEqual(shop.processes[0]!.containers, [
      { name: 'berth-shop-web-d1.1', replica: 1, state: 'running', node: 'web2' },
      { name: 'berth-shop-web-d1.2', replica: 2, state: 'running', node: 'web3' },
      { name: 'berth-shop-web-d1.3', replica: 3, state: 'starting', node: 'web2' },
    ]);
    assert.equal(shop.health, 'degraded');
    tasks[2]!.state = 'running';
    assert.equal(buildStatusReport(base({ clusterTasks: { shop: tasks } })).apps.find((a) => a.name === 'shop')!.health, 'healthy');
    assert.equal(buildStatusReport(base({ clusterTasks: { shop: [] } })).apps.find((a) => a.name === 'shop')!.health, 'down');
    // The standalone app next to it is counted from its containers, as always.
    const blog = r.apps.find((a) => a.name === 'blog')!;
    assert.equal(blog.cluster, undefined);
    assert.deepEqual([blog.health, blog.processes[0]!.running], ['healthy', 1]);
  });

  it("says unknown when Swarm could not be asked, never 'down' from the missing local containers", () => {
    const shop = buildStatusReport(base()).apps.find((a) => a.name === 'shop')!;
    assert.equal(shop.health, 'unknown');
    assert.deepEqual(
      shop.processes.map((p) => [p.name, p.running, p.desired]),
      [['web', 0, 3], ['worker', 0, 1]],
    );
  });
});
