// The pure parts of a cluster deploy (agent/cluster/deploy/): the Swarm service spec of a process,
// the verdict on a new release's tasks (and the error it names), the upstream plan nginx is
// rendered from, and the rendering of a cluster upstream.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import pino from 'pino';
import type { AppSite } from '../../agent/nginx/index.js';
import { UpstreamWatcher } from '../../agent/cluster/deploy/upstreams.js';
import { checkSettings, renderSite } from '../../agent/nginx/render.js';
import { digestRef, registryAuth } from '../../agent/cluster/deploy/registry-push.js';
import { ClusterDeployError, serviceName, serviceSpec, type ServiceInput } from '../../agent/cluster/deploy/service-spec.js';
import { placementFor } from '../../agent/cluster/deploy/services.js';
import { classifyTasks, type SwarmNode, type SwarmTask } from '../../agent/cluster/deploy/task-state.js';
import { planUpstreams, serversOf } from '../../agent/cluster/deploy/upstream-plan.js';
import { keptDigests } from '../../agent/cluster/deploy/registry-retention.js';
import { plan } from '../../agent/reconcile/planner.js';
import type { Release } from '../../agent/store/releases.js';
import type { ServerSpec } from '../../shared/spec.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const input = (extra: Partial<ServiceInput> = {}): ServiceInput => ({
  app: 'shop',
  cluster: 'prod',
  deploymentId: 'mabc123def456',
  process: { name: 'web', command: null, scale: 3, memory: 256 * 1024 ** 2, cpus: 0.5 },
  imageRef: `10.0.0.2:5000/berth/shop@${DIGEST}`,
  env: { SECRET: 'v' },
  containerPort: 8000,
  network: 'berth-shop',
  placement: { kind: 'workers' },
  volumes: [],
  stopGraceS: 10,
  ...extra,
});

