// The control plane against real parts: SQLite files in a temp dir, HTTP on 127.0.0.1, and a real
// `ws` client playing the agent.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import WebSocket from 'ws';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AgentHub } from '../../control-plane/hub.js';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { openStores } from '../../control-plane/store/index.js';
import { sha256 } from '../../shared/ids.js';
import { AGENT_WS_PATH } from '../../shared/protocol.js';
import { FakeAgent } from '../helpers/fake-agent.js';

const logger = pino({ level: process.env.BERTH_TEST_LOG ?? 'silent' });
const tmpDirs: string[] = [];
function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-cp-test-'));
  tmpDirs.push(dir);
  return dir;
}
after(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

// ---- helpers ---------------------------------------------------------------------------------

interface Res {
  status: number;
  body: any;
}

function client(cp: RunningControlPlane) {
  return async function api(method: string, path: string, body?: unknown, token: string | null = cp.adminToken): Promise<Res> {
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await fetch(cp.url + path, { method, headers, body: payload });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      assert.fail(`${method} ${path} answered ${res.status} with non-JSON: ${text.slice(0, 200)}`);
    }
    return { status: res.status, body: parsed };
  };
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for: ${what}`);
}

// ---- tests -----------------------------------------------------------------------------------

describe('control plane: data dir and admin token', () => {
  it('creates the admin token 0600 in a 0700 dir and reuses it on restart', async () => {
    const dataDir = join(tmp(), 'data');
    const first = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger });
    try {
      assert.match(first.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(statSync(dataDir).mode & 0o777, 0o700);
      assert.equal(statSync(join(dataDir, 'admin-token')).mode & 0o777, 0o600);
      assert.ok(existsSync(join(dataDir, 'control-plane.db')));
      assert.ok(first.adminToken.length >= 32);
      const r = await client(first)('POST', '/api/servers', { name: 'keep' });
      assert.equal(r.status, 201);
    } finally {
      await first.close();
    }
    const second = await startControlPlane({ dataDir, listen: '127.0.0.1:0', publicUrl: 'https://cp.example.com/', logger });
    try {
      assert.equal(second.adminToken, first.adminToken);
      assert.equal(second.url, 'https://cp.example.com');
    } finally {
      await second.close();
    }
    // And the data survived: a third start on the same dir lists the server created in the first.
    const third = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger });
    try {
      const r = await client(third)('GET', '/api/servers');
      assert.deepEqual(r.body.map((s: any) => s.name), ['keep']);
    } finally {
      await third.close();
    }
  });

  it('makes join tokens that paste safely as command-line arguments (never a leading "-")', async () => {
    const cp = await startControlPlane({ dataDir: join(tmp(), 'data'), listen: '127.0.0.1:0', logger });
    try {
      const api = client(cp);
      assert.match(cp.adminToken, /^[A-Za-z0-9]/);
      // With plain base64url one token in 32 starts with "-" or "_": `berth agent join URL -abc…` then fails.
      for (let i = 0; i < 300; i++) {
        const r = await api('POST', '/api/servers', { name: `s${i}` });
        assert.match(r.body.joinToken, /^[A-Za-z0-9][A-Za-z0-9_-]{42}$/);
      }
    } finally {
      await cp.close();
    }
  });

  it('refuses a bad listen address with a clear error', async () => {
    await assert.rejects(startControlPlane({ dataDir: tmp(), listen: 'nonsense', logger }), /invalid listen address "nonsense"/);
  });
});

describe('control plane: API and agent hub', () => {
  let cp: RunningControlPlane;
  let api: ReturnType<typeof client>;
  const agents: FakeAgent[] = [];
  const connect = async (credential: string | null) => {
    const a = await FakeAgent.connect(cp.url, credential);
    agents.push(a);
    return a;
  };
  /** Create a server and enrol it; returns its agent credential. */
  const enrol = async (name: string): Promise<string> => {
    const created = await api('POST', '/api/servers', { name });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const joined = await api('POST', '/api/agent/join', { token: created.body.joinToken, name, hostname: `${name}.local` }, null);
    assert.equal(joined.status, 200, JSON.stringify(joined.body));
    return joined.body.credential;
  };

  let alphaCredential: string;
  let alpha: FakeAgent;

  before(async () => {
    cp = await startControlPlane({ dataDir: join(tmp(), 'data'), listen: '127.0.0.1:0', logger });
    api = client(cp);
  });
  after(async () => {
    for (const a of agents) a.ws.terminate();
    await cp.close();
  });

  it('requires the admin token on /api and answers errors as JSON', async () => {
    assert.equal((await api('GET', '/healthz', undefined, null)).status, 200);
    const missing = await api('GET', '/api/servers', undefined, null);
    assert.equal(missing.status, 401);
    assert.match(missing.body.error, /missing admin token/);
    const wrong = await api('GET', '/api/apps', undefined, 'not-the-token');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error, 'admin token is invalid');
    const unknown = await api('GET', '/api/nope');
    assert.equal(unknown.status, 404);
    assert.ok(unknown.body.error);
    const badJson = await api('POST', '/api/servers', '{"name": ');
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.error, 'request body is not valid JSON');
    const notObject = await api('POST', '/api/servers', '[1]');
    assert.equal(notObject.status, 400);
    const huge = await api('POST', '/api/servers', JSON.stringify({ name: 'x'.repeat(1_100_000) }));
    assert.equal(huge.status, 413);
    const missingField = await api('POST', '/api/servers', {});
    assert.equal(missingField.status, 400);
    assert.equal(missingField.body.error, 'missing server name');
  });

  it('adds a server and enrols its agent with a one-time join token', async () => {
    const created = await api('POST', '/api/servers', { name: 'alpha' });
    assert.equal(created.status, 201);
    assert.equal(created.body.name, 'alpha');
    assert.equal(
      created.body.installCommand,
      `curl -fsSL ${cp.url}/install.sh | BERTH_JOIN_TOKEN=${created.body.joinToken} sudo --preserve-env=BERTH_JOIN_TOKEN sh -s -- --name alpha`,
    );
    assert.equal((await api('POST', '/api/servers', { name: 'alpha' })).status, 409);
    const badName = await api('POST', '/api/servers', { name: 'Alpha_1' });
    assert.equal(badName.status, 400);
    assert.match(badName.body.error, /^invalid server name: /);

    const wrongToken = await api('POST', '/api/agent/join', { token: 'guess' }, null);
    assert.equal(wrongToken.status, 401);
    assert.equal(wrongToken.body.error, 'join token is invalid, expired or already used');
    // A name that does not match the token's server is refused without consuming the token.
    const wrongName = await api('POST', '/api/agent/join', { token: created.body.joinToken, name: 'beta' }, null);
    assert.equal(wrongName.status, 400);
    assert.match(wrongName.body.error, /"alpha"/);

    const joined = await api('POST', '/api/agent/join', { token: created.body.joinToken, name: 'alpha', hostname: 'alpha.local' }, null);
    assert.equal(joined.status, 200);
    assert.equal(joined.body.server, 'alpha');
    assert.equal(joined.body.controlPlaneUrl, cp.url);
    assert.ok(joined.body.credential.length >= 32);
    alphaCredential = joined.body.credential;

    const reused = await api('POST', '/api/agent/join', { token: created.body.joinToken }, null);
    assert.equal(reused.status, 401);

    const servers = await api('GET', '/api/servers');
    const info = servers.body.find((s: any) => s.name === 'alpha');
    assert.equal(info.connected, false);
    assert.equal(info.hostname, 'alpha.local');
    assert.ok(info.joinedAt);
    assert.equal(JSON.stringify(servers.body).includes(alphaCredential), false);
  });

  it('accepts the credential on the WebSocket and refuses others before upgrading', async () => {
    for (const bad of [null, 'wrong-credential']) {
      await assert.rejects(connect(bad), (err: any) => {
        assert.equal(err.status, 401);
        assert.ok(JSON.parse(err.body).error);
        return true;
      });
    }
    alpha = await connect(alphaCredential);
    await eventually(async () => (await api('GET', '/api/servers')).body.find((s: any) => s.name === 'alpha').connected, 'alpha connected');
  });

  it('validates apps: bad name, hostile repo URLs, unknown server; nothing is created', async () => {
    const base = { name: 'web', repo: 'https://example.com/web.git', server: 'alpha' };
    const cases: Array<[Record<string, unknown>, number, RegExp]> = [
      [{ ...base, name: 'Bad_Name' }, 400, /^invalid app name: /],
      [{ ...base, name: '-web' }, 400, /^invalid app name: /],
      [{ ...base, repo: '--upload-pack=touch /tmp/x' }, 400, /^invalid repo URL: /],
      [{ ...base, repo: 'ext::sh -c touch% /tmp/x' }, 400, /^invalid repo URL: /],
      [{ ...base, repo: 'ext::sh' }, 400, /^invalid repo URL: .*transport/],
      [{ ...base, branch: '--orphan' }, 400, /^invalid branch: /],
      [{ ...base, server: 'nope' }, 404, /^server "nope" does not exist$/],
      [{ name: 'web', server: 'alpha' }, 400, /^missing repo URL$/],
    ];
    for (const [body, status, error] of cases) {
      const r = await api('POST', '/api/apps', body);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.match(r.body.error, error);
    }
    assert.deepEqual((await api('GET', '/api/apps')).body, []);
    assert.equal((await api('GET', '/api/apps/BAD')).status, 400);
    assert.equal((await api('GET', '/api/apps/web')).status, 404);
  });

  it('sends desired state on hello and again on every app or domain change', async () => {
    alpha.hello();
    assert.deepEqual(await alpha.next('welcome'), { type: 'welcome', v: 1, server: 'alpha' });
    const initial = await alpha.next('desired_state');
    assert.deepEqual(initial.spec.apps, []);
    assert.equal(initial.spec.server, 'alpha');

    const created = await api('POST', '/api/apps', { name: 'web', repo: 'https://example.com/web.git', server: 'alpha' });
    assert.equal(created.status, 201);
    assert.deepEqual(
      { ...created.body, createdAt: undefined, webhookSecrets: undefined },
      {
        name: 'web',
        repo: 'https://example.com/web.git',
        branch: 'main',
        server: 'alpha',
        domains: [],
        webhooks: { push: `${cp.url}/hooks/web/push`, deploy: `${cp.url}/hooks/web/deploy` },
        createdAt: undefined,
        webhookSecrets: undefined,
      },
    );
    // The creator gets the webhook secrets; listings never carry them.
    assert.match(created.body.webhookSecrets.push, /^[A-Za-z0-9_-]{43}$/);
    assert.match(created.body.webhookSecrets.deploy, /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(created.body.webhookSecrets.push, created.body.webhookSecrets.deploy);
    assert.equal((await api('GET', '/api/apps')).body[0].webhookSecrets, undefined);
    const dup = await api('POST', '/api/apps', { name: 'web', repo: 'https://example.com/other.git', server: 'alpha' });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.error, 'app "web" already exists');
    const afterCreate = await alpha.next('desired_state');
    assert.ok(afterCreate.spec.revision > initial.spec.revision);
    assert.deepEqual(afterCreate.spec.apps, [{ name: 'web', repo: 'https://example.com/web.git', branch: 'main', domains: [], env: {} }]);

    const added = await api('POST', '/api/apps/web/domains', { domain: 'Web.Example.com' });
    assert.equal(added.status, 201);
    assert.equal(added.body.domain, 'web.example.com');
    const afterDomain = await alpha.next('desired_state');
    assert.ok(afterDomain.spec.revision > afterCreate.spec.revision);
    assert.deepEqual(afterDomain.spec.apps[0].domains, ['web.example.com']);

    // A domain is unique across the whole control plane.
    assert.equal((await api('POST', '/api/apps', { name: 'blog', repo: 'git@example.com:blog.git', server: 'alpha' })).status, 201);
    await alpha.next('desired_state');
    const taken = await api('POST', '/api/apps/blog/domains', { domain: 'web.example.com' });
    assert.equal(taken.status, 409);
    assert.equal(taken.body.error, 'domain "web.example.com" already belongs to app "web"');
    const badDomain = await api('POST', '/api/apps/blog/domains', { domain: 'no spaces.com' });
    assert.equal(badDomain.status, 400);
    assert.match(badDomain.body.error, /^invalid domain: /);
    assert.equal((await api('POST', '/api/apps/ghost/domains', { domain: 'ghost.example.com' })).status, 404);

    assert.deepEqual((await api('GET', '/api/apps/web/domains')).body.map((d: any) => d.domain), ['web.example.com']);
    assert.deepEqual((await api('GET', '/api/apps/web')).body.domains, ['web.example.com']);
    assert.equal((await api('DELETE', '/api/apps/blog/domains/web.example.com')).status, 404);
    const removed = await api('DELETE', '/api/apps/web/domains/web.example.com');
    assert.equal(removed.status, 200);
    const afterRemove = await alpha.next('desired_state');
    assert.deepEqual(afterRemove.spec.apps.find((a: any) => a.name === 'web').domains, []);

    const deleted = await api('DELETE', '/api/apps/blog');
    assert.deepEqual(deleted.body, { deleted: 'blog' });
    const afterDelete = await alpha.next('desired_state');
    assert.deepEqual(afterDelete.spec.apps.map((a: any) => a.name), ['web']);
    assert.equal((await api('GET', '/api/apps/blog')).status, 404);
    assert.equal((await api('DELETE', '/api/apps/blog')).status, 404);
  });

  it('sends a deploy order at once and records progress and logs from the agent', async () => {
    await api('POST', '/api/apps/web/domains', { domain: 'web.example.com' });
    await alpha.next('desired_state');
    const badCommit = await api('POST', '/api/apps/web/deploy', { commit: '--HEAD' });
    assert.equal(badCommit.status, 400);
    assert.match(badCommit.body.error, /^invalid commit: /);

    const created = await api('POST', '/api/apps/web/deploy', { commit: 'abc1234' });
    assert.equal(created.status, 201);
    assert.equal(created.body.status, 'queued');
    assert.equal(created.body.trigger, 'manual');
    assert.equal(created.body.agentConnected, true);
    const id = created.body.id;
    const order = await alpha.next('deploy');
    assert.equal(order.deploymentId, id);
    assert.equal(order.commit, 'abc1234');
    assert.deepEqual(order.app, { name: 'web', repo: 'https://example.com/web.git', branch: 'main', domains: ['web.example.com'], env: {} });

    alpha.send({ type: 'deploy_progress', v: 1, deploymentId: id, status: 'building', commit: 'abc1234def', ts: new Date().toISOString() });
    const lines = [0, 1, 2].map((seq) => ({ seq, ts: new Date().toISOString(), stream: 'build', text: `step ${seq}` }));
    alpha.send({ type: 'deploy_log', v: 1, deploymentId: id, lines });
    alpha.send({ type: 'deploy_log', v: 1, deploymentId: id, lines: lines.slice(1) }); // a replay: idempotent
    await alpha.sync();
    const building = await api('GET', `/api/deployments/${id}`);
    assert.equal(building.body.status, 'building');
    assert.equal(building.body.commit, 'abc1234def');
    assert.equal(building.body.finishedAt, null);
    const logs = await api('GET', `/api/deployments/${id}/logs`);
    assert.deepEqual(logs.body.lines.map((l: any) => l.text), ['step 0', 'step 1', 'step 2']);
    assert.deepEqual((await api('GET', `/api/deployments/${id}/logs?after=1`)).body.lines.map((l: any) => l.seq), [2]);
    assert.equal((await api('GET', `/api/deployments/${id}/logs?after=-3`)).status, 400);

    alpha.send({ type: 'deploy_progress', v: 1, deploymentId: id, status: 'failed', reason: 'build failed: RUN false', ts: new Date().toISOString() });
    await alpha.sync();
    const failed = await api('GET', `/api/deployments/${id}`);
    assert.equal(failed.body.status, 'failed');
    assert.equal(failed.body.reason, 'build failed: RUN false');
    assert.ok(failed.body.finishedAt);
    // A late report never reopens a finished deployment.
    alpha.send({ type: 'deploy_progress', v: 1, deploymentId: id, status: 'building', ts: new Date().toISOString() });
    assert.match((await alpha.next('error')).message, /already finished/);
    assert.equal((await api('GET', `/api/deployments/${id}`)).body.status, 'failed');

    const second = await api('POST', '/api/apps/web/deploy');
    assert.equal(second.status, 201);
    assert.equal((await alpha.next('deploy')).commit, undefined);
    const list = await api('GET', '/api/apps/web/deployments');
    assert.deepEqual(list.body.map((d: any) => d.id), [second.body.id, id]);
    assert.equal((await api('GET', '/api/deployments/doesnotexist1')).status, 404);
    assert.equal((await api('GET', '/api/deployments/NOT-AN-ID')).status, 400);
  });

  it('delivers a deploy created while the agent is offline on its next hello', async () => {
    const betaCredential = await enrol('beta');
    assert.equal((await api('POST', '/api/apps', { name: 'api', repo: 'file:///srv/git/api.git', branch: 'prod', server: 'beta' })).status, 201);
    const created = await api('POST', '/api/apps/api/deploy', {});
    assert.equal(created.body.agentConnected, false);
    assert.equal(created.body.status, 'queued');

    const beta = await connect(betaCredential);
    beta.hello();
    await beta.next('welcome');
    const state = await beta.next('desired_state');
    // An agent only ever sees its own server's apps.
    assert.deepEqual(state.spec.apps.map((a: any) => a.name), ['api']);
    const order = await beta.next('deploy');
    assert.equal(order.deploymentId, created.body.id);
    assert.equal(order.app.branch, 'prod');
    const servers = await api('GET', '/api/servers');
    const info = servers.body.find((s: any) => s.name === 'beta');
    assert.equal(info.agentVersion, '0.1.0-test');
    assert.ok(info.lastSeenAt);
    beta.close();
    await eventually(async () => !(await api('GET', '/api/servers')).body.find((s: any) => s.name === 'beta').connected, 'beta disconnected');
  });

  it('does not let an agent touch another server\'s deployments', async () => {
    const betaDeploy = (await api('GET', '/api/apps/api/deployments')).body[0];
    alpha.send({ type: 'deploy_progress', v: 1, deploymentId: betaDeploy.id, status: 'done', ts: new Date().toISOString() });
    assert.match((await alpha.next('error')).message, /does not exist on this server/);
    alpha.send({ type: 'deploy_log', v: 1, deploymentId: betaDeploy.id, lines: [{ seq: 0, ts: 'now', stream: 'build', text: 'forged' }] });
    assert.match((await alpha.next('error')).message, /does not exist on this server/);
    const after = await api('GET', `/api/deployments/${betaDeploy.id}`);
    assert.equal(after.body.status, 'queued');
    assert.deepEqual((await api('GET', `/api/deployments/${betaDeploy.id}/logs`)).body.lines, []);
  });

  it('answers malformed frames with an error and keeps serving', async () => {
    const frames: Array<[string, RegExp]> = [
      ['this is not json', /not valid JSON/],
      [JSON.stringify({ type: 'launch_missiles', v: 1 }), /invalid message/],
      [JSON.stringify({ type: 'heartbeat', v: 2, ts: 'x' }), /invalid message at v/],
      [JSON.stringify({ type: 'deploy_progress', v: 1, deploymentId: '../../etc', status: 'done', ts: 'x' }), /deploymentId/],
      [JSON.stringify({ type: 'deploy_log', v: 1, deploymentId: 'abcdefgh1', lines: [{ seq: 0, ts: 'x', stream: 'build', text: 'x'.repeat(900_000) }] }), /invalid message/],
      ['null', /invalid message/],
    ];
    for (const [frame, error] of frames) {
      alpha.send(frame);
      assert.match((await alpha.next('error')).message, error, frame.slice(0, 60));
    }
    await alpha.sync();
    assert.equal((await api('GET', '/api/apps/web')).status, 200);

    // A frame over 1 MB is refused by the WebSocket layer itself (close code 1009), and the hub
    // still serves the agent's next connection.
    const big = await connect(alphaCredential);
    big.send('x'.repeat(1024 * 1024 + 10));
    assert.equal((await big.closed).code, 1009);
    const again = await connect(alphaCredential);
    again.hello();
    await again.next('desired_state');
    alpha = again;
  });

  it('closes a connection after too many bad frames, and replaces an older connection of the same server', async () => {
    const noisy = await connect(alphaCredential);
    // The newer connection replaced `alpha`.
    assert.equal((await alpha.closed).code, 4000);
    for (let i = 0; i < 50; i++) noisy.send('garbage');
    assert.equal((await noisy.closed).code, 1008);

    alpha = await connect(alphaCredential);
    alpha.hello();
    await alpha.next('welcome');
    await alpha.sync();
  });

  it('deleting an app deletes its deployments and tells the agent', async () => {
    const before = (await api('GET', '/api/apps/web/deployments')).body;
    assert.ok(before.length > 0);
    await alpha.next('desired_state');
    // Drain the queued deploy re-sent on hello, so the next desired_state is the delete's.
    await alpha.next('deploy');
    assert.equal((await api('DELETE', '/api/apps/web')).status, 200);
    assert.deepEqual((await alpha.next('desired_state')).spec.apps, []);
    assert.equal((await api('GET', `/api/deployments/${before[0].id}`)).status, 404);
  });

  it("shows the connected agent's last free-disk report in GET /api/servers, and none once it is gone", async () => {
    const credential = await enrol('disky');
    const disky = await connect(credential);
    disky.hello();
    await disky.next('welcome');
    const diskOf = async () => (await api('GET', '/api/servers')).body.find((s: any) => s.name === 'disky').disk;
    await disky.sync();
    assert.equal(await diskOf(), undefined, 'connected, but no report yet');
    const disk = [
      { path: '/var/lib/berth', freeMb: 12_595, minFreeMb: 1024 },
      { path: '/var/lib/docker', freeMb: 300, minFreeMb: 1024 },
    ];
    disky.send({ type: 'observed_state', v: 1, specRevision: null, containers: [], disk });
    await disky.sync();
    assert.deepEqual(await diskOf(), disk);
    // A report without disk (the agent could not measure that pass) keeps the last one; a new one replaces it.
    disky.send({ type: 'observed_state', v: 1, specRevision: null, containers: [] });
    await disky.sync();
    assert.deepEqual(await diskOf(), disk);
    const later = [{ path: '/var/lib/berth', freeMb: 11_000, minFreeMb: 1024 }];
    disky.send({ type: 'observed_state', v: 1, specRevision: null, containers: [], disk: later });
    await disky.sync();
    assert.deepEqual(await diskOf(), later);
    assert.deepEqual((await api('PATCH', '/api/servers/disky', { baseDomain: null })).body.disk, later, 'PATCH answers the same ServerInfo');

    disky.ws.terminate();
    await eventually(async () => !(await api('GET', '/api/servers')).body.find((s: any) => s.name === 'disky').connected, 'disky disconnected');
    const offline = (await api('GET', '/api/servers')).body.find((s: any) => s.name === 'disky');
    assert.equal('disk' in offline, false, 'no disk while the agent is offline');
  });
});

describe('control plane: agent liveness', () => {
  it('drops a connection that stops answering pings and marks the server disconnected', async () => {
    const stores = openStores(join(tmp(), 'cp.db'));
    const hub = new AgentHub({ stores, logger, pingIntervalMs: 40 });
    const http = createServer((_req, res) => res.end());
    http.on('upgrade', hub.handleUpgrade);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      stores.servers.create('mute', sha256('join'), new Date(Date.now() + 60_000).toISOString());
      stores.servers.completeJoin('mute', sha256('cred'), null);
      const url = `ws://127.0.0.1:${(http.address() as AddressInfo).port}${AGENT_WS_PATH}`;
      const ws = new WebSocket(url, { headers: { authorization: 'Bearer cred' }, autoPong: false });
      await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
      await eventually(async () => hub.isConnected('mute'), 'mute connected');
      const code = await new Promise<number>((resolve) => ws.once('close', resolve));
      assert.equal(code, 1006); // terminated, no close handshake
      await eventually(async () => !hub.isConnected('mute'), 'mute disconnected');
    } finally {
      await hub.close();
      await new Promise((resolve) => http.close(resolve));
      stores.db.close();
    }
  });
});

