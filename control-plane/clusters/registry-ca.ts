// The material of a berth-managed cluster registry (issue 15): a per-cluster CA (EC P-256, 10
// years), a server certificate for the manager's advertised address signed by it (2 years; an IP
// goes in subjectAltName as an IP, a name as DNS: Go's TLS ignores the CN), a random password and
// its bcrypt htpasswd line (the only hash distribution's htpasswd auth accepts). X.509 through
// @peculiar/x509 on node's WebCrypto, bcrypt through bcryptjs: no hand-made ASN.1, no shell.
import { createPrivateKey, KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import bcrypt from 'bcryptjs';
import { registryAddress } from '../../shared/spec.js';
import type { ClusterRegistry } from './registry-store.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export const REGISTRY_USERNAME = 'berth';
export const DEFAULT_REGISTRY_PORT = 5000;
const CA_YEARS = 10;
const CERT_YEARS = 2;
/** bcrypt cost of the htpasswd line: the registry checks it on every request, so not higher. */
const BCRYPT_COST = 10;
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export class RegistryAddressError extends Error {
  override name = 'RegistryAddressError';
}

/** The host part of an advertised address ("10.0.0.2", "10.0.0.2:2377", "mgr.example", "[fd00::1]:2377"), lower-cased, IPv6 bracketed. */
export function advertisedHost(advertise: string): string {
  const a = advertise.trim().toLowerCase();
  if (a.startsWith('[')) return a.slice(0, a.indexOf(']') + 1);
  if (isIP(a) === 6) return `[${a}]`;
  const colon = a.lastIndexOf(':');
  return colon === -1 ? a : a.slice(0, colon);
}

/** host:port of the registry on the manager, checked against the spec's rule (it becomes image names and a path). */
export function registryAddressFor(advertise: string, port: number): string {
  const address = `${advertisedHost(advertise)}:${port}`;
  if (!registryAddress.safeParse(address).success || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new RegistryAddressError(`"${address}" cannot be a registry address (host:port, lower-case)`);
  }
  return address;
}

/** The subjectAltName entry for a registry address: an IP as an IP, anything else as a DNS name. */
export function sanFor(address: string): { type: 'ip' | 'dns'; value: string } {
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
  return isIP(host) ? { type: 'ip', value: host } : { type: 'dns', value: host };
}

const years = (from: Date, n: number) => new Date(Date.UTC(from.getUTCFullYear() + n, from.getUTCMonth(), from.getUTCDate()));
/** A positive 128-bit serial (the high bit clear: DER integers are signed). */
const serial = () => {
  const b = randomBytes(16);
  b[0]! &= 0x7f;
  return b.toString('hex');
};
const keyPem = (key: CryptoKey) => KeyObject.from(key as unknown as webcrypto.CryptoKey).export({ type: 'pkcs8', format: 'pem' }) as string;
const newKeys = () => webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;

export interface RegistryCa {
  caPem: string;
  caKeyPem: string;
}

/** A new CA for one cluster's registry. */
export async function createRegistryCa(cluster: string, now = new Date()): Promise<RegistryCa & { keys: CryptoKeyPair; cert: x509.X509Certificate }> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=berth registry CA for cluster ${cluster}`,
    notBefore: now,
    notAfter: years(now, CA_YEARS),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { caPem: cert.toString('pem'), caKeyPem: keyPem(keys.privateKey), keys, cert };
}

/** A server certificate for `address` (host:port) signed by the CA. */
export async function issueServerCert(ca: { keys: Pick<CryptoKeyPair, 'privateKey'>; cert: x509.X509Certificate }, address: string, now = new Date()): Promise<{ certPem: string; keyPem: string }> {
  const keys = await newKeys();
  const san = sanFor(address);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${san.value}`,
    issuer: ca.cert.subject,
    notBefore: now,
    notAfter: years(now, CERT_YEARS),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([san]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: keyPem(keys.privateKey) };
}

/** A stored CA (its certificate and sealed key, as `managedRegistry` made them), ready to sign again. */
export async function loadRegistryCa(caPem: string, caKeyPem: string): Promise<{ keys: Pick<CryptoKeyPair, 'privateKey'>; cert: x509.X509Certificate }> {
  const der = createPrivateKey(caKeyPem).export({ type: 'pkcs8', format: 'der' });
  const privateKey = (await webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign'])) as unknown as CryptoKey;
  return { keys: { privateKey }, cert: new x509.X509Certificate(caPem) };
}

/** One htpasswd line (bcrypt, `$2y$` like Apache's htpasswd -B writes); async: the event loop keeps serving. */
export async function htpasswdLine(username: string, password: string): Promise<string> {
  const hash = (await bcrypt.hash(password, BCRYPT_COST)).replace(/^\$2[ab]\$/, '$2y$');
  return `${username}:${hash}\n`;
}

/** Everything a managed registry needs, ready for `stores.clusterRegistries.set`. */
export async function managedRegistry(cluster: string, advertise: string, port: number): Promise<Omit<ClusterRegistry, 'updatedAt'>> {
  const address = registryAddressFor(advertise, port);
  const ca = await createRegistryCa(cluster);
  const server = await issueServerCert(ca, address);
  const password = randomBytes(24).toString('base64url');
  return {
    cluster,
    mode: 'managed',
    address,
    username: REGISTRY_USERNAME,
    password,
    caPem: ca.caPem,
    caKeyPem: ca.caKeyPem,
    certPem: server.certPem,
    keyPem: server.keyPem,
    htpasswd: await htpasswdLine(REGISTRY_USERNAME, password),
  };
}
