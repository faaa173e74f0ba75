// Sample apps end to end with the real stack (control plane + agent processes, Docker, nginx) on a
// local Debian runtime image: one app per build image (python, node, ruby, static, dockerfile),
// an appliku.yml app and a Procfile-only app. Checks responses through nginx, processes, the
// release command, env vars (visible to build, release and processes; masked in the deploy log),
// a failing release, an invalid config, and the cached dependency layer on a code-only change.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { berth, berthJson } from './helpers/cli.js';
import { ensureBusyboxImage, ensureDocker } from './helpers/docker.js';
import { TestRepo } from './helpers/git-repo.js';
import { eventually, httpGet } from './helpers/http.js';
import { ensureRuntimeImage } from './helpers/runtime-image.js';
import { Stack } from './helpers/stack.js';

interface Deployment {
  id: string;
  status: string;
  reason: string | null;
}

const SECRET = 'sk-live-9f8e7d6c5b4a3210';
const BUILD_SECRET = 'build-flag-1a2b3c4d5e';

const PY_APP = `import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (os.environ.get("SECRET_TOKEN", "") if self.path == "/env" else open("message.txt").read()).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
`;
const PY_WORKER = `import time
print("worker started", flush=True)
while True:
    time.sleep(1)
`;

const NODE_BUILD = `const fs = require('fs');
fs.writeFileSync('generated.txt', 'built with ' + process.env.BUILD_FLAG + '\\n');
console.log('build step ran with ' + process.env.BUILD_FLAG);
`;
const NODE_SERVER = `require('http').createServer((req, res) => {
  res.end(require('fs').readFileSync('generated.txt'));
}).listen(process.env.PORT, '0.0.0.0');
`;

const RUBY_APP = `require "socket"
server = TCPServer.new("0.0.0.0", Integer(ENV.fetch("PORT")))
loop do
  client = server.accept
  line = client.gets.to_s
  while (h = client.gets) && h != "\\r\\n"; end
  body = line.start_with?("GET /up") ? "up" : "hello from ruby #{RUBY_VERSION}"
  client.write "HTTP/1.1 200 OK\\r\\nContent-Length: #{body.bytesize}\\r\\nConnection: close\\r\\n\\r\\n#{body}"
  client.close
end
`;

const SITE_BUILD = `import os
os.makedirs("public", exist_ok=True)
open("public/index.html", "w").write("<h1>static site built by a build command</h1>\\n")
open("public/app.0123abcd.js", "w").write("console.log(1)\\n")
`;

