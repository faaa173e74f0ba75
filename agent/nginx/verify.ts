// Verification after a reload: `nginx -s reload` exits 0 even when nginx keeps the old config (a
// port already taken, a certificate it cannot load), so a change counts as applied only when nginx
// answers the new generation, logged no [emerg] meanwhile, and serves the certificate on disk.
import { X509Certificate } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, statSync, type Stats } from 'node:fs';
import { request } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { GENERATION_HOST } from '../../shared/validation.js';
import { joinLines, oneLine, sleep } from '../../shared/util/index.js';
import type { TlsCheck } from './types.js';

export interface VerifySettings {
  httpPort: number;
  /** 0: no HTTPS, no certificate checks. */
  httpsPort: number;
  /** How long a reload may take to show up before it counts as failed. */
  timeoutMs: number;
}

/** Asks the running nginx what it serves, over new connections (old workers keep the old config). */
export class Verifier {
  constructor(private readonly s: VerifySettings) {}

  async waitForGeneration(gen: string): Promise<boolean> {
    const deadline = Date.now() + this.s.timeoutMs;
    for (;;) {
      if (await this.servesGeneration(gen)) return true;
      if (Date.now() > deadline) return false;
      await sleep(20); // a reload usually lands within tens of ms; this sits on the deploy's critical path
    }
  }

  /** Does nginx answer the generation probe with `gen`? A new connection each time: old workers keep old config. */
  servesGeneration(gen: string): Promise<boolean> {
    return new Promise((resolvePromise) => {
      const req = request(
        { host: '127.0.0.1', port: this.s.httpPort, path: '/', headers: { Host: GENERATION_HOST }, agent: false, timeout: 1000 },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolvePromise(res.statusCode === 200 && body === gen));
          res.on('error', () => resolvePromise(false));
        },
      );
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolvePromise(false));
      req.end();
    });
  }

  /** The certificate nginx presents for `servername` on the HTTPS port (its SHA-256 fingerprint), or null. */
  servedCertificate(servername: string, timeoutMs = 2000): Promise<string | null> {
    if (this.s.httpsPort === 0) return Promise.resolve(null);
    return new Promise((resolvePromise) => {
      const sock = tlsConnect({ host: '127.0.0.1', port: this.s.httpsPort, servername, rejectUnauthorized: false, timeout: timeoutMs, ALPNProtocols: ['http/1.1'] }, () => {
        const fp = sock.getPeerX509Certificate()?.fingerprint256 ?? null;
        sock.destroy();
        resolvePromise(fp);
      });
      sock.on('timeout', () => sock.destroy());
      sock.on('error', () => resolvePromise(null));
      sock.on('close', () => resolvePromise(null));
    });
  }

  /**
   * Once nginx answers the new generation: was the reload complete? A one-line problem, or null.
   * A reload that logged [emerg] did not (fully) apply, whatever the probe says; each checked app
   * must present the certificate on disk (a reload keeps the old one when it cannot load the new).
   */
  async confirm(errorLog: string, logOffset: number, tlsChecks: TlsCheck[]): Promise<string | null> {
    const emergency = emergencyProblem(errorLog, logOffset);
    if (emergency) return emergency;
    for (const check of tlsChecks) {
      const problem = await this.waitForCertificate(check);
      if (problem) return problem;
    }
    return null;
  }

  /** Wait until nginx presents the certificate file's leaf for the check's domain; a one-line problem or null. */
  async waitForCertificate(check: TlsCheck): Promise<string | null> {
    const domain = check.domains[0]!;
    let expected: string;
    try {
      const pem = readFileSync(check.certPath, 'utf8');
      expected = new X509Certificate(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0] ?? '').fingerprint256;
    } catch (err) {
      return `certificate ${check.certPath} unreadable: ${joinLines((err as Error).message)}`;
    }
    const deadline = Date.now() + this.s.timeoutMs;
    let served: string | null = null;
    for (;;) {
      served = await this.servedCertificate(domain);
      if (served === expected) return null;
      if (Date.now() > deadline) break;
      await sleep(50);
    }
    return served === null
      ? `nginx does not answer TLS for ${domain} on port ${this.s.httpsPort}`
      : `nginx still serves another certificate for ${domain} on port ${this.s.httpsPort}`;
  }
}

// ---- the error log ------------------------------------------------------------------------

/** The error log's size now: where nginx's complaints about the next reload will start. 0 when absent. */
export function errorLogOffset(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/**
 * Did nginx log an [emerg] since `offset`? A one-line problem, or null when the log shows none.
 *
 * A log that cannot be read counts as a failed reload, not a clean one: nginx answers the new
 * generation even when a reload only half applied (a listen port it could not bind is logged as
 * [emerg]), so "could not check" must never be reported as "applied". The change is rolled back
 * and the message names the log, so the cause (permissions, a directory in its place) is visible.
 * A log that does not exist yet is fine: nginx has not complained about anything.
 */
export function emergencyProblem(path: string, offset: number): string | null {
  let text: string;
  try {
    text = readLogSince(path, offset);
  } catch (err) {
    return `cannot read the nginx error log ${path} to verify the reload: ${oneLine(err)}`;
  }
  return /\[emerg\]/.test(text) ? 'nginx logged an error while reloading' : null;
}

/** nginx's own complaints written to the error log since `offset` (e.g. a bind failure on reload), for a message. */
export function errorLogHint(path: string, offset: number): string {
  let text: string;
  try {
    text = readLogSince(path, offset);
  } catch (err) {
    return ` (error log ${path} unreadable: ${oneLine(err)})`;
  }
  const lines = text
    .split('\n')
    .filter((l) => /\[(emerg|alert|crit)\]/.test(l))
    .map((l) => l.replace(/^\S+ \S+ \[/, '[').replace(/, client: .*$/, '').trim());
  return lines.length ? ` (${lines.slice(-3).join('; ')})` : '';
}

/**
 * The log written since `offset` (at most its last 64 kB; from the start when it shrank, i.e. was
 * rotated). '' when the file does not exist; any other failure throws.
 */
export function readLogSince(path: string, offset: number): string {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
  // Checked here, not left to read(): a directory whose size is 0 on some filesystems would read as ''.
  if (st.isDirectory()) throw new Error(`EISDIR: ${path} is a directory`);
  const size = st.size;
  const start = offset > size ? 0 : Math.max(offset, size - 64_000);
  const buf = Buffer.alloc(size - start);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, buf, 0, buf.length, start);
  } finally {
    closeSync(fd);
  }
  return buf.toString('utf8');
}
