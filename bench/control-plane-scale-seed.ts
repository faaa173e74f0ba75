// The parts of bench/control-plane-scale.ts that are not the measurement: the control plane as a
// real process, the history written into its database, /proc samples and percentiles.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { sha256 } from '../shared/ids.js';
import { openDatabase } from '../control-plane/store/db.js';
import { BERTH_BIN } from '../test/helpers/cli.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const pad = (i: number, n: number) => String(i).padStart(n, '0');
export const serverOf = (i: number) => `srv-${pad(i, 5)}`;
export const appOf = (i: number) => `app-${pad(i, 5)}`;
/** What a simulated agent presents (bench/agent-swarm.ts); the database holds only its hash, as after a real join. */
export const credentialOf = (i: number) => `bench-cred-${i}`;
export const round1 = (n: number) => Math.round(n * 10) / 10;

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function summary(samples: number[]): { n: number; p50: number; p99: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, p50: round1(percentile(s, 50)), p99: round1(percentile(s, 99)), max: round1(s.at(-1) ?? NaN) };
}

/** RSS (MB) and CPU time (s) of a process, from /proc. */
export function procSample(pid: number): { rssMb: number; cpuS: number } {
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { rssMb: rssKb / 1024, cpuS: (Number(fields[11]) + Number(fields[12])) / 100 };
}

/** The database file and its WAL, in MB. */
export function dbSizeMb(file: string): number {
  return (statSync(file).size + (statSync(`${file}-wal`, { throwIfNoEntry: false })?.size ?? 0)) / 1024 / 1024;
}

/** `berth control-plane` as its own process on loopback. */
export class ControlPlane {
  proc: ChildProcess | null = null;
  readonly url: string;
  constructor(
    readonly data: string,
    readonly port: number,
    private readonly env: Record<string, string> = {},
  ) {
    this.url = `http://127.0.0.1:${port}`;
  }

