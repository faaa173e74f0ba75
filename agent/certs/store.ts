// Certificate files and renewal records on disk.
//
// Layout (everything 0700/0600: only root — the agent and nginx's master process — reads keys):
//
//   DATA/certs/                      0700
//     account.key, account.json      the ACME account (agent/certs/acme.ts)
//     state.json                     desired domains + renewal record per app (atomic JSON)
//     APP/                           0700
//       fullchain.pem -> current/fullchain.pem   stable paths for nginx's ssl_certificate(_key)
//       privkey.pem   -> current/privkey.pem
//       current -> gen-7             ONE symlink selects the generation: swapping it (rename) switches
//       gen-7/{fullchain,privkey}.pem    certificate and key together, so nobody ever sees a new
//       gen-6/…                          certificate with an old key; the previous generation is kept
//                                        for rollback, older ones are pruned
//
// A new certificate is validated (pem.ts: parses, key matches, chain order, covers the domains, not
// expired) before it is installed; a failed issuance therefore never touches a working certificate.
import { X509Certificate } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { createLogger, type Logger } from '../../shared/logger.js';
import { appName } from '../../shared/validation.js';
import { ensureDir, fsyncDir, oneLine, writeFileAtomic } from '../../shared/util/index.js';
import { CertStoreError, issuerName, sanDomains, splitPemChain, validatePair } from './pem.js';

export { CertStoreError, sanDomains, splitPemChain, validatePair } from './pem.js';

/** What a stored certificate covers and when it is valid, parsed from the certificate itself. */
export interface CertInfo {
  app: string;
  /** DNS names in the certificate's subjectAltName, sorted. */
  domains: string[];
  notBefore: Date;
  notAfter: Date;
  /** Issuer common name (or the full issuer DN when it has no CN). */
  issuer: string;
  serialNumber: string;
  fingerprint256: string;
  /** Stable paths for nginx (`ssl_certificate` / `ssl_certificate_key`); they follow renewals. */
  certPath: string;
  keyPath: string;
  /** Generation directory number currently selected. */
  generation: number;
}

export const RENEWAL_RESULTS = ['ok', 'failed'] as const;
export type RenewalResult = (typeof RENEWAL_RESULTS)[number];

/** Per-app record of what is wanted and how the last attempts went. */
export interface RenewalRecord {
  /** Desired domains (what `ensure()` last asked for), normalized and sorted. */
  domains: string[];
  lastAttemptAt: string | null;
  lastFinishedAt: string | null;
  lastResult: RenewalResult | null;
  /** Why the last attempt ran: missing | expired | domains-changed | expiring. */
  lastReason: string | null;
  lastError: string | null;
  /** Consecutive failures (0 after a success): drives the backoff. */
  failures: number;
  /** Domains of the last attempt: a different desired set is retried without waiting for the backoff. */
  attemptedDomains: string[] | null;
  lastSuccessAt: string | null;
  /** When the next attempt is planned (backoff after a failure, renewal date after a success). */
  nextAttemptAt: string | null;
}

export interface AttemptOutcome {
  at: Date;
  finishedAt: Date;
  domains: string[];
  reason: string;
  ok: boolean;
  error?: string;
  nextAttemptAt: Date | null;
}

const recordSchema = z.object({
  domains: z.array(z.string()),
  lastAttemptAt: z.string().nullable(),
  lastFinishedAt: z.string().nullable(),
  lastResult: z.enum(RENEWAL_RESULTS).nullable(),
  lastReason: z.string().nullable(),
  lastError: z.string().nullable(),
  failures: z.number().int().min(0),
  attemptedDomains: z.array(z.string()).nullable(),
  lastSuccessAt: z.string().nullable(),
  nextAttemptAt: z.string().nullable(),
});
const stateSchema = z.object({ version: z.literal(1), apps: z.record(z.string(), recordSchema) });

const GEN_RE = /^gen-(\d+)$/;

export function emptyRecord(domains: string[] = []): RenewalRecord {
  return {
    domains,
    lastAttemptAt: null,
    lastFinishedAt: null,
    lastResult: null,
    lastReason: null,
    lastError: null,
    failures: 0,
    attemptedDomains: null,
    lastSuccessAt: null,
    nextAttemptAt: null,
  };
}

export class CertStore {
  readonly dir: string;
  private readonly stateFile: string;
  private state: z.infer<typeof stateSchema>;

