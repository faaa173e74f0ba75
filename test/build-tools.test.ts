// Build images without Docker: what the generated Dockerfiles contain for volumes, package
// managers and runtime versions, and what the config loader detects from which file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { generateDockerfile } from '../agent/dockerfile.js';
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
