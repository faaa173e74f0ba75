// Reading OOM kills out of a container's engine events, with the sequences a real Docker 20.10 (cgroup
// v1) engine sends: several `oom` events for one kill, an `oom` that lags the `die`, a kill with no `oom`
// at all, a SIGKILL sent through the engine (docker stop / kill), and an `oom` whose container ran on.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ContainerEvent } from '../../agent/docker/events.js';
import { OomKillReader } from '../../agent/docker/limits.js';

const T0 = Date.parse('2026-12-01T16:43:00Z');
const ev = (Action: 'oom' | 'die' | 'start' | 'kill', ms: number, exitCode?: number): ContainerEvent => ({
  Action,
  timeNano: (T0 + ms) * 1e6,
  Actor: { Attributes: exitCode === undefined ? {} : { exitCode: String(exitCode) } },
});
const at = (ms: number) => new Date(T0 + ms).toISOString();

function read(events: ContainerEvent[], capped = true) {
  const reader = new OomKillReader(capped);
  return [...events.flatMap((e) => reader.feed(e)), ...reader.flush()];
}

describe('OOM kills from engine events', () => {
  it('counts one kill for several oom events before a die, at the die', () => {
    assert.deepEqual(read([ev('oom', 0), ev('oom', 19), ev('die', 60, 137)]), [{ at: at(60), exited: true }]);
  });

  it('counts an oom that comes just after the die (the engine racing the exit)', () => {
    assert.deepEqual(read([ev('die', 0, 137), ev('oom', 350)]), [{ at: at(0), exited: true }]);
  });

  it('counts a restart loop kill by kill', () => {
    const loop = [ev('oom', 0), ev('oom', 20), ev('die', 70, 137), ev('start', 800), ev('oom', 900), ev('die', 970, 137), ev('start', 3000), ev('die', 5000, 137), ev('oom', 5300)];
    assert.deepEqual(read(loop), [
      { at: at(70), exited: true },
      { at: at(970), exited: true },
      { at: at(5000), exited: true },
    ]);
  });

  it('counts a capped container dying of a SIGKILL no one sent through the engine (the oom notification was missed)', () => {
    assert.deepEqual(read([ev('start', 0), ev('die', 300, 137), ev('start', 1500), ev('die', 2000, 137)]), [
      { at: at(300), exited: true },
      { at: at(2000), exited: true },
    ]);
    assert.deepEqual(read([ev('die', 300, 137)], false), [], 'not without a memory cap');
  });

  it('does not count a die without an oom near it of another cause: docker stop past its timeout, docker kill, an exit code', () => {
    const stop = [ev('start', 0), ev('kill', 1000), ev('kill', 11_000), ev('die', 11_050, 137)];
    const kill = [ev('start', 20_000), ev('kill', 21_000), ev('die', 21_010, 137)];
    const crash = [ev('start', 30_000), ev('die', 30_500, 1)];
    assert.deepEqual(read([...stop, ...kill, ...crash]), []);
    assert.deepEqual(read([...stop, ev('start', 12_000), ev('die', 12_500, 137)]), [{ at: at(12_500), exited: true }], 'a restart forgets the kill sent before it');
  });

  it('takes an oom with no die near it as a process killed inside a container that ran on', () => {
    assert.deepEqual(read([ev('oom', 0), ev('oom', 10), ev('oom', 60_000), ev('die', 60_050, 137)]), [
      { at: at(0), exited: false },
      { at: at(60_050), exited: true },
    ]);
  });
});
