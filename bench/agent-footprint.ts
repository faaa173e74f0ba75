// Benchmark: the agent's idle footprint (PRODUCT.md: ≤ 50 MB RSS, ≤ 0.5 % of one core) with 10 apps
// deployed, and the time of one no-op reconcile pass with 10 and with 50 apps.
//
// A control plane and an agent run as real processes on loopback (test/helpers/stack.ts), with the
// production reconcile interval (30 s) and heartbeat (10 s). Busybox apps are deployed for real; then
// the agent's RSS and CPU time are sampled from /proc while nothing happens. Pass durations are read
// from the agent's own record of its passes (reconcile_runs), keeping only passes with no actions.
//
//   npm run bench:agent-footprint                       # 300 s idle, 10 then 50 apps
//   BENCH_IDLE_S=60 BENCH_APPS=10 BENCH_MORE_APPS=50 npm run bench:agent-footprint
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { berth, berthJson } from '../test/helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from '../test/helpers/docker.js';
import { busyboxDockerfile } from '../test/helpers/fixtures.js';
import { TestRepo } from '../test/helpers/git-repo.js';
import { Stack } from '../test/helpers/stack.js';

const IDLE_S = Math.min(Math.max(Number(process.env.BENCH_IDLE_S ?? 300) || 300, 30), 1800);
const APPS = Math.min(Math.max(Number(process.env.BENCH_APPS ?? 10) || 10, 1), 100);
const MORE_APPS = Math.min(Math.max(Number(process.env.BENCH_MORE_APPS ?? 50) || 50, APPS), 200);
const SECOND_IDLE_S = 75; // enough for two passes at the 30 s interval
const TICK_HZ = 100; // Linux USER_HZ: /proc/PID/stat times are in 1/100 s

function procSample(pid: number): { rssMb: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  // Fields after the command name (which may hold spaces) start at index 2 = state; utime/stime are 14th/15th overall.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(rest[11]) + Number(rest[12]);
  return { rssMb: rssKb / 1024, cpuS: ticks / TICK_HZ };
}

function noopPassDurations(dataDir: string, sinceIso: string): number[] {
  const db = new Database(join(dataDir, 'agent.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT duration_ms AS d, actions AS a FROM reconcile_runs WHERE started_at >= ? ORDER BY id').all(sinceIso) as Array<{ d: number; a: string }>;
    return rows.filter((r) => (JSON.parse(r.a) as unknown[]).length === 0).map((r) => r.d);
  } finally {
    db.close();
  }
}

const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);

async function deployApps(stack: Stack, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) {
    const app = `fp-${i}`;
    stack.apps.add(app);
    const repo = new TestRepo(join(stack.root, `repo-${i}`));
    repo.commit({ Dockerfile: busyboxDockerfile(), 'index.html': `app ${i}\n` });
    await berthJson(['app', 'create', app, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', app, `${app}.bench.test`], stack.env);
    const res = await berth(['deploy', app, '--wait'], stack.env);
    if (res.code !== 0) throw new Error(`deploy of ${app} failed: ${res.stderr}`);
  }
}

async function idle(stack: Stack, seconds: number): Promise<{ rssMb: { median: number; max: number }; cpuPercent: number; passesMs: number[] }> {
  const pid = stack.agent!.proc.pid!;
  const since = new Date().toISOString();
  const first = procSample(pid);
  const t0 = performance.now();
  const rss: number[] = [];
  while (performance.now() - t0 < seconds * 1000) {
    await new Promise((r) => setTimeout(r, 5000));
    rss.push(procSample(pid).rssMb);
  }
  const last = procSample(pid);
  const wallS = (performance.now() - t0) / 1000;
  return {
    rssMb: { median: median(rss), max: Math.max(...rss) },
    cpuPercent: ((last.cpuS - first.cpuS) / wallS) * 100,
    passesMs: noopPassDurations(stack.agentData, since),
  };
}

async function main(): Promise<void> {
  await ensureDocker();
  await ensureBusyboxImage();
  // BENCH_AGENT_NODE_OPTIONS: V8/Node flags for the agent process only (e.g. to compare heap settings).
  const nodeOptions = process.env.BENCH_AGENT_NODE_OPTIONS;
  const stack = await Stack.create('footprint', {
    agentEnv: { BERTH_RECONCILE_INTERVAL_MS: '30000', BERTH_LOG_LEVEL: 'info', ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) },
  });
  try {
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    console.error(`deploying ${APPS} apps…`);
    await deployApps(stack, 0, APPS);
    await new Promise((r) => setTimeout(r, 5000)); // let drains and the post-deploy pass finish
    console.error(`idle for ${IDLE_S} s with ${APPS} apps…`);
    const small = await idle(stack, IDLE_S);
    console.error(`deploying up to ${MORE_APPS} apps…`);
    await deployApps(stack, APPS, MORE_APPS);
    await new Promise((r) => setTimeout(r, 5000));
    const large = await idle(stack, SECOND_IDLE_S);
    const result = {
      apps: APPS,
      idleSeconds: IDLE_S,
      agentRssMb: { median: +small.rssMb.median.toFixed(1), max: +small.rssMb.max.toFixed(1) },
      agentCpuPercentOfOneCore: +small.cpuPercent.toFixed(3),
      noopPassMs: {
        [`${APPS}apps`]: { median: median(small.passesMs), max: Math.max(...small.passesMs), passes: small.passesMs.length },
        [`${MORE_APPS}apps`]: { median: median(large.passesMs), max: Math.max(...large.passesMs), passes: large.passesMs.length },
      },
      rssMbWith50Apps: +large.rssMb.max.toFixed(1),
      node: process.version,
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await stack.destroy();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
