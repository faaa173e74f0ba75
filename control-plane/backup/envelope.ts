// The encryption around a backup bundle: a passphrase-derived key (scrypt) and AES-256-GCM over the
// whole archive. The header is authenticated too (it is the GCM additional data), and it carries a
// short passphrase check, so a wrong passphrase and a damaged file give different, clear errors.
//
//   magic "BERTHBAK"(8) ‖ version(1) ‖ log2 N(1) ‖ r(1) ‖ p(1) ‖ salt(16) ‖ iv(12) ‖ check(16) ‖ tag(16) ‖ ciphertext
import { createCipheriv, createDecipheriv, createHmac, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';

const MAGIC = Buffer.from('BERTHBAK', 'ascii');
const VERSION = 1;
const SALT_BYTES = 16;
const IV_BYTES = 12;
const CHECK_BYTES = 16;
const TAG_BYTES = 16;
/** Everything before the check value: what the check and the GCM tag authenticate. */
const PREFIX_BYTES = MAGIC.length + 4 + SALT_BYTES + IV_BYTES;
export const HEADER_BYTES = PREFIX_BYTES + CHECK_BYTES + TAG_BYTES;

/** scrypt cost: N = 2^15, r = 8, p = 1 (32 MiB, well under a second). */
const DEFAULT_COST = { logN: 15, r: 8, p: 1 };
/** A file could ask for any cost: refuse ones that would exhaust memory before the key even exists. */
const MAX_COST = { logN: 20, r: 16, p: 4 };
export const MIN_PASSPHRASE_CHARS = 8;

export class BackupFormatError extends Error {
  override name = 'BackupFormatError';
}
export class WrongPassphraseError extends Error {
  override name = 'WrongPassphraseError';
}

interface Cost {
  logN: number;
  r: number;
  p: number;
}

function deriveKeys(passphrase: string, salt: Buffer, cost: Cost): { enc: Buffer; check: Buffer } {
  const N = 2 ** cost.logN;
  const out = scryptSync(passphrase.normalize('NFC'), salt, 64, { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r * cost.p + 1024 * 1024 });
  return { enc: out.subarray(0, 32), check: out.subarray(32) };
}

const checkValue = (key: Buffer, prefix: Buffer) => createHmac('sha256', key).update(prefix).digest().subarray(0, CHECK_BYTES);

export function sealBackup(plaintext: Buffer, passphrase: string, cost: Cost = DEFAULT_COST): Buffer {
  const salt = randomBytes(SALT_BYTES);
  const iv = randomBytes(IV_BYTES);
  const prefix = Buffer.concat([MAGIC, Buffer.from([VERSION, cost.logN, cost.r, cost.p]), salt, iv]);
  const keys = deriveKeys(passphrase, salt, cost);
  const check = checkValue(keys.check, prefix);
  const cipher = createCipheriv('aes-256-gcm', keys.enc, iv);
  cipher.setAAD(Buffer.concat([prefix, check]));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([prefix, check, cipher.getAuthTag(), ct]);
}

export function openBackup(sealed: Buffer, passphrase: string): Buffer {
  if (sealed.length < MAGIC.length || !sealed.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupFormatError('not a berth control plane backup (wrong file header)');
  const version = sealed[MAGIC.length]!;
  if (version !== VERSION) throw new BackupFormatError(`backup format version ${version} is not supported by this berth (it reads version ${VERSION}); use a newer berth`);
  if (sealed.length < HEADER_BYTES) throw new BackupFormatError('the backup file is truncated (its header is incomplete)');
  const cost = { logN: sealed[MAGIC.length + 1]!, r: sealed[MAGIC.length + 2]!, p: sealed[MAGIC.length + 3]! };
  if (cost.logN < 10 || cost.logN > MAX_COST.logN || cost.r < 1 || cost.r > MAX_COST.r || cost.p < 1 || cost.p > MAX_COST.p) {
    throw new BackupFormatError('the backup file header is damaged (key derivation settings out of range)');
  }
  const prefix = sealed.subarray(0, PREFIX_BYTES);
  const salt = prefix.subarray(MAGIC.length + 4, MAGIC.length + 4 + SALT_BYTES);
  const iv = prefix.subarray(MAGIC.length + 4 + SALT_BYTES);
  const check = sealed.subarray(PREFIX_BYTES, PREFIX_BYTES + CHECK_BYTES);
  const tag = sealed.subarray(PREFIX_BYTES + CHECK_BYTES, HEADER_BYTES);
  const keys = deriveKeys(passphrase, salt, cost);
  if (!timingSafeEqual(checkValue(keys.check, prefix), check)) throw new WrongPassphraseError('wrong passphrase for this backup (or its header was modified)');
  try {
    const decipher = createDecipheriv('aes-256-gcm', keys.enc, iv);
    decipher.setAAD(Buffer.concat([prefix, check]));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(sealed.subarray(HEADER_BYTES)), decipher.final()]);
  } catch {
    throw new BackupFormatError('the backup file is damaged: it was truncated or modified after it was written (authentication failed)');
  }
}
