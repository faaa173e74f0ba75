// The deploy state machine as data (shared/deploy-status.ts): the paths deploys take today are
// allowed, jumps are not, and the agent's journal (a real SQLite file) refuses an illegal move
// without writing anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { recordTransition } from '../../agent/deploy/transition.js';
import { AgentStore } from '../../agent/store/index.js';
import {
  assertTransition,
  canTransition,
  DEPLOY_PHASES,
  DEPLOY_TERMINAL,
  DEPLOY_TRANSITIONS,
  IllegalTransitionError,
  type DeployStatus,
} from '../../shared/deploy-status.js';
import { PROTOCOL_VERSION, type AgentMessage, type DeployOrder } from '../../shared/protocol.js';

/** Every step of `path` is allowed. */
function assertPath(...path: DeployStatus[]): void {
  for (let i = 1; i < path.length; i++) {
    assert.ok(canTransition(path[i - 1]!, path[i]!), `${path[i - 1]} → ${path[i]} is allowed`);
    assert.doesNotThrow(() => assertTransition('dep', path[i - 1]!, path[i]!));
  }
}

function assertIllegal(from: DeployStatus, to: DeployStatus): void {
  assert.equal(canTransition(from, to), false, `${from} → ${to} is refused`);
  assert.throws(
    () => assertTransition('dep00000001', from, to),
    (err: unknown) => err instanceof IllegalTransitionError && err.from === from && err.to === to && err.message.includes('dep00000001'),
  );
}

test('the paths deploys take are allowed: a build, a build without release command, a rollback, a cancel, a skip', () => {
  assertPath('queued', 'fetching', 'building', 'releasing', 'starting', 'health_checking', 'switching', 'done');
  assertPath('queued', 'fetching', 'building', 'starting');
  // A rollback starts a kept release's image: no fetch, build or release command.
  assertPath('queued', 'starting', 'health_checking', 'switching', 'done');
  // A cluster deploy built on the cluster's builder: the builder's journal ends done once pushed, the
  // manager's starts from the pushed image at releasing (or starting without a release command).
  assertPath('queued', 'fetching', 'building', 'done');
  assertPath('queued', 'releasing', 'starting', 'health_checking', 'switching', 'done');
  // Cancelled or superseded while waiting (never ran) or while running.
  assertPath('queued', 'cancelled');
  assertPath('queued', 'superseded');
  assertPath('queued', 'fetching', 'building', 'superseded');
  assertPath('queued', 'fetching', 'building', 'releasing', 'cancelled');
  // A push of a commit older than the live one ends `cancelled` while fetching.
  assertPath('queued', 'fetching', 'cancelled');
  // Failures in any phase, including a rollback refused before it starts.
  for (const phase of DEPLOY_PHASES) assertPath(phase, 'failed');
  // Recovery: the agent died mid-switch after recording the release as current.
  assertPath('switching', 'done');
});

test('jumps, reversals and moves out of a finished state are refused', () => {
  assertIllegal('fetching', 'switching');
  assertIllegal('done', 'building');
  assertIllegal('queued', 'done');
  assertIllegal('queued', 'building');
  assertIllegal('building', 'fetching');
  assertIllegal('health_checking', 'done');
  assertIllegal('starting', 'starting');
  for (const end of DEPLOY_TERMINAL) {
    assert.deepEqual(DEPLOY_TRANSITIONS[end], [], `${end} is final`);
    for (const to of [...DEPLOY_PHASES, ...DEPLOY_TERMINAL]) assertIllegal(end, to);
  }
});

test('from every phase a deploy can still end: done is reachable, and failed/cancelled/superseded directly', () => {
  const reachesDone = (from: DeployStatus, seen = new Set<DeployStatus>()): boolean =>
    from === 'done' || (!seen.has(from) && (seen.add(from), DEPLOY_TRANSITIONS[from].some((to) => reachesDone(to, seen))));
  for (const phase of DEPLOY_PHASES) {
    assert.ok(reachesDone(phase), `${phase} can reach done`);
    for (const end of ['failed', 'cancelled', 'superseded'] as const) assert.ok(canTransition(phase, end), `${phase} → ${end}`);
  }
});

