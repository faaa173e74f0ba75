// Nginx as transactions: render → stage → swap → nginx -t on the full config → reload → verify.
// A change that nginx rejects, or that a reload silently fails to apply (nginx keeps the old
// config and `-s reload` still exits 0, e.g. when a port is taken), is rolled back so the files on
// disk always match what nginx serves. A journal makes a crash mid-transaction recoverable.
import { execFile, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  closeSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  fsyncSync,
} from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { request } from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { basename, dirname, join, resolve } from 'node:path';
import type { Logger } from '../../shared/logger.js';
import { appName, domainName, GENERATION_HOST } from '../../shared/validation.js';

export class NginxError extends Error {
  override name = 'NginxError';
}

export interface NginxSettings {
  /** Set: berth owns a private nginx under this prefix (writes nginx.conf, starts it). Unset: system nginx in /etc/nginx. */
  prefix?: string;
  httpPort: number;
  /** The nginx binary (default: /usr/sbin/nginx when present, else `nginx` from PATH). */
  nginxBin?: string;
  /** System mode: where per-app files go (default /etc/nginx/conf.d, which Debian's nginx.conf includes). */
  confDir?: string;
  /** How long a reload may take to show up before it counts as failed (default 5000 ms). */
  verifyTimeoutMs?: number;
  /** HTTPS port (unset or 0: no HTTPS listener and no TLS server blocks). */
  httpsPort?: number;
  /** Directory served at /.well-known/acme-challenge/ on every host (unset: no challenge locations). */
  acmeWebroot?: string;
  /**
   * The certificate an app's server block uses right now (null: plain HTTP only). Asked at render
   * time, so a deploy's switch keeps the app's HTTPS and a new certificate shows up as a config change.
   */
  tlsFor?: (app: string) => AppTls | null;
}

/** A certificate for an app's HTTPS server block. Paths are stable (renewals only need a reload). */
export interface AppTls {
  certPath: string;
  keyPath: string;
  /** The names the certificate covers: only these get HTTPS and the HTTP → HTTPS redirect. */
  domains: string[];
}

/**
 * What one app's server block routes: its domains to the web containers' published ports, or, for
 * a static site, to a release directory served from disk.
 */
export type AppSite =
  | {
      domains: string[];
      upstreamPort: number;
      /** Every web replica's port when the web process is scaled (upstreamPort is the first). */
      upstreamPorts?: number[];
      staticRoot?: undefined;
      /** Overrides NginxSettings.tlsFor for this render (null: no HTTPS). */
      tls?: AppTls | null;
    }
  | { domains: string[]; staticRoot: string; upstreamPort?: undefined; upstreamPorts?: undefined; tls?: AppTls | null };

/** Paths written into the config unquoted (static roots, the ACME webroot, certificate files). */
const PLAIN_PATH_RE = /^\/[A-Za-z0-9._\/-]*$/;

// Mozilla "intermediate" (TLS 1.2 + 1.3). The DHE suites are left out: they need a dhparam file.
const TLS_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

const BASE_FILE = 'berth_base.conf'; // "_" can never appear in an app name, so no clash with berth-APP.conf
const JOURNAL_FILE = '.berth-journal.json';
const APP_FILE_RE = /^berth-([a-z][a-z0-9-]*)\.conf$/;

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface FileChange {
  path: string;
  /** New content, or null to delete the file. */
  content: string | null;
  /** Where the previous file was copied (null: there was none). */
  backup?: string | null;
}

export class Nginx {
  private readonly prefix: string | undefined;
  private readonly httpPort: number;
  private readonly httpsPort: number;
  private readonly acmeWebroot: string | undefined;
  private readonly tlsFor: ((app: string) => AppTls | null) | undefined;
  private readonly bin: string;
  private readonly sitesDir: string;
  private readonly verifyTimeoutMs: number;
  private readonly log: Logger;
  private chain: Promise<unknown> = Promise.resolve();
  private counter = 0;
  private systemPidFile: string | undefined;

