// Client commands for servers, apps and domains.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { AppDetails, AppInfo, AppUpdated, DomainInfo, ServerCreated, ServerInfo } from '../../shared/api.js';
import { ApiClient, seg } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { tty } from '../terminal-safe.js';
import { output, printTable } from '../output.js';
import { describeAppliedScale } from './scale.js';
import { describeCommit } from './deploy.js';

const client = () => new ApiClient(loadClientConfig());

export function registerServerCommands(program: Command): void {
  const server = program.command('server').description('manage servers (machines running the berth agent)');
  server
    .command('add')
    .description('register a server; prints a one-time join token and the command to run on it')
    .argument('<name>', 'server name (lower-case letters, digits, "-")')
    .option('--base-domain <domain>', 'every app on this server also answers APP.<domain> (point *.<domain> at the server)')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean; baseDomain?: string }) => {
      const created = await client().post<ServerCreated>('/api/servers', { name, ...(opts.baseDomain !== undefined ? { baseDomain: opts.baseDomain } : {}) });
      output(!!opts.json, created, (s) => {
        process.stdout.write(tty`server ${s.name} added.\njoin token (valid 24 h, one use): ${s.joinToken}\nrun on the server:\n  ${s.installCommand}\n`);
      });
    });
  server
    .command('ls')
    .description('list servers and whether their agent is connected')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const servers = await client().get<ServerInfo[]>('/api/servers');
      output(!!opts.json, servers, (list) =>
        printTable(
          list.map((s) => ({ ...s, status: s.connected ? 'connected' : s.joinedAt ? 'disconnected' : 'not joined' })),
          ['name', 'status', 'lastSeenAt', 'agentVersion', 'hostname', 'baseDomain'],
        ),
      );
    });
  server
    .command('set')
    .description("change a server's settings")
    .argument('<name>')
    .option('--base-domain <domain>', 'every app on this server also answers APP.<domain>')
    .option('--no-base-domain', 'remove the base domain (apps keep only their own domains)')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean; baseDomain?: string | false }) => {
      if (opts.baseDomain === undefined) throw new CliError('nothing to change: give --base-domain DOMAIN or --no-base-domain');
      const updated = await client().patch<ServerInfo>(`/api/servers/${seg(name)}`, { baseDomain: opts.baseDomain === false ? null : opts.baseDomain });
      output(!!opts.json, updated, (s) =>
        process.stdout.write(s.baseDomain ? tty`server ${s.name}: apps also answer APP.${s.baseDomain}\n` : tty`server ${s.name}: no base domain\n`),
      );
    });
  server
    .command('rm')
    .description('remove a server: refused while apps live on it; its agent is disconnected and its credential stops working')
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean }) => {
      const res = await client().delete<{ deleted: string }>(`/api/servers/${seg(name)}`);
      output(!!opts.json, res, (r) => process.stdout.write(tty`server ${r.deleted} removed.\n`));
    });
}

