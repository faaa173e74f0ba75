// Certificate issuance over ACME (RFC 8555) with acme-client, HTTP-01 through a webroot that nginx
// serves at /.well-known/acme-challenge/ on every host (the agent; the control plane with
// --acme-webroot), or through any other ChallengeResponder (the control plane's own port-80 listener).
//
// Before any ACME traffic the directory URL is checked with one plain HTTPS GET (same CA trust as
// the ACME client): acme-client alone retries network/TLS errors for ~75 s and then throws a
// TypeError that says nothing about the cause.
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { dirname, join } from 'node:path';
import { rootCertificates } from 'node:tls';
import type * as AcmeClient from 'acme-client';
import type { Logger } from './logger.js';
import { domainName } from './validation.js';
import { ensureDir, ensureDirAtLeast, oneLine, SerialQueue, writeFileAtomic } from './util/index.js';

export class AcmeError extends Error {
  override name = 'AcmeError';
}

export const LETSENCRYPT_PRODUCTION = 'https://acme-v02.api.letsencrypt.org/directory';

type Acme = typeof AcmeClient;
let acmeModule: Promise<Acme> | undefined;
/**
 * acme-client (with axios and its crypto) is loaded on the first order, not at start: it is about a
 * third of an idle agent's memory, and most agents go weeks between orders.
 */
function loadAcme(): Promise<Acme> {
  return (acmeModule ??= import('acme-client'));
}

export interface AcmeConfig {
  /** ACME directory URL (BERTH_ACME_DIRECTORY; default Let's Encrypt production). */
  directoryUrl: string;
  /** PEM file with extra CA certificate(s) to trust for the ACME server (BERTH_ACME_CA). */
  caFile?: string;
  /** Contact e-mail for the ACME account (BERTH_ACME_EMAIL). */
  email?: string;
  /**
   * Skip the challenge pre-check. By default, before the CA is asked to validate, berth fetches
   * http://DOMAIN:challengeHttpPort/.well-known/acme-challenge/TOKEN itself (one try, 5 s timeout)
   * and stops with a clear error when it does not come back — a DNS record that does not point
   * here fails fast and does not burn the CA's failed-validation limit. (acme-client's own
   * pre-check is always off: it retries for ~75 s per domain.) Turn this off behind NAT without
   * hairpinning, or in tests whose domains only resolve inside the ACME server's DNS.
   */
  skipChallengeVerification?: boolean;
  /** Port of the pre-check (the nginx HTTP port; default 80). */
  challengeHttpPort?: number;
  /** Connect the pre-check to this address instead of resolving the domain (tests). */
  challengeCheckAddress?: string;
  /** Key type of issued certificates (default ecdsa P-256). */
  keyType?: 'ecdsa' | 'rsa';
  /** Timeout of the directory check (default 5000 ms). */
  preflightTimeoutMs?: number;
  /** Timeout of each ACME HTTP request (default 30000 ms). */
  requestTimeoutMs?: number;
  /** How fast to poll an order/challenge for its status (default 1000 ms, doubling to 30000 ms). */
  pollMinMs?: number;
  pollMaxMs?: number;
}

export interface IssuedPair {
  /** Leaf + intermediates, PEM. */
  fullchain: string;
  /** The certificate's private key, PEM (never logged). */
  privkey: string;
}

interface AccountFile {
  /** directory URL → account URL */
  accounts: Record<string, string>;
}

/** ACME challenge tokens are base64url (RFC 8555 §8.3); anything else never becomes a file name. */
const TOKEN_RE = /^[A-Za-z0-9_-]{1,256}$/;

const TLS_TRUST_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
  'INVALID_CA',
]);

