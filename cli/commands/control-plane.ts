// `berth control-plane backup | restore | status`, and the scheduled-backup flags of
// `berth control-plane`. Backup and restore run on the control plane's machine (they read its data
// directory); status asks the API. The backup modules are imported lazily (native SQLite).
import type { Command } from 'commander';
import type { ControlPlaneStatus } from '../../control-plane/api/control-plane.js';
import { ApiClient } from '../client.js';
import { controlPlaneUrl, loadClientConfig } from '../config.js';
import { CliError } from '../errors.js';
import { output } from '../output.js';
import { terminalSafe } from '../terminal-safe.js';

const DEFAULT_CP_DATA = '/var/lib/berth/control-plane';
const dataDefault = () => process.env.BERTH_CP_DATA ?? DEFAULT_CP_DATA;

function positiveInt(flag: string) {
  return (raw: string): number => {
    const n = Number(raw);
    if (!/^\d+$/.test(raw) || n < 1) throw new CliError(`${flag} must be a whole number ≥ 1, not "${raw}"`);
    return n;
  };
}

/** Scheduled backups: the flags become BERTH_BACKUP_* for startControlPlane (the env vars work alone too). */
function addScheduleFlags(cp: Command): void {
  cp.option('--backup-schedule <cron>', 'take an encrypted backup on this 5-field cron schedule, e.g. "0 3 * * *" ($BERTH_BACKUP_SCHEDULE)')
    .option('--backup-dir <dir>', 'directory for scheduled backups ($BERTH_BACKUP_DIR)')
    .option('--backup-passphrase-file <file>', 'file (mode 0600) holding the backup passphrase ($BERTH_BACKUP_PASSPHRASE_FILE)')
    .option('--backup-keep <n>', 'scheduled backups kept in --backup-dir (default 7; $BERTH_BACKUP_KEEP)', positiveInt('--backup-keep'));
  cp.hook('preAction', (_cmd, action) => {
    if (action !== cp) return;
    const o = cp.opts<{ backupSchedule?: string; backupDir?: string; backupPassphraseFile?: string; backupKeep?: number }>();
    if (o.backupSchedule) process.env.BERTH_BACKUP_SCHEDULE = o.backupSchedule;
    if (o.backupDir) process.env.BERTH_BACKUP_DIR = o.backupDir;
    if (o.backupPassphraseFile) process.env.BERTH_BACKUP_PASSPHRASE_FILE = o.backupPassphraseFile;
    if (o.backupKeep) process.env.BERTH_BACKUP_KEEP = String(o.backupKeep);
  });
}

function addBackupCommand(cp: Command): void {
  cp.command('backup')
    .description('write an encrypted, consistent backup of the control plane (works while it runs)')
    .option('--data <dir>', 'the control plane data directory', dataDefault())
    .requiredOption('--out <file|dir/>', 'backup file, or a directory (existing, or ending in /) for a timestamped file')
    .option('--keep <n>', 'with a directory: keep the N newest backups there, remove older ones', positiveInt('--keep'))
    .option('--passphrase-file <file>', 'read the passphrase from this file (mode 0600); default: first line of standard input')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nThe backup holds the database (SQLite online backup), secret.key, admin-token and every other\nfile of the data directory, encrypted with the passphrase (scrypt + AES-256-GCM). Without the\npassphrase it cannot be read: keep it somewhere other than the backup.')
    .action(async (opts: { data: string; out: string; keep?: number; passphraseFile?: string; json?: boolean }) => {
      const { readPassphrase } = await import('../../control-plane/backup/passphrase.js');
      const { createBackup } = await import('../../control-plane/backup/backup.js');
      const passphrase = await readPassphrase(opts.passphraseFile);
      const r = await createBackup({ dataDir: opts.data, out: opts.out, keep: opts.keep, passphrase });
      output(!!opts.json, r, (v) => {
        process.stdout.write(`backup written: ${v.file} (${v.bytes} bytes, schema v${v.schemaVersion}, database + ${v.files.join(', ') || 'no other files'})\n`);
        for (const f of v.removed) process.stdout.write(`removed old backup ${f}\n`);
      });
    });
}

