// The agent's SQLite: the deploy journal survives reopening, recovery finishes interrupted deploys,
// the outbox keeps order and its bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentStore } from '../agent/store/index.js';
import type { DeployStatus } from '../shared/deploy-status.js';
import { PROTOCOL_VERSION, type AgentMessage, type DeployOrder } from '../shared/protocol.js';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-agent-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function order(id: string, app = 'web', commit?: string): DeployOrder {
  return {
    type: 'deploy',
    v: PROTOCOL_VERSION,
    deploymentId: id,
    app: { name: app, repo: 'https://example.com/web.git', branch: 'main', domains: ['web.example.com'], env: {} },
    ...(commit ? { commit } : {}),
  };
}

/** Move a journaled deploy through `statuses` in order (each a transition the state machine allows). */
function walk(store: AgentStore, id: string, ...statuses: DeployStatus[]): void {
  for (const status of statuses) store.deploys.transition(id, status);
}

const log = (id: string, seq: number): AgentMessage => ({
  type: 'deploy_log',
  v: PROTOCOL_VERSION,
  deploymentId: id,
  lines: [{ seq, ts: new Date().toISOString(), stream: 'build', text: `line ${seq}` }],
});
const progress = (id: string, status: 'fetching' | 'done'): AgentMessage => ({ type: 'deploy_progress', v: PROTOCOL_VERSION, deploymentId: id, status, ts: new Date().toISOString() });

test('the deploy journal and its transitions persist across reopening the database', (t) => {
  const dir = tmp(t);
  const store = AgentStore.open(dir);
  assert.equal(store.deploys.create(order('dep00000001')), true);
  assert.equal(store.deploys.create(order('dep00000001')), false, 'a replayed order is not journaled twice');
  store.deploys.transition('dep00000001', 'fetching');
  store.deploys.transition('dep00000001', 'building', { commit: 'a'.repeat(40) });
  store.deploys.update('dep00000001', { containerId: 'abc', hostPort: 41000 });
  store.deploys.setLogSeq('dep00000001', 17);
  store.deploys.transition('dep00000001', 'failed', { reason: 'build failed: boom' });
  store.desired.save({ server: 'local', revision: 7, apps: [order('x').app] });
  store.releases.activate({ app: 'web', deploymentId: 'dep00000000', image: 'berth/web:dep00000000', containerId: 'c0', hostPort: 40000, containerPort: 8000, commit: null });
  store.close();
  assert.equal(statSync(join(dir, 'agent.db')).mode & 0o777, 0o600);

  const again = AgentStore.open(dir);
  t.after(() => again.close());
  const d = again.deploys.get('dep00000001');
  assert.ok(d);
  assert.equal(d.status, 'failed');
  assert.equal(d.reason, 'build failed: boom');
  assert.equal(d.commit, 'a'.repeat(40));
  assert.equal(d.containerId, 'abc');
  assert.equal(d.hostPort, 41000);
  assert.equal(d.logSeq, 17);
  assert.ok(d.finishedAt);
  assert.equal(d.order.app.name, 'web');
  const transitions = again.deploys.transitions('dep00000001');
  assert.deepEqual(transitions.map((x) => x.status), ['queued', 'fetching', 'building', 'failed']);
  assert.ok(transitions.every((x) => !Number.isNaN(Date.parse(x.at))), 'every transition is timestamped');
  assert.equal(transitions[3]!.reason, 'build failed: boom');
  assert.equal(again.desired.get()?.spec.revision, 7);
  assert.equal(again.releases.get('web')?.containerId, 'c0');
  assert.deepEqual(again.deploys.unfinished(), []);
});

