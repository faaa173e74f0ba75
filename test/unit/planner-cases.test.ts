// The reconcile planner, case by case as the deploy work names them: desired state + releases +
// observation in, actions out. Pure: no Docker, no nginx. (More cases in planner.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeAction, plan, type Action, type Observed } from '../../agent/reconcile/planner.js';
import type { BerthContainer } from '../../agent/docker/containers.js';
import type { AppSite } from '../../agent/nginx/index.js';
import type { Release, ReleaseProcess } from '../../agent/store/releases.js';
import { CorruptRowError } from '../../agent/store/rows.js';
import type { ServerSpec } from '../../shared/spec.js';

const DOMAIN = 'shop.example.com';
const render = (app: string, site: AppSite) =>
  `server ${app} [${site.domains.join(' ')}] -> ${site.staticRoot ?? (site.upstreamPorts ?? [site.upstreamPort]).map((p) => `127.0.0.1:${p}`).join(',')}\n`;
const desired = (apps = [{ name: 'shop', domains: [DOMAIN] }]): ServerSpec => ({
  server: 'local',
  revision: 7,
  apps: apps.map((a) => ({ ...a, repo: 'https://example.com/shop.git', branch: 'main', env: {} })),
});
const release = (deploymentId: string, processes: ReleaseProcess[], hostPort = 41000): Release => ({
  app: 'shop',
  deploymentId,
  image: `berth/shop:${deploymentId}`,
  containerId: `${deploymentId}-web-1`,
  hostPort,
  containerPort: 8000,
  commit: 'abc1234',
  activatedAt: '2024-05-01T00:00:00.000Z',
  processes,
  env: { DATABASE_URL: 'postgres://db/shop' },
});
const web = (scale = 1): ReleaseProcess => ({ name: 'web', command: 'serve', scale });
const worker = (scale = 1): ReleaseProcess => ({ name: 'worker', command: 'work', scale });
const box = (deploymentId: string, process: string, replica: number, o: Partial<BerthContainer> = {}): BerthContainer => ({
  id: `${deploymentId}-${process}-${replica}`,
  name: `berth-shop-${process}-${deploymentId}-${replica}`,
  app: 'shop',
  process,
  deploymentId,
  state: 'running',
  hostPort: process === 'web' ? 41000 + replica - 1 : null,
  replica,
  ...o,
});
const served = (ports: number[]) => [{ app: 'shop', content: render('shop', ports.length > 1 ? { domains: [DOMAIN], upstreamPort: ports[0]!, upstreamPorts: ports } : { domains: [DOMAIN], upstreamPort: ports[0]! }) }];
const brief = (actions: Action[]) =>
  actions.map((a) => {
    switch (a.type) {
      case 'start-release-container':
        return `start ${a.process}#${a.replica} from ${a.release.image}`;
      case 'restart-container':
      case 'remove-container':
        return `${a.type.split('-')[0]} ${a.containerId}`;
      case 'adopt-container':
        return `adopt ${a.containerId}`;
      case 'write-nginx':
        return `nginx → ${(a.site.upstreamPorts ?? [a.site.upstreamPort]).join(',')}`;
      default:
        return a.type;
    }
  });

test('fresh server: nothing deployed, nothing running → nothing to do (a deploy starts things, not the planner)', () => {
  assert.deepEqual(plan(desired(), [], { containers: [], nginxApps: [] }, render), []);
  assert.deepEqual(plan(desired([]), [], { containers: [], nginxApps: [] }, render), []);
});

test('fresh agent over a recorded release (e.g. the disk was restored): every process is started from the release image', () => {
  const r = release('dep00001', [web(), worker(2)]);
  assert.deepEqual(brief(plan(desired(), [r], { containers: [], nginxApps: [] }, render)), [
    'start web#1 from berth/shop:dep00001',
    'start worker#1 from berth/shop:dep00001',
    'start worker#2 from berth/shop:dep00001',
  ]);
});

test('converged: a release running at its scale behind its server block → no actions', () => {
  const r = release('dep00001', [web(2), worker()]);
  const observed: Observed = { containers: [box('dep00001', 'web', 1), box('dep00001', 'web', 2), box('dep00001', 'worker', 1)], nginxApps: served([41000, 41001]) };
  assert.deepEqual(plan(desired(), [r], observed, render), []);
});

