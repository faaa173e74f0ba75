// Per-app SSH deploy keys (Ed25519) in OpenSSH's own formats, made with node:crypto so the control
// plane needs no ssh-keygen: the public half is pasted into the Git host, the private half is
// sealed at rest and sent only to the app's own agent.
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';

const TYPE = 'ssh-ed25519';

function sshString(b: Buffer | string): Buffer {
  const data = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  return Buffer.concat([len, data]);
}

export interface DeployKey {
  /** `ssh-ed25519 AAAA… berth-deploy-APP`: what the Git host's deploy-key form takes. */
  publicKey: string;
  /** The unencrypted OpenSSH private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`). */
  privateKey: string;
}

/** A new Ed25519 key pair for `app`. */
export function generateDeployKey(app: string): DeployKey {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url');
  const comment = `berth-deploy-${app}`;
  const pubBlob = Buffer.concat([sshString(TYPE), sshString(pub)]);
  const check = randomBytes(4);
  let secret = Buffer.concat([check, check, sshString(TYPE), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  // Padded with 1, 2, 3… to the cipher block size (8 for "none").
  const pad = (8 - (secret.length % 8)) % 8;
  secret = Buffer.concat([secret, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const one = Buffer.alloc(4);
  one.writeUInt32BE(1);
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), one, sshString(pubBlob), sshString(secret)]);
  const lines = body.toString('base64').match(/.{1,70}/g) ?? [];
  return {
    publicKey: `${TYPE} ${pubBlob.toString('base64')} ${comment}`,
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`,
  };
}

/** `SHA256:…`, as `ssh-keygen -l` and Git hosts show a key. */
export function keyFingerprint(publicKey: string): string {
  const blob = Buffer.from(publicKey.split(' ')[1] ?? '', 'base64');
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** An SSH repository URL (ssh://… or scp-like user@host:path): one that a deploy key opens. */
export function isSshRepo(url: string): boolean {
  return /^ssh:\/\//i.test(url) || /^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!\/\/)/.test(url);
}

/** The fingerprint of an OpenSSH private key file's public half (its first key), or null when unreadable. */
export function privateKeyFingerprint(privateKey: string): string | null {
  const b64 = privateKey.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const buf = Buffer.from(b64, 'base64');
  const magic = 'openssh-key-v1\0';
  if (buf.subarray(0, magic.length).toString('latin1') !== magic) return null;
  let off = magic.length;
  const next = (): Buffer | null => {
    if (off + 4 > buf.length) return null;
    const len = buf.readUInt32BE(off);
    if (off + 4 + len > buf.length) return null;
    const out = buf.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    return out;
  };
  for (let i = 0; i < 3; i++) if (!next()) return null; // cipher, kdf, kdf options
  off += 4; // number of keys
  const pub = next();
  return pub ? `SHA256:${createHash('sha256').update(pub).digest('base64').replace(/=+$/, '')}` : null;
}

/** known_hosts text as given with `--known-hosts`: host-key lines (and comments), nothing else. */
export function validKnownHosts(text: string): string | null {
  if (text.length > 65_536) return 'is larger than 64 KiB';
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  if (lines.length === 0) return 'has no host key lines';
  const bad = lines.find((l) => !/^(@cert-authority |@revoked )?[^\s]+ (ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+\/=]+( [^\n]*)?$/.test(l.trim()));
  return bad === undefined ? null : `has a line that is not "HOST KEYTYPE KEY": ${JSON.stringify(bad.slice(0, 60))}`;
}
