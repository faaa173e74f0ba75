// Volumes, end to end with real parts (the compiled CLI's control plane and agent, Docker, nginx,
// Git): what the release command writes to a volume the web process serves; the data survives a
// redeploy, a rollback, an agent restart and a plain `berth app rm`; only `--purge-volumes` deletes
// it, even when ordered while the agent is offline.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import pino from 'pino';
import { startControlPlane, type RunningControlPlane } from '../control-plane/main.js';
import { adminApi, FakeAgent } from './helpers/fake-agent.js';
import { makeTmpDir } from './helpers/tmp.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import type { DeploymentJson } from './helpers/fixtures.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { Stack } from './helpers/stack.js';

const APP = `vol${process.pid}`;
const DOMAIN = `${APP}.volumes.test`;
const VOLUME = `berth-${APP}_data`;

// The release command appends the release's version to a file on the volume; web serves it.
const berthYml = `release: cat /www/version >> /data/releases.txt
processes:
  web: ln -sfn /data /www/data && exec httpd -f -p $PORT -h /www
volumes:
  data: { target: /data }
`;
const dockerfile = `FROM berth-test/busybox:latest
COPY . /www
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
`;

describe('volumes: data that outlives deploys, rollbacks and app removal', () => {
  let stack: Stack;
  let repo: TestRepo;
  let docker: Docker;

  const deploy = async (): Promise<DeploymentJson> => {
    const res = await berth(['deploy', APP, '--wait', '--json'], stack.env);
    assert.equal(res.code, 0, `deploy failed:\n${res.stdout}\n${res.stderr}\n${stack.tail('agent.log', 30)}`);
    return JSON.parse(res.stdout) as DeploymentJson;
  };
  const served = async (path: string) => (await httpGet(stack.httpPort, DOMAIN, path)).body;
  const volumeLabels = async (): Promise<Record<string, string> | null> => {
    try {
      return ((await docker.getVolume(VOLUME).inspect()) as { Labels: Record<string, string> }).Labels;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return null;
      throw err;
    }
  };
  const appContainers = async () =>
    docker.listContainers({ all: true, filters: { label: [`berth.app=${APP}`, `berth.server=${stack.serverName}`] } });
  const createApp = async () => {
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
  };

  before(async () => {
    docker = await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('volumes');
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ Dockerfile: dockerfile, 'berth.yml': berthYml, 'index.html': 'v1\n', version: 'v1\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await createApp();
  });

  after(async () => {
    await stack?.destroy();
    // Volumes are not the stack's to clean up: this test's own, scoped by its server's label.
    const left = (await docker.listVolumes({ filters: JSON.stringify({ label: [`berth.server=${stack.serverName}`] }) })) as { Volumes?: Array<{ Name: string }> | null };
    for (const v of left.Volumes ?? []) await docker.getVolume(v.Name).remove().catch(() => {});
  });

  it('the web process serves what the release command wrote to the volume', async () => {
    const d = await deploy();
    assert.equal(await served('/'), 'v1\n');
    assert.equal(await served('/data/releases.txt'), 'v1\n');
    const labels = await volumeLabels();
    assert.deepEqual(
      labels && { managed: labels['berth.managed'], app: labels['berth.app'], volume: labels['berth.volume'], server: labels['berth.server'] },
      { managed: 'true', app: APP, volume: 'data', server: stack.serverName },
    );
    const [web] = await appContainers();
    const info = await docker.getContainer(web!.Id).inspect();
    assert.equal(info.Config.Labels['berth.deployment'], d.id);
    assert.deepEqual(
      info.Mounts.map((m) => ({ type: m.Type, name: m.Name, destination: m.Destination, rw: m.RW })),
      [{ type: 'volume', name: VOLUME, destination: '/data', rw: true }],
    );
  });

  it('a redeploy keeps the data, a rollback keeps it too (and runs no release command)', async () => {
    repo.commit({ 'index.html': 'v2\n', version: 'v2\n' });
    await deploy();
    assert.equal(await served('/'), 'v2\n');
    assert.equal(await served('/data/releases.txt'), 'v1\nv2\n', 'the first release wrote it, the second appended');

    const res = await berth(['rollback', APP, '--json'], stack.env);
    assert.equal(res.code, 0, `${res.stderr}\n${stack.tail('agent.log', 30)}`);
    assert.equal((JSON.parse(res.stdout) as DeploymentJson).status, 'done');
    assert.equal(await served('/'), 'v1\n', 'the old release serves');
    assert.equal(await served('/data/releases.txt'), 'v1\nv2\n', 'with the data as it is now');
  });

  it('an agent restart re-creates a lost container with the volume mounted', async () => {
    await stack.stopAgent();
    for (const c of await appContainers()) await docker.getContainer(c.Id).remove({ force: true });
    await stack.startAgent();
    await eventually(() => served('/data/releases.txt').catch(() => ''), (b) => b === 'v1\nv2\n', 30_000);
  });

  it('`berth app rm` keeps the volume and its data; the app re-created under that name gets them back', async () => {
    assert.ok(existsSync(join(stack.agentData, 'apps', APP, 'app.env')));
    const rm = await berth(['app', 'rm', APP], stack.env);
    assert.equal(rm.code, 0, rm.stderr);
    assert.match(rm.stdout, /volumes are kept/);
    await eventually(appContainers, (list) => list.length === 0, 30_000);
    await eventually(async () => existsSync(join(stack.agentData, 'apps', APP)), (exists) => !exists, 10_000);
    assert.equal((await volumeLabels())?.['berth.app'], APP, 'the volume is still there');

    await createApp();
    repo.commit({ 'index.html': 'v3\n', version: 'v3\n' });
    await deploy();
    assert.equal(await served('/data/releases.txt'), 'v1\nv2\nv3\n');
  });

  it('`berth app rm --purge-volumes` ordered while the agent is offline deletes the volume once it is back', async () => {
    await stack.stopAgent();
    const rm = await berthJson<{ deleted: string; purgeVolumes?: boolean }>(['app', 'rm', APP, '--purge-volumes'], stack.env);
    assert.deepEqual(rm, { deleted: APP, purgeVolumes: true });
    assert.ok(await volumeLabels(), 'nothing happens without the agent');
    await stack.startAgent();
    await eventually(volumeLabels, (labels) => labels === null, 30_000).catch((err) => {
      throw new Error(`the volume was not purged: ${String(err)}\n${stack.tail('agent.log', 30)}`);
    });
    assert.equal((await appContainers()).length, 0);
  });
});

