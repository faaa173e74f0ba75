// Issue 13: text from agents and repos never drives the user's terminal. A hostile agent (a real
// `ws` client) reports a host name, deploy log lines, a failure reason and runtime log lines full of
// escape sequences; the real `berth` CLI against a real control plane prints them as visible
// escapes in its human output and exactly (JSON-escaped) with --json.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/main.js';
import { terminalSafe, tty } from '../../cli/terminal-safe.js';
import { adminApi, FakeAgent } from '../helpers/fake-agent.js';
import { berth, type CliResult } from '../helpers/cli.js';
import { makeTmpDir } from '../helpers/tmp.js';

// Set the window title, clear the screen, a one-byte C1 CSI, a bidi override, a fake second line.
const EVIL = 'x\x1b]0;pwned\x07y\x1b[2Jz\x9b31m\u202e\r\nfake line';
const EVIL_HOST = `host\x1b]0;pwned\x07\x1b[2J`;
/** ESC, BEL, C1 controls and the bidi override as raw characters: none may reach the terminal. */
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]/;

function assertTerminalSafe(r: CliResult, what: string): void {
  for (const [name, text] of [['stdout', r.stdout], ['stderr', r.stderr]] as const) {
    const m = RAW_CONTROL.exec(text);
    assert.equal(m, null, `${what}: raw control character U+${m?.[0].codePointAt(0)?.toString(16)} on ${name}: ${JSON.stringify(text)}`);
  }
}

describe('terminalSafe', () => {
  it('shows control characters as visible escapes and keeps the text around them', () => {
    assert.equal(terminalSafe(EVIL), 'x\\x1b]0;pwned\\x07y\\x1b[2Jz\\x9b31m\\u202e\\r\\nfake line');
    assert.equal(terminalSafe('tab\there ünïcødé ✓'), 'tab\there ünïcødé ✓');
    assert.equal(tty`a ${'\x1b[2J'} b\n`, 'a \\x1b[2J b\n', 'the CLI\'s own newline stays');
  });
});

describe('CLI human output with a hostile agent', () => {
  let cp: RunningControlPlane;
  let agent: FakeAgent;
  let env: Record<string, string>;
  const cli = (args: string[]) => berth(args, env, 30_000);

  before(async () => {
    cp = await startControlPlane({ dataDir: join(makeTmpDir('tty'), 'cp'), listen: '127.0.0.1:0', logger: pino({ level: 'silent' }) });
    env = { BERTH_URL: cp.url, BERTH_TOKEN: cp.adminToken, XDG_CONFIG_HOME: join(makeTmpDir('tty-cfg'), 'cfg') };
    const api = adminApi(cp);
    const server = await api('POST', '/api/servers', { name: 'evil' });
    const joined = await fetch(`${cp.url}/api/agent/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: server.body.joinToken, hostname: EVIL_HOST }),
    });
    const { credential } = (await joined.json()) as { credential: string };
    assert.equal((await api('POST', '/api/apps', { name: 'web', repo: 'https://example.com/w.git', server: 'evil' })).status, 201);
    agent = await FakeAgent.connect(cp.url, credential);
    agent.send({ type: 'hello', v: 1, agentVersion: `1.0\x1b[2J`, hostname: EVIL_HOST });
    await agent.next('welcome');
    await agent.next('desired_state');
  });
  after(async () => {
    agent?.ws.terminate();
    await cp?.close();
  });

  it('server ls: the host name and version are shown with visible escapes', async () => {
    const r = await cli(['server', 'ls']);
    assert.equal(r.code, 0, r.stderr);
    assertTerminalSafe(r, 'server ls');
    assert.ok(r.stdout.includes('host\\x1b]0;pwned\\x07\\x1b[2J'), r.stdout);
    const json = await cli(['server', 'ls', '--json']);
    assert.equal((JSON.parse(json.stdout) as Array<{ hostname: string }>)[0]!.hostname, EVIL_HOST, '--json keeps the exact value');
  });

  it('deploy --wait, deployments, deployments logs: log lines and the failure reason', async () => {
    const waiting = cli(['deploy', 'web', '--wait', '--timeout', '20']);
    const order = await agent.next('deploy', 10_000);
    const id = order.deploymentId as string;
    agent.progress(id, 'building');
    agent.send({ type: 'deploy_log', v: 1, deploymentId: id, lines: [{ seq: 0, ts: new Date().toISOString(), stream: 'build', text: EVIL }] });
    agent.progress(id, 'failed', { reason: `build failed: ${EVIL}` });
    const r = await waiting;
    assert.equal(r.code, 1, 'a failed deploy fails the command');
    assertTerminalSafe(r, 'deploy --wait');
    assert.ok(r.stdout.includes('x\\x1b]0;pwned\\x07y'), r.stdout);
    assert.ok(r.stderr.includes('build failed: x\\x1b]0;pwned'), r.stderr);

    for (const args of [['deployments', 'web'], ['deployments', 'logs', id]]) {
      const out = await cli(args);
      assertTerminalSafe(out, args.join(' '));
      assert.ok(`${out.stdout}${out.stderr}`.includes('pwned'), `${args.join(' ')} shows the text: ${out.stdout}`);
    }
    const json = await cli(['deployments', 'logs', id, '--json']);
    assert.equal((JSON.parse(json.stdout) as { lines: Array<{ text: string }> }).lines[0]!.text, EVIL);
  });

  it('logs: runtime output from the app', async () => {
    const reading = cli(['logs', 'web']);
    const req = await agent.next('logs_request', 10_000);
    agent.send({ type: 'logs_data', v: 1, requestId: req.requestId, lines: [{ process: 'web', replica: 1, container: 'c1', stream: 'stdout', text: EVIL }] });
    agent.send({ type: 'logs_end', v: 1, requestId: req.requestId });
    const r = await reading;
    assert.equal(r.code, 0, r.stderr);
    assertTerminalSafe(r, 'logs');
    assert.ok(r.stdout.includes('web.1 | x\\x1b]0;pwned'), r.stdout);
  });
});
