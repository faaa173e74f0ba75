// `berth deploy` (optionally waiting and streaming the log live; `--cancel` stops the app's
// unfinished deploys), `berth rollback APP [ID]`, `berth deployments APP`, `berth deployments
// logs ID [-f]` and `berth deployments cancel ID`. Live output comes from the control plane's Server-Sent Events
// stream of the deployment; a broken stream is resumed after the last line seen.
import type { Command } from 'commander';
import { DEPLOYMENT_EVENT, type CancelResult, type DeploymentDetails, type DeploymentInfo, type DeploymentLogs } from '../../shared/api.js';
import { isTerminal } from '../../shared/deploy-status.js';
import { sleep } from '../../shared/util/index.js';
import { ApiClient, seg, StreamUnavailable } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { tty } from '../terminal-safe.js';
import { output, printTable } from '../output.js';
import { readSse } from '../sse.js';

type LogLine = DeploymentLogs['lines'][number];

export interface FollowOptions {
  /** Print nothing while following (--json prints one document at the end). */
  quiet: boolean;
  timeoutMs: number;
  /** Log lines with seq ≤ this were already shown. */
  after?: number;
  /** Collect the lines (for --json). */
  collect?: LogLine[];
}

const describe = (d: DeploymentInfo) => `${d.status}${d.reason && isTerminal(d.status) ? ` (${d.reason})` : ''}`;

/**
 * Follow a deployment until it ends: log lines on stdout as they arrive, phase changes as `==> phase`
 * on stderr. Returns the finished deployment.
 */
export async function followDeployment(client: ApiClient, id: string, opts: FollowOptions): Promise<DeploymentInfo> {
  let after = opts.after ?? -1;
  let lastStatus = '';
  const deadline = Date.now() + opts.timeoutMs;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), opts.timeoutMs);
  let retryMs = 250;
  try {
    for (;;) {
      try {
        const body = await client.openStream(`/api/deployments/${seg(id)}/events?after=${after}`, abort.signal);
        retryMs = 250;
        for await (const msg of readSse(body)) {
          if (msg.event === DEPLOYMENT_EVENT.log) {
            const line = JSON.parse(msg.data) as LogLine;
            if (line.seq <= after) continue;
            after = line.seq;
            opts.collect?.push(line);
            if (!opts.quiet) process.stdout.write(tty`${line.text}\n`);
          } else if (msg.event === DEPLOYMENT_EVENT.deployment || msg.event === DEPLOYMENT_EVENT.end) {
            const d = JSON.parse(msg.data) as DeploymentInfo;
            if (d.status !== lastStatus) {
              lastStatus = d.status;
              if (!opts.quiet) process.stderr.write(tty`==> ${describe(d)}\n`);
            }
            if (msg.event === DEPLOYMENT_EVENT.end) return d;
          }
        }
        // The stream ended without `end` (the control plane restarted): resume after the last line.
      } catch (err) {
        if (abort.signal.aborted) break;
        if (!(err instanceof StreamUnavailable) && !(err instanceof TypeError)) throw err;
        if (!opts.quiet) process.stderr.write(tty`berth: lost the log stream (${err.message}); reconnecting…\n`);
      }
      if (Date.now() + retryMs > deadline) break;
      await sleep(retryMs);
      retryMs = Math.min(retryMs * 2, 5_000);
    }
  } finally {
    clearTimeout(timer);
  }
  throw new CliError(`gave up waiting for deployment ${id} after ${Math.round(opts.timeoutMs / 1000)} s (it is ${lastStatus || 'unknown'})`);
}

export function timeoutOption(raw: string): number {
  const ms = Number(raw) * 1000;
  if (!Number.isFinite(ms) || ms <= 0) throw new CliError('--timeout must be a positive number of seconds');
  return ms;
}

/** A deployment that did not end `done` is a failure for commands that wait for it. */
export function failUnlessDone(d: DeploymentInfo): void {
  if (d.status !== 'done') throw new CliError(`deployment ${d.id} ${d.status}${d.reason ? `: ${d.reason}` : ''}`);
}

/** Cancel deployments one by one; fails unless every one of them ended up stopped. */
async function cancelAll(client: ApiClient, ids: string[], json: boolean): Promise<void> {
  const results: CancelResult[] = [];
  for (const id of ids) results.push(await client.post<CancelResult>(`/api/deployments/${seg(id)}/cancel`, {}));
  output(json, results, (list) => {
    for (const r of list) {
      if (r.cancelPending) process.stdout.write(tty`deployment ${r.id}: cancel requested; it is still ${r.status} (the agent has not confirmed yet)\n`);
      else if (r.status === 'done') process.stdout.write(tty`deployment ${r.id} had already switched traffic and is live (done)\n`);
      else process.stdout.write(tty`deployment ${r.id} ${r.status}\n`);
    }
  });
  const notStopped = results.filter((r) => r.cancelPending || r.status === 'done');
  if (notStopped.length > 0) {
    const r = notStopped[0]!;
    throw new CliError(r.cancelPending ? `deployment ${r.id} is still ${r.status}: the agent has not confirmed the cancel yet` : `deployment ${r.id} could not be cancelled: it had already gone live`);
  }
}

