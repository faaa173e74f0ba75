// Encryption at rest for secrets the control plane must be able to read back (env values, webhook
// secrets): AES-256-GCM with a random 96-bit IV per value and the value's identity (e.g. app + key)
// as additional authenticated data, so a ciphertext copied onto another row does not decrypt.
// The key lives in DATA/secret.key (0600), created on first start; it is never logged.
import { join } from 'node:path';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Logger } from '../shared/logger.js';
import { ConfigError } from './errors.js';
import { loadOrCreateSecretFile } from '../shared/util/index.js';

export const SECRET_KEY_FILE = 'secret.key';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** First byte of every sealed value: lets a future key or algorithm change tell old from new. */
const FORMAT_V1 = 1;

export class SecretBoxError extends Error {
  override name = 'SecretBoxError';
}

export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== KEY_BYTES) throw new Error('secret key must be 32 bytes');
  }

  /** version(1) ‖ iv(12) ‖ tag(16) ‖ ciphertext */
  seal(plaintext: string, context: string): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([Buffer.from([FORMAT_V1]), iv, cipher.getAuthTag(), ct]);
  }

  open(sealed: Buffer | Uint8Array, context: string): string {
    const buf = Buffer.from(sealed);
    if (buf.length < 1 + IV_BYTES + TAG_BYTES || buf[0] !== FORMAT_V1) throw new SecretBoxError('stored secret is malformed');
    const iv = buf.subarray(1, 1 + IV_BYTES);
    const tag = buf.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES);
    const ct = buf.subarray(1 + IV_BYTES + TAG_BYTES);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, iv);
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ct), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretBoxError(`a stored secret (${context.split('\0')[0]}) cannot be decrypted with ${SECRET_KEY_FILE}: was the key file replaced?`);
    }
  }
}

/** Read DATA/secret.key, creating it (32 random bytes, base64, mode 0600) on first start. */
export function loadOrCreateSecretKey(dataDir: string, logger: Logger): Buffer {
  const file = join(dataDir, SECRET_KEY_FILE);
  const text = loadOrCreateSecretFile(file, 'encryption key for secrets at rest', () => randomBytes(KEY_BYTES).toString('base64') + '\n', logger).text.trim();
  const key = Buffer.from(text, 'base64');
  if (!/^[A-Za-z0-9+/]+=*$/.test(text) || key.length !== KEY_BYTES) {
    throw new ConfigError(`${file} is not a valid key (expected 32 bytes, base64); restore it from a backup — without it stored secrets cannot be read`);
  }
  return key;
}
