// The agent's dockerode (agent/docker/client.ts): ssh2 and the BuildKit session module (gRPC) are not
// loaded at start, the local socket works, and both load for real on first use.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import Docker from '../agent/docker/client.js';
import { makeTmpDir } from './helpers/tmp.js';

const require = createRequire(import.meta.url);
const loaded = (pkg: string) => Object.keys(require.cache).some((k) => k.includes(`/node_modules/${pkg}/`) && !k.endsWith('/ssh2/lib/index.js'));

describe('agent docker client', () => {
  it('talks to the local engine without loading ssh2 or gRPC', async () => {
    const docker = new Docker({ socketPath: process.env.DOCKER_SOCKET ?? '/var/run/docker.sock' });
    assert.equal(String(await docker.ping()), 'OK');
    await docker.listContainers({ limit: 1 });
    assert.equal(loaded('ssh2'), false, 'ssh2 was loaded');
    assert.equal(loaded('@grpc/grpc-js'), false, 'gRPC was loaded');
  });

  it('puts tar-fs and dockerignore (dockerode build helpers) behind stand-ins that work like the real modules', async () => {
    assert.equal(loaded('tar-stream'), false, 'tar-fs was loaded for real (its tar-stream is there)');
    // What berth's own code imports (agent/build/image.ts, static-site.ts) goes through the same cache entry.
    const tar = (await import('tar-fs')).default;
    const dockerignore = (await import('@balena/dockerignore')).default;
    const root = makeTmpDir('docker-client-tar');
    mkdirSync(join(root, 'in'));
    writeFileSync(join(root, 'in', 'keep.txt'), 'kept\n');
    writeFileSync(join(root, 'in', 'skip.log'), 'skipped\n');
    const rules = dockerignore.default({ ignorecase: false }).add('*.log');
    await pipeline(tar.pack(join(root, 'in'), { ignore: (name: string) => rules.ignores(name.slice(join(root, 'in').length + 1)) }), tar.extract(join(root, 'out')));
    assert.equal(readFileSync(join(root, 'out', 'keep.txt'), 'utf8'), 'kept\n');
    assert.throws(() => readFileSync(join(root, 'out', 'skip.log')), /ENOENT/);
    // dockerode's own call: the factory itself.
    assert.equal((require('@balena/dockerignore') as (o: object) => { add(r: string): { ignores(p: string): boolean } })({}).add('a').ignores('a'), true);
    assert.equal(loaded('tar-stream'), true);
  });

  it('loads ssh2 for real when an ssh:// engine is used', async () => {
    const docker = new Docker({ protocol: 'ssh', host: '127.0.0.1', port: 1, username: 'nobody' });
    await assert.rejects(docker.ping(), (err: Error) => /ECONNREFUSED|connect/i.test(err.message));
    assert.equal(loaded('ssh2'), true);
  });

  it('loads the BuildKit session module for real when it is called', () => {
    const withSession = require('dockerode/lib/session.js') as (d: unknown, a: unknown, h: (err: Error | null) => void) => void;
    assert.equal(typeof withSession, 'function');
    // Not called against an engine: loading it is what is checked.
    try {
      withSession({ modem: { dial: () => {} } }, undefined, () => {});
    } catch {
      // the fake engine is not enough to open a session; the module is loaded all the same
    }
    assert.equal(loaded('@grpc/grpc-js'), true);
  });
});
