// The test suites' cache of package.sh tarballs (test/helpers/release-cache.ts): a tarball is made
// once per content and copied after that; any change to what package.sh reads, the version or a
// file in the compiled tree makes it again.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cachedRelease, releaseKey } from '../helpers/release-cache.js';
import { makeTmpDir } from '../helpers/tmp.js';

function fakeTree(): string {
  const root = makeTmpDir('release-cache-tree');
  mkdirSync(join(root, 'dist/agent'), { recursive: true });
  mkdirSync(join(root, 'scripts'), { recursive: true });
  writeFileSync(join(root, 'dist/agent/main.js'), 'console.log(1);\n');
  writeFileSync(join(root, 'package.json'), '{"version":"0.1.0"}\n');
  writeFileSync(join(root, 'scripts/package.sh'), '#!/bin/sh\n');
  return root;
}

describe('release tarball cache', () => {
  it('builds once per content, copies after that, and builds again when an input changes', async () => {
    const root = fakeTree();
    const cache = makeTmpDir('release-cache');
    let builds = 0;
    const build = async (dir: string) => {
      builds++;
      writeFileSync(join(dir, 'berth-0.1.0-linux-x64.tar.gz'), `tarball ${builds}`);
      writeFileSync(join(dir, 'berth-0.1.0-linux-x64.json'), '{}');
    };
    const out = (n: number) => makeTmpDir(`release-cache-out${n}`);
    const first = out(1);
    assert.equal(await cachedRelease(root, first, '0.1.0', build, cache), 'built');
    const second = out(2);
    assert.equal(await cachedRelease(root, second, '0.1.0', build, cache), 'cached');
    assert.equal(builds, 1);
    assert.deepEqual(readdirSync(second).sort(), ['berth-0.1.0-linux-x64.json', 'berth-0.1.0-linux-x64.tar.gz']);
    assert.equal(readFileSync(join(second, 'berth-0.1.0-linux-x64.tar.gz'), 'utf8'), 'tarball 1');

    assert.equal(await cachedRelease(root, out(3), '0.1.1', build, cache), 'built', 'another version');
    const key = releaseKey(root, '0.1.0');
    writeFileSync(join(root, 'dist/agent/main.js'), 'console.log(2);\n');
    assert.notEqual(releaseKey(root, '0.1.0'), key, 'a changed compiled file changes the key');
    assert.equal(await cachedRelease(root, out(4), '0.1.0', build, cache), 'built');
    mkdirSync(join(root, 'docs'));
    writeFileSync(join(root, 'docs/x.md'), 'x');
    assert.equal(await cachedRelease(root, out(5), '0.1.0', build, cache), 'built', 'a new docs file');
    assert.equal(builds, 4);
  });

  it('a tree that changes while package.sh copies it is used once and not kept', async () => {
    const root = fakeTree();
    const cache = makeTmpDir('release-cache');
    const out = makeTmpDir('release-cache-out');
    const how = await cachedRelease(
      root,
      out,
      '0.1.0',
      async (dir) => {
        writeFileSync(join(dir, 'berth-0.1.0-linux-x64.tar.gz'), 'tarball');
        writeFileSync(join(root, 'dist/agent/main.js'), 'compiled again meanwhile\n');
      },
      cache,
    );
    assert.equal(how, 'built');
    assert.deepEqual(readdirSync(out), ['berth-0.1.0-linux-x64.tar.gz']);
    assert.deepEqual(readdirSync(cache), []);
  });

  it('a failed build leaves nothing cached', async () => {
    const root = fakeTree();
    const cache = makeTmpDir('release-cache');
    await assert.rejects(cachedRelease(root, makeTmpDir('release-cache-out'), '0.1.0', () => Promise.reject(new Error('package.sh failed')), cache), /package\.sh failed/);
    assert.deepEqual(readdirSync(cache), []);
  });
});