test('scale up: the missing replicas are started; nginx follows once their ports exist', () => {
  const r = release('dep00001', [web(3), worker(2)]);
  const observed: Observed = { containers: [box('dep00001', 'web', 1), box('dep00001', 'worker', 1)], nginxApps: served([41000]) };
  assert.deepEqual(brief(plan(desired(), [r], observed, render)), [
    'start web#2 from berth/shop:dep00001',
    'start web#3 from berth/shop:dep00001',
    'start worker#2 from berth/shop:dep00001',
  ]);
});

test('scale down: replicas above the scale are removed and nginx stops routing to them', () => {
  const r = release('dep00001', [web(1), worker(1)]);
  const observed: Observed = {
    containers: [box('dep00001', 'web', 1), box('dep00001', 'web', 2), box('dep00001', 'worker', 1), box('dep00001', 'worker', 2), box('dep00001', 'worker', 3)],
    nginxApps: served([41000, 41001]),
  };
  assert.deepEqual(brief(plan(desired(), [r], observed, render)), ['remove dep00001-web-2', 'remove dep00001-worker-2', 'remove dep00001-worker-3', 'nginx → 41000']);
});

test('a process removed from the release (or scaled to 0): all its containers go, the rest is untouched', () => {
  const observed: Observed = { containers: [box('dep00001', 'web', 1), box('dep00001', 'worker', 1), box('dep00001', 'clock', 1)], nginxApps: served([41000]) };
  assert.deepEqual(brief(plan(desired(), [release('dep00001', [web(), worker()])], observed, render)), ['remove dep00001-clock-1']);
  assert.deepEqual(brief(plan(desired(), [release('dep00001', [web(), worker(0)])], observed, render)), ['remove dep00001-worker-1', 'remove dep00001-clock-1']);
});

test('image changed (a new release or a rollback is current): the old release\'s containers go, the new image is started', () => {
  // The agent died after recording release dep00002 (rolled back to an older image) but before starting it.
  const r = { ...release('dep00002', [web(), worker()], 41010), image: 'berth/shop:dep00000' };
  const observed: Observed = { containers: [box('dep00001', 'web', 1), box('dep00001', 'worker', 1)], nginxApps: served([41000]) };
  assert.deepEqual(brief(plan(desired(), [r], observed, render)), [
    'remove dep00001-web-1',
    'remove dep00001-worker-1',
    'start web#1 from berth/shop:dep00000',
    'start worker#1 from berth/shop:dep00000',
  ]);
  const a = plan(desired(), [r], observed, render).find((x) => x.type === 'start-release-container');
  assert.ok(a?.type === 'start-release-container');
  assert.deepEqual(a.release.env, { DATABASE_URL: 'postgres://db/shop' }, 'with the env the release was deployed with');
});

test('container crashed: exited → started again; restarting → left to Docker; dead → replaced', () => {
  const r = release('dep00001', [web(), worker()]);
  const crashed = (webState: string, workerState: string): Observed => ({
    containers: [box('dep00001', 'web', 1, { state: webState, hostPort: webState === 'running' ? 41000 : null }), box('dep00001', 'worker', 1, { state: workerState })],
    nginxApps: served([41000]),
  });
  assert.deepEqual(brief(plan(desired(), [r], crashed('exited', 'running'), render)), ['restart dep00001-web-1']);
  assert.deepEqual(brief(plan(desired(), [r], crashed('running', 'exited'), render)), ['restart dep00001-worker-1']);
  assert.deepEqual(plan(desired(), [r], crashed('restarting', 'restarting'), render), []);
  assert.deepEqual(brief(plan(desired(), [r], crashed('running', 'dead'), render)), ['remove dep00001-worker-1', 'start worker#1 from berth/shop:dep00001']);
});