describe('cluster deploy: the service spec of a process', () => {
  it('web: by digest, dnsrr, host-mode port with no fixed published port, labels, limits, restart and log caps', () => {
    const s = serviceSpec(input());
    assert.equal(s.Name, 'berth-shop-web-mabc123def456');
    assert.deepEqual(s.Labels, { 'berth.managed': 'true', 'berth.app': 'shop', 'berth.process': 'web', 'berth.deployment': 'mabc123def456', 'berth.release': 'mabc123def456', 'berth.cluster': 'prod' });
    const t = s.TaskTemplate as any;
    assert.equal(t.ContainerSpec.Image, `10.0.0.2:5000/berth/shop@${DIGEST}`);
    assert.deepEqual(t.ContainerSpec.Env, ['SECRET=v', 'PORT=8000']);
    assert.equal(t.ContainerSpec.Labels['berth.managed'], undefined, 'task containers are never adopted by a standalone reconciler');
    assert.equal(t.ContainerSpec.Labels['berth.app'], 'shop');
    assert.equal(t.ContainerSpec.Args, undefined, "the image's own CMD");
    assert.deepEqual(t.Resources.Limits, { MemoryBytes: 256 * 1024 ** 2, NanoCPUs: 500_000_000 });
    assert.equal(t.RestartPolicy.Condition, 'on-failure');
    assert.ok(t.RestartPolicy.MaxAttempts > 0);
    assert.deepEqual(t.Placement.Constraints, ['node.role==worker']);
    assert.deepEqual(t.Networks, [{ Target: 'berth-shop', Aliases: ['web'] }], 'the process name is an alias of its tasks on the app network');
    assert.deepEqual(t.LogDriver, { Name: 'json-file', Options: { 'max-size': '10m', 'max-file': '3' } });
    assert.deepEqual(s.Mode, { Replicated: { Replicas: 3 } });
    assert.deepEqual(s.EndpointSpec, { Mode: 'dnsrr', Ports: [{ Protocol: 'tcp', TargetPort: 8000, PublishMode: 'host' }] });
    assert.equal(JSON.stringify(s).includes('PublishedPort'), false);
  });

  it('a worker: its command keeps the entrypoint, no port, no PORT; any node when there are no workers', () => {
    const s = serviceSpec(input({ process: { name: 'worker', command: 'node jobs.js', scale: 2 }, placement: { kind: 'any' } }));
    const t = s.TaskTemplate as any;
    assert.equal(s.Name, 'berth-shop-worker-mabc123def456');
    assert.deepEqual(t.ContainerSpec.Args, ['/bin/sh', '-c', 'node jobs.js']);
    assert.deepEqual(t.ContainerSpec.Env, ['SECRET=v']);
    assert.deepEqual(t.Placement.Constraints, []);
    assert.deepEqual(t.Resources.Limits, {});
    assert.deepEqual(s.EndpointSpec, { Mode: 'dnsrr' });
  });

  it('a process with volumes: pinned to one node, and refused at scale > 1 with a clear error', () => {
    const volumes = [{ Type: 'volume' as const, Source: 'berth-shop-data', Target: '/data' }];
    const s = serviceSpec(input({ process: { name: 'web', command: null, scale: 1 }, volumes, placement: { kind: 'node', nodeId: 'n1' } }));
    assert.deepEqual((s.TaskTemplate as any).Placement.Constraints, ['node.id==n1']);
    assert.deepEqual((s.TaskTemplate as any).ContainerSpec.Mounts, volumes);
    assert.throws(() => serviceSpec(input({ volumes })), (e: unknown) => e instanceof ClusterDeployError && /has volumes and scale 3/.test(e.message));
  });

  it('names stay within 63 characters; placement follows the ready, active workers', () => {
    const long = serviceName('a'.repeat(40), 'b'.repeat(30), 'mabc123def456');
    assert.ok(long.length <= 63 && long.endsWith('mabc123def456'));
    assert.notEqual(long, serviceName('a'.repeat(40), 'c'.repeat(30), 'mabc123def456'));
    const node = (ID: string, Role: string, State: string, Availability = 'active'): SwarmNode => ({ ID, Spec: { Role, Availability }, Status: { State } });
    assert.deepEqual(placementFor([node('m', 'manager', 'ready'), node('w', 'worker', 'ready')], false, 'm'), { kind: 'workers' });
    assert.deepEqual(placementFor([node('m', 'manager', 'ready'), node('w', 'worker', 'down'), node('x', 'worker', 'ready', 'drain')], false, 'm'), { kind: 'any' });
    assert.deepEqual(placementFor([node('m', 'manager', 'ready'), node('w', 'worker', 'ready')], true, 'm'), { kind: 'node', nodeId: 'm' });
  });

  it('the registry: credentials only as an auth config, images only by a well-formed digest', () => {
    assert.deepEqual(registryAuth({ address: 'reg:5000', username: 'u', password: 'p' }), { username: 'u', password: 'p', serveraddress: 'reg:5000' });
    assert.equal(registryAuth({ address: 'reg:5000' }), undefined);
    assert.equal(digestRef({ address: 'reg:5000' }, 'shop', DIGEST), `reg:5000/berth/shop@${DIGEST}`);
    assert.throws(() => digestRef({ address: 'reg:5000' }, 'shop', 'latest'), ClusterDeployError);
  });
});

const nodes: SwarmNode[] = [
  { ID: 'n1', Description: { Hostname: 'web1' }, Spec: { Role: 'manager' }, Status: { State: 'ready', Addr: '0.0.0.0' }, ManagerStatus: { Addr: '172.30.0.2:2377' } },
  { ID: 'n2', Description: { Hostname: 'ip-172-30-0-3' }, Spec: { Role: 'worker', Labels: { 'berth.server': 'web2' } }, Status: { State: 'ready', Addr: '172.30.0.3' } },
  { ID: 'n3', Description: { Hostname: 'web3' }, Spec: { Role: 'worker' }, Status: { State: 'down', Addr: '172.30.0.4' } },
];
const task = (ID: string, NodeID: string, State: string, extra: Partial<SwarmTask> & { port?: number; err?: string } = {}): SwarmTask => ({
  ID,
  ServiceID: extra.ServiceID ?? 's1',
  NodeID,
  Slot: extra.Slot ?? 1,
  DesiredState: extra.DesiredState ?? 'running',
  Status: { State, ...(extra.err ? { Err: extra.err } : {}), ...(extra.port ? { PortStatus: { Ports: [{ TargetPort: 8000, PublishedPort: extra.port, PublishMode: 'host' }] } } : {}) },
});

