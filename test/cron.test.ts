// Cron jobs: the pure parts (next run, overlap, schedule diffing, slot claims) as unit tests, then
// a real control plane + agent + Docker + Git: scheduled and manual runs in containers of the
// current release with the app's env and volume, timeouts, skipped overlaps, invalid schedules
// refused at deploy, schedules following deploys, and runs surviving an agent restart.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import pino from 'pino';
import { CronScheduler } from '../agent/cron/index.js';
import { desiredJobs, diffSchedules, nextRun, overlapDecision, slotOf, cronJobsOf, type ScheduledJob } from '../agent/cron/schedule.js';
import type { StatusReport } from '../agent/status/report.js';
import { AgentStore } from '../agent/store/index.js';
import type { CronJobInfo, CronRunInfo, DeploymentInfo } from '../shared/api.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually } from './helpers/http.js';
import { Stack } from './helpers/stack.js';
import { makeTmpDir } from './helpers/tmp.js';

const job = (app: string, name: string, schedule: string, timezone: string | null = null): ScheduledJob => ({ app, job: name, schedule, timezone });

describe('cron: next run', () => {
  it('is the next whole minute for every-minute, strictly after the given time', () => {
    assert.equal(nextRun('* * * * *', 'UTC', new Date('2024-03-09T12:00:30Z'))?.toISOString(), '2024-03-09T12:01:00.000Z');
    assert.equal(nextRun('* * * * *', 'UTC', new Date('2024-03-09T12:00:00Z'))?.toISOString(), '2024-03-09T12:01:00.000Z');
  });

  it('follows the time zone, daylight saving included', () => {
    // 03:00 in Berlin is 02:00 UTC in winter (CET) and 01:00 UTC in summer (CEST).
    assert.equal(nextRun('0 3 * * *', 'Europe/Berlin', new Date('2024-03-09T12:00:00Z'))?.toISOString(), '2024-03-10T02:00:00.000Z');
    assert.equal(nextRun('0 3 * * *', 'Europe/Berlin', new Date('2024-07-01T12:00:00Z'))?.toISOString(), '2024-07-02T01:00:00.000Z');
    assert.equal(nextRun('0 3 * * *', 'UTC', new Date('2024-07-01T12:00:00Z'))?.toISOString(), '2024-07-02T03:00:00.000Z');
    // Weekdays only, every 15 minutes 9-17 in New York: from Saturday it is Monday 09:00 EDT.
    assert.equal(nextRun('*/15 9-17 * * 1-5', 'America/New_York', new Date('2024-03-09T12:00:00Z'))?.toISOString(), '2024-03-11T13:00:00.000Z');
  });

  it('handles month ends and leap days, and is null for a schedule that never fires', () => {
    assert.equal(nextRun('0 0 L * *', 'UTC', new Date('2024-02-10T00:00:00Z'))?.toISOString(), '2024-02-29T00:00:00.000Z');
    assert.equal(nextRun('0 0 29 2 *', 'UTC', new Date('2024-03-01T00:00:00Z'))?.toISOString(), '2028-02-29T00:00:00.000Z');
    assert.equal(nextRun('0 0 31 2 *', 'UTC', new Date('2024-03-01T00:00:00Z')), null);
    assert.equal(nextRun('61 * * * *', 'UTC'), null, 'invalid');
    assert.equal(nextRun('0 * * * * *', 'UTC'), null, 'a seconds field is not a 5-field schedule');
  });

  it('puts every firing in its minute slot', () => {
    assert.equal(slotOf(new Date('2024-03-09T12:00:00.950Z')), '2024-03-09T12:00:00.000Z');
    assert.equal(slotOf(new Date('2024-03-09T12:00:59.999Z')), '2024-03-09T12:00:00.000Z');
  });
});

