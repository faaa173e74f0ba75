// Benchmark (issue 20, "Agent at 50 MB" and "Agent with many apps"): one real agent with 10, then 200
// deployed apps — idle RSS, a no-op reconcile pass, an nginx reload, and `berth status`, for each.
//
// A control plane, an agent and the agent's private nginx run as real processes on loopback
// (test/helpers/stack.ts); the agent starts with the Node flags of systemd/berth-agent.service (read
// from the unit, passed as NODE_OPTIONS), as in production. Every app is deployed for real through the
// API (a git repo with a busybox httpd Dockerfile, one web container and one domain each): the agent
// fetches, builds (the same files in every repo: layer-cache hits after the first), starts,
// health-checks and routes each one, BENCH_BUILD_CONCURRENCY [4] deploys at a time. Then:
// - idle RSS: VmRSS from /proc every 5 s over BENCH_IDLE_S after a 30 s settle; the
//   anonymous part (V8 heap, malloc) and the file pages (node's binary, libraries) from
//   /proc/PID/smaps_rollup at the end;
// - no-op reconcile pass: duration of the agent's own passes with no action (reconcile_runs in agent.db);
// - nginx reload: passes that applied one changed server block (a domain added, then removed, on one
//   app): render, write, `nginx -t`, reload, check the new generation is served — from reconcile_runs;
// - `berth status --json` run as a process (as a user would), and its answer alone over the status socket.
//
//   npm run bench:agent-memory                                 # 10 then 200 apps
//   BENCH_APPS=10 BENCH_MANY_APPS=50 BENCH_IDLE_S=60 npm run bench:agent-memory
//   BENCH_VARIANTS="--jitless;none" npm run bench:agent-memory # then restart the agent with these NODE_OPTIONS
//                                                              # (";" between sets, "none" = no flags) and measure again
//   BENCH_MANY_APPS=10 …                                       # 10 apps only
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { unitAgentNodeFlags } from '../test/helpers/agent-node-flags.js';
import { BERTH_BIN } from '../test/helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from '../test/helpers/docker.js';
import { busyboxDockerfile } from '../test/helpers/fixtures.js';
import { TestRepo } from '../test/helpers/git-repo.js';
import { Stack } from '../test/helpers/stack.js';

const num = (name: string, def: number, min: number, max: number) => Math.min(Math.max(Number(process.env[name] ?? def) || def, min), max);
const APPS = num('BENCH_APPS', 10, 1, 100);
const MANY = num('BENCH_MANY_APPS', 200, APPS, 300);
const IDLE_S = num('BENCH_IDLE_S', 60, 20, 1800);
const SETTLE_S = 30;
const TIME_LIMIT_S = num('BENCH_TIME_LIMIT_S', 2400, 300, 7200);
const BUILD_CONCURRENCY = num('BENCH_BUILD_CONCURRENCY', 4, 1, 16);
const VARIANTS = (process.env.BENCH_VARIANTS ?? '').split(';').map((s) => s.trim()).filter(Boolean).slice(0, 4);
const started = Date.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);
const stats = (xs: number[]) => ({ median: +median(xs).toFixed(1), max: xs.length ? +Math.max(...xs).toFixed(1) : NaN, n: xs.length });

function checkTime(what: string): void {
  if ((Date.now() - started) / 1000 > TIME_LIMIT_S) throw new Error(`time limit ${TIME_LIMIT_S} s reached before ${what}`);
}