describe('sample apps: build images, processes, release, env', { timeout: 600_000 }, () => {
  let stack: Stack;
  let staticDir: string;
  const repos = new Map<string, TestRepo>();

  const domain = (app: string) => `${app}.samples.test`;
  const get = (app: string, path = '/') => httpGet(stack.httpPort, domain(app), path);

  async function createApp(app: string, files: Record<string, string>, env: Record<string, string> = {}): Promise<TestRepo> {
    const repo = new TestRepo(join(stack.root, `repo-${app}`));
    repo.commit(files, 'initial');
    repos.set(app, repo);
    stack.apps.add(app);
    await berthJson(['app', 'create', app, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', app, domain(app)], stack.env);
    if (Object.keys(env).length > 0) {
      const set = await berth(['env', 'set', app, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)], stack.env);
      assert.equal(set.code, 0, set.stderr);
    }
    return repo;
  }

  async function deploy(app: string): Promise<{ code: number; dep: Deployment; log: string; stdout: string }> {
    const res = await berth(['deploy', app, '--wait'], stack.env, 300_000);
    const [dep] = await berthJson<Deployment[]>(['deployments', app], stack.env);
    assert.ok(dep, `no deployment of ${app}`);
    const logs = (await (await fetch(`${stack.cpUrl}/api/deployments/${dep.id}/logs`, { headers: { authorization: `Bearer ${stack.adminToken}` } })).json()) as {
      lines: Array<{ text: string }>;
    };
    return { code: res.code, dep, log: logs.lines.map((l) => l.text).join('\n'), stdout: res.stdout };
  }

  async function deployOk(app: string): Promise<string> {
    const d = await deploy(app);
    assert.equal(d.dep.status, 'done', `deploy of ${app} failed: ${d.dep.reason}\n${d.log}\n${stack.tail('agent.log', 30)}`);
    return d.log;
  }

  const containers = (app: string, process: string) =>
    execFileSync(
      'docker',
      ['ps', '--format', '{{.Names}}', '--filter', `label=berth.app=${app}`, '--filter', `label=berth.process=${process}`, '--filter', `label=berth.server=${stack.serverName}`],
      { encoding: 'utf8' },
    )
      .split('\n')
      .filter(Boolean);

  before(async () => {
    await ensureDocker();
    const runtime = await ensureRuntimeImage();
    await ensureBusyboxImage();
    // nginx workers (nobody) must reach the static sites: a world-traversable directory of its own.
    staticDir = mkdtempSync(join(tmpdir(), 'berth-static-'));
    chmodSync(staticDir, 0o755);
    stack = await Stack.create('samples', {
      agentEnv: { BERTH_BASE_IMAGE_PYTHON: runtime, BERTH_BASE_IMAGE_NODE: runtime, BERTH_BASE_IMAGE_RUBY: runtime, BERTH_STATIC_DIR: staticDir },
    });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
  });

  after(async () => {
    if (stack) {
      for (const file of ['agent.log', 'control-plane.log']) {
        const text = existsSync(join(stack.root, file)) ? readFileSync(join(stack.root, file), 'utf8') : '';
        assert.ok(!text.includes(SECRET) && !text.includes(BUILD_SECRET), `an env value leaked into ${file}`);
      }
    }
    if (stack) {
      // A build command's image is committed on top of the dependency build, whose (untagged) image
      // is its parent: remove children before parents, which a single `docker rmi -f` list may not.
      await stack.stopAgent();
      const list = (args: string[]) => execFileSync('docker', args, { encoding: 'utf8' }).split('\n').filter(Boolean);
      // By app, as Stack.destroy does (it would trip over leftovers of an earlier interrupted run).
      const byApp = (app: string) => ['--filter', 'label=berth.managed=true', '--filter', `label=berth.app=${app}`];
      const running = [...stack.apps].flatMap((app) => list(['ps', '-aq', ...byApp(app)]));
      if (running.length) execFileSync('docker', ['rm', '-f', ...running], { stdio: 'ignore' });
      const appImages = () => [...stack.apps].flatMap((app) => list(['images', '-q', ...byApp(app)]));
      for (let pass = 0; pass < 5; pass++) {
        const images = [...new Set(appImages())];
        if (images.length === 0) break;
        for (const id of images) {
          try {
            execFileSync('docker', ['rmi', '-f', id], { stdio: 'ignore' });
          } catch {
            // a parent of an image not removed yet: the next pass gets it
          }
        }
      }
    }
    await stack?.destroy();
    if (staticDir) rmSync(staticDir, { recursive: true, force: true });
  });

  it('python (Procfile web + worker + release): serves, runs the worker, releases once, env visible but masked', async () => {
    await createApp(
      'py',
      {
        'requirements.txt': '# standard library only\n',
        'app.py': PY_APP,
        'worker.py': PY_WORKER,
        'message.txt': 'python v1',
        Procfile: 'web: python3 app.py\nworker: python3 worker.py\nrelease: echo "release ran: token=$SECRET_TOKEN"\n',
      },
      { SECRET_TOKEN: SECRET },
    );
    const log = await deployOk('py');
    assert.equal((await get('py')).body, 'python v1');
    assert.equal((await get('py', '/env')).body, SECRET, 'the web process sees the env var');
    assert.equal(containers('py', 'worker').length, 1, 'the worker runs');
    assert.equal(containers('py', 'web').length, 1);
    assert.equal(log.match(/^release ran: /gm)?.length, 1, `the release ran exactly once:\n${log}`);
    assert.match(log, /release ran: token=\*\*\*/, 'the release saw the env var, masked in the log');
    assert.ok(!log.includes(SECRET), 'the env value never appears in the deploy log');
    assert.equal(containers('py', 'release').length, 0, 'the one-off release container is gone');
  });

  it('python: a code-only change reuses the dependency layer and releases once more', async () => {
    repos.get('py')!.commit({ 'message.txt': 'python v2' });
    const log = await deployOk('py');
    assert.match(log, /RUN if grep[^\n]*\n\s*---> Using cache/, `the dependency install step comes from the cache:\n${log}`);
    assert.equal(log.match(/^release ran: /gm)?.length, 1);
    assert.equal((await get('py')).body, 'python v2');
  });

  it('python: a failing release fails the deploy and the old version keeps serving', async () => {
    repos.get('py')!.commit({ 'message.txt': 'python v3', Procfile: 'web: python3 app.py\nworker: python3 worker.py\nrelease: echo migrating; exit 3\n' });
    const d = await deploy('py');
    assert.notEqual(d.code, 0);
    assert.equal(d.dep.status, 'failed');
    assert.match(d.dep.reason ?? '', /release failed: release command exited with code 3/);
    assert.match(d.log, /migrating/);
    assert.equal((await get('py')).body, 'python v2', 'the old version still serves');
    assert.equal(containers('py', 'worker').length, 1, "the old worker still runs, the new one never started");
  });

  it('python: a worker container that disappears is re-created by the reconciler', async () => {
    const [worker] = containers('py', 'worker');
    execFileSync('docker', ['rm', '-f', worker!], { stdio: 'ignore' });
    // Any desired-state change triggers a reconcile pass.
    await berthJson(['domain', 'add', 'py', 'www.py.samples.test'], stack.env);
    await eventually(async () => containers('py', 'worker'), (list) => list.length === 1 && list[0] === worker, 30_000);
    assert.equal((await get('py')).body, 'python v2');
  });

  it('node: build.command runs in the build with the env and generates what the web process serves', async () => {
    await createApp(
      'nodeapp',
      {
        'package.json': '{"name":"nodeapp","version":"1.0.0","private":true}\n',
        'build.js': NODE_BUILD,
        'server.js': NODE_SERVER,
        'berth.yml': 'build:\n  image: node-20\n  command: node build.js\nprocesses:\n  web: node server.js\n',
      },
      { BUILD_FLAG: BUILD_SECRET },
    );
    const log = await deployOk('nodeapp');
    assert.equal((await get('nodeapp')).body, `built with ${BUILD_SECRET}\n`);
    assert.match(log, /build step ran with \*\*\*/);
    assert.ok(!log.includes(BUILD_SECRET));
    const history = execFileSync('docker', ['history', '--no-trunc', '--format', '{{.CreatedBy}}', `berth/nodeapp:${(await berthJson<Deployment[]>(['deployments', 'nodeapp'], stack.env))[0]!.id}`], { encoding: 'utf8' });
    assert.ok(!history.includes(BUILD_SECRET), 'the env value is not recorded in the image history');
  });

  it('ruby: the web process passes an HTTP health check and serves', async () => {
    await createApp('rubyapp', {
      Gemfile: 'source "https://rubygems.org"\n',
      'app.rb': RUBY_APP,
      'berth.yml': 'processes:\n  web: ruby app.rb\n  ticker: { command: "ruby -e \'loop { sleep 1 }\'", scale: 2 }\nhealthcheck:\n  path: /up\n  timeout: 30\n',
    });
    const log = await deployOk('rubyapp');
    assert.match((await get('rubyapp')).body, /^hello from ruby \d/);
    assert.match(log, /answers GET \/up \(200\)/);
    assert.equal(containers('rubyapp', 'ticker').length, 2, 'scale 2 runs two containers');
  });

  it('static site: built by a build command, served by nginx from disk with caching headers, no container', async () => {
    await createApp('site', {
      'build_site.py': SITE_BUILD,
      'berth.yml': 'build:\n  image: python-3.12\n  command: python3 build_site.py\n  static: public\n',
    });
    await deployOk('site');
    const page = await get('site');
    assert.equal(page.status, 200);
    assert.equal(page.body, '<h1>static site built by a build command</h1>\n');
    assert.equal(page.headers['cache-control'], 'no-cache');
    const asset = await get('site', '/app.0123abcd.js');
    assert.equal(asset.status, 200);
    assert.match(String(asset.headers['cache-control']), /immutable/);
    assert.equal(execFileSync('docker', ['ps', '-q', '--filter', 'label=berth.app=site', '--filter', `label=berth.server=${stack.serverName}`], { encoding: 'utf8' }).trim(), '');
    const [first] = await berthJson<Deployment[]>(['deployments', 'site'], stack.env);
    assert.ok(existsSync(join(staticDir, 'site', first!.id, 'index.html')), 'served from a per-release directory');

    repos.get('site')!.commit({ 'build_site.py': SITE_BUILD.replace('built by a build command', 'version two') });
    await deployOk('site');
    assert.equal((await get('site')).body, '<h1>static site version two</h1>\n');
    assert.ok(existsSync(join(staticDir, 'site', first!.id)), 'the previous release stays on disk for rollback');
  });

  it('dockerfile with a custom path and context', async () => {
    await createApp('dockerapp', {
      'deploy/web.Dockerfile': 'FROM berth-test/busybox:latest\nCOPY . /www\nCMD ["sh", "-c", "exec httpd -f -p $PORT -h /www"]\n',
      'site/index.html': 'from a custom context\n',
      'outside.txt': 'not in the context\n',
      'berth.yml': 'build:\n  image: dockerfile\n  dockerfile: deploy/web.Dockerfile\n  context: site\n  port: 8080\n',
    });
    await deployOk('dockerapp');
    assert.equal((await get('dockerapp')).body, 'from a custom context\n');
    assert.equal((await get('dockerapp', '/outside.txt')).status, 404);
  });

  it('appliku.yml app', async () => {
    await createApp('applikuapp', {
      'requirements.txt': '',
      'app.py': PY_APP,
      'message.txt': 'from appliku.yml',
      'appliku.yml': 'build_settings:\n  build_image: python-3.12\n  container_port: 8080\nservices:\n  web:\n    command: python3 app.py\n  release:\n    command: echo appliku-release-ran\n',
    });
    const log = await deployOk('applikuapp');
    assert.equal((await get('applikuapp')).body, 'from appliku.yml');
    assert.match(log, /config from appliku\.yml/);
    assert.equal(log.match(/^appliku-release-ran$/gm)?.length, 1);
  });

  it('Procfile-only app (build image detected)', async () => {
    await createApp('procfileapp', {
      'requirements.txt': '',
      'index.html': 'procfile only\n',
      Procfile: 'web: python3 -m http.server $PORT --bind 0.0.0.0\n',
    });
    const log = await deployOk('procfileapp');
    assert.equal((await get('procfileapp')).body, 'procfile only\n');
    assert.match(log, /config from Procfile/);
  });

  it('an invalid config fails the deploy before building, naming the key', async () => {
    await createApp('badcfg', { 'berth.yml': 'build:\n  imagee: python-3.12\n', 'requirements.txt': '' });
    const d = await deploy('badcfg');
    assert.notEqual(d.code, 0);
    assert.equal(d.dep.status, 'failed');
    assert.match(d.dep.reason ?? '', /invalid app config: berth\.yml: unknown key "build\.imagee"/);
    assert.doesNotMatch(d.log, /building image/);
  });
});