describe('cron: overlap and schedule changes', () => {
  it('skips a slot while the previous run is going, naming it', () => {
    assert.deepEqual(overlapDecision(undefined), { action: 'run' });
    assert.deepEqual(overlapDecision(null), { action: 'run' });
    const d = overlapDecision({ id: 'run12345', startedAt: '2024-03-09T12:00:00.000Z' });
    assert.equal(d.action, 'skip');
    assert.match((d as { reason: string }).reason, /previous run \(run12345, started 2024-03-09T12:00:00.000Z\) was still running/);
  });

  it('reads jobs from a stored release config, ignoring what is not a valid job', () => {
    assert.deepEqual(cronJobsOf(null), {});
    assert.deepEqual(cronJobsOf({ processes: {} }), {}, 'a release from before cron');
    assert.deepEqual(
      cronJobsOf({ cron: { nightly: { schedule: '0 3 * * *', command: 'x', timezone: null, timeoutS: 60 }, Bad: { schedule: '* * * * *', command: 'x' }, broken: { schedule: '99 * * * *', command: 'x' } } }),
      { nightly: { schedule: '0 3 * * *', command: 'x', timezone: null, timeoutS: 60 } },
    );
  });

  it('derives the jobs of every live release still in the desired state', () => {
    const releases = [
      { app: 'shop', config: { cron: { nightly: { schedule: '0 3 * * *', command: 'a', timezone: 'UTC', timeoutS: 60 } } } },
      { app: 'blog', config: { cron: { ping: { schedule: '*/5 * * * *', command: 'b', timezone: null, timeoutS: 60 } } } },
    ];
    assert.deepEqual([...desiredJobs(releases, null).keys()].sort(), ['blog/ping', 'shop/nightly'], 'no desired state yet: the releases decide');
    assert.deepEqual([...desiredJobs(releases, new Set(['shop'])).keys()], ['shop/nightly'], 'a removed app has no jobs');
  });

  it('diffs schedules on a deploy: new jobs start, removed ones stop, a changed schedule restarts, the rest stays', () => {
    const current = new Map([
      ['shop/nightly', job('shop', 'nightly', '0 3 * * *')],
      ['shop/old', job('shop', 'old', '* * * * *')],
      ['shop/report', job('shop', 'report', '0 6 * * *', 'UTC')],
      ['blog/ping', job('blog', 'ping', '*/5 * * * *')],
    ]);
    const desired = new Map([
      ['shop/nightly', job('shop', 'nightly', '0 3 * * *')],
      ['shop/report', job('shop', 'report', '0 6 * * *', 'Europe/Berlin')],
      ['shop/fresh', job('shop', 'fresh', '0 0 * * 0')],
      ['blog/ping', job('blog', 'ping', '*/10 * * * *')],
    ]);
    const diff = diffSchedules(current, desired);
    assert.deepEqual(diff.keep, ['shop/nightly']);
    assert.deepEqual(diff.stop.sort(), ['blog/ping', 'shop/old', 'shop/report']);
    assert.deepEqual(diff.start.map((j) => `${j.app}/${j.job} ${j.schedule} ${j.timezone}`).sort(), ['blog/ping */10 * * * * null', 'shop/fresh 0 0 * * 0 null', 'shop/report 0 6 * * * Europe/Berlin']);
    const same = diffSchedules(desired, desired);
    assert.equal(same.start.length + same.stop.length, 0, 'a deploy that changes no schedule touches no task');
  });
});

