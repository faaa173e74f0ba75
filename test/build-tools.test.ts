// Build images without Docker: what the generated Dockerfiles contain for volumes, package
// managers and runtime versions, and what the config loader detects from which file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadAppConfig } from '../agent/config/index.js';
import { generateDockerfile } from '../agent/dockerfile.js';
import { loadSettings } from '../agent/settings.js';
import { makeTmpDir } from './helpers/tmp.js';

function repo(files: Record<string, string>): string {
  const dir = makeTmpDir('buildtools');
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}

test('volume targets exist owned by the app user in the image (exec form, after the code, before USER)', () => {
  const dir = repo({ 'requirements.txt': '' });
  const df = generateDockerfile({ kind: 'python', baseImage: 'python:3.12-slim', contextDir: dir, port: 8000, volumeTargets: ['/data', '/app/media'] });
  const lines = df.split('\n');
  const step = lines.indexOf('RUN ["install","-d","-o","10001","-g","10001","/app/media","/data"]');
  assert.ok(step > lines.findIndex((l) => l.startsWith('COPY --chown=10001:10001 . ')), df);
  assert.ok(step < lines.indexOf('USER berth', step - 1), df);
  assert.ok(!generateDockerfile({ kind: 'python', baseImage: 'python:3.12-slim', contextDir: dir, port: 8000 }).includes('install -d'));
  for (const bad of ['/data;rm -rf /', '/', 'data', '/a/../etc', '/a b']) {
    assert.throws(() => generateDockerfile({ kind: 'node', baseImage: 'node:20-slim', contextDir: dir, port: 8000, volumeTargets: [bad] }), /invalid volume target/, bad);
  }
});

test('memory and cpus: berth.yml build and per-process caps, validated; agent defaults', () => {
  const c = loadAppConfig(
    repo({
      'requirements.txt': '',
      'berth.yml': 'build: { memory: 1.5g, cpus: 2 }\nprocesses:\n  web: { command: run, memory: 256m, cpus: 0.5 }\n  worker: work\n',
    }),
  );
  assert.equal(c.build.memory, 1.5 * 1024 ** 3);
  assert.equal(c.build.cpus, 2);
  assert.deepEqual(c.processes.web, { command: 'run', scale: 1, memory: 256 * 1024 ** 2, cpus: 0.5 });
  assert.deepEqual(c.processes.worker, { command: 'work', scale: 1 });
  const bad = (yml: string) => {
    try {
      loadAppConfig(repo({ 'requirements.txt': '', 'berth.yml': yml }));
    } catch (err) {
      return (err as Error).message;
    }
    return 'accepted';
  };
  assert.match(bad('build: { memory: lots }\nprocesses: { web: x }\n'), /key "build\.memory": expected a memory size like "512m" or "2g", got "lots"/);
  assert.match(bad('build: { memory: 1m }\nprocesses: { web: x }\n'), /key "build\.memory": expected between 6 MB and 1024 GB/);
  assert.match(bad('processes: { web: { command: x, cpus: 0 } }\n'), /key "processes\.web\.cpus": expected at least 0\.01 CPUs/);
  assert.match(bad('processes: { web: { command: x, memory: 512 } }\n'), /key "processes\.web\.memory": expected a memory size/);

  const s = loadSettings({}, { BERTH_BUILD_MEMORY: '512m', BERTH_BUILD_CPUS: '1.5' });
  assert.deepEqual([s.buildMemory, s.buildCpus], [512 * 1024 ** 2, 1.5]);
  const d = loadSettings({}, {});
  assert.equal(d.buildMemory, 2 * 1024 ** 3, 'a 2 GB build cap by default');
  assert.ok(d.buildCpus !== null && d.buildCpus >= 1);
  assert.deepEqual([loadSettings({}, { BERTH_BUILD_MEMORY: '0', BERTH_BUILD_CPUS: '0' }).buildMemory, loadSettings({}, { BERTH_BUILD_CPUS: '0' }).buildCpus], [null, null]);
  assert.throws(() => loadSettings({}, { BERTH_BUILD_MEMORY: 'big' }), /invalid BERTH_BUILD_MEMORY="big": must be a memory size/);
  assert.throws(() => loadSettings({}, { BERTH_BUILD_CPUS: '-1' }), /invalid BERTH_BUILD_CPUS/);
});
