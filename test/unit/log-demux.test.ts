// Docker's multiplexed output format, read by the agent's one demultiplexer: frames of both streams,
// frames and lines split anywhere across chunks, and a TTY container's raw output.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { demuxLines, LogDemuxer, type OutputStream } from '../../agent/docker/log-demux.js';

function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

function collect(chunks: Buffer[]): Array<[OutputStream, string]> {
  const lines: Array<[OutputStream, string]> = [];
  const demux = new LogDemuxer((stream, text) => lines.push([stream, text]));
  for (const c of chunks) demux.push(c);
  demux.end();
  return lines;
}

describe('log demuxer', () => {
  const whole = Buffer.concat([frame(1, 'out one\nout '), frame(2, 'err one\r\n'), frame(1, 'two\n'), frame(2, 'héllo ünïcode\nerr tail')]);
  const expected: Array<[OutputStream, string]> = [
    ['stdout', 'out one'],
    ['stderr', 'err one'],
    ['stdout', 'out two'],
    ['stderr', 'héllo ünïcode'],
    ['stderr', 'err tail'],
  ];

  it('splits stdout and stderr frames into lines per stream, CRLF endings dropped, the unterminated rest at the end', () => {
    assert.deepEqual(collect([whole]), expected);
  });

  it('gives the same lines however the bytes are split across chunks (inside headers, payloads and characters)', () => {
    for (let cut = 1; cut < whole.length; cut++) {
      assert.deepEqual(collect([whole.subarray(0, cut), whole.subarray(cut)]), expected, `split at byte ${cut}`);
    }
    assert.deepEqual(collect([...whole].map((b) => Buffer.from([b]))), expected, 'one byte at a time');
  });

  it('waits for the rest of a frame before emitting it', () => {
    const lines: string[] = [];
    const demux = new LogDemuxer((_s, text) => lines.push(text));
    const f = frame(1, 'complete line\n');
    demux.push(f.subarray(0, 10));
    assert.deepEqual(lines, [], 'a frame cut short emits nothing yet');
    demux.push(f.subarray(10));
    assert.deepEqual(lines, ['complete line']);
  });

  it("passes a TTY container's raw output through as stdout", () => {
    const raw = Buffer.from('plain text\nmore tëxt\n');
    const lines: Array<[OutputStream, string]> = [
      ['stdout', 'plain text'],
      ['stdout', 'more tëxt'],
    ];
    for (let cut = 1; cut < raw.length; cut++) assert.deepEqual(collect([raw.subarray(0, cut), raw.subarray(cut)]), lines, `split at byte ${cut}`);
  });

  it('reads a whole logs answer, a Buffer or text', () => {
    assert.deepEqual(
      demuxLines(Buffer.concat([frame(1, 'a\n'), frame(2, 'b\n')])),
      [
        { stream: 'stdout', text: 'a' },
        { stream: 'stderr', text: 'b' },
      ],
    );
    assert.deepEqual(demuxLines('raw line\n'), [{ stream: 'stdout', text: 'raw line' }]);
    assert.deepEqual(demuxLines(Buffer.alloc(0)), []);
  });
});
