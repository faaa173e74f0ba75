// The cron scheduler: one node-cron task per job of each app's live release. A firing claims its
// slot in SQLite, then runs the job as a one-off container of the app's then-current release (its
// image, env, volumes and the build's caps: run-job.ts), killed at the job's timeout. A slot that
// fires while the job's previous run is still going is recorded as skipped. Run containers are the
// scheduler's alone (label berth.cron): after an agent restart the ones still running are adopted
// and waited for, so a restart neither loses a run's end nor runs a slot twice.
import type Docker from 'dockerode';
import cron, { type ScheduledTask } from 'node-cron';
import { newId } from '../../shared/ids.js';
import type { Logger } from '../../shared/logger.js';
import type { CronJobInfo, CronRunInfo } from '../../shared/protocol.js';
import { DEFAULT_CRON_TIMEOUT_S } from '../config/types.js';
import { makeMasker } from '../../shared/secret-mask.js';
import { oneLine } from '../../shared/util/index.js';
import { dockerMessageOf } from '../docker/errors.js';
import { LABEL } from '../docker/labels.js';
import type { ResourceLimits } from '../docker/limits.js';
import type { AgentStore, CronRunRecord } from '../store/index.js';
import { cronContainerName, jobTarget, OutputTail, readExitedRun, runEnd, RunStopped, runInfo, startRunContainer, type JobTarget, type RunEnd } from './run-job.js';
import { cronJobsOf, desiredJobs, diffSchedules, jobKey, nextRun, overlapDecision, slotOf, type ScheduledJob } from './schedule.js';
import { bestEffort } from '../../shared/util/index.js';
import { alreadyGone } from '../docker/errors.js';

