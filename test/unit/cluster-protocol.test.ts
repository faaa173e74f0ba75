// Cluster formation's pure parts (issue 15): message and request schemas, the failure texts that
// name servers and ports, merging recorded nodes with the manager's view, address helpers, and the
// loggers' redaction of join tokens.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { hostOf } from '../../agent/cluster/preflight.js';
import { scrubTokens, withSwarmPort } from '../../agent/cluster/swarm.js';
import { nodeInfo, overlayUnreachable, unreachablePorts } from '../../control-plane/clusters/report.js';
import type { ClusterNodeRow } from '../../control-plane/clusters/store.js';
import { addClusterNodeBody, createClusterBody } from '../../shared/api.js';
import { REDACT } from '../../shared/logger.js';
import { agentMessage, clusterOp, cpMessage, parseMessage, type SwarmNodeState } from '../../shared/protocol.js';

const TOKEN = 'SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx';

describe('cluster messages', () => {
  it('accepts each op with its fields and refuses what could reach a command line or an engine call', () => {
    const ok = [
      { op: 'init', cluster: 'prod', addrPool: '172.29.0.0/16', addrPoolMaskLength: 24 },
      { op: 'init', cluster: 'prod', advertise: '192.0.2.10', addrPool: '172.29.0.0/16', addrPoolMaskLength: 24 },
      { op: 'join_token', role: 'worker' },
      { op: 'rotate_token', role: 'manager' },
      { op: 'preflight', managerAddr: '192.0.2.10', timeoutMs: 3000 },
      { op: 'join', managerAddr: '[2001:db8::1]:2377', joinToken: TOKEN },
      { op: 'inspect' },
      { op: 'drain', nodeId: 'abc123xyz' },
      { op: 'leave', force: false },
      { op: 'remove_node', nodeId: 'abc123xyz', force: true },
      { op: 'overlay_reach', network: 'berth-cluster-check', image: 'busybox:1.36', address: '172.29.0.5', word: 'web1abc', timeoutMs: 15000 },
    ];
    for (const op of ok) assert.ok(clusterOp.safeParse(op).success, JSON.stringify(op));
    const bad = [
      { op: 'swarm_destroy' },
      { op: 'preflight', managerAddr: '192.0.2.10; rm -rf /', timeoutMs: 3000 },
      { op: 'preflight', managerAddr: '192.0.2.10', timeoutMs: 3_600_000 },
      { op: 'join', managerAddr: '192.0.2.10' },
      { op: 'init', cluster: 'prod', addrPool: '10.0.0.0', addrPoolMaskLength: 24 },
      { op: 'drain', nodeId: '../../x' },
      { op: 'overlay_serve', network: 'n', image: 'busybox', word: 'a b', seconds: 10 },
      { op: 'overlay_reach', network: 'n', image: '--privileged', address: '1.2.3.4', word: 'a', timeoutMs: 1000 },
    ];
    for (const op of bad) assert.equal(clusterOp.safeParse(op).success, false, JSON.stringify(op));
  });

  it('cluster_request and cluster_response travel as protocol messages', () => {
    const req = parseMessage(cpMessage, JSON.stringify({ type: 'cluster_request', v: 1, requestId: 'abcdefgh12', request: { op: 'inspect' } }));
    assert.equal(req.ok && req.msg.type, 'cluster_request');
    const badReq = parseMessage(cpMessage, JSON.stringify({ type: 'cluster_request', v: 1, requestId: 'abcdefgh12', request: { op: 'nope' } }));
    assert.equal(badReq.ok, false);
    const res = parseMessage(
      agentMessage,
      JSON.stringify({ type: 'cluster_response', v: 1, requestId: 'abcdefgh12', ok: true, result: { failures: [{ addr: '192.0.2.10', port: 2377, proto: 'tcp', error: 'ECONNREFUSED' }] } }),
    );
    assert.equal(res.ok, true);
    assert.equal(parseMessage(agentMessage, JSON.stringify({ type: 'cluster_response', v: 1, requestId: 'x', ok: true })).ok, false);
  });

  it('validates the API bodies: role defaults to worker, names and addresses are checked, unknown fields refused', () => {
    assert.deepEqual(addClusterNodeBody.parse({ server: 'web2' }), { server: 'web2', role: 'worker' });
    assert.equal(addClusterNodeBody.safeParse({ server: 'web2', role: 'boss' }).success, false);
    assert.equal(addClusterNodeBody.safeParse({ server: 'Web 2' }).success, false);
    assert.ok(createClusterBody.safeParse({ name: 'prod', manager: 'web1', advertise: '192.0.2.10:2377', addrPool: '172.29.0.0/16' }).success);
    assert.equal(createClusterBody.safeParse({ name: 'prod', manager: 'web1', advertise: '$(id)' }).success, false);
    assert.equal(createClusterBody.safeParse({ name: 'prod', manager: 'web1', token: 'x' }).success, false);
    assert.equal(createClusterBody.safeParse({ name: '-prod', manager: 'web1' }).success, false);
  });
});

