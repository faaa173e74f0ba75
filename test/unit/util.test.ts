// The shared helper module (shared/util): each helper's promise, checked the way callers rely on it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bestEffort, joinLines, mapConcurrent, oneLine, SerialQueue, sleep, writeSecretFile } from '../../shared/util/index.js';

test('sleep ends early, without rejecting, when its signal aborts', async () => {
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(new Error('stop')), 20);
  await sleep(10_000, ac.signal);
  assert.ok(Date.now() - started < 5_000, 'the abort ended the wait');
  await sleep(10_000, ac.signal); // already aborted: returns at once
});

test('SerialQueue runs tasks one at a time in call order; a failure rejects only its own task', async () => {
  const q = new SerialQueue();
  const events: string[] = [];
  const task = (name: string, ms: number, fail = false) => async () => {
    events.push(`start ${name}`);
    await sleep(ms);
    events.push(`end ${name}`);
    if (fail) throw new Error(name);
    return name;
  };
  const results = await Promise.allSettled([q.run(task('a', 30)), q.run(task('b', 1, true)), q.run(task('c', 1))]);
  assert.deepEqual(events, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
});

test('oneLine keeps the first meaningful line, cut to the limit; joinLines keeps them all', () => {
  assert.equal(oneLine(new Error('\n  first   problem \nsecond')), 'first problem');
  assert.equal(oneLine('x'.repeat(600), 10), `${'x'.repeat(9)}…`);
  assert.equal(oneLine(new TypeError('')), 'TypeError');
  assert.equal(joinLines('nginx: [emerg] a\n\n  b  \n'), 'nginx: [emerg] a; b');
});

test('writeSecretFile writes 0600 whatever the umask, replacing the old content whole', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-util-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'key');
  const old = process.umask(0);
  try {
    writeSecretFile(file, 'one');
    writeSecretFile(file, 'two');
  } finally {
    process.umask(old);
  }
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(readFileSync(file, 'utf8'), 'two');
});

test('bestEffort logs a failed clean-up by name, never throws, and stays quiet for ignored errors', async () => {
  const warnings: Array<{ obj: object; msg: string }> = [];
  const logger = { warn: (obj: object, msg: string) => void warnings.push({ obj, msg }) };
  await bestEffort('removing /tmp/x', Promise.reject(new Error('EBUSY: resource busy\nstack')), { logger });
  await bestEffort('removing a gone container', async () => Promise.reject(Object.assign(new Error('no such container'), { statusCode: 404 })), {
    logger,
    ignore: (err) => (err as { statusCode?: number }).statusCode === 404,
  });
  await bestEffort('nothing wrong', Promise.resolve(), { logger });
  assert.deepEqual(warnings, [{ obj: { err: 'EBUSY: resource busy' }, msg: 'clean-up failed: removing /tmp/x' }]);
});

test('mapConcurrent keeps at most `limit` calls in flight and returns results in the items\' order', async () => {
  let inFlight = 0;
  let peak = 0;
  const items = [30, 5, 20, 1, 15, 2, 8];
  const out = await mapConcurrent(items, 3, async (ms) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await sleep(ms);
    inFlight--;
    return ms * 2;
  });
  assert.deepEqual(out, items.map((ms) => ms * 2));
  assert.equal(peak, 3, 'three calls ran at once, never more');
  assert.deepEqual(await mapConcurrent([], 4, async () => 1), []);
  await assert.rejects(mapConcurrent([1, 2], 2, async (n) => { if (n === 2) throw new Error('two'); return n; }), /two/);
});
