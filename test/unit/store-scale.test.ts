// The store's costs as history grows (issue 20), on a real SQLite file: compiled statements are reused
// (bounded), and retention's window also moves when deployments finish in bulk.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openDatabase } from '../../control-plane/store/db.js';
import { openStores, type Stores } from '../../control-plane/store/index.js';
import { makeTmpDir } from '../helpers/tmp.js';

describe('statement cache', () => {
  it('the same SQL text gets the same compiled statement; past 1,000 texts they are compiled each time', () => {
    const db = openDatabase(join(makeTmpDir('store-scale'), 'cp.db'));
    try {
      const a = db.prepare('SELECT name FROM servers WHERE name = ?');
      assert.equal(db.prepare('SELECT name FROM servers WHERE name = ?'), a);
      assert.notEqual(db.prepare('SELECT name FROM servers WHERE name > ?'), a);
      db.prepare("INSERT INTO servers (name, created_at) VALUES ('one', 'x')").run();
      assert.deepEqual(a.all('one'), [{ name: 'one' }]);
      assert.deepEqual(db.prepare('SELECT name FROM servers WHERE name = ?').all('one'), [{ name: 'one' }], 'a cached statement runs again with new values');
      for (let i = 0; i < 1100; i++) db.prepare(`SELECT ${i} AS n`);
      assert.notEqual(db.prepare('SELECT 1099 AS n'), db.prepare('SELECT 1099 AS n'), 'texts past the cap are not kept');
      assert.deepEqual(db.prepare('SELECT 1099 AS n').get(), { n: 1099 });
    } finally {
      db.close();
    }
  });
});

describe('retention when deployments finish in bulk', () => {
  const line = (seq: number) => ({ seq, ts: new Date().toISOString(), stream: 'build' as const, text: `line ${seq}` });
  const withLog = (stores: Stores) => {
    const d = stores.deployments.create({ app: 'one', server: 'keep', commit: null, trigger: 'manual' });
    assert.ok(stores.deployments.appendLogs('keep', d.id, [line(0), line(1)]));
    assert.equal(stores.deployments.applyProgress('keep', { deploymentId: d.id, status: 'building' }), 'updated');
    return d.id;
  };

  it('a cancel (like a supersede or the stale sweep) moves the window: an older finished deployment loses its log', () => {
    const stores = openStores(join(makeTmpDir('store-scale'), 'cp.db'), { keepDeploymentLogs: 1 });
    try {
      stores.servers.create('keep', 'hash', new Date(Date.now() + 60_000).toISOString());
      stores.apps.create({ name: 'one', repo: 'https://example.com/x.git', branch: 'main', server: 'keep' });
      const lines = (id: string) => stores.deployments.logs(id, -1).lines.length;
      const first = withLog(stores);
      assert.equal(stores.deployments.applyProgress('keep', { deploymentId: first, status: 'failed', reason: 'x' }), 'updated');
      const running = withLog(stores);
      const cancelled = withLog(stores);
      assert.equal(lines(first), 2, 'the newest finished one when it finished: kept then');
      assert.ok(stores.deployments.cancel(cancelled, 'cancelled by a test'));
      assert.equal(lines(first), 0, 'out of the window once the cancel finished a newer one');
      assert.equal(lines(running), 2, 'an unfinished one keeps its log');
      assert.equal(lines(cancelled), 2, 'the newest keeps its log');
      assert.equal(stores.deployments.require(first).status, 'failed', 'the row stays');
    } finally {
      stores.db.close();
    }
  });
});
