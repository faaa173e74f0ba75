// The reconcile planner is pure: desired state + releases + observation in, actions out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plan, describeAction, type Action, type Observed } from '../../agent/reconcile/planner.js';
import type { BerthContainer } from '../../agent/docker/containers.js';
import type { AppSite } from '../../agent/nginx/index.js';
import type { Release } from '../../agent/store/releases.js';
import type { ServerSpec } from '../../shared/spec.js';

const render = (app: string, site: AppSite) =>
  `server ${app} [${site.domains.join(' ')}] -> ${site.staticRoot ?? (site.upstreamPorts ?? [site.upstreamPort]).map((p) => `127.0.0.1:${p}`).join(',')}\n`;

function spec(apps: Array<{ name: string; domains?: string[] }>): ServerSpec {
  return { server: 'local', revision: 3, apps: apps.map((a) => ({ name: a.name, repo: 'https://example.com/x.git', branch: 'main', domains: a.domains ?? [], env: {} })) };
}

function release(app: string, deploymentId: string, hostPort: number, containerId = `c-${deploymentId}`): Release {
  return { app, deploymentId, image: `berth/${app}:${deploymentId}`, containerId, hostPort, containerPort: 8000, commit: 'abcdef1', activatedAt: '2024-01-01T00:00:00.000Z' };
}

function container(app: string, deploymentId: string, opts: Partial<BerthContainer> = {}): BerthContainer {
  return { id: `c-${deploymentId}`, name: `${app}-web-${deploymentId}`, app, process: 'web', deploymentId, state: 'running', hostPort: 41000, ...opts };
}

const types = (actions: Action[]) => actions.map((a) => `${a.type}:${a.app}${'containerId' in a ? `:${a.containerId}` : ''}`);

/** One app "web" with a healthy live release and a matching nginx file. */
function converged(): { desired: ServerSpec; releases: Release[]; observed: Observed } {
  const r = release('web', 'dep00001', 41000);
  return {
    desired: spec([{ name: 'web', domains: ['web.example.com'] }]),
    releases: [r],
    observed: {
      containers: [container('web', 'dep00001', { hostPort: 41000 })],
      nginxApps: [{ app: 'web', content: render('web', { domains: ['web.example.com'], upstreamPort: 41000 }) }],
    },
  };
}

test('a fresh server has nothing to do', () => {
  assert.deepEqual(plan(spec([]), [], { containers: [], nginxApps: [] }, render), []);
  // A new app that was never deployed: nothing to run yet.
  assert.deepEqual(plan(spec([{ name: 'web', domains: ['a.example.com'] }]), [], { containers: [], nginxApps: [] }, render), []);
});

test('no desired state received yet: nothing is touched, whatever runs', () => {
  const { releases, observed } = converged();
  observed.containers.push(container('old', 'dep00009'));
  assert.deepEqual(plan(null, releases, observed, render), []);
});

test('nothing is touched when everything matches', () => {
  const { desired, releases, observed } = converged();
  assert.deepEqual(plan(desired, releases, observed, render), []);
});

test('an app removed from the spec: nginx file removed, then its containers, then its release', () => {
  const { releases, observed } = converged();
  const actions = plan(spec([]), releases, observed, render);
  assert.deepEqual(types(actions), ['remove-nginx:web', 'remove-container:web:c-dep00001', 'forget-release:web']);
});

test('an app removed from the spec with only a stray container (no release, no nginx file)', () => {
  const actions = plan(spec([]), [], { containers: [container('gone', 'dep00007')], nginxApps: [] }, render);
  assert.deepEqual(types(actions), ['remove-container:gone:c-dep00007']);
});

test('a domain added: the nginx file is rewritten with both domains', () => {
  const { releases, observed } = converged();
  const actions = plan(spec([{ name: 'web', domains: ['web.example.com', 'www.example.com'] }]), releases, observed, render);
  assert.equal(actions.length, 1);
  const a = actions[0]!;
  assert.equal(a.type, 'write-nginx');
  assert.deepEqual(a.type === 'write-nginx' && a.site, { domains: ['web.example.com', 'www.example.com'], upstreamPort: 41000 });
});

test('a deleted or hand-edited nginx file is rewritten', () => {
  const { desired, releases, observed } = converged();
  assert.deepEqual(types(plan(desired, releases, { ...observed, nginxApps: [] }, render)), ['write-nginx:web']);
  assert.deepEqual(types(plan(desired, releases, { ...observed, nginxApps: [{ app: 'web', content: '# edited by hand' }] }, render)), ['write-nginx:web']);
});

