// What `berth status` shows, assembled from the agent's own records plus what Docker says runs.
// Pure: the live agent (over its Unix socket) and the CLI reading a stopped agent's SQLite both
// feed it, so the two views can never drift apart.
import type { ServerSpec } from '../../shared/spec.js';
import type { CertStatus } from '../certs/index.js';
import type { ConnectionState } from '../connection.js';
import type { BerthContainer } from '../docker/containers.js';
import type { ClusterStatus } from './cluster.js';
import type { DeployRecord, ReconcileRun, Release } from '../store/index.js';

export interface StatusInput {
  agent: { running: boolean; version: string; pid: number | null; startedAt: string | null; dataDir: string; server: string };
  /** Null when the agent is stopped (its connection state died with it). */
  connection: ConnectionState | null;
  controlPlaneUrl: string | null;
  desired: { spec: ServerSpec; receivedAt: string } | null;
  releases: Release[];
  /** The most recent deploys, newest first. */
  deploys: DeployRecord[];
  /** Null when Docker could not be asked. */
  containers: BerthContainer[] | null;
  dockerError?: string;
  certs: CertStatus[];
  lastReconcile: ReconcileRun | null;
  disk: { images: number; bytes: number } | null;
  /** Each live release's cron jobs with their last and next run (absent: not known, e.g. an older database). */
  cron?: CronStatus[];
  /** What inspect and the engine's events say about each container of a live release, by container id. */
  containerFacts?: Record<string, ContainerFacts>;
  /** This server's cluster as its engine sees it (absent: standalone, or not asked). */
  cluster?: ClusterStatus | null;
  /**
   * On a cluster's manager: the current tasks of each cluster app's live release, by app (an app
   * missing: not known — not the manager, or Swarm could not be asked). Cluster apps run no local containers.
   */
  clusterTasks?: Record<string, ClusterTaskState[]>;
  now: Date;
}

/** A task Swarm wants running for a cluster app's live release (agent/status/cluster.ts lists them). */
export interface ClusterTaskState {
  process: string;
  /** SERVICE.SLOT, as Swarm names the task's container. */
  name: string;
  slot: number;
  /** The node it runs on (its berth server name, else its hostname). */
  node: string;
  /** Swarm's task state: running, starting, preparing, pending, failed, … */
  state: string;
}

export interface CronStatus {
  app: string;
  name: string;
  schedule: string;
  timezone: string | null;
  lastRun: { status: string; exitCode: number | null; startedAt: string; finishedAt: string | null } | null;
  /** Null when it will not fire (the app is no longer in the desired state, or the date never comes). */
  nextRunAt: string | null;
}

/** A container's restarts, memory cap and OOM kills (agent/status/gather.ts asks Docker). */
export interface ContainerFacts {
  /** Docker's count of restarts by the restart policy. */
  restartCount: number;
  /** Bytes (HostConfig.Memory); null: not capped. */
  memoryLimit: number | null;
  /** OOM kills the engine still knows of (its event log is bounded), and the last one's time. */
  oomKills: number;
  lastOomKillAt: string | null;
}

export interface ProcessStatus {
  name: string;
  desired: number;
  running: number;
  /** The containers of the live release (a cluster app: its tasks, each with the node it runs on). */
  containers: Array<{ name: string; replica: number; state: string; node?: string } & Partial<ContainerFacts>>;
  /** Whether the kernel killed a container of it (or a process inside one) at its memory cap. */
  oomKilled: boolean;
  /** The latest such kill (ISO), its cap (bytes, null: none known) and the containers' restarts. */
  lastOomKillAt: string | null;
  memoryLimit: number | null;
  restartCount: number;
}

export interface AppStatus {
  name: string;
  /** A cluster app: its cluster (its processes are the tasks of its services, on the cluster's nodes). */
  cluster?: string;
  domains: string[];
  release: { deploymentId: string; commit: string | null; image: string; activatedAt: string; static: boolean } | null;
  processes: ProcessStatus[];
  /** healthy: every desired container runs; degraded: some do; down: none; not-deployed; static: served from disk. */
  health: 'healthy' | 'degraded' | 'down' | 'not-deployed' | 'static' | 'unknown';
  lastDeployment: { id: string; status: string; commit: string | null; reason: string | null; createdAt: string; finishedAt: string | null } | null;
  certificates: Array<Pick<CertStatus, 'domains' | 'certDomains' | 'state' | 'notAfter' | 'daysLeft' | 'lastAttemptAt' | 'lastResult' | 'lastError' | 'nextAttemptAt'>>;
  cron: Array<Omit<CronStatus, 'app'>>;
  /** The live release's volumes: config name → mount target (Docker volume berth-APP_NAME). */
  volumes: Array<{ name: string; target: string }>;
}

export interface StatusReport {
  agent: StatusInput['agent'] & { uptimeSeconds: number | null };
  controlPlane: {
    url: string | null;
    state: ConnectionState['status'] | 'agent-stopped';
    connectedSince: string | null;
    /** When the control plane accepted this connection (its welcome); null until then. */
    acceptedAt: string | null;
    lastSeenAt: string | null;
    nextRetryAt: string | null;
    lastError: string | null;
    pendingMessages: number | null;
  };
  desiredState: { revision: number; receivedAt: string; apps: number } | null;
  apps: AppStatus[];
  lastReconcile: ReconcileRun | null;
  disk: StatusInput['disk'];
  dockerError: string | null;
  /** Issue 15: the cluster this server is a node of, its role and the swarm's health; null: standalone. */
  cluster: ClusterStatus | null;
}

