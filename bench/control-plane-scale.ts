// Benchmark: one control plane with N enrolled agents connected over real WebSockets (PRODUCT.md:
// 10,000 agents in ≤ 400 MB and ≤ half a core, every API call p99 ≤ 100 ms while they are connected),
// with a history of apps, deployments and log lines in its database.
//
// The control plane runs as a real process (the compiled CLI) on loopback. Servers, apps, deployments
// and log lines are written into its database directly (enrolling 10,000 agents over HTTP measures
// nothing this benchmark is about); the agents are real WebSocket clients in child processes
// (bench/agent-swarm.ts). Measured: time for all N to connect, the control plane's RSS and CPU over an
// idle window, p50/p99 of API calls, deploy/webhook → order received by the agent, the time for all N
// to come back after a control-plane restart (the agents' jittered backoff spreads the herd), and the
// database size.
//
//   npm run bench:control-plane-scale                      # 1,000 agents
//   BENCH_AGENTS=5000 npm run bench:control-plane-scale
//   BENCH_AGENTS=10000 BENCH_APPS=500 BENCH_DEPLOYMENTS=100000 BENCH_LOG_LINES=1000000 npm run bench:control-plane-scale
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256 } from '../shared/ids.js';
import { openDatabase } from '../control-plane/store/db.js';
import { BERTH_BIN } from '../test/helpers/cli.js';
import { freePort, makeTmpDir } from '../test/helpers/tmp.js';

const bounded = (name: string, def: number, min: number, max: number) => Math.min(Math.max(Number(process.env[name] ?? def) || def, min), max);
const AGENTS = bounded('BENCH_AGENTS', 1000, 1, 10_000);
const APPS = bounded('BENCH_APPS', 500, 1, 50_000);
const DEPLOYMENTS = bounded('BENCH_DEPLOYMENTS', 100_000, 0, 2_000_000);
const LOG_LINES = bounded('BENCH_LOG_LINES', 1_000_000, 0, 20_000_000);
const IDLE_S = bounded('BENCH_IDLE_S', 30, 5, 600);
const ROUNDS = bounded('BENCH_ROUNDS', 100, 5, 2000);
const HEARTBEAT_MS = bounded('BENCH_HEARTBEAT_MS', 10_000, 1000, 60_000);
const TIME_LIMIT_MS = bounded('BENCH_TIME_LIMIT_S', 900, 60, 3600) * 1000;
const AGENTS_PER_PROCESS = 5000;
const BIG_APP = 'app-00000';
const SWARM = fileURLToPath(new URL('./agent-swarm.js', import.meta.url));
const started = Date.now();

const nowMs = () => performance.timeOrigin + performance.now();
const pad = (i: number, n: number) => String(i).padStart(n, '0');
const serverOf = (i: number) => `srv-${pad(i, 5)}`;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const round1 = (n: number) => Math.round(n * 10) / 10;
function summary(samples: number[]): { p50: number; p99: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: round1(percentile(s, 50)), p99: round1(percentile(s, 99)), max: round1(s.at(-1) ?? NaN) };
}

function checkTime(what: string): void {
  if (Date.now() - started > TIME_LIMIT_MS) throw new Error(`time limit (BENCH_TIME_LIMIT_S) reached during ${what}`);
}

/** RSS (MB) and CPU time (s) of a process, from /proc. */
function procSample(pid: number): { rssMb: number; cpuS: number } {
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssMb: rssKb / 1024, cpuS: (Number(fields[11]) + Number(fields[12])) / 100 };
}

