// Package managers and runtime versions, end to end with real installs from the npm registry: an
// npm, a yarn and a pnpm app (each with a real dependency, locked) build and serve; so do a pip, a
// Poetry and a Pipenv app, locked by the real tools against a package index the test serves (PyPI
// is unreachable here: test/helpers/python-index.ts); a code-only
// change reuses the dependency layer; .nvmrc and .python-version / runtime.txt choose the base
// image's version, and the build log's first lines say what was chosen and why.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { berth, berthJson } from './helpers/cli.js';
import { ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { httpGet } from './helpers/http.js';
import { ensureRuntimeImage } from './helpers/runtime-image.js';
import { ensurePythonToolsImage, runPythonTool, startPythonIndex, type PythonIndex } from './helpers/python-index.js';
import { makeTmpDir } from './helpers/tmp.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { Stack } from './helpers/stack.js';

// The runtime image under per-version tags: berth picks the tag from the version the repo asks for.
const NODE_BASE = 'berth-test/node-pm';
const PY_BASE = 'berth-test/python-pm';

const SERVER_JS = `const ms = require('ms');
const fs = require('fs');
require('http').createServer((req, res) => res.end(fs.readFileSync('message.txt', 'utf8') + ' ' + ms(2 * 86400000))).listen(process.env.PORT);
`;
const INTEGRITY = 'sha512-6FlzubTLZG3J2a/NVCAleEhjzq5oxgHyaCU9yYXvcLsvoVaHJq/s5xXI6/XXP6tz7R9xAOtHnSO/tXtF3WRTlA==';
const pkg = (name: string, manager?: string) =>
  JSON.stringify({ name, version: '1.0.0', private: true, ...(manager ? { packageManager: manager } : {}), dependencies: { ms: '2.1.3' }, scripts: { start: 'node server.js' } });

const APPS: Record<string, { files: Record<string, string>; install: RegExp; manager: RegExp }> = {
  npm: {
    files: {
      'package.json': pkg('npm-app'),
      'package-lock.json': JSON.stringify({
        name: 'npm-app',
        version: '1.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: { '': { name: 'npm-app', version: '1.0.0', dependencies: { ms: '2.1.3' } }, 'node_modules/ms': { version: '2.1.3', resolved: 'https://registry.npmjs.org/ms/-/ms-2.1.3.tgz', integrity: INTEGRITY } },
      }),
    },
    install: /RUN npm ci/,
    manager: /^dependencies: npm \(package-lock\.json\)$/m,
  },
  yarn: {
    files: {
      'package.json': pkg('yarn-app', 'yarn@1.22.22'),
      'yarn.lock': `# yarn lockfile v1\n\n\nms@2.1.3:\n  version "2.1.3"\n  resolved "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz#574c8138ce1d2b5861f0b44579dbadd60c6615b2"\n  integrity ${INTEGRITY}\n`,
    },
    install: /RUN yarn install --frozen-lockfile/,
    manager: /^dependencies: yarn \(classic\), through corepack or npm 1\.22\.22 \(yarn\.lock\)$/m,
  },
  pnpm: {
    files: {
      'package.json': pkg('pnpm-app', 'pnpm@9.15.0'),
      'pnpm-lock.yaml': `lockfileVersion: '9.0'\n\nsettings:\n  autoInstallPeers: true\n  excludeLinksFromLockfile: false\n\nimporters:\n\n  .:\n    dependencies:\n      ms:\n        specifier: 2.1.3\n        version: 2.1.3\n\npackages:\n\n  ms@2.1.3:\n    resolution: {integrity: ${INTEGRITY}}\n\nsnapshots:\n\n  ms@2.1.3: {}\n`,
    },
    install: /RUN pnpm install --frozen-lockfile/,
    manager: /^dependencies: pnpm, through corepack or npm 9\.15\.0 \(pnpm-lock\.yaml\)$/m,
  },
};

interface Deployment {
  id: string;
  status: string;
  reason?: string | null;
}

/** A python web app that serves its dependency's greeting and message.txt. */
const PY_WEB = `import http.server, os, berthdemo
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
        self.wfile.write((berthdemo.GREETING + ' ' + open('message.txt').read()).encode())
http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()
`;

/** Manifest files for each python tool, pointing at the test's package index; `lock` makes the lockfile with the real tool. */
const PY_APPS = (index: PythonIndex): Record<string, { files: Record<string, string>; lock?: { args: string[]; file: string }; install: RegExp; manager: RegExp }> => ({
  pip: {
    files: { 'requirements.txt': `--index-url ${index.url}\n--trusted-host ${index.host.split(':')[0]}\nberthdemo==1.0.0\n` },
    install: /RUN if grep -qvE/,
    manager: /^dependencies: pip \(requirements\.txt\)$/m,
  },
  poetry: {
    files: {
      'pyproject.toml': `[tool.poetry]\nname = "poetry-app"\nversion = "0.1.0"\ndescription = ""\nauthors = ["berth <berth@example.com>"]\n\n[tool.poetry.dependencies]\npython = "^3.11"\nberthdemo = "1.0.0"\n\n[[tool.poetry.source]]\nname = "local"\nurl = "${index.url}"\ndefault = true\n\n[build-system]\nrequires = ["poetry-core"]\nbuild-backend = "poetry.core.masonry.api"\n`,
    },
    lock: { args: ['poetry', 'lock', '--no-interaction'], file: 'poetry.lock' },
    install: /RUN \(command -v poetry[^\n]*poetry install --no-root --only main/,
    manager: /^dependencies: Poetry \(poetry\.lock\)$/m,
  },
  pipenv: {
    files: { Pipfile: `[[source]]\nurl = "${index.url}"\nverify_ssl = false\nname = "local"\n\n[packages]\nberthdemo = "==1.0.0"\n\n[requires]\npython_version = "3.11"\n` },
    lock: { args: ['pipenv', 'lock'], file: 'Pipfile.lock' },
    install: /RUN \(command -v pipenv[^\n]*pipenv install --deploy --system/,
    manager: /^dependencies: Pipenv \(Pipfile\.lock\)$/m,
  },
});

/** The manifests plus the lockfile the real tool writes for them (run in the tools image, against the index). */
async function withLockfile(files: Record<string, string>, lock?: { args: string[]; file: string }): Promise<Record<string, string>> {
  if (!lock) return files;
  const dir = makeTmpDir('py-lock');
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const out = await runPythonTool(dir, lock.args);
  try {
    return { ...files, [lock.file]: readFileSync(join(dir, lock.file), 'utf8') };
  } catch {
    throw new Error(`${lock.args.join(' ')} wrote no ${lock.file}:\n${out}`);
  }
}

describe('package managers and runtime versions', { timeout: 900_000 }, () => {
  let stack: Stack;
  let pyIndex: PythonIndex;
  const repos = new Map<string, TestRepo>();
  const domain = (app: string) => `${app}-${process.pid}.pm.test`;
  const name = (app: string) => `${app}pm${process.pid}`;

  async function deployOk(app: string): Promise<string> {
    const res = await berth(['deploy', name(app), '--wait'], stack.env, 600_000);
    const [dep] = await berthJson<Deployment[]>(['deployments', name(app)], stack.env);
    const logs = (await (await fetch(`${stack.cpUrl}/api/deployments/${dep!.id}/logs`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as {
      lines: Array<{ text: string }>;
    };
    const log = logs.lines.map((l) => l.text).join('\n');
    assert.equal(dep!.status, 'done', `deploy of ${app} failed (${res.code}): ${dep!.reason}\n${log}`);
    return log;
  }
  const served = async (app: string) => (await httpGet(stack.httpPort, domain(app), '/')).body;
  /** The building phase's first line (after the config the fetching phase described): what was chosen and why. */
  const firstBuildLine = (log: string) => {
    const lines = log.split('\n');
    const first = lines.findIndex((l) => l.startsWith('base image: '));
    assert.ok(first >= 0 && lines.slice(0, first).every((l) => !/^(Step 1\/|building image|build limits)/.test(l)), `the base image line comes first in the build:\n${log}`);
    return lines[first];
  };

  async function createApp(app: string, files: Record<string, string>): Promise<void> {
    const repo = new TestRepo(join(stack.root, `repo-${app}`));
    repo.commit(files, 'initial');
    repos.set(app, repo);
    stack.apps.add(name(app));
    await berthJson(['app', 'create', name(app), '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', name(app), domain(app)], stack.env);
  }

  before(async () => {
    await ensureDocker();
    const runtime = await ensureRuntimeImage();
    execFileSync('docker', ['tag', runtime, `${NODE_BASE}:18`]);
    // Python apps build on the runtime plus Debian's Poetry and Pipenv, and install from a local index (no PyPI here).
    execFileSync('docker', ['tag', await ensurePythonToolsImage(), `${PY_BASE}:3.11`]);
    pyIndex = await startPythonIndex();
    stack = await Stack.create('pm', { agentEnv: { BERTH_BASE_IMAGE_NODE: `${NODE_BASE}:{version}`, BERTH_BASE_IMAGE_PYTHON: `${PY_BASE}:{version}` } });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
  });

  after(async () => {
    await stack?.destroy();
    await pyIndex?.close();
    execFileSync('docker', ['rmi', `${NODE_BASE}:18`, `${PY_BASE}:3.11`], { stdio: 'ignore' });
  });

  for (const [app, spec] of Object.entries(APPS)) {
    it(`${app}: installs its locked dependency from the registry, serves, and a code-only change reuses the dependency layer`, async () => {
      await createApp(app, { ...spec.files, 'server.js': SERVER_JS, 'message.txt': `${app} v1`, '.nvmrc': 'v18.19.0\n' });
      const log = await deployOk(app);
      assert.equal(firstBuildLine(log), `base image: ${NODE_BASE}:18 for node 18 (from .nvmrc)`, log);
      assert.match(log, spec.manager, log);
      assert.equal(await served(app), `${app} v1 2d`);

      repos.get(app)!.commit({ 'message.txt': `${app} v2` });
      const again = await deployOk(app);
      assert.match(again, new RegExp(`${spec.install.source}[^\\n]*\\n\\s*---> Using cache`), `the install step comes from the cache:\n${again}`);
      assert.equal(await served(app), `${app} v2 2d`);
    });
  }

  it('a lockfile out of step with package.json fails the build with the tool\'s own message; the old version serves', async () => {
    repos.get('npm')!.commit({ 'package.json': pkg('npm-app').replace('"ms":"2.1.3"', '"ms":"2.1.2"'), 'message.txt': 'npm v3' });
    const res = await berth(['deploy', name('npm'), '--wait'], stack.env, 600_000);
    const [dep] = await berthJson<Deployment[]>(['deployments', name('npm')], stack.env);
    assert.notEqual(res.code, 0);
    assert.equal(dep!.status, 'failed');
    assert.match(dep!.reason ?? '', /^build failed: .*npm ci --omit=dev' returned a non-zero code: 1/, dep!.reason ?? '');
    assert.match(res.stdout + res.stderr, /package\.json and package-lock\.json[^\n]* in sync/, 'npm\'s own explanation is in the build log');
    assert.equal(await served('npm'), 'npm v2 2d');
  });

  for (const tool of ['pip', 'poetry', 'pipenv']) {
    it(`python ${tool}: installs its locked dependency from the package index, serves, and a code-only change reuses the dependency layer`, async () => {
      const spec = PY_APPS(pyIndex)[tool]!;
      const files = await withLockfile(spec.files, spec.lock);
      await createApp(tool, { ...files, 'web.py': PY_WEB, Procfile: 'web: python3 web.py\n', 'message.txt': `${tool} v1`, '.python-version': '3.11\n' });
      const fetched = pyIndex.requests.filter((p) => p.endsWith('.whl')).length;
      const log = await deployOk(tool);
      assert.match(log, spec.manager, log);
      assert.match(log, spec.install, log);
      assert.ok(pyIndex.requests.filter((p) => p.endsWith('.whl')).length > fetched, 'the wheel was downloaded from the index by the build');
      assert.equal(await served(tool), `hello from berthdemo 1.0.0 ${tool} v1`);

      repos.get(tool)!.commit({ 'message.txt': `${tool} v2` });
      const again = await deployOk(tool);
      assert.match(again, new RegExp(`${spec.install.source}[^\\n]*\\n\\s*---> Using cache`), `the install step comes from the cache:\n${again}`);
      assert.equal(await served(tool), `hello from berthdemo 1.0.0 ${tool} v2`);
    });
  }

  const STALE_LOCKS: Record<string, { manifest: string; edit: (text: string) => string; step: RegExp; says: RegExp }> = {
    pipenv: { manifest: 'Pipfile', edit: (t) => t.replace('[packages]\n', '[packages]\nberthextra = "*"\n'), step: /pipenv install --deploy --system/, says: /Pipfile\.lock \([0-9a-f]+\) is out of date/ },
    poetry: { manifest: 'pyproject.toml', edit: (t) => t.replace('berthdemo = "1.0.0"\n', 'berthdemo = "1.0.0"\nberthextra = "*"\n'), step: /poetry install --no-root/, says: /poetry\.lock is not consistent with pyproject\.toml/ },
  };
  for (const [tool, stale] of Object.entries(STALE_LOCKS)) {
    it(`python ${tool}: a manifest changed without relocking fails the build with the tool's own message; the old version serves`, async () => {
      const manifest = stale.edit(PY_APPS(pyIndex)[tool]!.files[stale.manifest]!);
      repos.get(tool)!.commit({ [stale.manifest]: manifest, 'message.txt': `${tool} v3` });
      const res = await berth(['deploy', name(tool), '--wait'], stack.env, 600_000);
      const [dep] = await berthJson<Deployment[]>(['deployments', name(tool)], stack.env);
      assert.notEqual(res.code, 0);
      assert.equal(dep!.status, 'failed');
      assert.match(dep!.reason ?? '', new RegExp(`^build failed: .*${stale.step.source}[^']*' returned a non-zero code`), dep!.reason ?? '');
      assert.match(res.stdout + res.stderr, stale.says, `${tool}'s own explanation is in the build log`);
      assert.equal(await served(tool), `hello from berthdemo 1.0.0 ${tool} v2`);
    });
  }

  it('python: .python-version, then runtime.txt, choose the base image version', async () => {
    const web = `import http.server, os\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(200); self.end_headers(); self.wfile.write(b'py')\nhttp.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n`;
    await createApp('py', { 'requirements.txt': '', 'web.py': web, Procfile: 'web: python3 web.py\n', '.python-version': '3.11.2\n' });
    assert.equal(firstBuildLine(await deployOk('py')), `base image: ${PY_BASE}:3.11 for python 3.11 (from .python-version)`);
    repos.get('py')!.commit({ '.python-version': null, 'runtime.txt': 'python-3.11.9\n' });
    assert.equal(firstBuildLine(await deployOk('py')), `base image: ${PY_BASE}:3.11 for python 3.11 (from runtime.txt)`);
    assert.equal(await served('py'), 'py');
  });
});