type Created = DeploymentInfo & { agentConnected?: boolean };

export function registerDeployCommands(program: Command): void {
  registerDeploy(program);
  const deployments = registerDeploymentList(program);
  registerDeploymentCancel(deployments);
  registerRollback(program);
  registerDeploymentLogs(deployments);
}

function registerDeploy(program: Command): void {
  program
    .command('deploy')
    .description('deploy an app: the head of its branch, or --commit SHA (--cancel: stop its queued or running deploy)')
    .argument('<app>')
    .option('--commit <sha>', 'deploy this commit instead of the branch head')
    .option('--wait', 'stream the build/deploy log and exit 0 only when the new version serves traffic')
    .option('--cancel', "cancel the app's queued or running deployments instead of deploying")
    .option('--timeout <seconds>', 'with --wait: give up after this many seconds', '1800')
    .option('--json', 'print JSON (the deployment; with --wait, once it has ended; with --cancel, the cancelled deployments)')
    .action(async (app: string, opts: { commit?: string; wait?: boolean; cancel?: boolean; timeout: string; json?: boolean }) => {
      const timeoutMs = timeoutOption(opts.timeout);
      const client = new ApiClient(loadClientConfig());
      if (opts.cancel) {
        if (opts.commit || opts.wait) throw new CliError('--cancel cannot be combined with --commit or --wait');
        await cancelAppDeploys(client, app, !!opts.json);
        return;
      }
      const created = await client.post<Created>(`/api/apps/${seg(app)}/deploy`, opts.commit ? { commit: opts.commit } : {});
      if (!opts.wait) {
        output(!!opts.json, created, (d) => {
          process.stdout.write(tty`deployment ${d.id} of ${d.app} queued.\n`);
          if (d.agentConnected === false) process.stdout.write("the app's server is offline: the deploy runs when its agent reconnects.\n");
          process.stdout.write(tty`follow it with: berth deployments logs ${d.id} -f\n`);
        });
        return;
      }
      if (!opts.json) {
        process.stderr.write(tty`deployment ${created.id} of ${created.app}\n`);
        if (created.agentConnected === false) process.stderr.write("the app's server is offline: waiting for its agent to reconnect…\n");
      }
      const final = await followDeployment(client, created.id, { quiet: !!opts.json, timeoutMs });
      output(!!opts.json, final, (d) => {
        if (d.status === 'done') process.stderr.write(tty`deployment ${d.id} is live (commit ${d.commit?.slice(0, 12) ?? '?'}).\n`);
      });
      failUnlessDone(final);
    });
}

/** `berth deploy APP --cancel`: every unfinished deployment of the app, oldest first. */
async function cancelAppDeploys(client: ApiClient, app: string, json: boolean): Promise<void> {
  const list = await client.get<DeploymentInfo[]>(`/api/apps/${seg(app)}/deployments`);
  const unfinished = list.filter((d) => !isTerminal(d.status));
  if (unfinished.length === 0) throw new CliError(`app ${app} has no queued or running deployment`);
  // Oldest first: the running one, then those queued behind it.
  await cancelAll(client, unfinished.reverse().map((d) => d.id), json);
}

function registerDeploymentList(program: Command): Command {
  return program
    .command('deployments')
    .description("list an app's deployments, newest first (or: berth deployments logs ID [-f])")
    .argument('[app]')
    .option('--json', 'print JSON')
    .option('--limit <n>', 'only the newest N deployments (1-1000)')
    .action(async (app: string | undefined, opts: { json?: boolean; limit?: string }) => {
      if (!app) throw new CliError('missing app: berth deployments APP, or berth deployments logs ID [-f]');
      if (opts.limit !== undefined && !/^(?:[1-9]\d{0,2}|1000)$/.test(opts.limit)) throw new CliError(`invalid --limit "${opts.limit}": must be a whole number from 1 to 1000`);
      const client = new ApiClient(loadClientConfig());
      const query = opts.limit !== undefined ? `?limit=${opts.limit}` : '';
      const list = await client.get<DeploymentInfo[]>(`/api/apps/${seg(app)}/deployments${query}`);
      output(!!opts.json, list, (l) =>
        printTable(
          l.map((d) => ({ ...d, commit: d.commit?.slice(0, 12) ?? null, message: d.commitMessage ? shorten(d.commitMessage, 50) : null })),
          ['id', 'status', 'commit', 'message', 'trigger', 'rollbackOf', 'createdAt', 'finishedAt', 'reason'],
        ),
      );
    });
}

