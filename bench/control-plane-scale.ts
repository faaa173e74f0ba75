// Benchmark: one control plane with N enrolled agents connected over real WebSockets (PRODUCT.md:
// 10,000 agents in ≤ 400 MB and ≤ half a core, every API call p99 ≤ 100 ms while they are connected),
// with 20,000 apps and 1,000,000 deployments in its database.
//
// The control plane runs as a real process (the compiled CLI, a real SQLite file in a tmp dir) on
// loopback. Servers (with the hash of each agent's credential, as a join leaves it), apps and the
// deployment history are written into its database in bulk transactions — enrolling 10,000 agents over
// HTTP measures nothing this is about; the agents then present those credentials over real WebSockets
// from child processes (bench/agent-swarm.ts). The history is seeded once and copied for each size.
//
//   npm run bench:control-plane-scale                  # 1,000 and 5,000 agents
//   npm run bench:control-plane-scale -- --10k         # and 10,000
//   npm run bench:control-plane-scale -- --sizes 1000  # only these (at most 10,000 each)
// Env: BENCH_APPS [20000], BENCH_DEPLOYMENTS [1000000], BENCH_LOG_LINES [10 per deployment],
//      BENCH_IDLE_S [30], BENCH_ROUNDS [100], BENCH_HEARTBEAT_MS [10000], BENCH_TIME_LIMIT_S [5400].
import { fork, type ChildProcess } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { cpSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256 } from '../shared/ids.js';
import { DEFAULT_KEEP_DEPLOYMENT_LOGS } from '../control-plane/store/deployments.js';
import { berth } from '../test/helpers/cli.js';
import { freePort, makeTmpDir } from '../test/helpers/tmp.js';
import { addServers, ControlPlane, dbSizeMb, historyStats, percentile, procSample, round1, seedHistory, serverOf, sleep, summary } from './control-plane-scale-seed.js';

const bounded = (name: string, def: number, min: number, max: number) => Math.min(Math.max(Number(process.env[name] ?? def) || def, min), max);
const APPS = bounded('BENCH_APPS', 20_000, 1, 50_000);
const DEPLOYMENTS = bounded('BENCH_DEPLOYMENTS', 1_000_000, 0, 2_000_000);
const LINES_PER_DEPLOYMENT = bounded('BENCH_LOG_LINES', 10, 0, 200);
const IDLE_S = bounded('BENCH_IDLE_S', 30, 5, 600);
const ROUNDS = bounded('BENCH_ROUNDS', 100, 5, 2000);
const HEARTBEAT_MS = bounded('BENCH_HEARTBEAT_MS', 10_000, 1000, 60_000);
const TIME_LIMIT_MS = bounded('BENCH_TIME_LIMIT_S', 5400, 60, 7200) * 1000;
const MAX_AGENTS = 10_000;
const AGENTS_PER_PROCESS = 5000;
/** Apps created through the API (each with its webhook secret) that the deploy and webhook rounds use, on different servers. */
const DEPLOY_APPS = 10;
/** Full walks of a 20,000-app listing by the real CLI (a process each). */
const CLI_ROUNDS = 5;
const BIG_APP = 'app-00000';
const SWARM = fileURLToPath(new URL('./agent-swarm.js', import.meta.url));
const started = Date.now();
const nowMs = () => performance.timeOrigin + performance.now();

function checkTime(what: string): void {
  if (Date.now() - started > TIME_LIMIT_MS) throw new Error(`time limit (BENCH_TIME_LIMIT_S) reached during ${what}`);
}

function sizesFromArgs(argv: string[]): number[] {
  const i = argv.indexOf('--sizes');
  const list = i >= 0 ? (argv[i + 1] ?? '').split(',').map(Number) : [1000, 5000];
  if (argv.includes('--10k')) list.push(10_000);
  const sizes = [...new Set(list)].sort((a, b) => a - b);
  if (sizes.length === 0 || sizes.some((n) => !Number.isInteger(n) || n < 1 || n > MAX_AGENTS)) throw new Error(`--sizes: whole numbers from 1 to ${MAX_AGENTS}`);
  return sizes;
}

type SwarmMsg = { type: string; id?: string; at?: number; detail?: string };

/** The simulated agents' view, from their IPC messages. */
class Fleet {
  welcomed = 0;
  refused: string[] = [];
  private readonly orders = new Map<string, number>();
  private readonly waiters = new Map<string, (at: number) => void>();
  private children: ChildProcess[] = [];

