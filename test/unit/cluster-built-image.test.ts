// The manager's continuation of a build made on the builder (agent/cluster/deploy/built-elsewhere.ts):
// the reported image is pulled and run with the registry's credentials, so only this app's
// repository in this cluster's registry is accepted.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { prepareBuilt } from '../../agent/cluster/deploy/built-elsewhere.js';
import type { DeployRun } from '../../agent/deploy/deploy-run.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const run = { app: 'shop', env: {}, stream: { system: () => undefined } } as unknown as DeployRun;
const built = (image: string) => ({ image, config: { processes: { web: { command: null } }, build: { dockerfile: 'Dockerfile' } }, containerPort: 8000, builder: 'build1', commit: 'a'.repeat(40), logSeq: 3 });
const registry = { address: '10.0.0.2:5000' };

it('accepts the app\'s own digest in the cluster registry and refuses any other image', () => {
  assert.equal(prepareBuilt(run, built(`10.0.0.2:5000/berth/shop@${DIGEST}`), registry).image, `10.0.0.2:5000/berth/shop@${DIGEST}`);
  for (const other of [`evil.example:5000/berth/shop@${DIGEST}`, `10.0.0.2:5000/berth/shop2@${DIGEST}`, `10.0.0.2:5000/berth/other@${DIGEST}`, `10.0.0.2:50000/berth/shop@${DIGEST}`]) {
    assert.throws(() => prepareBuilt(run, built(other), registry), /the build on build1 reported .*, not an image of 10\.0\.0\.2:5000\/berth\/shop/, other);
  }
});
