// The app config loader: berth.yml → appliku.yml → Procfile → detection, normalised to one model,
// with one-line errors that name the file, the key and what was expected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AppConfigError, loadAppConfig } from '../../agent/config/index.js';
import { parseProcfile } from '../../agent/config/procfile.js';
import { baseImageFor, generateDockerfile } from '../../agent/build/dockerfile.js';
import { makeMasker } from '../../shared/secret-mask.js';
import { shellEnvFile } from '../../agent/build/build-command.js';
import { makeTmpDir } from '../helpers/tmp.js';

function repo(files: Record<string, string>): string {
  const dir = makeTmpDir('appcfg');
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}

function configError(files: Record<string, string>): string {
  try {
    loadAppConfig(repo(files));
  } catch (err) {
    assert.ok(err instanceof AppConfigError, `expected a AppConfigError, got ${String(err)}`);
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
    return err.message;
  }
  assert.fail('expected the config to be rejected');
}

test('berth.yml: every key, normalised', () => {
  const c = loadAppConfig(
    repo({
      'requirements.txt': '',
      'berth.yml': `
build:
  image: python-3.11
  command: python build.py
  port: 5000
release: python migrate.py
processes:
  web: python app.py
  worker: { command: python worker.py, scale: 2 }
healthcheck: { path: /up, timeout: 20 }
cron:
  nightly: { schedule: "0 3 * * *", command: python cleanup.py }
volumes:
  media: { target: /app/media }
`,
    }),
  );
  assert.equal(c.source, 'berth.yml');
  assert.deepEqual(c.build.image, { kind: 'python', version: '3.11' });
  assert.equal(c.build.command, 'python build.py');
  assert.equal(c.build.port, 5000);
  assert.equal(c.release, 'python migrate.py');
  assert.deepEqual(c.processes, { web: { command: 'python app.py', scale: 1 }, worker: { command: 'python worker.py', scale: 2 } });
  assert.deepEqual(c.healthcheck, { path: '/up', timeoutS: 20 });
  assert.deepEqual(c.cron, { nightly: { schedule: '0 3 * * *', command: 'python cleanup.py', timezone: null, timeoutS: 3600 } });
  assert.deepEqual(c.volumes, { media: { target: '/app/media' } });
});

test('build images: python-X.Y, node-NN, ruby-X.Y, dockerfile', () => {
  const img = (image: string, extra: Record<string, string> = {}) =>
    loadAppConfig(repo({ 'berth.yml': `build: { image: ${image} }\nprocesses: { web: run }\n`, ...extra })).build.image;
  assert.deepEqual(img('python-3.12'), { kind: 'python', version: '3.12' });
  assert.deepEqual(img('node-20'), { kind: 'node', version: '20' });
  assert.deepEqual(img('ruby-3.3'), { kind: 'ruby', version: '3.3' });
  assert.deepEqual(img('dockerfile', { Dockerfile: 'FROM x\n' }), { kind: 'dockerfile' });
  assert.match(configError({ 'berth.yml': 'build: { image: php-8 }\n' }), /^berth\.yml: key "build\.image": expected python-X\.Y, node-NN, ruby-X\.Y or dockerfile, got "php-8"$/);
});

