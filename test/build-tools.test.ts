// Build images without Docker: what the generated Dockerfiles contain for volumes, package
// managers and runtime versions, and what the config loader detects from which file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { appRoot, loadAppConfig } from '../agent/config/index.js';
import { generateDockerfile, pruneAfterBuild } from '../agent/build/dockerfile.js';
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

test('package managers from the lockfile: the generated dependency layer', () => {
  const df = (kind: 'node' | 'python' | 'ruby', files: Record<string, string>) => generateDockerfile({ kind, baseImage: 'base:1', contextDir: repo(files), port: 8000 });
  assert.match(df('node', { 'package.json': '{}', 'package-lock.json': '{}' }), /COPY --chown=10001:10001 package\.json package-lock\.json \.\/\nUSER berth\nRUN npm ci\n/);
  assert.match(df('node', { 'package.json': '{}' }), /RUN npm install\n/);
  const pnpm = df('node', { 'package.json': '{"packageManager":"pnpm@9.12.1+sha512.abc"}', 'pnpm-lock.yaml': '' });
  assert.match(pnpm, /COPY --chown=10001:10001 package\.json pnpm-lock\.yaml \.\/\nRUN if command -v corepack >\/dev\/null 2>&1; then corepack enable pnpm; else npm install -g pnpm@9\.12\.1; fi\nUSER berth\nRUN pnpm install --frozen-lockfile\n/);
  assert.match(df('node', { 'package.json': '{}', 'yarn.lock': '' }), /npm install -g yarn; fi\nUSER berth\nRUN yarn install --frozen-lockfile\n/);
  const berry = df('node', { 'package.json': '{"packageManager":"yarn@4.1.0"}', 'yarn.lock': '', '.yarnrc.yml': 'nodeLinker: node-modules\n' });
  assert.match(berry, /COPY --chown=10001:10001 package\.json yarn\.lock \.yarnrc\.yml \.\/\n.*npm install -g @yarnpkg\/cli-dist@4\.1\.0; fi\nUSER berth\nRUN yarn install --immutable\n/);
  // A packageManager value that is not a plain version never reaches the Dockerfile.
  assert.match(df('node', { 'package.json': '{"packageManager":"pnpm@1.0.0;rm -rf /"}', 'pnpm-lock.yaml': '' }), /npm install -g pnpm; fi/);

  assert.match(df('python', { 'pyproject.toml': '', 'poetry.lock': '' }), /COPY pyproject\.toml poetry\.lock \.\/\nRUN \(command -v poetry >\/dev\/null 2>&1 \|\| python3 -m pip install poetry\) && \(if poetry check --help[^\n]*poetry check --lock; else poetry lock --check; fi\) && poetry install --no-root --only main --no-ansi\n/);
  assert.match(df('python', { 'pyproject.toml': '', 'uv.lock': '' }), /COPY pyproject\.toml uv\.lock \.\/\nRUN .*uv sync --frozen --no-dev --no-install-project\n/);
  assert.match(df('python', { Pipfile: '', 'Pipfile.lock': '{}' }), /COPY Pipfile Pipfile\.lock \.\/\nRUN .*pipenv install --deploy --system\n/);
  assert.match(df('python', { 'pyproject.toml': '' }), /COPY --chown=10001:10001 \. \.\/\nRUN python3 -m pip install \.\n/);
  assert.match(df('python', { 'requirements.txt': '', 'poetry.lock': '', 'pyproject.toml': '' }), /COPY requirements\.txt \.\/\nRUN if grep/, 'requirements.txt wins');

  const lock = 'GEM\n  specs:\n\nBUNDLED WITH\n   2.5.6\n';
  assert.match(df('ruby', { Gemfile: '', 'Gemfile.lock': lock }), /COPY Gemfile Gemfile\.lock \.\/\nRUN gem list -i -e bundler -v 2\.5\.6 >\/dev\/null \|\| gem install bundler -v 2\.5\.6\nRUN bundle install\n/);
  assert.doesNotMatch(df('ruby', { Gemfile: '', 'Gemfile.lock': 'BUNDLED WITH\n   2;id\n' }), /gem install/);
});

