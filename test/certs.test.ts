// The certificate engine (agent/certs/): renewal decisions (pure), the store, the scheduler, and
// real issuance against Pebble + pebble-challtestsrv with a private nginx serving the HTTP-01 webroot.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { CertManager, acmeConfigFromEnv, LETSENCRYPT_PRODUCTION, type CertStatus } from '../agent/certs/index.js';
import { AcmeError, AcmeIssuer, checkDirectory } from '../agent/certs/acme.js';
import { CertStore, CertStoreError, splitPemChain, validatePair } from '../agent/certs/store.js';
import {
  RenewalScheduler,
  backoffDelay,
  planRenewals,
  type AttemptFacts,
  type CertFacts,
  type RenewalTask,
} from '../agent/certs/renewal.js';
import { freePort, makeTmpDir } from './helpers/tmp.js';
import { startPebble, type Pebble } from './helpers/pebble.js';
import { LEVEL, recordingLogger } from './helpers/log.js';

const quiet = pino({ level: 'silent' });
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const NOW = new Date('2030-06-01T12:00:00Z');
const at = (ms: number) => new Date(NOW.getTime() + ms);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------
// Renewal decisions (pure)

describe('certs: renewal decisions', () => {
  const cert = (domains: string[], notAfterIn: number): CertFacts => ({ domains, notAfter: at(notAfterIn) });
  const failed = (failures: number, agoMs: number, attemptedDomains?: string[]): AttemptFacts => ({
    failures,
    lastAttemptAt: at(-agoMs).toISOString(),
    ...(attemptedDomains ? { attemptedDomains } : {}),
  });

  it('a missing certificate is due', () => {
    const plan = planRenewals({ desired: { a: ['a.com'] }, certs: {}, now: NOW });
    assert.deepEqual(plan.due.map((t) => [t.app, t.reason, t.domains]), [['a', 'missing', ['a.com']]]);
    assert.deepEqual(plan.due[0]!.added, ['a.com']);
    assert.equal(plan.due[0]!.notAfter, null);
    assert.deepEqual(plan.nextCheckAt, NOW);
  });

  it('an app without domains needs nothing', () => {
    const plan = planRenewals({ desired: { a: [] }, certs: { a: cert(['a.com'], 5 * DAY) }, now: NOW });
    assert.deepEqual([plan.due, plan.deferred, plan.upToDate, plan.nextCheckAt], [[], [], {}, null]);
  });

  it('a changed domain set is due: an added domain, and a removed one (re-issued without it)', () => {
    const plan = planRenewals({
      desired: { add: ['a.com', 'new.a.com'], rm: ['b.com'] },
      certs: { add: cert(['a.com'], 80 * DAY), rm: cert(['b.com', 'old.b.com'], 80 * DAY) },
      now: NOW,
    });
    const add = plan.due.find((t) => t.app === 'add')!;
    const rm = plan.due.find((t) => t.app === 'rm')!;
    assert.equal(add.reason, 'domains-changed');
    assert.deepEqual([add.added, add.removed, add.domains], [['new.a.com'], [], ['a.com', 'new.a.com']]);
    assert.equal(rm.reason, 'domains-changed');
    assert.deepEqual([rm.added, rm.removed, rm.domains], [[], ['old.b.com'], ['b.com']]);
  });

  it('domain sets compare normalized (case, duplicates, order)', () => {
    const plan = planRenewals({ desired: { a: ['B.com', 'a.com', 'b.com '] }, certs: { a: cert(['b.com', 'a.com'], 80 * DAY) }, now: NOW });
    assert.deepEqual(plan.due, []);
    assert.deepEqual(plan.upToDate.a, at(50 * DAY));
  });

  it('expiring within the threshold is due; not yet due otherwise (renewal date = notAfter − 30 days)', () => {
    const plan = planRenewals({
      desired: { soon: ['s.com'], edge: ['e.com'], later: ['l.com'] },
      certs: { soon: cert(['s.com'], 29 * DAY), edge: cert(['e.com'], 30 * DAY), later: cert(['l.com'], 30 * DAY + 1) },
      now: NOW,
    });
    assert.deepEqual(plan.due.map((t) => [t.app, t.reason]), [['soon', 'expiring'], ['edge', 'expiring']]);
    assert.deepEqual(plan.upToDate, { later: at(1) });
    assert.deepEqual(plan.nextCheckAt, NOW);
  });

  it('a custom threshold applies', () => {
    const plan = planRenewals({ desired: { a: ['a.com'] }, certs: { a: cert(['a.com'], 29 * DAY) }, now: NOW, policy: { thresholdMs: 7 * DAY } });
    assert.deepEqual(plan.due, []);
    assert.deepEqual(plan.upToDate.a, at(22 * DAY));
    assert.deepEqual(plan.nextCheckAt, at(22 * DAY));
  });

  it('an expired certificate is due as "expired"', () => {
    const plan = planRenewals({ desired: { a: ['a.com'] }, certs: { a: cert(['a.com'], -1) }, now: NOW });
    assert.equal(plan.due[0]!.reason, 'expired');
  });

  it('backs off exponentially after failures: 5 min doubling, capped at 24 h', () => {
    assert.equal(backoffDelay(0), 0);
    assert.equal(backoffDelay(1), 5 * MIN);
    assert.equal(backoffDelay(2), 10 * MIN);
    assert.equal(backoffDelay(4), 40 * MIN);
    assert.equal(backoffDelay(9), 21 * HOUR + 20 * MIN);
    assert.equal(backoffDelay(10), 24 * HOUR);
    assert.equal(backoffDelay(5000), 24 * HOUR);
    assert.equal(backoffDelay(3, { backoffBaseMs: 100, backoffMaxMs: 250 }), 250);
  });

  it('a failed app waits for its backoff, then is due again', () => {
    const input = { desired: { a: ['a.com'] }, certs: {} };
    const waiting = planRenewals({ ...input, attempts: { a: failed(3, 19 * MIN) }, now: NOW });
    assert.deepEqual(waiting.due, []);
    assert.equal(waiting.deferred.length, 1);
    assert.deepEqual([waiting.deferred[0]!.retryAt, waiting.deferred[0]!.failures], [at(MIN), 3]);
    assert.deepEqual(waiting.nextCheckAt, at(MIN));
    const ready = planRenewals({ ...input, attempts: { a: failed(3, 20 * MIN) }, now: NOW });
    assert.deepEqual(ready.due.map((t) => t.app), ['a']);
    const capped = planRenewals({ ...input, attempts: { a: failed(40, 23 * HOUR) }, now: NOW });
    assert.deepEqual(capped.deferred[0]!.retryAt, at(HOUR));
  });

  it('a new domain set is tried at once, without waiting for the backoff of the old one', () => {
    const plan = planRenewals({
      desired: { a: ['a.com', 'www.a.com'] },
      certs: {},
      attempts: { a: failed(5, MIN, ['a.com', 'typo.a.com']) },
      now: NOW,
    });
    assert.deepEqual(plan.due.map((t) => t.app), ['a']);
  });

  it('a just-renewed certificate still inside the threshold is not renewed again before the minimum interval', () => {
    const input = { desired: { a: ['a.com'] }, certs: { a: cert(['a.com'], 20 * DAY) }, now: NOW, policy: { thresholdMs: 100 * DAY } };
    const recent = planRenewals({ ...input, attempts: { a: { failures: 0, lastAttemptAt: at(-10 * MIN), lastSuccessAt: at(-10 * MIN) } } });
    assert.deepEqual(recent.due, []);
    assert.deepEqual(recent.deferred[0]!.retryAt, at(50 * MIN));
    const old = planRenewals({ ...input, attempts: { a: { failures: 0, lastAttemptAt: at(-2 * HOUR), lastSuccessAt: at(-2 * HOUR) } } });
    assert.deepEqual(old.due.map((t) => t.reason), ['expiring']);
  });

  it('orders the due work by urgency: missing, expired, changed domains, then soonest expiry first', () => {
    const plan = planRenewals({
      desired: {
        'exp-late': ['el.com'], 'exp-soon': ['es.com'], changed: ['c.com', 'c2.com'], missing: ['m.com'],
        expired: ['x.com'], fine: ['f.com'], backoff: ['b.com'], backoff2: ['b2.com'],
      },
      certs: {
        'exp-late': cert(['el.com'], 20 * DAY), 'exp-soon': cert(['es.com'], 2 * DAY), changed: cert(['c.com'], 60 * DAY),
        expired: cert(['x.com'], -DAY), fine: cert(['f.com'], 60 * DAY), backoff: cert(['b.com'], DAY), backoff2: null,
      },
      attempts: { backoff: failed(2, MIN), backoff2: failed(1, MIN) },
      now: NOW,
    });
    assert.deepEqual(plan.due.map((t) => t.app), ['missing', 'expired', 'changed', 'exp-soon', 'exp-late']);
    assert.deepEqual(plan.deferred.map((t) => [t.app, t.retryAt]), [['backoff2', at(4 * MIN)], ['backoff', at(9 * MIN)]]);
    assert.deepEqual(Object.keys(plan.upToDate), ['fine']);
  });
});

