// `berth scale`, the pure parts: the API body's validation, the agent applying an override to a
// release's processes, and the reconciler keeping the counts a release was deployed with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyScale, ScaleError } from '../../agent/deploy/scale.js';
import { plan, type Action } from '../../agent/reconcile/planner.js';
import type { BerthContainer } from '../../agent/docker/containers.js';
import type { AppSite } from '../../agent/nginx/index.js';
import type { Release, ReleaseProcess } from '../../agent/store/releases.js';
import { deployEvent } from '../../control-plane/notify/event.js';
import { triggerDeploy, triggerScale, type TriggerDeps } from '../../control-plane/deploys.js';
import { appSpecOf } from '../../control-plane/desired-state.js';
import { ConflictError } from '../../control-plane/errors.js';
import { DeploymentEvents } from '../../control-plane/events.js';
import { openStores } from '../../control-plane/store/index.js';
import pino from 'pino';
import { parseScaleBody } from '../../shared/api.js';
import { appSpec, type ScaleOverride, type ServerSpec } from '../../shared/spec.js';
import { ValidationError } from '../../shared/validation.js';
import { describeScale, parseScaleArgs } from '../../cli/commands/scale.js';

test('the scale body: process names like berth.yml, whole counts 0..32, one clear message', () => {
  assert.deepEqual(parseScaleBody({ web: 3, worker: 0, 'queue_2-x': 32 }), { web: 3, worker: 0, 'queue_2-x': 32 });
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{}, /nothing to scale/],
    [{ Web: 1 }, /invalid process name "Web": process names are 1-30 lower-case/],
    [{ release: 1 }, /invalid process name "release": process name is reserved/],
    [{ '1web': 1 }, /invalid process name "1web"/],
    [{ ['w'.repeat(31)]: 1 }, /invalid process name/],
    [{ web: -1 }, /invalid scale for web: expected 0 or more containers \(0 to 32\)/],
    [{ web: 33 }, /invalid scale for web: at most 32 containers per process/],
    [{ web: 1.5 }, /invalid scale for web: expected a whole number/],
    [{ web: '2' }, /invalid scale for web: expected a whole number of containers/],
    [{ web: null }, /invalid scale for web/],
  ];
  for (const [body, message] of bad) assert.throws(() => parseScaleBody(body), (err: unknown) => err instanceof ValidationError && message.test(err.message), JSON.stringify(body));
  const many = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`p${i}`, 1]));
  assert.throws(() => parseScaleBody(many), /at most 50 processes/);
});

test('the app spec carries an override only when valid; older specs without one still parse', () => {
  const base = { name: 'shop', repo: 'https://example.com/x.git', branch: 'main', domains: [] };
  assert.equal(appSpec.parse(base).scale, undefined);
  assert.deepEqual(appSpec.parse({ ...base, scale: { worker: 2 } }).scale, { worker: 2 });
  assert.equal(appSpec.safeParse({ ...base, scale: { worker: -1 } }).success, false);
  assert.equal(appSpec.safeParse({ ...base, scale: { 'Bad Name': 1 } }).success, false);
});

