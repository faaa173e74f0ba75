// The reconcile planner on a cluster's manager: a removed cluster app's Swarm services and overlay
// network go (after nginx stops routing to it), and nothing else of the swarm is ever acted on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeAction, plan, type Action, type Observed } from '../../agent/reconcile/planner.js';
import type { AppSite } from '../../agent/nginx/index.js';
import type { Release } from '../../agent/store/releases.js';
import type { ServerSpec } from '../../shared/spec.js';

const render = (app: string, site: AppSite) => `server ${app} [${site.domains.join(' ')}] -> ${(site.upstreamServers ?? []).join(',')}\n`;
const desired = (apps: string[]): ServerSpec => ({
  server: 'web1',
  revision: 7,
  apps: apps.map((name) => ({ name, repo: 'https://example.com/x.git', branch: 'main', domains: [`${name}.example.com`], env: {}, cluster: 'prod' })),
  cluster: { name: 'prod', role: 'manager' },
});
const release = (app: string): Release => ({
  app,
  deploymentId: 'dep00002',
  image: `10.0.0.2:5000/berth/${app}@sha256:${'ab'.repeat(32)}`,
  containerId: '',
  hostPort: 30001,
  containerPort: 8000,
  commit: 'abcdef1',
  activatedAt: '2024-01-01T00:00:00.000Z',
});
/** Two cluster apps, shop and blog, each with a service of two releases (one draining) and its network. */
const observed = (): Observed => ({
  containers: [],
  nginxApps: [
    { app: 'shop', content: 'server shop' },
    { app: 'blog', content: 'server blog' },
  ],
  appFiles: ['shop', 'blog'],
  services: [
    { id: 'svc-shop-1', name: 'berth-shop-web-dep00001', app: 'shop' },
    { id: 'svc-shop-2', name: 'berth-shop-web-dep00002', app: 'shop' },
    { id: 'svc-blog-2', name: 'berth-blog-web-dep00002', app: 'blog' },
  ],
  networks: [
    { id: 'net-shop', name: 'berth-shop', app: 'shop' },
    { id: 'net-blog', name: 'berth-blog', app: 'blog' },
  ],
});
const brief = (actions: Action[]) => actions.map((a) => `${a.type}:${a.app}${'serviceId' in a ? `:${a.serviceId}` : ''}${'networkId' in a ? `:${a.networkId}` : ''}`);

test('a removed cluster app: nginx first, then every service of it, then its network, then its release and files', () => {
  const actions = plan(desired(['blog']), [release('shop'), release('blog')], observed(), render);
  assert.deepEqual(brief(actions), [
    'remove-nginx:shop',
    'remove-service:shop:svc-shop-1',
    'remove-service:shop:svc-shop-2',
    'remove-network:shop:net-shop',
    'forget-release:shop',
    'remove-app-files:shop',
  ]);
  assert.equal(describeAction(actions[1]!), 'remove service berth-shop-web-dep00001 of shop (app is no longer in the desired state)');
  assert.equal(describeAction(actions[3]!), 'remove network berth-shop of shop (app is no longer in the desired state)');
});

test("a cluster app still in the desired state: its services and network are left to its deploys and the upstream watcher", () => {
  assert.deepEqual(plan(desired(['shop', 'blog']), [release('shop'), release('blog')], observed(), render), []);
});

test('a removed app whose deploy still runs or drains is left alone; with no desired state nothing is touched', () => {
  assert.deepEqual(brief(plan(desired(['blog']), [release('shop'), release('blog')], observed(), render, { busyApps: new Set(['shop']) })), []);
  assert.deepEqual(plan(null, [release('shop')], observed(), render), []);
});

test('a service or network left without any other trace of its app (e.g. after the agent lost its store) still goes', () => {
  const o: Observed = { containers: [], nginxApps: [], services: [{ id: 'svc-old', name: 'berth-old-web-dep00001', app: 'old' }], networks: [{ id: 'net-old', name: 'berth-old', app: 'old' }] };
  assert.deepEqual(brief(plan(desired([]), [], o, render)), ['remove-service:old:svc-old', 'remove-network:old:net-old']);
});