/** Read the CA file to trust; a clear error when it is missing or holds no certificate. */
export function readCaFile(caFile: string): string {
  let pem: string;
  try {
    pem = readFileSync(caFile, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? oneLine(err);
    throw new AcmeError(`ACME CA file ${caFile} unreadable: ${code}`);
  }
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new AcmeError(`ACME CA file ${caFile} contains no PEM certificate`);
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch (err) {
      throw new AcmeError(`ACME CA file ${caFile} contains an unparsable certificate: ${oneLine(err)}`);
    }
  }
  return pem;
}

/** Node's bundled roots plus the extra CA (an extra CA adds trust, it does not replace the roots). */
function trustList(caPem: string | undefined): string[] | undefined {
  return caPem ? [...rootCertificates, caPem] : undefined;
}

/**
 * One plain GET of the ACME directory. Resolves with the directory's JSON; rejects with an AcmeError
 * whose message is one line: "ACME directory URL unreachable: ECONNREFUSED", "… certificate not
 * trusted: …", "… answered HTTP 404", "… is not an ACME directory".
 */
export function checkDirectory(directoryUrl: string, opts: { caPem?: string; timeoutMs?: number } = {}): Promise<Record<string, unknown>> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  let url: URL;
  try {
    url = new URL(directoryUrl);
  } catch {
    return Promise.reject(new AcmeError(`ACME directory URL ${JSON.stringify(directoryUrl)} is not a valid URL`));
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return Promise.reject(new AcmeError(`ACME directory URL ${directoryUrl} must be https://`));
  }
  const what = `ACME directory ${directoryUrl}`;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (msg: string) => {
      if (settled) return;
      settled = true;
      reject(new AcmeError(msg));
    };
    const reqOpts = { method: 'GET', timeout: timeoutMs, agent: false as const, headers: { accept: 'application/json' } };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
        if (body.length > 1_000_000) req.destroy(new Error('response too large'));
      });
      res.on('error', (err) => fail(`${what} unreachable: ${oneLine(err)}`));
      res.on('end', () => {
        if (settled) return;
        if (res.statusCode !== 200) return fail(`${what} answered HTTP ${res.statusCode}`);
        let dir: unknown;
        try {
          dir = JSON.parse(body);
        } catch {
          return fail(`${what} is not an ACME directory (the answer is not JSON)`);
        }
        const d = dir as Record<string, unknown>;
        if (!d || typeof d !== 'object' || typeof d.newNonce !== 'string' || typeof d.newAccount !== 'string' || typeof d.newOrder !== 'string') {
          return fail(`${what} is not an ACME directory (no newNonce/newAccount/newOrder)`);
        }
        settled = true;
        resolve(d);
      });
    };
    const ca = trustList(opts.caPem);
    const req = url.protocol === 'https:'
      ? httpsRequest(url, { ...reqOpts, ...(ca ? { ca } : {}) }, onResponse)
      : httpRequest(url, reqOpts, onResponse);
    req.on('timeout', () => {
      req.destroy();
      fail(`${what} unreachable: no answer within ${timeoutMs} ms`);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? '';
      if (TLS_TRUST_CODES.has(code)) {
        const hint = opts.caPem ? 'the configured BERTH_ACME_CA does not vouch for it' : 'set BERTH_ACME_CA to a CA file that does';
        return fail(`${what} certificate not trusted: ${err.message} (${code}); ${hint}`);
      }
      if (code.startsWith('ERR_SSL') || code.startsWith('EPROTO')) return fail(`${what} TLS handshake failed: ${oneLine(err)}`);
      fail(`${what} unreachable: ${code || oneLine(err)}`);
    });
    req.end();
  });
}

/** Where HTTP-01 key authorizations are published for the CA to fetch. */
export interface ChallengeResponder {
  put(token: string, keyAuthorization: string): void;
  remove(token: string): void;
}

export interface AcmeIssuerDeps {
  /** DATA/certs: account.key and account.json live here. */
  certsDir: string;
  /** The directory nginx serves at /.well-known/acme-challenge/ (as WEBROOT/.well-known/acme-challenge/). */
  webroot: string;
  /** Publish challenges here instead of files under `webroot` (which is then not used). */
  challenges?: ChallengeResponder;
  log?: Logger;
}

