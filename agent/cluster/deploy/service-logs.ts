// `berth logs` for a cluster app, on its manager: the output of every task of the live release,
// wherever it runs, read as Swarm service logs through the manager's engine (Swarm gathers each
// task's output from its node). Each line is labelled with its task (PROCESS.SLOT) and the node the
// task runs on. A whole read is grouped per task like the standalone reader's per container; a
// followed one streams lines as they come, new tasks (a rescheduled one) included.
import type Docker from 'dockerode';
import type { LogsRequest } from '../../../shared/protocol.js';
import { demuxLines, LogDemuxer, type OutputStream } from '../../docker/log-demux.js';
import { splitTimestamp, type LogSource, type LogsResponse } from '../../docker/logs-response.js';
import { engineMessage } from '../swarm.js';
import { listAppServices, listNodes, listServiceTasks, type AppService } from './services.js';
import { nodeName, type SwarmNode, type SwarmTask } from './task-state.js';

/** A whole (not followed) read is given up after this long: a node that is down can hold Swarm's answer. */
const READ_TIMEOUT_MS = 30_000;
const TASK_KEY = 'com.docker.swarm.task.id';
const NODE_KEY = 'com.docker.swarm.node.id';

/** One line of service logs read with `timestamps` and `details`: "TS com.docker.swarm.node.id=…,…,com.docker.swarm.task.id=… TEXT". */
export interface ServiceLogLine {
  ts?: string;
  taskId?: string;
  nodeId?: string;
  text: string;
}

export function parseServiceLine(raw: string): ServiceLogLine {
  const { ts, text } = splitTimestamp(raw);
  // Swarm's details: key=value pairs, query-escaped, joined by commas, then one space.
  const m = new RegExp(`^(\\S*${TASK_KEY.replace(/\./g, '\\.')}=\\S*) ?(.*)$`, 's').exec(text);
  if (!m) return { ...(ts ? { ts } : {}), text };
  const details = new Map<string, string>();
  for (const pair of m[1]!.split(',')) {
    const i = pair.indexOf('=');
    if (i > 0) details.set(unescape(pair.slice(0, i)), unescape(pair.slice(i + 1)));
  }
  const taskId = details.get(TASK_KEY);
  const nodeId = details.get(NODE_KEY);
  return { ...(ts ? { ts } : {}), ...(taskId ? { taskId } : {}), ...(nodeId ? { nodeId } : {}), text: m[2]! };
}