  start(url: string, agents: number): void {
    for (let first = 0; first < agents; first += AGENTS_PER_PROCESS) {
      const n = Math.min(AGENTS_PER_PROCESS, agents - first);
      const child = fork(SWARM, [url, String(first), String(n), String(HEARTBEAT_MS)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.on('message', (m: SwarmMsg) => this.onMessage(m));
      this.children.push(child);
    }
  }

  private onMessage(m: SwarmMsg): void {
    if (m.type === 'welcomed') this.welcomed++;
    else if (m.type === 'disconnected') this.welcomed--;
    else if (m.type === 'refused' && this.refused.length < 5) this.refused.push(m.detail ?? '');
    else if (m.type === 'deploy' && m.id) {
      this.orders.set(m.id, m.at!);
      this.waiters.get(m.id)?.(m.at!);
    }
  }

  async waitAll(agents: number, what: string): Promise<number> {
    const t = Date.now();
    while (this.welcomed < agents) {
      checkTime(what);
      await sleep(50);
    }
    return (Date.now() - t) / 1000;
  }

  /** When the agent received deploy order `id` (waits up to 10 s). */
  orderAt(id: string): Promise<number> {
    const at = this.orders.get(id);
    if (at !== undefined) return Promise.resolve(at);
    return new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`deploy order ${id} never reached the agent`)), 10_000);
      this.waiters.set(id, (a) => (clearTimeout(t), this.waiters.delete(id), resolve(a)));
    });
  }

  stop(): void {
    for (const c of this.children) c.kill();
    this.children = [];
  }
}

async function timed(url: string, init: RequestInit, expect: number): Promise<number> {
  const t0 = nowMs();
  const res = await fetch(url, init);
  await res.arrayBuffer();
  const ms = nowMs() - t0;
  if (res.status !== expect) throw new Error(`${init.method ?? 'GET'} ${url} answered ${res.status}, expected ${expect}`);
  return ms;
}

/** RSS and CPU of the control plane over IDLE_S seconds with every agent connected and nobody calling the API. */
async function idleWindow(pid: number): Promise<{ seconds: number; rssMbMedian: number; rssMbMax: number; cpuCores: number }> {
  const rss: number[] = [];
  const cpu0 = procSample(pid);
  const t0 = Date.now();
  while (Date.now() - t0 < IDLE_S * 1000) {
    rss.push(procSample(pid).rssMb);
    await sleep(1000);
  }
  const cpuCores = (procSample(pid).cpuS - cpu0.cpuS) / ((Date.now() - t0) / 1000);
  const sorted = [...rss].sort((a, b) => a - b);
  return { seconds: IDLE_S, rssMbMedian: round1(percentile(sorted, 50)), rssMbMax: round1(sorted.at(-1)!), cpuCores: Math.round(cpuCores * 1000) / 1000 };
}

/** API calls one at a time, ROUNDS rounds; whole unpaged listings only a few times (each is megabytes). */
async function apiRounds(url: string, admin: Record<string, string>): Promise<Record<string, ReturnType<typeof summary> & { failed?: number }>> {
  const get = { headers: admin };
  const calls: Array<[string, string, number]> = [
    ['GET /api/servers?limit=100', `${url}/api/servers?limit=100`, ROUNDS],
    ['GET /api/apps?limit=100 (app ls, one page)', `${url}/api/apps?limit=100`, ROUNDS],
    ['GET /api/apps?limit=100&cursor= (a middle page)', `${url}/api/apps?limit=100&cursor=app-10000`, ROUNDS],
    ['GET /api/apps/APP', `${url}/api/apps/bench-app-0`, ROUNDS],
    [`GET /api/apps/${BIG_APP}/deployments?limit=20 (${DEPLOYMENTS / 5 + Math.ceil(DEPLOYMENTS / APPS)} deployments)`, `${url}/api/apps/${BIG_APP}/deployments?limit=20`, ROUNDS],
    [`GET /api/apps/APP/deployments?limit=20 (~${Math.round((DEPLOYMENTS * 0.8) / APPS)} deployments)`, `${url}/api/apps/app-00001/deployments?limit=20`, ROUNDS],
    ['GET /api/deployments/ID/logs', `${url}/api/deployments/bench${String(DEPLOYMENTS - 1).padStart(12, '0')}/logs`, ROUNDS],
    ['GET /api/servers (all)', `${url}/api/servers`, 10],
    [`GET /api/apps (all ${APPS})`, `${url}/api/apps`, 5],
  ];
  const out: Record<string, number[]> = {};
  /** Calls that did not answer 200 (e.g. 408 from an overloaded control plane): counted, not timed. */
  const failed: Record<string, string[]> = {};
  for (let r = 0; r < ROUNDS; r++) {
    checkTime('the API calls');
    for (const [name, u, n] of calls) {
      if (r >= n) continue;
      try {
        (out[name] ??= []).push(await timed(u, get, 200));
      } catch (err) {
        (failed[name] ??= []).push(err instanceof Error ? err.message : String(err));
      }
    }
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { ...summary(v), ...(failed[k] ? { failed: failed[k].length, firstError: failed[k][0] } : {}) }]));
}

