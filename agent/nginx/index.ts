// Nginx as transactions: render → stage → swap → nginx -t on the full config → reload → verify.
// A change that nginx rejects, or that a reload silently fails to apply (nginx keeps the old
// config and `-s reload` still exits 0, e.g. when a port is taken), is rolled back so the files on
// disk always match what nginx serves. A journal makes a crash mid-transaction recoverable.
//
// This facade is the only entry point. Every call that changes files or the nginx process runs
// through ONE queue, so a deploy's switch, a reconcile pass and a certificate renewal never
// interleave: each is a test and reload of the whole config. Callers need no lock of their own.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../shared/logger.js';
import { joinLines, SerialQueue, writeFileAtomic } from '../../shared/util/index.js';
import { appName } from '../../shared/validation.js';
import { APP_FILE_RE, NginxFiles, readOrNull, safeReaddir } from './files.js';
import { NginxProcess } from './process.js';
import { checkAppName, checkSettings, generationOf, httpsNames, renderBase, renderMain, renderSite, type RenderSettings } from './render.js';
import { Transactions, type FileChange } from './transaction.js';
import { NginxError, type AppSite, type NginxSettings, type TlsCheck } from './types.js';
import { errorLogHint, Verifier } from './verify.js';

export { NginxError, type AppSite, type AppTls, type NginxSettings } from './types.js';

const SYSTEM_MIME_TYPES = '/etc/nginx/mime.types';

export class Nginx {
  private readonly s: RenderSettings;
  private readonly files: NginxFiles;
  private readonly proc: NginxProcess;
  private readonly verifier: Verifier;
  private readonly tx: Transactions;
  private readonly log: Logger;
  /** The one lock: every mutating call runs here, one at a time in call order. */
  private readonly queue = new SerialQueue();
  private counter = 0;

