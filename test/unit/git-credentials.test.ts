// http(s) repo credentials never reach git's command line (agent/build/git-credentials.ts), against a
// real Git host over smart HTTP that demands them (git http-backend behind Basic auth, on loopback).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fetchSource, GitError } from '../../agent/build/git.js';
import { gitRemote } from '../../agent/build/git-credentials.js';
import { startGitHttp, type GitHttpServer } from '../helpers/git-http.js';
import { makeTmpDir } from '../helpers/tmp.js';

const TOKEN = 'ghp_berthTestToken0123456789abcdefXYZ';
const GIT_ENV = { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' };
const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, env: GIT_ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

/** Every file's bytes under `dir`, for a search. */
function allBytes(dir: string): string {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile())
    .map((f) => readFileSync(f).toString('latin1'))
    .join('\n');
}

describe('http(s) repo credentials', () => {
  it('are moved out of the URL into a helper scoped to the origin; other URLs are left alone', () => {
    const r = gitRemote(`https://berth:${encodeURIComponent('p@ss:w/rd')}@git.example.com:8443/org/app.git`);
    assert.equal(r.url, 'https://git.example.com:8443/org/app.git');
    assert.deepEqual([r.env.BERTH_GIT_USERNAME, r.env.BERTH_GIT_PASSWORD], ['berth', 'p@ss:w/rd']);
    assert.equal(r.env.GIT_CONFIG_KEY_1, 'credential.https://git.example.com:8443.helper');
    assert.ok(!r.env.GIT_CONFIG_VALUE_1!.includes('p@ss'), 'the helper text is constant: values only in the environment');
    for (const plain of ['https://git.example.com/org/app.git', 'git@github.com:org/app.git', 'ssh://git@host/app.git', 'file:///srv/app.git']) {
      assert.deepEqual(gitRemote(plain), { url: plain, env: {} }, plain);
    }
  });

  describe('against a Git host that demands them', () => {
    let root: string;
    let server: GitHttpServer;
    let head: string;
    let argvLog: string;
    const oldPath = process.env.PATH;

    before(async () => {
      root = makeTmpDir('git-http');
      const origin = join(root, 'srv', 'app.git');
      const work = join(root, 'work');
      git(root, 'init', '-q', '--bare', '-b', 'main', origin);
      git(root, 'clone', '-q', origin, work);
      git(work, 'checkout', '-q', '-b', 'main');
      writeFileSync(join(work, 'app.txt'), 'v1\n');
      git(work, 'add', '-A');
      git(work, 'commit', '-q', '-m', 'first');
      git(work, 'push', '-q', 'origin', 'HEAD');
      head = git(work, 'rev-parse', 'HEAD');
      server = await startGitHttp(join(root, 'srv'), { user: 'berth', password: TOKEN });
      // A `git` first on PATH that records its arguments, then runs the real one: what `ps` would show.
      const bin = join(root, 'bin');
      argvLog = join(root, 'argv.log');
      const real = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
      execFileSync('mkdir', ['-p', bin]);
      writeFileSync(join(bin, 'git'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${argvLog}'\nexec '${real}' "$@"\n`);
      chmodSync(join(bin, 'git'), 0o755);
      process.env.PATH = `${bin}:${oldPath}`;
    });

    after(async () => {
      process.env.PATH = oldPath;
      await server?.close();
    });

    it('a fetch with them works, and neither the command lines, the log nor the cache hold the token', async () => {
      const cacheDir = join(root, 'cache-ok');
      const lines: string[] = [];
      const { commit } = await fetchSource({ cacheDir, repo: `${server.origin.replace('://', `://berth:${TOKEN}@`)}/app.git`, branch: 'main', log: (l) => lines.push(l) });
      assert.equal(commit, head);
      assert.ok(server.requests.some((r) => r.user === 'berth' && !r.refused), 'the host saw the credentials');
      const argv = readFileSync(argvLog, 'utf8');
      assert.match(argv, new RegExp(`fetch .*${server.origin}/app\\.git`), 'the wrapper saw the fetch');
      assert.ok(!argv.includes(TOKEN), `a token on git's command line:\n${argv}`);
      assert.ok(!lines.join('\n').includes(TOKEN));
      assert.ok(!allBytes(cacheDir).includes(TOKEN), 'the token is stored in the cache');
    });

    it('wrong credentials fail the fetch with a message that does not show them', async () => {
      const wrong = 'ghp_wrongToken9876543210zyxwvutsrq';
      await assert.rejects(
        fetchSource({ cacheDir: join(root, 'cache-wrong'), repo: `${server.origin.replace('://', `://berth:${wrong}@`)}/app.git`, branch: 'main', log: () => {} }),
        (err: Error) => err instanceof GitError && /git fetch from http:\/\/berth:\*\*\*@127\.0\.0\.1:\d+\/app\.git failed: fatal: Authentication failed/.test(err.message) && !err.message.includes(wrong),
      );
      assert.ok(server.requests.some((r) => r.refused), 'the host refused them');
    });
  });
});
