// What the control plane's release key signs, and checking it (`berth upgrade`, tests). The control
// plane never signs a bare file name or version: it signs a short statement naming exactly what
// install.sh is about to unpack or run, rebuilt by install.sh from the manifest's own fields:
//
//   berth-release-v1 FILE SHA256 VERSION NODE_ABI      a release tarball (the manifest's berth_signature)
//   berth-node-v1 linux-ARCH NODE_VERSION SHA256        the control plane's Node.js binary (node_signature)
//
// Signing a statement rather than the 30 MB tarball keeps signing free per request and leaves no
// signature cache to go stale when a release is rebuilt; the tarball's SHA-256 is then checked against it.
import { createPublicKey, verify, type KeyObject } from 'node:crypto';

export function releaseStatement(r: { file: string; sha256: string; version: string; nodeAbi: string }): string {
  return `berth-release-v1 ${r.file} ${r.sha256} ${r.version} ${r.nodeAbi}\n`;
}

export function nodeStatement(n: { arch: string; nodeVersion: string; sha256: string }): string {
  return `berth-node-v1 linux-${n.arch} ${n.nodeVersion} ${n.sha256}\n`;
}

/** The HTTP header carrying the signature of the install.sh body as served. */
export const INSTALLER_SIGNATURE_HEADER = 'x-berth-signature';

/** The Ed25519 PEM public keys in a trust file such as /etc/berth/release.pub (one or more blocks). */
export function parsePublicKeys(text: string): KeyObject[] {
  const blocks = text.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [];
  const keys: KeyObject[] = [];
  for (const pem of blocks) {
    try {
      const key = createPublicKey(pem);
      if (key.asymmetricKeyType === 'ed25519') keys.push(key);
    } catch {
      // not a key: ignored, like any other text in the file
    }
  }
  return keys;
}

/** True when `signatureBase64` is a valid Ed25519 signature of `message` by one of `keys`. */
export function verifiedByAny(keys: KeyObject[], message: string | Buffer, signatureBase64: string): boolean {
  if (!/^[A-Za-z0-9+/]{86}==$/.test(signatureBase64)) return false;
  const sig = Buffer.from(signatureBase64, 'base64');
  return keys.some((k) => verify(null, Buffer.from(message), k, sig));
}