// ---- deploy triggers: superseding, phases, live events ---------------------------------------

interface SseEvent {
  event: string;
  data: any;
  id?: string;
}

/** Open a deployment's SSE stream; `events` fills as they arrive, `ended` settles when the server closes it. */
function openEvents(url: string, token: string) {
  const events: SseEvent[] = [];
  const abort = new AbortController();
  const ended = (async () => {
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    let buf = '';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev: Partial<SseEvent> = {};
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) ev.event = line.slice(7);
          else if (line.startsWith('data: ')) ev.data = JSON.parse(line.slice(6));
          else if (line.startsWith('id: ')) ev.id = line.slice(4);
        }
        if (ev.event) events.push(ev as SseEvent);
      }
    }
  })();
  return { events, ended, close: () => abort.abort() };
}

describe('control plane: deploy triggers and live deployment events', () => {
  let cp: RunningControlPlane;
  let api: ReturnType<typeof client>;
  let credential: string;
  const agents: FakeAgent[] = [];
  const connect = async () => {
    const a = await FakeAgent.connect(cp.url, credential);
    agents.push(a);
    a.hello();
    await a.next('welcome');
    await a.next('desired_state');
    return a;
  };
  const progress = (a: FakeAgent, deploymentId: string, status: string, extra: Record<string, unknown> = {}) =>
    a.send({ type: 'deploy_progress', v: 1, deploymentId, status, ts: new Date().toISOString(), ...extra });
  const logLines = (a: FakeAgent, deploymentId: string, seqs: number[]) =>
    a.send({ type: 'deploy_log', v: 1, deploymentId, lines: seqs.map((seq) => ({ seq, ts: new Date().toISOString(), stream: 'build', text: `line ${seq}` })) });

  before(async () => {
    cp = await startControlPlane({ dataDir: join(tmp(), 'data'), listen: '127.0.0.1:0', logger });
    api = client(cp);
    const created = await api('POST', '/api/servers', { name: 'gamma' });
    credential = (await api('POST', '/api/agent/join', { token: created.body.joinToken }, null)).body.credential;
    assert.equal((await api('POST', '/api/apps', { name: 'shop', repo: 'https://example.com/shop.git', server: 'gamma' })).status, 201);
  });
  after(async () => {
    for (const a of agents) a.ws.terminate();
    await cp.close();
  });

  it('a newer deploy supersedes queued ones; the reconnecting agent gets only the newest, and a cancel for the others', async () => {
    const first = (await api('POST', '/api/apps/shop/deploy', {})).body;
    const second = (await api('POST', '/api/apps/shop/deploy', { commit: 'abcdef1' })).body;
    assert.equal(first.agentConnected, false);
    const list = (await api('GET', '/api/apps/shop/deployments')).body;
    assert.deepEqual(list.map((d: any) => [d.id, d.status]), [[second.id, 'queued'], [first.id, 'superseded']]);
    assert.equal(list[1].reason, `superseded by deployment ${second.id}`);
    assert.ok(list[1].finishedAt, 'a superseded deployment is finished');

    const agent = await connect();
    const cancel = await agent.next('cancel');
    assert.deepEqual(cancel, { type: 'cancel', v: 1, deploymentId: first.id, status: 'superseded', reason: `superseded by deployment ${second.id}` });
    const order = await agent.next('deploy');
    assert.equal(order.deploymentId, second.id);
    await agent.none('deploy');
    // A late report for the superseded one changes nothing.
    progress(agent, first.id, 'fetching');
    assert.match((await agent.next('error')).message, /already finished/);
    assert.equal((await api('GET', `/api/deployments/${first.id}`)).body.status, 'superseded');
    // The agent confirming the cancel is not an error.
    progress(agent, first.id, 'superseded', { reason: 'superseded' });
    await agent.sync();
    await agent.none('error', 50);

    // Once the agent picked a deploy up (fetching), a newer trigger queues behind it instead.
    progress(agent, second.id, 'fetching');
    await agent.sync();
    const third = (await api('POST', '/api/apps/shop/deploy', {})).body;
    assert.equal(third.agentConnected, true);
    assert.equal((await agent.next('deploy')).deploymentId, third.id);
    assert.equal((await api('GET', `/api/deployments/${second.id}`)).body.status, 'fetching');
    // …and a fourth supersedes the third while it still waits: the connected agent is told at once.
    const fourth = (await api('POST', '/api/apps/shop/deploy', {})).body;
    const cancelThird = await agent.next('cancel');
    assert.equal(cancelThird.deploymentId, third.id);
    assert.equal((await agent.next('deploy')).deploymentId, fourth.id);
    for (const [id, status] of [[second.id, 'failed'], [fourth.id, 'failed']] as const) progress(agent, id, status, { reason: 'test' });
    await agent.sync();
  });

  it('records every phase change with its time', async () => {
    const agent = agents.at(-1)!;
    const d = (await api('POST', '/api/apps/shop/deploy', {})).body;
    await agent.next('deploy');
    for (const status of ['fetching', 'building', 'building', 'starting', 'health_checking', 'switching', 'done']) progress(agent, d.id, status);
    await agent.sync();
    const details = (await api('GET', `/api/deployments/${d.id}`)).body;
    assert.equal(details.status, 'done');
    assert.deepEqual(
      details.phases.map((p: any) => p.status),
      ['queued', 'fetching', 'building', 'starting', 'health_checking', 'switching', 'done'],
      'a repeated report of the same phase is not a new phase',
    );
    for (const p of details.phases) assert.ok(!Number.isNaN(Date.parse(p.at)));
  });

  it('streams a deployment as Server-Sent Events: stored log, then live lines and phases, then the end', async () => {
    const agent = agents.at(-1)!;
    const d = (await api('POST', '/api/apps/shop/deploy', {})).body;
    await agent.next('deploy');
    progress(agent, d.id, 'fetching');
    logLines(agent, d.id, [0, 1, 2]);
    await agent.sync();

    const url = `${cp.url}/api/deployments/${d.id}/events`;
    const bad = await fetch(url, { headers: { authorization: 'Bearer wrong' } });
    assert.equal(bad.status, 401, 'the stream needs the admin token');
    assert.equal((await fetch(`${cp.url}/api/deployments/NOPE!/events`, { headers: { authorization: `Bearer ${cp.adminToken}` } })).status, 400);

    const stream = openEvents(url, cp.adminToken);
    const resumed = openEvents(`${url}?after=1`, cp.adminToken);
    await eventually(async () => stream.events.length >= 4 && resumed.events.length >= 2, 'stored log streamed');
    progress(agent, d.id, 'building');
    logLines(agent, d.id, [3, 4]);
    logLines(agent, d.id, [3, 4]); // a replay is not shown twice
    progress(agent, d.id, 'failed', { reason: 'build failed: RUN false' });
    await Promise.all([stream.ended, resumed.ended]); // the server ends the stream once the deployment has finished

    const summary = (events: SseEvent[]) => events.map((e) => (e.event === 'log' ? `log ${e.data.seq}` : `${e.event} ${e.data.status}`));
    assert.deepEqual(summary(stream.events), [
      'deployment fetching',
      'log 0',
      'log 1',
      'log 2',
      'deployment building',
      'log 3',
      'log 4',
      'deployment failed',
      'end failed',
    ]);
    assert.deepEqual(summary(resumed.events), ['deployment fetching', 'log 2', 'deployment building', 'log 3', 'log 4', 'deployment failed', 'end failed']);
    assert.equal(stream.events.find((e) => e.event === 'log')?.id, '0', 'SSE ids are log seqs, so a client can resume');
    assert.equal(stream.events.at(-1)!.data.reason, 'build failed: RUN false');

    // A finished deployment's stream replays everything and ends at once.
    const replay = openEvents(url, cp.adminToken);
    await replay.ended;
    assert.deepEqual(summary(replay.events), ['deployment failed', 'log 0', 'log 1', 'log 2', 'log 3', 'log 4', 'end failed']);
  });

  it('deleting an app ends the streams of its unfinished deployments', async () => {
    assert.equal((await api('POST', '/api/apps', { name: 'doomed', repo: 'https://example.com/d.git', server: 'gamma' })).status, 201);
    const agent = agents.at(-1)!;
    await agent.next('desired_state');
    const d = (await api('POST', '/api/apps/doomed/deploy', {})).body;
    await agent.next('deploy');
    const stream = openEvents(`${cp.url}/api/deployments/${d.id}/events`, cp.adminToken);
    await eventually(async () => stream.events.length >= 1, 'stream open');
    assert.equal((await api('DELETE', '/api/apps/doomed')).status, 200);
    await stream.ended;
    assert.deepEqual(stream.events.at(-1), { event: 'end', data: { ...stream.events.at(-1)!.data, status: 'cancelled', reason: 'the app was deleted' } });
    assert.equal((await agent.next('cancel')).deploymentId, d.id);
  });
});
