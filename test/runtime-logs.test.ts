// `berth logs`: an app's runtime output, read live from its agent through the control plane, with
// real containers. Covers every process, one process, following new output, and clear errors.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { BERTH_BIN, berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { Stack } from './helpers/stack.js';

const APP = 'logs-app';

const BERTH_YML = `build:
  image: dockerfile
processes:
  web: echo web-started-on-$PORT; exec httpd -f -v -p $PORT -h /www
  worker: i=0; while true; do i=$((i+1)); echo tick-$i; echo warn-$i >&2; sleep 0.3; done
`;

interface Line {
  process: string;
  replica?: number;
  container: string;
  stream: 'stdout' | 'stderr';
  ts?: string;
  text: string;
}

describe('berth logs: runtime output of an app, live from its server', () => {
  let stack: Stack;

  before(async () => {
    await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('logs');
    stack.apps.add(APP);
    const repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({
      'berth.yml': BERTH_YML,
      Dockerfile: 'FROM berth-test/busybox:latest\nCOPY index.html /www/index.html\n',
      'index.html': 'logs app\n',
    });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    const res = await berth(['deploy', APP, '--wait'], stack.env);
    assert.equal(res.code, 0, `deploy failed: ${res.stderr}\n${stack.tail('agent.log')}`);
  });

  after(async () => {
    await stack?.destroy();
  });

  it('shows the output of every process, stdout and stderr, labelled by process', async () => {
    const lines = await berthJson<Line[]>(['logs', APP], stack.env);
    assert.ok(lines.some((l) => l.process === 'web' && /^web-started-on-\d+$/.test(l.text)), 'the web process output is there');
    assert.ok(lines.some((l) => l.process === 'worker' && l.stream === 'stdout' && /^tick-\d+$/.test(l.text)));
    assert.ok(lines.some((l) => l.process === 'worker' && l.stream === 'stderr' && /^warn-\d+$/.test(l.text)), 'stderr is kept apart');
    assert.ok(lines.every((l) => l.ts && !Number.isNaN(Date.parse(l.ts))), 'each line carries its time');
    const human = await berth(['logs', APP, '--process', 'worker', '--tail', '3'], stack.env);
    assert.equal(human.code, 0, human.stderr);
    const printed = human.stdout.trim().split('\n');
    assert.ok(printed.length > 0 && printed.length <= 6, `--tail 3 per stream-merged container, got ${printed.length} lines`);
    assert.ok(printed.every((l) => l.startsWith('worker.1 | ')), human.stdout);
  });

  it('follows new output with -f until interrupted', async () => {
    const child = spawn(process.execPath, [BERTH_BIN, 'logs', APP, '--process', 'worker', '-f', '--tail', '0'], { env: { ...process.env, ...stack.env } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const ticks = () => [...out.matchAll(/tick-(\d+)/g)].map((m) => Number(m[1]));
    const deadline = Date.now() + 15_000;
    while (ticks().length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const seen = ticks();
    assert.ok(seen.length >= 3, `followed lines arrive live: ${out}`);
    assert.ok(seen.every((n, i) => i === 0 || n > seen[i - 1]!), 'in order');
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGINT');
    assert.equal(await exited, 0, 'interrupting a follow is a normal exit');
  });

  it('gives clear errors: unknown process, unknown app, bad tail, agent offline', async () => {
    const noProcess = await berth(['logs', APP, '--process', 'scheduler'], stack.env);
    assert.notEqual(noProcess.code, 0);
    assert.match(noProcess.stderr, /no "scheduler" containers.*processes: web, worker/);
    const noApp = await berth(['logs', 'nope'], stack.env);
    assert.notEqual(noApp.code, 0);
    assert.match(noApp.stderr, /app "nope" does not exist/);
    const badProcess = await berth(['logs', APP, '--process', 'Bad;Name'], stack.env);
    assert.match(badProcess.stderr, /invalid logs query: process/);
    const badTail = await berth(['logs', APP, '--tail', 'lots'], stack.env);
    assert.match(badTail.stderr, /--tail must be a whole number/);
    await stack.stopAgent();
    try {
      const offline = await berth(['logs', APP], stack.env);
      assert.notEqual(offline.code, 0);
      assert.match(offline.stderr, /offline: runtime logs are read from its agent/);
    } finally {
      await stack.startAgent();
    }
  });
});
