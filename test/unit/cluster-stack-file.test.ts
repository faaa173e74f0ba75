// stack.yml of a cluster app (agent/cluster/deploy/stack-file.ts): rendered from the Swarm service
// specs a deploy created, in Compose v3 syntax, with the env only in stack.env.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { serviceSpec, type ServiceInput } from '../../agent/cluster/deploy/service-spec.js';
import { renderStack, renderStackEnv, stackDocument, writeStackFiles, type StackRelease } from '../../agent/cluster/deploy/stack-file.js';

const IMAGE = `10.0.0.2:5000/berth/shop@sha256:${'ab'.repeat(32)}`;
const ENV = { SECRET: 's3cr3t-value', PRICE: 'costs $5' };
const input = (extra: Partial<ServiceInput> = {}): ServiceInput => ({
  app: 'shop',
  cluster: 'prod',
  deploymentId: 'mabc123def456',
  process: { name: 'web', command: null, scale: 3, memory: 256 * 1024 ** 2, cpus: 0.5 },
  imageRef: IMAGE,
  env: ENV,
  containerPort: 8000,
  network: 'berth-shop',
  placement: { kind: 'workers' },
  volumes: [],
  stopGraceS: 10,
  ...extra,
});
const release = (env: Record<string, string> = ENV): StackRelease => ({
  app: 'shop',
  cluster: 'prod',
  deploymentId: 'mabc123def456',
  commit: 'abcdef1234567',
  env,
  services: [
    serviceSpec(input()),
    serviceSpec(
      input({
        process: { name: 'worker', command: 'node jobs.js --cost $1', scale: 1 },
        placement: { kind: 'node', nodeId: 'n1' },
        volumes: [{ Type: 'volume', Source: 'berth-shop_data', Target: '/data' }],
      }),
    ),
  ],
});

describe('cluster stack.yml', () => {
  it('one compose service per process: digest image, replicas, placement, limits, restart, dnsrr, host-mode port, log caps, network, labels', () => {
    const doc = stackDocument(release()) as any;
    assert.equal(doc.version, '3.8');
    assert.deepEqual(Object.keys(doc.services), ['web', 'worker']);
    const web = doc.services.web;
    assert.equal(web.image, IMAGE);
    assert.deepEqual(web.env_file, ['stack.env']);
    assert.deepEqual(web.environment, { PORT: '8000' }, 'only what berth adds: the app env is in the env file');
    assert.equal(web.init, true);
    assert.equal(web.stop_grace_period, '10s');
    assert.deepEqual(web.deploy, {
      mode: 'replicated',
      replicas: 3,
      endpoint_mode: 'dnsrr',
      labels: { 'berth.managed': 'true', 'berth.app': 'shop', 'berth.process': 'web', 'berth.deployment': 'mabc123def456', 'berth.release': 'mabc123def456', 'berth.cluster': 'prod' },
      placement: { constraints: ['node.role==worker'] },
      resources: { limits: { cpus: '0.5', memory: `${256 * 1024 ** 2}b` } },
      restart_policy: { condition: 'on-failure', delay: '2s', max_attempts: 3 },
    });
    assert.equal(web.labels['berth.app'], 'shop');
    assert.deepEqual(web.ports, [{ target: 8000, protocol: 'tcp', mode: 'host' }]);
    assert.deepEqual(web.networks, { 'berth-shop': { aliases: ['web'] } });
    assert.deepEqual(web.logging, { driver: 'json-file', options: { 'max-size': '10m', 'max-file': '3' } });
    assert.equal(web.command, undefined, "the image's CMD");

    const worker = doc.services.worker;
    assert.deepEqual(worker.command, ['/bin/sh', '-c', 'node jobs.js --cost $$1'], 'a literal $ survives compose interpolation');
    assert.equal(worker.environment, undefined);
    assert.equal(worker.ports, undefined);
    assert.deepEqual(worker.deploy.placement, { constraints: ['node.id==n1'] });
    assert.equal(worker.deploy.resources, undefined);
    assert.deepEqual(worker.volumes, [{ type: 'volume', source: 'berth-shop_data', target: '/data' }]);
    assert.deepEqual(doc.networks, { 'berth-shop': { external: true } });
    assert.deepEqual(doc.volumes, { 'berth-shop_data': { external: true } });
    assert.deepEqual(doc['x-berth'], { app: 'shop', cluster: 'prod', deployment: 'mabc123def456', commit: 'abcdef1234567' });
  });

  it('the rendered file parses back to the same document and holds no env value', () => {
    const text = renderStack(release());
    assert.deepEqual(parse(text), stackDocument(release()));
    assert.doesNotMatch(text, /s3cr3t-value|costs/);
    assert.match(text, /^# Elsewhere: docker stack deploy -c stack\.yml shop/m);
  });

  it('stack.env is the docker CLI env-file format; a value with a line break is left out and named', () => {
    assert.deepEqual(renderStackEnv({ B: "it's = \"x\"", A: '  spaced ', C: 'two\nlines' }), { text: `A=  spaced \nB=it's = "x"\n`, omitted: ['C'] });
    assert.match(renderStack(release(), ['C']), /^# Not in stack\.env \(a value with a line break cannot be written there\): C\.$/m);
  });

  it('writes stack.env then stack.yml, both 0600, in a 0700 directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-stack-'));
    try {
      const { stackFile, envFile } = await writeStackFiles(dir, release({ ...ENV, MULTI: 'a\nb' }));
      assert.equal(statSync(stackFile).mode & 0o777, 0o600);
      assert.equal(statSync(envFile).mode & 0o777, 0o600);
      assert.equal(statSync(join(dir, 'apps', 'shop')).mode & 0o777, 0o700);
      assert.equal(readFileSync(envFile, 'utf8'), 'PRICE=costs $5\nSECRET=s3cr3t-value\n');
      assert.match(readFileSync(stackFile, 'utf8'), /: MULTI\.$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