function registerDeploymentCancel(deployments: Command): void {
  deployments
    .command('cancel')
    .description('cancel a queued or running deployment (one that has already switched traffic stays live)')
    .argument('<id>', 'deployment id (from berth deployments APP)')
    .option('--json', 'print JSON: [the deployment, with cancelPending]')
    .action(async (id: string, opts: { json?: boolean }) => {
      await cancelAll(new ApiClient(loadClientConfig()), [id], !!opts.json);
    });
}

function registerRollback(program: Command): void {
  program
    .command('rollback')
    .description('bring back a previous good release (its image, config and env) without rebuilding: the one before the live one, or DEPLOYMENT_ID')
    .argument('<app>')
    .argument('[deployment-id]', 'a deployment that went live (from berth deployments APP)')
    .option('--no-wait', 'return once the rollback is queued instead of following it until the old release serves')
    .option('--timeout <seconds>', 'give up waiting after this many seconds', '600')
    .option('--json', 'print JSON (the deployment; once it has ended unless --no-wait)')
    .action(async (app: string, id: string | undefined, opts: { wait: boolean; timeout: string; json?: boolean }) => {
      const timeoutMs = timeoutOption(opts.timeout);
      const client = new ApiClient(loadClientConfig());
      const created = await client.post<Created>(`/api/apps/${seg(app)}/rollback`, id ? { deploymentId: id } : {});
      if (!opts.wait) {
        output(!!opts.json, created, (d) => {
          process.stdout.write(tty`rollback ${d.id} of ${d.app} to the release of deployment ${d.rollbackOf ?? '?'} queued.\n`);
          if (d.agentConnected === false) process.stdout.write("the app's server is offline: the rollback runs when its agent reconnects.\n");
          process.stdout.write(tty`follow it with: berth deployments logs ${d.id} -f\n`);
        });
        return;
      }
      if (!opts.json) {
        process.stderr.write(tty`rollback ${created.id} of ${created.app} to the release of deployment ${created.rollbackOf ?? '?'} (commit ${created.commit?.slice(0, 12) ?? '?'})\n`);
        if (created.agentConnected === false) process.stderr.write("the app's server is offline: waiting for its agent to reconnect…\n");
      }
      const final = await followDeployment(client, created.id, { quiet: !!opts.json, timeoutMs });
      output(!!opts.json, final, (d) => {
        if (d.status === 'done') process.stderr.write(tty`rolled back: the release of deployment ${d.rollbackOf ?? '?'} is live (commit ${d.commit?.slice(0, 12) ?? '?'}).\n`);
      });
      failUnlessDone(final);
    });
}

function registerDeploymentLogs(deployments: Command): void {
  deployments
    .command('logs')
    .description("a deployment's full log; with -f, follow it live until it ends (exit non-zero unless it went live)")
    .argument('<id>', 'deployment id (from berth deployments APP)')
    .option('-f, --follow', 'stream new lines and phase changes until the deployment ends')
    .option('--timeout <seconds>', 'with -f: give up after this many seconds', '1800')
    .option('--json', 'print JSON: {deployment, lines} (with -f, once the deployment has ended)')
    .action(async (id: string, opts: { follow?: boolean; timeout: string; json?: boolean }) => {
      const timeoutMs = timeoutOption(opts.timeout);
      const client = new ApiClient(loadClientConfig());
      if (opts.follow) {
        const lines: LogLine[] = [];
        const final = await followDeployment(client, id, { quiet: !!opts.json, timeoutMs, collect: lines });
        if (opts.json) output(true, { deployment: final, lines }, () => {});
        failUnlessDone(final);
        return;
      }
      await printFullLog(client, id, !!opts.json);
    });
}

/** The whole log of a deployment, page by page, then its status. */
async function printFullLog(client: ApiClient, id: string, json: boolean): Promise<void> {
  const details = await client.get<DeploymentDetails>(`/api/deployments/${seg(id)}`);
  const lines: LogLine[] = [];
  for (let after = -1; ; ) {
    const page = await client.get<DeploymentLogs>(`/api/deployments/${seg(id)}/logs?after=${after}`);
    lines.push(...page.lines);
    if (page.lines.length === 0) break;
    after = page.lines[page.lines.length - 1]!.seq;
  }
  output(json, { deployment: details, lines }, (r) => {
    for (const l of r.lines) process.stdout.write(tty`${l.text}\n`);
    process.stderr.write(tty`==> ${describe(r.deployment)}\n`);
  });
}

/** At most `max` characters, "…" when cut: a table row stays one readable line. */
function shorten(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

/** `abc123def456 "Fix the login form" (deployment ID)`: a deployment's commit with its subject when known. */
export function describeCommit(d: DeploymentInfo): string {
  const sha = d.commit?.slice(0, 12) ?? '?';
  return `${sha}${d.commitMessage ? ` "${d.commitMessage}"` : ''} (deployment ${d.id})`;
}
