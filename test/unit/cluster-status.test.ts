// `berth status` on a cluster node: the health word from what the engine says (agent/status/cluster.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { clusterHealth } from '../../agent/status/cluster.js';
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