/** A process's OOM kills, cap and restarts, over its containers. */
function processFacts(containers: Array<Partial<ContainerFacts>>): Pick<ProcessStatus, 'oomKilled' | 'lastOomKillAt' | 'memoryLimit' | 'restartCount'> {
  const kills = containers.map((c) => c.lastOomKillAt).filter((t): t is string => !!t).sort();
  return {
    oomKilled: kills.length > 0,
    lastOomKillAt: kills.at(-1) ?? null,
    memoryLimit: containers.find((c) => c.memoryLimit)?.memoryLimit ?? null,
    restartCount: containers.reduce((n, c) => n + (c.restartCount ?? 0), 0),
  };
}

/** A cluster app's process: its tasks Swarm wants running, wherever they run (no local containers, no container facts). */
function taskProcess(p: { name: string; scale: number }, tasks: readonly ClusterTaskState[]): ProcessStatus {
  const mine = tasks.filter((t) => t.process === p.name).sort((a, b) => a.slot - b.slot);
  const containers = mine.map((t) => ({ name: t.name, replica: t.slot, state: t.state, node: t.node }));
  return { name: p.name, desired: p.scale, running: mine.filter((t) => t.state === 'running').length, containers, ...processFacts([]) };
}

/** An app's processes (a cluster app's: its tasks; a static site: none) and the health word they make. */
function appProcesses(input: StatusInput, name: string, cluster: string | undefined, release: Release | null): { processes: ProcessStatus[]; health: AppStatus['health'] } {
  if (!release) return { processes: [], health: 'not-deployed' };
  if (release.staticRoot) return { processes: [], health: 'static' };
  const wanted = release.processes ?? [{ name: 'web', command: null, scale: 1 }];
  const tasks = cluster ? input.clusterTasks?.[name] : undefined;
  const ours = (input.containers ?? []).filter((c) => c.app === name && c.deploymentId === release.deploymentId);
  const processes = cluster
    ? wanted.map((p) => taskProcess(p, tasks ?? []))
    : wanted.map((p): ProcessStatus => {
        const mine = ours.filter((c) => c.process === p.name).sort((a, b) => (a.replica ?? 1) - (b.replica ?? 1));
        const containers = mine.map((c) => ({ name: c.name, replica: c.replica ?? 1, state: c.state, ...input.containerFacts?.[c.id] }));
        return { name: p.name, desired: p.scale, running: mine.filter((c) => c.state === 'running').length, containers, ...processFacts(containers) };
      });
  const desiredTotal = processes.reduce((n, p) => n + p.desired, 0);
  const runningTotal = processes.reduce((n, p) => n + Math.min(p.running, p.desired), 0);
  const known = cluster ? tasks !== undefined : input.containers !== null;
  const health = !known ? 'unknown' : runningTotal === desiredTotal ? 'healthy' : runningTotal === 0 ? 'down' : 'degraded';
  return { processes, health };
}

export function buildStatusReport(input: StatusInput): StatusReport {
  const { agent, connection } = input;
  const specApps = input.desired?.spec.apps ?? [];
  const names = [...new Set([...specApps.map((a) => a.name), ...input.releases.map((r) => r.app)])].sort();
  const apps = names.map((name): AppStatus => {
    const spec = specApps.find((a) => a.name === name);
    const release = input.releases.find((r) => r.app === name) ?? null;
    const last = input.deploys.find((d) => d.app === name) ?? null;
    return {
      name,
      ...(spec?.cluster ? { cluster: spec.cluster } : {}),
      domains: spec?.domains ?? [],
      release: release
        ? { deploymentId: release.deploymentId, commit: release.commit, image: release.image, activatedAt: release.activatedAt, static: !!release.staticRoot }
        : null,
      ...appProcesses(input, name, spec?.cluster, release),
      lastDeployment: last
        ? { id: last.id, status: last.status, commit: last.commit, reason: last.reason, createdAt: last.createdAt, finishedAt: last.finishedAt }
        : null,
      certificates: input.certs
        .filter((c) => c.app === name)
        .map(({ domains, certDomains, state, notAfter, daysLeft, lastAttemptAt, lastResult, lastError, nextAttemptAt }) => ({
          domains, certDomains, state, notAfter, daysLeft, lastAttemptAt, lastResult, lastError, nextAttemptAt,
        })),
      cron: (input.cron ?? []).filter((j) => j.app === name).map(({ app: _app, ...job }) => job),
      volumes: Object.entries(release?.volumes ?? {}).map(([volume, v]) => ({ name: volume, target: v.target })),
    };
  });
  const startedMs = agent.startedAt ? Date.parse(agent.startedAt) : NaN;
  return {
    agent: { ...agent, uptimeSeconds: agent.running && !Number.isNaN(startedMs) ? Math.max(0, Math.round((input.now.getTime() - startedMs) / 1000)) : null },
    controlPlane: {
      url: connection?.url ?? input.controlPlaneUrl,
      state: connection?.status ?? 'agent-stopped',
      connectedSince: connection?.connectedSince ?? null,
      acceptedAt: connection?.acceptedAt ?? null,
      lastSeenAt: connection?.lastSeenAt ?? null,
      nextRetryAt: connection?.nextRetryAt ?? null,
      lastError: connection?.lastError ?? null,
      pendingMessages: connection?.pending ?? null,
    },
    desiredState: input.desired ? { revision: input.desired.spec.revision, receivedAt: input.desired.receivedAt, apps: input.desired.spec.apps.length } : null,
    apps,
    lastReconcile: input.lastReconcile,
    disk: input.disk,
    dockerError: input.dockerError ?? null,
    cluster: input.cluster ?? null,
  };
}
