// Benchmark (issue 15): cluster deploys against standalone ones on the same machine, and requests
// failed during back-to-back cluster redeploys under steady load.
//
// Cluster: the multi-node test bed (three Docker engines in containers, a berth agent in each, a
// control plane on the host; test/helpers/swarm-agents.ts), formed with `berth cluster create/add`
// (the berth-managed TLS registry on the manager), an app at scale 3 (`app create --cluster`). While
// keep-alive and fresh-connection clients send GETs to the manager's nginx, the app is redeployed
// BENCH_DEPLOYS times (default 10), each a new version; every response's status and version is
// checked. Each deploy's time is trigger → `berth deploy --wait` returning, i.e. the new version
// serving from every replica (nginx is switched once every new task passed the gate).
// Standalone: the same app (scale 1) on a control plane + agent on loopback (test/helpers/stack.ts),
// BENCH_STANDALONE_DEPLOYS (default 5) redeploys without load. Reported: medians and their ratio.
//
//   npm run bench:cluster-deploy
//   BENCH_DEPLOYS=20 npm run bench:cluster-deploy
import { cpus } from 'node:os';
import { join } from 'node:path';
import { berth, berthJson } from '../test/helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from '../test/helpers/docker.js';
import { TestRepo } from '../test/helpers/git-repo.js';
import { eventually } from '../test/helpers/http.js';
import { HttpLoad } from '../test/helpers/load.js';
import { Stack } from '../test/helpers/stack.js';
import { cli, HOST_GIT_MOUNTS, startSwarmWithAgents, type SwarmWithAgents } from '../test/helpers/swarm-agents.js';
import { ensureSwarmNodeImage, NODE_HOST_DIR } from '../test/helpers/swarm-node-image.js';
import { envInt as int, percentile } from './stats.js';

const DEPLOYS = int('BENCH_DEPLOYS', 10, 1, 50);
const STANDALONE_DEPLOYS = int('BENCH_STANDALONE_DEPLOYS', 5, 1, 50);
const TIME_LIMIT_MS = int('BENCH_TIME_LIMIT_S', 1200, 60, 3600) * 1000;
const APP = 'benchcl';
const DOMAIN = 'cluster.bench.test';
const DOCKERFILE = `FROM berth-test/busybox:latest
COPY . /www
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
`;
const files = (n: number, scale: number) => ({
  Dockerfile: DOCKERFILE,
  'berth.yml': `healthcheck: { path: /up, interval: 0.2 }\nprocesses:\n  web: { command: "exec httpd -f -p $PORT -h /www", scale: ${scale} }\n`,
  'index.html': `version ${n}\n`,
  up: 'ok\n',
});

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);

/** `berth deploy --wait` N times, each a new version; the time of each and the ones that failed. */
async function redeploys(n: number, commit: (i: number) => void, deploy: () => Promise<{ code: number; stderr: string }>, after?: (i: number) => Promise<void>) {
  const ms: number[] = [];
  const failed: string[] = [];
  for (let i = 1; i <= n; i++) {
    commit(i);
    const t0 = Date.now();
    const res = await deploy();
    ms.push(Date.now() - t0);
    if (res.code !== 0) failed.push(`version ${i}: ${res.stderr.trim().split('\n').pop()}`);
    await after?.(i);
  }
  return { ms, failed };
}

