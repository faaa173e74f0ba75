// Config changes as transactions: back up → journal → swap → `nginx -t` on the full config → reload
// → verify → commit, or roll back so the files on disk always match what nginx serves. The journal
// (.berth-journal.json) makes a crash mid-transaction recoverable on the next start.
import { copyFileSync, existsSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../../shared/logger.js';
import { writeFileAtomic } from '../../shared/util/index.js';
import { APP_FILE_RE, readOrNull, safeReaddir, type NginxFiles } from './files.js';
import { nginxMessage, waitRetired, workerPids, type NginxProcess } from './process.js';
import { NginxError, type TlsCheck } from './types.js';
import { errorLogHint, errorLogOffset, type Verifier } from './verify.js';

/** Config files are world-readable: nginx workers run as an unprivileged user. */
const CONFIG_MODE = 0o644;
/** Leftovers of an interrupted write: our backups (.berth-NAME.bak, .berth-NAME.tmp) and writeFileAtomic's staging files. */
const STRAY_RE = /^(\.berth-.*\.(tmp|bak)|\.[0-9a-f]{12}\.tmp)$/;

export interface FileChange {
  path: string;
  /** New content, or null to delete the file. */
  content: string | null;
  /** Where the previous file was copied (null: there was none). */
  backup?: string | null;
}

export interface TransactionDeps {
  files: NginxFiles;
  proc: NginxProcess;
  verifier: Verifier;
  log: Logger;
  verifyTimeoutMs: number;
  /** A new generation marker: the base file that answers it proves a reload took effect. */
  nextGeneration(): string;
  renderBase(gen: string): string;
}

export class Transactions {
  constructor(private readonly d: TransactionDeps) {}

  /**
   * Apply file changes (plus a new generation marker) so that either all of them are live in
   * nginx, or none are on disk. The caller runs transactions one at a time.
   */
  async apply(changes: FileChange[], what: string, tlsChecks: TlsCheck[] = []): Promise<void> {
    const gen = this.d.nextGeneration();
    const base = this.d.files.baseFile();
    const all: FileChange[] = [...changes.filter((c) => c.path !== base), { path: base, content: this.d.renderBase(gen) }];
    this.stage(all, what);

    // 3. Test the full config, exactly as nginx will load it.
    const test = await this.d.proc.test();
    if (test.code !== 0) {
      this.rollback(all);
      throw new NginxError(`nginx rejected the config for ${what}: ${nginxMessage(test.stderr)}`);
    }
    await this.goLive(all, what, gen, tlsChecks);

    // 5. Commit: drop the journal first, so a crash from here on never undoes a live change.
    rmSync(this.d.files.journalFile(), { force: true });
    for (const c of all) if (c.backup) rmSync(c.backup, { force: true });
  }

  /** 1. Back up current files, then journal what to undo; only then 2. swap the live files. */
  private stage(all: FileChange[], what: string): void {
    try {
      for (const c of all) {
        if (existsSync(c.path)) {
          c.backup = hidden(c.path, 'bak');
          copyFileSync(c.path, c.backup);
        } else {
          c.backup = null;
        }
      }
      const journal = { what, changes: all.map((c) => ({ path: c.path, backup: c.backup })) };
      writeFileAtomic(this.d.files.journalFile(), JSON.stringify(journal), CONFIG_MODE);
      // Each file is staged next to its target and renamed into place (atomic).
      this.writeFiles(all);
    } catch (err) {
      try {
        this.rollback(all.filter((c) => c.backup !== undefined));
      } catch (rollbackErr) {
        this.d.log.error({ err: rollbackErr }, 'could not roll back a failed nginx config write');
      }
      throw new NginxError(`could not write the nginx config for ${what}: ${(err as Error).message}`);
    }
  }

  /** 4. Reload (or start, when our private nginx is down) and verify; a change that did not apply is rolled back. */
  private async goLive(all: FileChange[], what: string, gen: string, tlsChecks: TlsCheck[]): Promise<void> {
    const { proc } = this.d;
    const errorLog = await proc.errorLog();
    const logOffset = errorLogOffset(errorLog);
    const master = await proc.runningPid();
    const oldWorkers = master !== null ? workerPids(master) : [];
    const applied = master !== null ? await proc.reload() : await proc.startProcess();
    const failure =
      applied.code !== 0 ? nginxMessage(applied.stderr) : await this.verifyApplied(gen, oldWorkers, errorLog, logOffset, tlsChecks);
    if (failure === null) return;
    const hint = errorLogHint(errorLog, logOffset);
    this.rollback(all);
    if (master !== null) await proc.reload(); // nginx kept the old config; make sure it is the one on disk
    throw new NginxError(`nginx did not apply the config for ${what}: ${failure}${hint}`);
  }

  /** Why the new config is not (fully) live, or null when it is. */
  private async verifyApplied(gen: string, oldWorkers: number[], errorLog: string, logOffset: number, tlsChecks: TlsCheck[]): Promise<string | null> {
    const { verifier, verifyTimeoutMs } = this.d;
    if (!(await verifier.waitForGeneration(gen))) return `the reload did not take effect within ${verifyTimeoutMs} ms`;
    // New workers answer first; until the old ones stop accepting, a request can still land on
    // the old config. Waiting for them makes "applyApp returned" mean "all new requests see it".
    if (!(await waitRetired(oldWorkers, verifyTimeoutMs))) {
      this.d.log.warn({ oldWorkers }, 'old nginx workers are slow to stop accepting connections');
    }
    return verifier.confirm(errorLog, logOffset, tlsChecks);
  }

  writeFiles(changes: FileChange[]): void {
    for (const c of changes) {
      if (c.content === null) rmSync(c.path, { force: true });
      else writeFileAtomic(c.path, c.content, CONFIG_MODE);
    }
  }

  /** Put every file back exactly as it was (byte-identical: the backups are copies). */
  private rollback(changes: FileChange[]): void {
    for (const c of changes) {
      if (c.backup) renameSync(c.backup, c.path);
      else if (c.backup === null) rmSync(c.path, { force: true });
    }
    rmSync(this.d.files.journalFile(), { force: true });
  }

  /** After a crash mid-transaction: undo it from the journal and drop stray staging files. */
  recover(): void {
    const { files, log } = this.d;
    const journal = readOrNull(files.journalFile());
    if (journal !== null) {
      try {
        const parsed = JSON.parse(journal) as { what?: string; changes?: Array<{ path: string; backup: string | null }> };
        const changes = (parsed.changes ?? []).filter((c) => typeof c.path === 'string' && dirname(c.path).startsWith(files.prefix ?? files.sitesDir));
        // A recorded backup that is gone was already renamed back by an interrupted rollback.
        this.rollback(changes.map((c) => ({ path: c.path, content: null, backup: c.backup && !existsSync(c.backup) ? undefined : c.backup })));
        log.warn({ what: parsed.what }, 'rolled back an nginx change interrupted by a restart');
      } catch (err) {
        log.error({ err }, 'unreadable nginx journal; removing it');
        rmSync(files.journalFile(), { force: true });
      }
    }
    for (const dir of new Set([files.sitesDir, ...(files.prefix ? [files.prefix] : [])])) {
      for (const name of safeReaddir(dir)) {
        if (STRAY_RE.test(name)) rmSync(join(dir, name), { force: true });
      }
    }
  }

  /**
   * Before starting nginx: a berth app file it rejects (written by an older version, edited by
   * hand) must not keep every other app offline. Move such files aside and say so.
   */
  async quarantineBrokenAppFiles(): Promise<void> {
    for (let i = 0; i < 50; i++) {
      const test = await this.d.proc.test();
      if (test.code === 0) return;
      const msg = nginxMessage(test.stderr);
      const file = / in (\/\S+?):\d+/.exec(msg)?.[1];
      const ours = file !== undefined && dirname(file) === this.d.files.sitesDir && APP_FILE_RE.test(basename(file));
      if (!ours) throw new NginxError(`nginx rejects its config: ${msg}`);
      const aside = `${file}.broken-${Date.now()}`;
      renameSync(file, aside);
      this.d.log.error({ file, movedTo: aside, error: msg }, 'nginx rejected an app config file; moved it aside so the others can be served');
    }
    throw new NginxError('nginx rejects its config');
  }
}

/** A hidden file beside `path` (nginx includes only *.conf, so it is never loaded). */
function hidden(path: string, suffix: string): string {
  return join(dirname(path), `.berth-${basename(path)}.${suffix}`);
}
