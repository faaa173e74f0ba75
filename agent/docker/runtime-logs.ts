// `berth logs` on the agent: read (and optionally follow) the output of an app's berth containers
// through the Docker API, split it into lines and stream them to the control plane in batches.
import type Docker from 'dockerode';
import type { Logger } from '../../shared/logger.js';
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

export class RuntimeLogs {
  private readonly active = new Map<string, () => void>();

  constructor(private readonly deps: RuntimeLogDeps) {}

  /** Serve one request; never throws (failures end the request with an error for the user). */
  async serve(req: LogsRequest): Promise<void> {
    const { docker, logger } = this.deps;
    let ended = false;
    let batch: RuntimeLogLine[] = [];
    let timer: NodeJS.Timeout | undefined;
    const streams: NodeJS.ReadableStream[] = [];
    const flush = () => {
      clearTimeout(timer);
      timer = undefined;
      if (batch.length === 0) return;
      this.deps.send({ type: 'logs_data', v: PROTOCOL_VERSION, requestId: req.requestId, lines: batch });
      batch = [];
    };
    const end = (error?: string) => {
      if (ended) return;
      ended = true;
      this.active.delete(req.requestId);
      clearTimeout(maxTimer);
      for (const s of streams) (s as unknown as { destroy?: () => void }).destroy?.();
      flush();
      this.deps.send({ type: 'logs_end', v: PROTOCOL_VERSION, requestId: req.requestId, ...(error ? { error } : {}) });
    };
    const maxTimer = setTimeout(() => end(), MAX_FOLLOW_MS);
    maxTimer.unref();
    this.active.set(req.requestId, () => end());
    const add = (c: BerthContainer, stream: OutputStream, raw: string) => {
      if (ended) return;
      const { ts, text } = splitTimestamp(raw);
      batch.push({ process: c.process, ...(c.replica !== undefined ? { replica: c.replica } : {}), container: c.name, stream, ...(ts ? { ts } : {}), text: text.slice(0, MAX_LINE) });
      if (batch.length >= MAX_BATCH) flush();
      else timer ??= setTimeout(flush, BATCH_MS);
    };

    try {
      const all = await listBerthContainers(docker, { app: req.app, server: this.deps.server });
      const containers = all.filter((c) => !req.process || c.process === req.process).sort((a, b) => a.process.localeCompare(b.process) || (a.replica ?? 1) - (b.replica ?? 1));
      if (containers.length === 0) {
        const processes = [...new Set(all.map((c) => c.process))].sort();
        return end(
          req.process
            ? `app "${req.app}" has no "${req.process}" containers on this server${processes.length ? ` (processes: ${processes.join(', ')})` : ''}`
            : `app "${req.app}" has no containers on this server (not deployed yet, or a static site)`,
        );
      }
      if (!req.follow) {
        for (const c of containers) {
          const raw = (await docker.getContainer(c.id).logs({ stdout: true, stderr: true, follow: false, tail: req.tail, timestamps: true })) as unknown;
          for (const line of demuxLines(raw)) add(c, line.stream, line.text);
        }
        return end();
      }
      let open = containers.length;
      for (const c of containers) {
        const stream = (await docker.getContainer(c.id).logs({ stdout: true, stderr: true, follow: true, tail: req.tail, timestamps: true })) as unknown as NodeJS.ReadableStream;
        if (ended) {
          (stream as unknown as { destroy?: () => void }).destroy?.();
          return;
        }
        streams.push(stream);
        const demux = new LogDemuxer((s, line) => add(c, s, line));
        stream.on('data', (chunk: Buffer) => demux.push(chunk));
        // A container that stops (e.g. replaced by a deploy) ends its stream; the request ends with the last one.
        stream.on('end', () => {
          demux.end();
          if (--open === 0) end();
        });
        stream.on('error', () => {
          if (--open === 0) end();
        });
      }
    } catch (err) {
      logger.warn({ err, app: req.app }, 'could not read runtime logs');
      end(`could not read the logs of "${req.app}": ${(err as Error).message.split('\n')[0]}`);
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
