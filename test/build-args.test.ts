// Env values and image builds: a Dockerfile build receives as build args only the env keys its
// ARG lines declare; a generated (python/node/ruby) build never receives the env as build args,
// and build.command's env reaches neither the image history nor the image config. Real builds.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type Docker from 'dockerode';
import { loadAppConfig } from '../agent/config/index.js';
import { runBuildPhase } from '../agent/deploy/build-phase.js';
import { declaredArgs } from '../agent/build/dockerfile-args.js';
import { loadSettings } from '../agent/settings.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { ensureRuntimeImage } from './helpers/runtime-image.js';
import { makeTmpDir } from './helpers/tmp.js';

describe('declaredArgs: the ARG names a Dockerfile declares', () => {
  const names = (text: string) => [...declaredArgs(text)].sort();

  it('plain, with defaults, several per line, in every stage, any case', () => {
    const df = [
      'ARG BASE=busybox',
      'FROM $BASE AS build',
      'arg ONE',
      'ARG TWO=2 THREE="three and more" FOUR=\'x y\'',
      'RUN echo ARG NOT_AN_ARG',
      'FROM build',
      '  ARG  LATE_STAGE=a=b',
      '',
    ].join('\n');
    assert.deepEqual(names(df), ['BASE', 'FOUR', 'LATE_STAGE', 'ONE', 'THREE', 'TWO']);
  });

  it('line continuations, comments and blank lines inside them, a quoted default that looks like more args', () => {
    const df = ['FROM x', 'ARG A=1 \\', '  # a comment in the middle', '', '    B \\', '    C="D=1 E=2"', 'RUN true \\', '  ARG F', '# ARG G', 'ENV H=1'].join('\n');
    assert.deepEqual(names(df), ['A', 'B', 'C']);
  });

  it('the escape parser directive, CRLF line ends', () => {
    assert.deepEqual(names('# escape=`\r\nFROM x\r\nARG A `\r\n  B\r\nARG C=a\\\r\nRUN x\r\n'), ['A', 'B', 'C']);
  });

  it('no ARG, no names', () => {
    assert.deepEqual(names('FROM busybox\nENV ARG=1\nRUN echo ARG X\n'), []);
  });
});

describe('real builds: env values stay out of images', { timeout: 600_000 }, () => {
  const SECRET = 's3cr3t-xyz-7e1f';
  const DECLARED = 'declared-value-42ab';
  const app = `buildargs${process.pid}`;
  let docker: Docker;
  let n = 0;

  before(async () => {
    docker = await ensureDocker();
  });

  after(() => {
    const ids = execFileSync('docker', ['images', '-q', '--filter', 'label=berth.managed=true', '--filter', `label=berth.app=${app}`], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const id of new Set(ids)) execFileSync('docker', ['rmi', '-f', id], { stdio: 'ignore' });
  });

  function checkout(files: Record<string, string>): string {
    const dir = makeTmpDir('buildargs-repo');
    for (const [name, content] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, name)), { recursive: true });
      writeFileSync(join(dir, name), content);
    }
    return dir;
  }

  async function build(files: Record<string, string>, env: Record<string, string>, agentEnv: Record<string, string> = {}): Promise<{ tag: string; log: string }> {
    const dir = checkout(files);
    const dataDir = makeTmpDir('buildargs-data');
    const staticDir = makeTmpDir('buildargs-static');
    chmodSync(staticDir, 0o755);
    const settings = loadSettings({ dataDir }, { BERTH_STATIC_DIR: staticDir, ...agentEnv });
    const deploymentId = `d${++n}`;
    const tag = `berth/${app}:${deploymentId}`;
    const lines: string[] = [];
    await runBuildPhase(docker, {
      app,
      deploymentId,
      commit: 'c'.repeat(40),
      checkout: dir,
      config: loadAppConfig(dir),
      env,
      tag,
      settings,
      log: (l) => lines.push(l),
      system: (l) => lines.push(l),
      signal: new AbortController().signal,
    });
    return { tag, log: lines.join('\n') };
  }

  /** Everything Docker keeps about an image: its history (untruncated) and its inspect JSON. */
  const imageRecords = (tag: string) =>
    execFileSync('docker', ['history', '--no-trunc', tag], { encoding: 'utf8' }) + execFileSync('docker', ['image', 'inspect', tag], { encoding: 'utf8' });

  it('a Dockerfile build gets only the declared args: other env keys never reach the builder', async () => {
    const base = await ensureBusyboxImage();
    const { tag, log } = await build(
      { Dockerfile: `FROM ${base}\nARG DECLARED_ARG\nRUN echo "built with $DECLARED_ARG" > /built.txt\nCMD ["cat", "/built.txt"]\n` },
      { DECLARED_ARG: DECLARED, SECRET_TOKEN: SECRET },
    );
    assert.match(log, /^build args from the app's env \(declared by ARG\): DECLARED_ARG$/m);
    assert.ok(!log.includes('SECRET_TOKEN'), `an undeclared env key reached the build:\n${log}`);
    const records = imageRecords(tag);
    assert.ok(!records.includes(SECRET), 'the undeclared value is nowhere in the image');
    assert.ok(records.includes(`DECLARED_ARG=${DECLARED}`), 'a declared arg is what Docker records (why secrets must not be ARGs)');
  });

  it('a generated build with build.command: the env reaches the command, not the image history or config', async () => {
    const runtime = await ensureRuntimeImage();
    const { tag, log } = await build(
      {
        'requirements.txt': '',
        // The command must not spell the value: the command line itself is recorded with the image.
        'berth.yml': 'build:\n  image: python-3.12\n  command: printf %s "$SECRET_TOKEN" | sha256sum > seen.txt\nprocesses:\n  web: python3 -m http.server\n',
      },
      { SECRET_TOKEN: SECRET },
      { BERTH_BASE_IMAGE_PYTHON: runtime },
    );
    assert.match(log, /build command finished/);
    const seen = execFileSync('docker', ['run', '--rm', '--entrypoint', 'cat', tag, '/app/seen.txt'], { encoding: 'utf8' });
    assert.equal(seen.split(' ')[0], createHash('sha256').update(SECRET).digest('hex'), 'the build command saw the value');
    assert.ok(!imageRecords(tag).includes(SECRET), 'the env value is nowhere in the image');
    const [info] = JSON.parse(execFileSync('docker', ['image', 'inspect', tag], { encoding: 'utf8' })) as Array<{ Config: { Env: string[] | null } }>;
    assert.ok(!(info!.Config.Env ?? []).some((e) => e.startsWith('SECRET_TOKEN=')), 'the env is not baked into the image config');
  });
});
