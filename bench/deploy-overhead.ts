// Benchmark: berth's platform overhead on a redeploy of an unchanged, cached app, against doing the
// same steps by hand on the same machine in the same run (PRODUCT.md: ≤ 1 s over `docker build` +
// `docker run` + an nginx reload, health gate excluded).
//
// berth: a control plane and an agent as real processes (test/helpers/stack.ts), the app in a local
// Git repo, redeployed without changes. Measured from the trigger (POST /api/apps/APP/deploy) until
// nginx answers from the new container, minus the time berth spent in its health gate (the
// `health_checking` → `switching` phases on the deployment's timeline).
//
// by hand: the same build context with `docker build`, `docker run -p 127.0.0.1:PORT`, waiting for
// the app to answer on its port (the hand-made "health gate", excluded likewise), then writing an
// nginx server block and `nginx -s reload` on a private nginx of the same binary, until that nginx
// answers from the new container.
//
// Both sides detect "serving" the same way: the app writes its container hostname to /id.txt on
// start, and a client polls it through nginx every 5 ms. Rounds alternate (berth, by hand, …).
//
//   npm run bench:deploy-overhead                  # 10 rounds each (+1 warm-up each)
//   BENCH_ROUNDS=20 npm run bench:deploy-overhead
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { berth, berthJson } from '../test/helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from '../test/helpers/docker.js';
import { TestRepo } from '../test/helpers/git-repo.js';
import { httpGet } from '../test/helpers/http.js';
import { Stack } from '../test/helpers/stack.js';
import { freePort } from '../test/helpers/tmp.js';

const execFileP = promisify(execFile);
const ROUNDS = Math.min(Math.max(Number(process.env.BENCH_ROUNDS ?? 10) || 10, 1), 100);
const WARMUP = 1;
const APP = 'bench-ovh';
const DOMAIN = 'ovh.bench.test';
const DOCKERFILE = `FROM berth-test/busybox:latest
COPY . /www
CMD ["sh", "-c", "hostname > /www/id.txt; exec httpd -f -p $PORT -h /www"]
`;
const now = () => performance.timeOrigin + performance.now();

