// Docker's multiplexed output (logs and attach streams of containers without a TTY): frames of an
// 8-byte header — stream type (0 stdin, 1 stdout, 2 stderr), 3 zero bytes, a big-endian payload
// length — then the payload. The one reader of that format in the agent: runtime logs, health-check
// log tails, cron output tails and one-off runs all split their output into lines here.
import { StringDecoder } from 'node:string_decoder';

export type OutputStream = 'stdout' | 'stderr';

const HEADER = 8;

/**
 * Feed it chunks as they arrive (a frame may be split across chunks); it calls `onLine` with every
 * complete line, per stream, without its line ending. Output that does not start with a frame header
 * (a TTY container's raw stream) is passed through as stdout text.
 */
export class LogDemuxer {
  private buffer: Buffer = Buffer.alloc(0);
  /** Set once the output turned out not to be multiplexed (a character may span two chunks). */
  private raw: StringDecoder | null = null;
  private readonly partial: Record<OutputStream, string> = { stdout: '', stderr: '' };

  constructor(private readonly onLine: (stream: OutputStream, text: string) => void) {}

  push(chunk: Buffer): void {
    if (this.raw) return this.text('stdout', this.raw.write(chunk));
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.buffer.length > 0) {
      const type = this.buffer[0];
      if (type !== 0 && type !== 1 && type !== 2) {
        this.raw = new StringDecoder('utf8');
        this.text('stdout', this.raw.write(this.buffer));
        this.buffer = Buffer.alloc(0);
        return;
      }
      if (this.buffer.length < HEADER) return;
      const size = this.buffer.readUInt32BE(4);
      if (this.buffer.length < HEADER + size) return;
      this.text(type === 2 ? 'stderr' : 'stdout', this.buffer.subarray(HEADER, HEADER + size).toString('utf8'));
      this.buffer = this.buffer.subarray(HEADER + size);
    }
  }

  /** Emit what is left without a trailing newline. */
  end(): void {
    if (this.raw) this.text('stdout', this.raw.end());
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.partial[stream]) this.onLine(stream, this.partial[stream]);
      this.partial[stream] = '';
    }
  }

  private text(stream: OutputStream, text: string): void {
    const parts = (this.partial[stream] + text).split('\n');
    this.partial[stream] = parts.pop() ?? '';
    for (const line of parts) this.onLine(stream, line.replace(/\r$/, ''));
  }
}

/**
 * The lines of a whole (not followed) logs answer, in order. dockerode hands it over as a Buffer;
 * anything else is read as its text.
 */
export function demuxLines(raw: unknown): Array<{ stream: OutputStream; text: string }> {
  const lines: Array<{ stream: OutputStream; text: string }> = [];
  const demux = new LogDemuxer((stream, text) => lines.push({ stream, text }));
  demux.push(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)));
  demux.end();
  return lines;
}