class ControlPlane {
  proc: ChildProcess | null = null;
  url = '';
  constructor(
    readonly data: string,
    readonly port: number,
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  async start(): Promise<void> {
    this.proc = spawn(process.execPath, [BERTH_BIN, 'control-plane', '--data', this.data, '--listen', `127.0.0.1:${this.port}`], {
      env: { ...process.env, BERTH_LOG_LEVEL: 'warn', BERTH_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    for (const deadline = Date.now() + 60_000; ; ) {
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error('control plane did not start within 60 s');
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(t);
  }

  get pid(): number {
    return this.proc!.pid!;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Servers with credentials, apps spread over them (BIG_APP holds a fifth of the deployments), deployments with phases and logs. */
function seed(file: string): void {
  const db = openDatabase(file);
  const at = new Date().toISOString();
  db.transaction(() => {
    const srv = db.prepare('INSERT INTO servers (name, created_at, joined_at, credential_hash) VALUES (?, ?, ?, ?)');
    for (let i = 0; i < AGENTS; i++) srv.run(serverOf(i), at, at, sha256(`bench-cred-${i}`));
    const app = db.prepare('INSERT INTO apps (name, repo, branch, server, created_at) VALUES (?, ?, ?, ?, ?)');
    for (let i = 0; i < APPS; i++) app.run(`app-${pad(i, 5)}`, 'https://example.com/bench.git', 'main', serverOf(i % AGENTS), at);
  })();
  const dep = db.prepare(
    `INSERT INTO deployments (id, app, server, status, "commit", reason, "trigger", created_at, updated_at, finished_at) VALUES (?, ?, ?, 'done', ?, NULL, 'push', ?, ?, ?)`,
  );
  const phase = db.prepare('INSERT INTO deployment_phases (deployment_id, status, reason, at) VALUES (?, ?, NULL, ?)');
  const log = db.prepare('INSERT INTO deployment_logs (deployment_id, seq, ts, stream, text) VALUES (?, ?, ?, ?, ?)');
  const linesPer = DEPLOYMENTS ? Math.floor(LOG_LINES / DEPLOYMENTS) : 0;
  const BATCH = 10_000;
  for (let b = 0; b < DEPLOYMENTS; b += BATCH) {
    db.transaction(() => {
      for (let d = b; d < Math.min(DEPLOYMENTS, b + BATCH); d++) {
        const appIdx = d % 5 === 0 ? 0 : d % APPS;
        const id = `bench${pad(d, 12)}`;
        dep.run(id, `app-${pad(appIdx, 5)}`, serverOf(appIdx % AGENTS), sha256(String(d)).slice(0, 40), at, at, at);
        for (const s of ['queued', 'fetching', 'building', 'starting', 'health_checking', 'switching', 'done']) phase.run(id, s, at);
        for (let l = 0; l < linesPer; l++) log.run(id, l, at, 'build', `Step ${l}/${linesPer} : RUN something that printed this line of build output`);
      }
    })();
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

function startSwarms(url: string, onMsg: (m: { type: string; id?: string; at?: number }) => void): ChildProcess[] {
  const swarms: ChildProcess[] = [];
  for (let first = 0; first < AGENTS; first += AGENTS_PER_PROCESS) {
    const n = Math.min(AGENTS_PER_PROCESS, AGENTS - first);
    const child = fork(SWARM, [url, String(first), String(n), String(HEARTBEAT_MS)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.on('message', onMsg);
    swarms.push(child);
  }
  return swarms;
}

async function timed(url: string, init: RequestInit, expect: number): Promise<number> {
  const t0 = nowMs();
  const res = await fetch(url, init);
  await res.arrayBuffer();
  const ms = nowMs() - t0;
  if (res.status !== expect) throw new Error(`${init.method ?? 'GET'} ${url} answered ${res.status}, expected ${expect}`);
  return ms;
}

async function main(): Promise<void> {
  const root = makeTmpDir('berth-bench-scale-');
  const data = join(root, 'cp');
  const cp = new ControlPlane(data, await freePort());
  let swarms: ChildProcess[] = [];
  try {
    // First start creates the database, key and admin token; then the history is written into it.
    await cp.start();
    await cp.stop();
    const t0 = Date.now();
    seed(join(data, 'control-plane.db'));
    const seedS = (Date.now() - t0) / 1000;
    await cp.start();
    const token = readFileSync(join(data, 'admin-token'), 'utf8').trim();
    const admin = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const created = (await (
      await fetch(`${cp.url}/api/apps`, { method: 'POST', headers: admin, body: JSON.stringify({ name: 'bench-app', repo: 'https://example.com/bench.git', server: serverOf(0) }) })
    ).json()) as { webhooks: { push: string }; webhookSecrets: { push: string } };

    let welcomed = 0;
    const orders = new Map<string, number>();
    const waiters = new Map<string, (at: number) => void>();
    const onMsg = (m: { type: string; id?: string; at?: number }) => {
      if (m.type === 'welcomed') welcomed++;
      else if (m.type === 'disconnected') welcomed--;
      else if (m.type === 'deploy' && m.id) {
        orders.set(m.id, m.at!);
        waiters.get(m.id)?.(m.at!);
      }
    };
    const waitAll = async (what: string): Promise<number> => {
      const t = Date.now();
      while (welcomed < AGENTS) {
        checkTime(what);
        await sleep(50);
      }
      return (Date.now() - t) / 1000;
    };

    const connectStart = Date.now();
    swarms = startSwarms(cp.url, onMsg);
    await waitAll('the first connect');
    const connectS = (Date.now() - connectStart) / 1000;
    await sleep(5000);

    // Idle: all agents connected, heartbeats flowing, nobody calling the API.
    const rss: number[] = [];
    const cpu0 = procSample(cp.pid);
    const idleStart = Date.now();
    while (Date.now() - idleStart < IDLE_S * 1000) {
      rss.push(procSample(cp.pid).rssMb);
      await sleep(1000);
    }
    const idleCpu = (procSample(cp.pid).cpuS - cpu0.cpuS) / ((Date.now() - idleStart) / 1000);

    // API calls while they are connected, one at a time.
    const api: Record<string, number[]> = {};
    const calls: Array<[string, string, RequestInit, number]> = [
      ['GET /api/servers', `${cp.url}/api/servers`, { headers: admin }, 200],
      ['GET /api/apps', `${cp.url}/api/apps`, { headers: admin }, 200],
      ['GET /api/apps?limit=50', `${cp.url}/api/apps?limit=50`, { headers: admin }, 200],
      ['GET /api/apps/APP', `${cp.url}/api/apps/bench-app`, { headers: admin }, 200],
      [`GET /api/apps/APP/deployments (${BIG_APP})`, `${cp.url}/api/apps/${BIG_APP}/deployments`, { headers: admin }, 200],
      [`GET /api/apps/APP/deployments?limit=20 (${BIG_APP})`, `${cp.url}/api/apps/${BIG_APP}/deployments?limit=20`, { headers: admin }, 200],
      ['GET /api/deployments/ID/logs', `${cp.url}/api/deployments/bench${pad(0, 12)}/logs`, { headers: admin }, 200],
    ];
    for (let r = 0; r < ROUNDS; r++) {
      checkTime('the API calls');
      for (const [name, url, init, status] of calls) (api[name] ??= []).push(await timed(url, init, status));
    }

    // Deploy and push webhook → the order reaches the app's (simulated) agent.
    const deployHttp: number[] = [];
    const deployOrder: number[] = [];
    const hookHttp: number[] = [];
    const hookOrder: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      checkTime('the deploys');
      const viaHook = r % 2 === 1;
      const body = viaHook
        ? JSON.stringify({ ref: 'refs/heads/main', before: '0'.repeat(40), after: sha256(randomUUID()).slice(0, 40), repository: { full_name: 'bench/app' } })
        : '{}';
      const headers: Record<string, string> = viaHook
        ? {
            'content-type': 'application/json',
            'x-github-event': 'push',
            'x-github-delivery': randomUUID(),
            'x-hub-signature-256': `sha256=${createHmac('sha256', created.webhookSecrets.push).update(body).digest('hex')}`,
          }
        : admin;
      const t0 = nowMs();
      const res = await fetch(viaHook ? created.webhooks.push : `${cp.url}/api/apps/bench-app/deploy`, { method: 'POST', headers, body });
      const t1 = nowMs();
      const json = (await res.json()) as { id?: string; deployment?: { id: string } };
      const id = json.deployment?.id ?? json.id;
      if (!id) throw new Error(`deploy answered ${res.status}: ${JSON.stringify(json)}`);
      const at = orders.get(id) ?? (await new Promise<number>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`deploy order ${id} never reached the agent`)), 10_000);
        waiters.set(id, (a) => (clearTimeout(t), resolve(a)));
      }));
      (viaHook ? hookHttp : deployHttp).push(t1 - t0);
      (viaHook ? hookOrder : deployOrder).push(at - t0);
      await sleep(20);
    }
    const afterApi = procSample(cp.pid);

    // Thundering herd: restart the control plane, every agent reconnects with its backoff.
    const herdStart = Date.now();
    await cp.stop();
    await cp.start();
    const herdS = (Date.now() - herdStart) / 1000 + (await waitAll('the reconnect after a restart'));
    await sleep(2000);
    const afterHerd = procSample(cp.pid);

    const dbFile = join(data, 'control-plane.db');
    const dbMb = (statSync(dbFile).size + (statSync(`${dbFile}-wal`, { throwIfNoEntry: false })?.size ?? 0)) / 1024 / 1024;
    const report = {
      benchmark: 'control plane with N connected agents',
      agents: AGENTS,
      apps: APPS + 1,
      deployments: DEPLOYMENTS,
      logLines: LOG_LINES,
      heartbeatMs: HEARTBEAT_MS,
      seedS: round1(seedS),
      dbMb: round1(dbMb),
      connectAllS: round1(connectS),
      idle: { seconds: IDLE_S, rssMbMedian: round1(percentile([...rss].sort((a, b) => a - b), 50)), rssMbMax: round1(Math.max(...rss)), cpuCores: Math.round(idleCpu * 1000) / 1000 },
      apiMs: Object.fromEntries(Object.entries(api).map(([k, v]) => [k, summary(v)])),
      deploy: { httpMs: summary(deployHttp), orderReceivedMs: summary(deployOrder) },
      pushWebhook: { httpMs: summary(hookHttp), orderReceivedMs: summary(hookOrder) },
      rssMbAfterApi: round1(afterApi.rssMb),
      restart: { allReconnectedS: round1(herdS), rssMbAfter: round1(afterHerd.rssMb) },
      rounds: ROUNDS,
      machine: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, memGb: round1(totalmem() / 2 ** 30) },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    for (const s of swarms) s.kill();
    await cp.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