test('the journal refuses an illegal transition and writes nothing', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-transitions-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = AgentStore.open(dir);
  t.after(() => store.close());
  const order: DeployOrder = {
    type: 'deploy',
    v: PROTOCOL_VERSION,
    deploymentId: 'dep00000001',
    app: { name: 'web', repo: 'https://example.com/web.git', branch: 'main', domains: [], env: {} },
  };
  store.deploys.create(order);
  store.deploys.transition('dep00000001', 'fetching');

  assert.throws(() => store.deploys.transition('dep00000001', 'switching'), IllegalTransitionError);
  assert.equal(store.deploys.get('dep00000001')?.status, 'fetching');
  assert.deepEqual(store.deploys.transitions('dep00000001').map((x) => x.status), ['queued', 'fetching']);

  for (const status of ['building', 'starting', 'health_checking', 'switching', 'done'] as const) store.deploys.transition('dep00000001', status);
  const done = store.deploys.get('dep00000001')!;
  assert.throws(() => store.deploys.transition('dep00000001', 'building', { reason: 'again' }), IllegalTransitionError);
  assert.throws(() => store.deploys.transition('dep00000001', 'failed', { reason: 'late' }), IllegalTransitionError);
  const after = store.deploys.get('dep00000001')!;
  assert.equal(after.status, 'done');
  assert.equal(after.reason, null);
  assert.equal(after.finishedAt, done.finishedAt);
  assert.deepEqual(
    store.deploys.transitions('dep00000001').map((x) => x.status),
    ['queued', 'fetching', 'building', 'starting', 'health_checking', 'switching', 'done'],
  );

  // A rollback's path, and a waiting deploy superseded before it ran.
  store.deploys.create({ ...order, deploymentId: 'dep00000002', rollbackOf: 'dep00000001' });
  for (const status of ['starting', 'health_checking', 'switching', 'done'] as const) store.deploys.transition('dep00000002', status);
  store.deploys.create({ ...order, deploymentId: 'dep00000003' });
  store.deploys.transition('dep00000003', 'superseded', { reason: 'superseded by a newer deploy' });
  assert.equal(store.deploys.get('dep00000003')?.status, 'superseded');
  assert.throws(() => store.deploys.transition('dep00000404', 'fetching'), /not in the journal/);
});

test('one function journals a transition, reports it as deploy_progress and logs it; an illegal one does none of that', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-transitions-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = AgentStore.open(dir);
  t.after(() => store.close());
  const sent: AgentMessage[] = [];
  const logged: Array<Record<string, unknown>> = [];
  const logger = pino({}, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) });
  const deps = { store, send: (msg: AgentMessage) => void sent.push(msg), logger };
  store.deploys.create({
    type: 'deploy',
    v: PROTOCOL_VERSION,
    deploymentId: 'dep00000001',
    app: { name: 'web', repo: 'https://example.com/web.git', branch: 'main', domains: [], env: {} },
  });

  recordTransition(deps, 'dep00000001', 'fetching');
  const record = recordTransition(deps, 'dep00000001', 'cancelled', { commit: 'a'.repeat(40), reason: 'skipped: older than live' });
  assert.equal(record.status, 'cancelled');
  assert.deepEqual(
    sent.map((m) => (m.type === 'deploy_progress' ? [m.deploymentId, m.status, m.commit ?? null, m.reason ?? null] : m.type)),
    [
      ['dep00000001', 'fetching', null, null],
      ['dep00000001', 'cancelled', 'a'.repeat(40), 'skipped: older than live'],
    ],
  );
  assert.deepEqual(
    logged.map((l) => [l.msg, l.deploymentId, l.app, l.status]),
    [
      ['deploy fetching', 'dep00000001', 'web', 'fetching'],
      ['deploy cancelled', 'dep00000001', 'web', 'cancelled'],
    ],
  );

  assert.throws(() => recordTransition(deps, 'dep00000001', 'building'), IllegalTransitionError);
  assert.equal(sent.length, 2, 'nothing reported');
  assert.equal(logged.length, 2, 'nothing logged');
  assert.equal(store.deploys.get('dep00000001')?.status, 'cancelled');
});