class Api {
  constructor(private readonly stack: Stack) {}
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(this.stack.cpUrl + path, {
      method,
      headers: { authorization: `Bearer ${this.stack.adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
    return (text ? JSON.parse(text) : undefined) as T;
  }
}

/** Create and deploy apps [from, to) for real; wait until every deploy is done (bounded). */
async function deployApps(stack: Stack, api: Api, from: number, to: number): Promise<number> {
  const t0 = performance.now();
  const ids: string[] = [];
  for (let i = from; i < to; i++) {
    const app = `mem-${i}`;
    stack.apps.add(app);
    const repo = new TestRepo(join(stack.root, `repo-${i}`));
    // The same files in every repo: after the first, each build is a layer-cache hit (tagged per app).
    repo.commit({ Dockerfile: busyboxDockerfile(), 'index.html': 'hello\n' });
    await api.call('POST', '/api/apps', { name: app, repo: repo.url, branch: 'main', server: stack.serverName });
    await api.call('POST', `/api/apps/${app}/domains`, { domain: `${app}.bench.test` });
    ids.push((await api.call<{ id: string }>('POST', `/api/apps/${app}/deploy`, {})).id);
  }
  for (const id of ids) {
    for (;;) {
      checkTime(`deploy ${id} finished`);
      const d = await api.call<{ status: string; reason: string | null }>('GET', `/api/deployments/${id}`);
      if (d.status === 'done') break;
      if (['failed', 'cancelled', 'superseded'].includes(d.status)) throw new Error(`deploy ${id} ended ${d.status}: ${d.reason}`);
      await sleep(500);
    }
  }
  return (performance.now() - t0) / 1000;
}

function passes(dataDir: string, sinceIso: string): Array<{ ms: number; actions: number }> {
  const db = new Database(join(dataDir, 'agent.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT duration_ms AS d, actions AS a FROM reconcile_runs WHERE started_at >= ? ORDER BY id').all(sinceIso) as Array<{ d: number; a: string }>;
    return rows.map((r) => ({ ms: r.d, actions: (JSON.parse(r.a) as unknown[]).length }));
  } finally {
    db.close();
  }
}

/** RSS, and how much of it is anonymous (V8 heap, malloc: the agent's own) vs file pages (node's binary, libraries). */
function memory(pid: number): { rssMb: number; anonMb: number; fileMb: number } {
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  const roll = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const anonKb = Number(/^Anonymous:\s+(\d+)/m.exec(roll)?.[1] ?? 0);
  return { rssMb: rssKb / 1024, anonMb: anonKb / 1024, fileMb: (rssKb - anonKb) / 1024 };
}

async function idle(stack: Stack): Promise<{ rssMb: ReturnType<typeof stats>; anonMb: number; fileMb: number; noopPassMs: ReturnType<typeof stats> }> {
  await sleep(SETTLE_S * 1000);
  const pid = stack.agent!.proc.pid!;
  const since = new Date().toISOString();
  const rss: number[] = [];
  for (let t = 0; t < IDLE_S; t += 5) {
    await sleep(5000);
    rss.push(memory(pid).rssMb);
  }
  const noop = passes(stack.agentData, since).filter((p) => p.actions === 0).map((p) => p.ms);
  const last = memory(pid);
  return { rssMb: stats(rss), anonMb: +last.anonMb.toFixed(1), fileMb: +last.fileMb.toFixed(1), noopPassMs: stats(noop) };
}

/** Add, then remove, a domain on one app, twice: each a pass applying one server block (nginx -t + reload + check). */
async function nginxReloads(stack: Stack, api: Api): Promise<ReturnType<typeof stats>> {
  const since = new Date().toISOString();
  for (let round = 0; round < 2; round++) {
    for (const method of ['POST', 'DELETE'] as const) {
      const n = passes(stack.agentData, since).filter((p) => p.actions > 0).length;
      const domain = `extra-${round}.mem-0.bench.test`;
      await api.call(method, method === 'POST' ? '/api/apps/mem-0/domains' : `/api/apps/mem-0/domains/${domain}`, method === 'POST' ? { domain } : undefined);
      const deadline = Date.now() + 60_000;
      while (passes(stack.agentData, since).filter((p) => p.actions > 0).length <= n) {
        if (Date.now() > deadline) throw new Error('no reconcile pass applied the domain change within 60 s');
        await sleep(100);
      }
    }
  }
  return stats(passes(stack.agentData, since).filter((p) => p.actions > 0).map((p) => p.ms));
}

function statusSocket(dataDir: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: join(dataDir, 'agent.sock'), path: '/status', timeout: 20_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(performance.now() - t0));
    });
    req.on('error', reject);
    req.end();
  });
}

async function berthStatus(stack: Stack): Promise<{ cliMs: ReturnType<typeof stats>; socketMs: ReturnType<typeof stats> }> {
  const cli: number[] = [];
  const socket: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [BERTH_BIN, 'status', '--data', stack.agentData, '--json'], { env: { ...process.env, ...stack.agentEnv }, encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`berth status failed: ${r.stderr}`);
    cli.push(performance.now() - t0);
    socket.push(await statusSocket(stack.agentData));
  }
  return { cliMs: stats(cli), socketMs: stats(socket) };
}

async function measure(stack: Stack, api: Api) {
  checkTime('measuring');
  const idleResult = await idle(stack);
  return { ...idleResult, nginxReloadPassMs: await nginxReloads(stack, api), status: await berthStatus(stack) };
}

async function main(): Promise<void> {
  await ensureDocker();
  await ensureBusyboxImage();
  const flags = unitAgentNodeFlags();
  const env = { BERTH_RECONCILE_INTERVAL_MS: '10000', BERTH_LOG_LEVEL: 'info', BERTH_BUILD_CONCURRENCY: String(BUILD_CONCURRENCY) };
  const stack = await Stack.create('agent-memory', { agentEnv: { ...env, ...(flags.length ? { NODE_OPTIONS: flags.join(' ') } : {}) } });
  const api = new Api(stack);
  // Ctrl-C or a kill tears the stack down too (containers, images, nginx, daemons).
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void stack.destroy().finally(() => process.exit(130)));
  const result: Record<string, unknown> = { node: process.version, cpus: (await import('node:os')).cpus().length, agentNodeFlags: flags.join(' '), idleSeconds: IDLE_S };
  try {
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    console.error(`deploying ${APPS} apps…`);
    result.deploySeconds = { [APPS]: +(await deployApps(stack, api, 0, APPS)).toFixed(0) };
    console.error(`measuring with ${APPS} apps…`);
    result[`apps${APPS}`] = await measure(stack, api);
    if (MANY > APPS) {
      console.error(`deploying up to ${MANY} apps…`);
      (result.deploySeconds as Record<number, number>)[MANY] = +(await deployApps(stack, api, APPS, MANY)).toFixed(0);
      console.error(`measuring with ${MANY} apps…`);
      result[`apps${MANY}`] = await measure(stack, api);
    }
    for (const variant of VARIANTS) {
      checkTime(`variant ${variant}`);
      console.error(`restarting the agent with NODE_OPTIONS="${variant}"…`);
      await stack.stopAgent();
      stack.extraAgentEnv.NODE_OPTIONS = variant === 'none' ? '' : variant;
      await stack.startAgent();
      result[`apps${MANY} NODE_OPTIONS="${variant}"`] = await measure(stack, api);
    }
    console.log(JSON.stringify(result, null, 2));
  } finally {
    console.error(`tearing down (${MANY} apps)…`);
    await stack.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