  constructor(settings: NginxSettings, log: Logger) {
    if (!Number.isInteger(settings.httpPort) || settings.httpPort < 1 || settings.httpPort > 65535) {
      throw new NginxError(`invalid HTTP port ${settings.httpPort}`);
    }
    if (settings.prefix !== undefined) {
      const p = resolve(settings.prefix);
      // The prefix is written into nginx.conf unquoted: allow only plain path characters.
      if (!/^\/[A-Za-z0-9._\/-]*$/.test(p) || p === '/') throw new NginxError(`invalid nginx prefix "${settings.prefix}"`);
      this.prefix = p;
    }
    this.httpPort = settings.httpPort;
    const httpsPort = settings.httpsPort ?? 0;
    if (!Number.isInteger(httpsPort) || httpsPort < 0 || httpsPort > 65535 || (httpsPort !== 0 && httpsPort === this.httpPort)) {
      throw new NginxError(`invalid HTTPS port ${settings.httpsPort}`);
    }
    this.httpsPort = httpsPort;
    if (settings.acmeWebroot !== undefined) {
      const w = resolve(settings.acmeWebroot);
      if (!plainPath(w)) throw new NginxError(`invalid ACME webroot "${settings.acmeWebroot}": must be an absolute path of letters, digits and "._/-"`);
      this.acmeWebroot = w;
    }
    this.tlsFor = settings.tlsFor;
    this.bin = settings.nginxBin ?? (existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx');
    this.sitesDir = this.prefix ? join(this.prefix, 'sites') : (settings.confDir ?? '/etc/nginx/conf.d');
    this.verifyTimeoutMs = settings.verifyTimeoutMs ?? 5000;
    this.log = log;
  }

  // ---- public API -------------------------------------------------------------------------

  /** Prefix mode: write nginx.conf if needed and start nginx when it is not running. System mode: check nginx exists. */
  async ensureRunning(): Promise<void> {
    return this.locked(async () => {
      const version = await this.run(['-v']);
      if (version.code !== 0) throw new NginxError(`nginx is not usable (${this.bin}): ${oneLine(version.stderr) || 'not found'}`);
      this.prepare();
      this.recover();

      const changes: FileChange[] = [];
      if (this.prefix) {
        const main = this.renderMain();
        if (readOrNull(this.mainConf()) !== main) changes.push({ path: this.mainConf(), content: main });
      }
      const gen = this.diskGeneration();
      if (gen === null || readOrNull(this.baseFile()) !== this.renderBase(gen)) changes.push({ path: this.baseFile(), content: this.renderBase(this.nextGeneration()) });

      if (!(await this.isRunning())) {
        this.writeFiles(changes); // nothing to roll back to: nginx is not serving anything yet
        await this.quarantineBrokenAppFiles();
        await this.start();
        const g = this.diskGeneration();
        if (g !== null && !(await this.waitForGeneration(g))) {
          throw new NginxError(`nginx started but does not answer on port ${this.httpPort}${this.errorLogHint(0)}`);
        }
        this.log.info({ prefix: this.prefix, httpPort: this.httpPort }, 'nginx started');
        return;
      }
      if (changes.length > 0) await this.transaction(changes, 'the base config');
    });
  }

  /** Make the app's server block match `site` (null = remove it) as one transaction; a failure leaves the previous config in place and throws NginxError. */
  async applyApp(app: string, site: AppSite | null): Promise<void> {
    checkAppName(app);
    // Render before taking the lock: invalid input never touches disk or waits behind others.
    const rendered = site && site.domains.length > 0 ? this.renderSite(app, site) : null;
    const desired = rendered?.content ?? null;
    return this.locked(async () => {
      this.prepare();
      const file = this.appFile(app);
      if (readOrNull(file) === desired) {
        const gen = this.diskGeneration();
        // Unchanged on disk and nginx runs the latest generation we wrote: nothing to do.
        if (gen !== null && (await this.servesGeneration(gen))) return;
      }
      await this.transaction([{ path: file, content: desired }], `app ${app}`, rendered?.tls ? [rendered.tls] : []);
      this.log.info({ app, domains: site?.domains ?? [] }, desired ? 'nginx site applied' : 'nginx site removed');
    });
  }

  /** The app's current server block file content, or null when there is none. */
  readAppFile(app: string): string | null {
    checkAppName(app);
    return readOrNull(this.appFile(app));
  }

  /**
   * Reload nginx as a transaction without changing any app file (a renewed certificate behind the
   * stable paths): `nginx -t` reads the new certificate, a refused reload is detected, and each
   * app in `verifyApps` must then serve the certificate that is on disk.
   */
  async reload(what: string, verifyApps: string[] = []): Promise<void> {
    verifyApps.forEach(checkAppName);
    return this.locked(async () => {
      this.prepare();
      const checks: TlsCheck[] = [];
      for (const app of verifyApps) {
        const tls = this.httpsPort > 0 ? (this.tlsFor?.(app) ?? null) : null;
        const served = this.httpsNames(readOrNull(this.appFile(app)));
        const domain = served.find((d) => tls?.domains.includes(d));
        if (tls && domain) checks.push({ certPath: tls.certPath, keyPath: tls.keyPath, domains: [domain] });
      }
      await this.transaction([], what, checks);
      this.log.info({ what }, 'nginx reloaded');
    });
  }

  /** The certificate nginx presents for `servername` on the HTTPS port (its SHA-256 fingerprint), or null. */
  servedCertificate(servername: string, timeoutMs = 2000): Promise<string | null> {
    if (this.httpsPort === 0) return Promise.resolve(null);
    return new Promise((resolvePromise) => {
      const sock = tlsConnect({ host: '127.0.0.1', port: this.httpsPort, servername, rejectUnauthorized: false, timeout: timeoutMs, ALPNProtocols: ['http/1.1'] }, () => {
        const fp = sock.getPeerX509Certificate()?.fingerprint256 ?? null;
        sock.destroy();
        resolvePromise(fp);
      });
      sock.on('timeout', () => sock.destroy());
      sock.on('error', () => resolvePromise(null));
      sock.on('close', () => resolvePromise(null));
    });
  }

  /** Render the server block for an app (pure). Re-validates every name: nothing unchecked reaches the config. */
  render(app: string, site: AppSite): string {
    return this.renderSite(app, site).content;
  }

  /** The TLS part of an app's server blocks after validation (null: plain HTTP only). */
  private tlsOf(app: string, site: AppSite, domains: string[]): AppTls | null {
    if (this.httpsPort === 0) return null;
    const tls = site.tls !== undefined ? site.tls : (this.tlsFor?.(app) ?? null);
    if (!tls) return null;
    for (const p of [tls.certPath, tls.keyPath]) {
      if (typeof p !== 'string' || !plainPath(p)) throw new NginxError(`invalid certificate path ${JSON.stringify(p)} for app ${app}`);
    }
    // Only names the certificate really covers get HTTPS (after a failed re-issue it is the old set).
    const covered = domains.filter((d) => Array.isArray(tls.domains) && tls.domains.includes(d));
    return covered.length ? { certPath: tls.certPath, keyPath: tls.keyPath, domains: covered } : null;
  }

  private renderSite(app: string, site: AppSite): { content: string; tls: AppTls | null } {
    checkAppName(app);
    if (!Array.isArray(site.domains) || site.domains.length === 0) throw new NginxError(`app ${app} has no domains to serve`);
    const domains: string[] = [];
    for (const raw of site.domains) {
      const parsed = domainName.safeParse(raw);
      if (!parsed.success) throw new NginxError(`invalid domain ${JSON.stringify(raw)} for app ${app}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
      if (!domains.includes(parsed.data)) domains.push(parsed.data);
    }
    let body: string[];
    let head: string[] = [];
    let title: string;
    if (site.staticRoot !== undefined) {
      const root = site.staticRoot;
      if (typeof root !== 'string' || !plainPath(root)) throw new NginxError(`invalid static root ${JSON.stringify(root)} for app ${app}`);
      body = this.staticBody(root);
      title = `# berth: app ${app} (static site) — generated by the berth agent; manual edits are overwritten.`;
    } else {
      const ports = site.upstreamPorts && site.upstreamPorts.length > 0 ? site.upstreamPorts : [site.upstreamPort];
      for (const port of ports) {
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw new NginxError(`invalid upstream port ${String(port)} for app ${app}`);
      }
      const upstream = `berth_app_${app}`;
      head = [`upstream ${upstream} {`, ...[...new Set(ports)].map((port) => `    server 127.0.0.1:${port};`), `    keepalive 32;`, `}`, ``];
      body = proxyBody(upstream);
      title = `# berth: app ${app} — generated by the berth agent; manual edits are overwritten.`;
    }
    const tls = this.tlsOf(app, site, domains);
    const secure = tls?.domains ?? [];
    const plain = domains.filter((d) => !secure.includes(d));
    const out = [title, ...head];
    if (plain.length) out.push(...this.serverBlock(`${this.httpPort}`, plain, [...this.challengeLocation(), ...body]));
    if (tls) {
      // Redirect only `location /`: the challenge must keep answering over plain HTTP for renewals.
      const target = this.httpsPort === 443 ? 'https://$host$request_uri' : `https://$host:${this.httpsPort}$request_uri`;
      out.push(...this.serverBlock(`${this.httpPort}`, secure, [...this.challengeLocation(), `    location / {`, `        return 308 ${target};`, `    }`]));
      out.push(...this.serverBlock(`${this.httpsPort} ssl http2`, secure, [...tlsDirectives(tls), ``, ...body]));
    }
    return { content: out.join('\n'), tls };
  }

  private serverBlock(listen: string, names: string[], lines: string[]): string[] {
    return [`server {`, `    listen ${listen};`, `    server_name ${names.join(' ')};`, ``, ...lines, `}`, ``];
  }

  /** HTTP-01 tokens from the ACME webroot, on every host (a prefix match beats the app's regex locations). */
  private challengeLocation(): string[] {
    if (!this.acmeWebroot) return [];
    return [
      `    location ^~ /.well-known/acme-challenge/ {`,
      `        root ${this.acmeWebroot};`,
      `        default_type text/plain;`,
      `        try_files $uri =404;`,
      `    }`,
    ];
  }

  /**
   * A static site served from its release directory. Caching: HTML is revalidated on every visit
   * (a deploy shows at once), content-hashed assets are immutable, other assets are cached an hour.
   */
  private staticBody(root: string): string[] {
    const assets = 'css|js|mjs|map|json|png|jpe?g|gif|svg|ico|webp|avif|woff2?|ttf|otf|eot|mp4|webm|mp3|wasm|txt|xml|pdf';
    return [
      `    root ${root};`,
      `    index index.html index.htm;`,
      `    # Only files inside the release directory, never what a link points at.`,
      `    disable_symlinks on;`,
      `    charset utf-8;`,
      `    gzip on;`,
      `    gzip_types text/css application/javascript application/json image/svg+xml text/plain text/xml;`,
      ``,
      `    location / {`,
      `        try_files $uri $uri/ $uri.html =404;`,
      `        add_header Cache-Control "no-cache" always;`,
      `    }`,
      // Quoted: nginx requires it for a regex containing "{".
      `    location ~* "\\.[0-9a-f]{8,}\\.(?:${assets})$" {`,
      `        try_files $uri =404;`,
      `        add_header Cache-Control "public, max-age=31536000, immutable" always;`,
      `    }`,
      `    location ~* \\.(?:${assets})$ {`,
      `        try_files $uri =404;`,
      `        add_header Cache-Control "public, max-age=3600" always;`,
      `    }`,
    ];
  }

  /** The names an app file serves over HTTPS (from its `listen … ssl` server block). */
  private httpsNames(content: string | null): string[] {
    const m = content ? new RegExp(`\\n    listen ${this.httpsPort} ssl http2;\\n    server_name ([a-z0-9. -]+);`).exec(content) : null;
    return m ? m[1]!.split(' ') : [];
  }

  /** Names of apps that have a server block on disk. */
  listApps(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.sitesDir);
    } catch {
      return [];
    }
    return names
      .map((n) => APP_FILE_RE.exec(n)?.[1])
      .filter((a): a is string => a !== undefined && appName.safeParse(a).success)
      .sort();
  }

