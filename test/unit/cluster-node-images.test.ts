// Which images a cluster node removes (agent/cluster/node-images.ts, pure part): only berth-labelled
// images of the cluster registry's berth/APP repository that no container uses, only those names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { unusedRegistryImages } from '../../agent/cluster/node-images.js';

const REG = '10.0.0.2:5000';
const d = (n: string) => `sha256:${n.repeat(64)}`;
const berth = (app: string) => ({ 'berth.managed': 'true', 'berth.app': app, 'berth.deployment': 'dep1' });
const images = [
  // v1 of shop on a worker: pulled by digest, no task uses it any more.
  { Id: 'img-old', RepoTags: [], RepoDigests: [`${REG}/berth/shop@${d('1')}`], Labels: berth('shop') },
  // v2: its task's container runs it.
  { Id: 'img-live', RepoTags: [], RepoDigests: [`${REG}/berth/shop@${d('2')}`], Labels: berth('shop') },
  // The same repository path, not berth-labelled: someone else's.
  { Id: 'img-foreign', RepoTags: [], RepoDigests: [`${REG}/berth/shop@${d('3')}`], Labels: { maintainer: 'x' } },
  // Berth-labelled, but from another registry (the cluster's registry changed): left alone.
  { Id: 'img-other-registry', RepoTags: [], RepoDigests: [`10.9.9.9:5000/berth/shop@${d('4')}`], Labels: berth('shop') },
  // Labelled for blog but stored under shop's repository: not recognised as blog's.
  { Id: 'img-mismatch', RepoTags: [], RepoDigests: [`${REG}/berth/shop@${d('5')}`], Labels: berth('blog') },
  // The manager's pushed build: a local tag stays, only the registry names go.
  { Id: 'img-built', RepoTags: ['berth/shop:dep0', `${REG}/berth/shop:dep0`], RepoDigests: [`${REG}/berth/shop@${d('6')}`], Labels: berth('shop') },
  // A standalone app's image on the manager: not in the registry.
  { Id: 'img-standalone', RepoTags: ['berth/blog:dep9'], RepoDigests: [], Labels: berth('blog') },
];

test('berth images of the registry repository that no container uses, by their registry names only', () => {
  const out = unusedRegistryImages(images, new Set(['img-live']), { registry: REG, protect: new Set(), busyApps: new Set() });
  assert.deepEqual(out, [
    { id: 'img-old', app: 'shop', refs: [`${REG}/berth/shop@${d('1')}`] },
    { id: 'img-built', app: 'shop', refs: [`${REG}/berth/shop@${d('6')}`, `${REG}/berth/shop:dep0`] },
  ]);
});

test("the manager's kept releases and the images of an app being deployed stay", () => {
  const kept = unusedRegistryImages(images, new Set(['img-live']), { registry: REG, protect: new Set([`${REG}/berth/shop@${d('1')}`]), busyApps: new Set() });
  assert.deepEqual(
    kept.map((i) => i.id),
    ['img-built'],
  );
  assert.deepEqual(unusedRegistryImages(images, new Set(), { registry: REG, protect: new Set(), busyApps: new Set(['shop']) }), []);
});
