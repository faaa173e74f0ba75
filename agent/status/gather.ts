// Collect the inputs of a status report from a store and the Docker engine. Used by the running
// agent (with its live connection state) and by `berth status` when the agent is stopped.
import type Docker from 'dockerode';
import { LABEL } from '../docker/labels.js';
import { cronJobsOf, nextRun } from '../cron/schedule.js';
import { listBerthContainers, type BerthContainer } from '../docker/containers.js';
import { oomKills } from '../docker/limits.js';
import type { AgentStore, Release } from '../store/index.js';
import { mapConcurrent } from '../../shared/util/index.js';
import { clusterAppTasks, clusterStatus } from './cluster.js';
import { buildStatusReport, type ContainerFacts, type CronStatus, type StatusInput, type StatusReport } from './report.js';

export interface GatherOptions {
  store: AgentStore;
  docker: Docker;
  agent: StatusInput['agent'];
  connection: StatusInput['connection'];
  controlPlaneUrl: string | null;
  certs: StatusInput['certs'];
}

async function diskUsage(docker: Docker, server: string): Promise<StatusInput['disk']> {
  const labels = [`${LABEL.managed}=true`, ...(server ? [`${LABEL.server}=${server}`] : [])];
  const images = await docker.listImages({ all: true, filters: { label: labels } });
  // Layers shared between releases are counted once per image here: an upper bound, as `docker images` shows.
  return { images: images.length, bytes: images.reduce((n, i) => n + (i.Size ?? 0), 0) };
}

/** Each live release's cron jobs, from the store alone (so a stopped agent's status shows them too). */
function cronStatus(store: AgentStore, desired: StatusInput['desired'], releases: Release[], now: Date): CronStatus[] | undefined {
  const inSpec = new Set(desired?.spec.apps.map((a) => a.name) ?? []);
  try {
    return releases.flatMap((release) => {
      const scheduled = !desired || inSpec.has(release.app);
      return Object.entries(cronJobsOf(store.liveSnapshot(release)?.config)).map(([name, job]): CronStatus => {
        const last = store.cronRuns.last(release.app, name);
        return {
          app: release.app,
          name,
          schedule: job.schedule,
          timezone: job.timezone,
          lastRun: last ? { status: last.status, exitCode: last.exitCode, startedAt: last.startedAt, finishedAt: last.finishedAt } : null,
          nextRunAt: scheduled ? (nextRun(job.schedule, job.timezone, now)?.toISOString() ?? null) : null,
        };
      });
    });
  } catch {
    return undefined; // a database from before cron existed (read-only: not migrated)
  }
}

// Inspecting 200 apps' containers one after the other took 1.3 s (bench/agent-memory); a few at a
// time keeps the engine responsive for deploys running meanwhile.
const FACTS_CONCURRENCY = 8;

/** Restarts, memory cap and OOM kills of the live releases' containers (one that vanished meanwhile is left out). */
async function containerFacts(docker: Docker, containers: BerthContainer[], releases: Release[]): Promise<Record<string, ContainerFacts>> {
  const live = new Set(releases.map((r) => `${r.app}\0${r.deploymentId}`));
  const facts = await mapConcurrent(
    containers.filter((c) => live.has(`${c.app}\0${c.deploymentId}`)),
    FACTS_CONCURRENCY,
    async (c): Promise<[string, ContainerFacts] | null> => {
      try {
        const info = await docker.getContainer(c.id).inspect();
        const kills = await oomKills(docker, info);
        return [c.id, { restartCount: info.RestartCount ?? 0, memoryLimit: info.HostConfig?.Memory || null, oomKills: kills.length, lastOomKillAt: kills.at(-1)?.at ?? null }];
      } catch {
        return null; // removed since it was listed: the report shows it without these facts
      }
    },
  );
  return Object.fromEntries(facts.filter((f) => f !== null));
}

export async function gatherStatus(opts: GatherOptions): Promise<StatusReport> {
  let containers: BerthContainer[] | null = null;
  let disk: StatusInput['disk'] = null;
  let dockerError: string | undefined;
  let facts: Record<string, ContainerFacts> | undefined;
  const releases = opts.store.releases.all();
  try {
    containers = await listBerthContainers(opts.docker, { server: opts.agent.server });
    disk = await diskUsage(opts.docker, opts.agent.server);
    facts = await containerFacts(opts.docker, containers, releases);
  } catch (err) {
    dockerError = `cannot ask Docker: ${(err as Error).message.split('\n')[0]}`;
  }
  const now = new Date();
  const desired = opts.store.desired.get();
  const cron = cronStatus(opts.store, desired, releases, now);
  const cluster = await clusterStatus(opts.docker, desired?.spec.cluster);
  const clusterTasks = cluster?.swarmState === 'active' ? await clusterAppTasks(opts.docker, desired?.spec, releases) : undefined;
  return buildStatusReport({
    agent: opts.agent,
    connection: opts.connection,
    controlPlaneUrl: opts.controlPlaneUrl,
    desired,
    releases,
    deploys: opts.store.deploys.recent({ limit: 200 }),
    containers,
    ...(dockerError ? { dockerError } : {}),
    certs: opts.certs,
    lastReconcile: opts.store.reconcileRuns.last(1)[0] ?? null,
    disk,
    ...(cron ? { cron } : {}),
    ...(facts ? { containerFacts: facts } : {}),
    cluster,
    ...(clusterTasks ? { clusterTasks } : {}),
    now,
  });
}
