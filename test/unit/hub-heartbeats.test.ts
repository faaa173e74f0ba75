// What keeps the control plane's event loop free with 10,000 agents connected: pings spread over
// the interval a slice at a time (control-plane/ping-wheel.ts), and heartbeat times written in
// bounded batches (ServerStore.flushSeen) against a real SQLite file.
import { describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PingWheel } from '../../control-plane/ping-wheel.js';
import { openStores } from '../../control-plane/store/index.js';

describe('PingWheel', () => {
  it('visits every item once per interval, an even slice per tick, and never a deleted one', () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const visits: number[][] = [];
      let tick: number[] = [];
      const wheel = new PingWheel<number>(1000, (n) => tick.push(n)); // 4 slots, a tick every 250 ms
      for (let i = 0; i < 40; i++) wheel.add(i);
      for (let t = 0; t < 4; t++) {
        mock.timers.tick(250);
        visits.push(tick);
        tick = [];
      }
      assert.deepEqual(visits.map((v) => v.length), [10, 10, 10, 10], 'a quarter of them per tick');
      assert.deepEqual(visits.flat().sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i), 'each one once per interval');
      wheel.delete(7);
      wheel.add(3); // already in: not twice
      for (let t = 0; t < 4; t++) mock.timers.tick(250);
      assert.equal(tick.length, 39);
      assert.ok(!tick.includes(7), 'a deleted item is not visited');
      wheel.stop();
      tick = [];
      mock.timers.tick(1000);
      assert.deepEqual(tick, [], 'nothing after stop');
    } finally {
      mock.timers.reset();
    }
  });

  it('uses one slot for a short interval (tests ping every few ms)', () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const seen: string[] = [];
      const wheel = new PingWheel<string>(40, (s) => seen.push(s));
      wheel.add('a');
      wheel.add('b');
      mock.timers.tick(40);
      assert.deepEqual(seen.sort(), ['a', 'b']);
      wheel.stop();
    } finally {
      mock.timers.reset();
    }
  });
});

describe('ServerStore heartbeat writes', () => {
  it('writes pending heartbeat times in bounded batches, or one server\'s alone', () => {
    const stores = openStores(join(mkdtempSync(join(tmpdir(), 'berth-seen-')), 'cp.db'));
    try {
      for (let i = 0; i < 5; i++) stores.servers.create(`s${i}`, String(i).repeat(64), new Date(Date.now() + 60_000).toISOString());
      const written = () => (stores.db.prepare('SELECT COUNT(*) AS n FROM servers WHERE last_seen_at IS NOT NULL').get() as { n: number }).n;
      for (let i = 0; i < 5; i++) stores.servers.touch(`s${i}`);
      assert.equal(stores.servers.get('s4')!.last_seen_at !== null, true, 'a read sees a pending time at once');
      assert.equal(written(), 0);
      assert.equal(stores.servers.flushSeen({ only: 's3' }), 4, "only s3's is written");
      assert.equal(written(), 1);
      assert.equal(stores.servers.flushSeen({ limit: 2 }), 2, 'two more written, two still pending');
      assert.equal(written(), 3);
      assert.equal(stores.servers.flushSeen(), 0);
      assert.equal(written(), 5);
      assert.equal(stores.servers.flushSeen(), 0, 'nothing pending: nothing to do');

      // The cached listing keeps up with written times (it is not re-read for them).
      const before = stores.servers.list().find((r) => r.name === 's1')!.last_seen_at!;
      const later = new Date(Date.parse(before) + 5_000);
      mock.timers.enable({ apis: ['Date'], now: later });
      try {
        stores.servers.touch('s1');
      } finally {
        mock.timers.reset();
      }
      stores.servers.flushSeen();
      assert.equal(stores.servers.list({ limit: 3 }).find((r) => r.name === 's1')!.last_seen_at, later.toISOString());
      assert.equal((stores.db.prepare("SELECT last_seen_at AS at FROM servers WHERE name = 's1'").get() as { at: string }).at, later.toISOString());
    } finally {
      stores.db.close();
    }
  });
});