  /** Prefix mode only: stop the private nginx (used by tests and uninstall). */
  async stop(): Promise<void> {
    if (!this.prefix) return;
    return this.locked(async () => {
      const pid = await this.runningPid();
      if (pid === null) return;
      // SIGQUIT is what `nginx -s quit` sends; signalling directly also works when the config
      // on disk no longer parses (`-s` re-reads it to find the pid file).
      signal(pid, 'SIGQUIT');
      if (await waitForExit(pid, 10_000)) return;
      signal(pid, 'SIGTERM');
      if (await waitForExit(pid, 3000)) return;
      signal(pid, 'SIGKILL');
      await waitForExit(pid, 2000);
    });
  }

  /** Directories (and, in prefix mode, a first nginx.conf) so a transaction has somewhere to write. */
  private prepare(): void {
    try {
      if (this.prefix) {
        for (const d of [this.prefix, join(this.prefix, 'logs'), join(this.prefix, 'tmp')]) mkdirSync(d, { recursive: true });
      }
      mkdirSync(this.sitesDir, { recursive: true });
      if (this.prefix && !existsSync(this.mainConf())) writeAtomic(this.mainConf(), this.renderMain());
    } catch (err) {
      throw new NginxError(`cannot prepare nginx config directory ${this.sitesDir}: ${(err as Error).message}`);
    }
  }

