// berth's own health gate on a cluster release (Swarm's is never trusted): every web task answers at
// its node's address and published port — the path nginx will use — with the app's Host header and
// health path (TCP without one), then every task of every new service stays running for the stable
// period. Failures name the task's node ("unhealthy on web2: GET /health answered 500").
import type Docker from 'dockerode';
import { sleep } from '../../../shared/util/index.js';
import type { AppConfig } from '../../config/index.js';
import { httpProbe, tcpProbe } from '../../docker/probes.js';
import { ClusterDeployError } from './service-spec.js';
import { listNodes, listServiceTasks } from './services.js';
import { classifyTasks, type ExpectedService } from './task-state.js';
import { planUpstreams, type TaskEndpoint } from './upstream-plan.js';

export interface TaskHealthOptions {
  healthcheck: AppConfig['healthcheck'];
  /** Budget without a healthcheck in the config (BERTH_HEALTH_TIMEOUT_MS). */
  timeoutMs: number;
  stableMs: number;
  intervalMs: number;
  /** The Host header of HTTP probes (the app's first domain). */
  host: string | undefined;
  containerPort: number | null;
  log: (line: string) => void;
  signal: AbortSignal;
}

/** One probe of an endpoint: null when it passes, else what it answered. */
export async function probeEndpoint(e: Pick<TaskEndpoint, 'server'>, o: Pick<TaskHealthOptions, 'healthcheck' | 'host'>, timeoutMs: number): Promise<string | null> {
  const i = e.server.lastIndexOf(':');
  const address = e.server.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(e.server.slice(i + 1));
  if (!o.healthcheck) return (await tcpProbe(address, port, Math.min(timeoutMs, 2000))) ? null : 'no TCP connection';
  const answer = await httpProbe(port, o.healthcheck.path, o.host, timeoutMs, address);
  return /^[23]\d\d$/.test(answer) ? null : `GET ${o.healthcheck.path} answered ${answer}`;
}

/** Probe one web task until it passes; fails after `attempts` failed probes or when the budget is spent. */
async function gateEndpoint(e: TaskEndpoint, o: TaskHealthOptions, deadline: number): Promise<void> {
  const hc = o.healthcheck;
  const interval = hc?.intervalS !== undefined ? Math.round(hc.intervalS * 1000) : o.intervalMs;
  let failures = 0;
  for (;;) {
    o.signal.throwIfAborted();
    const left = deadline - Date.now();
    const problem = await probeEndpoint(e, o, Math.max(200, Math.min(5000, left)));
    if (problem === null) {
      o.log(`web task on ${e.node} (${e.server}) answers`);
      return;
    }
    failures++;
    if ((hc?.attempts !== undefined && failures >= hc.attempts) || Date.now() + interval > deadline) {
      throw new ClusterDeployError(`unhealthy on ${e.node}: ${problem} (${e.server}, ${failures} probe${failures === 1 ? '' : 's'})`);
    }
    await sleep(Math.max(50, interval), o.signal);
  }
}

/** The gate: web tasks answer, then every task stays up for the stable period. */
export async function checkTaskHealth(docker: Docker, services: readonly ExpectedService[], o: TaskHealthOptions): Promise<TaskEndpoint[]> {
  const budget = o.healthcheck ? o.healthcheck.timeoutS * 1000 : o.timeoutMs;
  const deadline = Date.now() + budget;
  const ids = services.map((s) => s.id);
  const [tasks, nodes] = await Promise.all([listServiceTasks(docker, ids), listNodes(docker)]);
  const web = services.find((s) => s.process === 'web');
  let endpoints: TaskEndpoint[] = [];
  if (web && o.containerPort) {
    endpoints = planUpstreams(tasks.filter((t) => t.ServiceID === web.id), nodes, o.containerPort);
    if (endpoints.length < web.replicas) throw new ClusterDeployError(`only ${endpoints.length} of ${web.replicas} web tasks run on a ready node with a published port`);
    await Promise.all(endpoints.map((e) => gateEndpoint(e, o, deadline)));
  }
  // Stays up: the same tasks still run after the stable period (a restart is a new task, and fails here).
  const before = new Set(tasks.filter((t) => t.DesiredState === 'running' && t.Status?.State === 'running').map((t) => t.ID));
  await sleep(o.stableMs, o.signal);
  o.signal.throwIfAborted();
  const [after, nodesAfter] = await Promise.all([listServiceTasks(docker, ids), listNodes(docker)]);
  const verdict = classifyTasks(services, after, nodesAfter);
  if (verdict.state === 'failed') throw new ClusterDeployError(verdict.error);
  if (verdict.state === 'waiting') throw new ClusterDeployError(`tasks did not stay up: ${verdict.detail}`);
  const replaced = verdict.tasks.filter((t) => !before.has(t.ID));
  if (replaced.length > 0) throw new ClusterDeployError(`a task was restarted during the health check (${replaced.length} new task${replaced.length === 1 ? '' : 's'})`);
  return endpoints;
}