describe('certs: settings', () => {
  it('reads BERTH_ACME_* (Let\'s Encrypt production and the pre-check by default; empty = unset)', () => {
    assert.deepEqual(acmeConfigFromEnv({ BERTH_ACME_CA: '' }, 80), { directoryUrl: LETSENCRYPT_PRODUCTION, skipChallengeVerification: false, challengeHttpPort: 80 });
    assert.equal(LETSENCRYPT_PRODUCTION, 'https://acme-v02.api.letsencrypt.org/directory');
    assert.deepEqual(
      acmeConfigFromEnv({ BERTH_ACME_DIRECTORY: 'https://127.0.0.1:14000/dir', BERTH_ACME_CA: '/ca.pem', BERTH_ACME_EMAIL: 'a@b.c', BERTH_ACME_SKIP_PRECHECK: '1' }),
      { directoryUrl: 'https://127.0.0.1:14000/dir', caFile: '/ca.pem', email: 'a@b.c', skipChallengeVerification: true },
    );
  });
});

// ------------------------------------------------------------------------------------------------
// Test certificates without a CA (openssl, self-signed)

function selfSigned(dir: string, domains: string[], days = 90): { fullchain: string; privkey: string } {
  const name = `ss-${Math.random().toString(36).slice(2, 8)}`;
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`), '-days', String(days),
    '-subj', `/CN=${domains[0]}`, '-addext', `subjectAltName=${domains.map((d) => `DNS:${d}`).join(',')}`,
  ], { stdio: 'ignore' });
  return { fullchain: readFileSync(join(dir, `${name}.pem`), 'utf8'), privkey: readFileSync(join(dir, `${name}.key`), 'utf8') };
}

const mode = (p: string) => statSync(p).mode & 0o777;

/** Every file under a directory (following nothing), path → content, for byte-identity checks. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) out[p] = `-> ${readlinkSync(p)}`;
      else if (e.isDirectory()) walk(p);
      else out[p] = readFileSync(p, 'base64');
    }
  };
  walk(dir);
  return out;
}

describe('certs: store', () => {
  let tmp: string;
  before(() => {
    tmp = makeTmpDir('certstore');
  });
  after(() => {
    if (process.env.BERTH_TEST_KEEP_TMP !== '1') rmSync(tmp, { recursive: true, force: true });
  });

  it('installs a pair 0600 behind stable paths and swaps generations atomically', () => {
    const store = new CertStore(join(tmp, 's1'));
    assert.equal(mode(store.dir), 0o700);
    assert.equal(store.get('web'), null);
    const one = selfSigned(tmp, ['a.com', 'www.a.com']);
    const info = store.install('web', one, { domains: ['a.com', 'www.a.com'] });
    assert.deepEqual(info.domains, ['a.com', 'www.a.com']);
    assert.equal(info.generation, 1);
    assert.equal(readFileSync(info.certPath, 'utf8'), one.fullchain);
    assert.equal(readFileSync(info.keyPath, 'utf8'), one.privkey);
    assert.equal(mode(info.keyPath), 0o600);
    assert.equal(mode(info.certPath), 0o600);
    assert.equal(mode(join(store.dir, 'web')), 0o700);
    assert.ok(lstatSync(info.certPath).isSymbolicLink());
    assert.equal(readlinkSync(join(store.dir, 'web', 'current')), 'gen-1');

    const two = selfSigned(tmp, ['a.com']);
    const three = selfSigned(tmp, ['a.com']);
    store.install('web', two);
    const third = store.install('web', three);
    assert.equal(third.generation, 3);
    assert.equal(third.certPath, info.certPath, 'paths are stable across renewals');
    assert.equal(readFileSync(third.keyPath, 'utf8'), three.privkey);
    // current + previous generation kept (rollback), older pruned
    assert.deepEqual(readdirSync(join(store.dir, 'web')).filter((n) => n.startsWith('gen-')).sort(), ['gen-2', 'gen-3']);
    assert.deepEqual(readdirSync(join(store.dir, 'web')).filter((n) => n.startsWith('.')), [], 'no temp files left');

    const back = store.rollback('web')!;
    assert.equal(back.generation, 2);
    assert.equal(readFileSync(back.keyPath, 'utf8'), two.privkey);
  });

  it('refuses an unusable pair and leaves the working certificate byte-identical', () => {
    const store = new CertStore(join(tmp, 's2'));
    const good = selfSigned(tmp, ['a.com', 'b.com']);
    store.install('web', good);
    const before = snapshot(store.dir);
    const other = selfSigned(tmp, ['a.com', 'b.com']);
    const cases: Array<[{ fullchain: string; privkey: string }, object, RegExp]> = [
      [{ fullchain: good.fullchain, privkey: other.privkey }, {}, /private key does not match/],
      [{ fullchain: 'garbage', privkey: good.privkey }, {}, /no PEM certificate/],
      [{ fullchain: good.fullchain, privkey: 'garbage' }, {}, /private key does not parse/],
      [good, { domains: ['a.com', 'c.com'] }, /does not cover c\.com/],
      [good, { now: new Date(Date.now() + 400 * DAY) }, /expired/],
      [{ fullchain: good.fullchain + other.fullchain, privkey: good.privkey }, {}, /out of order/],
    ];
    for (const [pair, opts, re] of cases) {
      assert.throws(() => store.install('web', pair, opts), (err: Error) => err instanceof CertStoreError && re.test(err.message));
    }
    assert.deepEqual(snapshot(store.dir), before);
    assert.throws(() => store.install('../etc', good), /invalid app name/);
  });

  it('keeps desired domains and attempt records across restarts; a damaged state file is set aside', () => {
    const dir = join(tmp, 's3');
    const store = new CertStore(dir);
    store.setDesired('web', ['a.com']);
    store.recordAttempt('web', { at: NOW, finishedAt: at(1000), domains: ['a.com'], reason: 'missing', ok: false, error: 'boom', nextAttemptAt: at(5 * MIN) });
    store.recordAttempt('web', { at: at(6 * MIN), finishedAt: at(6 * MIN), domains: ['a.com'], reason: 'missing', ok: false, error: 'boom again', nextAttemptAt: at(16 * MIN) });
    const reopened = new CertStore(dir);
    const r = reopened.record('web')!;
    assert.deepEqual(
      [r.domains, r.failures, r.lastResult, r.lastError, r.lastAttemptAt, r.nextAttemptAt],
      [['a.com'], 2, 'failed', 'boom again', at(6 * MIN).toISOString(), at(16 * MIN).toISOString()],
    );
    assert.equal(mode(join(dir, 'state.json')), 0o600);
    reopened.recordAttempt('web', { at: at(20 * MIN), finishedAt: at(20 * MIN), domains: ['a.com'], reason: 'missing', ok: true, nextAttemptAt: null });
    assert.deepEqual([new CertStore(dir).record('web')!.failures, new CertStore(dir).record('web')!.lastError], [0, null]);

    writeFileSync(join(dir, 'state.json'), '{ not json');
    const { logger, lines } = recordingLogger();
    const fresh = new CertStore(dir, logger);
    assert.equal(fresh.record('web'), undefined);
    const aside = readdirSync(dir).filter((n) => n.startsWith('state.json.corrupt-'));
    assert.equal(aside.length, 1);
    assert.equal(readFileSync(join(dir, aside[0]!), 'utf8'), '{ not json', 'kept as it was, for inspection');
    // Logged at error level, with where it went.
    assert.deepEqual(lines.map((l) => [l.level, l.movedTo]), [[LEVEL.error, join(dir, aside[0]!)]]);
    assert.match(lines[0]!.msg, /certificate state file was damaged \(unreadable or not JSON.*\): moved it to /);

    // Valid JSON of the wrong shape is damaged too.
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ version: 1, apps: { web: { domains: 'a.com' } } }));
    assert.equal(new CertStore(dir, logger).record('web'), undefined);
    assert.match(lines[1]!.msg, /wrong shape at apps\.web\.domains/);
    assert.equal(readdirSync(dir).filter((n) => n.startsWith('state.json.corrupt-')).length, 2);
  });
});

// ------------------------------------------------------------------------------------------------
// Scheduler with a fake renew callback

describe('certs: renewal scheduler', () => {
  interface Rec { failures: number; lastAttemptAt: string | null; attemptedDomains: string[] | null; lastSuccessAt: string | null; log: Array<{ ok: boolean; at: number; next: Date | null }> }
  function harness(desired: Record<string, string[]>, certs: Record<string, CertFacts | null>) {
    const records: Record<string, Rec> = {};
    const record = (r: { app: string; ok: boolean; at: Date; finishedAt: Date; domains: string[] }, next: Date | null) => {
      const rec = (records[r.app] ??= { failures: 0, lastAttemptAt: null, attemptedDomains: null, lastSuccessAt: null, log: [] });
      rec.failures = r.ok ? 0 : rec.failures + 1;
      rec.lastAttemptAt = r.at.toISOString();
      rec.attemptedDomains = r.domains;
      if (r.ok) rec.lastSuccessAt = r.finishedAt.toISOString();
      rec.log.push({ ok: r.ok, at: r.at.getTime(), next });
    };
    return { records, record, load: () => ({ desired, certs, attempts: records }) };
  }

  it('renews every due app one at a time, most urgent first, and records every attempt', async () => {
    const now = Date.now();
    const h = harness(
      { late: ['l.com'], soon: ['s.com'], none: ['n.com'], fine: ['f.com'], broken: ['b.com'] },
      { late: { domains: ['l.com'], notAfter: new Date(now + 20 * DAY) }, soon: { domains: ['s.com'], notAfter: new Date(now + 2 * DAY) },
        none: null, fine: { domains: ['f.com'], notAfter: new Date(now + 80 * DAY) }, broken: { domains: ['b.com'], notAfter: new Date(now + 10 * DAY) } },
    );
    const order: string[] = [];
    let active = 0;
    let maxActive = 0;
    const sched = new RenewalScheduler({
      load: h.load,
      record: h.record,
      cron: '0 0 1 1 *',
      renew: async (task: RenewalTask) => {
        active++;
        maxActive = Math.max(maxActive, active);
        order.push(task.app);
        await sleep(5);
        active--;
        if (task.app === 'broken') throw new Error('CA said no\nsecond line');
        return { notAfter: new Date(Date.now() + 90 * DAY) };
      },
    });
    const summary = await sched.runOnce();
    assert.deepEqual(order, ['none', 'soon', 'broken', 'late']);
    assert.equal(maxActive, 1);
    assert.deepEqual(summary.attempts.map((a) => [a.app, a.ok]), [['none', true], ['soon', true], ['broken', false], ['late', true]]);
    assert.equal(summary.attempts[2]!.error, 'CA said no second line');
    assert.equal(h.records.broken!.failures, 1);
    const brokenNext = h.records.broken!.log[0]!.next!.getTime() - summary.attempts[2]!.finishedAt.getTime();
    assert.equal(brokenNext, 5 * MIN, 'next attempt after a first failure: +5 min');
    const okNext = h.records.soon!.log[0]!.next!.getTime();
    assert.ok(Math.abs(okNext - (Date.now() + 60 * DAY)) < 5000, 'next attempt after a success: notAfter − 30 days');
    assert.equal(h.records.fine, undefined);
    await sched.stop();
  });

  it('runs at start, retries after the backoff by itself, and stops cleanly', async () => {
    const h = harness({ a: ['a.com'] }, { a: null });
    let calls = 0;
    const sched = new RenewalScheduler({
      load: h.load,
      record: h.record,
      cron: '0 0 1 1 *',
      policy: { backoffBaseMs: 40, backoffMaxMs: 1000 },
      renew: async () => {
        calls++;
        if (calls < 3) throw new Error(`failure ${calls}`);
        return { notAfter: new Date(Date.now() + 90 * DAY) };
      },
    });
    sched.start();
    assert.ok(sched.nextScheduledRun() instanceof Date, 'daily job scheduled');
    const deadline = Date.now() + 5000;
    while (calls < 3 && Date.now() < deadline) await sleep(10);
    await sched.stop();
    assert.equal(sched.nextScheduledRun(), null);
    const log = h.records.a!.log;
    assert.deepEqual(log.map((l) => l.ok), [false, false, true]);
    assert.ok(log[1]!.at - log[0]!.at >= 40, `first retry after ≥ 40 ms (was ${log[1]!.at - log[0]!.at})`);
    assert.ok(log[2]!.at - log[1]!.at >= 80, `second retry after ≥ 80 ms (was ${log[2]!.at - log[1]!.at})`);
    assert.equal(h.records.a!.failures, 0);
    const settled = calls;
    await sleep(150);
    assert.equal(calls, settled, 'nothing runs after stop()');
  });

  it('a run requested during a run is queued once, not run concurrently', async () => {
    const h = harness({ a: ['a.com'] }, { a: null });
    let active = 0;
    let maxActive = 0;
    let calls = 0;
    const sched = new RenewalScheduler({
      load: h.load, record: h.record, cron: '0 0 1 1 *', policy: { backoffBaseMs: 0 },
      renew: async () => {
        calls++;
        active++;
        maxActive = Math.max(maxActive, active);
        await sleep(20);
        active--;
        throw new Error('no');
      },
    });
    await Promise.all([sched.runOnce(), sched.runOnce(), sched.runOnce()]);
    assert.equal(maxActive, 1);
    assert.equal(calls, 2, 'first run + one queued rerun shared by both later callers');
  });
});

// ------------------------------------------------------------------------------------------------
// Real ACME: Pebble + challtestsrv + a private nginx serving the webroot

function writeNginxConf(prefix: string, httpPort: number, webroot: string): string {
  for (const d of ['logs', 'tmp', 'tls']) mkdirSync(join(prefix, d), { recursive: true });
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, [
    'daemon off;',
    'worker_processes 1;',
    `pid ${prefix}/nginx.pid;`,
    `error_log ${prefix}/logs/error.log warn;`,
    'events { worker_connections 128; }',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${prefix}/tmp/client_body;`,
    `  proxy_temp_path ${prefix}/tmp/proxy;`,
    `  fastcgi_temp_path ${prefix}/tmp/fastcgi;`,
    `  uwsgi_temp_path ${prefix}/tmp/uwsgi;`,
    `  scgi_temp_path ${prefix}/tmp/scgi;`,
    '  server {',
    `    listen 127.0.0.1:${httpPort} default_server;`,
    '    server_name _;',
    '    location ^~ /.well-known/acme-challenge/ {',
    `      root ${webroot};`,
    '      default_type text/plain;',
    '      try_files $uri =404;',
    '    }',
    '    location / { return 404; }',
    '  }',
    `  include ${prefix}/tls/*.conf;`,
    '}',
    '',
  ].join('\n'));
  return conf;
}

