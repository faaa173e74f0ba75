// The app's SSH deploy key on the server: written 0600 in a 0700 directory of the agent's data dir
// for ssh to read, next to the app's own known_hosts (its Git host's key, pinned on first use).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { privateKeyFingerprint } from '../../shared/deploy-key.js';
import { ensureDir, writeFileAtomic, writeSecretFile } from '../../shared/util/index.js';

export function writeDeployKey(
  dataDir: string,
  app: string,
  privateKey: string,
  /** Given with --known-hosts: replaces the pinned file, and only these keys are accepted. */
  knownHostsText?: string,
): { keyFile: string; knownHosts: string; fingerprint: string; strict: boolean } {
  const dir = join(dataDir, 'keys', app);
  ensureDir(dir, 0o700);
  const keyFile = join(dir, 'id_ed25519');
  writeSecretFile(keyFile, privateKey);
  const knownHosts = join(dir, 'known_hosts');
  if (knownHostsText !== undefined) writeFileAtomic(knownHosts, knownHostsText.endsWith('\n') ? knownHostsText : `${knownHostsText}\n`, 0o600);
  return { keyFile, knownHosts, fingerprint: privateKeyFingerprint(privateKey) ?? `in ${keyFile}`, strict: knownHostsText !== undefined };
}

/** The app is gone from this server: its key goes with its other files. */
export async function removeDeployKey(dataDir: string, app: string): Promise<void> {
  await rm(join(dataDir, 'keys', app), { recursive: true, force: true });
}