export class CronError extends Error {
  override name = 'CronError';
  constructor(
    readonly code: 'not_found' | 'conflict' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

/** node-cron's default tolerance is 1 s: a busy event loop would silently miss a slot. */
const MISSED_TOLERANCE_MS = 30_000;

export interface CronDeps {
  docker: Docker;
  store: AgentStore;
  /** This agent's server name (the berth.server label of everything it creates). */
  server: string;
  logger: Logger;
  /** Apps in the desired state; null = none received yet (then nothing is stopped for lack of it). */
  desiredApps(): ReadonlySet<string> | null;
  /** The server's caps of one-off jobs (BERTH_BUILD_MEMORY / _CPUS) for apps whose config sets none; absent = uncapped. */
  defaultLimits?: ResourceLimits;
  /**
   * The overlay network a cluster app's runs attach to (its services' network), null for a
   * standalone app. A cluster app is in this agent's desired state only on the cluster's manager,
   * so its jobs run there, once per slot cluster-wide, from the live release's digest image.
   */
  clusterNetwork?: (app: string) => string | null;
}

interface Task {
  spec: ScheduledJob;
  task: ScheduledTask;
}

interface ActiveRun {
  id: string;
  app: string;
  job: string;
  startedAt: string;
  containerId: string | null;
  /** Set when it was stopped (timeout, app removed): recorded instead of the exit code. */
  stopReason: RunStopped | null;
  timer: NodeJS.Timeout | null;
  /** Stop it now (the container is killed); the reason is recorded. */
  stop(reason: RunStopped): void;
  done: Promise<void>;
}

export class CronScheduler {
  private readonly tasks = new Map<string, Task>();
  private readonly active = new Map<string, ActiveRun>();
  private readonly log: Logger;
  /** Aborted on close: stop waiting for runs (they keep running; the next start adopts them). */
  private readonly closing = new AbortController();
  private started = false;
  private closed = false;

  constructor(private readonly deps: CronDeps) {
    this.log = deps.logger;
  }

  /** Adopt the runs a previous agent process left behind, then schedule every job. */
  async start(): Promise<void> {
    await this.adopt();
    this.started = true;
    this.sync();
  }

  /**
   * Make the scheduled tasks match the live releases: after every deploy, rollback and desired-state
   * change. A removed job's task stops (a run of it that is going finishes); an app removed from the
   * desired state has its tasks stopped and its running runs killed.
   */
  sync(): void {
    if (!this.started || this.closed) return;
    const desiredApps = this.deps.desiredApps();
    const releases = this.deps.store.releases.all().map((r) => ({ app: r.app, config: this.deps.store.liveSnapshot(r)?.config ?? null }));
    const current = new Map([...this.tasks].map(([k, t]) => [k, t.spec]));
    const diff = diffSchedules(current, desiredJobs(releases, desiredApps));
    for (const key of diff.stop) {
      const t = this.tasks.get(key);
      this.tasks.delete(key);
      if (t) {
        void Promise.resolve(t.task.destroy()).catch(() => undefined);
        this.log.info({ app: t.spec.app, job: t.spec.job }, 'cron job unscheduled');
      }
    }
    for (const spec of diff.start) this.schedule(spec);
    if (desiredApps) {
      for (const run of this.active.values()) {
        if (!desiredApps.has(run.app)) run.stop(new RunStopped(`stopped: app ${run.app} was removed from this server`, 'failed'));
      }
    }
  }

  private schedule(spec: ScheduledJob): void {
    try {
      const task = cron.schedule(spec.schedule, (ctx) => this.fire(spec.app, spec.job, ctx.date), {
        name: `berth-${spec.app}-${spec.job}`,
        ...(spec.timezone ? { timezone: spec.timezone } : {}),
        missedExecutionTolerance: MISSED_TOLERANCE_MS,
        suppressMissedWarning: true,
      });
      task.on('execution:missed', (ctx) => this.log.warn({ app: spec.app, job: spec.job, slot: ctx.date?.toISOString() }, 'cron slot missed: the agent was busy'));
      this.tasks.set(jobKey(spec.app, spec.job), { spec, task });
      this.log.info({ app: spec.app, job: spec.job, schedule: spec.schedule, timezone: spec.timezone }, 'cron job scheduled');
    } catch (err) {
      // Validated when the config was loaded; a stored config from elsewhere must not stop the others.
      this.log.error({ err, app: spec.app, job: spec.job, schedule: spec.schedule }, 'could not schedule a cron job');
    }
  }

  /** A schedule slot fired. Never throws (it runs inside node-cron's timer). */
  private fire(app: string, job: string, at: Date): void {
    if (this.closed) return;
    try {
      const target = this.target(app, job);
      if (!target) return; // removed since: the next sync drops the task
      const scheduledAt = slotOf(at);
      const decision = overlapDecision(this.active.get(jobKey(app, job)));
      if (decision.action === 'skip') {
        const recorded = this.deps.store.cronRuns.insert({
          id: newId(),
          app,
          job,
          trigger: 'schedule',
          scheduledAt,
          status: 'skipped',
          deploymentId: target.release.deploymentId,
          container: null,
          timeoutS: target.job.timeoutS,
          reason: decision.reason,
        });
        if (recorded) this.log.info({ app, job, slot: scheduledAt }, `cron run skipped: ${decision.reason}`);
        return;
      }
      this.launch(app, job, target, 'schedule', scheduledAt);
    } catch (err) {
      this.log.error({ err, app, job }, 'cron firing failed');
    }
  }

  /** The job as the app's current release defines it, with what a run needs; null when it has no such job. */
  private target(app: string, job: string): JobTarget | null {
    const desiredApps = this.deps.desiredApps();
    if (desiredApps && !desiredApps.has(app)) return null;
    return jobTarget(this.deps.store, app, job, this.deps.defaultLimits, this.deps.clusterNetwork?.(app));
  }

  /** Record and start a run. null: a scheduled slot that was already claimed (never run twice). */
  private launch(app: string, job: string, target: JobTarget, trigger: 'schedule' | 'manual', scheduledAt: string | null): CronRunRecord | null {
    const { docker, store, server } = this.deps;
    const id = newId();
    const name = cronContainerName(app, job, id);
    const claimed = store.cronRuns.insert({ id, app, job, trigger, scheduledAt, status: 'running', deploymentId: target.release.deploymentId, container: name, timeoutS: target.job.timeoutS });
    if (!claimed) {
      this.log.info({ app, job, slot: scheduledAt }, 'cron slot already ran (claimed before a restart): not running it again');
      return null;
    }
    const record = store.cronRuns.get(id)!;
    const log = this.log.child({ app, job, run: id });
    const run = this.track(record, log);
    log.info({ trigger, slot: scheduledAt, image: target.release.image }, 'cron run started');
    run.done = (async () => {
      let containerId: string;
      try {
        containerId = await startRunContainer(docker, { name, app, job, server, target });
      } catch (err) {
        this.finishRun(run, { status: 'failed', exitCode: null, reason: `could not start the run: ${oneLine(dockerMessageOf(err))}`, outputTail: [] }, log);
        return;
      }
      await this.follow(run, record, containerId, log);
    })();
    return record;
  }

  /** Register a run as going (overlap, `cron ls`), with its deadline; the caller sets `done`. */
  private track(rec: CronRunRecord, log: Logger): ActiveRun {
    const timeoutS = rec.timeoutS ?? DEFAULT_CRON_TIMEOUT_S;
    const run: ActiveRun = {
      id: rec.id,
      app: rec.app,
      job: rec.job,
      startedAt: rec.startedAt,
      containerId: null,
      stopReason: null,
      timer: null,
      stop: (reason) => {
        run.stopReason ??= reason;
        if (run.containerId) void bestEffort(`killing cron container ${run.containerId}`, this.deps.docker.getContainer(run.containerId).kill(), { logger: this.deps.logger, ignore: alreadyGone });
      },
      done: Promise.resolve(),
    };
    const deadline = Date.parse(rec.startedAt) + timeoutS * 1000;
    run.timer = setTimeout(() => {
      log.info({ timeoutS }, 'cron run timed out: killing it');
      run.stop(new RunStopped(`killed after the timeout of ${timeoutS} s`, 'timed_out'));
    }, Math.max(0, deadline - Date.now()));
    this.active.set(jobKey(rec.app, rec.job), run);
    return run;
  }

  /** Wait for the run's container to exit (killing it when stopped), then record its end. */
  private async follow(run: ActiveRun, rec: CronRunRecord, containerId: string, log: Logger): Promise<void> {
    run.containerId = containerId;
    if (run.stopReason) run.stop(run.stopReason); // stopped while its container was being created
    try {
      await this.deps.docker.getContainer(containerId).wait({ abortSignal: this.closing.signal });
    } catch (err) {
      if (this.closing.signal.aborted) return; // the agent is stopping: the next start adopts the run
      log.warn({ err: dockerMessageOf(err) }, 'lost track of a cron run container');
    }
    await this.collect(run, rec, containerId, log);
  }

  private finishRun(run: ActiveRun, end: RunEnd, log: Logger): void {
    if (run.timer) clearTimeout(run.timer);
    if (this.active.get(jobKey(run.app, run.job)) === run) this.active.delete(jobKey(run.app, run.job));
    // The store is closed once the agent stopped: the next start adopts (or closes) the run instead.
    if (!this.deps.store.isOpen) return;
    try {
      this.deps.store.cronRuns.finish(run.id, end);
      log.info({ status: end.status, exitCode: end.exitCode, reason: end.reason }, 'cron run ended');
    } catch (err) {
      log.error({ err }, 'could not record the end of a cron run');
    }
  }

  /**
   * Runs a previous agent process left as running: a container still running is adopted (waited
   * for, killed at its deadline), one that ended meanwhile has its exit code and output recorded,
   * one that is gone is recorded as failed. Leftover stopped run containers are removed.
   */
  private async adopt(): Promise<void> {
    const { docker, store, server } = this.deps;
    const labels = [`${LABEL.managed}=true`, LABEL.cron, ...(server ? [`${LABEL.server}=${server}`] : [])];
    let containers: Docker.ContainerInfo[];
    try {
      containers = await docker.listContainers({ all: true, filters: { label: labels } });
    } catch (err) {
      this.log.warn({ err: dockerMessageOf(err) }, 'could not list cron containers to adopt; runs left by a previous start are closed');
      containers = [];
    }
    const byName = new Map(containers.map((c) => [(c.Names?.[0] ?? '').replace(/^\//, ''), c]));
    for (const rec of store.cronRuns.running()) {
      const c = rec.container ? byName.get(rec.container) : undefined;
      if (rec.container) byName.delete(rec.container);
      const log = this.log.child({ app: rec.app, job: rec.job, run: rec.id });
      if (!c) {
        store.cronRuns.finish(rec.id, { status: 'failed', exitCode: null, reason: 'the agent restarted and the run container is gone', outputTail: rec.outputTail });
        log.warn('cron run lost: its container is gone after an agent restart');
        continue;
      }
      const run = this.track(rec, log);
      if (c.State === 'running' || c.State === 'restarting' || c.State === 'paused') {
        log.info({ container: rec.container }, 'cron run adopted: still running after an agent restart');
        run.done = this.follow(run, rec, c.Id, log);
      } else {
        run.containerId = c.Id;
        await this.collect(run, rec, c.Id, log);
      }
    }
    // Containers of runs already recorded as ended (the agent stopped before removing them).
    for (const c of byName.values()) {
      if (c.State === 'running') {
        this.log.warn({ container: c.Names?.[0] }, 'a cron container without a running record is still running; left alone');
        continue;
      }
      await bestEffort(`removing cron container ${c.Id}`, docker.getContainer(c.Id).remove({ force: true }), { logger: this.deps.logger, ignore: alreadyGone });
    }
  }

  /** Record the end of a run whose container has exited (exit code, output tail from Docker's log), then remove it. */
  private async collect(run: ActiveRun, rec: CronRunRecord, containerId: string, log: Logger): Promise<void> {
    const { docker, store } = this.deps;
    const container = docker.getContainer(containerId);
    const live = store.isOpen ? store.releases.get(rec.app) : null;
    const env = store.isOpen ? ((rec.deploymentId ? store.releases.snapshot(rec.deploymentId)?.env : undefined) ?? (live?.deploymentId === rec.deploymentId ? live?.env : undefined) ?? {}) : {};
    const tail = new OutputTail(makeMasker(env));
    const exit = await readExitedRun(docker, container, tail, (err) => log.warn({ err }, 'could not read the end of a cron run'));
    this.finishRun(run, { ...runEnd(run.stopReason, exit, tail.get()), ...(exit.finishedAt ? { finishedAt: exit.finishedAt } : {}) }, log);
    await bestEffort(`removing cron container ${container.id}`, container.remove({ force: true }), { logger: this.deps.logger, ignore: alreadyGone });
  }

  /** The live release's jobs of an app, each with its last run, the run going on and the next run. */
  list(app: string): CronJobInfo[] {
    const release = this.deps.store.releases.get(app);
    const desiredApps = this.deps.desiredApps();
    if (!release || (desiredApps && !desiredApps.has(app))) return [];
    const jobs = cronJobsOf(this.deps.store.liveSnapshot(release)?.config);
    const now = new Date();
    return Object.entries(jobs)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, j]) => {
        const last = this.deps.store.cronRuns.last(app, name);
        const active = this.active.get(jobKey(app, name));
        const running = active ? this.deps.store.cronRuns.get(active.id) : null;
        const next = this.tasks.has(jobKey(app, name)) ? nextRun(j.schedule, j.timezone, now) : null;
        return {
          app,
          name,
          schedule: j.schedule,
          command: j.command,
          timezone: j.timezone,
          timeoutS: j.timeoutS,
          lastRun: last ? runInfo(last) : null,
          running: running ? runInfo(running) : null,
          nextRunAt: next?.toISOString() ?? null,
        };
      });
  }

  /** `berth cron run`: start a run of the job now (not while one is going). Returns it, running. */
  runNow(app: string, job: string): CronRunInfo {
    const target = this.target(app, job);
    if (!target) {
      const jobs = this.list(app).map((j) => j.name);
      throw new CronError(
        'not_found',
        !this.deps.store.releases.get(app)
          ? `app "${app}" has no release on this server yet: deploy it first`
          : `app "${app}" has no cron job "${job}" in its live release${jobs.length ? ` (jobs: ${jobs.join(', ')})` : ' (it has no cron jobs)'}`,
      );
    }
    const going = this.active.get(jobKey(app, job));
    if (going) throw new CronError('conflict', `cron job "${job}" of "${app}" is already running (run ${going.id}, started ${going.startedAt})`);
    const record = this.launch(app, job, target, 'manual', null);
    if (!record) throw new CronError('failed', `could not start cron job "${job}"`);
    return runInfo(record);
  }

  get(app: string, runId: string): CronRunInfo {
    const r = this.deps.store.cronRuns.get(runId);
    if (!r || r.app !== app) throw new CronError('not_found', `app "${app}" has no cron run "${runId}" on this server`);
    return runInfo(r);
  }

  runs(app: string, opts: { job?: string; limit?: number } = {}): CronRunInfo[] {
    return this.deps.store.cronRuns.list(app, opts).map(runInfo);
  }

  /** Wait for every run this process is tracking (tests; never needed to stop: runs outlive the agent). */
  async idle(): Promise<void> {
    await Promise.all([...this.active.values()].map((r) => r.done));
  }

  /**
   * Stop scheduling. Runs that are going keep running in Docker: the next agent start adopts them
   * and records their end (an upgrade or restart never kills a job halfway).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    for (const r of this.active.values()) if (r.timer) clearTimeout(r.timer);
    for (const t of this.tasks.values()) void Promise.resolve(t.task.destroy()).catch(() => undefined);
    this.tasks.clear();
  }
}
