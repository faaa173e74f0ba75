// Issue 5 without daemons: domain validation (RFC 1123, IDN → punycode, look-alikes, wildcards),
// the TLS server blocks nginx renders, the planner's certificate actions and the ACME settings.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Nginx, NginxError, type AppSite } from '../agent/nginx/index.js';
import { plan, describeAction, type Observed } from '../agent/reconcile/planner.js';
import type { Release } from '../agent/store/releases.js';
import { loadSettings, SettingsError } from '../agent/settings.js';
import { domainName, normalizeDomain } from '../shared/validation.js';
import type { ServerSpec } from '../shared/spec.js';

const quiet = pino({ level: 'silent' });

describe('domain validation', () => {
  const ok = (raw: string, want: string) => assert.deepEqual(normalizeDomain(raw), { ok: true, domain: want }, raw);
  const no = (raw: string, why: RegExp) => {
    const r = normalizeDomain(raw);
    assert.equal(r.ok, false, `accepted ${JSON.stringify(raw)}`);
    if (!r.ok) {
      assert.match(r.error, why, JSON.stringify(raw));
      assert.ok(!r.error.includes('\n'), 'one line');
    }
  };

  it('lower-cases, keeps valid names, converts international names to punycode', () => {
    ok('Shop.Example.COM', 'shop.example.com');
    ok('a-b.c-d.example', 'a-b.c-d.example');
    ok('bücher.example', 'xn--bcher-kva.example');
    ok('xn--bcher-kva.example', 'xn--bcher-kva.example');
    ok('例え.jp', 'xn--r8jz45g.jp');
    ok('αβγ.gr', 'xn--mxacd.gr');
    ok(`${'a'.repeat(63)}.example.com`, `${'a'.repeat(63)}.example.com`);
    assert.equal(domainName.parse('WWW.Example.com'), 'www.example.com');
  });

  it('refuses what could change an nginx config, and malformed names', () => {
    no('a.com; }', /whitespace or control/);
    no('a.com\n', /whitespace or control/);
    no(' a.com', /whitespace or control/);
    no('a.com\tb', /whitespace or control/);
    no('$host', /may only contain/);
    no('a;b.com', /may only contain/);
    no('a{b}.com', /may only contain/);
    no('a"b.com', /may only contain/);
    no('a_b.com', /may only contain/);
    no('..', /empty label/);
    no('a..com', /empty label/);
    no('a.com.', /empty label/);
    no('-a.com', /start or end with "-"/);
    no(`${'a'.repeat(64)}.com`, /label longer than 63/);
    no(`${'a'.repeat(300)}.com`, /longer than 253/);
    no(`${'abcdefghi.'.repeat(26)}com`, /longer than 253/);
    no('localhost', /at least two labels/);
    no('10.0.0.1', /IP address/);
    no('', /empty/);
  });

  it('refuses look-alikes: mixed scripts, Latin mimics, full-width and invisible characters, bogus punycode', () => {
    no('аpple.com', /mixes Cyrillic and Latin/);
    no('аррӏе.com', /look like Latin/);
    no('xn--80ak6aa92e.com', /look like Latin/);
    no('οο.gr', /look like Latin/);
    no('ｓｈｏｐ.example.com', /stand in for others/);
    no('sh\u200bop.example.com', /stand in for others/);
    no('xn--abc.com', /not valid punycode|look|not allowed/);
  });

  it('refuses wildcards: DNS-01 is not configured', () => {
    no('*.example.com', /wildcard domains need DNS-01 validation, which is not configured/);
    no('a.*.example.com', /may only contain/);
  });
});

