// How the control plane is reached: plain HTTP, HTTPS from certificate files, or HTTPS with its own
// ACME certificate. Plain HTTP on an address other hosts can reach is refused unless a TLS proxy is
// declared in front (--public-url https://…) or the operator opts in (--insecure-http): everything
// that crosses that link — the admin token, revealed env values, join tokens, agent credentials and
// the `curl … | sudo sh` install line — would be readable and rewritable by anyone on the path.
import { BlockList, isIP } from 'node:net';
import type { AcmeConfig } from '../../shared/acme.js';
import { domainName } from '../../shared/validation.js';
import { ConfigError } from '../errors.js';

export interface TlsFileOptions {
  certFile: string;
  keyFile: string;
}

export interface TlsAcmeOptions {
  /** The control plane's own host name; the certificate covers exactly this name. */
  domain: string;
  acme: AcmeConfig;
  /** Write HTTP-01 challenge files here (served at /.well-known/acme-challenge/ by another web server on port 80)… */
  webroot?: string;
  /** …else answer them on this port ourselves (default 80), redirecting everything else to https. */
  httpPort?: number;
}

export type TlsOptions = ({ kind: 'files' } & TlsFileOptions) | ({ kind: 'acme' } & TlsAcmeOptions);

/** Raw settings from flags / env, before validation. */
export interface RawTlsSettings {
  tlsCert?: string;
  tlsKey?: string;
  domain?: string;
  acmeWebroot?: string;
  acmeHttpPort?: string | number;
  acme?: AcmeConfig;
}

/** Validate the TLS flags into one mode (or none); a ConfigError names the flag that is wrong. */
export function tlsOptionsFrom(raw: RawTlsSettings): TlsOptions | undefined {
  const { tlsCert, tlsKey, domain } = raw;
  if (domain && (tlsCert || tlsKey)) throw new ConfigError('--domain and --tls-cert/--tls-key are alternatives: give one of them');
  if (!domain && (raw.acmeWebroot || raw.acmeHttpPort !== undefined)) throw new ConfigError('--acme-webroot and --acme-http-port need --domain');
  if (tlsCert || tlsKey) {
    if (!tlsCert || !tlsKey) throw new ConfigError('--tls-cert and --tls-key go together: give both files');
    return { kind: 'files', certFile: tlsCert, keyFile: tlsKey };
  }
  if (!domain) return undefined;
  const parsed = domainName.safeParse(domain);
  if (!parsed.success) throw new ConfigError(`invalid --domain ${JSON.stringify(domain)}: ${parsed.error.issues[0]?.message ?? 'not a host name'}`);
  if (raw.acmeWebroot && raw.acmeHttpPort !== undefined) throw new ConfigError('--acme-webroot and --acme-http-port are alternatives: give one of them');
  const out: TlsAcmeOptions = { domain: parsed.data, acme: raw.acme ?? { directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory' } };
  if (raw.acmeWebroot) {
    if (!raw.acmeWebroot.startsWith('/')) throw new ConfigError(`--acme-webroot must be an absolute path, not ${JSON.stringify(raw.acmeWebroot)}`);
    out.webroot = raw.acmeWebroot;
  }
  if (raw.acmeHttpPort !== undefined) {
    const port = Number(raw.acmeHttpPort);
    if (!/^\d{1,5}$/.test(String(raw.acmeHttpPort)) || port < 1 || port > 65535) throw new ConfigError(`invalid --acme-http-port ${JSON.stringify(String(raw.acmeHttpPort))}: expected 1-65535`);
    out.httpPort = port;
    out.acme = { ...out.acme, challengeHttpPort: port }; // berth's own pre-check of a challenge asks this port
  }
  return { kind: 'acme', ...out };
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and localhost: only this machine can connect. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  if (isIP(v4) === 4) return LOOPBACK.check(v4, 'ipv4');
  if (isIP(h) === 6) return LOOPBACK.check(h, 'ipv6');
  return false;
}

/**
 * Refuse plain HTTP reachable from other hosts. Allowed: TLS configured, loopback, a public URL that
 * is https:// (a TLS-terminating proxy in front), or the explicit opt-out.
 */
export function checkTransport(opts: { host: string; port: number; tls: boolean; publicUrl?: string; insecureHttp?: boolean }): void {
  if (opts.tls && opts.publicUrl && !/^https:\/\//i.test(opts.publicUrl)) {
    // Plain requests from other hosts are redirected to the public URL: it must be the https one.
    throw new ConfigError(`--public-url ${opts.publicUrl} must be https:// when the control plane serves TLS`);
  }
  if (opts.tls || opts.insecureHttp || isLoopbackHost(opts.host)) return;
  if (opts.publicUrl && /^https:\/\//i.test(opts.publicUrl)) return;
  const where = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
  throw new ConfigError(
    `refusing to serve plain HTTP on ${where}: anyone on the network path could read the admin token and env values and get root on new servers through the install line; ` +
      'use --domain NAME or --tls-cert/--tls-key, set --public-url https://… behind a TLS proxy, listen on 127.0.0.1, or pass --insecure-http to accept the risk',
  );
}