describe('cluster reports', () => {
  it('names the server, the address and the port of each failure', () => {
    assert.equal(
      unreachablePorts('web2', [
        { addr: '172.31.5.2', port: 2377, proto: 'tcp', error: 'ECONNREFUSED' },
        { addr: '172.31.5.2', port: 7946, proto: 'tcp', error: 'no answer within 3000 ms' },
      ]),
      'web2 cannot reach 172.31.5.2:2377/tcp (ECONNREFUSED); web2 cannot reach 172.31.5.2:7946/tcp (no answer within 3000 ms)',
    );
    assert.equal(overlayUnreachable('web2', 'web1'), 'web2 cannot reach web1 over the overlay network (4789/udp)');
  });

  const row: ClusterNodeRow = { server: 'web2', cluster: 'prod', role: 'worker', node_id: 'n2', joined_at: '2026-01-01T00:00:00Z', reach_error: null };
  const live = (state: string): SwarmNodeState[] => [
    { id: 'n2', hostname: 'h2', role: 'worker', availability: 'active', state, addr: '192.0.2.11', managerReachability: '', leader: false, runningTasks: 2 },
  ];

  it("merges a recorded node with the manager's view into reachability", () => {
    assert.deepEqual(
      [nodeInfo(row, live('ready')).reachability, nodeInfo(row, live('ready')).runningTasks, nodeInfo(row, live('ready')).error],
      ['reachable', 2, null],
    );
    const down = nodeInfo(row, live('down'));
    assert.deepEqual([down.reachability, down.error], ['unreachable', 'web2 is down as the manager sees it']);
    const overlay = nodeInfo({ ...row, reach_error: overlayUnreachable('web2', 'web1') }, live('ready'));
    assert.deepEqual([overlay.state, overlay.reachability], ['ready', 'unreachable']);
    assert.match(overlay.error ?? '', /web2 cannot reach web1/);
    assert.deepEqual([nodeInfo(row, undefined).reachability, nodeInfo(row, undefined).state], ['unknown', null]);
    assert.deepEqual([nodeInfo(row, []).reachability, nodeInfo(row, []).state], ['unreachable', 'missing']);
  });
});

describe('cluster address helpers and token hygiene', () => {
  it('adds the Swarm port when none is given and finds the host', () => {
    assert.equal(withSwarmPort('192.0.2.10'), '192.0.2.10:2377');
    assert.equal(withSwarmPort('192.0.2.10:4000'), '192.0.2.10:4000');
    assert.equal(withSwarmPort('2001:db8::1'), '[2001:db8::1]:2377');
    assert.equal(withSwarmPort('[2001:db8::1]:2377'), '[2001:db8::1]:2377');
    assert.equal(withSwarmPort('mgr.example.com'), 'mgr.example.com:2377');
    assert.equal(hostOf('192.0.2.10:2377'), '192.0.2.10');
    assert.equal(hostOf('[2001:db8::1]:2377'), '2001:db8::1');
    assert.equal(hostOf('mgr.example.com'), 'mgr.example.com');
  });

  it('scrubs tokens from error texts and the loggers redact joinToken at any depth used', () => {
    assert.equal(scrubTokens(`join failed: bad token ${TOKEN}`), 'join failed: bad token [redacted]');
    let out = '';
    const sink = new Writable({ write: (chunk, _e, cb) => ((out += String(chunk)), cb()) });
    const log = pino({ redact: { paths: REDACT, censor: '[redacted]' } }, sink);
    log.info({ joinToken: TOKEN }, 'a');
    log.info({ request: { op: 'join', joinToken: TOKEN } }, 'b');
    log.info({ msg: { result: { joinToken: TOKEN } } }, 'c');
    log.info({ m: { request: { request: { joinToken: TOKEN } } } }, 'd');
    assert.equal(out.split('\n').filter(Boolean).length, 4);
    assert.ok(!out.includes('SWMTKN'), out);
    assert.equal(out.match(/\[redacted\]/g)?.length, 4);
  });
});