interface DeployApp {
  name: string;
  pushUrl: string;
  pushSecret: string;
}

async function createDeployApps(url: string, admin: Record<string, string>, agents: number): Promise<DeployApp[]> {
  const out: DeployApp[] = [];
  for (let i = 0; i < DEPLOY_APPS; i++) {
    const name = `bench-app-${i}`;
    const server = serverOf(Math.floor((i * agents) / DEPLOY_APPS));
    const res = await fetch(`${url}/api/apps`, { method: 'POST', headers: admin, body: JSON.stringify({ name, repo: 'https://example.com/bench.git', server }) });
    if (res.status !== 201) throw new Error(`creating ${name} answered ${res.status}: ${await res.text()}`);
    const created = (await res.json()) as { webhooks: { push: string }; webhookSecrets: { push: string } };
    out.push({ name, pushUrl: created.webhooks.push, pushSecret: created.webhookSecrets.push });
  }
  return out;
}

/** Deploys (API) and signed GitHub push webhooks, alternating over the apps: request → order at the app's agent. */
async function deployRounds(url: string, admin: Record<string, string>, apps: DeployApp[], fleet: Fleet) {
  const r: Record<'deployHttp' | 'deployOrder' | 'hookHttp' | 'hookOrder', number[]> = { deployHttp: [], deployOrder: [], hookHttp: [], hookOrder: [] };
  for (let i = 0; i < ROUNDS; i++) {
    checkTime('the deploys');
    const app = apps[i % apps.length]!;
    const viaHook = i % 2 === 1;
    const body = viaHook ? JSON.stringify({ ref: 'refs/heads/main', before: '0'.repeat(40), after: sha256(randomUUID()).slice(0, 40), repository: { full_name: 'bench/app' } }) : '{}';
    const headers: Record<string, string> = viaHook
      ? {
          'content-type': 'application/json',
          'x-github-event': 'push',
          'x-github-delivery': randomUUID(),
          'x-hub-signature-256': `sha256=${createHmac('sha256', app.pushSecret).update(body).digest('hex')}`,
        }
      : admin;
    const t0 = nowMs();
    const res = await fetch(viaHook ? app.pushUrl : `${url}/api/apps/${app.name}/deploy`, { method: 'POST', headers, body });
    const t1 = nowMs();
    const json = (await res.json()) as { id?: string; deployment?: { id: string } };
    const id = json.deployment?.id ?? json.id;
    if (!id) throw new Error(`deploy answered ${res.status}: ${JSON.stringify(json)}`);
    const at = await fleet.orderAt(id);
    r[viaHook ? 'hookHttp' : 'deployHttp'].push(t1 - t0);
    r[viaHook ? 'hookOrder' : 'deployOrder'].push(at - t0);
    await sleep(20);
  }
  return {
    deploy: { httpMs: summary(r.deployHttp), orderReceivedMs: summary(r.deployOrder) },
    pushWebhook: { httpMs: summary(r.hookHttp), orderReceivedMs: summary(r.hookOrder) },
  };
}

/** The real CLI walking whole listings page by page (a process each time: Node's start is included). */
async function cliRounds(url: string, token: string, home: string): Promise<Record<string, ReturnType<typeof summary>>> {
  const env = { BERTH_URL: url, BERTH_TOKEN: token, XDG_CONFIG_HOME: home };
  const runs: Array<[string, string[]]> = [
    [`berth app ls --json (${APPS + DEPLOY_APPS} apps)`, ['app', 'ls', '--json']],
    [`berth deployments ${BIG_APP} --json --limit 1000`, ['deployments', BIG_APP, '--json', '--limit', '1000']],
    [`berth deployments APP --json (~${Math.round((DEPLOYMENTS * 0.8) / APPS)})`, ['deployments', 'app-00001', '--json']],
  ];
  const out: Record<string, number[]> = {};
  for (let r = 0; r < CLI_ROUNDS; r++) {
    for (const [name, args] of runs) {
      checkTime('the CLI calls');
      const t0 = nowMs();
      const res = await berth(args, env);
      (out[name] ??= []).push(nowMs() - t0);
      if (res.code !== 0 || !Array.isArray(JSON.parse(res.stdout))) throw new Error(`berth ${args.join(' ')} failed: ${res.stderr}`);
    }
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, summary(v)]));
}