test('the current release container missing → a new one is started from the release', () => {
  const { desired, releases, observed } = converged();
  const actions = plan(desired, releases, { ...observed, containers: [] }, render);
  assert.deepEqual(types(actions), ['start-release-container:web']);
  const a = actions[0]!;
  assert.ok(a.type === 'start-release-container');
  assert.equal(a.release.deploymentId, 'dep00001');
  assert.equal(a.release.image, 'berth/web:dep00001');
  assert.deepEqual(a.domains, ['web.example.com']);
});

test('the current release container exited or only created → restarted (nginx resynced by the action)', () => {
  const { desired, releases } = converged();
  for (const state of ['exited', 'created']) {
    const actions = plan(desired, releases, { containers: [container('web', 'dep00001', { state, hostPort: null })], nginxApps: [] }, render);
    assert.deepEqual(types(actions), ['restart-container:web:c-dep00001'], state);
  }
});

test('a restarting container is left to Docker', () => {
  const { desired, releases, observed } = converged();
  observed.containers = [container('web', 'dep00001', { state: 'restarting' })];
  assert.deepEqual(plan(desired, releases, observed, render), []);
});

test('a dead container of the current release is removed and replaced', () => {
  const { desired, releases, observed } = converged();
  observed.containers = [container('web', 'dep00001', { state: 'dead' })];
  assert.deepEqual(types(plan(desired, releases, observed, render)), ['remove-container:web:c-dep00001', 'start-release-container:web']);
});

test('a stale container from an old deployment is removed; the live one stays', () => {
  const { desired, releases, observed } = converged();
  observed.containers.push(container('web', 'dep00000', { hostPort: 40999 }));
  const actions = plan(desired, releases, observed, render);
  assert.deepEqual(types(actions), ['remove-container:web:c-dep00000']);
});

test('a deploy in flight: the app is left alone entirely, other apps are still reconciled', () => {
  const { releases, observed } = converged();
  const desired = spec([{ name: 'web', domains: ['web.example.com'] }, { name: 'api', domains: ['api.example.com'] }]);
  releases.push(release('api', 'dep00005', 42000));
  // web: a new deployment's container starting next to the live one, nginx not yet switched.
  observed.containers.push(container('web', 'dep00002', { hostPort: 41001 }));
  // api: its container is gone.
  const actions = plan(desired, releases, observed, render, { busyApps: new Set(['web']) });
  assert.deepEqual(types(actions), ['start-release-container:api']);
  // The same observation without the deploy in flight would remove the newer container.
  assert.deepEqual(types(plan(desired, releases, observed, render).filter((a) => a.app === 'web')), ['remove-container:web:c-dep00002']);
});

test('an app being deployed that is no longer in the spec is left alone until the deploy ends', () => {
  const { releases, observed } = converged();
  assert.deepEqual(plan(spec([]), releases, observed, render, { busyApps: new Set(['web']) }), []);
});

test('duplicate web containers of the current release: the recorded one stays, the others go', () => {
  const { desired, releases, observed } = converged();
  observed.containers.push(container('web', 'dep00001', { id: 'c-extra', hostPort: 41005 }));
  assert.deepEqual(types(plan(desired, releases, observed, render)), ['remove-container:web:c-extra']);
});

test('the recorded container is gone but another of the same release runs: adopted, nginx follows its port', () => {
  const { desired, releases, observed } = converged();
  observed.containers = [container('web', 'dep00001', { id: 'c-replacement', hostPort: 41010 })];
  const actions = plan(desired, releases, observed, render);
  assert.deepEqual(types(actions), ['adopt-container:web:c-replacement', 'write-nginx:web']);
  const w = actions[1]!;
  assert.ok(w.type === 'write-nginx');
  assert.equal(w.site.upstreamPort, 41010);
});

test('a container of the current release that is not the web process is left alone', () => {
  const { desired, releases, observed } = converged();
  observed.containers.push(container('web', 'dep00001', { id: 'c-worker', process: 'worker', hostPort: null }));
  assert.deepEqual(plan(desired, releases, observed, render), []);
});

