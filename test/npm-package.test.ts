// berth as an npm package: `npm pack` in this checkout (its prepack compiles), then `npm install -g` of
// that tarball in a clean Debian 12 container (the installer test bed's image: no node_modules, no
// checkout; the host's Node.js 20 and npm bind-mounted, since Debian ships Node.js 18), with the real
// npm registry (reached through the test bed's egress, whose CA the image trusts). better-sqlite3's
// prebuilt addon is normally downloaded from GitHub, which these machines cannot reach: a plain static
// server on the test's network plays that download host (npm_config_better_sqlite3_binary_host) with
// the addon this checkout compiled. Then the installed CLI: `berth --version`, `berth control-plane`
// starts (and serves install.sh from the package), `berth login` + `berth app ls` work against it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ensureDocker } from './helpers/docker.js';
import { eventually } from './helpers/http.js';
import { containerRun, containerSh, PACKAGE_VERSION as VERSION, removeInstallerContainer, showRun, startInstallerContainer } from './helpers/installer-image.js';
import { StaticServer } from './helpers/static-server.js';
import { freePort, makeTmpDir } from './helpers/tmp.js';

const execFileP = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** In the container: the host's npm (its own files), and where the packed tarball is mounted. */
const NPM = '/opt/host-npm';
const PKG = '/srv/berth-pkg';
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

interface PackResult {
  filename: string;
  files: Array<{ path: string }>;
}