/** Environment variables of the ACME settings the agent and the control plane share. */
export function acmeConfigFromEnv(env: NodeJS.ProcessEnv = process.env, httpPort?: number): AcmeConfig {
  const val = (k: string) => (env[k] === undefined || env[k] === '' ? undefined : env[k]);
  return {
    directoryUrl: val('BERTH_ACME_DIRECTORY') ?? LETSENCRYPT_PRODUCTION,
    ...(val('BERTH_ACME_CA') ? { caFile: val('BERTH_ACME_CA')! } : {}),
    ...(val('BERTH_ACME_EMAIL') ? { email: val('BERTH_ACME_EMAIL')! } : {}),
    skipChallengeVerification: val('BERTH_ACME_SKIP_PRECHECK') === '1' || val('BERTH_ACME_SKIP_PRECHECK') === 'true',
    ...(httpPort ? { challengeHttpPort: httpPort } : {}),
  };
}

/**
 * Issues certificates. Not re-entrant across instances in one process (acme-client's HTTP client is a
 * process-wide axios instance whose TLS agent is set per issuance): calls are serialized here, and
 * CertManager uses a single issuer.
 */
export class AcmeIssuer {
  readonly config: AcmeConfig;
  private readonly deps: AcmeIssuerDeps;
  /** One order at a time: the account and the challenge directory are shared. */
  private readonly orders = new SerialQueue();

  constructor(config: AcmeConfig, deps: AcmeIssuerDeps) {
    this.config = config;
    this.deps = deps;
  }

  get challengeDir(): string {
    return join(this.deps.webroot, '.well-known', 'acme-challenge');
  }

  /** Issue one certificate covering `domains` (validated, de-duplicated). Rejects with a one-line AcmeError. */
  issue(domains: string[]): Promise<IssuedPair> {
    return this.orders.run(() => this.issueNow(domains));
  }

  private async issueNow(rawDomains: string[]): Promise<IssuedPair> {
    const domains = validateDomains(rawDomains);
    const label = domains.join(', ');
    const caPem = this.config.caFile ? readCaFile(this.config.caFile) : undefined;
    await checkDirectory(this.config.directoryUrl, { caPem, timeoutMs: this.config.preflightTimeoutMs ?? 5000 });
    if (!this.deps.challenges) this.prepareWebroot();
    const acme = await loadAcme();
    // acme-client's own trace (URLs and states, never keys) at debug level.
    const trace = this.deps.log;
    if (trace) acme.setLogger((msg) => trace.debug({ acme: msg }, 'acme-client'));
    const accountKey = await this.accountKey(acme);
    this.configureHttp(acme, caPem);

    const client = new acme.Client({
      directoryUrl: this.config.directoryUrl,
      accountKey,
      backoffMin: this.config.pollMinMs ?? 1000,
      backoffMax: this.config.pollMaxMs ?? 30_000,
      backoffAttempts: 10,
    });
    const log = this.deps.log;
    try {
      await this.ensureAccount(client);
      this.rememberAccount(client.getAccountUrl());

      const key = this.config.keyType === 'rsa' ? await acme.crypto.createPrivateRsaKey(2048) : await acme.crypto.createPrivateEcdsaKey('P-256');
      const commonName = domains.find((d) => d.length <= 64);
      const [, csr] = await acme.crypto.createCsr({ ...(commonName ? { commonName } : {}), altNames: domains }, key);
      log?.info({ domains }, 'requesting certificate');
      const fullchain = await client.auto({
        csr,
        ...(this.config.email ? { email: this.config.email } : {}),
        termsOfServiceAgreed: true,
        skipChallengeVerification: true,
        challengePriority: ['http-01'],
        challengeCreateFn: async (authz, challenge, keyAuthorization) => {
          if (challenge.type !== 'http-01') throw new Error(`unsupported challenge type ${challenge.type}`);
          if (!TOKEN_RE.test(challenge.token)) throw new Error('ACME server sent a challenge token that is not base64url');
          if (this.deps.challenges) this.deps.challenges.put(challenge.token, keyAuthorization);
          else this.writeToken(challenge.token, keyAuthorization);
          if (!this.config.skipChallengeVerification) {
            await precheckChallenge(authz.identifier.value, challenge.token, keyAuthorization, {
              port: this.config.challengeHttpPort ?? 80,
              ...(this.config.challengeCheckAddress ? { address: this.config.challengeCheckAddress } : {}),
              ...(log ? { log } : {}),
            });
          }
        },
        challengeRemoveFn: async (_authz, challenge) => {
          if (challenge.type !== 'http-01' || !TOKEN_RE.test(challenge.token)) return;
          if (this.deps.challenges) this.deps.challenges.remove(challenge.token);
          else rmSync(join(this.challengeDir, challenge.token), { force: true });
        },
      });
      return { fullchain, privkey: key.toString('utf8') };
    } catch (err) {
      if (err instanceof AcmeError) throw err;
      throw new AcmeError(`certificate for ${label} not issued: ${describeAcmeError(err)}`);
    }
  }

