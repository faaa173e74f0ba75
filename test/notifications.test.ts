// Notifications (issue 18) against real parts: a real control plane (SQLite in a temp dir, HTTP on
// loopback), a real `ws` client playing the agent, real HTTP receivers on loopback, a real SMTP
// server (smtp-server from npm) speaking STARTTLS with a certificate made by openssl, and the real
// `berth` CLI. No Docker needed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import { startControlPlane, type RunningControlPlane } from '../control-plane/main.js';
import type { NotifySettings } from '../control-plane/notify/index.js';
import { verifySignature } from '../control-plane/notify/sign.js';
import { adminApi, FakeAgent } from './helpers/fake-agent.js';
import { berth } from './helpers/cli.js';
import { freePort, makeTmpDir } from './helpers/tmp.js';
import { Stack } from './helpers/stack.js';
import { TestRepo } from './helpers/git-repo.js';
import { busyboxDockerfile } from './helpers/fixtures.js';
import { ensureBusyboxImage } from './helpers/docker.js';
import { startPebble } from './helpers/pebble.js';

const logger = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });
const SECRET_VALUE = 'pg-pass-Zq8v1rT3';
const COMMIT = 'a'.repeat(40);

// ---- helpers ---------------------------------------------------------------------------------

interface Received {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  json: any;
  answered: number;
}

