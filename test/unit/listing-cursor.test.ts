// Listings with `?limit=N&cursor=KEY` (issue 20): the parsing and page cutting in control-plane/api/http.ts,
// the store queries behind them on a real SQLite file, a real control plane walked page by page through
// X-Next-Cursor (every row exactly once), and the CLI's --json output that stays one array.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { pageOf, pageRequest } from '../../control-plane/api/http.js';
import { BadRequestError } from '../../control-plane/errors.js';
import { openStores } from '../../control-plane/store/index.js';
import { appName } from '../../shared/validation.js';
import { deploymentId } from '../../shared/protocol.js';
import { berth } from '../helpers/cli.js';
import { makeTmpDir } from '../helpers/tmp.js';

const logger = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });
const tmp = () => makeTmpDir('cursor-test');

const query = (q: Record<string, string>) => (name: string) => q[name];

describe('pageRequest: ?limit= and ?cursor=', () => {
  it('reads limit and cursor; the old names (after, before) are the same cursor', () => {
    assert.deepEqual(pageRequest(query({}), appName, 'after'), {});
    assert.deepEqual(pageRequest(query({ limit: '50' }), appName, 'after'), { limit: 50 });
    assert.deepEqual(pageRequest(query({ limit: '1000', cursor: 'shop' }), appName, 'after'), { limit: 1000, cursor: 'shop' });
    assert.deepEqual(pageRequest(query({ after: 'shop' }), appName, 'after'), { cursor: 'shop' });
    assert.deepEqual(pageRequest(query({ before: 'abcd1234', limit: '1' }), deploymentId, 'before'), { limit: 1, cursor: 'abcd1234' });
    assert.deepEqual(pageRequest(query({ cursor: 'shop', after: 'shop' }), appName, 'after'), { cursor: 'shop' });
  });

  it('refuses a bad limit, a cursor its key schema refuses, and two different cursors, naming them', () => {
    for (const limit of ['0', '1001', '-1', '2.5', 'ten', '', '99999999']) {
      assert.throws(() => pageRequest(query({ limit }), appName, 'after'), (e: Error) => e instanceof BadRequestError && /^invalid limit: must be a whole number from 1 to 1000$/.test(e.message));
    }
    assert.throws(() => pageRequest(query({ cursor: 'Not An App' }), appName, 'after'), { message: /^invalid cursor: / });
    assert.throws(() => pageRequest(query({ after: '../x' }), appName, 'after'), { message: /^invalid after: / });
    assert.throws(() => pageRequest(query({ cursor: 'UPPER' }), deploymentId, 'before'), { message: /^invalid cursor: / });
    assert.throws(() => pageRequest(query({ cursor: 'a-app', after: 'b-app' }), appName, 'after'), { message: /^invalid cursor: give cursor or after, not both$/ });
  });
});

describe('pageOf: one page out of limit + 1 rows', () => {
  const key = (r: { k: string }) => r.k;
  const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ k: `r${i}` }));
  it('the extra row only says there is a next page; its cursor is the last item answered', () => {
    assert.deepEqual(pageOf(rows(3), 2, key), { items: rows(2), next: 'r1' });
    assert.deepEqual(pageOf(rows(2), 2, key), { items: rows(2), next: null });
    assert.deepEqual(pageOf(rows(1), 2, key), { items: rows(1), next: null });
    assert.deepEqual(pageOf(rows(0), 2, key), { items: [], next: null });
    assert.deepEqual(pageOf(rows(5), undefined, key), { items: rows(5), next: null });
  });
});