describe('cron: run records', () => {
  it('claims each schedule slot once, so a restarted agent never runs a slot twice', () => {
    const dir = makeTmpDir('cron-store-');
    let store = AgentStore.open(dir);
    const slot = { app: 'shop', job: 'nightly', trigger: 'schedule' as const, scheduledAt: '2024-03-09T03:00:00.000Z', status: 'running' as const, deploymentId: 'dep00001', container: 'c1', timeoutS: 60 };
    assert.equal(store.cronRuns.insert({ ...slot, id: 'run00001' }), true);
    store.close();
    store = AgentStore.open(dir); // an agent restart
    assert.equal(store.cronRuns.insert({ ...slot, id: 'run00002' }), false, 'the same slot again is refused');
    assert.equal(store.cronRuns.insert({ ...slot, id: 'run00003', status: 'skipped', container: null }), false, 'also as a skip');
    assert.equal(store.cronRuns.insert({ ...slot, id: 'run00004', scheduledAt: '2024-03-10T03:00:00.000Z' }), true, 'the next slot runs');
    for (const id of ['man00001', 'man00002']) assert.equal(store.cronRuns.insert({ ...slot, id, trigger: 'manual', scheduledAt: null }), true, 'manual runs have no slot');
    assert.deepEqual(store.cronRuns.running().map((r) => r.id).sort(), ['man00001', 'man00002', 'run00001', 'run00004']);

    assert.equal(store.cronRuns.finish('run00001', { status: 'failed', exitCode: 3, reason: 'exited with code 3', outputTail: ['a', 'b'] }), true);
    assert.equal(store.cronRuns.finish('run00001', { status: 'succeeded', exitCode: 0, outputTail: [] }), false, 'an end is recorded once');
    const r = store.cronRuns.get('run00001')!;
    assert.equal(r.status, 'failed');
    assert.equal(r.exitCode, 3);
    assert.deepEqual(r.outputTail, ['a', 'b']);
    assert.ok(r.finishedAt);
    assert.equal(store.cronRuns.list('shop', { job: 'nightly' }).length, 4);
    assert.equal(store.cronRuns.list('blog').length, 0);
    store.close();
  });
});

describe('cron: resource caps of a run', () => {
  it("runs with the app's build caps (build.memory / build.cpus), else the server's default caps of one-off jobs", async () => {
    const MB = 1024 * 1024;
    const docker = await ensureDocker();
    const image = await ensureBusyboxImage();
    const store = AgentStore.open(makeTmpDir('cron-caps-'));
    let desired: Set<string> | null = null;
    const scheduler = new CronScheduler({
      docker,
      store,
      server: `caps${process.pid}`,
      logger: pino({ level: 'silent' }),
      desiredApps: () => desired,
      defaultLimits: { memory: 96 * MB, cpus: 0.5 },
    });
    const apps = { capped: { memory: 64 * MB, cpus: null }, plain: { memory: null, cpus: null } };
    for (const [app, build] of Object.entries(apps)) {
      const deploymentId = `${app}-d1`;
      const config = { build, cron: { hold: { schedule: '0 0 1 1 *', command: 'sleep 60', timezone: null, timeoutS: 120 } } };
      store.releases.recordSnapshot({ deploymentId, app, image, commit: null, config, processes: [], staticRoot: null, containerPort: null, env: {} });
      store.releases.activate({ app, deploymentId, image, containerId: '', hostPort: 0, containerPort: null, commit: null });
    }
    try {
      await scheduler.start();
      const hostConfigOf = async (app: string) => {
        const run = scheduler.runNow(app, 'hold');
        const name = store.cronRuns.get(run.id)!.container!;
        const info = await eventually(() => docker.getContainer(name).inspect(), (i) => i.State.Running, 30_000);
        return info.HostConfig;
      };
      const capped = await hostConfigOf('capped');
      assert.equal(capped.Memory, 64 * MB, "the app's build.memory");
      assert.equal(capped.MemorySwap, 64 * MB, 'no swap on top of the cap');
      assert.equal(capped.NanoCpus, 0.5e9, "the server's default CPU cap: the app sets none");
      const plain = await hostConfigOf('plain');
      assert.equal(plain.Memory, 96 * MB, "the server's default memory cap");
      assert.equal(plain.NanoCpus, 0.5e9);
    } finally {
      desired = new Set(); // the apps are gone: their runs are killed and recorded
      scheduler.sync();
      await scheduler.idle();
      scheduler.close();
      store.close();
    }
  });
});

// ---- end to end --------------------------------------------------------------------------------

const APP = 'cron-app';

const berthYml = (version: string, cron: string) => `build:
  image: dockerfile
processes:
  web: exec httpd -f -p $PORT -h /www
volumes:
  data: { target: /data }
cron:
${cron}`;

