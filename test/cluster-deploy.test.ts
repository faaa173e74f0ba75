// Cluster deploys end to end (issue 15) on the real multi-node test bed: three Docker engines in
// containers with a berth agent each, formed into a swarm with `berth cluster …`, the test bed's TLS
// registry with credentials set with `berth cluster registry`, and a cluster app (`app create
// --cluster`) whose web process runs at scale 3 as a Swarm service. Deploys build on the manager,
// push by digest, run the release command once, pass berth's own gate on every task and are served
// by the manager's nginx; rollback and berth scale reuse a kept digest without a rebuild; a version
// that fails its health check leaves the old one serving and no
// service behind. One shared bed for the file. docs/cluster.md, "Deploying an app to a cluster".
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { BERTH_BIN } from './helpers/cli.js';
import { parse as parseYaml } from 'yaml';
import type { CronJobInfo, CronRunInfo } from '../shared/protocol.js';
import type { DeploymentJson } from './helpers/fixtures.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually } from './helpers/http.js';
import { HttpLoad, versionSequence, type LoadReport } from './helpers/load.js';
import { startPebble } from './helpers/pebble.js';
import { cli, HOST_GIT_MOUNTS, startSwarmWithAgents, type SwarmWithAgents } from './helpers/swarm-agents.js';
import { NODE_HOST_DIR } from './helpers/swarm-node-image.js';
import { ensureSwarmNodeImage } from './helpers/swarm-node-image.js';
import { startRegistry, type Registry } from './helpers/swarm-registry.js';
import { stepTimer } from './helpers/timings.js';

const execFileAsync = promisify(execFile);
const APP = 'shop';
const DOMAIN = 'shop.example.test';
// busybox httpd serves the repo's files; /up is the health path. The release command prints one
// marker line per run: the deploy log must hold exactly one per deploy.
const DOCKERFILE = `FROM berth-test/busybox:latest
COPY . /www
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
`;
const BERTH_YML = `release: "echo release-ran-on-$(hostname)"
processes:
  web: { command: "exec httpd -f -p $PORT -h /www", scale: 3 }
healthcheck: { path: /up, timeout: 20, interval: 0.3, attempts: 5 }
`;

interface ServiceInfo {
  ID: string;
  Spec: { Name: string; Labels: Record<string, string>; TaskTemplate: { ContainerSpec: { Image: string } } };
}
interface TaskInfo {
  NodeID: string;
  DesiredState: string;
  Status: { State: string };
}

