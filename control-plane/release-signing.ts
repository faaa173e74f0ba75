// The control plane's release signing key (Ed25519): created on first start in DATA/release-key.pem
// (0600, with its public half in release-key.pub), baked into the install.sh we serve, and used to
// sign what install.sh unpacks or runs (see shared/release-signature.ts for the statements) and
// install.sh itself as served (so `berth upgrade` can check it against the key it pinned at install).
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../shared/logger.js';
import { ConfigError } from './errors.js';
import { loadOrCreateSecretFile } from '../shared/util/index.js';

export const RELEASE_KEY_FILE = 'release-key.pem';
export const RELEASE_PUBLIC_KEY_FILE = 'release-key.pub';

export interface ReleaseSigner {
  /** SubjectPublicKeyInfo DER, base64 (60 characters): what install.sh bakes in. */
  publicKeyBase64: string;
  /** The same key as a PEM block (what servers keep in /etc/berth/release.pub). */
  publicKeyPem: string;
  /** Ed25519 signature of `message`, base64. */
  sign(message: string | Buffer): string;
}

export function signerFromPrivateKey(privateKey: KeyObject): ReleaseSigner {
  const pub = createPublicKey(privateKey);
  return {
    publicKeyBase64: pub.export({ type: 'spki', format: 'der' }).toString('base64'),
    publicKeyPem: pub.export({ type: 'spki', format: 'pem' }).toString(),
    sign: (message) => sign(null, Buffer.from(message), privateKey).toString('base64'),
  };
}

function parsePrivateKey(file: string, pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new ConfigError(`${file} is not a valid private key (${(err as Error).message}); restore it from a backup — servers installed from this control plane trust only it`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new ConfigError(`${file} holds a ${key.asymmetricKeyType ?? 'unknown'} key, not Ed25519`);
  return key;
}

/** Load DATA/release-key.pem, creating it on first start; (re)writes release-key.pub next to it. */
export function loadOrCreateReleaseSigner(dataDir: string, logger: Logger): ReleaseSigner {
  const file = join(dataDir, RELEASE_KEY_FILE);
  const pem = loadOrCreateSecretFile(file, 'release signing key', () => generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), logger).text;
  const signer = signerFromPrivateKey(parsePrivateKey(file, pem));
  writeFileSync(join(dataDir, RELEASE_PUBLIC_KEY_FILE), signer.publicKeyPem, { mode: 0o644 });
  return signer;
}