describe('store queries behind the pages (real SQLite)', () => {
  it('apps by name after the cursor; deployments newest first before the cursor, only the app\'s', () => {
    const stores = openStores(join(tmp(), 'cp.db'));
    try {
      stores.servers.create('pages', 'hash', new Date(Date.now() + 60_000).toISOString());
      for (const name of ['c-app', 'a-app', 'b-app', 'd-app']) stores.apps.create({ name, repo: 'https://example.com/x.git', branch: 'main', server: 'pages' });
      assert.deepEqual(stores.apps.list({ limit: 2 }).map((a) => a.name), ['a-app', 'b-app']);
      assert.deepEqual(stores.apps.list({ limit: 2, after: 'b-app' }).map((a) => a.name), ['c-app', 'd-app']);
      assert.deepEqual(stores.apps.list({ after: 'bz' }).map((a) => a.name), ['c-app', 'd-app'], 'a cursor that is no longer there still pages on');
      assert.deepEqual(stores.apps.list({ after: 'd-app' }), []);
      const ids = [0, 1, 2, 3, 4].map(() => stores.deployments.create({ app: 'a-app', server: 'pages', commit: null, trigger: 'manual' }).id);
      const other = stores.deployments.create({ app: 'b-app', server: 'pages', commit: null, trigger: 'manual' }).id;
      const newest = [...ids].reverse();
      assert.deepEqual(stores.deployments.listByApp('a-app', { limit: 2 }).map((d) => d.id), newest.slice(0, 2));
      assert.deepEqual(stores.deployments.listByApp('a-app', { limit: 2, before: newest[1]! }).map((d) => d.id), newest.slice(2, 4));
      assert.deepEqual(stores.deployments.listByApp('a-app', { before: newest[3]! }).map((d) => d.id), newest.slice(4));
      assert.throws(() => stores.deployments.listByApp('a-app', { before: other }), { message: /^invalid cursor: deployment "[a-z0-9]+" is not one of app "a-app"'s$/ });
    } finally {
      stores.db.close();
    }
  });
});

describe('lookups that stay on an index as the history grows (real SQLite)', () => {
  it('an earlier deployment of a commit: the newest exact or abbreviated match that did not fail', () => {
    const stores = openStores(join(tmp(), 'cp.db'));
    try {
      stores.servers.create('idx', 'hash', new Date(Date.now() + 60_000).toISOString());
      for (const name of ['one', 'two']) stores.apps.create({ name, repo: 'https://example.com/x.git', branch: 'main', server: 'idx' });
      const sha = 'a'.repeat(40);
      const deploy = (app: string, commit: string | null, end?: 'done' | 'failed') => {
        const d = stores.deployments.create({ app, server: 'idx', commit, trigger: 'manual' });
        if (end) assert.equal(stores.deployments.applyProgress('idx', { deploymentId: d.id, status: end }), 'updated');
        return d.id;
      };
      assert.equal(stores.deployments.liveOrPendingWithCommit('one', sha), undefined);
      const full = deploy('one', sha, 'done');
      deploy('one', sha, 'failed');
      deploy('two', sha, 'done');
      deploy('one', 'b'.repeat(40), 'done');
      assert.equal(stores.deployments.liveOrPendingWithCommit('one', sha)?.id, full, 'a failed one and another app\'s are not it');
      const short = deploy('one', 'aaaaaaa');
      assert.equal(stores.deployments.liveOrPendingWithCommit('one', sha)?.id, short, 'a newer abbreviated one wins');
      const newest = deploy('one', sha);
      assert.equal(stores.deployments.liveOrPendingWithCommit('one', sha)?.id, newest);
      assert.equal(stores.deployments.liveOrPendingWithCommit('one', 'c'.repeat(40)), undefined);
      assert.equal(stores.deployments.liveOrPendingWithCommit('one', sha)?.commit, sha, 'the row as stored, nothing added');
      assert.equal(Object.hasOwn(stores.deployments.liveOrPendingWithCommit('one', sha)!, 'r'), false);
    } finally {
      stores.db.close();
    }
  });

  it('the queries an agent\'s hello, a push and a listing run search an index, never scan the deployments', () => {
    const stores = openStores(join(tmp(), 'cp.db'));
    try {
      const plan = (sql: string, ...params: unknown[]) =>
        (stores.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map((r) => r.detail).join(' | ');
      const unfinished = `status NOT IN ('queued', 'done', 'failed', 'cancelled', 'superseded')`;
      for (const [sql, params] of [
        [`SELECT * FROM deployments WHERE server = ? AND ${unfinished} ORDER BY rowid`, ['s']],
        [`SELECT * FROM deployments WHERE server = ? AND status IN ('superseded', 'cancelled') AND finished_at >= ? ORDER BY rowid DESC LIMIT ?`, ['s', 'x', 5]],
        [`SELECT rowid AS r, * FROM deployments WHERE app = ? AND "commit" = ? AND status NOT IN ('failed', 'cancelled', 'superseded') ORDER BY rowid DESC LIMIT 1`, ['a', 'c']],
        [`SELECT rowid AS r, * FROM deployments WHERE app = ? AND length("commit") BETWEEN 7 AND 39 AND substr(?, 1, length("commit")) = "commit" AND status NOT IN ('failed', 'cancelled', 'superseded') ORDER BY rowid DESC LIMIT 1`, ['a', 'c']],
        ['SELECT * FROM deployments WHERE app = ? AND rowid < ? ORDER BY rowid DESC LIMIT ?', ['a', 9, 5]],
        ['SELECT * FROM apps WHERE name > ? ORDER BY name LIMIT ?', ['a', 5]],
      ] as Array<[string, unknown[]]>) {
        const p = plan(sql, ...params);
        assert.match(p, /^SEARCH (deployments|apps) USING (INDEX|PRIMARY KEY|COVERING INDEX)/, `${sql}\n  → ${p}`);
        assert.doesNotMatch(p, /\bSCAN (deployments|apps)\b/, `${sql}\n  → ${p}`);
      }
      assert.match(plan(`SELECT * FROM deployments WHERE server = ? AND ${unfinished} ORDER BY rowid`, 's'), /deployments_started_by_server/);
    } finally {
      stores.db.close();
    }
  });
});

/** Follow X-Next-Cursor from the first page to the last; every answer must be an array. */
async function walk(cp: RunningControlPlane, path: string, limit: number): Promise<{ items: Array<Record<string, unknown>>; pages: number; links: string[] }> {
  const items: Array<Record<string, unknown>> = [];
  const links: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const res: Response = await fetch(`${cp.url}${path}?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, { headers: { authorization: `Bearer ${cp.adminToken}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-page-limit'), String(limit));
    const body = (await res.json()) as Array<Record<string, unknown>>;
    assert.ok(Array.isArray(body));
    assert.ok(body.length <= limit);
    cursor = res.headers.get('x-next-cursor');
    if (cursor) links.push(res.headers.get('link') ?? '');
    else assert.equal(res.headers.get('link'), null, 'the last page names no next one');
    items.push(...body);
    assert.ok(++pages <= 100, 'the walk ends');
  } while (cursor);
  return { items, pages, links };
}

describe('a real control plane walked through X-Next-Cursor, and the CLI', () => {
  let cp: RunningControlPlane;
  let dataDir: string;
  const auth = () => ({ authorization: `Bearer ${cp.adminToken}` });
  const cliEnv = () => ({ BERTH_URL: cp.url, BERTH_TOKEN: cp.adminToken, XDG_CONFIG_HOME: join(dataDir, '..', 'cli') });
  const post = async (path: string, body: unknown = {}) => {
    const res = await fetch(cp.url + path, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 201, await res.text());
  };
  before(async () => {
    dataDir = join(tmp(), 'data');
    cp = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger });
    for (const name of ['pages-b', 'pages-a', 'pages-c']) await post('/api/servers', { name });
    for (let i = 6; i >= 0; i--) await post('/api/apps', { name: `app-${i}`, repo: 'https://example.com/x.git', server: 'pages-a' });
    // No agent is connected: each deploy stays queued (and supersedes the one before).
    for (let i = 0; i < 7; i++) await post('/api/apps/app-3/deploy');
  });
  after(() => cp.close());

  for (const [path, key, limit] of [
    ['/api/apps', 'name', 2],
    ['/api/apps', 'name', 3],
    ['/api/servers', 'name', 2],
    ['/api/apps/app-3/deployments', 'id', 3],
    ['/api/apps/app-3/deployments', 'id', 1],
  ] as const) {
    it(`${path}?limit=${limit}: following the cursor gives every row exactly once, in the unpaged order`, async () => {
      const all = (await (await fetch(cp.url + path, { headers: auth() })).json()) as Array<Record<string, unknown>>;
      const { items, pages, links } = await walk(cp, path, limit);
      assert.deepEqual(items.map((r) => r[key]), all.map((r) => r[key]));
      assert.equal(new Set(items.map((r) => r[key])).size, items.length);
      assert.equal(pages, Math.ceil(all.length / limit));
      assert.match(links[0]!, new RegExp(`^<${path.replace(/\//g, '\\/')}\\?limit=${limit}&cursor=[^>]+>; rel="next"$`));
    });
  }

  it('berth app ls / server ls / deployments --json print one array of every row across many pages', async () => {
    // 1,200 more apps, written next to the running control plane: the CLI's walk needs 3 pages.
    const db = new Database(join(dataDir, 'control-plane.db'));
    const insert = db.prepare("INSERT INTO apps (name, repo, branch, server, created_at) VALUES (?, 'https://example.com/x.git', 'main', 'pages-b', ?)");
    db.transaction(() => {
      for (let i = 0; i < 1200; i++) insert.run(`bulk-${String(i).padStart(4, '0')}`, new Date().toISOString());
    })();
    db.close();
    const all = (await (await fetch(`${cp.url}/api/apps`, { headers: auth() })).json()) as Array<{ name: string }>;
    assert.equal(all.length, 1207);
    const apps = await berth(['app', 'ls', '--json'], cliEnv());
    assert.equal(apps.code, 0, apps.stderr);
    assert.deepEqual(JSON.parse(apps.stdout), all);
    const servers = await berth(['server', 'ls', '--json'], cliEnv());
    assert.equal(servers.code, 0, servers.stderr);
    assert.deepEqual((JSON.parse(servers.stdout) as Array<{ name: string }>).map((s) => s.name), ['pages-a', 'pages-b', 'pages-c']);
    const deps = await berth(['deployments', 'app-3', '--json'], cliEnv());
    assert.equal(deps.code, 0, deps.stderr);
    const allDeps = await (await fetch(`${cp.url}/api/apps/app-3/deployments`, { headers: auth() })).json();
    assert.deepEqual(JSON.parse(deps.stdout), allDeps);
    const newest = await berth(['deployments', 'app-3', '--json', '--limit', '2'], cliEnv());
    assert.deepEqual(JSON.parse(newest.stdout), (allDeps as unknown[]).slice(0, 2));
  });
});