function tlsSite(prefix: string, httpsPort: number, domains: string[], certPath: string, keyPath: string): void {
  writeFileSync(join(prefix, 'tls', 'site.conf'), [
    'server {',
    `  listen 127.0.0.1:${httpsPort} ssl;`,
    `  server_name ${domains.join(' ')};`,
    `  ssl_certificate ${certPath};`,
    `  ssl_certificate_key ${keyPath};`,
    '  ssl_protocols TLSv1.2 TLSv1.3;',
    '  return 200 "ok\\n";',
    '}',
    '',
  ].join('\n'));
}

function run(bin: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, (err, _out, stderr) => (err ? reject(new Error(`${bin} ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve()));
  });
}

function waitTcp(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = netConnect({ host: '127.0.0.1', port });
      s.once('connect', () => (s.destroy(), resolve()));
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`nothing listens on ${port}`));
        else setTimeout(attempt, 30);
      });
    };
    attempt();
  });
}

/** TLS handshake with SNI against nginx, verified against `ca`: the served certificate's serial. */
function served(port: number, servername: string, ca: string): Promise<{ authorized: boolean; error: string | null; serial: string }> {
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ host: '127.0.0.1', port, servername, ca, rejectUnauthorized: false, timeout: 3000 }, () => {
      const peer = sock.getPeerCertificate();
      resolve({ authorized: sock.authorized, error: sock.authorizationError ? String(sock.authorizationError) : null, serial: String(peer.serialNumber).toUpperCase() });
      sock.end();
    });
    sock.on('timeout', () => sock.destroy(new Error('TLS handshake timed out')));
    sock.on('error', reject);
  });
}

/** Verify leaf → intermediate(s) → Pebble root by signatures and issuer links. */
function assertChainsTo(fullchain: string, rootPem: string): X509Certificate {
  const chain = splitPemChain(fullchain).map((p) => new X509Certificate(p));
  const root = new X509Certificate(rootPem);
  assert.ok(chain.length >= 2, 'full chain has the leaf and at least one intermediate');
  for (let i = 0; i + 1 < chain.length; i++) {
    assert.ok(chain[i]!.checkIssued(chain[i + 1]!), `certificate ${i} issued by ${i + 1}`);
    assert.ok(chain[i]!.verify(chain[i + 1]!.publicKey), `signature of certificate ${i}`);
  }
  const top = chain[chain.length - 1]!;
  assert.ok(top.checkIssued(root) && top.verify(root.publicKey), 'the chain ends at Pebble\'s root');
  return chain[0]!;
}

const sanList = (c: X509Certificate) => (c.subjectAltName ?? '').split(', ').map((s) => s.replace(/^DNS:/, '')).sort();

describe('certs: ACME issuance against Pebble through a real nginx', { timeout: 60_000 }, () => {
  let root: string;
  let data: string;
  let webroot: string;
  let prefix: string;
  let conf: string;
  let httpPort: number;
  let httpsPort: number;
  let pebble: Pebble | undefined;
  let nginx: ChildProcess | undefined;
  const WWW = 'www.shop-berth.com';
  const APEX = 'shop-berth.com';

  const manager = (over: Partial<ConstructorParameters<typeof CertManager>[0]> = {}, acme: object = {}) =>
    new CertManager({
      dataDir: data,
      webroot,
      log: quiet,
      cron: '0 0 1 1 *',
      ...over,
      // The pre-check runs as in production, except that it connects to 127.0.0.1 instead of resolving
      // the made-up domains (only Pebble's DNS knows them).
      acme: {
        directoryUrl: pebble!.directoryUrl, caFile: pebble!.caFile, email: 'ops@shop-berth.com',
        skipChallengeVerification: false, challengeHttpPort: httpPort, challengeCheckAddress: '127.0.0.1', ...acme,
      },
    });
  const reload = () => run('nginx', ['-s', 'reload', '-p', prefix, '-c', conf]);
  const statusOf = (m: CertManager, app: string): CertStatus => m.status().find((s) => s.app === app)!;

  before(async () => {
    root = makeTmpDir('certs');
    chmodSync(root, 0o755); // nginx workers run as nobody and must traverse into the webroot
    data = join(root, 'data');
    webroot = join(root, 'acme-webroot');
    prefix = join(root, 'nginx');
    [httpPort, httpsPort] = [await freePort(), await freePort()];
    while (httpsPort === httpPort) httpsPort = await freePort();
    conf = writeNginxConf(prefix, httpPort, webroot);
    nginx = spawn('nginx', ['-p', prefix, '-c', conf], { stdio: 'ignore' });
    pebble = await startPebble({ httpPort, certValiditySeconds: 90 * 86_400 });
    await waitTcp(httpPort);
  });

  after(async () => {
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((r) => nginx!.once('exit', r));
      nginx.kill('SIGQUIT');
      const timer = setTimeout(() => nginx!.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    await pebble?.stop();
    if (process.env.BERTH_TEST_KEEP_TMP !== '1') rmSync(root, { recursive: true, force: true });
  });

  let firstSerial = '';
  let accountUrl = '';
  let accountKey = '';

  it('issues one certificate for two domains over HTTP-01 (validated by Pebble through nginx)', async () => {
    const m = manager();
    const t0 = Date.now();
    const res = await m.ensure('shop', [WWW, APEX]);
    assert.ok(res, `issued: ${JSON.stringify(statusOf(m, 'shop'))}`);
    assert.ok(Date.now() - t0 < 15_000);
    assert.deepEqual(res.domains, [APEX, WWW]);
    assert.equal(res.certPath, join(data, 'certs', 'shop', 'fullchain.pem'));
    assert.equal(res.keyPath, join(data, 'certs', 'shop', 'privkey.pem'));

    const fullchain = readFileSync(res.certPath, 'utf8');
    const leaf = assertChainsTo(fullchain, pebble!.rootPem);
    assert.deepEqual(sanList(leaf), [APEX, WWW]);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(readFileSync(res.keyPath))));
    assert.equal(new Date(leaf.validTo).getTime(), res.notAfter.getTime());
    const lifetime = new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime();
    assert.ok(Math.abs(lifetime - 90 * DAY) < DAY, `Pebble issued a 90-day certificate (${lifetime / DAY} d)`);
    firstSerial = leaf.serialNumber.toUpperCase();

    // files and permissions
    assert.equal(mode(realpathSync(res.keyPath)), 0o600);
    assert.equal(mode(realpathSync(res.certPath)), 0o600);
    assert.equal(mode(join(data, 'certs')), 0o700);
    assert.equal(mode(join(data, 'certs', 'account.key')), 0o600);
    accountKey = readFileSync(join(data, 'certs', 'account.key'), 'utf8');
    const accounts = JSON.parse(readFileSync(join(data, 'certs', 'account.json'), 'utf8')).accounts as Record<string, string>;
    assert.deepEqual(Object.keys(accounts), [pebble!.directoryUrl]);
    accountUrl = accounts[pebble!.directoryUrl]!;
    // the webroot is world-readable and the tokens are gone
    const challengeDir = join(webroot, '.well-known', 'acme-challenge');
    assert.equal(mode(challengeDir), 0o755);
    assert.deepEqual(readdirSync(challengeDir), []);

    // status
    const st = statusOf(m, 'shop');
    assert.equal(st.state, 'valid');
    assert.deepEqual([st.lastResult, st.lastError, st.failures], ['ok', null, 0]);
    assert.deepEqual(st.certDomains, [APEX, WWW]);
    assert.equal(st.nextAttemptAt, new Date(res.notAfter.getTime() - 30 * DAY).toISOString());
    assert.ok(st.daysLeft! >= 89);
    assert.match(st.issuer!, /Pebble/i);

    // nginx serves it; a real handshake verifies the chain against Pebble's root for both names
    tlsSite(prefix, httpsPort, [WWW, APEX], res.certPath, res.keyPath);
    await reload();
    await waitTcp(httpsPort);
    for (const name of [WWW, APEX]) {
      const s = await served(httpsPort, name, pebble!.rootPem);
      assert.deepEqual([s.authorized, s.error, s.serial], [true, null, firstSerial]);
    }

    // asking again is a no-op (no new order)
    const again = await m.ensure('shop', [APEX, WWW]);
    assert.equal(new X509Certificate(readFileSync(again!.certPath)).serialNumber.toUpperCase(), firstSerial);
    assert.equal(statusOf(m, 'shop').lastAttemptAt, st.lastAttemptAt);
  });

  it('re-issues without a removed domain, reusing the account', async () => {
    const m = manager(); // a new manager over the same data dir: state survives a restart
    // An all-in-one install shares the challenge dir with the control plane's user (root:berth 1775):
    // issuing keeps those bits instead of resetting the dir to 0755.
    const challengeDir = join(webroot, '.well-known', 'acme-challenge');
    chmodSync(challengeDir, 0o1775);
    const res = await m.ensure('shop', [WWW]);
    assert.ok(res);
    assert.equal(statSync(challengeDir).mode & 0o7777, 0o1775, 'the shared challenge dir keeps its group-write and sticky bits');
    assert.deepEqual(res.domains, [WWW]);
    const leaf = assertChainsTo(readFileSync(res.certPath, 'utf8'), pebble!.rootPem);
    assert.deepEqual(sanList(leaf), [WWW]);
    assert.notEqual(leaf.serialNumber.toUpperCase(), firstSerial);
    assert.equal(statusOf(m, 'shop').state, 'valid');
    assert.equal(readFileSync(join(data, 'certs', 'account.key'), 'utf8'), accountKey, 'account key unchanged');
    const accounts = JSON.parse(readFileSync(join(data, 'certs', 'account.json'), 'utf8')).accounts as Record<string, string>;
    assert.deepEqual(accounts, { [pebble!.directoryUrl]: accountUrl }, 'same account');
    await reload();
    const deadline = Date.now() + 5000;
    let s = await served(httpsPort, WWW, pebble!.rootPem);
    while (s.serial !== leaf.serialNumber.toUpperCase() && Date.now() < deadline) {
      await sleep(50);
      s = await served(httpsPort, WWW, pebble!.rootPem);
    }
    assert.deepEqual([s.authorized, s.serial], [true, leaf.serialNumber.toUpperCase()]);
  });

  it('an unreachable ACME directory fails fast with a clear error; the working certificate stays', async () => {
    const closed = await freePort();
    const m = manager({}, { directoryUrl: `https://127.0.0.1:${closed}/dir` });
    const before = snapshot(join(data, 'certs', 'shop'));
    const t0 = Date.now();
    const res = await m.ensure('shop', [WWW, 'api.shop-berth.com']);
    const took = Date.now() - t0;
    assert.ok(took < 5000, `failed within 5 s (${took} ms)`);
    assert.ok(res, 'the old, still valid certificate is returned');
    assert.deepEqual(res.domains, [WWW]);
    assert.deepEqual(snapshot(join(data, 'certs', 'shop')), before, 'certificate files byte-identical');
    const st = statusOf(m, 'shop');
    assert.equal(st.lastResult, 'failed');
    assert.equal(st.lastError, `ACME directory https://127.0.0.1:${closed}/dir unreachable: ECONNREFUSED`);
    assert.equal(st.failures, 1);
    assert.equal(st.state, 'renewal-due');
    assert.deepEqual(st.domains, ['api.shop-berth.com', WWW]);
    assert.equal(new Date(st.nextAttemptAt!).getTime() - new Date(st.lastAttemptAt!).getTime() >= 5 * MIN - 1000, true, 'next attempt after the 5-minute backoff');
    // within the backoff, ensure() does not hammer the CA
    await m.ensure('shop', [WWW, 'api.shop-berth.com']);
    assert.equal(statusOf(m, 'shop').lastAttemptAt, st.lastAttemptAt);
    // nginx keeps serving the old certificate
    assert.equal((await served(httpsPort, WWW, pebble!.rootPem)).authorized, true);
  });

  it('an untrusted ACME server certificate fails fast with a clear error', async () => {
    const m = manager({}, { caFile: undefined });
    const t0 = Date.now();
    const res = await m.ensure('blog', ['blog-berth.com']);
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(res, null, 'no certificate to fall back to');
    const st = statusOf(m, 'blog');
    assert.equal(st.state, 'missing');
    assert.match(st.lastError!, new RegExp(`^ACME directory ${pebble!.directoryUrl.replace(/[.]/g, '\\.')} certificate not trusted: .*\\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\\); set BERTH_ACME_CA`));
    assert.equal(existsSync(join(data, 'certs', 'blog', 'current')), false);

    // the same checks directly, with other failure shapes
    const direct = new AcmeIssuer({ directoryUrl: pebble!.directoryUrl }, { certsDir: join(root, 'direct'), webroot });
    await assert.rejects(direct.issue(['x-berth.com']), (e: Error) => e instanceof AcmeError && /certificate not trusted/.test(e.message));
    const wrongCa = join(root, 'wrong-ca.pem');
    writeFileSync(wrongCa, pebble!.rootPem); // a real CA, just not the one behind Pebble's listener
    await assert.rejects(checkDirectory(pebble!.directoryUrl, { caPem: readFileSync(wrongCa, 'utf8') }), /certificate not trusted: .*BERTH_ACME_CA does not vouch/);
    const missingCa = new AcmeIssuer({ directoryUrl: pebble!.directoryUrl, caFile: join(root, 'nope.pem') }, { certsDir: join(root, 'direct'), webroot });
    await assert.rejects(missingCa.issue(['x-berth.com']), /^AcmeError: ACME CA file .*nope\.pem unreadable: ENOENT$/);
    const ca = readFileSync(pebble!.caFile, 'utf8');
    await assert.rejects(checkDirectory(pebble!.directoryUrl.replace('/dir', '/nope'), { caPem: ca }), /answered HTTP 404$/);
    await assert.rejects(checkDirectory(`http://127.0.0.1:${httpPort}/`), /answered HTTP 404$/);
    await assert.rejects(checkDirectory('ftp://x/dir'), /must be https/);
    const dir = await checkDirectory(pebble!.directoryUrl, { caPem: ca });
    assert.equal(typeof dir.newOrder, 'string');

    await m.remove('blog');
    assert.equal(statusOf(m, 'blog'), undefined);
  });

  it('a domain whose challenge nginx does not serve: the pre-check fails fast; without it the CA\'s refusal comes through', async () => {
    const elsewhere = join(root, 'not-served-webroot');
    const pre = new AcmeIssuer(
      { directoryUrl: pebble!.directoryUrl, caFile: pebble!.caFile, challengeHttpPort: httpPort, challengeCheckAddress: '127.0.0.1' },
      { certsDir: join(root, 'direct2'), webroot: elsewhere },
    );
    const t0 = Date.now();
    await assert.rejects(pre.issue(['lost-berth.com']), (e: Error) => {
      assert.ok(e instanceof AcmeError);
      assert.match(e.message, new RegExp(`^challenge pre-check for lost-berth\\.com failed: http://lost-berth\\.com:${httpPort}/\\.well-known/acme-challenge/[A-Za-z0-9_-]+ answered HTTP 404 \\(is lost-berth\\.com pointing at this server`));
      return true;
    });
    assert.ok(Date.now() - t0 < 5000);
    assert.deepEqual(readdirSync(join(elsewhere, '.well-known', 'acme-challenge')), [], 'token removed after the failure');

    const noPre = new AcmeIssuer(
      { directoryUrl: pebble!.directoryUrl, caFile: pebble!.caFile, skipChallengeVerification: true, pollMinMs: 100 },
      { certsDir: join(root, 'direct2'), webroot: elsewhere },
    );
    await assert.rejects(noPre.issue(['lost-berth.com']), (e: Error) => {
      assert.ok(e instanceof AcmeError);
      assert.match(e.message, /^certificate for lost-berth\.com not issued: /);
      assert.doesNotMatch(e.message, /\n/);
      return true;
    });
  });

  it('the schedule renews a near-expiry certificate; the new one replaces the old atomically and nginx serves it without a failed handshake', async () => {
    const renewed: string[] = [];
    let onRenewed!: () => void;
    const renewedP = new Promise<void>((r) => (onRenewed = r));
    // A threshold longer than the 90-day lifetime makes the current certificate "expiring".
    const m = manager({
      policy: { thresholdMs: 100 * DAY },
      onRenewed: async (app, cert) => {
        renewed.push(app);
        assert.deepEqual(cert.domains, [WWW]);
        await reload();
        onRenewed();
      },
    });
    m.store.setDesired('shop', [WWW]); // back to the served domain set (the failed [api, www] attempt is moot)
    const shopDir = join(data, 'certs', 'shop');
    const oldGen = readlinkSync(join(shopDir, 'current'));
    const oldSerial = new X509Certificate(readFileSync(join(shopDir, 'fullchain.pem'))).serialNumber.toUpperCase();
    assert.equal(m.status().find((s) => s.app === 'shop')!.state, 'renewal-due');

    // Another process watches the files: whatever generation `current` selects is always complete and matching.
    const watcher = spawn(process.execPath, ['-e', WATCHER, shopDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let watchOut = '';
    watcher.stdout!.on('data', (d: Buffer) => (watchOut += d.toString()));
    const watcherDone = new Promise<void>((r) => watcher.once('exit', () => r()));
    // Clients keep handshaking during renewal + reload.
    let handshakes = 0;
    const handshakeErrors: string[] = [];
    let hammer = true;
    const hammering = (async () => {
      while (hammer) {
        try {
          const s = await served(httpsPort, WWW, pebble!.rootPem);
          if (!s.authorized) handshakeErrors.push(String(s.error));
          handshakes++;
        } catch (err) {
          handshakeErrors.push(String(err));
        }
      }
    })();

    m.start();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([renewedP, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no renewal within 20 s')), 20_000)))]);
    clearTimeout(timer);
    let newSerial = '';
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const s = await served(httpsPort, WWW, pebble!.rootPem);
      newSerial = s.serial;
      if (s.serial !== oldSerial) break;
      await sleep(50);
    }
    hammer = false;
    await hammering;
    await m.stop();
    watcher.kill('SIGTERM');
    await watcherDone;

    assert.deepEqual(renewed, ['shop']);
    const newGen = readlinkSync(join(shopDir, 'current'));
    assert.notEqual(newGen, oldGen);
    const leaf = assertChainsTo(readFileSync(join(shopDir, 'fullchain.pem'), 'utf8'), pebble!.rootPem);
    assert.equal(newSerial, leaf.serialNumber.toUpperCase(), 'nginx serves the renewed certificate');
    assert.notEqual(newSerial, oldSerial);
    assert.ok(existsSync(join(shopDir, oldGen)), 'the previous generation is kept for rollback');
    assert.deepEqual(handshakeErrors, []);
    assert.ok(handshakes > 0);
    const seen = JSON.parse(watchOut.trim().split('\n').pop() ?? '{}') as { checks: number; bad: string[]; gens: string[] };
    assert.deepEqual(seen.bad, []);
    assert.ok(seen.checks > 0);
    assert.ok(seen.gens.includes(newGen));

    const st = statusOf(m, 'shop');
    assert.deepEqual([st.lastResult, st.failures, st.lastError], ['ok', 0, null]);
    // still "expiring" under a 100-day threshold, but not renewed again before the minimum interval
    assert.equal(new Date(st.nextAttemptAt!).getTime(), new Date(st.lastSuccessAt!).getTime() + HOUR);
    assert.equal(m.nextScheduledRun(), null);
  });
});

/** Runs in a child process: check the pair selected by `current` until SIGTERM, then print a summary. */
const WATCHER = `
const { readFileSync, realpathSync } = require('node:fs');
const { X509Certificate, createPrivateKey } = require('node:crypto');
const dir = process.argv[1];
let checks = 0; const bad = []; const gens = new Set();
function check() {
  try {
    const gen = realpathSync(dir + '/current');
    gens.add(gen.split('/').pop());
    const cert = new X509Certificate(readFileSync(gen + '/fullchain.pem'));
    const key = createPrivateKey(readFileSync(gen + '/privkey.pem'));
    if (!cert.checkPrivateKey(key)) bad.push('mismatch in ' + gen);
  } catch (e) {
    bad.push(String(e.message));
  }
  checks++;
}
const t = setInterval(() => { for (let i = 0; i < 20; i++) check(); }, 1);
process.on('SIGTERM', () => { clearInterval(t); process.stdout.write(JSON.stringify({ checks, bad, gens: [...gens] }) + '\\n'); process.exit(0); });
`;
