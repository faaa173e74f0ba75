// The agent's dockerode (agent/docker/client.ts): ssh2 and the BuildKit session module (gRPC) are not
// loaded at start, the local socket works, and both load for real on first use.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import Docker from '../agent/docker/client.js';

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
