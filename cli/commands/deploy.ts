// `berth deploy` (optionally waiting and streaming the log live) and `berth deployments`.
import type { Command } from 'commander';
import type { DeploymentInfo, DeploymentLogs } from '../../shared/api.js';
import { isTerminal } from '../../shared/deploy-status.js';
import { ApiClient, seg } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { output, printTable } from '../output.js';

const POLL_MS = 250;

/** Follow a deployment until it ends: print new log lines and phase changes as they arrive. */
export async function followDeployment(
  client: ApiClient,
  id: string,
  opts: { quiet: boolean; timeoutMs: number },
): Promise<DeploymentInfo> {
  let after = 0;
  let lastStatus = '';
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const { deployment, lines } = await client.get<DeploymentLogs>(`/api/deployments/${seg(id)}/logs?after=${after}`);
    for (const line of lines) {
      after = Math.max(after, line.seq);
      if (!opts.quiet) process.stdout.write(`${line.text}\n`);
    }
    if (deployment.status !== lastStatus) {
      lastStatus = deployment.status;
      if (!opts.quiet) process.stderr.write(`==> ${deployment.status}\n`);
    }
    // Keep reading while the last lines may still be arriving after the terminal status.
    if (isTerminal(deployment.status) && lines.length === 0) return deployment;
    if (Date.now() > deadline) throw new CliError(`gave up waiting for deployment ${id} after ${Math.round(opts.timeoutMs / 1000)} s (it is ${deployment.status})`);
    if (lines.length === 0) await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

export function registerDeployCommands(program: Command): void {
  program
    .command('deploy')
    .description('deploy an app: the head of its branch, or --commit SHA')
    .argument('<app>')
    .option('--commit <sha>', 'deploy this commit instead of the branch head')
    .option('--wait', 'stream the build/deploy log and exit 0 only when the new version serves traffic')
    .option('--timeout <seconds>', 'with --wait: give up after this many seconds', '1800')
    .option('--json', 'print JSON (the deployment; with --wait, once it has ended)')
    .action(async (app: string, opts: { commit?: string; wait?: boolean; timeout: string; json?: boolean }) => {
      const client = new ApiClient(loadClientConfig());
      const created = await client.post<DeploymentInfo & { agentConnected?: boolean }>(`/api/apps/${seg(app)}/deploy`, opts.commit ? { commit: opts.commit } : {});
      if (!opts.wait) {
        output(!!opts.json, created, (d) => {
          process.stdout.write(`deployment ${d.id} of ${d.app} queued.\n`);
          if (d.agentConnected === false) process.stdout.write("the app's server is offline: the deploy runs when its agent reconnects.\n");
        });
        return;
      }
      if (!opts.json) {
        process.stderr.write(`deployment ${created.id} of ${created.app}\n`);
        if (created.agentConnected === false) process.stderr.write("the app's server is offline: waiting for its agent to reconnect…\n");
      }
      const timeoutMs = Number(opts.timeout) * 1000;
      if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new CliError('--timeout must be a positive number of seconds');
      const final = await followDeployment(client, created.id, { quiet: !!opts.json, timeoutMs });
      output(!!opts.json, final, (d) => {
        if (d.status === 'done') process.stderr.write(`deployment ${d.id} is live (commit ${d.commit?.slice(0, 12) ?? '?'}).\n`);
      });
      if (final.status !== 'done') throw new CliError(`deployment ${final.id} ${final.status}${final.reason ? `: ${final.reason}` : ''}`);
    });

  program
    .command('deployments')
    .description("list an app's deployments, newest first")
    .argument('<app>')
    .option('--json', 'print JSON')
    .action(async (app: string, opts: { json?: boolean }) => {
      const client = new ApiClient(loadClientConfig());
      const list = await client.get<DeploymentInfo[]>(`/api/apps/${seg(app)}/deployments`);
      output(!!opts.json, list, (l) =>
        printTable(
          l.map((d) => ({ ...d, commit: d.commit?.slice(0, 12) ?? null })),
          ['id', 'status', 'commit', 'trigger', 'createdAt', 'finishedAt', 'reason'],
        ),
      );
    });
}
