// DATA/apps/APP/docker-compose.yml: after a deploy and after a rollback it describes exactly the
// containers that run (images, commands, mounts, ports, restart policy, labels, checked against the
// Docker API), references the env file instead of holding secrets, and the env file is 0600 in a
// 0700 directory. Real parts: the compiled CLI's control plane and agent, Docker, nginx, Git.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import YAML from 'yaml';
import { renderEnvFile } from '../agent/docker/compose-file.js';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import type { DeploymentJson } from './helpers/fixtures.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { Stack } from './helpers/stack.js';

const APP = `compose${process.pid}`;
const DOMAIN = `${APP}.compose.test`;
const SECRETS = { DATABASE_URL: 'postgres://u:hunter2-db@db/x', API_TOKEN: 'tok-9f8e7d6c5b4a', QUOTED: "it's $HOME" };

const berthYml = `release: echo migrated > /data/migrated
processes:
  web: exec httpd -f -p $PORT -h /www
  worker: { command: "while true; do sleep 5; done", scale: 2 }
volumes:
  data: { target: /data }
  cache: { target: /var/cache/app }
`;
const dockerfile = `FROM berth-test/busybox:latest
COPY . /www
CMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]
`;

interface ComposeService {
  image: string;
  command?: string[];
  env_file: string[];
  environment?: Record<string, string>;
  ports?: Array<{ target: number; host_ip: string; published: string; protocol: string }>;
  restart: string;
  init: boolean;
  labels: Record<string, string>;
  volumes?: Array<{ type: string; source: string; target: string }>;
  profiles?: string[];
}
interface ComposeDoc {
  name: string;
  'x-berth': { app: string; deployment: string; commit: string };
  services: Record<string, ComposeService>;
  volumes: Record<string, { name: string }>;
}

