// The pieces of the deploy lifecycle that need no Docker: phase deadlines, telling which images a
// build created from its output, and the journal/release store that recovery and rollback rely on.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { PhaseDeadlineExceeded, withDeadline } from '../agent/deploy/deadline.js';
import { BuildImageTracker } from '../agent/build/images.js';
import { checkFreeDisk, DiskSpaceError } from '../agent/deploy/disk.js';
import type Docker from 'dockerode';
import { DeployCancelled } from '../agent/deploy/cancel.js';
import { AgentStore } from '../agent/store/index.js';
import { parseBerthYml } from '../agent/config/berth-yml.js';
import { AppConfigError } from '../agent/config/types.js';
import type { DeployOrder } from '../shared/protocol.js';
import { makeTmpDir } from './helpers/tmp.js';

const limit = (ms: number) => ({ phase: 'building' as const, ms, setting: 'BERTH_BUILD_TIMEOUT_S' });
const never = new AbortController().signal;

describe('phase deadlines', () => {
  it('passes the work through when it finishes in time', async () => {
    assert.equal(await withDeadline(limit(1000), never, async () => 42), 42);
    await assert.rejects(withDeadline(limit(1000), never, async () => Promise.reject(new Error('boom'))), /boom/);
  });

  it('aborts the work at the deadline and fails with the phase and the setting named', async () => {
    let seen: unknown;
    const err = await withDeadline(limit(50), never, (signal) =>
      new Promise((_, reject) =>
        signal.addEventListener('abort', () => {
          seen = signal.reason;
          reject(new Error('build cancelled')); // how the work reacts is not the reason reported
        }),
      ),
    ).catch((e: unknown) => e);
    assert.ok(err instanceof PhaseDeadlineExceeded);
    assert.equal(seen, err);
    assert.equal((err as Error).message, 'the building phase did not finish within its deadline of 50 ms (BERTH_BUILD_TIMEOUT_S)');
  });

  it('moves on from work that ignores its signal, after a bounded wait', async () => {
    const started = Date.now();
    const err = await withDeadline(limit(30), never, () => new Promise(() => {}), 60).catch((e: unknown) => e);
    assert.ok(err instanceof PhaseDeadlineExceeded);
    assert.ok(Date.now() - started < 5000);
  });

  it('a cancel of the deploy stops the phase with the cancel as the reason', async () => {
    const parent = new AbortController();
    const p = withDeadline(limit(10_000), parent.signal, (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))));
    parent.abort(new DeployCancelled('cancelled', 'cancelled by a user'));
    const err = await p.catch((e: unknown) => e);
    assert.ok(err instanceof DeployCancelled);
    await assert.rejects(withDeadline(limit(1000), parent.signal, async () => 1), DeployCancelled, 'an already cancelled deploy runs no phase');
  });
});

describe('images a build created', () => {
  it('records each step that produced a new image, never cache hits or the base image', () => {
    const created: string[] = [];
    const tracker = new BuildImageTracker((id) => created.push(id));
    const output = [
      'Step 1/5 : FROM berth-test/busybox:latest',
      ' ---> 13c13e8fa711',
      'Step 2/5 : COPY requirements.txt /app/',
      ' ---> Using cache',
      ' ---> 6333f649e76b',
      'Step 3/5 : COPY . /www',
      ' ---> 3b2dea83c976',
      'Step 4/5 : RUN echo hello && false',
      ' ---> Running in 0123456789ab',
      'hello',
      "The command '/bin/sh -c echo hello && false' returned a non-zero code: 1",
    ];
    for (const l of output) tracker.line(l);
    assert.deepEqual(created, ['3b2dea83c976']);
    for (const l of ['Step 4/5 : RUN echo ok', ' ---> Running in 0123456789ab', 'ok', 'Removing intermediate container 0123456789ab', ' ---> 788410d376f2', 'Step 5/5 : LABEL berth.managed=true', ' ---> Running in aaaaaaaaaaaa', ' ---> a57c1b48423c', 'Successfully built a57c1b48423c'])
      tracker.line(l);
    assert.deepEqual(created, ['3b2dea83c976', '788410d376f2', 'a57c1b48423c']);
  });
});

