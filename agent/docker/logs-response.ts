// One `berth logs` request's answer on the agent: lines batched per BATCH_MS (at most MAX_BATCH) into
// `logs_data` messages, the streams it follows, and its `logs_end` (sent once). Shared by the
// standalone reader (containers, ./runtime-logs.ts) and the cluster one (Swarm services,
// agent/cluster/deploy/service-logs.ts).
import { PROTOCOL_VERSION, type AgentMessage, type LogsRequest, type RuntimeLogLine } from '../../shared/protocol.js';
import type { OutputStream } from './log-demux.js';

const BATCH_MS = 100;
const MAX_BATCH = 500;
const MAX_LINE = 16_384;
/** A follow request is ended after this long so a forgotten `berth logs -f` cannot pin resources forever. */
const MAX_FOLLOW_MS = 6 * 60 * 60 * 1000;

/** Where a line comes from: a container (standalone), or a Swarm task and the node it runs on. */
export interface LogSource {
  process: string;
  replica?: number | undefined;
  /** The container's name (a task: SERVICE.SLOT). */
  name: string;
  /** Cluster apps: the node the task runs on. */
  node?: string;
}

/** Split Docker's `timestamps: true` prefix ("2024-01-01T00:00:00.123456789Z text") off a line. */
export function splitTimestamp(line: string): { ts?: string; text: string } {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) ?(.*)$/s.exec(line);
  return m ? { ts: m[1]!, text: m[2]! } : { text: line };
}

export class LogsResponse {
  ended = false;
  private batch: RuntimeLogLine[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly streams: NodeJS.ReadableStream[] = [];
  private readonly stops: Array<() => void> = [];
  private readonly maxTimer: NodeJS.Timeout;

  constructor(
    private readonly req: LogsRequest,
    private readonly send: (msg: AgentMessage) => void,
    private readonly onEnd: () => void,
  ) {
    this.maxTimer = setTimeout(() => this.end(), MAX_FOLLOW_MS);
    this.maxTimer.unref();
  }

  /** A line as Docker gave it (with its timestamp prefix). */
  add(src: LogSource, stream: OutputStream, raw: string): void {
    const { ts, text } = splitTimestamp(raw);
    this.line(src, stream, ts, text);
  }

  line(src: LogSource, stream: OutputStream, ts: string | undefined, text: string): void {
    if (this.ended) return;
    this.batch.push({
      process: src.process,
      ...(src.replica !== undefined ? { replica: src.replica } : {}),
      container: src.name,
      ...(src.node ? { node: src.node } : {}),
      stream,
      ...(ts ? { ts } : {}),
      text: text.slice(0, MAX_LINE),
    });
    if (this.batch.length >= MAX_BATCH) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), BATCH_MS);
  }

  /** berth's own line about a container (an OOM kill), marked `[berth]` so it never reads as the app's output. */
  note(src: LogSource, ts: string, text: string): void {
    this.add(src, 'stderr', `${ts} [berth] ${text}`);
  }

  /** A followed stream: destroyed when the request ends. */
  track(stream: NodeJS.ReadableStream): void {
    this.streams.push(stream);
  }

  /** Something else to stop when the request ends (an events subscription). */
  onStop(stop: () => void): void {
    this.stops.push(stop);
  }

  end(error?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd();
    clearTimeout(this.maxTimer);
    for (const s of this.streams) (s as unknown as { destroy?: () => void }).destroy?.();
    for (const stop of this.stops) stop();
    this.flush();
    this.send({ type: 'logs_end', v: PROTOCOL_VERSION, requestId: this.req.requestId, ...(error ? { error } : {}) });
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.batch.length === 0) return;
    this.send({ type: 'logs_data', v: PROTOCOL_VERSION, requestId: this.req.requestId, lines: this.batch });
    this.batch = [];
  }
}
