// Benchmark: requests sent and failed during back-to-back redeploys under steady HTTP load
// (PRODUCT.md: zero failed requests during 10 back-to-back redeploys).
//
// A control plane and an agent run as real processes on loopback (test/helpers/stack.ts) with a
// private nginx. The app is busybox httpd answering "version N" (and /up for the health check).
// While keep-alive and fresh-connection clients send GETs through nginx as fast as they can, the
// app is redeployed BENCH_DEPLOYS times (default 10), each with a new version, one right after the
// other (`berth deploy --wait`). Every response is checked: status, and which version it carried.
//
//   npm run bench:zero-downtime
//   BENCH_DEPLOYS=20 BENCH_KEEPALIVE=4 BENCH_FRESH=4 npm run bench:zero-downtime
import { cpus } from 'node:os';
import { join } from 'node:path';
import { berth, berthJson } from '../test/helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from '../test/helpers/docker.js';
import { TestRepo } from '../test/helpers/git-repo.js';
import { eventually } from '../test/helpers/http.js';
import { HttpLoad, judgeSequence } from '../test/helpers/load.js';
import { Stack } from '../test/helpers/stack.js';
import { envInt as int, percentile } from './stats.js';

const DEPLOYS = int('BENCH_DEPLOYS', 10, 1, 100);
const KEEPALIVE = int('BENCH_KEEPALIVE', 4, 0, 64);
const FRESH = int('BENCH_FRESH', 4, 0, 64);
const MAX_REQUESTS = int('BENCH_MAX_REQUESTS', 5_000_000, 1000, 50_000_000);
const TIME_LIMIT_MS = int('BENCH_TIME_LIMIT_S', 900, 30, 3600) * 1000;

const APP = 'bench-zd';
const DOMAIN = 'zd.bench.test';
const dockerfile = `FROM berth-test/busybox:latest
COPY . /www
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
`;

async function main(): Promise<void> {
  await ensureDocker();
  await ensureBusyboxImage();
  const stack = await Stack.create('bench-zd', { agentEnv: { BERTH_DRAIN_MS: '10000' } });
  stack.apps.add(APP);
  try {
    const repo = new TestRepo(join(stack.root, 'repo'));
    const commit = (n: number) => repo.commit({ Dockerfile: dockerfile, 'berth.yml': 'healthcheck: { path: /up, interval: 0.2 }\n', 'index.html': `version ${n}\n`, up: 'ok\n' }, `version ${n}`);
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
    commit(0);
    const first = await berth(['deploy', APP, '--wait'], stack.env, 300_000);
    if (first.code !== 0) throw new Error(`the first deploy failed: ${first.stderr}`);

    const load = new HttpLoad({
      port: stack.httpPort,
      host: DOMAIN,
      keepAliveClients: KEEPALIVE,
      freshClients: FRESH,
      maxRequests: MAX_REQUESTS,
      maxDurationMs: TIME_LIMIT_MS,
      version: (body) => /^version (\d+)$/m.exec(body)?.[1] ?? null,
    });
    await eventually(async () => load.answered, (n) => n >= 50, 10_000, 20);
    const deployMs: number[] = [];
    const failedDeploys: string[] = [];
    for (let n = 1; n <= DEPLOYS; n++) {
      commit(n);
      const t0 = Date.now();
      const res = await berth(['deploy', APP, '--wait', '--json'], stack.env, 300_000);
      deployMs.push(Date.now() - t0);
      if (res.code !== 0) failedDeploys.push(`version ${n}: ${res.stderr.trim().split('\n').pop()}`);
      await load.until(String(n), 30_000).catch(() => {});
    }
    const report = await load.stop();

    const expected = Array.from({ length: DEPLOYS + 1 }, (_, i) => String(i));
    let flipBacks = 0;
    let inexactKeepAlive = 0;
    const orderProblems: string[] = [];
    for (const c of report.clients) {
      const j = judgeSequence(c, expected);
      flipBacks += j.flipBacks;
      if (c.keepAlive && !j.exact) inexactKeepAlive++;
      orderProblems.push(...j.unexpected.map((u) => `${c.name}: ${u}`));
    }
    const failed = report.non2xx + report.connectionErrors;
    const sorted = [...deployMs].sort((a, b) => a - b);
    const result = {
      benchmark: 'requests during back-to-back redeploys under load',
      redeploys: DEPLOYS,
      failedDeploys,
      clients: { keepAlive: KEEPALIVE, freshConnection: FRESH },
      requestsSent: report.sent,
      requestsOk: report.ok,
      requestsFailed: failed,
      non2xx: report.non2xx,
      connectionErrors: report.connectionErrors,
      staleKeepAliveConnectionsResent: report.staleConnectionRetries,
      requestsPerSecond: Math.round(report.sent / (report.durationMs / 1000)),
      loadSeconds: Number((report.durationMs / 1000).toFixed(1)),
      versionFlipsExactlyOncePerKeepAliveClient: inexactKeepAlive === 0,
      freshConnectionResponsesFromOutgoingNginxWorkers: flipBacks,
      versionOrderProblems: orderProblems.slice(0, 20),
      deployWaitMs: { p50: percentile(sorted, 50), max: sorted.at(-1) ?? NaN },
      firstFailures: report.failures.slice(0, 10),
      hitBound: report.hitBound,
      node: process.version,
      cpus: cpus().length,
    };
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    const pass = failed === 0 && failedDeploys.length === 0 && orderProblems.length === 0 && inexactKeepAlive === 0 && !report.hitBound;
    process.stderr.write(
      `${DEPLOYS} redeploys under load: ${report.sent} requests sent, ${failed} failed (${report.non2xx} non-2xx, ${report.connectionErrors} connection errors), ` +
        `${report.staleConnectionRetries} stale keep-alive connections re-sent; target: 0 failed — ${pass ? 'PASS' : 'FAIL'}\n`,
    );
    if (!pass) process.exitCode = 1;
  } finally {
    await stack.destroy();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
