// A repository cannot reach outside its own checkout: committed symbolic links that leave the
// repo (static root, files inside a static site, config files, detection manifests, Dockerfile,
// build context, .dockerignore) are refused or dropped, host files are never read, chmod-ed or
// deleted. Unit tests on real git repos with committed links, then real deploys through nginx.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, createReadStream, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { contextFiles } from '../agent/build/image.js';
import { AppConfigError, loadAppConfig } from '../agent/config/index.js';
import { extractSite, publishFromDir, StaticSiteError } from '../agent/build/static-site.js';
import { berth, berthJson } from './helpers/cli.js';
import { TestRepo } from './helpers/git-repo.js';
import { httpGet } from './helpers/http.js';
import { Stack } from './helpers/stack.js';
import { makeTmpDir } from './helpers/tmp.js';

const HOST_SECRET = 'host-secret-5d1e9a7c';

/** A host directory the repo must not touch: files with distinctive modes, a link, a FIFO. */
function hostDir(): { dir: string; snapshot: () => string } {
  const dir = makeTmpDir('host');
  writeFileSync(join(dir, 'key'), `${HOST_SECRET}\n`, { mode: 0o600 });
  mkdirSync(join(dir, 'private'), { mode: 0o700 });
  writeFileSync(join(dir, 'private', 'id_rsa'), `${HOST_SECRET} private\n`, { mode: 0o400 });
  symlinkSync('key', join(dir, 'key-link'));
  execFileSync('mkfifo', ['-m', '0620', join(dir, 'fifo')]);
  chmodSync(dir, 0o711);
  // Every entry's type and mode, links not followed: any chmod or delete shows up as a difference.
  const snapshot = () => {
    const out: string[] = [];
    const walk = (d: string) => {
      const st = lstatSync(d);
      out.push(`${d} ${st.mode.toString(8)}`);
      if (!st.isDirectory()) return;
      for (const n of readdirSync(d).sort()) walk(join(d, n));
    };
    walk(dir);
    return out.join('\n');
  };
  return { dir, snapshot };
}

/** A real git repo whose commit holds `files` and the symbolic links `links` (path → target). */
function repoWith(files: Record<string, string>, links: Record<string, string> = {}): TestRepo {
  const repo = new TestRepo(makeTmpDir('contain-repo'));
  for (const [path, target] of Object.entries(links)) {
    mkdirSync(join(repo.work, path, '..'), { recursive: true });
    symlinkSync(target, join(repo.work, path));
  }
  repo.commit(files);
  const committed = execFileSync('git', ['ls-files', '-s'], { cwd: repo.work, encoding: 'utf8' });
  for (const path of Object.keys(links)) assert.match(committed, new RegExp(`^120000 \\S+ 0\\t${path}$`, 'm'), `${path} is committed as a link`);
  return repo;
}

function staticDir(): string {
  const dir = makeTmpDir('contain-static');
  chmodSync(dir, 0o755);
  return dir;
}

const publish = (checkout: string, path: string, dir = staticDir()) => publishFromDir({ checkout, path, staticDir: dir, app: 'site', deploymentId: 'd1' });