/** Poll GET /id.txt through nginx until it names a container other than `previous`; returns when. */
async function untilServedBy(port: number, previous: string, timeoutMs = 120_000): Promise<{ at: number; id: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await httpGet(port, DOMAIN, '/id.txt', 2000);
      const id = r.body.trim();
      if (r.status === 200 && id && id !== previous) return { at: now(), id };
    } catch {
      // not answering yet
    }
    if (Date.now() > deadline) throw new Error(`nginx on port ${port} did not serve a new container within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function servedBy(port: number): Promise<string> {
  return (await httpGet(port, DOMAIN, '/id.txt')).body.trim();
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const r1 = (n: number) => Math.round(n * 10) / 10;

interface Phase {
  status: string;
  at: string;
}

/** A private nginx of the system binary, proxying DOMAIN to one loopback port, reloaded by hand. */
class HandNginx {
  constructor(
    readonly prefix: string,
    readonly port: number,
  ) {}

  conf(upstream: number): string {
    const p = this.prefix;
    return `worker_processes auto;
pid ${p}/nginx.pid;
error_log ${p}/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path ${p}/tmp/body;
    proxy_temp_path ${p}/tmp/proxy;
    fastcgi_temp_path ${p}/tmp/fastcgi;
    uwsgi_temp_path ${p}/tmp/uwsgi;
    scgi_temp_path ${p}/tmp/scgi;
    upstream app { server 127.0.0.1:${upstream}; keepalive 32; }
    server {
        listen 127.0.0.1:${this.port};
        server_name ${DOMAIN};
        location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }
    }
}
`;
  }

  start(upstream: number): void {
    mkdirSync(join(this.prefix, 'tmp'), { recursive: true });
    writeFileSync(join(this.prefix, 'nginx.conf'), this.conf(upstream));
    execFileSync('nginx', ['-p', this.prefix, '-c', 'nginx.conf']);
  }

  /** What an operator does: write the new config, test it, reload. */
  async switchTo(upstream: number): Promise<void> {
    const file = join(this.prefix, 'nginx.conf');
    writeFileSync(`${file}.new`, this.conf(upstream));
    renameSync(`${file}.new`, file);
    await execFileP('nginx', ['-t', '-q', '-p', this.prefix, '-c', 'nginx.conf']);
    await execFileP('nginx', ['-s', 'reload', '-p', this.prefix, '-c', 'nginx.conf']);
  }

  stop(): void {
    try {
      execFileSync('nginx', ['-s', 'quit', '-p', this.prefix, '-c', 'nginx.conf'], { stdio: 'ignore' });
    } catch {
      // not running
    }
  }
}

async function main(): Promise<void> {
  await ensureDocker();
  await ensureBusyboxImage();
  const stack = await Stack.create('bench-ovh');
  stack.apps.add(APP);
  const hand = new HandNginx(join(stack.root, 'hand-nginx'), await freePort());
  const handTag = `berth-bench/${APP}-${stack.serverName}`;
  const handContainers: string[] = [];
  try {
    const repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ Dockerfile: DOCKERFILE, 'index.html': 'overhead bench\n' });
    const context = repo.work; // the same files berth builds, for the hand-made builds
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
    const first = await berth(['deploy', APP, '--wait'], stack.env, 300_000);
    if (first.code !== 0) throw new Error(`the first deploy failed: ${first.stderr}`);
    const admin = { authorization: `Bearer ${stack.adminToken}` };

    // The hand-made side starts from a running container too.
    await execFileP('docker', ['build', '-q', '-t', `${handTag}:0`, context]);
    const port0 = await freePort();
    handContainers.push((await execFileP('docker', ['run', '-d', '-e', 'PORT=8000', '-p', `127.0.0.1:${port0}:8000`, `${handTag}:0`])).stdout.trim());
    await untilListening(port0);
    hand.start(port0);

    const berthRound = async () => {
      const previous = await servedBy(stack.httpPort);
      const t0 = now();
      const res = await fetch(`${stack.cpUrl}/api/apps/${APP}/deploy`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: '{}' });
      const { id } = (await res.json()) as { id: string };
      const served = await untilServedBy(stack.httpPort, previous);
      let phases: Phase[] = [];
      for (const deadline = Date.now() + 120_000; ; ) {
        const d = (await (await fetch(`${stack.cpUrl}/api/deployments/${id}`, { headers: admin })).json()) as { status: string; reason: string | null; phases: Phase[] };
        if (['done', 'failed', 'cancelled', 'superseded'].includes(d.status)) {
          if (d.status !== 'done') throw new Error(`deployment ${id} ${d.status}: ${d.reason}`);
          phases = d.phases;
          break;
        }
        if (Date.now() > deadline) throw new Error(`deployment ${id} did not end`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const at = (s: string) => Date.parse(phases.find((p) => p.status === s)!.at);
      const health = at('switching') - at('health_checking');
      // Let the previous release drain away before the next round.
      await waitForContainers(stack, 1);
      const total = served.at - t0;
      return { total, health, excl: total - health };
    };

    let handRoundNo = 0;
    const handRound = async () => {
      handRoundNo++;
      const previous = await servedBy(hand.port);
      const tag = `${handTag}:${handRoundNo}`;
      const t0 = now();
      await execFileP('docker', ['build', '-q', '-t', tag, context]);
      const port = await freePort();
      const id = (await execFileP('docker', ['run', '-d', '-e', 'PORT=8000', '-p', `127.0.0.1:${port}:8000`, tag])).stdout.trim();
      handContainers.push(id);
      const tRun = now();
      await untilListening(port);
      const health = now() - tRun;
      await hand.switchTo(port);
      const served = await untilServedBy(hand.port, previous);
      const total = served.at - t0;
      // Like the agent's drain: the old container goes after the switch (not timed).
      const old = handContainers.splice(0, handContainers.length - 1);
      if (old.length) await execFileP('docker', ['rm', '-f', ...old]);
      return { total, health, excl: total - health };
    };

    const b: Array<{ total: number; health: number; excl: number }> = [];
    const h: typeof b = [];
    for (let i = 0; i < ROUNDS + WARMUP; i++) {
      const br = await berthRound();
      const hr = await handRound();
      if (i < WARMUP) continue;
      b.push(br);
      h.push(hr);
      process.stderr.write(`round ${i}: berth ${r1(br.excl)} ms (+${r1(br.health)} ms health gate), by hand ${r1(hr.excl)} ms (+${r1(hr.health)} ms waiting for the app)\n`);
    }

    const berthMedian = median(b.map((x) => x.excl));
    const handMedian = median(h.map((x) => x.excl));
    const result = {
      benchmark: 'redeploy of an unchanged cached app: trigger → new container serving, health gate excluded',
      rounds: ROUNDS,
      berthMs: { median: r1(berthMedian), mean: r1(mean(b.map((x) => x.excl))), min: r1(Math.min(...b.map((x) => x.excl))), max: r1(Math.max(...b.map((x) => x.excl))) },
      berthHealthGateMs: { median: r1(median(b.map((x) => x.health))) },
      berthTotalMs: { median: r1(median(b.map((x) => x.total))) },
      byHandMs: { median: r1(handMedian), mean: r1(mean(h.map((x) => x.excl))), min: r1(Math.min(...h.map((x) => x.excl))), max: r1(Math.max(...h.map((x) => x.excl))) },
      byHandWaitForAppMs: { median: r1(median(h.map((x) => x.health))) },
      byHandTotalMs: { median: r1(median(h.map((x) => x.total))) },
      ratio: Number((berthMedian / handMedian).toFixed(2)),
      overheadMs: r1(berthMedian - handMedian),
      node: process.version,
      cpus: cpus().length,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    const pass = result.overheadMs <= 1000;
    process.stderr.write(
      `berth ${result.berthMs.median} ms vs by hand ${result.byHandMs.median} ms (medians, health gate excluded): ratio ${result.ratio}, overhead ${result.overheadMs} ms ` +
        `(target ≤ 1000 ms) ${pass ? 'PASS' : 'FAIL'}\n`,
    );
    if (!pass) process.exitCode = 1;
  } finally {
    hand.stop();
    if (handContainers.length) await execFileP('docker', ['rm', '-f', ...handContainers]).catch(() => {});
    const tags = execFileSync('docker', ['images', '--format', '{{.Repository}}:{{.Tag}}', handTag], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const t of tags) await execFileP('docker', ['rmi', t]).catch(() => {});
    await stack.destroy();
  }
}

/** The hand-made health gate: the app answers on its published port. */
async function untilListening(port: number): Promise<void> {
  for (const deadline = Date.now() + 30_000; ; ) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/id.txt`, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`the hand-started container did not answer on port ${port}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function waitForContainers(stack: Stack, n: number): Promise<void> {
  for (const deadline = Date.now() + 60_000; ; ) {
    const ids = execFileSync('docker', ['ps', '-aq', '--filter', `label=berth.app=${APP}`, '--filter', `label=berth.server=${stack.serverName}`], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
    if (ids.length === n) return;
    if (Date.now() > deadline) throw new Error(`${ids.length} containers of ${APP} remain, expected ${n}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
