// Issue 13, smaller defences: reserved host names refused at `berth domain add`; the agent's data
// dir and SQLite files narrowed on every start; repo URL credentials sealed at rest and masked in
// every listing and log (and still usable by the agent's git); bad WebSocket frames after the
// limit do not flood the control plane's log. Real control plane, real CLI, real git over HTTP.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { fetchSource, GitError, redactUrl } from '../../agent/build/git.js';
import { AgentStore, AGENT_DB_FILE } from '../../agent/store/index.js';
import { BAD_FRAME_LOG_BURST, MAX_BAD_FRAMES } from '../../control-plane/agent-session.js';
import { DB_FILE, startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { maskUrlCredentials } from '../../shared/repo-url.js';
import { berth } from '../helpers/cli.js';
import { adminApi, FakeAgent } from '../helpers/fake-agent.js';
import { TestRepo } from '../helpers/git-repo.js';
import { makeTmpDir } from '../helpers/tmp.js';

/** A control plane on loopback whose log lines are kept (parsed) for the test to read. */
async function startCp(dataDir: string): Promise<{ cp: RunningControlPlane; logs: Array<Record<string, any>>; cli: (args: string[]) => ReturnType<typeof berth> }> {
  const logs: Array<Record<string, any>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as Record<string, any>) });
  const cp = await startControlPlane({ dataDir, listen: '127.0.0.1:0', logger });
  const env = { BERTH_URL: cp.url, BERTH_TOKEN: cp.adminToken, XDG_CONFIG_HOME: join(dataDir, '..', 'cfg') };
  return { cp, logs, cli: (args) => berth(args, env, 30_000) };
}

/** A server joined through the API and an agent (a real `ws` client) connected for it. */
async function joinAgent(cp: RunningControlPlane, name: string): Promise<{ agent: FakeAgent; credential: string; state: Record<string, any> }> {
  const api = adminApi(cp);
  const server = await api('POST', '/api/servers', { name });
  const credential = (await api('POST', '/api/agent/join', { token: server.body.joinToken })).body.credential as string;
  const agent = await FakeAgent.connect(cp.url, credential);
  agent.hello();
  await agent.next('welcome');
  return { agent, credential, state: await agent.next('desired_state') };
}

describe('reserved host names', () => {
  let cp: RunningControlPlane;
  let cli: (args: string[]) => ReturnType<typeof berth>;
  let dataDir: string;
  let agent: FakeAgent;
  before(async () => {
    dataDir = join(makeTmpDir('reserved'), 'cp');
    ({ cp, cli } = await startCp(dataDir));
    ({ agent } = await joinAgent(cp, 'srv'));
    assert.equal((await cli(['app', 'create', 'web', '--repo', 'https://example.com/w.git', '--server', 'srv'])).code, 0);
    await agent.next('desired_state');
  });
  after(async () => {
    agent?.ws.terminate();
    await cp?.close();
  });

  it('berth domain add refuses the agent\'s own names and ".invalid", with the reason', async () => {
    for (const [domain, why] of [
      ['berth-generation.invalid', /berth-generation\.invalid is reserved: the berth agent uses it/],
      ['BERTH-Generation.invalid', /is reserved/],
      ['shop.invalid', /under "\.invalid", a special-use name/],
      ['localhost', /at least two labels/],
      ['127.0.0.1', /IP address/],
    ] as const) {
      const r = await cli(['domain', 'add', 'web', domain]);
      assert.equal(r.code, 1, `${domain} was accepted: ${r.stdout}`);
      assert.match(r.stderr, why, domain);
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    }
    const ls = await cli(['domain', 'ls', 'web', '--json']);
    assert.deepEqual(JSON.parse(ls.stdout), []);
    // Documented names keep working; base domains are checked the same way.
    assert.equal((await cli(['domain', 'add', 'web', 'app.test'])).code, 0);
    assert.deepEqual((await agent.next('desired_state')).spec.apps[0].domains, ['app.test']);
    const base = await cli(['server', 'set', 'srv', '--base-domain', 'apps.invalid']);
    assert.equal(base.code, 1);
    assert.match(base.stderr, /special-use/);
  });

  it('a reserved name stored by an older berth is left out of the desired state and can be removed', async () => {
    const db = new Database(join(dataDir, DB_FILE));
    db.prepare('INSERT INTO domains (domain, app, created_at) VALUES (?, ?, ?)').run('berth-generation.invalid', 'web', new Date().toISOString());
    db.close();
    const listed = JSON.parse((await cli(['domain', 'ls', 'web', '--json'])).stdout) as Array<{ domain: string }>;
    assert.deepEqual(listed.map((d) => d.domain).sort(), ['app.test', 'berth-generation.invalid'], 'listed, so it can be seen and removed');
    // Any change pushes the desired state: the agent would refuse a spec holding the reserved name.
    assert.equal((await cli(['domain', 'add', 'web', 'www.app.test'])).code, 0);
    assert.deepEqual((await agent.next('desired_state')).spec.apps[0].domains, ['app.test', 'www.app.test']);
    const rm = await cli(['domain', 'rm', 'web', 'berth-generation.invalid']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual((JSON.parse((await cli(['domain', 'ls', 'web', '--json'])).stdout) as Array<{ domain: string }>).map((d) => d.domain), ['app.test', 'www.app.test']);
  });
});

describe('agent data dir and SQLite file modes', () => {
  it('narrows a 0755 data dir and 0644 database files to 0700/0600 when the store opens', () => {
    const dir = join(makeTmpDir('modes'), 'data');
    AgentStore.open(dir).close();
    const db = join(dir, AGENT_DB_FILE);
    closeSync(openSync(`${db}-wal`, 'a'));
    chmodSync(dir, 0o755);
    for (const f of [db, `${db}-wal`]) chmodSync(f, 0o644);
    const store = AgentStore.open(dir);
    try {
      assert.equal(statSync(dir).mode & 0o777, 0o700, 'data dir');
      for (const f of [db, `${db}-wal`, `${db}-shm`]) if (existsSync(f)) assert.equal(statSync(f).mode & 0o777, 0o600, f);
      assert.ok(existsSync(`${db}-shm`));
    } finally {
      store.close();
    }
  });

  it('creates a new database 0600 from the start, whatever the umask', () => {
    const dir = join(makeTmpDir('modes-new'), 'data');
    mkdirSync(dir, { mode: 0o755 });
    const old = process.umask(0o022);
    try {
      const store = AgentStore.open(dir);
      store.close();
    } finally {
      process.umask(old);
    }
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, AGENT_DB_FILE)).mode & 0o777, 0o600);
  });
});