  constructor(settings: NginxSettings, log: Logger) {
    this.s = checkSettings(settings);
    this.log = log;
    this.files = new NginxFiles(this.s.prefix, this.s.sitesDir);
    this.proc = new NginxProcess(settings.nginxBin ?? (existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx'), this.files);
    const verifyTimeoutMs = settings.verifyTimeoutMs ?? 5000;
    this.verifier = new Verifier({ httpPort: this.s.httpPort, httpsPort: this.s.httpsPort, timeoutMs: verifyTimeoutMs });
    this.tx = new Transactions({
      files: this.files,
      proc: this.proc,
      verifier: this.verifier,
      log,
      verifyTimeoutMs,
      nextGeneration: () => this.nextGeneration(),
      renderBase: (gen) => renderBase(this.s, gen),
    });
  }

  // ---- mutating calls: one at a time --------------------------------------------------------

  /** Prefix mode: write nginx.conf if needed and start nginx when it is not running. System mode: check nginx exists. */
  ensureRunning(): Promise<void> {
    return this.queue.run(async () => {
      const version = await this.proc.run(['-v']);
      if (version.code !== 0) throw new NginxError(`nginx is not usable (${this.proc.bin}): ${joinLines(version.stderr) || 'not found'}`);
      this.prepare();
      this.tx.recover();
      const changes = this.fixedFileChanges();
      if (await this.proc.isRunning()) {
        if (changes.length > 0) await this.tx.apply(changes, 'the base config');
        return;
      }
      this.tx.writeFiles(changes); // nothing to roll back to: nginx is not serving anything yet
      await this.tx.quarantineBrokenAppFiles();
      await this.proc.start();
      const g = this.diskGeneration();
      if (g !== null && !(await this.verifier.waitForGeneration(g))) {
        throw new NginxError(`nginx started but does not answer on port ${this.s.httpPort}${errorLogHint(await this.proc.errorLog(), 0)}`);
      }
      this.log.info({ prefix: this.s.prefix, httpPort: this.s.httpPort }, 'nginx started');
    });
  }

  /** Make the app's server block match `site` (null = remove it) as one transaction; a failure leaves the previous config in place and throws NginxError. */
  async applyApp(app: string, site: AppSite | null): Promise<void> {
    checkAppName(app);
    // Render before queueing: invalid input never touches disk or waits behind others.
    const rendered = site && site.domains.length > 0 ? renderSite(this.s, app, site) : null;
    const desired = rendered?.content ?? null;
    return this.queue.run(async () => {
      this.prepare();
      const file = this.files.appFile(app);
      if (readOrNull(file) === desired) {
        const gen = this.diskGeneration();
        // Unchanged on disk and nginx runs the latest generation we wrote: nothing to do.
        if (gen !== null && (await this.verifier.servesGeneration(gen))) return;
      }
      await this.tx.apply([{ path: file, content: desired }], `app ${app}`, rendered?.tls ? [rendered.tls] : []);
      this.log.info({ app, domains: site?.domains ?? [] }, desired ? 'nginx site applied' : 'nginx site removed');
    });
  }

  /**
   * Reload nginx as a transaction without changing any app file (a renewed certificate behind the
   * stable paths): `nginx -t` reads the new certificate, a refused reload is detected, and each
   * app in `verifyApps` must then serve the certificate that is on disk.
   */
  async reload(what: string, verifyApps: string[] = []): Promise<void> {
    verifyApps.forEach(checkAppName);
    return this.queue.run(async () => {
      this.prepare();
      await this.tx.apply([], what, verifyApps.flatMap((app) => this.certificateCheck(app)));
      this.log.info({ what }, 'nginx reloaded');
    });
  }

  /** Prefix mode only: stop the private nginx (used by tests and uninstall). */
  stop(): Promise<void> {
    if (!this.s.prefix) return Promise.resolve();
    return this.queue.run(() => this.proc.stop());
  }

  // ---- reads: no lock needed ----------------------------------------------------------------

  /** The app's current server block file content, or null when there is none. */
  readAppFile(app: string): string | null {
    checkAppName(app);
    return readOrNull(this.files.appFile(app));
  }

  /** Render the server block for an app (pure). Re-validates every name: nothing unchecked reaches the config. */
  render(app: string, site: AppSite): string {
    return renderSite(this.s, app, site).content;
  }

  /** Names of apps that have a server block on disk. */
  listApps(): string[] {
    return safeReaddir(this.s.sitesDir)
      .map((n) => APP_FILE_RE.exec(n)?.[1])
      .filter((a): a is string => a !== undefined && appName.safeParse(a).success)
      .sort();
  }

  /** The certificate nginx presents for `servername` on the HTTPS port (its SHA-256 fingerprint), or null. */
  servedCertificate(servername: string, timeoutMs = 2000): Promise<string | null> {
    return this.verifier.servedCertificate(servername, timeoutMs);
  }

  // ---- helpers ------------------------------------------------------------------------------

  /** The certificate the app's HTTPS block must present after a reload (none when it serves no HTTPS name). */
  private certificateCheck(app: string): TlsCheck[] {
    const tls = this.s.httpsPort > 0 ? (this.s.tlsFor?.(app) ?? null) : null;
    const served = httpsNames(readOrNull(this.files.appFile(app)), this.s.httpsPort);
    const domain = served.find((d) => tls?.domains.includes(d));
    return tls && domain ? [{ certPath: tls.certPath, keyPath: tls.keyPath, domains: [domain] }] : [];
  }

  /** nginx.conf (prefix mode) and the base file, where they differ from what this version renders. */
  private fixedFileChanges(): FileChange[] {
    const changes: FileChange[] = [];
    if (this.s.prefix) {
      const main = this.renderMain();
      if (readOrNull(this.files.mainConf()) !== main) changes.push({ path: this.files.mainConf(), content: main });
    }
    const gen = this.diskGeneration();
    const base = this.files.baseFile();
    if (gen === null || readOrNull(base) !== renderBase(this.s, gen)) changes.push({ path: base, content: renderBase(this.s, this.nextGeneration()) });
    return changes;
  }

  private renderMain(): string {
    return renderMain(this.s, existsSync(SYSTEM_MIME_TYPES) ? SYSTEM_MIME_TYPES : null);
  }

  /** Directories (and, in prefix mode, a first nginx.conf) so a transaction has somewhere to write. */
  private prepare(): void {
    const prefix = this.s.prefix;
    try {
      if (prefix) {
        for (const d of [prefix, join(prefix, 'logs'), join(prefix, 'tmp')]) mkdirSync(d, { recursive: true });
      }
      mkdirSync(this.s.sitesDir, { recursive: true });
      if (prefix && !existsSync(this.files.mainConf())) writeFileAtomic(this.files.mainConf(), this.renderMain(), 0o644);
    } catch (err) {
      throw new NginxError(`cannot prepare nginx config directory ${this.s.sitesDir}: ${(err as Error).message}`);
    }
  }

  private nextGeneration(): string {
    return `${Date.now().toString(36)}-${process.pid.toString(36)}-${++this.counter}`;
  }

  /** The generation written in the base file on disk (null when there is none). */
  private diskGeneration(): string | null {
    return generationOf(readOrNull(this.files.baseFile()));
  }
}
