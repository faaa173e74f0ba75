// Domains and HTTPS end to end (issue 5), with real parts only: the compiled CLI runs a control
// plane and an agent; the agent's private nginx serves the app; Pebble (a real ACME CA) validates
// HTTP-01 challenges by fetching them from that nginx (pebble-challtestsrv resolves every name to
// 127.0.0.1). Certificates are checked against Pebble's root with node's TLS, using SNI.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import pino from 'pino';
import { Nginx, NginxError } from '../agent/nginx/index.js';
import { loadSettings, SettingsError } from '../agent/settings.js';
import type { DomainInfo } from '../shared/api.js';
import { busyboxDockerfile } from './helpers/fixtures.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { startPebble, type Pebble } from './helpers/pebble.js';
import { Stack } from './helpers/stack.js';
import { freePort } from './helpers/tmp.js';

const APP = 'shop';
const OTHER = 'blog';
const SHOP = 'shop.https.test';
const WWW = 'www.shop.https.test';
const BLOG = 'blog.https.test';
const DAY = 86_400_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const readIfPresent = (file: string): Buffer | null => {
  try {
    return readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
};

interface HttpsResult {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
  cert: { serial: string; fingerprint: string; san: string[]; issuer: string; notAfter: Date };
}

/** GET https://HOST:PORT/ through loopback with SNI = HOST, verified against `ca` (Pebble's root). */
function httpsGet(port: number, host: string, ca: string, path = '/'): Promise<HttpsResult> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, servername: host, headers: { host }, ca, agent: false, timeout: 5000 }, (res) => {
      const x = (res.socket as import('node:tls').TLSSocket).getPeerX509Certificate();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        if (!x) return reject(new Error('no peer certificate'));
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
          headers: res.headers,
          cert: {
            serial: x.serialNumber,
            fingerprint: x.fingerprint256,
            san: (x.subjectAltName ?? '').split(/,\s*/).map((s) => s.replace(/^DNS:/, '')).sort(),
            issuer: x.issuer,
            notAfter: new Date(x.validTo),
          },
        });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET https://${host}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** A bare TLS handshake with SNI: the certificate served, or the error when nginx refuses. */
function handshake(port: number, servername: string): Promise<{ ok: true; san: string } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const sock = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, timeout: 3000 }, () => {
      const san = sock.getPeerX509Certificate()?.subjectAltName ?? '';
      sock.destroy();
      resolve({ ok: true, san });
    });
    sock.on('timeout', () => sock.destroy(new Error('timeout')));
    sock.on('error', (err) => resolve({ ok: false, error: err.message }));
  });
}

