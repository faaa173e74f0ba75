// Cancelling deploys in the agent's queue: a waiting one never runs, a running one is aborted with
// the cancellation as the reason (so the runner journals `cancelled` / `superseded`, not `failed`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeployQueue } from '../../agent/deploy/queue.js';
import { DeployCancelled } from '../../agent/deploy/cancel.js';
import type { DeployOrder } from '../../shared/protocol.js';
import { createLogger } from '../../shared/logger.js';

const order = (id: string, app = 'web'): DeployOrder => ({
  type: 'deploy',
  v: 1,
  deploymentId: id,
  app: { name: app, repo: 'https://example.com/x.git', branch: 'main', domains: [], env: {} },
});

test('a waiting deploy that is cancelled never runs; a running one is aborted with the reason', async () => {
  const ran: string[] = [];
  const reasons = new Map<string, unknown>();
  const queue = new DeployQueue({
    concurrency: 1,
    logger: createLogger('test'),
    run: (o, signal) =>
      new Promise((resolve) => {
        ran.push(o.deploymentId);
        signal.addEventListener('abort', () => {
          reasons.set(o.deploymentId, signal.reason);
          resolve({});
        });
      }),
  });
  queue.enqueue(order('dep00001'));
  queue.enqueue(order('dep00002'));
  queue.enqueue(order('dep00003'));
  assert.deepEqual(queue.snapshot(), { running: ['dep00001'], waiting: ['dep00002', 'dep00003'] });

  assert.equal(queue.cancel('dep00002', new DeployCancelled('superseded')), 'waiting');
  assert.equal(queue.cancel('dep00001', new DeployCancelled('cancelled', 'cancelled by a user')), 'running');
  await new Promise((r) => setTimeout(r, 10));
  assert.ok(reasons.get('dep00001') instanceof DeployCancelled);
  assert.equal((reasons.get('dep00001') as DeployCancelled).status, 'cancelled');
  assert.equal(queue.cancel('unknown1', new DeployCancelled('cancelled')), null);
  queue.cancel('dep00003', new DeployCancelled('cancelled'));
  await queue.idle();
  assert.deepEqual(ran, ['dep00001', 'dep00003'], 'the superseded deploy never ran');
});
