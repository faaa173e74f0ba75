// What the tasks of a release's new services say (pure): still coming up, all running, or failed —
// and then why, in words a user can act on ("task web.2 on web2: No such image: …", "no suitable
// node …"). berth's own gate reads this; Swarm's update/rollback state is never used.

/** The fields of a Swarm task berth reads. */
export interface SwarmTask {
  ID: string;
  ServiceID: string;
  NodeID?: string;
  Slot?: number;
  DesiredState?: string;
  Status?: {
    State?: string;
    Err?: string;
    Message?: string;
    PortStatus?: { Ports?: Array<{ TargetPort?: number; PublishedPort?: number; PublishMode?: string }> };
  };
}

/** The fields of a Swarm node berth reads. */
export interface SwarmNode {
  ID: string;
  Description?: { Hostname?: string };
  Spec?: { Role?: string; Availability?: string; Labels?: Record<string, string> };
  Status?: { State?: string; Addr?: string };
  ManagerStatus?: { Addr?: string };
}

/** A new service and how many running tasks it must reach. */
export interface ExpectedService {
  id: string;
  /** The process name (tasks are named PROCESS.SLOT in messages). */
  process: string;
  replicas: number;
}

export type TasksVerdict =
  | { state: 'waiting'; detail: string }
  | { state: 'running'; tasks: SwarmTask[] }
  | { state: 'failed'; error: string };

/** Task states a task never leaves for `running` again. */
const FAILED = new Set(['failed', 'rejected', 'orphaned']);
/** Ended without being asked to: a process that exits (even with 0) is a failure of a long-running service. */
const ENDED = new Set(['complete', 'shutdown', 'remove']);

/** A node as messages name it: its berth server name when the node carries one (label berth.server), else its hostname. */
export function nodeName(n: SwarmNode): string {
  return n.Spec?.Labels?.['berth.server'] || n.Description?.Hostname || n.ID.slice(0, 12);
}

export function nodeLabel(nodes: readonly SwarmNode[], id: string | undefined): string {
  if (!id) return 'no node';
  const n = nodes.find((x) => x.ID === id);
  return n ? nodeName(n) : id.slice(0, 12);
}

function taskName(t: SwarmTask, process: string): string {
  return t.Slot ? `${process}.${t.Slot}` : process;
}

/** The first failure among a service's tasks, or null. */
function failureOf(s: ExpectedService, tasks: readonly SwarmTask[], nodes: readonly SwarmNode[]): string | null {
  for (const t of tasks) {
    const state = t.Status?.State ?? '';
    const why = t.Status?.Err || t.Status?.Message || state;
    const where = nodeLabel(nodes, t.NodeID);
    if (FAILED.has(state)) return `task ${taskName(t, s.process)} on ${where} ${state}: ${why}`;
    // Swarm leaves a task it cannot place pending for ever, with this error: fail now, naming it.
    if (state === 'pending' && /no suitable node/i.test(t.Status?.Err ?? '')) return `task ${taskName(t, s.process)} cannot be placed: ${t.Status!.Err}`;
    if (ENDED.has(state) && t.DesiredState === 'running') return `task ${taskName(t, s.process)} on ${where} exited (${why})`;
  }
  return null;
}

/** The verdict on a release's new services from their tasks (every task of them, current or not). */
export function classifyTasks(services: readonly ExpectedService[], tasks: readonly SwarmTask[], nodes: readonly SwarmNode[]): TasksVerdict {
  const running: SwarmTask[] = [];
  const behind: string[] = [];
  for (const s of services) {
    const mine = tasks.filter((t) => t.ServiceID === s.id);
    const failure = failureOf(s, mine, nodes);
    if (failure) return { state: 'failed', error: failure };
    const up = mine.filter((t) => t.DesiredState === 'running' && t.Status?.State === 'running');
    running.push(...up);
    if (up.length < s.replicas) behind.push(`${s.process} ${up.length}/${s.replicas} running`);
  }
  return behind.length > 0 ? { state: 'waiting', detail: behind.join(', ') } : { state: 'running', tasks: running };
}