function addRestoreCommand(cp: Command): void {
  cp.command('restore')
    .description('restore a backup into a data directory (then start the control plane on it)')
    .argument('<file>', 'backup file written by `berth control-plane backup`')
    .requiredOption('--data <dir>', 'data directory to restore into (must be empty unless --force)')
    .option('--force', 'replace the control plane data in a non-empty directory (stop the control plane first)')
    .option('--passphrase-file <file>', 'read the passphrase from this file (mode 0600); default: first line of standard input')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nAgents keep their credentials and get the same desired state, so their apps are not restarted.\nIf the control plane URL changed, run on each server: berth agent reattach NEW_URL')
    .action(async (file: string, opts: { data: string; force?: boolean; passphraseFile?: string; json?: boolean }) => {
      const { readPassphrase } = await import('../../control-plane/backup/passphrase.js');
      const { restoreBackup } = await import('../../control-plane/backup/restore.js');
      const passphrase = await readPassphrase(opts.passphraseFile);
      const r = await restoreBackup({ file, dataDir: opts.data, passphrase, force: opts.force });
      output(!!opts.json, r, (v) =>
        process.stdout.write(
          `restored the backup of ${v.createdAt} (berth ${terminalSafe(v.berthVersion)}, schema v${v.schemaVersion}) into ${v.dataDir}.\nstart it with: berth control-plane --data ${v.dataDir}\n`,
        ),
      );
    });
}

function printStatus(s: ControlPlaneStatus, url: string): void {
  const lines = [
    `control plane  ${url}  berth ${s.version} (schema v${s.schemaVersion}), up since ${s.startedAt}`,
    `servers        ${s.connectedServers}/${s.servers} connected, ${s.apps} apps`,
  ];
  const b = s.backup;
  if (!b) lines.push('backups        not scheduled (berth control-plane --backup-schedule CRON …)');
  else {
    lines.push(`backups        "${b.schedule}" into ${b.dir}, keeping ${b.keep}${b.running ? ' (one running now)' : ''}`);
    const last = b.lastRun;
    if (!last) lines.push('last backup    none yet');
    else if (last.ok) lines.push(`last backup    ok at ${last.finishedAt}: ${last.file} (${last.bytes} bytes)`);
    else lines.push(`last backup    FAILED at ${last.finishedAt}: ${last.error}`);
  }
  process.stdout.write(lines.map(terminalSafe).join('\n') + '\n');
}

function addStatusCommand(cp: Command): void {
  cp.command('status')
    .description('the control plane: version, servers, and the last scheduled backup (asks its API)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const client = new ApiClient(loadClientConfig());
      const status = await client.get<ControlPlaneStatus>('/api/control-plane/status');
      output(!!opts.json, status, (s) => printStatus(s, client.url));
    });
}

/** `berth agent reattach URL`: the control plane moved (restored elsewhere); keep this server's credential. */
function addAgentReattach(agent: Command): void {
  agent
    .command('reattach')
    .description('point this agent at its control plane\'s new URL (after a restore on another machine), keeping its credential')
    .argument('<url>', 'the control plane\'s new URL')
    .option('--data <dir>', 'data directory (default: $BERTH_DATA or /var/lib/berth)')
    .option('--json', 'print JSON')
    .action(async (raw: string, opts: { data?: string; json?: boolean }) => {
      const { loadCredentials, saveCredentials } = await import('../../agent/join.js');
      const { loadSettings } = await import('../../agent/settings.js');
      const dataDir = opts.data ?? loadSettings().dataDir;
      const base = controlPlaneUrl(raw);
      const creds = loadCredentials(dataDir);
      // Prove the URL reaches a berth control plane before the agent is pointed at it.
      const ok = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(15_000) }).then((r) => r.ok, () => false);
      if (!ok) throw new CliError(`no berth control plane answers at ${base}/healthz; agent.json left unchanged`);
      saveCredentials(dataDir, { ...creds, controlPlaneUrl: base });
      output(!!opts.json, { server: creds.server, controlPlaneUrl: base, previousUrl: creds.controlPlaneUrl, dataDir }, (v) =>
        process.stdout.write(`server ${v.server} now uses ${v.controlPlaneUrl} (was ${v.previousUrl}); restart the agent to reconnect (systemctl restart berth-agent).\n`),
      );
    });
}

/** Adds the subcommands and flags to the `control-plane` (and `agent reattach`) commands registered in daemons.ts. */
export function registerControlPlaneSubcommands(program: Command): void {
  const cp = program.commands.find((c) => c.name() === 'control-plane');
  if (!cp) throw new Error('the control-plane command must be registered first');
  // `berth control-plane backup --data D`: --data belongs to the subcommand, not the parent.
  cp.enablePositionalOptions();
  addScheduleFlags(cp);
  addBackupCommand(cp);
  addRestoreCommand(cp);
  addStatusCommand(cp);
  const agent = program.commands.find((c) => c.name() === 'agent');
  if (agent) addAgentReattach(agent);
}
