// `berth control-plane restore`: a backup unpacked into a (new) data directory, ready for the control
// plane to start on. Agents keep their credentials (stored hashed in the database) and get the same
// desired state they had, so nothing on the servers is restarted.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DB_FILE, SCHEMA_VERSION } from '../store/db.js';
import { checkDatabaseCopy, RESTORE_PREFIX, unpackTo, type Manifest } from './bundle.js';
import { openBackup } from './envelope.js';

export class RestoreError extends Error {
  override name = 'RestoreError';
}

export interface RestoreOptions {
  file: string;
  dataDir: string;
  passphrase: string;
  /** Replace what DATA_DIR holds (its database and WAL are removed first). */
  force?: boolean;
}

export interface RestoreResult {
  dataDir: string;
  createdAt: string;
  berthVersion: string;
  schemaVersion: number;
  files: string[];
}

function checkTarget(dataDir: string, force: boolean): void {
  if (!existsSync(dataDir)) return;
  const present = readdirSync(dataDir);
  if (present.length > 0 && !force) {
    throw new RestoreError(`${dataDir} is not empty (${present.slice(0, 3).join(', ')}${present.length > 3 ? ', …' : ''}); restore into an empty directory, or add --force to replace its control plane data`);
  }
}

export async function restoreBackup(opts: RestoreOptions): Promise<RestoreResult> {
  const dataDir = resolve(opts.dataDir);
  let sealed: Buffer;
  try {
    sealed = readFileSync(opts.file);
  } catch (err) {
    throw new RestoreError(`cannot read the backup ${opts.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  checkTarget(dataDir, !!opts.force);
  const tar = unzip(openBackup(sealed, opts.passphrase));
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const staging = mkdtempSync(join(dataDir, RESTORE_PREFIX));
  try {
    const manifest = await unpackTo(tar, staging);
    const version = checkDatabaseCopy(join(staging, DB_FILE));
    if (version > SCHEMA_VERSION) {
      throw new RestoreError(`this backup's database has schema version ${version}, newer than this berth supports (${SCHEMA_VERSION}); restore it with the berth version that made it (${manifest.berthVersion}) or newer`);
    }
    install(staging, dataDir, manifest);
    return { dataDir, createdAt: manifest.createdAt, berthVersion: manifest.berthVersion, schemaVersion: version, files: manifest.files };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function unzip(data: Buffer): Buffer {
  try {
    return gunzipSync(data);
  } catch {
    throw new RestoreError('the backup decrypted but its archive is not valid (was it made by berth control-plane backup?)');
  }
}

/** Move the unpacked files into place. A stale WAL left from another database would corrupt the new one: removed first. */
function install(staging: string, dataDir: string, manifest: Manifest): void {
  for (const f of [`${DB_FILE}-wal`, `${DB_FILE}-shm`, `${DB_FILE}-journal`]) rmSync(join(dataDir, f), { force: true });
  for (const rel of [...manifest.files, DB_FILE]) {
    const dest = join(dataDir, rel);
    mkdirSync(dirname(dest), { recursive: true, mode: 0o700 });
    chmodSync(join(staging, rel), 0o600);
    renameSync(join(staging, rel), dest);
  }
}