test('the CLI reads PROCESS=N and says which scale applies', () => {
  assert.deepEqual(parseScaleArgs(['web=3', 'worker=0']), { web: 3, worker: 0 });
  assert.deepEqual(parseScaleArgs(['worker=-1']), { worker: -1 }, 'negative counts reach the API, which says why they are wrong');
  for (const arg of ['web', 'web=', 'web=x', '=2', 'web=1.5']) assert.throws(() => parseScaleArgs([arg]), /expected PROCESS=N/, arg);
  assert.match(describeScale({ override: null }), /the repo's/);
  assert.equal(describeScale({ override: { web: 3 } }), "web=3 (set with berth scale; other processes: the repo's)");
});

const procs: ReleaseProcess[] = [
  { name: 'web', command: null, scale: 1 },
  { name: 'worker', command: 'sleep 1', scale: 2, memory: 1024 },
];

test('the override wins over the repo scale for the processes it names; the others keep theirs', () => {
  const lines: string[] = [];
  const out = applyScale(procs, { worker: 5 }, { rescale: true, staticSite: false, log: (l) => lines.push(l) });
  assert.deepEqual(out, [procs[0], { ...procs[1], scale: 5 }]);
  assert.deepEqual(lines, ['worker: 5 containers (set with berth scale; the repo says 2)']);
  assert.deepEqual(applyScale(procs, undefined, { rescale: false, staticSite: false, log: () => assert.fail('nothing to say') }), procs);
  assert.equal(applyScale(procs, { web: 0 }, { rescale: false, staticSite: false, log: () => {} })[0]!.scale, 0);
});

test('a scale deployment naming a process the release lacks fails; a build or rollback only notes it', () => {
  assert.throws(
    () => applyScale(procs, { cron: 1, web: 2 }, { rescale: true, staticSite: false, log: () => {} }),
    (err: unknown) => err instanceof ScaleError && /the live release has no process "cron" \(it has web, worker\)/.test(err.message),
  );
  const lines: string[] = [];
  const out = applyScale(procs, { cron: 1, web: 2 }, { rescale: false, staticSite: false, log: (l) => lines.push(l) });
  assert.deepEqual(out.map((p) => p.scale), [2, 2]);
  assert.match(lines[0]!, /for "cron" does not apply: this release has no such process/);
  assert.throws(() => applyScale([], { web: 2 }, { rescale: true, staticSite: true, log: () => {} }), /static site: it has no processes to scale/);
  assert.deepEqual(applyScale([], { web: 2 }, { rescale: false, staticSite: true, log: () => {} }), [], 'a static site built later ignores it');
});

// ---- the reconciler keeps the counts the live release was deployed (and health-checked) with ----
const render = (app: string, site: AppSite) => `server ${app} [${site.domains.join(' ')}] -> ${(site.upstreamPorts ?? [site.upstreamPort]).join(',')}\n`;
const desired = (scale?: ScaleOverride): ServerSpec => ({
  server: 'local',
  revision: 4,
  apps: [{ name: 'shop', repo: 'https://example.com/x.git', branch: 'main', domains: ['shop.example.com'], env: {}, ...(scale ? { scale } : {}) }],
});
// Deployed with `berth scale shop worker=3` over the repo's worker scale of 1.
const live: Release = {
  app: 'shop',
  deploymentId: 'dep00002',
  image: 'berth/shop:dep00001',
  containerId: 'c-web-1',
  hostPort: 41000,
  containerPort: 8000,
  commit: 'abcdef1',
  activatedAt: '2024-01-01T00:00:00.000Z',
  processes: [
    { name: 'web', command: null, scale: 1 },
    { name: 'worker', command: 'sleep 1', scale: 3 },
  ],
  env: {},
};
const c = (process: string, replica: number): BerthContainer => ({
  id: `c-${process}-${replica}`,
  name: `berth-shop-${process}-dep00002${replica > 1 ? `-${replica}` : ''}`,
  app: 'shop',
  process,
  deploymentId: 'dep00002',
  state: 'running',
  hostPort: process === 'web' ? 41000 : null,
  replica,
});
const observed = (workers: number) => ({
  containers: [c('web', 1), ...Array.from({ length: workers }, (_, i) => c('worker', i + 1))],
  nginxApps: [{ app: 'shop', content: render('shop', { domains: ['shop.example.com'], upstreamPort: 41000 }) }],
});
const kinds = (actions: Action[]) => actions.map((a) => `${a.type}${a.type === 'start-release-container' ? `:${a.process}:${a.replica}` : ''}`);

test('the planner keeps a scaled release at its recorded counts, whatever the spec override says', () => {
  // Converged at worker=3, with the override as recorded, pending a change, or reset but not yet redeployed:
  for (const scale of [{ worker: 3 }, { worker: 7 }, undefined]) assert.deepEqual(plan(desired(scale), [live], observed(3), render), [], JSON.stringify(scale));
  // A worker container that went missing is re-created: the recorded count, not the repo's 1.
  assert.deepEqual(kinds(plan(desired({ worker: 3 }), [live], observed(2), render)), ['start-release-container:worker:3']);
  assert.deepEqual(kinds(plan(desired(undefined), [live], observed(2), render)), ['start-release-container:worker:3']);
});

test('a finished scale deployment is told as a deploy, not as a rollback (it re-activates the live release)', () => {
  const facts = { id: 'dep00003', app: 'shop', server: 'alpha', status: 'done' as const, phase: null, reason: null, commit: 'abcdef1234567', rollbackOf: 'dep00001', logUrl: 'http://cp/x' };
  const scaled = deployEvent({ ...facts, trigger: 'scale' });
  assert.equal(scaled.event, 'deploy.succeeded');
  assert.match(scaled.text, /^Scale dep00003 of shop \(abcdef123456\) on alpha is live\.$/);
  assert.equal(deployEvent({ ...facts, trigger: 'rollback' }).event, 'rollback.done');
});

// ---- the control plane: what a scale records and orders, and what it refuses ----
test('triggerScale: merges the override, orders the live release (trigger scale), refuses without changing anything', () => {
  const stores = openStores(':memory:');
  try {
    const sent: string[] = [];
    const hub = { sendDeploy: (d: { id: string }) => (sent.push(d.id), false), sendCancel: () => {} } as unknown as TriggerDeps['hub'];
    const deps: TriggerDeps = { stores, hub, events: new DeploymentEvents(), logger: pino({ level: 'silent' }) };
    for (const s of ['alpha', 'beta']) stores.servers.create(s, `hash-${s}`, new Date(Date.now() + 60_000).toISOString());
    const app = stores.apps.create({ name: 'shop', repo: 'https://example.com/x.git', branch: 'main', server: 'alpha' });
    const finish = (id: string) => stores.deployments.applyProgress('alpha', { deploymentId: id, status: 'done', commit: 'a'.repeat(40) });
    const refused = (change: ScaleOverride | 'reset', message: RegExp) => {
      const before = { override: stores.scale.get('shop'), deployments: stores.deployments.listByApp('shop').length };
      assert.throws(() => triggerScale(deps, stores.apps.require('shop'), change), (err: unknown) => err instanceof ConflictError && message.test(err.message));
      assert.deepEqual({ override: stores.scale.get('shop'), deployments: stores.deployments.listByApp('shop').length }, before);
    };
    refused({ web: 2 }, /has no live release to scale: deploy it first/);
    const built = triggerDeploy(deps, app, { commit: null, trigger: 'manual' }).row;
    finish(built.id);
    const pending = triggerDeploy(deps, app, { commit: null, trigger: 'push' }).row;
    refused({ web: 2 }, new RegExp(`deployment ${pending.id} of shop is queued: scale once it has finished, or cancel it`));
    stores.deployments.cancel(pending.id, 'cancelled by a user');
    refused('reset', /no scale set with berth scale/);

    const first = triggerScale(deps, app, { worker: 3 });
    assert.deepEqual(first.override, { worker: 3 });
    assert.equal(first.row.trigger, 'scale');
    assert.equal(first.row.rollback_of, built.id, 'the live release is brought back');
    assert.equal(first.row.commit, 'a'.repeat(40));
    finish(first.row.id);
    const second = triggerScale(deps, app, { web: 2 });
    assert.deepEqual(second.override, { worker: 3, web: 2 }, 'counts set in separate commands add up');
    assert.equal(second.row.rollback_of, built.id, 'still the release the first scale re-activated');
    finish(second.row.id);
    assert.deepEqual(appSpecOf(stores, app).scale, { worker: 3, web: 2 }, 'desired state and deploy orders carry it');

    stores.apps.addDomain('shop', 'shop.example.com');
    refused({ web: 0 }, /web must keep at least 1 container while shop has domains \(shop\.example\.com\)/);
    const reset = triggerScale(deps, app, 'reset');
    assert.equal(reset.override, null);
    assert.equal(stores.scale.get('shop'), null);
    assert.equal(appSpecOf(stores, app).scale, undefined);
    finish(reset.row.id);
    stores.apps.update('shop', { server: 'beta' });
    refused({ web: 2 }, /has no live release on beta yet \(it moved from alpha\)/);
    assert.equal(sent.length, 5, 'every order went to the hub');
  } finally {
    stores.db.close();
  }
});
