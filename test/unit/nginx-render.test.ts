// agent/nginx/ without the nginx binary: the pure templates and checks (render.ts), the `nginx -V`
// path discovery (files.ts), the error-log check after a reload (verify.ts), and the facade's one
// queue, observed through a stand-in binary that records when each `nginx -t` runs.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { Nginx, NginxError, type AppSite, type AppTls, type NginxSettings } from '../../agent/nginx/index.js';
import { checkSettings, generationOf, httpsNames, renderBase, renderMain, renderSite } from '../../agent/nginx/render.js';
import { parseBuildPaths, SYSTEM_NGINX_DEFAULTS } from '../../agent/nginx/files.js';
import { emergencyProblem, errorLogHint, Verifier } from '../../agent/nginx/verify.js';
import type { NginxPort } from '../../agent/reconcile/executor.js';
import { GENERATION_HOST } from '../../shared/validation.js';
import { makeTmpDir } from '../helpers/tmp.js';

const quiet = pino({ level: 'silent' });
const tls: AppTls = { certPath: '/var/lib/berth/certs/shop/fullchain.pem', keyPath: '/var/lib/berth/certs/shop/privkey.pem', domains: ['shop.example.com'] };
const settings = (extra: Partial<NginxSettings> = {}) => checkSettings({ prefix: '/srv/berth-nginx', httpPort: 8080, httpsPort: 8443, ...extra });
const render = (site: AppSite, extra: Partial<NginxSettings> = {}, app = 'shop') => renderSite(settings(extra), app, site);

