// Pure rendering: settings and an app's site in, nginx config text out. No files, no processes, so
// every template and every check on what reaches the config is testable without the nginx binary.
// Anything written into the config unquoted (names, paths, ports) is checked here first.
import { join, resolve } from 'node:path';
import { appName, domainName, GENERATION_HOST } from '../../shared/validation.js';
import { NginxError, type AppSite, type AppTls, type NginxSettings } from './types.js';

/** The validated settings every template reads. */
export interface RenderSettings {
  /** Private nginx under this prefix (absolute, plain path characters); undefined for the system nginx. */
  prefix: string | undefined;
  /** Where the per-app files and the base file live. */
  sitesDir: string;
  httpPort: number;
  /** 0: no HTTPS listener and no TLS server blocks. */
  httpsPort: number;
  acmeWebroot: string | undefined;
  tlsFor: ((app: string) => AppTls | null) | undefined;
}

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

// ---- checks -------------------------------------------------------------------------------

/** Validate the settings once; a bad port or a path that cannot be written unquoted is refused. */
export function checkSettings(settings: NginxSettings): RenderSettings {
  const httpPort = settings.httpPort;
  if (!Number.isInteger(httpPort) || httpPort < 1 || httpPort > 65535) throw new NginxError(`invalid HTTP port ${httpPort}`);
  let prefix: string | undefined;
  if (settings.prefix !== undefined) {
    prefix = resolve(settings.prefix);
    // The prefix is written into nginx.conf unquoted: allow only plain path characters.
    if (!PLAIN_PATH_RE.test(prefix) || prefix === '/') throw new NginxError(`invalid nginx prefix "${settings.prefix}"`);
  }
  const httpsPort = settings.httpsPort ?? 0;
  if (!Number.isInteger(httpsPort) || httpsPort < 0 || httpsPort > 65535 || (httpsPort !== 0 && httpsPort === httpPort)) {
    throw new NginxError(`invalid HTTPS port ${settings.httpsPort}`);
  }
  let acmeWebroot: string | undefined;
  if (settings.acmeWebroot !== undefined) {
    acmeWebroot = resolve(settings.acmeWebroot);
    if (!plainPath(acmeWebroot)) throw new NginxError(`invalid ACME webroot "${settings.acmeWebroot}": must be an absolute path of letters, digits and "._/-"`);
  }
  const sitesDir = prefix ? join(prefix, 'sites') : (settings.confDir ?? '/etc/nginx/conf.d');
  return { prefix, sitesDir, httpPort, httpsPort, acmeWebroot, tlsFor: settings.tlsFor };
}

export function plainPath(p: string): boolean {
  return PLAIN_PATH_RE.test(p) && p !== '/' && !p.split('/').includes('..');
}

export function checkAppName(app: string): void {
  const r = appName.safeParse(app);
  if (!r.success) throw new NginxError(`invalid app name ${JSON.stringify(app)}: ${r.error.issues[0]?.message ?? 'invalid'}`);
}

/** The site's domains, validated and normalised (lower-cased), without duplicates. */
function checkDomains(app: string, site: AppSite): string[] {
  if (!Array.isArray(site.domains) || site.domains.length === 0) throw new NginxError(`app ${app} has no domains to serve`);
  const domains: string[] = [];
  for (const raw of site.domains) {
    const parsed = domainName.safeParse(raw);
    if (!parsed.success) throw new NginxError(`invalid domain ${JSON.stringify(raw)} for app ${app}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    if (!domains.includes(parsed.data)) domains.push(parsed.data);
  }
  return domains;
}

/** The TLS part of an app's server blocks after validation (null: plain HTTP only). */
function tlsOf(s: RenderSettings, app: string, site: AppSite, domains: string[]): AppTls | null {
  if (s.httpsPort === 0) return null;
  const tls = site.tls !== undefined ? site.tls : (s.tlsFor?.(app) ?? null);
  if (!tls) return null;
  for (const p of [tls.certPath, tls.keyPath]) {
    if (typeof p !== 'string' || !plainPath(p)) throw new NginxError(`invalid certificate path ${JSON.stringify(p)} for app ${app}`);
  }
  // Only names the certificate really covers get HTTPS (after a failed re-issue it is the old set).
  const covered = domains.filter((d) => Array.isArray(tls.domains) && tls.domains.includes(d));
  return covered.length ? { certPath: tls.certPath, keyPath: tls.keyPath, domains: covered } : null;
}

// ---- an app's server blocks ---------------------------------------------------------------

/** Render an app's server blocks. Re-validates every name: nothing unchecked reaches the config. */
export function renderSite(s: RenderSettings, app: string, site: AppSite): { content: string; tls: AppTls | null } {
  checkAppName(app);
  const domains = checkDomains(app, site);
  const { title, head, body } = site.staticRoot !== undefined ? staticSite(app, site.staticRoot) : proxiedSite(app, site);
  const tls = tlsOf(s, app, site, domains);
  const secure = tls?.domains ?? [];
  const plain = domains.filter((d) => !secure.includes(d));
  const out = [title, ...head];
  const challenge = challengeLocation(s.acmeWebroot);
  if (plain.length) out.push(...serverBlock(`${s.httpPort}`, plain, [...challenge, ...body]));
  if (tls) {
    // Redirect only `location /`: the challenge must keep answering over plain HTTP for renewals.
    const target = s.httpsPort === 443 ? 'https://$host$request_uri' : `https://$host:${s.httpsPort}$request_uri`;
    out.push(...serverBlock(`${s.httpPort}`, secure, [...challenge, `    location / {`, `        return 308 ${target};`, `    }`]));
    out.push(...serverBlock(`${s.httpsPort} ssl http2`, secure, [...tlsDirectives(tls), ``, ...body]));
  }
  return { content: out.join('\n'), tls };
}

interface SiteParts {
  title: string;
  /** Lines before the server blocks (the upstream). */
  head: string[];
  /** The locations inside each serving server block. */
  body: string[];
}

function staticSite(app: string, root: string): SiteParts {
  if (typeof root !== 'string' || !plainPath(root)) throw new NginxError(`invalid static root ${JSON.stringify(root)} for app ${app}`);
  return { title: `# berth: app ${app} (static site) — generated by the berth agent; manual edits are overwritten.`, head: [], body: staticBody(root) };
}

/** A cluster task's address: IPv4 or [IPv6] or a DNS name, and a port — written into the config unquoted. */
const UPSTREAM_SERVER_RE = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]|[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?):(\d{1,5})$/;