test('unknown keys and wrong types name the file, the key and what was expected', () => {
  assert.match(configError({ 'berth.yml': 'build:\n  imagee: python-3.12\n' }), /^berth\.yml: unknown key "build\.imagee"/);
  assert.match(configError({ 'berth.yml': 'proceses:\n  web: x\n' }), /^berth\.yml: unknown key "proceses"/);
  assert.match(configError({ 'berth.yml': 'build:\n  port: "eighty"\n' }), /^berth\.yml: key "build\.port": expected a port number, got string "eighty"$/);
  assert.match(configError({ 'berth.yml': 'processes:\n  worker: { command: x, scale: two }\n' }), /^berth\.yml: key "processes\.worker\.scale": expected a whole number of containers, got string "two"$/);
  assert.match(configError({ 'berth.yml': 'processes:\n  worker: { command: x, scale: 1.5 }\n' }), /key "processes\.worker\.scale": expected a whole number/);
  assert.match(configError({ 'berth.yml': 'processes:\n  Web_Server!: x\n' }), /^berth\.yml: key "processes\.Web_Server!": process names are/);
  assert.match(configError({ 'berth.yml': 'release: 42\n' }), /^berth\.yml: key "release": expected a command \(a string\), got number 42$/);
  assert.match(configError({ 'berth.yml': 'healthcheck: { path: up }\n' }), /key "healthcheck\.path": expected a URL path/);
  assert.match(configError({ 'berth.yml': 'cron:\n  x: { schedule: "every day", command: y }\n' }), /key "cron\.x\.schedule": expected a valid 5-field cron schedule/);
  assert.match(configError({ 'berth.yml': 'build: { context: ../other }\n' }), /key "build\.context": path must stay inside the repository/);
  assert.match(configError({ 'berth.yml': '- a\n- b\n' }), /^berth\.yml: key "\(top level\)": expected a mapping/);
  assert.match(configError({ 'berth.yml': 'build: [\n' }), /^berth\.yml: invalid YAML at line \d+/);
  assert.match(configError({ 'berth.yml': 'release: a\nrelease: b\n' }), /^berth\.yml: invalid YAML/);
});

test('cron: 5-field schedules, an optional time zone and timeout, each refused with the job named', () => {
  const c = loadAppConfig(
    repo({ Dockerfile: 'FROM x\n', 'berth.yml': 'processes: { web: run }\ncron:\n  report: { schedule: "30 6 * * 1-5", command: ./report, timezone: Europe/Berlin, timeout: 15m }\n  ping: { schedule: "*/5 * * * *", command: ./ping, timeout: 90 }\n' }),
  );
  assert.deepEqual(c.cron, {
    report: { schedule: '30 6 * * 1-5', command: './report', timezone: 'Europe/Berlin', timeoutS: 900 },
    ping: { schedule: '*/5 * * * *', command: './ping', timezone: null, timeoutS: 90 },
  });
  const yml = (job: string) => ({ Dockerfile: 'FROM x\n', 'berth.yml': `processes: { web: run }\ncron:\n  nightly: ${job}\n` });
  assert.match(configError(yml('{ schedule: "61 * * * *", command: x }')), /^berth\.yml: key "cron\.nightly\.schedule": expected a valid 5-field cron schedule/);
  assert.match(configError(yml('{ schedule: "*/10 * * * * *", command: x }')), /key "cron\.nightly\.schedule": expected a valid 5-field/);
  assert.match(configError(yml('{ schedule: "0 3 * * *", command: x, timezone: Mars/Olympus }')), /key "cron\.nightly\.timezone": expected an IANA time zone/);
  assert.match(configError(yml('{ schedule: "0 3 * * *", command: x, timeout: 3d }')), /key "cron\.nightly\.timeout": expected seconds, or a duration/);
  assert.match(configError(yml('{ schedule: "0 3 * * *" }')), /key "cron\.nightly\.command"/);
  assert.match(configError(yml('{ schedule: "0 3 * * *", command: x, every: 2 }')), /unknown key "cron\.nightly\.every"/);
  assert.match(configError({ Dockerfile: 'FROM x\n', 'appliku.yml': 'cronjobs:\n  sweep: { schedule: "0 0 31 2 8", command: x }\n' }), /^appliku\.yml: key "cronjobs\.sweep\.schedule"/);
});