test('recovery fails in-flight deploys with their phase, completes one already live, keeps queued ones', (t) => {
  const dir = tmp(t);
  const store = AgentStore.open(dir);
  store.deploys.create(order('dep0building', 'web'));
  walk(store, 'dep0building', 'fetching', 'building');
  store.deploys.create(order('dep0health01', 'api'));
  walk(store, 'dep0health01', 'fetching', 'building', 'starting', 'health_checking');
  store.deploys.create(order('dep0switch01', 'shop'));
  walk(store, 'dep0switch01', 'fetching', 'building', 'starting', 'health_checking', 'switching');
  store.releases.activate({ app: 'shop', deploymentId: 'dep0switch01', image: 'i', containerId: 'c', hostPort: 1, containerPort: null, commit: null });
  store.deploys.create(order('dep0queued01', 'web'));
  store.deploys.create(order('dep0done0001', 'blog'));
  walk(store, 'dep0done0001', 'fetching', 'building', 'starting', 'health_checking', 'switching', 'done');
  store.close(); // the agent "dies" here

  const again = AgentStore.open(dir);
  t.after(() => again.close());
  const result = again.recoverInterrupted();
  assert.deepEqual(result.failed.map((d) => d.id).sort(), ['dep0building', 'dep0health01']);
  assert.deepEqual(result.completed.map((d) => d.id), ['dep0switch01']);
  assert.deepEqual(result.queued.map((d) => d.id), ['dep0queued01']);
  assert.equal(again.deploys.get('dep0building')?.reason, 'agent restarted while the deploy was building');
  assert.equal(again.deploys.get('dep0health01')?.reason, 'agent restarted while the deploy was health_checking');
  assert.equal(again.deploys.get('dep0health01')?.status, 'failed');
  assert.ok(again.deploys.get('dep0health01')?.finishedAt);
  assert.equal(again.deploys.get('dep0switch01')?.status, 'done');
  assert.equal(again.deploys.get('dep0done0001')?.status, 'done');
  assert.deepEqual(again.deploys.unfinished().map((d) => d.id), ['dep0queued01']);
  // A second recovery changes nothing.
  const twice = again.recoverInterrupted();
  assert.deepEqual([twice.failed.length, twice.completed.length, twice.queued.length], [0, 0, 1]);
});

test('the outbox delivers in order and survives reopening', (t) => {
  const dir = tmp(t);
  const store = AgentStore.open(dir);
  store.outbox.push(progress('dep00000001', 'fetching'));
  for (let i = 0; i < 5; i++) store.outbox.push(log('dep00000001', i));
  store.outbox.push(progress('dep00000001', 'done'));
  store.close();

  const again = AgentStore.open(dir);
  t.after(() => again.close());
  assert.equal(again.outbox.count(), 7);
  const first = again.outbox.peek(3);
  assert.deepEqual(first.map((e) => e.msg.type), ['deploy_progress', 'deploy_log', 'deploy_log']);
  again.outbox.remove(first.map((e) => e.id));
  const rest = again.outbox.peek(100);
  assert.deepEqual(
    rest.map((e) => (e.msg.type === 'deploy_log' ? e.msg.lines[0]!.seq : e.msg.type)),
    [2, 3, 4, 'deploy_progress'],
  );
  assert.equal(again.outbox.count(), 4);
});

test('the outbox is bounded: the oldest log lines are dropped first, progress reports kept', (t) => {
  const dir = tmp(t);
  const store = AgentStore.open(dir, { outboxLimit: 10 });
  t.after(() => store.close());
  store.outbox.push(progress('dep00000001', 'fetching'));
  for (let i = 0; i < 20; i++) store.outbox.push(log('dep00000001', i));
  store.outbox.push(progress('dep00000001', 'done'));
  assert.equal(store.outbox.count(), 10);
  const all = store.outbox.peek(100);
  assert.equal(all.length, 10);
  assert.deepEqual(
    all.map((e) => (e.msg.type === 'deploy_log' ? e.msg.lines[0]!.seq : e.msg.type)),
    ['deploy_progress', 12, 13, 14, 15, 16, 17, 18, 19, 'deploy_progress'],
  );
  // With nothing but progress reports left, the oldest of those go.
  const only = AgentStore.open(tmp(t), { outboxLimit: 3 });
  t.after(() => only.close());
  for (const s of ['fetching', 'done', 'fetching', 'done'] as const) only.outbox.push(progress('dep00000002', s));
  assert.deepEqual(only.outbox.peek(10).map((e) => (e.msg.type === 'deploy_progress' ? e.msg.status : '')), ['done', 'fetching', 'done']);
});

test('reconcile runs are recorded with time, actions and errors', (t) => {
  const store = AgentStore.open(tmp(t));
  t.after(() => store.close());
  store.reconcileRuns.record({ startedAt: new Date().toISOString(), durationMs: 12, actions: ['write nginx config of web'], errors: [] });
  store.reconcileRuns.record({ startedAt: new Date().toISOString(), durationMs: 3, actions: [], errors: ['remove container x: boom'] });
  const [last] = store.reconcileRuns.last();
  assert.deepEqual(last?.errors, ['remove container x: boom']);
  assert.equal(store.reconcileRuns.last(5).length, 2);
});