test('runtime versions: .nvmrc, .node-version, engines.node, .python-version, runtime.txt, requires-python, .ruby-version, Gemfile; berth.yml wins', () => {
  const image = (files: Record<string, string>) => loadAppConfig(repo({ Procfile: 'web: x\n', ...files })).build.image;
  assert.deepEqual(image({ 'package.json': '{}', '.nvmrc': 'v18.20.1\n' }), { kind: 'node', version: '18', from: 'from .nvmrc' });
  assert.deepEqual(image({ 'package.json': '{}', '.node-version': '22\n' }), { kind: 'node', version: '22', from: 'from .node-version' });
  assert.deepEqual(image({ 'package.json': '{"engines":{"node":">=20.0.0"}}' }), { kind: 'node', version: '20', from: 'from package.json engines.node' });
  assert.deepEqual(image({ 'package.json': '{}', '.nvmrc': 'lts/*\n' }), { kind: 'node', version: null }, 'a name is not a version: the server default');
  assert.deepEqual(image({ 'requirements.txt': '', '.python-version': '3.11.4\n' }), { kind: 'python', version: '3.11', from: 'from .python-version' });
  assert.deepEqual(image({ 'requirements.txt': '', 'runtime.txt': 'python-3.10.13\n' }), { kind: 'python', version: '3.10', from: 'from runtime.txt' });
  assert.deepEqual(image({ 'pyproject.toml': '[project]\nrequires-python = ">=3.9"\n' }), { kind: 'python', version: '3.9', from: 'from pyproject.toml requires-python' });
  assert.deepEqual(image({ Gemfile: 'source "x"\nruby "3.2.2"\n' }), { kind: 'ruby', version: '3.2', from: 'from the Gemfile ruby line' });
  assert.deepEqual(image({ Gemfile: '', '.ruby-version': 'ruby-3.1.4\n' }), { kind: 'ruby', version: '3.1', from: 'from .ruby-version' });
  assert.deepEqual(image({ 'requirements.txt': '', '.python-version': '3.11\n', 'berth.yml': 'build: { image: python-3.12 }\n' }), { kind: 'python', version: '3.12' });
  assert.deepEqual(image({ 'requirements.txt': '', '.python-version': '$(id)\n' }), { kind: 'python', version: null });
  assert.equal(loadAppConfig(repo({ 'package.json': '{"scripts":{"start":"node s.js"}}', 'pnpm-lock.yaml': '' })).processes.web?.command, 'pnpm start');
});

test('build.root in the repository root berth.yml moves the app to a subdirectory; --root-dir wins', () => {
  const dir = repo({ 'berth.yml': 'build:\n  root: services/web\n', 'services/web/Procfile': 'web: python3 app.py\n', 'services/web/requirements.txt': '', 'api/package.json': '{"scripts":{"start":"x"}}' });
  const lines: string[] = [];
  const root = appRoot(dir, undefined, (l) => lines.push(l));
  assert.equal(root, join(realpathSync(dir), 'services/web'));
  assert.deepEqual(lines, ["building from the repository's subdirectory services/web (build.root in berth.yml)"]);
  assert.equal(loadAppConfig(root).processes.web?.command, 'python3 app.py');
  assert.equal(appRoot(dir, 'api'), join(realpathSync(dir), 'api'));
  assert.equal(appRoot(repo({ Procfile: 'web: x\n' }), undefined).length > 0, true);
  assert.throws(() => appRoot(repo({ 'berth.yml': 'build: { root: web }\nprocesses: { web: x }\n', 'web/Procfile': 'web: x\n' }), undefined), /key "build\.root" moves the app to "web", so this file says nothing else: move "processes" to web\/berth\.yml/);
  assert.throws(() => appRoot(repo({ 'berth.yml': 'build: { root: ../x }\n' }), undefined), /key "build\.root": path must stay inside the repository/);
  assert.throws(() => appRoot(repo({ 'berth.yml': 'build: { root: nope }\n' }), undefined), /root directory "nope" \(build\.root in berth\.yml\) is not a directory/);
  const linked = repo({ Procfile: 'web: x\n' });
  symlinkSync('/etc', join(linked, 'out'));
  assert.throws(() => appRoot(linked, 'out'), /root directory "out" points outside the repository through a symbolic link/);
  assert.throws(() => loadAppConfig(repo({ 'berth.yml': 'build: { root: web }\n' })), /build\.root": moves the app to a subdirectory, so it is only read from the berth\.yml at the repository root/);
});

test('dev dependencies: production-only installs without a build command; pruned after one where the tool can', () => {
  const node = (files: Record<string, string>) => generateDockerfile({ kind: 'node', baseImage: 'base:1', contextDir: repo(files), port: 8000, prodOnly: true });
  assert.match(node({ 'package.json': '{}', 'package-lock.json': '{}' }), /\nRUN npm ci --omit=dev\n/);
  assert.match(node({ 'package.json': '{}', 'pnpm-lock.yaml': '' }), /\nRUN pnpm install --frozen-lockfile --prod\n/);
  assert.match(node({ 'package.json': '{}', 'yarn.lock': '' }), /\nRUN yarn install --frozen-lockfile --production\n/);
  assert.equal(pruneAfterBuild('node', repo({ 'package.json': '{}', 'package-lock.json': '{}' })), 'npm prune --omit=dev');
  assert.equal(pruneAfterBuild('node', repo({ 'package.json': '{}', 'pnpm-lock.yaml': '' })), 'pnpm prune --prod');
  assert.equal(pruneAfterBuild('node', repo({ 'package.json': '{}', 'yarn.lock': '' })), null);
  assert.equal(pruneAfterBuild('python', repo({ 'requirements.txt': '' })), null);
});
