// `berth cluster registry NAME …` (issue 15): show the cluster's image registry, or point the cluster
// at an external one (the user's own). The password is read from stdin: never from the command line.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ClusterRegistryInfo } from '../../shared/api.js';
import { ApiClient, seg } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { tty } from '../terminal-safe.js';
import { output } from '../output.js';

const client = () => new ApiClient(loadClientConfig());

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

function printRegistry(r: ClusterRegistryInfo): void {
  const trust = r.privateCa ? 'nodes trust it through its CA (installed by their agents)' : 'publicly trusted certificate';
  process.stdout.write(tty`cluster ${r.cluster}: ${r.mode} registry at ${r.address}, user ${r.username}; ${trust}\n`);
}

export function registerClusterRegistryCommand(cluster: Command): void {
  cluster
    .command('registry')
    .description("show the cluster's image registry, or use an external one (--address, --username, --password-stdin [--ca FILE])")
    .argument('<name>', 'cluster name')
    .option('--address <host:port>', "the external registry's address, as images are named (e.g. registry.example.com:443)")
    .option('--username <user>', 'registry user allowed to push and pull')
    .option('--password-stdin', "read the registry user's password from stdin")
    .option('--ca <file>', "PEM file of the CA that signed the registry's certificate (omit when it is publicly trusted)")
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { address?: string; username?: string; passwordStdin?: boolean; ca?: string; json?: boolean }) => {
      const setting = opts.address !== undefined || opts.username !== undefined || opts.passwordStdin || opts.ca !== undefined;
      if (!setting) {
        const r = await client().get<ClusterRegistryInfo>(`/api/clusters/${seg(name)}/registry`);
        return output(!!opts.json, r, printRegistry);
      }
      if (!opts.address || !opts.username || !opts.passwordStdin) throw new CliError('an external registry needs --address, --username and --password-stdin (and --ca FILE for a private CA)');
      const password = await readStdin();
      if (!password) throw new CliError('no password on stdin');
      const caPem = opts.ca === undefined ? undefined : readFileSync(opts.ca, 'utf8');
      const r = await client().request<ClusterRegistryInfo>('PUT', `/api/clusters/${seg(name)}/registry`, { address: opts.address, username: opts.username, password, ...(caPem ? { caPem } : {}) });
      output(!!opts.json, r, printRegistry);
    });
}