  /** `dir` is DATA/certs; `log` is where a damaged state.json is reported (default: a logger of its own). */
  constructor(
    dir: string,
    private readonly log?: Logger,
  ) {
    this.dir = dir;
    ensureDir(dir, 0o700);
    this.stateFile = join(dir, 'state.json');
    this.state = this.readState();
  }

  private readState(): z.infer<typeof stateSchema> {
    if (!existsSync(this.stateFile)) return { version: 1, apps: {} };
    let problem: string;
    try {
      const parsed = stateSchema.safeParse(JSON.parse(readFileSync(this.stateFile, 'utf8')));
      if (parsed.success) return parsed.data;
      const issue = parsed.error.issues[0];
      problem = `wrong shape at ${issue?.path.map(String).join('.') || '(top level)'}: ${issue?.message ?? 'invalid'}`;
    } catch (err) {
      problem = `unreadable or not JSON: ${oneLine(err, 200)}`;
    }
    // A damaged state file must not stop certificates from renewing: keep it for inspection and
    // start over (the certificates themselves are the source of truth for what exists).
    // (a random suffix: two damaged files within one millisecond must not overwrite each other)
    const movedTo = `${this.stateFile}.corrupt-${Date.now()}-${randomBytes(3).toString('hex')}`;
    renameSync(this.stateFile, movedTo);
    (this.log ?? createLogger('berth-agent')).error(
      { file: this.stateFile, movedTo, problem },
      `the certificate state file was damaged (${problem}): moved it to ${movedTo} and started over (renewal records and backoffs are reset)`,
    );
    return { version: 1, apps: {} };
  }

  private saveState(): void {
    writeFileAtomic(this.stateFile, `${JSON.stringify(this.state, null, 2)}\n`, 0o600);
  }

  private appDir(app: string): string {
    const parsed = appName.safeParse(app);
    if (!parsed.success) throw new CertStoreError(`invalid app name ${JSON.stringify(app)}: ${parsed.error.issues[0]?.message}`);
    return join(this.dir, parsed.data);
  }

  /** The stable paths nginx should reference for `app` (they exist once a certificate is installed). */
  paths(app: string): { certPath: string; keyPath: string } {
    const dir = this.appDir(app);
    return { certPath: join(dir, 'fullchain.pem'), keyPath: join(dir, 'privkey.pem') };
  }

  private currentGeneration(dir: string): number | null {
    try {
      const m = GEN_RE.exec(readlinkSync(join(dir, 'current')));
      return m ? Number(m[1]) : null;
    } catch {
      return null;
    }
  }