/** An HTTP receiver on loopback: records every request and answers with the next scripted status (then 200). */
class Receiver {
  readonly requests: Received[] = [];
  script: number[] = [];
  private server!: Server;
  port = 0;

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c));
      req.on('end', () => {
        const status = this.script.shift() ?? 200;
        let json: unknown = null;
        try {
          json = JSON.parse(body);
        } catch {
          // recorded as is
        }
        this.requests.push({ path: req.url ?? '', headers: req.headers, body, json, answered: status });
        res.writeHead(status, { 'content-type': 'text/plain' }).end(status < 300 ? 'ok' : 'no');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  url(path = '/hook'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  accepted(): Received[] {
    return this.requests.filter((r) => r.answered < 300);
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for: ${what}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const FAST: NotifySettings = {
  smtp: null,
  offlineAfterMs: 60_000,
  rateWindowMs: 60_000,
  retry: { baseMs: 150, maxMs: 1000, giveUpAfterMs: 60_000 },
  tickMs: 40,
};

interface Env {
  cp: RunningControlPlane;
  api: ReturnType<typeof adminApi>;
  agent: FakeAgent;
  credential: string;
  dataDir: string;
}

/** A control plane with server web1, app shop on it (with a secret env value) and a connected fake agent. */
async function setup(settings: Partial<NotifySettings> = {}, dataDir = makeTmpDir('notify-cp')): Promise<Env> {
  const cp = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger, backup: null, notify: { ...FAST, ...settings } });
  const api = adminApi(cp);
  const server = await api('POST', '/api/servers', { name: 'web1' });
  assert.equal(server.status, 201);
  const join = await api('POST', '/api/agent/join', { token: server.body.joinToken });
  assert.equal(join.status, 200);
  assert.equal((await api('POST', '/api/apps', { name: 'shop', repo: 'https://git.example.com/shop.git', branch: 'main', server: 'web1' })).status, 201);
  assert.equal((await api('PATCH', '/api/apps/shop/env', { set: { DATABASE_PASSWORD: SECRET_VALUE } })).status, 200);
  const agent = await FakeAgent.join(cp.url, join.body.credential);
  return { cp, api, agent, credential: join.body.credential, dataDir };
}

async function addChannel(env: Env, body: Record<string, unknown>): Promise<any> {
  const r = await env.api('POST', '/api/notify/channels', body);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

/** Order a deploy and have the fake agent fail it while building, quoting the secret in its reason. */
async function failedDeploy(env: Env, reason = `npm ERR! could not connect to postgres://app:${SECRET_VALUE}@db/shop`): Promise<string> {
  const d = await env.api('POST', '/api/apps/shop/deploy', {});
  assert.equal(d.status, 201);
  const order = await env.agent.next('deploy');
  assert.equal(order.deploymentId, d.body.id);
  env.agent.progress(d.body.id, 'fetching');
  env.agent.progress(d.body.id, 'building', { commit: COMMIT });
  env.agent.progress(d.body.id, 'failed', { reason });
  await env.agent.sync();
  return d.body.id as string;
}

async function log(env: Env): Promise<any[]> {
  const r = await env.api('GET', '/api/notify/log?limit=100');
  assert.equal(r.status, 200);
  return r.body as any[];
}

// ---- tests -----------------------------------------------------------------------------------

describe('notifications: a failed deploy to a signed webhook', () => {
  let env: Env;
  let rx: Receiver;
  let secret: string;
  before(async () => {
    rx = await new Receiver().start();
    env = await setup();
    secret = (await addChannel(env, { name: 'ops', kind: 'webhook', target: rx.url() })).secret;
  });
  after(async () => {
    env.agent.close();
    await env.cp.close();
    await rx.stop();
  });

  it('sends exactly one signed POST with app, deployment id, phase, reason, commit and log link, and no env value', async () => {
    assert.match(secret, /^[A-Za-z0-9_-]{40,}$/);
    const id = await failedDeploy(env);
    await eventually(() => rx.requests.length >= 1, 'the webhook POST');
    await sleep(400); // a second delivery would have been sent by now
    assert.equal(rx.requests.length, 1);
    const req = rx.requests[0]!;
    const p = req.json;
    assert.equal(p.event, 'deploy.failed');
    assert.equal(p.app, 'shop');
    assert.equal(p.server, 'web1');
    assert.equal(p.data.deploymentId, id);
    assert.equal(p.data.phase, 'building');
    assert.equal(p.data.commit, COMMIT);
    assert.match(p.data.reason, /could not connect to postgres/);
    assert.equal(p.data.logUrl, `${env.cp.url}/api/deployments/${id}/logs`);
    assert.equal(p.idempotencyKey, `${p.id}.ops`);
    assert.equal(req.headers['x-berth-delivery'], p.idempotencyKey);
    assert.equal(req.headers['x-berth-event'], 'deploy.failed');
    // No env value anywhere: not in the body, not in a header.
    assert.ok(!req.body.includes(SECRET_VALUE), 'the env value leaked into the payload');
    assert.ok(!JSON.stringify(req.headers).includes(SECRET_VALUE));
    assert.match(p.data.reason, /\*\*\*/);
  });

  it('carries a signature that verifies with the documented recipe, and not with a changed body or an old timestamp', () => {
    const req = rx.requests[0]!;
    const ts = String(req.headers['x-berth-timestamp']);
    const sig = String(req.headers['x-berth-signature']);
    // The recipe from docs/notifications.md, written out independently of berth's code.
    const expected = 'v1=' + createHmac('sha256', secret).update(`${ts}.${req.body}`).digest('hex');
    assert.equal(sig, expected);
    assert.ok(Math.abs(Date.now() / 1000 - Number(ts)) < 60);
    assert.equal(verifySignature(secret, { timestamp: ts, signature: sig }, req.body), true);
    assert.equal(verifySignature(secret, { timestamp: ts, signature: sig }, req.body.replace('shop', 'shoq')), false);
    assert.equal(verifySignature('another-secret', { timestamp: ts, signature: sig }, req.body), false);
    assert.equal(verifySignature(secret, { timestamp: ts, signature: sig }, req.body, Number(ts) + 3600), false, 'a replay an hour later must be refused');
  });

  it('shows the delivery in the log, and lists the channel with its URL masked and no secret', async () => {
    const entries = await log(env);
    assert.equal(entries.length, 1);
    assert.equal(entries[0].result, 'delivered');
    assert.equal(entries[0].code, 200);
    assert.equal(entries[0].channel, 'ops');
    assert.equal(entries[0].event, 'deploy.failed');
    const ls = await env.api('GET', '/api/notify/channels');
    assert.equal(ls.body.length, 1);
    assert.equal(ls.body[0].target, `http://127.0.0.1:${rx.port}/…`);
    assert.equal(ls.body[0].secret, undefined);
    assert.ok(!ls.body[0].events.includes('deploy.succeeded'), 'deploy.succeeded is off by default');
  });

  it('tells nothing about a successful deploy by default, and tells a rollback', async () => {
    const ok = async (commit: string) => {
      const d = await env.api('POST', '/api/apps/shop/deploy', {});
      await env.agent.next('deploy');
      env.agent.progress(d.body.id, 'building', { commit });
      env.agent.progress(d.body.id, 'done');
      await env.agent.sync();
      return d;
    };
    const d = await ok(COMMIT);
    await ok('b'.repeat(40));
    const r = await env.api('POST', '/api/apps/shop/rollback', { deploymentId: d.body.id });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    await env.agent.next('deploy');
    env.agent.progress(r.body.id, 'starting');
    env.agent.progress(r.body.id, 'done');
    await env.agent.sync();
    await eventually(() => rx.requests.length >= 2, 'the rollback message');
    await sleep(300);
    assert.deepEqual(rx.requests.map((q) => q.json.event), ['deploy.failed', 'rollback.done']);
    assert.equal(rx.requests[1]!.json.data.rollbackOf, d.body.id);
  });
});

describe('notifications: retries', () => {
  let env: Env;
  let rx: Receiver;
  before(async () => {
    rx = await new Receiver().start();
    env = await setup();
  });
  after(async () => {
    env.agent.close();
    await env.cp.close();
    await rx.stop();
  });

  it('retries a receiver answering 500, then delivers once with the same idempotency key', async () => {
    await addChannel(env, { name: 'flaky', kind: 'webhook', target: rx.url('/flaky') });
    rx.script = [500, 503];
    await failedDeploy(env);
    await eventually(() => rx.accepted().length === 1, 'the delivery after two 5xx');
    await sleep(700);
    assert.equal(rx.requests.length, 3, 'two refused attempts and one accepted, nothing after');
    assert.equal(new Set(rx.requests.map((r) => r.json.idempotencyKey)).size, 1);
    assert.equal(new Set(rx.requests.map((r) => r.json.id)).size, 1);
    const entries = (await log(env)).reverse();
    assert.deepEqual(entries.map((e) => [e.attempt, e.result, e.code]), [[1, 'retrying', 500], [2, 'retrying', 503], [3, 'delivered', 200]]);
    assert.ok(entries[0].nextAttemptAt);
    await env.api('DELETE', '/api/notify/channels/flaky');
  });

  it('does not retry a receiver answering 400', async () => {
    await addChannel(env, { name: 'strict', kind: 'webhook', target: rx.url('/strict') });
    rx.requests.length = 0;
    rx.script = [400];
    // Another app's failure: the rate limit of shop's failures must not be what holds this back.
    await env.api('POST', '/api/apps', { name: 'cart', repo: 'https://git.example.com/cart.git', server: 'web1' });
    const d = await env.api('POST', '/api/apps/cart/deploy', {});
    await env.agent.next('deploy');
    env.agent.progress(d.body.id, 'failed', { reason: 'release command failed' });
    await env.agent.sync();
    await eventually(() => rx.requests.length === 1, 'the first attempt');
    await sleep(1200); // several backoff periods (150 ms doubling)
    assert.equal(rx.requests.length, 1);
    const entries = (await log(env)).filter((e) => e.channel === 'strict');
    assert.equal(entries.length, 1);
    assert.equal(entries[0].result, 'failed');
    assert.equal(entries[0].code, 400);
    assert.match(entries[0].error, /not retried/);
  });

  it('retries a 429', async () => {
    rx.requests.length = 0;
    await env.api('DELETE', '/api/notify/channels/strict');
    await addChannel(env, { name: 'busy', kind: 'webhook', target: rx.url('/busy') });
    rx.script = [429];
    const t = await env.api('POST', '/api/notify/channels/busy/test');
    assert.equal(t.body.result, 'retrying');
    assert.equal(t.body.code, 429);
    await eventually(() => rx.accepted().length === 1, 'the retry after 429');
    assert.equal(rx.requests.length, 2);
    assert.equal(rx.accepted()[0]!.json.event, 'test');
  });
});

describe('notifications: the outbox survives a control-plane restart', () => {
  it('delivers a message queued while the receiver was down once, after the control plane restarted', async () => {
    const rx = await new Receiver().start();
    const port = rx.port;
    let env = await setup({ retry: { baseMs: 60_000, maxMs: 60_000, giveUpAfterMs: 3_600_000 } });
    await addChannel(env, { name: 'later', kind: 'webhook', target: rx.url() });
    await rx.stop(); // the receiver is down: the first attempt fails with a network error
    const id = await failedDeploy(env);
    await eventually(async () => (await log(env)).length === 1, 'the failed first attempt');
    const first = (await log(env))[0];
    assert.equal(first.result, 'retrying');
    assert.match(first.error, /cannot reach the receiver/);
    env.agent.close();
    await env.cp.close();

    // Back up on the same port; the control plane restarts on the same data dir. The pending
    // delivery is due at its next attempt (a minute away): move it up so the test need not wait.
    const rx2 = await new Receiver().start(port);
    const { openDatabase } = await import('../control-plane/store/db.js');
    const db = openDatabase(join(env.dataDir, 'control-plane.db'));
    assert.equal(db.prepare(`UPDATE notify_outbox SET next_at = ? WHERE status = 'pending'`).run(new Date(0).toISOString()).changes, 1);
    db.close();
    const cp = await startControlPlane({ dataDir: env.dataDir, listen: '127.0.0.1:0', logger, backup: null, notify: { ...FAST, retry: { baseMs: 60_000, maxMs: 60_000, giveUpAfterMs: 3_600_000 } } });
    try {
      await eventually(() => rx2.requests.length >= 1, 'the delivery after the restart');
      await sleep(400);
      assert.equal(rx2.requests.length, 1);
      assert.equal(rx2.requests[0]!.json.data.deploymentId, id);
      assert.equal(rx2.requests[0]!.json.idempotencyKey, first.idempotencyKey);
      const entries = (await adminApi(cp)('GET', '/api/notify/log')).body as any[];
      assert.deepEqual(entries.map((e) => e.result), ['delivered', 'retrying']);
    } finally {
      await cp.close();
      await rx2.stop();
    }
  });
});

describe('notifications: rate limit of repeated failures', () => {
  it('sends one message per app and event kind per window, then one with the count', async () => {
    const rx = await new Receiver().start();
    const env = await setup({ rateWindowMs: 1500 });
    try {
      await addChannel(env, { name: 'ops', kind: 'webhook', target: rx.url() });
      for (let i = 0; i < 4; i++) await failedDeploy(env, `build failed (${i})`);
      await eventually(() => rx.requests.length >= 1, 'the first failure');
      await sleep(300);
      assert.equal(rx.requests.length, 1, 'repeats inside the window are held back');
      assert.equal(rx.requests[0]!.json.repeated, 0);
      await eventually(() => rx.requests.length >= 2, 'the summary after the window', 5000);
      await sleep(300);
      assert.equal(rx.requests.length, 2);
      const summary = rx.requests[1]!.json;
      assert.equal(summary.event, 'deploy.failed');
      assert.equal(summary.repeated, 3);
      assert.equal(summary.data.reason, 'build failed (3)');
      assert.notEqual(summary.idempotencyKey, rx.requests[0]!.json.idempotencyKey);
    } finally {
      env.agent.close();
      await env.cp.close();
      await rx.stop();
    }
  });
});

describe('notifications: servers, certificates, disk and cron', () => {
  let env: Env;
  let rx: Receiver;
  before(async () => {
    rx = await new Receiver().start();
    env = await setup({ offlineAfterMs: 600 });
    await addChannel(env, { name: 'ops', kind: 'webhook', target: rx.url() });
  });
  after(async () => {
    env.agent.close();
    await env.cp.close();
    await rx.stop();
  });
  const events = () => rx.requests.map((r) => r.json.event as string);

  it('tells "offline" once after an agent is gone longer than the threshold, then "online" when it is back', async () => {
    env.agent.ws.terminate();
    await sleep(300);
    assert.deepEqual(events(), [], 'not before the threshold');
    await eventually(() => events().includes('server.offline'), 'server.offline');
    await sleep(700);
    assert.deepEqual(events(), ['server.offline']);
    assert.equal(rx.requests[0]!.json.server, 'web1');
    env.agent = await FakeAgent.join(env.cp.url, env.credential);
    await eventually(() => events().includes('server.online'), 'server.online');
    assert.deepEqual(events(), ['server.offline', 'server.online']);
  });

  const cert = (over: Record<string, unknown>) => ({
    app: 'shop',
    domains: ['shop.example.com'],
    certDomains: ['shop.example.com'],
    state: 'renewal-due',
    issuer: 'Pebble',
    notBefore: '2026-09-01T00:00:00.000Z',
    notAfter: '2026-12-21T00:00:00.000Z',
    daysLeft: 20,
    lastAttemptAt: new Date().toISOString(),
    lastResult: 'failed',
    lastError: 'acme: urn:ietf:params:acme:error:connection: could not connect to shop.example.com',
    lastSuccessAt: null,
    failures: 1,
    nextAttemptAt: null,
    ...over,
  });
  const sendCerts = async (entry: Record<string, unknown>) => {
    env.agent.send({ type: 'cert_status', v: 1, certs: [entry] });
    await env.agent.sync();
  };

  it('tells a failing certificate renewal on the first failure and within 7 days of expiry, and its renewal', async () => {
    rx.requests.length = 0;
    await sendCerts(cert({}));
    await eventually(() => events().length === 1, 'cert.failing');
    await sendCerts(cert({ failures: 2 }));
    await sendCerts(cert({ failures: 3, daysLeft: 10 }));
    await sleep(300);
    assert.deepEqual(events(), ['cert.failing'], 'later failures far from expiry are not told again');
    await sendCerts(cert({ failures: 4, daysLeft: 6 }));
    await eventually(() => events().length === 2, 'the 7-day alert');
    assert.equal(rx.requests[1]!.json.data.withinSevenDays, true);
    await sendCerts(cert({ failures: 5, daysLeft: 5 }));
    await sendCerts(cert({ failures: 0, lastResult: 'ok', lastError: null, daysLeft: 89, notAfter: '2027-03-01T00:00:00.000Z' }));
    await eventually(() => events().length === 3, 'cert.renewed');
    await sendCerts(cert({ failures: 0, lastResult: 'ok', lastError: null, daysLeft: 88 }));
    await sleep(300);
    assert.deepEqual(events(), ['cert.failing', 'cert.failing', 'cert.renewed']);
    assert.equal(rx.requests[0]!.json.app, 'shop');
    assert.match(rx.requests[0]!.json.text, /could not connect/);
  });

  const observed = async (extra: Record<string, unknown>) => {
    env.agent.send({ type: 'observed_state', v: 1, specRevision: null, containers: [], ...extra });
    await env.agent.sync();
  };
  const run = (id: string, status: string, exitCode: number | null) => ({ app: 'shop', job: 'nightly', runId: id, status, exitCode, reason: status === 'succeeded' ? null : `exited with code ${exitCode}`, finishedAt: new Date().toISOString() });

  it('tells a cron job\'s first failure and its recovery, not every failed run', async () => {
    rx.requests.length = 0;
    await observed({ cron: [run('run00001', 'succeeded', 0)] });
    await observed({ cron: [run('run00002', 'failed', 2)] });
    await eventually(() => events().length === 1, 'cron.failed');
    await observed({ cron: [run('run00003', 'failed', 2)] });
    await observed({ cron: [run('run00004', 'timed_out', null)] });
    await sleep(300);
    assert.deepEqual(events(), ['cron.failed']);
    assert.equal(rx.requests[0]!.json.data.job, 'nightly');
    assert.equal(rx.requests[0]!.json.data.exitCode, 2);
    await observed({ cron: [run('run00005', 'succeeded', 0)] });
    await eventually(() => events().length === 2, 'cron.recovered');
    assert.deepEqual(events(), ['cron.failed', 'cron.recovered']);
  });

  it('tells free disk below the agent\'s threshold once, and again only after it recovered', async () => {
    rx.requests.length = 0;
    const disk = (freeMb: number) => ({ disk: [{ path: '/var/lib/docker', freeMb, minFreeMb: 1024 }] });
    await observed(disk(5000));
    await observed(disk(800));
    await eventually(() => events().length === 1, 'disk.low');
    await observed(disk(700));
    await sleep(300);
    assert.deepEqual(events(), ['disk.low']);
    assert.equal(rx.requests[0]!.json.data.freeMb, 800);
    assert.equal(rx.requests[0]!.json.server, 'web1');
  });
});

describe('notifications: Slack and Discord formats, filters', () => {
  it('posts Slack and Discord incoming-webhook bodies with mentions neutralised', async () => {
    const rx = await new Receiver().start();
    const env = await setup();
    try {
      await addChannel(env, { name: 'slack', kind: 'slack', target: rx.url('/slack') });
      await addChannel(env, { name: 'discord', kind: 'discord', target: rx.url('/discord') });
      // A channel for another app's events only, and one for deploy.succeeded only: neither gets this failure.
      await env.api('POST', '/api/apps', { name: 'cart', repo: 'https://git.example.com/cart.git', server: 'web1' });
      await addChannel(env, { name: 'cart-only', kind: 'webhook', target: rx.url('/cart'), apps: ['cart'] });
      await addChannel(env, { name: 'wins', kind: 'webhook', target: rx.url('/wins'), events: ['deploy.succeeded'] });
      await failedDeploy(env, 'build failed <!channel> @everyone see <https://evil.example|here>');
      await eventually(() => rx.requests.length >= 2, 'both posts');
      await sleep(400);
      assert.deepEqual(rx.requests.map((r) => r.path).sort(), ['/discord', '/slack']);
      const slack = rx.requests.find((r) => r.path === '/slack')!.json;
      assert.equal(typeof slack.text, 'string');
      assert.match(slack.text, /^shop: deploy \w+ failed while building$/);
      assert.equal(slack.blocks[0].type, 'section');
      assert.equal(slack.blocks[0].text.type, 'mrkdwn');
      assert.match(slack.blocks[0].text.text, /&lt;!channel&gt;/);
      assert.ok(!JSON.stringify(slack).includes('<!channel>'));
      assert.ok(!JSON.stringify(slack).includes('<https://evil'));
      const discord = rx.requests.find((r) => r.path === '/discord')!.json;
      assert.equal(discord.embeds.length, 1);
      assert.match(discord.embeds[0].title, /^shop: deploy \w+ failed while building$/);
      assert.match(discord.embeds[0].description, /build failed/);
      assert.deepEqual(discord.allowed_mentions, { parse: [] });
      assert.match(discord.embeds[0].footer.text, /deploy\.failed/);
      for (const r of rx.requests) assert.ok(!r.body.includes(SECRET_VALUE));
    } finally {
      env.agent.close();
      await env.cp.close();
      await rx.stop();
    }
  });

  it('refuses bad channels with a clear error', async () => {
    const env = await setup();
    try {
      const bad = async (body: Record<string, unknown>, re: RegExp) => {
        const r = await env.api('POST', '/api/notify/channels', body);
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.match(r.body.error, re);
      };
      await bad({ name: 'a', kind: 'webhook', target: 'http://example.com/hook' }, /invalid target: must be an https:\/\/ URL/);
      await bad({ name: 'a', kind: 'slack', target: 'https://u:p@hooks.slack.com/x' }, /without user:password/);
      await bad({ name: 'a', kind: 'email', target: 'not-an-address' }, /must be an e-mail address/);
      await bad({ name: 'a', kind: 'email', target: 'ops@example.com' }, /no SMTP server is configured/);
      await bad({ name: 'A!', kind: 'webhook', target: 'https://example.com/' }, /invalid channel name/);
      await bad({ name: 'a', kind: 'webhook', target: 'https://example.com/', events: ['deploy.exploded'] }, /invalid event filter/);
      const missing = await env.api('POST', '/api/notify/channels', { name: 'a', kind: 'webhook', target: 'https://example.com/', apps: ['nope'] });
      assert.equal(missing.status, 404);
    } finally {
      env.agent.close();
      await env.cp.close();
    }
  });
});

describe('notifications: e-mail through SMTP with STARTTLS', () => {
  it('delivers the message over an upgraded (TLS) SMTP session', async () => {
    const dir = makeTmpDir('notify-smtp');
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
    const mails: Array<{ secure: boolean; from: string; to: string[]; data: string }> = [];
    const smtp = new SMTPServer({
      secure: false,
      key: readFileSync(key),
      cert: readFileSync(cert),
      authOptional: true,
      disabledCommands: ['AUTH'],
      logger: false,
      onData(stream, session, cb) {
        let data = '';
        stream.on('data', (c: Buffer) => (data += c));
        stream.on('end', () => {
          mails.push({ secure: session.secure, from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), data });
          cb();
        });
      },
    });
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
    const port = (smtp.server.address() as AddressInfo).port;
    const env = await setup({ smtp: { host: 'localhost', port, security: 'starttls', from: 'berth@cp.example.com', caFile: cert } });
    try {
      await addChannel(env, { name: 'mail', kind: 'email', target: 'ops@example.com' });
      const id = await failedDeploy(env);
      await eventually(() => mails.length === 1, 'the e-mail');
      const mail = mails[0]!;
      assert.equal(mail.secure, true, 'the session was upgraded with STARTTLS before the message');
      assert.equal(mail.from, 'berth@cp.example.com');
      assert.deepEqual(mail.to, ['ops@example.com']);
      assert.match(mail.data, /^Subject: \[berth\] shop: deploy \w+ failed while building/m);
      assert.ok(mail.data.includes(id));
      assert.match(mail.data, /^X-Berth-Delivery: \S+\.mail/m);
      assert.ok(!mail.data.includes(SECRET_VALUE));
      const entries = await log(env);
      assert.equal(entries[0].result, 'delivered');
    } finally {
      env.agent.close();
      await env.cp.close();
      await new Promise<void>((resolve) => smtp.close(() => resolve()));
    }
  });
});

describe('notifications: the berth CLI', () => {
  it('adds, lists, tests, logs and removes channels', async () => {
    const rx = await new Receiver().start();
    const env = await setup();
    const cli = { BERTH_URL: env.cp.url, BERTH_TOKEN: env.cp.adminToken };
    try {
      const add = await berth(['notify', 'add', 'hooks', '--webhook', rx.url(), '--app', 'shop', '--event', 'deploy.failed,deploy.succeeded', '--json'], cli);
      assert.equal(add.code, 0, add.stderr);
      const created = JSON.parse(add.stdout);
      assert.deepEqual(created.events, ['deploy.failed', 'deploy.succeeded']);
      assert.deepEqual(created.apps, ['shop']);
      assert.ok(created.secret);
      const human = await berth(['notify', 'add', 'team', '--slack', rx.url('/slack')], cli);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /channel team added/);
      const two = await berth(['notify', 'add', 'x', '--slack', rx.url(), '--discord', rx.url()], cli);
      assert.equal(two.code, 1);
      assert.match(two.stderr, /give exactly one of --webhook/);
      const ls = await berth(['notify', 'ls', '--json'], cli);
      assert.deepEqual(JSON.parse(ls.stdout).map((c: any) => c.name), ['hooks', 'team']);
      const test = await berth(['notify', 'test', 'hooks'], cli);
      assert.equal(test.code, 0, test.stderr);
      assert.match(test.stdout, /delivered to hooks/);
      assert.equal(rx.requests.at(-1)!.json.event, 'test');
      rx.script = [410];
      const refused = await berth(['notify', 'test', 'hooks'], cli);
      assert.equal(refused.code, 1);
      assert.match(refused.stdout, /not delivered to hooks: the receiver answered HTTP 410/);
      const logged = JSON.parse((await berth(['notify', 'log', '--json'], cli)).stdout);
      assert.deepEqual(logged.map((e: any) => e.result), ['failed', 'delivered']);
      const rm = await berth(['notify', 'rm', 'team'], cli);
      assert.equal(rm.code, 0, rm.stderr);
      const gone = await berth(['notify', 'test', 'team'], cli);
      assert.equal(gone.code, 1);
      assert.match(gone.stderr, /notification channel "team" does not exist/);
      const help = await berth(['notify', 'add', '--help'], cli);
      assert.match(help.stdout, /--webhook <url>/);
      assert.match(help.stdout, /--email <address>/);
      const top = await berth(['notify', '--help'], cli);
      assert.match(top.stdout, /X-Berth-Signature = "v1=" \+ hex HMAC-SHA256/);
      assert.match(top.stdout, /BERTH_SMTP_HOST/);
    } finally {
      env.agent.close();
      await env.cp.close();
      await rx.stop();
    }
  });
});

describe('notifications: a real agent end to end', () => {
  it('a real deploy failing for want of disk, the disk report, and a certificate Pebble cannot validate each produce one message, with no env value', async () => {
    await ensureBusyboxImage();
    const rx = await new Receiver().start();
    // Pebble validates HTTP-01 on a port where nothing listens: every certificate order fails.
    const pebble = await startPebble({ httpPort: await freePort() });
    // A disk threshold no disk meets: the real agent reports low disk, and its deploy fails at the
    // building phase's disk check (before any image is built).
    const stack = await Stack.create('notify-e2e', {
      https: true,
      agentEnv: {
        BERTH_MIN_FREE_DISK_MB: '10000000',
        BERTH_RECONCILE_INTERVAL_MS: '1000',
        BERTH_ACME_DIRECTORY: pebble.directoryUrl,
        BERTH_ACME_CA: pebble.caFile,
        BERTH_ACME_EMAIL: 'ops@notify.test',
        BERTH_ACME_SKIP_PRECHECK: '1',
      },
    });
    const of = (event: string) => rx.requests.filter((r) => r.json.event === event);
    try {
      await stack.startControlPlane();
      // The channel first: what the agent reports from its first pass on is told.
      const add = await berth(['notify', 'add', 'ops', '--webhook', rx.url(), '--event', 'deploy.failed,deploy.succeeded,disk.low,cert.failing'], stack.env);
      assert.equal(add.code, 0, add.stderr);
      await stack.joinAndStartAgent();
      const repo = new TestRepo(makeTmpDir('notify-repo'));
      const commit = repo.commit({ Dockerfile: busyboxDockerfile(), 'index.html': 'hello\n' });
      const api = adminApi({ url: stack.cpUrl, adminToken: stack.adminToken });
      assert.equal((await api('POST', '/api/apps', { name: 'real', repo: repo.url, branch: 'main', server: stack.serverName })).status, 201);
      stack.apps.add('real');
      assert.equal((await api('PATCH', '/api/apps/real/env', { set: { API_TOKEN: SECRET_VALUE } })).status, 200);
      const d = await api('POST', '/api/apps/real/deploy', {});
      assert.equal(d.status, 201);
      await eventually(() => of('deploy.failed').length > 0, 'deploy.failed from the real agent', 60_000);
      await eventually(() => of('disk.low').length > 0, 'disk.low from the real agent', 30_000);
      await sleep(2500); // more reconcile passes: disk.low must not repeat
      assert.equal(of('deploy.failed').length, 1);
      const p = of('deploy.failed')[0]!.json;
      assert.equal(p.app, 'real');
      assert.equal(p.data.deploymentId, d.body.id);
      assert.equal(p.data.phase, 'building');
      assert.equal(p.data.commit, commit);
      assert.match(p.data.reason, /not enough free disk space/);
      assert.equal(of('disk.low').length, 1);
      const disk = of('disk.low')[0]!.json;
      assert.equal(disk.data.minFreeMb, 10000000);
      assert.equal(disk.server, stack.serverName);

      // Space again (the default threshold): a deploy goes live, then the domain's certificate fails.
      await stack.stopAgent();
      stack.setAgentEnv({ BERTH_MIN_FREE_DISK_MB: undefined });
      await stack.startAgent();
      const ok = await api('POST', '/api/apps/real/deploy', {});
      await eventually(async () => (await api('GET', `/api/deployments/${ok.body.id}`)).body.status === 'done', 'the second deploy', 90_000);
      await eventually(() => of('deploy.succeeded').length > 0, 'deploy.succeeded (asked for)', 10_000);
      assert.equal((await api('POST', '/api/apps/real/domains', { domain: 'real.notify.test' })).status, 201);
      await eventually(() => of('cert.failing').length > 0, 'cert.failing from the real agent', 60_000);
      await sleep(1500);
      assert.equal(of('cert.failing').length, 1);
      const cert = of('cert.failing')[0]!.json;
      assert.equal(cert.app, 'real');
      assert.equal(cert.data.domains, 'real.notify.test');
      assert.ok(cert.data.lastError);
      assert.equal(of('disk.low').length, 1);
      assert.equal(of('deploy.failed').length, 1);
      for (const r of rx.requests) assert.ok(!r.body.includes(SECRET_VALUE));
      const logged = JSON.parse((await berth(['notify', 'log', '--json'], stack.env)).stdout) as any[];
      assert.equal(logged.filter((e) => e.result === 'delivered').length, rx.requests.length);
    } finally {
      await stack.destroy();
      await pebble.stop();
      await rx.stop();
    }
  });
});