export function registerAppCommands(program: Command): void {
  const app = program.command('app').description('manage apps');
  app
    .command('create')
    .description('create an app deployed from a Git repository to a server, or to a cluster (Swarm services; see berth cluster)')
    .argument('<name>', 'app name (DNS label: lower-case letters, digits, "-")')
    .requiredOption('--repo <url>', 'Git repository URL (https://, ssh://, git://, file:// or user@host:path); credentials in it (https://user:TOKEN@…) are stored encrypted and shown masked')
    .option('--branch <branch>', 'branch to deploy', 'main')
    .option('--server <server>', 'server to run the app on (standalone)')
    .option('--cluster <cluster>', "cluster to run the app on, as Swarm services deployed by the cluster's manager (instead of --server)")
    .option('--root-dir <path>', "monorepos: build the app from this subdirectory of the repository (its berth.yml, Procfile, Dockerfile…)")
    .option('--watch <glob...>', "monorepos: a push deploys only when it changes a file these globs match, e.g. 'api/**' 'shared/**'")
    .option('--known-hosts <file>', "SSH repos: a known_hosts file with the Git host's keys (default: pinned on first use)")
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { repo: string; branch: string; server?: string; cluster?: string; rootDir?: string; watch?: string[]; knownHosts?: string; json?: boolean }) => {
      if ((opts.server === undefined) === (opts.cluster === undefined)) throw new CliError('give exactly one of --server SERVER (standalone) and --cluster CLUSTER');
      const knownHosts = opts.knownHosts === undefined ? undefined : readKnownHosts(opts.knownHosts);
      const created = await client().post<AppDetails>('/api/apps', {
        name,
        repo: opts.repo,
        branch: opts.branch,
        ...(opts.server !== undefined ? { server: opts.server } : { cluster: opts.cluster }),
        ...(opts.rootDir !== undefined ? { rootDir: opts.rootDir } : {}),
        ...(opts.watch !== undefined ? { watch: opts.watch } : {}),
        ...(knownHosts !== undefined ? { knownHosts } : {}),
      });
      output(!!opts.json, created, (a) => {
        const where = a.cluster ? tty`cluster ${a.cluster} (deployed by its manager ${a.server})` : tty`server ${a.server}`;
        process.stdout.write(tty`app ${a.name} created on ` + where + tty` (${a.repo} @ ${a.branch}${a.rootDir ? `, root directory ${a.rootDir}` : ''}).\n`);
        if (a.watch) process.stdout.write(tty`deploys on pushes that change: ${a.watch.join(' ')}\n`);
        if (a.deployKey) process.stdout.write(tty`deploy key (add it to the repository's deploy keys, read access):\n${a.deployKey}\n`);
        if (a.webhooks.push) process.stdout.write(tty`push webhook: ${a.webhooks.push} (its secret: berth app show ${a.name})\n`);
      });
    });
  app
    .command('ls')
    .description('list apps')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const apps = await client().get<AppInfo[]>('/api/apps');
      output(!!opts.json, apps, (list) => printTable(list as unknown as Array<Record<string, unknown>>, ['name', 'server', 'repo', 'branch', 'domains']));
    });
  app
    .command('show')
    .description('show one app')
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean }) => {
      const a = await client().get<AppDetails>(`/api/apps/${seg(name)}`);
      output(!!opts.json, a, printAppDetails);
    });
  registerAppSetCommand(app);
  registerAppWebhookCommands(app);
  app
    .command('rm')
    .description(
      "delete an app: its containers, nginx config, certificate and DATA/apps/APP files are removed from its server; its volumes (data) are kept unless --purge-volumes",
    )
    .argument('<name>')
    .option('--purge-volumes', "also delete the app's volumes and the data in them (cannot be undone; a server that is offline does it when its agent reconnects)")
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean; purgeVolumes?: boolean }) => {
      const res = await client().delete<{ deleted: string; purgeVolumes?: boolean }>(`/api/apps/${seg(name)}${opts.purgeVolumes ? '?purgeVolumes=1' : ''}`);
      output(!!opts.json, res, (r) =>
        process.stdout.write(
          r.purgeVolumes
            ? tty`app ${r.deleted} deleted; its volumes are deleted too.\n`
            : tty`app ${r.deleted} deleted; its volumes are kept (an app of the same name on that server gets their data back).\n`,
        ),
      );
    });
}

/** `berth app set`: change an app's repository, branch or server after creation. */
function registerAppSetCommand(app: Command): void {
  app
    .command('set')
    .description("change an app's repository, branch or server; a move to another server deploys its live commit there and removes it from the old one (volumes stay there)")
    .argument('<name>')
    .option('--repo <url>', 'Git repository URL')
    .option('--branch <branch>', 'branch to deploy')
    .option('--server <server>', 'server to run the app on')
    .option('--known-hosts <file>', "SSH repos: a known_hosts file with the Git host's keys")
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { repo?: string; branch?: string; server?: string; knownHosts?: string; json?: boolean }) => {
      const knownHosts = opts.knownHosts === undefined ? undefined : readKnownHosts(opts.knownHosts);
      const change = { repo: opts.repo, branch: opts.branch, server: opts.server, knownHosts };
      if (Object.values(change).every((v) => v === undefined)) throw new CliError('nothing to change: give --repo, --branch, --server or --known-hosts');
      const a = await client().patch<AppUpdated>(`/api/apps/${seg(name)}`, change);
      output(!!opts.json, a, (x) => {
        process.stdout.write(tty`app ${x.name}: ${x.repo} @ ${x.branch} on server ${x.server}.\n`);
        if (x.moved) {
          process.stdout.write(tty`moved from ${x.moved.from}: it no longer runs there (its volumes stay on ${x.moved.from}).\n`);
          process.stdout.write(x.moved.deployment ? tty`deploying its live commit on ${x.server}: ${x.moved.deployment.id} (berth deployments ${x.name})\n` : tty`run \`berth deploy ${x.name}\` to start it on ${x.server}.\n`);
        }
        if (x.deployKey && opts.repo !== undefined) process.stdout.write(tty`deploy key (add it to the repository's deploy keys, read access):\n${x.deployKey}\n`);
        if (!x.moved) process.stdout.write('the next deploy uses it.\n');
      });
    });
}