describe('docker-compose.yml describes what runs', () => {
  let stack: Stack;
  let repo: TestRepo;
  let docker: Docker;
  const dir = () => join(stack.agentData, 'apps', APP);
  const readCompose = (): { text: string; doc: ComposeDoc } => {
    const text = readFileSync(join(dir(), 'docker-compose.yml'), 'utf8');
    return { text, doc: YAML.parse(text) as ComposeDoc };
  };
  const deploy = async (args: string[] = ['deploy', APP, '--wait', '--json']): Promise<DeploymentJson> => {
    const res = await berth(args, stack.env);
    assert.equal(res.code, 0, `${args[0]} failed:\n${res.stdout}\n${res.stderr}\n${stack.tail('agent.log', 30)}`);
    return JSON.parse(res.stdout) as DeploymentJson;
  };

  /** Every running container of the live deployment matches its service in the file, and nothing else is in it. */
  async function assertMatchesRunning(doc: ComposeDoc, deploymentId: string): Promise<void> {
    assert.equal(doc['x-berth'].deployment, deploymentId);
    const listed = await docker.listContainers({ filters: { label: [`berth.app=${APP}`, `berth.server=${stack.serverName}`, `berth.deployment=${deploymentId}`] } });
    const running = await Promise.all(listed.map((c) => docker.getContainer(c.Id).inspect()));
    const serviceOf = (c: Docker.ContainerInspectInfo) => {
      const replica = Number(c.Config.Labels['berth.replica']);
      return replica === 1 ? c.Config.Labels['berth.process']! : `${c.Config.Labels['berth.process']}-${replica}`;
    };
    assert.deepEqual(
      running.map(serviceOf).sort(),
      Object.keys(doc.services).filter((s) => s !== 'release').sort(),
      'one service per running container',
    );
    for (const c of running) {
      const name = serviceOf(c);
      const s = doc.services[name]!;
      assert.equal(s.image, c.Config.Image, `${name}: image`);
      // Compose reads $$ as a literal $: what the container got.
      assert.deepEqual(s.command?.map((a) => a.replaceAll('$$', '$')), c.Config.Cmd, `${name}: command`);
      assert.deepEqual(
        (s.volumes ?? []).map((v) => ({ name: doc.volumes[v.source]!.name, target: v.target })).sort((a, b) => a.target.localeCompare(b.target)),
        c.Mounts.filter((m) => m.Type === 'volume').map((m) => ({ name: m.Name, target: m.Destination })).sort((a, b) => a.target.localeCompare(b.target)),
        `${name}: volumes`,
      );
      assert.equal(s.restart, c.HostConfig.RestartPolicy?.Name, `${name}: restart policy`);
      assert.equal(s.init, c.HostConfig.Init, `${name}: init`);
      for (const [k, v] of Object.entries(s.labels)) assert.equal(c.Config.Labels[k], v, `${name}: label ${k}`);
      const bindings = Object.entries(c.HostConfig.PortBindings ?? {}).flatMap(([key, list]) =>
        ((list ?? []) as Array<{ HostIp: string; HostPort: string }>).map((b) => ({ target: Number(key.split('/')[0]), host_ip: b.HostIp, published: b.HostPort, protocol: 'tcp' })),
      );
      assert.deepEqual(s.ports ?? [], bindings, `${name}: ports`);
      if (s.environment) for (const [k, v] of Object.entries(s.environment)) assert.ok(c.Config.Env.includes(`${k}=${v}`), `${name}: ${k}`);
    }
  }

  before(async () => {
    docker = await ensureDocker();
    await ensureBusyboxImage();
    stack = await Stack.create('compose');
    stack.apps.add(APP);
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ Dockerfile: dockerfile, 'berth.yml': berthYml, 'index.html': 'one\n' });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    await berthJson(['app', 'create', APP, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', APP, DOMAIN], stack.env);
    const set = await berth(['env', 'set', APP, ...Object.entries(SECRETS).map(([k, v]) => `${k}=${v}`)], stack.env);
    assert.equal(set.code, 0, set.stderr);
  });

  after(async () => {
    await stack?.destroy();
    const left = (await docker.listVolumes({ filters: JSON.stringify({ label: [`berth.server=${stack.serverName}`] }) })) as { Volumes?: Array<{ Name: string }> | null };
    for (const v of left.Volumes ?? []) await docker.getVolume(v.Name).remove().catch(() => {});
  });

  let first: DeploymentJson;

  it('is written on a deploy: parses, matches the running containers, holds no secret', async () => {
    first = await deploy();
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'one\n');
    const { text, doc } = readCompose();
    assert.equal(doc.name, `berth-${APP}`);
    assert.deepEqual(Object.keys(doc.services).sort(), ['release', 'web', 'worker', 'worker-2']);
    await assertMatchesRunning(doc, first.id);
    assert.deepEqual(doc.services.web!.command, ['/bin/sh', '-c', 'exec httpd -f -p $$PORT -h /www'], '$PORT is left to the container');
    assert.equal(doc.services.web!.ports?.length, 1);
    assert.deepEqual(doc.services.release!.profiles, ['release'], 'the release command is not started by `docker compose up`');
    assert.deepEqual(doc.services.release!.command, ['/bin/sh', '-c', 'echo migrated > /data/migrated']);
    assert.deepEqual(
      Object.fromEntries(Object.entries(doc.volumes).map(([k, v]) => [k, v.name])),
      { data: `berth-${APP}_data`, cache: `berth-${APP}_cache` },
    );
    for (const s of Object.values(doc.services)) assert.deepEqual(s.env_file, ['app.env']);
    for (const value of Object.values(SECRETS)) assert.ok(!text.includes(value), `a secret is in docker-compose.yml: ${value}`);
    assert.ok(!text.includes('hunter2'));

    const envFile = join(dir(), 'app.env');
    assert.equal(statSync(envFile).mode & 0o777, 0o600, 'app.env is 0600');
    assert.equal(statSync(dir()).mode & 0o777, 0o700, 'the directory is 0700');
    assert.equal(statSync(join(dir(), 'docker-compose.yml')).mode & 0o777, 0o600);
    const env = readFileSync(envFile, 'utf8');
    assert.equal(env, renderEnvFile(SECRETS));
    assert.ok(env.includes(`API_TOKEN='${SECRETS.API_TOKEN}'\n`), env.replace(/=.*/g, '=…'));
    assert.deepEqual(readdirSync(dir()).sort(), ['app.env', 'docker-compose.yml'], 'no temp files are left behind');
  });

  it('is rewritten on a redeploy and on a rollback, each time matching what runs', async () => {
    repo.commit({ 'index.html': 'two\n' });
    const second = await deploy();
    let { doc } = readCompose();
    await assertMatchesRunning(doc, second.id);
    assert.equal(doc.services.web!.image, `berth/${APP}:${second.id}`);

    const back = await deploy(['rollback', APP, '--json']);
    assert.equal((await httpGet(stack.httpPort, DOMAIN)).body, 'one\n');
    ({ doc } = readCompose());
    await assertMatchesRunning(doc, back.id);
    assert.equal(doc.services.web!.image, `berth/${APP}:${first.id}`, 'the rolled-back release runs its own image');
    assert.equal(doc['x-berth'].commit, first.commit);
  });

  it('goes with the app: `berth app rm` deletes the directory with the env file', async () => {
    await berthJson(['app', 'rm', APP], stack.env);
    await eventually(async () => existsSync(dir()), (exists) => !exists, 20_000);
  });
});

describe('app.env as docker compose reads it', () => {
  it('single-quotes values (taken literally); a value with a quote is double-quoted with escapes', () => {
    assert.equal(renderEnvFile({ B: 'x y $Z #c', A: 'multi\nline' }), "A='multi\nline'\nB='x y $Z #c'\n");
    assert.equal(renderEnvFile({ Q: `it's "$HOME" \\ ok` }), 'Q="it\'s \\"$$HOME\\" \\\\ ok"\n');
  });
});
