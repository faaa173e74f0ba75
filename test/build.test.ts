// agent/build/image.ts against the real Docker engine, with a locally made busybox base image.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { buildImage, BuildError, contextFiles } from '../agent/build/image.js';
import { berthLabels } from '../agent/docker/labels.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { makeTmpDir } from './helpers/tmp.js';

const APP = `buildtest${process.pid}`;

describe('build: buildImage', () => {
  let docker: Docker;
  let base: string;
  let root: string;
  let n = 0;

  /** A fresh context dir with the given files. */
  function context(files: Record<string, string>): string {
    const dir = join(root, `ctx${++n}`);
    for (const [name, content] of Object.entries(files)) {
      const path = join(dir, name);
      mkdirSync(join(path, '..'), { recursive: true });
      writeFileSync(path, content);
    }
    return dir;
  }
  const tag = () => `berth-test/${APP}:${n}`;
  const labels = () => berthLabels(APP, `dep${n}`);

  before(async () => {
    docker = await ensureDocker();
    base = await ensureBusyboxImage();
    root = makeTmpDir('build');
  });

  after(async () => {
    rmSync(root, { recursive: true, force: true });
    // Only images this test labelled: never anything else on the engine.
    const images = await docker.listImages({ filters: { label: ['berth.managed=true', `berth.app=${APP}`] } });
    for (const img of images) await docker.getImage(img.Id).remove({ force: true }).catch(() => {});
  });

  it('builds and tags an image with labels, streaming output lines', async () => {
    const dir = context({
      Dockerfile: `FROM ${base}\nCOPY . /app\nRUN echo "hello from build" && cat /app/app.txt\nCMD ["cat", "/app/app.txt"]\n`,
      'app.txt': 'v1\n',
    });
    const lines: string[] = [];
    const { imageId } = await buildImage(docker, { contextDir: dir, tag: tag(), labels: labels(), log: (l) => lines.push(l) });
    assert.match(imageId, /^sha256:[0-9a-f]{64}$/);
    const info = await docker.getImage(tag()).inspect();
    assert.equal(info.Id, imageId);
    assert.equal(info.Config.Labels?.['berth.managed'], 'true');
    assert.equal(info.Config.Labels?.['berth.app'], APP);
    assert.ok(lines.includes('hello from build'), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('Step 1/')), lines.join('\n'));
    assert.ok(lines.every((l) => l.length > 0 && !l.includes('\n') && !l.endsWith('\r')));
  });

  it('honours .dockerignore (Dockerfile and .dockerignore are still sent)', async () => {
    const dir = context({
      Dockerfile: [
        `FROM ${base}`,
        'COPY . /app',
        'RUN test ! -e /app/secret.txt',
        'RUN test ! -e /app/node_modules/big.js',
        'RUN test -e /app/node_modules/keep.txt',
        'RUN test -e /app/app.txt',
        '',
      ].join('\n'),
      '.dockerignore': 'secret.txt\nnode_modules\n!node_modules/keep.txt\nDockerfile\n',
      'secret.txt': 'TOP SECRET',
      'app.txt': 'ok',
      'node_modules/big.js': 'x',
      'node_modules/keep.txt': 'x',
    });
    const lines: string[] = [];
    const { imageId } = await buildImage(docker, { contextDir: dir, tag: tag(), labels: labels(), log: (l) => lines.push(l) });
    assert.ok(imageId, lines.join('\n'));
    const sent = contextFiles(dir, 'Dockerfile');
    assert.deepEqual([...sent].sort(), ['.dockerignore', 'Dockerfile', 'app.txt', 'node_modules', 'node_modules/keep.txt']);
  });

  it('passes build args', async () => {
    const dir = context({ Dockerfile: `FROM ${base}\nARG GREETING\nRUN test "$GREETING" = "hi there"\n` });
    await buildImage(docker, { contextDir: dir, tag: tag(), labels: labels(), buildArgs: { GREETING: 'hi there' }, log: () => {} });
  });

  it('a failing RUN gives a BuildError with the command and its output in the log', async () => {
    const dir = context({ Dockerfile: `FROM ${base}\nRUN echo "about to fail" && false\n` });
    const lines: string[] = [];
    await assert.rejects(
      buildImage(docker, { contextDir: dir, tag: tag(), labels: labels(), log: (l) => lines.push(l) }),
      (err: unknown) =>
        err instanceof BuildError && /echo "about to fail" && false/.test(err.message) && /non-zero code: 1/.test(err.message),
    );
    assert.ok(lines.includes('about to fail'), lines.join('\n'));
    assert.ok(lines.some((l) => l.startsWith('ERROR: ')), lines.join('\n'));
    await assert.rejects(docker.getImage(tag()).inspect(), 'no image was tagged');
  });

  it('a missing Dockerfile or a parse error is a BuildError', async () => {
    const empty = context({ 'app.txt': 'x' });
    await assert.rejects(
      buildImage(docker, { contextDir: empty, tag: tag(), labels: labels(), log: () => {} }),
      (err: unknown) => err instanceof BuildError && /Dockerfile.*not found/.test(err.message),
    );
    await assert.rejects(
      buildImage(docker, { contextDir: empty, dockerfile: '../outside/Dockerfile', tag: tag(), labels: labels(), log: () => {} }),
      (err: unknown) => err instanceof BuildError && /inside the build context/.test(err.message),
    );
    const broken = context({ Dockerfile: `FROMM ${base}\n` });
    await assert.rejects(
      buildImage(docker, { contextDir: broken, tag: tag(), labels: labels(), log: () => {} }),
      (err: unknown) => err instanceof BuildError && /unknown instruction/i.test(err.message),
    );
  });

  it('an abort stops the build promptly', async () => {
    const dir = context({ Dockerfile: `FROM ${base}\nRUN sleep 30\n` });
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('deploy cancelled')), 1000);
    const started = Date.now();
    await assert.rejects(buildImage(docker, { contextDir: dir, tag: tag(), labels: labels(), log: () => {}, signal: ac.signal }), /deploy cancelled/);
    assert.ok(Date.now() - started < 10_000);
  });
});