const TOKEN = 'ghp_T0kenThatMustNeverShow42';
const CRED_REPO = `https://deployer:${TOKEN}@git.example.com/team/app.git`;
const MASKED_REPO = 'https://deployer:***@git.example.com/team/app.git';

/** Every file of the control plane's SQLite database, as bytes. */
const dbBytes = (dataDir: string) => [DB_FILE, `${DB_FILE}-wal`].filter((f) => existsSync(join(dataDir, f))).map((f) => [f, readFileSync(join(dataDir, f))] as const);

describe('credentials in repo URLs', () => {
  let cp: RunningControlPlane;
  let logs: Array<Record<string, any>>;
  let cli: (args: string[]) => ReturnType<typeof berth>;
  let dataDir: string;
  let agent: FakeAgent;
  before(async () => {
    dataDir = join(makeTmpDir('repo-cred'), 'cp');
    ({ cp, logs, cli } = await startCp(dataDir));
    ({ agent } = await joinAgent(cp, 'srv'));
  });
  after(async () => {
    agent?.ws.terminate();
    await cp?.close();
  });

  it('masks them in app create/ls/show (human and --json) and in the log; the agent gets the full URL', async () => {
    const created = await cli(['app', 'create', 'web', '--repo', CRED_REPO, '--server', 'srv']);
    assert.equal(created.code, 0, created.stderr);
    assert.ok(created.stdout.includes(MASKED_REPO), created.stdout);
    for (const args of [['app', 'ls'], ['app', 'show', 'web'], ['app', 'ls', '--json'], ['app', 'show', 'web', '--json']]) {
      const r = await cli(args);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(!r.stdout.includes(TOKEN), `${args.join(' ')} shows the token: ${r.stdout}`);
      assert.ok(r.stdout.includes(MASKED_REPO), `${args.join(' ')}: ${r.stdout}`);
    }
    const shown = JSON.parse((await cli(['app', 'show', 'web', '--json'])).stdout) as { repo: string };
    assert.equal(shown.repo, MASKED_REPO, 'the repo field keeps its name, masked');

    const state = await agent.next('desired_state');
    assert.equal(state.spec.apps[0].repo, CRED_REPO, 'the agent gets the URL it can clone with');
    assert.equal((await cli(['deploy', 'web'])).code, 0);
    assert.equal((await agent.next('deploy')).app.repo, CRED_REPO);
    assert.ok(!JSON.stringify(logs).includes(TOKEN), 'never in the control plane log');
  });

  it('stores them sealed: the token is nowhere in the SQLite files', () => {
    for (const [f, bytes] of dbBytes(dataDir)) assert.equal(bytes.includes(TOKEN), false, `${f} holds the token in clear`);
  });

  it('seals a URL stored in clear by an older berth on the next start', async () => {
    await cp.close();
    agent.ws.terminate();
    const db = new Database(join(dataDir, DB_FILE));
    db.prepare('UPDATE apps SET repo = ?, repo_sealed = NULL WHERE name = ?').run(CRED_REPO, 'web');
    db.close();
    assert.ok(dbBytes(dataDir).some(([, b]) => b.includes(TOKEN)), 'the legacy row is in clear');
    ({ cp, logs, cli } = await startCp(dataDir));
    for (const [f, bytes] of dbBytes(dataDir)) assert.equal(bytes.includes(TOKEN), false, `${f} still holds the token in clear`);
    const shown = JSON.parse((await cli(['app', 'show', 'web', '--json'])).stdout) as { repo: string };
    assert.equal(shown.repo, MASKED_REPO);
    const credential = (await adminApi(cp)('POST', '/api/servers', { name: 'other' })).status; // the CP works as before
    assert.equal(credential, 201);
  });

  it('maskUrlCredentials hides passwords and HTTP tokens, keeps ssh logins', () => {
    assert.equal(maskUrlCredentials(`fatal: could not read ${CRED_REPO}`), `fatal: could not read ${MASKED_REPO}`);
    assert.equal(maskUrlCredentials('https://abc123@github.com/x.git'), 'https://***@github.com/x.git');
    assert.equal(maskUrlCredentials('ssh://git@github.com/x.git'), 'ssh://git@github.com/x.git');
    assert.equal(maskUrlCredentials('https://u:p@ss@host.example/x.git'), 'https://u:***@host.example/x.git');
    assert.equal(maskUrlCredentials('git@github.com:x.git'), 'git@github.com:x.git');
  });
});