/** Every file's content under `dir`, concatenated. */
function allContent(dir: string): string {
  let out = '';
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out += readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

describe('static sites from the checkout', () => {
  it('a static root linked to a host directory is refused and the host directory is untouched', () => {
    const host = hostDir();
    const before = host.snapshot();
    const repo = repoWith({ 'index.html': 'x' }, { site: host.dir });
    const out = staticDir();
    assert.throws(() => publish(repo.work, 'site', out), (err: Error) => err instanceof StaticSiteError && /build\.static "site" points outside the repository/.test(err.message));
    assert.equal(host.snapshot(), before, 'no mode changed, nothing deleted');
    assert.ok(!allContent(out).includes(HOST_SECRET));
  });

  it('a static root reached through x -> / is refused: the host directory is not copied', () => {
    const host = hostDir();
    const repo = repoWith({ 'index.html': 'x' }, { x: '/' });
    const out = staticDir();
    const path = `x${host.dir}`;
    assert.throws(() => publish(repo.work, path, out), new RegExp(`build\\.static "${path}" points outside the repository through a symbolic link`));
    assert.ok(!allContent(out).includes(HOST_SECRET), 'no host file was published');
    assert.ok(!existsSync(join(out, 'site', 'd1')), 'no release directory');
    assert.throws(() => publish(repo.work, host.dir, out), new RegExp(`build\\.static "${host.dir}" points outside the repository$`), 'an absolute path is not taken from the host either');
  });

  it('a static root linked inside the repository is refused too: the site is named by its real directory', () => {
    const repo = repoWith({ 'dist/index.html': 'hi' }, { public: 'dist' });
    assert.throws(() => publish(repo.work, 'public'), /build\.static "public" is reached through a symbolic link: name the directory itself/);
    assert.equal(publish(repo.work, 'dist').files, 1);
  });

  it('links and special files inside the site are dropped and named; .git is never published', () => {
    const host = hostDir();
    const before = host.snapshot();
    const repo = repoWith(
      { 'public/index.html': 'home', 'public/docs/a.html': 'a', 'public/.git/config': 'not served' },
      { 'public/leak': join(host.dir, 'key'), 'public/docs/hostdir': host.dir, 'public/home': 'index.html', 'public/nowhere': 'missing' },
    );
    execFileSync('mkfifo', [join(repo.work, 'public', 'pipe')]);
    const out = staticDir();
    const site = publish(repo.work, 'public', out);
    assert.equal(site.files, 2);
    assert.deepEqual(readdirSync(site.dir).sort(), ['docs', 'index.html']);
    assert.deepEqual(readdirSync(join(site.dir, 'docs')), ['a.html']);
    assert.deepEqual(site.dropped.sort(), [
      'public/docs/hostdir: a symbolic link pointing outside the repository',
      'public/home: a symbolic link (links are not published)',
      'public/leak: a symbolic link pointing outside the repository',
      'public/nowhere: a symbolic link to nothing',
      'public/pipe: not a regular file or directory',
    ]);
    assert.equal(statSync(join(site.dir, 'index.html')).mode & 0o777, 0o644);
    assert.equal(host.snapshot(), before);
  });
});

describe('a site copied out of an image', () => {
  it('an archive with "../" names, a link and a file through that link writes nothing outside staging', async () => {
    const root = makeTmpDir('archive');
    const outside = join(root, 'outside');
    const cwd = join(root, 'a', 'b');
    mkdirSync(outside);
    mkdirSync(join(cwd, 'site'), { recursive: true });
    writeFileSync(join(cwd, 'site', 'index.html'), 'home');
    writeFileSync(join(root, 'a', 'climb.txt'), 'climbed');
    writeFileSync(join(root, 'escape.txt'), 'escaped');
    writeFileSync(join(root, 'via-link.txt'), 'through a link');
    symlinkSync(root, join(cwd, 'site', 'link'));
    const archive = join(root, 'site.tar');
    // -P keeps "../" in member names, as a hostile archive would have them.
    execFileSync('tar', ['-cPf', archive, 'site/index.html', 'site/link', 'site/../../climb.txt', 'site/link/via-link.txt', 'site/../../../escape.txt'], { cwd, stdio: 'pipe' });
    // Gone before extraction: any of them showing up again was written by it.
    for (const f of [join(root, 'a', 'climb.txt'), join(root, 'escape.txt'), join(root, 'via-link.txt')]) rmSync(f);
    const members = execFileSync('tar', ['-tPf', archive], { encoding: 'utf8' });
    assert.match(members, /^site\/\.\.\/\.\.\/climb\.txt$/m, 'the archive really holds a "../" name');
    const staging = join(root, 'staging');
    mkdirSync(staging);
    await extractSite(createReadStream(archive), staging);
    assert.equal(readFileSync(join(staging, 'index.html'), 'utf8'), 'home');
    assert.ok(!lstatSync(join(staging, 'link'), { throwIfNoEntry: false })?.isSymbolicLink(), 'no link is created');
    assert.deepEqual(readdirSync(outside), [], 'nothing written outside staging');
    assert.deepEqual(readdirSync(root).sort(), ['a', 'outside', 'site.tar', 'staging']);
    assert.deepEqual(readdirSync(join(root, 'a')), ['b']);
  });
});

describe('config files and detection through links', () => {
  const configError = (repo: TestRepo): string => {
    try {
      loadAppConfig(repo.work);
    } catch (err) {
      assert.ok(err instanceof AppConfigError, `expected a AppConfigError, got ${String(err)}`);
      return err.message;
    }
    assert.fail('expected the config to be rejected');
  };
  // Host content that would surface in an error on main: an unknown key, a Procfile line.
  const hostFile = () => {
    const dir = makeTmpDir('host-file');
    writeFileSync(join(dir, 'conf'), `${HOST_SECRET}: 1\n`);
    writeFileSync(join(dir, 'package.json'), `{"scripts":{"start":"${HOST_SECRET}"}}`);
    return dir;
  };

  for (const file of ['berth.yml', 'berth.yaml', 'appliku.yml', 'appliku.yaml', 'Procfile']) {
    it(`${file} linked to a host file: an error naming ${file}, the host content never read`, () => {
      const host = hostFile();
      const msg = configError(repoWith({ 'public/index.html': 'x' }, { [file]: join(host, 'conf') }));
      assert.match(msg, new RegExp(`^${file.replace('.', '\\.')} points outside the repository through a symbolic link$`));
      assert.ok(!msg.includes(HOST_SECRET));
    });
  }

  it('berth.yml linked inside the repository is read; one linked to nothing is an error', () => {
    const ok = loadAppConfig(repoWith({ 'config/berth.yml': 'build: { static: public }\n', 'public/index.html': 'x' }, { 'berth.yml': 'config/berth.yml' }).work);
    assert.equal(ok.build.static, 'public');
    assert.match(configError(repoWith({ 'public/index.html': 'x' }, { 'berth.yml': '/nonexistent/berth.yml' })), /^berth\.yml is a symbolic link to nothing inside the repository$/);
  });

  for (const file of ['requirements.txt', 'package.json', 'Gemfile', 'Dockerfile']) {
    it(`detection: ${file} linked to a host file is an error naming it`, () => {
      const host = hostFile();
      const msg = configError(repoWith({ 'app.py': 'x' }, { [file]: join(host, file === 'package.json' ? 'package.json' : 'conf') }));
      assert.match(msg, new RegExp(`^${file.replace('.', '\\.')} points outside the repository through a symbolic link$`));
    });
  }

  it('node: package.json inside the context linked to a host file is never read for the start script', () => {
    const host = hostFile();
    const msg = configError(repoWith({ 'berth.yml': 'build: { image: node-20 }\n' }, { 'package.json': join(host, 'package.json') }));
    assert.match(msg, /package\.json points outside the repository/);
    assert.ok(!msg.includes(HOST_SECRET));
  });

  it('build.dockerfile and build.context linked outside are errors naming the key', () => {
    const host = hostFile();
    writeFileSync(join(host, 'Dockerfile'), 'FROM scratch\n');
    assert.match(
      configError(repoWith({ 'berth.yml': 'build: { image: dockerfile, dockerfile: docker/app.Dockerfile }\n' }, { 'docker/app.Dockerfile': join(host, 'Dockerfile') })),
      /^berth\.yml: key "build\.dockerfile": "docker\/app\.Dockerfile" points outside the repository through a symbolic link$/,
    );
    assert.match(
      configError(repoWith({ 'berth.yml': 'build: { image: dockerfile, context: ctx }\n' }, { ctx: host })),
      /^berth\.yml: key "build\.context": "ctx" points outside the repository through a symbolic link$/,
    );
  });

  it('.dockerignore linked to a host file is not read into the build context rules', () => {
    const host = hostFile();
    const repo = repoWith({ Dockerfile: 'FROM scratch\n' }, { '.dockerignore': join(host, 'conf') });
    assert.throws(() => contextFiles(repo.work, 'Dockerfile'), /\.dockerignore points outside the repository through a symbolic link/);
  });
});

interface Deployment {
  id: string;
  status: string;
  reason: string | null;
}

describe('real deploys: the old release keeps serving', { timeout: 300_000 }, () => {
  let stack: Stack;
  let repo: TestRepo;
  const app = 'contained';
  const host = `${app}.contain.test`;
  const get = (path = '/') => httpGet(stack.httpPort, host, path);

  async function deploy(): Promise<{ dep: Deployment; log: string }> {
    await berth(['deploy', app, '--wait'], stack.env, 120_000);
    const [dep] = await berthJson<Deployment[]>(['deployments', app], stack.env);
    assert.ok(dep);
    const res = await fetch(`${stack.cpUrl}/api/deployments/${dep.id}/logs`, { headers: { authorization: `Bearer ${stack.adminToken}` } });
    const { lines } = (await res.json()) as { lines: Array<{ text: string }> };
    return { dep, log: lines.map((l) => l.text).join('\n') };
  }

  /** Commit `files` and `links` (on top of the last commit), deploy, expect a failure; v1 still serves. */
  async function deployFails(files: Record<string, string>, links: Record<string, string>): Promise<{ dep: Deployment; log: string }> {
    for (const [path, target] of Object.entries(links)) {
      rmSync(join(repo.work, path), { force: true });
      symlinkSync(target, join(repo.work, path));
    }
    repo.commit(files);
    const d = await deploy();
    assert.equal(d.dep.status, 'failed', `the deploy must fail:\n${d.log}`);
    assert.equal((await get()).body, 'v1', 'the old release keeps serving');
    return d;
  }

  before(async () => {
    const dir = staticDir();
    stack = await Stack.create('contain', { agentEnv: { BERTH_STATIC_DIR: dir } });
    await stack.startControlPlane();
    await stack.joinAndStartAgent();
    repo = new TestRepo(join(stack.root, 'repo'));
    repo.commit({ 'berth.yml': 'build: { static: public }\n', 'public/index.html': 'v1' });
    stack.apps.add(app);
    await berthJson(['app', 'create', app, '--repo', repo.url, '--server', stack.serverName], stack.env);
    await berthJson(['domain', 'add', app, host], stack.env);
    const first = await deploy();
    assert.equal(first.dep.status, 'done', first.log);
    assert.equal((await get()).body, 'v1');
  });

  after(async () => {
    await stack?.destroy();
  });

  it('static: site -> host directory fails at building naming the path; the host directory is untouched', async () => {
    const hd = hostDir();
    const before = hd.snapshot();
    const d = await deployFails({ 'berth.yml': 'build: { static: site }\n' }, { site: hd.dir });
    assert.match(d.dep.reason ?? '', /^build failed: build\.static "site" points outside the repository through a symbolic link$/);
    assert.equal(hd.snapshot(), before, 'no mode changed, nothing deleted');
  });

  it('static: x/<host dir> with x -> / fails at building; the host files are not served', async () => {
    const hd = hostDir();
    const d = await deployFails({ 'berth.yml': `build: { static: x${hd.dir} }\n` }, { x: '/' });
    assert.equal(d.dep.reason, `build failed: build.static "x${hd.dir}" points outside the repository through a symbolic link`);
    assert.notEqual((await get('/key')).body, `${HOST_SECRET}\n`);
  });

  it('berth.yml -> host file: the deploy fails naming berth.yml, the host content is nowhere in the log', async () => {
    const hf = makeTmpDir('host-file');
    writeFileSync(join(hf, 'conf'), `${HOST_SECRET}: 1\n`);
    const d = await deployFails({}, { 'berth.yml': join(hf, 'conf') });
    assert.match(d.dep.reason ?? '', /berth\.yml points outside the repository through a symbolic link/);
    assert.ok(!d.log.includes(HOST_SECRET) && !(d.dep.reason ?? '').includes(HOST_SECRET));
  });

  it('links inside the site are not published and each is named in the deploy log', async () => {
    const hd = hostDir();
    execFileSync('git', ['rm', '-q', 'berth.yml', 'site', 'x'], { cwd: repo.work });
    symlinkSync(join(hd.dir, 'key'), join(repo.work, 'public', 'leak'));
    repo.commit({ 'berth.yml': 'build: { static: public }\n', 'public/index.html': 'v2' });
    const d = await deploy();
    assert.equal(d.dep.status, 'done', d.log);
    assert.match(d.log, /^not published: public\/leak: a symbolic link pointing outside the repository$/m);
    assert.equal((await get()).body, 'v2');
    assert.equal((await get('/leak')).status, 404);
  });
});
