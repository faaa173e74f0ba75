// `berth logs APP [--process NAME] [-f]`: the app's runtime output, read live from its server's agent
// (a cluster app's: every task's, through its manager; each line says the node: `web.2@web3 | …`).
import type { Command } from 'commander';
import { RUNTIME_LOG_EVENT } from '../../shared/api.js';
import type { RuntimeLogLine } from '../../shared/protocol.js';
import { ApiClient, seg, StreamUnavailable } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { tty } from '../terminal-safe.js';
import { readSse } from '../sse.js';

export function registerLogsCommand(program: Command): void {
  program
    .command('logs')
    .description("show the runtime output of an app's containers (read live from its server)")
    .argument('<app>')
    .option('--process <name>', 'only this process (e.g. web, worker)')
    .option('-f, --follow', 'keep printing new output until interrupted')
    .option('-n, --tail <lines>', 'lines per container from the end of its log', '100')
    .option('--timestamps', 'prefix each line with its time')
    .option('--json', 'print one JSON document: an array of lines (not with --follow)')
    .action(async (app: string, opts: { process?: string; follow?: boolean; tail: string; timestamps?: boolean; json?: boolean }) => {
      if (opts.json && opts.follow) throw new CliError('--json prints one document and cannot be combined with --follow');
      if (!/^\d+$/.test(opts.tail)) throw new CliError('--tail must be a whole number of lines');
      const client = new ApiClient(loadClientConfig());
      const query = new URLSearchParams({ tail: opts.tail, ...(opts.process ? { process: opts.process } : {}), ...(opts.follow ? { follow: '1' } : {}) });
      const abort = new AbortController();
      const stop = () => abort.abort();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const collected: RuntimeLogLine[] = [];
      try {
        const body = await client.openStream(`/api/apps/${seg(app)}/logs?${query}`, abort.signal).catch((err) => {
          if (err instanceof StreamUnavailable) throw new CliError(err.message);
          throw err;
        });
        for await (const msg of readSse(body)) {
          if (msg.event === RUNTIME_LOG_EVENT.line) {
            const line = JSON.parse(msg.data) as RuntimeLogLine;
            if (opts.json) collected.push(line);
            else process.stdout.write(tty`${opts.timestamps && line.ts ? `${line.ts} ` : ''}${line.process}.${line.replica ?? 1}${line.node ? `@${line.node}` : ''} | ${line.text.replace(/\r$/, '')}\n`);
          } else if (msg.event === RUNTIME_LOG_EVENT.end) {
            const { error } = JSON.parse(msg.data) as { error?: string };
            if (error) throw new CliError(error);
            break;
          }
        }
      } catch (err) {
        if (!abort.signal.aborted) throw err;
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
      if (opts.json) process.stdout.write(JSON.stringify(collected, null, 2) + '\n');
    });
}