  /** Returns the seconds from spawn to a healthy answer. */
  async start(): Promise<number> {
    const t0 = Date.now();
    this.proc = spawn(process.execPath, [BERTH_BIN, 'control-plane', '--data', this.data, '--listen', `127.0.0.1:${this.port}`], {
      env: { ...process.env, BERTH_LOG_LEVEL: 'warn', BERTH_LOG_FORMAT: 'json', ...this.env },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    for (const deadline = Date.now() + 120_000; ; ) {
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return (Date.now() - t0) / 1000;
      } catch {
        // not up yet
      }
      if (this.proc.exitCode !== null) throw new Error(`control plane exited with ${this.proc.exitCode}`);
      if (Date.now() > deadline) throw new Error('control plane did not start within 120 s');
      await sleep(50);
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

export interface SeedPlan {
  servers: number;
  apps: number;
  deployments: number;
  linesPerDeployment: number;
  /** BERTH_DEPLOYMENT_LOGS_KEEP of the control plane: only these deployments of each app get log lines. */
  keepLogs: number;
}

/**
 * Servers from..to-1 with their credential hash (as a completed join leaves them); with `spread`, the
 * seeded apps are then spread over all `to` servers (app i on server i mod to).
 */
export function addServers(file: string, from: number, to: number, spread = false): void {
  const db = openDatabase(file);
  const at = new Date().toISOString();
  const srv = db.prepare('INSERT INTO servers (name, created_at, joined_at, credential_hash) VALUES (?, ?, ?, ?)');
  db.transaction(() => {
    for (let i = from; i < to; i++) srv.run(serverOf(i), at, at, sha256(credentialOf(i)));
    if (spread) db.prepare(`UPDATE apps SET server = printf('srv-%05d', CAST(substr(name, 5) AS INTEGER) % ?) WHERE name LIKE 'app-%'`).run(to);
  })();
  db.close();
}

/** Which app deployment `d` belongs to: a fifth of the history is app-00000's, the rest spread evenly. */
const appIndexOf = (d: number, apps: number) => (d % 5 === 0 ? 0 : d % apps);

/**
 * Apps spread over the servers, and the history: every deployment with its seven phases; log lines
 * only for the deployments the control plane's retention keeps (the newest `keepLogs` of each app) —
 * what a control plane that received them one by one holds, since each finish compacts that app.
 */
export function seedHistory(file: string, plan: SeedPlan): { deploymentsWithLogs: number; logLines: number } {
  addServers(file, 0, plan.servers);
  const db = openDatabase(file);
  const base = Date.now() - plan.deployments * 60_000;
  db.transaction(() => {
    const app = db.prepare('INSERT INTO apps (name, repo, branch, server, created_at) VALUES (?, ?, ?, ?, ?)');
    for (let i = 0; i < plan.apps; i++) app.run(appOf(i), 'https://example.com/bench.git', 'main', serverOf(i % plan.servers), new Date(base).toISOString());
  })();
  const total = new Array<number>(plan.apps).fill(0);
  for (let d = 0; d < plan.deployments; d++) total[appIndexOf(d, plan.apps)]!++;
  const seen = new Array<number>(plan.apps).fill(0);
  const dep = db.prepare(
    `INSERT INTO deployments (id, app, server, status, "commit", reason, "trigger", created_at, updated_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, 'push', ?, ?, ?)`,
  );
  const phase = db.prepare('INSERT INTO deployment_phases (deployment_id, status, reason, at) VALUES (?, ?, ?, ?)');
  const log = db.prepare('INSERT INTO deployment_logs (deployment_id, seq, ts, stream, text) VALUES (?, ?, ?, ?, ?)');
  let deploymentsWithLogs = 0;
  const BATCH = 20_000;
  for (let b = 0; b < plan.deployments; b += BATCH) {
    db.transaction(() => {
      for (let d = b; d < Math.min(plan.deployments, b + BATCH); d++) {
        const a = appIndexOf(d, plan.apps);
        const newerOfApp = total[a]! - ++seen[a]!;
        const id = `bench${pad(d, 12)}`;
        const at = new Date(base + d * 60_000).toISOString();
        const failed = d % 10 === 7;
        const reason = failed ? 'build failed: exit code 1' : null;
        dep.run(id, appOf(a), serverOf(a % plan.servers), failed ? 'failed' : 'done', sha256(String(d)).slice(0, 40), reason, at, at, at);
        for (const s of failed ? ['queued', 'fetching', 'building', 'failed'] : ['queued', 'fetching', 'building', 'starting', 'health_checking', 'switching', 'done']) {
          phase.run(id, s, s === 'failed' ? reason : null, at);
        }
        if (newerOfApp >= plan.keepLogs) continue;
        deploymentsWithLogs++;
        for (let l = 0; l < plan.linesPerDeployment; l++) log.run(id, l, at, 'build', `#${l} [build ${l}/${plan.linesPerDeployment}] RUN npm ci --omit=dev: added 312 packages in 4s`);
      }
    })();
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return { deploymentsWithLogs, logLines: deploymentsWithLogs * plan.linesPerDeployment };
}

/** Rows per table and the largest number of deployments with log lines any app has (retention's bound). */
export function historyStats(file: string): Record<string, number> {
  const db = openDatabase(file);
  const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
  const stats = {
    deployments: count('SELECT count(*) AS n FROM deployments'),
    phases: count('SELECT count(*) AS n FROM deployment_phases'),
    logLines: count('SELECT count(*) AS n FROM deployment_logs'),
    maxDeploymentsWithLogsPerApp: count(
      'SELECT coalesce(max(c), 0) AS n FROM (SELECT count(DISTINCT l.deployment_id) AS c FROM deployment_logs l JOIN deployments d ON d.id = l.deployment_id GROUP BY d.app)',
    ),
    freePages: Number(db.pragma('freelist_count', { simple: true })),
    pageSize: Number(db.pragma('page_size', { simple: true })),
  };
  db.close();
  return stats;
}