async function clusterRun(bed: SwarmWithAgents) {
  const manager = bed.agent('web1').node;
  for (const args of [['cluster', 'create', 'prod', '--manager', 'web1'], ['cluster', 'add', 'prod', 'web2'], ['cluster', 'add', 'prod', 'web3']]) {
    const r = await cli(bed, args);
    if (r.code !== 0) throw new Error(`berth ${args.join(' ')}: ${r.stderr}`);
  }
  const repo = new TestRepo(join(manager.hostDir, 'repo'));
  repo.commit(files(0, 3), 'version 0');
  for (const args of [['app', 'create', APP, '--repo', `file://${NODE_HOST_DIR}/repo/remote.git`, '--cluster', 'prod'], ['domain', 'add', APP, DOMAIN]]) {
    const r = await cli(bed, args);
    if (r.code !== 0) throw new Error(`berth ${args.join(' ')}: ${r.stderr}`);
  }
  const first = await cli(bed, ['deploy', APP, '--wait']);
  if (first.code !== 0) throw new Error(`the first cluster deploy failed: ${first.stderr}`);
  const load = new HttpLoad({ address: manager.ip, port: 80, host: DOMAIN, keepAliveClients: 4, freshClients: 4, pauseMs: 5, maxRequests: 2_000_000, maxDurationMs: TIME_LIMIT_MS, version: (b) => /^version (\d+)$/m.exec(b)?.[1] ?? null });
  await eventually(async () => load.answered, (n) => n >= 50, 20_000, 50);
  const run = await redeploys(
    DEPLOYS,
    (i) => repo.commit({ 'index.html': `version ${i}\n` }, `version ${i}`),
    () => cli(bed, ['deploy', APP, '--wait']),
    (i) => load.until(String(i), 30_000).catch(() => {}),
  );
  return { ...run, load: await load.stop() };
}

async function standaloneRun() {
  const stack = await Stack.create('bench-cl-solo', {});
  stack.apps.add(APP);
  try {
    const repo = new TestRepo(join(stack.root, 'repo'));
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    repo.commit(files(0, 1), 'version 0');
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
    const first = await berth(['deploy', APP, '--wait'], stack.env, 300_000);
    if (first.code !== 0) throw new Error(`the first standalone deploy failed: ${first.stderr}`);
    return await redeploys(STANDALONE_DEPLOYS, (i) => repo.commit({ 'index.html': `version ${i}\n` }, `version ${i}`), () => berth(['deploy', APP, '--wait'], stack.env, 300_000));
  } finally {
    await stack.destroy();
  }
}

async function main(): Promise<void> {
  await ensureDocker();
  await ensureBusyboxImage();
  await ensureSwarmNodeImage();
  const solo = await standaloneRun();
  const bed = await startSwarmWithAgents({ nodes: 3, mounts: HOST_GIT_MOUNTS });
  let cluster: Awaited<ReturnType<typeof clusterRun>>;
  try {
    cluster = await clusterRun(bed);
  } finally {
    await bed.close();
  }
  const failedRequests = cluster.load.non2xx + cluster.load.connectionErrors;
  const result = {
    benchmark: 'cluster deploys (3 nodes, scale 3) against standalone (scale 1) on the same machine',
    clusterRedeploys: DEPLOYS,
    clusterDeployMs: { median: median(cluster.ms), min: Math.min(...cluster.ms), max: Math.max(...cluster.ms) },
    standaloneRedeploys: STANDALONE_DEPLOYS,
    standaloneDeployMs: { median: median(solo.ms), min: Math.min(...solo.ms), max: Math.max(...solo.ms) },
    ratioClusterToStandalone: Number((median(cluster.ms) / median(solo.ms)).toFixed(2)),
    failedDeploys: [...cluster.failed, ...solo.failed],
    requestsSent: cluster.load.sent,
    requestsFailed: failedRequests,
    non2xx: cluster.load.non2xx,
    connectionErrors: cluster.load.connectionErrors,
    firstFailures: cluster.load.failures.slice(0, 10),
    hitBound: cluster.load.hitBound,
    node: process.version,
    cpus: cpus().length,
  };
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  const pass = failedRequests === 0 && result.failedDeploys.length === 0 && !cluster.load.hitBound;
  process.stderr.write(`${DEPLOYS} cluster redeploys under load: ${cluster.load.sent} requests, ${failedRequests} failed; cluster/standalone deploy time ${result.ratioClusterToStandalone} — ${pass ? 'PASS' : 'FAIL'}\n`);
  if (!pass) process.exitCode = 1;
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