test('several apps: one app’s problem does not hide another’s, order is deterministic', () => {
  const desired = spec([{ name: 'b', domains: ['b.example.com'] }, { name: 'a', domains: ['a.example.com'] }]);
  const releases = [release('a', 'depa0001', 1), release('b', 'depb0001', 2)];
  const observed: Observed = { containers: [container('b', 'depb0001', { state: 'exited', hostPort: null })], nginxApps: [{ app: 'zz', content: 'x' }] };
  assert.deepEqual(types(plan(desired, releases, observed, render)), ['start-release-container:a', 'restart-container:b:c-depb0001', 'remove-nginx:zz']);
});

test('every action has a one-line description', () => {
  const { releases, observed } = converged();
  for (const a of plan(spec([]), releases, observed, render)) {
    const text = describeAction(a);
    assert.ok(text.length > 0 && !text.includes('\n'), text);
  }
});

test('an app whose last domain was removed: its server block is removed once, then left alone', () => {
  const { releases, observed } = converged();
  const noDomains = spec([{ name: 'web', domains: [] }]);
  assert.deepEqual(types(plan(noDomains, releases, observed, render)), ['remove-nginx:web']);
  // After the removal there is no file, and none is wanted: no action on every later pass.
  assert.deepEqual(plan(noDomains, releases, { ...observed, nginxApps: [] }, render), []);
});

// ---- processes with scale, static sites (issue 3) ------------------------------------------------

function multi(processes: Array<{ name: string; scale: number }>): Release {
  return { ...release('web', 'dep00001', 41000), processes: processes.map((p) => ({ ...p, command: `run ${p.name}` })), env: { A: 'b' } };
}

test('every process of the release runs at its scale: missing replicas are started', () => {
  const r = multi([{ name: 'web', scale: 1 }, { name: 'worker', scale: 2 }]);
  const { desired, observed } = converged();
  observed.containers.push(container('web', 'dep00001', { id: 'w1', process: 'worker', replica: 1, hostPort: null }));
  const actions = plan(desired, [r], observed, render);
  assert.deepEqual(types(actions), ['start-release-container:web']);
  const a = actions[0]!;
  assert.ok(a.type === 'start-release-container');
  assert.deepEqual([a.process, a.replica], ['worker', 2]);
  assert.equal(a.release.env?.A, 'b', 'the re-created container gets the release env');
});

test('a scaled-down or removed process: its extra containers are removed', () => {
  const r = multi([{ name: 'web', scale: 1 }, { name: 'worker', scale: 1 }]);
  const { desired, observed } = converged();
  observed.containers.push(
    container('web', 'dep00001', { id: 'w1', process: 'worker', replica: 1, hostPort: null }),
    container('web', 'dep00001', { id: 'w2', process: 'worker', replica: 2, hostPort: null }),
    container('web', 'dep00001', { id: 'clock', process: 'clock', replica: 1, hostPort: null }),
  );
  assert.deepEqual(types(plan(desired, [r], observed, render)), ['remove-container:web:clock', 'remove-container:web:w2']);
});

test('an exited worker is restarted without touching nginx', () => {
  const r = multi([{ name: 'web', scale: 1 }, { name: 'worker', scale: 1 }]);
  const { desired, observed } = converged();
  observed.containers.push(container('web', 'dep00001', { id: 'w1', process: 'worker', replica: 1, state: 'exited', hostPort: null }));
  const actions = plan(desired, [r], observed, render);
  assert.deepEqual(types(actions), ['restart-container:web:w1']);
  assert.ok(actions[0]!.type === 'restart-container' && actions[0]!.process === 'worker');
});

test('a scaled web process routes to every replica; a missing one is started before nginx changes', () => {
  const r = multi([{ name: 'web', scale: 2 }]);
  const { desired } = converged();
  const both: Observed = {
    containers: [container('web', 'dep00001', { hostPort: 41000 }), container('web', 'dep00001', { id: 'web2', replica: 2, hostPort: 41001 })],
    nginxApps: [{ app: 'web', content: render('web', { domains: ['web.example.com'], upstreamPort: 41000 }) }],
  };
  const actions = plan(desired, [r], both, render);
  assert.deepEqual(types(actions), ['write-nginx:web']);
  assert.ok(actions[0]!.type === 'write-nginx');
  assert.deepEqual(actions[0]!.site, { domains: ['web.example.com'], upstreamPort: 41000, upstreamPorts: [41000, 41001] });
  const one: Observed = { ...both, containers: [both.containers[0]!] };
  assert.deepEqual(types(plan(desired, [r], one, render)), ['start-release-container:web'], 'the start action resyncs nginx itself');
});

