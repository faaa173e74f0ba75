// The one container-spec builder, through each call site's own assembly: web and worker process
// containers, one-off runs (release and build command), cron runs and the throwaway container a
// static site is copied out of. Pure: no Docker needed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { containerCreateOptions, ContainerSpecError } from '../../agent/docker/container-spec.js';
import { processCreateOptions } from '../../agent/docker/containers.js';
import { berthLabels } from '../../agent/docker/labels.js';
import { oneOffCreateOptions } from '../../agent/docker/one-off.js';
import { cronLimits, cronRunOptions, type JobTarget } from '../../agent/cron/run-job.js';

const MB = 1024 * 1024;
const volume = { Type: 'volume' as const, Source: 'berth-shop_data', Target: '/data' };

describe('container spec: process containers', () => {
  it('web: PORT, published on loopback only, restart unless-stopped, 10m x 3 logs, its caps, labels with process, replica and server', () => {
    const o = processCreateOptions(
      { app: 'shop', deploymentId: 'd1', image: 'berth/shop:d1', env: { GREETING: 'hi' }, process: 'web', server: 's1', command: 'run web', volumes: [volume], limits: { memory: 128 * MB, cpus: 0.5 } },
      8000,
      45123,
    );
    assert.equal(o.name, 'berth-shop-web-d1');
    assert.equal(o.Image, 'berth/shop:d1');
    assert.deepEqual(o.Cmd, ['/bin/sh', '-c', 'run web']);
    assert.deepEqual(o.Env, ['GREETING=hi', 'PORT=8000']);
    assert.deepEqual(o.Labels, { 'berth.managed': 'true', 'berth.app': 'shop', 'berth.deployment': 'd1', 'berth.process': 'web', 'berth.replica': '1', 'berth.server': 's1' });
    assert.deepEqual(o.ExposedPorts, { '8000/tcp': {} });
    const h = o.HostConfig!;
    assert.deepEqual(h.PortBindings, { '8000/tcp': [{ HostIp: '127.0.0.1', HostPort: '45123' }] });
    assert.deepEqual(h.RestartPolicy, { Name: 'unless-stopped', MaximumRetryCount: 0 });
    assert.deepEqual(h.LogConfig, { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '3' } });
    assert.equal(h.Init, true);
    assert.deepEqual(h.Mounts, [volume]);
    assert.equal(h.Memory, 128 * MB);
    assert.equal(h.MemorySwap, 128 * MB, 'no swap on top of the cap');
    assert.equal(h.NanoCpus, 0.5e9);
    assert.equal(o.AttachStdout, undefined);
  });

  it('worker: no PORT and no port, the image CMD when it has no command, no caps when none are set', () => {
    const o = processCreateOptions({ app: 'shop', deploymentId: 'd1', image: 'img', env: {}, process: 'worker', replica: 2, command: null }, 8000, 45123);
    assert.equal(o.name, 'berth-shop-worker-d1-2');
    assert.equal(o.Cmd, undefined);
    assert.equal(o.Env, undefined);
    assert.equal(o.ExposedPorts, undefined);
    assert.equal(o.Labels!['berth.replica'], '2');
    assert.equal(o.Labels!['berth.server'], undefined);
    const h = o.HostConfig!;
    assert.equal(h.PortBindings, undefined);
    assert.equal(h.RestartPolicy?.Name, 'unless-stopped');
    assert.equal(h.Memory, undefined);
    assert.equal(h.NanoCpus, undefined);
    assert.equal(h.Mounts, undefined);
  });
});