/** `berth app webhook …`: the app's push secret and deploy token. */
function registerAppWebhookCommands(app: Command): void {
  const webhook = app.command('webhook').description("an app's webhooks (push from a Git host, deploy from CI)");
  webhook
    .command('rotate')
    .description('replace the push secret and the deploy token with new ones (the old ones stop working at once)')
    .argument('<app>')
    .option('--push', 'rotate only the push secret')
    .option('--deploy', 'rotate only the deploy token')
    .option('--json', 'print JSON (the app with its new secrets)')
    .action(async (name: string, opts: { push?: boolean; deploy?: boolean; json?: boolean }) => {
      if (opts.push && opts.deploy) throw new CliError('give --push or --deploy, not both (neither rotates both)');
      const which = opts.push ? 'push' : opts.deploy ? 'deploy' : 'both';
      const a = await client().post<AppDetails>(`/api/apps/${seg(name)}/webhooks/rotate`, { which });
      output(!!opts.json, a, (x) => {
        process.stdout.write(tty`rotated the ${which === 'both' ? 'push secret and deploy token' : which === 'push' ? 'push secret' : 'deploy token'} of ${x.name}: update your Git host / CI.\n`);
        printAppDetails(x);
      });
    });
}

export function registerDomainCommands(program: Command): void {
  const domain = program.command('domain').description("manage an app's domains");
  domain
    .command('add')
    .description('route a domain to an app')
    .argument('<app>')
    .argument('<domain>')
    .option('--json', 'print JSON')
    .action(async (appName: string, domainName: string, opts: { json?: boolean }) => {
      const d = await client().post<DomainInfo>(`/api/apps/${seg(appName)}/domains`, { domain: domainName });
      output(!!opts.json, d, (x) => process.stdout.write(tty`domain ${x.domain} added to ${x.app}.\n`));
    });
  domain
    .command('rm')
    .description('remove a domain from an app')
    .argument('<app>')
    .argument('<domain>')
    .option('--json', 'print JSON')
    .action(async (appName: string, domainName: string, opts: { json?: boolean }) => {
      const res = await client().delete<unknown>(`/api/apps/${seg(appName)}/domains/${seg(domainName)}`);
      output(!!opts.json, res, () => process.stdout.write(tty`domain ${domainName} removed from ${appName}.\n`));
    });
  domain
    .command('ls')
    .description("list an app's domains")
    .argument('<app>')
    .option('--json', 'print JSON')
    .action(async (appName: string, opts: { json?: boolean }) => {
      const list = await client().get<DomainInfo[]>(`/api/apps/${seg(appName)}/domains`);
      output(!!opts.json, list, printDomains);
    });
}

function readKnownHosts(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read --known-hosts ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Domains with their certificate: HTTPS or not, expiry, last attempt and the next one; the last error below. */
function printDomains(list: DomainInfo[]): void {
  const day = (iso: string | null | undefined) => (iso ? iso.replace(/\.\d{3}Z$/, 'Z') : null);
  printTable(
    list.map((d) => ({
      domain: d.isDefault ? `${d.domain} (default)` : d.domain,
      https: d.certState === null || d.certState === undefined ? '-' : d.https ? 'yes' : 'no',
      certificate: d.certState ?? '-',
      expires: d.certExpiresAt ? `${day(d.certExpiresAt)}${d.certDaysLeft !== null && d.certDaysLeft !== undefined ? ` (${d.certDaysLeft}d)` : ''}` : null,
      lastRenewal: d.certLastResult ? `${d.certLastResult} ${day(d.certLastAttemptAt) ?? ''}`.trim() : null,
      nextAttempt: day(d.certNextAttemptAt),
    })),
    ['domain', 'https', 'certificate', 'expires', 'lastRenewal', 'nextAttempt'],
  );
  const failed = list.find((d) => d.certLastResult === 'failed' && d.certLastError);
  if (failed) process.stdout.write(tty`last error: ${failed.certLastError}\n`);
}

function printAppDetails(x: AppDetails): void {
  const rows: Array<[string, string]> = [
    ['name', x.name],
    ['server', x.server],
    ['repo', x.repo],
    ['branch', x.branch],
    ['domains', [...x.domains, ...(x.defaultDomain && !x.domains.includes(x.defaultDomain) ? [`${x.defaultDomain} (default)`] : [])].join(', ') || '-'],
    ['created', x.createdAt],
  ];
  if (x.live !== undefined) rows.push(['live commit', x.live ? describeCommit(x.live) : '- (not deployed yet)']);
  if (x.scale) rows.push(['scale', describeAppliedScale(x.scale)]);
  if (x.rootDir) rows.push(['root directory', x.rootDir]);
  if (x.watch) rows.push(['watch', x.watch.join(' ')]);
  if (x.deployKey) rows.push(['deploy key', x.deployKey]);
  if (x.webhooks.push) rows.push(['push webhook', x.webhooks.push]);
  if (x.webhookSecrets?.push) rows.push(['push secret', x.webhookSecrets.push]);
  if (x.webhooks.deploy) rows.push(['deploy webhook', x.webhooks.deploy]);
  if (x.webhookSecrets?.deploy) rows.push(['deploy token', x.webhookSecrets.deploy]);
  for (const [k, v] of rows) process.stdout.write(tty`${k.padEnd(15)} ${v}\n`);
}
