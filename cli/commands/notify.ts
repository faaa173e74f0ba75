// `berth notify`: where berth tells about failed deploys, failing certificates, offline servers,
// full disks and failing cron jobs (issue 18; docs/notifications.md).
import type { Command } from 'commander';
import { NOTIFY_EVENTS, type ChannelCreated, type ChannelInfo, type DeliveryAttempt } from '../../shared/notify.js';
import { ApiClient, seg } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { output, printTable } from '../output.js';
import { tty } from '../terminal-safe.js';

const client = () => new ApiClient(loadClientConfig());
const collect = (value: string, previous: string[]) => [...previous, ...value.split(',').map((s) => s.trim()).filter(Boolean)];

interface AddOptions {
  webhook?: string;
  slack?: string;
  discord?: string;
  email?: string;
  app: string[];
  event: string[];
  json?: boolean;
}

function channelTarget(opts: AddOptions): { kind: string; target: string } {
  const given = (['webhook', 'slack', 'discord', 'email'] as const).filter((k) => opts[k] !== undefined);
  if (given.length !== 1) throw new CliError('give exactly one of --webhook URL, --slack URL, --discord URL or --email ADDRESS');
  const kind = given[0]!;
  return { kind, target: opts[kind]! };
}

export function registerNotifyCommands(program: Command): void {
  const notify = program
    .command('notify')
    .description('notification channels: failed deploys, certificates, offline servers, low disk, cron failures (docs/notifications.md)')
    .addHelpText(
      'after',
      `
Events: ${NOTIFY_EVENTS.join(', ')} (deploy.succeeded only when a channel asks for it).
Webhooks are signed: X-Berth-Signature = "v1=" + hex HMAC-SHA256(secret, X-Berth-Timestamp + "." + body).
Failed deliveries are retried with backoff for up to a day (not on a 4xx other than 429); repeated
failures of one app and event are sent at most once per 10 minutes, with a count.
Control plane settings: BERTH_SMTP_HOST, BERTH_SMTP_PORT [587], BERTH_SMTP_SECURITY [starttls|tls|none],
BERTH_SMTP_USER, BERTH_SMTP_PASSWORD_FILE, BERTH_SMTP_FROM, BERTH_SMTP_CA_FILE, BERTH_NOTIFY_OFFLINE_MINUTES [5].`,
    );
  notify
    .command('add')
    .description('add a channel; a --webhook channel prints its signing secret once')
    .argument('<name>', 'channel name (lower-case letters, digits, "-")')
    .option('--webhook <url>', 'POST signed JSON to this URL (https://, or http:// on loopback)')
    .option('--slack <url>', 'a Slack incoming-webhook URL')
    .option('--discord <url>', 'a Discord webhook URL')
    .option('--email <address>', 'send e-mail through the SMTP server the control plane is configured with (BERTH_SMTP_*)')
    .option('--app <app>', 'only this app\'s events (repeatable, or comma-separated; server events pass for servers running it)', collect, [])
    .option('--event <event>', `only these events (repeatable, or comma-separated): ${NOTIFY_EVENTS.join(', ')}; default: all but deploy.succeeded`, collect, [])
    .option('--json', 'print JSON')
    .action(async (name: string, opts: AddOptions) => {
      const { kind, target } = channelTarget(opts);
      const unknown = opts.event.find((e) => !(NOTIFY_EVENTS as readonly string[]).includes(e));
      if (unknown) throw new CliError(`unknown event "${unknown}": one of ${NOTIFY_EVENTS.join(', ')}`);
      const created = await client().post<ChannelCreated>('/api/notify/channels', { name, kind, target, apps: opts.app, events: opts.event });
      output(!!opts.json, created, (c) => {
        process.stdout.write(tty`channel ${c.name} added (${c.kind} ${c.target}); events: ${c.events.join(', ')}${c.apps.length ? tty`; apps: ${c.apps.join(', ')}` : ''}\n`);
        if (c.secret) process.stdout.write(tty`signing secret (shown once; verify X-Berth-Signature with it): ${c.secret}\n`);
      });
    });
  notify
    .command('ls')
    .description('list channels (URLs masked)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await client().get<ChannelInfo[]>('/api/notify/channels');
      output(!!opts.json, list, (l) => printTable(l as unknown as Array<Record<string, unknown>>, ['name', 'kind', 'target', 'apps', 'events']));
    });
  notify
    .command('rm')
    .description('remove a channel (its undelivered messages are dropped)')
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean }) => {
      const res = await client().delete<{ name: string; removed: boolean }>(`/api/notify/channels/${seg(name)}`);
      output(!!opts.json, res, () => process.stdout.write(tty`channel ${name} removed\n`));
    });
  notify
    .command('test')
    .description('send a test message to a channel now; exits non-zero unless it was delivered')
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, opts: { json?: boolean }) => {
      const a = await client().post<DeliveryAttempt>(`/api/notify/channels/${seg(name)}/test`);
      output(!!opts.json, a, () =>
        process.stdout.write(a.result === 'delivered' ? tty`delivered to ${name} (${String(a.code ?? '')})\n` : tty`not delivered to ${name}: ${a.error ?? a.result}${a.nextAttemptAt ? tty` (retrying at ${a.nextAttemptAt})` : ''}\n`),
      );
      if (a.result !== 'delivered') process.exitCode = 1;
    });
  notify
    .command('log')
    .description('delivery attempts, newest first: event, channel, result, HTTP/SMTP code, error, next retry')
    .option('--channel <name>', 'only this channel')
    .option('--limit <n>', 'at most this many attempts', '50')
    .option('--json', 'print JSON')
    .action(async (opts: { channel?: string; limit: string; json?: boolean }) => {
      const q = new URLSearchParams({ limit: opts.limit, ...(opts.channel ? { channel: opts.channel } : {}) });
      const list = await client().get<DeliveryAttempt[]>(`/api/notify/log?${q}`);
      output(!!opts.json, list, (l) => printTable(l as unknown as Array<Record<string, unknown>>, ['at', 'channel', 'event', 'app', 'attempt', 'result', 'code', 'error', 'nextAttemptAt']));
    });
}
