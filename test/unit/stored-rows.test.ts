// Rows read back from the agent's SQLite are checked: a row older than a field reads as the
// documented default, a corrupt one (bad JSON, wrong shape) as a CorruptRowError that is logged at
// error level — and a corrupt release is never turned into a container with an empty env.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AgentStore, CorruptRowError } from '../../agent/store/index.js';
import { CORRUPT_OUTPUT_LINE } from '../../agent/store/cron-runs.js';
import { executeActions, type ExecutorDeps } from '../../agent/reconcile/executor.js';
import { plan } from '../../agent/reconcile/planner.js';
import type { AppSite } from '../../agent/nginx/index.js';
import { PROTOCOL_VERSION } from '../../shared/protocol.js';
import type { ServerSpec } from '../../shared/spec.js';
import { LEVEL, recordingLogger } from '../helpers/log.js';
import { makeTmpDir } from '../helpers/tmp.js';

const render = (app: string, site: AppSite) => `server ${app} ${site.upstreamPort}\n`;
const desired: ServerSpec = { server: 'local', revision: 1, apps: [{ name: 'web', repo: 'https://example.com/web.git', branch: 'main', domains: ['web.example.com'], env: {} }] };
const ENV = { DATABASE_URL: 'postgres://db/web', SECRET_KEY: 'k' };
const live = { app: 'web', deploymentId: 'dep00000001', image: 'berth/web:dep00000001', containerId: 'c1', hostPort: 41000, containerPort: 8000, commit: null };

/** A store with one live release, and a way to write into its SQLite file behind its back. */
function setup(t: { after: (fn: () => void) => void }) {
  const dir = makeTmpDir('berth-stored-rows-');
  const seed = AgentStore.open(dir);
  seed.releases.activate({ ...live, processes: [{ name: 'web', command: null, scale: 1 }], staticRoot: null, env: ENV, volumes: {} });
  seed.close();
  const sql = (statement: string, ...params: unknown[]) => {
    const db = new Database(join(dir, 'agent.db'));
    try {
      db.prepare(statement).run(...params);
    } finally {
      db.close();
    }
  };
  const { logger, lines } = recordingLogger();
  const open = () => {
    const store = AgentStore.open(dir, { logger });
    t.after(() => store.close());
    return store;
  };
  const errors = () => lines.filter((l) => l.level === LEVEL.error);
  return { sql, open, lines, errors };
}

test('a release row with corrupt env_json: read as corrupt, logged once at error level, and no container is planned from it', async (t) => {
  const { sql, open, errors } = setup(t);
  sql(`UPDATE releases SET env_json = ? WHERE app = 'web'`, '{"DATABASE_URL": "postgres://db/w');
  const store = open();
  const r = store.releases.get('web')!;
  assert.ok(r.corrupt instanceof CorruptRowError);
  assert.deepEqual([r.corrupt.table, r.corrupt.key, r.corrupt.column], ['releases', 'web', 'env_json']);
  assert.equal(r.env, undefined, 'no env is made up for it');
  assert.deepEqual(r.processes, [{ name: 'web', command: null, scale: 1 }], 'the readable columns are still read');
  store.releases.all();
  store.releases.get('web');
  assert.equal(errors().length, 1, 'logged once, not on every read');
  assert.deepEqual([errors()[0]!.table, errors()[0]!.key, errors()[0]!.column], ['releases', 'web', 'env_json']);
  assert.match(errors()[0]!.msg, /releases row web is corrupt: column env_json is not valid JSON/);
  assert.ok(!JSON.stringify(errors()).includes('postgres://'), 'the log never quotes the env it could not read');

  // Every container of it gone: the reconciler plans no create, and its pass reports why.
  const actions = plan(desired, store.releases.all(), { containers: [], nginxApps: [] }, render);
  assert.deepEqual(actions.map((a) => a.type), ['skip-corrupt-release']);
  const { logger, lines } = recordingLogger();
  const deps = { logger, isBusy: () => false } as unknown as ExecutorDeps; // the report touches neither Docker nor nginx
  const result = await executeActions(deps, actions);
  assert.deepEqual(result.applied, []);
  assert.equal(result.errors.length, 1);
  assert.match(result.errors[0]!, /leave web release dep00000001 as it is, nothing is re-created from it/);
  assert.ok(!result.errors[0]!.includes('postgres://'));
  assert.ok(lines.some((l) => l.level === LEVEL.warn && /env_json/.test(l.msg)));
});

test('wrong shapes are corrupt too: an env value that is not a string, processes that are not a list', (t) => {
  const { sql, open, errors } = setup(t);
  sql(`UPDATE releases SET env_json = '{"PORT": 8000}', spec_json = '{"processes": "web"}' WHERE app = 'web'`);
  const r = open().releases.get('web')!;
  assert.equal(r.corrupt?.column, 'spec_json', 'the first corrupt column is the one named');
  assert.equal(r.env, undefined);
  assert.equal(r.processes, undefined);
  assert.deepEqual(errors().map((l) => l.column).sort(), ['env_json', 'spec_json']);
  assert.match(errors().find((l) => l.column === 'env_json')!.msg, /wrong shape at PORT/);
});

