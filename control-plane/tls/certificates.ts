// Where the control plane's certificate comes from: files the operator manages (re-read on SIGHUP
// and when they change), or its own ACME order (stored in DATA/tls, renewed at 2/3 of its lifetime,
// retried with a doubling backoff). Either way a pair is checked before it is served: it parses, the
// key matches, it is not expired.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, unwatchFile, watchFile } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { AcmeIssuer, type AcmeConfig, type ChallengeResponder } from '../../shared/acme.js';
import { ensureDir, oneLine, SerialQueue, writeFileAtomic } from '../../shared/util/index.js';
import type { Logger } from '../../shared/logger.js';
import { ConfigError } from '../errors.js';

export interface CertPair {
  cert: string;
  key: string;
  notBefore: Date;
  notAfter: Date;
}

/** Parse and check a PEM pair; throws with what is wrong. `domain`: the certificate must cover it. */
export function checkPair(cert: string, key: string, opts: { domain?: string; now?: Date } = {}): CertPair {
  const x509 = new X509Certificate(cert);
  createSecureContext({ cert, key }); // throws "key values mismatch" and friends
  const notBefore = new Date(x509.validFrom);
  const notAfter = new Date(x509.validTo);
  if (notAfter.getTime() <= (opts.now ?? new Date()).getTime()) throw new Error(`the certificate expired at ${notAfter.toISOString()}`);
  if (opts.domain && !x509.checkHost(opts.domain)) throw new Error(`the certificate does not cover ${opts.domain}`);
  return { cert, key, notBefore, notAfter };
}