describe('container spec: one-off and cron runs', () => {
  it('one-off: never restarted, one 10m log file, attached, read-only binds before the volumes, its caps and entrypoint', () => {
    const labels = berthLabels('shop', 'd1', { 'berth.process': 'release', 'berth.commit': 'abc1234' });
    const o = oneOffCreateOptions({
      name: 'berth-shop-release-d1',
      image: 'img',
      cmd: ['-c', 'migrate'],
      entrypoint: ['/bin/sh'],
      env: { A: '1' },
      labels,
      mounts: [{ source: '/tmp/x.env', target: '/run/x.env' }],
      volumes: [volume],
      limits: { memory: 512 * MB, cpus: 1 },
      log: () => {},
      timeoutMs: 1000,
    });
    assert.equal(o.name, 'berth-shop-release-d1');
    assert.deepEqual(o.Entrypoint, ['/bin/sh']);
    assert.deepEqual(o.Cmd, ['-c', 'migrate']);
    assert.deepEqual(o.Env, ['A=1']);
    assert.deepEqual(o.Labels, labels);
    assert.equal(o.AttachStdout, true);
    assert.equal(o.AttachStderr, true);
    const h = o.HostConfig!;
    assert.equal(h.RestartPolicy, undefined, 'a one-off run is never restarted');
    assert.deepEqual(h.LogConfig, { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '1' } });
    assert.equal(h.Init, true);
    assert.deepEqual(h.Mounts, [{ Type: 'bind', Source: '/tmp/x.env', Target: '/run/x.env', ReadOnly: true }, volume]);
    assert.equal(h.Memory, 512 * MB);
    assert.equal(h.NanoCpus, 1e9);
    assert.equal(h.PortBindings, undefined);
  });

  const target = (limits: JobTarget['limits']): JobTarget => ({
    release: { app: 'shop', deploymentId: 'd7', image: 'berth/shop:d7', containerId: '', hostPort: 0, containerPort: null, commit: null, activatedAt: '2024-01-01T00:00:00.000Z' },
    job: { schedule: '* * * * *', command: 'echo tick', timezone: null, timeoutS: 60 },
    env: { SECRET: 's' },
    volumes: { data: { target: '/data' } },
    limits,
  });

  it("cron: the release's image, env and volumes, labelled berth.cron, never restarted, one 10m log file, the build's caps", () => {
    const o = cronRunOptions({ name: 'berth-shop-cron-tick-r1', app: 'shop', job: 'tick', server: 's1', target: target({ memory: 64 * MB, cpus: 0.25 }) });
    assert.equal(o.name, 'berth-shop-cron-tick-r1');
    assert.equal(o.Image, 'berth/shop:d7');
    assert.deepEqual(o.Cmd, ['/bin/sh', '-c', 'echo tick']);
    assert.equal(o.Entrypoint, undefined, "the image's entrypoint stays");
    assert.deepEqual(o.Env, ['SECRET=s']);
    assert.deepEqual(o.Labels, { 'berth.managed': 'true', 'berth.app': 'shop', 'berth.deployment': 'd7', 'berth.cron': 'tick', 'berth.server': 's1' });
    assert.equal(o.AttachStdout, undefined);
    const h = o.HostConfig!;
    assert.equal(h.RestartPolicy, undefined);
    assert.deepEqual(h.LogConfig, { Type: 'json-file', Config: { 'max-size': '10m', 'max-file': '1' } });
    assert.deepEqual(h.Mounts, [volume]);
    assert.equal(h.Memory, 64 * MB);
    assert.equal(h.MemorySwap, 64 * MB);
    assert.equal(h.NanoCpus, 0.25e9);
    const uncapped = cronRunOptions({ name: 'n', app: 'shop', job: 'tick', server: '', target: target({ memory: null, cpus: null }) });
    assert.equal(uncapped.HostConfig!.Memory, undefined);
    assert.equal(uncapped.Labels!['berth.server'], undefined);
  });

  it("cron caps: the app config's build caps, else the server default; stored garbage is ignored", () => {
    const defaults = { memory: 2048 * MB, cpus: 1.5 };
    assert.deepEqual(cronLimits({ build: { memory: 64 * MB, cpus: null } }, defaults), { memory: 64 * MB, cpus: 1.5 });
    assert.deepEqual(cronLimits({ build: { memory: null, cpus: 0.5 } }, defaults), { memory: 2048 * MB, cpus: 0.5 });
    assert.deepEqual(cronLimits({ build: { memory: '64m', cpus: -1 } }, defaults), defaults);
    assert.deepEqual(cronLimits(null, defaults), defaults, 'a release from before caps');
    assert.deepEqual(cronLimits({ build: { memory: 64 * MB } }, undefined), { memory: 64 * MB, cpus: null });
    assert.deepEqual(cronLimits(undefined, undefined), { memory: null, cpus: null });
  });
});

describe('container spec: inert containers and labels', () => {
  it('a created-never-started container (static site files are copied out of it) gets nothing about running', () => {
    const labels = berthLabels('site', 'd2', { 'berth.process': 'static' });
    assert.deepEqual(containerCreateOptions({ kind: 'inert', image: 'berth/site:d2', cmd: ['true'], labels }), { Image: 'berth/site:d2', Cmd: ['true'], Labels: labels });
  });

  it('refuses a container without berth.managed=true: nothing berth creates escapes its own listing and clean-up', () => {
    assert.throws(() => containerCreateOptions({ kind: 'job', name: 'x', image: 'img', labels: { 'berth.app': 'shop' } }), ContainerSpecError);
    assert.throws(() => containerCreateOptions({ kind: 'inert', image: 'img', labels: { 'berth.managed': 'false' } }), ContainerSpecError);
  });
});
