// Listings that stay cheap as history grows (issue 20): pages of apps and deployments over the real
// HTTP API and CLI, retention of deployment logs in a real SQLite file, and heartbeat times written
// in batches without the API ever showing an older one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { SecretBox } from '../../control-plane/secret-box.js';
import { openStores, keepDeploymentLogsFromEnv } from '../../control-plane/store/index.js';
import type { Stores } from '../../control-plane/store/index.js';
import { berth } from '../helpers/cli.js';
import { FakeAgent } from '../helpers/fake-agent.js';

const logger = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });
const tmpDirs: string[] = [];
function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-history-test-'));
  tmpDirs.push(dir);
  return dir;
}
after(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

describe('listings: pages of apps and deployments', () => {
  let cp: RunningControlPlane;
  let dataDir: string;
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> => {
    const res = await fetch(cp.url + path, {
      method,
      headers: { authorization: `Bearer ${cp.adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: await res.json() };
  };
  const cliEnv = () => ({ BERTH_URL: cp.url, BERTH_TOKEN: cp.adminToken, XDG_CONFIG_HOME: join(dataDir, '..', 'cli') });

  before(async () => {
    dataDir = join(tmp(), 'data');
    cp = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger });
    assert.equal((await api('POST', '/api/servers', { name: 'pager', baseDomain: 'pager.test' })).status, 201);
    for (const name of ['e-app', 'a-app', 'c-app', 'b-app', 'd-app']) {
      assert.equal((await api('POST', '/api/apps', { name, repo: 'https://example.com/x.git', server: 'pager' })).status, 201);
    }
    assert.equal((await api('POST', '/api/apps/c-app/domains', { domain: 'www.c.test' })).status, 201);
    // No agent is connected: each deploy stays queued and supersedes the one before.
    for (let i = 0; i < 5; i++) assert.equal((await api('POST', '/api/apps/a-app/deploy')).status, 201);
    assert.equal((await api('POST', '/api/apps/b-app/deploy')).status, 201);
  });
  after(() => cp.close());

  it('pages through apps by name with ?limit=&after=, each page equal to that slice of the whole list', async () => {
    const all = await api('GET', '/api/apps');
    assert.deepEqual(all.body.map((a: { name: string }) => a.name), ['a-app', 'b-app', 'c-app', 'd-app', 'e-app']);
    const c = all.body.find((a: { name: string }) => a.name === 'c-app');
    assert.deepEqual(c.domains, ['www.c.test']);
    assert.equal(c.defaultDomain, 'c-app.pager.test');
    const pages: unknown[] = [];
    let after: string | undefined;
    for (let i = 0; i < 5; i++) {
      const page = await api('GET', `/api/apps?limit=2${after ? `&after=${after}` : ''}`);
      assert.equal(page.status, 200);
      if (page.body.length === 0) break;
      assert.ok(page.body.length <= 2);
      pages.push(...page.body);
      after = page.body.at(-1).name;
    }
    assert.deepEqual(pages, all.body);
  });

  it('pages through servers with ?limit=&after=; every change shows in the next listing', async () => {
    for (const name of ['zz-srv', 'mm-srv', 'aa-srv']) assert.equal((await api('POST', '/api/servers', { name })).status, 201);
    const names = async (q = '') => ((await api('GET', `/api/servers${q}`)).body as Array<{ name: string }>).map((s) => s.name);
    assert.deepEqual(await names(), ['aa-srv', 'mm-srv', 'pager', 'zz-srv']);
    assert.deepEqual(await names('?limit=2'), ['aa-srv', 'mm-srv']);
    assert.deepEqual(await names('?limit=2&after=mm-srv'), ['pager', 'zz-srv']);
    assert.deepEqual(await names('?after=n'), ['pager', 'zz-srv']);
    assert.deepEqual(await names('?after=zz-srv'), []);
    // Listed, changed, listed again: the change is there (the listing is cached between writes).
    const patched = await api('PATCH', '/api/servers/mm-srv', { baseDomain: 'mm.test' });
    assert.equal(patched.status, 200);
    const mm = ((await api('GET', '/api/servers?limit=1&after=aa-srv')).body as Array<{ name: string; baseDomain?: string }>)[0];
    assert.equal(mm?.baseDomain, 'mm.test');
    // A refused change leaves the listing as it was.
    assert.equal((await api('POST', '/api/apps', { name: 'shop', repo: 'https://example.com/x.git', server: 'aa-srv' })).status, 201);
    assert.equal((await api('POST', '/api/apps/e-app/domains', { domain: 'shop.mm.test' })).status, 201);
    assert.equal((await api('PATCH', '/api/servers/aa-srv', { baseDomain: 'mm.test' })).status, 409);
    const aa = ((await api('GET', '/api/servers?limit=1')).body as Array<{ name: string; baseDomain?: string }>)[0];
    assert.equal(aa?.baseDomain, undefined);
    const bad = await api('GET', '/api/servers?after=Bad_Name');
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /^invalid after: /);
  });

  it('pages back through deployments with ?limit=&before=, newest first', async () => {
    const all = (await api('GET', '/api/apps/a-app/deployments')).body as Array<{ id: string; app: string }>;
    assert.equal(all.length, 5);
    const first = (await api('GET', '/api/apps/a-app/deployments?limit=2')).body as typeof all;
    assert.deepEqual(first, all.slice(0, 2));
    const second = (await api('GET', `/api/apps/a-app/deployments?limit=2&before=${first[1]!.id}`)).body as typeof all;
    assert.deepEqual(second, all.slice(2, 4));
    const rest = await api('GET', `/api/apps/a-app/deployments?before=${second[1]!.id}`);
    assert.deepEqual(rest.body, all.slice(4));
  });

  it('refuses a bad limit or a cursor that is not one of the app\'s, naming it', async () => {
    for (const bad of ['0', '-1', '1001', 'ten', '2.5']) {
      const r = await api('GET', `/api/apps?limit=${bad}`);
      assert.equal(r.status, 400);
      assert.match(r.body.error, /^invalid limit: must be a whole number from 1 to 1000$/);
    }
    const other = (await api('GET', '/api/apps/b-app/deployments')).body[0].id as string;
    const r = await api('GET', `/api/apps/a-app/deployments?before=${other}`);
    assert.equal(r.status, 400);
    assert.match(r.body.error, /invalid cursor: deployment "[^"]+" is not one of app "a-app"'s/);
    assert.equal((await api('GET', '/api/apps/a-app/deployments?limit=0')).status, 400);
    assert.equal((await api('GET', '/api/apps?after=Not_An_App')).status, 400);
  });

  it('berth deployments APP --limit N prints the newest N; a bad --limit is refused', async () => {
    const all = (await api('GET', '/api/apps/a-app/deployments')).body as Array<{ id: string }>;
    const res = await berth(['deployments', 'a-app', '--limit', '3', '--json'], cliEnv());
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(JSON.parse(res.stdout), all.slice(0, 3));
    const bad = await berth(['deployments', 'a-app', '--limit', '0'], cliEnv());
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /invalid --limit "0": must be a whole number from 1 to 1000/);
  });
});

describe('retention: deployment logs', () => {
  const line = (seq: number) => ({ seq, ts: new Date().toISOString(), stream: 'build' as const, text: `line ${seq}` });
  /** A finished deployment of `app` with three log lines. */
  const finished = (stores: Stores, app: string): string => {
    const d = stores.deployments.create({ app, server: 'keep', commit: null, trigger: 'manual' });
    assert.ok(stores.deployments.appendLogs('keep', d.id, [line(0), line(1), line(2)]));
    assert.equal(stores.deployments.applyProgress('keep', { deploymentId: d.id, status: 'failed', reason: 'x' }), 'updated');
    return d.id;
  };

  it('keeps the logs of the newest N deployments per app; older ones keep their metadata and phases', () => {
    const file = join(tmp(), 'cp.db');
    const secretBox = new SecretBox(randomBytes(32));
    const stores = openStores(file, { keepDeploymentLogs: 2, secretBox });
    stores.servers.create('keep', 'hash', new Date(Date.now() + 60_000).toISOString());
    stores.apps.create({ name: 'one', repo: 'https://example.com/x.git', branch: 'main', server: 'keep' });
    stores.apps.create({ name: 'two', repo: 'https://example.com/x.git', branch: 'main', server: 'keep' });
    const ones = [0, 1, 2, 3].map(() => finished(stores, 'one'));
    const two = finished(stores, 'two');
    const lines = (id: string) => stores.deployments.logs(id, -1).lines.length;
    assert.deepEqual(ones.map(lines), [0, 0, 3, 3]);
    assert.equal(lines(two), 3, 'another app\'s window is its own');
    // Compacted to metadata: the deployment and its phase timeline are still there.
    assert.equal(stores.deployments.require(ones[0]!).status, 'failed');
    assert.deepEqual(stores.deployments.phases(ones[0]!).map((p) => p.status), ['queued', 'failed']);
    stores.db.close();

    // A smaller window compacts the whole history when the control plane opens the database.
    const again = openStores(file, { keepDeploymentLogs: 1, secretBox });
    assert.deepEqual(ones.map((id) => again.deployments.logs(id, -1).lines.length), [0, 0, 0, 3]);
    assert.equal(again.deployments.logs(two, -1).lines.length, 3);
    again.db.close();
  });

  it('a running deployment keeps its log, whatever its place', () => {
    const stores = openStores(join(tmp(), 'cp.db'), { keepDeploymentLogs: 1 });
    stores.servers.create('keep', 'hash', new Date(Date.now() + 60_000).toISOString());
    stores.apps.create({ name: 'one', repo: 'https://example.com/x.git', branch: 'main', server: 'keep' });
    const running = stores.deployments.create({ app: 'one', server: 'keep', commit: null, trigger: 'manual' });
    assert.ok(stores.deployments.appendLogs('keep', running.id, [line(0)]));
    assert.equal(stores.deployments.applyProgress('keep', { deploymentId: running.id, status: 'building' }), 'updated');
    finished(stores, 'one');
    finished(stores, 'one');
    assert.equal(stores.deployments.logs(running.id, -1).lines.length, 1);
    stores.db.close();
  });

  it('BERTH_DEPLOYMENT_LOGS_KEEP: default 100, a bad value named', () => {
    assert.equal(keepDeploymentLogsFromEnv(undefined), 100);
    assert.equal(keepDeploymentLogsFromEnv('7'), 7);
    for (const bad of ['0', '-3', 'all', '1.5']) assert.throws(() => keepDeploymentLogsFromEnv(bad), /invalid BERTH_DEPLOYMENT_LOGS_KEEP "[^"]*": must be a whole number/);
  });
});

describe('heartbeats: written in batches, never shown stale', () => {
  it('the API shows the latest heartbeat at once; the database has it when the agent disconnects', async () => {
    const dataDir = join(tmp(), 'data');
    const cp = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger });
    const api = async (method: string, path: string, body?: unknown, auth = true) =>
      (await fetch(cp.url + path, {
        method,
        headers: { ...(auth ? { authorization: `Bearer ${cp.adminToken}` } : {}), 'content-type': 'application/json' },
        ...(body ? { body: JSON.stringify(body) } : {}),
      }).then((r) => r.json())) as any;
    try {
      const created = await api('POST', '/api/servers', { name: 'beat' });
      const joined = await api('POST', '/api/agent/join', { token: created.joinToken, name: 'beat' }, false);
      const agent = await FakeAgent.join(cp.url, joined.credential);
      const seenAtHello = (await api('GET', '/api/servers'))[0].lastSeenAt as string;
      await new Promise((r) => setTimeout(r, 20));
      await agent.sync(); // a heartbeat, answered
      const seen = (await api('GET', '/api/servers'))[0].lastSeenAt as string;
      assert.ok(seen > seenAtHello, `${seen} is after the hello's ${seenAtHello}`);
      agent.ws.close();
      await agent.closed;
      for (let i = 0; i < 100 && (await api('GET', '/api/servers'))[0].connected; i++) await new Promise((r) => setTimeout(r, 20));
      const db = new Database(join(dataDir, 'control-plane.db'), { readonly: true });
      try {
        assert.equal((db.prepare('SELECT last_seen_at FROM servers WHERE name = ?').get('beat') as { last_seen_at: string }).last_seen_at, seen);
      } finally {
        db.close();
      }
    } finally {
      await cp.close();
    }
  });
});