/** Read --tls-cert/--tls-key; a ConfigError naming the file and the reason. */
export function readPairFiles(certFile: string, keyFile: string): CertPair {
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read the TLS ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? oneLine(err)}`);
    }
  };
  const cert = read(certFile, 'certificate');
  const key = read(keyFile, 'key');
  try {
    return checkPair(cert, key);
  } catch (err) {
    throw new ConfigError(`TLS certificate ${certFile} with key ${keyFile} is not usable: ${oneLine(err)}`);
  }
}

type OnPair = (pair: CertPair) => void;

/** Operator-managed files: served at start, re-read on SIGHUP and when either file changes. */
export class FileCertificate {
  private readonly reload = () => this.load('reloaded');

  constructor(
    private readonly certFile: string,
    private readonly keyFile: string,
    private readonly onPair: OnPair,
    private readonly log: Logger,
    private readonly watchIntervalMs = 2000,
  ) {}

  /** Load now (a bad pair is a ConfigError at start), then watch. */
  start(): void {
    this.onPair(readPairFiles(this.certFile, this.keyFile));
    process.on('SIGHUP', this.reload);
    for (const f of [this.certFile, this.keyFile]) watchFile(f, { interval: this.watchIntervalMs, persistent: false }, this.reload);
  }

  stop(): void {
    process.off('SIGHUP', this.reload);
    for (const f of [this.certFile, this.keyFile]) unwatchFile(f, this.reload);
  }

  private load(what: string): void {
    try {
      const pair = readPairFiles(this.certFile, this.keyFile);
      this.onPair(pair);
      this.log.info({ certFile: this.certFile, notAfter: pair.notAfter.toISOString() }, `TLS certificate ${what}`);
    } catch (err) {
      // Half-written files (a cert without its new key yet) land here too: keep serving the old pair.
      this.log.error({ err: oneLine(err) }, 'TLS certificate not reloaded; still serving the previous one');
    }
  }
}

export interface AcmeCertificateOptions {
  domain: string;
  acme: AcmeConfig;
  /** DATA/tls: fullchain.pem, privkey.pem (0600) and the ACME account (acme/). */
  dir: string;
  /** Challenge files go to WEBROOT/.well-known/acme-challenge/ … */
  webroot?: string;
  /** … or to this responder (the built-in port-80 listener). */
  challenges?: ChallengeResponder;
  onPair: OnPair;
  log: Logger;
  /** First retry after a failed order (default 30 s), doubling up to retryMaxMs (default 6 h). */
  retryMinMs?: number;
  retryMaxMs?: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** The control plane's own certificate from an ACME CA, renewed at 2/3 of its lifetime. */
export class AcmeCertificate {
  private readonly issuer: AcmeIssuer;
  private timer: NodeJS.Timeout | undefined;
  private failures = 0;
  /** One order at a time (the timer and renewNow). */
  private readonly orders = new SerialQueue();
  private stopped = false;

  constructor(private readonly opts: AcmeCertificateOptions) {
    this.issuer = new AcmeIssuer(opts.acme, {
      certsDir: join(opts.dir, 'acme'),
      webroot: opts.webroot ?? join(opts.dir, 'unused-webroot'),
      ...(opts.challenges ? { challenges: opts.challenges } : {}),
      log: opts.log,
    });
  }

  get certFile(): string {
    return join(this.opts.dir, 'fullchain.pem');
  }

  get keyFile(): string {
    return join(this.opts.dir, 'privkey.pem');
  }

  /** Serve the stored certificate if it is usable, and order one now or when it is due. Never throws. */
  start(): void {
    ensureDir(this.opts.dir, 0o700);
    const stored = this.stored();
    if (stored) this.opts.onPair(stored);
    this.schedule(stored ? renewAt(stored) : new Date());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.orders.run(() => undefined);
  }

  /** Order a certificate now (what the timer runs); resolves when it is installed or has failed. */
  renewNow(): Promise<void> {
    return this.orders.run(() => this.order());
  }

  private stored(): CertPair | null {
    if (!existsSync(this.certFile) || !existsSync(this.keyFile)) return null;
    try {
      return checkPair(readFileSync(this.certFile, 'utf8'), readFileSync(this.keyFile, 'utf8'), { domain: this.opts.domain });
    } catch (err) {
      this.opts.log.warn({ err: oneLine(err) }, 'stored TLS certificate not usable; ordering a new one');
      return null;
    }
  }

  private async order(): Promise<void> {
    if (this.stopped) return;
    const { domain, log } = this.opts;
    try {
      const issued = await this.issuer.issue([domain]);
      const pair = checkPair(issued.fullchain, issued.privkey, { domain });
      writeFileAtomic(this.keyFile, pair.key, 0o600);
      writeFileAtomic(this.certFile, pair.cert, 0o600);
      this.failures = 0;
      this.opts.onPair(pair);
      log.info({ domain, notAfter: pair.notAfter.toISOString() }, 'TLS certificate obtained');
      this.schedule(renewAt(pair));
    } catch (err) {
      this.failures += 1;
      const delay = Math.min((this.opts.retryMinMs ?? 30_000) * 2 ** (this.failures - 1), this.opts.retryMaxMs ?? 6 * 3600_000);
      log.error({ domain, err: oneLine(err), retryInMs: delay, retryAt: new Date(Date.now() + delay).toISOString() }, 'TLS certificate not obtained');
      this.schedule(new Date(Date.now() + delay));
    }
  }

  private schedule(at: Date): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const ms = Math.max(0, at.getTime() - Date.now());
    // setTimeout overflows past ~24.8 days: wake up then and look again.
    this.timer = setTimeout(() => (ms > MAX_TIMER_MS ? this.schedule(at) : void this.renewNow()), Math.min(ms, MAX_TIMER_MS));
    this.timer.unref();
  }
}

/** Renew at 2/3 of the certificate's lifetime (Let's Encrypt's 90 days: 30 days before expiry). */
export function renewAt(pair: Pick<CertPair, 'notBefore' | 'notAfter'>): Date {
  const life = pair.notAfter.getTime() - pair.notBefore.getTime();
  return new Date(pair.notBefore.getTime() + (life * 2) / 3);
}
