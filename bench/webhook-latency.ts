// Benchmark: push webhook received → the agent reports `fetching` (PRODUCT.md: ≤ 100 ms p99).
//
// A control plane and an agent run as real processes on loopback (test/helpers/stack.ts). Each
// round sends a GitHub push webhook signed with the app's secret for a commit that does not exist,
// so the agent starts fetching at once and the deploy fails right after (nothing is built); the next
// round starts when the deployment has ended, so every trigger finds the agent idle.
//
// The latency of one round is the control plane's timestamp of the `fetching` report minus the
// client's clock just before it sent the webhook (same machine, same clock).
//
//   npm run bench:webhook-latency                # 300 rounds
//   BENCH_ROUNDS=1000 npm run bench:webhook-latency
import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { ensureDocker } from '../test/helpers/docker.js';
import { TestRepo } from '../test/helpers/git-repo.js';
import { Stack } from '../test/helpers/stack.js';
import { berthJson } from '../test/helpers/cli.js';

const ROUNDS = Math.min(Math.max(Number(process.env.BENCH_ROUNDS ?? 300) || 300, 10), 5000);
const TIME_LIMIT_MS = Math.min(Number(process.env.BENCH_TIME_LIMIT_S ?? 300) || 300, 1800) * 1000;
const WARMUP = 10;

interface Phase {
  status: string;
  at: string;
}

const nowMs = () => performance.timeOrigin + performance.now();

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

async function main(): Promise<void> {
  await ensureDocker();
  const stack = await Stack.create('bench-webhook');
  const app = 'bench-hook';
  try {
    const repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ 'README.md': 'benchmark\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    const created = await berthJson<{ webhooks: { push: string }; webhookSecrets: { push: string } }>(
      ['app', 'create', app, '--repo', repo.url, '--server', stack.serverName],
      stack.env,
    );
    const admin = { authorization: `Bearer ${stack.adminToken}` };

    const total: number[] = [];
    const response: number[] = [];
    const started = Date.now();
    let rounds = 0;
    for (let i = 0; i < ROUNDS + WARMUP && Date.now() - started < TIME_LIMIT_MS; i++) {
      const sha = randomBytes(20).toString('hex'); // not in the repo: the deploy fails right after fetching starts
      const body = Buffer.from(JSON.stringify({ ref: 'refs/heads/main', before: '0'.repeat(40), after: sha, repository: { full_name: 'bench/app' } }));
      const headers = {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': `sha256=${createHmac('sha256', created.webhookSecrets.push).update(body).digest('hex')}`,
      };
      const t0 = nowMs();
      const res = await fetch(created.webhooks.push, { method: 'POST', headers, body: new Uint8Array(body) });
      const t1 = nowMs();
      const result = (await res.json()) as { deployment?: { id: string } };
      if (res.status !== 202 || !result.deployment) throw new Error(`webhook answered ${res.status}: ${JSON.stringify(result)}`);
      const id = result.deployment.id;
      // Wait for the deployment to end, then read when `fetching` was reported.
      let phases: Phase[] = [];
      for (const deadline = Date.now() + 30_000; ; ) {
        const d = (await (await fetch(`${stack.cpUrl}/api/deployments/${id}`, { headers: admin })).json()) as { status: string; phases: Phase[] };
        if (['done', 'failed', 'cancelled', 'superseded'].includes(d.status)) {
          phases = d.phases;
          break;
        }
        if (Date.now() > deadline) throw new Error(`deployment ${id} did not end within 30 s (it is ${d.status})`);
        await new Promise((r) => setTimeout(r, 5));
      }
      const fetching = phases.find((p) => p.status === 'fetching');
      if (!fetching) throw new Error(`deployment ${id} never reported fetching: ${JSON.stringify(phases)}`);
      if (i < WARMUP) continue;
      total.push(Date.parse(fetching.at) - t0);
      response.push(t1 - t0);
      rounds++;
    }

    const sorted = [...total].sort((a, b) => a - b);
    const sortedRes = [...response].sort((a, b) => a - b);
    const mean = total.reduce((a, b) => a + b, 0) / Math.max(1, total.length);
    const fmt = (n: number) => n.toFixed(1);
    const report = {
      benchmark: 'webhook received → agent reports fetching',
      rounds,
      warmup: WARMUP,
      p50Ms: Number(fmt(percentile(sorted, 50))),
      p90Ms: Number(fmt(percentile(sorted, 90))),
      p99Ms: Number(fmt(percentile(sorted, 99))),
      maxMs: Number(fmt(sorted.at(-1) ?? NaN)),
      meanMs: Number(fmt(mean)),
      webhookResponseP50Ms: Number(fmt(percentile(sortedRes, 50))),
      webhookResponseP99Ms: Number(fmt(percentile(sortedRes, 99))),
      node: process.version,
      cpus: cpus().length,
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    process.stderr.write(
      `webhook → fetching over ${rounds} triggers: p50 ${fmt(report.p50Ms)} ms, p90 ${fmt(report.p90Ms)} ms, p99 ${fmt(report.p99Ms)} ms, max ${fmt(report.maxMs)} ms ` +
        `(target: p99 ≤ 100 ms) ${report.p99Ms <= 100 ? 'PASS' : 'FAIL'}\n`,
    );
    if (!(report.p99Ms <= 100)) process.exitCode = 1;
  } finally {
    await stack.destroy();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
