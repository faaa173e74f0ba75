// `berth logs` on the agent: read (and optionally follow) the output of an app's berth containers
// through the Docker API, split it into lines and stream them to the control plane in batches.
import type Docker from 'dockerode';
import type { Logger } from '../../shared/logger.js';
import { oneLine, sleep } from '../../shared/util/index.js';
import type { AgentMessage, LogsRequest } from '../../shared/protocol.js';
import { listBerthContainers, type BerthContainer } from './containers.js';
import { eventName, followContainerEvents, type ContainerEvent } from './events.js';
import { LATE_OOM_MS, OOM_KILL_EVENTS, OOM_TO_DIE_MS, OomKillReader, oomKills, outOfMemory, type OomKill } from './limits.js';
import { demuxLines, LogDemuxer } from './log-demux.js';
import { LogsResponse, splitTimestamp } from './logs-response.js';

/** Past OOM kills noted per container at most (a restart loop can have many). */
const MAX_PAST_KILLS = 20;

export interface RuntimeLogDeps {
  docker: Docker;
  server: string;
  logger: Logger;
  /** Sends now or drops: runtime logs are live, never queued in the outbox. */
  send(msg: AgentMessage): void;
  /**
   * A cluster app this server manages: its live release (null: not deployed yet), whose Swarm
   * services' output is read instead of local containers. Undefined: not a cluster app here.
   */
  clusterRelease?: (app: string) => string | null | undefined;
}

/** One followed container: its OOM kill reader, memory cap, and whether its `die` has been read. */
interface Watched {
  c: BerthContainer;
  reader: OomKillReader;
  limit: number | null;
  died: { promise: Promise<void>; resolve: () => void };
  timer?: NodeJS.Timeout;
  /** Kills up to this time (ms) were noted from the past already. */
  notedUntil: number;
}

/** Notes each OOM kill in the followed containers as it happens, from the engine's live events. */
class LiveOomKills {
  private readonly watched: Map<string, Watched>;

  constructor(
    containers: BerthContainer[],
    private readonly res: LogsResponse,
  ) {
    this.watched = new Map(containers.map((c) => [c.id, { c, reader: new OomKillReader(false), limit: null, died: deferred(), notedUntil: -Infinity }]));
  }

  async start(docker: Docker, logger: Logger): Promise<void> {
    for (const w of this.watched.values()) {
      w.limit = (await docker.getContainer(w.c.id).inspect().catch(() => null))?.HostConfig?.Memory || null;
      w.reader = new OomKillReader(w.limit !== null);
    }
    try {
      const stop = await followContainerEvents(docker, [...this.watched.keys()], OOM_KILL_EVENTS, (ev) => this.onEvent(ev));
      this.res.onStop(() => {
        stop();
        for (const w of this.watched.values()) clearTimeout(w.timer);
      });
    } catch (err) {
      logger.warn({ err }, 'cannot follow container events: OOM kills are not noted in this logs stream');
      for (const w of this.watched.values()) w.died.resolve();
    }
  }

  /**
   * Resolves once the container's `die` has been read (and a lagging `oom` waited for): its stream's
   * end can come first. A stream can also end without a `die` (an error): no longer than it takes to come.
   */
  died(id: string): Promise<void> {
    return Promise.race([this.watched.get(id)?.died.promise, sleep(OOM_TO_DIE_MS + LATE_OOM_MS)]).then(() => undefined);
  }

  private onEvent(ev: ContainerEvent): void {
    const w = this.watched.get(ev.Actor?.ID ?? '');
    const name = eventName(ev);
    if (!w) return;
    if (name === 'start' || name === 'kill') return void w.reader.feed(ev);
    clearTimeout(w.timer);
    const kills = w.reader.feed(ev);
    this.write(w, kills);
    if (name === 'die' && !w.reader.lastDieWasOom) {
      // The engine's `oom` may come just after the `die`: wait for it that long.
      w.timer = setTimeout(() => w.died.resolve(), LATE_OOM_MS).unref();
    } else if (name === 'die' || kills.some((k) => k.exited)) {
      w.died.resolve();
    } else {
      // An `oom` whose `die` has not come: none within OOM_TO_DIE_MS means a process inside was killed.
      w.timer = setTimeout(() => this.write(w, w.reader.flush()), OOM_TO_DIE_MS).unref();
    }
  }

