// What a backup holds, as a tar archive (tar-fs) of a private staging directory: a consistent copy
// of the database made with SQLite's online backup API, every other regular file of the data
// directory (secret key, admin token, and whatever later versions keep there), and a manifest.
import { copyFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import { extract, pack } from 'tar-fs';
import { z } from 'zod';
import { BERTH_VERSION } from '../../shared/version.js';
import { DB_FILE, type Db } from '../store/db.js';

export const MANIFEST_FILE = 'manifest.json';
export const BACKUP_EXT = '.berth-backup';
/** Pre-migration copies (store/db.ts): large, local, and not needed to restore. */
export const LOCAL_BACKUPS_DIR = 'backups';
const MAX_DEPTH = 4;
/** Private working dirs of a backup and a restore inside the data dir: never bundled. */
export const STAGING_PREFIX = '.berth-backup-';
export const RESTORE_PREFIX = '.berth-restore-';

export const manifestSchema = z.object({
  format: z.literal('berth-control-plane-backup'),
  version: z.literal(1),
  createdAt: z.string(),
  berthVersion: z.string(),
  schemaVersion: z.number().int().nonnegative(),
  database: z.literal(DB_FILE),
  files: z.array(z.string()),
});
export type Manifest = z.infer<typeof manifestSchema>;

export class BundleError extends Error {
  override name = 'BundleError';
}

/** A relative path inside the data dir: no absolute paths, no `..`, nothing odd. */
export function safeRelPath(name: string): boolean {
  if (!name || name.startsWith('/') || name.includes('\\') || name.includes('\0')) return false;
  const norm = posix.normalize(name);
  return norm === name && !norm.split('/').some((part) => part === '..' || part === '.' || part === '');
}

/** Regular files of DIR that are copied as they are (the live database and its WAL come from the backup API). */
export function dataFiles(dataDir: string): string[] {
  const skipTop = new Set([DB_FILE, `${DB_FILE}-wal`, `${DB_FILE}-shm`, `${DB_FILE}-journal`, LOCAL_BACKUPS_DIR]);
  const out: string[] = [];
  const walk = (rel: string, depth: number) => {
    for (const name of readdirSync(join(dataDir, rel)).sort()) {
      const relName = rel ? `${rel}/${name}` : name;
      if ((!rel && skipTop.has(name)) || name.endsWith(BACKUP_EXT) || name.startsWith(STAGING_PREFIX) || name.startsWith(RESTORE_PREFIX)) continue;
      const st = lstatSync(join(dataDir, relName));
      if (st.isFile()) out.push(relName);
      else if (st.isDirectory() && depth < MAX_DEPTH) walk(relName, depth + 1);
    }
  };
  walk('', 0);
  return out;
}

/** Fill STAGING with the database copy, the data files and the manifest. */
export async function stageBundle(dataDir: string, db: Db, staging: string, createdAt: Date): Promise<Manifest> {
  const dbCopy = join(staging, DB_FILE);
  await db.backup(dbCopy);
  const schemaVersion = checkDatabaseCopy(dbCopy);
  const files = dataFiles(dataDir);
  for (const rel of files) {
    mkdirSync(dirname(join(staging, rel)), { recursive: true, mode: 0o700 });
    copyFileSync(join(dataDir, rel), join(staging, rel));
  }
  const manifest: Manifest = { format: 'berth-control-plane-backup', version: 1, createdAt: createdAt.toISOString(), berthVersion: BERTH_VERSION, schemaVersion, database: DB_FILE, files };
  writeFileSync(join(staging, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 });
  return manifest;
}

/** The copy passes SQLite's integrity check; returns its schema version. */
export function checkDatabaseCopy(file: string): number {
  const copy = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const result = copy.pragma('integrity_check', { simple: true });
    if (result !== 'ok') throw new BundleError(`the database copy failed SQLite's integrity check: ${String(result)}`);
    return copy.pragma('user_version', { simple: true }) as number;
  } finally {
    copy.close();
  }
}

export async function packDir(dir: string, manifest: Manifest): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(
    pack(dir, { entries: [MANIFEST_FILE, DB_FILE, ...manifest.files] }),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(chunks);
}

/** Unpack a decrypted bundle into DIR (regular files with safe names only) and read its manifest. */
export async function unpackTo(tar: Buffer, dir: string): Promise<Manifest> {
  await pipeline(
    Readable.from([tar]),
    extract(dir, {
      ignore: (_path, header) => !header || header.type !== 'file' || !safeRelPath(header.name),
      dmode: 0o700,
    }),
  );
  let manifest: Manifest;
  try {
    manifest = manifestSchema.parse(JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')));
  } catch {
    throw new BundleError('the backup has no valid manifest (was it made by berth control-plane backup?)');
  }
  for (const rel of [manifest.database, ...manifest.files]) {
    if (!safeRelPath(rel) || !lstatSync(join(dir, rel), { throwIfNoEntry: false })?.isFile()) throw new BundleError(`the backup is incomplete: ${rel} is missing`);
  }
  return manifest;
}
