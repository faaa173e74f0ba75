// Certificates as PEM text: what a certificate covers (its DNS names, its issuer), splitting a
// bundle into its certificates, and the checks a certificate + key pair passes before CertStore
// installs it. Pure: no files.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { oneLine } from '../../shared/util/index.js';

export class CertStoreError extends Error {
  override name = 'CertStoreError';
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** DNS names from an X509Certificate's subjectAltName ("DNS:a.com, DNS:b.com, IP Address:…"). */
export function sanDomains(cert: X509Certificate): string[] {
  const san = cert.subjectAltName ?? '';
  const names = san
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).trim().toLowerCase());
  return [...new Set(names)].sort();
}

export function issuerName(cert: X509Certificate): string {
  const lines = cert.issuer.split('\n');
  const cn = lines.find((l) => l.startsWith('CN='));
  return cn ? cn.slice(3) : lines.join(', ');
}

/** Split a PEM bundle into its certificates (leaf first, as ACME delivers them). */
export function splitPemChain(pem: string): string[] {
  return pem.match(PEM_CERT_RE) ?? [];
}

/** Check a certificate + key pair before it may replace anything; returns the parsed leaf. */
export function validatePair(fullchain: string, privkey: string, opts: { domains?: string[]; now?: Date } = {}): X509Certificate {
  const pems = splitPemChain(fullchain);
  if (pems.length === 0) throw new CertStoreError('certificate bundle contains no PEM certificate');
  let chain: X509Certificate[];
  try {
    chain = pems.map((p) => new X509Certificate(p));
  } catch (err) {
    throw new CertStoreError(`certificate does not parse: ${oneLine(err)}`);
  }
  let key;
  try {
    key = createPrivateKey(privkey);
  } catch (err) {
    throw new CertStoreError(`private key does not parse: ${oneLine(err)}`);
  }
  const leaf = chain[0]!;
  if (!leaf.checkPrivateKey(key)) throw new CertStoreError('private key does not match the certificate');
  for (let i = 0; i + 1 < chain.length; i++) {
    if (!chain[i]!.checkIssued(chain[i + 1]!)) throw new CertStoreError(`certificate chain is out of order at position ${i + 1}`);
  }
  const now = opts.now ?? new Date();
  if (new Date(leaf.validTo).getTime() <= now.getTime()) throw new CertStoreError(`certificate expired at ${new Date(leaf.validTo).toISOString()}`);
  if (opts.domains) {
    const covered = new Set(sanDomains(leaf));
    const missing = opts.domains.filter((d) => !covered.has(d));
    if (missing.length) throw new CertStoreError(`certificate does not cover ${missing.join(', ')}`);
  }
  return leaf;
}