  /**
   * createAccount with a known key returns the existing account (RFC 8555 §7.3.1): one account per
   * key and directory, robust against a CA that forgot us. acme-client then sends the payload as an
   * account update; without a contact to update that is an empty update, which strict CAs (Pebble)
   * refuse — so without an e-mail the existing account is looked up first (POST-as-GET).
   */
  private async ensureAccount(client: AcmeClient.Client): Promise<void> {
    const contact = this.config.email ? { contact: [`mailto:${this.config.email}`] } : undefined;
    if (!contact) {
      try {
        await client.createAccount({ onlyReturnExisting: true });
        return;
      } catch {
        // no account for this key yet (or the CA is unreachable, which the next call reports)
      }
    }
    await client.createAccount({ termsOfServiceAgreed: true, ...contact });
  }

  /** Create the challenge directory world-readable: nginx workers (nobody) must read the tokens. */
  private prepareWebroot(): void {
    try {
      ensureDirAtLeast(this.deps.webroot, 0o755);
      ensureDirAtLeast(join(this.deps.webroot, '.well-known'), 0o755);
      ensureDirAtLeast(this.challengeDir, 0o755);
    } catch (err) {
      throw new AcmeError(`ACME webroot ${this.deps.webroot} not usable: ${oneLine(err)}`);
    }
    // Every parent must be searchable by "others" or nginx answers 403/404 and validation fails.
    for (let dir = dirname(this.deps.webroot); ; dir = dirname(dir)) {
      try {
        if ((statSync(dir).mode & 0o001) === 0) {
          this.deps.log?.warn({ dir }, 'a parent of the ACME webroot is not world-searchable: nginx workers may not read challenge files');
          break;
        }
      } catch {
        break;
      }
      if (dirname(dir) === dir) break;
    }
  }

  private writeToken(token: string, keyAuthorization: string): void {
    const file = join(this.challengeDir, token);
    writeFileSync(file, keyAuthorization, { mode: 0o644 });
    chmodSync(file, 0o644);
  }

  private configureHttp(acme: Acme, caPem: string | undefined): void {
    // acme-client talks through one process-wide axios instance.
    const ax = acme.axios;
    const ca = trustList(caPem);
    // A fresh agent per order, no keep-alive: no sockets linger between (rare) orders.
    ax.defaults.httpsAgent = new HttpsAgent({ keepAlive: false, ...(ca ? { ca } : {}) });
    ax.defaults.timeout = this.config.requestTimeoutMs ?? 30_000;
  }