describe('the agent journal and kept releases', () => {
  const dir = makeTmpDir('berth-lifecycle-store-');
  after(() => rmSync(dir, { recursive: true, force: true }));
  const order = (id: string): DeployOrder => ({ type: 'deploy', v: 1, deploymentId: id, app: { name: 'web', repo: 'https://example.com/x.git', branch: 'main', domains: [], env: {} } });

  it('journals each phase with its deadline; a finished deploy has none', () => {
    const store = AgentStore.open(dir);
    try {
      store.deploys.create(order('dep00001'));
      store.deploys.transition('dep00001', 'fetching');
      const deadline = new Date(Date.now() + 60_000).toISOString();
      store.deploys.transition('dep00001', 'building', { deadlineAt: deadline });
      assert.equal(store.deploys.get('dep00001')!.deadlineAt, deadline);
      store.deploys.addBuildImage('dep00001', 'aaaaaaaaaaaa');
      store.deploys.addBuildImage('dep00001', 'bbbbbbbbbbbb');
      assert.deepEqual(store.deploys.get('dep00001')!.buildImages, ['aaaaaaaaaaaa', 'bbbbbbbbbbbb']);
      assert.deepEqual([...store.deploys.unfinishedIds('web')], ['dep00001']);
      store.deploys.transition('dep00001', 'failed', { reason: 'build failed: x' });
      const d = store.deploys.get('dep00001')!;
      assert.equal(d.deadlineAt, null);
      assert.ok(d.finishedAt);
      assert.deepEqual(
        store.deploys.transitions('dep00001').map((t) => [t.status, t.deadlineAt]),
        [['queued', null], ['fetching', null], ['building', deadline], ['failed', null]],
      );
      store.deploys.clearBuildImages('dep00001');
      assert.deepEqual(store.deploys.get('dep00001')!.buildImages, []);
    } finally {
      store.close();
    }
  });

  it('orders kept releases by their latest activation: a rollback makes an old one the newest', async () => {
    const store = AgentStore.open(dir);
    try {
      const snap = (id: string) => ({ deploymentId: id, app: 'web', image: `berth/web:${id}`, commit: 'abc', config: {}, processes: [], staticRoot: null, containerPort: 8000, env: { K: id } });
      for (const id of ['rel00001', 'rel00002', 'rel00003']) {
        store.releases.recordSnapshot(snap(id));
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.deepEqual(store.releases.history('web').map((s) => s.deploymentId), ['rel00003', 'rel00002', 'rel00001']);
      store.releases.touchSnapshot('rel00001');
      assert.deepEqual(store.releases.history('web').map((s) => s.deploymentId), ['rel00001', 'rel00003', 'rel00002']);
      assert.deepEqual(store.releases.snapshot('rel00002')?.env, { K: 'rel00002' });
      store.releases.forgetSnapshots(['rel00002']);
      assert.equal(store.releases.snapshot('rel00002'), null);
      assert.deepEqual(store.releases.history('web').map((s) => s.deploymentId), ['rel00001', 'rel00003']);
    } finally {
      store.close();
    }
  });
});

describe('health check settings in berth.yml', () => {
  it('reads interval and attempts next to path and timeout; both optional', () => {
    assert.deepEqual(parseBerthYml({ healthcheck: { path: '/up', timeout: 20, interval: 0.5, attempts: 10 } }).healthcheck, { path: '/up', timeoutS: 20, intervalS: 0.5, attempts: 10 });
    assert.deepEqual(parseBerthYml({ healthcheck: { path: '/up' } }).healthcheck, { path: '/up', timeoutS: 30 });
  });

  it('names the key of a bad value', () => {
    assert.throws(() => parseBerthYml({ healthcheck: { interval: 0 } }), (e: unknown) => e instanceof AppConfigError && /healthcheck\.interval/.test(e.message));
    assert.throws(() => parseBerthYml({ healthcheck: { attempts: 1.5 } }), (e: unknown) => e instanceof AppConfigError && /healthcheck\.attempts/.test(e.message));
  });
});

describe('free disk before a build', () => {
  const dir = makeTmpDir('berth-lifecycle-disk-');
  after(() => rmSync(dir, { recursive: true, force: true }));
  // An engine that does not say where it keeps its data: only the data dir is measured.
  const quiet = { info: async () => ({}) } as unknown as Docker;

  it('measures where berth keeps its data and passes above the threshold', async () => {
    const measured = await checkFreeDisk(quiet, { dataDir: dir, minFreeMb: 1 });
    assert.equal(measured.length, 1);
    assert.equal(measured[0]!.path, dir);
    assert.ok(measured[0]!.freeMb > 1);
  });

  it('fails below the threshold with the numbers and the setting named', async () => {
    const err = await checkFreeDisk(quiet, { dataDir: dir, minFreeMb: 10_000_000 }).catch((e: unknown) => e);
    assert.ok(err instanceof DiskSpaceError);
    assert.match(err.message, new RegExp(`^not enough free disk space: \\d+ MB free on ${dir}, at least 10000000 MB needed \\(BERTH_MIN_FREE_DISK_MB\\)`));
    assert.deepEqual(await checkFreeDisk(quiet, { dataDir: dir, minFreeMb: 0 }), [], 'BERTH_MIN_FREE_DISK_MB=0 turns the check off');
  });
});
