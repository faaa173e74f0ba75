// Resource limits, end to end: processes run with the memory/CPU caps berth.yml gives them; a build
// that allocates far past the build's memory cap fails at `building` naming the limit while the old
// version keeps serving and the agent keeps its heartbeats; a process over its cap is reported as
// killed for being out of memory — in the deployment log, and once running (a worker killed at its cap and
// restarted by Docker) in `berth status`, in `berth logs` (past and followed) and in a cron run's result.
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { StatusReport } from '../agent/status/report.js';
import { BERTH_BIN, berth, berthJson } from './helpers/cli.js';
import { ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { httpGet } from './helpers/http.js';
import { RUNTIME_IMAGE, ensureRuntimeImage } from './helpers/runtime-image.js';
import { Stack } from './helpers/stack.js';

const APP = `limits${process.pid}`;
const DOMAIN = `${APP}.limits.test`;
const MB = 1024 * 1024;

const DOCKERFILE = `FROM ${RUNTIME_IMAGE}
WORKDIR /app
COPY . /app
`;
// Serves the file "version"; with ALLOCATE_MB set it first fills that much memory.
const WEB_PY = `import http.server, os
hog = b'x' * (int(os.environ.get('ALLOCATE_MB', '0')) * 1024 * 1024)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(open('version', 'rb').read())
http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()
`;
const berthYml = (web: string) => `processes:\n  web: ${web}\n`;
// A worker that waits for /tmp/hog, then fills 256 MB: under a 64 MB cap Docker's restart policy brings it
// back and the trigger file (in the container's own layer) kills it again: an OOM restart loop.
const WORKER_PY = `import os, time
print('worker waiting for /tmp/hog', flush=True)
while not os.path.exists('/tmp/hog'):
    time.sleep(0.2)
print('worker allocating', flush=True)
hog = b'x' * (256 * 1024 * 1024)
`;
const OOM_YML = `processes:
  web: python3 web.py
  worker: { command: python3 worker.py, memory: 64m }
cron:
  hog: { schedule: '0 0 1 1 *', command: python3 hog.py }
`;

interface Deployment {
  id: string;
  status: string;
  reason?: string | null;
}

describe('resource limits: build and process memory / CPU caps', () => {
  let stack: Stack;
  let repo: TestRepo;
  let docker: Docker;

  const deploy = async () => {
    const res = await berth(['deploy', APP, '--wait'], stack.env, 300_000);
    const [dep] = await berthJson<Deployment[]>(['deployments', APP], stack.env);
    const logs = (await (await fetch(`${stack.cpUrl}/api/deployments/${dep!.id}/logs`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as {
      lines: Array<{ text: string }>;
    };
    return { code: res.code, dep: dep!, log: logs.lines.map((l) => l.text).join('\n') };
  };
  const served = async () => (await httpGet(stack.httpPort, DOMAIN, '/')).body;
  const lastSeenAgo = async () => {
    const res = await fetch(`${stack.cpUrl}/api/servers`, { headers: { authorization: `Bearer ${stack.adminToken}` } });
    const list = (await res.json()) as Array<{ name: string; lastSeenAt: string | null }>;
    const me = list.find((s) => s.name === stack.serverName);
    return Date.now() - Date.parse(me?.lastSeenAt ?? '1970-01-01T00:00:00Z');
  };

  before(async () => {
    docker = await ensureDocker();
    await ensureRuntimeImage();
    stack = await Stack.create('limits', { agentEnv: { BERTH_BUILD_MEMORY: '512m', BERTH_BUILD_CPUS: '1', BERTH_HEARTBEAT_MS: '1000' } });
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ Dockerfile: DOCKERFILE, 'web.py': WEB_PY, version: 'v1', 'berth.yml': berthYml('{ command: python3 web.py, memory: 128m, cpus: 0.5 }') });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
  });

  after(async () => {
    await stack?.destroy();
  });

  it('a process runs with the memory and CPU caps of berth.yml; the build log names the build caps', async () => {
    const d = await deploy();
    assert.equal(d.dep.status, 'done', `${d.dep.reason}\n${d.log}`);
    assert.match(d.log, /^build limits: memory 512 MB, 1 CPU \(the server default, BERTH_BUILD_MEMORY \/ BERTH_BUILD_CPUS\)$/m, d.log);
    assert.equal(await served(), 'v1');
    const [web] = await docker.listContainers({ filters: { label: [`berth.app=${APP}`, 'berth.process=web', `berth.server=${stack.serverName}`] } });
    const info = await docker.getContainer(web!.Id).inspect();
    assert.equal(info.HostConfig.Memory, 128 * MB);
    assert.equal(info.HostConfig.MemorySwap, 128 * MB, 'no swap on top of the cap');
    assert.equal(info.HostConfig.NanoCpus, 0.5e9);
  });

  it('a build step allocating 1.5 GB under a 512 MB cap fails at building naming the limit; the old version serves; heartbeats go on', async () => {
    repo.commit({ version: 'v2', Dockerfile: `${DOCKERFILE}RUN python3 -c "hog = b'x' * (1536 * 1024 * 1024)"\n` });
    let worstGap = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        worstGap = Math.max(worstGap, await lastSeenAgo());
        await new Promise((r) => setTimeout(r, 1000));
      }
    })();
    const d = await deploy().finally(() => (polling = false));
    await poller;
    assert.equal(d.dep.status, 'failed', d.log);
    assert.match(d.dep.reason ?? '', /^build failed: out of memory \(limit 512 MB\)/, d.dep.reason ?? '');
    assert.equal(await served(), 'v1', 'the old version keeps serving');
    assert.ok(worstGap < 30_000, `the control plane heard from the agent at most 30 s apart during the build (worst: ${worstGap} ms)`);
  });

  it('a process over its memory cap is reported as killed for being out of memory', async () => {
    repo.commit({ version: 'v3', Dockerfile: DOCKERFILE, 'berth.yml': berthYml('{ command: ALLOCATE_MB=256 python3 web.py, memory: 64m }') });
    const d = await deploy();
    assert.equal(d.dep.status, 'failed', d.log);
    assert.match(d.dep.reason ?? '', /^health check failed: the web process exited.*\(killed: out of memory \(limit 64 MB\)\)/, d.dep.reason ?? '');
    assert.equal(await served(), 'v1');
  });

  it('a running process killed at its cap shows as OOM-killed in berth status and berth logs; a cron run names it', async () => {
    repo.commit({ version: 'v4', 'berth.yml': OOM_YML, 'worker.py': WORKER_PY, 'hog.py': "hog = b'x' * (1024 * 1024 * 1024)\n" });
    const d = await deploy();
    assert.equal(d.dep.status, 'done', `${d.dep.reason}\n${d.log}`);
    const [worker] = await docker.listContainers({ filters: { label: [`berth.app=${APP}`, 'berth.process=worker', `berth.server=${stack.serverName}`] } });
    assert.ok(worker, 'the worker runs');

    // Follow the worker's output, and once it streams, make it allocate past its cap.
    const follow = spawn(process.execPath, [BERTH_BIN, 'logs', APP, '--process', 'worker', '-f'], { env: { ...process.env, ...stack.env } });
    let followed = '';
    follow.stdout.on('data', (b: Buffer) => (followed += b.toString()));
    const until = async (what: RegExp, ms: number) => {
      for (const deadline = Date.now() + ms; !what.test(followed) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 100));
    };
    const killNote = /^worker\.1 \| \[berth\] worker\.1 was killed: out of memory \(limit 64 MB\)$/m;
    try {
      await until(/worker waiting/, 20_000);
      assert.match(followed, /worker waiting/, 'the follow streams');
      const exec = await docker.getContainer(worker.Id).exec({ Cmd: ['touch', '/tmp/hog'] });
      await exec.start({});
      await until(killNote, 20_000);
      assert.match(followed, killNote, `a kill while following is noted by berth:\n${followed}`);
    } finally {
      follow.kill('SIGINT');
    }

    const report = await berthJson<StatusReport>(['status', '--data', stack.agentData], stack.env);
    const proc = report.apps.find((a) => a.name === APP)?.processes.find((p) => p.name === 'worker');
    assert.equal(proc?.oomKilled, true, JSON.stringify(proc));
    assert.equal(proc?.memoryLimit, 64 * MB);
    assert.ok(proc?.lastOomKillAt && Date.now() - Date.parse(proc.lastOomKillAt) < 120_000, JSON.stringify(proc));
    assert.ok((proc?.restartCount ?? 0) >= 1, `Docker restarted it: ${JSON.stringify(proc)}`);
    assert.equal(proc?.containers[0]?.memoryLimit, 64 * MB);
    const human = await berth(['status', '--data', stack.agentData], stack.env);
    assert.match(human.stdout, /^ {2}worker +\d\/1 running.* OOM-killed \(limit 64 MB\) \d+ s ago, \d+ restarts?$/m, human.stdout);
    assert.match(human.stdout, /^ {2}web +1\/1 running$/m, 'a healthy process says nothing more');

    const logs = await berth(['logs', APP, '--process', 'worker'], stack.env);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, killNote, logs.stdout);
    const allocating = logs.stdout.indexOf('worker allocating');
    assert.ok(allocating >= 0 && allocating < logs.stdout.search(killNote), `the past kill comes after the output before it:\n${logs.stdout}`);

    const cron = await berth(['cron', 'run', APP, 'hog'], stack.env);
    assert.notEqual(cron.code, 0);
    assert.match(cron.stderr, /cron job hog of \S+ failed: ran out of memory \(limit 512 MB\) and was killed/, cron.stderr);
  });
});
