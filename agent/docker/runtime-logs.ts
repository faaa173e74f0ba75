// `berth logs` on the agent: read (and optionally follow) the output of an app's berth containers
// through the Docker API, split it into lines and stream them to the control plane in batches.
import type Docker from 'dockerode';
import type { Logger } from '../../shared/logger.js';
import { oneLine } from '../../shared/util/index.js';
import { PROTOCOL_VERSION, type AgentMessage, type LogsRequest, type RuntimeLogLine } from '../../shared/protocol.js';
import { listBerthContainers, type BerthContainer } from './containers.js';
import { demuxLines, LogDemuxer, type OutputStream } from './log-demux.js';

const BATCH_MS = 100;
const MAX_BATCH = 500;
const MAX_LINE = 16_384;
/** A follow request is ended after this long so a forgotten `berth logs -f` cannot pin resources forever. */
const MAX_FOLLOW_MS = 6 * 60 * 60 * 1000;

export interface RuntimeLogDeps {
  docker: Docker;
  server: string;
  logger: Logger;
  /** Sends now or drops: runtime logs are live, never queued in the outbox. */
  send(msg: AgentMessage): void;
}

/** Split Docker's `timestamps: true` prefix ("2024-01-01T00:00:00.123456789Z text") off a line. */
function splitTimestamp(line: string): { ts?: string; text: string } {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) ?(.*)$/s.exec(line);
  return m ? { ts: m[1]!, text: m[2]! } : { text: line };
}

/** One request's output: lines batched per BATCH_MS (at most MAX_BATCH), the streams it follows, its end (sent once). */
class LogsResponse {
  ended = false;
  private batch: RuntimeLogLine[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly streams: NodeJS.ReadableStream[] = [];
  private readonly maxTimer: NodeJS.Timeout;

  constructor(
    private readonly req: LogsRequest,
    private readonly send: (msg: AgentMessage) => void,
    private readonly onEnd: () => void,
  ) {
    this.maxTimer = setTimeout(() => this.end(), MAX_FOLLOW_MS);
    this.maxTimer.unref();
  }

  add(c: BerthContainer, stream: OutputStream, raw: string): void {
    if (this.ended) return;
    const { ts, text } = splitTimestamp(raw);
    this.batch.push({ process: c.process, ...(c.replica !== undefined ? { replica: c.replica } : {}), container: c.name, stream, ...(ts ? { ts } : {}), text: text.slice(0, MAX_LINE) });
    if (this.batch.length >= MAX_BATCH) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), BATCH_MS);
  }

  /** A followed stream: destroyed when the request ends. */
  track(stream: NodeJS.ReadableStream): void {
    this.streams.push(stream);
  }

  end(error?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.onEnd();
    clearTimeout(this.maxTimer);
    for (const s of this.streams) (s as unknown as { destroy?: () => void }).destroy?.();
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

export class RuntimeLogs {
  private readonly active = new Map<string, () => void>();

  constructor(private readonly deps: RuntimeLogDeps) {}

  /** Serve one request; never throws (failures end the request with an error for the user). */
  async serve(req: LogsRequest): Promise<void> {
    const res = new LogsResponse(req, (msg) => this.deps.send(msg), () => this.active.delete(req.requestId));
    this.active.set(req.requestId, () => res.end());
    try {
      const all = await listBerthContainers(this.deps.docker, { app: req.app, server: this.deps.server });
      const containers = all.filter((c) => !req.process || c.process === req.process).sort((a, b) => a.process.localeCompare(b.process) || (a.replica ?? 1) - (b.replica ?? 1));
      if (containers.length === 0) return res.end(noContainers(req, all));
      if (!req.follow) {
        await this.readAll(req, containers, res);
        return res.end();
      }
      await this.followAll(req, containers, res);
    } catch (err) {
      this.deps.logger.warn({ err, app: req.app }, 'could not read runtime logs');
      res.end(`could not read the logs of "${req.app}": ${oneLine(err)}`);
    }
  }

  private async readAll(req: LogsRequest, containers: BerthContainer[], res: LogsResponse): Promise<void> {
    for (const c of containers) {
      const raw = (await this.deps.docker.getContainer(c.id).logs({ stdout: true, stderr: true, follow: false, tail: req.tail, timestamps: true })) as unknown;
      for (const line of demuxLines(raw)) res.add(c, line.stream, line.text);
    }
  }

  private async followAll(req: LogsRequest, containers: BerthContainer[], res: LogsResponse): Promise<void> {
    let open = containers.length;
    for (const c of containers) {
      const stream = (await this.deps.docker.getContainer(c.id).logs({ stdout: true, stderr: true, follow: true, tail: req.tail, timestamps: true })) as unknown as NodeJS.ReadableStream;
      if (res.ended) {
        (stream as unknown as { destroy?: () => void }).destroy?.();
        return;
      }
      res.track(stream);
      const demux = new LogDemuxer((s, line) => res.add(c, s, line));
      stream.on('data', (chunk: Buffer) => demux.push(chunk));
      // A container that stops (e.g. replaced by a deploy) ends its stream; the request ends with the last one.
      stream.on('end', () => {
        demux.end();
        if (--open === 0) res.end();
      });
      stream.on('error', () => {
        if (--open === 0) res.end();
      });
    }
  }

  cancel(requestId: string): void {
    this.active.get(requestId)?.();
  }

  /** The control plane connection dropped: nobody is listening any more. */
  cancelAll(): void {
    for (const stop of [...this.active.values()]) stop();
  }
}

/** Why a request has nothing to show. */
function noContainers(req: LogsRequest, all: BerthContainer[]): string {
  if (!req.process) return `app "${req.app}" has no containers on this server (not deployed yet, or a static site)`;
  const processes = [...new Set(all.map((c) => c.process))].sort();
  return `app "${req.app}" has no "${req.process}" containers on this server${processes.length ? ` (processes: ${processes.join(', ')})` : ''}`;
}
