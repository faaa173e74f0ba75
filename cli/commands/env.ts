// `berth env set/unset/ls`: an app's env vars, kept encrypted on the control plane. Values are masked
// in listings unless --reveal; a change reaches the app on its next deploy.
import type { Command } from 'commander';
import { MASKED_VALUE, type EnvChange, type EnvVar } from '../../shared/api.js';
import { envKey } from '../../shared/validation.js';
import { ApiClient, seg } from '../client.js';
import { loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { tty } from '../terminal-safe.js';
import { output } from '../output.js';

const client = () => new ApiClient(loadClientConfig());

function checkKey(key: string): void {
  const r = envKey.safeParse(key);
  if (!r.success) throw new CliError(`invalid env key ${JSON.stringify(key.length > 60 ? key.slice(0, 60) + '…' : key)}: ${r.error.issues[0]?.message ?? 'invalid'}`);
}

/** KEY=VALUE → [KEY, VALUE]; the value is everything after the first "=" and may be empty. */
export function parseAssignment(arg: string): [string, string] {
  const eq = arg.indexOf('=');
  if (eq === -1) throw new CliError(`expected KEY=VALUE, got ${JSON.stringify(arg.length > 60 ? arg.slice(0, 60) + '…' : arg)} (no "=")`);
  const key = arg.slice(0, eq);
  checkKey(key);
  return [key, arg.slice(eq + 1)];
}

/** A value as a dotenv-style line can carry it: bare when plain, JSON-quoted otherwise. */
function shown(value: string): string {
  return value === MASKED_VALUE || /^[A-Za-z0-9_.,:/@%+=-]*$/.test(value) ? value : JSON.stringify(value);
}

const effect = (app: string) => `takes effect on the next deploy (berth deploy ${app})`;

export function registerEnvCommands(program: Command): void {
  const env = program.command('env').description("manage an app's env vars (encrypted on the control plane; reach the build, release and every process)");

  env
    .command('set')
    .description('set one or more env vars: berth env set APP KEY=VALUE…')
    .argument('<app>')
    .argument('<assignments...>', 'KEY=VALUE pairs')
    .option('--json', 'print JSON')
    .action(async (app: string, assignments: string[], opts: { json?: boolean }) => {
      const set: Record<string, string> = {};
      for (const a of assignments) {
        const [key, value] = parseAssignment(a);
        set[key] = value;
      }
      const change = await client().patch<EnvChange>(`/api/apps/${seg(app)}/env`, { set });
      output(!!opts.json, change, (c) => process.stdout.write(tty`set ${c.set.join(', ')} on ${c.app}; ${effect(c.app)}.\n`));
    });

  env
    .command('unset')
    .description('remove env vars: berth env unset APP KEY…')
    .argument('<app>')
    .argument('<keys...>')
    .option('--json', 'print JSON')
    .action(async (app: string, keys: string[], opts: { json?: boolean }) => {
      for (const k of keys) checkKey(k);
      const change = await client().patch<EnvChange>(`/api/apps/${seg(app)}/env`, { unset: keys });
      output(!!opts.json, change, (c) => {
        if (c.unset.length > 0) process.stdout.write(tty`unset ${c.unset.join(', ')} on ${c.app}; ${effect(c.app)}.\n`);
        if (c.notSet.length > 0) process.stdout.write(tty`${c.notSet.join(', ')} ${c.notSet.length === 1 ? 'was' : 'were'} not set on ${c.app}.\n`);
      });
    });

  env
    .command('ls')
    .description("list an app's env vars (values masked unless --reveal)")
    .argument('<app>')
    .option('--reveal', 'show the values')
    .option('--json', 'print JSON: [{key, value, updatedAt}]')
    .action(async (app: string, opts: { reveal?: boolean; json?: boolean }) => {
      const vars = await client().get<EnvVar[]>(`/api/apps/${seg(app)}/env${opts.reveal ? '?reveal=1' : ''}`);
      output(!!opts.json, vars, (list) => {
        if (list.length === 0) process.stdout.write(tty`(no env vars on ${app})\n`);
        for (const v of list) process.stdout.write(tty`${v.key}=${shown(v.value)}\n`);
      });
    });
}
