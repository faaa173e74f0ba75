// Env vars (issue 3, control plane + CLI): the real `berth` CLI against a control plane on loopback
// with its real SQLite file, and a raw WebSocket client in the agent's place to see what an agent gets.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import WebSocket from 'ws';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { AGENT_WS_PATH } from '../../shared/protocol.js';
import { berth } from '../helpers/cli.js';

const SECRET = 'sup3r-s3cret=VALUE/with spaces & "quotes"';
const SECRET_MARKER = 'sup3r-s3cret';

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'berth-env-test-'));
  dirs.push(d);
  return d;
};
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Everything the control plane logs, to prove values never reach it. */
const logged: string[] = [];
const logger = pino({ level: 'debug' }, { write: (s: string) => void logged.push(s) });

class AgentClient {
  private inbox: any[] = [];
  private wake?: () => void;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      this.inbox.push(JSON.parse(String(d)));
      this.wake?.();
    });
  }
  static async connect(url: string, credential: string): Promise<AgentClient> {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + AGENT_WS_PATH, { headers: { authorization: `Bearer ${credential}` } });
    const a = new AgentClient(ws);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    ws.send(JSON.stringify({ type: 'hello', v: 1, agentVersion: 'test', hostname: 'test' }));
    return a;
  }
  async next(type: string, timeoutMs = 5000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => m.type === type);
      if (i >= 0) return this.inbox.splice(i, 1)[0];
      if (Date.now() > deadline) assert.fail(`no ${type} message; got ${this.inbox.map((m) => m.type).join(',')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }
  pending(type: string): number {
    return this.inbox.filter((m) => m.type === type).length;
  }
}

describe('env vars', () => {
  let dataDir: string;
  let cp: RunningControlPlane;
  let env: Record<string, string>;
  let credential: string;
  let agent: AgentClient;
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(cp.url + path, {
      method,
      headers: { authorization: `Bearer ${cp.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const cli = (args: string[]) => berth(args, env);

  before(async () => {
    dataDir = join(tmp(), 'cp');
    cp = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger });
    env = { BERTH_URL: cp.url, BERTH_TOKEN: cp.adminToken, XDG_CONFIG_HOME: join(tmp(), 'cfg') };
    const server = await api('POST', '/api/servers', { name: 'env-srv' });
    credential = (await api('POST', '/api/agent/join', { token: server.body.joinToken })).body.credential;
    assert.equal((await api('POST', '/api/apps', { name: 'envapp', repo: 'https://example.com/e.git', server: 'env-srv' })).status, 201);
    agent = await AgentClient.connect(cp.url, credential);
    const initial = await agent.next('desired_state');
    assert.deepEqual(initial.spec.apps[0].env, {});
  });
  after(async () => {
    agent?.ws.terminate();
    await cp?.close();
  });

  it('creates the encryption key file 0600 on first start', () => {
    const file = join(dataDir, 'secret.key');
    assert.ok(existsSync(file));
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64').length, 32);
  });

  it('env set stores values, says when they take effect, and pushes them to the agent without deploying', async () => {
    const before = (await agent.next('desired_state', 100).catch(() => null)) ?? null;
    assert.equal(before, null);
    const res = await cli(['env', 'set', 'envapp', `SECRET_KEY=${SECRET}`, 'DEBUG=0', 'EMPTY=', 'MULTI=a=b=c']);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /set DEBUG, EMPTY, MULTI, SECRET_KEY on envapp; takes effect on the next deploy/);
    assert.equal(res.stdout.includes(SECRET_MARKER), false, 'the CLI does not echo values');

    const state = await agent.next('desired_state');
    assert.deepEqual(state.spec.apps[0].env, { SECRET_KEY: SECRET, DEBUG: '0', EMPTY: '', MULTI: 'a=b=c' });
    assert.deepEqual((await api('GET', '/api/apps/envapp/deployments')).body, [], 'setting env does not deploy');

    // …but the next deploy order carries them.
    const deploy = await api('POST', '/api/apps/envapp/deploy', {});
    assert.equal(deploy.status, 201);
    const order = await agent.next('deploy');
    assert.equal(order.app.env.SECRET_KEY, SECRET);
  });

  it('env ls masks values unless --reveal; --json is one document', async () => {
    const masked = await cli(['env', 'ls', 'envapp']);
    assert.equal(masked.code, 0, masked.stderr);
    assert.deepEqual(masked.stdout.trim().split('\n'), ['DEBUG=********', 'EMPTY=********', 'MULTI=********', 'SECRET_KEY=********']);
    const maskedJson = JSON.parse((await cli(['env', 'ls', 'envapp', '--json'])).stdout) as Array<{ key: string; value: string; updatedAt: string }>;
    assert.deepEqual(maskedJson.map((v) => [v.key, v.value]), [['DEBUG', '********'], ['EMPTY', '********'], ['MULTI', '********'], ['SECRET_KEY', '********']]);
    assert.ok(maskedJson.every((v) => !Number.isNaN(Date.parse(v.updatedAt))));

    const revealed = JSON.parse((await cli(['env', 'ls', 'envapp', '--reveal', '--json'])).stdout) as Array<{ key: string; value: string }>;
    assert.deepEqual(Object.fromEntries(revealed.map((v) => [v.key, v.value])), { DEBUG: '0', EMPTY: '', MULTI: 'a=b=c', SECRET_KEY: SECRET });
    const human = await cli(['env', 'ls', 'envapp', '--reveal']);
    assert.ok(human.stdout.includes(`SECRET_KEY=${JSON.stringify(SECRET)}`), human.stdout);
    assert.ok(human.stdout.includes('MULTI=a=b=c'));
  });

  it('stores values encrypted: the raw value is nowhere in the SQLite files, and never in the log', async () => {
    for (const f of ['control-plane.db', 'control-plane.db-wal']) {
      const path = join(dataDir, f);
      if (!existsSync(path)) continue;
      const bytes = readFileSync(path);
      assert.equal(bytes.includes(Buffer.from(SECRET_MARKER)), false, `${f} holds the value in clear text`);
      assert.equal(bytes.includes(Buffer.from('a=b=c')), false, `${f} holds a value in clear text`);
    }
    assert.ok(logged.some((l) => l.includes('"env changed"')), 'env changes are logged (keys only)');
    assert.equal(logged.some((l) => l.includes(SECRET_MARKER)), false, 'a value reached the log');
    assert.equal(logged.some((l) => l.includes(readFileSync(join(dataDir, 'secret.key'), 'utf8').trim())), false, 'the key reached the log');
  });

  it('refuses invalid keys and values with a one-line error and changes nothing', async () => {
    for (const args of [['1BAD=x'], ['BAD-KEY=x'], ['NO_EQUALS'], ['=x'], ['A B=x']]) {
      const res = await cli(['env', 'set', 'envapp', ...args]);
      assert.notEqual(res.code, 0, args.join(' '));
      assert.match(res.stderr, /^berth: (invalid env key|expected KEY=VALUE)/, res.stderr);
      assert.equal(res.stderr.trim().split('\n').length, 1);
    }
    // The API validates on its own (a client other than the CLI).
    const cases: Array<[unknown, RegExp]> = [
      [{ set: { 'A-B': 'x' } }, /^invalid env key "A-B": env key must be letters/],
      [{ set: { ['K'.repeat(200)]: 'x' } }, /^invalid env key ".*…": env key is longer than 128/],
      [{ set: { NUL: 'a\u0000b' } }, /^invalid value of NUL: env value must not contain a NUL byte$/],
      [{ set: { BIG: 'x'.repeat(70_000) } }, /^invalid value of BIG: env value is longer than 64 KiB$/],
      [{ set: { NUM: 5 } }, /^invalid value of NUM: must be a string$/],
      [{ unset: ['ok', '9no'] }, /^invalid env key "9no"/],
      [{ set: { A: '1' }, unset: ['A'] }, /^env key A is both set and unset$/],
      [{ sett: {} }, /^unknown field "sett"/],
      [{}, /nothing to set or unset/],
      ['[]', /must be a JSON object/],
      ['{"set": ', /not valid JSON/],
    ];
    for (const [body, error] of cases) {
      const r = await api('PATCH', '/api/apps/envapp/env', body);
      assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
      assert.match(r.body.error, error);
    }
    assert.equal((await api('PATCH', '/api/apps/nope/env', { set: { A: '1' } })).status, 404);
    assert.equal((await api('GET', '/api/apps/envapp/env?reveal=maybe')).status, 400);
    assert.equal(agent.pending('desired_state'), 0, 'a refused change pushes nothing');
    const keys = (await api('GET', '/api/apps/envapp/env')).body.map((v: any) => v.key);
    assert.deepEqual(keys, ['DEBUG', 'EMPTY', 'MULTI', 'SECRET_KEY']);
  });

  it('env unset removes keys, reports keys that were not set, and pushes the change', async () => {
    const res = await cli(['env', 'unset', 'envapp', 'DEBUG', 'NEVER_SET', '--json']);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(JSON.parse(res.stdout), { app: 'envapp', set: [], unset: ['DEBUG'], notSet: ['NEVER_SET'], takesEffect: 'next_deploy' });
    const state = await agent.next('desired_state');
    assert.deepEqual(Object.keys(state.spec.apps[0].env).sort(), ['EMPTY', 'MULTI', 'SECRET_KEY']);
    const human = await cli(['env', 'unset', 'envapp', 'NEVER_SET']);
    assert.equal(human.code, 0);
    assert.match(human.stdout, /NEVER_SET was not set on envapp/);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(agent.pending('desired_state'), 0, 'nothing changed, nothing pushed');
  });

  it('keeps values across a restart, and refuses to start with a different key', async () => {
    agent.ws.terminate();
    await cp.close();
    cp = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger });
    env.BERTH_URL = cp.url;
    const revealed = (await api('GET', '/api/apps/envapp/env?reveal=1')).body;
    assert.equal(revealed.find((v: any) => v.key === 'SECRET_KEY').value, SECRET);
    agent = await AgentClient.connect(cp.url, credential);
    assert.equal((await agent.next('desired_state')).spec.apps[0].env.SECRET_KEY, SECRET);
    agent.ws.terminate();
    await cp.close();

    const keyFile = join(dataDir, 'secret.key');
    const original = readFileSync(keyFile);
    writeFileSync(keyFile, Buffer.alloc(32, 7).toString('base64') + '\n', { mode: 0o600 });
    await assert.rejects(startControlPlane({ dataDir, listen: '127.0.0.1:0', logger }), /secret\.key does not match this database/);
    writeFileSync(keyFile, 'not a key\n', { mode: 0o600 });
    await assert.rejects(startControlPlane({ dataDir, listen: '127.0.0.1:0', logger }), /secret\.key is not a valid key/);
    writeFileSync(keyFile, original, { mode: 0o600 });
    cp = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger });
    agent = await AgentClient.connect(cp.url, credential);
    await agent.next('desired_state');
  });
});