function unescape(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** A task's label: its process and slot, SERVICE.SLOT, and its node's name. */
export function taskSource(svc: AppService, t: Pick<SwarmTask, 'ID' | 'Slot' | 'NodeID'> | null, nodes: readonly SwarmNode[], nodeId?: string): LogSource {
  const onNode = t?.NodeID ?? nodeId;
  const node = nodes.find((n) => n.ID === onNode);
  const where = node ? nodeName(node) : onNode?.slice(0, 12);
  return {
    process: svc.process,
    ...(t?.Slot ? { replica: t.Slot } : {}),
    name: t ? `${svc.name}.${t.Slot ?? t.ID.slice(0, 12)}` : svc.name,
    ...(where ? { node: where } : {}),
  };
}

/** Labels by task id: known tasks at once; a task first seen in the output is inspected once, its lines kept in order meanwhile. */
class TaskLabels {
  private readonly known = new Map<string, LogSource>();
  private readonly waiting = new Map<string, Array<(src: LogSource) => void>>();
  private readonly inflight = new Set<Promise<void>>();

  constructor(
    private readonly docker: Docker,
    services: readonly AppService[],
    tasks: readonly SwarmTask[],
    private readonly nodes: readonly SwarmNode[],
  ) {
    for (const t of tasks) {
      const svc = services.find((s) => s.id === t.ServiceID);
      if (svc) this.known.set(t.ID, taskSource(svc, t, nodes));
    }
  }

  with(svc: AppService, line: ServiceLogLine, emit: (src: LogSource) => void): void {
    const key = line.taskId ?? `${svc.id}\0${line.nodeId ?? ''}`;
    const src = this.known.get(key);
    if (src) return emit(src);
    const queue = this.waiting.get(key);
    if (queue) return void queue.push(emit);
    if (!line.taskId) {
      const s = taskSource(svc, null, this.nodes, line.nodeId);
      this.known.set(key, s);
      return emit(s);
    }
    this.waiting.set(key, [emit]);
    const done = this.docker
      .getTask(line.taskId)
      .inspect()
      .then(
        (t: SwarmTask) => taskSource(svc, t, this.nodes),
        () => taskSource(svc, null, this.nodes, line.nodeId),
      )
      .then((s) => {
        this.known.set(key, s);
        const q = this.waiting.get(key) ?? [];
        this.waiting.delete(key);
        for (const e of q) e(s);
      });
    this.inflight.add(done);
    void done.finally(() => this.inflight.delete(done));
  }

  /** Every line given so far has been emitted. */
  async settled(): Promise<void> {
    while (this.inflight.size > 0) await Promise.all([...this.inflight]);
  }
}

/** Serve `req` from the services of `release` (null: the app has no live release yet). Throws on an engine error. */
export async function serveServiceLogs(docker: Docker, req: LogsRequest, res: LogsResponse, release: string | null): Promise<void> {
  const all = release ? (await listAppServices(docker, req.app)).filter((s) => s.release === release) : [];
  const services = all.filter((s) => !req.process || s.process === req.process).sort((a, b) => a.process.localeCompare(b.process));
  if (services.length === 0) return res.end(noServices(req, release, all));
  const [tasks, nodes] = await Promise.all([
    listServiceTasks(
      docker,
      services.map((s) => s.id),
    ),
    listNodes(docker),
  ]);
  const labels = new TaskLabels(docker, services, tasks, nodes);
  if (!req.follow) {
    await readAll(docker, req, res, services, labels);
    return res.end();
  }
  await followAll(docker, req, res, services, labels);
}

const options = (req: LogsRequest, follow: boolean) => ({ stdout: true, stderr: true, follow, tail: req.tail, timestamps: true, details: true });

/** Every service's output, then grouped by process and task slot (each task's lines in order). */
async function readAll(docker: Docker, req: LogsRequest, res: LogsResponse, services: readonly AppService[], labels: TaskLabels): Promise<void> {
  const lines: Array<{ src: LogSource; stream: OutputStream; ts: string | undefined; text: string; at: number }> = [];
  for (const svc of services) {
    let raw: unknown;
    try {
      raw = await docker.getService(svc.id).logs({ ...options(req, false), abortSignal: AbortSignal.timeout(READ_TIMEOUT_MS) });
    } catch (err) {
      throw new Error(`service ${svc.name}: ${(err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError' ? `no answer within ${READ_TIMEOUT_MS / 1000} s (is a node down?)` : engineMessage(err)}`);
    }
    for (const { stream, text } of demuxLines(raw)) {
      const line = parseServiceLine(text);
      labels.with(svc, line, (src) => lines.push({ src, stream, ts: line.ts, text: line.text, at: line.ts ? Date.parse(line.ts) : NaN }));
    }
  }
  await labels.settled();
  const order = (a: (typeof lines)[number], b: (typeof lines)[number]) =>
    a.src.process.localeCompare(b.src.process) || (a.src.replica ?? 0) - (b.src.replica ?? 0) || (a.at - b.at || 0);
  for (const l of lines.sort(order)) res.line(l.src, l.stream, l.ts, l.text);
}

/** Every service's output as it comes; the request ends when every stream has (the release's services removed). */
async function followAll(docker: Docker, req: LogsRequest, res: LogsResponse, services: readonly AppService[], labels: TaskLabels): Promise<void> {
  let open = services.length;
  for (const svc of services) {
    let counted = false;
    const closed = () => {
      if (counted) return;
      counted = true;
      void labels.settled().then(() => --open === 0 && res.end());
    };
    let stream: NodeJS.ReadableStream;
    try {
      stream = (await docker.getService(svc.id).logs(options(req, true))) as unknown as NodeJS.ReadableStream;
    } catch (err) {
      throw new Error(`service ${svc.name}: ${engineMessage(err)}`);
    }
    if (res.ended) return void (stream as unknown as { destroy?: () => void }).destroy?.();
    res.track(stream);
    const demux = new LogDemuxer((s, text) => {
      const line = parseServiceLine(text);
      labels.with(svc, line, (src) => res.line(src, s, line.ts, line.text));
    });
    stream.on('data', (chunk: Buffer) => demux.push(chunk));
    stream.on('end', () => {
      demux.end();
      closed();
    });
    stream.on('error', closed);
  }
}

/** Why a request has nothing to show. */
function noServices(req: LogsRequest, release: string | null, all: readonly AppService[]): string {
  if (!release) return `app "${req.app}" has not been deployed to its cluster yet`;
  if (!req.process) return `app "${req.app}" has no services of its live release ${release} (it has no processes to run)`;
  const processes = [...new Set(all.map((s) => s.process))].sort();
  return `app "${req.app}" has no "${req.process}" service in its live release${processes.length ? ` (processes: ${processes.join(', ')})` : ''}`;
}