describe('nginx TLS server blocks', () => {
  const tls = { certPath: '/var/lib/berth/certs/shop/fullchain.pem', keyPath: '/var/lib/berth/certs/shop/privkey.pem', domains: ['shop.example.com'] };
  const nginx = new Nginx(
    { prefix: '/tmp/berth-render-only', httpPort: 8080, httpsPort: 8443, acmeWebroot: '/var/lib/berth-acme', tlsFor: (app) => (app === 'shop' ? tls : null) },
    quiet,
  );

  it('covered names: HTTPS with modern settings, HTTP redirects except the ACME challenge; other names stay plain HTTP', () => {
    const conf = nginx.render('shop', { domains: ['shop.example.com', 'new.example.com'], upstreamPort: 41000 });
    const blocks = conf.split(/\nserver \{\n/).slice(1);
    assert.equal(blocks.length, 3);
    const [plain, redirect, secure] = blocks as [string, string, string];
    assert.match(plain, /listen 8080;\n {4}server_name new\.example\.com;/);
    assert.match(plain, /location \^~ \/\.well-known\/acme-challenge\/ \{\n {8}root \/var\/lib\/berth-acme;\n {8}default_type text\/plain;\n {8}try_files \$uri =404;/);
    assert.match(plain, /proxy_pass http:\/\/berth_app_shop;/);
    assert.match(redirect, /server_name shop\.example\.com;/);
    assert.match(redirect, /acme-challenge/);
    assert.match(redirect, /location \/ \{\n {8}return 308 https:\/\/\$host:8443\$request_uri;/);
    assert.match(secure, /listen 8443 ssl http2;\n {4}server_name shop\.example\.com;/);
    for (const line of [
      'ssl_certificate /var/lib/berth/certs/shop/fullchain.pem;',
      'ssl_certificate_key /var/lib/berth/certs/shop/privkey.pem;',
      'ssl_protocols TLSv1.2 TLSv1.3;',
      'ssl_prefer_server_ciphers off;',
      'ssl_session_tickets off;',
    ]) {
      assert.ok(secure.includes(line), line);
    }
    assert.doesNotMatch(conf, /ssl_stapling|TLSv1 |TLSv1\.1/);
    assert.match(secure, /proxy_set_header X-Forwarded-Proto \$scheme;/);
  });

  it('no certificate (or HTTPS off): plain HTTP only, the challenge still served', () => {
    const conf = nginx.render('blog', { domains: ['blog.example.com'], staticRoot: '/var/lib/berth-static/blog/d1' });
    assert.doesNotMatch(conf, /ssl|return 308/);
    assert.match(conf, /acme-challenge/);
    const off = new Nginx({ prefix: '/tmp/berth-render-only', httpPort: 8080, tlsFor: () => tls }, quiet);
    assert.doesNotMatch(off.render('shop', { domains: ['shop.example.com'], upstreamPort: 1 }), /ssl|acme-challenge/);
  });

  it('refuses hostile paths and ports in what reaches the file', () => {
    const bad: AppSite[] = [
      { domains: ['shop.example.com'], upstreamPort: 1, tls: { ...tls, certPath: '/x; }' } },
      { domains: ['shop.example.com'], upstreamPort: 1, tls: { ...tls, keyPath: 'relative/key.pem' } },
      { domains: ['shop.example.com'], staticRoot: '/srv/a{b}' },
      { domains: ['shop.example.com'], upstreamPort: 0 },
      { domains: ['shop.example.com\n}'], upstreamPort: 1 },
    ];
    for (const site of bad) assert.throws(() => nginx.render('shop', site), NginxError, JSON.stringify(site));
    assert.throws(() => new Nginx({ httpPort: 80, httpsPort: 80 }, quiet), NginxError);
    assert.throws(() => new Nginx({ httpPort: 80, acmeWebroot: '/srv/acme root' }, quiet), NginxError);
  });
});

describe('reconcile planner: certificates', () => {
  const render = (app: string, site: AppSite) => `server ${app} [${site.domains.join(' ')}] -> ${site.upstreamPort}\n`;
  const spec = (domains: string[]): ServerSpec => ({ server: 'local', revision: 1, apps: [{ name: 'web', repo: 'https://example.com/x.git', branch: 'main', domains, env: {} }] });
  const release: Release = { app: 'web', deploymentId: 'dep00001', image: 'berth/web:dep00001', containerId: 'c1', hostPort: 41000, containerPort: 8000, commit: 'abcdef1', activatedAt: '2024-01-01T00:00:00.000Z' } as Release;
  const observed = (certs?: Observed['certs'], domains = ['web.example.com']): Observed => ({
    containers: [{ id: 'c1', name: 'web-web-dep00001', app: 'web', process: 'web', deploymentId: 'dep00001', state: 'running', hostPort: 41000 }],
    nginxApps: [{ app: 'web', content: render('web', { domains, upstreamPort: 41000 }) }],
    ...(certs ? { certs } : {}),
  });

  it('HTTPS off: no certificate actions at all', () => {
    assert.deepEqual(plan(spec(['web.example.com']), [release], observed(), render), []);
  });

  it('a due certificate is ordered after the server block, for the served site', () => {
    const certs = { due: new Map([['web', 'missing']]), wanted: new Map<string, string[]>() };
    const actions = plan(spec(['web.example.com', 'www.example.com']), [release], observed(certs), render);
    assert.deepEqual(actions.map((a) => a.type), ['write-nginx', 'ensure-cert']);
    const ensure = actions[1]!;
    assert.ok(ensure.type === 'ensure-cert');
    assert.deepEqual(ensure.domains, ['web.example.com', 'www.example.com']);
    assert.deepEqual(ensure.site, { domains: ['web.example.com', 'www.example.com'], upstreamPort: 41000 });
    assert.match(describeAction(ensure), /issue a certificate for web: web\.example\.com, www\.example\.com \(certificate missing\)/);
  });

  it('up to date (or backing off with the same domains): nothing', () => {
    const certs = { due: new Map<string, string>(), wanted: new Map([['web', ['web.example.com']]]) };
    assert.deepEqual(plan(spec(['web.example.com']), [release], observed(certs), render), []);
  });

  it('no release yet: no certificate (nothing is served)', () => {
    const certs = { due: new Map([['web', 'missing']]), wanted: new Map<string, string[]>() };
    assert.deepEqual(plan(spec(['web.example.com']), [], { containers: [], nginxApps: [], certs }, render), []);
  });

  it('last domain removed: stop renewing; app removed: delete its certificate', () => {
    const certs = { due: new Map<string, string>(), wanted: new Map([['web', ['web.example.com']]]) };
    const noDomains = plan(spec([]), [release], observed(certs), render);
    assert.deepEqual(noDomains.map((a) => [a.type, a.type === 'ensure-cert' ? a.domains : null]), [['remove-nginx', null], ['ensure-cert', []]]);
    const gone = plan({ server: 'local', revision: 2, apps: [] }, [], { containers: [], nginxApps: [], certs }, render);
    assert.deepEqual(gone.map((a) => a.type), ['remove-cert']);
  });

  it('a deploy in flight: the app is left alone', () => {
    const certs = { due: new Map([['web', 'expiring']]), wanted: new Map([['web', ['web.example.com']]]) };
    assert.deepEqual(plan(spec(['web.example.com']), [release], observed(certs), render, { busyApps: new Set(['web']) }), []);
  });
});

describe('agent settings for HTTPS', () => {
  it('defaults: Let’s Encrypt production, renewal 30 days before expiry, webroot outside the data dir', () => {
    const s = loadSettings({}, {});
    assert.equal(s.acmeDirectory, 'https://acme-v02.api.letsencrypt.org/directory');
    assert.equal(s.httpsPort, 443);
    assert.equal(s.acmeWebroot, '/var/lib/berth-acme');
    assert.equal(s.certRenewDays, 30);
    assert.equal(s.certMinRenewIntervalMs, 3_600_000);
    assert.equal(s.acmeSkipPrecheck, false);
    assert.equal(s.acmeCa, undefined);
  });

  it('reads every ACME setting and refuses bad values naming the variable', () => {
    const s = loadSettings({}, {
      BERTH_ACME_DIRECTORY: 'https://127.0.0.1:14000/dir',
      BERTH_ACME_CA: '/etc/berth/acme-ca.pem',
      BERTH_ACME_EMAIL: 'ops@example.com',
      BERTH_ACME_SKIP_PRECHECK: 'true',
      BERTH_ACME_WEBROOT: '/srv/acme',
      BERTH_ACME_RENEW_DAYS: '0.5',
    });
    assert.deepEqual(
      [s.acmeDirectory, s.acmeCa, s.acmeEmail, s.acmeSkipPrecheck, s.acmeWebroot, s.certRenewDays],
      ['https://127.0.0.1:14000/dir', '/etc/berth/acme-ca.pem', 'ops@example.com', true, '/srv/acme', 0.5],
    );
    for (const [name, value] of [
      ['BERTH_ACME_DIRECTORY', 'not a url'],
      ['BERTH_ACME_EMAIL', 'nobody'],
      ['BERTH_ACME_SKIP_PRECHECK', 'maybe'],
      ['BERTH_ACME_WEBROOT', 'relative/dir'],
      ['BERTH_ACME_RENEW_DAYS', '0'],
      ['BERTH_HTTPS_PORT', '70000'],
    ] as const) {
      assert.throws(() => loadSettings({}, { [name]: value }), (e: unknown) => e instanceof SettingsError && e.message.startsWith(`invalid ${name}=`), name);
    }
    assert.throws(() => loadSettings({}, { BERTH_HTTP_PORT: '8080', BERTH_HTTPS_PORT: '8080' }), /must differ/);
    assert.throws(() => loadSettings({ dataDir: '/srv/berth data' }, {}), /BERTH_DATA/);
    assert.equal(loadSettings({ dataDir: '/srv/berth data' }, { BERTH_HTTPS_PORT: '0' }).dataDir, '/srv/berth data');
  });
});