test('volumes: absolute targets other than "/", one volume per target', () => {
  const vol = (v: string) => configError({ Dockerfile: 'FROM x\n', 'berth.yml': `processes: { web: run }\nvolumes:\n${v}` });
  assert.match(vol('  data: { target: / }\n'), /^berth\.yml: key "volumes\.data\.target": a volume cannot be mounted at "\/"/);
  assert.match(vol('  data: { target: app/data }\n'), /key "volumes\.data\.target": expected an absolute path/);
  assert.match(vol('  data: { target: /app/../etc }\n'), /key "volumes\.data\.target"/);
  assert.match(vol('  a: { target: /data }\n  b: { target: /data/ }\n'), /key "volumes\.b\.target": "\/data" is already the target of volume "a"/);
  assert.match(vol('  Bad!: { target: /data }\n'), /key "volumes\.Bad!": volume names are/);
  assert.deepEqual(loadAppConfig(repo({ Dockerfile: 'FROM x\n', 'berth.yml': 'processes: { web: run }\nvolumes:\n  media: { target: /app/media/ }\n' })).volumes, { media: { target: '/app/media' } });
});

test('precedence: berth.yml over appliku.yml over Procfile over detection', () => {
  const all = {
    'berth.yml': 'processes: { web: from-berth }\n',
    'appliku.yml': 'services: { web: { command: from-appliku } }\n',
    Procfile: 'web: from-procfile\n',
    'requirements.txt': '',
  };
  assert.equal(loadAppConfig(repo(all)).processes.web?.command, 'from-berth');
  const { 'berth.yml': _b, ...noBerth } = all;
  assert.equal(loadAppConfig(repo(noBerth)).processes.web?.command, 'from-appliku');
  assert.equal(loadAppConfig(repo(noBerth)).source, 'appliku.yml');
  const { 'appliku.yml': _a, ...procfileOnly } = noBerth;
  const p = loadAppConfig(repo(procfileOnly));
  assert.equal(p.source, 'Procfile');
  assert.equal(p.processes.web?.command, 'from-procfile');
  assert.deepEqual(p.build.image, { kind: 'python', version: null }, 'the image is still detected');
});

test('detection: Dockerfile → dockerfile, requirements.txt → python, package.json → node, Gemfile → ruby', () => {
  const kind = (files: Record<string, string>) => loadAppConfig(repo({ Procfile: 'web: x\n', ...files })).build.image.kind;
  assert.equal(kind({ Dockerfile: 'FROM x\n', 'requirements.txt': '' }), 'dockerfile');
  assert.equal(kind({ 'requirements.txt': '', 'package.json': '{}' }), 'python');
  assert.equal(kind({ 'package.json': '{}', Gemfile: '' }), 'node');
  assert.equal(kind({ Gemfile: '' }), 'ruby');
  // A Dockerfile app needs no process config: the image's CMD is the web process.
  const df = loadAppConfig(repo({ Dockerfile: 'FROM x\n' }));
  assert.equal(df.source, 'detected');
  assert.deepEqual(df.processes, { web: { command: null, scale: 1 } });
  // node with a start script: npm start.
  assert.equal(loadAppConfig(repo({ 'package.json': '{"scripts":{"start":"node s.js"}}' })).processes.web?.command, 'npm start');
  assert.match(configError({ 'README.md': 'hi' }), /^repository: cannot tell how to build this app/);
  assert.match(configError({ 'requirements.txt': '' }), /^repository: no web process: add processes\.web/);
});

test('Procfile: processes, a release line, comments; bad lines are named', () => {
  assert.deepEqual(parseProcfile('# c\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n\nworker:python w.py\nrelease: python migrate.py\n'), {
    processes: { web: { command: 'gunicorn app:app --bind 0.0.0.0:$PORT', scale: 1 }, worker: { command: 'python w.py', scale: 1 } },
    release: 'python migrate.py',
  });
  assert.throws(() => parseProcfile('web python app.py\n'), /^AppConfigError: Procfile: line 1: expected "name: command"/);
  assert.throws(() => parseProcfile('web: a\nweb: b\n'), /line 2: process "web" is defined twice/);
  assert.throws(() => parseProcfile('web:\n'), /line 1: process "web" has no command/);
  const c = loadAppConfig(repo({ Procfile: 'web: python3 app.py\nrelease: python3 migrate.py\n', 'requirements.txt': '' }));
  assert.equal(c.release, 'python3 migrate.py');
  assert.equal(c.processes.release, undefined, 'release is a phase, not a process');
});