describe('cluster deploys: Swarm services, health-gated, served by the manager', { timeout: 15 * 60_000 }, () => {
  let bed: SwarmWithAgents;
  let registry: Registry;
  let repo: TestRepo;
  const { timings, timed } = stepTimer();
  const manager = () => bed.agent('web1').node;
  const managerDocker = () => manager().docker;

  const json = async <T>(args: string[], input?: string): Promise<T> => {
    const res = input === undefined ? await cli(bed, [...args, '--json']) : await withStdin([...args, '--json'], input);
    assert.equal(res.code, 0, `berth ${args.join(' ')}: ${res.stderr}`);
    return JSON.parse(res.stdout) as T;
  };
  /** `berth …` with `input` on stdin (the registry password: never on a command line). */
  const withStdin = (args: string[], input: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [BERTH_BIN, ...args], { env: { ...process.env, ...bed.env }, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }),
      );
      child.stdin!.end(input);
    });
  const deploy = async () => {
    const res = await cli(bed, ['deploy', APP, '--wait', '--json'], 300_000);
    const d = res.stdout ? (JSON.parse(res.stdout) as DeploymentJson) : null;
    return { code: res.code, d, stderr: res.stderr };
  };
  const deployLog = async (id: string) => (await json<{ lines: Array<{ text: string }> }>(['deployments', 'logs', id])).lines.map((l) => l.text).join('\n');
  const services = async () => (await managerDocker().listServices({ filters: { label: [`berth.app=${APP}`] } })) as unknown as ServiceInfo[];
  const runningTasks = async (serviceId: string) =>
    ((await managerDocker().listTasks({ filters: { service: [serviceId] } })) as TaskInfo[]).filter((t) => t.DesiredState === 'running' && t.Status.State === 'running');
  /** GET / through the manager's nginx, from inside the manager node, with the app's Host header. */
  const served = async () => (await bed.swarm.exec(manager(), ['curl', '-s', '-H', `Host: ${DOMAIN}`, 'http://127.0.0.1/'], { timeoutMs: 15_000 })).trim();
  const siteFile = () => bed.swarm.exec(manager(), ['cat', `/var/lib/berth-nginx/sites/berth-${APP}.conf`], { timeoutMs: 10_000 });

  before(async () => {
    await timed('node image (0 when it exists)', () => ensureSwarmNodeImage());
    // Two kept releases (instead of 5): registry retention shows after a third good build. Nodes look
    // for unused cluster images every 5 s (instead of 10 min): the cronapp block sees a worker's go.
    bed = await timed('3 nodes with enrolled agents', () => startSwarmWithAgents({ nodes: 3, mounts: HOST_GIT_MOUNTS, agentEnv: { BERTH_KEEP_RELEASES: '2', BERTH_IMAGE_PRUNE_INTERVAL_MS: '5000' } }));
    await timed('cluster create + 2 joins', async () => {
      await json(['cluster', 'create', 'prod', '--manager', 'web1']);
      await json(['cluster', 'add', 'prod', 'web2']);
      await json(['cluster', 'add', 'prod', 'web3']);
    });
    // An external registry (`berth cluster registry`): the test bed's, on another port than the
    // berth-managed one `cluster create` starts on the manager (5000).
    registry = await timed('registry', () => startRegistry(bed.swarm, { node: manager(), port: 5443 }));
    await json(['cluster', 'registry', 'prod', '--address', registry.address, '--username', registry.username, '--password-stdin', '--ca', registry.caPath], registry.password);
    // The repository lives in the manager's host directory: its agent fetches it as file://.
    repo = new TestRepo(join(manager().hostDir, 'repo'));
    await json(['app', 'create', APP, '--repo', `file://${NODE_HOST_DIR}/repo/remote.git`, '--cluster', 'prod']);
    await json(['domain', 'add', APP, DOMAIN]);
  });

  after(async () => {
    for (const [k, ms] of Object.entries(timings)) process.stderr.write(`# ${k}: ${ms} ms\n`);
    await bed?.close();
  });

  it('a web process at scale 3: pushed by digest, tasks on several nodes, release run once, served by the manager', async () => {
    repo.commit({ Dockerfile: DOCKERFILE, 'berth.yml': BERTH_YML, 'index.html': 'version 1\n', up: 'ok\n' }, 'version 1');
    const { code, d, stderr } = await timed('deploy v1', () => deploy());
    assert.equal(code, 0, `deploy failed: ${stderr}\n${d?.reason ?? ''}\n${bed.tail('web1', 60)}`);
    assert.equal(d!.status, 'done');

    const list = await services();
    assert.equal(list.length, 1, JSON.stringify(list.map((s) => s.Spec.Name)));
    const svc = list[0]!;
    assert.equal(svc.Spec.Labels['berth.release'], d!.id);
    assert.equal(svc.Spec.Labels['berth.cluster'], 'prod');
    assert.match(svc.Spec.TaskTemplate.ContainerSpec.Image, new RegExp(`^${registry.address.replace(/\./g, '\\.')}/berth/${APP}@sha256:[0-9a-f]{64}$`));
    const tasks = await runningTasks(svc.ID);
    assert.equal(tasks.length, 3);
    assert.ok(new Set(tasks.map((t) => t.NodeID)).size >= 2, 'tasks on at least two nodes');

    assert.equal(await served(), 'version 1');
    const site = await siteFile();
    const servers = site.match(/server \d+\.\d+\.\d+\.\d+:\d+;/g) ?? [];
    assert.equal(servers.length, 3, site);
    assert.doesNotMatch(site, /127\.0\.0\.1/);

    const log = await deployLog(d!.id);
    assert.equal(log.match(/^release-ran-on-/gm)?.length, 1, log);
    assert.match(log, /pushed \S+@sha256:/);
  });

  it('a second version deploys, serves, and the first release services go after the drain', async () => {
    repo.commit({ 'index.html': 'version 2\n' }, 'version 2');
    const { code, d, stderr } = await timed('deploy v2', () => deploy());
    assert.equal(code, 0, `deploy failed: ${stderr}\n${d?.reason ?? ''}\n${bed.tail('web1', 60)}`);
    assert.equal(await served(), 'version 2');
    assert.equal((await deployLog(d!.id)).match(/^release-ran-on-/gm)?.length, 1);
    await eventually(services, (l) => l.length === 1 && l[0]!.Spec.Labels['berth.release'] === d!.id, 60_000, 500);
  });

  it("10 back-to-back redeploys under steady load through the manager's nginx: zero failed requests", async (t) => {
    // Redeploys of the two kept releases in turn (berth rollback): from new services on, the path of
    // every deploy — new tasks, berth's gate on each, nginx switched, the old services drained —
    // without building, pushing or running the release again (what a build adds happens before any
    // traffic moves) and without adding builds to the history the retention test below counts.
    const done = (await json<DeploymentJson[]>(['deployments', APP])).filter((x) => x.status === 'done');
    assert.equal(done.length, 2, 'versions 2 and 1 are the kept releases');
    const [v2, v1] = done;
    const load = new HttpLoad({
      address: manager().ip,
      port: 80,
      host: DOMAIN,
      keepAliveClients: 2,
      freshClients: 2,
      pauseMs: 5,
      maxRequests: 500_000,
      maxDurationMs: 360_000,
      version: (b) => /^version (\d+)$/m.exec(b)?.[1] ?? null,
    });
    const expected = ['2'];
    const ended: string[] = [];
    const ms: number[] = [];
    let last = '';
    let report: LoadReport;
    try {
      await eventually(async () => load.answered, (n) => n >= 20, 20_000, 50);
      await load.until('2', 10_000);
      await timed('10 redeploys under load', async () => {
        for (let i = 1; i <= 10; i++) {
          const [target, version] = i % 2 === 1 ? [v1!, '1'] : [v2!, '2'];
          const t0 = Date.now();
          const res = await cli(bed, ['rollback', APP, target.id, '--json'], 300_000);
          ms.push(Date.now() - t0);
          const d = res.stdout ? (JSON.parse(res.stdout) as DeploymentJson) : null;
          ended.push(d?.status ?? `exit ${res.code}: ${res.stderr.trim()}`);
          assert.equal(res.code, 0, `redeploy ${i}: ${res.stderr}\n${d?.reason ?? ''}`);
          last = d!.id;
          // Every client is answered by the new version before the next redeploy starts.
          await load.until(version, 30_000);
          expected.push(version);
        }
      });
    } finally {
      report = await load.stop();
      t.diagnostic(
        `redeploys ${ms.join(', ')} ms; load: ${report.sent} requests in ${(report.durationMs / 1000).toFixed(1)} s, ${report.ok} ok, ${report.non2xx} non-2xx, ` +
          `${report.connectionErrors} connection errors, ${report.staleConnectionRetries} stale keep-alive connections re-sent; first failures: ${JSON.stringify(report.failures.slice(0, 3))}`,
      );
    }
    assert.deepEqual(ended, Array(10).fill('done'), 'every redeploy ended done');
    assert.equal(report.hitBound, false, 'the load ran until stopped (its bounds were not reached)');
    assert.deepEqual(report.failures, [], 'no failed request');
    assert.equal(report.non2xx, 0);
    assert.equal(report.connectionErrors, 0);
    assert.ok(report.ok > 100, `enough requests were answered (${report.ok})`);
    // Keep-alive clients flip once per redeploy, in order; every client ends on the last version.
    for (const c of report.clients) {
      if (c.keepAlive) assert.deepEqual(versionSequence(c), expected, `${c.name} saw each version once per redeploy`);
      else assert.deepEqual([...new Set(versionSequence(c))].sort(), ['1', '2'], `${c.name}: ${JSON.stringify(versionSequence(c))}`);
      assert.equal(versionSequence(c).at(-1), '2', `${c.name} ends on the last version`);
    }
    assert.equal(await served(), 'version 2');
    // The drain leaves only the last redeploy's services (the tests below count them).
    await eventually(services, (l) => l.length === 1 && l[0]!.Spec.Labels['berth.release'] === last, 60_000, 500);
  });

  it('a version whose health check fails: failed at health_checking, the old version keeps serving, no service of it left', async () => {
    const live = (await services())[0]!;
    repo.commit({ 'index.html': 'version 3\n', up: null }, 'version 3 without /up');
    const { code, d } = await timed('failing deploy v3', () => deploy());
    assert.notEqual(code, 0);
    const failed = d ?? (await json<DeploymentJson[]>(['deployments', APP]))[0]!;
    assert.equal(failed.status, 'failed');
    // The node is named by its hostname (the test bed's container names) unless it carries a berth.server label.
    const names = bed.swarm.nodes.map((n) => n.name).join('|');
    assert.match(failed.reason ?? '', new RegExp(`^health check failed: unhealthy on (web\\d|${names}): GET /up answered 404`));
    const phases = await deployLog(failed.id);
    assert.equal(phases.match(/^release-ran-on-/gm)?.length, 1);
    const left = await services();
    assert.deepEqual(
      left.map((s) => s.ID),
      [live.ID],
    );
    assert.equal(await served(), 'version 2');
  });

  it("a worker node stops: the manager's watcher takes its tasks out of nginx and adds the rescheduled ones", async (t) => {
    const svc = (await services())[0]!;
    const nodes = (await managerDocker().listNodes()) as Array<{ ID: string; Description: { Hostname: string }; Status: { Addr: string } }>;
    const tasks = await runningTasks(svc.ID);
    const victim = nodes.find((n) => n.Description.Hostname !== manager().name && tasks.some((x) => x.NodeID === n.ID))!;
    assert.ok(victim, 'a worker runs a task');
    const serversOn = (site: string, addr: string) => site.split('\n').filter((l) => l.includes(`server ${addr}:`)).length;
    assert.ok(serversOn(await siteFile(), victim.Status.Addr) > 0);
    const stopped = Date.now();
    await bed.swarm.stopNode(victim.Description.Hostname, 0);
    await eventually(siteFile, (site) => serversOn(site, victim.Status.Addr) === 0 && /server \d+\.\d+\.\d+\.\d+:\d+;/.test(site), 90_000, 500);
    t.diagnostic(`stopped node out of the upstream after ${Date.now() - stopped} ms`);
    assert.equal(await served(), 'version 2');
    // Swarm reschedules the lost tasks on the other nodes; the watcher routes to all three again.
    await eventually(siteFile, (site) => (site.match(/server \d+\.\d+\.\d+\.\d+:\d+;/g) ?? []).length === 3, 90_000, 500);
    t.diagnostic(`three tasks routed again after ${Date.now() - stopped} ms`);
    assert.equal(await served(), 'version 2');
  });

  it('rollback brings back the kept digest without a rebuild, and berth scale changes the replicas the same way', async () => {
    const [v2] = await services();
    const history = await json<DeploymentJson[]>(['deployments', APP]);
    const v1 = history.filter((x) => x.status === 'done').at(-1)!;
    const v1Log = await deployLog(v1.id);
    const v1Digest = /pushed (\S+@sha256:[0-9a-f]{64})/.exec(v1Log)?.[1];
    assert.ok(v1Digest, v1Log);

    const back = await timed('rollback to v1', () => cli(bed, ['rollback', APP, v1.id, '--json'], 300_000));
    assert.equal(back.code, 0, back.stderr);
    const rolled = JSON.parse(back.stdout) as DeploymentJson;
    assert.equal(rolled.status, 'done');
    assert.equal(await served(), 'version 1');
    const log = await deployLog(rolled.id);
    assert.match(log, /rolling back to release/);
    assert.doesNotMatch(log, /^release-ran-on-|pushed \S+@sha256/m, 'nothing built, pushed or released again');
    await eventually(services, (l) => l.length === 1 && l[0]!.ID !== v2!.ID, 60_000, 500);
    const [svc] = await services();
    assert.equal(svc!.Spec.TaskTemplate.ContainerSpec.Image, v1Digest, 'the service runs the kept digest');

    const scaled = await timed('scale web=2', () => cli(bed, ['scale', APP, 'web=2', '--wait', '--json'], 300_000));
    assert.equal(scaled.code, 0, scaled.stderr);
    await eventually(services, (l) => l.length === 1 && l[0]!.Spec.Labels['berth.release'] !== rolled.id, 60_000, 500);
    const [now] = await services();
    assert.equal(now!.Spec.TaskTemplate.ContainerSpec.Image, v1Digest);
    assert.equal((await runningTasks(now!.ID)).length, 2);
    assert.equal(await served(), 'version 1');
  });

  it('registry retention: past BERTH_KEEP_RELEASES the oldest kept image leaves the registry, the kept ones stay pullable', async () => {
    const tagsNow = async () => {
      const out = await bed.swarm.exec(manager(), ['curl', '-s', '--cacert', registry.nodeCaPath, '-u', `${registry.username}:${registry.password}`, `https://${registry.address}/v2/berth/${APP}/tags/list`], { timeoutMs: 15_000 });
      return ((JSON.parse(out) as { tags?: string[] | null }).tags ?? []).sort();
    };
    const history = await json<DeploymentJson[]>(['deployments', APP]);
    const builds = history.filter((x) => !/rollback|scale/.test(x.trigger));
    const [v3, v2, v1] = builds.map((x) => x.id);
    assert.equal(builds[0]!.status, 'failed');
    // v3 was pushed and then failed its health check: the retention after the rollback already deleted it.
    assert.deepEqual(await tagsNow(), [v1, v2].sort());
    assert.ok(v3);
    repo.commit({ 'index.html': 'version 4\n', up: 'ok\n' }, 'version 4');
    const { code, d, stderr } = await timed('deploy v4', () => deploy());
    assert.equal(code, 0, `deploy failed: ${stderr}\n${d?.reason ?? ''}`);
    assert.equal(await served(), 'version 4');
    // Kept: v4 (live) and v1 (live again most recently, through the rollback and the scale); v2 goes.
    await eventually(tagsNow, (tags) => tags.length === 2, 60_000, 1000);
    assert.deepEqual(await tagsNow(), [v1, d!.id].sort());
    const log = await deployLog(d!.id);
    assert.match(log, /registry: kept 2 image\(s\) of shop, deleted 1/);
    // The manager keeps the kept releases' images (by their digest reference) for the next rollback; v2's went.
    const pushed = async (id: string) => /pushed (\S+@sha256:[0-9a-f]{64})/.exec(await deployLog(id))?.[1] ?? '';
    await managerDocker().getImage(await pushed(v1!)).inspect();
    await assert.rejects(managerDocker().getImage(await pushed(v2!)).inspect(), 'the dropped release image is removed from the manager');
  });

  // `berth cluster builder` (docs/cluster.md): a worker fetches, builds (with the build caps) and
  // pushes; the manager releases, starts and switches from the pushed digest. Its own app and repo:
  // the repo lives in the BUILDER's host directory, so only the builder can fetch it.
  it('a builder node: the build runs on its engine, the manager serves the pushed digest; a failing build names the builder', async () => {
    const BUILD_APP = 'buildapp';
    const BUILD_DOMAIN = 'buildapp.example.test';
    // A worker whose agent is connected (an earlier test stops a worker's node).
    const online = await json<Array<{ name: string; connected: boolean }>>(['server', 'ls']);
    const builder = online.find((s) => s.connected && s.name !== 'web1')?.name;
    assert.ok(builder, JSON.stringify(online));
    const builderDocker = bed.agent(builder).node.docker;
    const shown = await json<{ builder?: string }>(['cluster', 'builder', 'prod', builder]);
    assert.equal(shown.builder, builder);
    assert.equal((await json<Array<{ builder?: string }>>(['cluster', 'ls']))[0]!.builder, builder);
    const buildRepo = new TestRepo(join(bed.agent(builder).node.hostDir, 'buildrepo'));
    await json(['app', 'create', BUILD_APP, '--repo', `file://${NODE_HOST_DIR}/buildrepo/remote.git`, '--cluster', 'prod']);
    await json(['domain', 'add', BUILD_APP, BUILD_DOMAIN]);
    const yml = `release: "echo buildapp-release-on-$(hostname)"\nprocesses:\n  web: { command: "exec httpd -f -p $PORT -h /www", scale: 2 }\nhealthcheck: { path: /up, timeout: 20, interval: 0.3, attempts: 5 }\n`;
    buildRepo.commit({ Dockerfile: DOCKERFILE, 'berth.yml': yml, 'index.html': 'buildapp 1\n', up: 'ok\n' }, 'buildapp 1');
    const servedBuild = async () => (await bed.swarm.exec(manager(), ['curl', '-s', '-H', `Host: ${BUILD_DOMAIN}`, 'http://127.0.0.1/'], { timeoutMs: 15_000 })).trim();
    const deployBuild = async () => {
      const res = await cli(bed, ['deploy', BUILD_APP, '--wait', '--json'], 300_000);
      return { code: res.code, d: res.stdout ? (JSON.parse(res.stdout) as DeploymentJson) : null, stderr: res.stderr };
    };
    const phases = async (id: string) => {
      const res = await fetch(`${bed.cpUrl}/api/deployments/${id}`, { headers: { authorization: `Bearer ${bed.adminToken}` } });
      return ((await res.json()) as { phases: Array<{ status: string }> }).phases.map((p) => p.status);
    };

    const { code, d, stderr } = await timed('deploy on a builder', () => deployBuild());
    assert.equal(code, 0, `deploy failed: ${stderr}\n${d?.reason ?? ''}\n${bed.tail(builder, 40)}\n${bed.tail('web1', 40)}`);
    assert.deepEqual(await phases(d!.id), ['queued', 'fetching', 'building', 'releasing', 'starting', 'health_checking', 'switching', 'done']);
    const log = await deployLog(d!.id);
    assert.match(log, new RegExp(`^building on ${builder}, the builder of cluster prod`, 'm'));
    assert.match(log, /^build limits: /m, 'the build ran with its caps');
    assert.match(log, new RegExp(`^built on ${builder}: \\S+@sha256:[0-9a-f]{64}`, 'm'));
    assert.equal(log.match(/^buildapp-release-on-/gm)?.length, 1, log);
    // The builder's engine built it (the image and its layers stay there: the next build's cache) …
    const built = await builderDocker.getImage(`berth/${BUILD_APP}:${d!.id}`).inspect();
    assert.equal(built.Config.Labels['berth.server'], builder);
    // … and the manager's engine built nothing: its only images of the app are the pulled digest, labelled by the builder.
    await assert.rejects(managerDocker().getImage(`berth/${BUILD_APP}:${d!.id}`).inspect());
    const onManager = await managerDocker().listImages({ filters: { label: [`berth.app=${BUILD_APP}`] } });
    assert.ok(onManager.length >= 1);
    for (const img of onManager) assert.equal(img.Labels['berth.server'], builder, JSON.stringify(img.RepoTags));
    const svcs = (await managerDocker().listServices({ filters: { label: [`berth.app=${BUILD_APP}`] } })) as unknown as ServiceInfo[];
    assert.equal(svcs.length, 1);
    const digest = /pushed (\S+@sha256:[0-9a-f]{64})/.exec(log)?.[1];
    assert.equal(svcs[0]!.Spec.TaskTemplate.ContainerSpec.Image, digest);
    assert.equal(await servedBuild(), 'buildapp 1');

    // A build that fails on the builder: the deploy fails naming it, the live version keeps serving.
    buildRepo.commit({ Dockerfile: `${DOCKERFILE}RUN exit 3\n`, 'index.html': 'buildapp 2\n' }, 'buildapp 2 fails to build');
    const latest = async () => (await json<DeploymentJson[]>(['deployments', BUILD_APP]))[0]!;
    const bad = await timed('failing build on the builder', () => deployBuild());
    assert.notEqual(bad.code, 0);
    const badD = bad.d ?? (await latest());
    assert.equal(badD.status, 'failed');
    assert.match(badD.reason ?? '', new RegExp(`^build on ${builder} failed: `));
    assert.deepEqual(await phases(badD.id), ['queued', 'fetching', 'building', 'failed']);
    assert.equal(await servedBuild(), 'buildapp 1');

    // The builder offline: the deploy fails at once, naming it.
    const tasksOnBuilder = async () =>
      (await builderDocker.listContainers({ filters: { label: [`berth.app=${BUILD_APP}`, 'com.docker.swarm.task.id'] } })).map((c) => c.Id).sort();
    const tasksBefore = await tasksOnBuilder();
    assert.ok(tasksBefore.length > 0, 'the builder is the ready worker: it runs tasks of the app');
    const passes = () => readFileSync(bed.agent(builder).logFile, 'utf8').match(/"msg":"reconcile pass/g)?.length ?? 0;
    await bed.stopAgent(builder);
    const passesBefore = passes();
    try {
      const offline = await deployBuild();
      assert.notEqual(offline.code, 0);
      const offD = offline.d ?? (await latest());
      assert.equal(offD.status, 'failed');
      assert.match(offD.reason ?? '', new RegExp(`^build on ${builder} failed: ${builder} is offline`));
    } finally {
      await bed.startAgent(builder);
    }
    // The builder's own reconciler leaves Swarm's tasks alone (their image carries the builder's berth.server label).
    await eventually(async () => passes(), (n) => n > passesBefore, 60_000, 250);
    assert.deepEqual(await tasksOnBuilder(), tasksBefore);
    assert.equal(await servedBuild(), 'buildapp 1');
    assert.equal((await json<{ builder?: string }>(['cluster', 'builder', 'prod', '--manager'])).builder, 'web1');
  });

  // ---- cronapp: cron of a cluster app, stack.yml, nodes pruning unused images, and removing the app ----
  const CRON_APP = 'cronapp';
  const CRON_DOMAIN = 'cronapp.example.test';
  const CRON_SECRET = 'cron-secret-7f3a91';
  // `web` is the web tasks' alias on the app's overlay network (dnsrr: the tasks' own addresses).
  const cronYml = `processes:
  web: { command: "exec httpd -f -p $PORT -h /www", scale: 2 }
healthcheck: { path: /up, timeout: 20, interval: 0.3, attempts: 5 }
cron:
  ping:
    schedule: "* * * * *"
    command: 'echo "reached=$(printf "GET /index.html HTTP/1.0\\r\\n\\r\\n" | nc -w 5 web 8000 | tail -n 1)"; [ -n "$CRON_SECRET" ] && echo "secret=$CRON_SECRET"'
`;
  let cronRepo: TestRepo;
  /** The first cronapp release's image (digest reference) and the nodes its web tasks ran on. */
  let cronV1 = { image: '', nodes: [] as string[] };
  const cronServices = async () => (await managerDocker().listServices({ filters: { label: [`berth.app=${CRON_APP}`] } })) as unknown as ServiceInfo[];
  const cronRuns = () => json<CronRunInfo[]>(['cron', 'runs', CRON_APP, 'ping', '--limit', '100']);
  /** Cron containers created on a node since `since` (unix seconds), from its engine's event log. */
  const cronCreations = async (node: string, since: number) =>
    (await bed.swarm.exec(node, ['docker', 'events', '--since', String(since), '--until', String(Math.ceil(Date.now() / 1000) + 1), '--filter', 'type=container', '--filter', 'event=create', '--filter', 'label=berth.cron', '--format', '{{.Actor.Attributes.name}}'], { timeoutMs: 30_000 }))
      .split('\n')
      .filter(Boolean);
  const STACK_DIR = `/var/lib/berth/apps/${CRON_APP}`; // the agents' BERTH_DATA in the nodes

  it('a cluster app cron job runs once per slot cluster-wide, on the manager, on the overlay network, with the env', async () => {
    cronRepo = new TestRepo(join(manager().hostDir, 'cronrepo'));
    cronRepo.commit({ Dockerfile: DOCKERFILE, 'berth.yml': cronYml, 'index.html': 'cron version 1\n', up: 'ok\n' }, 'cron v1');
    await json(['app', 'create', CRON_APP, '--repo', `file://${NODE_HOST_DIR}/cronrepo/remote.git`, '--cluster', 'prod']);
    await json(['domain', 'add', CRON_APP, CRON_DOMAIN]);
    const env = await cli(bed, ['env', 'set', CRON_APP, `CRON_SECRET=${CRON_SECRET}`]);
    assert.equal(env.code, 0, env.stderr);
    const since = Math.floor(Date.now() / 1000) - 1;
    const res = await timed('deploy cronapp v1', () => cli(bed, ['deploy', CRON_APP, '--wait', '--json'], 300_000));
    assert.equal(res.code, 0, `deploy failed: ${res.stderr}\n${bed.tail('web1', 60)}`);

    const [job] = await json<CronJobInfo[]>(['cron', 'ls', CRON_APP]);
    assert.equal(job?.name, 'ping');
    assert.ok(job.nextRunAt, 'scheduled on the manager');

    const manual = await cli(bed, ['cron', 'run', CRON_APP, 'ping'], 120_000);
    assert.equal(manual.code, 0, `${manual.stdout}\n${manual.stderr}\n${bed.tail('web1', 40)}`);
    assert.match(manual.stdout, /^reached=cron version 1$/m, 'the job reached the web tasks by name over the overlay network');
    assert.match(manual.stdout, /^secret=\*\*\*$/m, 'the app env, masked in the output');

    const runs = await timed('a scheduled cron slot', () =>
      eventually(cronRuns, (l) => l.some((r) => r.trigger === 'schedule' && r.status !== 'running' && r.status !== 'skipped') && l.every((r) => r.status !== 'running'), 150_000, 1000),
    );
    const scheduled = runs.filter((r) => r.trigger === 'schedule');
    const ran = scheduled.find((r) => r.status !== 'skipped')!;
    assert.equal(ran.status, 'succeeded', JSON.stringify(ran));
    assert.ok(ran.outputTail.includes('reached=cron version 1'), ran.outputTail.join('\n'));
    const slots = scheduled.map((r) => r.scheduledAt);
    assert.equal(new Set(slots).size, slots.length, `one run per slot: ${slots.join(', ')}`);
    // Cluster-wide: every run is one container created on the manager, none on any other node.
    const started = runs.filter((r) => r.status !== 'skipped');
    assert.equal((await cronCreations(manager().name, since)).length, started.length);
    for (const n of bed.swarm.nodes.filter((x) => x.name !== manager().name)) {
      const r = await bed.swarm.tryExec(n, ['docker', 'info'], { timeoutMs: 10_000 });
      if (r.code !== 0) continue; // the worker the earlier test stopped
      assert.deepEqual(await cronCreations(n.name, since), [], `no cron container on ${n.name}`);
    }
  });

  it('stack.yml documents what runs (a Compose v3 file docker stack config accepts), with the env only in stack.env', async () => {
    const [svc] = await cronServices();
    assert.ok(svc);
    cronV1.image = svc.Spec.TaskTemplate.ContainerSpec.Image;
    const nodes = (await managerDocker().listNodes()) as Array<{ ID: string; Description: { Hostname: string } }>;
    cronV1.nodes = [...new Set((await runningTasks(svc.ID)).map((t) => nodes.find((n) => n.ID === t.NodeID)!.Description.Hostname))];

    const text = await bed.swarm.exec(manager(), ['cat', `${STACK_DIR}/stack.yml`], { timeoutMs: 10_000 });
    assert.doesNotMatch(text, new RegExp(CRON_SECRET));
    const doc = parseYaml(text) as any;
    const web = doc.services.web;
    assert.equal(web.image, cronV1.image);
    assert.deepEqual(web.env_file, ['stack.env']);
    assert.equal(web.deploy.replicas, 2);
    assert.equal(web.deploy.endpoint_mode, 'dnsrr');
    assert.deepEqual(web.deploy.placement.constraints, ['node.role==worker']);
    assert.equal(web.deploy.labels['berth.release'], svc.Spec.Labels['berth.release']);
    assert.deepEqual(web.ports, [{ target: 8000, protocol: 'tcp', mode: 'host' }]);
    assert.deepEqual(web.networks, { [`berth-${CRON_APP}`]: { aliases: ['web'] } });
    assert.deepEqual(doc.networks, { [`berth-${CRON_APP}`]: { external: true } });
    assert.equal(web.logging.options['max-size'], '10m');
    assert.equal((await bed.swarm.exec(manager(), ['stat', '-c', '%a', `${STACK_DIR}/stack.env`, `${STACK_DIR}/stack.yml`], { timeoutMs: 10_000 })).trim(), '600\n600');
    // The real Docker CLI reads it (and the env file next to it): it is `docker stack deploy`-able. The
    // nodes' CLI (Debian's 20.10) has no `docker stack config`: the host's checks a copy of the two files.
    await bed.swarm.exec(manager(), ['sh', '-c', `mkdir -p ${NODE_HOST_DIR}/stackcheck && cp ${STACK_DIR}/stack.yml ${STACK_DIR}/stack.env ${NODE_HOST_DIR}/stackcheck/`], { timeoutMs: 10_000 });
    let checked: string;
    try {
      checked = (await execFileAsync('docker', ['stack', 'config', '-c', join(manager().hostDir, 'stackcheck', 'stack.yml')], { timeout: 30_000 })).stdout;
    } finally {
      await bed.swarm.exec(manager(), ['rm', '-rf', `${NODE_HOST_DIR}/stackcheck`], { timeoutMs: 10_000 });
    }
    const config = parseYaml(checked) as any;
    assert.equal(config.services.web.image, cronV1.image);
    assert.equal(config.services.web.environment.CRON_SECRET, CRON_SECRET, 'stack.env holds the env');
    assert.equal(config.services.web.deploy.endpoint_mode, 'dnsrr');
  });

  it("after a redeploy and the drain, the nodes that ran the previous release's tasks no longer hold its image", async () => {
    assert.ok(cronV1.image && cronV1.nodes.length > 0);
    const workers = cronV1.nodes.filter((n) => n !== manager().name);
    assert.ok(workers.length > 0, `v1 ran on workers: ${cronV1.nodes.join(', ')}`);
    for (const n of workers) await bed.swarm.node(n).docker.getImage(cronV1.image).inspect();
    cronRepo.commit({ 'index.html': 'cron version 2\n' }, 'cron v2');
    const res = await timed('deploy cronapp v2', () => cli(bed, ['deploy', CRON_APP, '--wait', '--json'], 300_000));
    assert.equal(res.code, 0, res.stderr);
    const v2 = (JSON.parse(res.stdout) as DeploymentJson).id;
    await eventually(cronServices, (l) => l.length === 1 && l[0]!.Spec.Labels['berth.release'] === v2, 60_000, 500);
    const gone = async () => (await Promise.all(workers.map((n) => bed.swarm.node(n).docker.getImage(cronV1.image).inspect().then(() => n, () => null)))).filter(Boolean);
    await timed('v1 image pruned on the workers', () => eventually(gone, (left) => left.length === 0, 120_000, 1000));
    // The manager keeps it: a kept release (BERTH_KEEP_RELEASES) for a rollback.
    await managerDocker().getImage(cronV1.image).inspect();
    const stack = parseYaml(await bed.swarm.exec(manager(), ['cat', `${STACK_DIR}/stack.yml`], { timeoutMs: 10_000 })) as any;
    assert.equal(stack.services.web.deploy.labels['berth.release'], v2, 'stack.yml follows the switch');
  });

  it("berth app rm of a cluster app: its services, its overlay network and its site go", async () => {
    const siteExists = async () => (await bed.swarm.tryExec(manager(), ['test', '-e', `/var/lib/berth-nginx/sites/berth-${CRON_APP}.conf`], { timeoutMs: 10_000 })).code === 0;
    assert.ok(await siteExists());
    assert.equal((await cronServices()).length, 1);
    const rm = await cli(bed, ['app', 'rm', CRON_APP, '--json']);
    assert.equal(rm.code, 0, rm.stderr);
    // Names only in a failure message: a service's spec holds the env.
    const names = async () => (await cronServices()).map((x) => x.Spec.Name);
    await timed('cronapp services removed', () => eventually(names, (l) => l.length === 0, 60_000, 500));
    const network = async () => (await managerDocker().listNetworks({ filters: { name: [`berth-${CRON_APP}`] } })).filter((n) => n.Name === `berth-${CRON_APP}`);
    await eventually(network, (l) => l.length === 0, 60_000, 500);
    assert.equal(await siteExists(), false);
    assert.notEqual((await bed.swarm.tryExec(manager(), ['test', '-e', STACK_DIR], { timeoutMs: 10_000 })).code, 0, 'its stack.yml and stack.env are gone');
    // The other cluster app is untouched.
    assert.equal((await services()).length, 1);
  });

  // HTTPS, `berth logs` and `berth status` for a cluster app. The manager's agent is restarted with
  // HTTPS and Pebble for this test only, and as before at its end.
  it("HTTPS, logs and status for a cluster app: Pebble's certificate issued on the manager, served by its nginx from the tasks and kept across a deploy; every task's output", async (t) => {
    const TLS_APP = 'tlsapp';
    const TLS_DOMAIN = 'tls.example.test';
    const hostDir = manager().hostDir;
    // Pebble on the host's side of the test network (the gateway, where the control plane listens for
    // the agents); its DNS sends every name to the manager node, whose nginx answers HTTP-01 on port 80.
    // Tasks on several nodes need two ready workers: a node an earlier test stopped is started again (it rejoins by itself).
    const states = await bed.swarm.nodeStates();
    for (const n of bed.swarm.nodes) if (states.get(n.name)?.status !== 'Ready') await timed(`node ${n.name} started again`, () => bed.swarm.startNode(n));
    const pebble = await timed('pebble', () => startPebble({ httpPort: 80, listenHost: bed.swarm.gateway, defaultIPv4: manager().ip }));
    try {
      copyFileSync(pebble.caFile, join(hostDir, 'acme-listener-ca.pem'));
      writeFileSync(join(hostDir, 'acme-root.pem'), pebble.rootPem);
      await timed('manager agent restarted with HTTPS', async () => {
        await bed.stopAgent('web1');
        await bed.startAgent('web1', {
          BERTH_HTTPS_PORT: '443',
          BERTH_ACME_DIRECTORY: pebble.directoryUrl,
          BERTH_ACME_CA: `${NODE_HOST_DIR}/acme-listener-ca.pem`,
          BERTH_ACME_EMAIL: 'ops@cluster.test',
          // The test names resolve only in Pebble's DNS, not for the agent.
          BERTH_ACME_SKIP_PRECHECK: '1',
        });
      });
      const tlsRepo = new TestRepo(join(hostDir, 'tlsrepo'));
      // Each task prints one line as it starts: `berth logs` must show the ones of every node.
      const yml = BERTH_YML.replace('release: "echo release-ran-on-$(hostname)"\n', '').replace('command: "exec httpd', 'command: "echo tlsapp-task-up; exec httpd');
      tlsRepo.commit({ Dockerfile: DOCKERFILE, 'berth.yml': yml, 'index.html': 'tls version 1\n', up: 'ok\n' }, 'tls version 1');
      await json(['app', 'create', TLS_APP, '--repo', `file://${NODE_HOST_DIR}/tlsrepo/remote.git`, '--cluster', 'prod']);
      await json(['domain', 'add', TLS_APP, TLS_DOMAIN]);
      const deployTls = async () => {
        const res = await cli(bed, ['deploy', TLS_APP, '--wait', '--json'], 300_000);
        assert.equal(res.code, 0, `deploy failed: ${res.stderr}\n${res.stdout}\n${bed.tail('web1', 60)}`);
        return JSON.parse(res.stdout) as DeploymentJson;
      };
      await timed('deploy tlsapp v1', deployTls);

      // https://DOMAIN/ through the manager's nginx, from inside the manager node, verified against
      // Pebble's root: curl checks the chain and that the certificate covers the name.
      const https = () =>
        bed.swarm
          .exec(manager(), ['curl', '-sS', '--max-time', '10', '--cacert', `${NODE_HOST_DIR}/acme-root.pem`, '--resolve', `${TLS_DOMAIN}:443:127.0.0.1`, `https://${TLS_DOMAIN}/`], { timeoutMs: 15_000 })
          .then((body) => body.trim(), (err: Error) => `failed: ${err.message}`);
      const deployed = Date.now();
      await eventually(https, (body) => body === 'tls version 1', 120_000, 1000);
      t.diagnostic(`served over HTTPS ${Date.now() - deployed} ms after the deploy`);
      const site = await bed.swarm.exec(manager(), ['cat', `/var/lib/berth-nginx/sites/berth-${TLS_APP}.conf`], { timeoutMs: 10_000 });
      assert.match(site, /listen 443 ssl/);
      assert.equal((site.match(/server \d+\.\d+\.\d+\.\d+:\d+;/g) ?? []).length, 3, `upstream: the three tasks\n${site}`);
      assert.doesNotMatch(site, /server 127\.0\.0\.1/);
      const redirect = await bed.swarm.exec(manager(), ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '-H', `Host: ${TLS_DOMAIN}`, 'http://127.0.0.1/'], { timeoutMs: 15_000 });
      assert.equal(redirect.trim(), `308 https://${TLS_DOMAIN}/`);

      // A new version: the deploy's switch renders the server block with the certificate.
      tlsRepo.commit({ 'index.html': 'tls version 2\n' }, 'tls version 2');
      const v2 = await timed('deploy tlsapp v2', deployTls);
      assert.equal(await https(), 'tls version 2', "the cluster deploy's switch keeps HTTPS");

      // berth status on the manager: the cluster app, its tasks running/wanted and where, its certificate.
      const status = JSON.parse(await bed.nodeBerth('web1', ['status', '--json'])) as {
        apps: Array<{ name: string; cluster?: string; health: string; processes: Array<{ name: string; running: number; desired: number; containers: Array<{ node?: string }> }>; certificates: Array<{ state: string; certDomains: string[] }> }>;
      };
      const app = status.apps.find((a) => a.name === TLS_APP);
      assert.ok(app, JSON.stringify(status.apps.map((a) => a.name)));
      assert.equal(app.cluster, 'prod');
      assert.deepEqual(app.processes.map((p) => [p.name, p.running, p.desired]), [['web', 3, 3]]);
      assert.equal(app.health, 'healthy');
      assert.deepEqual(app.certificates.map((c) => [c.state, c.certDomains]), [['valid', [TLS_DOMAIN]]]);

      // berth logs: every task's output, wherever it runs, labelled with its task and node.
      const live = ((await managerDocker().listServices({ filters: { label: [`berth.app=${TLS_APP}`, `berth.release=${v2.id}`] } })) as unknown as ServiceInfo[])[0];
      assert.ok(live, 'the live release has its service');
      const nodes = (await managerDocker().listNodes()) as Array<{ ID: string; Description: { Hostname: string } }>;
      const current = (await runningTasks(live.ID)).map((x) => nodes.find((n) => n.ID === x.NodeID)!.Description.Hostname);
      const logs = await cli(bed, ['logs', TLS_APP, '--json']);
      assert.equal(logs.code, 0, logs.stderr);
      const up = (JSON.parse(logs.stdout) as Array<{ process: string; replica?: number; node?: string; text: string }>).filter((l) => l.text === 'tlsapp-task-up');
      assert.deepEqual(up.map((l) => l.replica).sort(), [1, 2, 3], logs.stdout);
      assert.deepEqual([...new Set(up.map((l) => l.node))].sort(), [...new Set(current)].sort(), 'the nodes the tasks run on');
      assert.ok(new Set(up.map((l) => l.node)).size >= 2, 'lines printed on at least two nodes');
      const human = await cli(bed, ['logs', TLS_APP, '--process', 'web']);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /^web\.[123]@\S+ \| tlsapp-task-up$/m);

      // The app removed: its server block and its certificate go from the manager.
      await json(['app', 'rm', TLS_APP]);
      const certDir = `/var/lib/berth/certs/${TLS_APP}`;
      await eventually(() => bed.swarm.exec(manager(), ['sh', '-c', `test -e ${certDir} && echo present || echo gone`], { timeoutMs: 10_000 }), (out) => out.trim() === 'gone', 60_000, 1000);
    } finally {
      // A run that failed before `app rm` would leave its services to the next test.
      const left = (await managerDocker().listServices({ filters: { label: [`berth.app=${TLS_APP}`] } })) as unknown as ServiceInfo[];
      for (const s of left) await managerDocker().getService(s.ID).remove().catch(() => undefined);
      await pebble.stop();
      await bed.stopAgent('web1');
      await bed.startAgent('web1');
    }
  });

  it("a static site on a cluster (build.static): no services, served from the manager's disk by its nginx", async () => {
    const STATIC_APP = 'docs';
    const STATIC_DOMAIN = 'docs.example.test';
    const staticRepo = new TestRepo(join(manager().hostDir, 'staticrepo'));
    staticRepo.commit({ 'berth.yml': 'build: { static: public }\n', 'public/index.html': 'static version 1\n' }, 'static version 1');
    await json(['app', 'create', STATIC_APP, '--repo', `file://${NODE_HOST_DIR}/staticrepo/remote.git`, '--cluster', 'prod']);
    await json(['domain', 'add', STATIC_APP, STATIC_DOMAIN]);
    const deployStatic = async () => {
      const res = await cli(bed, ['deploy', STATIC_APP, '--wait', '--json'], 300_000);
      assert.equal(res.code, 0, `deploy failed: ${res.stderr}\n${res.stdout}\n${bed.tail('web1', 60)}`);
    };
    const get = async () => (await bed.swarm.exec(manager(), ['curl', '-s', '-H', `Host: ${STATIC_DOMAIN}`, 'http://127.0.0.1/'], { timeoutMs: 15_000 })).trim();
    await timed('deploy a static site', deployStatic);
    assert.equal(await get(), 'static version 1');
    const site = await bed.swarm.exec(manager(), ['cat', `/var/lib/berth-nginx/sites/berth-${STATIC_APP}.conf`], { timeoutMs: 10_000 });
    assert.match(site, /\(static site\)/);
    assert.match(site, /root \/var\/lib\/berth-static\/\S+;/);
    assert.deepEqual(await managerDocker().listServices({ filters: { label: [`berth.app=${STATIC_APP}`] } }), [], 'no services');
    staticRepo.commit({ 'public/index.html': 'static version 2\n' }, 'static version 2');
    await timed('deploy a static site v2', deployStatic);
    assert.equal(await get(), 'static version 2');
    const status = JSON.parse(await bed.nodeBerth('web1', ['status', '--json'])) as { apps: Array<{ name: string; health: string; cluster?: string }> };
    assert.deepEqual(status.apps.filter((a) => a.name === STATIC_APP).map((a) => [a.health, a.cluster]), [['static', 'prod']]);
  });
});
