// How a deploy that did not reach `done` ends (agent/deploy/failure.ts): one case per cause, the
// reason in one line with credentials in URLs hidden and env values masked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AppConfigError } from '../../agent/config/index.js';
import { DeployCancelled } from '../../agent/deploy/cancel.js';
import { endingOf, reasonLine } from '../../agent/deploy/failure.js';
import { DeploySkipped } from '../../agent/deploy/push-guard.js';
import { RollbackError } from '../../agent/deploy/rollback.js';
import type { DeployStatus } from '../../shared/deploy-status.js';
import { makeMasker } from '../../shared/secret-mask.js';

const SECRET = 'hunter2-db-password';
const mask = makeMasker({ DATABASE_PASSWORD: SECRET });

function run(phase: DeployStatus, abortReason?: unknown) {
  const ctl = new AbortController();
  if (abortReason !== undefined) ctl.abort(abortReason);
  return { signal: ctl.signal, phase, mask };
}

test('a cancel ends as the control plane asked, naming the phase reached', () => {
  assert.deepEqual(endingOf(run('building', new DeployCancelled('superseded')), new Error('aborted')), {
    cause: 'cancelled',
    status: 'superseded',
    reason: 'superseded by a newer deploy (while building)',
  });
  const byUser = endingOf(run('starting', new DeployCancelled('cancelled', `cancelled by admin ${SECRET}`)), new Error('aborted'));
  assert.equal(byUser.status, 'cancelled');
  assert.ok(!byUser.reason.includes(SECRET), byUser.reason);
  assert.match(byUser.reason, /\(while starting\)$/);
});

test('the agent stopping fails the deploy in its phase; a skipped push is cancelled with its own message', () => {
  assert.deepEqual(endingOf(run('health_checking', new Error('shutdown')), new Error('aborted')), {
    cause: 'stopped',
    status: 'failed',
    reason: 'agent stopped while the deploy was health_checking',
  });
  const skipped = new DeploySkipped('skipped: commit abc is the live commit');
  assert.deepEqual(endingOf(run('fetching'), skipped), { cause: 'skipped', status: 'cancelled', reason: skipped.message });
});

test("a deploy's own error: a config error and a rollback say so, anything else names its phase", () => {
  assert.equal(endingOf(run('fetching'), new AppConfigError('berth.yml: key "processes.web": required\nmore')).reason, 'invalid app config: berth.yml: key "processes.web": required');
  assert.equal(endingOf(run('queued'), new RollbackError('release dep1 is not kept on this server')).reason, 'rollback failed: release dep1 is not kept on this server');
  const failed = endingOf(run('building'), new Error(`RUN failed with ${SECRET}\nlast output`));
  assert.deepEqual([failed.cause, failed.status], ['failed', 'failed']);
  assert.match(failed.reason, /^build failed: RUN failed with /);
  assert.ok(!failed.reason.includes(SECRET) && !failed.reason.includes('last output'), failed.reason);
  assert.match(endingOf(run('switching'), new Error('nginx -t failed')).reason, /^switch failed: /);
  assert.match(endingOf(run('queued'), new Error('boom')).reason, /^deploy failed: boom$/);
});

test('credentials in a URL are hidden before the line is cut, so a cut never leaves part of one', () => {
  assert.equal(reasonLine(new Error('\n  fetch of https://bot:tok3n@git.example.com/a.git failed  \nhint')), 'fetch of https://***@git.example.com/a.git failed');
  const long = reasonLine(new Error(`${'x'.repeat(480)} https://bot:supersecrettoken@git.example.com/a.git`));
  assert.ok(long.length <= 500);
  assert.ok(!long.includes('supersecret') && !long.includes('bot:'), long);
});