describe('the npm package: npm pack, npm install -g in a clean container, the CLI works', { timeout: 15 * 60_000 }, () => {
  let tmp = '';
  let mirror: StaticServer;
  let container = '';
  let tarball = '';
  let files: string[] = [];
  /** Where prebuild-install looks for better-sqlite3's addon under its download host. */
  const sqliteVersion = (JSON.parse(readFileSync(join(ROOT, 'node_modules/better-sqlite3/package.json'), 'utf8')) as { version: string }).version;
  const addonPath = `/v${sqliteVersion}/better-sqlite3-v${sqliteVersion}-node-v${process.versions.modules}-linux-${process.arch}.tar.gz`;

  before(async () => {
    await ensureDocker();
    tmp = makeTmpDir('npm-package');
    const started = Date.now();
    const packed = await execFileP('npm', ['pack', '--pack-destination', tmp, '--json', '--loglevel=error'], { cwd: ROOT, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
    // prepack's tsc output comes first on stdout; the JSON document is the rest.
    const result = (JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as PackResult[])[0]!;
    tarball = result.filename;
    files = result.files.map((f) => f.path);
    process.stderr.write(`# npm pack (prepack: tsc) took ${Date.now() - started} ms: ${tarball}, ${files.length} files\n`);

    // better-sqlite3's download host, serving the addon this checkout compiled (same Node.js ABI as the container's node).
    const mirrorDir = join(tmp, 'prebuilt');
    mkdirSync(join(mirrorDir, addonPath, '..'), { recursive: true });
    await execFileP('tar', ['-czf', join(mirrorDir, addonPath), '-C', join(ROOT, 'node_modules/better-sqlite3'), 'build/Release/better_sqlite3.node']);
    mirror = await StaticServer.start(mirrorDir);

    const npmDir = realpathSync('/usr/lib/node_modules/npm');
    assert.ok(existsSync(join(npmDir, 'bin/npm-cli.js')), `the host's npm in ${npmDir}`);
    container = await startInstallerContainer('npm', await freePort(), [`${tmp}:${PKG}`, `${process.execPath}:/usr/local/bin/node`, `${npmDir}:${NPM}`]);
  });

  after(async () => {
    if (container) await removeInstallerContainer(container, []);
    await mirror?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('packs the compiled CLI, agent, control plane, install.sh, the units and the README; no tests, benchmarks or source maps', () => {
    for (const f of ['package.json', 'README.md', 'install.sh', 'systemd/berth-agent.service', 'systemd/berth-control-plane.service', 'dist/cli/main.js', 'dist/agent/main.js', 'dist/control-plane/api/install.js', 'dist/shared/version.js']) {
      assert.ok(files.includes(f), `${f} is in the package`);
    }
    const unwanted = files.filter((f) => /^dist\/(test|bench)\//.test(f) || f.endsWith('.map') || /^(node_modules|release|test|scripts)\//.test(f) || f.endsWith('.ts'));
    assert.deepEqual(unwanted, []);
  });

  it('npm install -g ./berth-*.tgz gives a berth command: --version, control-plane, login, app ls', { timeout: 12 * 60_000 }, async (t) => {
    const node = await containerRun(container, ['sh', '-c', 'node --version && /usr/bin/node --version']);
    assert.match(node.stdout, /^v2\d\.\d+\.\d+\nv18\./, `Node.js 20+ first on PATH, Debian's 18 beside it: ${showRun(node)}`);
    assert.equal((await containerRun(container, ['sh', '-c', 'test ! -e /usr/local/lib/node_modules/berth && ! command -v berth'])).code, 0, 'no berth yet');

    let started = Date.now();
    const install = await containerSh(
      container,
      `NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm_config_better_sqlite3_binary_host=${mirror.url} ` +
        `node ${NPM}/bin/npm-cli.js install -g --no-audit --no-fund --loglevel=error ${PKG}/${tarball}`,
      600_000,
    );
    t.diagnostic(`npm install -g took ${Date.now() - started} ms`);
    assert.equal(install.code, 0, showRun(install));
    assert.ok(mirror.requests.includes(addonPath), `better-sqlite3's addon came from its download host: ${mirror.requests.join(' ')}`);

    const version = await containerRun(container, ['berth', '--version']);
    assert.equal(version.code, 0, showRun(version));
    assert.equal(version.stdout.trim(), VERSION);
    assert.equal((await containerRun(container, ['sh', '-c', 'command -v berth'])).stdout.trim(), '/usr/local/bin/berth');

    // berth control-plane from the package, on loopback (plain HTTP is allowed there).
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const start = await containerSh(container, `setsid berth control-plane --data /root/cp --listen 127.0.0.1:${port} </dev/null >/root/cp.log 2>&1 & echo started`);
    assert.equal(start.code, 0, showRun(start));
    started = Date.now();
    await eventually(
      () => fetch(`${url}/healthz`).then((r) => r.json() as Promise<{ version?: string }>, () => ({ version: undefined })),
      (h) => h.version === VERSION,
      60_000,
    ).catch(async (err: Error) => assert.fail(`${err.message}\n${(await containerRun(container, ['cat', '/root/cp.log'])).stdout}`));
    t.diagnostic(`the control plane answered ${Date.now() - started} ms after starting`);

    const login = await containerSh(container, `berth login ${url} --token-stdin < /root/cp/admin-token`);
    assert.equal(login.code, 0, showRun(login));
    const apps = await containerRun(container, ['berth', 'app', 'ls', '--json']);
    assert.equal(apps.code, 0, showRun(apps));
    assert.deepEqual(JSON.parse(apps.stdout), []);
    const denied = await containerSh(container, `BERTH_TOKEN=wrong berth app ls --json`);
    assert.notEqual(denied.code, 0, 'a wrong token is refused: the command really talks to the control plane');

    // The package's install.sh is what this control plane serves, with its URL baked in.
    const script = await (await fetch(`${url}/install.sh`)).text();
    assert.match(script, new RegExp(`^BERTH_URL_BAKED='${esc(url)}'$`, 'm'));
    const added = await containerRun(container, ['berth', 'server', 'add', 'web1', '--json']);
    assert.equal(added.code, 0, showRun(added));
    assert.match((JSON.parse(added.stdout) as { installCommand: string }).installCommand, new RegExp(`^curl -fsSL ${esc(url)}/install\\.sh \\| `));
  });
});