describe('HTTPS: domains, Let’s Encrypt-style certificates (Pebble), renewal and nginx that never breaks', () => {
  let stack: Stack;
  let pebble: Pebble;
  let repo: TestRepo;
  let ca: string;
  const sites = () => join(stack.nginxPrefix, 'sites');
  const domains = (app = APP) => berthJson<DomainInfo[]>(['domain', 'ls', app], stack.env);
  /** Every nginx config file berth owns, byte for byte. */
  const snapshot = (skip: string[] = []): Map<string, Buffer> => {
    const out = new Map<string, Buffer>([['nginx.conf', readFileSync(join(stack.nginxPrefix, 'nginx.conf'))]]);
    for (const name of readdirSync(sites()).sort()) {
      if (skip.includes(name)) continue;
      // A transaction's journal or temp file can vanish between the listing and the read: it was in
      // flight, which `settled` (below) waits out; a vanished file is simply not part of the snapshot.
      const content = readIfPresent(join(sites(), name));
      if (content) out.set(`sites/${name}`, content);
    }
    return out;
  };
  const assertSameFiles = (a: Map<string, Buffer>, b: Map<string, Buffer>, why: string) => {
    assert.deepEqual([...b.keys()], [...a.keys()], `${why}: the same files`);
    for (const [k, v] of a) assert.ok(v.equals(b.get(k)!), `${why}: ${k} is byte-identical`);
  };
  /** A snapshot once no nginx transaction is in flight (no journal/backup files) and two reads agree. */
  const settled = async (skip: string[] = []): Promise<Map<string, Buffer>> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const a = snapshot(skip);
      await sleep(400);
      const b = snapshot(skip);
      const busy = [...b.keys()].some((k) => k.startsWith('sites/.'));
      if (!busy && a.size === b.size && [...a].every(([k, v]) => b.get(k)?.equals(v))) return b;
      if (Date.now() > deadline) throw new Error('the nginx config did not settle');
    }
  };
  const restartAgent = async (env: Record<string, string | undefined>) => {
    await stack.stopAgent();
    stack.setAgentEnv(env);
    await stack.startAgent();
  };

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('https', { https: true });
    stack.apps.add(APP);
    stack.apps.add(OTHER);
    pebble = await startPebble({ httpPort: stack.httpPort, certValiditySeconds: 90 * 24 * 3600 });
    ca = pebble.rootPem;
    stack.setAgentEnv({
      BERTH_ACME_DIRECTORY: pebble.directoryUrl,
      BERTH_ACME_CA: pebble.caFile,
      BERTH_ACME_EMAIL: 'ops@https.test',
      // The test names resolve only in challtestsrv's DNS (Pebble's view), not for the agent.
      BERTH_ACME_SKIP_PRECHECK: '1',
      BERTH_RECONCILE_INTERVAL_MS: '1500',
    });
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ Dockerfile: busyboxDockerfile(), 'index.html': 'hello https\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
  });

  after(async () => {
    await stack?.destroy();
    await pebble?.stop();
  });

  it('a domain and a deploy: Pebble issues a certificate, nginx serves it over HTTPS, HTTP redirects, the app answers', async () => {
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, SHOP], stack.env);
    const res = await berth(['deploy', APP, '--wait'], stack.env);
    assert.equal(res.code, 0, `deploy failed:\n${res.stderr}\n${stack.tail('agent.log')}`);

    const page = await eventually(() => httpsGet(stack.httpsPort, SHOP, ca), (r) => r.status === 200, 30_000).catch((err) => {
      throw new Error(`${String(err)}\n${stack.tail('agent.log', 30)}`);
    });
    assert.equal(page.body, 'hello https\n');
    assert.deepEqual(page.cert.san, [SHOP], 'the certificate covers the domain');
    assert.match(page.cert.issuer, /Pebble Intermediate/);
    assert.ok(page.cert.notAfter.getTime() > Date.now() + 80 * DAY);

    // HTTP → HTTPS, but the ACME challenge path stays on plain HTTP (renewals need it).
    const http = await httpGet(stack.httpPort, SHOP, '/some/page?x=1');
    assert.equal(http.status, 308);
    assert.equal(http.headers.location, `https://${SHOP}:${stack.httpsPort}/some/page?x=1`);
    const challenge = await httpGet(stack.httpPort, SHOP, '/.well-known/acme-challenge/nope');
    assert.equal(challenge.status, 404, 'the challenge location is not redirected');

    // An unknown name over HTTPS gets no certificate at all (never another app's).
    const unknown = await handshake(stack.httpsPort, 'unknown.https.test');
    assert.equal(unknown.ok, false);
    assert.equal((await httpGet(stack.httpPort, 'unknown.https.test')).status, 404);

    // The key and chain are private to root; nginx reads them through stable paths.
    assert.equal(statSync(join(stack.agentData, 'certs', APP, 'current', 'privkey.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(join(stack.agentData, 'certs', APP, 'current', 'fullchain.pem')).mode & 0o777, 0o600);
    assert.match(readFileSync(join(sites(), `berth-${APP}.conf`), 'utf8'), new RegExp(`ssl_certificate ${join(stack.agentData, 'certs', APP, 'fullchain.pem')};`));

    // `berth domain ls` shows the certificate: HTTPS on, its expiry, the last attempt.
    const [d] = await eventually(() => domains(), (l) => l[0]?.certState === 'valid', 15_000);
    assert.equal(d!.https, true);
    assert.equal(d!.certLastResult, 'ok');
    assert.equal(new Date(d!.certExpiresAt!).getTime(), page.cert.notAfter.getTime());
    assert.ok(d!.certNextAttemptAt && Date.parse(d!.certNextAttemptAt) > Date.now() + 50 * DAY, 'the next renewal is ~30 days before expiry');
    const human = await berth(['domain', 'ls', APP], stack.env);
    assert.match(human.stdout, new RegExp(`${SHOP.replace(/\./g, '\\.')}\\s+yes\\s+valid\\s+\\S+ \\(\\d+d\\)\\s+ok `));
  });

  it('two domains on one app; removing one re-issues the certificate without it', async () => {
    const first = await httpsGet(stack.httpsPort, SHOP, ca);
    await berthJson(['domain', 'add', APP, WWW], stack.env);
    const both = await eventually(() => httpsGet(stack.httpsPort, WWW, ca), (r) => r.status === 200, 30_000);
    assert.deepEqual(both.cert.san, [SHOP, WWW].sort());
    assert.notEqual(both.cert.serial, first.cert.serial);
    assert.equal((await httpsGet(stack.httpsPort, SHOP, ca)).cert.serial, both.cert.serial, 'one certificate per app');

    await berthJson(['domain', 'rm', APP, WWW], stack.env);
    const one = await eventually(() => httpsGet(stack.httpsPort, SHOP, ca), (r) => r.cert.san.length === 1, 30_000);
    assert.deepEqual(one.cert.san, [SHOP]);
    assert.notEqual(one.cert.serial, both.cert.serial, 're-issued');
    assert.equal((await handshake(stack.httpsPort, WWW)).ok, false, 'the removed name gets no certificate');
    assert.equal((await httpGet(stack.httpPort, WWW)).status, 404, 'and is not routed');
    const list = await eventually(() => domains(), (l) => l.length === 1 && l[0]!.https === true, 15_000);
    assert.deepEqual(list.map((x) => x.domain), [SHOP]);
  });

  it('hostile domains and config values are refused with a clear error; the nginx config on disk stays byte-identical', async () => {
    // An international name is accepted as punycode (and removed again).
    const idn = await berthJson<{ domain: string }>(['domain', 'add', APP, 'BÜCHER.https.test'], stack.env);
    assert.equal(idn.domain, 'xn--bcher-kva.https.test');
    await eventually(() => httpsGet(stack.httpsPort, 'xn--bcher-kva.https.test', ca), (r) => r.status === 200, 30_000);
    await berthJson(['domain', 'rm', APP, 'xn--bcher-kva.https.test'], stack.env);
    await eventually(() => httpsGet(stack.httpsPort, SHOP, ca), (r) => r.cert.san.length === 1, 30_000);
    const beforeFiles = await settled();
    const hostile = [
      'a.com; }',
      'a.com\n',
      'a.com\nserver {',
      '$host',
      `${'a'.repeat(300)}.https.test`,
      `${'a'.repeat(64)}.https.test`,
      '..',
      'a..https.test',
      'аpple.com', // Cyrillic "а"
      'xn--80ak6aa92e.com', // "аррӏе" in punycode
      'ｓｈｏｐ.https.test', // full-width letters
      'sh\u200bop.https.test', // zero-width space
      '*.https.test',
      'a;b.https.test',
      'a{b}.https.test',
      'shop.https.test}',
      '127.0.0.1',
    ];
    for (const d of hostile) {
      const res = await berth(['domain', 'add', APP, d], stack.env);
      assert.notEqual(res.code, 0, `accepted ${JSON.stringify(d)}`);
      assert.match(res.stderr, /^berth: invalid domain: /, `${JSON.stringify(d)}: ${res.stderr}`);
      assert.equal(res.stderr.trim().split('\n').length, 1, 'a one-line error');
    }
    const wildcard = await berth(['domain', 'add', APP, '*.https.test'], stack.env);
    assert.match(wildcard.stderr, /wildcard domains need DNS-01/);
    const lookalike = await berth(['domain', 'add', APP, 'xn--80ak6aa92e.com'], stack.env);
    assert.match(lookalike.stderr, /look/);
    const base = await berth(['server', 'add', 'evil', '--base-domain', 'a.com; }'], stack.env);
    assert.notEqual(base.code, 0);
    assert.match(base.stderr, /invalid base domain/);

    // Values that reach the nginx layer directly (upstream, paths, certificate files) are refused
    // before anything is written (a second Nginx on the agent's prefix: render fails before the lock).
    const nginx = new Nginx({ prefix: stack.nginxPrefix, httpPort: stack.httpPort, httpsPort: stack.httpsPort, acmeWebroot: stack.acmeWebroot }, pino({ level: 'silent' }));
    const bad: Array<[string, Parameters<Nginx['applyApp']>[1]]> = [
      ['upstream port with ;', { domains: [SHOP], upstreamPort: '8080; }' as unknown as number }],
      ['upstream port {', { domains: [SHOP], upstreamPort: 80, upstreamPorts: ['80 {' as unknown as number] }],
      ['static root with ;', { domains: [SHOP], staticRoot: '/srv/site; include /etc/passwd' }],
      ['static root with {', { domains: [SHOP], staticRoot: '/srv/{site}' }],
      ['static root with ..', { domains: [SHOP], staticRoot: '/srv/../etc' }],
      ['certificate path with ;', { domains: [SHOP], upstreamPort: 80, tls: { certPath: '/x.pem; }', keyPath: '/k.pem', domains: [SHOP] } }],
      ['key path with {', { domains: [SHOP], upstreamPort: 80, tls: { certPath: '/x.pem', keyPath: '/k{.pem', domains: [SHOP] } }],
      ['domain with $', { domains: ['$host'], upstreamPort: 80 }],
    ];
    for (const [what, site] of bad) {
      await assert.rejects(nginx.applyApp(APP, site), (err: unknown) => err instanceof NginxError && !err.message.includes('\n'), what);
    }
    assert.throws(() => new Nginx({ prefix: stack.nginxPrefix, httpPort: stack.httpPort, acmeWebroot: '/srv/acme;evil' }, pino({ level: 'silent' })), NginxError);
    for (const [name, value] of [
      ['BERTH_ACME_WEBROOT', '/srv/acme { root /'],
      ['BERTH_ACME_DIRECTORY', 'ftp://acme.example/dir'],
      ['BERTH_ACME_EMAIL', 'ops@example.com; }'],
      ['BERTH_ACME_RENEW_DAYS', '30;'],
    ] as const) {
      assert.throws(() => loadSettings({}, { [name]: value }), (err: unknown) => err instanceof SettingsError && err.message.startsWith(`invalid ${name}=`), name);
    }
    await sleep(1600); // a reconcile pass or two: nothing of it reached the agent
    assertSameFiles(beforeFiles, snapshot(), 'after all hostile input');
  });

  it('a forced nginx failure during a change rolls back exactly; the other app keeps serving throughout', async () => {
    await berthJson(['app', 'create', OTHER, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', OTHER, BLOG], stack.env);
    assert.equal((await berth(['deploy', OTHER, '--wait'], stack.env)).code, 0);
    await eventually(() => httpsGet(stack.httpsPort, BLOG, ca), (r) => r.status === 200, 30_000);

    // The other app is polled over HTTPS and HTTP for the whole failure and recovery.
    let stop = false;
    const failures: string[] = [];
    let served = 0;
    const poller = (async () => {
      while (!stop) {
        for (const probe of [() => httpsGet(stack.httpsPort, BLOG, ca), () => httpGet(stack.httpPort, BLOG)]) {
          try {
            const r = await probe();
            if (r.status !== 200 && r.status !== 308) failures.push(`HTTP ${r.status}`);
            else served++;
          } catch (err) {
            failures.push(String(err));
          }
        }
        await sleep(20);
      }
    })();

    const planted = join(sites(), 'zz-planted.conf');
    const logBefore = readFileSync(stack.agent!.logFile, 'utf8').length;
    const failedChange = async () => {
      const beforeFiles = await settled();
      writeFileSync(planted, 'this is not nginx;\n');
      try {
        await berthJson(['domain', 'add', APP, WWW], stack.env);
        // The reconcile pass tries the change: nginx -t fails, everything is put back.
        await eventually(
          async () => readFileSync(stack.agent!.logFile, 'utf8').slice(logBefore),
          (log) => /nginx rejected the config for app shop: \[emerg\] unknown directive/.test(log),
          20_000,
        );
        await sleep(1500); // another pass: still refused, still rolled back
        assertSameFiles(beforeFiles, await settled(['zz-planted.conf']), 'after the refused change');
        assert.equal((await httpGet(stack.httpPort, WWW)).status, 404, 'the refused change is not live');
        assert.equal((await httpsGet(stack.httpsPort, SHOP, ca)).status, 200, 'the changed app keeps its old config');
      } finally {
        rmSync(planted, { force: true });
      }
      // Once the obstacle is gone the change goes through, and the new name gets its certificate.
      const www = await eventually(() => httpsGet(stack.httpsPort, WWW, ca), (r) => r.status === 200, 30_000);
      assert.deepEqual(www.cert.san, [SHOP, WWW].sort());
    };
    try {
      await failedChange();
    } finally {
      stop = true;
      await poller;
    }
    assert.deepEqual(failures, [], 'the other app never failed a request');
    assert.ok(served > 20, `the other app was polled (${served} requests)`);
    await berthJson(['domain', 'rm', APP, WWW], stack.env);
    await eventually(() => httpsGet(stack.httpsPort, SHOP, ca), (r) => r.cert.san.length === 1, 30_000);
  });

  it('a server base domain gives every app a default hostname APP.BASE_DOMAIN, shown in domain ls', async () => {
    const set = await berthJson<{ baseDomain?: string }>(['server', 'set', stack.serverName, '--base-domain', 'apps.https.test'], stack.env);
    assert.equal(set.baseDomain, 'apps.https.test');
    // The default hostname is served and gets a certificate like any other domain.
    const page = await eventually(() => httpsGet(stack.httpsPort, `${OTHER}.apps.https.test`, ca), (r) => r.status === 200, 30_000);
    assert.deepEqual(page.cert.san, [BLOG, `${OTHER}.apps.https.test`].sort());
    await eventually(() => httpsGet(stack.httpsPort, SHOP, ca), (r) => r.cert.san.includes(`${APP}.apps.https.test`), 30_000);
    const list = await domains(OTHER);
    assert.deepEqual(list.map((d) => [d.domain, d.isDefault]), [[BLOG, false], [`${OTHER}.apps.https.test`, true]]);
    const taken = await berth(['domain', 'add', APP, `${OTHER}.apps.https.test`], stack.env);
    assert.match(taken.stderr, /already belongs to app "blog" \(its default hostname\)/);
    const rmDefault = await berth(['domain', 'rm', OTHER, `${OTHER}.apps.https.test`], stack.env);
    assert.match(rmDefault.stderr, /is the default hostname of app "blog"/);
    await berthJson(['server', 'set', stack.serverName, '--no-base-domain'], stack.env);
    assert.deepEqual((await domains(OTHER)).map((d) => d.domain), [BLOG]);
    await eventually(() => httpsGet(stack.httpsPort, SHOP, ca), (r) => r.cert.san.length === 1, 30_000);
    await eventually(() => httpsGet(stack.httpsPort, BLOG, ca), (r) => r.cert.san.length === 1, 30_000);
  });

  it('renewal: the job renews a near-expiry certificate and nginx serves the new one without a failed request', async () => {
    const old = await httpsGet(stack.httpsPort, SHOP, ca);
    const startedAt = Date.now();
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const serials = new Set<string>();
    const load = (async () => {
      while (!stop) {
        try {
          const r = await httpsGet(stack.httpsPort, SHOP, ca);
          if (r.status === 200 && r.body === 'hello https\n') ok++;
          else failures.push(`HTTP ${r.status}`);
          serials.add(r.cert.serial);
        } catch (err) {
          failures.push(String(err));
        }
        await sleep(10);
      }
    })();
    try {
      // Make the renewal threshold reach the certificate ~6 s after the agent restarts (the
      // production default is 30 days): the daily job's timer fires then.
      const days = (old.cert.notAfter.getTime() - (Date.now() + 6000)) / DAY;
      await restartAgent({ BERTH_ACME_RENEW_DAYS: days.toFixed(9), BERTH_ACME_MIN_RENEW_INTERVAL_S: '0' });
      const renewed = await eventually(() => httpsGet(stack.httpsPort, SHOP, ca), (r) => r.cert.serial !== old.cert.serial, 30_000);
      assert.deepEqual(renewed.cert.san, [SHOP]);
      assert.ok(renewed.cert.notAfter > old.cert.notAfter);
      await sleep(500);
    } finally {
      stop = true;
      await load;
    }
    assert.deepEqual(failures, [], 'no failed request during the renewal');
    assert.ok(ok > 50, `requests were served throughout (${ok})`);
    assert.ok(serials.has(old.cert.serial) && serials.size >= 2, 'the load saw the old and then the new certificate');
    const [d] = await eventually(() => domains(), (l) => Date.parse(l[0]?.certLastSuccessAt ?? '') > startedAt, 15_000);
    assert.equal(d!.certLastResult, 'ok');
    assert.match(readFileSync(stack.agent!.logFile, 'utf8'), /renewing certificate|issue a certificate for shop/);
    await restartAgent({ BERTH_ACME_RENEW_DAYS: undefined, BERTH_ACME_MIN_RENEW_INTERVAL_S: undefined });
  });

  it('ACME server down or untrusted: a clear error and the next attempt in domain ls; the app keeps serving (HTTP, and its old certificate)', async () => {
    const served = await httpsGet(stack.httpsPort, SHOP, ca);
    const closed = await freePort();
    await restartAgent({ BERTH_ACME_DIRECTORY: `https://127.0.0.1:${closed}/dir` });
    const NEW = 'new.shop.https.test';
    await berthJson(['domain', 'add', APP, NEW], stack.env);
    const list = await eventually(() => domains(), (l) => l.find((x) => x.domain === NEW)?.certLastResult === 'failed', 30_000);
    const row = list.find((x) => x.domain === NEW)!;
    assert.match(row.certLastError ?? '', new RegExp(`ACME directory https://127\\.0\\.0\\.1:${closed}/dir unreachable: ECONNREFUSED`));
    assert.equal(row.https, false);
    assert.equal(row.certState, 'missing');
    assert.ok(Date.parse(row.certNextAttemptAt!) > Date.now() + 60_000, 'the next attempt waits (backoff)');
    const shopRow = list.find((x) => x.domain === SHOP)!;
    assert.equal(shopRow.https, true, 'the old certificate still covers the old name');
    assert.equal(shopRow.certState, 'valid');
    // The new name is served over plain HTTP (no redirect without a certificate); the old one keeps its certificate.
    const http = await eventually(() => httpGet(stack.httpPort, NEW), (r) => r.status === 200);
    assert.equal(http.body, 'hello https\n');
    const again = await httpsGet(stack.httpsPort, SHOP, ca);
    assert.equal(again.cert.serial, served.cert.serial);
    const human = await berth(['domain', 'ls', APP], stack.env);
    assert.match(human.stdout, /last error: ACME directory .* unreachable: ECONNREFUSED/);
    assert.match(human.stdout, /new\.shop\.https\.test\s+no\s+missing\s+-\s+failed /);

    // Untrusted: the real ACME server, but without its CA.
    await restartAgent({ BERTH_ACME_DIRECTORY: pebble.directoryUrl, BERTH_ACME_CA: undefined });
    const BAD = 'bad.shop.https.test';
    await berthJson(['domain', 'rm', APP, NEW], stack.env);
    await berthJson(['domain', 'add', APP, BAD], stack.env); // a new domain set: tried at once despite the backoff
    const list2 = await eventually(() => domains(), (l) => /not trusted/.test(l.find((x) => x.domain === BAD)?.certLastError ?? ''), 30_000);
    const bad = list2.find((x) => x.domain === BAD)!;
    assert.match(bad.certLastError!, /ACME directory .* certificate not trusted: .*set BERTH_ACME_CA/);
    assert.ok(Date.parse(bad.certNextAttemptAt!) > Date.now() + 60_000);
    assert.equal((await httpGet(stack.httpPort, BAD)).status, 200);
    assert.equal((await httpsGet(stack.httpsPort, SHOP, ca)).cert.serial, served.cert.serial, 'a failed attempt never removes a working certificate');
    assert.ok(existsSync(join(stack.agentData, 'certs', APP, 'fullchain.pem')));
    await berthJson(['domain', 'rm', APP, BAD], stack.env);
  });
});