// tick: every minute; prints its release, whether it sees the env var (and the var itself, which
// must come out masked), and appends to a file on the volume.
const V1_JOBS = `  tick:
    schedule: "* * * * *"
    command: echo "release=$(cat /www/version.txt)"; [ "$GREETING" = "hello-cron-secret" ] && echo env-ok; echo "secret=$GREETING"; echo x >> /data/ticks; echo "ticks=$(wc -l < /data/ticks)"
  slow:
    schedule: "* * * * *"
    command: echo slow-start; sleep 75
  hang:
    schedule: "0 0 1 1 *"
    command: echo started-hanging; sleep 300
    timeout: 3s
  fail:
    schedule: "0 0 1 1 *"
    command: echo about-to-fail >&2; exit 3
  nap:
    schedule: "0 0 1 1 *"
    timezone: Europe/Berlin
    command: echo nap-start; sleep 8; echo nap-done
`;

const V2_JOBS = `  tick:
    schedule: "* * * * *"
    command: echo "release=$(cat /www/version.txt)"
  hang:
    schedule: "0 0 1 1 *"
    command: sleep 300
    timeout: 3s
  fresh:
    schedule: "30 4 * * *"
    command: echo fresh-job
  long:
    schedule: "0 0 1 1 *"
    command: sleep 300
`;

function dockerLines(args: string[]): string[] {
  return execFileSync('docker', args, { encoding: 'utf8' }).split('\n').filter(Boolean);
}