  /** The account key, created once (ECDSA P-256, 0600) and reused for every order. */
  private async accountKey(acme: Acme): Promise<Buffer> {
    const file = join(this.deps.certsDir, 'account.key');
    if (existsSync(file)) return readFileSync(file);
    ensureDir(this.deps.certsDir, 0o700);
    const key = await acme.crypto.createPrivateEcdsaKey('P-256');
    writeFileAtomic(file, key, 0o600);
    this.deps.log?.info('created ACME account key');
    return key;
  }

  private rememberAccount(accountUrl: string): void {
    const file = join(this.deps.certsDir, 'account.json');
    const data = this.accounts();
    if (data.accounts[this.config.directoryUrl] === accountUrl) return;
    data.accounts[this.config.directoryUrl] = accountUrl;
    writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`, 0o600);
    this.deps.log?.info({ accountUrl }, 'ACME account registered');
  }

  /** Account URLs known per directory (account.json). */
  accounts(): AccountFile {
    try {
      const data = JSON.parse(readFileSync(join(this.deps.certsDir, 'account.json'), 'utf8')) as AccountFile;
      if (data && typeof data.accounts === 'object' && data.accounts) return data;
    } catch {
      // missing or damaged: rebuilt on the next order
    }
    return { accounts: {} };
  }
}

/**
 * Fetch the challenge file the way the CA will (plain HTTP, Host: DOMAIN) and compare it. One try
 * with a timeout; a redirect is inconclusive (the CA follows it) and passes with a warning.
 */
export function precheckChallenge(
  domain: string,
  token: string,
  keyAuthorization: string,
  opts: { port: number; address?: string; timeoutMs?: number; log?: Logger },
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const path = `/.well-known/acme-challenge/${token}`;
  const url = `http://${domain}${opts.port === 80 ? '' : `:${opts.port}`}${path}`;
  const fail = (why: string) => new AcmeError(`challenge pre-check for ${domain} failed: ${url} ${why}`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: opts.address ?? domain,
        port: opts.port,
        path,
        method: 'GET',
        headers: { host: opts.port === 80 ? domain : `${domain}:${opts.port}`, 'user-agent': 'berth-acme-precheck' },
        timeout: timeoutMs,
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 4096) body += d;
        });
        res.on('error', (err) => reject(fail(`broke off: ${oneLine(err)}`)));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          if (status >= 300 && status < 400) {
            opts.log?.warn({ domain, status, location: res.headers.location }, 'challenge pre-check was redirected; leaving the check to the CA');
            return resolve();
          }
          if (status !== 200) return reject(fail(`answered HTTP ${status} (is ${domain} pointing at this server, and does nginx serve the ACME webroot?)`));
          if (body.trim() !== keyAuthorization) return reject(fail('answered with something else than the challenge (is another server answering for this domain?)'));
          resolve();
        });
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? oneLine(err);
      if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return reject(fail(`unreachable: ${domain} does not resolve (${code})`));
      reject(fail(`unreachable: ${code === 'ETIMEDOUT' ? err.message : code}`));
    });
    req.end();
  });
}

export function validateDomains(raw: readonly string[]): string[] {
  const out = new Set<string>();
  for (const d of raw) {
    const parsed = domainName.safeParse(d);
    if (!parsed.success) throw new AcmeError(`invalid domain ${JSON.stringify(d)}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    out.add(parsed.data);
  }
  if (out.size === 0) throw new AcmeError('no domains to issue a certificate for');
  if (out.size > 100) throw new AcmeError(`a certificate covers at most 100 domains (${out.size} given)`);
  return [...out].sort();
}

/** acme-client / axios errors as one line (axios errors carry the code; ACME problems the detail). */
function describeAcmeError(err: unknown): string {
  const e = err as { code?: string; message?: string; response?: { status?: number } };
  const msg = oneLine(err);
  if (e?.code && !msg.includes(e.code)) return `${msg} (${e.code})`;
  return msg;
}