/** One size: a copy of the seeded data dir, N servers, N agents; everything measured while they are connected. */
async function runSize(template: string, root: string, agents: number, seededServers: number): Promise<Record<string, unknown>> {
  const data = join(root, `cp-${agents}`);
  cpSync(template, data, { recursive: true });
  const dbFile = join(data, 'control-plane.db');
  addServers(dbFile, seededServers, agents, true);
  const cp = new ControlPlane(data, await freePort());
  const fleet = new Fleet();
  try {
    const startS = await cp.start();
    const token = readFileSync(join(data, 'admin-token'), 'utf8').trim();
    const admin = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const apps = await createDeployApps(cp.url, admin, agents);
    const connectStart = Date.now();
    fleet.start(cp.url, agents);
    await fleet.waitAll(agents, 'the first connect');
    const connectAllS = (Date.now() - connectStart) / 1000;
    await sleep(5000);
    const idle = await idleWindow(cp.pid);
    const apiMs = await apiRounds(cp.url, admin);
    const deploys = await deployRounds(cp.url, admin, apps, fleet);
    const cliMs = await cliRounds(cp.url, token, join(root, 'cli'));
    const rssMbAfterCalls = round1(procSample(cp.pid).rssMb);
    // Thundering herd: restart the control plane; every agent reconnects with the agent's jittered backoff.
    const herdStart = Date.now();
    await cp.stop();
    const restartStartS = await cp.start();
    await fleet.waitAll(agents, 'the reconnect after a restart');
    const allBackS = (Date.now() - herdStart) / 1000;
    await sleep(2000);
    const rssMbAfterRestart = round1(procSample(cp.pid).rssMb);
    if (fleet.refused.length) throw new Error(`the control plane refused simulated agents' frames: ${fleet.refused.join(' | ')}`);
    fleet.stop();
    await cp.stop();
    const history = historyStats(dbFile);
    return {
      agents,
      controlPlaneStartS: round1(startS),
      connectAllS: round1(connectAllS),
      idle,
      apiMs,
      ...deploys,
      cliMs,
      rssMbAfterCalls,
      restart: { controlPlaneStartS: round1(restartStartS), allReconnectedS: round1(allBackS), rssMbAfter: rssMbAfterRestart },
      loadAverage: loadavg().map((n) => round1(n)),
      dbMbAfterRun: round1(dbSizeMb(dbFile)),
      history,
    };
  } finally {
    fleet.stop();
    await cp.stop();
    rmSync(data, { recursive: true, force: true });
  }
}

/** A data dir made by a real first start, then the history written into its database. */
async function makeTemplate(root: string, servers: number): Promise<Record<string, unknown>> {
  const template = join(root, 'template');
  const cp = new ControlPlane(template, await freePort());
  await cp.start();
  await cp.stop();
  const file = join(template, 'control-plane.db');
  const t0 = Date.now();
  const seeded = seedHistory(file, { servers, apps: APPS, deployments: DEPLOYMENTS, linesPerDeployment: LINES_PER_DEPLOYMENT, keepLogs: DEFAULT_KEEP_DEPLOYMENT_LOGS });
  return { seedS: round1((Date.now() - t0) / 1000), ...seeded, dbMb: round1(dbSizeMb(file)), stats: historyStats(file) };
}

async function main(): Promise<void> {
  const sizes = sizesFromArgs(process.argv.slice(2));
  const root = makeTmpDir('berth-bench-scale-');
  try {
    const seeded = await makeTemplate(root, sizes[0]!);
    process.stderr.write(`seeded: ${JSON.stringify(seeded)}\n`);
    const runs: Array<Record<string, unknown>> = [];
    for (const n of sizes) {
      checkTime(`the ${n}-agent run`);
      const result = await runSize(join(root, 'template'), root, n, sizes[0]!);
      process.stderr.write(`${n} agents: ${JSON.stringify(result)}\n`);
      runs.push(result);
    }
    const report = {
      benchmark: 'control plane with N connected agents, 20,000 apps, 1,000,000 deployments',
      command: `node dist/bench/control-plane-scale.js ${process.argv.slice(2).join(' ')}`.trim(),
      apps: APPS + DEPLOY_APPS,
      deployments: DEPLOYMENTS,
      logLinesPerKeptDeployment: LINES_PER_DEPLOYMENT,
      keepLogs: DEFAULT_KEEP_DEPLOYMENT_LOGS,
      heartbeatMs: HEARTBEAT_MS,
      rounds: ROUNDS,
      seeded,
      runs,
      loadAverageAtEnd: loadavg().map((n) => round1(n)),
      machine: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, memGb: round1(totalmem() / 2 ** 30) },
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