describe('cron jobs on a real server', () => {
  let stack: Stack;
  let repo: TestRepo;
  const jobs = () => berthJson<CronJobInfo[]>(['cron', 'ls', APP], stack.env);
  const runs = (name: string) => berthJson<CronRunInfo[]>(['cron', 'runs', APP, name, '--limit', '100'], stack.env);
  const cronContainers = (name?: string) =>
    dockerLines(['ps', '-q', '--filter', `label=berth.server=${stack.serverName}`, '--filter', `label=berth.app=${APP}`, '--filter', name ? `label=berth.cron=${name}` : 'label=berth.cron']);

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('cron');
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ 'berth.yml': berthYml('v1', V1_JOBS), Dockerfile: 'FROM berth-test/busybox:latest\nCOPY . /www\n', 'version.txt': 'v1\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    const env = await berth(['env', 'set', APP, 'GREETING=hello-cron-secret'], stack.env);
    assert.equal(env.code, 0, env.stderr);
    const res = await berth(['deploy', APP, '--wait'], stack.env);
    assert.equal(res.code, 0, `deploy failed: ${res.stderr}\n${stack.tail('agent.log')}`);
  });

  after(async () => {
    await stack?.destroy();
    try {
      execFileSync('docker', ['volume', 'rm', '-f', `berth-${APP}_data`], { stdio: 'ignore' });
    } catch {
      // another run's volume of the same name is not ours to worry about
    }
  });

  it('lists the jobs of the live release with schedule and next run', async () => {
    const list = await jobs();
    assert.deepEqual(list.map((j) => j.name), ['fail', 'hang', 'nap', 'slow', 'tick']);
    const tick = list.find((j) => j.name === 'tick')!;
    assert.equal(tick.schedule, '* * * * *');
    assert.equal(tick.timeoutS, 3600, 'default timeout 1 h');
    assert.ok(tick.nextRunAt && Date.parse(tick.nextRunAt) > Date.now() - 1000 && Date.parse(tick.nextRunAt) <= Date.now() + 61_000, `next run within a minute: ${tick.nextRunAt}`);
    assert.equal(new Date(tick.nextRunAt).getUTCSeconds(), 0);
    const nap = list.find((j) => j.name === 'nap')!;
    assert.equal(nap.timezone, 'Europe/Berlin');
    // 1 January 00:00 in Berlin is 23:00 UTC on 31 December.
    assert.match(nap.nextRunAt ?? '', /-12-31T23:00:00.000Z$/);
    assert.equal(list.find((j) => j.name === 'hang')!.timeoutS, 3);
    const human = await berth(['cron', 'ls', APP], stack.env);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^JOB\s+SCHEDULE\s+LASTRUN\s+RESULT\s+NEXTRUN\s+COMMAND$/m);
    assert.match(human.stdout, /tick\s+\* \* \* \* \*/);
  });

  it('fires on schedule in a container of the current release with the env and the volume, and skips a slot while the previous run is going', async () => {
    // A long run of "slow" (started by hand now, or by its schedule if a minute already passed
    // since the deploy) is still going at the next minute: that slot is skipped.
    const first = await berth(['cron', 'run', APP, 'slow', '--detach', '--json'], stack.env);
    if (first.code === 0) {
      const started = JSON.parse(first.stdout) as CronRunInfo;
      assert.equal(started.status, 'running');
      assert.equal(started.trigger, 'manual');
    } else {
      assert.match(first.stderr, /cron job "slow" of "cron-app" is already running/);
    }
    const again = await berth(['cron', 'run', APP, 'slow', '--detach'], stack.env);
    assert.notEqual(again.code, 0, 'a manual run while one is going is refused');
    assert.match(again.stderr, /already running \(run [a-z0-9]+, started /);

    const list = await eventually(jobs, (l) => {
      const tick = l.find((j) => j.name === 'tick');
      const slow = l.find((j) => j.name === 'slow');
      return tick?.lastRun?.trigger === 'schedule' && tick.lastRun.status !== 'running' && slow?.lastRun?.status === 'skipped';
    }, 100_000, 1000);
    const tick = list.find((j) => j.name === 'tick')!.lastRun!;
    assert.equal(tick.status, 'succeeded', JSON.stringify(tick));
    assert.equal(tick.exitCode, 0);
    assert.ok(tick.scheduledAt && new Date(tick.scheduledAt).getUTCSeconds() === 0, 'a scheduled run names its minute slot');
    assert.ok(tick.finishedAt && Date.parse(tick.finishedAt) >= Date.parse(tick.startedAt));
    assert.ok(tick.outputTail.includes('release=v1'), tick.outputTail.join('\n'));
    assert.ok(tick.outputTail.includes('env-ok'), 'the run sees the app env');
    assert.ok(tick.outputTail.includes('secret=***'), `env values are masked in the recorded output: ${tick.outputTail.join('|')}`);
    assert.ok(!tick.outputTail.join('\n').includes('hello-cron-secret'));
    const slow = list.find((j) => j.name === 'slow')!;
    assert.ok(slow.running, 'the long run is still going');
    assert.match(slow.lastRun!.reason ?? '', new RegExp(`previous run \\(${slow.running.id}, started`));
    assert.ok(slow.lastRun!.scheduledAt, 'the skipped slot is recorded with its minute');
    assert.equal(cronContainers('slow').length, 1, 'one slow container, not two');

    // The volume persists between runs: a manual run sees the file the scheduled one appended to.
    const scheduledTicks = Number(/^ticks=(\d+)$/m.exec(tick.outputTail.join('\n'))?.[1]);
    assert.ok(scheduledTicks >= 1);
    const manual = await berth(['cron', 'run', APP, 'tick'], stack.env);
    assert.equal(manual.code, 0, manual.stderr);
    const manualTicks = Number(/^ticks=(\d+)$/m.exec(manual.stdout)?.[1]);
    assert.ok(manualTicks > scheduledTicks, `the volume kept earlier runs' data: ${manual.stdout}`);
    assert.match(manual.stderr, /tick: succeeded \(exit 0\)/);
    const volume = JSON.parse(execFileSync('docker', ['volume', 'inspect', `berth-${APP}_data`], { encoding: 'utf8' })) as Array<{ Labels: Record<string, string> }>;
    assert.equal(volume[0]!.Labels['berth.managed'], 'true');
    assert.equal(cronContainers('tick').length, 0, 'finished run containers are removed');
  });

  it('records a failing run with its exit code and output, and the CLI exits non-zero', async () => {
    const res = await berth(['cron', 'run', APP, 'fail'], stack.env);
    assert.notEqual(res.code, 0);
    assert.match(res.stdout, /about-to-fail/);
    assert.match(res.stderr, /cron job fail of cron-app failed: exited with code 3/);
    const [last] = await runs('fail');
    assert.equal(last!.status, 'failed');
    assert.equal(last!.exitCode, 3);
    assert.deepEqual(last!.outputTail, ['about-to-fail']);
  });

  it('berth status on the server shows each job with its last result and next run, and the volume', async () => {
    const report = await berthJson<StatusReport>(['status', '--data', stack.agentData], stack.env);
    const app = report.apps.find((a) => a.name === APP)!;
    const fail = app.cron.find((j) => j.name === 'fail')!;
    assert.equal(fail.schedule, '0 0 1 1 *');
    assert.equal(fail.lastRun?.status, 'failed');
    assert.equal(fail.lastRun?.exitCode, 3);
    assert.match(fail.nextRunAt ?? '', /-01-01T00:00:00.000Z$/);
    assert.equal(app.cron.find((j) => j.name === 'nap')!.timezone, 'Europe/Berlin');
    assert.deepEqual(app.volumes, [{ name: 'data', target: '/data' }]);
    const human = await berth(['status', '--data', stack.agentData], stack.env);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^  cron +fail "0 0 1 1 \*": last failed \(exit 3\) \d+ s ago, next in \d+ d$/m);
    assert.match(human.stdout, /^  volume +data at \/data$/m);
  });

  it('kills a run that outlives its timeout and records it', async () => {
    const res = await berth(['cron', 'run', APP, 'hang', '--json'], stack.env);
    assert.notEqual(res.code, 0);
    const run = JSON.parse(res.stdout) as CronRunInfo;
    assert.equal(run.status, 'timed_out');
    assert.match(run.reason ?? '', /killed after the timeout of 3 s/);
    assert.deepEqual(run.outputTail, ['started-hanging']);
    assert.ok(Date.parse(run.finishedAt!) - Date.parse(run.startedAt) < 60_000, 'killed long before its sleep 300 ended');
    assert.match(res.stderr, /timed out/);
    assert.equal(cronContainers('hang').length, 0, 'the killed container is gone');
    const listed = (await jobs()).find((j) => j.name === 'hang')!;
    assert.equal(listed.lastRun?.status, 'timed_out');
  });

  it('keeps a run going across an agent restart, records its end once, and never runs a slot twice', async () => {
    const started = await berthJson<CronRunInfo>(['cron', 'run', APP, 'nap', '--detach'], stack.env);
    await eventually(async () => cronContainers('nap').length, (n) => n === 1, 10_000);
    await stack.stopAgent();
    try {
      assert.equal(cronContainers('nap').length, 1, 'the run goes on while the agent is down');
      const offline = await berth(['cron', 'ls', APP], stack.env);
      assert.notEqual(offline.code, 0);
      assert.match(offline.stderr, /offline: cron jobs run on its agent/);
    } finally {
      await stack.startAgent();
    }
    const done = await eventually(() => runs('nap'), (l) => l[0]?.status !== 'running', 40_000, 500);
    assert.equal(done.length, 1, 'one run, adopted, not a second one');
    assert.equal(done[0]!.id, started.id);
    assert.equal(done[0]!.status, 'succeeded', JSON.stringify(done[0]));
    assert.equal(done[0]!.exitCode, 0);
    assert.deepEqual(done[0]!.outputTail, ['nap-start', 'nap-done']);
    const slots = (await runs('tick')).filter((r) => r.trigger === 'schedule').map((r) => r.scheduledAt);
    assert.equal(new Set(slots).size, slots.length, `every slot ran at most once: ${slots.join(', ')}`);
  });

  it('refuses an invalid schedule at deploy time, naming the job, and keeps the live jobs', async () => {
    repo.commit({ 'berth.yml': berthYml('v1', `${V1_JOBS}  broken:\n    schedule: "61 * * * *"\n    command: echo never\n`) });
    const res = await berth(['deploy', APP, '--wait'], stack.env);
    assert.notEqual(res.code, 0);
    const [latest] = await berthJson<DeploymentInfo[]>(['deployments', APP], stack.env);
    assert.equal(latest!.status, 'failed');
    assert.match(latest!.reason ?? '', /cron\.broken\.schedule.*5-field cron schedule/);
    assert.deepEqual((await jobs()).map((j) => j.name), ['fail', 'hang', 'nap', 'slow', 'tick'], 'the live release keeps its jobs');
  });

  it('follows a deploy: removed jobs stop, new ones appear, runs use the new image', async () => {
    repo.commit({ 'berth.yml': berthYml('v2', V2_JOBS), 'version.txt': 'v2\n' });
    const res = await berth(['deploy', APP, '--wait'], stack.env);
    assert.equal(res.code, 0, `deploy failed: ${res.stderr}\n${stack.tail('agent.log')}`);
    const list = await jobs();
    assert.deepEqual(list.map((j) => j.name), ['fresh', 'hang', 'long', 'tick']);
    assert.ok(list.every((j) => j.nextRunAt), 'every job of the new release is scheduled');
    const gone = await berth(['cron', 'run', APP, 'slow'], stack.env);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /app "cron-app" has no cron job "slow" in its live release \(jobs: fresh, hang, long, tick\)/);
    const tick = await berth(['cron', 'run', APP, 'tick'], stack.env);
    assert.equal(tick.code, 0, tick.stderr);
    assert.match(tick.stdout, /^release=v2$/m, 'the new release image');
    const fresh = await berthJson<CronRunInfo>(['cron', 'run', APP, 'fresh'], stack.env);
    assert.equal(fresh.status, 'succeeded');
    assert.deepEqual(fresh.outputTail, ['fresh-job']);
  });

  it('brings back the jobs of the release a rollback restores', async () => {
    const res = await berth(['rollback', APP], stack.env);
    assert.equal(res.code, 0, `rollback failed: ${res.stderr}\n${stack.tail('agent.log')}`);
    assert.deepEqual((await jobs()).map((j) => j.name), ['fail', 'hang', 'nap', 'slow', 'tick']);
    const tick = await berth(['cron', 'run', APP, 'tick'], stack.env);
    assert.equal(tick.code, 0, tick.stderr);
    assert.match(tick.stdout, /^release=v1$/m, 'the restored release image');
    assert.match(tick.stdout, /^env-ok$/m, 'and its env');
  });

  it('gives clear errors for unknown apps, jobs and bad names', async () => {
    const noApp = await berth(['cron', 'ls', 'nope'], stack.env);
    assert.notEqual(noApp.code, 0);
    assert.match(noApp.stderr, /app "nope" does not exist/);
    const badJob = await berth(['cron', 'run', APP, 'Bad;Job'], stack.env);
    assert.notEqual(badJob.code, 0);
    assert.match(badJob.stderr, /invalid job name/);
    const badLimit = await berth(['cron', 'runs', APP, '--limit', 'lots'], stack.env);
    assert.match(badLimit.stderr, /--limit must be a whole number/);
  });

  it('stops the jobs of a removed app and kills its running runs', async () => {
    const long = await berth(['cron', 'run', APP, 'slow', '--detach'], stack.env);
    // (A scheduled run of "slow" may already be going: either way one is running now.)
    if (long.code !== 0) assert.match(long.stderr, /already running/);
    await eventually(async () => cronContainers('slow').length, (n) => n === 1, 10_000);
    const rm = await berth(['app', 'rm', APP], stack.env);
    assert.equal(rm.code, 0, rm.stderr);
    await eventually(async () => cronContainers().length, (n) => n === 0, 15_000);
  });
});
