// `berth scale APP web=3 worker=0`: replicas per process that override the repo's `scale:` until
// `--reset`. Each change redeploys the live release (no rebuild) through the health gate and switch.
import type { Command } from 'commander';
import type { AppScale, ScaleResult } from '../../shared/api.js';
import { ApiClient, seg } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { output } from '../output.js';
import { tty } from '../terminal-safe.js';
import { failUnlessDone, followDeployment, timeoutOption } from './deploy.js';

/** `web=3 worker=0` → {web: 3, worker: 0}; names and counts are checked by the control plane. */
export function parseScaleArgs(args: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const arg of args) {
    const m = /^([^=]+)=(-?\d{1,6})$/.exec(arg);
    if (!m) throw new CliError(`invalid "${arg}": expected PROCESS=N, e.g. web=2`);
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** "web=3, worker=0" (or that the repo's scale applies). */
export function describeScale(s: AppScale | undefined): string {
  const entries = Object.entries(s?.override ?? {});
  if (entries.length === 0) return "the repo's (scale: in berth.yml, else 1 each)";
  return `${entries.map(([p, n]) => `${p}=${n}`).join(', ')} (set with berth scale; other processes: the repo's)`;
}

/**
 * `berth app show`: which scale applies, and what the live release's repo says —
 * "worker=2 (set with berth scale; other processes: the repo's); the repo says web=1, worker=1", or
 * "the repo's (scale: in berth.yml): web=1, worker=1". Without a known repo scale: describeScale's words.
 */
export function describeAppliedScale(s: AppScale | undefined): string {
  const repo = Object.entries(s?.repo ?? {});
  if (repo.length === 0) return describeScale(s);
  const says = repo.map(([p, n]) => `${p}=${n}`).join(', ');
  return Object.keys(s?.override ?? {}).length === 0 ? `the repo's (scale: in berth.yml): ${says}` : `${describeScale(s)}; the repo says ${says}`;
}

export function registerScaleCommand(program: Command): void {
  program
    .command('scale')
    .description(
      "set how many containers a process runs (until --reset, this overrides the repo's scale:); redeploys the live release without a rebuild, through the same health check and switch",
    )
    .argument('<app>')
    .argument('[process=n...]', 'e.g. web=3 worker=0 (0 to 32; web stays at 1 or more while the app has domains)')
    .option('--reset', "go back to the repo's scale: for every process")
    .option('--wait', 'follow the scale deployment until the new containers serve (exit non-zero unless it went live)')
    .option('--timeout <seconds>', 'with --wait: give up after this many seconds', '600')
    .option('--json', 'print JSON (the deployment with the override; once it has ended with --wait)')
    .action(async (app: string, args: string[], opts: { reset?: boolean; wait?: boolean; timeout: string; json?: boolean }) => {
      if (opts.reset && args.length > 0) throw new CliError('give either PROCESS=N or --reset, not both');
      if (!opts.reset && args.length === 0) throw new CliError('nothing to scale: give PROCESS=N (e.g. web=2), or --reset');
      const timeoutMs = timeoutOption(opts.timeout);
      const client = new ApiClient(loadClientConfig());
      const path = `/api/apps/${seg(app)}/scale`;
      const created = opts.reset ? await client.delete<ScaleResult>(path) : await client.put<ScaleResult>(path, parseScaleArgs(args));
      const said = tty`scale of ${created.app}: ${describeScale(created.scale)}; deployment ${created.id} queued (the live release restarts at these counts, no rebuild).\n`;
      if (!opts.wait) {
        output(!!opts.json, created, () => {
          process.stdout.write(said);
          if (!created.agentConnected) process.stdout.write("the app's server is offline: it runs when its agent reconnects.\n");
          process.stdout.write(tty`follow it with: berth deployments logs ${created.id} -f\n`);
        });
        return;
      }
      if (!opts.json) process.stderr.write(said);
      const final = await followDeployment(client, created.id, { quiet: !!opts.json, timeoutMs });
      output(!!opts.json, { ...final, scale: created.scale }, (d) => {
        if (d.status === 'done') process.stderr.write(tty`scaled: ${d.app} runs ${describeScale(created.scale)}.\n`);
      });
      failUnlessDone(final);
    });
}
