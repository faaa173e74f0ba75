// `berth control-plane backup`: a consistent, encrypted copy of a control plane's data directory,
// made while it runs, written atomically; into a directory with --keep N the N newest are kept.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { writeSecretFile } from '../../shared/util/index.js';
import { DB_FILE, type Db } from '../store/db.js';
import { BACKUP_EXT, packDir, stageBundle, STAGING_PREFIX } from './bundle.js';
import { sealBackup } from './envelope.js';

export class BackupError extends Error {
  override name = 'BackupError';
}

export interface BackupOptions {
  dataDir: string;
  /** A file, or a directory (existing, or given with a trailing `/`) that gets a timestamped name. */
  out: string;
  passphrase: string;
  /** With a directory: keep this many newest backups, remove older ones. */
  keep?: number;
  /** The running control plane's connection; without it the database file is opened read-only. */
  db?: Db;
  now?: Date;
}

export interface BackupResult {
  file: string;
  bytes: number;
  createdAt: string;
  schemaVersion: number;
  /** Data dir files bundled besides the database. */
  files: string[];
  /** Older backups removed by --keep. */
  removed: string[];
}

const NAME_RE = new RegExp(`^control-plane-\\d{8}T\\d{9}Z${BACKUP_EXT.replace('.', '\\.')}$`);
const stamp = (d: Date) => d.toISOString().replace(/[-:.]/g, '');

function targetFile(out: string, keep: number | undefined, at: Date): { file: string; dir?: string } {
  const isDir = out.endsWith('/') || (existsSync(out) && statSync(out).isDirectory());
  if (!isDir) {
    if (keep !== undefined) throw new BackupError(`--keep needs --out to be a directory (${out} is a file name)`);
    return { file: out };
  }
  mkdirSync(out, { recursive: true, mode: 0o700 });
  return { file: join(out, `control-plane-${stamp(at)}${BACKUP_EXT}`), dir: out };
}

function openLiveDatabase(dataDir: string): Db {
  const file = join(dataDir, DB_FILE);
  if (!existsSync(file)) throw new BackupError(`no control plane database at ${file} (is --data right?)`);
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return db;
}

export async function createBackup(opts: BackupOptions): Promise<BackupResult> {
  if (opts.keep !== undefined && (!Number.isInteger(opts.keep) || opts.keep < 1)) throw new BackupError(`--keep must be a whole number ≥ 1, not ${opts.keep}`);
  const at = opts.now ?? new Date();
  const { file, dir } = targetFile(opts.out, opts.keep, at);
  const db = opts.db ?? openLiveDatabase(opts.dataDir);
  let staging: string | undefined;
  try {
    // Inside the (0700) data dir: the staged database and key are in clear until they are packed
    // and encrypted, so they never sit anywhere the originals do not.
    removeStaleStaging(opts.dataDir);
    staging = mkdtempSync(join(opts.dataDir, STAGING_PREFIX));
    const manifest = await stageBundle(opts.dataDir, db, staging, at);
    const sealed = sealBackup(gzipSync(await packDir(staging, manifest)), opts.passphrase);
    writeSecretFile(file, sealed);
    const removed = dir && opts.keep ? rotate(dir, opts.keep) : [];
    return { file, bytes: sealed.length, createdAt: manifest.createdAt, schemaVersion: manifest.schemaVersion, files: manifest.files, removed };
  } finally {
    if (!opts.db) db.close();
    if (staging) rmSync(staging, { recursive: true, force: true });
  }
}

/** Staging dirs left by a backup that was killed (older than an hour: not one running now). */
function removeStaleStaging(dataDir: string): void {
  for (const name of readdirSync(dataDir)) {
    const path = join(dataDir, name);
    if (name.startsWith(STAGING_PREFIX) && Date.now() - statSync(path).mtimeMs > 60 * 60 * 1000) rmSync(path, { recursive: true, force: true });
  }
}

/** Keep the KEEP newest backups berth named in DIR (by their timestamped names); return what was removed. */
export function rotate(dir: string, keep: number): string[] {
  const ours = readdirSync(dir).filter((n) => NAME_RE.test(n)).sort().reverse();
  const removed = ours.slice(keep).map((n) => join(dir, n));
  for (const f of removed) unlinkSync(f);
  return removed;
}