  // ---- transactions -----------------------------------------------------------------------

  /**
   * Apply file changes (plus a new generation marker) so that either all of them are live in
   * nginx, or none are on disk. Caller holds the lock.
   */
  private async transaction(changes: FileChange[], what: string, tlsChecks: TlsCheck[] = []): Promise<void> {
    const gen = this.nextGeneration();
    const all: FileChange[] = [...changes.filter((c) => c.path !== this.baseFile()), { path: this.baseFile(), content: this.renderBase(gen) }];

    try {
      // 1. Back up current files, then journal what to undo; only then touch live files.
      for (const c of all) {
        if (existsSync(c.path)) {
          c.backup = hidden(c.path, 'bak');
          copyFileSync(c.path, c.backup);
        } else {
          c.backup = null;
        }
      }
      writeAtomic(this.journalFile(), JSON.stringify({ what, changes: all.map((c) => ({ path: c.path, backup: c.backup })) }));

      // 2. Swap: each file is staged next to its target and renamed into place (atomic).
      this.writeFiles(all);
    } catch (err) {
      try {
        this.rollback(all.filter((c) => c.backup !== undefined));
      } catch (rollbackErr) {
        this.log.error({ err: rollbackErr }, 'could not roll back a failed nginx config write');
      }
      throw new NginxError(`could not write the nginx config for ${what}: ${(err as Error).message}`);
    }

    // 3. Test the full config, exactly as nginx will load it.
    const test = await this.run(['-t', '-q']);
    if (test.code !== 0) {
      this.rollback(all);
      throw new NginxError(`nginx rejected the config for ${what}: ${nginxMessage(test.stderr)}`);
    }

    // 4. Reload (or start, when our private nginx is down) and verify the new generation serves.
    const logOffset = fileSize(this.errorLog());
    const master = await this.runningPid();
    const running = master !== null;
    const oldWorkers = master !== null ? workerPids(master) : [];
    const applied = running ? await this.run(['-s', 'reload']) : await this.startProcess();
    let live = applied.code === 0 && (await this.waitForGeneration(gen));
    // New workers answer first; until the old ones stop accepting, a request can still land on
    // the old config. Waiting for them makes "applyApp returned" mean "all new requests see it".
    if (live && !(await waitRetired(oldWorkers, this.verifyTimeoutMs))) {
      this.log.warn({ oldWorkers }, 'old nginx workers are slow to stop accepting connections');
    }
    let failure: string | null = null;
    // A reload that logged [emerg] did not (fully) apply, whatever the probe says.
    if (live && this.newEmergencies(logOffset)) {
      live = false;
      failure = 'nginx logged an error while reloading';
    }
    // The new server block answers with the certificate on disk (a reload keeps the old one on failure).
    for (const check of live ? tlsChecks : []) {
      const problem = await this.waitForCertificate(check);
      if (problem) {
        live = false;
        failure = problem;
        break;
      }
    }
    if (!live) {
      const reason = failure ?? (applied.code !== 0 ? nginxMessage(applied.stderr) : `the reload did not take effect within ${this.verifyTimeoutMs} ms`);
      const hint = this.errorLogHint(logOffset);
      this.rollback(all);
      if (running) await this.run(['-s', 'reload']); // nginx kept the old config; make sure it is the one on disk
      throw new NginxError(`nginx did not apply the config for ${what}: ${reason}${hint}`);
    }

    // 5. Commit: drop the journal first, so a crash from here on never undoes a live change.
    rmSync(this.journalFile(), { force: true });
    for (const c of all) if (c.backup) rmSync(c.backup, { force: true });
  }