test('berth.yml without processes takes them (and the release) from the Procfile', () => {
  const c = loadAppConfig(repo({ 'berth.yml': 'build: { image: python-3.12 }\n', Procfile: 'web: a\nworker: b\nrelease: c\n' }));
  assert.deepEqual(Object.keys(c.processes), ['web', 'worker']);
  assert.equal(c.release, 'c');
});

test('appliku.yml maps onto the same model', () => {
  const c = loadAppConfig(
    repo({
      'appliku.yml': `
build_settings:
  build_image: node-20
  build_command: npm run build
  container_port: "3000"
services:
  web:
    command: node server.js
  release:
    command: node migrate.js
  worker:
    command: node worker.js
    scale: 3
cronjobs:
  cleanup:
    schedule: "*/5 * * * *"
    command: node cleanup.js
volumes:
  uploads:
    target: /app/uploads
    url: /uploads/
`,
    }),
  );
  assert.equal(c.source, 'appliku.yml');
  assert.deepEqual(c.build.image, { kind: 'node', version: '20' });
  assert.equal(c.build.command, 'npm run build');
  assert.equal(c.build.port, 3000);
  assert.equal(c.release, 'node migrate.js');
  assert.deepEqual(c.processes, { web: { command: 'node server.js', scale: 1 }, worker: { command: 'node worker.js', scale: 3 } });
  assert.deepEqual(c.cron, { cleanup: { schedule: '*/5 * * * *', command: 'node cleanup.js', timezone: null, timeoutS: 3600 } });
  assert.deepEqual(c.volumes, { uploads: { target: '/app/uploads' } });

  const df = loadAppConfig(
    repo({
      'appliku.yml': 'build_settings:\n  build_image: dockerfile\n  dockerfile_path: deploy/web.Dockerfile\n  dockerfile_context_path: src\n  release_command: ./migrate\n',
      'deploy/web.Dockerfile': 'FROM x\n',
      'src/app.py': '',
    }),
  );
  assert.equal(df.build.dockerfile, 'deploy/web.Dockerfile');
  assert.equal(df.build.context, 'src');
  assert.equal(df.release, './migrate');

  const st = loadAppConfig(repo({ 'appliku.yml': 'build_settings:\n  build_image: node-20\n  build_command: npm run build\n  is_static_site: true\n  output_directory: dist\n' }));
  assert.equal(st.build.static, 'dist');
  assert.deepEqual(st.processes, {});

  assert.match(configError({ 'appliku.yml': 'build_settings:\n  build_imag: node-20\n' }), /^appliku\.yml: unknown key "build_settings\.build_imag"/);
  assert.match(configError({ 'appliku.yml': 'build_settings:\n  is_static_site: "yes"\n' }), /^appliku\.yml: key "build_settings\.is_static_site": expected true or false/);
  assert.match(configError({ 'appliku.yml': 'build_settings:\n  build_image: node-20\n  is_static_site: true\n' }), /^appliku\.yml: key "build_settings\.output_directory": is required/);
});

test('static sites: with a build image, or plain files; processes are refused', () => {
  const built = loadAppConfig(repo({ 'berth.yml': 'build: { image: node-20, command: npm run build, static: dist/ }\n', 'package.json': '{}' }));
  assert.equal(built.build.static, 'dist');
  const plain = loadAppConfig(repo({ 'berth.yml': 'build: { static: public }\n', 'public/index.html': 'hi' }));
  assert.deepEqual(plain.build.image, { kind: 'none' });
  assert.match(configError({ 'berth.yml': 'build: { static: public }\nprocesses: { web: x }\n' }), /key "processes": a static site/);
  assert.match(configError({ 'berth.yml': 'build: { static: ../x }\n' }), /key "build\.static": directory must not contain "\.\."/);
});