test('foreign containers: berth never observes unlabelled ones, and leaves apps it did not deploy alone', () => {
  // Only berth.managed containers of this server are ever observed (listBerthContainers); among
  // those, an app this agent has no release of (deployed by another install, or by hand with
  // berth's labels) is not this agent's to change while it is in the desired state.
  const stranger = box('dep09999', 'web', 1, { app: 'blog', id: 'blog-web' });
  const observed: Observed = { containers: [box('dep00001', 'web', 1), stranger], nginxApps: served([41000]) };
  const spec = desired([{ name: 'shop', domains: [DOMAIN] }, { name: 'blog', domains: ['blog.example.com'] }]);
  assert.deepEqual(plan(spec, [release('dep00001', [web()])], observed, render), []);
  // Removed from the desired state it is berth's own leftover: removed.
  assert.deepEqual(brief(plan(desired(), [release('dep00001', [web()])], observed, render)), ['remove blog-web']);
  // And nothing at all is touched before a desired state has ever arrived.
  assert.deepEqual(plan(null, [release('dep00001', [web()])], observed, render), []);
});

test('a deploy in flight for the app (starting its new containers next to the live ones) is never interfered with', () => {
  const r = release('dep00001', [web()]);
  const observed: Observed = { containers: [box('dep00001', 'web', 1), box('dep00002', 'web', 1, { hostPort: 41010 })], nginxApps: served([41000]) };
  assert.deepEqual(plan(desired(), [r], observed, render, { busyApps: new Set(['shop']) }), []);
});

test('a release read from a corrupt row: nothing is re-created (no container with an empty env), the pass reports why', () => {
  const corrupt = new CorruptRowError({ table: 'releases', key: 'shop', column: 'env_json' }, 'is not valid JSON (33 characters)');
  // What the store hands over for a corrupt env_json: the env left out, `corrupt` set.
  const { env: _lost, ...rest } = release('dep00001', [web(), worker()]);
  const r: Release = { ...rest, corrupt };
  const reported = ['skip-corrupt-release'];
  // Every container gone (the host was rebooted and the engine wiped): still nothing is started from it.
  assert.deepEqual(brief(plan(desired(), [r], { containers: [], nginxApps: [] }, render)), reported);
  // Stopped or stray containers of it are not touched either: the release cannot be read.
  const observed: Observed = { containers: [box('dep00001', 'web', 1, { state: 'exited' }), box('dep00000', 'web', 1, { hostPort: 41010 })], nginxApps: [] };
  const actions = plan(desired(), [r], observed, render);
  assert.deepEqual(brief(actions), reported);
  assert.deepEqual(actions[0], { type: 'skip-corrupt-release', app: 'shop', deploymentId: 'dep00001', reason: corrupt.message });
  assert.match(describeAction(actions[0]!), /leave shop release dep00001 as it is.*releases row shop is corrupt: column env_json/);
  // The same release, readable: its missing containers are started.
  assert.deepEqual(brief(plan(desired(), [release('dep00001', [web(), worker()])], { containers: [], nginxApps: [] }, render)), ['start web#1 from berth/shop:dep00001', 'start worker#1 from berth/shop:dep00001']);
});