describe('nginx render: an app behind its containers', () => {
  it('one upstream server per distinct replica port, with keepalive and the proxy headers', () => {
    const { content, tls: applied } = render({ domains: ['Shop.Example.com', 'shop.example.com', 'www.shop.example.com'], upstreamPort: 41000, upstreamPorts: [41000, 41001, 41000] });
    assert.equal(applied, null);
    assert.match(content, /upstream berth_app_shop \{\n {4}server 127\.0\.0\.1:41000;\n {4}server 127\.0\.0\.1:41001;\n {4}keepalive 32;\n\}/);
    assert.match(content, /listen 8080;\n {4}server_name shop\.example\.com www\.shop\.example\.com;/, 'lower-cased, without duplicates');
    for (const line of [
      'proxy_pass http://berth_app_shop;',
      'proxy_set_header Host $host;',
      'proxy_set_header X-Real-IP $remote_addr;',
      'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
      'proxy_set_header X-Forwarded-Proto $scheme;',
      'proxy_set_header Upgrade $http_upgrade;',
      'proxy_set_header Connection $berth_connection_upgrade;',
    ]) {
      assert.ok(content.includes(line), line);
    }
    assert.equal(content.match(/^server \{$/gm)?.length, 1, 'one plain HTTP server block');
  });

  it('TLS directives only for the names a certificate covers, and only when HTTPS is on', () => {
    const withTls = render({ domains: ['shop.example.com', 'new.example.com'], upstreamPort: 41000, tls }).content;
    assert.match(withTls, /listen 8443 ssl http2;\n {4}server_name shop\.example\.com;\n\n {4}ssl_certificate \/var\/lib\/berth\/certs\/shop\/fullchain\.pem;\n {4}ssl_certificate_key \/var\/lib\/berth\/certs\/shop\/privkey\.pem;/);
    assert.match(withTls, /server_name shop\.example\.com;\n\n {4}location \/ \{\n {8}return 308 https:\/\/\$host:8443\$request_uri;/);
    assert.match(withTls, /listen 8080;\n {4}server_name new\.example\.com;/, 'the uncovered name stays plain HTTP');
    assert.deepEqual(httpsNames(withTls, 8443), ['shop.example.com']);

    const at443 = render({ domains: ['shop.example.com'], upstreamPort: 41000, tls }, { httpsPort: 443 }).content;
    assert.match(at443, /return 308 https:\/\/\$host\$request_uri;/);

    for (const plain of [
      render({ domains: ['shop.example.com'], upstreamPort: 41000, tls: null }).content,
      render({ domains: ['shop.example.com'], upstreamPort: 41000, tls }, { httpsPort: 0 }).content,
      render({ domains: ['other.example.com'], upstreamPort: 41000, tls }).content,
    ]) {
      assert.doesNotMatch(plain, /ssl|return 308/);
      assert.deepEqual(httpsNames(plain, 8443), []);
    }
  });

  it('tlsFor from the settings is asked per app; a site.tls overrides it', () => {
    const s = settings({ tlsFor: (app) => (app === 'shop' ? tls : null) });
    assert.match(renderSite(s, 'shop', { domains: ['shop.example.com'], upstreamPort: 1 }).content, /ssl_certificate /);
    assert.doesNotMatch(renderSite(s, 'blog', { domains: ['shop.example.com'], upstreamPort: 1 }).content, /ssl_certificate /);
    assert.doesNotMatch(renderSite(s, 'shop', { domains: ['shop.example.com'], upstreamPort: 1, tls: null }).content, /ssl_certificate /);
  });

  it('the ACME challenge location appears on every plain server block only with a webroot', () => {
    const withRoot = render({ domains: ['shop.example.com'], upstreamPort: 1, tls }, { acmeWebroot: '/var/lib/berth-acme' }).content;
    assert.equal(withRoot.match(/location \^~ \/\.well-known\/acme-challenge\/ \{\n {8}root \/var\/lib\/berth-acme;/g)?.length, 1);
    assert.doesNotMatch(render({ domains: ['shop.example.com'], upstreamPort: 1 }).content, /acme-challenge/);
  });
});

describe('nginx render: a static site', () => {
  it('serves its release directory without following links, and proxies nothing', () => {
    const { content } = render({ domains: ['blog.example.com'], staticRoot: '/var/lib/berth/static/blog/d1' }, {}, 'blog');
    assert.match(content, /^# berth: app blog \(static site\)/);
    assert.match(content, /\n {4}root \/var\/lib\/berth\/static\/blog\/d1;\n/);
    assert.match(content, /disable_symlinks on;/);
    assert.match(content, /location ~\* "\\\.\[0-9a-f\]\{8,\}\\\.\(\?:css\|/, 'hashed assets: a quoted regex');
    assert.doesNotMatch(content, /upstream|proxy_pass/);
  });
});

describe('nginx render: hostile input never reaches a config', () => {
  const no = (site: AppSite, app = 'shop', extra: Partial<NginxSettings> = {}) =>
    assert.throws(() => render(site, extra, app), NginxError, `${app} ${JSON.stringify(site)}`);

  it('refuses bad app names, domains, roots, certificate paths and ports', () => {
    for (const app of ['../x', 'Shop', 'a b', 'shop;', '', 'shop\n}']) no({ domains: ['shop.example.com'], upstreamPort: 1 }, app);
    for (const domain of ['shop.example.com;', 'shop.example.com\n}', 'a b.com', GENERATION_HOST, '*.example.com', '']) {
      no({ domains: [domain], upstreamPort: 1 });
    }
    no({ domains: [], upstreamPort: 1 });
    for (const root of ['/srv/../etc', '/srv/a b', 'relative/root', '/', '/srv/a{b}', '/srv/x;']) no({ domains: ['shop.example.com'], staticRoot: root });
    no({ domains: ['shop.example.com'], upstreamPort: 1, tls: { ...tls, certPath: '/x; }' } });
    no({ domains: ['shop.example.com'], upstreamPort: 1, tls: { ...tls, keyPath: 'relative/key.pem' } });
    for (const port of [0, 65536, 1.5, Number.NaN]) no({ domains: ['shop.example.com'], upstreamPort: port });
    no({ domains: ['shop.example.com'], upstreamPort: 1, upstreamPorts: [1, 70000] });
  });

  it('refuses settings that would be written unquoted or collide', () => {
    assert.throws(() => checkSettings({ httpPort: 80, httpsPort: 80 }), NginxError);
    assert.throws(() => checkSettings({ httpPort: 0 }), NginxError);
    assert.throws(() => checkSettings({ httpPort: 80, prefix: '/' }), NginxError);
    assert.throws(() => checkSettings({ httpPort: 80, prefix: '/srv/berth nginx' }), NginxError);
    assert.throws(() => checkSettings({ httpPort: 80, acmeWebroot: '/srv/acme root' }), NginxError);
    assert.equal(checkSettings({ httpPort: 80 }).sitesDir, '/etc/nginx/conf.d');
    assert.equal(checkSettings({ httpPort: 80, prefix: '/srv/b' }).sitesDir, '/srv/b/sites');
  });
});

describe('nginx render: the fixed files', () => {
  it('the base file answers its generation on the probe host; HTTPS refuses unknown names', () => {
    const base = renderBase(settings(), 'abc-1-2');
    assert.equal(generationOf(base), 'abc-1-2');
    assert.match(base, new RegExp(`listen 8080;\\n {4}server_name ${GENERATION_HOST.replace(/\./g, '\\.')};`));
    assert.match(base, /listen 8443 ssl http2 default_server;\n {4}server_name _;\n {4}ssl_reject_handshake on;/);
    assert.doesNotMatch(renderBase(settings({ httpsPort: 0 }), 'abc'), /ssl/);
    assert.equal(generationOf(null), null);
    assert.equal(generationOf('server {}'), null);
  });

  it('the private nginx.conf keeps everything under the prefix and includes the sites', () => {
    const main = renderMain(settings({ acmeWebroot: '/var/lib/berth-acme' }), '/etc/nginx/mime.types');
    assert.match(main, /\npid \/srv\/berth-nginx\/nginx\.pid;\nerror_log \/srv\/berth-nginx\/logs\/error\.log warn;/);
    assert.match(main, /include \/etc\/nginx\/mime\.types;/);
    assert.match(main, /listen 8080 default_server;[\s\S]*acme-challenge[\s\S]*return 404;/);
    assert.match(main, /include \/srv\/berth-nginx\/sites\/\*\.conf;\n\}/);
    assert.match(renderMain(settings(), null), /types \{ text\/html html;/);
    assert.throws(() => renderMain(checkSettings({ httpPort: 80 }), null), NginxError, 'no nginx.conf for the system nginx');
  });
});

describe('nginx -V: the pid and error-log paths of a system nginx', () => {
  it('reads both paths from the configure arguments', () => {
    const debian =
      'nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.9\nconfigure arguments: --with-cc-opt=\'-g -O2\' --prefix=/usr/share/nginx ' +
      '--conf-path=/etc/nginx/nginx.conf --http-log-path=/var/log/nginx/access.log --error-log-path=stderr --lock-path=/var/lock/nginx.lock ' +
      '--pid-path=/run/nginx.pid --modules-path=/usr/lib/nginx/modules\n';
    assert.deepEqual(parseBuildPaths(debian.replace('--error-log-path=stderr', '--error-log-path=/var/log/nginx/error.log')), {
      pidPath: '/run/nginx.pid',
      errorLogPath: '/var/log/nginx/error.log',
    });
    assert.deepEqual(parseBuildPaths('configure arguments: --prefix=/opt/ng --pid-path=/var/run/ng.pid --error-log-path=/var/log/ng/err.log'), {
      pidPath: '/var/run/ng.pid',
      errorLogPath: '/var/log/ng/err.log',
    });
  });

  it('relative paths are under the compiled-in prefix; missing ones fall back to Debian\'s', () => {
    assert.deepEqual(parseBuildPaths('configure arguments: --prefix=/opt/ng/ --pid-path=logs/ng.pid --error-log-path=logs/error.log'), {
      pidPath: '/opt/ng/logs/ng.pid',
      errorLogPath: '/opt/ng/logs/error.log',
    });
    assert.deepEqual(parseBuildPaths('configure arguments: --error-log-path=logs/e.log'), { pidPath: SYSTEM_NGINX_DEFAULTS.pidPath, errorLogPath: '/usr/local/nginx/logs/e.log' });
    assert.deepEqual(parseBuildPaths('spawn nginx ENOENT'), { ...SYSTEM_NGINX_DEFAULTS });
    assert.deepEqual(parseBuildPaths('configure arguments: --http-log-path=/x/access.log --my-pid-path=/x/p'), { ...SYSTEM_NGINX_DEFAULTS });
  });
});

describe('nginx error log: the [emerg] check after a reload', () => {
  const dir = makeTmpDir('nginx-log');
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('only what nginx logged since the reload began counts; a log not written yet is clean', () => {
    const log = join(dir, 'error.log');
    assert.equal(emergencyProblem(log, 0), null, 'no log yet');
    writeFileSync(log, '2026/01/01 00:00:00 [emerg] 1#1: bind() to 0.0.0.0:80 failed (98: Address in use)\n');
    const offset = readFileSync(log).length;
    assert.equal(emergencyProblem(log, offset), null, 'an older [emerg] does not count');
    writeFileSync(log, '2026/01/01 00:00:01 [notice] 1#1: signal process started\n', { flag: 'a' });
    assert.equal(emergencyProblem(log, offset), null);
    writeFileSync(log, '2026/01/01 00:00:02 [emerg] 1#1: bind() to 0.0.0.0:8080 failed (98: Address in use)\n', { flag: 'a' });
    assert.equal(emergencyProblem(log, offset), 'nginx logged an error while reloading');
    assert.equal(errorLogHint(log, offset), ' ([emerg] 1#1: bind() to 0.0.0.0:8080 failed (98: Address in use))');
    writeFileSync(log, '2026/01/01 00:00:03 [emerg] 1#1: after rotation\n');
    assert.equal(emergencyProblem(log, offset), 'nginx logged an error while reloading', 'a log shorter than the offset was rotated: read from its start');
  });

  it('an error log that cannot be read fails the verification instead of passing it', async () => {
    // A directory where the log should be: unreadable for root as well as for an unprivileged user.
    const log = join(dir, 'unreadable.log');
    mkdirSync(log);
    const problem = emergencyProblem(log, 0);
    assert.match(problem ?? '', /^cannot read the nginx error log .*unreadable\.log to verify the reload: .*EISDIR/);
    const verifier = new Verifier({ httpPort: 1, httpsPort: 0, timeoutMs: 10 });
    assert.equal(await verifier.confirm(log, 0, []), problem, 'the transaction sees the failure');
    assert.equal(await verifier.confirm(join(dir, 'absent.log'), 0, []), null);
    assert.match(errorLogHint(log, 0), /unreadable/);
  });
});

describe('Nginx facade: one queue for every change', () => {
  const dir = makeTmpDir('nginx-queue');
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is the NginxPort main and the reconciler use, and runs concurrent changes one at a time', async () => {
    // A stand-in binary: every `nginx -t` records its start and end around a pause, then rejects the
    // config. Interleaved calls would show two starts in a row.
    const trace = join(dir, 'trace');
    const bin = join(dir, 'fake-nginx');
    writeFileSync(bin, `#!/bin/sh\necho "begin $$" >> ${trace}\nsleep 0.2\necho "end $$" >> ${trace}\necho "nginx: [emerg] refused by the stand-in" >&2\nexit 1\n`);
    chmodSync(bin, 0o755);
    const nginx = new Nginx({ prefix: join(dir, 'prefix'), httpPort: 8080, nginxBin: bin, verifyTimeoutMs: 100 }, quiet);
    const port: NginxPort = nginx; // no wrapper needed
    const results = await Promise.allSettled([
      port.applyApp('shop', { domains: ['shop.example.com'], upstreamPort: 41000 }),
      port.applyApp('blog', { domains: ['blog.example.com'], upstreamPort: 41001 }),
      port.reload!('a renewed certificate', []),
    ]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(r.reason instanceof NginxError);
      assert.match(r.reason.message, /nginx rejected the config for .*: \[emerg\] refused by the stand-in/);
    }
    const lines = readFileSync(trace, 'utf8').trim().split('\n');
    assert.equal(lines.length, 6);
    for (let i = 0; i < lines.length; i += 2) {
      const pid = lines[i]!.split(' ')[1];
      assert.deepEqual([lines[i], lines[i + 1]], [`begin ${pid}`, `end ${pid}`], `call ${i / 2 + 1} ran alone: ${lines.join(', ')}`);
    }
    assert.equal(existsSync(join(dir, 'prefix', 'sites', 'berth-shop.conf')), false, 'rolled back');
    assert.deepEqual(nginx.listApps(), []);
  });
});
