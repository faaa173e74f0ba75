// `berth cron ls APP`, `berth cron run APP JOB`, `berth cron runs APP [JOB]`: an app's scheduled
// jobs (from `cron:` in berth.yml / `cronjobs:` in appliku.yml), run and recorded by its server's agent.
import type { Command } from 'commander';
import type { CronJobInfo, CronRunInfo } from '../../shared/api.js';
import { ApiClient, ApiRequestError, seg } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { tty } from '../terminal-safe.js';
import { output, printTable } from '../output.js';
import { sleep } from '../../shared/util/index.js';

const POLL_MS = 1_000;
/** While waiting for a run: how long the app's server may stay unreachable (an agent restart) before giving up. */
const OFFLINE_GIVE_UP_MS = 120_000;

/** One word or phrase for how a run went. */
export function describeRun(r: CronRunInfo): string {
  switch (r.status) {
    case 'running':
      return `running since ${r.startedAt}`;
    case 'succeeded':
      return 'succeeded (exit 0)';
    case 'failed':
      return r.exitCode !== null ? `failed (exit ${r.exitCode})` : `failed: ${r.reason ?? 'unknown reason'}`;
    case 'timed_out':
      return `timed out: ${r.reason ?? 'killed'}`;
    case 'skipped':
      return 'skipped (previous run still going)';
  }
}

function jobRows(jobs: CronJobInfo[]): Array<Record<string, unknown>> {
  return jobs.map((j) => ({
    job: j.name,
    schedule: j.timezone ? `${j.schedule} (${j.timezone})` : j.schedule,
    lastRun: j.running?.startedAt ?? j.lastRun?.startedAt ?? null,
    result: j.running ? describeRun(j.running) : j.lastRun ? describeRun(j.lastRun) : null,
    nextRun: j.nextRunAt,
    command: j.command.length > 60 ? `${j.command.slice(0, 57)}...` : j.command,
  }));
}

function positiveInt(raw: string, what: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new CliError(`${what} must be a whole number of at least 1`);
  return Number(raw);
}

/** Poll the run until it has ended. The server may be briefly unreachable (an agent restart): the run goes on there. */
async function waitForRun(client: ApiClient, app: string, run: CronRunInfo, quiet: boolean): Promise<CronRunInfo> {
  let offlineSince: number | null = null;
  for (;;) {
    await sleep(POLL_MS);
    try {
      const now = await client.get<CronRunInfo>(`/api/apps/${seg(app)}/cron/runs/${seg(run.id)}`);
      offlineSince = null;
      if (now.status !== 'running') return now;
    } catch (err) {
      // 503 (the agent is offline or restarting) or no answer at all: the run goes on on the server
      // (a restarted agent adopts it), so keep asking for a while.
      if (!(err instanceof ApiRequestError) || (err.status !== null && err.status !== 503)) throw err;
      if (offlineSince === null) {
        offlineSince = Date.now();
        if (!quiet) process.stderr.write(tty`berth: ${err.message}; still waiting for run ${run.id}…\n`);
      }
      if (Date.now() - offlineSince > OFFLINE_GIVE_UP_MS) {
        throw new CliError(`lost contact with the server of ${app} (${err.message}); run ${run.id} goes on there: see \`berth cron runs ${app} ${run.job}\``);
      }
    }
  }
}

export function registerCronCommands(program: Command): void {
  const cron = program
    .command('cron')
    .description("an app's cron jobs (`cron:` in berth.yml): list them, run one now, see past runs")
    .addHelpText(
      'after',
      `
Jobs come from the app config of the live release and run on the app's server, each run in a
one-off container of the current release with the app's env and volumes. A run still going when
its next slot comes makes that slot skipped; a run past its timeout (default 1 h) is killed.

Examples:
  berth cron ls shop
  berth cron run shop nightly
  berth cron runs shop nightly --limit 5`,
    );

  cron
    .command('ls')
    .description("list an app's cron jobs: schedule, last run and its result, next run")
    .argument('<app>')
    .option('--json', 'print JSON: an array of jobs ({name, schedule, timezone, command, timeoutS, lastRun, running, nextRunAt})')
    .action(async (app: string, opts: { json?: boolean }) => {
      const client = new ApiClient(loadClientConfig());
      const jobs = await client.get<CronJobInfo[]>(`/api/apps/${seg(app)}/cron`);
      output(!!opts.json, jobs, (list) => {
        if (list.length === 0) process.stdout.write(tty`app ${app} has no cron jobs in its live release (add them under "cron:" in berth.yml and deploy)\n`);
        else printTable(jobRows(list), ['job', 'schedule', 'lastRun', 'result', 'nextRun', 'command']);
      });
    });

  cron
    .command('run')
    .description('run a cron job now, wait for it to end and print the end of its output; exits non-zero when the job fails')
    .argument('<app>')
    .argument('<job>', 'job name from the app config')
    .option('--detach', 'return once the run has started instead of waiting for it')
    .option('--json', 'print JSON: the run ({id, job, status, exitCode, startedAt, finishedAt, reason, outputTail, …}); once it has ended unless --detach')
    .action(async (app: string, job: string, opts: { detach?: boolean; json?: boolean }) => {
      const client = new ApiClient(loadClientConfig());
      const started = await client.post<CronRunInfo>(`/api/apps/${seg(app)}/cron/${seg(job)}/run`, {});
      if (opts.detach) {
        output(!!opts.json, started, (r) => {
          process.stdout.write(tty`run ${r.id} of ${app} ${r.job} started.\nsee it with: berth cron runs ${app} ${r.job}\n`);
        });
        return;
      }
      if (!opts.json) process.stderr.write(tty`run ${started.id} of ${app} ${started.job} started; waiting for it to end…\n`);
      const final = await waitForRun(client, app, started, !!opts.json);
      output(!!opts.json, final, (r) => {
        for (const line of r.outputTail) process.stdout.write(tty`${line}\n`);
        process.stderr.write(tty`${app} ${r.job}: ${describeRun(r)}\n`);
      });
      if (final.status !== 'succeeded') {
        throw new CliError(`cron job ${final.job} of ${app} ${final.status === 'timed_out' ? 'timed out' : 'failed'}: ${final.reason ?? `exit code ${final.exitCode}`}`);
      }
    });

  cron
    .command('runs')
    .description("list an app's recent cron runs (or one job's), newest first")
    .argument('<app>')
    .argument('[job]', 'only this job')
    .option('--limit <n>', 'at most this many runs', '20')
    .option('--json', 'print JSON: an array of runs')
    .action(async (app: string, job: string | undefined, opts: { limit: string; json?: boolean }) => {
      const limit = positiveInt(opts.limit, '--limit');
      const client = new ApiClient(loadClientConfig());
      const query = new URLSearchParams({ limit: String(limit), ...(job ? { job } : {}) });
      const runs = await client.get<CronRunInfo[]>(`/api/apps/${seg(app)}/cron/runs?${query}`);
      output(!!opts.json, runs, (list) =>
        printTable(
          list.map((r) => ({ ...r, result: describeRun(r) })),
          ['id', 'job', 'trigger', 'startedAt', 'finishedAt', 'result'],
        ),
      );
    });
}