test('a row older than the fields (NULL columns, missing keys) reads as the documented defaults, without an error', (t) => {
  const { sql, open, errors } = setup(t);
  sql(`UPDATE releases SET env_json = NULL, spec_json = NULL WHERE app = 'web'`);
  const store = open();
  const old = store.releases.get('web')!;
  assert.equal(old.corrupt, undefined);
  assert.equal(old.env, undefined);
  assert.equal(old.processes, undefined, 'web only at scale 1 (the planner treats it so)');
  // A legacy release is re-created as before (web only, its env: none was ever recorded).
  const actions = plan(desired, [old], { containers: [], nginxApps: [] }, render);
  assert.deepEqual(actions.map((a) => (a.type === 'start-release-container' ? `${a.type}:${a.process}` : a.type)), ['start-release-container:web']);
  sql(`UPDATE releases SET spec_json = '{"staticRoot": null}' WHERE app = 'web'`);
  const partial = store.releases.get('web')!;
  assert.deepEqual([partial.corrupt, partial.processes, partial.staticRoot], [undefined, undefined, null]);
  assert.deepEqual(errors(), []);
});

test('restoring a release read from a corrupt row writes the row back as it was, not as a row without env', (t) => {
  const { sql, open } = setup(t);
  const bad = '{"DATABASE_URL": "postgres://db/w';
  sql(`UPDATE releases SET env_json = ? WHERE app = 'web'`, bad);
  const store = open();
  const previous = store.releases.activate({ ...live, deploymentId: 'dep00000002', env: { A: 'b' } });
  assert.ok(previous?.corrupt);
  store.releases.restore('web', previous);
  const back = store.db.prepare(`SELECT deployment_id, env_json FROM releases WHERE app = 'web'`).get() as { deployment_id: string; env_json: string };
  assert.deepEqual(back, { deployment_id: 'dep00000001', env_json: bad });
  // A copy of it (its raw columns unknown) is refused rather than written as a row without env.
  assert.throws(() => store.releases.activate({ ...previous! }), CorruptRowError);
  assert.equal((store.db.prepare(`SELECT env_json FROM releases WHERE app = 'web'`).get() as { env_json: string }).env_json, bad);
});

test('a corrupt kept release: snapshot() throws CorruptRowError, history() leaves it out, liveSnapshot() is null', (t) => {
  const { sql, open, errors } = setup(t);
  const seed = open();
  const snap = { app: 'web', image: live.image, commit: null, config: { port: 8000 }, processes: [], staticRoot: null, containerPort: 8000, env: ENV };
  seed.releases.recordSnapshot({ ...snap, deploymentId: 'dep00000001' });
  seed.releases.recordSnapshot({ ...snap, deploymentId: 'dep00000000' });
  seed.close();
  sql(`UPDATE release_history SET env_json = '[1,2' WHERE deployment_id = 'dep00000001'`);
  const store = open();
  assert.throws(() => store.releases.snapshot('dep00000001'), (err: unknown) => err instanceof CorruptRowError && err.table === 'release_history' && err.key === 'dep00000001');
  assert.deepEqual(store.releases.history('web').map((s) => s.deploymentId), ['dep00000000']);
  assert.deepEqual(store.releases.snapshot('dep00000000')?.env, ENV);
  assert.equal(store.liveSnapshot(store.releases.get('web')!), null, 'no config or env is guessed for the live release');
  assert.equal(errors().length, 1);
});

test('the other stores: corrupt desired state, outbox entries, reconcile runs and cron runs are logged, never cast', (t) => {
  const { sql, open, errors } = setup(t);
  const seed = open();
  seed.desired.save(desired);
  seed.outbox.push({ type: 'deploy_progress', v: PROTOCOL_VERSION, deploymentId: 'dep00000001', status: 'done', ts: new Date().toISOString() });
  seed.outbox.push({ type: 'deploy_progress', v: PROTOCOL_VERSION, deploymentId: 'dep00000002', status: 'done', ts: new Date().toISOString() });
  seed.reconcileRuns.record({ startedAt: new Date().toISOString(), durationMs: 1, actions: ['a'], errors: [] });
  seed.reconcileRuns.record({ startedAt: new Date().toISOString(), durationMs: 2, actions: ['b'], errors: [] });
  for (const id of ['run1', 'run2', 'run3']) {
    seed.cronRuns.insert({ id, app: 'web', job: 'tick', trigger: 'manual', scheduledAt: null, status: 'running', deploymentId: null, container: null, timeoutS: null });
  }
  seed.close();
  sql(`UPDATE desired_state SET spec = '{"server": "local", "revision": "x"'`);
  sql(`UPDATE outbox SET body = 'not json' WHERE id = 1`);
  sql(`UPDATE reconcile_runs SET errors = '{"no": "list"}' WHERE id = 2`);
  sql(`UPDATE cron_runs SET status = 'exploded' WHERE id = 'run1'`);
  sql(`UPDATE cron_runs SET output = '["half' WHERE id = 'run2'`);

  const store = open();
  assert.equal(store.desired.get(), null, 'a corrupt desired state counts as none: nothing is touched');
  const out = store.outbox.peek();
  assert.deepEqual(out.map((e) => e.id), [2], 'the corrupt entry is dropped, the next one still goes');
  assert.equal(store.outbox.count(), 1);
  assert.deepEqual(store.reconcileRuns.last(5).map((r) => r.actions), [['a']]);
  assert.equal(store.cronRuns.get('run1'), null);
  assert.deepEqual(store.cronRuns.get('run2')?.outputTail, [CORRUPT_OUTPUT_LINE]);
  assert.deepEqual(store.cronRuns.running().map((r) => r.id), ['run2', 'run3']);
  assert.deepEqual(errors().map((l) => `${l.table}.${l.column}`).sort(), ['cron_runs.output', 'cron_runs.status', 'desired_state.spec', 'outbox.body', 'reconcile_runs.errors']);
});
