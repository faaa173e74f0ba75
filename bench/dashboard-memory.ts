// Benchmark: the control plane's idle RSS with the dashboard in use (issue 16 target: ≤ 80 MB).
//
// The control plane runs as a real process (the compiled CLI) on loopback with a `ws` client as the
// agent; BENCH_APPS apps get three finished deployments each with BENCH_LOG_LINES log lines, and one
// deployment is left running. A real headless Chromium signs in, opens the apps list, every app's
// page and the servers page, then stays on the running deployment's page with its live log stream
// (EventSource) open. The control plane's RSS (VmRSS) is sampled from /proc every 2 s while idle.
//
//   npm run bench:dashboard-memory                  # 10 apps, 60 s idle
//   BENCH_IDLE_S=120 BENCH_APPS=20 npm run bench:dashboard-memory
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { BERTH_BIN } from '../test/helpers/cli.js';
import { adminApi, FakeAgent } from '../test/helpers/fake-agent.js';
import { freePort, makeTmpDir } from '../test/helpers/tmp.js';

const IDLE_S = Math.min(Math.max(Number(process.env.BENCH_IDLE_S ?? 60) || 60, 10), 1800);
const APPS = Math.min(Math.max(Number(process.env.BENCH_APPS ?? 10) || 10, 1), 100);
const LOG_LINES = Math.min(Math.max(Number(process.env.BENCH_LOG_LINES ?? 200) || 200, 1), 1000);
// The node flags systemd/berth-control-plane.service runs the control plane with (BENCH_NODE_FLAGS="" for V8's defaults).
const CONTROL_PLANE_NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '--max-semi-space-size=1').split(' ').filter(Boolean);
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function sampleIdle(pid: number, seconds: number): Promise<number[]> {
  const out: number[] = [];
  for (let t = 0; t < seconds; t += 2) {
    await sleep(2000);
    out.push(rssMb(pid));
  }
  return out;
}

async function main(): Promise<void> {
  const root = makeTmpDir('berth-bench-dashboard-');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawn(process.execPath, [...CONTROL_PLANE_NODE_FLAGS, BERTH_BIN, 'control-plane', '--data', join(root, 'cp'), '--listen', `127.0.0.1:${port}`], { stdio: 'ignore', env: { ...process.env, BERTH_LOG_LEVEL: 'warn' } });
  const browser = await chromium.launch({ executablePath: process.env.BERTH_CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
  let agent: FakeAgent | undefined;
  try {
    for (let i = 0; i < 100; i++) {
      if (await fetch(`${url}/healthz`).then((r) => r.ok).catch(() => false)) break;
      await sleep(100);
    }
    const adminToken = readFileSync(join(root, 'cp', 'admin-token'), 'utf8').trim();
    const api = adminApi({ url, adminToken });
    const server = (await api('POST', '/api/servers', { name: 'bench' })).body;
    const joined = await fetch(`${url}/api/agent/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: server.joinToken }) });
    agent = await FakeAgent.join(url, ((await joined.json()) as { credential: string }).credential);
    await sleep(3000);
    const baseline = rssMb(proc.pid!);

    let running = '';
    for (let a = 0; a < APPS; a++) {
      const app = `app-${a}`;
      await api('POST', '/api/apps', { name: app, repo: `https://example.com/${app}.git`, server: 'bench' });
      await api('PATCH', `/api/apps/${app}/env`, { set: { DATABASE_URL: 'postgres://x', SECRET: 'y' } });
      await api('POST', `/api/apps/${app}/domains`, { domain: `${app}.bench.test` });
      for (let d = 0; d < 3; d++) {
        const id = (await api('POST', `/api/apps/${app}/deploy`, {})).body.id as string;
        await agent.next('deploy');
        agent.send({ type: 'deploy_log', v: 1, deploymentId: id, lines: Array.from({ length: LOG_LINES }, (_, i) => ({ seq: i, ts: new Date().toISOString(), stream: 'build', text: `step ${i}: ${'x'.repeat(60)}` })) });
        const last = a === APPS - 1 && d === 2;
        for (const s of last ? ['fetching', 'building'] : ['fetching', 'building', 'starting', 'health_checking', 'switching', 'done']) agent.progress(id, s, { commit: String(d).repeat(40) });
        await agent.sync();
        if (last) running = id;
      }
    }
    const withData = rssMb(proc.pid!);

    const page = await (await browser.newContext()).newPage();
    await page.goto(`${url}/ui/login`);
    await page.getByLabel('Admin token').fill(adminToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(/\/ui\/apps$/);
    for (let a = 0; a < APPS; a++) await page.goto(`${url}/ui/apps/app-${a}`);
    await page.goto(`${url}/ui/servers`);
    await page.goto(`${url}/ui/apps/app-${APPS - 1}?deployment=${running}`);
    const afterUse = rssMb(proc.pid!);
    const idle = await sampleIdle(proc.pid!, IDLE_S);
    console.log(JSON.stringify({ apps: APPS, logLinesPerDeploy: LOG_LINES, idleSeconds: IDLE_S, baselineMb: +baseline.toFixed(1), withDataMb: +withData.toFixed(1), afterDashboardUseMb: +afterUse.toFixed(1), idleMedianMb: +median(idle).toFixed(1), idleMaxMb: +Math.max(...idle).toFixed(1) }, null, 2));
  } finally {
    agent?.close();
    await browser.close();
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