  private generations(dir: string): number[] {
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .map((n) => GEN_RE.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }

  /** The installed certificate of `app`, parsed; null when there is none or it cannot be read. */
  get(app: string): CertInfo | null {
    const dir = this.appDir(app);
    const gen = this.currentGeneration(dir);
    if (gen === null) return null;
    try {
      const pem = readFileSync(join(dir, `gen-${gen}`, 'fullchain.pem'), 'utf8');
      const first = splitPemChain(pem)[0];
      if (!first) return null;
      const leaf = new X509Certificate(first);
      return {
        app,
        domains: sanDomains(leaf),
        notBefore: new Date(leaf.validFrom),
        notAfter: new Date(leaf.validTo),
        issuer: issuerName(leaf),
        serialNumber: leaf.serialNumber,
        fingerprint256: leaf.fingerprint256,
        ...this.paths(app),
        generation: gen,
      };
    } catch {
      return null;
    }
  }

  /** Apps that have a certificate directory. */
  apps(): string[] {
    if (!existsSync(this.dir)) return [];
    return readdirSync(this.dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && appName.safeParse(e.name).success)
      .map((e) => e.name)
      .sort();
  }

  /**
   * Validate and install a new certificate + key for `app`, atomically replacing the current one.
   * Throws CertStoreError (and changes nothing) when the pair is unusable.
   */
  install(app: string, pair: { fullchain: string; privkey: string }, opts: { domains?: string[]; now?: Date } = {}): CertInfo {
    const dir = this.appDir(app);
    validatePair(pair.fullchain, pair.privkey, opts);
    ensureDir(dir, 0o700);
    const previous = this.currentGeneration(dir);
    const gen = Math.max(0, previous ?? 0, ...this.generations(dir)) + 1;
    const genDir = join(dir, `gen-${gen}`);
    ensureDir(genDir, 0o700);
    try {
      writeFileAtomic(join(genDir, 'privkey.pem'), pair.privkey, 0o600);
      writeFileAtomic(join(genDir, 'fullchain.pem'), pair.fullchain, 0o600);
      fsyncDir(genDir);
      this.swapLink(dir, 'current', `gen-${gen}`);
      this.ensureLink(dir, 'fullchain.pem', 'current/fullchain.pem');
      this.ensureLink(dir, 'privkey.pem', 'current/privkey.pem');
    } catch (err) {
      // Roll back to exactly what was there: the previous generation stays selected.
      if (this.currentGeneration(dir) === gen) {
        if (previous !== null) this.swapLink(dir, 'current', `gen-${previous}`);
        else rmSync(join(dir, 'current'), { force: true });
      }
      rmSync(genDir, { recursive: true, force: true });
      throw new CertStoreError(`could not install the certificate for ${app}: ${oneLine(err)}`);
    }
    // Keep the new and the previous generation; older ones go.
    for (const g of this.generations(dir)) {
      if (g !== gen && g !== previous) rmSync(join(dir, `gen-${g}`), { recursive: true, force: true });
    }
    const info = this.get(app);
    if (!info) throw new CertStoreError(`certificate for ${app} unreadable right after installing it`);
    return info;
  }

  /** Select the previous generation again (e.g. when nginx rejects a new certificate). Returns it, or null. */
  rollback(app: string): CertInfo | null {
    const dir = this.appDir(app);
    const current = this.currentGeneration(dir);
    const older = this.generations(dir).filter((g) => current === null || g < current);
    const prev = older[older.length - 1];
    if (prev === undefined) return null;
    this.swapLink(dir, 'current', `gen-${prev}`);
    if (current !== null) rmSync(join(dir, `gen-${current}`), { recursive: true, force: true });
    return this.get(app);
  }

  /** Delete an app's certificates and its record (the app is gone). */
  remove(app: string): void {
    rmSync(this.appDir(app), { recursive: true, force: true });
    if (this.state.apps[app]) {
      delete this.state.apps[app];
      this.saveState();
    }
  }

  // ---- desired domains and renewal records ----

  record(app: string): RenewalRecord | undefined {
    const r = this.state.apps[app];
    return r ? structuredClone(r) : undefined;
  }

  records(): Record<string, RenewalRecord> {
    return structuredClone(this.state.apps);
  }

  /** Remember the domains `app` wants (normalized by the caller). */
  setDesired(app: string, domains: string[]): void {
    this.appDir(app); // validates the name
    const r = this.state.apps[app] ?? emptyRecord();
    if (r.domains.length === domains.length && r.domains.every((d, i) => d === domains[i]) && this.state.apps[app]) return;
    r.domains = [...domains];
    this.state.apps[app] = r;
    this.saveState();
  }

  /** Record one issuance/renewal attempt and its outcome. */
  recordAttempt(app: string, o: AttemptOutcome): RenewalRecord {
    this.appDir(app);
    const r = this.state.apps[app] ?? emptyRecord(o.domains);
    r.lastAttemptAt = o.at.toISOString();
    r.lastFinishedAt = o.finishedAt.toISOString();
    r.lastResult = o.ok ? 'ok' : 'failed';
    r.lastReason = o.reason;
    r.lastError = o.ok ? null : (o.error ?? 'unknown error');
    r.failures = o.ok ? 0 : r.failures + 1;
    r.attemptedDomains = [...o.domains];
    if (o.ok) r.lastSuccessAt = o.finishedAt.toISOString();
    r.nextAttemptAt = o.nextAttemptAt ? o.nextAttemptAt.toISOString() : null;
    this.state.apps[app] = r;
    this.saveState();
    return structuredClone(r);
  }

  // ---- symlink helpers ----

  /** Atomically point `dir/name` at `target` (a new symlink renamed over the old one). */
  private swapLink(dir: string, name: string, target: string): void {
    const tmp = join(dir, `.${name}.${randomBytes(4).toString('hex')}.tmp`);
    symlinkSync(target, tmp);
    try {
      renameSync(tmp, join(dir, name));
    } catch (err) {
      rmSync(tmp, { force: true });
      throw err;
    }
    fsyncDir(dir);
  }

  private ensureLink(dir: string, name: string, target: string): void {
    const p = join(dir, name);
    try {
      if (lstatSync(p).isSymbolicLink() && readlinkSync(p) === target) return;
    } catch {
      // missing: create it
    }
    this.swapLink(dir, name, target);
  }
}