describe('cluster deploy: the verdict on the new tasks', () => {
  const web = [{ id: 's1', process: 'web', replicas: 2 }];
  it('waiting until every desired task runs, then the running tasks', () => {
    assert.deepEqual(classifyTasks(web, [task('t1', 'n2', 'running'), task('t2', 'n1', 'preparing', { Slot: 2 })], nodes), { state: 'waiting', detail: 'web 1/2 running' });
    const v = classifyTasks(web, [task('t1', 'n2', 'running'), task('t2', 'n1', 'running', { Slot: 2 })], nodes);
    assert.equal(v.state, 'running');
    assert.deepEqual(v.state === 'running' && v.tasks.map((t) => t.ID), ['t1', 't2']);
  });
  it('fails fast on a rejected task, naming the task, its node and the engine error', () => {
    const v = classifyTasks(web, [task('t1', 'n2', 'running'), task('t2', 'n2', 'rejected', { Slot: 2, err: 'No such image: reg:5000/berth/shop@sha256:…' })], nodes);
    assert.deepEqual(v, { state: 'failed', error: 'task web.2 on web2 rejected: No such image: reg:5000/berth/shop@sha256:…' });
  });
  it('a task that cannot be placed, or that exits, is a failure too', () => {
    const pending = classifyTasks(web, [task('t1', '', 'pending', { err: 'no suitable node (scheduling constraints not satisfied on 3 nodes)' })], nodes);
    assert.deepEqual(pending, { state: 'failed', error: 'task web.1 cannot be placed: no suitable node (scheduling constraints not satisfied on 3 nodes)' });
    const failed = classifyTasks(web, [task('t1', 'n1', 'failed', { err: 'task: non-zero exit (1)' })], nodes);
    assert.deepEqual(failed, { state: 'failed', error: 'task web.1 on web1 failed: task: non-zero exit (1)' });
    const exited = classifyTasks(web, [task('t1', 'n2', 'complete')], nodes);
    assert.equal(exited.state === 'failed' && exited.error, 'task web.1 on web2 exited (complete)');
  });
  it('a pending task waiting for a node to pull is not a failure; other services are judged too', () => {
    const two = [...web, { id: 's2', process: 'worker', replicas: 1 }];
    const v = classifyTasks(two, [task('t1', 'n2', 'running'), task('t2', 'n1', 'running', { Slot: 2 }), task('t3', 'n2', 'pending', { ServiceID: 's2' })], nodes);
    assert.deepEqual(v, { state: 'waiting', detail: 'worker 0/1 running' });
  });
});

describe('cluster deploy: the upstream plan', () => {
  it('running web tasks on ready nodes, at the node address and published port, sorted', () => {
    const plan = planUpstreams(
      [
        task('a', 'n2', 'running', { port: 30002 }),
        task('b', 'n1', 'running', { port: 30001 }),
        task('c', 'n3', 'running', { port: 30003 }), // its node is down
        task('d', 'n2', 'starting', { port: 30004 }),
        task('e', 'n2', 'running', { port: 30005, DesiredState: 'shutdown' }),
        task('f', 'n2', 'running'), // no published port yet
      ],
      nodes,
      8000,
    );
    assert.deepEqual(plan, [
      { taskId: 'b', nodeId: 'n1', node: 'web1', server: '172.30.0.2:30001' },
      { taskId: 'a', nodeId: 'n2', node: 'web2', server: '172.30.0.3:30002' },
    ]);
    assert.deepEqual(serversOf(plan), ['172.30.0.2:30001', '172.30.0.3:30002']);
  });

  it('nginx renders the task addresses as the upstream servers, and refuses anything else', () => {
    const s = checkSettings({ prefix: '/srv/berth-nginx', httpPort: 8080 });
    const { content } = renderSite(s, 'shop', { domains: ['shop.example.com'], upstreamPort: 30001, upstreamServers: ['172.30.0.2:30001', '172.30.0.3:30002'] });
    assert.match(content, /upstream berth_app_shop \{\n {4}server 172\.30\.0\.2:30001;\n {4}server 172\.30\.0\.3:30002;\n {4}keepalive 32;\n\}/);
    assert.doesNotMatch(content, /127\.0\.0\.1/);
    for (const bad of ['172.30.0.2:30001; evil', '172.30.0.2', 'host:99999', '1.2.3.4:0']) {
      assert.throws(() => renderSite(s, 'shop', { domains: ['shop.example.com'], upstreamPort: 1, upstreamServers: [bad] }), /invalid upstream server/);
    }
  });
});