/** The upstream's server lines: the cluster's task addresses, or the web replicas' loopback ports. */
function upstreamServers(app: string, site: Extract<AppSite, { upstreamPort: number }>): string[] {
  if (site.upstreamServers && site.upstreamServers.length > 0) {
    for (const server of site.upstreamServers) {
      const m = UPSTREAM_SERVER_RE.exec(server);
      const port = Number(m?.[4]);
      if (!m || port < 1 || port > 65535) throw new NginxError(`invalid upstream server ${JSON.stringify(server)} for app ${app}`);
    }
    return [...new Set(site.upstreamServers)];
  }
  const ports = site.upstreamPorts && site.upstreamPorts.length > 0 ? site.upstreamPorts : [site.upstreamPort];
  for (const port of ports) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new NginxError(`invalid upstream port ${String(port)} for app ${app}`);
  }
  return [...new Set(ports)].map((port) => `127.0.0.1:${port}`);
}

function proxiedSite(app: string, site: Extract<AppSite, { upstreamPort: number }>): SiteParts {
  const servers = upstreamServers(app, site);
  const upstream = `berth_app_${app}`;
  return {
    title: `# berth: app ${app} — generated by the berth agent; manual edits are overwritten.`,
    head: [`upstream ${upstream} {`, ...servers.map((server) => `    server ${server};`), `    keepalive 32;`, `}`, ``],
    body: proxyBody(upstream),
  };
}

function serverBlock(listen: string, names: string[], lines: string[]): string[] {
  return [`server {`, `    listen ${listen};`, `    server_name ${names.join(' ')};`, ``, ...lines, `}`, ``];
}

/** HTTP-01 tokens from the ACME webroot, on every host (a prefix match beats the app's regex locations). */
function challengeLocation(acmeWebroot: string | undefined): string[] {
  if (!acmeWebroot) return [];
  return [
    `    location ^~ /.well-known/acme-challenge/ {`,
    `        root ${acmeWebroot};`,
    `        default_type text/plain;`,
    `        try_files $uri =404;`,
    `    }`,
  ];
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

/**
 * A static site served from its release directory. Caching: HTML is revalidated on every visit
 * (a deploy shows at once), content-hashed assets are immutable, other assets are cached an hour.
 */
function staticBody(root: string): string[] {
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
export function httpsNames(content: string | null, httpsPort: number): string[] {
  const m = content ? new RegExp(`\\n    listen ${httpsPort} ssl http2;\\n    server_name ([a-z0-9. -]+);`).exec(content) : null;
  return m ? m[1]!.split(' ') : [];
}

// ---- the fixed parts ----------------------------------------------------------------------

/** The base file: shared definitions plus the server that answers the config generation. */
export function renderBase(s: RenderSettings, gen: string): string {
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
    `    listen ${s.httpPort};`,
    `    server_name ${GENERATION_HOST};`,
    '    access_log off;',
    '    location / {',
    '        default_type text/plain;',
    `        return 200 "${gen}";`,
    '    }',
    '}',
    '',
    ...(s.httpsPort > 0
      ? [
          '# HTTPS for a name berth has no certificate for: refuse the handshake (never another app\'s certificate).',
          'server {',
          `    listen ${s.httpsPort} ssl http2 default_server;`,
          '    server_name _;',
          '    ssl_reject_handshake on;',
          '}',
          '',
        ]
      : []),
  ].join('\n');
}

/** The generation written in a base file (null when it has none). */
export function generationOf(baseFile: string | null): string | null {
  return baseFile ? (/return 200 "([a-z0-9-]+)";/.exec(baseFile)?.[1] ?? null) : null;
}

/** Prefix mode: the private nginx.conf. `mimeTypes`: a mime.types file to include (null: a small built-in map). */
export function renderMain(s: RenderSettings, mimeTypes: string | null): string {
  const p = s.prefix;
  if (!p) throw new NginxError('a main nginx.conf is only rendered for a private nginx (prefix mode)');
  const mime = mimeTypes
    ? `    include ${mimeTypes};`
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
    ...defaultServer(s),
    '',
    `    include ${s.sitesDir}/*.conf;`,
    '}',
    '',
  ].join('\n');
}

/** The private nginx's default server: 404 for unknown names, ACME challenges for any name. */
function defaultServer(s: RenderSettings): string[] {
  const inner = s.acmeWebroot
    ? [
        // Challenges for names that have no server block yet (or whose block is being replaced).
        '        location ^~ /.well-known/acme-challenge/ {',
        `            root ${s.acmeWebroot};`,
        '            default_type text/plain;',
        '            try_files $uri =404;',
        '        }',
        '        location / {',
        '            return 404;',
        '        }',
      ]
    : ['        return 404;'];
  return ['    server {', `        listen ${s.httpPort} default_server;`, '        server_name _;', ...inner, '    }'];
}