  /** Wait until nginx presents the certificate file's leaf for the check's domain; a one-line problem or null. */
  private async waitForCertificate(check: TlsCheck): Promise<string | null> {
    const domain = check.domains[0]!;
    let expected: string;
    try {
      const pem = readFileSync(check.certPath, 'utf8');
      expected = new X509Certificate(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem)?.[0] ?? '').fingerprint256;
    } catch (err) {
      return `certificate ${check.certPath} unreadable: ${oneLine((err as Error).message)}`;
    }
    const deadline = Date.now() + this.verifyTimeoutMs;
    let served: string | null = null;
    for (;;) {
      served = await this.servedCertificate(domain);
      if (served === expected) return null;
      if (Date.now() > deadline) break;
      await sleep(50);
    }
    return served === null
      ? `nginx does not answer TLS for ${domain} on port ${this.httpsPort}`
      : `nginx still serves another certificate for ${domain} on port ${this.httpsPort}`;
  }

  /** Did nginx log an [emerg] since `offset`? */
  private newEmergencies(offset: number): boolean {
    return /\[emerg\]/.test(readFrom(this.errorLog(), offset));
  }

  private writeFiles(changes: FileChange[]): void {
    for (const c of changes) {
      if (c.content === null) rmSync(c.path, { force: true });
      else writeAtomic(c.path, c.content);
    }
  }

  /** Put every file back exactly as it was (byte-identical: the backups are copies). */
  private rollback(changes: FileChange[]): void {
    for (const c of changes) {
      if (c.backup) renameSync(c.backup, c.path);
      else if (c.backup === null) rmSync(c.path, { force: true });
    }
    rmSync(this.journalFile(), { force: true });
  }

  /** After a crash mid-transaction: undo it from the journal and drop stray staging files. */
  private recover(): void {
    const journal = readOrNull(this.journalFile());
    if (journal !== null) {
      try {
        const parsed = JSON.parse(journal) as { what?: string; changes?: Array<{ path: string; backup: string | null }> };
        const changes = (parsed.changes ?? []).filter((c) => typeof c.path === 'string' && dirname(c.path).startsWith(this.prefix ?? this.sitesDir));
        // A recorded backup that is gone was already renamed back by an interrupted rollback.
        this.rollback(
          changes.map((c) => ({ path: c.path, content: null, backup: c.backup && !existsSync(c.backup) ? undefined : c.backup })),
        );
        this.log.warn({ what: parsed.what }, 'rolled back an nginx change interrupted by a restart');
      } catch (err) {
        this.log.error({ err }, 'unreadable nginx journal; removing it');
        rmSync(this.journalFile(), { force: true });
      }
    }
    for (const dir of new Set([this.sitesDir, ...(this.prefix ? [this.prefix] : [])])) {
      for (const name of safeReaddir(dir)) {
        if (/^\.berth-.*\.(tmp|bak)$/.test(name)) rmSync(join(dir, name), { force: true });
      }
    }
  }

  /**
   * Before starting nginx: a berth app file it rejects (written by an older version, edited by
   * hand) must not keep every other app offline. Move such files aside and say so.
   */
  private async quarantineBrokenAppFiles(): Promise<void> {
    for (let i = 0; i < 50; i++) {
      const test = await this.run(['-t', '-q']);
      if (test.code === 0) return;
      const msg = nginxMessage(test.stderr);
      const file = / in (\/\S+?):\d+/.exec(msg)?.[1];
      const ours = file !== undefined && dirname(file) === this.sitesDir && APP_FILE_RE.test(basename(file));
      if (!ours) throw new NginxError(`nginx rejects its config: ${msg}`);
      const aside = `${file}.broken-${Date.now()}`;
      renameSync(file, aside);
      this.log.error({ file, movedTo: aside, error: msg }, 'nginx rejected an app config file; moved it aside so the others can be served');
    }
    throw new NginxError('nginx rejects its config');
  }

  // ---- process control --------------------------------------------------------------------

  private async start(): Promise<void> {
    const r = await this.startProcess();
    if (r.code !== 0) throw new NginxError(`nginx failed to start: ${nginxMessage(r.stderr)}`);
  }

  /** Start nginx; it daemonizes (so it keeps serving if the agent dies) and we wait for its pid. */
  private async startProcess(): Promise<RunResult> {
    const result = await new Promise<RunResult>((resolvePromise) => {
      const child = spawn(this.bin, this.baseArgs([]), { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      child.on('error', (err) => resolvePromise({ code: 127, stdout: '', stderr: err.message }));
      // 'exit', not 'close': the daemonized master must not be able to hold us up via the pipe.
      child.on('exit', (code) => {
        setTimeout(() => {
          child.stderr.destroy();
          resolvePromise({ code, stdout: '', stderr });
        }, 20);
      });
    });
    if (result.code !== 0) return result;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      if ((await this.runningPid()) !== null) return result;
      await sleep(50);
    }
    return { code: 1, stdout: '', stderr: `nginx exited without leaving a running master${this.errorLogHint(0)}` };
  }

  private async isRunning(): Promise<boolean> {
    return (await this.runningPid()) !== null;
  }

  /** The master's pid from the pid file, when that process is alive and is nginx. */
  private async runningPid(): Promise<number | null> {
    const pidFile = this.prefix ? join(this.prefix, 'nginx.pid') : await this.systemPidPath();
    const pid = Number((readOrNull(pidFile) ?? '').trim());
    if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return null;
    // A stale pid file can name an unrelated process that reused the pid.
    const cmdline = readOrNull(`/proc/${pid}/cmdline`);
    return cmdline === null || cmdline.includes('nginx') ? pid : null;
  }

  private async systemPidPath(): Promise<string> {
    if (!this.systemPidFile) {
      const v = await this.run(['-V']);
      this.systemPidFile = /--pid-path=(\S+)/.exec(v.stderr)?.[1] ?? '/run/nginx.pid';
    }
    return this.systemPidFile;
  }

  /** nginx arguments for our instance: prefix mode always names the prefix, config and error log. */
  private baseArgs(extra: string[]): string[] {
    if (!this.prefix) return extra;
    return ['-p', `${this.prefix}/`, '-c', this.mainConf(), '-e', this.errorLog(), ...extra];
  }

  private run(extra: string[], timeoutMs = 30_000): Promise<RunResult> {
    return new Promise((resolvePromise) => {
      execFile(this.bin, this.baseArgs(extra), { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolvePromise({ code, stdout, stderr: stderr || (err && !stderr ? err.message : '') });
      });
    });
  }

  // ---- generation marker ------------------------------------------------------------------

  private nextGeneration(): string {
    return `${Date.now().toString(36)}-${process.pid.toString(36)}-${++this.counter}`;
  }

  /** The generation written in the base file on disk (null when there is none). */
  private diskGeneration(): string | null {
    const base = readOrNull(this.baseFile());
    return base ? (/return 200 "([a-z0-9-]+)";/.exec(base)?.[1] ?? null) : null;
  }

  private async waitForGeneration(gen: string): Promise<boolean> {
    const deadline = Date.now() + this.verifyTimeoutMs;
    for (;;) {
      if (await this.servesGeneration(gen)) return true;
      if (Date.now() > deadline) return false;
      await sleep(20); // a reload usually lands within tens of ms; this sits on the deploy's critical path
    }
  }

  /** Does nginx answer the generation probe with `gen`? A new connection each time: old workers keep old config. */
  private servesGeneration(gen: string): Promise<boolean> {
    return new Promise((resolvePromise) => {
      const req = request(
        { host: '127.0.0.1', port: this.httpPort, path: '/', headers: { Host: GENERATION_HOST }, agent: false, timeout: 1000 },
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

  // ---- rendering of the fixed parts -------------------------------------------------------

  private renderBase(gen: string): string {
    return [
      '# berth: shared definitions and the reload-verification server — generated, do not edit.',
      'map $http_upgrade $berth_connection_upgrade {',
      '    default upgrade;',
      "    ''      '';",
      '}',
      '',
      '# Answers the generation of the last config berth applied: a reload that nginx silently',
      '# refused (it keeps the old config) is detected because the answer does not change.',
      'server {',
      `    listen ${this.httpPort};`,
      `    server_name ${GENERATION_HOST};`,
      '    access_log off;',
      '    location / {',
      '        default_type text/plain;',
      `        return 200 "${gen}";`,
      '    }',
      '}',
      '',
      ...(this.httpsPort > 0
        ? [
            '# HTTPS for a name berth has no certificate for: refuse the handshake (never another app\'s certificate).',
            'server {',
            `    listen ${this.httpsPort} ssl http2 default_server;`,
            '    server_name _;',
            '    ssl_reject_handshake on;',
            '}',
            '',
          ]
        : []),
    ].join('\n');
  }

  private renderMain(): string {
    const p = this.prefix!;
    const mime = existsSync('/etc/nginx/mime.types')
      ? '    include /etc/nginx/mime.types;'
      : '    types { text/html html; text/css css; application/javascript js; application/json json; image/png png; image/svg+xml svg; }';
    return [
      '# berth: private nginx (BERTH_NGINX_PREFIX) — generated by the berth agent, do not edit.',
      'worker_processes auto;',
      `pid ${p}/nginx.pid;`,
      `error_log ${p}/logs/error.log warn;`,
      '',
      'events {',
      '    worker_connections 4096;',
      '}',
      '',
      'http {',
      mime,
      '    default_type application/octet-stream;',
      `    access_log ${p}/logs/access.log;`,
      `    client_body_temp_path ${p}/tmp/client_body;`,
      `    proxy_temp_path ${p}/tmp/proxy;`,
      `    fastcgi_temp_path ${p}/tmp/fastcgi;`,
      `    uwsgi_temp_path ${p}/tmp/uwsgi;`,
      `    scgi_temp_path ${p}/tmp/scgi;`,
      '    sendfile on;',
      '    tcp_nopush on;',
      '    keepalive_timeout 65;',
      '    server_tokens off;',
      '    server_names_hash_bucket_size 128;',
      '    server_names_hash_max_size 4096;',
      '',
      '    server {',
      `        listen ${this.httpPort} default_server;`,
      '        server_name _;',
      ...(this.acmeWebroot
        ? [
            // Challenges for names that have no server block yet (or whose block is being replaced).
            '        location ^~ /.well-known/acme-challenge/ {',
            `            root ${this.acmeWebroot};`,
            '            default_type text/plain;',
            '            try_files $uri =404;',
            '        }',
            '        location / {',
            '            return 404;',
            '        }',
          ]
        : ['        return 404;']),
      '    }',
      '',
      `    include ${this.sitesDir}/*.conf;`,
      '}',
      '',
    ].join('\n');
  }

  // ---- paths and helpers ------------------------------------------------------------------

  private mainConf(): string {
    return join(this.prefix!, 'nginx.conf');
  }
  private appFile(app: string): string {
    return join(this.sitesDir, `berth-${app}.conf`);
  }
  private baseFile(): string {
    return join(this.sitesDir, BASE_FILE);
  }
  private journalFile(): string {
    return join(this.sitesDir, JOURNAL_FILE);
  }
  private errorLog(): string {
    return this.prefix ? join(this.prefix, 'logs', 'error.log') : '/var/log/nginx/error.log';
  }

  /** nginx's own complaints written to the error log since `offset` (e.g. a bind failure on reload). */
  private errorLogHint(offset: number): string {
    const text = readFrom(this.errorLog(), offset);
    const lines = text
      .split('\n')
      .filter((l) => /\[(emerg|alert|crit)\]/.test(l))
      .map((l) => l.replace(/^\S+ \S+ \[/, '[').replace(/, client: .*$/, '').trim());
    return lines.length ? ` (${lines.slice(-3).join('; ')})` : '';
  }

  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/** An app's certificate nginx must present after a change (for the first of `domains`). */
type TlsCheck = AppTls;

function plainPath(p: string): boolean {
  return PLAIN_PATH_RE.test(p) && p !== '/' && !p.split('/').includes('..');
}

/** Certificate and modern TLS settings, per server block: the system nginx.conf may set its own at http level. */
function tlsDirectives(tls: AppTls): string[] {
  return [
    `    ssl_certificate ${tls.certPath};`,
    `    ssl_certificate_key ${tls.keyPath};`,
    `    ssl_protocols TLSv1.2 TLSv1.3;`,
    `    ssl_ciphers ${TLS_CIPHERS};`,
    `    ssl_prefer_server_ciphers off;`,
    `    ssl_session_cache shared:berth_tls:10m;`,
    `    ssl_session_timeout 1d;`,
    `    ssl_session_tickets off;`,
  ];
}

function proxyBody(upstream: string): string[] {
  return [
    `    location / {`,
    `        proxy_pass http://${upstream};`,
    `        proxy_http_version 1.1;`,
    `        # Empty for plain requests (keeps upstream keepalive), "upgrade" for WebSockets.`,
    `        proxy_set_header Connection $berth_connection_upgrade;`,
    `        proxy_set_header Upgrade $http_upgrade;`,
    `        proxy_set_header Host $host;`,
    `        proxy_set_header X-Real-IP $remote_addr;`,
    `        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;`,
    `        proxy_set_header X-Forwarded-Proto $scheme;`,
    `        proxy_connect_timeout 5s;`,
    `        proxy_send_timeout 60s;`,
    `        proxy_read_timeout 60s;`,
    `        client_max_body_size 64m;`,
    `    }`,
  ];
}

function checkAppName(app: string): void {
  const r = appName.safeParse(app);
  if (!r.success) throw new NginxError(`invalid app name ${JSON.stringify(app)}: ${r.error.issues[0]?.message ?? 'invalid'}`);
}

/** nginx's stderr reduced to its error lines ("[emerg] … in FILE:LINE"). */
function nginxMessage(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/^nginx: /, '').trim())
    .filter(Boolean);
  const errors = lines.filter((l) => /^\[(emerg|alert|crit|error)\]/.test(l));
  return (errors.length ? errors : lines).slice(0, 3).join('; ') || 'no output from nginx';
}

function oneLine(s: string): string {
  return s.split('\n').map((l) => l.trim()).filter(Boolean).join('; ');
}

function hidden(path: string, suffix: string): string {
  return join(dirname(path), `.berth-${basename(path)}.${suffix}`);
}

/** Write via a hidden staging file in the same directory and rename: readers never see half a file. */
function writeAtomic(path: string, content: string): void {
  const tmp = hidden(path, 'tmp');
  const fd = openSync(tmp, 'w', 0o644);
  try {
    writeFileSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function readFrom(path: string, offset: number): string {
  try {
    const size = statSync(path).size;
    const start = offset > size ? 0 : Math.max(offset, size - 64_000);
    const buf = Buffer.alloc(size - start);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, buf.length, start);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8');
  } catch {
    return '';
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** The master's worker processes that still accept connections (Linux /proc). */
function workerPids(master: number): number[] {
  const pids: number[] = [];
  for (const entry of safeReaddir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readOrNull(`/proc/${entry}/stat`);
    if (!stat) continue;
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid !== master) continue;
    const cmd = readOrNull(`/proc/${entry}/cmdline`) ?? '';
    if (cmd.includes('worker process') && !cmd.includes('shutting down')) pids.push(Number(entry));
  }
  return pids;
}

/**
 * Wait until each old worker has exited or retitled itself "worker process is shutting down",
 * which nginx does right before it closes its listening sockets on a graceful reload.
 */
async function waitRetired(pids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const accepting = pids.filter((pid) => isAlive(pid) && !(readOrNull(`/proc/${pid}/cmdline`) ?? 'shutting down').includes('shutting down'));
    if (accepting.length === 0) return true;
    if (Date.now() > deadline) return false;
    await sleep(10);
  }
}

/**
 * Is the process alive? A daemonized nginx is reparented to PID 1, which may be slow to reap it:
 * an exited master lingers as a zombie that `kill(pid, 0)` still finds.
 */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const stat = readOrNull(`/proc/${pid}/stat`);
  const state = stat ? stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) : '';
  return state !== 'Z' && state !== 'X';
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(50);
  }
  return false;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