describe('cluster deploy: the standalone reconciler leaves a cluster app alone', () => {
  it('a live cluster release with no local containers: nothing started, nginx not touched', () => {
    const desired: ServerSpec = {
      server: 'web1',
      revision: 3,
      apps: [{ name: 'shop', repo: 'https://example.com/x.git', branch: 'main', domains: ['shop.example.com'], env: {}, cluster: 'prod' }],
    };
    const live: Release = { app: 'shop', deploymentId: 'd1', image: `reg:5000/berth/shop@${DIGEST}`, containerId: '', hostPort: 30001, containerPort: 8000, commit: 'abc', activatedAt: '2026-01-01T00:00:00.000Z', processes: [{ name: 'web', command: null, scale: 3 }] };
    const observed = { containers: [], nginxApps: [{ app: 'shop', content: 'upstream … server 172.30.0.3:30001;' }] };
    assert.deepEqual(plan(desired, [live], observed, () => 'other'), []);
    // The same app standalone would be started again: the skip is what keeps the cluster's tasks the only ones.
    const standalone = { ...desired, apps: desired.apps.map(({ cluster: _c, ...a }) => a) };
    assert.ok(plan(standalone, [live], observed, () => 'other').some((a) => a.type === 'start-release-container'));
  });
});

describe('cluster deploy: the upstream watcher', () => {
  /** A swarm as the watcher sees it: one live web service whose tasks and nodes the test changes. */
  async function setup() {
    const listeners = await Promise.all([0, 1].map(() => new Promise<Server>((resolve) => {
      const srv = createServer((s) => s.end());
      srv.listen(0, '127.0.0.1', () => resolve(srv));
    })));
    const ports = listeners.map((l) => (l.address() as AddressInfo).port);
    const state = {
      nodes: [
        { ID: 'n1', Description: { Hostname: 'web1' }, Spec: { Role: 'manager' }, Status: { State: 'ready', Addr: '127.0.0.1' } },
        { ID: 'n2', Description: { Hostname: 'web2' }, Spec: { Role: 'worker' }, Status: { State: 'ready', Addr: '127.0.0.2' } },
      ] as SwarmNode[],
      tasks: [task('a', 'n1', 'running', { port: ports[0] }), task('b', 'n2', 'running', { port: ports[1] })],
      domains: ['shop.example.com'],
      busy: new Set<string>(),
    };
    const docker = {
      listServices: async () => [{ ID: 's1', Spec: { Name: 'berth-shop-web-d1', Labels: { 'berth.managed': 'true', 'berth.app': 'shop', 'berth.process': 'web', 'berth.release': 'd1' } } }],
      listTasks: async () => state.tasks,
      listNodes: async () => state.nodes,
    };
    const applied: Array<AppSite | null> = [];
    const routedCalls: string[] = [];
    const live = { app: 'shop', deploymentId: 'd1', containerPort: 8000 } as Release;
    const watcher = new UpstreamWatcher({
      docker: docker as never,
      nginx: { applyApp: async (_app, site) => void applied.push(site) },
      store: { releases: { get: (app: string) => (app === 'shop' ? live : null) } } as never,
      logger: pino({ level: 'silent' }),
      desired: () => ({ server: 'web1', revision: 1, cluster: { name: 'prod', role: 'manager' }, apps: [{ name: 'shop', repo: 'https://example.com/x.git', branch: 'main', domains: state.domains, env: {}, cluster: 'prod' }] }),
      busyApps: () => state.busy,
      onRouted: (app) => void routedCalls.push(app),
    });
    const close = () => Promise.all([watcher.close(), ...listeners.map((l) => new Promise((r) => l.close(r)))]);
    return { state, applied, watcher, ports, close, routedCalls, live };
  }

  it('renders the running tasks once, follows a node going down, a domain change, and leaves a deploying app alone', async () => {
    const { state, applied, watcher, ports, close } = await setup();
    try {
      // 127.0.0.2:PORT accepts nothing here: a new task must answer before it is routed.
      await watcher.tick();
      assert.deepEqual(applied.map((s) => s?.upstreamServers), [[`127.0.0.1:${ports[0]}`]]);
      await watcher.tick();
      assert.equal(applied.length, 1, 'an unchanged set is not rendered again');
      state.nodes[1] = { ...state.nodes[1]!, Status: { State: 'ready', Addr: '127.0.0.1' } };
      await watcher.tick();
      assert.deepEqual(applied.at(-1)?.upstreamServers, [`127.0.0.1:${ports[0]}`, `127.0.0.1:${ports[1]}`].sort(), 'sorted, as the planner renders them');
      state.nodes[1] = { ...state.nodes[1]!, Status: { State: 'down', Addr: '127.0.0.1' } };
      await watcher.tick();
      assert.deepEqual(applied.at(-1)?.upstreamServers, [`127.0.0.1:${ports[0]}`], "a down node's task leaves the upstream");
      state.domains = ['shop.example.com', 'www.shop.example.com'];
      await watcher.tick();
      assert.deepEqual(applied.at(-1)?.domains, ['shop.example.com', 'www.shop.example.com']);
      const count = applied.length;
      state.busy.add('shop');
      state.nodes[1] = { ...state.nodes[1]!, Status: { State: 'ready', Addr: '127.0.0.1' } };
      await watcher.tick();
      assert.equal(applied.length, count, 'a deploy of the app moves nginx itself');
      state.busy.clear();
      state.tasks = [];
      await watcher.tick();
      assert.equal(applied.length, count, 'with no task answering nginx keeps its upstream');
    } finally {
      await close();
    }
  });
  it("exposes the site it last routed per app (what the app's certificate is planned for) and says when it routed", async () => {
    const { state, applied, watcher, ports, close, routedCalls, live } = await setup();
    try {
      assert.deepEqual(watcher.sites(), new Map(), 'nothing routed yet: not known');
      await watcher.tick();
      assert.deepEqual(watcher.sites(), new Map([['shop', { domains: ['shop.example.com'], upstreamPort: ports[0], upstreamServers: [`127.0.0.1:${ports[0]}`] }]]));
      assert.deepEqual(watcher.sites().get('shop'), applied.at(-1), 'exactly what nginx was given');
      assert.deepEqual(routedCalls, ['shop']);
      await watcher.tick();
      assert.deepEqual(routedCalls, ['shop'], 'not again while nothing changes');
      state.busy.add('shop');
      await watcher.tick();
      assert.equal(watcher.sites().has('shop'), false, 'a deploy of the app moves nginx: not known until the watcher routes it again');
      state.busy.clear();
      state.domains = [];
      await watcher.tick();
      assert.deepEqual(watcher.sites(), new Map([['shop', null]]), 'no domains: no server block');
      assert.deepEqual(routedCalls, ['shop', 'shop']);
      // A static release (no web port: served from disk, routed by the reconcile pass): not the watcher's.
      state.domains = ['shop.example.com'];
      live.containerPort = null;
      const count = applied.length;
      await watcher.tick();
      assert.equal(watcher.sites().has('shop'), false);
      assert.equal(applied.length, count, 'nginx is not touched');
    } finally {
      await close();
    }
  });
});

describe('cluster registry retention: which digests stay', () => {
  it("keeps only the app's own digests in this registry, once each", () => {
    const d = (n: number) => `sha256:${String(n).repeat(64)}`;
    const images = [`10.0.0.2:5000/berth/shop@${d(1)}`, `10.0.0.2:5000/berth/shop@${d(1)}`, `10.0.0.2:5000/berth/shopfront@${d(2)}`, `other:5000/berth/shop@${d(3)}`, `berth/shop:abc`, ''];
    assert.deepEqual(keptDigests(images, '10.0.0.2:5000', 'shop'), [d(1)]);
    assert.deepEqual(keptDigests([], '10.0.0.2:5000', 'shop'), []);
  });
});
