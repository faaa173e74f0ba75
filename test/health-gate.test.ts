// The health gate against the real Docker engine: an HTTP probe straight to the new container
// (published port, not nginx) carrying the app's Host header, at the configured interval and with
// a bounded number of attempts; and removal that stops a container with SIGTERM, then SIGKILL.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { buildImage } from '../agent/build/image.js';
import { berthLabels } from '../agent/docker/labels.js';
import { listBerthContainers, removeContainer, startWebContainer } from '../agent/docker/containers.js';
import { HealthCheckError, waitHealthy } from '../agent/docker/health.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { makeTmpDir } from './helpers/tmp.js';

const APP = `healthgate${process.pid}`;
// /up answers 200 only for the app's own Host header, like an app behind a host-checking framework.
const UP_CGI = `#!/bin/sh
if [ "$HTTP_HOST" = "app.example.test" ]; then
  printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nup\\n'
else
  printf 'HTTP/1.0 404 Not Found\\r\\nContent-Type: text/plain\\r\\n\\r\\nwrong host %s\\n' "$HTTP_HOST"
fi
`;

describe('health gate: HTTP probe with the Host header, interval and attempts; stop with a grace period', () => {
  let docker: Docker;
  let root: string;
  let image: string;
  let stubborn: string;

  before(async () => {
    docker = await ensureDocker();
    const base = await ensureBusyboxImage();
    root = makeTmpDir('health-gate');
    const build = async (name: string, files: Record<string, string>) => {
      const dir = join(root, name);
      mkdirSync(join(dir, 'cgi-bin'), { recursive: true });
      for (const [f, content] of Object.entries(files)) writeFileSync(join(dir, f), content, { mode: 0o755 });
      const tag = `berth-test/${APP}:${name}`;
      await buildImage(docker, { contextDir: dir, tag, labels: berthLabels(APP, name), log: () => {} });
      return tag;
    };
    image = await build('web', {
      'cgi-bin/up': UP_CGI,
      Dockerfile: `FROM ${base}\nCOPY cgi-bin /www/cgi-bin\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n`,
    });
    // Ignores SIGTERM: only the SIGKILL after the grace period stops it.
    stubborn = await build('stubborn', { Dockerfile: `FROM ${base}\nCMD ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]\n` });
  });

  after(async () => {
    for (const c of await listBerthContainers(docker, { app: APP })) await docker.getContainer(c.id).remove({ force: true }).catch(() => {});
    for (const tag of [image, stubborn]) if (tag) await docker.getImage(tag).remove({ force: true }).catch(() => {});
    rmSync(root, { recursive: true, force: true });
  });

  it('passes when GET /up with the app\'s Host header answers 2xx', async () => {
    const c = await startWebContainer(docker, { app: APP, deploymentId: 'dep00001', image, env: {}, port: 8000 });
    const lines: string[] = [];
    await waitHealthy(docker, { containerId: c.id, hostPort: c.hostPort, timeoutMs: 10_000, stableMs: 200, log: (l) => lines.push(l), httpPath: '/cgi-bin/up', host: 'app.example.test', intervalMs: 100 });
    assert.ok(lines.some((l) => /answers GET \/cgi-bin\/up \(200\)/.test(l)), lines.join('\n'));
    await removeContainer(docker, c.id, { graceSeconds: 1 });
  });

  it('fails after the configured number of failed probes, naming the last answer, with the container\'s output', async () => {
    const c = await startWebContainer(docker, { app: APP, deploymentId: 'dep00002', image, env: {}, port: 8000 });
    const lines: string[] = [];
    const err = await waitHealthy(docker, {
      containerId: c.id,
      hostPort: c.hostPort,
      timeoutMs: 30_000,
      stableMs: 200,
      log: (l) => lines.push(l),
      httpPath: '/cgi-bin/up',
      host: 'other.example.test',
      intervalMs: 100,
      attempts: 3,
    }).catch((e: unknown) => e);
    assert.ok(err instanceof HealthCheckError);
    assert.match(err.message, /^GET \/cgi-bin\/up failed 3 health probes in a row \(last: 404\)/);
    assert.ok(lines.some((l) => l.includes('(Host: other.example.test)')), lines.join('\n'));
    await removeContainer(docker, c.id, { graceSeconds: 0 });
  });

  it('without attempts, keeps probing until the whole budget is spent', async () => {
    const c = await startWebContainer(docker, { app: APP, deploymentId: 'dep00003', image, env: {}, port: 8000 });
    const err = await waitHealthy(docker, { containerId: c.id, hostPort: c.hostPort, timeoutMs: 1500, stableMs: 200, log: () => {}, httpPath: '/cgi-bin/up', intervalMs: 100 }).catch((e: unknown) => e);
    assert.ok(err instanceof HealthCheckError);
    assert.match(err.message, /^GET \/cgi-bin\/up did not answer 2xx\/3xx within 2 s \(last: 404\)/);
    await removeContainer(docker, c.id, { graceSeconds: 0 });
  });

  it('stops a container that ignores SIGTERM with SIGKILL after the grace period', async () => {
    const c = await startWebContainer(docker, { app: APP, deploymentId: 'dep00004', image: stubborn, env: {}, port: 8000 });
    await new Promise((r) => setTimeout(r, 500));
    await removeContainer(docker, c.id, { graceSeconds: 1 });
    await assert.rejects(docker.getContainer(c.id).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
    // The engine's record of it: a TERM first, then the KILL.
    const since = Math.floor(Date.now() / 1000) - 30;
    const stream = (await docker.getEvents({ since, until: Math.ceil(Date.now() / 1000) + 1, filters: { container: [c.id], event: ['kill'] } })) as NodeJS.ReadableStream;
    let text = '';
    for await (const chunk of stream) text += chunk.toString();
    const signals = text
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { Actor?: { Attributes?: { signal?: string } } }).Actor?.Attributes?.signal);
    assert.deepEqual(signals, ['15', '9']);
  });
});
