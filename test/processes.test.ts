// agent/processes.ts against the real Docker engine: busybox httpd as the "web" process.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { buildImage } from '../agent/build/image.js';
import { berthLabels } from '../agent/docker/labels.js';
import { ProcessError, listBerthContainers, removeContainer, startWebContainer } from '../agent/docker/containers.js';
import { HealthCheckError, waitHealthy } from '../agent/docker/health.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { makeTmpDir } from './helpers/tmp.js';

const APP = `proctest${process.pid}`;

async function httpGet(port: number): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

describe('processes: web containers', () => {
  let docker: Docker;
  let root: string;
  let webImage: string;
  let plainImage: string;
  let foreignId: string | undefined;

  async function image(name: string, dockerfile: string): Promise<string> {
    const dir = join(root, name);
    rmSync(dir, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir);
    writeFileSync(join(dir, 'Dockerfile'), dockerfile);
    const tag = `berth-test/${APP}:${name}`;
    await buildImage(docker, { contextDir: dir, tag, labels: berthLabels(APP, name), log: () => {} });
    return tag;
  }

  before(async () => {
    docker = await ensureDocker();
    const base = await ensureBusyboxImage();
    root = makeTmpDir('proc');
    webImage = await image(
      'web',
      `FROM ${base}\nRUN mkdir -p /www && echo "hello berth" > /www/index.html\nEXPOSE 9000\nCMD ["sh", "-c", "httpd -f -p $PORT -h /www"]\n`,
    );
    plainImage = await image('plain', `FROM ${base}\nCMD ["sh", "-c", "echo boom-output; echo second line >&2; exit 3"]\n`);
  });

  after(async () => {
    for (const c of await listBerthContainers(docker, { app: APP })) await docker.getContainer(c.id).remove({ force: true }).catch(() => {});
    if (foreignId) await docker.getContainer(foreignId).remove({ force: true }).catch(() => {});
    const images = await docker.listImages({ filters: { label: ['berth.managed=true', `berth.app=${APP}`] } });
    for (const img of images) await docker.getImage(img.Id).remove({ force: true }).catch(() => {});
    rmSync(root, { recursive: true, force: true });
  });

  it('starts a web container on a loopback port, health-gates it and serves its page', async () => {
    const started = await startWebContainer(docker, { app: APP, deploymentId: 'd1', image: webImage, env: { GREETING: 'a=b c' } });
    assert.equal(started.name, `berth-${APP}-web-d1`);
    assert.equal(started.containerPort, 9000, 'port taken from EXPOSE');
    const lines: string[] = [];
    await waitHealthy(docker, { containerId: started.id, hostPort: started.hostPort, timeoutMs: 15_000, stableMs: 500, log: (l) => lines.push(l) });
    assert.ok(lines.some((l) => l.includes('healthy')), lines.join('\n'));
    const res = await httpGet(started.hostPort);
    assert.equal(res.status, 200);
    assert.equal(res.body.trim(), 'hello berth');

    const info = await docker.getContainer(started.id).inspect();
    assert.equal(info.Config.Labels['berth.managed'], 'true');
    assert.equal(info.Config.Labels['berth.app'], APP);
    assert.equal(info.Config.Labels['berth.process'], 'web');
    assert.equal(info.Config.Labels['berth.deployment'], 'd1');
    assert.ok(info.Config.Env.includes('PORT=9000'));
    assert.ok(info.Config.Env.includes('GREETING=a=b c'));
    assert.equal(info.HostConfig.RestartPolicy?.Name, 'unless-stopped');
    assert.deepEqual(info.HostConfig.PortBindings?.['9000/tcp'], [{ HostIp: '127.0.0.1', HostPort: String(started.hostPort) }]);

    // A crash restarts the container on the same host port, so nginx's upstream stays valid.
    const exec = await docker.getContainer(started.id).exec({ Cmd: ['sh', '-c', 'kill $(pidof httpd)'] });
    const execRes = (await exec.start({ Detach: true })) as unknown as NodeJS.ReadableStream;
    execRes.resume(); // an unread response would keep its socket (and this process) alive
    const until = Date.now() + 10_000;
    let restarted = false;
    while (Date.now() < until && !restarted) {
      const i = await docker.getContainer(started.id).inspect();
      restarted = i.RestartCount > 0 && i.State.Status === 'running'; // Running is also true while "restarting"
      if (!restarted) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(restarted, 'container was restarted by its restart policy');
    const listed = (await listBerthContainers(docker, { app: APP })).find((c) => c.id === started.id);
    assert.equal(listed?.hostPort, started.hostPort);
    let body = '';
    for (const deadline = Date.now() + 10_000; Date.now() < deadline && body !== 'hello berth'; ) {
      body = await httpGet(started.hostPort).then((r) => r.body.trim(), () => '');
      if (body !== 'hello berth') await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(body, 'hello berth', 'served again on the same port');
    // waitHealthy is for fresh containers: one that has crashed since it was created fails it.
    await assert.rejects(
      waitHealthy(docker, { containerId: started.id, hostPort: started.hostPort, timeoutMs: 10_000, stableMs: 0, log: () => {} }),
      (err: unknown) => err instanceof HealthCheckError && /exited with code 143 and was restarted/.test(err.message),
    );

    await removeContainer(docker, started.id, { graceSeconds: 2 });
    await assert.rejects(docker.getContainer(started.id).inspect(), 'removed');
    await removeContainer(docker, started.id, { graceSeconds: 2 }); // already gone: not an error
  });

  it('uses an explicit port, else 8000 for images without EXPOSE', async () => {
    const explicit = await startWebContainer(docker, { app: APP, deploymentId: 'd2', image: webImage, env: {}, port: 8081 });
    assert.equal(explicit.containerPort, 8081);
    await waitHealthy(docker, { containerId: explicit.id, hostPort: explicit.hostPort, timeoutMs: 15_000, stableMs: 200, log: () => {} });
    assert.equal((await httpGet(explicit.hostPort)).body.trim(), 'hello berth');
    const dflt = await startWebContainer(docker, { app: APP, deploymentId: 'd3', image: plainImage, env: {} });
    assert.equal(dflt.containerPort, 8000);
    await removeContainer(docker, explicit.id, { graceSeconds: 1 });
    await removeContainer(docker, dflt.id, { graceSeconds: 0 });
  });

  it('waitHealthy fails fast with the exit code and the last log lines when the process exits', async () => {
    const c = await startWebContainer(docker, { app: APP, deploymentId: 'd4', image: plainImage, env: {} });
    const t0 = Date.now();
    await assert.rejects(
      waitHealthy(docker, { containerId: c.id, hostPort: c.hostPort, timeoutMs: 30_000, stableMs: 1000, log: () => {} }),
      (err: unknown) =>
        err instanceof HealthCheckError &&
        /exited with code 3/.test(err.message) &&
        err.message.includes('boom-output') &&
        err.message.includes('second line'),
    );
    assert.ok(Date.now() - t0 < 8000, `failed after ${Date.now() - t0} ms`);
    await removeContainer(docker, c.id, { graceSeconds: 0 });
  });

  it('waitHealthy times out when nothing listens on $PORT (docker-proxy alone is not "up")', async () => {
    const c = await startWebContainer(docker, { app: APP, deploymentId: 'd5', image: webImage, env: {}, port: 8000 });
    // Make the app listen on the wrong port: PORT is 8000, httpd on 8001.
    await removeContainer(docker, c.id, { graceSeconds: 0 });
    const wrong = await image('wrong', `FROM ${webImage}\nCMD ["sh", "-c", "httpd -f -p 8001 -h /www"]\n`);
    const w = await startWebContainer(docker, { app: APP, deploymentId: 'd6', image: wrong, env: {}, port: 8000 });
    await assert.rejects(
      waitHealthy(docker, { containerId: w.id, hostPort: w.hostPort, timeoutMs: 2000, stableMs: 200, log: () => {} }),
      (err: unknown) => err instanceof HealthCheckError && /did not accept connections/.test(err.message),
    );
    await removeContainer(docker, w.id, { graceSeconds: 0 });
  });

  it('honours an abort signal while waiting', async () => {
    const c = await startWebContainer(docker, { app: APP, deploymentId: 'd7', image: webImage, env: {} });
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('cancelled')), 300);
    await assert.rejects(
      waitHealthy(docker, { containerId: c.id, hostPort: c.hostPort, timeoutMs: 30_000, stableMs: 20_000, log: () => {}, signal: ac.signal }),
      /cancelled/,
    );
    await removeContainer(docker, c.id, { graceSeconds: 0 });
  });

  it('lists only berth-managed containers and refuses to remove foreign ones', async () => {
    const base = await ensureBusyboxImage();
    // Carries berth.app but not berth.managed=true: still not ours.
    const foreign = await docker.createContainer({ Image: base, Cmd: ['sleep', '60'], Labels: { 'berth.app': APP }, name: `not-berth-${process.pid}` });
    foreignId = foreign.id;
    const mine = await startWebContainer(docker, { app: APP, deploymentId: 'd8', image: webImage, env: {} });
    const all = await listBerthContainers(docker);
    const forApp = await listBerthContainers(docker, { app: APP });
    assert.ok(!all.some((c) => c.id === foreign.id));
    assert.ok(!forApp.some((c) => c.id === foreign.id));
    const entry = forApp.find((c) => c.id === mine.id);
    assert.deepEqual(entry, {
      id: mine.id,
      name: mine.name,
      app: APP,
      process: 'web',
      deploymentId: 'd8',
      state: 'running',
      hostPort: mine.hostPort,
      replica: 1,
    });
    assert.ok(all.every((c) => c.app !== '' && c.deploymentId !== ''));
    assert.deepEqual(await listBerthContainers(docker, { app: `${APP}x` }), []);
    await assert.rejects(removeContainer(docker, foreign.id, { graceSeconds: 0 }), ProcessError);
    await docker.getContainer(foreign.id).inspect(); // still there
    await removeContainer(docker, mine.id, { graceSeconds: 0 });
  });

  it('rejects bad input before touching Docker', async () => {
    await assert.rejects(startWebContainer(docker, { app: 'Bad_Name', deploymentId: 'd9', image: webImage, env: {} }), ProcessError);
    await assert.rejects(startWebContainer(docker, { app: APP, deploymentId: '../x', image: webImage, env: {} }), ProcessError);
    await assert.rejects(startWebContainer(docker, { app: APP, deploymentId: 'd9', image: webImage, env: { 'A=B': 'x' } }), ProcessError);
    await assert.rejects(
      startWebContainer(docker, { app: APP, deploymentId: 'd9', image: 'berth-test/does-not-exist:1', env: {} }),
      (err: unknown) => err instanceof ProcessError && /not found/.test(err.message),
    );
  });
});