test("a cluster app's certificate: planned on the manager for the site its upstream watcher routes, and only then", () => {
  const spec: ServerSpec = { ...desired(), cluster: { name: 'prod', role: 'manager' }, apps: desired().apps.map((a) => ({ ...a, cluster: 'prod' })) };
  const live: Release = { ...release('dep00001', [web(3)]), containerId: '', image: `reg:5000/berth/shop@sha256:${'ab'.repeat(32)}` };
  const site: AppSite = { domains: [DOMAIN], upstreamPort: 30001, upstreamServers: ['172.30.0.3:30001', '172.30.0.4:30002'] };
  const certs = (due: Record<string, string>, wanted: Record<string, string[]>): Observed['certs'] => ({ due: new Map(Object.entries(due)), wanted: new Map(Object.entries(wanted)) });
  const observed = (o: Partial<Observed>): Observed => ({ containers: [], nginxApps: [{ app: 'shop', content: 'routed by the watcher' }], ...o });
  const missing = certs({ shop: 'missing' }, {});

  // Issued for what the watcher routed: no container, no server block of the reconciler's own.
  assert.deepEqual(plan(spec, [live], observed({ certs: missing, clusterSites: new Map([['shop', site]]) }), render), [
    { type: 'ensure-cert', app: 'shop', domains: [DOMAIN], site, reason: 'certificate missing' },
  ]);
  // Nothing routed yet (or this server is no manager: no clusterSites), or the watcher has not caught
  // up with a domain change: the certificate waits, and nothing else is touched.
  assert.deepEqual(plan(spec, [live], observed({ certs: missing }), render), []);
  assert.deepEqual(plan(spec, [live], observed({ certs: missing, clusterSites: new Map() }), render), []);
  const twoDomains = { ...spec, apps: spec.apps.map((a) => ({ ...a, domains: [DOMAIN, `www.${DOMAIN}`] })) };
  assert.deepEqual(plan(twoDomains, [live], observed({ certs: certs({ shop: 'domains-changed' }, { shop: [DOMAIN] }), clusterSites: new Map([['shop', site]]) }), render), []);
  // Valid and the same domains: nothing to do; renewal due: renewed for the same site.
  assert.deepEqual(plan(spec, [live], observed({ certs: certs({}, { shop: [DOMAIN] }), clusterSites: new Map([['shop', site]]) }), render), []);
  assert.deepEqual(brief(plan(spec, [live], observed({ certs: certs({ shop: 'expiring' }, { shop: [DOMAIN] }), clusterSites: new Map([['shop', site]]) }), render)), ['ensure-cert']);
  // Its last domain removed: the watcher removed the server block (null), renewing stops.
  const noDomains = { ...spec, apps: spec.apps.map((a) => ({ ...a, domains: [] })) };
  assert.deepEqual(plan(noDomains, [live], observed({ certs: certs({}, { shop: [DOMAIN] }), clusterSites: new Map([['shop', null]]) }), render), [
    { type: 'ensure-cert', app: 'shop', domains: [], site: null, reason: 'nothing is served: stop renewing its certificate' },
  ]);
  // A domain added back while the watcher still has none routed: not known yet, nothing planned.
  assert.deepEqual(plan(spec, [live], observed({ certs: certs({ shop: 'missing' }, { shop: [] }), clusterSites: new Map([['shop', null]]) }), render), []);
  // HTTPS off (no certs observed): nothing, whatever is routed.
  assert.deepEqual(plan(spec, [live], observed({ clusterSites: new Map([['shop', site]]) }), render), []);
  // A deploy of it running: left alone.
  assert.deepEqual(plan(spec, [live], observed({ certs: missing, clusterSites: new Map([['shop', site]]) }), render, { busyApps: new Set(['shop']) }), []);
  // Removed from the desired state: its server block, release and certificate go.
  assert.deepEqual(brief(plan({ ...spec, apps: [] }, [live], observed({ certs: certs({}, { shop: [DOMAIN] }), clusterSites: new Map([['shop', site]]) }), render)), ['remove-nginx', 'forget-release', 'remove-cert']);
});

test('a static site on a cluster: served from the manager\'s disk, its server block and certificate reconciled like a standalone one', () => {
  const spec: ServerSpec = { ...desired(), cluster: { name: 'prod', role: 'manager' }, apps: desired().apps.map((a) => ({ ...a, cluster: 'prod' })) };
  const site: AppSite = { domains: [DOMAIN], staticRoot: '/var/lib/berth/static/shop/dep00002' };
  const live: Release = { ...release('dep00002', []), image: '', containerId: '', hostPort: 0, containerPort: null, staticRoot: site.staticRoot };
  const certs: Observed['certs'] = { due: new Map([['shop', 'missing']]), wanted: new Map() };
  // Whatever the watcher last routed (services of an earlier release) is not used for it.
  const clusterSites = new Map([['shop', { domains: [DOMAIN], upstreamPort: 30001, upstreamServers: ['172.30.0.3:30001'] }]]);
  assert.deepEqual(plan(spec, [live], { containers: [], nginxApps: [], certs, clusterSites }, render), [
    { type: 'write-nginx', app: 'shop', site, reason: 'server block is missing' },
    { type: 'ensure-cert', app: 'shop', domains: [DOMAIN], site, reason: 'certificate missing' },
  ]);
  assert.deepEqual(plan(spec, [live], { containers: [], nginxApps: [{ app: 'shop', content: render('shop', site) }] }, render), []);
});