describe('control plane: a purge of volumes is part of the server\'s desired state until the app is re-created', () => {
  let cp: RunningControlPlane;
  let agent: FakeAgent;
  let credential: string;
  const root = makeTmpDir('berth-volumes-cp-');
  const api = (method: string, path: string, body?: unknown) => adminApi(cp)(method, path, body);
  const createShop = async () => assert.equal((await api('POST', '/api/apps', { name: 'shop', repo: 'https://example.com/shop.git', server: 'delta' })).status, 201);

  before(async () => {
    cp = await startControlPlane({ dataDir: join(root, 'data'), listen: '127.0.0.1:0', logger: pino({ level: 'silent' }) });
    const server = (await api('POST', '/api/servers', { name: 'delta' })).body;
    const joined = await fetch(cp.url + '/api/agent/join', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: server.joinToken }) });
    credential = ((await joined.json()) as { credential: string }).credential;
    agent = await FakeAgent.join(cp.url, credential);
    await createShop();
    await agent.next('desired_state');
  });
  after(async () => {
    agent?.close();
    await cp?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('a plain removal purges nothing; --purge-volumes names the app; re-creating it clears that', async () => {
    assert.deepEqual(await api('DELETE', '/api/apps/shop'), { status: 200, body: { deleted: 'shop' } });
    assert.equal((await agent.next('desired_state')).spec.purgeVolumes, undefined);

    await createShop();
    await agent.next('desired_state');
    const bad = await api('DELETE', '/api/apps/shop?purgeVolumes=yes');
    assert.equal(bad.status, 400);
    assert.match(bad.body.error, /purgeVolumes/);
    assert.deepEqual(await api('DELETE', '/api/apps/shop?purgeVolumes=1'), { status: 200, body: { deleted: 'shop', purgeVolumes: true } });
    const purge = (await agent.next('desired_state')).spec;
    assert.deepEqual([purge.apps, purge.purgeVolumes], [[], ['shop']]);

    // An agent that was offline gets it when it connects.
    agent.close();
    await agent.closed;
    agent = await FakeAgent.connect(cp.url, credential);
    agent.hello();
    await agent.next('welcome');
    assert.deepEqual((await agent.next('desired_state')).spec.purgeVolumes, ['shop']);

    await createShop();
    const recreated = (await agent.next('desired_state')).spec;
    assert.deepEqual([recreated.apps.map((a: { name: string }) => a.name), recreated.purgeVolumes], [['shop'], undefined], "the new app's volumes are not purged");
  });
});
