// Scheduled backups inside the running control plane (--backup-schedule CRON): each run uses the
// live connection's online backup, re-reads the passphrase file, rotates, and keeps its result for
// `berth control-plane status`. A failure is logged and shown there; it never stops the control plane.
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from '../../shared/logger.js';
import { ConfigError } from '../errors.js';
import type { Db } from '../store/db.js';
import { createBackup } from './backup.js';
import { readPassphraseFile } from './passphrase.js';

export interface ScheduledBackupSettings {
  /** 5-field cron expression, in the control plane's local time. */
  schedule: string;
  dir: string;
  passphraseFile: string;
  /** Newest backups kept in `dir` (default 7). */
  keep?: number;
}

export interface BackupRun {
  startedAt: string;
  finishedAt: string;
  ok: boolean;
  file: string | null;
  bytes: number | null;
  error: string | null;
}

export interface BackupScheduleStatus {
  schedule: string;
  dir: string;
  keep: number;
  running: boolean;
  lastRun: BackupRun | null;
}

export const DEFAULT_BACKUP_KEEP = 7;

/** The settings from BERTH_BACKUP_* (the flags of `berth control-plane` set these), or null. */
export function backupSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): ScheduledBackupSettings | null {
  const schedule = env.BERTH_BACKUP_SCHEDULE?.trim();
  if (!schedule) return null;
  const keep = env.BERTH_BACKUP_KEEP ? Number(env.BERTH_BACKUP_KEEP) : undefined;
  return { schedule, dir: env.BERTH_BACKUP_DIR ?? '', passphraseFile: env.BERTH_BACKUP_PASSPHRASE_FILE ?? '', ...(keep !== undefined ? { keep } : {}) };
}

/** Refuse to start with settings that could never produce a backup. */
export function checkBackupSettings(s: ScheduledBackupSettings): void {
  if (s.schedule.split(/\s+/).length !== 5 || !cron.validate(s.schedule)) throw new ConfigError(`--backup-schedule "${s.schedule}" is not a 5-field cron expression (e.g. "0 3 * * *")`);
  if (!s.dir) throw new ConfigError('--backup-schedule needs --backup-dir DIR');
  if (!s.passphraseFile) throw new ConfigError('--backup-schedule needs --backup-passphrase-file FILE (mode 0600)');
  if (s.keep !== undefined && (!Number.isInteger(s.keep) || s.keep < 1)) throw new ConfigError(`--backup-keep must be a whole number ≥ 1, not ${s.keep}`);
  try {
    readPassphraseFile(s.passphraseFile);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
}

export class BackupScheduler {
  private task?: ScheduledTask;
  private last: BackupRun | null = null;
  private current: Promise<BackupRun> | null = null;
  private readonly keep: number;

  constructor(
    private readonly settings: ScheduledBackupSettings,
    private readonly deps: { db: Db; dataDir: string; logger: Logger },
  ) {
    checkBackupSettings(settings);
    this.keep = settings.keep ?? DEFAULT_BACKUP_KEEP;
  }

  start(): void {
    this.task = cron.schedule(this.settings.schedule, () => void this.runNow(), { name: 'berth-control-plane-backup' });
    this.deps.logger.info({ schedule: this.settings.schedule, dir: this.settings.dir, keep: this.keep }, 'scheduled backups on');
  }

  /** One backup now; a run already going is joined, not doubled. */
  runNow(): Promise<BackupRun> {
    this.current ??= this.run().finally(() => {
      this.current = null;
    });
    return this.current;
  }

  private async run(): Promise<BackupRun> {
    const startedAt = new Date().toISOString();
    let run: BackupRun;
    try {
      const r = await createBackup({ dataDir: this.deps.dataDir, db: this.deps.db, out: this.settings.dir.replace(/\/*$/, '/'), keep: this.keep, passphrase: readPassphraseFile(this.settings.passphraseFile) });
      run = { startedAt, finishedAt: new Date().toISOString(), ok: true, file: r.file, bytes: r.bytes, error: null };
      this.deps.logger.info({ file: r.file, bytes: r.bytes, removed: r.removed.length }, 'scheduled backup written');
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      run = { startedAt, finishedAt: new Date().toISOString(), ok: false, file: null, bytes: null, error };
      this.deps.logger.error({ err }, 'scheduled backup failed');
    }
    this.last = run;
    return run;
  }

  status(): BackupScheduleStatus {
    return { schedule: this.settings.schedule, dir: this.settings.dir, keep: this.keep, running: this.current !== null, lastRun: this.last };
  }

  async stop(): Promise<void> {
    await Promise.resolve(this.task?.destroy()).catch((err: unknown) => this.deps.logger.warn({ err }, 'could not stop the backup schedule timer'));
    await this.current?.catch(() => undefined); // its failure was logged by the run itself
  }
}