  /** The container's past kills, noted when the request started (the live events may repeat the latest). */
  notePast(id: string, kills: OomKill[]): void {
    const w = this.watched.get(id);
    if (!w) return;
    this.write(w, kills);
    w.notedUntil = Math.max(w.notedUntil, ...kills.map((k) => Date.parse(k.at)));
  }

  private write(w: Watched, kills: OomKill[]): void {
    for (const k of kills) if (Date.parse(k.at) > w.notedUntil) this.res.note(w.c, k.at, killNote(w.c, k, w.limit));
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
      const release = this.deps.clusterRelease?.(req.app);
      if (release !== undefined) {
        // Loaded here: a standalone agent never loads cluster code.
        const { serveServiceLogs } = await import('../cluster/deploy/service-logs.js');
        return await serveServiceLogs(this.deps.docker, req, res, release);
      }
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
      const lines = demuxLines(raw);
      const { kills, limit } = await this.pastKills(c);
      // A kill goes before the first line written after it; kills older than a cut tail are cut with it.
      const firstShown = lines.length < req.tail ? -Infinity : lineTime(lines[0]?.text ?? '');
      const notes = kills.filter((k) => Date.parse(k.at) >= firstShown);
      for (const line of lines) {
        while (notes.length && Date.parse(notes[0]!.at) <= lineTime(line.text)) res.note(c, notes[0]!.at, killNote(c, notes.shift()!, limit));
        res.add(c, line.stream, line.text);
      }
      for (const k of notes) res.note(c, k.at, killNote(c, k, limit));
    }
  }

  /** The container's OOM kills the engine still knows of (the latest MAX_PAST_KILLS), and its memory cap. */
  private async pastKills(c: BerthContainer): Promise<{ kills: OomKill[]; limit: number | null }> {
    try {
      const info = await this.deps.docker.getContainer(c.id).inspect();
      return { kills: (await oomKills(this.deps.docker, info)).slice(-MAX_PAST_KILLS), limit: info.HostConfig?.Memory || null };
    } catch {
      return { kills: [], limit: null }; // removed meanwhile: its output said all there is
    }
  }

  private async followAll(req: LogsRequest, containers: BerthContainer[], res: LogsResponse): Promise<void> {
    const kills = new LiveOomKills(containers, res);
    await kills.start(this.deps.docker, this.deps.logger);
    let open = containers.length;
    for (const c of containers) {
      if (req.tail > 0) kills.notePast(c.id, (await this.pastKills(c)).kills);
      const stream = (await this.deps.docker.getContainer(c.id).logs({ stdout: true, stderr: true, follow: true, tail: req.tail, timestamps: true })) as unknown as NodeJS.ReadableStream;
      if (res.ended) {
        (stream as unknown as { destroy?: () => void }).destroy?.();
        return;
      }
      res.track(stream);
      const demux = new LogDemuxer((s, line) => res.add(c, s, line));
      stream.on('data', (chunk: Buffer) => demux.push(chunk));
      // A container that stops (e.g. replaced by a deploy, or killed) ends its stream; the request ends with
      // the last one — after the engine's `die` event has said whether it was an OOM kill (it comes just after).
      const closed = () => void kills.died(c.id).then(() => --open === 0 && res.end());
      stream.on('end', () => {
        demux.end();
        closed();
      });
      stream.on('error', closed);
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

/** "worker.1 was killed: out of memory (limit 64 MB)". */
function killNote(c: BerthContainer, kill: OomKill, limit: number | null): string {
  const name = `${c.process}.${c.replica ?? 1}`;
  return `${kill.exited ? `${name} was killed` : `a process in ${name} was killed`}: ${outOfMemory(limit)}`;
}

/** A log line's Docker timestamp in ms (NaN without one: such a line never orders a kill before it). */
function lineTime(raw: string): number {
  const { ts } = splitTimestamp(raw);
  return ts ? Date.parse(ts) : NaN;
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Why a request has nothing to show. */
function noContainers(req: LogsRequest, all: BerthContainer[]): string {
  if (!req.process) return `app "${req.app}" has no containers on this server (not deployed yet, or a static site)`;
  const processes = [...new Set(all.map((c) => c.process))].sort();
  return `app "${req.app}" has no "${req.process}" containers on this server${processes.length ? ` (processes: ${processes.join(', ')})` : ''}`;
}