test('a release without a web process has no server block', () => {
  const r = { ...multi([{ name: 'worker', scale: 1 }]), containerId: '', hostPort: 0 };
  const { desired, observed } = converged();
  observed.containers = [container('web', 'dep00001', { id: 'w1', process: 'worker', hostPort: null })];
  assert.deepEqual(types(plan(desired, [r], observed, render)), ['remove-nginx:web']);
});

test('a static site: served from its release directory, no containers', () => {
  const r: Release = { ...release('web', 'dep00002', 0, ''), processes: [], staticRoot: '/srv/static/web/dep00002' };
  const { desired, observed } = converged();
  // The old release's web container goes; the server block points at the directory.
  const actions = plan(desired, [r], observed, render);
  assert.deepEqual(types(actions), ['remove-container:web:c-dep00001', 'write-nginx:web']);
  const w = actions[1]!;
  assert.ok(w.type === 'write-nginx');
  assert.deepEqual(w.site, { domains: ['web.example.com'], staticRoot: '/srv/static/web/dep00002' });
  const settled: Observed = { containers: [], nginxApps: [{ app: 'web', content: render('web', w.site) }] };
  assert.deepEqual(plan(desired, [r], settled, render), []);
});

// ---- volumes and app files of removed apps (issue 9) ---------------------------------------------

const volume = (app: string, name: string) => ({ dockerName: `berth-${app}_${name}`, app, name });
const purging = (apps: Array<{ name: string; domains?: string[] }>, purgeVolumes: string[]): ServerSpec => ({ ...spec(apps), purgeVolumes });
const volumeActions = (actions: Action[]) => actions.filter((a) => a.type === 'remove-volume').map((a) => (a.type === 'remove-volume' ? a.volume : ''));

test('an app removed with --purge-volumes: its volumes go last, after its containers, with its files', () => {
  const { releases, observed } = converged();
  const actions = plan(purging([], ['web']), releases, { ...observed, appFiles: ['web'], volumes: [volume('web', 'media'), volume('web', 'cache')] }, render);
  assert.deepEqual(types(actions), [
    'remove-nginx:web',
    'remove-container:web:c-dep00001',
    'forget-release:web',
    'remove-app-files:web',
    'remove-volume:web',
    'remove-volume:web',
  ]);
  assert.deepEqual(volumeActions(actions), ['berth-web_media', 'berth-web_cache']);
  for (const a of actions) assert.ok(!describeAction(a).includes('\n'));
});

test('a purge ordered while the agent was offline: only the volumes are left, they are removed on the next pass', () => {
  const actions = plan(purging([], ['web']), [], { containers: [], nginxApps: [], volumes: [volume('web', 'media')] }, render);
  assert.deepEqual(types(actions), ['remove-volume:web']);
});

test('an app removed without a purge keeps its volumes; its files (env with secrets) still go', () => {
  const { releases, observed } = converged();
  const actions = plan(spec([]), releases, { ...observed, appFiles: ['web'], volumes: [volume('web', 'media')] }, render);
  assert.deepEqual(types(actions), ['remove-nginx:web', 'remove-container:web:c-dep00001', 'forget-release:web', 'remove-app-files:web']);
  // Another app's purge never reaches this app's volumes.
  assert.deepEqual(volumeActions(plan(purging([], ['other']), [], { containers: [], nginxApps: [], volumes: [volume('web', 'media')] }, render)), []);
});

test('a purged app re-created under the same name: its volumes and files are left alone', () => {
  const { desired, releases, observed } = converged();
  const actions = plan({ ...desired, purgeVolumes: ['web'] }, releases, { ...observed, appFiles: ['web'], volumes: [volume('web', 'media')] }, render);
  assert.deepEqual(actions, []);
  // Re-created but not deployed yet: nothing either.
  assert.deepEqual(plan(purging([{ name: 'web' }], ['web']), [], { containers: [], nginxApps: [], appFiles: ['web'], volumes: [volume('web', 'media')] }, render), []);
});

test('a removed app with a deploy still in flight: its volumes wait for the deploy to end', () => {
  const actions = plan(purging([], ['web']), [], { containers: [], nginxApps: [], volumes: [volume('web', 'media')] }, render, { busyApps: new Set(['web']) });
  assert.deepEqual(actions, []);
});