test('dockerfile: custom path and context must exist inside the repository', () => {
  assert.match(configError({ 'berth.yml': 'build: { image: dockerfile, dockerfile: nope/Dockerfile }\n' }), /key "build\.dockerfile": "nope\/Dockerfile" not found/);
  assert.match(configError({ 'berth.yml': 'build: { context: missing }\nprocesses: { web: x }\n' }), /key "build\.context": directory "missing" does not exist/);
  const dir = repo({ 'berth.yml': 'build: { image: dockerfile, context: out }\n', 'x/Dockerfile': 'FROM x\n' });
  symlinkSync('/etc', join(dir, 'out'));
  assert.throws(() => loadAppConfig(dir), /key "build\.context": "out" points outside the repository/);
});

test('generated Dockerfiles: dependency layer before the code, non-root user, nothing from the config', () => {
  const dir = repo({ 'requirements.txt': 'flask\n', 'app.py': '' });
  const py = generateDockerfile({ kind: 'python', baseImage: 'python:3.12-slim', contextDir: dir, port: 8000 });
  const lines = py.split('\n');
  const deps = lines.findIndex((l) => l.startsWith('COPY requirements.txt'));
  const code = lines.findIndex((l) => l.startsWith('COPY --chown=10001:10001 . '));
  assert.ok(deps > 0 && code > deps, py);
  assert.ok(lines.some((l) => l === 'USER berth'), py);
  assert.match(py, /^FROM python:3\.12-slim$/m);
  const node = generateDockerfile({ kind: 'node', baseImage: 'node:20-slim', contextDir: repo({ 'package.json': '{}', 'package-lock.json': '{}' }), port: 3000 });
  assert.match(node, /COPY --chown=10001:10001 package\.json package-lock\.json \.\/\nUSER berth\nRUN npm ci/);
  const rb = generateDockerfile({ kind: 'ruby', baseImage: 'ruby:3.3-slim', contextDir: repo({ Gemfile: '' }), port: 8000 });
  assert.match(rb, /COPY Gemfile \.\/\nRUN bundle install/);
  assert.throws(() => generateDockerfile({ kind: 'python', baseImage: 'x\nRUN evil', contextDir: dir, port: 1 }), /invalid base image/);
});

test('base images: the setting, its version swapped for the requested one, or {version}', () => {
  const s = { baseImagePython: 'python:3.12-slim', baseImageNode: 'registry.local/node:{version}-bookworm', baseImageRuby: 'berth-test/runtime:bookworm' };
  assert.equal(baseImageFor('python', null, s).image, 'python:3.12-slim');
  assert.equal(baseImageFor('python', '3.11', s).image, 'python:3.11-slim');
  assert.equal(baseImageFor('node', '18', s).image, 'registry.local/node:18-bookworm');
  const rb = baseImageFor('ruby', '3.2', s);
  assert.equal(rb.image, 'berth-test/runtime:bookworm');
  assert.match(rb.note ?? '', /used as configured/);
});

test('env values are masked (longest first, multi-line values line by line, short values left alone)', () => {
  const mask = makeMasker({ TOKEN: 's3cr3t-value', LONGER: 's3cr3t-value-and-more', PEM: '-----BEGIN-----\nline-two-secret\n', DEBUG: '1' });
  assert.equal(mask('a s3cr3t-value-and-more b s3cr3t-value c'), 'a *** b *** c');
  assert.equal(mask('key: line-two-secret'), 'key: ***');
  assert.equal(mask('DEBUG=1'), 'DEBUG=1');
});

test('the build env file keeps every value literal for sh', () => {
  assert.equal(shellEnvFile({ A: "it's $HOME `x`\nnext" }), `A='it'\\''s $HOME \`x\`\nnext'\n`);
  assert.throws(() => shellEnvFile({ 'A B': 'x' }), /invalid env key/);
});