/**
 * A git HTTP server on loopback that wants Basic auth `deployer:TOKEN`: Node in front of the real
 * `git http-backend` CGI.
 */
function startGitHttp(root: string): Promise<Server> {
  const server = createServer((req, res) => {
    const want = `Basic ${Buffer.from(`deployer:${TOKEN}`).toString('base64')}`;
    if (req.headers.authorization !== want) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end('auth required\n');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        REQUEST_METHOD: req.method ?? 'GET',
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        REMOTE_USER: 'deployer',
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
      },
    });
    req.pipe(cgi.stdin);
    const out: Buffer[] = [];
    cgi.stdout.on('data', (c: Buffer) => out.push(c));
    cgi.on('close', () => {
      const all = Buffer.concat(out);
      const end = all.indexOf('\r\n\r\n');
      const headers: Record<string, string> = {};
      for (const line of all.subarray(0, end).toString().split('\r\n')) {
        const i = line.indexOf(':');
        headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      const status = Number(/^\d+/.exec(headers.status ?? '200')?.[0]);
      delete headers.status;
      res.writeHead(status, headers).end(all.subarray(end + 4));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('the agent clones with credentials and never logs them', () => {
  let server: Server;
  let repo: TestRepo;
  let port: number;
  before(async () => {
    const root = makeTmpDir('git-http');
    repo = new TestRepo(join(root, 'app'));
    repo.commit({ 'README': 'hi\n' });
    server = await startGitHttp(root);
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('fetches through Basic auth from the URL; a refused fetch names no secret', async () => {
    const lines: string[] = [];
    const url = (token: string) => `http://deployer:${token}@127.0.0.1:${port}/app/remote.git`;
    const { commit } = await fetchSource({ cacheDir: join(makeTmpDir('git-cache'), 'c'), repo: url(TOKEN), branch: 'main', log: (l) => lines.push(l) });
    assert.match(commit, /^[0-9a-f]{40}$/);
    const wrong = 'WrongT0ken';
    const err = await fetchSource({ cacheDir: join(makeTmpDir('git-cache'), 'c'), repo: url(wrong), branch: 'main', log: (l) => lines.push(l) }).then(
      () => assert.fail('fetched with a wrong token'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof GitError, String(err));
    const text = `${err.message}\n${lines.join('\n')}`;
    assert.ok(!text.includes(TOKEN) && !text.includes(wrong), text);
  });

  it('error text quoting a URL with a short token as the user name is masked too', () => {
    const repo = 'https://tok3n@git.example.com/x.git';
    assert.equal(redactUrl(`fatal: could not read from ${repo}`, repo), 'fatal: could not read from https://***@git.example.com/x.git');
  });
});

describe('bad WebSocket frames', () => {
  it('after the limit: the connection closes and the log gets a bounded number of lines, also across reconnects', async () => {
    const dataDir = join(makeTmpDir('frames'), 'cp');
    const { cp, logs } = await startCp(dataDir);
    try {
      const { agent, credential } = await joinAgent(cp, 'noisy');
      // Four connections one after another, each sending far more garbage than the limit.
      for (let n = 0; n < 4; n++) {
        let a = agent;
        if (n > 0) {
          a = await FakeAgent.connect(cp.url, credential);
          a.hello();
          await a.next('welcome');
        }
        for (let i = 0; i < 200; i++) a.send(`not json ${i}`);
        assert.equal((await a.closed).code, 1008);
      }
      const bad = logs.filter((l) => l.msg === 'bad frame from agent').length;
      const closing = logs.filter((l) => l.msg === 'too many bad frames; closing the agent connection').length;
      assert.ok(MAX_BAD_FRAMES < 200);
      assert.ok(bad >= 1 && bad <= BAD_FRAME_LOG_BURST, `${bad} bad-frame lines`);
      assert.ok(closing >= 1 && closing <= BAD_FRAME_LOG_BURST, `${closing} closing lines`);
    } finally {
      await cp.close();
    }
  });
});
